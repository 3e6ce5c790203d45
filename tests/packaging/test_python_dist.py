"""kongsplit as a Python package, built and installed the way users do it.

`python -m build` makes the sdist and then the wheel *from the sdist* (so a file missing from the
sdist breaks the wheel); the wheel must install into a fresh virtualenv, and with pipx, and run.
Like `pip install .`, the build and the installs take setuptools and the runtime dependencies from
the package index (pip's cache makes repeats quick). The source is copied first, so the checkout
gets no build/ or egg-info from these tests.
"""

from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
VERSION = PROJECT["version"]
#: The package's own files: every module and the py.typed marker.
PACKAGE_FILES = sorted(
    str(p.relative_to(ROOT))
    for p in (ROOT / "kongsplit").rglob("*")
    if p.is_file() and (p.suffix == ".py" or p.name == "py.typed")
)
#: Far above today's size (about 240 KiB wheel, 220 KiB sdist): catches data swept in by mistake.
MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path
    log: str


def _run(cmd: list[str], *, timeout: float = 300, **kwargs: object) -> str:
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout}{proc.stderr}"
    return str(proc.stdout + proc.stderr)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """`python -m build` (sdist, then the wheel from it) of a copy of the checkout's files."""
    base = tmp_path_factory.mktemp("dist")
    files = _run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT
    ).split("\0")
    src = base / "src"
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((ROOT / name).read_bytes())
    out = base / "out"
    log = _run([sys.executable, "-m", "build", "--outdir", str(out), str(src)])
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"kongsplit-{VERSION}-py3-none-any.whl", f"kongsplit-{VERSION}.tar.gz"]
    return Dist(out / names[1], out / names[0], log)


def test_the_wheel_is_built_from_the_sdist(dist: Dist) -> None:
    assert "Building wheel from sdist" in dist.log
    assert dist.sdist.stat().st_size < MAX_BYTES and dist.wheel.stat().st_size < MAX_BYTES


def test_sdist_holds_the_package_license_and_readme(dist: Dist) -> None:
    top = f"kongsplit-{VERSION}/"
    with tarfile.open(dist.sdist) as tar:
        names = {n.removeprefix(top) for n in tar.getnames() if n.startswith(top)}
        raw = tar.extractfile(f"{top}PKG-INFO").read()  # type: ignore[union-attr]
        pkg_info = email.message_from_string(raw.decode("utf-8"))
        license_text = tar.extractfile(f"{top}LICENSE").read()  # type: ignore[union-attr]
    assert {"LICENSE", "README.md", "pyproject.toml", "PKG-INFO"} <= names
    assert set(PACKAGE_FILES) <= names
    assert license_text == (ROOT / "LICENSE").read_bytes()
    for outside in ("tests/", "bench/", "charts/", "docs/", ".ci/", ".tools/"):
        assert not [n for n in names if n.startswith(outside)], outside
    assert pkg_info["License-Expression"] == "Apache-2.0"
    assert pkg_info.get_payload().strip() == (ROOT / "README.md").read_text("utf-8").strip()


def test_wheel_holds_the_package_and_no_tests(dist: Dist) -> None:
    info = f"kongsplit-{VERSION}.dist-info/"
    with zipfile.ZipFile(dist.wheel) as whl:
        names = set(whl.namelist())
        metadata = email.message_from_string(whl.read(f"{info}METADATA").decode("utf-8"))
        entry_points = whl.read(f"{info}entry_points.txt").decode()
    assert {n for n in names if not n.startswith(info)} == set(PACKAGE_FILES)
    assert f"{info}licenses/LICENSE" in names
    assert metadata["Name"] == "kongsplit" and metadata["Version"] == VERSION
    assert metadata["Requires-Python"] == PROJECT["requires-python"]
    assert metadata["License-Expression"] == "Apache-2.0"
    assert "Source, https://github.com/kongsplit/kongsplit" in metadata.get_all("Project-URL")
    assert "kongsplit = kongsplit.cli:main" in entry_points


def test_the_wheel_runs_from_a_fresh_virtualenv(dist: Dist, tmp_path: Path) -> None:
    """Installed with its dependencies into an empty venv, outside the checkout: the command
    runs, and the demo (the daemon against the simulators shipped in the package) passes."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", "--no-warn-script-location", str(dist.wheel)])
    kongsplit = env_dir / "bin" / "kongsplit"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    assert _run([str(kongsplit), "--version"], cwd=tmp_path, env=clean).strip() == (
        f"kongsplit {VERSION}"
    )
    where = _run(
        [str(python), "-c", "import kongsplit; print(kongsplit.__file__)"], cwd=tmp_path, env=clean
    )
    assert where.strip().startswith(str(env_dir)), where
    demo = _run([str(kongsplit), "demo", "--plain"], cwd=tmp_path, env=clean, timeout=120)
    assert "demo passed" in demo


def test_pipx_installs_the_wheel(dist: Dist, tmp_path: Path) -> None:
    """`pipx install ./dist/kongsplit-<version>-py3-none-any.whl`, in a throwaway PIPX_HOME."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {
        "PIPX_HOME": str(tmp_path / "pipx"),
        "PIPX_BIN_DIR": str(tmp_path / "bin"),
        "PIPX_MAN_DIR": str(tmp_path / "man"),
    }
    out = _run([sys.executable, "-m", "pipx", "install", str(dist.wheel)], env=env, cwd=tmp_path)
    assert "kongsplit" in out
    version = _run([str(tmp_path / "bin" / "kongsplit"), "--version"], env=env, cwd=tmp_path)
    assert version.strip() == f"kongsplit {VERSION}"


def test_readme_commands_name_this_version() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Packages", 1)[1].split("\n## ", 1)[0]
    assert "python -m build" in block and "pipx install ./dist/" in block
    named = re.findall(r"kongsplit-(\d[\w.]*?)(?:-py3-none-any\.whl|\.tar\.gz)", block)
    assert named and set(named) == {VERSION}
