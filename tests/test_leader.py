"""Leader election against kmock (PUT shim) and KubeSim, with real kubernetes-asyncio clients.

Expiry is judged by the elector's clock (``clock=``). Where a test is about how long someone
waits — a follower waiting out a lease, a released lease taken at once — the electors get a
``FakeClock`` the test moves by hand, and each step waits for a witness that every elector has
acted on the new time (two more of its requests at the API server) before asserting: no real
second is slept, and "still a follower" means it looked and stayed one. The test of a hung
renewal keeps the real clock: it is about a request cut short in real time.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest
from kmock_shims import LEASES, KubeMock, api_client_for, until, url_of
from kubernetes_asyncio.client import ApiClient
from prometheus_client import CollectorRegistry

from kongsplit import kube
from kongsplit.leader import LeaderElector
from kongsplit.metrics import Metrics
from kongsplit.sim.kubesim import KubeSim

LEASE = ("default", "kongsplit")
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

# Short, so the suite stays fast: others may take over 1 s after the last renewal they saw.
TIMING: dict[str, float] = {"lease_duration": 1.0, "renew_deadline": 0.6, "retry_period": 0.1}
#: With a FakeClock only the retry period is slept for real: make it short.
FAST = {"retry_period": 0.02}


class FakeClock:
    """The electors' time, moved by the test (``advance``) and by nothing else."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


pytest_plugins = ("kmock_shims",)  # kube_mock, kube_api, kmock_watch_shim


def elector(api: ApiClient, identity: str, **kw: Any) -> LeaderElector:
    return LeaderElector(
        api, name=LEASE[1], namespace=LEASE[0], identity=identity, **{**TIMING, **kw}
    )


class Sampler:
    """Samples every elector's ``is_leader`` every few ms; counts moments with two leaders."""

    def __init__(self, *electors: LeaderElector) -> None:
        self.electors = list(electors)
        self.both = 0
        self.samples = 0
        self.leaders: list[str | None] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            leading = [e.identity for e in self.electors if e.is_leader]
            self.samples += 1
            if len(leading) > 1:
                self.both += 1
            self.leaders.append(leading[0] if leading else None)
            await asyncio.sleep(0.003)

    async def __aenter__(self) -> Sampler:
        self._task = asyncio.create_task(self._run(), name="sampler")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class Tasks:
    def __init__(self) -> None:
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, e: LeaderElector) -> None:
        self.tasks[e.identity] = asyncio.create_task(e.run(), name=f"elector:{e.identity}")

    async def stop(self, e: LeaderElector) -> None:
        task = self.tasks.pop(e.identity)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def stop_all(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks.clear()


@pytest.fixture()
async def tasks() -> AsyncIterator[Tasks]:
    t = Tasks()
    try:
        yield t
    finally:
        await t.stop_all()


async def first_leader(*electors: LeaderElector, within: float = 3.0) -> LeaderElector:
    async with asyncio.timeout(within):
        while True:
            for e in electors:
                if e.is_leader:
                    return e
            await asyncio.sleep(0.005)


def lease_requests(k: KubeMock, method: kmock.method) -> int:
    return sum(1 for r in k if r.method == method and "/leases" in str(r.url))


async def lease_rounds(k: KubeMock, *, gets: int = 0, puts: int = 0) -> None:
    """Until kmock has served ``gets`` more GETs and ``puts`` more PUTs of the Lease than now.

    An elector reads its clock before it sends, and sends one request at a time, so its second
    request from now on belongs to an attempt that began after this call: it has acted on the
    clock as the test just set it. (A follower only GETs, a leader only PUTs its renewals.)"""
    want_gets = lease_requests(k, kmock.method.GET) + gets
    want_puts = lease_requests(k, kmock.method.PUT) + puts
    await until(
        lambda: (
            lease_requests(k, kmock.method.GET) >= want_gets
            and lease_requests(k, kmock.method.PUT) >= want_puts
        ),
        within=3.0,
    )


async def get_lease(k: KubeMock) -> dict[str, Any]:
    async with k.get(url_of(LEASES, *LEASE)) as resp:
        assert resp.status == 200, await resp.text()
        lease: dict[str, Any] = await resp.json()
        return lease


async def test_one_leads_the_other_follows_then_takes_over(
    kube_mock: KubeMock, kube_api: ApiClient, tasks: Tasks
) -> None:
    reg_a, reg_b = CollectorRegistry(), CollectorRegistry()
    clock = FakeClock()
    a = elector(kube_api, "a", metrics=Metrics(reg_a), clock=clock, **FAST)
    b = elector(kube_api, "b", metrics=Metrics(reg_b), clock=clock, **FAST)
    async with Sampler(a, b) as sampler:
        tasks.start(a)
        tasks.start(b)
        leader = await first_leader(a, b)
        follower = b if leader is a else a
        # The follower stays a follower while the leader renews, well past one lease duration
        # (1.5 s by their clock, in steps shorter than the renew deadline): each renewal it sees
        # starts its wait again.
        for _ in range(6):
            clock.advance(0.25)
            await lease_rounds(kube_mock, gets=2, puts=2)
            assert leader.is_leader and not follower.is_leader
        assert follower.following.is_set() and not follower.leading.is_set()
        lead_reg = reg_a if leader is a else reg_b
        follow_reg = reg_b if leader is a else reg_a
        assert lead_reg.get_sample_value("kongsplit_leader") == 1
        assert follow_reg.get_sample_value("kongsplit_leader") == 0
        lease = await get_lease(kube_mock)
        assert lease["spec"]["holderIdentity"] == leader.identity
        assert lease["spec"]["leaseDurationSeconds"] == 1
        assert MICRO_TIME.match(lease["spec"]["renewTime"])
        assert MICRO_TIME.match(lease["spec"]["acquireTime"])

        # The leader dies without releasing: the follower waits out one lease duration from
        # its last sighting of a change (the final renewal, seen before the clock moves on),
        # then leads.
        await tasks.stop(leader)
        assert not leader.is_leader
        await lease_rounds(kube_mock, gets=2)
        clock.advance(0.9)
        await lease_rounds(kube_mock, gets=2)
        assert not follower.is_leader, "took over before the lease duration"
        clock.advance(0.2)
        await first_leader(follower, within=3.0)
        lease = await get_lease(kube_mock)
        assert lease["spec"]["holderIdentity"] == follower.identity
        assert lease["spec"]["leaseTransitions"] == 1
    assert sampler.both == 0 and sampler.samples > 20


async def test_release_hands_over_at_once(
    kube_mock: KubeMock, kube_api: ApiClient, tasks: Tasks
) -> None:
    clock = FakeClock()  # never moved: a released lease is taken without waiting out anything
    a = elector(kube_api, "a", clock=clock, **FAST)
    b = elector(kube_api, "b", clock=clock, **FAST)
    async with Sampler(a, b) as sampler:
        tasks.start(a)
        leader = await first_leader(a)
        tasks.start(b)
        await lease_rounds(kube_mock, gets=2)  # b has looked: a holds the lease
        assert not b.is_leader and b.following.is_set()
        await tasks.stop(a)
        await a.release()
        lease = await get_lease(kube_mock)
        assert not lease["spec"].get("holderIdentity") or lease["spec"]["holderIdentity"] == "b"
        await first_leader(b, within=1.0)
        assert leader is a and not a.is_leader
    assert sampler.both == 0


@pytest.mark.parametrize(
    ("holder", "released"),
    [
        pytest.param("a", True, id="our-own-renewal-cut-short"),
        pytest.param("someone", False, id="another-holder"),
    ],
)
async def test_release_after_the_lease_changed_unseen(
    kube_mock: KubeMock, kube_api: ApiClient, tasks: Tasks, holder: str, released: bool
) -> None:
    """Stopping the elector can cut a renewal short after the API server applied it: the
    Lease then still names us, under a resourceVersion we never saw, and release must give it
    up all the same. A Lease someone else holds by then is left alone."""
    a = elector(kube_api, "a")
    tasks.start(a)
    await first_leader(a)
    await tasks.stop(a)
    lease = await get_lease(kube_mock)  # the write a never saw answered
    lease["spec"].update(holderIdentity=holder, renewTime=kube.format_micro_time())
    async with kube_mock.put(url_of(LEASES, *LEASE), json=lease) as resp:
        assert resp.status == 200, await resp.text()
    await a.release()
    spec = (await get_lease(kube_mock))["spec"]
    assert (not spec.get("holderIdentity")) is released
    if not released:
        assert spec["holderIdentity"] == holder


async def test_conflict_on_renew_steps_down(
    kube_mock: KubeMock, kube_api: ApiClient, tasks: Tasks
) -> None:
    a = elector(kube_api, "a")
    async with Sampler(a) as sampler:
        tasks.start(a)
        await first_leader(a)
        conflicts = 0

        def conflict_once(request: kmock.Request) -> Any:
            nonlocal conflicts
            if conflicts == 0:
                conflicts += 1
                raise kmock.KubernetesError(409, "Conflict", "the object has been modified")
            return NotImplemented

        kube_mock["put", kmock.resource(LEASES)] << conflict_once
        await a.following.wait()  # stepped down on the 409
        assert conflicts == 1 and not a.is_leader
        # The lease still names it, so it re-acquires on its next attempt.
        await first_leader(a, within=1.0)
    assert None in sampler.leaders


async def test_leader_stops_before_its_lease_can_expire_when_renewals_hang(
    kube_mock: KubeMock, kube_api: ApiClient, tasks: Tasks
) -> None:
    a, b = elector(kube_api, "a"), elector(kube_api, "b")
    loop = asyncio.get_running_loop()
    async with Sampler(a, b) as sampler:
        tasks.start(a)
        await first_leader(a)
        tasks.start(b)
        await lease_rounds(kube_mock, gets=2)  # b follows, having seen a's lease
        assert not b.is_leader
        hang = asyncio.Event()

        async def hanging(request: kmock.Request) -> Any:
            if request.data and request.data.get("spec", {}).get("holderIdentity") == "a":
                await hang.wait()  # a's renewals never come back
            return NotImplemented

        kube_mock["put", kmock.resource(LEASES)] << hanging
        cut = loop.time()
        await a.following.wait()
        # Within its renew deadline after the last renewal that got through (plus one period).
        assert loop.time() - cut <= TIMING["renew_deadline"] + TIMING["retry_period"] + 0.05
        await first_leader(b, within=3.0)
        hang.set()
    assert sampler.both == 0


async def test_create_race_and_existing_foreign_lease(
    kube_mock: KubeMock, kube_api: ApiClient, tasks: Tasks
) -> None:
    # Another controller holds a fresh lease: we follow and wait it out.
    async with kube_mock.post(
        url_of(LEASES, LEASE[0]),
        json={
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE[1], "namespace": LEASE[0]},
            "spec": {"holderIdentity": "someone", "leaseDurationSeconds": 1},
        },
    ) as resp:
        assert resp.status < 300
    clock = FakeClock()
    a = elector(kube_api, "a", clock=clock, **FAST)
    tasks.start(a)
    await lease_rounds(kube_mock, gets=2)  # a has seen the foreign lease
    clock.advance(0.9)
    await lease_rounds(kube_mock, gets=2)
    assert not a.is_leader, "took the lease before a full lease duration from its first sighting"
    clock.advance(0.2)
    await first_leader(a, within=3.0)
    lease = await get_lease(kube_mock)
    assert lease["spec"]["holderIdentity"] == "a" and lease["spec"]["leaseTransitions"] == 1


async def test_a_replica_restarted_after_a_crash_waits_out_its_old_lease_quietly(
    kube_mock: KubeMock, kube_api: ApiClient, tasks: Tasks
) -> None:
    """kill -9 (or an OOM kill) and a restart under the same identity: the Lease still names
    this replica, under its previous process, and nobody renews it. That is no identity clash
    (the chaos run logged one at error level after every such restart): no clash counted, the
    lease waited out, then taken. A renewal seen meanwhile would be a clash
    (``test_two_processes_with_one_identity_never_both_lead``)."""
    async with kube_mock.post(
        url_of(LEASES, LEASE[0]),
        json={
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": LEASE[1],
                "namespace": LEASE[0],
                "annotations": {"kongsplit.io/holder-instance": "0123456789abcdef"},
            },
            "spec": {
                "holderIdentity": "same",
                "leaseDurationSeconds": 1,
                "renewTime": "2026-12-07T00:00:00.000000Z",
            },
        },
    ) as resp:
        assert resp.status < 300
    registry = CollectorRegistry()
    clock = FakeClock()
    restarted = elector(kube_api, "same", clock=clock, metrics=Metrics(registry), **FAST)
    tasks.start(restarted)
    await lease_rounds(kube_mock, gets=3)  # witness: it has read the old lease, three times
    assert not restarted.is_leader
    clock.advance(1.1)
    await first_leader(restarted, within=3.0)
    assert registry.get_sample_value("kongsplit_leader_identity_clashes_total") == 0
    lease = await get_lease(kube_mock)
    assert lease["metadata"]["annotations"]["kongsplit.io/holder-instance"] == restarted.instance


async def test_two_electors_against_kubesim(tasks: Tasks) -> None:
    async with KubeSim() as sim:
        api_a, api_b = api_client_for(sim.url), api_client_for(sim.url)

        def gets() -> int:
            return sum(1 for m, p in sim.requests if m == "GET" and "/leases/" in p)

        try:
            clock = FakeClock()  # never moved: the handover below is the release, not expiry
            a = elector(api_a, "a", clock=clock, **FAST)
            b = elector(api_b, "b", clock=clock, **FAST)
            async with Sampler(a, b) as sampler:
                tasks.start(a)
                tasks.start(b)
                leader = await first_leader(a, b)
                follower = b if leader is a else a
                seen = gets()
                await until(lambda: gets() >= seen + 2)  # the follower looked, and follows
                assert not follower.is_leader and follower.following.is_set()
                await tasks.stop(leader)
                await leader.release()
                await first_leader(follower, within=1.0)
                await tasks.stop_all()
            assert sampler.both == 0
            lease = sim.get("coordination.k8s.io/v1", "leases", *LEASE)
            assert lease is not None and lease["spec"]["holderIdentity"] == follower.identity
        finally:
            await api_a.close()
            await api_b.close()


async def test_unreachable_api_never_leads(tasks: Tasks, caplog: pytest.LogCaptureFixture) -> None:
    api = api_client_for("http://127.0.0.1:9")  # discard port: nothing listens

    def failures() -> int:
        return sum("lease request failed" in r.getMessage() for r in caplog.records)

    try:
        a = elector(api, "a", **FAST)
        tasks.start(a)
        await until(lambda: failures() >= 3)  # it tried, and tried again
        assert not a.is_leader and a.following.is_set()
    finally:
        await tasks.stop_all()
        await api.close()


@pytest.mark.parametrize(
    "kw",
    [
        pytest.param({"renew_deadline": 1.0}, id="deadline-not-below-duration"),
        pytest.param({"retry_period": 0.7}, id="retry-not-below-deadline"),
        pytest.param({"identity": ""}, id="no-identity"),
    ],
)
def test_invalid_timings_are_refused(kw: dict[str, Any]) -> None:
    args: dict[str, Any] = {"name": "l", "namespace": "n", "identity": "x", **TIMING, **kw}
    with pytest.raises(ValueError):
        LeaderElector(None, **args)  # type: ignore[arg-type]


def test_is_leader_follows_the_injected_clock() -> None:
    now = [100.0]
    e = LeaderElector(
        None,  # type: ignore[arg-type]
        name="l",
        namespace="n",
        identity="x",
        clock=lambda: now[0],
        **TIMING,
    )
    e._become_leader({"spec": {}}, sent_at=100.0)
    assert e.is_leader
    now[0] = 100.59
    assert e.is_leader
    now[0] = 100.6  # the renew deadline after the renewal was *sent*: no longer trusted
    assert not e.is_leader


async def test_a_lease_deleted_by_hand_never_gives_two_leaders(
    kube_mock: KubeMock, kube_api: ApiClient, tasks: Tasks
) -> None:
    a, b = elector(kube_api, "a"), elector(kube_api, "b")
    async with Sampler(a, b) as sampler:
        tasks.start(a)
        tasks.start(b)
        leader = await first_leader(a, b)
        async with kube_mock.delete(url_of(LEASES, *LEASE)) as resp:
            assert resp.status < 300, await resp.text()
        # The old leader's next renewal finds the lease gone (404) and steps down at once,
        # while the follower creates a new one.
        new = None
        async with asyncio.timeout(3):
            while new is None:
                new = next((e for e in (a, b) if e.is_leader and e is not leader), None)
                if new is None and not leader.is_leader:
                    new = await first_leader(a, b)
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
    assert sampler.both == 0 and sampler.samples > 100


async def test_a_follower_waits_out_a_deleted_lease_before_creating_a_new_one(
    kube_mock: KubeMock, kube_api: ApiClient
) -> None:
    """The leader may still be writing on the lease it renewed (it learns of the deletion only
    at its next renewal), so a follower treats a lease deleted by hand like one that stopped
    being renewed: it waits lease_duration from the last change it saw, then creates a new one.
    (The chaos run caught 0.7-1.3 s of two writers when the follower created it at once.)"""
    clock = FakeClock()
    a, b = elector(kube_api, "a", clock=clock), elector(kube_api, "b", clock=clock)
    await a._attempt()
    assert a.is_leader
    await b._attempt()  # b sees a's lease: a follower
    assert not b.is_leader and b._observed is not None and b._observed.holder == "a"
    async with kube_mock.delete(url_of(LEASES, *LEASE)) as resp:
        assert resp.status < 300, await resp.text()
    clock.advance(0.3)  # a renewed 0.3 s ago: its lease is still good for 0.3 s more
    await b._attempt()  # b finds no lease (the witness: a GET answered 404) ...
    assert a.is_leader and not b.is_leader, "two leaders: the follower did not wait"
    clock.advance(0.4)  # past a's renew deadline: a no longer trusts its lease
    assert not a.is_leader
    await b._attempt()  # ... and still waits: lease_duration has not passed since it saw a's
    assert not b.is_leader
    clock.advance(0.31)  # lease_duration (1 s) after b last saw the lease change
    await b._attempt()
    assert b.is_leader and not a.is_leader
    await a._attempt()  # a's renewal finds b's new lease: a 409, a stays down
    assert not a.is_leader and b.is_leader


class TwinSampler(Sampler):
    """Like Sampler, for electors that share one identity (counted by object)."""

    async def _run(self) -> None:
        while True:
            leading = [e for e in self.electors if e.is_leader]
            self.samples += 1
            if len(leading) > 1:
                self.both += 1
            self.leaders.append(str(id(leading[0])) if leading else None)
            await asyncio.sleep(0.003)


async def test_two_processes_with_one_identity_never_both_lead(
    kube_mock: KubeMock, kube_api: ApiClient
) -> None:
    reg_1, reg_2 = CollectorRegistry(), CollectorRegistry()
    one = elector(kube_api, "same", metrics=Metrics(reg_1))
    two = elector(kube_api, "same", metrics=Metrics(reg_2))
    runs = [asyncio.create_task(e.run(), name=f"twin-{i}") for i, e in enumerate((one, two))]
    try:
        async with TwinSampler(one, two) as sampler:
            leader = await first_leader(one, two)
            await asyncio.sleep(1.5)  # more than a lease duration of both campaigning
        follower = two if leader is one else one
        assert leader.is_leader and not follower.is_leader
        changes = sum(1 for x, y in itertools.pairwise(sampler.leaders) if x != y)
        assert sampler.both == 0 and changes <= 1, (sampler.both, changes)
        follow_reg = reg_2 if leader is one else reg_1
        clashes = follow_reg.get_sample_value("kongsplit_leader_identity_clashes_total")
        assert clashes is not None and clashes >= 1
        lease = await get_lease(kube_mock)
        annotations = lease["metadata"]["annotations"]
        assert annotations["kongsplit.io/holder-instance"] == leader.instance
    finally:
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)


async def test_the_write_budget_ends_before_anyone_may_take_over(
    kube_api: ApiClient, tasks: Tasks
) -> None:
    a, b = elector(kube_api, "a"), elector(kube_api, "b")
    tasks.start(a)
    tasks.start(b)
    leader = await first_leader(a, b)
    follower = b if leader is a else a
    budget = leader.write_budget()
    # At most the renew deadline (0.6 s), which ends before the lease duration (1 s) after
    # which a follower may take over.
    assert 0 < budget <= TIMING["renew_deadline"]
    assert follower.write_budget() == 0
