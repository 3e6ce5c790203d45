"""The weight engine: a parsed Rollout in, the split Argo Rollouts would route out. Pure.

This module owns one decision: the canary weight `C` (and the experiment destinations) Argo's
`reconcileTrafficRouting` (Argo's rollout/trafficrouting.go) would have its routers carry *now*,
following the rule ladder docs/weights.md lists, sharpened by the canary ReplicaSet where Argo
would read it (`AtDesiredReplicaCountsForCanary`, utils/replicaset/canary.go). Everything else is
derived: `stable = M - C - Σadditional` (clamped at 0), the Services (ping-pong resolved as
`GetStableAndCanaryServices` does) and the *hold* of docs/weights.md ("follow Argo's order, not
just its numbers"). No I/O and no asyncio here; `kongsplit.desired` maps a `Split` onto Kong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kongsplit.rollouts import (
    KONG_MAX_WEIGHT,
    CanaryScale,
    ObjectError,
    RecordedWeights,
    ReplicaSet,
    Rollout,
    WeightRecord,
    parse_rollout,
)

__all__ = [
    "RULES",
    "Destination",
    "Skip",
    "Split",
    "compute",
    "compute_json",
    "desired_canary_replicas",
    "resolve_services",
]

#: Every value `Split.rule` can take, in ladder order.
RULES = (
    "dynamic-rollback",
    "fully-promoted",
    "aborted",
    "new-rs-unavailable",
    "promote-full",
    "recorded",
    "stale-record",
    "no-steps",
    "replica-gate-previous",
    "end-of-steps",
    "step",
)


@dataclass(frozen=True, slots=True)
class Destination:
    service: str
    weight: int


@dataclass(frozen=True)
class Split:
    """The weights to hold in Kong for one Rollout, and why.

    `canary + stable + Σadditional == max` unless the recorded destinations alone exceed what is
    left (then `stable` is clamped to 0 and `notes` says so). `hold`, when set, means Argo's
    order requires writing nothing now (docs/weights.md "Holds"); the weights are still Argo's
    answer.
    """

    canary: int
    stable: int
    max: int
    additional: tuple[Destination, ...]
    canary_service: str | None
    stable_service: str | None
    rule: str
    hold: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Skip:
    """No split for this object: `invalid` says whether that is an error to report."""

    reason: str
    field: str | None = None
    invalid: bool = False


@dataclass(frozen=True, slots=True)
class _Choice:
    canary: int
    rule: str
    additional: tuple[Destination, ...] = ()
    notes: tuple[str, ...] = ()


class _BadRecord(Exception):
    """Internal: a recorded weight the engine would use is out of range."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


# --------------------------------------------------------------------------- public


def compute(
    rollout: Rollout,
    *,
    canary_rs: ReplicaSet | None = None,
    stable_rs: ReplicaSet | None = None,
    stable_service_hash: str | None = None,
) -> Split | Skip:
    """Argo's traffic split for `rollout` at this moment (docs/weights.md).

    `canary_rs` is the ReplicaSet whose pod-template-hash is `status.currentPodHash`: with it,
    the replica gate (`AtDesiredReplicaCountsForCanary`) applies whenever Argo recorded no fresh
    weights. `stable_rs` (the
    one whose hash is `status.stableRS`) is only read for a dynamicStableScale abort without
    recorded weights (`calculateDesiredWeightOnAbortOrStableRollback`). `stable_service_hash` is the
    stable Service's current
    `rollouts-pod-template-hash` selector value; None means unknown (then no promotion hold).
    A ReplicaSet whose hash does not match is ignored rather than trusted.
    """
    if rollout.blue_green:
        return Skip("blue-green Rollout: no traffic weights")
    if not 1 <= rollout.max_traffic_weight <= KONG_MAX_WEIGHT:
        # parse_rollout never builds this; a hand-made Rollout could, and M is a divisor here.
        field = "spec.strategy.canary.trafficRouting.maxTrafficWeight"
        return Skip(
            f"Rollout {rollout.key}: {field}: must be between 1 and {KONG_MAX_WEIGHT}, "
            f"got {rollout.max_traffic_weight}",
            field=field,
            invalid=True,
        )
    if canary_rs is not None and (
        rollout.current_pod_hash is None or canary_rs.pod_template_hash != rollout.current_pod_hash
    ):
        canary_rs = None
    if stable_rs is not None and (
        rollout.stable_rs is None or stable_rs.pod_template_hash != rollout.stable_rs
    ):
        stable_rs = None
    try:
        choice = _choose(rollout, canary_rs, stable_rs)
    except _BadRecord as bad:
        return Skip(
            f"Rollout {rollout.key}: {bad.field}: {bad.reason}", field=bad.field, invalid=True
        )

    m = rollout.max_traffic_weight
    notes = list(choice.notes)
    canary = choice.canary
    if not 0 <= canary <= m:  # only reachable through arithmetic on odd inputs; never write it
        notes.append(f"canary weight {canary} clamped to 0..{m}")
        canary = min(max(canary, 0), m)
    experiments = sum(d.weight for d in choice.additional)
    stable = m - canary - experiments
    if stable < 0:
        # Argo caps nothing (`calculateWeightStatus`): its recorded stable would be negative. Kong
        # cannot
        # hold a negative weight, so the stable side carries 0 and the sum exceeds M.
        notes.append(
            f"canary {canary} + experiments {experiments} exceed max {m}: stable clamped to 0"
        )
        stable = 0
    canary_service, stable_service = resolve_services(rollout)
    return Split(
        canary=canary,
        stable=stable,
        max=m,
        additional=choice.additional,
        canary_service=canary_service,
        stable_service=stable_service,
        rule=choice.rule,
        hold=_hold(rollout, stable_service_hash),
        notes=tuple(notes),
    )


def compute_json(
    obj: object,
    *,
    canary_rs: ReplicaSet | None = None,
    stable_rs: ReplicaSet | None = None,
    stable_service_hash: str | None = None,
    default_namespace: str = "default",
) -> Split | Skip:
    """`parse_rollout` then `compute`; a malformed Rollout becomes `Skip(invalid=True)`."""
    rollout = parse_rollout(obj, default_namespace=default_namespace)
    if isinstance(rollout, ObjectError):
        return Skip(str(rollout), field=rollout.field, invalid=True)
    return compute(
        rollout, canary_rs=canary_rs, stable_rs=stable_rs, stable_service_hash=stable_service_hash
    )


def resolve_services(rollout: Rollout) -> tuple[str | None, str | None]:
    """(canary Service, stable Service), ping-pong resolved as Argo does
    (`GetStableAndCanaryServices`,
    rollout/trafficrouting/service_helper.go).

    ALB always prefers ping-pong; other routers use it only when both named Services are unset.
    `status.canary.stablePingPong == "ping"` makes ping the stable side, anything else pong.
    """
    pp = rollout.ping_pong
    if pp is not None and (
        "alb" in rollout.routers
        or (rollout.canary_service is None and rollout.stable_service is None)
    ):
        if rollout.stable_ping_pong == "ping":
            return pp.pong_service, pp.ping_service
        return pp.ping_service, pp.pong_service
    return rollout.canary_service, rollout.stable_service


def desired_canary_replicas(rollout: Rollout) -> int:
    """The canary pod count Argo scales toward at the current step
    (`CalculateReplicaCountsForTrafficRoutedCanary`,
    utils/replicaset/canary.go).

    Traffic-routed: `setCanaryScale` in force, else `ceil(W x replicas / M)` floored by
    `minPodsPerReplicaSet`. Basic canary: Argo's closest-count approximation of W, end state.
    """
    m = rollout.max_traffic_weight
    replicas = rollout.replicas
    weight: int
    if rollout.promote_full or rollout.stable_rs is None or rollout.fully_promoted:
        weight = m
    else:
        scale = _set_canary_scale_in_force(rollout)
        if scale is not None and scale.replicas is not None:
            # An explicit count is used as is; only dynamicStableScale floors it again.
            return (
                _min_pods(rollout, scale.replicas)
                if rollout.dynamic_stable_scale
                else scale.replicas
            )
        if scale is not None and scale.weight is not None:
            weight = scale.weight
        else:
            weight = _current_set_weight(rollout)
    if not rollout.traffic_routing:
        return _basic_canary_replicas(replicas, weight, m, _max_surge(rollout))
    return _min_pods(rollout, math.ceil(weight * replicas / m))


# --------------------------------------------------------------------------- the ladder


def _choose(
    rollout: Rollout, canary_rs: ReplicaSet | None, stable_rs: ReplicaSet | None
) -> _Choice:
    m = rollout.max_traffic_weight
    # Argo nulls status.canary.weights when no router field is set (`NewTrafficRoutingReconciler`):
    # a leftover is stale.
    record = rollout.weights if rollout.has_router else None
    fresh = (
        record is not None
        and record.canary.pod_template_hash == rollout.current_pod_hash
        and record.stable.pod_template_hash == rollout.stable_rs
    )

    # 1. Dynamic rollback to stable (`reconcileTrafficRouting`, first branch): the recorded weight
    # is held until the
    #    desired (= stable) RS is fully available; the canary RS tells us when that is.
    if (
        record is not None
        and rollout.fully_promoted
        and rollout.traffic_routing
        and rollout.dynamic_stable_scale
        and record.canary.pod_template_hash != rollout.current_pod_hash
        and (canary_rs is None or canary_rs.available_replicas < rollout.replicas)
    ):
        return _Choice(_recorded_canary(record.canary, m), "dynamic-rollback")

    # 2. Fully promoted, a missing status included: everything on the stable Service.
    if rollout.fully_promoted:
        return _Choice(0, "fully-promoted")

    # 3. Aborted: 0 at once, except that dynamicStableScale walks back
    # (`calculateDesiredWeightOnAbortOrStableRollback`).
    if rollout.abort:
        if not rollout.dynamic_stable_scale:
            return _Choice(0, "aborted")
        if record is not None:
            # Argo's next value never exceeds the recorded one; what is recorded is applied now.
            return _Choice(_recorded_canary(record.canary, m), "aborted")
        if canary_rs is not None and stable_rs is not None:
            return _Choice(_dynamic_abort_weight(rollout, canary_rs, stable_rs), "aborted")
        return _Choice(
            0,
            "aborted",
            notes=(
                "dynamicStableScale abort without recorded weights or ReplicaSets: canary 0, "
                "although the stable ReplicaSet may not be fully scaled yet",
            ),
        )

    # fresh records are mirrored as they are (docs/weights.md)
    gate = canary_rs if not fresh else None

    # 4. The new ReplicaSet has no available pod (`reconcileTrafficRouting`: newRS unavailable):
    # never weight to it.
    if gate is not None and gate.available_replicas == 0:
        return _Choice(0, "new-rs-unavailable")

    # 5. promote --full (`reconcileTrafficRouting`: promoteFull). Argo's next SetWeight carries no
    # experiments.
    if rollout.promote_full:
        if fresh:
            assert record is not None
            return _Choice(_recorded_canary(record.canary, m), "promote-full")
        if rollout.dynamic_stable_scale and gate is not None and rollout.replicas > 0:
            return _Choice(min(m * gate.available_replicas // rollout.replicas, m), "promote-full")
        return _Choice(0, "promote-full")

    # 6. Fresh record: exactly what the routers carry now, experiments included.
    if fresh:
        assert record is not None
        return _Choice(
            _recorded_canary(record.canary, m), "recorded", additional=_additional(record, m)
        )

    # 7. A record of the previous revision: the new one has just started, its RS has no pod.
    if record is not None and record.canary.pod_template_hash != rollout.current_pod_hash:
        return _Choice(0, "stale-record")

    # 8. The step rule (`reconcileTrafficRouting`: the step branches), with the replica gate when
    # the canary RS is known.
    steps = rollout.steps
    if not steps:
        return _Choice(0, "no-steps")
    index = rollout.current_step_index or 0
    if gate is not None and not _at_desired_count(rollout, gate):
        # Argo walks back from index-1; an index past the end (manual patch only) is clamped.
        return _Choice(
            _last_set_weight(rollout, min(index, len(steps)) - 1), "replica-gate-previous"
        )
    if index >= len(steps):
        return _Choice(m, "end-of-steps")
    return _Choice(_last_set_weight(rollout, index), "step")


def _hold(rollout: Rollout, stable_service_hash: str | None) -> str | None:
    """Why Argo's order says write nothing now, or None (docs/weights.md "Holds")."""
    if rollout.abort:
        return None  # abort beats every hold: canary 0 must reach Kong at once
    og, gen = rollout.observed_generation, rollout.generation
    if og is not None and gen is not None and og != gen:
        return (
            f"status.observedGeneration {og} differs from metadata.generation {gen}: "
            "the status may still describe the previous spec"
        )
    if (
        stable_service_hash is not None
        and rollout.stable_rs is not None
        and rollout.fully_promoted
        and stable_service_hash != rollout.stable_rs
    ):
        return (
            f"promotion in flight: the stable Service still selects {stable_service_hash}, "
            f"not stableRS {rollout.stable_rs}"
        )
    return None


# --------------------------------------------------------------------------- helpers


def _recorded_canary(rec: WeightRecord, m: int) -> int:
    if not 0 <= rec.weight <= m:
        raise _BadRecord(
            "status.canary.weights.canary.weight",
            f"recorded canary weight {rec.weight} is outside 0..{m}",
        )
    return rec.weight


def _additional(record: RecordedWeights, m: int) -> tuple[Destination, ...]:
    out: list[Destination] = []
    for i, rec in enumerate(record.additional):
        path = f"status.canary.weights.additional[{i}]"
        if not 0 <= rec.weight <= m:
            raise _BadRecord(
                f"{path}.weight", f"recorded experiment weight {rec.weight} is outside 0..{m}"
            )
        if rec.service_name is None:
            raise _BadRecord(
                f"{path}.serviceName", "an experiment destination needs a Service name"
            )
        out.append(Destination(rec.service_name, rec.weight))
    return tuple(out)


def _last_set_weight(rollout: Rollout, start: int) -> int:
    """The first setWeight found walking back from `start` (inclusive), else 0."""
    for i in range(min(start, len(rollout.steps) - 1), -1, -1):
        weight = rollout.steps[i].set_weight
        if weight is not None:
            return weight
    return 0


def _current_set_weight(rollout: Rollout) -> int:
    """Argo's `GetCurrentSetWeight` (utils/replicaset/canary.go): 0 when aborted, M past the end or
    without steps."""
    if rollout.abort:
        return 0
    index = rollout.current_step_index or 0
    if index >= len(rollout.steps):
        return rollout.max_traffic_weight
    return _last_set_weight(rollout, index)


def _set_canary_scale_in_force(rollout: Rollout) -> CanaryScale | None:
    """The setCanaryScale in force at the index (`UseSetCanaryScale`), or None."""
    if not rollout.traffic_routing:
        return None  # setCanaryScale only works with trafficRouting
    if rollout.abort and rollout.abort_scale_down_delay_seconds != 0:
        return None  # aborted: ignored unless the canary is explicitly kept (delay 0)
    index = rollout.current_step_index or 0
    if index >= len(rollout.steps):
        return None
    for i in range(index, -1, -1):
        scale = rollout.steps[i].canary_scale
        if scale is None:
            continue
        return None if scale.match_traffic_weight else scale
    return None


def _min_pods(rollout: Rollout, count: int) -> int:
    """minPodsPerReplicaSet as a floor (traffic-routed only), capped at spec.replicas; 0 stays 0."""
    floor = rollout.min_pods_per_replica_set
    if count == 0 or floor is None or not rollout.traffic_routing:
        return count
    return max(count, min(floor, rollout.replicas))


def _max_surge(rollout: Rollout) -> int:
    surge = rollout.max_surge
    if isinstance(surge, int):
        return surge
    # A percentage of spec.replicas, rounded up for surge as Kubernetes does.
    return math.ceil(rollout.replicas * int(surge[:-1]) / 100)


def _basic_canary_replicas(replicas: int, weight: int, m: int, max_surge: int) -> int:
    """Basic canary: the canary count closest to `weight`, with one surge pod allowed.

    Restates Argo's approximation for Rollouts without trafficRouting (end state only: Argo's
    own gate there compares against the count of its current scaling pass, which needs every
    ReplicaSet of the Rollout).
    """
    if replicas == 0:
        return 0
    exact = replicas * weight / m
    ceil_count, floor_count = math.ceil(exact), math.floor(exact)

    def tied(total: int) -> bool:
        return math.modf(total * (weight / m))[0] == 0.5

    zero_allowed = weight in (0, m) or (replicas == 1 and max_surge == 0)
    options: list[tuple[int, int]] = []
    if ceil_count < replicas or zero_allowed:
        options.append((ceil_count, replicas))
    if not tied(replicas) and (floor_count != 0 or zero_allowed):
        options.append((floor_count, replicas))
    if max_surge > 0:
        options.append((ceil_count, replicas + 1))
        if not tied(replicas + 1) and (floor_count != 0 or zero_allowed):
            options.append((floor_count, replicas + 1))
    if not options:
        return 0
    # The first option with the smallest distance from the asked weight wins.
    return min(options, key=lambda o: abs(o[0] * m / o[1] - weight))[0]


def _at_desired_count(rollout: Rollout, canary_rs: ReplicaSet) -> bool:
    """Argo's AtDesiredReplicaCountsForCanary, canary side (utils/replicaset/canary.go).

    The stable side ("all stable pods created") is left out: we do not watch the stable RS's
    pod count, and without dynamicStableScale Argo keeps it full anyway (docs/weights.md).
    """
    desired = desired_canary_replicas(rollout)
    threshold = rollout.replica_progress_threshold
    if threshold is None or threshold.value < 0:
        return canary_rs.replicas == desired and canary_rs.available_replicas == desired
    if threshold.type == "Percent":
        # available / desired x 100 >= value, in integers (Argo uses floats with an epsilon).
        return desired == 0 or canary_rs.available_replicas * 100 >= threshold.value * desired
    return canary_rs.available_replicas >= threshold.value


def _dynamic_abort_weight(rollout: Rollout, canary_rs: ReplicaSet, stable_rs: ReplicaSet) -> int:
    """`calculateDesiredWeightOnAbortOrStableRollback` with no recorded weights: the larger of the
    stable's shortfall and the step weight
    whose pod count is below what the canary still runs."""
    m, replicas = rollout.max_traffic_weight, rollout.replicas
    if replicas == 0:
        return 0
    expected_canary_pods = replicas - stable_rs.available_replicas
    canary_pods = max(expected_canary_pods, canary_rs.available_replicas)
    if rollout.traffic_routing and rollout.abort_scale_down_delay_seconds:
        # An explicit (non-zero) abortScaleDownDelaySeconds keeps the canary at full size until
        # its deadline, so its size must not hold the weight up.
        canary_pods = expected_canary_pods
    desired = 0
    for step in reversed(rollout.steps):
        if step.set_weight is not None and math.ceil(step.set_weight * replicas / m) < canary_pods:
            desired = step.set_weight
            break
    expected = max(0, m - (m * stable_rs.available_replicas) // replicas)
    return min(max(expected, desired), m)
