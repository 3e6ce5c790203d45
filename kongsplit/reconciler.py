"""Keeping Kong equal to what each annotated Rollout says: compute, hand to Kong, nothing else.

Shape (kopf's, one stage each; Argo's TrafficRoutingReconciler: compute, then a router applies):
- ``store.Store`` holds what the watchers deliver; its indexes turn a Service or ReplicaSet
  change into the Rollouts to re-queue.
- ``workqueue.KeyQueue`` coalesces per Rollout, one worker per key, aborts first.
- ``Reconciler.reconcile`` computes the desired upstream (``desired.desired_state``) and hands it
  to the ``Router`` (``kong.apply.KongRouter``); it writes nothing when nothing changed, holds
  when Argo's order says so, and reports bad input on the Rollout instead of raising.
  ``reporting.Reporter`` turns what an apply found into logs, Events and metrics.
- The drift sweep re-queues every managed Rollout with ``refresh`` (re-read Kong, put back,
  count) every ``reconcile.interval`` and whenever Kong comes back or a DB-less node's
  configuration was replaced.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kongsplit.annotations import ANN_UPSTREAM, TargetMapping, parse_annotations
from kongsplit.backoff import Backoff
from kongsplit.config import Settings
from kongsplit.desired import desired_state
from kongsplit.kong.client import MayWrite
from kongsplit.kong.errors import (
    KongAuthError,
    KongError,
    KongModeError,
    KongNotLeader,
    KongNotReady,
    KongUnavailable,
)
from kongsplit.kong.records import KongMode, NodeInfo, Target, UpstreamClaim
from kongsplit.kong.targets import (
    MANAGED_TAG,
    ROLE_EXPERIMENT,
    ROLE_STABLE,
    DesiredTarget,
    DesiredUpstream,
    owner_tags_for,
)
from kongsplit.kong.writes import ApplyResult
from kongsplit.metrics import Metrics, WeightRow
from kongsplit.reporting import EventSink, Reporter, fmt
from kongsplit.rollouts import ObjectError, Rollout, RolloutKey
from kongsplit.store import Store
from kongsplit.workqueue import KeyQueue

logger = logging.getLogger("kongsplit.reconciler")

#: Failed writes are retried with the project's back-off, at most this far apart.
WRITE_RETRY = Backoff(initial=0.2, cap=10.0)
#: After an abort cancelled a write in flight, Kong is re-read this much later (that request may
#: still land on Kong's side).
LATE_WRITE_CHECK = 1.0
#: An abort that failed is retried in tens of milliseconds, ahead of every other key.
ABORT_RETRY = Backoff(initial=0.02, cap=0.5)
#: Waiting for Kong at start-up, and probing it while it does not answer.
KONG_WAIT = Backoff(initial=0.5, cap=30.0)
#: While Kong answers, every replica knocks (``GET /``) this often to keep ``kong_up`` true.
KONG_PROBE_INTERVAL = 10.0


async def wait_for_kong_mode(
    kong: Router, on_failure: Callable[[KongError, int, float], None] | None = None
) -> None:
    """Until Kong answers: is ``kong.url`` a Kong this process may write to? A data plane or
    Konnect (``KongModeError``) is raised at once, it will not change; any other failure is
    retried with ``KONG_WAIT`` back-off, ``on_failure(error, failures, delay)`` told each time."""
    failures = 0
    while True:
        try:
            await kong.ensure_mode()
            return
        except KongModeError:
            raise
        except KongError as e:
            failures += 1
            delay = KONG_WAIT.delay(failures)
            if on_failure is not None:
                on_failure(e, failures, delay)
            await asyncio.sleep(delay)


class Router(Protocol):
    """What the reconciler needs from Kong (``kong.apply.KongRouter``; a fake in tests)."""

    @property
    def mode(self) -> KongMode | None: ...

    async def ensure_mode(self) -> KongMode: ...

    async def probe(self) -> NodeInfo: ...

    async def apply(
        self,
        upstream: str,
        desired: Sequence[DesiredTarget],
        *,
        owner_tags: Sequence[str],
        workspace: str | None = None,
        refresh: bool = False,
        may_write: MayWrite | None = None,
        urgent: bool = False,
    ) -> ApplyResult: ...

    async def read(
        self, upstream: str, *, workspace: str | None = None
    ) -> tuple[Target, ...] | None: ...

    async def claim(self, upstream: str, *, workspace: str | None = None) -> UpstreamClaim: ...

    def forget(self, upstream: str, *, workspace: str | None = None) -> None: ...

    def reset(self) -> None: ...


# --------------------------------------------------------------------------- per-Rollout state


@dataclass(slots=True)
class RolloutState:
    """What kongsplit knows of one managed Rollout (the ``/state`` view)."""

    key: RolloutKey
    upstream: str | None = None
    workspace: str | None = None
    desired: DesiredUpstream | None = None
    applied: DesiredUpstream | None = None  # what Kong last acknowledged (held on a hold)
    observed: dict[str, int] | None = None  # weights Kong last reported
    rule: str | None = None
    hold: str | None = None
    router_context: str | None = None  # weights.ROUTER_CONTEXTS: sole, shared, basic
    algorithm: str | None = None  # the upstream's load-balancing algorithm, when read
    condition: str = "managed"  # one of metrics.ROLLOUT_STATES: kongsplit_rollouts{state}
    last_apply: float | None = None  # wall-clock time of the last write Kong acknowledged
    last_error: str | None = None
    failures: int = 0
    pending_since: float | None = None  # monotonic time a change was first seen, until applied
    foreign: tuple[str, ...] = ()
    # A write stopped part-way (superseded by a newer change, or cut short by the fence): Kong
    # may hold a mix of old and new weights, so the next pass re-reads it instead of trusting
    # ``applied``.
    unsure: bool = False
    owned_at: float | None = None  # monotonic time Kong last confirmed this Rollout may drive it

    @property
    def applied_weights(self) -> dict[str, int] | None:
        return None if self.applied is None else self.applied.weights()

    def as_json(self) -> dict[str, Any]:
        return {
            "namespace": self.key.namespace,
            "name": self.key.name,
            "upstream": self.upstream,
            "workspace": self.workspace,
            "desired": None
            if self.desired is None
            else [
                {"target": t.target, "weight": t.weight, "role": t.role, "service": t.service}
                for t in self.desired.targets
            ],
            "applied": self.applied_weights,
            "observed": self.observed,
            "in_sync": self.desired is not None and self.observed == self.desired.weights(),
            "state": self.condition,
            "rule": self.rule,
            "hold": self.hold,
            "router_context": self.router_context,
            "algorithm": self.algorithm,
            "last_apply": self.last_apply,
            "last_error": self.last_error,
            "foreign_targets": list(self.foreign),
        }


# --------------------------------------------------------------------------- the reconciler


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        *,
        kong: Router,
        metrics: Metrics,
        events: EventSink | None = None,
        is_leader: Callable[[], bool] = lambda: True,
        write_budget: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self.kong = kong
        self.metrics = metrics
        # The per-Rollout gauges are read from this state at scrape time.
        metrics.weights.source = self.weight_rows
        metrics.rollout_states.source = self.rollout_conditions
        metrics.router_contexts.source = self.router_contexts
        metrics.upstream_algorithms.source = self.upstream_algorithms
        self.is_leader = is_leader
        self._allowed = settings.kong.allow_upstreams
        # Seconds this replica may still write (what is left of its Lease): each write attempt
        # is cut short before it runs out, so a deposed leader's write cannot land late.
        self.write_budget = write_budget or (lambda: math.inf if is_leader() else 0.0)
        self.report = Reporter(
            metrics, events, exclusive_upstreams=settings.kong.exclusive_upstreams
        )
        self.store = Store()
        # A quarter of the workers at most on the drift sweep; the rest stay free for changes.
        self.queue = KeyQueue(sweep_limit=max(1, settings.reconcile.concurrency // 4))
        self.states: dict[RolloutKey, RolloutState] = {}
        self._upstream_owner: dict[tuple[str, str], RolloutKey] = {}
        self.synced = asyncio.Event()  # first full pass done while leading (readiness)
        # Workers start once every watcher has listed: judging a Rollout before its Services
        # are known would report them "missing" for nothing.
        self.caches_listed = asyncio.Event()
        self._kong_down = False
        # Why Kong is not usable right now (None when it answered last): /readyz shows it.
        self.kong_problem: str | None = None
        self._first_pass: set[RolloutKey] | None = None
        self._first_pass_done = asyncio.Event()
        # DB-less: the drift kind (restart / foreign_config) to count for each Rollout
        # re-applied after its node's configuration was replaced behind kongsplit.
        self._config_drift: dict[RolloutKey, str] = {}
        # The worker task writing a Rollout's weights to Kong right now: an abort cancels a
        # write of older weights (a hung request, a retry) instead of waiting behind it.
        # The task working on a Rollout (a worker's pass, or a write), and whether that pass is
        # itself an abort's: an abort cancels an older pass, never another abort's.
        self._writing: dict[RolloutKey, tuple[asyncio.Task[Any], bool]] = {}
        self._cancelled_writes: set[RolloutKey] = set()
        self._late_checks: dict[RolloutKey, float] = {}  # next delay of a late-write check

    # ---- inputs from the watchers (synchronous and cheap: they only queue keys) -------------
    def on_rollout(self, event: str, obj: dict[str, Any]) -> None:
        if event == "DELETED":
            key = self.store.delete_rollout(obj)
        else:
            key = self.store.set_rollout(obj)
        if key is None:
            return
        parsed = self.store.rollouts.get(key)
        urgent = isinstance(parsed, Rollout) and parsed.abort
        self._touch(key)
        self.queue.put(key, urgent=urgent)
        writer, writer_urgent = self._writing.get(key, (None, False))
        if (
            urgent
            and writer is not None
            and not writer_urgent
            and key not in self._cancelled_writes
        ):
            # An abort supersedes the write of older weights in flight for this Rollout.
            self._cancelled_writes.add(key)
            writer.cancel()

    def on_service(self, event: str, obj: dict[str, Any]) -> None:
        for key in self.store.set_service(obj, deleted=event == "DELETED"):
            self._touch(key)
            self.queue.put(key)

    def on_replicaset(self, event: str, obj: dict[str, Any]) -> None:
        for key in self.store.set_replicaset(obj, deleted=event == "DELETED"):
            self._touch(key)
            self.queue.put(key)

    def _touch(self, key: RolloutKey) -> None:
        state = self.states.get(key)
        if state is not None and state.pending_since is None:
            state.pending_since = time.monotonic()
        elif state is None and key in self.store.opted_in:
            self.states[key] = RolloutState(key, pending_since=time.monotonic())

    def leadership_gained(self) -> None:
        """Forget what this replica applied when it led before: another leader has written
        since, so its weights are not drift (and a hold must not restore our old ones)."""
        for state in self.states.values():
            state.applied = state.observed = None

    def resync_all(self) -> None:
        """Re-read Kong for every Rollout (start-up, Kong back, leadership gained, a DB-less
        config replaced). Not a change of any Rollout: a pass in flight finishes its write
        (it plans from the latest objects) and the key runs again afterwards, re-reading Kong.
        (As a change, it superseded every pass in flight at start-up: ~8 % of the first
        passes were thrown away and the daemon was ready before they ran again.)"""
        for key in list(self.store.rollouts):
            self.queue.put(key, refresh=True, changed=False)

    def config_replaced(self, kind: str) -> None:
        """A DB-less node's configuration was replaced behind kongsplit (``kong.dbless``):
        re-apply every Rollout, counting the correction as ``kind``."""
        if not self.is_leader():
            return
        for key, state in self.states.items():
            if state.applied is not None:
                self._config_drift.setdefault(key, kind)
        self.resync_all()

    # ---- tasks ----------------------------------------------------------------------------
    async def worker(self, *, urgent_only: bool = False) -> None:
        """Reconcile queued Rollouts one at a time. ``urgent_only``: the abort worker, which
        takes only aborts (and their retries), so an abort never waits for a free worker while
        every other one is stuck on a slow or failing Kong."""
        await self.caches_listed.wait()
        task = asyncio.current_task()
        while True:
            key, flags = await self.queue.get(urgent_only=urgent_only)
            if task is not None:
                # An abort may cancel this pass at any point (unless it is an abort's own).
                self._writing[key] = (task, flags.urgent)
            try:
                await self.reconcile(key, refresh=flags.refresh)
            except asyncio.CancelledError:
                if key not in self._cancelled_writes or task is None or task.cancelling() > 1:
                    raise  # the worker itself is being stopped
                # Our own cancellation of a superseded write (on_rollout): not the worker's end.
                task.uncancel()
                self._write_cancelled(key)
            except Exception as e:  # a bug: report it on the Rollout, never kill the worker
                logger.exception("internal error reconciling %s", key, extra={"rollout": str(key)})
                self.metrics.reconcile_errors.labels(reason="internal").inc()
                state = self.states.get(key)
                if state is not None:
                    state.last_error = f"internal error: {e}"
            finally:
                self._writing.pop(key, None)
                self._cancelled_writes.discard(key)
                self.queue.done(key)
                if self._first_pass is not None:
                    self._first_pass.discard(key)
                    if not self._first_pass:
                        self._first_pass_done.set()

    def sweep(self) -> None:
        """The drift sweep: re-read Kong for every Rollout, behind every change waiting
        (``KeyQueue.put_sweep``: a sweep never delays a change, nor adds reads to a burst)."""
        for key in list(self.store.rollouts):
            self.queue.put_sweep(key)

    async def sweeper(self) -> None:
        """Every ``reconcile.interval``: re-read Kong for every managed Rollout, put back drift."""
        while True:
            await asyncio.sleep(self.settings.reconcile.interval)
            if self.is_leader():
                self.sweep()

    async def kong_prober(self, period: float = 1.0) -> None:
        """Keep ``kongsplit_kong_up`` true on every replica, and resync when Kong comes back.

        A leader's writes and sweeps already talk to Kong; a follower would otherwise never
        ask, so every replica knocks (``GET /``) every ``KONG_PROBE_INTERVAL`` — more often,
        with back-off, while Kong is down. When it answers again, every upstream is re-read.
        """
        since_last = KONG_PROBE_INTERVAL
        failures = 0
        while True:
            await asyncio.sleep(KONG_WAIT.delay(failures) if failures else period)
            since_last += period
            if not self._kong_down and since_last < KONG_PROBE_INTERVAL:
                continue
            since_last = 0.0
            try:
                await self.kong.probe()
            except KongError as e:
                failures += 1
                self._note_kong_down(e)
                continue
            failures = 0
            if not self._kong_down:
                self.kong_problem = None
                continue
            logger.info("Kong Admin API reachable again; re-reading every managed upstream")
            self.kong.reset()  # Kong may have restarted: ids learnt before may be gone
            self._kong_down = False
            self.kong_problem = None
            if self.is_leader():
                self.resync_all()

    async def initial_sync(self) -> None:
        """Readiness: one successful answer from Kong, then every Rollout processed once."""
        await wait_for_kong_mode(self.kong, self._kong_not_usable_yet)
        self.kong_problem = None
        if self.kong.mode == KongMode.DBLESS and self.settings.leader_election.enabled:
            logger.warning(
                "Kong is DB-less: each kongsplit sidecar owns its own node, so leader election "
                "should be off (leaderElection.enabled: false); only the leader writes now"
            )
        # Ready once every Rollout known now has been tried once. Not "queue idle": one Rollout
        # that Kong keeps refusing (retried with back-off) must not keep the whole daemon unready.
        self._first_pass = set(self.store.rollouts)
        self._first_pass_done.clear()
        if not self._first_pass:
            self._first_pass_done.set()
        self.resync_all()
        await self._first_pass_done.wait()
        self._first_pass = None
        self.synced.set()
        self.metrics.last_sync_timestamp.set(time.time())

    def _kong_not_usable_yet(self, error: KongError, failures: int, delay: float) -> None:
        self._note_kong_down(error)
        # A wrong token or URL fails the same way every time: say it once, then once a minute
        # (the metrics and /readyz carry it meanwhile), never once a second.
        if self.report.gate.allow(f"start:{error}"):
            logger.warning(
                "Kong Admin API not usable yet (attempt %d, next try in %.1fs): %s",
                failures,
                delay,
                error,
            )

    def _note_kong_down(self, error: KongError | None = None) -> None:
        self._kong_down = True
        if error is not None:
            self.kong_problem = str(error)

    # ---- one Rollout ------------------------------------------------------------------------
    async def reconcile(self, key: RolloutKey, *, refresh: bool = False) -> None:
        parsed = self.store.rollouts.get(key)
        if parsed is None:
            await self._forget(key, reason="deleted")
            return
        if isinstance(parsed, ObjectError):
            # A malformed Rollout that is not ours is none of our business; ours keeps the
            # weights last applied and is reported.
            managed = self.states.get(key)
            if key in self.store.opted_in or (managed is not None and managed.upstream):
                self._invalid(key, parsed)
            return
        desired = desired_state(
            parsed,
            services=self.store.services_in(key.namespace),
            replicasets=self.store.replicasets_for(parsed),
            default_workspace=self.settings.kong.workspace,
            cluster_domain=self.settings.kubernetes.cluster_domain,
        )
        if desired.mapping is None and desired.error is None:
            await self._forget(key, reason="not annotated")
            return
        state = self.states.setdefault(key, RolloutState(key))
        if desired.error is not None or desired.plan is None:
            error = desired.error or ObjectError(
                "Rollout", key.namespace, key.name, None, desired.skipped or "nothing to route"
            )
            self._invalid(key, error)
            return
        plan = desired.plan
        refresh = refresh or state.unsure
        try:
            # An abort of a Rollout whose ownership Kong confirmed within the last sweep
            # interval goes straight to Kong (a revoked consent is honoured at the next sweep,
            # never at an abort's cost: the check reads Kong, which may be struggling).
            established = (
                parsed.abort
                and self._upstream_owner.get((plan.workspace or "", plan.upstream)) == key
                and state.owned_at is not None
                and time.monotonic() - state.owned_at < self.settings.reconcile.interval
            )
            refusal = None if established else await self._ownership(key, plan)
        except KongError as e:
            self._kong_failed(key, state, e, upstream=plan.upstream, urgent=parsed.abort)
            return
        if refusal is not None:
            state.owned_at = None
            self._invalid(key, refusal)
            return
        if not established:
            state.owned_at = time.monotonic()
        self._claim(state, plan)
        self.report.valid_again(key)
        state.router_context = desired.router_context
        if desired.router_context == "shared":
            self.report.shared_router(key, self.store.raw_refs.get(key))
        state.desired, state.rule, state.hold = (
            plan,
            desired.split.rule if desired.split else None,
            desired.hold,
        )
        if state.condition != "failing" or not self.is_leader():
            state.condition = "held" if state.hold else "managed"
        self.metrics.managed_rollouts.set(len(self._upstream_owner))
        if not self.is_leader():
            state.pending_since = None
            return
        wanted = plan.weights()
        if logger.isEnabledFor(logging.DEBUG):  # the hot path: format nothing for nobody
            logger.debug(
                "desired %s (rule %s%s)",
                fmt(wanted),
                state.rule,
                f", hold: {state.hold}" if state.hold else "",
                extra={"rollout": str(key), "upstream": plan.upstream, "refresh": refresh},
            )
        if state.hold is not None:
            # Argo's order says "hold the weights last applied": write nothing new. A sweep
            # still keeps Kong at those held weights (drift, a wiped database); and when Kong
            # holds nothing of ours yet, Argo's answer goes in without the hold (docs/weights.md
            # "Holds").
            held = state.applied
            if held is not None and refresh and held.upstream == plan.upstream:
                await self._apply(key, state, held, refresh=True)
                return
            if held is not None or await self._kong_has_ours(state, plan):
                logger.debug(
                    "holding weights of %s: %s",
                    key,
                    state.hold,
                    extra={"rollout": str(key), "upstream": plan.upstream},
                )
                return
        if not refresh and state.applied_weights == wanted and state.last_error is None:
            state.pending_since = None
            return  # nothing changed: nothing is written
        await self._apply(key, state, plan, refresh=refresh, urgent=parsed.abort)

    async def _ownership(self, key: RolloutKey, plan: DesiredUpstream) -> ObjectError | None:
        """Why this Rollout may not drive its upstream, or None.

        Read from Kong, so every replica and every restart reaches the same answer in any list
        order: an upstream kongsplit did not create needs consent (the tag
        ``managed-by-kongsplit`` on it, or ``kong.allowUpstreams``); of the Rollouts that name
        one upstream, the one Kong's tags name as owner keeps it while it still names it, else
        the first by namespace and name. (SECURITY.md)
        """
        claim = await self.kong.claim(plan.upstream, workspace=plan.workspace)
        field = f"metadata.annotations[{ANN_UPSTREAM}]"
        if (
            claim.exists
            and not claim.tagged_for_kongsplit
            and claim.owner is None
            and not any(a.allows(key.namespace, plan.upstream) for a in self._allowed)
        ):
            return ObjectError(
                "Rollout",
                key.namespace,
                key.name,
                field,
                f"upstream {plan.upstream} exists in Kong and was not created by kongsplit: "
                "kongsplit drives it only with the consent of whoever owns Kong's configuration "
                f"(the tag {MANAGED_TAG} on the upstream, or kong.allowUpstreams naming it for "
                f"namespace {key.namespace})",
                reason="upstream_not_consented",
            )
        claimants = self._claimants(plan)
        claimants.add(key)
        owner = RolloutKey(*claim.owner) if claim.owner is not None else None
        winner = (
            owner
            if owner is not None and owner in claimants
            else min(claimants, key=lambda k: (k.namespace, k.name))
        )
        if winner == key:
            return None
        return ObjectError(
            "Rollout",
            key.namespace,
            key.name,
            field,
            f"upstream {plan.upstream} is already managed by Rollout {winner}",
            reason="upstream_taken",
        )

    def _claimants(self, plan: DesiredUpstream) -> set[RolloutKey]:
        """Every opted-in Rollout whose annotations name this upstream (in this workspace)."""
        found = set()
        for other in self.store.upstream_users(plan.upstream):
            rollout = self.store.rollouts.get(other)
            if not isinstance(rollout, Rollout):
                continue
            mapping = parse_annotations(
                rollout.annotations,
                key=other,
                default_workspace=self.settings.kong.workspace,
            )
            if isinstance(mapping, TargetMapping) and mapping.workspace == plan.workspace:
                found.add(other)
        return found

    async def _kong_has_ours(self, state: RolloutState, plan: DesiredUpstream) -> bool:
        try:
            targets = await self.kong.read(plan.upstream, workspace=plan.workspace)
        except KongError:
            return True  # unknown: holding is the safe side
        tag = owner_tags_for(state.key.namespace, state.key.name)[1]
        return any(tag in (t.tags or ()) for t in (targets or ()))

    async def _apply(
        self,
        key: RolloutKey,
        state: RolloutState,
        plan: DesiredUpstream,
        *,
        refresh: bool,
        urgent: bool = False,
    ) -> None:
        def may_write() -> float:
            # A newer change of this Rollout is waiting: what we would write may be stale; the
            # queue runs the key again at once with the latest state.
            return 0.0 if self.queue.superseded(key) else self.write_budget()

        task = asyncio.current_task()
        if task is not None:
            self._writing[key] = (task, urgent)
        try:
            result = await self.kong.apply(
                plan.upstream,
                plan.targets,
                owner_tags=owner_tags_for(key.namespace, key.name),
                workspace=plan.workspace,
                refresh=refresh,
                may_write=may_write,
                urgent=urgent,
            )
        except KongNotLeader:
            extra = {"rollout": str(key), "upstream": plan.upstream}
            state.unsure = True
            if self.is_leader():
                logger.debug("a newer change superseded this write", extra=extra)
            else:
                logger.info("leadership lost during a write; stopped writing", extra=extra)
                state.pending_since = None
            return
        except KongError as e:
            # Only "no answer at all" means Kong is down (and earns a full resync when it is
            # back); a 5xx on one upstream is that upstream's trouble, retried with back-off.
            state.unsure = True
            self._kong_failed(key, state, e, upstream=plan.upstream, urgent=urgent)
            return
        finally:
            self._writing.pop(key, None)
        self._kong_down = False
        ref = self.store.raw_refs.get(key)
        if result.upstream_missing:
            state.failures += 1
            state.condition = "failing"
            state.last_error = self.report.upstream_missing(key, ref, plan.upstream)
            self.queue.put_later(key, self._retry_delay(state.failures))
            return
        found = self.report.applied(
            key,
            ref,
            plan,
            result,
            before=dict(state.observed or {}),
            last_applied=state.applied_weights,
            known_foreign=state.foreign,
            config_kind=self._config_drift.pop(key, None) or result.config_kind,
            refresh=refresh,
            pending_since=state.pending_since,
        )
        state.observed, state.foreign = found.observed, found.foreign
        delay = self._late_checks.pop(key, None) if refresh else None
        if delay is not None and delay * 2 <= 2 * self.settings.kong.timeout_seconds:
            self._late_checks[key] = delay * 2
            self.queue.put_later(key, delay * 2, refresh=True, urgent=True)
        if result.unsettled:
            # A write that got no answer (and was retried) may still land on Kong's side, over
            # what this pass wrote: look again after 1 s, 2 s, 4 s … as after a cancelled write.
            self._late_checks[key] = LATE_WRITE_CHECK
            self.queue.put_later(key, LATE_WRITE_CHECK, refresh=True, urgent=urgent)
        state.algorithm = result.algorithm or state.algorithm
        state.pending_since = None
        state.unsure = False
        state.applied = plan
        state.condition = "held" if state.hold else "managed"
        if result.changed:
            state.last_apply = time.time()
        state.last_error = None
        state.failures = 0

    def _retry_delay(self, failures: int, *, urgent: bool = False) -> float:
        if urgent:
            return ABORT_RETRY.delay(failures)
        # Never longer than a sweep: a failed Rollout is retried at least as often as Kong is
        # re-read for drift.
        return min(WRITE_RETRY.delay(failures), max(self.settings.reconcile.interval, 1.0))

    def _write_cancelled(self, key: RolloutKey) -> None:
        """An abort cancelled the write in flight: Kong may or may not have taken it, so the
        upstream is re-read before the abort plans its writes (never from a guess)."""
        state = self.states.get(key)
        if state is not None and state.upstream is not None:
            self.kong.forget(state.upstream, workspace=state.workspace)
        # The abandoned request may still land on Kong's side, after the abort's writes: look
        # again after 1 s, 2 s, 4 s … until Kong would long have timed it out, and put the
        # abort's weights back if it did.
        self._late_checks[key] = LATE_WRITE_CHECK
        self.queue.put_later(key, LATE_WRITE_CHECK, refresh=True, urgent=True)
        logger.info(
            "an abort superseded the write in flight",
            extra={"rollout": str(key), "upstream": state.upstream if state else None},
        )

    def _kong_failed(
        self,
        key: RolloutKey,
        state: RolloutState,
        error: KongError,
        *,
        upstream: str,
        urgent: bool = False,
    ) -> None:
        # Only "no answer at all" means Kong is down (and earns a full resync when it is back);
        # a 5xx on one upstream is that upstream's trouble, retried with back-off.
        if isinstance(error, KongUnavailable) and error.status is None:
            self._note_kong_down(error)
        self._failed(key, state, error, upstream=upstream, urgent=urgent)

    def _failed(
        self,
        key: RolloutKey,
        state: RolloutState,
        error: KongError,
        *,
        upstream: str,
        urgent: bool = False,
    ) -> None:
        state.failures += 1
        state.last_error = str(error)
        state.condition = "failing"
        delay = self._retry_delay(state.failures, urgent=urgent)
        retry_after = getattr(error, "retry_after", None)
        if not urgent and retry_after is not None:
            delay = max(delay, min(retry_after, self.settings.reconcile.interval))
        if isinstance(error, KongAuthError):
            self.kong_problem = str(error)
        shared = (
            "kong_auth"
            if isinstance(error, KongAuthError)
            else "kong_not_ready"
            if isinstance(error, KongNotReady)
            else "kong_down"
            if self._kong_down
            else None
        )
        self.report.failed(
            key,
            self.store.raw_refs.get(key),
            error,
            upstream=upstream,
            attempt=state.failures,
            retry_in=delay,
            shared=shared,
        )
        # A client error (4xx) will not fix itself by retrying fast; a changed Rollout re-queues.
        # An abort is retried in tens of milliseconds, ahead of the sweep.
        self.queue.put_later(key, delay, refresh=True, urgent=urgent)

    def _invalid(self, key: RolloutKey, error: ObjectError) -> None:
        state = self.states.setdefault(key, RolloutState(key))
        state.last_error = str(error)
        state.condition = (
            "refused" if error.reason in ("upstream_taken", "upstream_not_consented") else "invalid"
        )
        state.pending_since = None
        self.report.invalid(key, self.store.raw_refs.get(key), error, upstream=state.upstream)

    def _claim(self, state: RolloutState, plan: DesiredUpstream) -> None:
        old = (state.workspace or "", state.upstream) if state.upstream else None
        new = (plan.workspace or "", plan.upstream)
        if old is not None and old != new:
            self._upstream_owner.pop(old, None)
            self.metrics.forget_rollout(state.key.namespace, state.key.name, state.upstream or "")
            self.kong.forget(state.upstream or "", workspace=state.workspace)
            state.applied = state.observed = None  # a new upstream starts from Kong's truth
        self._upstream_owner[new] = state.key
        state.upstream, state.workspace = plan.upstream, plan.workspace

    async def _forget(self, key: RolloutKey, *, reason: str) -> None:
        state = self.states.pop(key, None)
        self.queue.forget(key)
        self._config_drift.pop(key, None)
        self._late_checks.pop(key, None)
        self.report.forget(key, key.namespace, key.name, state.upstream if state else None)
        if state is None or state.upstream is None:
            return
        self._upstream_owner.pop((state.workspace or "", state.upstream), None)
        self.kong.forget(state.upstream, workspace=state.workspace)
        self.metrics.managed_rollouts.set(len(self._upstream_owner))
        logger.info(
            "no longer managing %s (%s)",
            key,
            reason,
            extra={"rollout": str(key), "upstream": state.upstream},
        )
        if (
            self.settings.kong.on_delete != "stable"
            or state.desired is None
            or not self.is_leader()
        ):
            return
        # kong.onDelete: stable — everything back on the stable target before letting go.
        targets = state.desired.targets
        m = sum(t.weight for t in targets if t.role != ROLE_EXPERIMENT) or 100
        final = [
            DesiredTarget(t.target, m if t.role == ROLE_STABLE else 0, t.role, t.service)
            for t in targets
        ]
        try:
            result = await self.kong.apply(
                state.upstream,
                final,
                owner_tags=owner_tags_for(key.namespace, key.name),
                workspace=state.workspace,
                may_write=self.is_leader,
            )
            if result.dry_run:
                self.report.dry_run(key, result)
        except KongError as e:
            logger.warning(
                "could not move %s back to stable on delete: %s",
                key,
                e,
                extra={"rollout": str(key), "upstream": state.upstream},
            )

    # ---- what the metrics read at scrape time ---------------------------------------------
    def weight_rows(self) -> Iterator[WeightRow]:
        """``kongsplit_desired_weight`` / ``observed_weight`` rows."""
        for state in list(self.states.values()):
            if state.upstream is None or state.desired is None:
                continue
            roles = {t.target: t.role for t in state.desired.targets}
            want = _by_role(state.desired.weights(), roles)
            seen = _by_role(state.observed, roles) if state.observed is not None else {}
            ns, name, upstream = state.key.namespace, state.key.name, state.upstream
            for role in sorted(want.keys() | seen.keys()):
                yield ns, name, upstream, role, want.get(role), seen.get(role)

    def rollout_conditions(self) -> list[str]:
        """One ``kongsplit_rollouts{state}`` value per annotated Rollout."""
        return [s.condition for s in self.states.values()]

    def upstream_algorithms(self) -> list[str | None]:
        """One ``kongsplit_managed_upstreams{algorithm}`` value per managed Rollout."""
        return [s.algorithm for s in self.states.values() if s.upstream is not None]

    def router_contexts(self) -> list[str | None]:
        """One ``kongsplit_rollouts_by_router{context}`` value per managed Rollout."""
        return [s.router_context for s in self.states.values() if s.upstream is not None]


def _by_role(weights: Mapping[str, int], roles: Mapping[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for target, weight in weights.items():
        role = roles.get(target)
        if role is not None:
            out[role] = out.get(role, 0) + weight
    return out
