"""The Dockerfile: hadolint-clean, in step with the chart (user, port, entrypoint), its base pinned
by digest, and no pip, setuptools or wheel in what ships.

No Docker engine runs here, so the image is not built. Its shape is checked, and the builder
stage's own RUN lines are run here, outside a container, with the image's Python version: the
virtualenv they make is the one the final stage copies.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import CHART, ROOT, find_python, run

DOCKERFILE = ROOT / "Dockerfile"
BASE = re.compile(
    r"python:(?P<minor>3\.\d+)\.\d+-slim-(?P<debian>[a-z]+)@sha256:(?P<digest>[0-9a-f]{64})"
)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def base_image() -> re.Match[str]:
    args = dict(a.split("=", 1) for w, a in instructions() if w == "ARG" and "=" in a)
    m = BASE.fullmatch(args["PYTHON_IMAGE"])
    assert m, f"PYTHON_IMAGE is not python:<x.y.z>-slim-<debian>@sha256:<digest>: {args}"
    return m


def chart_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))


@pytest.mark.tools
def test_hadolint_clean(hadolint: str) -> None:
    proc = run([hadolint, "--no-color", str(DOCKERFILE)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == ""


def test_two_stages_on_one_slim_python_base_pinned_by_digest() -> None:
    all_stages = stages()
    assert len(all_stages) == 2
    base = base_image()
    assert all_stages[0][0][1] == "${PYTHON_IMAGE} AS builder"
    assert all_stages[1][0][1] == "${PYTHON_IMAGE}"
    # The image's Python is one the package supports (requires-python is a ">=3.x" floor).
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    floor = project["requires-python"].removeprefix(">=")
    assert tuple(map(int, base["minor"].split("."))) >= tuple(map(int, floor.split(".")))
    # The comment above the ARG names where the digest was read and how to move it.
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "docker buildx imagetools inspect" in text


def test_final_stage_has_no_build_tools_no_pip_and_copies_only_the_venv() -> None:
    final = stages()[1]
    text = " ".join(a for _, a in final)
    for tool in ("apt-get", "gcc", "build-essential", "pip install", "COPY . "):
        assert tool not in text, tool
    runs = [a for w, a in final if w == "RUN"]
    assert len(runs) == 1
    assert "python -m pip uninstall --yes --quiet pip setuptools wheel packaging" in runs[0]
    assert "rm -rf /usr/local/lib/python3*/ensurepip /usr/local/bin/pip " in runs[0]
    copies = [a for w, a in final if w == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]


def test_builder_makes_a_venv_without_pip_and_installs_from_outside() -> None:
    runs = [a for w, a in stages()[0] if w == "RUN"]
    assert runs[0] == "python -m venv --without-pip /opt/venv"
    assert runs[1].startswith("python -m pip --python /opt/venv/bin/python install --no-compile .")


def test_user_port_and_entrypoint_match_the_chart() -> None:
    final = dict(stages()[1])
    values = chart_values()
    uid = values["securityContext"]["runAsUser"]
    assert uid == values["podSecurityContext"]["runAsUser"] == 10001
    assert final["USER"] == f"{uid}:{values['securityContext']['runAsGroup']}"
    assert final["EXPOSE"] == str(values["service"]["port"])
    assert json.loads(final["ENTRYPOINT"]) == ["kongsplit"]
    assert json.loads(final["CMD"]) == ["run"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    assert "kongsplit" in scripts
    assert "/healthz" in final["HEALTHCHECK"]


def test_no_shell_is_needed_at_run_time() -> None:
    """ENTRYPOINT, CMD and HEALTHCHECK are exec form (JSON), so nothing runs through /bin/sh."""
    final = dict(stages()[1])
    for word in ("ENTRYPOINT", "CMD"):
        assert isinstance(json.loads(final[word]), list), word
    check = final["HEALTHCHECK"].split(" CMD ", 1)[1]
    assert json.loads(check)[0] == "python"


def test_runtime_writes_nothing_and_labels_are_set() -> None:
    final = stages()[1]
    env = " ".join(a for w, a in final if w == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    builder = " ".join(a for _, a in stages()[0])
    assert "compileall" in builder  # bytecode ships in the image instead
    labels = " ".join(a for w, a in final if w == "LABEL")
    for key in ("title", "description", "version", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    lines = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copied: set[str] = set()
    for word, args in stages()[0]:
        if word == "COPY":
            copied.update(p.rstrip("/") for p in args.split()[:-1])
    assert copied == allowed
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    if "readme" in project:
        assert project["readme"] in copied, "the build needs the readme pyproject names"


def test_builder_stage_run_here_yields_a_venv_without_pip(tmp_path: Path) -> None:
    """The builder's RUN lines, as written, with the image's Python version: /opt/venv and /src
    moved under tmp_path, `python` that version, pip's cache allowed (the image build disables
    it). The venv runs kongsplit, holds compiled bytecode and no pip, setuptools or wheel."""
    python = find_python(base_image()["minor"])
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # A wrapper, not a symlink: a virtualenv's python must be run by its own path to be that venv.
    wrapper = bindir / "python"
    wrapper.write_text(f'#!/bin/sh\nexec "{python}" "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    venv, src = tmp_path / "opt" / "venv", tmp_path / "src"
    src.mkdir()
    for word, args in stages()[0]:
        if word == "COPY":
            *sources, _ = args.split()
            for name in sources:
                path = ROOT / name
                if path.is_dir():
                    shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(path, src / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"PATH": f"{bindir}:{env['PATH']}", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    for word, args in stages()[0]:
        if word == "RUN":
            command = args.replace("/opt/venv", str(venv))
            proc = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command],
                cwd=src,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert proc.returncode == 0, f"{command}\n{proc.stdout}{proc.stderr}"
    (site,) = venv.glob("lib/python3.*/site-packages")
    assert site.parent.name == f"python{base_image()['minor']}"
    installed = {p.name.split("-")[0].lower() for p in site.iterdir()}
    assert "kongsplit" in installed
    assert not installed & {"pip", "setuptools", "wheel", "_distutils_hack"}, installed
    assert not list((venv / "bin").glob("pip*"))
    assert list((site / "kongsplit" / "__pycache__").glob("cli.cpython-*.pyc"))
    version = subprocess.run(
        [str(venv / "bin" / "kongsplit"), "--version"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert version.stdout.strip() == f"kongsplit {project['version']}", version.stderr
    # The venv layer's size, as the README states it: on disk, and as the gzip'd tar a layer is.
    on_disk, gzipped = layer_sizes(venv)
    stated = image_size_statement()
    for name, measured in (("on disk", on_disk), ("gzip'd", gzipped)):
        claimed = stated[name]
        assert abs(measured - claimed) <= 0.15 * claimed, (
            f"the venv layer is {measured / 1e6:.1f} MB {name}, the README says "
            f"{claimed / 1e6:.1f} MB: measure again and update its 'Image size' paragraph"
        )


def layer_sizes(root: Path) -> tuple[int, int]:
    """Bytes of the regular files under ``root``, and of ``root`` as a tar gzip'd at level 6
    (what Docker and BuildKit use for layers by default)."""
    on_disk = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    counter = _Counter()
    with (
        gzip.GzipFile(fileobj=counter, mode="wb", compresslevel=6, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        tar.add(root, arcname="opt/venv")
    return on_disk, counter.count


class _Counter(io.RawIOBase):
    """A write-only sink that only counts."""

    def __init__(self) -> None:
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n = len(memoryview(data).cast("B"))
        self.count += n
        return n


def image_size_statement() -> dict[str, int]:
    """The venv layer's sizes the README's "Image size" paragraph states, in bytes."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    para = readme.split("**Image size:", 1)[1].split("\n\n", 1)[0].replace("\n", " ")
    disk = re.search(r"take ([\d.]+) MB on disk", para)
    gz = re.search(r"and ([\d.]+) MB as a gzip'd tar", para)
    assert disk and gz, para
    return {"on disk": int(float(disk.group(1)) * 1e6), "gzip'd": int(float(gz.group(1)) * 1e6)}


def test_image_size_statement_adds_up() -> None:
    """The README's total is the base's compressed size (the figure the Dockerfile's comment and
    the README cite for the pinned digest) plus the venv layer, rounded."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    para = readme.split("**Image size:", 1)[1].split("\n\n", 1)[0].replace("\n", " ")
    total = re.search(r"^ about ([\d.]+) MB compressed \(linux/amd64\), an estimate", para)
    base = re.search(r"The base is ([\d,]+) bytes", para)
    assert total and base, para
    base_bytes = int(base.group(1).replace(",", ""))
    assert f"{base_bytes / 1e6:.1f} MB compressed" in DOCKERFILE.read_text(encoding="utf-8")
    expected = (base_bytes + image_size_statement()["gzip'd"]) / 1e6
    assert abs(float(total.group(1)) - expected) <= 0.5, (total.group(1), expected)
