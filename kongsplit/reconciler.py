"""Keeping Kong equal to what each annotated Rollout says: the workers, the sweep, the reports.

Shape (kopf's, one stage each):
- ``store.Store`` holds what the watchers deliver; its indexes turn a Service or ReplicaSet
  change into the Rollouts to re-queue.
- ``workqueue.KeyQueue`` coalesces per Rollout, one worker per key, aborts first.
- ``Reconciler.reconcile`` computes the desired targets (``desired.desired_state``) and hands
  them to ``KongAdmin.apply``; it writes nothing when nothing changed, holds when Argo's order
  says so, and reports bad input on the Rollout instead of raising.
- The drift sweep re-queues every managed Rollout with ``refresh`` (re-read Kong, put back,
  count) on a timer and whenever Kong comes back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kongsplit.backoff import Backoff
from kongsplit.config import Settings
from kongsplit.desired import Desired, desired_state
from kongsplit.events import (
    NORMAL,
    REASON_APPLIED,
    REASON_DRIFT,
    REASON_INVALID_ANNOTATION,
    REASON_SHARED_ROUTER,
    REASON_WRITE_FAILED,
    WARNING,
    ObjectRef,
)
from kongsplit.kong import KongAdmin
from kongsplit.kong_plan import DesiredTarget as KongTarget
from kongsplit.kong_plan import Drift
from kongsplit.kong_types import (
    KongClientError,
    KongError,
    KongMode,
    KongModeError,
    KongNotLeader,
    KongNotReady,
    KongUnavailable,
)
from kongsplit.kongtarget import owner_tags_for
from kongsplit.metrics import Metrics, WeightRow
from kongsplit.rollouts import (
    ObjectError,
    Rollout,
    RolloutKey,
)
from kongsplit.store import Store
from kongsplit.targets import ANN_UPSTREAM, TargetPlan
from kongsplit.workqueue import KeyQueue

logger = logging.getLogger("kongsplit.reconciler")

EventSink = Callable[..., None]  # EventRecorder.post(ref, *, type, reason, message)


# --------------------------------------------------------------------------- per-Rollout state


@dataclass(slots=True)
class RolloutState:
    """What kongsplit knows of one managed Rollout (the ``/state`` view)."""

    key: RolloutKey
    upstream: str | None = None
    workspace: str | None = None
    desired: TargetPlan | None = None
    applied: dict[str, int] | None = None  # weights last acknowledged by Kong
    applied_plan: TargetPlan | None = None  # the plan those weights came from (held on a hold)
    observed: dict[str, int] | None = None  # weights Kong last reported
    roles: dict[str, str] = field(default_factory=dict)
    rule: str | None = None
    hold: str | None = None
    router_context: str | None = None  # weights.ROUTER_CONTEXTS: sole, shared, basic
    condition: str = "managed"  # one of metrics.ROLLOUT_STATES: kongsplit_rollouts{state}
    last_apply: float | None = None  # wall-clock time of the last write Kong acknowledged
    last_error: str | None = None
    failures: int = 0
    pending_since: float | None = None  # monotonic time a change was first seen, until applied
    foreign: tuple[str, ...] = ()

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
            "applied": self.applied,
            "observed": self.observed,
            "in_sync": self.desired is not None and self.observed == self.desired.weights(),
            "state": self.condition,
            "rule": self.rule,
            "hold": self.hold,
            "router_context": self.router_context,
            "last_apply": self.last_apply,
            "last_error": self.last_error,
            "foreign_targets": list(self.foreign),
        }


def _backoff(failures: int, cap: float = 30.0) -> float:
    return Backoff(initial=0.2, cap=cap).delay(failures)


class _LogGate:
    """Lets a repeated log line through at most once per ``period`` seconds per key."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._last: dict[str, float] = {}

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            return False
        self._last[key] = now
        return True


#: Waiting for Kong at start-up (and probing it while down): quick at first, then every 30 s.
KONG_WAIT = Backoff(initial=0.5, cap=30.0)
#: A failure that repeats word for word is logged again at most this often (no log flood).
REPEAT_LOG_SECONDS = 60.0


# --------------------------------------------------------------------------- the reconciler


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        *,
        kong: KongAdmin,
        metrics: Metrics,
        events: EventSink | None = None,
        is_leader: Callable[[], bool] = lambda: True,
    ) -> None:
        self.settings = settings
        self.kong = kong
        self.metrics = metrics
        metrics.weights.source = self.weight_rows
        metrics.rollout_states.source = lambda: [s.condition for s in self.states.values()]
        self.events = events
        self.is_leader = is_leader
        self.store = Store()
        self.queue = KeyQueue()
        self.states: dict[RolloutKey, RolloutState] = {}
        self._upstream_owner: dict[tuple[str, str], RolloutKey] = {}
        self._reported: dict[RolloutKey, str] = {}  # last invalid-input message, to Event once
        self._warned_shared: set[RolloutKey] = set()  # shared-router Warning Event posted
        self.kong_ok = asyncio.Event()  # a request to Kong succeeded since the last failure
        self.synced = asyncio.Event()  # first full pass done while leading (readiness)
        # Workers start once every watcher has listed: judging a Rollout before its Services
        # are known would report them "missing" for nothing.
        self.caches_listed = asyncio.Event()
        self._kong_down = False
        # Why Kong is not usable right now (None when it answered last): /readyz shows it.
        self.kong_problem: str | None = None
        self._log_gate = _LogGate(REPEAT_LOG_SECONDS)
        self._limit = asyncio.Semaphore(settings.reconcile.concurrency)
        # DB-less: the configuration hashes our own POST /config produced, and the drift kind
        # (restart / foreign_config) to count for each Rollout re-applied after a foreign change.
        self._first_pass: set[RolloutKey] | None = None
        self._first_pass_done = asyncio.Event()
        self._config_drift: dict[RolloutKey, str] = {}

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
            state.applied = state.observed = state.applied_plan = None

    def resync_all(self) -> None:
        """Re-read Kong for every Rollout (sweep, Kong back, leadership gained)."""
        for key in list(self.store.rollouts):
            self.queue.put(key, refresh=True)

    # ---- tasks ----------------------------------------------------------------------------
    async def worker(self) -> None:
        await self.caches_listed.wait()
        while True:
            key, flags = await self.queue.get()
            try:
                async with self._limit:
                    await self.reconcile(key, refresh=flags.refresh)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a bug: report it on the Rollout, never kill the worker
                logger.exception("internal error reconciling %s", key, extra={"rollout": str(key)})
                self.metrics.reconcile_errors.labels(reason="internal").inc()
                state = self.states.get(key)
                if state is not None:
                    state.last_error = f"internal error: {e}"
            finally:
                self.queue.done(key)
                if self._first_pass is not None:
                    self._first_pass.discard(key)
                    if not self._first_pass:
                        self._first_pass_done.set()

    async def sweeper(self, interval: float | None = None) -> None:
        """Every ``reconcile.interval``: re-read Kong for every managed Rollout (docs/operations.md,
        drift)."""
        interval = interval or self.settings.reconcile.interval
        while True:
            await asyncio.sleep(interval)
            if self.is_leader():
                self.resync_all()

    async def kong_prober(self, period: float = 1.0) -> None:
        """Keep ``kongsplit_kong_up`` true on every replica, and resync when Kong comes back.

        A leader's writes and sweeps already talk to Kong; a follower would otherwise never
        ask, so every replica knocks (``GET /``) once per ``reconcile.interval`` — once a
        second while Kong is down. When it answers again, every managed upstream is re-read.
        """
        interval = self.settings.reconcile.interval
        since_last = interval
        failures = 0
        while True:
            await asyncio.sleep(KONG_WAIT.delay(failures) if failures else period)
            since_last += period
            if not self._kong_down and since_last < interval:
                continue
            since_last = 0.0
            try:
                await self.kong.node_info()
            except KongError as e:
                failures += 1
                self._note_kong_down(e)
                continue
            failures = 0
            if not self._kong_down:
                self.kong_problem = None
                continue
            logger.info("Kong Admin API reachable again; re-reading every managed upstream")
            self.kong.cache.clear()  # Kong may have restarted: ids learnt before may be gone
            self._kong_down = False
            self.kong_problem = None
            self.kong_ok.set()
            if self.is_leader():
                self.resync_all()

    async def config_watcher(self) -> None:
        """DB-less only: poll ``/status`` ``configuration_hash`` (docs/sidecar.md).

        A hash we did not produce means another writer (Kong Ingress Controller, a restart with
        ``declarative_config``) replaced the node's config; 32 zeros mean the node restarted
        empty. Either way every managed Rollout is re-applied and the correction counted with
        kind ``foreign_config`` or ``restart``.
        """
        interval = self.settings.kong.config_poll_interval
        last: str | None = None
        while True:
            await asyncio.sleep(interval)
            if self.kong.mode != KongMode.DBLESS or not self.is_leader():
                continue
            try:
                status = await self.kong.status()
            except KongError:
                continue
            current = status.configuration_hash
            if current is None or current == last:
                continue
            if last is not None and current not in self.kong.own_config_hashes:
                kind = "restart" if status.empty else "foreign_config"
                logger.warning(
                    "Kong's configuration changed behind kongsplit (%s, hash %s); re-applying",
                    kind,
                    current,
                )
                self.kong.cache.clear()
                for key, state in self.states.items():
                    if state.applied is not None:
                        self._config_drift.setdefault(key, kind)
                self.resync_all()
            last = current

    async def initial_sync(self) -> None:
        """Readiness: one successful answer from Kong, then every Rollout processed once."""
        failures = 0
        while True:
            try:
                await self.kong.ensure_mode()
                break
            except KongModeError:
                raise  # a data plane or Konnect: not ours to serve; the process stops, loudly
            except KongError as e:
                failures += 1
                self._note_kong_down(e)
                delay = KONG_WAIT.delay(failures)
                # A wrong token or URL fails the same way every time: say it once, then once a
                # minute (the metrics and /readyz carry it meanwhile), never once a second.
                if self._log_gate.allow(f"start:{e}"):
                    logger.warning(
                        "Kong Admin API not usable yet (attempt %d, next try in %.1fs): %s",
                        failures,
                        delay,
                        e,
                    )
                await asyncio.sleep(delay)
        self.kong_problem = None
        self.kong_ok.set()
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

    def _note_kong_down(self, error: KongError | None = None) -> None:
        self._kong_down = True
        self.kong_ok.clear()
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
                self._report_invalid(key, parsed, reason="invalid_rollout")
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
            reason = _error_reason(desired)
            error = desired.error or ObjectError(
                "Rollout", key.namespace, key.name, None, desired.skipped or "nothing to route"
            )
            self._report_invalid(key, error, reason=reason)
            return
        plan = desired.plan
        owner = self._upstream_owner.get((plan.workspace or "", plan.upstream))
        if owner is not None and owner != key:
            self._report_invalid(
                key,
                ObjectError(
                    "Rollout",
                    key.namespace,
                    key.name,
                    f"metadata.annotations[{ANN_UPSTREAM}]",
                    f"upstream {plan.upstream} is already managed by Rollout {owner}",
                ),
                reason="upstream_taken",
            )
            return
        self._claim(state, plan)
        self._reported.pop(key, None)
        state.router_context = desired.router_context
        if desired.router_context == "shared" and key not in self._warned_shared:
            # Two routers split this traffic: managed, warned once (docs/weights.md).
            self._warned_shared.add(key)
            self._event(
                self.store.raw_refs.get(key),
                WARNING,
                REASON_SHARED_ROUTER,
                "another traffic router is configured in spec.strategy.canary.trafficRouting: "
                "it and Kong both split this Rollout's traffic with Argo's weights",
            )
        state.desired, state.rule, state.hold = (
            plan,
            desired.split.rule if desired.split else None,
            desired.hold,
        )
        state.roles = {t.target: t.role for t in plan.targets}
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
                _fmt(wanted),
                state.rule,
                f", hold: {state.hold}" if state.hold else "",
                extra={"rollout": str(key), "upstream": plan.upstream, "refresh": refresh},
            )
        if state.hold is not None:
            # Argo's order says "hold the weights last applied": write nothing new. A sweep
            # still keeps Kong at those held weights (drift, a wiped database); and when Kong
            # holds nothing of ours yet, Argo's answer goes in without the hold (docs/weights.md
            # "Holds").
            held = state.applied_plan
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
        if not refresh and state.applied == wanted and state.last_error is None:
            state.pending_since = None
            return  # nothing changed: nothing is written
        await self._apply(key, state, plan, refresh=refresh)

    async def _kong_has_ours(self, state: RolloutState, plan: TargetPlan) -> bool:
        try:
            targets = await self.kong.read_targets(plan.upstream, workspace=plan.workspace)
        except KongError:
            return True  # unknown: holding is the safe side
        tag = owner_tags_for(state.key.namespace, state.key.name)[1]
        return any(tag in (t.tags or ()) for t in (targets or ()))

    async def _apply(
        self, key: RolloutKey, state: RolloutState, plan: TargetPlan, *, refresh: bool
    ) -> None:
        log_extra = {"rollout": str(key), "upstream": plan.upstream}
        wanted = [KongTarget(t.target, t.weight, t.role) for t in plan.targets]
        # What Kong held before this apply: what we last saw, corrected by what this apply
        # found there (a drifted weight shows as "90 → 75", not as "75 → 75").
        before = dict(state.observed or {})
        try:
            result = await self.kong.apply(
                plan.upstream,
                wanted,
                owner_tags=owner_tags_for(key.namespace, key.name),
                workspace=plan.workspace,
                refresh=refresh,
                may_write=self.is_leader,
            )
        except KongNotLeader:
            logger.info("leadership lost during a write; stopped writing", extra=log_extra)
            state.pending_since = None
            return
        except KongNotReady as e:
            self._failed(key, state, e, reason="kong_unavailable", log_extra=log_extra)
            return
        except KongModeError as e:
            self._failed(key, state, e, reason="kong_client_error", log_extra=log_extra)
            return
        except KongClientError as e:
            self._failed(key, state, e, reason="kong_client_error", log_extra=log_extra)
            return
        except KongError as e:
            # Only "no answer at all" means Kong is down (and earns a full resync when it is
            # back); a 5xx on one upstream is that upstream's trouble, retried with back-off.
            if not isinstance(e, KongUnavailable) or e.status is None:
                self._note_kong_down(e)
            self._failed(key, state, e, reason="kong_unavailable", log_extra=log_extra)
            return
        if self._kong_down:
            self._kong_down = False
        self.kong_ok.set()
        ref = self.store.raw_refs.get(key)
        if result.upstream_missing:
            state.last_error = (
                f"upstream {plan.upstream} does not exist in Kong and kong.createUpstreams is off"
            )
            self.metrics.reconcile_errors.labels(reason="upstream_missing").inc()
            logger.warning(state.last_error, extra=log_extra)
            self._event(ref, WARNING, REASON_WRITE_FAILED, state.last_error)
            self.queue.put_later(
                key, _backoff(state.failures + 1, cap=self.settings.reconcile.interval)
            )
            state.failures += 1
            state.condition = "failing"
            return
        before.update(
            {d.target: d.observed for d in result.drift if d.target and d.observed is not None}
        )
        observed = result.weights()
        state.observed = {t: observed[t] for t in plan.weights() if t in observed}
        for t in result.foreign:
            state.observed.setdefault(t.target, t.weight)
        foreign = tuple(sorted(f"{t.target}={t.weight}" for t in result.foreign))
        if foreign and foreign != state.foreign:
            msg = (
                f"upstream {plan.upstream} has targets kongsplit does not own carrying weight "
                f"({', '.join(foreign)}): the split is not exact"
                + (
                    ""
                    if self.settings.kong.exclusive_upstreams
                    else "; set kong.exclusiveUpstreams to zero them"
                )
            )
            logger.warning(msg, extra=log_extra)
            self.metrics.reconcile_errors.labels(reason="foreign_targets").inc()
            self._event(ref, WARNING, REASON_DRIFT, msg)
        state.foreign = foreign
        # Drift is Kong differing from what we last put there (not from a new desired state).
        config_kind = self._config_drift.pop(key, None)
        if state.applied is not None:
            counted = _drift_counts(result.drift, state.applied)
            if config_kind is not None and counted:
                counted = {config_kind: 1}
            for kind, n in counted.items():
                self.metrics.drift_corrections.labels(
                    key.namespace, key.name, plan.upstream, kind
                ).inc(n)
            if counted:
                detail = ", ".join(f"{k}={n}" for k, n in sorted(counted.items()))
                found = _drift_text(result.drift, state.roles)
                logger.warning(
                    "corrected drift in Kong (%s): %s",
                    detail,
                    found,
                    extra={**log_extra, "drift": counted},
                )
                self._event(
                    ref,
                    WARNING,
                    REASON_DRIFT,
                    f"Kong upstream {plan.upstream} differed from the desired weights "
                    f"({found}); put back {_weights_text(plan)}",
                )
        if result.changed:
            logger.info(
                "applied weights %s → %s",
                _fmt(before),
                _fmt(state.observed),
                extra={
                    **log_extra,
                    "old": before,
                    "new": state.observed,
                    "writes": len(result.writes),
                },
            )
            if not refresh or state.applied is None:
                self._event(
                    ref,
                    NORMAL,
                    REASON_APPLIED,
                    f"Kong upstream {plan.upstream}: {_weights_text(plan)}",
                )
        if state.pending_since is not None and (result.changed or state.applied != plan.weights()):
            self.metrics.apply_latency.observe(time.monotonic() - state.pending_since)
        state.pending_since = None
        state.applied = plan.weights()
        state.applied_plan = plan
        state.condition = "held" if state.hold else "managed"
        if result.changed:
            state.last_apply = time.time()
        state.last_error = None
        state.failures = 0
        self.metrics.last_sync_timestamp.set(time.time())

    def _failed(
        self,
        key: RolloutKey,
        state: RolloutState,
        error: KongError,
        *,
        reason: str,
        log_extra: dict[str, str],
    ) -> None:
        state.failures += 1
        state.last_error = str(error)
        state.condition = "failing"
        delay = _backoff(state.failures, cap=max(self.settings.reconcile.interval, 1.0))
        auth = isinstance(error, KongClientError) and error.status in (401, 403)
        if auth:
            reason = "kong_auth"
            self.kong_problem = str(error)
        self.metrics.reconcile_errors.labels(reason=reason).inc()
        # A refused token or an unreachable Kong fails every Rollout the same way: one line a
        # minute for all of them (the metrics count each), not one line per Rollout per retry.
        shared = (
            "kong_auth"
            if auth
            else "kong_not_ready"
            if isinstance(error, KongNotReady)
            else "kong_down"
            if self._kong_down
            else None
        )
        level = logging.WARNING
        if shared is not None and not self._log_gate.allow(shared):
            level = logging.DEBUG
        logger.log(
            level,
            "writing Kong failed (attempt %d, retry in %.1fs): %s",
            state.failures,
            delay,
            error,
            extra=log_extra,
        )
        if state.failures == 1 or state.failures % 10 == 0:
            self._event(self.store.raw_refs.get(key), WARNING, REASON_WRITE_FAILED, str(error))
        # A client error (4xx) will not fix itself by retrying fast; a changed Rollout re-queues.
        self.queue.put_later(key, delay, refresh=True)

    def _claim(self, state: RolloutState, plan: TargetPlan) -> None:
        old = (state.workspace or "", state.upstream) if state.upstream else None
        new = (plan.workspace or "", plan.upstream)
        if old is not None and old != new:
            self._upstream_owner.pop(old, None)
            self.metrics.forget_rollout(state.key.namespace, state.key.name, state.upstream or "")
            self.kong.forget_upstream(state.upstream or "", workspace=state.workspace)
            state.applied_plan = None
            state.applied = state.observed = None  # a new upstream starts from Kong's truth
        self._upstream_owner[new] = state.key
        state.upstream, state.workspace = plan.upstream, plan.workspace

    async def _forget(self, key: RolloutKey, *, reason: str) -> None:
        state = self.states.pop(key, None)
        self.queue.forget(key)
        self._reported.pop(key, None)
        self._warned_shared.discard(key)
        self._config_drift.pop(key, None)
        if state is None or state.upstream is None:
            return
        self._upstream_owner.pop((state.workspace or "", state.upstream), None)
        self.kong.forget_upstream(state.upstream, workspace=state.workspace)
        self.metrics.forget_rollout(key.namespace, key.name, state.upstream)
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
        m = sum(t.weight for t in state.desired.targets if t.role != "experiment") or 100
        final = [
            KongTarget(t.target, m if t.role == "stable" else 0, t.role)
            for t in state.desired.targets
        ]
        try:
            await self.kong.apply(
                state.upstream,
                final,
                owner_tags=owner_tags_for(key.namespace, key.name),
                workspace=state.workspace,
            )
        except KongError as e:
            logger.warning(
                "could not move %s back to stable on delete: %s",
                key,
                e,
                extra={"rollout": str(key), "upstream": state.upstream},
            )

    # ---- reporting ---------------------------------------------------------------------------
    def _report_invalid(self, key: RolloutKey, error: ObjectError, *, reason: str) -> None:
        state = self.states.setdefault(key, RolloutState(key))
        message = str(error)
        state.last_error = message
        state.condition = "refused" if reason == "upstream_taken" else "invalid"
        state.pending_since = None
        if self._reported.get(key) == message:
            return  # the same problem: counted and announced once
        self._reported[key] = message
        self.metrics.reconcile_errors.labels(reason=reason).inc()
        logger.warning(
            "not writing Kong for %s: %s",
            key,
            message,
            extra={"rollout": str(key), "upstream": state.upstream, "field": error.field},
        )
        self._event(self.store.raw_refs.get(key), WARNING, REASON_INVALID_ANNOTATION, message)

    def _event(self, ref: ObjectRef | None, type_: str, reason: str, message: str) -> None:
        if self.events is not None and ref is not None:
            self.events(ref, type=type_, reason=reason, message=message)

    def weight_rows(self) -> Iterator[WeightRow]:
        """``kongsplit_desired_weight`` / ``observed_weight`` rows, read at scrape time."""
        for state in list(self.states.values()):
            if state.upstream is None or state.desired is None:
                continue
            want = _by_role(state.desired.weights(), state.roles)
            seen = _by_role(state.observed, state.roles) if state.observed is not None else {}
            ns, name, upstream = state.key.namespace, state.key.name, state.upstream
            for role in sorted(want.keys() | seen.keys()):
                yield ns, name, upstream, role, want.get(role), seen.get(role)


def _drift_counts(found: Iterable[Drift], applied: dict[str, int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for d in found:
        if not d.corrected:
            continue
        if (
            d.kind == "foreign"
            or d.target is None
            or (d.target in applied and applied[d.target] != d.observed)
        ):
            counts[d.kind] = counts.get(d.kind, 0) + 1
    return counts


def _drift_text(found: Iterable[Drift], roles: dict[str, str]) -> str:
    """``canary 10.0.0.2:80 90 → 25, stable 10.0.0.1:80 missing → 75`` for logs and Events."""
    parts = []
    for d in found:
        if not d.corrected or d.target is None:
            if d.target is None:
                parts.append("upstream missing → created")
            continue
        role = roles.get(d.target, d.kind)
        seen = "missing" if d.observed is None else str(d.observed)
        parts.append(f"{role} {d.target} {seen} → {d.expected}")
    return ", ".join(parts) or "no target differed"


def _by_role(weights: dict[str, int], roles: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for target, weight in weights.items():
        role = roles.get(target)
        if role is not None:
            out[role] = out.get(role, 0) + weight
    return out


def _error_reason(desired: Desired) -> str:
    error = desired.error
    if error is None:
        return "invalid_rollout"
    if error.field and error.field.startswith("metadata.annotations"):
        return "invalid_annotation"
    if error.kind == "Service" or "not found" in error.message:
        return "missing_service"
    return "invalid_rollout"


def _weights_text(plan: TargetPlan) -> str:
    return ", ".join(f"{t.role} {t.target}={t.weight}" for t in plan.targets)


def _fmt(weights: dict[str, int] | None) -> str:
    if not weights:
        return "{}"
    return "{" + ", ".join(f"{t}: {w}" for t, w in weights.items()) + "}"
