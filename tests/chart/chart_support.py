"""Paths and helpers shared by the chart, alert and image tests (imported by their modules)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kongsplit"
TOOLS_BIN = ROOT / ".tools" / "bin"
RULES_FILE = ROOT / "deploy" / "prometheus" / "kongsplit-alerts.yaml"
RULES_TEST_FILE = ROOT / "deploy" / "prometheus" / "kongsplit-alerts.test.yaml"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))


def find_tool(name: str) -> str:
    """Path of a tool from .tools/bin or PATH; skip locally, fail in CI, when it is missing."""
    local = TOOLS_BIN / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} not found in {TOOLS_BIN} or PATH: run `bash .ci/install-tools`"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def run(
    cmd: list[str], *, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a tool with a bounded wait; the caller checks returncode and output."""
    return subprocess.run(
        cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )


def load_docs(manifest: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(manifest) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def find_python(minor: str) -> str:
    """An interpreter of Python ``minor`` (e.g. "3.11") with pip: the one running the tests when it
    is that version (CI's), else ``python3.11`` on PATH, else the newest pyenv build of it. Skip
    locally, fail in CI, when there is none."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == minor:
        return sys.executable
    candidates: list[str] = []
    on_path = shutil.which(f"python{minor}")
    if on_path:
        candidates.append(on_path)
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    builds = sorted(
        root.glob(f"versions/{minor}.*/bin/python{minor}"),
        key=lambda p: [int(n) for n in p.parts[-3].split(".") if n.isdigit()],
    )
    candidates += [str(p) for p in reversed(builds)]
    for candidate in candidates:
        proc = run([candidate, "-c", "import sys, pip; print('%d.%d' % sys.version_info[:2])"])
        if proc.returncode == 0 and proc.stdout.strip() == minor:
            return candidate
    message = f"no Python {minor} (python{minor} on PATH or a pyenv build): the image's version"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
