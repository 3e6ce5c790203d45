"""The README's first command: ``kongsplit demo`` runs the real daemon end to end and exits 0."""

from __future__ import annotations

import asyncio
import sys


async def test_demo_runs_and_passes() -> None:
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
    assert "demo passed: every split landed in Kong" in text
    assert "MISSED" not in text and "Traceback" not in err.decode()
    for label in (
        "setWeight 10",
        "setWeight 25",
        "setWeight 50",
        "setWeight 75",
        "aborted",
        "drift put back",
        "promoted, stable = v2",
    ):
        assert label in text, label
    assert "verified on 2 Kong nodes" in text
