"""kong.dbless through the router: coalesced /config edits against the Kong simulator in
DB-less mode, over real sockets."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kong_support import CANARY, OWNER, STABLE, running_router, want

from kongsplit.kong import configtext
from kongsplit.kong.apply import KongRouter
from kongsplit.kong.client import KongAdmin
from kongsplit.kong.errors import KongClientError, KongNotReady
from kongsplit.kong.records import KongMode
from kongsplit.kong.targets import DesiredTarget, owner_tags_for
from kongsplit.sim.kongsim import KongSim

U = "checkout.shop.svc"


def _weights(sim: KongSim, upstream: str = U, workspace: str = "default") -> dict[str, int]:
    return {t["target"]: t["weight"] for t in sim.targets(upstream, workspace)}


UPSTREAM_ID = "9a1b1f5e-7a1c-4c1e-9d1e-000000000001"


def _seed_config(upstream_id: str = UPSTREAM_ID) -> dict[str, Any]:
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
    async with KongSim(mode="off") as s, running_router(s.url) as admin:
        s.external_config_push(_seed_config())
        before = s.config_hash()
        result = await admin.apply(U, want(75, 25), owner_tags=OWNER)
        assert result.config_posted and result.mode == KongMode.DBLESS
        assert _weights(s) == {STABLE: 75, CANARY: 25}
        assert s.config_hash() != before
        post = next(r for r in s.requests if r.method == "POST")
        assert post.path == "/config" and post.query == {"check_hash": "1"}
        assert isinstance(post.body, dict) and isinstance(post.body.get("config"), str)
        # Posted as JSON text (cjson, Kong's first try, keeps every type), and the node's hash
        # is the MD5 of that very string (kong/db/declarative/init.lua _M:unserialize).
        assert json.loads(post.body["config"])["_transform"] is False
        assert s.config_hash() == configtext.config_hash(post.body["config"])
        # The other entities survived the round trip.
        config = await admin.client.get_config()
        assert [svc["name"] for svc in config["services"]] == ["checkout"]
        assert config["_transform"] is False
        # Same desired again: nothing to write, no POST, and no GET /config either: the node
        # still reports the hash of what kongsplit posted, so that config is the one it holds.
        s.requests.clear()
        result = await admin.apply(U, want(75, 25), owner_tags=OWNER)
        assert not result.writes and not result.config_posted
        assert [(r.method, r.path) for r in s.requests] == [("GET", "/status")]


async def _first_request(s: KongSim, mark: int, method: str, path: str) -> None:
    for _ in range(300):
        if any(r.method == method and r.path == path for r in s.requests[mark:]):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {method} {path} within 3 s")


async def test_dbless_a_push_between_read_and_post_is_not_overwritten() -> None:
    """Another writer pushes /config after kongsplit read it and before it posts: the hash is
    checked again right before the POST, so the edit is redone on the new configuration (the
    other writer's service kept) and counted as foreign_config."""
    async with KongSim(mode="off") as s, running_router(s.url) as admin:
        s.external_config_push(_seed_config())
        await admin.apply(U, want(90, 10), owner_tags=OWNER)  # kongsplit now knows the config
        pushed = _seed_config()
        pushed["services"].append(  # type: ignore[attr-defined]
            {"name": "pushed-by-kic", "host": "kic.svc", "port": 80, "protocol": "http"}
        )
        mark = len(s.requests)
        s.faults.delay(0.3, n=2, method="GET", path_prefix="/status")
        task = asyncio.create_task(admin.apply(U, want(75, 25), owner_tags=OWNER))
        await _first_request(s, mark, "GET", "/status")  # the hash kongsplit edits at
        s.external_config_push(pushed)  # lands while the pre-POST check is held in Kong
        result = await task
        assert result.config_kind == "foreign_config" and result.config_posted
        assert _weights(s) == {STABLE: 75, CANARY: 25}
        calls = [(r.method, r.path) for r in s.requests[mark:]]
        assert calls.count(("GET", "/config")) == 1 and calls.count(("POST", "/config")) == 1
        config = await admin.client.get_config()
        assert sorted(svc["name"] for svc in config["services"]) == ["checkout", "pushed-by-kic"]


async def test_dbless_a_node_that_restarts_empty_during_the_read_is_not_edited() -> None:
    """The empty-hash guard holds after GET /config too: a node that restarted empty between
    the /status check and the read answers an empty config, which must not be posted back
    with kongsplit's upstream as the node's whole configuration."""
    async with KongSim(mode="off") as s, running_router(s.url) as admin:
        s.external_config_push(_seed_config())
        await admin.client.ensure_mode()
        mark = len(s.requests)
        s.faults.delay(0.3, n=1, method="GET", path_prefix="/config")
        task = asyncio.create_task(admin.apply(U, want(75, 25), owner_tags=OWNER))
        await _first_request(s, mark, "GET", "/status")
        s.restart_node(0)  # while GET /config is held in Kong
        with pytest.raises(KongNotReady, match="configuration_hash is empty"):
            await task
        assert ("GET", "/config") in [(r.method, r.path) for r in s.requests[mark:]]  # witness
        assert not any(r.method == "POST" for r in s.requests[mark:])


async def test_dbless_adds_missing_targets_and_upstream() -> None:
    async with KongSim(mode="off") as s, running_router(s.url) as admin:
        s.external_config_push(_seed_config())
        result = await admin.apply(
            "other.svc", [DesiredTarget("10.3.0.1:80", 100)], owner_tags=OWNER
        )
        assert result.upstream_created
        assert _weights(s, "other.svc") == {"10.3.0.1:80": 100}
        assert _weights(s) == {STABLE: 100, CANARY: 0}


async def test_dbless_check_hash_304() -> None:
    async with KongSim(mode="off") as s, running_router(s.url) as admin:
        text = configtext.dump_json(_seed_config())
        assert await admin.client.post_config(text) is True
        assert await admin.client.post_config(text) is False
        assert [r.status for r in s.requests] == [201, 304]


async def test_dbless_refuses_the_empty_hash() -> None:
    async with KongSim(mode="off") as s, running_router(s.url) as admin:
        with pytest.raises(KongNotReady, match="configuration_hash is empty"):
            await admin.apply(U, want(100, 0), owner_tags=OWNER)
        assert not any(r.method == "POST" for r in s.requests)
        s.external_config_push(_seed_config())
        s.restart_node(0)
        with pytest.raises(KongNotReady):
            await admin.apply(U, want(100, 0), owner_tags=OWNER)


async def test_dbless_429_retry_after() -> None:
    async with KongSim(mode="off") as s, running_router(s.url) as admin:
        s.external_config_push(_seed_config())
        s.faults.rate_limit_next(1, retry_after=0.2, method="POST", path_prefix="/config")
        await admin.apply(U, want(50, 50), owner_tags=OWNER)
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
    other = "payments.shop.svc"
    other_owner = owner_tags_for("shop", "payments")
    async with KongSim(mode="off") as s, running_router(s.url) as admin:
        s.external_config_push(_seed_config())
        await admin.client.ensure_mode()
        s.requests.clear()
        a, b = await asyncio.gather(
            admin.apply(U, want(50, 50), owner_tags=OWNER),
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
        await admin.apply(U, want(25, 75), owner_tags=OWNER)
        await admin.apply(U, want(0, 100), owner_tags=OWNER)
        assert loop.time() - t0 >= 0.09
        assert _weights(s) == {STABLE: 0, CANARY: 100}


async def test_dbless_one_malformed_upstream_does_not_block_the_others() -> None:
    """An abort on one upstream must land even when another upstream's config is garbage."""
    bad_id = "9a1b1f5e-7a1c-4c1e-9d1e-0000000000bb"
    config = _seed_config()
    config["upstreams"].append({"id": bad_id, "name": "bad.shop.svc"})  # type: ignore[attr-defined]
    config["targets"].append(  # type: ignore[attr-defined]
        {"target": "10.7.7.7:80", "weight": 5, "upstream": bad_id, "tags": ["x"]}
    )
    async with KongSim(mode="off") as s, running_router(s.url) as admin:
        s.external_config_push(config)
        await admin.client.ensure_mode()
        # The edit for bad.shop.svc fails (two desired entries for one target) in the same
        # 100 ms batch as a good upstream's edit: only the bad one may fail.
        good, bad = await asyncio.gather(
            admin.apply(U, want(100, 0), owner_tags=OWNER),
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


async def test_dbless_a_refused_post_fails_its_waiters_and_the_flusher_lives_on() -> None:
    """Kong refuses a POST /config (400): each waiter learns it with its own upstream named,
    and the next edit is still served (a failure once stopped the flusher, and the daemon)."""
    async with KongSim(mode="off") as s, running_router(s.url) as admin:
        s.external_config_push(_seed_config())
        s.faults.fail_next(1, status=400, method="POST", path_prefix="/config")
        with pytest.raises(KongClientError) as err:
            await admin.apply(U, want(75, 25), owner_tags=OWNER)
        assert err.value.status == 400 and err.value.upstream == U
        assert str(err.value).endswith(f"(upstream {U})")
        result = await admin.apply(U, want(75, 25), owner_tags=OWNER)
        assert result.config_posted and _weights(s) == {STABLE: 75, CANARY: 25}


# --- a dry run: the same edit, nothing posted ----------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "desired", "exclusive"),
    [
        pytest.param("ours", (75, 25), False, id="weight-change"),
        pytest.param("ours", (100, 0), False, id="in-sync"),
        pytest.param("other-upstream", (100, 0), False, id="fresh-upstream"),
        pytest.param("foreign", (100, 0), True, id="zero-foreign"),
    ],
)
async def test_dbless_dry_run_plans_the_edit_an_apply_then_posts(
    seed: str, desired: tuple[int, int], exclusive: bool
) -> None:
    config = _seed_config()
    if seed == "other-upstream":
        config["upstreams"] = [{"id": "9a1b1f5e-7a1c-4c1e-9d1e-000000000002", "name": "x.svc"}]
        config["targets"] = []
    if seed == "foreign":
        foreign = {"target": "10.9.0.1:80", "weight": 5, "upstream": UPSTREAM_ID}
        config["targets"] = [*config["targets"], foreign]
    async with KongSim(mode="off") as s:
        s.external_config_push(config)
        loaded = s.config_hash()
        dry = KongRouter(KongAdmin(s.url), dry_run=True, exclusive_upstreams=exclusive)
        try:
            planned = await dry.apply(U, want(*desired), owner_tags=OWNER, refresh=True)
        finally:
            await dry.close()
        assert [r.method for r in s.requests if r.method != "GET"] == []
        assert s.config_hash() == loaded and planned.dry_run and not planned.config_posted
        async with running_router(s.url, exclusive_upstreams=exclusive) as router:
            done = await router.apply(U, want(*desired), owner_tags=OWNER)
        shape = [(str(w.kind), w.target, w.weight, w.old_weight) for w in planned.planned]
        assert shape == [(str(w.kind), w.target, w.weight, w.old_weight) for w in done.writes]
        assert planned.upstream_planned == done.upstream_created == (seed == "other-upstream")
        assert bool(planned.planned) == (seed != "ours" or desired != (100, 0))
        assert done.config_posted == bool(planned.planned)


async def test_dbless_dry_run_on_an_empty_node_is_refused_as_an_apply_is() -> None:
    async with KongSim(mode="off") as s:
        dry = KongRouter(KongAdmin(s.url), dry_run=True)
        try:
            with pytest.raises(KongNotReady, match="has no configuration loaded yet"):
                await dry.apply(U, want(100, 0), owner_tags=OWNER)
        finally:
            await dry.close()
        assert [r.method for r in s.requests if r.method != "GET"] == []
