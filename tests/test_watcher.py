"""The watcher against kmock (with our shims) and against our own KubeSim, over real sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest
from kmock_shims import (
    ROLLOUTS,
    EventLog,
    KubeMock,
    api_client_for,
    create,
    delete,
    obj,
    patch,
    until,
)
from kubernetes_asyncio.client import ApiClient
from prometheus_client import CollectorRegistry

from kongsplit.metrics import Metrics
from kongsplit.sim.kubesim import KubeSim
from kongsplit.watcher import ROLLOUTS as ROLLOUT_RESOURCE
from kongsplit.watcher import Resource, Watcher, backoff_delay

pytest_plugins = ("kmock_shims",)  # kube_mock, kube_api, kmock_watch_shim


class Backend:
    """One interface over kmock and KubeSim, so each test runs against both."""

    api: ApiClient

    async def create(self, resource: str, body: dict[str, Any]) -> None:
        raise NotImplementedError

    async def patch(self, resource: str, ns: str, name: str, body: dict[str, Any]) -> None:
        raise NotImplementedError

    async def delete(self, resource: str, ns: str, name: str) -> None:
        raise NotImplementedError

    def expire_watches(self) -> None:
        raise NotImplementedError

    def end_watches(self) -> None:
        raise NotImplementedError

    def hold_watches(self) -> None:
        raise NotImplementedError

    def release_watches(self, *, expire: bool) -> None:
        raise NotImplementedError

    def lists(self) -> int:
        raise NotImplementedError

    def watches(self) -> int:
        raise NotImplementedError


class KmockBackend(Backend):
    def __init__(self, k: KubeMock) -> None:
        self.k = k
        self.api = api_client_for(str(k.url))

    async def create(self, resource: str, body: dict[str, Any]) -> None:
        await create(self.k, resource, body)

    async def patch(self, resource: str, ns: str, name: str, body: dict[str, Any]) -> None:
        await patch(self.k, resource, ns, name, body)

    async def delete(self, resource: str, ns: str, name: str) -> None:
        await delete(self.k, resource, ns, name)

    def expire_watches(self) -> None:
        self.k.expire_watches()

    def end_watches(self) -> None:
        self.k.end_watches()

    def hold_watches(self) -> None:
        self.k.hold_watches()

    def release_watches(self, *, expire: bool) -> None:
        self.k.release_watches(expire=expire)

    def lists(self) -> int:
        return sum(1 for r in self.k if r.action == kmock.action.LIST)

    def watches(self) -> int:
        return sum(1 for r in self.k if r.action == kmock.action.WATCH)


class SimBackend(Backend):
    def __init__(self, sim: KubeSim) -> None:
        self.sim = sim
        self.api = api_client_for(sim.url)

    async def create(self, resource: str, body: dict[str, Any]) -> None:
        self.sim.apply(body)

    async def patch(self, resource: str, ns: str, name: str, body: dict[str, Any]) -> None:
        api_version, plural = resource.rsplit("/", 1)
        self.sim.patch(api_version, plural, ns, name, body)

    async def delete(self, resource: str, ns: str, name: str) -> None:
        api_version, plural = resource.rsplit("/", 1)
        self.sim.delete(api_version, plural, ns, name)

    def expire_watches(self) -> None:
        self.sim.expire_watches()

    def end_watches(self) -> None:
        self.sim.end_watches()

    def hold_watches(self) -> None:
        self.sim.hold_watches()

    def release_watches(self, *, expire: bool) -> None:
        self.sim.release_watches(expire=expire)

    def _gets(self, watch: bool) -> int:
        return sum(
            1
            for m, p in self.sim.requests
            if m == "GET" and "/rollouts" in p and (("watch=" in p) == watch)
        )

    def lists(self) -> int:
        return self._gets(watch=False)

    def watches(self) -> int:
        return self._gets(watch=True)


@pytest.fixture(params=["kmock", "sim"])
async def backend(request: pytest.FixtureRequest, kmock_watch_shim: None) -> AsyncIterator[Backend]:
    b: Backend
    if request.param == "kmock":
        async with KubeMock() as k, kmock.Server(k):
            b = KmockBackend(k)
            try:
                yield b
            finally:
                await b.api.close()
    else:
        async with KubeSim(bookmark_interval=0.2) as sim:
            b = SimBackend(sim)
            try:
                yield b
            finally:
                await b.api.close()


@pytest.fixture()
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def restarts(metrics: Metrics, resource: str = "rollouts") -> float:
    value = metrics.registry.get_sample_value(
        "kongsplit_watch_restarts_total", {"resource": resource}
    )
    return value or 0.0


class Running:
    """Run a watcher for the duration of an ``async with``."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watcher:
        self.task = asyncio.create_task(self.watcher.run(), name="test-watcher")
        return self.watcher

    async def __aexit__(self, *exc: object) -> None:
        if self.task is None:
            return
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def rollout(ns: str, name: str, **fields: Any) -> dict[str, Any]:
    return obj(ROLLOUTS, ns, name, **fields)


async def delivered(
    backend: Backend, log: EventLog, *namespaces: str
) -> list[tuple[str, str, str]]:
    """What the watcher delivered before a sentinel created last in each of ``namespaces``.

    A watch stream is ordered: anything still to come on it (a replay, a duplicate) arrives
    before the sentinel's ADDED, so "nothing else followed" is checked, not hoped for."""
    for ns in namespaces:
        await backend.create(ROLLOUTS, rollout(ns, "zz-sentinel"))
    await log.wait_for(
        lambda log: all(("ADDED", ns, "zz-sentinel") in log.seen() for ns in namespaces)
    )
    return [e for e in log.seen() if e[2] != "zz-sentinel"]


async def test_initial_list_then_changes(backend: Backend, metrics: Metrics) -> None:
    await backend.create(ROLLOUTS, rollout("ns1", "a", spec={"replicas": 1}))
    await backend.create(ROLLOUTS, rollout("ns2", "b"))
    log = EventLog()
    watcher = Watcher(backend.api, ROLLOUT_RESOURCE, on_event=log, metrics=metrics)
    async with Running(watcher):
        await asyncio.wait_for(watcher.listed.wait(), 5)
        assert sorted(log.seen()) == [("ADDED", "ns1", "a"), ("ADDED", "ns2", "b")]
        # Objects arrive whole and as the API sent them (camelCase, apiVersion/kind filled in).
        first = next(o for _, o in log.events if o["metadata"]["name"] == "a")
        assert first["apiVersion"] == "argoproj.io/v1alpha1" and first["kind"] == "Rollout"
        assert first["spec"] == {"replicas": 1}
        assert first["metadata"]["resourceVersion"]

        await _watching(backend)
        await backend.patch(ROLLOUTS, "ns1", "a", {"spec": {"replicas": 2}})
        await backend.create(ROLLOUTS, rollout("ns3", "c"))
        await backend.delete(ROLLOUTS, "ns2", "b")
        await log.wait_for(lambda log: len(log.events) >= 5)
        seen = await delivered(backend, log, "ns1")  # nothing else (no replays) followed
    assert seen[2:] == [
        ("MODIFIED", "ns1", "a"),
        ("ADDED", "ns3", "c"),
        ("DELETED", "ns2", "b"),
    ]
    assert log.events[2][1]["spec"] == {"replicas": 2}
    assert restarts(metrics) == 0


async def test_namespaced_watch_sees_only_its_namespaces(backend: Backend) -> None:
    for ns in ("ns1", "ns2", "other"):
        await backend.create(ROLLOUTS, rollout(ns, "r"))
    log = EventLog()
    watcher = Watcher(backend.api, ROLLOUT_RESOURCE, namespaces=["ns1", "ns2"], on_event=log)
    async with Running(watcher):
        await asyncio.wait_for(watcher.listed.wait(), 5)
        assert sorted(log.seen()) == [("ADDED", "ns1", "r"), ("ADDED", "ns2", "r")]
        await _watching(backend, 2)
        await backend.patch(ROLLOUTS, "other", "r", {"spec": {"x": 1}})
        await backend.patch(ROLLOUTS, "ns2", "r", {"spec": {"x": 1}})
        await log.wait_for(lambda log: len(log.events) >= 3)
        seen = await delivered(backend, log, "ns1", "ns2")
    assert seen[2:] == [("MODIFIED", "ns2", "r")]
    assert backend.lists() == 2  # one list per namespace, no cluster-wide list


async def test_listed_waits_for_every_namespace(backend: Backend) -> None:
    backend.hold_watches()  # irrelevant to lists; keeps the streams quiet
    watcher = Watcher(
        backend.api, ROLLOUT_RESOURCE, namespaces=["a", "b", "c"], on_event=EventLog()
    )
    async with Running(watcher):
        await asyncio.wait_for(watcher.listed.wait(), 5)
        assert backend.lists() == 3
        backend.release_watches(expire=False)


async def test_410_mid_watch_relists_without_redelivering(
    backend: Backend, metrics: Metrics
) -> None:
    await backend.create(ROLLOUTS, rollout("ns", "a"))
    log = EventLog()
    watcher = Watcher(backend.api, ROLLOUT_RESOURCE, on_event=log, metrics=metrics)
    async with Running(watcher):
        await asyncio.wait_for(watcher.listed.wait(), 5)
        await _watching(backend)
        backend.expire_watches()
        await until(lambda: restarts(metrics) == 1 and backend.lists() == 2)
        await backend.patch(ROLLOUTS, "ns", "a", {"spec": {"after": True}})
        await log.wait_for(lambda log: len(log.events) >= 2)
        seen = await delivered(backend, log, "ns")
    # The relist found nothing new, so it delivered nothing; the watch goes on afterwards.
    assert seen == [("ADDED", "ns", "a"), ("MODIFIED", "ns", "a")]


async def test_gap_then_410_delivers_exactly_what_changed(
    backend: Backend, metrics: Metrics
) -> None:
    for name in ("keep", "change", "vanish"):
        await backend.create(ROLLOUTS, rollout("ns", name))
    log = EventLog()
    watcher = Watcher(backend.api, ROLLOUT_RESOURCE, on_event=log, metrics=metrics)
    async with Running(watcher):
        await asyncio.wait_for(watcher.listed.wait(), 5)
        await _watching(backend)
        # A gap: the watch ends, the next one is held while the world changes.
        backend.hold_watches()
        backend.end_watches()
        await until(lambda: backend.watches() >= 2)
        await backend.patch(ROLLOUTS, "ns", "change", {"spec": {"v": 2}})
        await backend.delete(ROLLOUTS, "ns", "vanish")
        await backend.create(ROLLOUTS, rollout("ns", "new"))
        backend.release_watches(expire=True)
        await log.wait_for(lambda log: len(log.events) >= 6)
        seen = await delivered(backend, log, "ns")
    assert sorted(seen[3:]) == [
        ("ADDED", "ns", "new"),
        ("DELETED", "ns", "vanish"),
        ("MODIFIED", "ns", "change"),
    ]
    tombstone = next(o for t, o in log.events if t == "DELETED")
    assert tombstone["kind"] == "Rollout" and tombstone["metadata"]["namespace"] == "ns"
    changed = next(o for t, o in log.events if t == "MODIFIED")
    assert changed["spec"] == {"v": 2}
    assert restarts(metrics) == 1


async def test_server_side_timeout_resumes_without_relist(
    backend: Backend, metrics: Metrics
) -> None:
    await backend.create(ROLLOUTS, rollout("ns", "a"))
    log = EventLog()
    watcher = Watcher(
        backend.api, ROLLOUT_RESOURCE, on_event=log, metrics=metrics, timeout_seconds=1
    )
    async with Running(watcher):
        await asyncio.wait_for(watcher.listed.wait(), 5)
        await until(lambda: backend.watches() >= 2, within=4)
        await backend.patch(ROLLOUTS, "ns", "a", {"spec": {"x": 1}})
        await log.wait_for(lambda log: len(log.events) >= 2)
        seen = await delivered(backend, log, "ns")
    assert backend.lists() == 1
    assert restarts(metrics) == 0
    assert seen == [("ADDED", "ns", "a"), ("MODIFIED", "ns", "a")]


async def test_error_event_other_than_410_backs_off_and_resumes(
    backend: Backend, metrics: Metrics
) -> None:
    await backend.create(ROLLOUTS, rollout("ns", "a"))
    log = EventLog()
    watcher = Watcher(
        backend.api, ROLLOUT_RESOURCE, on_event=log, metrics=metrics, backoff_base=0.05
    )
    async with Running(watcher):
        await asyncio.wait_for(watcher.listed.wait(), 5)
        await _watching(backend)
        if isinstance(backend, KmockBackend):
            backend.k.expire_watches(code=500)
        else:
            assert isinstance(backend, SimBackend)
            backend.sim.expire_watches(code=500)
        await until(lambda: backend.watches() >= 2)
        await backend.patch(ROLLOUTS, "ns", "a", {"spec": {"x": 1}})
        await log.wait_for(lambda log: len(log.events) >= 2)
    assert backend.lists() == 1  # resumed the watch; no relist for a non-410 error
    assert restarts(metrics) == 1


async def test_api_errors_back_off_then_recover(
    kube_mock: KubeMock, kube_api: ApiClient, metrics: Metrics
) -> None:
    failures = 0

    def flaky(request: kmock.Request) -> Any:
        nonlocal failures
        if failures < 3:
            failures += 1
            raise kmock.KubernetesError(503, "ServiceUnavailable", "etcd is sad")
        return NotImplemented  # from now on, the emulator answers

    kube_mock[kmock.action.LIST] << flaky
    await create(kube_mock, ROLLOUTS, rollout("ns", "a"))
    log = EventLog()
    watcher = Watcher(kube_api, ROLLOUT_RESOURCE, on_event=log, metrics=metrics, backoff_base=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with Running(watcher):
        await asyncio.wait_for(watcher.listed.wait(), 5)
    # Three failures, three growing pauses (jittered: at least half of 0.05 + 0.1 + 0.2).
    assert loop.time() - started >= 0.17
    assert failures == 3 and restarts(metrics) == 3
    assert log.seen() == [("ADDED", "ns", "a")]


async def test_connection_refused_then_recovers(
    kmock_watch_shim: None, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = api_client_for(f"http://127.0.0.1:{port}")
    log = EventLog()
    watcher = Watcher(api, ROLLOUT_RESOURCE, on_event=log, metrics=metrics, backoff_base=0.05)
    running = Running(watcher)
    try:
        await running.__aenter__()
        await until(lambda: restarts(metrics) >= 2)  # refused, and refused again
        assert not watcher.listed.is_set()
        async with KubeMock() as k, kmock.Server(k, port=port):
            await create(k, ROLLOUTS, rollout("ns", "a"))
            await asyncio.wait_for(watcher.listed.wait(), 5)
            await log.wait_for(lambda log: len(log.events) >= 1)
            await until(lambda: k.open_watches >= 1)
            await patch(k, ROLLOUTS, "ns", "a", {"spec": {"x": 1}})
            await log.wait_for(lambda log: len(log.events) >= 2)
            # Stop watching before the server goes (it would wait for the open stream).
            await running.__aexit__()
    finally:
        await running.__aexit__()
        await api.close()
    assert log.seen() == [("ADDED", "ns", "a"), ("MODIFIED", "ns", "a")]
    # In words, never a library's class name ("ClientConnectorError: ..." before).
    refused = [r.getMessage() for r in caplog.records if "watch failed" in r.getMessage()]
    assert refused and all(f"cannot connect to 127.0.0.1:{port} (" in m for m in refused)
    assert not any("Error" in m for m in refused), refused


async def test_callback_bug_stops_the_watcher_loudly(backend: Backend) -> None:
    await backend.create(ROLLOUTS, rollout("ns", "a"))

    def broken(event_type: str, obj: dict[str, Any]) -> None:
        raise RuntimeError("bug in the daemon")

    watcher = Watcher(backend.api, ROLLOUT_RESOURCE, on_event=broken)
    with pytest.raises(RuntimeError, match="bug in the daemon"):
        await asyncio.wait_for(watcher.run(), 5)


async def test_other_resources_use_their_own_paths(backend: Backend) -> None:
    services = Resource("", "v1", "services", "Service")
    await backend.create("v1/services", obj("v1/services", "ns", "svc", spec={"type": "ClusterIP"}))
    log = EventLog()
    watcher = Watcher(backend.api, services, on_event=log)
    async with Running(watcher):
        await asyncio.wait_for(watcher.listed.wait(), 5)
    assert log.seen() == [("ADDED", "ns", "svc")]
    assert log.events[0][1]["apiVersion"] == "v1"


@pytest.mark.parametrize("failures", [1, 2, 5, 10, 50])
def test_backoff_delay_is_jittered_exponential_and_capped(failures: int) -> None:
    for _ in range(50):
        delay = backoff_delay(failures, base=0.5, cap=30.0)
        full = min(30.0, 0.5 * 2 ** (failures - 1))
        assert full / 2 <= delay <= full


async def _watching(backend: Backend, streams: int = 1) -> None:
    """Until the watch streams are open (kmock has no history: earlier changes would be lost)."""
    await until(lambda: backend.watches() >= streams)
    await asyncio.sleep(0.05)


# --------------------------------------------------------------------------- garbage
# kmock only: the lines are written raw (kmock_shims shim 5), which KubeSim has no reason to do.


def skipped(metrics: Metrics, reason: str, resource: str = "rollouts") -> float:
    value = metrics.registry.get_sample_value(
        "kongsplit_watch_events_skipped_total", {"resource": resource, "reason": reason}
    )
    return value or 0.0


def _nested(depth: int) -> dict[str, Any]:
    """A Rollout with a free-form field nested ``depth`` levels deep (built without recursion)."""
    inner: Any = "bottom"
    for _ in range(depth):
        inner = {"x": inner}
    return rollout("ns", "deep", spec={"extra": inner})


def _dumps_nested(obj: dict[str, Any], depth: int) -> bytes:
    """JSON text of ``_nested(depth)`` written by hand: json.dumps itself recurses."""
    text = json.dumps({**obj, "spec": {"extra": "@"}})
    return text.replace('"@"', '{"x":' * depth + '"bottom"' + "}" * depth).encode()


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        pytest.param(b"null\n", "invalid", id="null-event"),
        pytest.param(b"[1, 2]\n", "invalid", id="event-is-a-list"),
        pytest.param(b'"ADDED"\n', "invalid", id="event-is-a-string"),
        pytest.param(b'{"type": "ADDED", "object": null}\n', "invalid", id="null-object"),
        pytest.param(b'{"type": "ADDED", "object": [1]}\n', "invalid", id="object-is-a-list"),
        pytest.param(b'{"type": 5, "object": {}}\n', "invalid", id="type-not-a-string"),
        pytest.param(
            b'{"type": "ADDED", "object": {"metadata": "x"}}\n', "invalid", id="metadata-string"
        ),
        pytest.param(
            b'{"type": "MODIFIED", "object": {"metadata": {"name": 5}}}\n',
            "invalid",
            id="name-not-a-string",
        ),
        pytest.param(
            b'{"type": "ADDED", "object": {"metadata": {"name": "a", "namespace": ["ns"]}}}\n',
            "invalid",
            id="namespace-not-a-string",
        ),
        pytest.param(
            b'{"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": 7}}}\n',
            "invalid",
            id="resource-version-not-a-string",
        ),
        pytest.param(b'{"type": "DELETED", "object": {}}\n', "invalid", id="deleted-unnamed"),
        pytest.param(b"{not json\n", "malformed", id="not-json"),
        pytest.param(b"\xff\xfe\n", "malformed", id="not-utf8"),
        pytest.param(b'{"type": "ADDED"' + b"\n", "malformed", id="cut-short"),
    ],
)
async def test_a_garbage_watch_line_is_skipped_counted_and_relisted(
    kube_mock: KubeMock, kube_api: ApiClient, metrics: Metrics, line: bytes, reason: str
) -> None:
    """Before: a null event or an object whose metadata was not a mapping raised out of the
    watcher (the daemon exited); a line that was not JSON backed off and watched on from the
    same place, never learning what the line said. Now: skipped, counted, relisted."""
    await create(kube_mock, ROLLOUTS, rollout("ns", "a"))
    log = EventLog()
    watcher = Watcher(kube_api, ROLLOUT_RESOURCE, on_event=log, metrics=metrics)
    async with Running(watcher) as running:
        await asyncio.wait_for(running.listed.wait(), 5)
        await until(lambda: kube_mock.open_watches >= 1)
        kube_mock.send_raw(line)
        await until(lambda: skipped(metrics, reason) == 1 and _lists(kube_mock) == 2)
        # Still watching: a change made now is delivered (a witness that it carried on).
        await until(lambda: kube_mock.open_watches >= 1)
        await asyncio.sleep(0.05)  # kmock has no history (_watching)
        await patch(kube_mock, ROLLOUTS, "ns", "a", {"spec": {"after": True}})
        await log.wait_for(lambda log: ("MODIFIED", "ns", "a") in log.seen())
    assert restarts(metrics) == 1
    assert sum(skipped(metrics, r) for r in ("oversized", "malformed", "invalid")) == 1


def _lists(k: KubeMock) -> int:
    return sum(1 for r in k if r.action == kmock.action.LIST)


async def test_a_watch_that_keeps_sending_garbage_is_relisted_with_back_off(
    kube_mock: KubeMock, kube_api: ApiClient, metrics: Metrics
) -> None:
    watcher = Watcher(
        kube_api, ROLLOUT_RESOURCE, on_event=EventLog(), metrics=metrics, backoff_base=0.2
    )
    loop = asyncio.get_running_loop()
    async with Running(watcher) as running:
        await asyncio.wait_for(running.listed.wait(), 5)
        started = loop.time()
        for n in range(1, 4):
            await until(lambda: kube_mock.open_watches >= 1)
            kube_mock.send_raw(b"null\n")
            await until(lambda n=n: skipped(metrics, "invalid") == n, within=10)  # type: ignore[misc]
        await until(lambda: _lists(kube_mock) == 4 and kube_mock.open_watches >= 1)
    # The relists after the 2nd and 3rd waited (jittered: at least half of 0.2 and of 0.4).
    assert loop.time() - started >= 0.3


async def test_an_oversized_watch_line_is_never_held_whole(
    kube_mock: KubeMock, kube_api: ApiClient, metrics: Metrics
) -> None:
    """An 8 MiB line against a 64 KiB cap: the watcher stops reading at the cap (it used to
    buffer the whole line, and copy it on every chunk), counts it and relists."""
    await create(kube_mock, ROLLOUTS, rollout("ns", "a"))
    log = EventLog()
    cap = 64 * 1024
    watcher = Watcher(kube_api, ROLLOUT_RESOURCE, on_event=log, metrics=metrics, max_line=cap)
    async with Running(watcher) as running:
        await asyncio.wait_for(running.listed.wait(), 5)
        await until(lambda: kube_mock.open_watches >= 1)
        piece = b'{"type": "ADDED", "object": {"x": "' + b"y" * (64 * 1024)
        tracemalloc.start()
        try:
            kube_mock.send_raw(piece for _ in range(128))  # 8 MiB, in 64 KiB writes
            await until(lambda: skipped(metrics, "oversized") == 1, within=10)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        await until(lambda: _lists(kube_mock) == 2)
        await until(lambda: kube_mock.open_watches >= 1)
        await asyncio.sleep(0.05)  # kmock has no history (_watching)
        await patch(kube_mock, ROLLOUTS, "ns", "a", {"spec": {"after": True}})
        await log.wait_for(lambda log: ("MODIFIED", "ns", "a") in log.seen())
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes while skipping an 8 MiB line"


async def test_json_nested_deeper_than_json_loads_goes_is_still_read(
    kube_mock: KubeMock, kube_api: ApiClient, metrics: Metrics
) -> None:
    """A Rollout nested 1,500 levels deep (the API server stores up to 10,000): json.loads
    gives up past about 1,000 and the watcher used to die of it (a RecursionError is no
    ValueError); in a list it failed every relist. Both are decoded without recursion now."""
    deep = _nested(1500)
    line = b'{"type": "ADDED", "object": ' + _dumps_nested(deep, 1500) + b"}\n"
    served = {"lists": 0}
    listing = (
        b'{"apiVersion": "argoproj.io/v1alpha1", "kind": "RolloutList", '
        b'"metadata": {"resourceVersion": "1"}, "items": ['
        + _dumps_nested({**deep, "metadata": {**deep["metadata"], "name": "listed"}}, 1500)
        + b"]}"
    )

    def first_list(request: kmock.Request) -> Any:
        served["lists"] += 1
        return listing if served["lists"] == 1 else NotImplemented

    kube_mock[kmock.action.LIST] << first_list
    log = EventLog()
    watcher = Watcher(kube_api, ROLLOUT_RESOURCE, on_event=log, metrics=metrics)
    async with Running(watcher) as running:
        await asyncio.wait_for(running.listed.wait(), 5)
        await until(lambda: kube_mock.open_watches >= 1)
        kube_mock.send_raw(line)
        await log.wait_for(lambda log: ("ADDED", "ns", "deep") in log.seen())
    assert log.seen() == [("ADDED", "ns", "listed"), ("ADDED", "ns", "deep")]
    obj = log.events[1][1]
    depth, node = 0, obj["spec"]["extra"]
    while isinstance(node, dict):
        node, depth = node["x"], depth + 1
    assert (depth, node) == (1500, "bottom")
    assert restarts(metrics) == 0
