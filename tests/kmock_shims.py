"""kmock 0.8 (kopf author's Kubernetes API emulator), made to serve kubernetes-asyncio and us.

Reusable by any test module: load this module as a plugin (its fixtures become available)
and import its helpers::

    pytest_plugins = ("kmock_shims",)
    from kmock_shims import ROLLOUTS, KubeMock, create, obj, patch, until

(PYTEST_DONT_REWRITE: test modules import this before pytest loads it as a plugin; the
marker keeps pytest from warning that it cannot rewrite its asserts.)

The shims (kmock is pinned to 0.8 because (1) reaches into a private module):

1. ``?watch=True`` (what kubernetes-asyncio's generated API sends) is recognised as a watch;
   kmock itself only knows ``watch=true``. Fixture ``kmock_watch_shim`` (monkeypatch).
2. ``PUT`` (replace) is emulated, with a 409 Conflict when ``metadata.resourceVersion`` differs
   (Lease renewal needs it). It is a fallback reaction, so a test can still script its own
   answer for PUTs, e.g. ``kube_mock['put', kube_mock.resource(LEASES)][:1] << 409``.
3. Objects get resourceVersions: every create/patch/replace over HTTP stamps a fresh
   monotonic ``metadata.resourceVersion`` (and uid, creationTimestamp on create); lists carry
   the current one. kmock ignores resourceVersion on watches (it replays every object as
   ADDED on each watch start): our watcher drops those replays because the versions match.
4. Watch control: ``expire_watches()`` sends a ``410 Expired`` ERROR event to open watches and
   ends them; ``end_watches()`` ends them cleanly (as a server-side timeout would);
   ``hold_watches()`` makes new watches wait until ``release_watches(expire=...)`` — with
   ``expire=True`` they then answer 410 at once, which is how a test makes a gap: hold, end,
   change objects, release with 410 → the watcher must relist and catch up.
   ``timeoutSeconds`` on a watch is honoured (kmock ignores it).
5. Raw watch lines: ``send_raw(data)`` writes bytes (or each bytes of an iterable, in order)
   as they are to every open watch stream: garbage, a ``null`` event, a line of any length or
   nesting, which the emulator itself (JSON-encoding every event) cannot send.

Change objects over HTTP (:func:`create`, :func:`patch`, :func:`delete` below, or the real
client) so watchers see events; ``kube_mock.objects[...] = {...}`` bypasses the watch bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import attrs
import kmock
import pytest
from kmock._internal import enums, parsing, rendering
from kubernetes_asyncio import client as k8s_client

from kongsplit.kube import api_path

ROLLOUTS = "argoproj.io/v1alpha1/rollouts"
REPLICASETS = "apps/v1/replicasets"
SERVICES = "v1/services"
EVENTS = "v1/events"
LEASES = "coordination.k8s.io/v1/leases"
ENDPOINTSLICES = "discovery.k8s.io/v1/endpointslices"

_RESOURCES = {
    ROLLOUTS: ("Rollout", True),
    REPLICASETS: ("ReplicaSet", True),
    SERVICES: ("Service", True),
    EVENTS: ("Event", True),
    "events.k8s.io/v1/events": ("Event", True),
    LEASES: ("Lease", True),
    ENDPOINTSLICES: ("EndpointSlice", True),
}

_original_guess_k8s = parsing.guess_k8s


def _guess_k8s(k8s: Any, method: Any, query: dict[str, str]) -> Any:
    if str(query.get("watch", "")).lower() in ("true", "1"):
        query = {**query, "watch": "true"}
    return _original_guess_k8s(k8s, method, query)


@pytest.fixture()
def kmock_watch_shim(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shim (1): kmock treats ``watch=True``/``watch=1`` as a watch, like the API server."""
    monkeypatch.setattr(parsing, "guess_k8s", _guess_k8s)


def url_of(resource: str, namespace: str | None = None, name: str | None = None) -> str:
    """``"apps/v1/replicasets"`` + namespace + name → the API path."""
    parts = resource.split("/")
    group, version, plural = (parts[0], parts[1], parts[2]) if len(parts) == 3 else ("", *parts)
    return api_path(group, version, plural, namespace, name)


@attrs.define(kw_only=True)
class KubeMock(kmock.KubernetesEmulator):
    """kmock's emulator plus shims (2)-(4) above."""

    _rv: int = attrs.field(default=0, init=False)
    _watch_stops: set[asyncio.Future[int | None]] = attrs.field(factory=set, init=False)
    _watch_gate: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _gate_code: int | None = attrs.field(default=None, init=False)
    _raw_queues: set[asyncio.Queue[Any]] = attrs.field(factory=set, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._watch_gate.set()
        self.fallback[enums.method.PUT] << self._serve_replace
        for key, (kind, namespaced) in _RESOURCES.items():
            self.resources[key] = kmock.ResourceInfo(kind=kind, namespaced=namespaced)

    # --- shim 3: resourceVersions ---

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is not None and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if request.action == enums.action.CREATE:
                meta["resourceVersion"] = self._next_rv()
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault(
                    "creationTimestamp",
                    datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                )
                if request.namespace:
                    meta.setdefault("namespace", request.namespace)
            elif request.action == enums.action.UPDATE:
                meta["resourceVersion"] = self._next_rv()
        return await super()._handle(request)

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        result = await super()._serve_list(request)
        assert isinstance(result, dict)
        result["metadata"]["resourceVersion"] = self.resource_version
        return result

    # --- shim 2: PUT ---

    async def _serve_replace(self, request: rendering.Request) -> rendering.Payload:
        if request.resource is None or request.name is None or not isinstance(request.data, dict):
            raise kmock.KubernetesError(405, "MethodNotAllowed", "PUT needs a named object")
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            if key not in self._objects or self._objects[key].deleted:
                raise kmock.KubernetesObjectNotFoundError()
            obj = self._objects[key]
            wanted = (request.data.get("metadata") or {}).get("resourceVersion")
            current = (obj.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != current:
                raise kmock.KubernetesError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {request.resource.plural} "{request.name}": '
                    "the object has been modified; please apply your changes to the latest "
                    "version and try again",
                )
            new = json.loads(json.dumps(request.data))
            meta = new.setdefault("metadata", {})
            old_meta = obj.get("metadata") or {}
            for keep in ("uid", "creationTimestamp", "namespace", "name"):
                if keep in old_meta:
                    meta.setdefault(keep, old_meta[keep])
            meta["resourceVersion"] = self._next_rv()
            obj.history.append(new)
            raw = obj.raw
            await self._buses[request.resource].put({"type": "MODIFIED", "object": raw})
        return raw

    # --- shim 4: watch control ---

    def expire_watches(self, code: int = 410) -> None:
        """Open watches get an ERROR event with ``code`` (410 Expired) and end."""
        for stop in list(self._watch_stops):
            if not stop.done():
                stop.set_result(code)

    def end_watches(self) -> None:
        """Open watches end cleanly, as at a server-side timeout."""
        for stop in list(self._watch_stops):
            if not stop.done():
                stop.set_result(None)

    def hold_watches(self) -> None:
        """New watch requests wait until :meth:`release_watches`."""
        self._watch_gate.clear()

    def release_watches(self, *, expire: bool = False) -> None:
        """Let held watches go on; with ``expire`` they answer ``410 Expired`` instead."""
        self._gate_code = 410 if expire else None
        self._watch_gate.set()

    def send_raw(self, data: Any) -> None:
        """Shim (5): ``data`` (bytes, or an iterable of bytes) to every open watch, as is."""
        for queue in list(self._raw_queues):
            queue.put_nowait(data)

    @property
    def open_watches(self) -> int:
        return sum(1 for stop in self._watch_stops if not stop.done())

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        yield b""  # send the headers now, as kmock's own watch does
        if not self._watch_gate.is_set():
            await self._watch_gate.wait()
            if self._gate_code is not None:
                yield _error_event(self._gate_code)
                return
        stop: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        timeout = request.params.get("timeoutSeconds")
        if timeout:
            handle = asyncio.get_running_loop().call_later(
                float(timeout), lambda: stop.done() or stop.set_result(None)
            )
        else:
            handle = None
        self._watch_stops.add(stop)
        raw: asyncio.Queue[Any] = asyncio.Queue()
        self._raw_queues.add(raw)
        source = super()._serve_watch(request)
        step: asyncio.Future[Any] | None = None
        raw_get: asyncio.Future[Any] | None = None
        try:
            await anext(source)  # kmock's own b'' header flush
            while True:
                if step is None:
                    step = asyncio.ensure_future(anext(source))
                if raw_get is None:
                    raw_get = asyncio.ensure_future(raw.get())
                await asyncio.wait({step, stop, raw_get}, return_when=asyncio.FIRST_COMPLETED)
                if raw_get.done():
                    data, raw_get = raw_get.result(), None
                    if isinstance(data, bytes):
                        yield data
                    else:
                        for piece in data:
                            yield piece
                    continue
                if step.done():
                    result, step = step.result(), None
                    yield result
                    continue
                code = stop.result()
                if code is not None:
                    yield _error_event(code)
                return
        finally:
            self._raw_queues.discard(raw)
            if raw_get is not None and not raw_get.done():
                raw_get.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await raw_get
            self._watch_stops.discard(stop)
            if handle is not None:
                handle.cancel()
            if step is not None and not step.done():
                step.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await step
            await source.aclose()


def _error_event(code: int) -> dict[str, Any]:
    reason = "Expired" if code == 410 else "InternalError"
    return {
        "type": "ERROR",
        "object": {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": "too old resource version" if code == 410 else "scripted failure",
            "reason": reason,
            "code": code,
        },
    }


# --- helpers: change objects over HTTP so watchers see it ---


async def create(k: kmock.RawHandler, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
    namespace = (obj.get("metadata") or {}).get("namespace")
    async with k.post(url_of(resource, namespace), json=obj) as resp:
        assert resp.status < 300, await resp.text()
        result: dict[str, Any] = await resp.json()
        return result


async def patch(
    k: kmock.RawHandler, resource: str, namespace: str, name: str, body: dict[str, Any]
) -> dict[str, Any]:
    headers = {"Content-Type": "application/merge-patch+json"}
    url = url_of(resource, namespace, name)
    async with k.patch(url, data=json.dumps(body), headers=headers) as resp:
        assert resp.status < 300, await resp.text()
        result: dict[str, Any] = await resp.json()
        return result


async def delete(k: kmock.RawHandler, resource: str, namespace: str, name: str) -> None:
    async with k.delete(url_of(resource, namespace, name)) as resp:
        assert resp.status < 300, await resp.text()


def obj(resource: str, namespace: str, name: str, **fields: Any) -> dict[str, Any]:
    """A minimal object of ``resource`` (``spec=...``, ``status=...``, ``metadata`` merged)."""
    kind = _RESOURCES.get(resource, (resource.rsplit("/", 1)[-1].capitalize(), True))[0]
    api_version = resource.rsplit("/", 1)[0]
    meta = {"name": name, "namespace": namespace, **fields.pop("metadata", {})}
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **fields}


# --- fixtures ---


@pytest.fixture()
async def kube_mock(kmock_watch_shim: None) -> AsyncIterator[KubeMock]:
    """A running :class:`KubeMock` on a random local port."""
    async with KubeMock() as handler, kmock.Server(handler):
        yield handler


def api_client_for(url: str) -> k8s_client.ApiClient:
    """A real kubernetes-asyncio client pointed at ``url`` (plain http, no auth)."""
    cfg = k8s_client.Configuration(host=url.rstrip("/"))
    return k8s_client.ApiClient(configuration=cfg)


@pytest.fixture()
async def kube_api(kube_mock: KubeMock) -> AsyncIterator[k8s_client.ApiClient]:
    """A kubernetes-asyncio ``ApiClient`` for ``kube_mock`` (closed after the test)."""
    api = api_client_for(str(kube_mock.url))
    try:
        yield api
    finally:
        await api.close()


async def until(predicate: Any, within: float = 5.0, every: float = 0.01) -> None:
    """Poll ``predicate()`` until it holds; fail (TimeoutError) after ``within`` seconds."""
    async with asyncio.timeout(within):
        for _ in itertools.count():
            if predicate():
                return
            await asyncio.sleep(every)


class EventLog:
    """A watcher's ``on_event`` sink that tests can wait on."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Event()

    def __call__(self, event_type: str, obj: dict[str, Any]) -> None:
        self.events.append((event_type, obj))
        self._changed.set()

    def seen(self) -> list[tuple[str, str, str]]:
        """``(type, namespace, name)`` of every event so far."""
        return [
            (t, o["metadata"].get("namespace", ""), o["metadata"]["name"]) for t, o in self.events
        ]

    async def wait_for(self, predicate: Any, within: float = 5.0) -> None:
        """Until ``predicate(self)`` holds (fails the test after ``within`` seconds)."""
        async with asyncio.timeout(within):
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()
