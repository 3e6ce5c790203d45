"""Lease-based leader election (coordination.k8s.io/v1), so one replica writes to Kong.

The rule that keeps two replicas from writing at once: the leader stops trusting its lease
``renew_deadline`` after it *sent* its last successful renewal, while a follower treats a
lease as expired only ``lease_duration`` after it *saw* the lease record change. The follower
sees a change no earlier than the leader sent it, and ``renew_deadline < lease_duration``, so
the leader has stepped down before anyone may take over. Followers judge expiry by their own
monotonic clock from when they observed the record, never by comparing ``renewTime`` with
their wall clock, so clock skew between nodes does not matter (client-go does the same).

A leader renews with PUT on the object it last wrote (its resourceVersion); a 409 Conflict
means someone else wrote the lease, and a 404 that someone deleted it: either way the leader steps
down at once. A follower that finds the lease deleted waits it out like one that stopped being
renewed (``lease_duration`` from the last change it saw) before it creates a new one: until its
next renewal the leader does not know, and keeps writing.

Every process also writes its own random instance id into the lease (annotation
``kongsplit.io/holder-instance``). Two replicas given the same identity would otherwise each
take the other's lease for their own: a lease held under our identity by another instance is
another process's, is waited out like anyone else's, and the clash is reported loudly.
``write_budget`` tells writers how long the lease is still certainly ours, so a write is cut
short before it could land after a new leader's.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio.client import ApiClient

from kongsplit import kube
from kongsplit.metrics import Metrics

logger = logging.getLogger(__name__)

LEASES = ("coordination.k8s.io", "v1", "leases")
#: The lease annotation that names the process holding it (see the module docstring).
INSTANCE_ANNOTATION = "kongsplit.io/holder-instance"


@dataclass(frozen=True)
class _Observed:
    """What a follower last saw of the lease, and when (by our own clock)."""

    holder: str
    renew_time: str
    resource_version: str
    duration: float
    at: float


class LeaderElector:
    """Campaigns for the Lease ``namespace/name`` as ``identity``; ``leading`` while we hold it."""

    def __init__(
        self,
        api: ApiClient,
        *,
        name: str,
        namespace: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float | None = None,
        retry_period: float | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not identity:
            raise ValueError("leader election needs a non-empty identity")
        # client-go's defaults are 15 s / 10 s / 2 s; keep the same proportions.
        renew_deadline = lease_duration * 2 / 3 if renew_deadline is None else renew_deadline
        retry_period = lease_duration / 7.5 if retry_period is None else retry_period
        if not 0 < retry_period < renew_deadline < lease_duration:
            raise ValueError(
                "leader election needs 0 < retry_period < renew_deadline < lease_duration, got "
                f"{retry_period} / {renew_deadline} / {lease_duration}"
            )
        self._api = api
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._metrics = metrics
        self._clock = clock
        self._path = kube.api_path(*LEASES, namespace=namespace, name=name)
        self._create_path = kube.api_path(*LEASES, namespace=namespace)
        self.leading = asyncio.Event()
        self.following = asyncio.Event()  # the complement of ``leading``, to await a step-down
        self.following.set()
        self._valid_until = 0.0  # clock time until which our lease is certainly ours
        self._lease: dict[str, Any] | None = None  # the lease as we last wrote it (leader only)
        self._written: dict[str, Any] | None = None  # the same, kept past a step-down for release
        self._observed: _Observed | None = None
        self._released = False
        self.instance = secrets.token_hex(8)  # this process, whatever its identity
        self._clash_logged = -1e9
        self._twin_renewals: dict[str, str] = {}  # another instance under our identity: renewTime
        self._set_metric(0)

    @property
    def is_leader(self) -> bool:
        """True only while the lease is certainly ours (checked against the clock, not the loop)."""
        return self.leading.is_set() and self._clock() < self._valid_until

    def write_budget(self) -> float:
        """Seconds the lease is still certainly ours (0 when not leading): a write attempt must
        be over by then, before any follower may take over."""
        if not self.leading.is_set():
            return 0.0
        return max(0.0, self._valid_until - self._clock())

    async def run(self) -> None:
        """Acquire, renew, step down and retry, until cancelled or :meth:`release` is called."""
        try:
            while not self._released:
                await self._attempt()
                await asyncio.sleep(self._next_wait())
        finally:
            self._step_down("stopped" if self._released else "cancelled")

    async def release(self) -> None:
        """Give the lease up so a follower takes over at once (call when shutting down)."""
        self._released = True
        self._step_down("released")
        # The lease as we last wrote it: if we still hold it, the PUT hands it over; if anyone
        # wrote it since, the PUT fails with a 409 and only a Lease still naming us is given up.
        lease, self._written = self._written, None
        if lease is None:
            return
        try:
            try:
                await self._put_released(lease)
            except kube.KubeApiError as e:
                if e.status != 409:
                    raise
                # Written since: by someone else (nothing to give up), or by our own renewal
                # that stopping cut short after the API server applied it — the Lease still
                # names us, and is given up as it is now.
                current = await kube.request(self._api, "GET", self._path)
                if (current.get("spec") or {}).get("holderIdentity") != self.identity:
                    return
                await self._put_released(current)
            logger.info("leader lease released", extra=self._extra())
        except kube.KubeApiError as e:
            if e.status != 409:  # 409: someone else holds it by now, nothing to give up
                logger.warning("could not release the leader lease: %s", e, extra=self._extra())
        except kube.KubeError as e:
            logger.warning("could not release the leader lease: %s", e, extra=self._extra())

    async def _put_released(self, lease: dict[str, Any]) -> None:
        now = kube.format_micro_time()
        spec = dict(lease.get("spec") or {})
        # As client-go does: no holder, a one-second duration, renewTime now.
        spec.update(holderIdentity=None, leaseDurationSeconds=1, renewTime=now, acquireTime=now)
        await kube.request(self._api, "PUT", self._path, body={**lease, "spec": spec})

    # --- internals ---

    def _extra(self) -> dict[str, str]:
        return {"lease": f"{self.namespace}/{self.name}", "identity": self.identity}

    def _set_metric(self, value: int) -> None:
        if self._metrics is not None:
            self._metrics.leader.set(value)

    def _next_wait(self) -> float:
        wait = self.retry_period
        if self.leading.is_set():
            # Wake up in time to step down if renewals keep failing.
            wait = min(wait, max(0.0, self._valid_until - self._clock()))
        return wait

    def _step_down(self, why: str) -> None:
        self._lease = None
        self._valid_until = 0.0
        if self.leading.is_set():
            self.leading.clear()
            self.following.set()
            self._set_metric(0)
            logger.warning("stopped leading: %s", why, extra=self._extra())

    def _become_leader(self, lease: dict[str, Any], sent_at: float) -> None:
        self._lease = self._written = lease
        self._valid_until = sent_at + self.renew_deadline
        if not self.leading.is_set():
            self.following.clear()
            self.leading.set()
            self._set_metric(1)
            logger.info("became the leader", extra=self._extra())

    async def _attempt(self) -> None:
        if self.leading.is_set() and self._clock() >= self._valid_until:
            self._step_down("could not renew the lease within the renew deadline")
        sent_at = self._clock()
        budget = self._valid_until - sent_at if self.leading.is_set() else self.renew_deadline
        try:
            # A renewal that cannot finish before our deadline is worthless: cut it short.
            async with asyncio.timeout(max(budget, 0.001)):
                lease = await self._renew() if self._lease is not None else await self._acquire()
        except TimeoutError:
            logger.warning("lease request timed out", extra=self._extra())
            lease = None
        except kube.KubeApiError as e:
            if e.status == 409:
                self._step_down("the lease was changed by someone else (409 Conflict)")
            elif e.status == 404 and self.leading.is_set():
                # Deleted by hand: a follower may be creating a new one right now.
                self._step_down("the lease was deleted (404)")
            else:
                logger.warning("lease request failed: %s", e, extra=self._extra())
            return
        except kube.KubeError as e:
            logger.warning("lease request failed: %s", e, extra=self._extra())
            return
        if lease is not None:
            self._become_leader(lease, sent_at)
        elif self.leading.is_set() and self._clock() >= self._valid_until:
            self._step_down("renew deadline passed")

    async def _renew(self) -> dict[str, Any]:
        assert self._lease is not None
        spec = {**(self._lease.get("spec") or {}), "renewTime": kube.format_micro_time()}
        spec["leaseDurationSeconds"] = _duration_seconds(self.lease_duration)
        body = {**self._lease, "metadata": self._metadata(self._lease), "spec": spec}
        return await kube.request(self._api, "PUT", self._path, body=body)

    def _metadata(self, lease: dict[str, Any]) -> dict[str, Any]:
        """The lease's metadata with our instance id in its annotations."""
        meta = dict(lease.get("metadata") or {})
        annotations = dict(meta.get("annotations") or {})
        annotations[INSTANCE_ANNOTATION] = self.instance
        meta["annotations"] = annotations
        return meta

    async def _acquire(self) -> dict[str, Any] | None:
        """The lease if we got it, None while someone else holds it."""
        now = self._clock()
        stamp = kube.format_micro_time()
        try:
            current = await kube.request(self._api, "GET", self._path)
        except kube.KubeApiError as e:
            if e.status != 404:
                raise
            seen = self._observed
            if (
                seen is not None
                and seen.holder
                and seen.holder != self.identity
                and now < seen.at + seen.duration
            ):
                # Deleted by hand while another replica held it: that leader keeps writing
                # until its next renewal finds the lease gone, so wait it out as if it had
                # stopped renewing (lease_duration from the last change we saw).
                logger.debug(
                    "the lease is gone; waiting out %s's", seen.holder, extra=self._extra()
                )
                return None
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
                    "annotations": {INSTANCE_ANNOTATION: self.instance},
                },
                "spec": self._spec(stamp, stamp, transitions=0),
            }
            try:
                return await kube.request(self._api, "POST", self._create_path, body=body)
            except kube.KubeApiError as e2:
                if e2.status == 409:  # another replica created it first
                    return None
                raise
        spec = current.get("spec") or {}
        meta = current.get("metadata") or {}
        holder = str(spec.get("holderIdentity") or "")
        observed = _Observed(
            holder=holder,
            renew_time=str(spec.get("renewTime") or ""),
            resource_version=str(meta.get("resourceVersion") or ""),
            duration=float(spec.get("leaseDurationSeconds") or self.lease_duration),
            at=now,
        )
        prev = self._observed
        if prev is None or (prev.holder, prev.renew_time, prev.resource_version) != (
            observed.holder,
            observed.renew_time,
            observed.resource_version,
        ):
            self._observed = prev = observed
            if holder and holder != self.identity:
                logger.debug("lease held by %s", holder, extra=self._extra())
        annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
        instance = str((annotations or {}).get(INSTANCE_ANNOTATION) or "")
        twin = holder == self.identity and instance not in ("", self.instance)
        if twin:
            self._twin_seen(instance, observed.renew_time)
        if holder and (holder != self.identity or twin) and now < prev.at + prev.duration:
            return None
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder != self.identity or twin:
            transitions += 1
            acquired = stamp
        else:
            acquired = str(spec.get("acquireTime") or stamp)
        body = {
            **current,
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": self._metadata(current),
            "spec": {**spec, **self._spec(acquired, stamp, transitions=transitions)},
        }
        try:
            return await kube.request(self._api, "PUT", self._path, body=body)
        except kube.KubeApiError as e:
            if e.status == 409:  # someone else renewed or took it in between
                return None
            raise

    def _twin_seen(self, instance: str, renew_time: str) -> None:
        """The lease names this identity under another process. A replica restarted after a
        crash (kill -9, OOM) finds its previous run's lease, which nobody renews any more: that
        is said once, at info. Only a renewal seen meanwhile proves a second live process."""
        first = self._twin_renewals.get(instance)
        if first is None:
            self._twin_renewals = {instance: renew_time}
            logger.info(
                "Lease %s/%s names this replica's identity %r under another process (instance "
                "%s; this replica's previous run?): waiting until it expires",
                self.namespace,
                self.name,
                self.identity,
                instance,
                extra=self._extra(),
            )
        elif renew_time != first:
            self._report_twin(instance)

    def _report_twin(self, instance: str) -> None:
        """Another live process holds the lease under our identity: never both write."""
        if self._metrics is not None:
            self._metrics.leader_identity_clashes.inc()
        now = self._clock()
        if now - self._clash_logged >= 60.0:
            self._clash_logged = now
            logger.error(
                "another kongsplit process (instance %s) holds Lease %s/%s under this replica's "
                "identity %r: give every replica its own leaderElection.identity (the chart "
                "uses the pod name); this one waits until that lease expires",
                instance,
                self.namespace,
                self.name,
                self.identity,
                extra=self._extra(),
            )

    def _spec(self, acquire_time: str, renew_time: str, *, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": _duration_seconds(self.lease_duration),
            "acquireTime": acquire_time,
            "renewTime": renew_time,
            "leaseTransitions": transitions,
        }


def _duration_seconds(duration: float) -> int:
    # The field is an integer; round up so others never wait less than we mean.
    return max(1, int(-(-duration // 1)))
