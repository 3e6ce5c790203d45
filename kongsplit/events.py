"""Kubernetes Events on the objects kongsplit manages, posted from a queue by one task.

``post()`` never blocks and never fails: the reconciler calls it on its hot path. It queues
the Event (or, when the very same Event is already waiting, just counts it again); when the
queue is full the Event is dropped and counted. ``run()`` posts from the queue through a
token bucket, so a storm of failures cannot flood the API server. Like client-go's event
correlator (simplified), an Event equal to one posted within ``aggregate_window`` — same
object, type, reason and message — bumps ``count`` and ``lastTimestamp`` on the existing
Event with a PATCH instead of creating a new one.

Bounded whatever the load: at most ``queue_size`` Events wait (each distinct; repeats only
count), and a ``supersede`` Event (``KongWeightsApplied``: the weights Kong holds now) replaces
the one of the same object and reason still waiting, so a burst of 20,000 changes leaves one
Event per Rollout waiting, each with its newest weights, not a backlog of old ones.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from kubernetes_asyncio.client import ApiClient

from kongsplit import kube
from kongsplit.rollouts import ObjectRef

logger = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"

REASON_APPLIED = "KongWeightsApplied"
REASON_DRIFT = "KongWeightsDriftCorrected"
REASON_WRITE_FAILED = "KongWriteFailed"
REASON_INVALID_ANNOTATION = "InvalidKongsplitAnnotation"
#: Another traffic router is configured on a Rollout kongsplit routes (docs/weights.md).
REASON_SHARED_ROUTER = "KongsplitSharedRouter"
#: The managed upstream's algorithm can send requests to a weight-0 target (docs/kong.md).
REASON_ALGORITHM = "KongUpstreamAlgorithm"

_MESSAGE_LIMIT = 1024
_CACHE_SIZE = 4096


_Key = tuple[ObjectRef, str, str, str]  # ref, type, reason, message
_Slot = tuple[ObjectRef, str, str]  # ref, type, reason


@dataclass
class _Pending:
    ref: ObjectRef
    type: str
    reason: str
    message: str
    count: int = 1


@dataclass
class _Posted:
    name: str
    count: int
    first: str
    seen_at: float = field(default=0.0)


class EventRecorder:
    """Queues Events with :meth:`post`; :meth:`run` (one task) sends them."""

    def __init__(
        self,
        api: ApiClient,
        *,
        component: str = "kongsplit",
        host: str = "",
        queue_size: int = 1000,
        burst: int = 25,
        per_second: float = 1.0,
        aggregate_window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self.component = component
        self.host = host
        self._queue: asyncio.Queue[_Key] = asyncio.Queue(maxsize=queue_size)
        self._pending: dict[_Key, _Pending] = {}
        # A supersede Event waiting, by object and reason → its key in the queue.
        self._slots: dict[_Slot, _Key] = {}
        self._posted: OrderedDict[_Key, _Posted] = OrderedDict()
        self._burst = float(burst)
        self._rate = per_second
        self._tokens = float(burst)
        self._clock = clock
        self._refilled_at = clock()
        self._window = aggregate_window
        self.dropped = 0  # Events lost to a full queue
        self.failed = 0  # Events the API server would not take

    def post(
        self, ref: ObjectRef, *, type: str, reason: str, message: str, supersede: bool = False
    ) -> None:
        """Queue an Event on ``ref``; returns at once, drops it when the queue is full.
        ``supersede``: it replaces the Event of the same object, type and reason still
        waiting (what it says is out of date), instead of queueing behind it."""
        message = message[:_MESSAGE_LIMIT]
        key: _Key = (ref, type, reason, message)
        pending = self._pending.get(key)
        if pending is None and supersede:
            waiting = self._slots.get((ref, type, reason))
            pending = self._pending.get(waiting) if waiting is not None else None
            if pending is not None and pending.message != message:
                pending.message, pending.count = message, 0
        if pending is not None:
            pending.count += 1
            return
        try:
            self._queue.put_nowait(key)
        except asyncio.QueueFull:
            self.dropped += 1
            # Once per power of two, so a storm does not become a storm of log lines too.
            if self.dropped & (self.dropped - 1) == 0:
                logger.warning(
                    "event queue full; dropped %d event(s) so far",
                    self.dropped,
                    extra={"reason": reason, "object": f"{ref.namespace}/{ref.name}"},
                )
            return
        self._pending[key] = _Pending(ref, type, reason, message)
        if supersede:
            self._slots[(ref, type, reason)] = key

    @property
    def waiting(self) -> int:
        """Events queued, not yet sent."""
        return self._queue.qsize()

    async def run(self) -> None:
        """Post queued Events forever, rate-limited (cancel to stop)."""
        while True:
            key = await self._queue.get()
            pending = self._pending.pop(key, None)
            if pending is None:  # pragma: no cover - every queued key has an entry
                continue
            slot = (pending.ref, pending.type, pending.reason)
            if self._slots.get(slot) == key:
                del self._slots[slot]
            await self._take_token()
            try:
                # The message may have been superseded while it waited: send the newest.
                await self._send((*slot, pending.message), pending)
            except kube.KubeError as e:
                self.failed += 1
                logger.warning(
                    "could not post event %s: %s",
                    pending.reason,
                    e,
                    extra={"object": f"{pending.ref.namespace}/{pending.ref.name}"},
                )

    async def _take_token(self) -> None:
        while True:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._refilled_at) * self._rate)
            self._refilled_at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            await asyncio.sleep((1 - self._tokens) / self._rate)

    async def _send(self, key: _Key, pending: _Pending) -> None:
        ref = pending.ref
        now = self._clock()
        stamp = kube.format_time()
        posted = self._posted.get(key)
        if posted is not None and now - posted.seen_at < self._window:
            count = posted.count + pending.count
            path = kube.api_path("", "v1", "events", namespace=ref.namespace, name=posted.name)
            try:
                await kube.request(
                    self._api,
                    "PATCH",
                    path,
                    body={"count": count, "lastTimestamp": stamp},
                    content_type=kube.MERGE_PATCH,
                )
            except kube.KubeApiError as e:
                if e.status != 404:  # 404: the Event expired server-side; create a new one
                    raise
            else:
                posted.count, posted.seen_at = count, now
                self._posted.move_to_end(key)
                return
        name = f"{ref.name}.{secrets.token_hex(8)}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ref.namespace},
            "involvedObject": {
                k: v
                for k, v in {
                    "apiVersion": ref.api_version,
                    "kind": ref.kind,
                    "namespace": ref.namespace,
                    "name": ref.name,
                    "uid": ref.uid,
                }.items()
                if v
            },
            "type": pending.type,
            "reason": pending.reason,
            "message": pending.message,
            "count": pending.count,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        }
        path = kube.api_path("", "v1", "events", namespace=ref.namespace)
        await kube.request(self._api, "POST", path, body=body)
        self._posted[key] = _Posted(name=name, count=pending.count, first=stamp, seen_at=now)
        self._posted.move_to_end(key)
        while len(self._posted) > _CACHE_SIZE:
            self._posted.popitem(last=False)
