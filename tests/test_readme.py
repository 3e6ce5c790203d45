"""Keep the README true: its example outputs are what the commands print, its commands exist."""

from __future__ import annotations

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
