"""The reconciler alone: fed by hand (``on_rollout``/``on_service``/``on_replicaset``), writing
to an in-memory Kong (``tests/fake_router.py``) through the ``Router`` protocol.

No watcher, no HTTP, no worker task: each test queues changes the way the watchers do, then runs
``Reconciler.reconcile`` for every queued key (``World.settle``) — or a sweep (``resync_all`` then
``settle``) — and asserts on what the fake Kong received, on ``rec.states`` and on the metrics of
the test's own registry. The daemon tests (tests/integration) prove the same rules end to end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fake_router import FakeRouter
from prometheus_client import CollectorRegistry

from kongsplit.config import load_settings
from kongsplit.events import (
    NORMAL,
    REASON_APPLIED,
    REASON_DRIFT,
    REASON_INVALID_ANNOTATION,
    REASON_WRITE_FAILED,
    WARNING,
)
from kongsplit.kong.errors import (
    KongAuthError,
    KongClientError,
    KongError,
    KongNotLeader,
    KongNotReady,
    KongUnavailable,
)
from kongsplit.kong.targets import owner_tags_for
from kongsplit.metrics import DRIFT_KINDS, ROLLOUT_STATES, Metrics
from kongsplit.reconciler import Reconciler, RolloutState
from kongsplit.rollouts import ObjectRef, RolloutKey
from kongsplit.sim import objects

NS = "shop"
KEY = RolloutKey(NS, "web")
UPSTREAM = "web.shop.svc"
STABLE_IP, CANARY_IP = "10.96.0.10", "10.96.0.11"
STABLE_T, CANARY_T = f"{STABLE_IP}:80", f"{CANARY_IP}:80"
FOREIGN_T = "10.1.2.3:80"
WEB_TAGS = owner_tags_for(NS, "web")
STEPS = objects.CANARY_STEPS


def split(stable: int, canary: int) -> dict[str, int]:
    return {STABLE_T: stable, CANARY_T: canary}


@dataclass
class Event:
    name: str
    type: str
    reason: str
    message: str


class World:
    """A ``Reconciler`` over a ``FakeRouter``, with its own registry and an Event list."""

    def __init__(self, *, on_delete: str = "keep", exclusive: bool = False) -> None:
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.kong = FakeRouter(exclusive_upstreams=exclusive)
        self.events: list[Event] = []
        self.leading = True
        settings = load_settings(
            env={},
            flags={
                "kong": {
                    "url": self.kong.display_url,
                    "onDelete": on_delete,
                    "exclusiveUpstreams": exclusive,
                },
                "reconcile": {"interval": 0.5},
            },
        )
        self.rec = Reconciler(
            settings,
            kong=self.kong,
            metrics=self.metrics,
            events=self._event,
            is_leader=lambda: self.leading,
        )
        # As app.Daemon wires them: the per-Rollout gauges are read from the reconciler.

    def _event(
        self, ref: ObjectRef, *, type: str, reason: str, message: str, supersede: bool = False
    ) -> None:
        self.events.append(Event(ref.name, type, reason, message))

    # --- what the watchers would deliver ----------------------------------------------------

    def rollout(self, obj: dict[str, Any], event: str = "MODIFIED") -> None:
        self.rec.on_rollout(event, obj)

    def service(self, name: str, ip: str | None, pod_hash: str) -> None:
        self.rec.on_service("MODIFIED", objects.service(name, ip, pod_hash, app="web"))

    def replicaset(self, pod_hash: str, replicas: int, available: int) -> None:
        self.rec.on_replicaset("MODIFIED", objects.replicaset("web", pod_hash, replicas, available))

    def seed(self, rollout: dict[str, Any] | None = None) -> None:
        """web at revision v1, fully promoted: Services, its ReplicaSet, the Rollout."""
        self.service("web-stable", STABLE_IP, "v1")
        self.service("web-canary", CANARY_IP, "v1")
        self.replicaset("v1", 4, 4)
        self.rollout(rollout or objects.rollout("web", upstream=UPSTREAM), "ADDED")

    def canary(self, index: int, replicas: int, available: int, **fields: Any) -> None:
        """Argo at step ``index`` of revision v2 with ``available`` of ``replicas`` canary pods."""
        self.service("web-canary", CANARY_IP, "v2")
        self.replicaset("v2", replicas, available)
        self.rollout(canary_rollout(index, **fields))

    # --- running the reconciler -------------------------------------------------------------

    async def settle(self) -> None:
        """Reconcile every queued key, as a worker would (back-off timers are left alone)."""
        queue = self.rec.queue
        while len(queue):
            key, flags = await queue.get()
            try:
                await self.rec.reconcile(key, refresh=flags.refresh)
            finally:
                queue.done(key)

    async def sweep(self) -> None:
        """One drift sweep: every Rollout re-read from Kong (``refresh``)."""
        self.rec.resync_all()
        await self.settle()

    # --- reading back -----------------------------------------------------------------------

    def state(self, key: RolloutKey = KEY) -> RolloutState:
        return self.rec.states[key]

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def drift_series(self) -> dict[tuple[str, str], float]:
        """Every drift series web exports, zeros included: (upstream, kind) → value."""
        return {
            (s.labels["upstream"], s.labels["kind"]): s.value
            for family in self.registry.collect()
            for s in family.samples
            if s.name == "kongsplit_drift_corrections_total"
        }

    def errors(self, reason: str) -> float:
        return self.sample("kongsplit_reconcile_errors_total", reason=reason)

    def all_errors(self) -> float:
        return sum(
            s.value
            for family in self.registry.collect()
            for s in family.samples
            if s.name == "kongsplit_reconcile_errors_total"
        )

    def drift(self, kind: str, name: str = "web") -> float:
        return self.sample(
            "kongsplit_drift_corrections_total",
            rollout_namespace=NS,
            rollout=name,
            upstream=UPSTREAM,
            kind=kind,
        )

    def drift_counts(self) -> dict[str, float]:
        return {
            s.labels["kind"]: s.value
            for family in self.registry.collect()
            for s in family.samples
            if s.name == "kongsplit_drift_corrections_total" and s.value
        }

    def rollouts_gauge(self) -> dict[str, float]:
        return {state: self.sample("kongsplit_rollouts", state=state) for state in ROLLOUT_STATES}

    def events_of(self, reason: str, name: str = "web") -> list[Event]:
        return [e for e in self.events if e.reason == reason and e.name == name]


def canary_rollout(index: int, **fields: Any) -> dict[str, Any]:
    """web at step ``index`` of revision v2 (stable v1); ``abort``/``generation``/``stable_rs``."""
    abort = fields.pop("abort", False)
    generation = fields.pop("generation", None)
    obj = objects.rollout(
        "web",
        upstream=UPSTREAM,
        pod_hash="v2",
        stable_rs=fields.pop("stable_rs", "v1"),
        index=index,
        **fields,
    )
    if abort:
        obj["status"]["abort"] = True
    if generation is not None:
        obj["metadata"]["generation"] = generation
    return obj


@pytest.fixture()
async def world() -> AsyncIterator[World]:
    w = World()
    try:
        yield w
    finally:
        w.rec.queue.close()


async def applied_at(w: World, index: int, replicas: int, available: int) -> None:
    """Seeded, then Argo at ``index`` applied (asserted, so a test starts from a known Kong)."""
    w.seed()
    await w.settle()
    w.canary(index, replicas, available)
    await w.settle()
    assert w.state().hold is None and w.state().applied_weights == w.kong.weights(UPSTREAM)


# =========================================================================== progression


@pytest.mark.parametrize(
    ("start", "index", "replicas", "available", "extra", "want", "rule"),
    [
        pytest.param(None, 0, 1, 1, {}, split(90, 10), "step", id="step-0-setWeight-10"),
        pytest.param(0, 2, 1, 1, {}, split(75, 25), "step", id="step-2-setWeight-25"),
        pytest.param(2, 4, 2, 2, {}, split(50, 50), "step", id="step-4-setWeight-50"),
        pytest.param(
            0, 4, 2, 1, {}, split(75, 25), "replica-gate-previous", id="canary-scaling-keeps-25"
        ),
        pytest.param(6, 8, 4, 4, {}, split(0, 100), "end-of-steps", id="end-of-steps-all-canary"),
        pytest.param(2, 2, 1, 1, {"abort": True}, split(100, 0), "aborted", id="abort-canary-to-0"),
    ],
)
async def test_a_step_of_argo_lands_in_kong(
    world: World,
    start: int | None,
    index: int,
    replicas: int,
    available: int,
    extra: dict[str, Any],
    want: dict[str, int],
    rule: str,
) -> None:
    w = world
    w.seed()
    await w.settle()
    assert w.kong.weights(UPSTREAM) == split(100, 0)
    if start is not None:  # the step before, fully scaled
        weight = next(s["setWeight"] for s in reversed(STEPS[: start + 1]) if "setWeight" in s)
        pods = objects.canary_pods(weight, 4)
        w.canary(start, pods, pods)
        await w.settle()
        assert w.kong.weights(UPSTREAM) == split(100 - weight, weight)
    w.canary(index, replicas, available, **extra)
    await w.settle()
    assert w.kong.weights(UPSTREAM) == want
    st = w.state()
    assert (st.rule, st.hold, st.condition) == (rule, None, "managed")
    assert st.applied_weights == st.observed == want
    last = w.kong.applies[-1]
    assert last.owner_tags == WEB_TAGS and not last.refresh
    assert all(set(WEB_TAGS) <= set(t.tags) for t in w.kong.targets(UPSTREAM))
    labels = {"rollout_namespace": NS, "rollout": "web", "upstream": UPSTREAM, "role": "canary"}
    assert w.sample("kongsplit_desired_weight", **labels) == want[CANARY_T]
    assert w.sample("kongsplit_observed_weight", **labels) == want[CANARY_T]
    applied = w.events_of(REASON_APPLIED)
    assert [e.type for e in applied] == [NORMAL] * len(w.kong.written)
    assert len(w.kong.written) == (2 if start is None else 3)
    assert f"canary {CANARY_T}={want[CANARY_T]}" in applied[-1].message
    assert w.all_errors() == 0 and w.drift_counts() == {}


async def test_nothing_changed_nothing_is_written(world: World) -> None:
    """A re-delivered Rollout (a relist) and an unrelated Service reach Kong not at all."""
    w = world
    await applied_at(w, 0, 1, 1)
    calls = len(w.kong.applies)
    w.canary(0, 1, 1)  # the same objects again
    w.rec.on_service("ADDED", objects.service("unrelated", "10.96.9.9", "zz", app="other"))
    queued = len(w.rec.queue)
    await w.settle()
    assert queued == 1  # the unrelated Service queued nothing
    assert len(w.kong.applies) == calls
    assert w.state().pending_since is None


# =========================================================================== holds


@dataclass(frozen=True)
class Hold:
    """Argo's order says "write nothing": how to get there from weights already applied."""

    before: tuple[int, int, int]  # index, replicas, available applied first
    enter: Callable[[World], None]  # the change that holds
    release: Callable[[World], None]  # the change that ends the hold
    says: str  # how state.hold starts
    held: dict[str, int]  # what Kong keeps
    argo: dict[str, int]  # Argo's answer meanwhile
    abort: Callable[[], dict[str, Any]]  # the same Rollout, aborted
    abort_rule: str  # Argo's rule for it


def _generation_lags(w: World) -> None:
    w.rollout(canary_rollout(2, generation=2))  # the spec moved; Argo has not observed it


def _generation_observed(w: World) -> None:
    obj = canary_rollout(2, generation=2)
    obj["status"]["observedGeneration"] = "2"
    w.rollout(obj)


def _promoted(w: World) -> None:
    w.rollout(canary_rollout(8, stable_rs="v2"))  # stable Service still selects v1


def _stable_selector_switched(w: World) -> None:
    w.service("web-stable", STABLE_IP, "v2")


HOLDS = [
    pytest.param(
        Hold(
            (0, 1, 1),
            _generation_lags,
            _generation_observed,
            "status.observedGeneration 1 is below metadata.generation 2",
            split(90, 10),
            split(75, 25),
            lambda: canary_rollout(2, generation=2, abort=True),  # still not observed
            "aborted",
        ),
        id="observedGeneration-lags",
    ),
    pytest.param(
        Hold(
            (8, 4, 4),
            _promoted,
            _stable_selector_switched,
            "promotion in flight: the stable Service still selects v1, not stableRS v2",
            split(0, 100),
            split(100, 0),
            lambda: canary_rollout(8, stable_rs="v2", abort=True),
            "fully-promoted",
        ),
        id="promotion-in-flight",
    ),
]


async def enter_hold(w: World, hold: Hold) -> None:
    await applied_at(w, *hold.before)
    assert w.kong.weights(UPSTREAM) == hold.held
    hold.enter(w)
    await w.settle()


@pytest.mark.parametrize("hold", HOLDS)
async def test_a_hold_writes_nothing(world: World, hold: Hold) -> None:
    w = world
    await enter_hold(w, hold)
    calls = len(w.kong.applies)
    st = w.state()
    assert st.hold is not None and st.hold.startswith(hold.says)
    assert st.condition == "held"
    assert st.desired is not None and st.desired.weights() == hold.argo  # Argo's answer, shown
    assert st.applied_weights == hold.held
    assert w.kong.weights(UPSTREAM) == hold.held
    assert w.rollouts_gauge()["held"] == 1 and w.rollouts_gauge()["managed"] == 0
    # Re-delivering the held Rollout writes nothing either.
    hold.enter(w)
    await w.settle()
    assert len(w.kong.applies) == calls


@pytest.mark.parametrize("hold", HOLDS)
async def test_a_sweep_during_a_hold_rebuilds_the_held_weights(world: World, hold: Hold) -> None:
    w = world
    await enter_hold(w, hold)
    w.kong.wipe()
    await w.sweep()
    assert w.kong.weights(UPSTREAM) == hold.held  # not Argo's answer, not left empty
    last = w.kong.applies[-1]
    assert last.refresh and last.weights == hold.held
    assert w.state().condition == "held"
    assert w.drift("missing") == 3  # the upstream and both targets put back


@pytest.mark.parametrize("hold", HOLDS)
async def test_releasing_a_hold_applies_argos_answer(world: World, hold: Hold) -> None:
    w = world
    await enter_hold(w, hold)
    hold.release(w)
    await w.settle()
    assert w.kong.weights(UPSTREAM) == hold.argo
    assert w.state().hold is None and w.state().condition == "managed"


@pytest.mark.parametrize("hold", HOLDS)
async def test_a_hold_with_nothing_of_ours_in_kong_applies_argos_answer(
    world: World, hold: Hold
) -> None:
    """A first start during a hold: Kong holds nothing of this Rollout, so there is nothing to
    hold, and Argo's answer goes in."""
    w = world
    _, replicas, available = hold.before
    w.service("web-stable", STABLE_IP, "v1")
    w.service("web-canary", CANARY_IP, "v2")
    w.replicaset("v1", 4, 4)
    w.replicaset("v2", replicas, available)
    w.kong.add_target(UPSTREAM, "10.9.9.9:80", 0)  # the upstream exists, with none of ours
    hold.enter(w)
    await w.settle()
    assert w.kong.reads == [("", UPSTREAM)]
    assert w.kong.weights(UPSTREAM) == {**hold.argo, "10.9.9.9:80": 0}
    assert w.state().hold is not None and w.state().condition == "held"


@pytest.mark.parametrize("hold", HOLDS)
async def test_a_hold_keeps_what_another_leader_left_in_kong(world: World, hold: Hold) -> None:
    """After leadership changes hands, the weights this replica applied before are forgotten:
    a hold keeps what Kong holds (written by the other leader), even through a sweep."""
    w = world
    await applied_at(w, *hold.before)
    other = {STABLE_T: 60, CANARY_T: 40}
    for target, weight in other.items():
        w.kong.set_weight(UPSTREAM, target, weight)
    w.rec.leadership_gained()
    assert w.state().applied is None
    calls = len(w.kong.applies)
    hold.enter(w)
    await w.settle()
    await w.sweep()
    assert w.kong.weights(UPSTREAM) == other
    assert len(w.kong.applies) == calls  # nothing applied during the hold
    assert len(w.kong.reads) == 2  # the hold looked at Kong (change, sweep) instead of writing


async def test_a_hold_when_kong_cannot_be_read_holds(world: World) -> None:
    """Unknown is the safe side: when Kong does not answer (its ownership cannot even be read),
    nothing is written; the Rollout is failing and retried."""
    w = world
    w.service("web-stable", STABLE_IP, "v1")
    w.service("web-canary", CANARY_IP, "v2")
    w.replicaset("v2", 1, 1)
    w.kong.fail_next(KongUnavailable("no answer"))
    _generation_lags(w)
    await w.settle()
    assert w.kong.applies == []
    assert not w.kong.has_upstream(UPSTREAM)
    assert w.state().condition == "failing"


@pytest.mark.parametrize("hold", HOLDS)
async def test_abort_beats_a_hold(world: World, hold: Hold) -> None:
    w = world
    await enter_hold(w, hold)
    w.rec.queue.put(RolloutKey(NS, "someone-else"))
    w.rollout(hold.abort())
    key, flags = await w.rec.queue.get()  # an abort jumps the line
    assert key == KEY and flags.urgent
    await w.rec.reconcile(key, refresh=flags.refresh)
    w.rec.queue.done(key)
    assert w.kong.weights(UPSTREAM) == split(100, 0)
    assert w.state().hold is None and w.state().rule == hold.abort_rule


# =========================================================================== upstream taken


def copy_of_web(name: str) -> dict[str, Any]:
    """Another Rollout naming web's upstream (and, worst case, web's own Services)."""
    return objects.rollout(
        name, upstream=UPSTREAM, stable_service="web-stable", canary_service="web-canary"
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [pytest.param("web", "copy", id="web-first"), pytest.param("copy", "web", id="copy-first")],
)
async def test_with_no_owner_in_kong_the_first_claimant_by_name_wins_in_any_order(
    world: World, first: str, second: str
) -> None:
    """Two Rollouts name a fresh upstream: "copy" (first by namespace/name) gets it, whichever
    is reconciled first, so every replica and every restart decides the same."""
    w = world
    w.seed()
    w.rec.on_replicaset("ADDED", objects.replicaset("copy", "v1", 4, 4))  # its pods serve too
    w.rec.on_rollout("ADDED", copy_of_web("copy"))
    owner, refused = RolloutKey(NS, "copy"), RolloutKey(NS, "web")
    await w.rec.reconcile(RolloutKey(NS, first))
    await w.rec.reconcile(RolloutKey(NS, second))
    for _ in range(2):  # the watchers' own queue entries, then a sweep: still refused, told once
        await w.settle()
        await w.sweep()
    st = w.state(refused)
    assert st.condition == "refused"
    assert st.last_error is not None
    assert f"upstream {UPSTREAM} is already managed by Rollout {owner}" in st.last_error
    assert w.errors("upstream_taken") == 1 and w.all_errors() == 1
    assert [e.type for e in w.events_of(REASON_INVALID_ANNOTATION, "web")] == [WARNING]
    # Nothing was ever written for the refused Rollout; the owner's weights stand.
    assert {a.owner_tags for a in w.kong.applies} == {owner_tags_for(NS, "copy")}
    assert w.kong.weights(UPSTREAM) == split(100, 0)
    assert w.state(owner).condition == "managed", w.state(owner).hold
    assert w.rollouts_gauge()["refused"] == 1 and w.rollouts_gauge()["managed"] == 1
    assert w.sample("kongsplit_managed_rollouts") == 1
    # Once the owner is deleted, the next sweep hands the upstream over.
    w.rec.on_rollout("DELETED", objects.rollout("copy"))
    await w.settle()
    await w.sweep()
    assert w.state(refused).condition == "managed"
    assert w.kong.applies[-1].owner_tags == owner_tags_for(NS, "web")
    assert all(owner_tags_for(NS, "web")[1] in t.tags for t in w.kong.targets(UPSTREAM))


async def test_the_owner_recorded_in_kong_keeps_its_upstream(world: World) -> None:
    """web already owns the upstream in Kong: "copy", first by name, is refused all the same."""
    w = world
    w.seed()
    await w.rec.reconcile(KEY)
    assert w.kong.weights(UPSTREAM) == split(100, 0)
    w.rec.on_rollout("ADDED", copy_of_web("copy"))
    await w.settle()
    await w.sweep()
    st = w.state(RolloutKey(NS, "copy"))
    assert st.condition == "refused" and f"managed by Rollout {KEY}" in (st.last_error or "")
    assert {a.owner_tags for a in w.kong.applies} == {owner_tags_for(NS, "web")}


async def test_an_upstream_kongsplit_did_not_create_needs_consent(world: World) -> None:
    w = world
    w.kong.add_upstream(UPSTREAM)  # someone else's: no managed-by-kongsplit tag
    w.seed()
    await w.settle()
    st = w.state()
    assert st.condition == "refused" and "was not created by kongsplit" in (st.last_error or "")
    assert w.errors("upstream_not_consented") == 1 and w.kong.applies == []


# =========================================================================== letting go


@pytest.mark.parametrize(
    ("on_delete", "how", "after"),
    [
        pytest.param("keep", "deleted", split(90, 10), id="keep-deleted"),
        pytest.param("keep", "unannotated", split(90, 10), id="keep-unannotated"),
        pytest.param("stable", "deleted", split(100, 0), id="stable-deleted"),
        pytest.param("stable", "unannotated", split(100, 0), id="stable-unannotated"),
    ],
)
async def test_letting_go_of_a_rollout(on_delete: str, how: str, after: dict[str, int]) -> None:
    w = World(on_delete=on_delete)
    await applied_at(w, 0, 1, 1)
    calls = len(w.kong.applies)
    if how == "deleted":
        w.rollout(canary_rollout(0), "DELETED")
    else:
        w.rollout(objects.rollout("web", annotations={}, pod_hash="v2", stable_rs="v1", index=0))
    await w.settle()
    assert w.kong.weights(UPSTREAM) == after
    assert len(w.kong.applies) == calls + (on_delete == "stable")
    if on_delete == "stable":
        assert w.kong.applies[-1].owner_tags == WEB_TAGS
    assert KEY not in w.rec.states
    assert w.kong.forgotten == [("", UPSTREAM)]
    assert w.sample("kongsplit_managed_rollouts") == 0
    labels = {"rollout_namespace": NS, "rollout": "web", "upstream": UPSTREAM, "role": "canary"}
    assert w.sample("kongsplit_desired_weight", **labels) == 0  # the series is gone
    # No longer ours: a weight changed afterwards is never put back.
    w.kong.set_weight(UPSTREAM, CANARY_T, 7)
    await w.sweep()
    assert w.kong.weights(UPSTREAM)[CANARY_T] == 7
    assert len(w.kong.applies) == calls + (on_delete == "stable")
    w.rec.queue.close()


async def test_a_follower_lets_go_without_writing() -> None:
    w = World(on_delete="stable")
    await applied_at(w, 0, 1, 1)
    calls = len(w.kong.applies)
    w.leading = False
    w.rollout(canary_rollout(0), "DELETED")
    await w.settle()
    assert len(w.kong.applies) == calls and w.kong.weights(UPSTREAM) == split(90, 10)
    assert KEY not in w.rec.states


# =========================================================================== drift


def _set_canary_40(w: World) -> None:
    w.kong.set_weight(UPSTREAM, CANARY_T, 40)


def _delete_canary(w: World) -> None:
    w.kong.delete_target(UPSTREAM, CANARY_T)


def _noop(w: World) -> None:
    pass


@pytest.mark.parametrize(
    ("behind_our_back", "replaced", "counted"),
    [
        pytest.param(_set_canary_40, None, {"weight": 1}, id="weight-changed"),
        pytest.param(_delete_canary, None, {"missing": 1}, id="target-deleted"),
        pytest.param(lambda w: w.kong.wipe(), None, {"missing": 3}, id="database-wiped"),
        pytest.param(
            lambda w: w.kong.wipe(), "foreign_config", {"foreign_config": 1}, id="dbless-replaced"
        ),
        pytest.param(lambda w: w.kong.wipe(), "restart", {"restart": 1}, id="dbless-restarted"),
        pytest.param(_noop, "foreign_config", {}, id="dbless-replaced-ours-intact"),
        pytest.param(_noop, None, {}, id="nothing-changed"),
    ],
)
async def test_drift_is_put_back_and_counted_once(
    world: World,
    behind_our_back: Callable[[World], None],
    replaced: str | None,
    counted: dict[str, int],
) -> None:
    w = world
    await applied_at(w, 0, 1, 1)
    behind_our_back(w)
    if replaced is not None:
        w.rec.config_replaced(replaced)  # kong.dbless saw the configuration hash change
        await w.settle()
    else:
        await w.sweep()
    assert w.kong.weights(UPSTREAM) == split(90, 10)
    assert w.drift_counts() == counted
    drift_events = w.events_of(REASON_DRIFT)
    assert len(drift_events) == (1 if counted else 0)
    if counted:
        put_back = f"put back stable {STABLE_T}=90, canary {CANARY_T}=10"
        assert put_back in drift_events[0].message
    await w.sweep()  # one more sweep: nothing new to count
    assert w.drift_counts() == counted
    assert len(w.events_of(REASON_DRIFT)) == len(drift_events)


async def test_a_new_desired_state_is_not_drift(world: World) -> None:
    w = world
    await applied_at(w, 0, 1, 1)
    for index, pods in ((2, 1), (4, 2)):  # Argo's canary pods: ceil(weight × 4 / 100)
        w.canary(index, pods, pods)
        await w.settle()
    assert w.kong.weights(UPSTREAM) == split(50, 50)
    assert len(w.kong.written) == 4  # seed, step 0, step 2, step 4
    assert w.drift_counts() == {} and w.events_of(REASON_DRIFT) == []


async def test_drift_series_exist_at_zero_from_a_rollouts_first_apply(world: World) -> None:
    """So increase() (the dashboard, KongsplitDriftCorrections) sees the first correction: a
    series that appears at 1 has no earlier sample to increase from."""
    w = world
    assert w.drift_series() == {}
    w.seed()
    await w.settle()
    assert w.kong.weights(UPSTREAM) == split(100, 0)
    assert w.drift_series() == {(UPSTREAM, kind): 0.0 for kind in DRIFT_KINDS}
    w.kong.set_weight(UPSTREAM, STABLE_T, 60)
    await w.sweep()
    assert w.drift("weight") == 1 and w.drift_counts() == {"weight": 1}
    # Moved to another upstream: the old series go, the new upstream's start at 0.
    w.rollout(objects.rollout("web", upstream="web-next.shop.svc"))
    await w.settle()
    assert w.kong.weights("web-next.shop.svc") == split(100, 0)
    assert w.drift_series() == {("web-next.shop.svc", kind): 0.0 for kind in DRIFT_KINDS}


async def test_a_configuration_replaced_on_a_follower_queues_nothing(world: World) -> None:
    w = world
    await applied_at(w, 0, 1, 1)
    w.leading = False
    w.kong.wipe()
    w.rec.config_replaced("foreign_config")
    assert len(w.rec.queue) == 0
    w.leading = True
    await w.sweep()  # later found by a sweep: counted as what it looks like, not as a replace
    assert w.drift_counts() == {"missing": 3}


async def test_an_exclusive_upstream_zeroes_foreign_targets_and_counts_them() -> None:
    w = World(exclusive=True)
    await applied_at(w, 0, 1, 1)
    w.kong.add_target(UPSTREAM, FOREIGN_T, 50)
    await w.sweep()
    assert w.kong.weights(UPSTREAM) == {**split(90, 10), FOREIGN_T: 0}
    assert w.drift_counts() == {"foreign": 1}
    assert w.errors("foreign_targets") == 0  # zeroed, so the split is exact: nothing to report
    w.rec.queue.close()


async def test_foreign_targets_are_reported_once_and_left_alone(world: World) -> None:
    w = world
    w.kong.add_target(UPSTREAM, FOREIGN_T, 50)
    w.seed()
    await w.settle()
    for _ in range(2):
        await w.sweep()
    assert w.kong.weights(UPSTREAM) == {**split(100, 0), FOREIGN_T: 50}
    assert w.errors("foreign_targets") == 1
    warned = [e for e in w.events_of(REASON_DRIFT) if FOREIGN_T in e.message]
    assert len(warned) == 1 and "set kong.exclusiveUpstreams to zero them" in warned[0].message
    assert w.state().foreign == (f"{FOREIGN_T}=50",)
    assert w.drift_counts() == {}  # reported, not corrected
    # A different foreign weight is news again.
    w.kong.set_weight(UPSTREAM, FOREIGN_T, 30)
    await w.sweep()
    assert w.errors("foreign_targets") == 2
    assert w.state().foreign == (f"{FOREIGN_T}=30",)


# =========================================================================== Kong failing


@pytest.mark.parametrize(
    ("error", "reason", "problem"),
    [
        pytest.param(KongUnavailable("Kong did not answer"), "kong_unavailable", True, id="down"),
        pytest.param(
            KongUnavailable("Kong answered 503", status=503), "kong_unavailable", False, id="503"
        ),
        pytest.param(KongAuthError("token refused", status=401), "kong_auth", True, id="401"),
        pytest.param(
            KongClientError("Kong answered 400", status=400), "kong_client_error", False, id="400"
        ),
        pytest.param(KongNotReady("empty config hash"), "kong_unavailable", False, id="not-ready"),
    ],
)
async def test_a_failed_write_is_reported_and_retried(
    world: World, error: KongError, reason: str, problem: bool
) -> None:
    w = world
    w.seed()
    w.kong.fail_next(error)
    await w.settle()
    st = w.state()
    assert (st.condition, st.last_error, st.failures) == ("failing", str(error), 1)
    assert w.errors(reason) == 1 and w.all_errors() == 1
    assert (w.rec.kong_problem == str(error)) is problem
    assert [(e.type, e.message) for e in w.events_of(REASON_WRITE_FAILED)] == [
        (WARNING, str(error))
    ]
    assert not w.kong.has_upstream(UPSTREAM)
    assert w.rollouts_gauge()["failing"] == 1
    # Retried after a back-off, re-reading Kong; the retry succeeds.
    key, flags = await asyncio.wait_for(w.rec.queue.get(), 5)
    assert key == KEY and flags.refresh
    await w.rec.reconcile(key, refresh=flags.refresh)
    w.rec.queue.done(key)
    st = w.state()
    assert (st.condition, st.last_error, st.failures) == ("managed", None, 0)
    assert w.kong.weights(UPSTREAM) == split(100, 0)
    assert w.rollouts_gauge()["failing"] == 0


async def test_a_failing_rollout_tells_the_first_and_every_tenth_attempt(world: World) -> None:
    w = world
    w.seed()
    w.kong.down = KongUnavailable("Kong answered 500", status=500)
    for _ in range(20):
        await w.rec.reconcile(KEY, refresh=True)
    assert w.state().failures == 20
    assert w.errors("kong_unavailable") == 20
    assert len(w.events_of(REASON_WRITE_FAILED)) == 3  # attempts 1, 10 and 20


async def test_an_upstream_missing_is_failing_until_it_exists() -> None:
    w = World()
    w.kong.create_upstreams = False
    w.seed()
    await w.settle()
    st = w.state()
    assert st.condition == "failing" and st.failures == 1
    assert st.last_error == (
        f"upstream {UPSTREAM} does not exist in Kong and kong.createUpstreams is off"
    )
    assert w.errors("upstream_missing") == 1
    assert [e.type for e in w.events_of(REASON_WRITE_FAILED)] == [WARNING]
    w.kong.add_target(UPSTREAM, STABLE_T, 1, tags=WEB_TAGS)  # someone creates it
    key, flags = await asyncio.wait_for(w.rec.queue.get(), 5)
    await w.rec.reconcile(key, refresh=flags.refresh)
    w.rec.queue.done(key)
    assert w.state().condition == "managed"
    assert w.kong.weights(UPSTREAM) == split(100, 0)
    w.rec.queue.close()


# =========================================================================== leadership


async def test_leadership_lost_mid_apply_stops_writing(world: World) -> None:
    w = world
    await applied_at(w, 0, 1, 1)

    def depose() -> None:
        w.leading = False

    w.kong.before_write = depose
    w.canary(2, 1, 1)
    await w.settle()
    assert w.kong.weights(UPSTREAM) == split(90, 10)  # nothing written
    assert isinstance(w.kong.applies[-1].error, KongNotLeader)
    st = w.state()
    assert st.condition == "managed" and st.last_error is None and st.failures == 0
    assert st.pending_since is None
    assert w.all_errors() == 0
    await asyncio.wait_for(w.rec.queue.join(), 1)  # no back-off retry was scheduled


async def test_a_follower_computes_but_never_writes(world: World) -> None:
    w = world
    w.leading = False
    w.seed()
    w.canary(0, 1, 1)
    await w.settle()
    await w.sweep()
    assert w.kong.applies == [] and w.kong.reads == []
    st = w.state()
    assert st.desired is not None and st.desired.weights() == split(90, 10)
    assert st.condition == "managed" and st.pending_since is None


async def test_leadership_gained_forgets_what_was_applied(world: World) -> None:
    """Weights another leader wrote meanwhile are put back by the sweep, but not counted as
    drift: this replica did not put the old ones there last."""
    w = world
    await applied_at(w, 0, 1, 1)
    w.kong.set_weight(UPSTREAM, CANARY_T, 30)  # the other leader, at another step
    w.rec.leadership_gained()
    st = w.state()
    assert st.applied is None and st.observed is None
    await w.sweep()
    assert w.kong.weights(UPSTREAM) == split(90, 10)
    assert w.drift_counts() == {}


# =========================================================================== invalid input


def _bad_annotation(w: World) -> None:
    w.seed(objects.rollout("web", annotations={"kongsplit.io/upstream": "10.0.0.1:80"}))


def _bad_port(w: World) -> None:
    annotations = {"kongsplit.io/upstream": UPSTREAM, "kongsplit.io/port": "grpc"}
    w.seed(objects.rollout("web", annotations=annotations))


def _missing_service(w: World) -> None:
    w.seed(objects.rollout("web", upstream=UPSTREAM, stable_service="nope"))


def _headless(w: World) -> None:
    w.seed()
    w.service("web-stable", None, "v1")


def _service_ports(*ports: dict[str, Any], port: str | None = None) -> Callable[[World], None]:
    """A Service the Rollout uses whose ports cannot be read: reported as what is wrong with it,
    not as "not found" (it was dropped from the store as unreadable before)."""

    def make(w: World) -> None:
        annotations = {"kongsplit.io/upstream": UPSTREAM}
        if port is not None:
            annotations["kongsplit.io/port"] = port
        w.seed(objects.rollout("web", annotations=annotations))
        bad = objects.service("web-stable", STABLE_IP, "v1", app="web", ports=list(ports))
        w.rec.on_service("MODIFIED", bad)

    return make


def _malformed(w: World) -> None:
    obj = objects.rollout("web", upstream=UPSTREAM)
    obj["status"]["currentStepIndex"] = "seven"
    w.seed(obj)


def _blue_green(w: World) -> None:
    obj = objects.rollout("web", upstream=UPSTREAM)
    obj["spec"]["strategy"] = {"blueGreen": {"activeService": "web-stable"}}
    w.seed(obj)


@pytest.mark.parametrize(
    ("make", "reason", "says"),
    [
        pytest.param(_bad_annotation, "invalid_annotation", "must be a Kong upstream", id="ip"),
        pytest.param(_bad_port, "invalid_annotation", "no port named 'grpc'", id="port"),
        pytest.param(_missing_service, "missing_service", "shop/nope not found", id="missing"),
        pytest.param(_headless, "missing_service", "headless Service refused", id="headless"),
        pytest.param(
            _service_ports({"name": "http", "port": 70000}),
            "missing_service",
            "Service shop/web-stable: spec.ports[0].port: must be an integer between 1 and 65535, "
            "got 70000",
            id="service-port-out-of-range",
        ),
        pytest.param(
            _service_ports({"name": "http", "port": "http"}),
            "missing_service",
            "Service shop/web-stable: spec.ports[0].port: must be an integer between 1 and 65535, "
            "got 'http'",
            id="service-port-wrong-type",
        ),
        pytest.param(
            _service_ports({"name": "http", "port": 80}, {"name": 7, "port": 81}),
            "missing_service",
            "Service shop/web-stable: spec.ports[1].name: must be a string, got 7",
            id="service-port-name-wrong-type",
        ),
        pytest.param(
            _service_ports({"name": "grpc", "port": 9090}, port="http"),
            "invalid_annotation",
            "Service shop/web-stable has no port named 'http' (ports: grpc)",
            id="service-without-the-named-port",
        ),
        pytest.param(_malformed, "invalid_rollout", "status.currentStepIndex", id="malformed"),
        pytest.param(_blue_green, "invalid_rollout", "blue-green", id="blue-green"),
    ],
)
async def test_invalid_input_is_reported_once_and_writes_nothing(
    world: World, make: Callable[[World], None], reason: str, says: str
) -> None:
    w = world
    make(w)
    await w.settle()
    for _ in range(2):
        await w.sweep()
    st = w.state()
    assert st.condition == "invalid"
    assert st.last_error is not None and says in st.last_error
    assert w.kong.applies == [] and w.kong.reads == []
    assert w.errors(reason) == 1 and w.all_errors() == 1
    warned = w.events_of(REASON_INVALID_ANNOTATION)
    assert [(e.type, e.message) for e in warned] == [(WARNING, st.last_error)]
    assert w.rollouts_gauge()["invalid"] == 1
    # Fixed: managed and written. Broken the same way again: told again.
    w.seed()
    await w.settle()
    assert w.state().condition == "managed" and w.kong.weights(UPSTREAM) == split(100, 0)
    make(w)
    await w.settle()
    assert w.errors(reason) == 2
    assert w.kong.weights(UPSTREAM) == split(100, 0)  # the weights last applied stay


async def test_a_malformed_rollout_that_is_not_ours_is_none_of_our_business(
    world: World,
) -> None:
    w = world
    obj = objects.rollout("not-ours", annotations={})
    obj["status"]["abort"] = "yes"
    w.rollout(obj, "ADDED")
    await w.settle()
    await w.sweep()
    assert w.rec.states == {} and w.events == [] and w.all_errors() == 0
    assert w.kong.applies == []


# =========================================================================== the rollouts gauge


async def test_the_rollouts_gauge_counts_each_state(world: World) -> None:
    w = world
    assert w.rollouts_gauge() == dict.fromkeys(ROLLOUT_STATES, 0.0)
    await applied_at(w, 0, 1, 1)  # managed
    assert w.rollouts_gauge() == {**dict.fromkeys(ROLLOUT_STATES, 0.0), "managed": 1.0}
    w.rec.on_rollout("ADDED", copy_of_web("copy"))  # refused
    w.rec.on_rollout("ADDED", objects.rollout("bad", annotations={"kongsplit.io/upstream": "x:1"}))
    for name, ip in (("held", "10.96.2.10"), ("failing", "10.96.3.10")):
        w.rec.on_service("ADDED", objects.service(f"{name}-stable", ip, "v1"))
        w.rec.on_service("ADDED", objects.service(f"{name}-canary", ip[:-1] + "1", "v1"))
    held = objects.rollout("held")
    held["metadata"]["generation"] = 2  # nothing of it in Kong: applied, but held
    w.rec.on_rollout("ADDED", held)
    w.rec.on_rollout("ADDED", objects.rollout("failing"))
    w.kong.refused["failing.shop.svc"] = KongClientError("Kong answered 400", status=400)
    await w.settle()
    assert w.rollouts_gauge() == {
        "managed": 1.0,
        "held": 1.0,
        "invalid": 1.0,
        "refused": 1.0,
        "failing": 1.0,
    }
    assert w.sample("kongsplit_managed_rollouts") == 3  # web, held, failing own an upstream
    rows = {row[:4]: row[4:] for row in w.rec.weight_rows()}
    assert rows[(NS, "web", UPSTREAM, "canary")] == (10, 10)
    assert rows[(NS, "web", UPSTREAM, "stable")] == (90, 90)
    assert (NS, "failing", "failing.shop.svc", "stable") in rows
    assert rows[(NS, "failing", "failing.shop.svc", "stable")] == (100, None)  # never observed
    assert all(r[1] not in ("copy", "bad") for r in rows)


async def test_an_abort_of_an_established_owner_asks_kong_nothing_before_writing(
    world: World,
) -> None:
    """Ownership confirmed by Kong within the sweep interval: the abort's pass goes straight to
    the write (Kong may be struggling; the check costs requests). After the interval the check
    is made again, aborted or not."""
    w = world
    w.seed()
    w.canary(2, 1, 1)
    await w.settle()
    assert w.kong.weights(UPSTREAM) == split(75, 25) and w.kong.claims  # witness: checked
    claims = len(w.kong.claims)
    w.canary(2, 1, 1, abort=True)
    await w.settle()
    assert w.kong.weights(UPSTREAM) == split(100, 0)
    assert len(w.kong.claims) == claims
    w.state().owned_at = -1e9  # the interval has passed
    await w.sweep()
    assert len(w.kong.claims) == claims + 1


async def test_a_resync_never_supersedes_a_pass_in_flight() -> None:
    """Start-up, Kong back, leadership gained: every key is queued again to re-read Kong. That
    is no change of the Rollout, so a pass holding the key keeps its write (``may_write``
    stays open); a real change does supersede it."""
    w = World()
    w.seed()
    key, _ = await w.rec.queue.get()  # a worker holds web now
    w.rec.resync_all()
    assert len(w.rec.queue) == 0 and not w.rec.queue.superseded(key)  # queued again, behind
    w.rollout(objects.rollout("web", upstream=UPSTREAM, index=1))
    assert w.rec.queue.superseded(key)
    w.rec.queue.done(key)
    assert len(w.rec.queue) == 1
