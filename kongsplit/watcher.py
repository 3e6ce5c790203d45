"""List+watch of one Kubernetes resource, delivering raw objects to a synchronous callback.

We drive the watch request ourselves instead of using kubernetes-asyncio's ``watch.Watch``:
that helper retries a ``410 Gone`` once with the same resourceVersion and then raises, while a
watcher that must never give up needs to relist, and to do so without losing what changed in
the gap. So each scope (one namespace, or the whole cluster) runs this loop::

    list (paginated) ─▶ deliver the difference to what we knew ─▶ watch from the list's
    resourceVersion (bookmarks on) ─▶ stream ends normally (server-side timeout): watch again
    from the last resourceVersion; 410 Gone: relist; anything else: back off, watch again.

The only memory kept is ``{key: resourceVersion}`` per scope: it turns a relist into
DELETED for objects that vanished during the gap and ADDED/MODIFIED only for objects whose
resourceVersion changed, and it drops replays of events we have already delivered.

Whatever the server (or a proxy) sends, the watcher does not stop and does not grow without
bound: a watch line longer than ``MAX_LINE_BYTES`` is cut off unread; a line that is not JSON,
a ``null`` event, an event or object of the wrong shape is skipped; each is counted in
``kongsplit_watch_events_skipped_total{resource,reason}`` and the scope relists, so nothing the
line carried is missed. A list item of the wrong shape is skipped and counted the same way.
JSON nested deeper than ``json.loads`` can go (a custom resource's free-form fields) is decoded
without recursion (``kube.decode``) and delivered like any other object.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient

from kongsplit import kube
from kongsplit.backoff import Backoff
from kongsplit.metrics import Metrics

logger = logging.getLogger(__name__)

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"

OnEvent = Callable[[str, dict[str, Any]], None]

_PAGE_SIZE = 500
#: A relist gives the event loop a turn after this many deliveries.
_YIELD_EVERY = 100
_BACKOFF_BASE = 0.5
#: The longest watch line read (one event: an object and its envelope). The API server refuses
#: objects over about 3 MiB (etcd's default request limit is 1.5 MiB), so a longer line is not
#: an object kongsplit could need: it is cut off unread, counted and followed by a relist.
MAX_LINE_BYTES = 4 << 20
# A skipped line or item is counted in kongsplit_watch_events_skipped_total{resource,reason},
# reason one of metrics.SKIP_REASONS (oversized, malformed, invalid: the _Skipped below).


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None) -> str:
        return kube.api_path(self.group, self.version, self.plural, namespace)


ROLLOUTS = Resource("argoproj.io", "v1alpha1", "rollouts", "Rollout")
REPLICASETS = Resource("apps", "v1", "replicasets", "ReplicaSet")
SERVICES = Resource("", "v1", "services", "Service")
ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")


class _Gone(Exception):
    """The resourceVersion we hold is too old (410 Gone / Expired): relist."""


class _Skipped(Exception):
    """A watch line kongsplit cannot use: counted, and the scope relists to catch up."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class _CallbackFailed(Exception):
    """``on_event`` raised: a bug in the daemon, never retried here."""


def backoff_delay(failures: int, *, base: float = _BACKOFF_BASE, cap: float = 30.0) -> float:
    """The project's one back-off policy (``kongsplit.backoff``), so replicas spread out."""
    return Backoff(initial=base, cap=cap).delay(failures)


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]  # checked by _shape_problem
    # The namespace interned: one copy of it, not one per object remembered.
    return sys.intern(meta.get("namespace") or ""), meta["name"]


def _rv(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata")
    rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return rv if isinstance(rv, str) else ""


def _shape_problem(obj: object, *, named: bool = True) -> str | None:
    """Why ``obj`` is not a Kubernetes object the consumers can take, or None. ``named``: it
    must say which object it is (a BOOKMARK only carries a resourceVersion)."""
    if not isinstance(obj, dict):
        return "the object is not a JSON object"
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return "metadata is not a JSON object"
    if not isinstance(meta.get("resourceVersion", ""), str):
        return "metadata.resourceVersion is not a string"
    if named:
        if not isinstance(meta.get("name"), str) or not meta["name"]:
            return "metadata.name is not a non-empty string"
        if not isinstance(meta.get("namespace", ""), str):
            return "metadata.namespace is not a string"
    return None


def _peek(line: bytes | bytearray, limit: int = 80) -> str:
    """The start of a line for a log message (never a whole megabyte)."""
    head = bytes(line[:limit]).decode("utf-8", "replace")
    return repr(head) + (f"... ({len(line)} bytes)" if len(line) > limit else "")


class Watcher:
    """Lists and watches ``resource`` in ``namespaces`` (``()`` = cluster-wide), forever."""

    def __init__(
        self,
        api: ApiClient,
        resource: Resource,
        *,
        namespaces: Sequence[str] = (),
        on_event: OnEvent,
        metrics: Metrics | None = None,
        backoff_max: float = 30.0,
        timeout_seconds: int = 300,
        backoff_base: float = _BACKOFF_BASE,
        page_size: int = _PAGE_SIZE,
        label_selector: str | None = None,
        max_line: int = MAX_LINE_BYTES,
    ) -> None:
        self._api = api
        self.resource = resource
        self.namespaces: tuple[str | None, ...] = tuple(dict.fromkeys(namespaces)) or (None,)
        self._on_event = on_event
        self._metrics = metrics
        if metrics is not None:
            metrics.watching(resource.plural)  # its restart and skip series, at 0
        self._backoff_max = backoff_max
        self._backoff_base = backoff_base
        self._timeout_seconds = timeout_seconds
        self._page_size = page_size
        self._label_selector = label_selector
        self._max_line = max_line
        self.listed = asyncio.Event()
        self._pending_lists = len(self.namespaces)

    async def run(self) -> None:
        """One task per scope; returns never (cancel it). A bug in ``on_event`` propagates."""
        try:
            async with asyncio.TaskGroup() as tg:
                for namespace in self.namespaces:
                    tg.create_task(
                        self._scope(namespace),
                        name=f"watcher:{self.resource.plural}:{namespace or '*'}",
                    )
        except BaseExceptionGroup as group:
            # Unwrap the first real failure so the daemon's task guard reports it plainly.
            for exc in group.exceptions:
                if isinstance(exc, _CallbackFailed) and exc.__cause__ is not None:
                    raise exc.__cause__ from None
            raise group.exceptions[0] from None

    # --- one scope: list, then watch, forever ---

    async def _scope(self, namespace: str | None) -> None:
        scope = namespace or "*"
        extra = {"resource": self.resource.plural, "namespace": scope}
        known: dict[tuple[str, str], str] = {}
        rv: str | None = None  # None: we must (re)list
        first_list = True
        failures = 0
        gone = 0  # 410s in a row without a useful watch in between
        skips = 0  # lines skipped since a watch last ended cleanly
        while True:
            try:
                if gone > 1:
                    # A server that expires every fresh resourceVersion must not spin us.
                    await asyncio.sleep(
                        backoff_delay(gone - 1, base=self._backoff_base, cap=self._backoff_max)
                    )
                if rv is None:
                    rv = await self._relist(namespace, known)
                    failures = 0
                    if first_list:
                        first_list = False
                        self._pending_lists -= 1
                        if self._pending_lists == 0:
                            self.listed.set()
                    logger.debug("listed", extra={**extra, "objects": len(known)})
                state = _WatchState(rv)
                try:
                    await self._watch(namespace, known, state)
                finally:
                    rv = state.rv
                    if state.streamed:
                        failures = gone = 0
                # The server closed the stream at timeoutSeconds: carry on from where we are.
                skips = 0
                logger.debug("watch expired; resuming", extra={**extra, "resource_version": rv})
            except _Gone:
                logger.info("watch resourceVersion expired (410); relisting", extra=extra)
                self._count_restart()
                rv = None
                gone += 1
            except _Skipped as skipped:
                # What the line said is lost: relist to catch up (backing off if it repeats).
                logger.warning(
                    "skipped a watch event (%s); relisting",
                    skipped,
                    extra={**extra, "reason": skipped.reason},
                )
                self._count_skipped(skipped.reason)
                self._count_restart()
                rv = None
                skips += 1
                if skips > 1:  # a stream that keeps sending garbage must not spin us
                    await asyncio.sleep(
                        backoff_delay(skips - 1, base=self._backoff_base, cap=self._backoff_max)
                    )
            except (kube.KubeError, aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
                if isinstance(e, kube.KubeApiError) and e.status == 410 and rv is not None:
                    logger.info("410 Gone; relisting", extra=extra)
                    self._count_restart()
                    rv = None
                    gone += 1
                    continue
                failures += 1
                delay = backoff_delay(failures, base=self._backoff_base, cap=self._backoff_max)
                logger.warning(
                    "watch failed; retrying in %.1fs: %s",
                    delay,
                    e,
                    extra={**extra, "failures": failures},
                )
                self._count_restart()
                await asyncio.sleep(delay)

    def _count_restart(self) -> None:
        if self._metrics is not None:
            self._metrics.watch_restarts.labels(resource=self.resource.plural).inc()

    def _count_skipped(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.watch_events_skipped.labels(
                resource=self.resource.plural, reason=reason
            ).inc()

    def _deliver(self, event_type: str, obj: dict[str, Any]) -> None:
        try:
            self._on_event(event_type, obj)
        except Exception as e:
            raise _CallbackFailed from e

    async def _list_pages(
        self, namespace: str | None
    ) -> AsyncIterator[tuple[list[dict[str, Any]] | None, str]]:
        """The list, a page at a time (``limit``/``continue``): (its items, checked; the list's
        resourceVersion). ``None`` for items after a ``410`` on a continue token: the list
        starts over."""
        path = self.resource.path(namespace)
        token: str | None = None
        list_rv = ""
        while True:
            try:
                page = await kube.request(
                    self._api,
                    "GET",
                    path,
                    query={
                        "limit": self._page_size,
                        "continue": token,
                        "labelSelector": self._label_selector,
                    },
                )
            except kube.KubeApiError as e:
                if e.status == 410 and token:
                    # The continue token outlived the server's snapshot: start the list over.
                    token, list_rv = None, ""
                    yield None, ""
                    continue
                raise
            meta = page.get("metadata")
            meta = meta if isinstance(meta, dict) else {}
            page_items = page.get("items")
            if page_items is None:
                page_items = []
            if not isinstance(page_items, list):
                raise kube.KubeApiError(200, "BadResponse", f"GET {path}: items is not a list")
            if not token:
                list_rv = _rv(page)
            items = []
            for item in page_items:
                problem = _shape_problem(item)
                if problem is None:
                    items.append(item)
                    continue
                # Not an object anyone could name: nothing to deliver, nothing to forget.
                logger.warning(
                    "skipped a listed item: %s",
                    problem,
                    extra={"resource": self.resource.plural, "namespace": namespace or "*"},
                )
                self._count_skipped("invalid")
            yield items, list_rv
            token = meta.get("continue")
            if not isinstance(token, str) or not token:
                return

    async def _relist(self, namespace: str | None, known: dict[tuple[str, str], str]) -> str:
        """List, delivering what changed page by page (a list of 20,000 objects is never held
        whole), then DELETED for what is gone. The loop gets a turn every ``_YIELD_EVERY``
        deliveries, so ``/healthz`` and the workers are not starved by a large relist."""
        seen: set[tuple[str, str]] = set()
        delivered = 0
        list_rv = ""
        async for items, page_rv in self._list_pages(namespace):
            list_rv = page_rv
            if items is None:
                seen = set()  # the list started over
                continue
            for item in items:
                # Lists omit apiVersion/kind on items; fill them so consumers see whole objects.
                item.setdefault("apiVersion", self.resource.api_version)
                item.setdefault("kind", self.resource.kind)
                key, rv = _key(item), _rv(item)
                seen.add(key)
                old = known.get(key)
                if old is not None and rv and old == rv:
                    continue
                known[key] = rv
                self._deliver(ADDED if old is None else MODIFIED, item)
                delivered += 1
                if delivered % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        for key in [k for k in known if k not in seen]:
            rv = known.pop(key)
            self._deliver(DELETED, self._tombstone(key, rv))
        return list_rv

    def _tombstone(self, key: tuple[str, str], rv: str) -> dict[str, Any]:
        """The DELETED object for something that vanished during a gap: all we remember."""
        meta: dict[str, Any] = {"name": key[1], "resourceVersion": rv}
        if key[0]:
            meta["namespace"] = key[0]
        r = self.resource
        return {"apiVersion": r.api_version, "kind": r.kind, "metadata": meta}

    async def _watch(
        self, namespace: str | None, known: dict[tuple[str, str], str], state: _WatchState
    ) -> None:
        query: dict[str, str | int | bool | None] = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": self._timeout_seconds,
            "resourceVersion": state.rv or None,
            "labelSelector": self._label_selector,
        }
        # The server ends the stream itself after timeoutSeconds; the read timeout only catches
        # a connection that went silent without closing (a dead peer, a stuck proxy).
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=10, sock_read=self._timeout_seconds + 30
        )
        path = self.resource.path(namespace)
        response = await kube.open_stream(self._api, path, query=query, client_timeout=timeout)
        async with response:
            # Lines are cut out of a bounded buffer: a line longer than max_line is never held
            # whole (aiohttp's own readline would buffer it all).
            buffer = bytearray()
            async for chunk in response.content.iter_any():
                scan = len(buffer)
                buffer += chunk
                while (end := buffer.find(b"\n", scan)) != -1:
                    line = bytes(buffer[:end])
                    del buffer[: end + 1]
                    scan = 0
                    await self._line(line, known, state)
                if len(buffer) > self._max_line:
                    raise _Skipped(
                        "oversized",
                        f"a line longer than {self._max_line} bytes, starting {_peek(buffer)}",
                    )
            if buffer.strip():
                await self._line(bytes(buffer), known, state)
        state.streamed = True  # a clean end (server-side timeout) is a success too

    async def _line(
        self, line: bytes, known: dict[tuple[str, str], str], state: _WatchState
    ) -> None:
        if len(line) > self._max_line:
            raise _Skipped("oversized", f"a line of {len(line)} bytes (at most {self._max_line})")
        if not line.strip():
            return
        try:
            event = await kube.decode(line)
        except ValueError:
            raise _Skipped("malformed", f"not JSON: {_peek(line)}") from None
        self._handle_event(event, line, known, state)

    def _handle_event(
        self,
        event: object,
        line: bytes,
        known: dict[tuple[str, str], str],
        state: _WatchState,
    ) -> None:
        if not isinstance(event, dict):
            raise _Skipped("invalid", f"not a watch event: {_peek(line)}")
        event_type = event.get("type")
        obj = event.get("object")
        if not isinstance(event_type, str) or not isinstance(obj, dict):
            raise _Skipped("invalid", f"not a watch event: {_peek(line)}")
        if event_type == "ERROR":
            code = obj.get("code")
            code = code if isinstance(code, int) and not isinstance(code, bool) else 0
            if code == 410:
                raise _Gone
            reason, message = obj.get("reason"), obj.get("message")
            raise kube.KubeApiError(
                code,
                reason if isinstance(reason, str) else "",
                message[:300] if isinstance(message, str) else "",
            )
        problem = _shape_problem(obj, named=event_type != "BOOKMARK")
        if problem is not None:
            raise _Skipped("invalid", f"{event_type} event: {problem}")
        state.streamed = True
        rv = _rv(obj)
        if event_type == "BOOKMARK":
            state.rv = rv or state.rv
            return
        key = _key(obj)
        if event_type in (ADDED, MODIFIED):
            old = known.get(key)
            if not (old is not None and rv and old == rv):  # not a replay of what we delivered
                known[key] = rv
                self._deliver(ADDED if old is None else MODIFIED, obj)
        elif event_type == DELETED:
            known.pop(key, None)
            self._deliver(DELETED, obj)
        else:
            logger.debug("ignoring watch event %r", event_type[:40])
        if rv:
            state.rv = rv


class _WatchState:
    """Where one watch stream got to: the last resourceVersion, and whether it said anything."""

    __slots__ = ("rv", "streamed")

    def __init__(self, rv: str) -> None:
        self.rv = rv
        self.streamed = False
