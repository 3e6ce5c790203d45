"""The real lyaml as an oracle: run tests/lua/lyaml_oracle.lua under luajit, compare Lua values.

`bash .ci/install-tools` puts a `luajit` with Debian's lyaml 6.2.8 and lua-cjson on its module
paths in `.tools/bin`; PATH is the fallback. With CI=true a missing tool fails the test.

Values are compared the way Lua sees them (:func:`lua_value`): a number is a double (an int and
the float of the same value are one number, as are 0 and -0; every NaN is the same NaN), a list
is a table with keys 1..n, lyaml's null and cjson's null are the same null.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".tools" / "bin"
ORACLE = ROOT / "tests" / "lua" / "lyaml_oracle.lua"

LuaValue = tuple[Any, ...]


def find_luajit() -> str:
    """luajit from .tools/bin or PATH; skip locally, fail in CI, when it is missing."""
    local = TOOLS_BIN / "luajit"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which("luajit")
    if found:
        return found
    message = f"luajit not found in {TOOLS_BIN} or PATH: run `bash .ci/install-tools`"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def lua_value(value: Any) -> LuaValue:
    """A Python value as the Lua value it stands for, in a comparable form."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, str):
        return ("str", value)
    if value is None:
        return ("null",)
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf if value > 0 else -math.inf
        if number != number:
            return ("num", "nan")
        return ("num", number + 0.0)  # -0.0 + 0.0 == 0.0: Lua's 0 == -0
    if isinstance(value, (list, tuple)):
        pairs = [(lua_value(n), lua_value(item)) for n, item in enumerate(value, 1)]
    elif isinstance(value, dict):
        pairs = [(lua_value(k), lua_value(item)) for k, item in value.items()]
    else:
        raise TypeError(f"no Lua value for a {type(value).__name__}")
    return ("table", tuple(sorted(pairs, key=repr)))


def from_tagged(value: Any) -> LuaValue:
    """The oracle's tagged form (see lyaml_oracle.lua) as :func:`lua_value` makes it."""
    if isinstance(value, (str, bool)):
        return lua_value(value)
    if "num" in value:
        return lua_value(float(value["num"]))
    if "null" in value:
        return ("null",)
    pairs = [(from_tagged(k), from_tagged(item)) for k, item in (value["table"] or [])]
    return ("table", tuple(sorted(pairs, key=repr)))


def to_python(value: LuaValue) -> Any:
    """A :func:`lua_value` as plain Python, for reading it in a test (numbers as floats; a table
    with keys 1..n as a list, an empty table as an empty list)."""
    kind = value[0]
    if kind in ("str", "bool", "num"):
        return float(value[1]) if kind == "num" else value[1]
    if kind == "null":
        return None
    pairs = {to_python(k): to_python(v) for k, v in value[1]}
    if set(pairs) == {float(n) for n in range(1, len(pairs) + 1)}:
        return [pairs[float(n)] for n in range(1, len(pairs) + 1)]
    return pairs


def to_tagged(value: Any) -> Any:
    """A Python value in the oracle's tagged form (for dump/export requests)."""
    if isinstance(value, (str, bool)):
        return value
    if value is None:
        return {"null": True}
    if isinstance(value, int):
        return {"num": str(value)}
    if isinstance(value, float):
        return {"num": repr(value)}
    if isinstance(value, (list, tuple)):
        return {"table": [[{"num": str(n)}, to_tagged(item)] for n, item in enumerate(value, 1)]}
    if isinstance(value, dict):
        return {"table": [[to_tagged(k), to_tagged(item)] for k, item in value.items()]}
    raise TypeError(f"no tagged form for a {type(value).__name__}")


@dataclass(frozen=True)
class Answer:
    ok: bool
    value: Any = None  # tagged (see lyaml_oracle.lua), when ok
    error: str = ""

    def lua(self) -> LuaValue:
        assert self.ok, f"lyaml failed: {self.error}"
        return from_tagged(self.value)


class Lyaml:
    """One luajit process per call, many requests per process (a batch costs ~20 ms)."""

    def __init__(self, luajit: str) -> None:
        self.luajit = luajit

    def run(self, mode: str, requests: list[Any], *, timeout: float = 60) -> list[Answer]:
        if not requests:
            return []
        proc = subprocess.run(
            [self.luajit, str(ORACLE), mode],
            input=json.dumps(requests),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert proc.returncode == 0, f"lyaml oracle ({mode}) failed:\n{proc.stderr[-3000:]}"
        answers = json.loads(proc.stdout) or []
        assert len(answers) == len(requests), proc.stdout[:500]
        return [Answer(a["ok"], a.get("value"), a.get("error", "")) for a in answers]

    def implicit(self, texts: list[str]) -> list[Answer]:
        """lyaml's default implicit resolver on each text."""
        return self.run("implicit", texts)

    def load(self, texts: list[str]) -> list[Answer]:
        return self.run("load", texts)

    def dump(self, values: list[Any]) -> list[Answer]:
        """``lyaml.dump({value})`` for each value; the answer's value is the text."""
        return self.run("dump", [to_tagged(v) for v in values])

    def export(self, config: dict[str, Any]) -> str:
        """Kong's ``GET /config`` text for ``config`` (entity lists in their dict order)."""
        order = [k for k, v in config.items() if isinstance(v, list)]
        (answer,) = self.run("export", [{"config": to_tagged(config), "order": order}])
        assert answer.ok, answer.error
        assert isinstance(answer.value, str)
        return answer.value

    def unserialize(self, text: str) -> tuple[str, LuaValue]:
        """How Kong reads a posted ``config`` string: (``"cjson"`` or ``"lyaml"``, the value)."""
        (answer,) = self.run("unserialize", [text])
        assert answer.ok, f"Kong would refuse the config: {answer.error}"
        return answer.value["parser"], from_tagged(answer.value["config"])
