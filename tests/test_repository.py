"""The repository stands alone: a clone with nothing beside it collects and cites only itself.

Users clone this repository alone, so no test, module or document may read or cite a file
outside it. The check copies exactly what a clone of the working tree would hold (tracked files
plus new, not-ignored ones) into an empty directory and collects the suite there.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _repository_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.fail("these checks need git and a git checkout (a clone of the repository)")
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    return [p for p in out.decode().split("\0") if p and (ROOT / p).is_file()]


def test_a_lone_clone_collects_every_test(tmp_path: Path) -> None:
    # The clone sits two levels down an otherwise empty directory: no sibling folder exists.
    clone = tmp_path / "alone" / "kongsplit"
    for rel in _repository_files():
        dest = clone / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest)
    assert not (clone.parent.parent / "shared").exists()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    tail = "\n".join(result.stdout.splitlines()[-15:]) + result.stderr[-2000:]
    assert result.returncode == 0, tail
    assert "error" not in result.stdout.splitlines()[-1].lower(), tail
    collected = re.search(r"(\d+) tests? collected", result.stdout)
    assert collected is not None and int(collected.group(1)) > 500, tail


#: Documents that live beside the repository for its developers, never in it.
_OUTSIDE = re.compile(r"\.\./shared|shared/reference|DESIGN\.md|DESIGN §|STYLE\.md|reference §")


def test_nothing_cites_documents_outside_the_repository() -> None:
    offenders = []
    for rel in _repository_files():
        if rel.startswith("tests/test_repository.py"):
            continue
        try:
            text = (ROOT / rel).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if _OUTSIDE.search(line):
                offenders.append(f"{rel}:{n}: {line.strip()[:100]}")
    assert not offenders, "\n".join(offenders)


def test_license_is_the_one_the_package_declares() -> None:
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in license_text and "Version 2.0" in license_text
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
