"""The Event recorder against kmock (and KubeSim), with the real kubernetes-asyncio client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest
from kmock_shims import EVENTS, KubeMock, api_client_for, until
from kubernetes_asyncio.client import ApiClient

from kongsplit.events import (
    REASON_APPLIED,
    REASON_INVALID_ANNOTATION,
    WARNING,
    EventRecorder,
    ObjectRef,
)
from kongsplit.sim.kubesim import KubeSim

REF = ObjectRef("argoproj.io/v1alpha1", "Rollout", "shop", "checkout", "uid-1")

pytest_plugins = ("kmock_shims",)  # kube_mock, kube_api, kmock_watch_shim


def events_in(k: KubeMock) -> list[dict[str, Any]]:
    return [
        dict(o.raw)
        for (res, _, _), o in k.objects.items()
        if res == kmock.resource(EVENTS) and not o.deleted
    ]


def posts(k: KubeMock) -> int:
    return sum(1 for r in k if r.method == kmock.method.POST and "/events" in str(r.url))


SENTINEL = "zz-sentinel"


async def flushed(recorder: EventRecorder, k: KubeMock) -> list[dict[str, Any]]:
    """The Events in kmock once everything posted before now has been sent: one task sends
    the queue in order, so a last Event arriving proves the earlier ones are done with."""
    recorder.post(REF, type="Normal", reason=REASON_APPLIED, message=SENTINEL)
    await until(lambda: any(e["message"] == SENTINEL for e in events_in(k)))
    return [e for e in events_in(k) if e["message"] != SENTINEL]


def patches(k: KubeMock) -> int:
    return sum(1 for r in k if r.method == kmock.method.PATCH and "/events" in str(r.url))


class Running:
    def __init__(self, recorder: EventRecorder) -> None:
        self.recorder = recorder

    async def __aenter__(self) -> EventRecorder:
        self.task = asyncio.create_task(self.recorder.run(), name="events")
        return self.recorder

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture()
async def recorder(kube_api: ApiClient) -> AsyncIterator[EventRecorder]:
    yield EventRecorder(kube_api, host="pod-1")


async def test_posts_a_core_v1_event(kube_mock: KubeMock, recorder: EventRecorder) -> None:
    async with Running(recorder):
        recorder.post(REF, type="Normal", reason=REASON_APPLIED, message="canary 25, stable 75")
        await until(lambda: len(events_in(kube_mock)) == 1)
    (event,) = events_in(kube_mock)
    assert event["involvedObject"] == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "namespace": "shop",
        "name": "checkout",
        "uid": "uid-1",
    }
    assert event["metadata"]["namespace"] == "shop"
    assert event["metadata"]["name"].startswith("checkout.")
    assert (event["type"], event["reason"], event["count"]) == ("Normal", REASON_APPLIED, 1)
    assert event["message"] == "canary 25, stable 75"
    assert event["source"] == {"component": "kongsplit", "host": "pod-1"}
    assert event["firstTimestamp"] == event["lastTimestamp"]


async def test_same_event_again_patches_the_count(
    kube_mock: KubeMock, recorder: EventRecorder
) -> None:
    async with Running(recorder):
        recorder.post(REF, type=WARNING, reason=REASON_INVALID_ANNOTATION, message="bad port")
        await until(lambda: posts(kube_mock) == 1)
        recorder.post(REF, type=WARNING, reason=REASON_INVALID_ANNOTATION, message="bad port")
        await until(lambda: patches(kube_mock) == 1)
        # A different message is a different Event.
        recorder.post(REF, type=WARNING, reason=REASON_INVALID_ANNOTATION, message="bad mode")
        await until(lambda: posts(kube_mock) == 2)
    counts = sorted((e["message"], e["count"]) for e in events_in(kube_mock))
    assert counts == [("bad mode", 1), ("bad port", 2)]


async def test_repeats_waiting_in_the_queue_become_one_event(
    kube_mock: KubeMock, recorder: EventRecorder
) -> None:
    for _ in range(5):
        recorder.post(REF, type="Normal", reason=REASON_APPLIED, message="same")
    async with Running(recorder):
        await until(lambda: posts(kube_mock) == 1)
        events = await flushed(recorder, kube_mock)
    assert [e["count"] for e in events] == [5]
    assert patches(kube_mock) == 0


async def test_a_newer_applied_event_supersedes_the_one_waiting(
    kube_mock: KubeMock, recorder: EventRecorder
) -> None:
    """A burst of changes leaves one Event per object waiting, with the newest weights; Events
    posted without ``supersede`` (and other objects' Events) are each kept."""
    other = ObjectRef("argoproj.io/v1alpha1", "Rollout", "shop", "payments", "uid-2")
    for weights in ("90/10", "75/25", "50/50"):
        recorder.post(REF, type="Normal", reason=REASON_APPLIED, message=weights, supersede=True)
    recorder.post(other, type="Normal", reason=REASON_APPLIED, message="90/10", supersede=True)
    recorder.post(REF, type=WARNING, reason=REASON_INVALID_ANNOTATION, message="bad port")
    recorder.post(REF, type=WARNING, reason=REASON_INVALID_ANNOTATION, message="bad mode")
    assert recorder.waiting == 4
    recorder.post(REF, type="Normal", reason=REASON_APPLIED, message="50/50", supersede=True)
    async with Running(recorder):
        events = await flushed(recorder, kube_mock)
    assert sorted((e["involvedObject"]["name"], e["message"], e["count"]) for e in events) == [
        ("checkout", "50/50", 2),
        ("checkout", "bad mode", 1),
        ("checkout", "bad port", 1),
        ("payments", "90/10", 1),
    ]


async def test_aggregation_window_expires(kube_mock: KubeMock, kube_api: ApiClient) -> None:
    now = [0.0]
    recorder = EventRecorder(kube_api, aggregate_window=300.0, clock=lambda: now[0])
    async with Running(recorder):
        recorder.post(REF, type="Normal", reason=REASON_APPLIED, message="m")
        await until(lambda: posts(kube_mock) == 1)
        now[0] = 301.0  # five minutes later the same message starts a new Event
        recorder.post(REF, type="Normal", reason=REASON_APPLIED, message="m")
        await until(lambda: posts(kube_mock) == 2)
    assert patches(kube_mock) == 0


async def test_rate_limited_by_a_token_bucket(kube_mock: KubeMock, kube_api: ApiClient) -> None:
    recorder = EventRecorder(kube_api, burst=2, per_second=20.0)
    loop = asyncio.get_running_loop()
    for i in range(6):
        recorder.post(REF, type="Normal", reason=REASON_APPLIED, message=f"m{i}")
    started = loop.time()
    async with Running(recorder):
        await until(lambda: posts(kube_mock) >= 2, within=0.5)
        burst_done = loop.time() - started
        await until(lambda: posts(kube_mock) == 6)
        elapsed = loop.time() - started
    assert burst_done < 0.15
    assert elapsed >= 4 / 20.0 - 0.01  # four posts beyond the burst, at 20 per second


async def test_full_queue_drops_instead_of_blocking(
    kube_mock: KubeMock, kube_api: ApiClient
) -> None:
    recorder = EventRecorder(kube_api, queue_size=2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for i in range(5):
        recorder.post(REF, type="Normal", reason=REASON_APPLIED, message=f"m{i}")
    assert loop.time() - started < 0.05  # post() never waits
    assert recorder.dropped == 3
    async with Running(recorder):
        await until(lambda: posts(kube_mock) == 2)
        events = await flushed(recorder, kube_mock)
    assert sorted(e["message"] for e in events) == ["m0", "m1"]


async def test_api_failure_is_counted_and_the_poster_goes_on(
    kube_mock: KubeMock, kube_api: ApiClient
) -> None:
    failed_once = False

    def forbidden_once(request: kmock.Request) -> Any:
        nonlocal failed_once
        if not failed_once:
            failed_once = True
            raise kmock.KubernetesError(403, "Forbidden", "events is forbidden")
        return NotImplemented

    kube_mock["post", kmock.resource(EVENTS)] << forbidden_once
    recorder = EventRecorder(kube_api)
    running = Running(recorder)
    async with running:
        recorder.post(REF, type="Normal", reason=REASON_APPLIED, message="lost")
        recorder.post(REF, type="Normal", reason=REASON_APPLIED, message="kept")
        await until(lambda: posts(kube_mock) == 2)
        # The poster survived the failure: it still sends what comes next.
        assert "kept" in [e["message"] for e in await flushed(recorder, kube_mock)]
        assert not running.task.done()
    assert recorder.failed == 1


async def test_long_messages_are_cut(kube_mock: KubeMock, recorder: EventRecorder) -> None:
    async with Running(recorder):
        recorder.post(REF, type="Normal", reason=REASON_APPLIED, message="x" * 5000)
        await until(lambda: len(events_in(kube_mock)) == 1)
    assert len(events_in(kube_mock)[0]["message"]) == 1024


async def test_against_kubesim() -> None:
    async with KubeSim() as sim:
        api = api_client_for(sim.url)
        try:
            recorder = EventRecorder(api)
            async with Running(recorder):
                recorder.post(REF, type="Normal", reason=REASON_APPLIED, message="a")
                await until(lambda: len(sim.events) == 1)
                recorder.post(REF, type="Normal", reason=REASON_APPLIED, message="a")
                await until(lambda: sim.events[0]["count"] == 2)
        finally:
            await api.close()
    assert sim.events[0]["reason"] == REASON_APPLIED


def test_object_ref_of_a_raw_object() -> None:
    ref = ObjectRef.of(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Rollout",
            "metadata": {"namespace": "shop", "name": "checkout", "uid": "u"},
        }
    )
    assert ref == ObjectRef("argoproj.io/v1alpha1", "Rollout", "shop", "checkout", "u")
