"""kong.dbmode through the router: entity writes in plan order against the Kong simulator,
over real sockets — never zero total weight, one PATCH on a warm cache, re-reads on 404/409."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest
from kong_support import CANARY, FAST, OWNER, STABLE, running_router, want

from kongsplit.kong import dbmode
from kongsplit.kong.apply import KongRouter
from kongsplit.kong.client import KongAdmin, RetryPolicy
from kongsplit.kong.errors import KongError, KongModeError, KongNotLeader, KongUnavailable
from kongsplit.kong.records import KongMode
from kongsplit.kong.targets import MANAGED_TAG, DesiredTarget
from kongsplit.kong.writes import ApplyResult, Write, WriteKind
from kongsplit.sim.kongsim import KongSim

# --- apply against the simulator over real sockets ----------------------------------------------

U = "checkout.shop.svc"


def drift_kinds(result: ApplyResult, *, corrected_only: bool = False) -> dict[str, int]:
    """Drift an apply found, by kind (``{"weight": 1, "missing": 2}``)."""
    return dict(Counter(d.kind for d in result.drift if d.corrected or not corrected_only))


@pytest.fixture
async def sim() -> AsyncIterator[KongSim]:
    async with KongSim() as s:
        yield s


@pytest.fixture
async def admin(sim: KongSim) -> AsyncIterator[KongRouter]:
    async with running_router(sim.url, request_timeout=2.0) as router:
        yield router


class TotalWatcher:
    """Checks, after every committed write, that the upstream never falls to zero total weight.

    Zero is allowed only before anything was ever weighted (a fresh upstream, created empty).
    """

    def __init__(self, sim: KongSim, upstream: str, workspace: str = "default") -> None:
        self.sim, self.upstream, self.workspace = sim, upstream, workspace
        self.totals: list[int] = []
        self.violations: list[list[tuple[str, int]]] = []
        self.record()  # the state before any write counts as "was weighted"
        sim.on_write.append(self)

    def __call__(self, workspace: str, upstream: str) -> None:
        if (workspace, upstream) == (self.workspace, self.upstream):
            self.record()

    def record(self) -> None:
        try:
            targets = self.sim.targets(self.upstream, self.workspace)
        except KeyError:
            return
        total = sum(t["weight"] for t in targets)
        if total == 0 and any(t > 0 for t in self.totals):
            self.violations.append([(t["target"], t["weight"]) for t in targets])
        self.totals.append(total)


def _weights(sim: KongSim, upstream: str = U, workspace: str = "default") -> dict[str, int]:
    return {t["target"]: t["weight"] for t in sim.targets(upstream, workspace)}


def _writes(sim: KongSim) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in sim.requests if r.method != "GET"]


@pytest.mark.parametrize(
    ("start", "steps"),
    [
        pytest.param((100, 0), [(0, 100)], id="100/0-to-0/100"),
        pytest.param((0, 100), [(100, 0)], id="0/100-to-100/0"),
        pytest.param((75, 25), [(25, 75)], id="75/25-to-25/75"),
        pytest.param(None, [(100, 0)], id="fresh-upstream-stable"),
        pytest.param(None, [(0, 100)], id="fresh-upstream-canary"),
        pytest.param(
            (100, 0), [(90, 10), (75, 25), (50, 50), (25, 75), (0, 100), (100, 0)], id="canary-walk"
        ),
    ],
)
async def test_no_intermediate_state_has_zero_total_weight(
    sim: KongSim, admin: KongRouter, start: tuple[int, int] | None, steps: list[tuple[int, int]]
) -> None:
    if start is not None:
        sim.add_upstream(U)
        sim.add_target(U, STABLE, start[0], tags=list(OWNER))
        sim.add_target(U, CANARY, start[1], tags=list(OWNER))
    watcher = TotalWatcher(sim, U)
    for stable, canary in steps:
        # A cold client per step too: ordering must hold whether or not the cache is warm.
        await admin.apply(U, want(stable, canary), owner_tags=OWNER)
        assert _weights(sim) == {STABLE: stable, CANARY: canary}
        async with running_router(sim.url) as cold:
            await cold.apply(U, want(stable, canary), owner_tags=OWNER)
        assert _weights(sim) == {STABLE: stable, CANARY: canary}
    assert len(watcher.totals) > 1, "the hook saw no writes"
    assert watcher.violations == []
    assert watcher.totals[-1] == sum(steps[-1])


async def test_the_zero_total_watcher_catches_a_bad_order(sim: KongSim, admin: KongRouter) -> None:
    """Control: lowering before raising (what the plan must never do) is caught by the hook."""
    sim.add_upstream(U)
    stable = sim.add_target(U, STABLE, 100, tags=list(OWNER))
    canary = sim.add_target(U, CANARY, 0, tags=list(OWNER))
    watcher = TotalWatcher(sim, U)
    await admin.client.update_target(U, stable["id"], weight=0)
    await admin.client.update_target(U, canary["id"], weight=100)
    assert watcher.violations == [[(CANARY, 0), (STABLE, 0)]] or watcher.violations == [
        [(STABLE, 0), (CANARY, 0)]
    ]


async def test_fresh_upstream_created_tagged(sim: KongSim, admin: KongRouter) -> None:
    result = await admin.apply(U, want(100, 0), owner_tags=OWNER)
    assert result.upstream_created
    [upstream] = sim.upstreams()
    assert upstream["name"] == U and upstream["tags"] == [
        MANAGED_TAG,
        OWNER[1],
    ]  # the owner, read back on restarts
    assert [w.kind for w in result.writes] == [WriteKind.CREATE, WriteKind.CREATE]
    # The weighted target first, the zero-weight one after it.
    creates = [r.body["target"] for r in sim.requests if r.method == "POST" and "targets" in r.path]
    assert creates == [STABLE, CANARY]
    assert {t["target"]: t["tags"] for t in sim.targets(U)} == {
        STABLE: list(OWNER),
        CANARY: list(OWNER),
    }
    assert result.weights() == {STABLE: 100, CANARY: 0}
    assert drift_kinds(result) == {"missing": 3}


async def test_missing_upstream_reported_when_creation_is_off(
    sim: KongSim, admin: KongRouter
) -> None:
    result = await admin.apply(U, want(100, 0), owner_tags=OWNER, create_upstream=False)
    assert result.upstream_missing and not result.writes
    assert sim.upstreams() == []
    assert _writes(sim) == []


async def test_warm_cache_weight_change_is_one_patch_per_target(
    sim: KongSim, admin: KongRouter
) -> None:
    await admin.apply(U, want(90, 10), owner_tags=OWNER)
    sim.requests.clear()
    result = await admin.apply(U, want(75, 25), owner_tags=OWNER)
    assert [(r.method, r.body) for r in sim.requests] == [
        ("PATCH", {"weight": 25}),  # the raise first
        ("PATCH", {"weight": 75}),
    ]
    assert [w.kind for w in result.writes] == [WriteKind.UPDATE, WriteKind.UPDATE]
    assert drift_kinds(result) == {"weight": 2}  # vs the previous desired: not drift a sweep saw
    sim.requests.clear()
    result = await admin.apply(U, want(75, 25), owner_tags=OWNER)
    assert sim.requests == [] and result.writes == ()  # nothing written while nothing changes


async def test_sweep_reads_once_and_corrects_drift(sim: KongSim, admin: KongRouter) -> None:
    await admin.apply(U, want(50, 50), owner_tags=OWNER)
    sim.set_weight(U, CANARY, 80)  # someone behind our back
    sim.requests.clear()
    result = await admin.apply(U, want(50, 50), owner_tags=OWNER, refresh=True)
    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in sim.requests] == [
        ("GET", "targets"),
        (
            "PATCH",
            sim.targets(U)[0]["id"]
            if sim.targets(U)[0]["target"] == CANARY
            else sim.targets(U)[1]["id"],
        ),
    ]
    assert drift_kinds(result) == {"weight": 1}
    assert _weights(sim) == {STABLE: 50, CANARY: 50}


def _reads(sim: KongSim) -> list[str]:
    return [f"{r.method} {r.path.rsplit('/', 1)[-1]}" for r in sim.requests]


async def test_a_restart_reads_each_upstream_once(sim: KongSim) -> None:
    """A fresh process (nothing cached): ``claim`` reads the upstream's targets to find its
    owner, and the sweep-like ``apply(refresh=True)`` that follows at once plans from that
    read — one GET of targets per upstream, no write when Kong already holds the weights."""
    async with running_router(sim.url, request_timeout=2.0) as first:
        await first.apply(U, want(75, 25), owner_tags=OWNER)
    async with running_router(sim.url, request_timeout=2.0) as router:
        await router.ensure_mode()
        sim.requests.clear()
        claim = await router.claim(U)
        result = await router.apply(U, want(75, 25), owner_tags=OWNER, refresh=True)
        assert claim.owner == ("shop", "checkout") and result.writes == ()
        assert _reads(sim) == ["GET upstreams", "GET targets"]
        # A later sweep reads again: the claim's read stood for one pass only.
        sim.requests.clear()
        await router.apply(U, want(75, 25), owner_tags=OWNER, refresh=True)
        assert _reads(sim) == ["GET targets"]


async def test_a_claim_older_than_a_pass_is_read_again(
    sim: KongSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_router(sim.url, request_timeout=2.0) as first:
        await first.apply(U, want(75, 25), owner_tags=OWNER)
    monkeypatch.setattr("kongsplit.kong.dbmode.FRESH_READ", 0.0)
    async with running_router(sim.url, request_timeout=2.0) as router:
        await router.ensure_mode()
        await router.claim(U)
        sim.set_weight(U, CANARY, 80)  # after the claim's read
        sim.requests.clear()
        result = await router.apply(U, want(75, 25), owner_tags=OWNER, refresh=True)
        assert _reads(sim)[0] == "GET targets"  # read again: the drift is seen and put back
        assert drift_kinds(result) == {"weight": 1} and _weights(sim) == {STABLE: 75, CANARY: 25}


async def test_a_new_upstream_costs_no_read_after_its_claim(sim: KongSim) -> None:
    """Start-up against an empty Kong: the claim asks for the upstream by name (404) — no
    listing of every upstream again — and the apply creates it without reading it again."""
    sim.add_upstream("someone-else.shop.svc")
    async with running_router(sim.url, request_timeout=2.0) as router:
        await router.ensure_mode()
        await router.claim("someone-else.shop.svc")  # the listing, once
        sim.requests.clear()
        claim = await router.claim(U)
        result = await router.apply(U, want(90, 10), owner_tags=OWNER, refresh=True)
        assert not claim.exists and result.upstream_created
        assert _reads(sim) == ["GET " + U, "POST upstreams", "POST targets", "POST targets"]


async def test_an_old_upstream_list_is_read_again_behind_the_claims(
    sim: KongSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the list of upstreams is older than its TTL, claims go on with the one they have
    while it is read again in the background: a listing of 10,000 upstreams (10 pages, ~0.4 s)
    held every change behind it, and was the whole p99 of the scale run at 10,000."""
    sim.add_upstream("someone-else.shop.svc", tags=["managed-by-kongsplit"])
    async with running_router(sim.url, request_timeout=5.0) as router:
        await router.ensure_mode()
        first = await router.claim("someone-else.shop.svc")  # the first listing: waited for
        assert first.exists and first.tagged_for_kongsplit
        async with (
            aiohttp.ClientSession() as http,
            http.patch(f"{sim.url}/upstreams/someone-else.shop.svc", json={"tags": []}) as resp,
        ):
            assert resp.status == 200  # consent withdrawn in Kong
        monkeypatch.setattr(dbmode, "UPSTREAM_LIST_TTL", 0.0)  # the list is old now
        sim.faults.delay(1.0, method="GET", path_prefix="/upstreams", n=1)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        claim = await router.claim("someone-else.shop.svc")
        assert loop.time() - t0 < 0.5  # not held behind the listing Kong answers in 1 s
        assert claim.tagged_for_kongsplit  # the list it had
        await asyncio.sleep(1.3)  # the background listing landed
        monkeypatch.setattr(dbmode, "UPSTREAM_LIST_TTL", 60.0)
        assert not (await router.claim("someone-else.shop.svc")).tagged_for_kongsplit


async def test_closing_stops_a_background_listing(
    sim: KongSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing still running in the background when the daemon stops is cancelled with the
    router (the suite fails any test that leaves a task behind), not left to fail on a closed
    session."""
    sim.add_upstream("someone-else.shop.svc")
    async with running_router(sim.url, request_timeout=5.0) as router:
        await router.ensure_mode()
        await router.claim("someone-else.shop.svc")
        monkeypatch.setattr(dbmode, "UPSTREAM_LIST_TTL", 0.0)
        sim.faults.delay(5.0, method="GET", path_prefix="/upstreams", n=1)
        await router.claim("someone-else.shop.svc")
        await asyncio.sleep(0.1)  # the background listing is waiting for Kong
        assert router.dbmode._relisting  # witness: it is running
    assert not router.dbmode._relisting


async def test_adopts_untagged_target_at_a_wanted_address(sim: KongSim, admin: KongRouter) -> None:
    sim.add_upstream(U)
    sim.add_target(U, STABLE, 100)  # untagged: someone created it by hand
    result = await admin.apply(U, want(100, 0), owner_tags=OWNER)
    assert sorted(w.kind for w in result.writes) == [WriteKind.ADOPT, WriteKind.CREATE]
    patch = next(r for r in sim.requests if r.method == "PATCH")
    assert patch.body == {"weight": 100, "tags": list(OWNER)}
    assert {t["target"]: t["tags"] for t in sim.targets(U)}[STABLE] == list(OWNER)


async def test_409_then_reread_then_patch(sim: KongSim, admin: KongRouter) -> None:
    await admin.apply(U, [DesiredTarget(STABLE, 100)], owner_tags=OWNER)
    sim.add_target(U, CANARY, 7, tags=list(OWNER))  # appears behind the cache's back
    sim.requests.clear()
    await admin.apply(U, want(90, 10), owner_tags=OWNER)
    assert [(r.method, r.status) for r in sim.requests] == [
        ("POST", 409),
        ("GET", 200),
        ("PATCH", 200),  # canary 7 → 10 (raise)
        ("PATCH", 200),  # stable 100 → 90 (lower)
    ]
    assert _weights(sim) == {STABLE: 90, CANARY: 10}


async def test_404_then_reread_then_recreate(sim: KongSim, admin: KongRouter) -> None:
    await admin.apply(U, want(100, 0), owner_tags=OWNER)
    sim.delete_target(U, CANARY)
    sim.requests.clear()
    watcher = TotalWatcher(sim, U)
    await admin.apply(U, want(90, 10), owner_tags=OWNER)
    assert [(r.method, r.status) for r in sim.requests] == [
        ("PATCH", 404),
        ("GET", 200),
        ("POST", 201),
        ("PATCH", 200),
    ]
    assert _weights(sim) == {STABLE: 90, CANARY: 10}
    assert watcher.violations == []


async def test_wiped_database_recreates_upstream_and_targets(
    sim: KongSim, admin: KongRouter
) -> None:
    await admin.apply(U, want(75, 25), owner_tags=OWNER)
    sim.wipe()
    result = await admin.apply(U, want(75, 25), owner_tags=OWNER, refresh=True)
    assert result.upstream_created
    assert drift_kinds(result) == {"missing": 3}
    assert _weights(sim) == {STABLE: 75, CANARY: 25}


async def test_foreign_targets_untouched_unless_exclusive(sim: KongSim, admin: KongRouter) -> None:
    sim.add_upstream(U)
    sim.add_target(U, "10.9.0.1:80", 50, tags=["managed-by-ingress-controller"])
    sim.add_target(U, "10.9.0.2:80", 0)
    result = await admin.apply(U, want(100, 0), owner_tags=OWNER)
    assert [t.target for t in result.foreign] == ["10.9.0.1:80"]
    assert drift_kinds(result) == {"missing": 2, "foreign": 1}
    assert drift_kinds(result, corrected_only=True) == {"missing": 2}
    assert _weights(sim)["10.9.0.1:80"] == 50
    result = await admin.apply(U, want(100, 0), owner_tags=OWNER, exclusive=True)
    assert [(w.kind, w.target) for w in result.writes] == [(WriteKind.ZERO_FOREIGN, "10.9.0.1:80")]
    assert result.foreign == ()
    weights = _weights(sim)
    assert weights == {STABLE: 100, CANARY: 0, "10.9.0.1:80": 0, "10.9.0.2:80": 0}
    # Never deleted, and their tags were left alone.
    tags = {t["target"]: t["tags"] for t in sim.targets(U)}
    assert tags["10.9.0.1:80"] == ["managed-by-ingress-controller"]


async def test_stale_owned_target_is_deleted_last(sim: KongSim, admin: KongRouter) -> None:
    await admin.apply(U, [DesiredTarget("10.0.0.9:80", 100)], owner_tags=OWNER)
    sim.requests.clear()
    watcher = TotalWatcher(sim, U)
    await admin.apply(U, want(100, 0), owner_tags=OWNER)
    assert _weights(sim) == {STABLE: 100, CANARY: 0}
    assert watcher.violations == []
    writes = [(r.method, (r.body or {}).get("target")) for r in sim.requests if r.method != "GET"]
    assert writes[0] == ("POST", STABLE)  # the raise before the delete (and the 0-weight create)
    assert sorted(writes[1:], key=str) == sorted([("DELETE", None), ("POST", CANARY)], key=str)


async def test_apply_in_a_workspace() -> None:
    async with (
        KongSim(workspaces=("default", "team-a")) as s,
        running_router(s.url) as admin,
    ):
        await admin.apply(U, want(60, 40), owner_tags=OWNER, workspace="team-a")
        assert _weights(s, U, "team-a") == {STABLE: 60, CANARY: 40}
        assert s.upstreams("default") == []
        await admin.apply(U, want(40, 60), owner_tags=OWNER, workspace="team-a")
        assert _weights(s, U, "team-a") == {STABLE: 40, CANARY: 60}


async def test_apply_retries_a_503_and_stops_before_lowering_on_failure(
    sim: KongSim, admin: KongRouter
) -> None:
    await admin.apply(U, want(100, 0), owner_tags=OWNER)
    sim.faults.fail_next(1, 503, method="PATCH")
    await admin.apply(U, want(50, 50), owner_tags=OWNER)
    assert _weights(sim) == {STABLE: 50, CANARY: 50}
    # The raise fails for good: the lower must not happen.
    sim.faults.fail_next(10, 503, method="PATCH")
    with pytest.raises(KongUnavailable):
        await admin.apply(U, want(10, 90), owner_tags=OWNER)
    assert _weights(sim) == {STABLE: 50, CANARY: 50}


async def test_data_plane_apply_refused() -> None:
    async with KongSim(mode="data_plane") as s, running_router(s.url) as admin:
        with pytest.raises(KongModeError):
            await admin.apply(U, want(100, 0), owner_tags=OWNER)
        assert [r.method for r in s.requests] == ["GET"]


async def test_no_write_once_leadership_is_lost_even_mid_retry() -> None:
    """A deposed leader must not land a retried PATCH on top of the new leader's weights."""
    leading = True
    slow = RetryPolicy(attempts=5, initial_backoff=0.2, max_backoff=0.3, max_elapsed=5.0)
    async with KongSim() as s, running_router(s.url, retry=slow) as admin:
        await admin.apply(U, want(100, 0), owner_tags=OWNER, may_write=lambda: leading)
        s.faults.fail_next(2, status=503, method="PATCH")
        task = asyncio.create_task(
            admin.apply(U, want(75, 25), owner_tags=OWNER, may_write=lambda: leading)
        )
        async with asyncio.timeout(5):  # until the first PATCH has failed: a retry is waiting
            while not any(r.method == "PATCH" and r.status == 503 for r in s.requests):
                await asyncio.sleep(0.005)
        leading = False
        with pytest.raises(KongNotLeader):
            await task
        assert _weights(s) == {STABLE: 100, CANARY: 0}
        patches = [r for r in s.requests if r.method == "PATCH"]
        assert len(patches) == 1 and patches[0].status == 503


# --- a dry run: the same plan, nothing sent ------------------------------------------------------

STALE = "10.0.0.9:80"
FOREIGN = "10.9.0.1:80"


def _seed_dry_run_case(sim: KongSim, case: str) -> None:
    if case == "fresh-upstream":
        return
    sim.add_upstream(U, tags=[MANAGED_TAG])
    ours = list(OWNER)
    if case == "adopt":
        sim.add_target(U, STABLE, 75, tags=["team-a"])
        sim.add_target(U, CANARY, 25, tags=ours)
        return
    sim.add_target(U, STABLE, 100, tags=ours)
    sim.add_target(U, CANARY, 0, tags=ours)
    if case == "exclusive":
        sim.add_target(U, FOREIGN, 5, tags=["team-b"])
    if case == "stale":
        sim.add_target(U, STALE, 20, tags=ours)


@pytest.mark.parametrize(
    ("case", "desired", "exclusive"),
    [
        pytest.param("fresh-upstream", (100, 0), False, id="fresh-upstream"),
        pytest.param("weights", (90, 10), False, id="weight-change"),
        pytest.param("weights", (100, 0), False, id="in-sync"),
        pytest.param("adopt", (75, 25), False, id="adopt"),
        pytest.param("exclusive", (100, 0), True, id="zero-foreign"),
        pytest.param("stale", (50, 50), False, id="delete-stale"),
    ],
)
@pytest.mark.parametrize("mode", ["postgres", "control_plane"])
async def test_a_dry_run_plans_exactly_the_writes_an_apply_then_makes(
    mode: str, case: str, desired: tuple[int, int], exclusive: bool
) -> None:
    """KongRouter(dry_run=True).apply reads Kong and plans; nothing reaches Kong. The same
    apply without the dry run then makes exactly the writes planned, in the same order."""
    async with KongSim(mode=mode) as sim:
        _seed_dry_run_case(sim, case)
        before = {t["target"]: t["weight"] for t in sim.targets(U)} if sim.upstreams() else None
        dry = KongRouter(
            KongAdmin(sim.url, retry=FAST), dry_run=True, exclusive_upstreams=exclusive
        )
        try:
            planned = await dry.apply(U, want(*desired), owner_tags=OWNER, refresh=True)
        finally:
            await dry.close()
        assert _writes(sim) == []
        assert planned.dry_run and not planned.changed and planned.writes == ()
        assert {t.target: t.weight for t in planned.targets} == (before or {})
        async with running_router(sim.url, exclusive_upstreams=exclusive) as router:
            done = await router.apply(U, want(*desired), owner_tags=OWNER)

        def shape(writes: tuple[Write, ...]) -> list[tuple[str, str, int | None, int | None]]:
            return [(str(w.kind), w.target, w.weight, w.old_weight) for w in writes]

        assert shape(planned.planned) == shape(done.writes)
        assert planned.upstream_planned == done.upstream_created == (case == "fresh-upstream")
        assert bool(planned.planned) == (desired != (100, 0) or case != "weights")


async def test_a_dry_run_reports_a_missing_upstream_when_creation_is_off(sim: KongSim) -> None:
    dry = KongRouter(KongAdmin(sim.url, retry=FAST), dry_run=True, create_upstreams=False)
    try:
        result = await dry.apply(U, want(100, 0), owner_tags=OWNER)
    finally:
        await dry.close()
    assert result.upstream_missing and result.dry_run and not result.upstream_planned
    assert _writes(sim) == [] and sim.upstreams() == []


async def test_a_dry_run_router_cannot_write_even_when_asked_directly(sim: KongSim) -> None:
    """The last guard: a dry run's client refuses every write before sending it."""
    dry = KongRouter(KongAdmin(sim.url, retry=FAST), dry_run=True)
    try:
        with pytest.raises(
            KongError, match=r"POST /upstreams .* not sent: this client is read-only"
        ):
            await dry.client.create_upstream(U)
        with pytest.raises(KongError, match="read-only"):
            await dry.dbmode.apply(
                U,
                want(100, 0),
                owner_tags=OWNER,
                workspace=None,
                create=True,
                exclusive=False,
                refresh=True,
                mode=KongMode.DB,
                may_write=None,
            )
        assert await dry.client.list_upstreams() == []  # reads still work
    finally:
        await dry.close()
    assert _writes(sim) == []
