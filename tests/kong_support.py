"""Builders shared by the Kong tests: targets, desired states, a running router."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Sequence

from kongsplit.kong.apply import KongRouter
from kongsplit.kong.client import KongAdmin, RetryPolicy
from kongsplit.kong.records import Target
from kongsplit.kong.targets import DesiredTarget, owner_tags_for
from kongsplit.kong.writes import WriteKind, WritePlan

FAST = RetryPolicy(attempts=3, initial_backoff=0.001, max_backoff=0.005, max_elapsed=5.0)

OWNER = owner_tags_for("shop", "checkout")
OTHER = owner_tags_for("shop", "billing")
STABLE = "10.0.0.1:80"
CANARY = "10.0.0.2:80"


def target(target: str, weight: int, tags: Sequence[str] = OWNER, tid: str | None = None) -> Target:
    return Target(id=tid or f"id-{target}", target=target, weight=weight, tags=tuple(tags))


def want(stable: int, canary: int) -> list[DesiredTarget]:
    return [DesiredTarget(STABLE, stable, "stable"), DesiredTarget(CANARY, canary, "canary")]


def replay(current: Sequence[Target], plan: WritePlan) -> list[int]:
    """Totals after each write, for every order of the writes *within* each phase."""
    totals: list[int] = []
    for raises in itertools.permutations(plan.raises):
        for lowers in itertools.permutations(plan.lowers):
            weights = {t.target: t.weight for t in current}
            for w in (*raises, *lowers):
                if w.kind == WriteKind.DELETE:
                    weights.pop(w.target)
                else:
                    assert w.weight is not None
                    weights[w.target] = w.weight
                totals.append(sum(weights.values()))
    return totals


@contextlib.asynccontextmanager
async def running_router(
    url: str, *, retry: RetryPolicy = FAST, request_timeout: float = 10.0, **kwargs: object
) -> AsyncIterator[KongRouter]:
    """A ``KongRouter`` on ``url`` with its root tasks running (the DB-less flusher), as the
    daemon runs it; closed and stopped on exit."""
    router = KongRouter(KongAdmin(url, retry=retry, timeout=request_timeout), **kwargs)  # type: ignore[arg-type]
    flusher = asyncio.create_task(router.dbless.run(), name="kong-dbless-flush")
    await asyncio.sleep(0)
    try:
        yield router
    finally:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        await router.close()
