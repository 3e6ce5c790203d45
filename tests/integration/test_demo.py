"""The README's first command: ``kongsplit demo`` runs the real daemon end to end and exits 0,
readable when piped (``kongsplit demo | cat``) and with ``--plain`` on a terminal."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kongsplit.demo import HEADER, TITLE

LABELS = (
    "setWeight 10",
    "setWeight 25",
    "setWeight 50",
    "setWeight 75",
    "aborted",
    "drift put back",
    "promoted, stable = v2",
)
DRIFT_SEEN = ">> drift: someone set canary target 10.96.0.11:80 to 90 by hand (kongsplit holds 50)"
PUT_BACK = re.compile(r"^   → kongsplit put back 50 within \d+\.\d\d s$", re.M)
COUNTED = '   → drift counted: kongsplit_drift_corrections_total{kind="weight"} 1'


def assert_readable_run(text: str) -> None:
    """A passing run, as plain lines: fixed columns, no escape codes, nothing over 100 columns."""
    assert "demo passed: every split landed in Kong" in text
    assert "MISSED" not in text
    for label in LABELS:
        assert label in text, label
    assert "verified on 2 Kong nodes" in text
    assert "\x1b" not in text
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    assert lines[0] == TITLE
    frames = [i for i, line in enumerate(lines) if line.startswith("── ")]
    assert len(frames) >= len(LABELS)
    for i in frames:  # every frame: its title, the column header, then the Rollout rows
        assert lines[i + 1] == HEADER
        assert lines[i + 2].startswith("checkout   ") and lines[i + 5].startswith("payments   ")
    # Columns are fixed: the desired and observed splits start at their header in every row.
    desired, kong = HEADER.index("DESIRED"), HEADER.index("KONG")
    rows = [line for line in lines if line.startswith(("checkout   ", "payments   "))]
    assert len(rows) == 2 * len(frames)
    for row in rows:
        assert row[desired - 2 : desired + 7] == "  stable " == row[kong - 2 : kong + 7], row
    # The injected drift is shown, then its correction and the counter that counted it.
    assert DRIFT_SEEN in lines
    drift_at = lines.index(DRIFT_SEEN)
    assert lines[drift_at + 1].startswith("── checkout: drift put back  (Kong had it after ")
    assert PUT_BACK.search(text), text
    assert COUNTED in lines


async def test_demo_runs_and_passes_piped() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kongsplit",
        "demo",
        "--step-seconds",
        "0.2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode()
    assert proc.returncode == 0, text + err.decode()
    assert "Traceback" not in err.decode()
    assert_readable_run(text)


def test_plain_on_a_terminal_has_no_escape_codes(tmp_path: Path) -> None:
    leader, follower = os.openpty()
    log = tmp_path / "daemon.log"
    argv = [sys.executable, "-m", "kongsplit", "demo", "--step-seconds", "0.2", "--plain"]
    proc = subprocess.Popen(
        [*argv, "--log-file", str(log)],
        stdout=follower,
        stderr=subprocess.PIPE,
    )
    os.close(follower)
    received = b""
    try:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the demo closed the terminal
                break
            if not chunk:
                break
            received += chunk
        assert proc.wait(120) == 0, received.decode(errors="replace")
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    assert_readable_run(received.decode().replace("\r\n", "\n"))
    first = json.loads(log.read_text(encoding="utf-8").splitlines()[0])  # the daemon's JSON logs
    assert isinstance(first, dict) and first


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(
            lambda p: p / "no-such-dir" / "x.log", "No such file or directory", id="no-dir"
        ),
        pytest.param(lambda p: p, "Is a directory", id="a-directory"),
        pytest.param(
            lambda p: (p / "file", (p / "file").write_text(""))[0] / "x.log",
            "Not a directory",
            id="under-a-file",
        ),
    ],
)
def test_unwritable_log_file_is_one_line(tmp_path: Path, make: object, reason: str) -> None:
    assert callable(make)
    path = make(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "kongsplit", "demo", "--log-file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"kongsplit demo: cannot write the log file {path}: {reason} — give a writable path "
        "with --log-file\n"
    )
