"""How a DB-less Kong 3.9.3 reads a posted ``/config`` and words its answers.

Each function restates one piece of Kong's (or its libraries') source; the tests in
tests/sim/test_config_dialect.py hold the Lua-library parts to the real lyaml and lua-cjson.

- :func:`unserialize`: kong/db/declarative/init.lua ``_M:unserialize`` with no file name —
  ``cjson.safe`` first; when that gives no table, ``pcall(lyaml.load, contents)``; not a table →
  ``"expected an object"``; every failure is ``failed parsing declarative configuration: <err>``;
  the hash is ``ngx.md5(contents)``, of the very bytes posted.
- :func:`cjson_decode`: lua-cjson's decoding as it matters here. Python's ``json`` reads what
  kongsplit posts (``configtext.dump_json``) the way cjson does once three differences are put
  right: every number is a double (an integer past 2**53 is rounded, ``-0`` stays negative), a
  raw control character inside a string is accepted, a lone UTF-16 surrogate escape is refused.
  Duplicate keys (the last wins), ``NaN``/``Infinity``/``-Infinity``, ``[]``/``{}`` (both an
  empty Lua table) already agree. cjson also reads hand-written non-JSON numbers (``0x1F``,
  ``+1``, ``007``, ``nan``, ``1.``) that Python refuses; the simulator then reads such text with
  lyaml, as Kong would only if cjson had failed too (kongsplit never writes them).
- :func:`lyaml_error`: the message ``lyaml.load`` raises for text libyaml cannot parse
  (lyaml/init.lua ``parser_mt.__index.parse`` and ``error``: the problem, prefixed with the
  line:column of the last event parsed, libyaml's "at document…" tail cut).
- :func:`pl_pretty`: penlight's ``pl.pretty.write(t, "")``, which kong/db/errors.lua
  ``declarative_config`` uses for the message of a code-14 error.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import yaml

from kongsplit.kong import configtext

try:  # libyaml's parser, as configtext uses it
    from yaml._yaml import CParser

    _HAVE_LIBYAML = True
except ImportError:  # pragma: no cover - configtext reports the missing binding itself
    _HAVE_LIBYAML = False

__all__ = [
    "LYAML_NOT_A_STRING",
    "ParseFailure",
    "cjson_decode",
    "is_table",
    "lyaml_error",
    "md5",
    "pl_pretty",
    "unserialize",
]

# lyaml.load of a non-string (a table, a boolean, a null) under pcall: the C parser's argument
# check (Debian's lyaml 6.2.8 answers the same, see tests). Kong installs lyaml with luarocks
# under /usr/local (its Dockerfiles), which is where the Lua error's position points.
LYAML_NOT_A_STRING = (
    "/usr/local/share/lua/5.1/lyaml/init.lua:460: "
    "bad argument #1 to 'parser' (must provide a string argument)"
)


class ParseFailure(ValueError):
    """``_M:unserialize`` failed: ``str(self)`` is Kong's ``err`` ("failed parsing ...")."""


def md5(data: str | bytes) -> str:
    """``ngx.md5``: hex MD5 of the bytes (a Lua string is bytes; text is UTF-8)."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    return hashlib.md5(raw, usedforsecurity=False).hexdigest()


def is_table(value: Any) -> bool:
    """A Lua table: what a JSON object or array, or a YAML mapping or sequence, becomes."""
    return isinstance(value, dict | list)


# --- cjson ----------------------------------------------------------------------------------------
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _lua_number(text: str) -> int | float:
    """A JSON integer as the double cjson makes of it (strtod), kept an int where exact."""
    if len(text.lstrip("-")) <= 15:
        value = int(text)
        return -0.0 if value == 0 and text.startswith("-") else value
    number = float(text)
    return int(number) if math.isfinite(number) else number


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def cjson_decode(text: str) -> Any:
    """``cjson.decode(text)``, or ValueError where cjson fails (see the module docstring)."""
    value = json.loads(text, parse_int=_lua_number, strict=False)
    if _SURROGATE_ESCAPE.search(text) is not None and _has_lone_surrogate(value):
        raise ValueError("invalid unicode escape code")
    return value


# --- lyaml ----------------------------------------------------------------------------------------
def lyaml_error(text: str) -> str:
    """The message of the Lua error ``lyaml.load(text)`` raises on a YAML syntax error.

    lyaml keeps the start mark of the last event it read (1-based, ``0:0`` before the first) and
    reports libyaml's problem after it; this reads the same events with libyaml through PyYAML.
    """
    line = column = 0
    if not _HAVE_LIBYAML:  # pragma: no cover
        return f"{line}:{column}: A problem"
    parser = CParser(text)
    try:
        while True:
            event = parser.get_event()
            if event is None or isinstance(event, yaml.StreamEndEvent):
                return ""
            mark = event.start_mark
            if mark is not None:
                line, column = mark.line + 1, mark.column + 1
    except yaml.MarkedYAMLError as e:
        return f"{line}:{column}: {e.problem or 'A problem'}"
    except yaml.YAMLError as e:  # a reader error (bad encoding): no mark of its own
        return f"{line}:{column}: {getattr(e, 'reason', None) or e}"
    finally:
        parser.dispose()


def _lyaml_load(text: str) -> Any:
    """``lyaml.load(text)`` as Kong calls it; ParseFailure carries lyaml's error message."""
    try:
        return configtext.load(text, cut_at_nul=True)
    except configtext.KongYAMLError as e:
        syntax = lyaml_error(text)
        raise ParseFailure(syntax or str(e)) from None


def unserialize(contents: Any) -> tuple[dict[Any, Any] | list[Any], str]:
    """kong/db/declarative/init.lua ``_M:unserialize(contents)`` (no file name).

    ``contents`` is what the route found: the ``config`` parameter (usually a string, but a JSON
    body can make it a table, a number, a boolean or null) or the raw body (bytes). Returns the
    table and ``md5(contents)``; raises :class:`ParseFailure` with Kong's ``err``.
    """
    prefix = "failed parsing declarative configuration: "
    text: str
    if isinstance(contents, bytes):
        text = contents.decode("utf-8", "surrogateescape")
    elif isinstance(contents, str):
        text = contents
    elif isinstance(contents, bool) or contents is None or is_table(contents):
        # cjson.safe.decode refuses it ("string expected"); lyaml.load raises on it.
        raise ParseFailure(prefix + LYAML_NOT_A_STRING)
    else:  # a number: both libraries take it as the string tostring() makes of it
        text = format(contents, ".14g") if isinstance(contents, float) else str(contents)
    value: Any = None
    try:
        value = cjson_decode(text)
    except (ValueError, RecursionError):
        value = None
    if not is_table(value):
        try:
            value = _lyaml_load(text)
        except ParseFailure as e:
            raise ParseFailure(prefix + str(e)) from None
        if not is_table(value):
            raise ParseFailure(prefix + "expected an object")
    return value, md5(contents if isinstance(contents, bytes) else text)


# --- penlight's pretty.write(t, "") ---------------------------------------------------------------
_LUA_KEYWORDS = frozenset(
    (
        *("and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto"),
        *("if", "in", "local", "nil", "not", "or", "repeat", "return", "then", "true"),
        *("until", "while"),
    )
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _quote(text: str) -> str:
    """pl.stringx.quote_string: ``%q`` (long brackets when the text holds a newline)."""
    if "\n" in text and "\r" not in text:
        level = 0
        while f"]{'=' * level}]" in text or f"[{'=' * level}[" in text:
            level += 1
        lead = "\n" if text.startswith("\n") else ""
        return f"[{'=' * level}[{lead}{text}]{'=' * level}]"
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r")
    return '"' + escaped.replace("\0", "\\0") + '"'


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return format(value, ".14g")
    return "userdata: NULL"


def pl_pretty(value: Any) -> str:
    """``pl.pretty.write(value, "")``: the array part in order, then the other keys — strings
    sorted, each ``name=`` or ``["key"]=``, numbers ``[n]=`` — comma-separated, no spaces.

    A Python list stands for a Lua array whose ``None`` items are holes (cjson writes them as
    ``null``): the items before the first hole are the array part."""
    if isinstance(value, list):
        table: dict[Any, Any] = {n: item for n, item in enumerate(value, 1) if item is not None}
    elif isinstance(value, dict):
        table = value
    else:
        return _scalar(value)
    parts: list[str] = []
    used: set[int] = set()
    n = 1
    while n in table:
        parts.append(pl_pretty(table[n]))
        used.add(n)
        n += 1
    strings = sorted(k for k in table if isinstance(k, str))
    for key in strings:
        name = key if _IDENTIFIER.match(key) and key not in _LUA_KEYWORDS else f"[{_quote(key)}]"
        parts.append(f"{name}={pl_pretty(table[key])}")
    for key in table:
        if isinstance(key, int) and not isinstance(key, bool) and key not in used:
            parts.append(f"[{key}]={pl_pretty(table[key])}")
    return "{" + ",".join(parts) + "}"
