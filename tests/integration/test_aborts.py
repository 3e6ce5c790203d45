"""Aborts win: an abort's first write takes the canary out of traffic, it does not wait behind
a write of older weights (hung or retrying), it is retried in tens of milliseconds, and a write
it cancelled that still lands late is put back. The real daemon against kmock and the Kong
simulator, over real sockets."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from daemon_support import (
    CANARY_T,
    REPLICASETS,
    ROLLOUTS,
    SERVICES,
    STABLE_T,
    Harness,
    eventually,
    replicaset,
    weights,
)

from kongsplit.reconciler import ABORT_RETRY
from kongsplit.sim.kongsim import KongSim

#: Canary pods Argo scales revision v2 to at each step index (4 replicas, steps 10/25/50/75).
PODS = {0: 1, 1: 1, 2: 1, 3: 1, 4: 2, 5: 2, 6: 3, 7: 3, 8: 4}


async def _at(h: Harness, index: int, want: dict[str, int]) -> None:
    """The canary (revision v2, its pods ready as Argo scaled them) at step ``index``, landed."""
    pods = PODS[index]
    await h.patch(
        REPLICASETS,
        "web-v2",
        {
            "spec": {"replicas": pods},
            "status": {"replicas": pods, "readyReplicas": pods, "availableReplicas": pods},
        },
    )
    await h.patch(ROLLOUTS, "web", {"status": {"currentPodHash": "v2", "currentStepIndex": index}})
    await eventually(lambda: weights(h.kong) == want, what=f"step {index}: {want}")


async def _start_canary(h: Harness) -> None:
    await h.create(REPLICASETS, replicaset("v2", 1, 1))
    await h.patch(
        SERVICES, "web-canary", {"spec": {"selector": {"rollouts-pod-template-hash": "v2"}}}
    )


def _writes_since(kong: KongSim, mark: int) -> list[tuple[str, Any]]:
    """(target, weight) of every committed PATCH/POST of a target after request ``mark``."""
    ids = {t["id"]: t["target"] for t in kong.targets("web.shop.svc")}
    out = []
    for r in kong.requests[mark:]:
        if r.method in ("PATCH", "POST") and "/targets" in r.path and 200 <= r.status < 300:
            target = ids.get(r.path.rsplit("/", 1)[-1]) or (r.body or {}).get("target")
            out.append((target, (r.body or {}).get("weight")))
    return out


async def test_the_first_write_of_an_abort_takes_the_canary_out(harness: Harness) -> None:
    h = harness
    await h.seed()
    await h.start()
    await _start_canary(h)
    await _at(h, 2, {STABLE_T: 75, CANARY_T: 25})
    mark = len(h.kong.requests)
    await h.patch(ROLLOUTS, "web", {"status": {"abort": True, "currentStepIndex": 0}})
    await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}, what="aborted")
    # Stable already carried weight, so lowering first never passes through zero total.
    assert _writes_since(h.kong, mark) == [(CANARY_T, 0), (STABLE_T, 100)]


async def test_an_abort_from_full_canary_still_raises_first(harness: Harness) -> None:
    """At 0 / 100 lowering the canary first would zero the upstream: the order stays safe."""
    h = harness
    await h.seed()
    await h.start()
    await _start_canary(h)
    await _at(h, 8, {STABLE_T: 0, CANARY_T: 100})  # past the last step: everything on canary
    mark = len(h.kong.requests)
    await h.patch(ROLLOUTS, "web", {"status": {"abort": True, "currentStepIndex": 0}})
    await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}, what="aborted")
    assert _writes_since(h.kong, mark) == [(STABLE_T, 100), (CANARY_T, 0)]


async def test_an_abort_does_not_wait_behind_a_hung_write(harness: Harness) -> None:
    h = harness
    await h.seed()
    daemon = await h.start(h.settings(reconcile={"interval": 30}))  # no sweep to help
    await _start_canary(h)
    await _at(h, 0, {STABLE_T: 90, CANARY_T: 10})
    # The next write (step 2: canary 10 → 25) hangs for 2 s in Kong, then lands anyway.
    h.kong.faults.delay(2.0, n=1, method="PATCH")
    sent = len(h.kong.requests)
    asyncio.get_running_loop().call_soon(lambda: None)
    await h.patch(ROLLOUTS, "web", {"status": {"currentStepIndex": 2}})  # 1 pod: still right
    await asyncio.sleep(0.3)  # the daemon sends the PATCH of step 2; Kong holds it
    assert weights(h.kong) == {STABLE_T: 90, CANARY_T: 10}  # witness: it has not landed
    assert len(h.kong.requests) == sent  # a delayed request is recorded once answered
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await h.patch(ROLLOUTS, "web", {"status": {"abort": True, "currentStepIndex": 0}})
    await eventually(
        lambda: weights(h.kong)[CANARY_T] == 0, within=1.0, what="abort while a write hangs"
    )
    assert loop.time() - t0 < 1.0
    # The abandoned PATCH lands late (canary 25, weights of a step no longer wanted) …
    await eventually(lambda: weights(h.kong)[CANARY_T] == 25, within=3, what="late landing")
    # … and is put back by the late-write check, well before any sweep.
    await eventually(
        lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}, within=3, what="put back"
    )
    rec = daemon.reconciler
    assert rec is not None and rec.states[next(iter(rec.states))].rule == "aborted"


async def test_a_write_that_timed_out_and_lands_late_is_put_back(harness: Harness) -> None:
    """Kong holds a PATCH past the client's timeout; the client retries it and the pass ends.
    Argo moves on and the newer weights land, then Kong carries the abandoned PATCH out after
    all (the chaos run caught one an abort's retry had already overtaken). The daemon looks at
    such an upstream again after 1 s, 2 s, 4 s … (``KongAdmin.take_unsettled``), not only at the
    next sweep."""
    h = harness
    await h.seed()
    await h.start(h.settings(reconcile={"interval": 30}, kong={"timeoutSeconds": 0.4}))
    await _start_canary(h)
    await _at(h, 0, {STABLE_T: 90, CANARY_T: 10})
    h.kong.faults.delay(1.2, n=1, method="PATCH")  # handled 1.2 s late; the client gave up
    await _at(h, 2, {STABLE_T: 75, CANARY_T: 25})  # landed by the client's retry
    await _at(h, 4, {STABLE_T: 50, CANARY_T: 50})
    # Witness: the abandoned PATCH of step 2 lands over step 4's weights …
    await eventually(lambda: weights(h.kong)[CANARY_T] == 25, within=3, what="late landing")
    # … and is put back well before any sweep (30 s).
    await eventually(
        lambda: weights(h.kong) == {STABLE_T: 50, CANARY_T: 50}, within=4, what="put back"
    )


async def test_a_failed_abort_is_retried_in_tens_of_milliseconds(harness: Harness) -> None:
    h = harness
    await h.seed()
    await h.start(h.settings(reconcile={"interval": 30}))
    await _start_canary(h)
    await _at(h, 2, {STABLE_T: 75, CANARY_T: 25})
    h.kong.faults.fail_next(6, status=503, method="PATCH")
    await h.patch(ROLLOUTS, "web", {"status": {"abort": True, "currentStepIndex": 0}})
    await eventually(
        lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}, within=3, what="aborted"
    )
    failed = [r.time for r in h.kong.requests if r.method == "PATCH" and r.status == 503]
    assert len(failed) == 6
    # Retried on the abort schedule (reconciler.ABORT_RETRY: from 20 ms, never over 0.5 s),
    # not the ordinary one (seconds): the first retry in tens of milliseconds.
    gaps = [b - a for a, b in itertools.pairwise(failed)]
    assert gaps[0] < 0.1, gaps
    assert max(gaps) < ABORT_RETRY.cap + 0.25, gaps


async def test_a_retry_never_writes_weights_that_are_no_longer_wanted(harness: Harness) -> None:
    """Kong fails the write of step 2; while it is retried, Argo moves to step 4: the retry
    writes step 4's weights, never step 2's."""
    h = harness
    await h.seed()
    await h.start(h.settings(reconcile={"interval": 30}))
    await _start_canary(h)
    await _at(h, 0, {STABLE_T: 90, CANARY_T: 10})
    h.kong.faults.fail_next(2, status=503, method="PATCH")
    h.kong.faults.delay(0.3, n=2, method="PATCH")  # slow failures: time for Argo to move on
    mark = len(h.kong.requests)
    await h.patch(ROLLOUTS, "web", {"status": {"currentStepIndex": 2}})  # 1 pod: still right
    await asyncio.sleep(0.15)
    await h.patch(
        REPLICASETS,
        "web-v2",
        {"spec": {"replicas": 2}, "status": {"replicas": 2, "availableReplicas": 2}},
    )
    await h.patch(ROLLOUTS, "web", {"status": {"currentStepIndex": 4}})
    await eventually(lambda: weights(h.kong) == {STABLE_T: 50, CANARY_T: 50}, what="step 4")
    written = _writes_since(h.kong, mark)
    assert (CANARY_T, 25) not in written and (STABLE_T, 75) not in written, written


async def test_a_write_superseded_part_way_is_finished_by_the_next_pass(harness: Harness) -> None:
    """Step 2's canary scales to 2 pods before they are ready: Argo's replica gate goes back to
    10 (90 / 10), and kongsplit starts writing it (stable 75 → 90 first). While that PATCH is in
    Kong, Argo moves to step 4, whose gate wants 75 / 25 again: the very weights last
    acknowledged. The half-done write leaves Kong at 90 / 25; the next pass must re-read Kong
    and finish, not skip because "75 / 25 is what was applied"."""
    h = harness
    await h.seed()
    daemon = await h.start(h.settings(reconcile={"interval": 30}))  # no sweep to help
    await _start_canary(h)
    await _at(h, 2, {STABLE_T: 75, CANARY_T: 25})
    h.kong.faults.delay(0.6, n=1, method="PATCH")
    mark = len(h.kong.requests)
    await h.patch(REPLICASETS, "web-v2", {"spec": {"replicas": 2}})
    await asyncio.sleep(0.2)  # the daemon sends stable → 90; Kong holds it
    await h.patch(ROLLOUTS, "web", {"status": {"currentStepIndex": 4}})
    # Witness: the first half landed and the second (canary → 10) was never sent.
    await eventually(
        lambda: _writes_since(h.kong, mark)[:1] == [(STABLE_T, 90)], what="stable → 90 landed"
    )
    rec = daemon.reconciler
    assert rec is not None
    state = rec.states[next(iter(rec.states))]
    await eventually(
        lambda: weights(h.kong) == {STABLE_T: 75, CANARY_T: 25}, within=3, what="finished"
    )
    assert state.rule == "replica-gate-previous" and not state.unsure
    assert (CANARY_T, 10) not in _writes_since(h.kong, mark)


async def test_an_abort_does_not_sleep_out_a_long_retry_after(harness: Harness) -> None:
    """Kong answers the abort's first write 429 with Retry-After: 2. An abort retries within a
    quarter second anyway (kong/client.py URGENT_RETRY); an ordinary write would wait the 2 s."""
    h = harness
    await h.seed()
    await h.start(h.settings(reconcile={"interval": 30}))
    await _start_canary(h)
    await _at(h, 2, {STABLE_T: 75, CANARY_T: 25})
    h.kong.faults.rate_limit_next(1, retry_after=2.0, method="PATCH")
    await h.patch(ROLLOUTS, "web", {"status": {"abort": True, "currentStepIndex": 0}})
    await eventually(lambda: weights(h.kong)[CANARY_T] == 0, within=3, what="canary out")
    patches = [r for r in h.kong.requests if r.method == "PATCH"]
    limited = next(n for n, r in enumerate(patches) if r.status == 429)
    retried = patches[limited + 1]
    assert retried.status == 200
    assert retried.time - patches[limited].time < 0.5  # URGENT_RETRY: 0.25 s at most, + slack
