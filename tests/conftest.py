"""Suite-wide fixtures: every test must leave no asyncio task running behind it."""

from __future__ import annotations

import asyncio
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest


def _missing_test_dependencies() -> list[str]:
    """The distributions pyproject.toml names for the tests (the package's own and its
    ``test`` extra) that this interpreter lacks: run with a bare ``python3 -m pytest``, the
    suite says so in one line instead of an INTERNALERROR about unknown ini options and 28
    import errors."""
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    missing = []
    for requirement in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        name = re.match(r"[A-Za-z0-9._-]+", requirement)
        if name is None:
            continue
        try:
            importlib.metadata.distribution(name.group(0))
        except importlib.metadata.PackageNotFoundError:
            missing.append(name.group(0))
    return missing


if _missing := _missing_test_dependencies():
    # One line, then out: pytest would wrap any exception raised here in an import-error
    # report (and its own INTERNALERROR about the ini options pytest-asyncio defines).
    sys.stderr.write(
        f"kongsplit tests: this Python ({sys.executable}) lacks the test dependencies "
        f"({', '.join(_missing[:5])}{', ...' if len(_missing) > 5 else ''}): run `bash .ci/run`, "
        "which makes .venv and installs them, or `pip install -e '.[test]'` in a virtualenv\n"
    )
    raise SystemExit(pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(autouse=True)
async def _no_leftover_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running (a leaked watcher or worker)."""
    before = asyncio.all_tasks()
    yield
    # Give cancelled tasks one turn of the loop to finish unwinding.
    await asyncio.sleep(0)
    leftover = {
        t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()
    }
    if leftover:
        for task in leftover:
            task.cancel()
        await asyncio.gather(*leftover, return_exceptions=True)
        names = sorted(t.get_name() for t in leftover)
        pytest.fail(f"test left {len(leftover)} task(s) running: {names}")
