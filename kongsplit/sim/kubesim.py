"""A small Kubernetes API fake for ``kongsplit demo`` (and tests): just what kongsplit uses.

It serves Rollouts (argoproj.io/v1alpha1), ReplicaSets (apps/v1), Services (v1), Events (v1
and events.k8s.io/v1) and Leases (coordination.k8s.io/v1) over plain HTTP with no auth:
list (cluster-wide and namespaced, equality label selectors, ``limit``/``continue`` pages
from one snapshot), watch (resourceVersion,
bookmarks, timeoutSeconds, ``410 Expired`` for a version older than the retained history; open
watches can be expired, ended or dropped on demand),
get, create, replace (PUT, 409 on a stale resourceVersion), merge patch (strategic merge
patch is treated as a merge patch), delete, and minimal discovery. resourceVersions are one
monotonic integer across all objects, as etcd's revision is. ``metadata.generation`` moves
when ``spec`` changes; the ``/status`` subresource changes only ``status``.

The demo drives it directly — :meth:`KubeSim.apply`, :meth:`KubeSim.patch`, :meth:`KubeSim.delete`
change objects and notify open watches synchronously — while kongsplit talks to it over HTTP
through the real kubernetes-asyncio client (:meth:`KubeSim.write_kubeconfig`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from aiohttp import web

_STATUS_REASONS = {
    400: "BadRequest",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
}

_DROP = -1  # a watch's stop code: close the connection abruptly

_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?"
    r"(?:/(?P<sub>status))?/?$"
)


@dataclass(frozen=True)
class SimResource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()  # as the API server lists them (kubectl get rs)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


RESOURCES = (
    SimResource("argoproj.io", "v1alpha1", "rollouts", "Rollout", short_names=("ro",)),
    SimResource("apps", "v1", "replicasets", "ReplicaSet", short_names=("rs",)),
    SimResource("", "v1", "services", "Service", short_names=("svc",)),
    SimResource("", "v1", "events", "Event", short_names=("ev",)),
    SimResource("events.k8s.io", "v1", "events", "Event", short_names=("ev",)),
    SimResource("coordination.k8s.io", "v1", "leases", "Lease"),
)


class SimError(Exception):
    """A request the fake refuses; rendered as a Kubernetes ``Status``."""

    def __init__(self, code: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason or _STATUS_REASONS.get(code, "InternalError")
        self.message = message

    def status(self) -> dict[str, Any]:
        return _status(self.code, self.reason, self.message)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (``None`` deletes a key; objects merge; the rest replaces)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(eq=False)
class _Watch:
    resource: SimResource
    namespace: str | None
    selector: list[tuple[str, str, bool]]
    # Watch lines, each encoded once per change for every watch that matches it.
    queue: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    stop: asyncio.Future[int | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(frozen=True)
class _Change:
    rv: int
    resource: SimResource
    type: str
    obj: dict[str, Any]


#: List snapshots kept for ``continue`` tokens; an older token answers 410 Expired, as the API
#: server does once its snapshot is compacted.
_SNAPSHOTS = 32


class KubeSim:
    """The fake API server; use as ``async with KubeSim() as sim:``.

    Stored objects are never changed in place (a write stores a new dict), so lists, watch
    replays and the history share them instead of copying; only what leaves through the
    Python API (``get``, ``list``, ``apply``…) is a copy the caller may change.
    """

    def __init__(self, *, history_size: int = 1000, bookmark_interval: float = 1.0) -> None:
        self._objects: dict[SimResource, dict[tuple[str, str], dict[str, Any]]] = {
            r: {} for r in RESOURCES
        }
        self._rv = 0
        self._history: deque[_Change] = deque(maxlen=history_size)
        self._floor = 0  # watches from a resourceVersion below this get 410
        self._watches: set[_Watch] = set()
        self._gate = asyncio.Event()
        self._gate.set()
        self._gate_code: int | None = None
        self._bookmark_interval = bookmark_interval
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.requests: list[tuple[str, str]] = []  # (method, path?query) of every request
        self._snapshots: dict[str, list[dict[str, Any]]] = {}  # continue token id -> items

    # --- lifecycle ---

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0]
        self.url = f"http://{host}:{bound[1]}"

    async def stop(self) -> None:
        self.end_watches()
        self._gate.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> KubeSim:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def write_kubeconfig(self, path: str) -> None:
        """A kubeconfig for :attr:`url` (plain http, no credentials)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kongsplit-sim", "cluster": {"server": self.url}}],
            "users": [{"name": "kongsplit-sim", "user": {}}],
            "contexts": [
                {
                    "name": "kongsplit-sim",
                    "context": {"cluster": "kongsplit-sim", "user": "kongsplit-sim"},
                }
            ],
            "current-context": "kongsplit-sim",
        }
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)  # JSON is YAML

    # --- direct object manipulation (the demo's and the tests' side) ---

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every Event posted (core v1 and events.k8s.io/v1), oldest first."""
        found = [
            copy.deepcopy(o)
            for r in RESOURCES
            if r.plural == "events"
            for o in self._objects[r].values()
        ]
        return sorted(found, key=lambda o: int(o["metadata"]["resourceVersion"]))

    def resource(self, api_version: str, kind_or_plural: str) -> SimResource:
        for r in RESOURCES:
            if r.api_version == api_version and kind_or_plural.lower() in (
                r.plural,
                r.kind.lower(),
            ):
                return r
        raise KeyError(f"the fake does not serve {kind_or_plural} in {api_version}")

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj``, or replace it (no resourceVersion check) when it exists."""
        resource = self.resource(str(obj.get("apiVersion")), str(obj.get("kind")))
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace") or "") if resource.namespaced else "", meta["name"])
        if key in self._objects[resource]:
            return copy.deepcopy(self._replace(resource, key, obj, check_rv=False))
        return copy.deepcopy(self._create(resource, key[0], obj))

    def patch(
        self,
        api_version: str,
        kind_or_plural: str,
        namespace: str,
        name: str,
        patch: dict[str, Any],
    ) -> dict[str, Any]:
        """JSON merge patch, ``status`` included; raises KeyError when the object is absent."""
        resource = self.resource(api_version, kind_or_plural)
        try:
            return copy.deepcopy(self._patch(resource, (namespace, name), patch, subresource=None))
        except SimError as e:
            raise KeyError(e.message) from None

    def delete(
        self, api_version: str, kind_or_plural: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        resource = self.resource(api_version, kind_or_plural)
        try:
            return copy.deepcopy(self._delete(resource, (namespace, name)))
        except SimError:
            return None

    def get(
        self, api_version: str, kind_or_plural: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        resource = self.resource(api_version, kind_or_plural)
        found = self._objects[resource].get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def list(
        self, api_version: str, kind_or_plural: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        resource = self.resource(api_version, kind_or_plural)
        return [
            copy.deepcopy(o)
            for (ns, _), o in sorted(self._objects[resource].items())
            if namespace is None or ns == namespace
        ]

    def expire_watches(self, code: int = 410) -> None:
        """Open watches get an ERROR event (410 Expired) and end; older versions are gone too."""
        if code == 410:
            self._compact()
        for w in list(self._watches):
            if not w.stop.done():
                w.stop.set_result(code)

    def drop_watches(self) -> None:
        """Open watches lose their connection: closed mid-stream, no ERROR event and no clean
        end (a load balancer or an API server restarting in between)."""
        for w in list(self._watches):
            if not w.stop.done():
                w.stop.set_result(_DROP)

    def end_watches(self) -> None:
        """Open watches end cleanly, as at their server-side timeout."""
        for w in list(self._watches):
            if not w.stop.done():
                w.stop.set_result(None)

    def hold_watches(self) -> None:
        """New watch requests wait until :meth:`release_watches` (to make a gap in tests)."""
        self._gate.clear()

    def release_watches(self, *, expire: bool = False) -> None:
        """Let held watches go on; with ``expire``, they answer 410 instead."""
        self._gate_code = 410 if expire else None
        if expire:
            self._compact()
        self._gate.set()

    def _compact(self) -> None:
        """Forget history as etcd compaction would: every version so far is now too old."""
        self._bump()
        self._floor = self._rv
        self._history.clear()

    @property
    def open_watches(self) -> int:
        return sum(1 for w in self._watches if not w.stop.done())

    # --- the store ---

    def _bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _emit(self, resource: SimResource, event_type: str, obj: dict[str, Any]) -> None:
        if self._history.maxlen is not None and len(self._history) == self._history.maxlen:
            self._floor = max(self._floor, self._history[0].rv)
        self._history.append(_Change(self._rv, resource, event_type, obj))
        line: bytes | None = None
        for w in self._watches:
            if w.resource == resource and _matches(w.namespace, w.selector, obj):
                line = line or _line(event_type, obj)
                w.queue.put_nowait(line)

    def _create(self, resource: SimResource, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            raise SimError(422, "metadata.name: Required value")
        if resource.namespaced:
            if not namespace:
                raise SimError(422, "metadata.namespace: Required value")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        key = (namespace, name)
        if key in self._objects[resource]:
            raise SimError(
                409,
                f'{resource.plural}.{resource.group or "core"} "{name}" already exists',
                "AlreadyExists",
            )
        obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
        meta.update(
            uid=meta.get("uid") or str(uuid.uuid4()),
            creationTimestamp=meta.get("creationTimestamp") or _now(),
            generation=1,
            resourceVersion=self._bump(),
        )
        self._objects[resource][key] = obj
        self._emit(resource, "ADDED", obj)
        return obj

    def _existing(self, resource: SimResource, key: tuple[str, str]) -> dict[str, Any]:
        found = self._objects[resource].get(key)
        if found is None:
            group = f".{resource.group}" if resource.group else ""
            raise SimError(404, f'{resource.plural}{group} "{key[1]}" not found', "NotFound")
        return found

    def _store(
        self, resource: SimResource, key: tuple[str, str], old: dict[str, Any], new: dict[str, Any]
    ) -> dict[str, Any]:
        meta = new.setdefault("metadata", {})
        old_meta = old.get("metadata") or {}
        for fixed in ("name", "namespace", "uid", "creationTimestamp"):
            if fixed in old_meta:
                meta[fixed] = old_meta[fixed]
        new["apiVersion"], new["kind"] = resource.api_version, resource.kind
        generation = int(old_meta.get("generation") or 1)
        if new.get("spec") != old.get("spec"):
            generation += 1
        meta["generation"] = generation
        meta["resourceVersion"] = self._bump()
        self._objects[resource][key] = new
        self._emit(resource, "MODIFIED", new)
        return new

    def _replace(
        self,
        resource: SimResource,
        key: tuple[str, str],
        obj: dict[str, Any],
        *,
        check_rv: bool,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        old = self._existing(resource, key)
        wanted = (obj.get("metadata") or {}).get("resourceVersion")
        if check_rv and wanted and str(wanted) != old["metadata"]["resourceVersion"]:
            group = f".{resource.group}" if resource.group else ""
            raise SimError(
                409,
                f'Operation cannot be fulfilled on {resource.plural}{group} "{key[1]}": the '
                "object has been modified; please apply your changes to the latest version "
                "and try again",
            )
        if subresource == "status":
            new = {**copy.deepcopy(old), "status": copy.deepcopy(obj.get("status"))}
        else:
            new = copy.deepcopy(obj)
        return self._store(resource, key, old, new)

    def _patch(
        self,
        resource: SimResource,
        key: tuple[str, str],
        patch: dict[str, Any],
        *,
        subresource: str | None,
    ) -> dict[str, Any]:
        old = self._existing(resource, key)
        if subresource == "status":
            patch = {"status": patch.get("status")} if "status" in patch else {}
        new = merge_patch(old, patch)
        # merge_patch shares the subtrees it did not touch with ``old``: metadata is changed
        # below, so it gets a dict of its own (``old`` stays as the history recorded it).
        new["metadata"] = dict(new.get("metadata") or {})
        new["metadata"].pop("resourceVersion", None)
        return self._store(resource, key, old, new)

    def _delete(self, resource: SimResource, key: tuple[str, str]) -> dict[str, Any]:
        old = self._existing(resource, key)
        del self._objects[resource][key]
        gone = {**old, "metadata": {**old["metadata"], "resourceVersion": self._bump()}}
        self._emit(resource, "DELETED", gone)
        return gone

    # --- HTTP ---

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        try:
            return await self._route(request)
        except SimError as e:
            return web.json_response(e.status(), status=e.code)

    async def _route(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        discovery = self._discovery(path)
        if discovery is not None:
            if request.method != "GET":
                raise SimError(405, f"{request.method} is not allowed on {path}")
            return web.json_response(discovery)
        m = _PATH.match(path)
        if not m:
            raise SimError(404, f"the server could not find the requested resource ({path})")
        group = "" if m["core"] else m["group"]
        version = m["core"] or m["version"]
        resource = next(
            (
                r
                for r in RESOURCES
                if (r.group, r.version, r.plural) == (group, version, m["plural"])
            ),
            None,
        )
        if resource is None:
            raise SimError(404, f"the server could not find the requested resource ({path})")
        namespace = m["namespace"] or ""
        name = m["name"]
        sub = m["sub"]
        method = request.method
        if name is None:
            if method == "GET":
                if request.query.get("watch", "").lower() in ("true", "1"):
                    return await self._serve_watch(request, resource, m["namespace"])
                return web.json_response(self._serve_list(request, resource, m["namespace"]))
            if method == "POST":
                body = await _json_body(request)
                body_ns = (body.get("metadata") or {}).get("namespace")
                if namespace and body_ns and body_ns != namespace:
                    raise SimError(400, "the namespace of the object does not match the URL")
                created = self._create(resource, namespace or str(body_ns or ""), body)
                return web.json_response(created, status=201)
            raise SimError(405, f"{method} is not allowed on a collection")
        key = (namespace, name)
        if method == "GET":
            return web.json_response(self._existing(resource, key))
        if method == "PUT":
            body = await _json_body(request)
            return web.json_response(
                self._replace(resource, key, body, check_rv=True, subresource=sub)
            )
        if method == "PATCH":
            ctype = request.content_type
            if ctype not in (
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
            ):
                raise SimError(415, f"the fake supports merge patches only, not {ctype}")
            body = await _json_body(request)
            return web.json_response(self._patch(resource, key, body, subresource=sub))
        if method == "DELETE":
            return web.json_response(self._delete(resource, key))
        raise SimError(405, f"{method} is not allowed")

    def _discovery(self, path: str) -> dict[str, Any] | None:
        path = path.rstrip("/") or "/"
        if path == "/version":
            return {"major": "1", "minor": "30", "gitVersion": "v1.30.0-kongsplit-sim"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            groups = sorted({(r.group, r.version) for r in RESOURCES if r.group})
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                        "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v},
                    }
                    for g, v in groups
                ],
            }
        for gv, match in [(r.api_version, r) for r in RESOURCES]:
            prefix = "/api/" if not match.group else "/apis/"
            if path == prefix + gv:
                return {
                    "kind": "APIResourceList",
                    "apiVersion": "v1",
                    "groupVersion": gv,
                    "resources": [
                        {
                            "name": r.plural,
                            "singularName": r.kind.lower(),
                            "namespaced": r.namespaced,
                            "kind": r.kind,
                            **({"shortNames": list(r.short_names)} if r.short_names else {}),
                            "verbs": [
                                "create",
                                "delete",
                                "get",
                                "list",
                                "patch",
                                "update",
                                "watch",
                            ],
                        }
                        for r in RESOURCES
                        if r.api_version == gv
                    ],
                }
        return None

    def _serve_list(
        self, request: web.Request, resource: SimResource, namespace: str | None
    ) -> dict[str, Any]:
        """A list, in pages of ``limit`` when asked, each page cut from one snapshot taken by
        the first request (as the API server serves ``continue`` from one etcd revision)."""
        q = request.query
        limit_text = q.get("limit", "")
        token = q.get("continue", "")
        if limit_text and not limit_text.isdigit():
            raise SimError(400, f"invalid limit {limit_text!r}")
        limit = int(limit_text) if limit_text else 0
        if token:
            snap_id, _, start_text = token.partition(":")
            items = self._snapshots.get(snap_id)
            if items is None or not start_text.isdigit():
                raise SimError(
                    410,
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter.",
                    "Expired",
                )
            start, rv = int(start_text), snap_id.split("-", 1)[0]
        else:
            selector = _parse_selector(q.get("labelSelector", ""))
            items = [
                o
                for _, o in sorted(self._objects[resource].items())
                if _matches(namespace, selector, o)
            ]
            start, rv, snap_id = 0, str(self._rv), ""
        meta: dict[str, Any] = {"resourceVersion": rv}
        if limit and start + limit < len(items):
            if not snap_id:
                snap_id = f"{rv}-{uuid.uuid4().hex[:8]}"
                self._snapshots[snap_id] = items
                while len(self._snapshots) > _SNAPSHOTS:
                    del self._snapshots[next(iter(self._snapshots))]
            meta["continue"] = f"{snap_id}:{start + limit}"
            meta["remainingItemCount"] = len(items) - start - limit
            page = items[start : start + limit]
        else:
            page = items[start:] if start else items
            if snap_id:
                self._snapshots.pop(snap_id, None)  # the last page: the snapshot is done
        return {
            "apiVersion": resource.api_version,
            "kind": f"{resource.kind}List",
            "metadata": meta,
            "items": page,
        }

    async def _serve_watch(
        self, request: web.Request, resource: SimResource, namespace: str | None
    ) -> web.StreamResponse:
        q = request.query
        rv_param = q.get("resourceVersion", "")
        bookmarks = q.get("allowWatchBookmarks", "").lower() in ("true", "1")
        timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else None
        selector = _parse_selector(q.get("labelSelector", ""))
        if rv_param and not rv_param.isdigit():
            raise SimError(400, f"invalid resourceVersion {rv_param!r}")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        if not self._gate.is_set():
            await self._gate.wait()
            if self._gate_code is not None:
                await _write(response, {"type": "ERROR", "object": _gone()})
                return response
        watch = _Watch(resource, namespace, selector)
        # Register and take the replay in one synchronous step: no change can fall in between.
        backlog: list[bytes]
        if rv_param in ("", "0"):
            backlog = [
                _line("ADDED", o)
                for _, o in sorted(self._objects[resource].items())
                if _matches(namespace, selector, o)
            ]
        elif int(rv_param) < self._floor:
            await _write(response, {"type": "ERROR", "object": _gone()})
            return response
        else:
            since = int(rv_param)
            backlog = [
                _line(c.type, c.obj)
                for c in self._history
                if c.rv > since and c.resource == resource and _matches(namespace, selector, c.obj)
            ]
        self._watches.add(watch)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        try:
            for start in range(0, len(backlog), 256):
                await response.write(b"".join(backlog[start : start + 256]))
            while not watch.stop.done():
                wait = self._bookmark_interval
                if deadline is not None:
                    wait = min(wait, deadline - loop.time())
                    if wait <= 0:
                        break
                if watch.queue.empty():
                    getter = asyncio.ensure_future(watch.queue.get())
                    waiting: set[asyncio.Future[Any]] = {getter, watch.stop}
                    done, _ = await asyncio.wait(
                        waiting, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                    )
                    if getter not in done:
                        getter.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await getter
                        if not done and bookmarks:
                            bookmark = {
                                "apiVersion": resource.api_version,
                                "kind": resource.kind,
                                "metadata": {"resourceVersion": str(self._rv)},
                            }
                            await _write(response, {"type": "BOOKMARK", "object": bookmark})
                        continue
                    lines = [getter.result()]
                else:
                    lines = []
                # Everything queued meanwhile goes in one write (a burst of changes is not a
                # burst of tiny writes), at most 256 lines at a time.
                while len(lines) < 256 and not watch.queue.empty():
                    lines.append(watch.queue.get_nowait())
                await response.write(b"".join(lines))
            if watch.stop.done() and watch.stop.result() == _DROP:
                if request.transport is not None:
                    request.transport.abort()
                return response
            if watch.stop.done() and (code := watch.stop.result()) is not None:
                error = _gone() if code == 410 else _status(code, "InternalError", "scripted")
                await _write(response, {"type": "ERROR", "object": error})
        except (ConnectionResetError, ConnectionError):
            pass  # the client went away
        finally:
            self._watches.discard(watch)
        with contextlib.suppress(ConnectionResetError, ConnectionError):
            await response.write_eof()
        return response


def _gone() -> dict[str, Any]:
    return _status(410, "Expired", "too old resource version")


async def _write(response: web.StreamResponse, event: dict[str, Any]) -> None:
    await response.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")


def _line(event_type: str, obj: dict[str, Any]) -> bytes:
    """One watch line: the event, encoded once however many watches get it."""
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as e:
        raise SimError(400, f"the body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise SimError(400, "the body must be a JSON object")
    return body


def _parse_selector(text: str) -> list[tuple[str, str, bool]]:
    """``a=b,c!=d`` → [(a, b, True), (c, d, False)]; only equality selectors."""
    out: list[tuple[str, str, bool]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "!=" in part:
            k, v = part.split("!=", 1)
            out.append((k.strip(), v.strip(), False))
        elif "=" in part:
            k, v = part.split("==", 1) if "==" in part else part.split("=", 1)
            out.append((k.strip(), v.strip(), True))
        else:
            raise SimError(400, f"the fake supports equality label selectors only: {part!r}")
    return out


def _matches(
    namespace: str | None, selector: list[tuple[str, str, bool]], obj: dict[str, Any]
) -> bool:
    meta = obj.get("metadata") or {}
    if namespace is not None and meta.get("namespace") != namespace:
        return False
    labels = meta.get("labels") or {}
    return all((labels.get(k) == v) == equal for k, v, equal in selector)
