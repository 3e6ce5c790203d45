"""The daemon as a whole: the issue's "Done means", each proved over real sockets."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from daemon_support import (
    CANARY_T,
    KEY,
    REPLICASETS,
    ROLLOUTS,
    SERVICES,
    STABLE_T,
    STEPS,
    UPSTREAM,
    Harness,
    acted_on,
    eventually,
    kong_reads,
    kong_writes,
    metric,
    reconciler,
    replicaset,
    rollout,
    seen_replicaset,
    seen_rollout,
    service,
    swept,
    watch_requests,
    weights,
)
from kmock_shims import LEASES, url_of

from kongsplit.config import load_settings
from kongsplit.rollouts import Rollout, RolloutKey
from kongsplit.sim import objects
from kongsplit.sim.kongsim import KongSim


async def start_canary(h: Harness) -> None:
    """Argo starts revision v2: new RS (scaling), canary Service → v2, index 0."""
    await h.create(REPLICASETS, replicaset("v2", 1, 0))
    await h.patch(
        SERVICES, "web-canary", {"spec": {"selector": {"rollouts-pod-template-hash": "v2"}}}
    )
    await h.patch(ROLLOUTS, "web", {"status": {"currentPodHash": "v2", "currentStepIndex": 0}})


async def test_full_canary_progression_lands_step_by_step(harness: Harness) -> None:
    h = harness
    await h.seed()
    daemon = await h.start()
    await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}, what="initial 100/0")
    await start_canary(h)
    seen: list[tuple[int, int]] = []
    for index, step in enumerate(STEPS):
        if "setWeight" in step:
            w = step["setWeight"]
            pods = -(-w * 4 // 100)
            await h.patch(
                REPLICASETS,
                "web-v2",
                {"spec": {"replicas": pods}, "status": {"availableReplicas": pods}},
            )
        await h.patch(ROLLOUTS, "web", {"status": {"currentStepIndex": index}})
        want = next(s["setWeight"] for s in reversed(STEPS[: index + 1]) if "setWeight" in s)
        await eventually(
            lambda w=want: weights(h.kong) == {STABLE_T: 100 - w, CANARY_T: w}, what=f"step {index}"
        )
        seen.append((100 - want, want))
    assert [c for _, c in seen] == [10, 10, 25, 25, 50, 50, 75, 75]
    # End of steps with the canary fully scaled: everything on the canary.
    await h.patch(
        REPLICASETS, "web-v2", {"spec": {"replicas": 4}, "status": {"availableReplicas": 4}}
    )
    await h.patch(ROLLOUTS, "web", {"status": {"currentStepIndex": len(STEPS)}})
    await eventually(lambda: weights(h.kong) == {STABLE_T: 0, CANARY_T: 100}, what="end of steps")
    assert metric(daemon, "kongsplit_desired_weight", role="canary") == 100
    assert metric(daemon, "kongsplit_observed_weight", role="canary") == 100
    assert metric(daemon, "kongsplit_apply_latency_seconds_count") >= 5


async def test_scaling_canary_holds_previous_step_until_available(harness: Harness) -> None:
    h = harness
    await h.seed()
    daemon = await h.start()
    await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0})
    await start_canary(h)
    await h.patch(REPLICASETS, "web-v2", {"status": {"availableReplicas": 1}})
    await eventually(lambda: weights(h.kong) == {STABLE_T: 90, CANARY_T: 10}, what="10")
    # Step 2 (setWeight 25) needs 1 pod of 4 → still 1: already there, so 25 applies.
    # Make 50 need 2 pods while only 1 is available: the previous step's 25 must hold.
    await h.patch(ROLLOUTS, "web", {"status": {"currentStepIndex": 2}})
    await eventually(lambda: weights(h.kong) == {STABLE_T: 75, CANARY_T: 25}, what="25")
    # Argo moves to step 4 (setWeight 50), then scales the canary to 2 pods. (Scaling first
    # would, at step 2, fall back to step 0's 10: AtDesiredReplicaCountsForCanary is false.)
    await h.patch(ROLLOUTS, "web", {"status": {"currentStepIndex": 4}})
    await h.patch(REPLICASETS, "web-v2", {"spec": {"replicas": 2}})
    # Witness: the daemon has reconciled step 4 with the canary at 2 pods, 1 available.
    state = await acted_on(
        daemon,
        lambda _: (
            seen_rollout(daemon).current_step_index == 4
            and (rs := seen_replicaset(daemon, "web-v2")) is not None
            and rs.replicas == 2
        ),
        what="step 4 and the 2-pod canary seen",
    )
    assert state is not None and state.rule == "replica-gate-previous"
    assert state.desired is not None and state.desired.weights() == {STABLE_T: 75, CANARY_T: 25}
    assert weights(h.kong) == {STABLE_T: 75, CANARY_T: 25}, "50 applied before the canary scaled"
    await h.patch(REPLICASETS, "web-v2", {"status": {"availableReplicas": 2}})
    await eventually(
        lambda: weights(h.kong) == {STABLE_T: 50, CANARY_T: 50}, what="50 once available"
    )


async def test_abort_drives_canary_to_zero(harness: Harness) -> None:
    h = harness
    await h.seed()
    await h.start()
    await start_canary(h)
    await h.patch(REPLICASETS, "web-v2", {"status": {"availableReplicas": 1}})
    await h.patch(ROLLOUTS, "web", {"status": {"currentStepIndex": 2}})
    await eventually(lambda: weights(h.kong) == {STABLE_T: 75, CANARY_T: 25})
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await h.patch(ROLLOUTS, "web", {"status": {"abort": True, "currentStepIndex": 0}})
    await eventually(
        lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}, within=2, what="abort"
    )
    assert loop.time() - t0 < 2  # far inside Argo's 30 s abortScaleDownDelaySeconds


async def test_promotion_waits_for_stable_selector(harness: Harness) -> None:
    h = harness
    await h.seed()
    daemon = await h.start()
    await start_canary(h)
    await h.patch(
        REPLICASETS, "web-v2", {"spec": {"replicas": 4}, "status": {"availableReplicas": 4}}
    )
    await h.patch(ROLLOUTS, "web", {"status": {"currentStepIndex": len(STEPS)}})
    await eventually(lambda: weights(h.kong) == {STABLE_T: 0, CANARY_T: 100})
    # Argo marks it promoted; the stable Service still selects v1: hold (no traffic back to v1).
    await h.patch(ROLLOUTS, "web", {"status": {"stableRS": "v2"}})
    writes = kong_writes(h.kong)
    # Witness: the daemon has reconciled stableRS v2 and holds.
    state = await acted_on(
        daemon, lambda _: seen_rollout(daemon).stable_rs == "v2", what="stableRS v2 seen"
    )
    assert state is not None and state.hold is not None
    assert state.hold.startswith("promotion in flight: the stable Service still selects v1")
    assert weights(h.kong) == {STABLE_T: 0, CANARY_T: 100}, (
        "moved weight before the selector switch"
    )
    assert kong_writes(h.kong) == writes
    await h.patch(
        SERVICES, "web-stable", {"spec": {"selector": {"rollouts-pod-template-hash": "v2"}}}
    )
    await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}, what="stable = max")


async def test_weight_changed_behind_our_back_is_put_back_and_counted(harness: Harness) -> None:
    h = harness
    await h.seed()
    interval = 1.0
    daemon = await h.start(h.settings(reconcile={"interval": interval}))
    await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0})
    await eventually(lambda: daemon.reconciler is not None and daemon.reconciler.synced.is_set())
    h.kong.set_weight(UPSTREAM, CANARY_T, 40)
    # Put back within one reconcile.interval (plus the sweep's own round trip).
    await eventually(
        lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0},
        within=interval + 0.5,
        what="drift put back within one interval",
    )
    await eventually(
        lambda: metric(daemon, "kongsplit_drift_corrections_total", kind="weight") == 1,
        what="weight drift counted once",
    )
    # One more sweep, witnessed by its read of the upstream: nothing new to count.
    reads = kong_reads(h.kong)
    await swept(daemon)
    assert kong_reads(h.kong) > reads
    assert metric(daemon, "kongsplit_drift_corrections_total", kind="weight") == 1


async def test_kong_wiped_is_rebuilt(harness: Harness) -> None:
    h = harness
    await h.seed()
    daemon = await h.start()
    await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0})
    await eventually(lambda: daemon.reconciler is not None and daemon.reconciler.synced.is_set())
    h.kong.wipe()
    assert weights(h.kong) == {}
    await eventually(
        lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}, within=3, what="rebuilt"
    )
    await eventually(
        lambda: metric(daemon, "kongsplit_drift_corrections_total", kind="missing") >= 1,
        what="missing counted",
    )


async def test_410_gone_mid_watch_loses_no_update(harness: Harness) -> None:
    h = harness
    await h.seed()
    daemon = await h.start()
    await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0})
    await start_canary(h)
    await h.patch(REPLICASETS, "web-v2", {"status": {"availableReplicas": 1}})
    await eventually(lambda: weights(h.kong) == {STABLE_T: 90, CANARY_T: 10})
    # Open a gap: watches are held, ended; changes land; then they come back with 410.
    watches = watch_requests(h.kube)
    h.kube.hold_watches()
    h.kube.end_watches()
    # Witness: every watcher's next watch request has reached kmock and waits at the gate.
    await eventually(
        lambda: watch_requests(h.kube) >= watches + len(daemon.watchers), what="watches held"
    )
    await h.patch(ROLLOUTS, "web", {"status": {"currentStepIndex": 2}})
    assert seen_rollout(daemon).current_step_index == 0  # the gap is real: the change is unseen
    assert weights(h.kong) == {STABLE_T: 90, CANARY_T: 10}
    h.kube.release_watches(expire=True)
    await eventually(
        lambda: weights(h.kong) == {STABLE_T: 75, CANARY_T: 25}, what="update after 410"
    )
    assert metric(daemon, "kongsplit_watch_restarts_total") >= 1


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b"null\n", id="null-event"),
        pytest.param(b'{"type": "MODIFIED", "object": {"metadata": [1]}}\n', id="wrong-types"),
        pytest.param(
            b'{"type": "ADDED", "object": ' + b"[" * 1500 + b"]" * 1500 + b"}\n", id="deep"
        ),
        pytest.param(b"<html>proxy error</html>\n", id="not-json"),
    ],
)
async def test_garbage_from_kubernetes_is_skipped_never_an_exit(
    harness: Harness, line: bytes
) -> None:
    """Before: a null event or an object of the wrong shape raised out of a watcher, a root
    task, and the daemon exited 1 (and crash-looped on every restart that met it again)."""
    h = harness
    await h.seed()
    daemon = await h.start()
    await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0})
    watches = watch_requests(h.kube)
    h.kube.send_raw(line)  # on the Rollout, ReplicaSet and Service watches alike
    n = len(daemon.watchers)
    await eventually(
        lambda: (
            metric(daemon, "kongsplit_watch_events_skipped_total") == n
            and watch_requests(h.kube) >= watches + n
            and h.kube.open_watches >= n
        ),
        what="every watcher skipped the line, relisted and watches again",
    )
    await asyncio.sleep(0.2)  # kmock drops changes made while a new watch subscribes (Harness)
    # A change made after the line lands: the daemon carried on.
    await start_canary(h)
    await h.patch(REPLICASETS, "web-v2", {"status": {"availableReplicas": 1}})
    await eventually(lambda: weights(h.kong) == {STABLE_T: 90, CANARY_T: 10}, what="still working")
    assert all(not t.done() for t in daemon.tasks.values())
    assert metric(daemon, "kongsplit_watch_events_skipped_total") == len(daemon.watchers)
    assert metric(daemon, "kongsplit_watch_restarts_total") == len(daemon.watchers)


async def test_rollout_edited_while_kong_down_converges(
    harness: Harness, unused_tcp_port: int
) -> None:
    h = harness
    await h.seed()
    daemon = await h.start()
    await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0})
    port = int(h.kong.url.rsplit(":", 1)[1])
    await h.kong.stop()
    await start_canary(h)
    await h.patch(REPLICASETS, "web-v2", {"status": {"availableReplicas": 1}})
    await h.patch(ROLLOUTS, "web", {"status": {"currentStepIndex": 2}})
    await eventually(lambda: metric(daemon, "kongsplit_kong_up") == 0, within=10, what="kong_up 0")
    await h.kong.start(port=port)
    await eventually(
        lambda: weights(h.kong) == {STABLE_T: 75, CANARY_T: 25}, within=10, what="converged"
    )


async def test_two_daemons_with_leader_election_never_both_write(harness: Harness) -> None:
    h = harness
    await h.seed()

    def settings(identity: str) -> Any:
        return h.settings(
            leaderElection={
                "enabled": True,
                "identity": identity,
                "leaseDurationSeconds": 2,
                "leaseNamespace": "kongsplit",
            },
        )

    a = await h.start(settings("a"))
    b = await h.start(settings("b"))
    both = 0
    writers: set[int] = set()
    # Record which node-local client wrote each request: each daemon has its own User-Agent port.
    for _ in range(100):
        la = a.elector is not None and a.elector.is_leader
        lb = b.elector is not None and b.elector.is_leader
        both += la and lb
        if la:
            writers.add(1)
        if lb:
            writers.add(2)
        await asyncio.sleep(0.01)
    assert both == 0
    await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0})
    leader, follower = (a, b) if a.elector is not None and a.elector.is_leader else (b, a)
    assert follower.elector is not None and not follower.elector.is_leader
    assert metric(leader, "kongsplit_leader") == 1 and metric(follower, "kongsplit_leader") == 0
    # The follower writes nothing, even when Kong drifts; the leader corrects.
    assert await h.stop(leader) == 0
    await eventually(
        lambda: follower.elector is not None and follower.elector.is_leader,
        within=4,
        what="takeover within the lease duration",
    )
    h.kong.set_weight(UPSTREAM, CANARY_T, 33)
    await eventually(
        lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0},
        within=3,
        what="new leader corrects drift",
    )


async def test_bad_input_leaves_others_untouched(harness: Harness) -> None:
    h = harness
    await h.seed()
    await h.create(SERVICES, service("headless-stable", None, "v1"))
    await h.create(SERVICES, service("headless-canary", None, "v1"))
    bad = [
        rollout("bad-annotation", annotations={"kongsplit.io/upstream": "10.0.0.1:80"}),
        rollout(
            "bad-port",
            annotations={"kongsplit.io/upstream": "p.shop.svc", "kongsplit.io/port": "grpc"},
        ),
        rollout(
            "missing-services",
            upstream="m.shop.svc",
            stable_service="nope-stable",
            canary_service="nope-canary",
        ),
        rollout(
            "headless",
            upstream="h.shop.svc",
            stable_service="headless-stable",
            canary_service="headless-canary",
        ),
    ]
    absurd = rollout("absurd", upstream="a.shop.svc")
    absurd["status"]["currentStepIndex"] = "seven"
    absurd["spec"]["strategy"]["canary"]["steps"] = [{"setWeight": 1000}]
    bad.append(absurd)
    for obj in bad:
        await h.create(ROLLOUTS, obj)
    daemon = await h.start()
    await eventually(
        lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}, what="good Rollout served"
    )
    await eventually(
        lambda: metric(daemon, "kongsplit_reconcile_errors_total") >= len(bad), what="errors"
    )
    for upstream in ("p.shop.svc", "m.shop.svc", "h.shop.svc", "a.shop.svc"):
        assert weights(h.kong, upstream) == {}
    warned: set[str] = set()
    for _ in range(300):
        warned = {
            e["involvedObject"]["name"]
            for e in await h.events()
            if e.get("type") == "Warning" and e.get("reason") == "InvalidKongsplitAnnotation"
        }
        if warned >= {o["metadata"]["name"] for o in bad}:
            break
        await asyncio.sleep(0.02)
    assert warned == {o["metadata"]["name"] for o in bad}
    assert daemon.tasks and all(not t.done() for t in daemon.tasks.values())


async def test_http_endpoints(harness: Harness) -> None:
    h = harness
    await h.seed()
    daemon = await h.start()
    base = f"http://127.0.0.1:{daemon.port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as r:
            assert r.status == 200
        await eventually(lambda: daemon._ready()[0], what="ready")
        async with http.get(f"{base}/readyz") as r:
            assert r.status == 200
        async with http.get(f"{base}/state") as r:
            state = await r.json()
        assert state["rollouts"][0]["in_sync"] is True
        async with http.get(f"{base}/verify/shop/web") as r:
            body = await r.json()
        assert body["verified"] is True and body["desired"] == {STABLE_T: 100, CANARY_T: 0}
        h.kong.set_weight(UPSTREAM, STABLE_T, 5)
        async with http.get(f"{base}/verify/shop/web") as r:
            assert (await r.json())["verified"] is False
        async with http.get(f"{base}/verify/shop/unknown") as r:
            assert r.status == 404 and (await r.json())["verified"] is False
        async with http.get(f"{base}/metrics") as r:
            text = await r.text()
        for name in (
            "kongsplit_desired_weight",
            "kongsplit_observed_weight",
            "kongsplit_kong_up",
            "kongsplit_managed_rollouts",
            "kongsplit_leader",
            "kongsplit_build_info",
            "kongsplit_kong_requests_total",
            "kongsplit_apply_latency_seconds",
        ):
            assert name in text, name


async def test_unannotated_rollout_is_let_go_and_kong_left_alone(harness: Harness) -> None:
    h = harness
    await h.seed()
    daemon = await h.start()
    await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0})
    await eventually(lambda: metric(daemon, "kongsplit_managed_rollouts") == 1)
    await h.patch(ROLLOUTS, "web", {"metadata": {"annotations": {"kongsplit.io/upstream": None}}})
    await eventually(lambda: metric(daemon, "kongsplit_managed_rollouts") == 0, what="let go")
    h.kong.set_weight(UPSTREAM, CANARY_T, 7)  # no longer ours: never put back
    writes = kong_writes(h.kong)
    for _ in range(2):  # two sweeps, each run to the end
        await swept(daemon)
    assert KEY in reconciler(daemon).store.rollouts and KEY not in reconciler(daemon).states
    assert weights(h.kong) == {STABLE_T: 100, CANARY_T: 7}
    assert kong_writes(h.kong) == writes
    assert metric(daemon, "kongsplit_desired_weight", rollout="web") == 0  # series dropped


async def test_on_delete_stable_moves_everything_back(harness: Harness) -> None:
    h = harness
    await h.seed()
    await h.start(h.settings(kong={"onDelete": "stable"}))
    await start_canary(h)
    await h.patch(REPLICASETS, "web-v2", {"status": {"availableReplicas": 1}})
    await eventually(lambda: weights(h.kong) == {STABLE_T: 90, CANARY_T: 10})
    from kmock_shims import delete

    await delete(h.kube, ROLLOUTS, "shop", "web")
    await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}, what="back to stable")


async def test_foreign_weighted_target_is_reported_not_touched(harness: Harness) -> None:
    h = harness
    await h.seed()
    # The owner of Kong's configuration consented (tag); a target of someone else's in it.
    h.kong.add_upstream(UPSTREAM, tags=["managed-by-kongsplit"])
    h.kong.add_target(UPSTREAM, "10.1.2.3:80", weight=50)  # someone else's, carrying weight
    daemon = await h.start()
    await eventually(lambda: weights(h.kong).get(STABLE_T) == 100, what="ours applied")
    await eventually(
        lambda: metric(daemon, "kongsplit_reconcile_errors_total", reason="foreign_targets") >= 1
    )
    # A sweep, witnessed by its read of the upstream: still untouched (exclusiveUpstreams off).
    reads, writes = kong_reads(h.kong), kong_writes(h.kong)
    await swept(daemon)
    assert kong_reads(h.kong) > reads
    assert weights(h.kong)["10.1.2.3:80"] == 50
    assert kong_writes(h.kong) == writes
    warned = [e for e in await h.events() if e.get("reason") == "KongWeightsDriftCorrected"]
    assert any("10.1.2.3:80" in e["message"] for e in warned)


async def test_a_dying_root_task_stops_the_daemon_loudly(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in a root task (here: the Rollout handler raising) must not leave a zombie daemon.

    No server can make our own code raise, so this is the one place the test patches kongsplit.
    """
    h = harness
    await h.seed()
    from kongsplit.reconciler import Reconciler

    def broken(self: Reconciler, event: str, obj: dict[str, Any]) -> None:
        raise RuntimeError("bug in on_rollout")

    monkeypatch.setattr(Reconciler, "on_rollout", broken)
    daemon = await h.start_unready()
    code = await asyncio.wait_for(h.wait(daemon), 10)
    assert code == 1
    assert any("root task watcher:rollouts stopped" in r.getMessage() for r in caplog.records)


async def test_one_rollout_kong_refuses_does_not_block_readiness(harness: Harness) -> None:
    h = harness
    await h.seed()
    await h.create(SERVICES, service("bad-stable", "10.96.1.10", "v1"))
    await h.create(SERVICES, service("bad-canary", "10.96.1.11", "v1"))
    # Its own ReplicaSet: without one Argo sends no weight (checkReplicasAvailable), so
    # kongsplit would hold and never try the write this test is about.
    await h.create(REPLICASETS, objects.replicaset("bad", "v1", 4, 4))
    await h.create(
        ROLLOUTS,
        rollout(
            "bad", upstream="bad.shop.svc", stable_service="bad-stable", canary_service="bad-canary"
        ),
    )
    h.kong.faults.fail_next(10_000, status=400, path_prefix="/upstreams/bad.shop.svc")
    daemon = await h.start()
    await eventually(lambda: daemon._ready()[0], what="ready despite one refused Rollout")
    assert weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}
    await eventually(
        lambda: metric(daemon, "kongsplit_reconcile_errors_total", reason="kong_client_error") >= 1
    )
    events = await h.events()
    assert any(
        e["reason"] == "KongWriteFailed" and e["involvedObject"]["name"] == "bad" for e in events
    )
    assert daemon.reconciler is not None
    state = daemon.reconciler.states[next(k for k in daemon.reconciler.states if k.name == "bad")]
    assert state.last_error is not None and "bad.shop.svc" in state.last_error


async def test_verify_waits_for_every_kong_node(harness: Harness) -> None:
    """/verify is the Argo AnalysisTemplate's proof: every node's balancer, not the database."""
    h = harness
    await h.seed()
    async with KongSim(nodes=2, propagation_delay=1.0) as kong:
        daemon = await h.start(h.settings(kong={"url": kong.urls[0], "nodes": list(kong.urls)}))
        await eventually(lambda: weights(kong) == {STABLE_T: 100, CANARY_T: 0})
        await start_canary(h)
        await h.patch(REPLICASETS, "web-v2", {"status": {"availableReplicas": 1}})
        await eventually(lambda: weights(kong) == {STABLE_T: 90, CANARY_T: 10})
        url = f"http://127.0.0.1:{daemon.port}/verify/shop/web"
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as r:
                early = await r.json()
            assert early["verified"] is False  # node 2 has not caught up yet
            assert early["observed"][kong.urls[0]][CANARY_T] == 10
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            body = early
            while not body["verified"] and loop.time() < deadline:
                await asyncio.sleep(0.05)
                async with http.get(url) as r:
                    body = await r.json()
        assert body["verified"] is True
        assert body["observed"][kong.urls[1]] == {STABLE_T: 90, CANARY_T: 10}


async def test_a_hold_keeps_kong_at_the_held_weights_when_kong_is_wiped(harness: Harness) -> None:
    """observedGeneration lags (Argo's controller is down): write nothing new, but a wiped
    database is rebuilt with the weights last applied, not left empty."""
    h = harness
    await h.seed()
    daemon = await h.start()
    await start_canary(h)
    await h.patch(REPLICASETS, "web-v2", {"status": {"availableReplicas": 1}})
    await eventually(lambda: weights(h.kong) == {STABLE_T: 90, CANARY_T: 10})
    # The spec changes (generation 2) and Argo has not caught up; the index moves meanwhile.
    await h.patch(
        ROLLOUTS, "web", {"metadata": {"generation": 2}, "status": {"currentStepIndex": 2}}
    )
    writes = kong_writes(h.kong)
    # Witness: the daemon has reconciled generation 2 and holds.
    state = await acted_on(
        daemon, lambda _: seen_rollout(daemon).generation == 2, what="generation 2 seen"
    )
    assert state is not None and state.hold is not None
    assert state.hold.startswith("status.observedGeneration 1 is below metadata.generation 2")
    assert state.desired is not None and state.desired.weights() == {STABLE_T: 75, CANARY_T: 25}
    assert weights(h.kong) == {STABLE_T: 90, CANARY_T: 10}, "wrote during a hold"
    assert kong_writes(h.kong) == writes
    h.kong.wipe()
    await eventually(
        lambda: weights(h.kong) == {STABLE_T: 90, CANARY_T: 10},
        within=3,
        what="held weights rebuilt",
    )
    await h.patch(ROLLOUTS, "web", {"status": {"observedGeneration": "2"}})
    await eventually(lambda: weights(h.kong) == {STABLE_T: 75, CANARY_T: 25}, what="hold released")


@pytest.mark.parametrize("leader_election", [False, True], ids=["single", "leader-election"])
async def test_a_data_plane_is_refused_even_while_kubernetes_is_unreachable(
    harness: Harness, tmp_path: Path, leader_election: bool
) -> None:
    """kong.url checked at start on every replica, whatever Kubernetes does: a follower, or a
    daemon still waiting for its first list, used to run on without ever saying its Kong is a
    data plane."""
    h = harness
    nowhere = tmp_path / "nowhere.kubeconfig"
    nowhere.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "contexts: [{name: c, context: {cluster: c}}]\nusers: []\n"
    )
    election = {"enabled": leader_election, "leaseNamespace": "kongsplit", "identity": "x"}
    async with KongSim(mode="data_plane") as dp:
        daemon = await h.start_unready(
            h.settings(
                kong={"url": dp.url},
                kubernetes={"kubeconfig": str(nowhere)},
                leaderElection=election,
            )
        )
        assert await asyncio.wait_for(h.wait(daemon), 10) == 1
        assert any(r.path == "/" for r in dp.requests)  # witness: it asked Kong who it is


async def test_a_data_plane_is_refused_and_the_daemon_exits(harness: Harness) -> None:
    h = harness
    await h.seed()
    async with KongSim(mode="data_plane") as dp:
        daemon = await h.start_unready(h.settings(kong={"url": dp.url}))
        assert await asyncio.wait_for(h.wait(daemon), 10) == 1
    assert weights(h.kong) == {}


async def test_an_unrelated_malformed_rollout_is_not_our_business(harness: Harness) -> None:
    h = harness
    await h.seed()
    other = rollout("not-ours", annotations={})
    other["status"]["abort"] = "yes"  # malformed, but it does not opt in to kongsplit
    await h.create(ROLLOUTS, other)
    daemon = await h.start()
    await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0})
    # Witness: the daemon holds the malformed Rollout and has reconciled it, in a sweep too.
    not_ours = RolloutKey("shop", "not-ours")
    await acted_on(
        daemon,
        lambda rec: (
            not_ours in rec.store.rollouts and not isinstance(rec.store.rollouts[not_ours], Rollout)
        ),
        what="not-ours stored as malformed",
    )
    await swept(daemon)
    assert metric(daemon, "kongsplit_reconcile_errors_total") == 0
    assert not [e for e in await h.events() if e["involvedObject"]["name"] == "not-ours"]
    assert daemon.reconciler is not None
    assert all(k.name != "not-ours" for k in daemon.reconciler.states)


@pytest.mark.parametrize(
    ("pod_namespace", "lease_namespace", "lease", "warns"),
    [
        pytest.param(None, None, "default/kongsplit", True, id="laptop-default-lease-warns"),
        pytest.param("shop", None, "shop/kongsplit", False, id="in-a-pod-its-namespace"),
        pytest.param(None, "kongsplit", "kongsplit/kongsplit", False, id="laptop-explicit-ns"),
    ],
)
async def test_start_names_the_lease_and_warns_when_a_local_run_guesses_its_namespace(
    harness: Harness,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    pod_namespace: str | None,
    lease_namespace: str | None,
    lease: str,
    warns: bool,
) -> None:
    h = harness
    if pod_namespace:
        monkeypatch.setenv("POD_NAMESPACE", pod_namespace)
    else:
        monkeypatch.delenv("POD_NAMESPACE", raising=False)
    caplog.set_level(logging.INFO, logger="kongsplit.app")
    election: dict[str, Any] = {"enabled": True, "identity": "laptop-1"}
    if lease_namespace:
        election["leaseNamespace"] = lease_namespace
    await h.seed()
    daemon = await h.start(h.settings(leaderElection=election))
    # The start-up lines are logged before the daemon starts its tasks: all there by now.
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "kongsplit.app"]
    start = next(m for _, m in logged if " starting: " in m)
    assert f"leader election on Lease {lease} as laptop-1" in start
    assert f"Kubernetes from kubeconfig {h.kubeconfig} (context kmock)" in start
    warnings = [m for level, m in logged if level == logging.WARNING]
    if warns:
        assert warnings == [
            "leader election Lease default/kongsplit: not running in a pod ($POD_NAMESPACE is "
            "unset) and leaderElection.leaseNamespace is not set, so the Lease is in namespace "
            "default; an in-cluster kongsplit installed by the chart holds its Lease in its "
            "release namespace: set leaderElection.leaseNamespace (or "
            "KONGSPLIT_LEADER_ELECTION_LEASE_NAMESPACE) to that namespace, or both will write "
            "to Kong"
        ]
    else:
        assert warnings == []
    # The Lease named is the one this process holds.
    await eventually(lambda: daemon.elector is not None and daemon.elector.is_leader)
    namespace, name = lease.split("/")
    async with h.kube.get(url_of(LEASES, namespace, name)) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["spec"]["holderIdentity"] == "laptop-1"


async def test_start_says_when_leader_election_is_off(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kongsplit.app")
    await harness.start()
    start = next(m for m in caplog.messages if " starting: " in m)
    assert start.endswith(", leader election off (this process always writes to Kong)")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    ("env", "flags", "where"),
    [
        pytest.param({}, {}, None, id="verifying"),
        pytest.param(
            {"KONGSPLIT_KONG_TLS_INSECURE_SKIP_VERIFY": "true"},
            {},
            "environment KONGSPLIT_KONG_TLS_INSECURE_SKIP_VERIFY",
            id="off-by-environment",
        ),
        pytest.param(
            {},
            {"kong.tls": {"insecureSkipVerify": True}},
            "flag for kong.tls.insecureSkipVerify",
            id="off-by-setting",
        ),
    ],
)
async def test_tls_verification_off_is_warned_at_start_and_shown_in_a_metric(
    harness: Harness,
    caplog: pytest.LogCaptureFixture,
    env: dict[str, str],
    flags: dict[str, Any],
    where: str | None,
) -> None:
    h = harness
    caplog.set_level(logging.INFO, logger="kongsplit.app")
    base = h.settings()
    settings = load_settings(
        env=env,
        flags={
            "kong": {"url": "https://admin:s3cret@kong.example:8444"},
            "kubernetes": {"kubeconfig": base.kubernetes.kubeconfig},
            "server": {"listen": "127.0.0.1:0"},
            "leaderElection": {"enabled": False},
            **flags,
        },
    )
    daemon = await h.start_unready(settings)
    await eventually(lambda: daemon.port is not None, what="serving")
    # The start-up lines are logged before the daemon serves: all there by now.
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "TLS verification" in r.getMessage()
    ]
    assert any(" starting: " in m for m in caplog.messages)  # the witness: start was logged
    if where is None:
        assert warned == []
        assert metric(daemon, "kongsplit_kong_tls_verify") == 1
        return
    assert len(warned) == 1
    assert warned[0].startswith(f"TLS verification of the Kong Admin API is off ({where}): ")
    assert "https://***@kong.example:8444" in warned[0] and "s3cret" not in caplog.text
    assert "set kong.tls.caFile" in warned[0]
    assert metric(daemon, "kongsplit_kong_tls_verify") == 0


async def _warnings(h: Harness, reason: str) -> list[dict[str, Any]]:
    return [e for e in await h.events() if e.get("type") == "Warning" and e.get("reason") == reason]


async def test_another_router_is_managed_and_warned_once(harness: Harness) -> None:
    h = harness
    shared = rollout()
    shared["spec"]["strategy"]["canary"]["trafficRouting"] = {"nginx": {"stableIngress": "web"}}
    await h.seed(rollout_obj=shared)
    daemon = await h.start()
    await eventually(
        lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}, what="shared Rollout served"
    )
    state = daemon.reconciler.states[next(iter(daemon.reconciler.states))]
    assert state.router_context == "shared"
    assert state.as_json()["router_context"] == "shared"
    assert metric(daemon, "kongsplit_rollouts_by_router", context="shared") == 1
    assert metric(daemon, "kongsplit_rollouts_by_router", context="sole") == 0
    await h.patch(ROLLOUTS, "web", {"metadata": {"labels": {"touched": "1"}}})
    for _ in range(100):
        if await _warnings(h, "KongsplitSharedRouter"):
            break
        await asyncio.sleep(0.02)
    warned = await _warnings(h, "KongsplitSharedRouter")
    assert len(warned) == 1 and warned[0].get("count", 1) == 1


async def test_a_rollout_argo_marks_invalid_is_held_and_reported(harness: Harness) -> None:
    h = harness
    await h.seed()
    daemon = await h.start()
    await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}, what="served")
    # maxTrafficWeight with trafficRouting {} is InvalidSpec for Argo: it stops; so does kongsplit.
    await h.patch(
        ROLLOUTS,
        "web",
        {"spec": {"strategy": {"canary": {"trafficRouting": {"maxTrafficWeight": 1000}}}}},
    )
    await eventually(
        lambda: metric(daemon, "kongsplit_rollouts", state="invalid") == 1, what="invalid"
    )
    assert weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}
    for _ in range(300):
        warned = await _warnings(h, "InvalidKongsplitAnnotation")
        if warned:
            break
        await asyncio.sleep(0.02)
    assert "InvalidCanaryMaxWeightOnlySupportInNginxAndPlugins" in warned[-1]["message"]
