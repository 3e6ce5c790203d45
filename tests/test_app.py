"""What the daemon's probes answer (``Daemon._alive`` behind /healthz, ``Daemon._ready`` behind
/readyz), from its parts' states; the whole daemon runs in tests/integration."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from fake_router import FakeRouter
from prometheus_client import CollectorRegistry

from kongsplit.app import Daemon
from kongsplit.config import load_settings
from kongsplit.metrics import Metrics
from kongsplit.reconciler import Reconciler

LISTING = "waiting for the first full list of Rollouts, ReplicaSets and Services"
SYNCING = "waiting for the first successful sync with Kong"


@dataclass
class Listed:
    """A watcher as the probes see it: has it listed yet?"""

    listed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Elector:
    is_leader: bool


def daemon() -> Daemon:
    kong = FakeRouter()
    settings = load_settings(env={}, flags={"kong": {"url": kong.display_url}})
    return Daemon(settings, registry=CollectorRegistry(), kong=kong)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("listed", "reconciler", "leading", "synced", "problem", "ready", "reason"),
    [
        pytest.param(False, True, None, False, None, False, LISTING, id="listing"),
        pytest.param(True, False, None, False, None, False, "starting", id="starting"),
        pytest.param(True, True, None, False, None, False, SYNCING, id="syncing"),
        pytest.param(
            True,
            True,
            None,
            False,
            "refused the token",
            False,
            f"{SYNCING}; Kong: refused the token",
            id="syncing-kong-refuses",
        ),
        pytest.param(True, True, None, True, None, True, "leading", id="no-election-synced"),
        pytest.param(True, True, True, True, None, True, "leading", id="leader-synced"),
        pytest.param(True, True, True, False, None, False, SYNCING, id="leader-syncing"),
        pytest.param(
            True, True, False, False, None, True, "following (caches warm)", id="follower"
        ),
        pytest.param(
            True,
            True,
            False,
            False,
            "no answer",
            True,
            "following (caches warm); Kong: no answer",
            id="follower-kong-down",
        ),
        pytest.param(
            True, True, None, True, "no answer", True, "leading; Kong: no answer", id="synced-down"
        ),
    ],
)
async def test_readiness(
    listed: bool,
    reconciler: bool,
    leading: bool | None,
    synced: bool,
    problem: str | None,
    ready: bool,
    reason: str,
) -> None:
    d = daemon()
    d.watchers = [Listed(), Listed(), Listed()]  # type: ignore[list-item]
    for i, w in enumerate(d.watchers):
        if listed or i < 2:  # one watcher still listing is enough to wait
            w.listed.set()
    if reconciler:
        rec = Reconciler(d.settings, kong=d.kong, metrics=Metrics(CollectorRegistry()))
        if synced:
            rec.synced.set()
        rec.kong_problem = problem
        d.reconciler = rec
    if leading is not None:
        d.elector = Elector(leading)  # type: ignore[assignment]
    assert d._ready() == (ready, reason)


async def test_liveness_is_every_root_task_running() -> None:
    d = daemon()
    assert not d._alive()  # nothing started yet
    forever = asyncio.Event()
    d.tasks = {n: asyncio.create_task(forever.wait(), name=n) for n in ("a", "b")}
    await asyncio.sleep(0)
    assert d._alive()
    d.tasks["b"].cancel()
    await asyncio.gather(d.tasks["b"], return_exceptions=True)
    assert not d._alive()
    d.tasks["a"].cancel()
    await asyncio.gather(d.tasks["a"], return_exceptions=True)
