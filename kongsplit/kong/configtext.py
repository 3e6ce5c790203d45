"""Kong's own YAML dialect for DB-less ``/config``: read as lyaml 6.2.8 reads, post back as JSON.

Kong pins ``lyaml == 6.2.8`` (kong-3.9.3-0.rockspec) and uses it both ways:

- ``GET /config`` answers ``{"config": "<YAML>"}`` written by ``lyaml.dump``, one fragment per
  entity (kong/api/routes/config.lua ``GET`` → kong/db/declarative/export.lua
  ``export_from_db`` → ``fd_emitter`` → ``to_yaml_string``).
- ``POST /config`` with a string ``config`` decodes it with cjson first and only when that does
  not give a table with ``lyaml.load`` (kong/db/declarative/init.lua ``_M:unserialize``: with no
  file name both are tried, cjson first); lyaml's nulls become ``ngx.null``, cjson's already are.
- The node's configuration hash is ``ngx.md5`` of that very string (``_M:unserialize`` returns
  ``md5(contents)``; kong/api/routes/config.lua passes it to ``load_into_cache_with_events``,
  which stores it unless the configuration holds no entity at all: then
  kong/db/declarative/import.lua ``load_into_cache`` stores 32 zeros instead).

lyaml writes a string unquoted whenever its *own* implicit resolver reads the plain text back as
that string (lyaml/init.lua ``dump_scalar``: ``implicit_scalar(value) ~= value`` → single
quotes). Its resolver is not YAML 1.1's, so the text must be read with exactly its rules:
PyYAML reads lyaml's unquoted ``2024-01-02`` as a date and ``0b1`` as 1, cannot read ``=``, and
writes ``08``, ``1e3``, ``1:60``, ``+.5`` unquoted, which lyaml reads as numbers. The rules,
restated from lyaml/init.lua (``default.implicit_scalar``, ``load_scalar``, ``load_map``) and
lyaml/implicit.lua, with Lua's ``tonumber`` as LuaJIT's ``lj_strscan_scan`` defines it (Kong
runs on LuaJIT):

- A *plain* scalar goes through, in this order, the first that answers wins:
  null (``''``, ``~``, ``null``, ``Null``, ``NULL``), octal (``[+-]?0_*[0-7][0-7_]*``: ``012`` is
  10), decimal (``[+-]?_*[0-9][0-9_]*``, underscores dropped: ``08`` is 8), float (whatever
  ``tonumber`` accepts once every ``_`` is removed, *if* the text holds ``.``, ``e`` or ``E``: so
  ``0x1E`` and ``0X1E`` are 30 but ``0X1F`` stays a string), bool (true/false/yes/no/on/off in
  lower, Capitalised and UPPER case; not ``y``/``n``), ``.inf``-style, ``.nan``-style,
  hexadecimal (``[+-]?0x_*[0-9a-fA-F][0-9a-fA-F_]*``, lower-case ``x`` only), binary
  (``[+-]?0b_*[01][01_]+``, at least two digits), sexagesimal (``[+-]?[0-9]+:[0-5]?[0-9][:0-9]*``,
  each group × 60: ``1:30`` is 90), sexagesimal float (the same with ``.[0-9]+`` after), else the
  string itself. No timestamps, no ``=`` value, no ``0o`` octal.
- A few texts make lyaml *fail* (octal/binary with a trailing ``_``, a ``-`` decimal or hex too
  big for a double): Kong can neither load nor export them; :func:`load` raises too.
- Quoted and block scalars are strings. The tags ``!!str``, ``!!int``, ``!!float``, ``!!bool``
  (also ``y``/``n``) and ``!!null`` convert their text whatever its style; other tags are ignored.
- Anchors and aliases share the value. A key ``<<`` (quoted or not) or tagged ``!!merge`` merges
  a mapping, or each table of a sequence, into its mapping: keys already there win, keys that come
  later override. Duplicate keys: the last wins. Every document is read, the first is returned.
  A mapping or sequence used as a key (lyaml keys a Lua table by a table) is refused: no Python
  mapping can hold one, and no Kong entity has one.
- Numbers are Lua numbers (doubles): an integer form gives a Python ``int`` (rounded like the
  double lyaml holds when it is beyond 2**53), the float forms a ``float``. ``-0`` reads as 0.
  Kong's export writes a number with LuaJIT's ``tostring`` (14 significant digits), so one with
  more digits is already rounded in the text: kongsplit posts back what the text says, as
  Kong's own export → import would; nothing can recover the lost digits.
- One deliberate difference, unless asked for: lyaml's C binding hands every scalar to Lua with
  ``lua_pushstring`` (lyaml/ext/yaml/lyaml.h ``RAWSET_EVENTF``), which ends it at its first NUL.
  A NUL can only reach an export as the ``\0`` escape of a NUL that Kong holds, so :func:`load`
  keeps the whole string by default (what Kong holds, and what cjson keeps on the way back);
  ``load(text, cut_at_nul=True)`` reads exactly as ``lyaml.load`` (for the simulator's import).

Posting the edited config as JSON text keeps every value's type and bytes exactly as lyaml
loaded them (cjson reads strings as strings and numbers as doubles), and the hash is then simply
the MD5 of that text. :func:`dump_lyaml`/:func:`export_lyaml` write lyaml's own output (through
libyaml's emitter with lyaml's settings) for the simulator's ``GET /config``.

Pure: no I/O. libyaml's parser (PyYAML's C binding) gives the events; the rules above make the
values.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)

try:  # libyaml's C parser and emitter: in every PyYAML binary wheel
    from yaml._yaml import CParser
    from yaml.cyaml import CDumper

    _NO_LIBYAML = ""
except ImportError as e:  # a PyYAML built from source without libyaml: only DB-less needs it
    _NO_LIBYAML = f"PyYAML has no libyaml binding ({e}); install PyYAML's binary wheel"

__all__ = [
    "KongYAMLError",
    "config_hash",
    "dump_json",
    "dump_json_async",
    "dump_lyaml",
    "export_lyaml",
    "json_problems",
    "load",
    "load_async",
    "reads_back_as_string",
    "resolve_plain",
]


class KongYAMLError(ValueError):
    """Text lyaml (and so Kong) cannot read, or a value Kong cannot be given back unchanged."""


# --- Lua's tonumber, as LuaJIT's lj_strscan_scan (STRSCAN_OPT_TONUM) accepts it -------------------
# Leading/trailing ASCII white space; a sign only when the text does not start with a digit (the
# regex allows it there too: a digit-first text has neither); inf/infinity/nan in any case;
# decimal with one optional point and e-exponent; 0x hex with point and p-exponent; 0b binary
# (64 significant digits at most, no point); no suffixes. An exponent of 2**20 or more, or as many
# significant fraction digits, is refused (not read as inf or 0).
_WS = "[ \t\n\v\f\r]*"
_TONUMBER_SPECIAL = re.compile(_WS + r"([+-]?)(inf(?:inity)?|nan)" + _WS, re.IGNORECASE | re.ASCII)
_TONUMBER = re.compile(
    _WS
    + r"([+-]?)(?:"
    + r"0[xX](?P<hm>[0-9a-fA-F]*\.?[0-9a-fA-F]*)(?:[pP](?P<hx>[+-]?[0-9]+))?"
    + r"|0[bB](?P<bm>[0-9]*)"
    + r"|(?P<dm>[0-9]*\.?[0-9]*)(?:[eE](?P<dx>[+-]?[0-9]+))?"
    + r")"
    + _WS,
    re.ASCII,
)
_MAXEXP = 1 << 20  # lj_strscan.c STRSCAN_MAXEXP


def _mantissa_ok(mant: str, exp: str | None) -> bool:
    """At least one digit; exponent and significant fraction digits under STRSCAN_MAXEXP."""
    whole, _, frac = mant.partition(".")
    if not (whole or frac):
        return False
    if exp is not None:
        digits = exp.lstrip("+-").lstrip("0")
        if len(digits) > 7 or (digits and int(digits) >= _MAXEXP):
            return False
    return not (len(frac.rstrip("0")) >= _MAXEXP and (whole + frac).strip("0"))


def _tonumber(text: str) -> float | None:
    """``tonumber(text)`` under LuaJIT: the double it gives, or None where it gives nil."""
    m = _TONUMBER.fullmatch(text)
    if m is None:
        m = _TONUMBER_SPECIAL.fullmatch(text)
        if m is None:
            return None
        if m.group(2).lower() == "nan":
            return math.nan
        return -math.inf if m.group(1) == "-" else math.inf
    neg = m.group(1) == "-"
    if m.group("dm") is not None:
        mant, exp = m.group("dm"), m.group("dx")
        if not _mantissa_ok(mant, exp):
            return None
        value = float(mant + ("e" + exp if exp is not None else ""))
    elif m.group("hm") is not None:
        mant, exp = m.group("hm"), m.group("hx")
        if not _mantissa_ok(mant, exp):
            return None
        try:
            value = float.fromhex("0x" + mant + ("p" + exp if exp is not None else ""))
        except OverflowError:
            value = math.inf
    else:
        digits = m.group("bm").lstrip("0")
        if not m.group("bm") or len(digits) > 64 or digits.strip("01"):
            return None
        value = float(int(digits, 2)) if digits else 0.0
    return -value if neg else value


def _lua_int(value: float) -> int | None:
    """lyaml/implicit.lua ``int`` after ``tonumber``: the integral double, else nil (inf, NaN)."""
    return int(value) if math.isfinite(value) and value == math.floor(value) else None


class _LyamlFailure(Exception):
    """A text on which lyaml's resolver raises a Lua error (arithmetic on nil)."""


def _fail(text: str, why: str) -> _LyamlFailure:
    return _LyamlFailure(f"lyaml cannot read {text!r}: {why}")


def _digits_in_base(text: str, rest: str, base: float) -> float:
    """lyaml's digit loop (``gsub(rest, '_*(.)', ...)``): r = r*base + digit, in doubles."""
    if rest.endswith("_"):
        raise _fail(text, "a trailing '_' is read as a digit (Lua error in lyaml/implicit.lua)")
    r = 0.0
    for ch in rest:
        if ch != "_":
            r = r * base + int(ch)
    return r


# --- lyaml/implicit.lua, one function each, in the order lyaml/init.lua tries them ----------------
_NULL_WORDS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOL_WORDS = {
    **dict.fromkeys(("true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"), True),
    **dict.fromkeys(("false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"), False),
}
_INF_WORDS = {
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_NAN_WORDS = frozenset({".nan", ".NaN", ".NAN"})
_OCTAL = re.compile(r"([+-]?)0_*([0-7][0-7_]*)", re.ASCII)
_DECIMAL = re.compile(r"([+-]?)_*([0-9][0-9_]*)", re.ASCII)
_FLOAT_MARK = re.compile(r"[.eE]")
_HEX = re.compile(r"([+-]?)(0x_*[0-9a-fA-F][0-9a-fA-F_]*)", re.ASCII)
_BINARY = re.compile(r"([+-]?)0b_*([01][01_]+)", re.ASCII)
_SEXAGESIMAL = re.compile(r"([+-]?)([0-9]+:[0-5]?[0-9][:0-9]*)", re.ASCII)
_SEXFLOAT = re.compile(r"([+-]?)([0-9]+:[0-5]?[0-9][:0-9]*)(\.[0-9]+)", re.ASCII)
_GROUP = re.compile(r"[0-9]+", re.ASCII)
# First characters that can begin anything but a string (null, bool, number forms, white space
# tonumber skips); any other first character makes a plain scalar a string straight away.
_MAYBE_NOT_STRING = frozenset("~nNtTfFyYoO+-._0123456789 \t\n\v\f\r")


def _signed(sign: str, value: float) -> float:
    return -value if sign == "-" else value


def _octal(text: str) -> int | float | None:
    m = _OCTAL.fullmatch(text)
    if m is None:
        return None
    return _as_int(_signed(m.group(1), _digits_in_base(text, m.group(2), 8.0)))


def _decimal(text: str) -> int | float | None:
    m = _DECIMAL.fullmatch(text)
    if m is None:
        return None
    digits = m.group(2).replace("_", "")
    if len(digits) <= 15:
        value: int | None = int(digits)
    else:
        value = _lua_int(float(digits))
    if value is None:
        if m.group(1) == "-":
            raise _fail(text, "too big for a double, then negated (Lua error in lyaml)")
        return None
    return -value if m.group(1) == "-" else value


def _float(text: str) -> float | None:
    value = _tonumber(text.replace("_", "") if "_" in text else text)
    if value is not None and _FLOAT_MARK.search(text) is not None:
        return value
    return None


def _hexadecimal(text: str) -> int | float | None:
    m = _HEX.fullmatch(text)
    if m is None:
        return None
    number = int(m.group(2).replace("_", "")[2:], 16)
    try:
        value = _lua_int(float(number)) if number >= 2**53 else number
    except OverflowError:
        value = None
    if value is None:
        if m.group(1) == "-":
            raise _fail(text, "too big for a double, then negated (Lua error in lyaml)")
        return None
    return -value if m.group(1) == "-" else value


def _binary(text: str) -> int | float | None:
    m = _BINARY.fullmatch(text)
    if m is None:
        return None
    return _as_int(_signed(m.group(1), _digits_in_base(text, m.group(2), 2.0)))


def _sexagesimal_base(text: str, rest: str) -> float:
    r = 0.0
    for group in _GROUP.findall(rest):
        value = _lua_int(float(group))
        if value is None:
            raise _fail(text, "a group too big for a double (Lua error in lyaml)")
        r = r * 60.0 + value
    return r


def _sexagesimal(text: str) -> int | float | None:
    m = _SEXAGESIMAL.fullmatch(text)
    if m is None:
        return None
    return _as_int(_signed(m.group(1), _sexagesimal_base(text, m.group(2))))


def _sexfloat(text: str) -> float | None:
    m = _SEXFLOAT.fullmatch(text)
    if m is None:
        return None
    return _signed(m.group(1), _sexagesimal_base(text, m.group(2)) + float(m.group(3)))


def _as_int(value: float) -> int | float:
    """An integer form's double as a Python int (inf stays a float: Lua keeps it)."""
    return int(value) if math.isfinite(value) else value


def _implicit(text: str) -> Any:
    """lyaml's default ``implicit_scalar``; raises _LyamlFailure where lyaml raises."""
    if text in _NULL_WORDS:
        return None
    if text[0] not in _MAYBE_NOT_STRING:
        return text
    for resolver in _CHAIN:
        value = resolver(text)
        if value is not None:
            return value
    return text


_CHAIN: tuple[Callable[[str], Any], ...] = (
    _octal,
    _decimal,
    _float,
    _BOOL_WORDS.get,
    _INF_WORDS.get,
    lambda text: math.nan if text in _NAN_WORDS else None,
    _hexadecimal,
    _binary,
    _sexagesimal,
    _sexfloat,
)


def resolve_plain(text: str) -> Any:
    """What lyaml 6.2.8 makes of ``text`` as an untagged plain scalar (None for its null).

    Raises :class:`KongYAMLError` where lyaml itself fails on the text.
    """
    try:
        return _implicit(text)
    except _LyamlFailure as e:
        raise KongYAMLError(str(e)) from None


def reads_back_as_string(text: str) -> bool:
    """True when lyaml writes ``text`` unquoted: its resolver reads the plain text as itself.

    False for texts lyaml quotes (numbers, booleans, nulls in disguise). Raises
    :class:`KongYAMLError` for the texts lyaml cannot dump at all.
    """
    return isinstance(resolve_plain(text), str)


# --- explicit tags (lyaml/explicit.lua) ----------------------------------------------------------
_TAG = "tag:yaml.org,2002:"
_MERGE_TAG = _TAG + "merge"
_YN = {"y": True, "Y": True, "n": False, "N": False}


def _first(text: str, *resolvers: Callable[[str], Any]) -> Any:
    for resolver in resolvers:
        value = resolver(text)
        if value is not None:
            return value
    return None


def _to_float(resolver: Callable[[str], int | float | None]) -> Callable[[str], float | None]:
    def as_float(text: str) -> float | None:
        value = resolver(text)
        return None if value is None else float(value)

    return as_float


_EXPLICIT: dict[str, Callable[[str], Any]] = {
    _TAG + "bool": lambda text: _first(text, _BOOL_WORDS.get, _YN.get),
    _TAG + "float": lambda text: _first(
        text,
        _float,
        lambda t: math.nan if t in _NAN_WORDS else None,
        _INF_WORDS.get,
        _to_float(_octal),
        _to_float(_decimal),
        _to_float(_hexadecimal),
        _to_float(_binary),
        _sexfloat,
    ),
    _TAG + "int": lambda text: _first(text, _octal, _decimal, _hexadecimal, _binary, _sexagesimal),
    _TAG + "str": lambda text: text,
}
_NULL_TAG = _TAG + "null"


# --- the loader ----------------------------------------------------------------------------------
# libyaml (PyYAML's C parser) produces the events; the values are built here with an explicit
# stack, which is several times faster than PyYAML's node composer and has no depth limit of its
# own. lyaml builds the same way (lyaml/init.lua ``load_node``/``load_map``/``load_sequence``).
_MAP, _SEQ, _SCALAR = "mapping", "sequence", "scalar"  # what an anchor stands for
_NOT_YET = object()  # a mapping frame waiting for its key


class _Frame:
    """A mapping or sequence being built; for a mapping, the key waiting for its value."""

    __slots__ = ("container", "is_map", "key", "key_line", "merge")

    def __init__(self, container: Any) -> None:
        self.container = container  # a dict (is_map) or a list
        self.is_map = isinstance(container, dict)
        self.key: Any = _NOT_YET
        self.key_line = 0
        self.merge = False


def _merge(mapping: dict[Any, Any], value: Any, kind: str, line: int) -> None:
    """lyaml ``load_map`` on a merge key: fill in the keys the mapping does not have yet."""
    if kind == _MAP:
        tables = [value]
    elif kind == _SEQ:
        tables = value
    else:
        raise KongYAMLError(
            f"line {line}: invalid '<<' merge value {value!r} "
            "(lyaml merges only a mapping or a sequence of them)"
        )
    for n, table in enumerate(tables, 1):
        if table is None:
            continue  # lyaml's null is an empty table: merging it adds nothing
        if isinstance(table, list):
            table = dict(enumerate(table, 1))
        elif not isinstance(table, dict):
            raise KongYAMLError(f"line {line}: invalid '<<' sequence element {n}: {table!r}")
        for key, item in table.items():
            if key not in mapping:
                mapping[key] = item


def _scalar(event: Any, cache: dict[str, Any], cut_at_nul: bool) -> Any:
    """lyaml/init.lua ``load_scalar``: an explicit tag converts, else a plain scalar resolves."""
    text: str = event.value
    if cut_at_nul and "\0" in text:
        text = text.partition("\0")[0]
    tag = event.tag
    if tag is not None:
        if tag == _NULL_TAG:
            return None
        explicit = _EXPLICIT.get(tag)
        if explicit is not None:
            value = explicit(text)
            if value is None:
                line = event.start_mark.line + 1
                raise KongYAMLError(
                    f"line {line}: invalid {tag!r} value {text!r} (lyaml refuses it)"
                )
            return value
    if event.style != "":
        return text
    value = cache.get(text, _NOT_YET)
    if value is _NOT_YET:
        value = cache[text] = _implicit(text)
    return value


def _read(parser: CParser, cut_at_nul: bool) -> Any:
    """Every document of the stream; the first one's value (None when there is none)."""
    first: Any = None
    documents = 0
    anchors: dict[str, tuple[Any, str]] = {}
    stack: list[_Frame] = []
    cache: dict[str, Any] = {}  # plain text → value: configs repeat most of their values
    while True:
        event: Any = parser.get_event()  # libyaml's events, typed loosely by PyYAML
        cls = type(event)
        if cls is ScalarEvent:
            kind = _SCALAR
            # Fast path for the usual untagged plain scalar; _scalar does everything else.
            if event.tag is None and event.style == "" and not cut_at_nul:
                value = cache.get(event.value, _NOT_YET)
                if value is _NOT_YET:
                    value = cache[event.value] = _implicit(event.value)
            else:
                value = _scalar(event, cache, cut_at_nul)
            if event.anchor is not None:
                anchors[event.anchor] = (value, kind)
        elif cls is MappingStartEvent or cls is SequenceStartEvent:
            container: dict[Any, Any] | list[Any] = {} if cls is MappingStartEvent else []
            if event.anchor is not None:
                anchors[event.anchor] = (container, _MAP if cls is MappingStartEvent else _SEQ)
            if stack and stack[-1].is_map and stack[-1].key is _NOT_YET:
                raise KongYAMLError(
                    f"line {event.start_mark.line + 1}: a mapping or sequence as a mapping key "
                    "(lyaml keys a Lua table by it; no Kong entity has one)"
                )
            stack.append(_Frame(container))
            continue
        elif cls is MappingEndEvent or cls is SequenceEndEvent:
            frame = stack.pop()
            value, kind = frame.container, (_MAP if frame.is_map else _SEQ)
        elif cls is AliasEvent:
            found = anchors.get(event.anchor)
            if found is None:
                raise KongYAMLError(
                    f"line {event.start_mark.line + 1}: invalid reference: {event.anchor}"
                )
            value, kind = found
            if kind != _SCALAR and stack and stack[-1].is_map and stack[-1].key is _NOT_YET:
                raise KongYAMLError(
                    f"line {event.start_mark.line + 1}: a mapping or sequence as a mapping key "
                    "(lyaml keys a Lua table by it; no Kong entity has one)"
                )
        elif cls is DocumentEndEvent:
            anchors.clear()  # anchors do not cross documents
            continue
        elif event is None or cls is StreamEndEvent:
            return first
        else:  # StreamStartEvent, DocumentStartEvent
            continue

        # A node is complete: it is a document, a sequence item, a key, or a value.
        if not stack:
            if documents == 0:
                first = value
            documents += 1
            continue
        frame = stack[-1]
        if not frame.is_map:
            frame.container.append(value)
        elif frame.key is _NOT_YET:
            if isinstance(value, float) and value != value:
                raise KongYAMLError(f"line {event.start_mark.line + 1}: NaN as a mapping key")
            frame.key, frame.key_line = value, event.start_mark.line + 1
            frame.merge = (value == "<<" and isinstance(value, str)) or (
                cls is ScalarEvent and event.tag == _MERGE_TAG
            )
        else:
            if frame.merge:
                _merge(frame.container, value, kind, frame.key_line)
            else:
                frame.container[frame.key] = value
            frame.key = _NOT_YET


def load(text: str, *, cut_at_nul: bool = False) -> Any:
    """Read YAML (or JSON) text exactly as lyaml 6.2.8 does: every document, the first returned.

    None for an empty stream. Raises :class:`KongYAMLError` for text lyaml cannot read (a YAML
    syntax error included). ``cut_at_nul``: end strings at a NUL as lyaml does (see above).
    """
    if _NO_LIBYAML:
        raise KongYAMLError(_NO_LIBYAML)
    parser = CParser(text)
    try:
        return _read(parser, cut_at_nul)
    except yaml.YAMLError as e:
        raise KongYAMLError(f"not valid YAML: {e}") from e
    except _LyamlFailure as e:
        raise KongYAMLError(str(e)) from None
    finally:
        parser.dispose()


# --- JSON for POST /config -----------------------------------------------------------------------
# cjson (Kong's first try) reads NaN/Infinity (lua-cjson decode_invalid_numbers, on by default) and
# numbers into doubles exactly as lyaml's tonumber does. Object keys are always strings in JSON.
_ENCODE = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=True, check_circular=True
).encode


def json_problems(config: Any, *, limit: int = 10) -> list[str]:
    """Where JSON would not give Kong back the same Lua value: non-string mapping keys, values no
    JSON can hold, a mapping or sequence inside itself. Empty when :func:`dump_json` is faithful
    (lists at most ``limit`` places). A value shared by two places (a YAML alias) is fine."""
    problems: list[str] = []
    stack: list[tuple[str, Any, bool]] = [("$", config, False)]
    inside: set[int] = set()  # the containers on the current path
    done: set[int] = set()
    while stack and len(problems) < limit:
        path, value, leaving = stack.pop()
        if leaving:
            inside.discard(id(value))
            done.add(id(value))
            continue
        if isinstance(value, (dict, list, tuple)):
            if id(value) in inside:
                problems.append(f"{path}: contains itself")
                continue
            if id(value) in done:
                continue
            inside.add(id(value))
            stack.append((path, value, True))
            if isinstance(value, dict):
                for key, item in value.items():
                    if isinstance(key, str):
                        stack.append((f"{path}.{key}", item, False))
                    else:
                        problems.append(f"{path}: key {key!r} is not a string (JSON makes it one)")
            else:
                stack.extend((f"{path}[{n}]", item, False) for n, item in enumerate(value))
        elif value is not None and not isinstance(value, (str, int, float, bool)):
            problems.append(f"{path}: a {type(value).__name__} has no JSON form")
    return problems


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plainly_json(config: Any) -> bool:
    """The quick check behind :func:`dump_json`: str keys, JSON types, no container twice.

    False sends the config to :func:`json_problems`, which says where (and forgives a value
    shared by two places)."""
    stack = [config]
    seen: set[int] = set()
    while stack:
        value = stack.pop()
        if id(value) in seen:
            return False
        seen.add(id(value))
        items = value.values() if type(value) is dict else value
        if type(value) is dict and not all(type(k) is str for k in value):
            return False
        for item in items:
            kind = type(item)
            if kind is dict or kind is list:
                stack.append(item)
            elif kind not in _SCALARS:
                return False
    return True


def dump_json(config: Any) -> str:
    """The text to post as ``config``: compact JSON that cjson reads into the same Lua values.

    Raises :class:`KongYAMLError` (naming the places) where JSON would change a value. Each
    top-level entity is encoded on its own, so a big config never holds the GIL in one long call.
    """
    if type(config) not in (dict, list) or not _plainly_json(config):
        problems = json_problems(config)
        if problems:
            raise KongYAMLError("cannot post this configuration unchanged: " + "; ".join(problems))
    if not isinstance(config, dict):
        return _ENCODE(config)
    parts = []
    for key, value in config.items():
        if isinstance(value, list) and value:
            body = ",".join([_ENCODE(item) for item in value])
            parts.append(f"{_ENCODE(key)}:[{body}]")
        else:
            parts.append(f"{_ENCODE(key)}:{_ENCODE(value)}")
    return "{" + ",".join(parts) + "}"


def config_hash(text: str) -> str:
    """Kong's configuration hash for a posted string: the hex MD5 of its UTF-8 bytes.

    kong/db/declarative/init.lua ``_M:unserialize`` (``md5(contents)``). Kong records 32 zeros
    instead when the configuration holds no entity (kong/db/declarative/import.lua
    ``load_into_cache``).
    """
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


async def load_async(text: str) -> Any:
    """:func:`load` in a worker thread, so a large config does not stall the event loop."""
    return await asyncio.to_thread(load, text)


async def dump_json_async(config: Any) -> str:
    """:func:`dump_json` in a worker thread."""
    return await asyncio.to_thread(dump_json, config)


# --- lyaml's own output (for the simulator's GET /config) --------------------------------------
def _lua_tostring(number: float) -> str:
    """LuaJIT ``tostring`` of a finite number: ``%.14g``, an exact tie rounded away from zero.

    LuaJIT formats numbers itself (lj_strfmt_num.c ``lj_strfmt_wfnum``), and until its
    round-to-even fix of December 2025 it rounded a tie up (``nd_add_m10e(..., 5, ...)``): Kong's
    OpenResty LuaJIT and Debian's both do, so 497845576068065 is written 4.9784557606807e+14
    where C (and Python) write ...806e+14.
    """
    if number == 0:
        return "-0" if math.copysign(1.0, number) < 0 else "0"
    exact = Decimal(number)
    rounded = exact.quantize(Decimal((0, (1,), exact.adjusted() - 13)), rounding=ROUND_HALF_UP)
    point = rounded.adjusted()  # the exponent of the first significant digit
    negative, digit_tuple, _ = rounded.as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    sign = "-" if negative else ""
    if point < -4 or point >= 14:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if point < 0 else '+'}{abs(point):02d}"
    if point < 0:
        return f"{sign}0.{'0' * (-point - 1)}{digits}"
    whole, fraction = digits[: point + 1].ljust(point + 1, "0"), digits[point + 1 :]
    return f"{sign}{whole}{'.' + fraction if fraction else ''}"


def _scalar_event(value: Any) -> ScalarEvent:
    """lyaml/init.lua ``dump_null``/``dump_scalar`` for one value."""
    style: str | None = None  # libyaml's plain style
    if value is None:
        text = "~"
    elif isinstance(value, str):
        text = value
        try:
            quoted = not isinstance(_implicit(value), str)
        except _LyamlFailure as e:
            raise KongYAMLError(f"lyaml cannot dump this string: {e}") from None
        if quoted:
            style = "'"
        elif "\n" in value:
            style = "|"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf if value > 0 else -math.inf
        if number != number:
            text = ".nan"
        elif math.isinf(number):
            text = ".inf" if number > 0 else "-.inf"
        else:
            text = _lua_tostring(number)
    else:
        raise KongYAMLError(f"lyaml cannot dump a {type(value).__name__}")
    return ScalarEvent(None, None, (True, True), text, style=style)


def _node_events(value: Any) -> Iterator[Event]:
    if isinstance(value, dict) and value:
        yield MappingStartEvent(None, None, True, flow_style=False)
        for key, item in value.items():
            yield from _node_events(key)
            yield from _node_events(item)
        yield MappingEndEvent()
    elif isinstance(value, (list, tuple, dict)):
        # A Lua table with no keys is a sequence to lyaml: an empty mapping is written "[]".
        yield SequenceStartEvent(None, None, True, flow_style=False)
        for item in value:
            yield from _node_events(item)
        yield SequenceEndEvent()
    else:
        yield _scalar_event(value)


def _document_events(value: Any) -> Iterator[Event]:
    yield StreamStartEvent(encoding="utf-8")
    yield DocumentStartEvent(explicit=True)
    yield from _node_events(value)
    yield DocumentEndEvent(explicit=True)
    yield StreamEndEvent()


def dump_lyaml(value: Any) -> str:
    """``lyaml.dump({value})``: the same events through libyaml's emitter, with lyaml's settings
    (unicode on, width 2 — which libyaml turns into 80). Byte for byte lyaml's output wherever the
    order of mapping keys agrees (Lua's ``pairs`` order is its own; Python's is insertion)."""
    if _NO_LIBYAML:
        raise KongYAMLError(_NO_LIBYAML)
    text = yaml.emit(_document_events(value), Dumper=CDumper, allow_unicode=True, width=2)
    assert isinstance(text, str)
    return text


def _to_yaml_string(value: Any) -> str:
    """kong/db/declarative/export.lua ``to_yaml_string``: the dump without "---\\n" and "...\\n"."""
    return dump_lyaml(value)[4:-4]


def export_lyaml(config: Mapping[str, Any]) -> str:
    """The text Kong's ``GET /config`` returns for ``config`` (export.lua ``fd_emitter``).

    The non-list keys (``_format_version``, ``_transform``) form the first fragment; then every
    entity is its own ``{name: [entity]}`` fragment, the repeated ``name:`` line dropped after the
    first of a kind. An entity type with no entity writes nothing.
    """
    top = {k: v for k, v in config.items() if not isinstance(v, list)}
    out = [_to_yaml_string(top)] if top else []
    for name, entities in config.items():
        if not isinstance(entities, list):
            continue
        for n, entity in enumerate(entities):
            fragment = _to_yaml_string({name: [entity]})
            out.append(fragment if n == 0 else fragment.split("\n", 1)[1])
    return "".join(out)
