"""The chaos run at CI size: ``python bench/chaos.py --quick`` (100 Rollouts, two replicas of the
real ``kongsplit run``, Kong 5xx/429/resets/slow windows, two wipes, watch 410s and drops, a
SIGKILL of the leader and a failover), once for this module, then one test per invariant so a
failure names the invariant. What each one means: bench/chaos_check.py and bench/README.md.

The seed is fixed so CI runs the same plan of changes and faults every time; the daemons' own
timing still varies from run to run. ``KONGSPLIT_CHAOS_SEED`` is deliberately not read (unknown
``KONGSPLIT_*`` variables are refused by the daemon): change ``SEED`` to try another plan.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEED = 12
WALL_LIMIT = 45.0  # seconds, the CI budget of the whole run


@pytest.fixture(scope="module")
def chaos() -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), "--quick", "--seed", str(SEED)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        pytest.fail(f"bench/chaos.py --quick failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["_evidence"] = proc.stderr[-6000:]
    return result


def _show(result: dict[str, Any]) -> str:
    shown = {k: v for k, v in result.items() if not k.startswith("_")}
    return f"{json.dumps(shown)}\n{result['_evidence']}"


REQUIRED = (
    "rollouts",
    "changes",
    "aborts",
    "faults_injected",
    "converged",
    "lost_updates",
    "never_desired_writes",
    "zero_total_moments",
    "stale_writes_gt5s",
    "abort_p50_s",
    "abort_p99_s",
    "crashes",
    "rss_mib_max",
)


def test_the_run_happened_as_planned(chaos: dict[str, Any]) -> None:
    """Every key is there, the run was the CI size and within its budget, and every kind of
    fault struck (a run where nothing went wrong proves nothing)."""
    assert set(REQUIRED) <= set(chaos), _show(chaos)
    assert chaos["rollouts"] == 100 and chaos["seed"] == SEED
    assert chaos["wall_s"] <= WALL_LIMIT, _show(chaos)
    assert chaos["changes"] > 300 and chaos["aborts"] > 10, _show(chaos)
    faults = chaos["kong_faults"]
    assert {"reset", "status:429", "delay"} <= set(faults), _show(chaos)
    assert any(k.startswith("status:5") for k in faults), _show(chaos)
    assert chaos["wipes"] == 2 and chaos["watch_410s"] >= 1 and chaos["watch_drops"] >= 1
    assert chaos["kills"] and len(chaos["leaders"]) >= 2, _show(chaos)  # a failover happened
    assert chaos["lease_deletions"] == 1, _show(chaos)
    assert chaos["aborts_measured"] > 0, _show(chaos)
    assert chaos["driver_errors"] == 0, _show(chaos)  # Argo's part itself never failed


def test_converged_with_no_lost_update(chaos: dict[str, Any]) -> None:
    assert chaos["lost_updates"] == 0 and chaos["converged"] is True, _show(chaos)


def test_no_never_desired_write(chaos: dict[str, Any]) -> None:
    assert chaos["never_desired_writes"] == 0, _show(chaos)
    assert chaos["unknown_target_writes"] == 0, _show(chaos)


def test_no_zero_total_moment_and_the_write_order_held(chaos: dict[str, Any]) -> None:
    assert chaos["zero_total_moments"] == 0, _show(chaos)
    assert chaos["write_order_violations"] == 0, _show(chaos)


def test_no_write_landed_more_than_5s_stale(chaos: dict[str, Any]) -> None:
    assert chaos["stale_writes_gt5s"] == 0, _show(chaos)


def test_no_crash(chaos: dict[str, Any]) -> None:
    assert chaos["crashes"] == 0, _show(chaos)


# Beyond the invariants: what issue 12 asks of the daemon. (Abort latency is reported, not
# asserted: at CI size its p99 is the slowest of 20-35 aborts; bench/chaos.py at 1,000 Rollouts
# gives the figure.)


def test_never_two_writers_at_once(chaos: dict[str, Any]) -> None:
    assert chaos["two_writer_spells"] == 0, _show(chaos)
