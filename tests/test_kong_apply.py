"""The write plan (pure) and ``KongAdmin.apply`` against the Kong simulator over real sockets."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Sequence

import pytest
import yaml

from kongsplit.kong import (
    KongAdmin,
    KongMode,
    KongModeError,
    KongNotReady,
    KongUnavailable,
    RetryPolicy,
)
from kongsplit.kong_plan import (
    DesiredTarget,
    Plan,
    Write,
    WriteKind,
    edit_config,
    plan_writes,
)
from kongsplit.kong_types import Target
from kongsplit.kongtarget import MANAGED_TAG, owner_tags_for
from kongsplit.sim.kong import KongSim

FAST = RetryPolicy(attempts=3, initial_backoff=0.001, max_backoff=0.005, max_elapsed=5.0)

OWNER = owner_tags_for("shop", "checkout")
OTHER = owner_tags_for("shop", "billing")
STABLE = "10.0.0.1:80"
CANARY = "10.0.0.2:80"


def _t(target: str, weight: int, tags: Sequence[str] = OWNER, tid: str | None = None) -> Target:
    return Target(id=tid or f"id-{target}", target=target, weight=weight, tags=tuple(tags))


def _want(stable: int, canary: int) -> list[DesiredTarget]:
    return [DesiredTarget(STABLE, stable, "stable"), DesiredTarget(CANARY, canary, "canary")]


def _replay(current: Sequence[Target], plan: Plan) -> list[int]:
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


@pytest.mark.parametrize(
    ("current", "desired"),
    [
        pytest.param([_t(STABLE, 100), _t(CANARY, 0)], _want(0, 100), id="100/0-to-0/100"),
        pytest.param([_t(STABLE, 0), _t(CANARY, 100)], _want(100, 0), id="0/100-to-100/0"),
        pytest.param([_t(STABLE, 75), _t(CANARY, 25)], _want(25, 75), id="75/25-to-25/75"),
        pytest.param([], _want(100, 0), id="fresh-upstream"),
        pytest.param([], _want(0, 100), id="fresh-upstream-canary-only"),
        pytest.param([_t(STABLE, 100)], _want(0, 100), id="canary-missing"),
        pytest.param(
            [_t(STABLE, 100, ()), _t(CANARY, 0, ())], _want(0, 100), id="adopt-both-and-swap"
        ),
        pytest.param(
            [_t(STABLE, 100), _t("10.9.9.9:80", 50)], _want(0, 100), id="stale-owned-deleted"
        ),
    ],
)
def test_plan_never_passes_through_zero_total(
    current: list[Target], desired: list[DesiredTarget]
) -> None:
    plan = plan_writes(current, desired, owner_tags=OWNER, exclusive=True)
    totals = _replay(current, plan)
    assert totals, "expected writes"
    assert all(total > 0 for total in totals), totals
    final = {t.target: t.weight for t in current}
    for w in plan.writes:
        if w.kind == WriteKind.DELETE:
            final.pop(w.target)
        else:
            assert w.weight is not None
            final[w.target] = w.weight
    assert final == {d.target: d.weight for d in desired}


def test_plan_skips_matching_weights() -> None:
    plan = plan_writes([_t(STABLE, 90), _t(CANARY, 10)], _want(90, 10), owner_tags=OWNER)
    assert plan.writes == ()
    assert plan.drift == ()


def test_plan_raise_before_lower_and_zero_creates_last() -> None:
    plan = plan_writes([], _want(100, 0), owner_tags=OWNER)
    assert [(w.kind, w.target, w.weight) for w in plan.raises] == [(WriteKind.CREATE, STABLE, 100)]
    assert [(w.kind, w.target, w.weight) for w in plan.lowers] == [(WriteKind.CREATE, CANARY, 0)]
    assert plan.raises[0].tags == OWNER


def test_plan_adopts_untagged_target_keeping_its_tags() -> None:
    current = [_t(STABLE, 100, ("team-a",)), _t(CANARY, 0)]
    plan = plan_writes(current, _want(100, 0), owner_tags=OWNER)
    assert plan.writes == (
        Write(WriteKind.ADOPT, STABLE, 100, 100, f"id-{STABLE}", ("team-a", *OWNER), "stable"),
    )


def test_plan_foreign_reported_not_touched_unless_exclusive() -> None:
    current = [_t(STABLE, 90), _t(CANARY, 10), _t("10.7.7.7:80", 50, ()), _t("10.7.7.8:80", 0, ())]
    plan = plan_writes(current, _want(90, 10), owner_tags=OWNER)
    assert plan.writes == ()
    assert [(d.kind, d.target, d.corrected) for d in plan.drift] == [
        ("foreign", "10.7.7.7:80", False)
    ]
    plan = plan_writes(current, _want(90, 10), owner_tags=OWNER, exclusive=True)
    assert [(w.kind, w.target, w.weight) for w in plan.writes] == [
        (WriteKind.ZERO_FOREIGN, "10.7.7.7:80", 0)
    ]


def test_plan_other_rollouts_targets_never_zeroed() -> None:
    current = [_t(STABLE, 90), _t(CANARY, 10), _t("10.8.8.8:80", 20, OTHER)]
    plan = plan_writes(current, _want(90, 10), owner_tags=OWNER, exclusive=True)
    assert plan.writes == ()
    assert [d.kind for d in plan.drift] == ["foreign"]


def test_plan_drift_kinds() -> None:
    plan = plan_writes([_t(STABLE, 50)], _want(90, 10), owner_tags=OWNER)
    assert sorted((d.kind, d.target) for d in plan.drift) == [
        ("missing", CANARY),
        ("weight", STABLE),
    ]


def test_plan_rejects_duplicate_desired() -> None:
    with pytest.raises(ValueError, match="twice"):
        plan_writes([], [DesiredTarget(STABLE, 1), DesiredTarget(STABLE, 2)], owner_tags=OWNER)


def test_desired_weight_range() -> None:
    with pytest.raises(ValueError, match="outside"):
        DesiredTarget(STABLE, 65536)


def test_edit_config_flat_export() -> None:
    config = {
        "_format_version": "3.0",
        "_transform": False,
        "upstreams": [{"id": "u1", "name": "shop.svc"}],
        "targets": [
            {"id": "t1", "target": "10.0.0.1:80", "weight": 100, "upstream": "u1", "tags": None},
            {"id": "t9", "target": "10.5.5.5:80", "weight": 100, "upstream": "u-other"},
        ],
    }
    edit = edit_config(
        config, "shop.svc", _want(80, 20), owner_tags=OWNER, create_upstream=True, exclusive=False
    )
    targets = {t["target"]: t for t in config["targets"]}
    assert targets["10.0.0.1:80"]["weight"] == 80
    assert targets["10.0.0.1:80"]["tags"] == list(OWNER)  # adopted
    assert targets["10.0.0.2:80"] == {
        "id": targets["10.0.0.2:80"]["id"],
        "target": "10.0.0.2:80",
        "weight": 20,
        "upstream": "u1",
        "tags": list(OWNER),
    }
    assert targets["10.5.5.5:80"]["weight"] == 100  # another upstream's target is untouched
    assert {t.target: t.weight for t in edit.targets.values()} == {STABLE: 80, CANARY: 20}


def test_edit_config_missing_upstream() -> None:
    config: dict[str, object] = {"_format_version": "3.0"}
    edit = edit_config(
        config, "new.svc", _want(100, 0), owner_tags=OWNER, create_upstream=False, exclusive=False
    )
    assert edit.upstream_missing and not edit.plan.writes
    edit = edit_config(
        config, "new.svc", _want(100, 0), owner_tags=OWNER, create_upstream=True, exclusive=False
    )
    assert edit.upstream_created
    assert config["upstreams"] == [
        {"id": edit.targets[STABLE].upstream_id, "name": "new.svc", "tags": [MANAGED_TAG]}
    ]


# --- apply against the simulator over real sockets ----------------------------------------------

U = "checkout.shop.svc"


@pytest.fixture
async def sim() -> AsyncIterator[KongSim]:
    async with KongSim() as s:
        yield s


@pytest.fixture
async def admin(sim: KongSim) -> AsyncIterator[KongAdmin]:
    async with KongAdmin(sim.url, retry=FAST, timeout=2.0) as a:
        yield a


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
    sim: KongSim, admin: KongAdmin, start: tuple[int, int] | None, steps: list[tuple[int, int]]
) -> None:
    if start is not None:
        sim.add_upstream(U)
        sim.add_target(U, STABLE, start[0], tags=list(OWNER))
        sim.add_target(U, CANARY, start[1], tags=list(OWNER))
    watcher = TotalWatcher(sim, U)
    for stable, canary in steps:
        # A cold client per step too: ordering must hold whether or not the cache is warm.
        for client in (admin, KongAdmin(sim.url, retry=FAST)):
            async with contextlib.AsyncExitStack() as stack:
                if client is not admin:
                    await stack.enter_async_context(client)
                await client.apply(U, _want(stable, canary), owner_tags=OWNER)
            assert _weights(sim) == {STABLE: stable, CANARY: canary}
    assert len(watcher.totals) > 1, "the hook saw no writes"
    assert watcher.violations == []
    assert watcher.totals[-1] == sum(steps[-1])


async def test_the_zero_total_watcher_catches_a_bad_order(sim: KongSim, admin: KongAdmin) -> None:
    """Control: lowering before raising (what the plan must never do) is caught by the hook."""
    sim.add_upstream(U)
    stable = sim.add_target(U, STABLE, 100, tags=list(OWNER))
    canary = sim.add_target(U, CANARY, 0, tags=list(OWNER))
    watcher = TotalWatcher(sim, U)
    await admin.update_target(U, stable["id"], weight=0)
    await admin.update_target(U, canary["id"], weight=100)
    assert watcher.violations == [[(CANARY, 0), (STABLE, 0)]] or watcher.violations == [
        [(STABLE, 0), (CANARY, 0)]
    ]


async def test_fresh_upstream_created_tagged(sim: KongSim, admin: KongAdmin) -> None:
    result = await admin.apply(U, _want(100, 0), owner_tags=OWNER)
    assert result.upstream_created
    [upstream] = sim.upstreams()
    assert upstream["name"] == U and upstream["tags"] == [MANAGED_TAG]
    assert [w.kind for w in result.writes] == [WriteKind.CREATE, WriteKind.CREATE]
    # The weighted target first, the zero-weight one after it.
    creates = [r.body["target"] for r in sim.requests if r.method == "POST" and "targets" in r.path]
    assert creates == [STABLE, CANARY]
    assert {t["target"]: t["tags"] for t in sim.targets(U)} == {
        STABLE: list(OWNER),
        CANARY: list(OWNER),
    }
    assert result.weights() == {STABLE: 100, CANARY: 0}
    assert result.drift_counts() == {"missing": 3}


async def test_missing_upstream_reported_when_creation_is_off(
    sim: KongSim, admin: KongAdmin
) -> None:
    result = await admin.apply(U, _want(100, 0), owner_tags=OWNER, create_upstream=False)
    assert result.upstream_missing and not result.writes
    assert sim.upstreams() == []
    assert _writes(sim) == []


async def test_warm_cache_weight_change_is_one_patch_per_target(
    sim: KongSim, admin: KongAdmin
) -> None:
    await admin.apply(U, _want(90, 10), owner_tags=OWNER)
    sim.requests.clear()
    result = await admin.apply(U, _want(75, 25), owner_tags=OWNER)
    assert [(r.method, r.body) for r in sim.requests] == [
        ("PATCH", {"weight": 25}),  # the raise first
        ("PATCH", {"weight": 75}),
    ]
    assert [w.kind for w in result.writes] == [WriteKind.UPDATE, WriteKind.UPDATE]
    assert result.drift_counts() == {"weight": 2}  # vs the previous desired: not drift a sweep saw
    sim.requests.clear()
    result = await admin.apply(U, _want(75, 25), owner_tags=OWNER)
    assert sim.requests == [] and result.writes == ()  # nothing written while nothing changes


async def test_sweep_reads_once_and_corrects_drift(sim: KongSim, admin: KongAdmin) -> None:
    await admin.apply(U, _want(50, 50), owner_tags=OWNER)
    sim.set_weight(U, CANARY, 80)  # someone behind our back
    sim.requests.clear()
    result = await admin.apply(U, _want(50, 50), owner_tags=OWNER, refresh=True)
    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in sim.requests] == [
        ("GET", "targets"),
        (
            "PATCH",
            sim.targets(U)[0]["id"]
            if sim.targets(U)[0]["target"] == CANARY
            else sim.targets(U)[1]["id"],
        ),
    ]
    assert result.drift_counts() == {"weight": 1}
    assert _weights(sim) == {STABLE: 50, CANARY: 50}


async def test_adopts_untagged_target_at_a_wanted_address(sim: KongSim, admin: KongAdmin) -> None:
    sim.add_upstream(U)
    sim.add_target(U, STABLE, 100)  # untagged: someone created it by hand
    result = await admin.apply(U, _want(100, 0), owner_tags=OWNER)
    assert sorted(w.kind for w in result.writes) == [WriteKind.ADOPT, WriteKind.CREATE]
    patch = next(r for r in sim.requests if r.method == "PATCH")
    assert patch.body == {"weight": 100, "tags": list(OWNER)}
    assert {t["target"]: t["tags"] for t in sim.targets(U)}[STABLE] == list(OWNER)


async def test_409_then_reread_then_patch(sim: KongSim, admin: KongAdmin) -> None:
    await admin.apply(U, [DesiredTarget(STABLE, 100)], owner_tags=OWNER)
    sim.add_target(U, CANARY, 7, tags=list(OWNER))  # appears behind the cache's back
    sim.requests.clear()
    await admin.apply(U, _want(90, 10), owner_tags=OWNER)
    assert [(r.method, r.status) for r in sim.requests] == [
        ("POST", 409),
        ("GET", 200),
        ("PATCH", 200),  # canary 7 → 10 (raise)
        ("PATCH", 200),  # stable 100 → 90 (lower)
    ]
    assert _weights(sim) == {STABLE: 90, CANARY: 10}


async def test_404_then_reread_then_recreate(sim: KongSim, admin: KongAdmin) -> None:
    await admin.apply(U, _want(100, 0), owner_tags=OWNER)
    sim.delete_target(U, CANARY)
    sim.requests.clear()
    watcher = TotalWatcher(sim, U)
    await admin.apply(U, _want(90, 10), owner_tags=OWNER)
    assert [(r.method, r.status) for r in sim.requests] == [
        ("PATCH", 404),
        ("GET", 200),
        ("POST", 201),
        ("PATCH", 200),
    ]
    assert _weights(sim) == {STABLE: 90, CANARY: 10}
    assert watcher.violations == []


async def test_wiped_database_recreates_upstream_and_targets(
    sim: KongSim, admin: KongAdmin
) -> None:
    await admin.apply(U, _want(75, 25), owner_tags=OWNER)
    sim.wipe()
    result = await admin.apply(U, _want(75, 25), owner_tags=OWNER, refresh=True)
    assert result.upstream_created
    assert result.drift_counts() == {"missing": 3}
    assert _weights(sim) == {STABLE: 75, CANARY: 25}


async def test_foreign_targets_untouched_unless_exclusive(sim: KongSim, admin: KongAdmin) -> None:
    sim.add_upstream(U)
    sim.add_target(U, "10.9.0.1:80", 50, tags=["managed-by-ingress-controller"])
    sim.add_target(U, "10.9.0.2:80", 0)
    result = await admin.apply(U, _want(100, 0), owner_tags=OWNER)
    assert [t.target for t in result.foreign] == ["10.9.0.1:80"]
    assert result.drift_counts() == {"missing": 2, "foreign": 1}
    assert result.drift_counts(corrected_only=True) == {"missing": 2}
    assert _weights(sim)["10.9.0.1:80"] == 50
    result = await admin.apply(U, _want(100, 0), owner_tags=OWNER, exclusive=True)
    assert [(w.kind, w.target) for w in result.writes] == [(WriteKind.ZERO_FOREIGN, "10.9.0.1:80")]
    assert result.foreign == ()
    weights = _weights(sim)
    assert weights == {STABLE: 100, CANARY: 0, "10.9.0.1:80": 0, "10.9.0.2:80": 0}
    # Never deleted, and their tags were left alone.
    tags = {t["target"]: t["tags"] for t in sim.targets(U)}
    assert tags["10.9.0.1:80"] == ["managed-by-ingress-controller"]


async def test_stale_owned_target_is_deleted_last(sim: KongSim, admin: KongAdmin) -> None:
    await admin.apply(U, [DesiredTarget("10.0.0.9:80", 100)], owner_tags=OWNER)
    sim.requests.clear()
    watcher = TotalWatcher(sim, U)
    await admin.apply(U, _want(100, 0), owner_tags=OWNER)
    assert _weights(sim) == {STABLE: 100, CANARY: 0}
    assert watcher.violations == []
    writes = [(r.method, (r.body or {}).get("target")) for r in sim.requests if r.method != "GET"]
    assert writes[0] == ("POST", STABLE)  # the raise before the delete (and the 0-weight create)
    assert sorted(writes[1:], key=str) == sorted([("DELETE", None), ("POST", CANARY)], key=str)


async def test_apply_in_a_workspace() -> None:
    async with (
        KongSim(workspaces=("default", "team-a")) as s,
        KongAdmin(s.url, retry=FAST) as admin,
    ):
        await admin.apply(U, _want(60, 40), owner_tags=OWNER, workspace="team-a")
        assert _weights(s, U, "team-a") == {STABLE: 60, CANARY: 40}
        assert s.upstreams("default") == []
        await admin.apply(U, _want(40, 60), owner_tags=OWNER, workspace="team-a")
        assert _weights(s, U, "team-a") == {STABLE: 40, CANARY: 60}


async def test_apply_retries_a_503_and_stops_before_lowering_on_failure(
    sim: KongSim, admin: KongAdmin
) -> None:
    await admin.apply(U, _want(100, 0), owner_tags=OWNER)
    sim.faults.fail_next(1, 503, method="PATCH")
    await admin.apply(U, _want(50, 50), owner_tags=OWNER)
    assert _weights(sim) == {STABLE: 50, CANARY: 50}
    # The raise fails for good: the lower must not happen.
    sim.faults.fail_next(10, 503, method="PATCH")
    with pytest.raises(KongUnavailable):
        await admin.apply(U, _want(10, 90), owner_tags=OWNER)
    assert _weights(sim) == {STABLE: 50, CANARY: 50}


async def test_data_plane_apply_refused() -> None:
    async with KongSim(mode="data_plane") as s, KongAdmin(s.url, retry=FAST) as admin:
        with pytest.raises(KongModeError):
            await admin.apply(U, _want(100, 0), owner_tags=OWNER)
        assert [r.method for r in s.requests] == ["GET"]


# --- DB-less -------------------------------------------------------------------------------------


def _seed_config(upstream_id: str = "9a1b1f5e-7a1c-4c1e-9d1e-000000000001") -> dict[str, object]:
    return {
        "_format_version": "3.0",
        "_transform": False,
        "services": [{"name": "checkout", "host": U, "port": 80, "protocol": "http"}],
        "upstreams": [{"id": upstream_id, "name": U}],
        "targets": [
            {"target": STABLE, "weight": 100, "upstream": upstream_id, "tags": list(OWNER)},
            {"target": CANARY, "weight": 0, "upstream": upstream_id, "tags": list(OWNER)},
        ],
    }


async def test_dbless_apply_via_config() -> None:
    async with KongSim(mode="off") as s, KongAdmin(s.url, retry=FAST) as admin:
        s.external_config_push(_seed_config())
        before = s.config_hash()
        result = await admin.apply(U, _want(75, 25), owner_tags=OWNER)
        assert result.config_posted and result.mode == KongMode.DBLESS
        assert _weights(s) == {STABLE: 75, CANARY: 25}
        assert s.config_hash() != before
        post = next(r for r in s.requests if r.method == "POST")
        assert post.path == "/config" and post.query == {"check_hash": "1"}
        assert isinstance(post.body, dict) and isinstance(post.body.get("config"), str)
        # The other entities survived the round trip.
        config = await admin.get_config()
        assert [svc["name"] for svc in config["services"]] == ["checkout"]
        assert config["_transform"] is False
        # Same desired again: nothing to write, no POST at all.
        s.requests.clear()
        result = await admin.apply(U, _want(75, 25), owner_tags=OWNER)
        assert not result.writes and not result.config_posted
        assert [r.method for r in s.requests] == ["GET", "GET"]  # /status, /config


async def test_dbless_adds_missing_targets_and_upstream() -> None:
    async with KongSim(mode="off") as s, KongAdmin(s.url, retry=FAST) as admin:
        s.external_config_push(_seed_config())
        result = await admin.apply(
            "other.svc", [DesiredTarget("10.3.0.1:80", 100)], owner_tags=OWNER
        )
        assert result.upstream_created
        assert _weights(s, "other.svc") == {"10.3.0.1:80": 100}
        assert _weights(s) == {STABLE: 100, CANARY: 0}


async def test_dbless_check_hash_304() -> None:
    async with KongSim(mode="off") as s, KongAdmin(s.url, retry=FAST) as admin:
        text = yaml.safe_dump(_seed_config(), sort_keys=False)
        assert await admin.post_config(text) is True
        assert await admin.post_config(text) is False
        assert [r.status for r in s.requests] == [201, 304]


async def test_dbless_refuses_the_empty_hash() -> None:
    async with KongSim(mode="off") as s, KongAdmin(s.url, retry=FAST) as admin:
        with pytest.raises(KongNotReady, match="configuration_hash is empty"):
            await admin.apply(U, _want(100, 0), owner_tags=OWNER)
        assert not any(r.method == "POST" for r in s.requests)
        s.external_config_push(_seed_config())
        s.restart_node(0)
        with pytest.raises(KongNotReady):
            await admin.apply(U, _want(100, 0), owner_tags=OWNER)


async def test_dbless_429_retry_after() -> None:
    async with KongSim(mode="off") as s, KongAdmin(s.url, retry=FAST) as admin:
        s.external_config_push(_seed_config())
        s.faults.rate_limit_next(1, retry_after=0.2, method="POST", path_prefix="/config")
        await admin.apply(U, _want(50, 50), owner_tags=OWNER)
        assert [(r.method, r.status) for r in s.requests if r.path == "/config"] == [
            ("GET", 200),
            ("POST", 429),
            ("POST", 201),
        ]
        assert _weights(s) == {STABLE: 50, CANARY: 50}


async def test_dbless_concurrent_upstreams_coalesce_without_losing_an_update() -> None:
    """Two upstreams edited at once: one GET and one POST /config, both edits land.

    Separate GET → edit → POST rounds would let the second POST overwrite the first edit
    (DB-less Kong only takes whole configurations).
    """
    import asyncio

    other = "payments.shop.svc"
    other_owner = owner_tags_for("shop", "payments")
    async with KongSim(mode="off") as s, KongAdmin(s.url, retry=FAST) as admin:
        s.external_config_push(_seed_config())
        await admin.ensure_mode()
        s.requests.clear()
        a, b = await asyncio.gather(
            admin.apply(U, _want(50, 50), owner_tags=OWNER),
            admin.apply(
                other,
                [
                    DesiredTarget("10.9.9.1:80", 100, "stable"),
                    DesiredTarget("10.9.9.2:80", 0, "canary"),
                ],
                owner_tags=other_owner,
            ),
        )
        assert a.config_posted and b.config_posted and b.upstream_created
        assert _weights(s) == {STABLE: 50, CANARY: 50}
        assert _weights(s, other) == {"10.9.9.1:80": 100, "10.9.9.2:80": 0}
        posts = [r for r in s.requests if r.method == "POST" and r.path == "/config"]
        gets = [r for r in s.requests if r.method == "GET" and r.path == "/config"]
        assert len(posts) == 1 and len(gets) == 1
        # Back-to-back windows are at least DBLESS_COALESCE_SECONDS apart.
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await admin.apply(U, _want(25, 75), owner_tags=OWNER)
        await admin.apply(U, _want(0, 100), owner_tags=OWNER)
        assert loop.time() - t0 >= 0.09
        assert _weights(s) == {STABLE: 0, CANARY: 100}


async def test_no_write_once_leadership_is_lost_even_mid_retry() -> None:
    """A deposed leader must not land a retried PATCH on top of the new leader's weights."""
    import asyncio

    from kongsplit.kong import KongAdmin, RetryPolicy
    from kongsplit.kong_types import KongNotLeader

    leading = True
    slow = RetryPolicy(attempts=5, initial_backoff=0.2, max_backoff=0.3, max_elapsed=5.0)
    async with KongSim() as s, KongAdmin(s.url, retry=slow) as admin:
        await admin.apply(U, _want(100, 0), owner_tags=OWNER, may_write=lambda: leading)
        s.faults.fail_next(2, status=503, method="PATCH")
        task = asyncio.create_task(
            admin.apply(U, _want(75, 25), owner_tags=OWNER, may_write=lambda: leading)
        )
        await asyncio.sleep(0.1)  # the first PATCH failed; a retry is waiting
        leading = False
        with pytest.raises(KongNotLeader):
            await task
        assert _weights(s) == {STABLE: 100, CANARY: 0}
        patches = [r for r in s.requests if r.method == "PATCH"]
        assert len(patches) == 1 and patches[0].status == 503


async def test_dbless_one_malformed_upstream_does_not_block_the_others() -> None:
    """An abort on one upstream must land even when another upstream's config is garbage."""
    import asyncio

    bad_id = "9a1b1f5e-7a1c-4c1e-9d1e-0000000000bb"
    config = _seed_config()
    config["upstreams"].append({"id": bad_id, "name": "bad.shop.svc"})  # type: ignore[attr-defined]
    config["targets"].append(  # type: ignore[attr-defined]
        {"target": "10.7.7.7:80", "weight": 5, "upstream": bad_id, "tags": ["x"]}
    )
    async with KongSim(mode="off") as s, KongAdmin(s.url, retry=FAST) as admin:
        s.external_config_push(config)
        await admin.ensure_mode()
        # The edit for bad.shop.svc fails (two desired entries for one target) in the same
        # 100 ms batch as a good upstream's edit: only the bad one may fail.
        good, bad = await asyncio.gather(
            admin.apply(U, _want(100, 0), owner_tags=OWNER),
            admin.apply(
                "bad.shop.svc",
                [
                    DesiredTarget("10.7.7.7:80", 1, "stable"),
                    DesiredTarget("10.7.7.7:80", 2, "canary"),
                ],
                owner_tags=owner_tags_for("shop", "bad"),
            ),
            return_exceptions=True,
        )
        assert not isinstance(good, BaseException), good
        assert isinstance(bad, Exception)
        assert _weights(s) == {STABLE: 100, CANARY: 0}
