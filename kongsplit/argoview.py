"""A Rollout as ``kubectl argo rollouts get rollout`` shows it: phase, step, ReplicaSets. Pure.

Read from raw Kubernetes JSON, leniently (a field of the wrong type reads as absent), because
this is a view: it must show a Rollout that ``rollouts.parse_rollout`` refuses too. Each
function restates the Argo Rollouts function named in its docstring (its source:
pkg/kubectl-argo-rollouts/info/rollout_info.go, replicaset_info.go and utils/rollout/rolloututil.go
of argoproj/argo-rollouts), so the status an operator reads here is the one Argo's plugin prints
for the same object.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "PHASES",
    "ReplicaSetInfo",
    "Step",
    "age",
    "current_set_weight",
    "replica_counts",
    "replicaset_infos",
    "rollout_phase",
    "step_of",
    "strategy",
]

#: Argo's ``RolloutPhase`` values (pkg/apis/rollouts/v1alpha1/types.go). An abort is not a phase
#: of its own: Argo shows ``Degraded`` with the message ``RolloutAborted: …``.
PHASES = ("Healthy", "Progressing", "Paused", "Degraded")

REVISION_ANNOTATION = "rollout.argoproj.io/revision"
HASH_LABEL = "rollouts-pod-template-hash"
_ABORTED = "RolloutAborted"
_TIMED_OUT = "ProgressDeadlineExceeded"
#: ``AnalysisPhase.Completed()`` (pkg/apis/rollouts/v1alpha1/analysis_types.go).
_ANALYSIS_DONE = ("Successful", "Failed", "Error", "Inconclusive")


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: object, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _canary(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    canary = _map(_map(_map(obj.get("spec")).get("strategy"))).get("canary")
    return canary if isinstance(canary, Mapping) else None


def strategy(obj: Mapping[str, Any]) -> str:
    """``Canary``, ``BlueGreen`` or ``unknown``, as the plugin's STRATEGY column."""
    if _canary(obj) is not None:
        return "Canary"
    if isinstance(_map(_map(obj.get("spec")).get("strategy")).get("blueGreen"), Mapping):
        return "BlueGreen"
    return "unknown"


def desired_replicas(obj: Mapping[str, Any]) -> int:
    """``defaults.GetReplicasOrDefault(spec.replicas)``: 1 when unset."""
    replicas = _map(obj.get("spec")).get("replicas")
    return _int(replicas, 1) if replicas is not None else 1


# --------------------------------------------------------------------------- the phase


def _generation_observed(obj: Mapping[str, Any]) -> bool:
    """``isGenerationObserved`` (utils/rollout/rolloututil.go): a non-numeric observedGeneration
    (v0.9 and older) counts as observed, and so does one above metadata.generation."""
    observed = _map(obj.get("status")).get("observedGeneration")
    text = str(observed) if isinstance(observed, str | int) and observed != "" else ""
    if not text.lstrip("-").isdigit():
        return True
    generation = _int(_map(obj.get("metadata")).get("generation"))
    return int(text) >= generation


def _unpausing(status: Mapping[str, Any]) -> bool:
    """``IsUnpausing``: the controller paused it, and the pause conditions were cleared."""
    return status.get("controllerPause") is True and not _list(status.get("pauseConditions"))


def rollout_phase(obj: Mapping[str, Any]) -> tuple[str, str]:
    """``GetRolloutPhase`` (utils/rollout/rolloututil.go): (phase, message)."""
    status = _map(obj.get("status"))
    if not _generation_observed(obj):
        return "Progressing", "waiting for rollout spec update to be observed"
    if _unpausing(status):
        return "Progressing", "waiting for rollout to unpause"
    # Argo's next check (a workloadRef's generation) reads spec.templateResolvedFromRef, which is
    # never serialised (json:"-"): read from the API, as the plugin reads it, it is always false.
    phase = _str(status.get("phase"))
    if phase:  # Argo 1.0+ computes the phase in the controller
        return phase, _str(status.get("message"))
    return _calculate_phase(obj)


def _calculate_phase(obj: Mapping[str, Any]) -> tuple[str, str]:
    """``CalculateRolloutPhase``: the client-side fallback for a status without ``phase``."""
    spec, status = _map(obj.get("spec")), _map(obj.get("status"))
    for cond in _list(status.get("conditions")):
        cond = _map(cond)
        if cond.get("type") == "InvalidSpec":
            return "Degraded", f"InvalidSpec: {_str(cond.get('message'))}"
        if cond.get("reason") in (_ABORTED, _TIMED_OUT):
            return "Degraded", f"{cond['reason']}: {_str(cond.get('message'))}"
    if spec.get("paused") is True:
        return "Paused", "manually paused"
    for cond in _list(status.get("pauseConditions")):
        return "Paused", _str(_map(cond).get("reason"))
    restart_at = spec.get("restartAt")
    if restart_at and restart_at != status.get("restartedAt"):
        return "Progressing", "rollout is restarting"
    updated = _int(status.get("updatedReplicas"))
    available = _int(status.get("availableReplicas"))
    if updated < desired_replicas(obj):
        return "Progressing", "more replicas need to be updated"
    if available < updated:
        return "Progressing", "updated replicas are still becoming available"
    stable_rs, current = _str(status.get("stableRS")), _str(status.get("currentPodHash"))
    blue_green = _map(spec.get("strategy")).get("blueGreen")
    if isinstance(blue_green, Mapping):
        active = _str(_map(status.get("blueGreen")).get("activeSelector"))
        if not active or active != current:
            return "Progressing", "active service cutover pending"
        if not stable_rs or stable_rs != current:
            if isinstance(_map(blue_green).get("postPromotionAnalysis"), Mapping):
                run = _map(_map(status.get("blueGreen")).get("postPromotionAnalysisRunStatus"))
                if run.get("status") not in _ANALYSIS_DONE:
                    return "Progressing", "waiting for analysis to complete"
            return "Progressing", "waiting for post-promotion verification to complete"
    else:
        canary = _canary(obj)
        if canary is not None:
            if not isinstance(canary.get("trafficRouting"), Mapping) and _int(
                status.get("replicas")
            ) > _int(status.get("updatedReplicas")):
                return "Progressing", "old replicas are pending termination"
            if not stable_rs or stable_rs != current:
                return "Progressing", "waiting for all steps to complete"
    return "Healthy", ""


# --------------------------------------------------------------------------- step and weight


@dataclass(frozen=True)
class Step:
    """Where a canary Rollout is in its steps: ``3/8`` and what step 3 is."""

    index: int | None  # status.currentStepIndex
    count: int  # len(spec.strategy.canary.steps)
    current: str | None  # the step at the index in words ("pause", "setWeight 25"); None past end

    @property
    def text(self) -> str:
        """The plugin's STEP column: ``index/count``, ``-`` without an index or steps."""
        return f"{self.index}/{self.count}" if self.index is not None and self.count else "-"


def _describe_step(step: Mapping[str, Any]) -> str:
    if "setWeight" in step:
        return f"setWeight {step['setWeight']}"
    if "pause" in step:
        duration = _map(step.get("pause")).get("duration")
        return f"pause {duration}" if duration not in (None, "") else "pause"
    for kind in ("analysis", "experiment", "setCanaryScale", "setHeaderRoute", "setMirrorRoute"):
        if kind in step:
            return kind
    return next(iter(step), "step")


def step_of(obj: Mapping[str, Any]) -> Step:
    canary = _canary(obj)
    steps = [_map(s) for s in _list(canary.get("steps"))] if canary is not None else []
    raw = _map(obj.get("status")).get("currentStepIndex")
    index = raw if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0 else None
    at = index or 0
    current = _describe_step(steps[at]) if steps and at < len(steps) else None
    return Step(index, len(steps), current)


def _max_weight(canary: Mapping[str, Any]) -> int:
    routing = _map(canary.get("trafficRouting"))
    return _int(routing.get("maxTrafficWeight"), 100) or 100


def current_set_weight(obj: Mapping[str, Any]) -> int | None:
    """``GetCurrentSetWeight`` (utils/replicaset/canary.go), the plugin's SET-WEIGHT: 0 when
    aborted, M past the last step or without steps, else the last setWeight at or before the
    current step (0 if none). None for a Rollout that is not a canary."""
    canary = _canary(obj)
    if canary is None:
        return None
    status = _map(obj.get("status"))
    if status.get("abort") is True:
        return 0
    steps = [_map(s) for s in _list(canary.get("steps"))]
    index = _int(status.get("currentStepIndex"))
    if not steps or index >= len(steps):
        return _max_weight(canary)
    for step in reversed(steps[: index + 1]):
        weight = step.get("setWeight")
        if isinstance(weight, int) and not isinstance(weight, bool):
            return weight
    return 0


def replica_counts(obj: Mapping[str, Any]) -> dict[str, int]:
    """The plugin's Replicas block: desired, current, updated, ready, available."""
    status = _map(obj.get("status"))
    return {
        "desired": desired_replicas(obj),
        "current": _int(status.get("replicas")),
        "updated": _int(status.get("updatedReplicas")),
        "ready": _int(status.get("readyReplicas")),
        "available": _int(status.get("availableReplicas")),
    }


# --------------------------------------------------------------------------- ReplicaSets


@dataclass(frozen=True)
class ReplicaSetInfo:
    name: str
    revision: int
    role: str | None  # "stable", "canary" or None
    status: str  # Healthy, Progressing, ScaledDown, ReplicaFailure (getReplicaSetHealth)
    desired: int  # spec.replicas
    current: int  # status.replicas
    ready: int  # status.readyReplicas
    available: int  # status.availableReplicas
    created: str | None  # metadata.creationTimestamp


def _health(rs: Mapping[str, Any]) -> str:
    """``getReplicaSetHealth`` (info/replicaset_info.go)."""
    meta, spec, status = _map(rs.get("metadata")), _map(rs.get("spec")), _map(rs.get("status"))
    wanted = spec.get("replicas")
    wanted_n = _int(wanted) if wanted is not None else None
    if _int(meta.get("generation")) <= _int(status.get("observedGeneration")):
        for cond in _list(status.get("conditions")):
            cond = _map(cond)
            if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
                return "ReplicaFailure"
        if wanted_n is not None and _int(status.get("availableReplicas")) < wanted_n:
            return "Progressing"
    else:
        return "Progressing"
    if wanted_n == 0:
        return "ScaledDown"
    return "Healthy"


def replicaset_infos(
    obj: Mapping[str, Any], replicasets: Iterable[Mapping[str, Any]]
) -> list[ReplicaSetInfo]:
    """``GetReplicaSetInfo``: the Rollout's own ReplicaSets (owner UID), newest revision first,
    each marked stable (``status.stableRS``) or canary (``status.currentPodHash``)."""
    meta, status = _map(obj.get("metadata")), _map(obj.get("status"))
    uid = _str(meta.get("uid"))
    stable, current = _str(status.get("stableRS")), _str(status.get("currentPodHash"))
    out = []
    for rs in replicasets:
        rs_meta = _map(rs.get("metadata"))
        owners = [_str(_map(o).get("uid")) for o in _list(rs_meta.get("ownerReferences"))]
        if not uid or uid not in owners:
            continue
        pod_hash = _str(_map(rs_meta.get("labels")).get(HASH_LABEL))
        role = None
        if pod_hash and pod_hash == stable:
            role = "stable"
        elif pod_hash and pod_hash == current and _canary(obj) is not None:
            role = "canary"
        revision = _str(_map(rs_meta.get("annotations")).get(REVISION_ANNOTATION))
        spec, rs_status = _map(rs.get("spec")), _map(rs.get("status"))
        out.append(
            ReplicaSetInfo(
                name=_str(rs_meta.get("name")),
                revision=int(revision) if revision.isdigit() else 0,
                role=role,
                status=_health(rs),
                desired=_int(spec.get("replicas"), 1) if "replicas" in spec else 1,
                current=_int(rs_status.get("replicas")),
                ready=_int(rs_status.get("readyReplicas")),
                available=_int(rs_status.get("availableReplicas")),
                created=_str(rs_meta.get("creationTimestamp")) or None,
            )
        )
    out.sort(key=lambda r: (-r.revision, r.name))
    return out


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """A Kubernetes timestamp → the age as Kubernetes' ``duration.HumanDuration`` writes it
    (``42s``, ``5m30s``, ``3h5m``, ``2d4h``); ``-`` when unknown."""
    if not timestamp:
        return "-"
    try:
        when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "-"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = int(((now or datetime.now(UTC)) - when).total_seconds())
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    return f"{hours // (24 * 365)}y"
