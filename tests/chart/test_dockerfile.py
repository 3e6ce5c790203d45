"""The Dockerfile: hadolint-clean, and in step with the chart (user, port, entrypoint).

No Docker engine runs here, so the image is not built; its shape is checked instead.
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import pytest
import yaml
from chart_support import CHART, ROOT, run

DOCKERFILE = ROOT / "Dockerfile"


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


def chart_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))


@pytest.mark.tools
def test_hadolint_clean(hadolint: str) -> None:
    proc = run([hadolint, "--no-color", str(DOCKERFILE)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == ""


def test_two_stages_slim_python_base() -> None:
    all_stages = stages()
    assert len(all_stages) == 2
    args = dict(a.split("=", 1) for w, a in instructions() if w == "ARG" and "=" in a)
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base), base
    assert all_stages[0][0][1] == "${PYTHON_IMAGE} AS builder"
    assert all_stages[1][0][1] == "${PYTHON_IMAGE}"


def test_final_stage_has_no_build_tools_and_copies_only_the_venv() -> None:
    final = stages()[1]
    text = " ".join(a for _, a in final)
    for tool in ("apt-get", "gcc", "build-essential", "pip install", "COPY . "):
        assert tool not in text, tool
    copies = [a for w, a in final if w == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]


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
