"""What one reconcile found, told to the people who run kongsplit: logs, Kubernetes Events,
metrics. The reconciler decides; this module only reports (and counts), so the words an
operator reads at 3 a.m. live in one place.

- ``applied``: weights acknowledged by Kong — drift put back (counted by kind, with the values
  Kong had), targets kongsplit does not own that still carry weight, the apply latency.
- ``invalid``: a Rollout kongsplit will not write for (bad annotation, malformed, missing
  Service, upstream taken) — counted and announced once per distinct problem.
- ``failed``: a write Kong refused or never answered — logged once a minute when the cause is
  shared by every Rollout (a refused token, Kong down), Events on the first and every tenth try.
- ``dry_run``: ``run --dry-run``: each write an apply planned and did not send, one log line
  each in ``kongsplit diff``'s words, with rollout, upstream and the change as fields; nothing
  counted as applied or corrected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kongsplit.events import (
    NORMAL,
    REASON_ALGORITHM,
    REASON_APPLIED,
    REASON_DRIFT,
    REASON_INVALID_ANNOTATION,
    REASON_SHARED_ROUTER,
    REASON_WRITE_FAILED,
    WARNING,
)
from kongsplit.kong.errors import KongError
from kongsplit.kong.targets import DesiredUpstream
from kongsplit.kong.writes import WEIGHT_ZERO_UNSAFE, ApplyResult, Drift, changes_of
from kongsplit.metrics import Metrics
from kongsplit.rollouts import ObjectError, ObjectRef, RolloutKey

logger = logging.getLogger("kongsplit.reconciler")

#: ``EventRecorder.post(ref, *, type, reason, message)``
EventSink = Callable[..., None]

#: A failure that repeats for every Rollout is logged again at most this often (no log flood).
REPEAT_LOG_SECONDS = 60.0


class LogGate:
    """Lets a repeated log line through at most once per ``period`` seconds per key."""

    def __init__(self, period: float = REPEAT_LOG_SECONDS) -> None:
        self.period = period
        self._last: dict[str, float] = {}

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            return False
        self._last[key] = now
        return True


@dataclass(frozen=True, slots=True)
class Found:
    """What ``Reporter.applied`` concluded, for the reconciler to keep in the Rollout's state."""

    observed: dict[str, int]  # the weights Kong holds now for this Rollout's targets (+ foreign)
    foreign: tuple[str, ...]  # "target=weight" of targets it does not own that carry weight


class Reporter:
    def __init__(
        self, metrics: Metrics, events: EventSink | None, *, exclusive_upstreams: bool
    ) -> None:
        self.metrics = metrics
        self.events = events
        self.exclusive_upstreams = exclusive_upstreams
        self.gate = LogGate()
        self._invalid: dict[RolloutKey, str] = {}  # last invalid-input message, to Event once
        self._warned_shared: set[RolloutKey] = set()  # shared-router Warning Event posted
        self._warned_algorithm: dict[RolloutKey, str] = {}  # algorithm last warned about
        self._dry_run_said: dict[RolloutKey, tuple[str, ...]] = {}  # changes last logged

    def event(
        self,
        ref: ObjectRef | None,
        type_: str,
        reason: str,
        message: str,
        *,
        supersede: bool = False,
    ) -> None:
        if self.events is None or ref is None:
            return
        if supersede:
            self.events(ref, type=type_, reason=reason, message=message, supersede=True)
        else:
            self.events(ref, type=type_, reason=reason, message=message)

    # ---- a successful apply ----------------------------------------------------------------

    def applied(
        self,
        key: RolloutKey,
        ref: ObjectRef | None,
        plan: DesiredUpstream,
        result: ApplyResult,
        *,
        before: dict[str, int],
        last_applied: dict[str, int] | None,
        known_foreign: tuple[str, ...],
        config_kind: str | None,
        refresh: bool,
        pending_since: float | None,
    ) -> Found:
        """Report an apply Kong acknowledged; ``before`` is what Kong was last seen holding."""
        log_extra = {"rollout": str(key), "upstream": plan.upstream}
        roles = {t.target: t.role for t in plan.targets}
        # What Kong held before this apply: what we last saw, corrected by what this apply
        # found there (a drifted weight shows as "90 → 75", not as "75 → 75").
        before = dict(before)
        for d in result.drift:
            if d.target is not None and d.observed is not None:
                before[d.target] = d.observed
        weights = result.weights()
        wanted = plan.weights()
        observed = {t: weights[t] for t in wanted if t in weights}
        for t in result.foreign:
            observed.setdefault(t.target, t.weight)
        foreign = tuple(sorted(f"{t.target}={t.weight}" for t in result.foreign))
        if foreign and foreign != known_foreign:
            msg = (
                f"upstream {plan.upstream} has targets kongsplit does not own carrying weight "
                f"({', '.join(foreign)}): the split is not exact"
                + ("" if self.exclusive_upstreams else "; set kong.exclusiveUpstreams to zero them")
            )
            logger.warning(msg, extra=log_extra)
            self.metrics.reconcile_errors.labels(reason="foreign_targets").inc()
            self.event(ref, WARNING, REASON_DRIFT, msg)
        if result.dry_run:
            self.dry_run(key, result)
            return Found(observed, foreign)
        # Drift is Kong differing from what we last put there (not from a new desired state).
        if last_applied is None:  # the first apply of this Rollout to this upstream
            self.metrics.applying(key.namespace, key.name, plan.upstream)
        else:
            counted = drift_counts(result.drift, last_applied)
            if config_kind is not None and counted:
                counted = {config_kind: 1}
            for kind, n in counted.items():
                self.metrics.drift_corrections.labels(
                    key.namespace, key.name, plan.upstream, kind
                ).inc(n)
            if counted:
                detail = ", ".join(f"{k}={n}" for k, n in sorted(counted.items()))
                found = drift_text(result.drift, roles)
                logger.warning(
                    "corrected drift in Kong (%s): %s",
                    detail,
                    found,
                    extra={**log_extra, "drift": counted},
                )
                self.event(
                    ref,
                    WARNING,
                    REASON_DRIFT,
                    f"Kong upstream {plan.upstream} differed from the desired weights "
                    f"({found}); put back {weights_text(plan)}",
                )
        if result.algorithm in WEIGHT_ZERO_UNSAFE and self._warned_algorithm.get(key) != (
            result.algorithm
        ):
            self._warned_algorithm[key] = result.algorithm or ""
            msg = (
                f"Kong upstream {plan.upstream} balances with {result.algorithm}, on which a "
                "target at weight 0 can still receive requests (retries, scores of 0/0): the "
                "canary is not reliably out of traffic at 0; set the upstream's algorithm to "
                "round-robin (or consistent-hashing)"
            )
            logger.warning(msg, extra=log_extra)
            self.event(ref, WARNING, REASON_ALGORITHM, msg)
        if result.changed:
            logger.info(
                "applied weights %s → %s",
                fmt(before),
                fmt(observed),
                extra={**log_extra, "old": before, "new": observed, "writes": len(result.writes)},
            )
            if not refresh or last_applied is None:
                self.event(
                    ref,
                    NORMAL,
                    REASON_APPLIED,
                    f"Kong upstream {plan.upstream}: {weights_text(plan)}",
                    supersede=True,  # only the newest weights are worth telling
                )
        if pending_since is not None and (result.changed or last_applied != wanted):
            self.metrics.apply_latency.observe(time.monotonic() - pending_since)
        self.metrics.last_sync_timestamp.set(time.time())
        return Found(observed, foreign)

    def dry_run(self, key: RolloutKey, result: ApplyResult) -> None:
        """``run --dry-run``: each write the apply planned and did not send, one structured line
        each (``kongsplit diff``'s words) — when they differ from what was last said for this
        Rollout, so a sweep finding the same plan again stays quiet (at debug)."""
        log_extra = {"rollout": str(key), "upstream": result.upstream}
        changes = changes_of(result)
        lines = tuple(c.line for c in changes)
        level = logging.INFO if self._dry_run_said.get(key) != lines else logging.DEBUG
        self._dry_run_said[key] = lines
        for change in changes:
            logger.log(
                level,
                "dry run: would write %s",
                change.line,
                extra={**log_extra, **change.fields(), "dry_run": True},
            )
        if not changes:
            logger.log(
                level,
                "dry run: Kong already holds what this Rollout wants; nothing to write",
                extra={**log_extra, "dry_run": True},
            )

    def upstream_missing(self, key: RolloutKey, ref: ObjectRef | None, upstream: str) -> str:
        message = f"upstream {upstream} does not exist in Kong and kong.createUpstreams is off"
        self.metrics.reconcile_errors.labels(reason="upstream_missing").inc()
        logger.warning(message, extra={"rollout": str(key), "upstream": upstream})
        self.event(ref, WARNING, REASON_WRITE_FAILED, message)
        return message

    # ---- nothing written --------------------------------------------------------------------

    def invalid(
        self, key: RolloutKey, ref: ObjectRef | None, error: ObjectError, *, upstream: str | None
    ) -> None:
        """A Rollout kongsplit will not write for; each distinct problem is told once."""
        message = str(error)
        if self._invalid.get(key) == message:
            return  # the same problem: counted and announced once
        self._invalid[key] = message
        self.metrics.reconcile_errors.labels(reason=error.reason).inc()
        logger.warning(
            "not writing Kong for %s: %s",
            key,
            message,
            extra={"rollout": str(key), "upstream": upstream, "field": error.field},
        )
        self.event(ref, WARNING, REASON_INVALID_ANNOTATION, message)

    def shared_router(self, key: RolloutKey, ref: ObjectRef | None) -> None:
        """Another traffic router is configured too: managed, warned once (docs/weights.md)."""
        if key in self._warned_shared:
            return
        self._warned_shared.add(key)
        self.event(
            ref,
            WARNING,
            REASON_SHARED_ROUTER,
            "another traffic router is configured in spec.strategy.canary.trafficRouting: "
            "it and Kong both split this Rollout's traffic with Argo's weights",
        )

    def valid_again(self, key: RolloutKey) -> None:
        self._invalid.pop(key, None)

    def failed(
        self,
        key: RolloutKey,
        ref: ObjectRef | None,
        error: KongError,
        *,
        upstream: str,
        attempt: int,
        retry_in: float,
        shared: str | None,
    ) -> None:
        """A write Kong refused or never answered. ``shared`` names a cause every Rollout
        shares (``kong_auth``, ``kong_down``, ``kong_not_ready``): logged once a minute for
        all of them (the metrics count each), not once per Rollout per retry."""
        self.metrics.reconcile_errors.labels(reason=error.reason).inc()
        level = logging.WARNING
        if shared is not None and not self.gate.allow(shared):
            level = logging.DEBUG
        logger.log(
            level,
            "writing Kong failed (attempt %d, retry in %.1fs): %s",
            attempt,
            retry_in,
            error,
            extra={"rollout": str(key), "upstream": upstream},
        )
        if attempt == 1 or attempt % 10 == 0:
            self.event(ref, WARNING, REASON_WRITE_FAILED, str(error))

    def forget(self, key: RolloutKey, namespace: str, name: str, upstream: str | None) -> None:
        self._invalid.pop(key, None)
        self._warned_shared.discard(key)
        self._warned_algorithm.pop(key, None)
        self._dry_run_said.pop(key, None)
        if upstream is not None:
            self.metrics.forget_rollout(namespace, name, upstream)


def drift_counts(found: Iterable[Drift], applied: dict[str, int]) -> dict[str, int]:
    """Drift an apply corrected, by kind — only where Kong differed from what we last put."""
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


def drift_text(found: Iterable[Drift], roles: dict[str, str]) -> str:
    """``canary 10.0.0.2:80 90 → 25, stable 10.0.0.1:80 missing → 75`` for logs and Events."""
    parts = []
    for d in found:
        if d.target is None:
            parts.append("upstream missing → created")
            continue
        if not d.corrected:
            continue
        role = roles.get(d.target, d.kind)
        seen = "missing" if d.observed is None else str(d.observed)
        parts.append(f"{role} {d.target} {seen} → {d.expected}")
    return ", ".join(parts) or "no target differed"


def weights_text(plan: DesiredUpstream) -> str:
    return ", ".join(f"{t.role} {t.target}={t.weight}" for t in plan.targets)


def fmt(weights: dict[str, int] | None) -> str:
    if not weights:
        return "{}"
    return "{" + ", ".join(f"{t}: {w}" for t, w in weights.items()) + "}"
