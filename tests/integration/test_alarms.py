"""Problems an operator must see at once, without a log flood: a refused admin token, Rollouts
kongsplit cannot manage, a Kong kongsplit must not serve, a DB-less node not ready yet. The real
daemon against kmock and the Kong simulator, over real sockets."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest
from daemon_support import (
    CANARY_T,
    REPLICASETS,
    ROLLOUTS,
    STABLE_T,
    UPSTREAM,
    Harness,
    eventually,
    metric,
    rollout,
    weights,
)

from kongsplit.sim import objects
from kongsplit.sim.kongsim import KongSim


async def _get(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.json()


async def test_a_refused_token_is_an_alarm_not_a_log_flood(
    harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    await h.seed()
    token_file = tmp_path / "token"
    token_file.write_text("wrong\n")
    caplog.set_level(logging.WARNING, logger="kongsplit")
    async with KongSim(token="right") as kong:
        daemon = await h.start_unready(
            h.settings(kong={"url": kong.url, "tokenFile": str(token_file)})
        )
        await eventually(lambda: daemon.port is not None, what="serving")
        base = f"http://127.0.0.1:{daemon.port}"
        # Witness: Kong was asked several times (retried with back-off) ...
        await eventually(
            lambda: sum(1 for r in kong.requests if r.status == 401) >= 3,
            within=5,
            what="three refused attempts",
        )
        assert metric(daemon, "kongsplit_kong_auth_ok") == 0
        status, body = await _get(f"{base}/readyz")
        assert status == 503
        assert "refused the admin token" in str(body["reason"])
        assert "kong.tokenFile" in str(body["reason"])
        # ... but said so once, not once per attempt.
        said = [r for r in caplog.records if "not usable yet" in r.getMessage()]
        assert len(said) == 1, [r.getMessage() for r in said]
        assert "refused the admin token" in said[0].getMessage()
        assert "right" not in caplog.text and "wrong" not in caplog.text  # never the token
        # The operator fixes the Secret: kongsplit recovers on its next try.
        token_file.write_text("right\n")
        await eventually(
            lambda: weights(kong) == {STABLE_T: 100, CANARY_T: 0}, within=10, what="recovered"
        )
        await eventually(lambda: metric(daemon, "kongsplit_kong_auth_ok") == 1, what="auth ok")
        rec = daemon.reconciler
        assert rec is not None
        await eventually(rec.synced.is_set, what="first sync done")
        status, body = await _get(f"{base}/readyz")
        assert status == 200 and "Kong:" not in str(body["reason"]), body


async def test_rollouts_gauge_shows_what_cannot_be_managed_for_as_long_as_it_lasts(
    harness: Harness,
) -> None:
    h = harness
    await h.seed()
    # Names web.shop.svc too (with web's Services): refused, whichever comes first.
    await h.create(
        ROLLOUTS, rollout("thief", stable_service="web-stable", canary_service="web-canary")
    )
    await h.create(
        ROLLOUTS,
        rollout(
            "typo",
            annotations={"kongsplit.io/upstream": "10.0.0.1:80"},
            stable_service="web-stable",
            canary_service="web-canary",
        ),
    )
    # Each with its ReplicaSet: Argo sends no weight for a Rollout without one (a hold).
    for name in ("thief", "typo"):
        await h.create(REPLICASETS, objects.replicaset(name, "v1", 4, 4))
    daemon = await h.start()

    def states() -> dict[str, float]:
        names = ("managed", "held", "invalid", "refused", "failing")
        return {s: metric(daemon, "kongsplit_rollouts", state=s) for s in names}

    await eventually(
        lambda: states() == {"managed": 1, "held": 0, "invalid": 1, "refused": 1, "failing": 0},
        what=f"one managed, one invalid, one refused: {states()}",
    )
    assert weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}
    rec = daemon.reconciler
    assert rec is not None
    # Still broken after a full resync: the gauge holds (an alert keeps firing).
    rec.resync_all()
    await rec.queue.join()
    assert states()["invalid"] == 1 and states()["refused"] == 1
    # Fixed: the gauge follows.
    await h.patch(
        ROLLOUTS,
        "typo",
        {"metadata": {"annotations": {"kongsplit.io/upstream": "typo.shop.svc"}}},
    )
    await eventually(lambda: states()["invalid"] == 0, what="typo fixed")
    assert states()["managed"] == 2


async def test_a_data_plane_url_stops_run_with_one_line(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    await h.seed()
    caplog.set_level(logging.INFO, logger="kongsplit")
    async with KongSim(mode="data_plane") as dp:
        daemon = await h.start_unready(h.settings(kong={"url": dp.url}))
        assert await asyncio.wait_for(h.wait(daemon), 10) == 1
    fatal = [r for r in caplog.records if r.levelno >= logging.CRITICAL]
    assert len(fatal) == 1
    assert fatal[0].exc_info is None  # no traceback for an expected refusal
    assert "hybrid data plane" in fatal[0].getMessage()
    assert "point kongsplit at the control plane's Admin API" in fatal[0].getMessage()


async def test_dbless_not_ready_names_each_rollouts_own_upstream(harness: Harness) -> None:
    h = harness
    await h.seed()
    await h.create(
        ROLLOUTS,
        rollout(
            "api", upstream="api.shop.svc", stable_service="web-stable", canary_service="web-canary"
        ),
    )
    async with KongSim(mode="off") as kong:  # no owner config loaded yet: the empty hash
        daemon = await h.start(h.settings(kong={"url": kong.url}))
        rec = daemon.reconciler
        assert rec is not None

        def errors() -> dict[str, str]:
            return {k.name: s.last_error or "" for k, s in rec.states.items()}

        await eventually(
            lambda: (
                all("no configuration loaded yet" in e for e in errors().values())
                and len(errors()) == 2
            ),
            what="both Rollouts told",
        )
        assert errors()["web"].endswith("(upstream web.shop.svc)")
        assert errors()["api"].endswith("(upstream api.shop.svc)")


@pytest.mark.parametrize("algorithm", ["least-connections", "latency"])
async def test_an_algorithm_that_can_pick_weight_zero_is_warned_once(
    harness: Harness, algorithm: str
) -> None:
    h = harness
    await h.seed()
    h.kong.add_upstream(UPSTREAM, algorithm=algorithm, tags=["managed-by-kongsplit"])
    daemon = await h.start()
    await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0})
    await eventually(
        lambda: metric(daemon, "kongsplit_managed_upstreams", algorithm=algorithm) == 1,
        what="algorithm counted",
    )
    rec = daemon.reconciler
    assert rec is not None
    rec.resync_all()  # a sweep reads the upstream again: still warned only once
    await rec.queue.join()
    warned = [
        e
        for e in await h.events()
        if e.get("type") == "Warning" and e.get("reason") == "KongUpstreamAlgorithm"
    ]
    assert len(warned) == 1 and warned[0].get("count", 1) == 1
    assert f"balances with {algorithm}" in warned[0]["message"]
    assert "round-robin" in warned[0]["message"]
    assert metric(daemon, "kongsplit_managed_upstreams", algorithm="round-robin") == 0


async def test_round_robin_is_not_warned_about(harness: Harness) -> None:
    h = harness
    await h.seed()
    daemon = await h.start()
    await eventually(
        lambda: metric(daemon, "kongsplit_managed_upstreams", algorithm="round-robin") == 1,
        what="round-robin counted",
    )
    assert not [e for e in await h.events() if e.get("reason") == "KongUpstreamAlgorithm"]


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("rig ht\n", id="space-inside"),
        pytest.param("rig\nht\n", id="newline-inside"),
        pytest.param("right\r\nright\n", id="two-lines"),
    ],
)
async def test_a_token_file_with_whitespace_inside_is_one_clear_line_not_a_crash_loop(
    harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    """Before: the token went into the Kong-Admin-Token header as read, aiohttp refused the
    header with a ValueError no one caught, the start-up task died and the daemon exited 1 (a
    crash loop in a pod). Now: one line naming the file and the fix, /readyz says it, and the
    daemon picks the fixed file up by itself."""
    h = harness
    await h.seed()
    token_file = tmp_path / "token"
    token_file.write_text(content)
    caplog.set_level(logging.WARNING, logger="kongsplit")
    async with KongSim(token="right") as kong:
        daemon = await h.start_unready(
            h.settings(kong={"url": kong.url, "tokenFile": str(token_file)})
        )
        await eventually(lambda: daemon.port is not None, what="serving")
        said = lambda: [r for r in caplog.records if "not usable yet" in r.getMessage()]  # noqa: E731
        await eventually(lambda: bool(said()), what="the problem said")
        [record] = said()
        message = record.getMessage()
        assert f"the Kong admin token file {token_file}: the token has" in message
        assert "inside it" in message and "write the token alone, on one line" in message
        assert "\n" not in message and record.exc_info is None  # one line, no traceback
        assert "rig" not in caplog.text  # never the token
        status, body = await _get(f"http://127.0.0.1:{daemon.port}/readyz")
        assert status == 503 and str(token_file) in str(body["reason"])
        assert all(not t.done() for t in daemon.tasks.values())
        # Fixed (a trailing newline alone is fine): picked up without a restart.
        token_file.write_text("right\n")
        await eventually(
            lambda: weights(kong) == {STABLE_T: 100, CANARY_T: 0}, within=10, what="recovered"
        )
        assert not any(r.exc_info for r in caplog.records)
