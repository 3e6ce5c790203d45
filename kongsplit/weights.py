"""The weight engine: a parsed Rollout in, the split Argo Rollouts would route out. Pure.

This module owns one decision: the canary weight `C` (and the experiment destinations) Argo's
`reconcileTrafficRouting` (Argo's rollout/trafficrouting.go) would send its routers *now*, and
whether Argo would send anything at all (its stable availability gate, `checkReplicasAvailable`).
The ladder is `RULES`, the reasons to write nothing are `HOLDS`; docs/weights.md's tables are
generated from both. Everything else is derived: `stable = M - C - Σadditional` (clamped at 0),
the Services (ping-pong resolved as `GetStableAndCanaryServices` does) and the router context.
No I/O and no asyncio here; `kongsplit.desired` maps a `Split` onto Kong.

The functions named after Argo's (`current_set_weight`, `at_desired_replica_counts`,
`replica_counts_traffic_routed`, `dynamically_rolling_back`, `abort_or_rollback_weight`,
`stable_can_carry`, `generation_observed`) restate them so tests/data/argo vectors can hold each
one to the states Argo's own tests assert.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kongsplit.rollouts import (
    KONG_MAX_WEIGHT,
    CanaryScale,
    ObjectError,
    ProgressThreshold,
    RecordedWeights,
    ReplicaSet,
    Rollout,
    WeightRecord,
    parse_rollout,
)

__all__ = [
    "HOLDS",
    "HOLD_IDS",
    "ROUTER_CONTEXTS",
    "RULES",
    "RULE_IDS",
    "Destination",
    "Rule",
    "Skip",
    "Split",
    "abort_or_rollback_weight",
    "at_desired_replica_counts",
    "basic_canary_replica_counts",
    "compute",
    "compute_json",
    "current_set_weight",
    "desired_canary_replicas",
    "desired_canary_weight",
    "dynamically_rolling_back",
    "generation_observed",
    "replica_counts_traffic_routed",
    "replica_progress_threshold_met",
    "resolve_services",
    "router_context",
    "stable_can_carry",
]


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of docs/weights.md: `id` is what `Split.rule`/`Split.hold_id` carry."""

    id: str
    when: str  # the state, in words
    weight: str  # the canary weight (rules) or what is written (holds)
    argo: str  # the Argo function (and file) the row restates


#: The rule ladder, in order: the first that applies gives the canary weight.
RULES: tuple[Rule, ...] = (
    Rule(
        "dynamic-rollback",
        "`dynamicStableScale`, promoted, the recorded canary hash is not the current one and the "
        "promoted ReplicaSet is below `spec.replicas` (the update was rolled back)",
        "the abort/rollback walk-back against the previous canary",
        "`IsDynamicallyRollingBackToStable` (utils/rollout/rolloututil.go), "
        "`calculateDesiredWeightOnAbortOrStableRollback` (rollout/trafficrouting.go)",
    ),
    Rule(
        "fully-promoted",
        "`status.stableRS == status.currentPodHash` (no status included)",
        "0",
        "`IsFullyPromoted` (utils/rollout/rolloututil.go)",
    ),
    Rule(
        "aborted",
        "`status.abort`",
        "0; with `dynamicStableScale`: the larger of the stable's shortfall and the step the "
        "canary still covers, never above the recorded weight",
        "`calculateDesiredWeightOnAbortOrStableRollback` (rollout/trafficrouting.go), "
        "`GetDesiredCanaryWeight` (utils/replicaset/canary.go)",
    ),
    Rule(
        "new-rs-unavailable",
        "the canary ReplicaSet has no available pod, or the ReplicaSets are known and none has "
        "the current hash (Argo creates it with 0 pods), or `spec.replicas: 0`",
        "0",
        "`reconcileTrafficRouting` newRS branch (rollout/trafficrouting.go)",
    ),
    Rule(
        "promote-full",
        "`status.promoteFull`",
        "`dynamicStableScale`: M × canary available ÷ `spec.replicas`; else the recorded weight, "
        "else 0",
        "`reconcileTrafficRouting` PromoteFull branch (rollout/trafficrouting.go)",
    ),
    Rule(
        "recorded",
        "ReplicaSets unknown (offline `plan` without them) and `status.canary.weights` of the "
        "current hashes, a router configured",
        "the recorded weight (what the routers carry), experiments included",
        "`calculateWeightStatus` (rollout/trafficrouting.go)",
    ),
    Rule(
        "stale-record",
        "ReplicaSets unknown and a record of a previous revision",
        "0 (the new ReplicaSet has just started)",
        "`reconcileTrafficRouting` newRS branch (rollout/trafficrouting.go)",
    ),
    Rule("no-steps", "no steps", "0", "`GetCurrentCanaryStep` (utils/replicaset/canary.go)"),
    Rule(
        "replica-gate-previous",
        "the canary (or, without `dynamicStableScale`, the stable) ReplicaSet is not at the "
        "count for this step",
        "the last `setWeight` before the current step",
        "`AtDesiredReplicaCountsForCanary` (utils/replicaset/canary.go)",
    ),
    Rule(
        "end-of-steps",
        "`currentStepIndex` ≥ the number of steps",
        "M",
        "`reconcileTrafficRouting` (rollout/trafficrouting.go)",
    ),
    Rule(
        "step",
        "otherwise",
        "the last `setWeight` at or before `currentStepIndex`",
        "`GetCurrentSetWeight` (utils/replicaset/canary.go)",
    ),
)
RULE_IDS: tuple[str, ...] = tuple(r.id for r in RULES)

#: Why Argo would write nothing now (kongsplit keeps Kong where it is), first match wins.
HOLDS: tuple[Rule, ...] = (
    Rule(
        "generation-not-observed",
        "`status.observedGeneration` below `metadata.generation` (a larger one counts as observed)",
        "nothing: the status may describe the previous spec",
        "`isGenerationObserved` (utils/rollout/rolloututil.go)",
    ),
    Rule(
        "no-stable-replicaset",
        "`status.stableRS` empty (first deploy) or its ReplicaSet gone",
        "nothing (first write: the recorded weight, else canary 0)",
        "`checkReplicasAvailable` with no stable ReplicaSet (rollout/trafficrouting.go)",
    ),
    Rule(
        "stable-unavailable",
        "the stable ReplicaSet has fewer available pods than `(M − C) × spec.replicas ÷ M` "
        "(integer division) and `replicaProgressThreshold` is not met",
        "nothing (first write: the recorded weight, else C)",
        "`checkReplicasAvailable` (rollout/trafficrouting.go), `ReplicaProgressThresholdMet` "
        "(utils/replicaset/canary.go)",
    ),
    Rule(
        "promotion-in-flight",
        "promoted, but the stable Service's `rollouts-pod-template-hash` selector is not yet "
        "`status.stableRS`",
        "nothing: moving weight first would send traffic back to the old version",
        "`reconcileStableAndCanaryService` (rollout/service.go)",
    ),
)
HOLD_IDS: tuple[str, ...] = tuple(h.id for h in HOLDS)

#: `Split.router_context`: who else routes this Rollout's traffic (a fixed label set).
ROUTER_CONTEXTS = (
    "sole",  # trafficRouting without a router field: kongsplit is the only router
    "shared",  # another router is configured too: two routers split the traffic
    "basic",  # no trafficRouting: Argo scales the stable down as the canary grows
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
    order requires writing nothing now (docs/weights.md "Holds"); the weights are then what a
    first write would use. `argo_weight` is the canary weight Argo computed before its stable
    availability gate (equal to `canary` unless that gate holds).
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
    hold_id: str | None = None
    router_context: str = "sole"
    argo_weight: int | None = None


@dataclass(frozen=True)
class Skip:
    """No split for this object: `invalid` says whether that is an error to report.

    `argo_rule` names the Argo validation rule (or "InvalidSpec" for Argo's own condition) when
    Argo itself refuses the spec.
    """

    reason: str
    field: str | None = None
    invalid: bool = False
    argo_rule: str | None = None


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


@dataclass(frozen=True, slots=True)
class _View:
    """The ReplicaSets as Argo's controller sees them; `*_known` False means "not given"."""

    new_rs: ReplicaSet | None
    new_known: bool
    stable_rs: ReplicaSet | None
    stable_known: bool


# --------------------------------------------------------------------------- public


def compute(
    rollout: Rollout,
    *,
    canary_rs: ReplicaSet | None = None,
    stable_rs: ReplicaSet | None = None,
    stable_service_hash: str | None = None,
    replicasets_known: bool = False,
) -> Split | Skip:
    """Argo's traffic split for `rollout` at this moment (docs/weights.md).

    `canary_rs` is the ReplicaSet whose pod-template-hash is `status.currentPodHash`, `stable_rs`
    the one of `status.stableRS`. `replicasets_known` says the caller knows every ReplicaSet of
    the Rollout, so a missing one is really missing (Argo then creates the canary with 0 pods,
    and has no stable to send traffic to); without it a missing ReplicaSet is unknown and the
    rules that need it fall back to the recorded weights. `stable_service_hash` is the stable
    Service's `rollouts-pod-template-hash` selector value, None when unknown. A ReplicaSet whose
    hash does not match is ignored rather than trusted.
    """
    if rollout.blue_green:
        return Skip("blue-green Rollout: no traffic weights")
    who = f"Rollout {rollout.key}"
    if rollout.spec_error is not None:
        err = rollout.spec_error
        return Skip(
            f"{who}: {err.field}: Argo Rollouts marks this spec InvalidSpec ({err.rule}: "
            f"{err.message}) and stops reconciling it; kongsplit holds Kong where it is",
            field=err.field,
            invalid=True,
            argo_rule=err.rule,
        )
    if rollout.invalid_spec is not None:
        field = "status.conditions[InvalidSpec]"
        return Skip(
            f"{who}: {field}: Argo Rollouts reports InvalidSpec ({rollout.invalid_spec}) and "
            "stops reconciling it; kongsplit holds Kong where it is",
            field=field,
            invalid=True,
            argo_rule="InvalidSpec",
        )
    if not 1 <= rollout.max_traffic_weight <= KONG_MAX_WEIGHT:
        # parse_rollout never builds this; a hand-made Rollout could, and M is a divisor here.
        field = "spec.strategy.canary.trafficRouting.maxTrafficWeight"
        return Skip(
            f"{who}: {field}: must be between 1 and {KONG_MAX_WEIGHT}, "
            f"got {rollout.max_traffic_weight}",
            field=field,
            invalid=True,
        )
    view = _view(rollout, canary_rs, stable_rs, replicasets_known)
    record = rollout.weights if rollout.has_router else None
    try:
        choice = _choose(rollout, view, record)
        canary = _clamp(choice.canary, rollout.max_traffic_weight)
        hold = _hold(rollout, view, canary, stable_service_hash)
        first_write = canary
        if hold is not None and hold[0] in ("no-stable-replicaset", "stable-unavailable"):
            # Argo sends nothing: its routers keep what they carry. A first write (Kong holds
            # nothing of ours yet) uses that too: the recorded weight, else 0 on a first deploy.
            if record is not None:
                first_write = _recorded_canary(record.canary, rollout.max_traffic_weight)
            elif hold[0] == "no-stable-replicaset":
                first_write = 0
    except _BadRecord as bad:
        return Skip(f"{who}: {bad.field}: {bad.reason}", field=bad.field, invalid=True)

    m = rollout.max_traffic_weight
    notes = list(choice.notes)
    if canary != choice.canary:  # only reachable through arithmetic on odd inputs
        notes.append(f"canary weight {choice.canary} clamped to 0..{m}")
    additional = choice.additional if first_write == canary else ()
    experiments = sum(d.weight for d in additional)
    stable = m - first_write - experiments
    if stable < 0:
        # Argo caps nothing (`calculateWeightStatus`): its recorded stable would be negative.
        # Kong cannot hold a negative weight, so the stable side carries 0 and the sum exceeds M.
        notes.append(
            f"canary {first_write} + experiments {experiments} exceed max {m}: stable clamped to 0"
        )
        stable = 0
    canary_service, stable_service = resolve_services(rollout)
    return Split(
        canary=first_write,
        stable=stable,
        max=m,
        additional=additional,
        canary_service=canary_service,
        stable_service=stable_service,
        rule=choice.rule,
        hold=hold[1] if hold else None,
        notes=tuple(notes),
        hold_id=hold[0] if hold else None,
        router_context=router_context(rollout),
        argo_weight=canary,
    )


def compute_json(
    obj: object,
    *,
    canary_rs: ReplicaSet | None = None,
    stable_rs: ReplicaSet | None = None,
    stable_service_hash: str | None = None,
    replicasets_known: bool = False,
    default_namespace: str = "default",
) -> Split | Skip:
    """`parse_rollout` then `compute`; a malformed Rollout becomes `Skip(invalid=True)`."""
    rollout = parse_rollout(obj, default_namespace=default_namespace)
    if isinstance(rollout, ObjectError):
        return Skip(str(rollout), field=rollout.field, invalid=True)
    return compute(
        rollout,
        canary_rs=canary_rs,
        stable_rs=stable_rs,
        stable_service_hash=stable_service_hash,
        replicasets_known=replicasets_known,
    )


def router_context(rollout: Rollout) -> str:
    """One of `ROUTER_CONTEXTS` (docs/weights.md "Router context")."""
    if not rollout.traffic_routing:
        return "basic"
    return "shared" if rollout.has_router else "sole"


def resolve_services(rollout: Rollout) -> tuple[str | None, str | None]:
    """(canary Service, stable Service), ping-pong resolved as Argo does
    (`GetStableAndCanaryServices`, rollout/trafficrouting/service_helper.go).

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


# --------------------------------------------------------------------------- Argo's helpers


def generation_observed(rollout: Rollout) -> bool:
    """Argo's `isGenerationObserved` (utils/rollout/rolloututil.go): an unreadable
    `observedGeneration` counts as observed, and so does one above `metadata.generation`."""
    og, gen = rollout.observed_generation, rollout.generation
    return og is None or gen is None or og >= gen


def current_set_weight(rollout: Rollout) -> int:
    """Argo's `GetCurrentSetWeight` (utils/replicaset/canary.go): 0 when aborted, M past the
    end or without steps, else the last setWeight at or before the index (0 if none)."""
    if rollout.abort:
        return 0
    index = rollout.current_step_index or 0
    if index >= len(rollout.steps):
        return rollout.max_traffic_weight
    return _last_set_weight(rollout, index)


def replica_progress_threshold_met(
    threshold: ProgressThreshold | None, rs: ReplicaSet | None, desired: int
) -> bool:
    """Argo's `ReplicaProgressThresholdMet` (utils/replicaset/canary.go)."""
    if threshold is None or rs is None or threshold.value < 0:
        return _all_available(rs, desired)
    if threshold.type == "Percent":
        # available / desired x 100 >= value, exactly (Argo uses floats with an epsilon).
        return desired == 0 or rs.available_replicas * 100 >= threshold.value * desired
    return rs.available_replicas >= threshold.value


def stable_can_carry(rollout: Rollout, stable_rs: ReplicaSet | None, weight: int) -> bool:
    """Argo's `checkReplicasAvailable` (rollout/trafficrouting.go): can `stable_rs` take
    `weight` of M? Needs `weight × spec.replicas ÷ M` (integer division) available pods, or
    `replicaProgressThreshold` met for that count. No stable ReplicaSet can carry nothing."""
    if stable_rs is None:
        return False
    needed = weight * rollout.replicas // rollout.max_traffic_weight
    return stable_rs.available_replicas >= needed or replica_progress_threshold_met(
        rollout.replica_progress_threshold, stable_rs, needed
    )


def desired_canary_weight(
    rollout: Rollout, new_rs: ReplicaSet | None, stable_rs: ReplicaSet | None
) -> int:
    """Argo's `GetDesiredCanaryWeight` (utils/replicaset/canary.go).

    Aborted with dynamicStableScale and both ReplicaSets known: walking the steps backwards,
    the first setWeight whose pod count is below what the canary still covers (the larger of
    the stable's shortfall and the canary's available pods; only the shortfall when
    `abortScaleDownDelaySeconds` is set explicitly, non-zero), else 0. Otherwise
    `current_set_weight`.
    """
    if rollout.abort and rollout.dynamic_stable_scale and new_rs and stable_rs:
        m, replicas = rollout.max_traffic_weight, rollout.replicas
        expected_canary_pods = replicas - stable_rs.available_replicas
        canary_pods = max(expected_canary_pods, new_rs.available_replicas)
        if _explicit_abort_delay(rollout):
            canary_pods = expected_canary_pods
        for step in reversed(rollout.steps):
            if step.set_weight is not None and _to_replicas(replicas, step.set_weight, m) < (
                canary_pods
            ):
                return step.set_weight
        return 0
    return current_set_weight(rollout)


def abort_or_rollback_weight(
    rollout: Rollout,
    new_rs: ReplicaSet | None,
    stable_rs: ReplicaSet | None,
    weights: RecordedWeights | None,
) -> int:
    """Argo's `calculateDesiredWeightOnAbortOrStableRollback` (rollout/trafficrouting.go).

    0 without dynamicStableScale, a ReplicaSet or replicas. Else, with `expected` the weight
    the stable cannot carry yet (M − M × stable available ÷ replicas) and `desired` from
    `desired_canary_weight`: no record → max(expected, desired); desired 0 → min(expected,
    recorded); the stable still below M − desired → recorded; else min(desired, recorded).
    """
    replicas = rollout.replicas
    if not rollout.dynamic_stable_scale or stable_rs is None or new_rs is None or replicas == 0:
        return 0
    m = rollout.max_traffic_weight
    desired = desired_canary_weight(rollout, new_rs, stable_rs)
    stable_share = m * stable_rs.available_replicas // replicas
    expected = max(0, m - stable_share)
    if weights is None:
        return max(expected, desired)
    current = _recorded_canary(weights.canary, m)
    if desired <= 0:
        return min(expected, current)
    if stable_share < m - desired:
        return current
    return min(desired, current)


def dynamically_rolling_back(
    rollout: Rollout, desired_rs: ReplicaSet, weights: RecordedWeights | None
) -> bool:
    """Argo's `IsDynamicallyRollingBackToStable` (utils/rollout/rolloututil.go): promoted with
    trafficRouting and dynamicStableScale, a record whose canary hash is not the desired
    ReplicaSet's, and that ReplicaSet below `spec.replicas` available."""
    if not (rollout.fully_promoted and rollout.traffic_routing and rollout.dynamic_stable_scale):
        return False
    if weights is None or weights.canary.pod_template_hash == desired_rs.pod_template_hash:
        return False
    return desired_rs.available_replicas < rollout.replicas


def replica_counts_traffic_routed(
    rollout: Rollout,
    new_rs: ReplicaSet | None,
    stable_rs: ReplicaSet | None,
    weights: RecordedWeights | None = None,
) -> tuple[int, int]:
    """Argo's `CalculateReplicaCountsForTrafficRoutedCanary` (utils/replicaset/canary.go):
    (canary, stable) pod counts. Without dynamicStableScale the stable stays at spec.replicas;
    with it the stable follows the larger of the desired and the recorded stable weight, and on
    abort the canary keeps the pods its recorded weight needs."""
    replicas, m = rollout.replicas, rollout.max_traffic_weight
    scale_replicas, weight = _canary_replicas_or_weight(rollout, new_rs, stable_rs)
    if scale_replicas is not None:
        canary = scale_replicas
    else:
        canary = _min_pods(rollout, _to_replicas(replicas, weight, m))
    if not rollout.dynamic_stable_scale:
        return canary, replicas
    stable = _to_replicas(replicas, m - weight, m)
    if weights is not None:
        stable = max(stable, _to_replicas(replicas, weights.stable.weight, m))
        if rollout.abort:
            canary = max(_to_replicas(replicas, weights.canary.weight, m), canary)
    return _min_pods(rollout, canary), _min_pods(rollout, stable)


def basic_canary_replica_counts(
    rollout: Rollout,
    new_rs: ReplicaSet | None,
    stable_rs: ReplicaSet | None,
    older: tuple[ReplicaSet, ...] = (),
) -> tuple[int, int]:
    """Argo's `CalculateReplicaCountsForBasicCanary` (utils/replicaset/canary.go): the
    (canary, stable) counts of this scaling pass of a canary without trafficRouting, within
    maxSurge and maxUnavailable. `older` are the Rollout's other ReplicaSets (kongsplit does
    not watch them: empty means none)."""
    spec = rollout.replicas
    _, weight = _canary_replicas_or_weight(rollout, new_rs, stable_rs)
    surge = _max_surge(rollout)
    want_new, want_stable = _approximate_counts(spec, weight, rollout.max_traffic_weight, surge)
    new_count = new_rs.replicas if new_rs is not None else 0
    scale_stable = stable_rs is not None and (new_rs is None or new_rs.name != stable_rs.name)
    stable_count = 0
    if scale_stable:
        assert stable_rs is not None
        stable_count = stable_rs.replicas
    else:
        # No stable (or it is the new one): the controller takes the new one to 100%.
        want_new, want_stable = spec, 0
    max_allowed = spec + surge
    total = sum(rs.replicas for rs in older) + new_count + (stable_count if scale_stable else 0)
    scale_up = max_allowed - total
    if scale_stable and stable_rs is not None and stable_rs.replicas < want_stable and scale_up > 0:
        if stable_rs.replicas + scale_up < want_stable:
            stable_count, scale_up = stable_rs.replicas + scale_up, 0
        else:
            stable_count = want_stable
            scale_up -= want_stable - stable_rs.replicas
    if new_rs is not None and new_rs.replicas < want_new and scale_up > 0:
        new_count = min(new_rs.replicas + scale_up, want_new)
    if sum(rs.replicas for rs in older) > 0:
        return new_count, stable_count  # older ReplicaSets are scaled down first
    min_available = spec - _max_unavailable(rollout)
    increasing = new_rs is None or want_new >= new_rs.replicas
    to_scale_down = _for_scale_down(new_rs, not increasing) + _for_scale_down(stable_rs, increasing)
    if to_scale_down <= min_available:
        return new_count, stable_count
    scale_down = to_scale_down - min_available
    if not increasing:
        new_count = _scale_down_count(new_rs, want_new, scale_down, new_count)
        new_count, stable_count = _within_limits(
            new_rs, stable_rs, new_count, stable_count, max_allowed, min_available
        )
    elif scale_stable:
        stable_count = _scale_down_count(stable_rs, want_stable, scale_down, stable_count)
        stable_count, new_count = _within_limits(
            stable_rs, new_rs, stable_count, new_count, max_allowed, min_available
        )
    return new_count, stable_count


def at_desired_replica_counts(
    rollout: Rollout,
    new_rs: ReplicaSet | None,
    stable_rs: ReplicaSet | None,
    *,
    stable_known: bool = True,
    weights: RecordedWeights | None = None,
) -> bool:
    """Argo's `AtDesiredReplicaCountsForCanary` (utils/replicaset/canary.go): the canary has
    the pods this step wants available (or `replicaProgressThreshold` is met) and, unless
    trafficRouting with dynamicStableScale, the stable has exactly its count created.

    With `stable_known` False (no stable ReplicaSet given) the stable side is left out and a
    basic canary is judged against Argo's end-state count (its scaling pass needs every
    ReplicaSet). Older ReplicaSets are not watched: they count as scaled down.
    """
    if rollout.traffic_routing:
        want_new, want_stable = replica_counts_traffic_routed(rollout, new_rs, stable_rs, weights)
    elif stable_known:
        want_new, want_stable = basic_canary_replica_counts(rollout, new_rs, stable_rs)
    else:
        want_new, want_stable = desired_canary_replicas(rollout), 0
    if not replica_progress_threshold_met(rollout.replica_progress_threshold, new_rs, want_new):
        return False
    if stable_known and not (rollout.traffic_routing and rollout.dynamic_stable_scale):
        return _all_created(stable_rs, want_stable)
    return True


def desired_canary_replicas(rollout: Rollout) -> int:
    """The canary pod count Argo scales toward at the current step, end state.

    Traffic-routed: `CalculateReplicaCountsForTrafficRoutedCanary`'s canary count. Basic canary:
    Argo's closest-count approximation of the weight (`approximateWeightedCanaryStableReplica
    Counts`), the count its scaling passes converge to.
    """
    if rollout.traffic_routing:
        return replica_counts_traffic_routed(rollout, None, None)[0]
    _, weight = _canary_replicas_or_weight(rollout, None, None)
    return _approximate_counts(
        rollout.replicas, weight, rollout.max_traffic_weight, _max_surge(rollout)
    )[0]


# --------------------------------------------------------------------------- the ladder


def _view(
    rollout: Rollout,
    canary_rs: ReplicaSet | None,
    stable_rs: ReplicaSet | None,
    replicasets_known: bool,
) -> _View:
    current, stable_hash = rollout.current_pod_hash, rollout.stable_rs
    if canary_rs is not None and (current is None or canary_rs.pod_template_hash != current):
        canary_rs = None
    if stable_rs is not None and (
        stable_hash is None or stable_rs.pod_template_hash != stable_hash
    ):
        stable_rs = None
    new_known = canary_rs is not None or replicasets_known or rollout.replicas == 0
    if canary_rs is None and new_known and current is not None:
        # Missing while every ReplicaSet is known: Argo creates it with 0 pods
        # (`createDesiredReplicaSet`). With spec.replicas 0 every ReplicaSet has 0 pods.
        name = f"{rollout.key.name}-{current}"
        canary_rs = ReplicaSet(rollout.key.namespace, name, current, 0, 0, status_replicas=0)
    if stable_hash is not None and stable_hash == current:
        # Argo's `GetStableRS` returns the new ReplicaSet when the hashes agree.
        return _View(canary_rs, new_known, canary_rs, new_known)
    # No stable hash: Argo has no stable ReplicaSet (first deploy). With no status at all Argo
    # has not reconciled yet and there is nothing to protect: no gate then.
    stable_known = (
        stable_rs is not None or replicasets_known or (stable_hash is None and current is not None)
    )
    return _View(canary_rs, new_known, stable_rs, stable_known)


def _choose(rollout: Rollout, view: _View, record: RecordedWeights | None) -> _Choice:
    m = rollout.max_traffic_weight
    new_rs, stable_rs = view.new_rs, view.stable_rs
    fresh = (
        record is not None
        and record.canary.pod_template_hash == rollout.current_pod_hash
        and record.stable.pod_template_hash == rollout.stable_rs
    )
    experiments = _additional(record, m) if fresh and record is not None else ()

    # 1. Dynamic rollback to stable: the walk-back between the previous canary and the stable.
    if (
        record is not None
        and rollout.fully_promoted
        and rollout.traffic_routing
        and rollout.dynamic_stable_scale
        and record.canary.pod_template_hash != rollout.current_pod_hash
    ):
        if new_rs is None:  # unknown: the recorded weight stays until the stable is full
            return _Choice(_recorded_canary(record.canary, m), "dynamic-rollback")
        if dynamically_rolling_back(rollout, new_rs, record):
            weight = abort_or_rollback_weight(rollout, new_rs, stable_rs, record)
            return _Choice(weight, "dynamic-rollback")

    # 2. Fully promoted, a missing status included: everything on the stable Service.
    if rollout.fully_promoted:
        return _Choice(0, "fully-promoted")

    # 3. Aborted: 0 at once, except that dynamicStableScale walks back.
    if rollout.abort:
        if not rollout.dynamic_stable_scale:
            return _Choice(0, "aborted")
        if view.new_known and view.stable_known:
            return _Choice(abort_or_rollback_weight(rollout, new_rs, stable_rs, record), "aborted")
        if record is not None:
            # ReplicaSets unknown: Argo's next value never exceeds the recorded one.
            return _Choice(_recorded_canary(record.canary, m), "aborted")
        return _Choice(
            0,
            "aborted",
            notes=(
                "dynamicStableScale abort without recorded weights or ReplicaSets: canary 0, "
                "although the stable ReplicaSet may not be fully scaled yet",
            ),
        )

    # 4. The new ReplicaSet has no available pod: never weight to it.
    if new_rs is not None and new_rs.available_replicas == 0:
        return _Choice(0, "new-rs-unavailable", additional=experiments)

    # 5. promote --full. Argo's SetWeight here carries no experiments.
    if rollout.promote_full:
        if rollout.dynamic_stable_scale:
            if new_rs is not None:
                if rollout.replicas == 0:
                    return _Choice(0, "promote-full", notes=("spec.replicas is 0",))
                return _Choice(m * new_rs.available_replicas // rollout.replicas, "promote-full")
            if fresh and record is not None:
                return _Choice(_recorded_canary(record.canary, m), "promote-full")
            return _Choice(0, "promote-full")
        if record is not None and (fresh or new_rs is not None):
            return _Choice(_recorded_canary(record.canary, m), "promote-full")
        return _Choice(0, "promote-full")

    # 6. ReplicaSets unknown: what the routers carry, as recorded.
    if new_rs is None and record is not None:
        if fresh:
            return _Choice(_recorded_canary(record.canary, m), "recorded", additional=experiments)
        if record.canary.pod_template_hash != rollout.current_pod_hash:
            return _Choice(0, "stale-record")

    # 7. The steps, with the replica gate when the canary ReplicaSet is known.
    steps = rollout.steps
    if not steps:
        return _Choice(0, "no-steps")
    index = rollout.current_step_index or 0
    if new_rs is not None and not at_desired_replica_counts(
        rollout, new_rs, stable_rs, stable_known=view.stable_known
    ):
        # Argo walks back from index-1; an index past the end (manual patch only) is clamped.
        previous = _last_set_weight(rollout, min(index, len(steps)) - 1)
        return _Choice(previous, "replica-gate-previous", additional=experiments)
    if index >= len(steps):
        return _Choice(m, "end-of-steps")
    return _Choice(current_set_weight(rollout), "step", additional=experiments)


def _hold(
    rollout: Rollout, view: _View, canary: int, stable_service_hash: str | None
) -> tuple[str, str] | None:
    """(hold id, why) when Argo's order says write nothing now, or None (docs/weights.md)."""
    if rollout.abort:
        return None  # abort beats every hold: Argo's abort weight must reach Kong at once
    if not generation_observed(rollout):
        return (
            "generation-not-observed",
            f"status.observedGeneration {rollout.observed_generation} is below "
            f"metadata.generation {rollout.generation}: the status may still describe the "
            "previous spec",
        )
    if view.stable_known:
        m = rollout.max_traffic_weight
        stable_rs = view.stable_rs
        if stable_rs is None:
            if rollout.stable_rs is None:
                why = "status.stableRS is empty (first deploy)"
            else:
                why = f"no ReplicaSet has the stable hash {rollout.stable_rs}"
            why += ": Argo routes no weight without a stable ReplicaSet"
            return ("no-stable-replicaset", why)
        if not stable_can_carry(rollout, stable_rs, m - canary):
            needed = (m - canary) * rollout.replicas // m
            return (
                "stable-unavailable",
                f"stable ReplicaSet {stable_rs.name} has {stable_rs.available_replicas} "
                f"available pods, {needed} needed for weight {m - canary} of {m}: Argo holds "
                f"canary weight {canary} back until it can carry the rest",
            )
    if (
        stable_service_hash is not None
        and rollout.stable_rs is not None
        and rollout.fully_promoted
        and stable_service_hash != rollout.stable_rs
    ):
        return (
            "promotion-in-flight",
            f"promotion in flight: the stable Service still selects {stable_service_hash}, "
            f"not stableRS {rollout.stable_rs}",
        )
    return None


# --------------------------------------------------------------------------- helpers


def _clamp(canary: int, m: int) -> int:
    return min(max(canary, 0), m)


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


def _to_replicas(replicas: int, weight: int, m: int) -> int:
    """Argo's `trafficWeightToReplicas`: ceil(weight × replicas ÷ M)."""
    return -(-weight * replicas // m)


def _explicit_abort_delay(rollout: Rollout) -> bool:
    """Argo's `HasExplicitAbortScaleDownDelay`: set, non-zero, with trafficRouting."""
    return rollout.traffic_routing and bool(rollout.abort_scale_down_delay_seconds)


def _set_canary_scale_in_force(rollout: Rollout) -> CanaryScale | None:
    """Argo's `UseSetCanaryScale` (utils/replicaset/canary.go), or None."""
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


def _canary_replicas_or_weight(
    rollout: Rollout, new_rs: ReplicaSet | None, stable_rs: ReplicaSet | None
) -> tuple[int | None, int]:
    """Argo's `GetCanaryReplicasOrWeight`: (explicit canary count, or None; weight)."""
    if rollout.promote_full or rollout.stable_rs is None or rollout.fully_promoted:
        return None, rollout.max_traffic_weight
    scale = _set_canary_scale_in_force(rollout)
    if scale is not None:
        if scale.replicas is not None:
            return scale.replicas, 0
        if scale.weight is not None:
            return None, scale.weight
    return None, desired_canary_weight(rollout, new_rs, stable_rs)


def _min_pods(rollout: Rollout, count: int) -> int:
    """Argo's `CheckMinPodsPerReplicaSet`: a floor (traffic-routed only), capped at
    spec.replicas; 0 stays 0."""
    floor = rollout.min_pods_per_replica_set
    if count == 0 or floor is None or not rollout.traffic_routing:
        return count
    return max(count, min(floor, rollout.replicas))


def _fence(value: int | str, replicas: int, *, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    exact = replicas * int(value[:-1])
    return -(-exact // 100) if round_up else exact // 100


def _max_surge(rollout: Rollout) -> int:
    """Argo's `MaxSurge`: a percentage of spec.replicas rounds up."""
    return _fence(rollout.max_surge, rollout.replicas, round_up=True)


def _max_unavailable(rollout: Rollout) -> int:
    """Argo's `MaxUnavailable`: rounds down; 1 when both fenceposts resolve to 0."""
    if rollout.replicas == 0:
        return 0
    unavailable = _fence(rollout.max_unavailable, rollout.replicas, round_up=False)
    if unavailable == 0 and _max_surge(rollout) == 0:
        unavailable = 1
    return min(unavailable, rollout.replicas)


def _approximate_counts(replicas: int, weight: int, m: int, max_surge: int) -> tuple[int, int]:
    """Argo's `approximateWeightedCanaryStableReplicaCounts`: the (canary, stable) counts closest
    to `weight`, one surge pod allowed; a partial weight never rounds the canary to 0."""
    if replicas == 0:
        return 0, 0
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
        return 0, replicas
    # The first option with the smallest distance from the asked weight wins.
    best = min(options, key=lambda o: abs(o[0] * m / o[1] - weight))
    return best[0], best[1] - best[0]


def _for_scale_down(rs: ReplicaSet | None, ignore_availability: bool) -> int:
    """Argo's `GetReplicasForScaleDown`."""
    if rs is None:
        return 0
    if rs.replicas < rs.available_replicas or ignore_availability:
        return rs.replicas
    return rs.available_replicas


def _scale_down_count(drain: ReplicaSet | None, want: int, scale_down: int, count: int) -> int:
    """Argo's `calculateScaleDownReplicaCount`."""
    if drain is not None and drain.replicas > want:
        return max(want, drain.replicas - scale_down)
    return count


def _within_limits(
    drain: ReplicaSet | None,
    adjust: ReplicaSet | None,
    drain_count: int,
    adjust_count: int,
    max_allowed: int,
    min_available: int,
) -> tuple[int, int]:
    """Argo's `adjustReplicaWithinLimits`: keep (drain, adjust) counts within maxSurge and
    maxUnavailable."""
    over = max(0, adjust_count + drain_count - max_allowed)
    available = min(drain.available_replicas, drain_count) if drain is not None else 0
    if adjust is not None:
        adjust_count -= over
        available += min(adjust.available_replicas, adjust_count)
        extra = max(0, adjust.available_replicas - adjust_count)
        missing = max(0, min_available - available)
        adjust_count += min(extra, missing)
        over = max(0, adjust_count + drain_count - max_allowed)
        drain_count -= over
    return drain_count, adjust_count


def _all_available(rs: ReplicaSet | None, desired: int) -> bool:
    """Argo's `allDesiredAreAvailable`."""
    return rs is not None and rs.replicas == desired and rs.available_replicas == desired


def _all_created(rs: ReplicaSet | None, desired: int) -> bool:
    """Argo's `allDesiredAreCreated` (an unknown status.replicas counts as spec.replicas)."""
    if rs is None or rs.replicas != desired:
        return False
    return rs.status_replicas is None or rs.status_replicas == desired


# --------------------------------------------------------------------------- docs/weights.md

#: docs/weights.md's generated part lies between these two lines.
DOC_BEGIN = "<!-- BEGIN GENERATED: python -m kongsplit.weights docs/weights.md -->"
DOC_END = "<!-- END GENERATED -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def rules_markdown() -> str:
    """The rule and hold tables of docs/weights.md, from `RULES` and `HOLDS`."""
    lines = [
        "| # | rule id (`plan`, `/state`) | state | canary weight C | Argo |",
        "|---|---|---|---|---|",
    ]
    for i, rule in enumerate(RULES, 1):
        lines.append(
            f"| {i} | `{rule.id}` | {_cell(rule.when)} | {_cell(rule.weight)} | "
            f"{_cell(rule.argo)} |"
        )
    lines += [
        "",
        "Holds, checked after the ladder (an abort skips them all):",
        "",
        "| hold id | state | written | Argo |",
        "|---|---|---|---|",
    ]
    for hold in HOLDS:
        lines.append(
            f"| `{hold.id}` | {_cell(hold.when)} | {_cell(hold.weight)} | {_cell(hold.argo)} |"
        )
    return "\n".join(lines)


def render_doc(text: str) -> str:
    """`text` (docs/weights.md) with its generated part replaced by `rules_markdown()`."""
    head, sep, rest = text.partition(DOC_BEGIN)
    _, sep2, tail = rest.partition(DOC_END)
    if not sep or not sep2:
        raise ValueError(f"the markers {DOC_BEGIN!r} and {DOC_END!r} are missing")
    return f"{head}{DOC_BEGIN}\n{rules_markdown()}\n{DOC_END}{tail}"


def main(argv: list[str] | None = None) -> int:
    """`python -m kongsplit.weights docs/weights.md`: regenerate the doc's rule tables."""
    import sys
    from pathlib import Path

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m kongsplit.weights docs/weights.md", file=sys.stderr)
        return 2
    path = Path(args[0])
    path.write_text(render_doc(path.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
