"""``kongsplit`` with one deliberate defect, so a chaos run can show that it catches it.

    python bench/chaos_sabotage.py KIND run --config FILE      # what chaos.py --sabotage runs

KIND is one of:

- ``write-order``: the write plan sends its lowers before its raises (the documented order
  reversed), so an upstream passes through states below the desired total — down to 0 when the
  weight moves from one target to the other (caught as zero-total moments and write-order
  violations);
- ``no-abort``: ``status.abort`` is ignored by the weight engine, so an aborted canary keeps its
  traffic (caught as lost updates and unresolved aborts);
- ``slow-writes``: every target write waits 6 s before it is sent (caught as stale writes);
- ``half-canary``: the canary gets half the weight Argo says, the stable the rest (caught as
  never-desired writes and lost updates).

Never used outside ``bench/chaos.py --sabotage`` and the chaos suite's own checks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kongsplit import cli, desired, reconciler
from kongsplit.kong import client, dbmode, writes
from kongsplit.kong.targets import ROLE_CANARY


def _write_order() -> None:
    plan_writes = writes.plan_writes

    def reversed_plan(*args: Any, **kwargs: Any) -> writes.WritePlan:
        plan = plan_writes(*args, **kwargs)
        return writes.WritePlan(raises=plan.lowers, lowers=plan.raises, drift=plan.drift)

    dbmode.plan_writes = reversed_plan  # type: ignore[assignment]


def _no_abort() -> None:
    compute = desired.compute

    def without_abort(rollout: Any, **kwargs: Any) -> Any:
        if rollout.abort:
            rollout = dataclasses.replace(rollout, abort=False)
        return compute(rollout, **kwargs)

    desired.compute = without_abort  # type: ignore[assignment]


def _slow_writes() -> None:
    update = client.KongAdmin.update_target

    async def late(self: client.KongAdmin, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(6.0)
        return await update(self, *args, **kwargs)

    client.KongAdmin.update_target = late  # type: ignore[method-assign]


def _half_canary() -> None:
    desired_state = reconciler.desired_state

    def halved(*args: Any, **kwargs: Any) -> desired.Desired:
        found = desired_state(*args, **kwargs)
        if found.plan is None:
            return found
        total = sum(t.weight for t in found.plan.targets)
        canary = next((t.weight // 2 for t in found.plan.targets if t.role == ROLE_CANARY), 0)
        targets = tuple(
            dataclasses.replace(t, weight=canary if t.role == ROLE_CANARY else total - canary)
            for t in found.plan.targets
        )
        return dataclasses.replace(found, plan=dataclasses.replace(found.plan, targets=targets))

    reconciler.desired_state = halved  # type: ignore[assignment]


SABOTAGE = {
    "write-order": _write_order,
    "no-abort": _no_abort,
    "slow-writes": _slow_writes,
    "half-canary": _half_canary,
}

if __name__ == "__main__":
    SABOTAGE[sys.argv.pop(1)]()
    sys.exit(cli.main())
