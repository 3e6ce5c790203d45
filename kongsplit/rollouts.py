"""The Rollout and ReplicaSet fields kongsplit reads, parsed from raw Kubernetes JSON.

This module owns the boundary between foreign JSON and our own values: `parse_rollout` and
`parse_replicaset` turn any JSON value into a frozen dataclass or an `ObjectError` that names
the offending field ("report, don't raise", as Kong Ingress Controller does with bad objects).
Only the fields the weight engine (`kongsplit.weights`) and the target mapping need are kept, so
5,000 Rollouts stay small in memory (bench/README.md); steps are interned because most Rollouts
share
the same handful of step shapes.

Strictness follows one line: strict where a wrong value would give a wrong weight (setWeight,
maxTrafficWeight, replicas, the status fields the engine reads), lenient where Argo Rollouts is
lenient (unknown step kinds, extra fields, the contents of pause/analysis/experiment steps).
Field meanings are those of Argo's pkg/apis/rollouts/v1alpha1/types.go.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "ANNOTATION_PREFIX",
    "KONG_MAX_WEIGHT",
    "POD_TEMPLATE_HASH_LABEL",
    "CanaryScale",
    "ObjectError",
    "PingPong",
    "ProgressThreshold",
    "RecordedWeights",
    "ReplicaSet",
    "Rollout",
    "RolloutKey",
    "SpecError",
    "Step",
    "WeightRecord",
    "is_canary_replicaset",
    "parse_replicaset",
    "parse_rollout",
]

ANNOTATION_PREFIX: Final = "kongsplit.io/"
POD_TEMPLATE_HASH_LABEL: Final = "rollouts-pod-template-hash"
ROLLOUT_API_VERSION: Final = "argoproj.io/v1alpha1"
#: Kong target weights are 0..65535 (docs/kong.md "Weights and algorithms"); M above that could
#: never be written.
KONG_MAX_WEIGHT: Final = 65535
DEFAULT_MAX_WEIGHT: Final = 100
_INT32_MAX: Final = 2**31 - 1
_INT64_MAX: Final = 2**63 - 1

#: Router fields of `trafficRouting` (`NewTrafficRoutingReconciler` in rollout/trafficrouting.go).
#: Each one set makes Argo build a reconciler;
#: `plugins` makes one per entry. `managedRoutes` and `maxTrafficWeight` are not routers.
ROUTER_FIELDS: Final = (
    "istio",
    "nginx",
    "alb",
    "smi",
    "ambassador",
    "appMesh",
    "traefik",
    "apisix",
    "plugins",
)
#: The step kinds Argo validates as mutually exclusive (its `hasMultipleStepsType`).
_EXCLUSIVE_STEP_KINDS: Final = ("setWeight", "pause", "experiment", "analysis")
_KNOWN_STEP_KINDS: Final = (
    "setWeight",
    "pause",
    "experiment",
    "analysis",
    "setCanaryScale",
    "setHeaderRoute",
    "setMirrorRoute",
    "plugin",
)
_PERCENT = re.compile(r"^[0-9]+%$")
_NO_ANNOTATIONS: Final[Mapping[str, str]] = MappingProxyType({})


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class RolloutKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ObjectError:
    """A malformed object: which one, which field (a JSON path) and what is wrong with it."""

    kind: str
    namespace: str | None
    name: str | None
    field: str | None
    message: str
    #: The ``reason`` label it is counted under (``kongsplit_reconcile_errors_total``):
    #: ``invalid_rollout``, ``invalid_annotation`` or ``missing_service``.
    reason: str = "invalid_rollout"

    def __str__(self) -> str:
        if self.name is None:
            who = "<unnamed>"
        elif self.namespace is None:
            who = self.name
        else:
            who = f"{self.namespace}/{self.name}"
        where = f"{self.field}: " if self.field else ""
        return f"{self.kind} {who}: {where}{self.message}"


@dataclass(frozen=True, slots=True)
class CanaryScale:
    """A `setCanaryScale` step: pod count only, never traffic (`UseSetCanaryScale`)."""

    weight: int | None = None
    replicas: int | None = None
    match_traffic_weight: bool = False


@dataclass(frozen=True, slots=True)
class Step:
    """One canary step, reduced to what decides weights and canary size.

    `kind` is the step's key (`setWeight`, `pause`, …, or an unknown key kept as is).
    """

    kind: str
    set_weight: int | None = None
    canary_scale: CanaryScale | None = None


@dataclass(frozen=True, slots=True)
class PingPong:
    ping_service: str
    pong_service: str


@dataclass(frozen=True, slots=True)
class ProgressThreshold:
    """`replicaProgressThreshold`: loosens "at desired count" (`ReplicaProgressThresholdMet`)."""

    type: str  # "Percent" or "Pods"
    value: int


@dataclass(frozen=True, slots=True)
class WeightRecord:
    """One destination of `status.canary.weights` (`calculateWeightStatus`)."""

    weight: int
    pod_template_hash: str | None = None
    service_name: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedWeights:
    """`status.canary.weights`: the split Argo last told its routers."""

    canary: WeightRecord
    stable: WeightRecord
    additional: tuple[WeightRecord, ...] = ()
    verified: bool | None = None


@dataclass(frozen=True, slots=True)
class SpecError:
    """A rule of Argo's `ValidateRolloutStrategyCanary` (pkg/apis/rollouts/validation/validation.go)
    this spec breaks: Argo marks the Rollout `InvalidSpec` and stops reconciling it.

    `rule` is the name of Argo's message constant, `message` its text, `field` the JSON path.
    """

    field: str
    rule: str
    message: str


@dataclass(frozen=True, slots=True)
class Rollout:
    """The fields of one Argo Rollout that decide its traffic split (Argo's types.go).

    Services and hashes are None when unset or empty. `max_traffic_weight` is already resolved
    (100 when unset). `annotations` holds only the `kongsplit.io/*` ones.
    """

    key: RolloutKey
    uid: str | None = None
    generation: int | None = None
    annotations: Mapping[str, str] = field(default_factory=lambda: _NO_ANNOTATIONS, hash=False)
    # spec
    blue_green: bool = False
    replicas: int = 1
    canary_service: str | None = None
    stable_service: str | None = None
    ping_pong: PingPong | None = None
    steps: tuple[Step, ...] = ()
    traffic_routing: bool = False
    has_router: bool = False
    routers: tuple[str, ...] = ()
    max_traffic_weight: int = DEFAULT_MAX_WEIGHT
    dynamic_stable_scale: bool = False
    abort_scale_down_delay_seconds: int | None = None
    min_pods_per_replica_set: int | None = None
    replica_progress_threshold: ProgressThreshold | None = None
    max_surge: int | str = "25%"
    max_unavailable: int | str = "25%"
    #: The first Argo validation rule the spec breaks (Argo then writes `InvalidSpec`), or None.
    spec_error: SpecError | None = None
    # status
    current_pod_hash: str | None = None
    stable_rs: str | None = None
    current_step_index: int | None = None
    abort: bool = False
    promote_full: bool = False
    observed_generation: int | None = None
    weights: RecordedWeights | None = None
    stable_ping_pong: str | None = None
    #: The message of an `InvalidSpec` condition Argo wrote with status True, or None.
    invalid_spec: str | None = None

    @property
    def fully_promoted(self) -> bool:
        """Argo's `IsFullyPromoted`: stableRS == currentPodHash, both empty included."""
        return self.stable_rs == self.current_pod_hash


@dataclass(frozen=True, slots=True)
class ReplicaSet:
    namespace: str
    name: str
    pod_template_hash: str | None
    replicas: int
    available_replicas: int
    owner_uids: tuple[str, ...] = ()
    #: `status.replicas` (pods created); None when the object does not say (a hand-written
    #: manifest), which the engine reads as "equal to spec.replicas".
    status_replicas: int | None = None


def is_canary_replicaset(rollout: Rollout, rs: ReplicaSet) -> bool:
    """Whether `rs` is the Rollout's desired ("canary") ReplicaSet (docs/weights.md "Inputs").

    Matched by namespace and `rollouts-pod-template-hash == status.currentPodHash`; when both
    the Rollout's uid and the ReplicaSet's owners are known, ownership must match too.
    """
    if rs.namespace != rollout.key.namespace or rollout.current_pod_hash is None:
        return False
    if rs.pod_template_hash != rollout.current_pod_hash:
        return False
    return rollout.uid is None or not rs.owner_uids or rollout.uid in rs.owner_uids


# --------------------------------------------------------------------------- JSON reading


class _Invalid(Exception):
    """Internal: a field is malformed. Never escapes this module."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def _show(value: object) -> str:
    """A short rendering of a bad value for a message (kept short: objects may be huge)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, dict):
        text = "an object"
    elif isinstance(value, list):
        text = "a list"
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _obj(value: object, path: str, *, required: bool = False) -> Mapping[str, object] | None:
    if value is None:
        if required:
            raise _Invalid(path, "is required")
        return None
    if not isinstance(value, dict):
        raise _Invalid(path, f"must be an object, got {_show(value)}")
    return value


def _str(value: object, path: str) -> str | None:
    """A string field; "" counts as unset, as Go's omitempty strings do."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Invalid(path, f"must be a string, got {_show(value)}")
    return sys.intern(value) if value else None


def _bool(value: object, path: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _Invalid(path, f"must be true or false, got {_show(value)}")
    return value


def _int(
    value: object, path: str, *, low: int, high: int, default: int | None = None
) -> int | None:
    if value is None:
        return default
    # JSON true/false arrive as bool, a subclass of int: never a count or a weight.
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    raise _Invalid(path, f"must be an integer between {low} and {high}, got {_show(value)}")


def _req_int(value: object, path: str, *, low: int, high: int) -> int:
    result = _int(value, path, low=low, high=high)
    if result is None:
        raise _Invalid(path, "is required")
    return result


_STEP_CACHE: dict[tuple[str, int | None, CanaryScale | None], Step] = {}


def _intern_step(kind: str, set_weight: int | None, scale: CanaryScale | None) -> Step:
    key = (kind, set_weight, scale)
    step = _STEP_CACHE.get(key)
    if step is None:
        # Bounded in practice by the distinct step shapes in the cluster; cap it anyway so a
        # stream of odd objects cannot grow it without end.
        step = Step(sys.intern(kind), set_weight, scale)
        if len(_STEP_CACHE) < 10_000:
            _STEP_CACHE[key] = step
    return step


def _parse_step(raw: object, path: str, max_weight: int) -> Step:
    step = _obj(raw, path, required=True)
    assert step is not None
    present = [k for k in _KNOWN_STEP_KINDS if step.get(k) is not None]
    exclusive = [k for k in present if k in _EXCLUSIVE_STEP_KINDS]
    if len(exclusive) > 1:
        # Argo marks such a Rollout InvalidSpec; which of the two counts would be a guess.
        raise _Invalid(
            path, f"must set only one of {', '.join(exclusive)}; {_argo('InvalidStepMessage')}"
        )
    # An unknown or empty step (a newer Argo kind) must not break us: it moves no weight.
    kind = present[0] if present else next((k for k in step if isinstance(k, str)), "unknown")
    raw_weight = step.get("setWeight")
    if isinstance(raw_weight, int) and not isinstance(raw_weight, bool):
        if not 0 <= raw_weight <= max_weight:
            raise _Invalid(
                f"{path}.setWeight",
                f"must be an integer between 0 and {max_weight}, got {raw_weight}; "
                + _argo("InvalidSetWeightMessage", max=max_weight),
            )
    set_weight = _int(raw_weight, f"{path}.setWeight", low=0, high=max_weight)
    scale: CanaryScale | None = None
    raw_scale = _obj(step.get("setCanaryScale"), f"{path}.setCanaryScale")
    if raw_scale is not None:
        spath = f"{path}.setCanaryScale"
        scale = CanaryScale(
            weight=_int(raw_scale.get("weight"), f"{spath}.weight", low=0, high=max_weight),
            replicas=_int(raw_scale.get("replicas"), f"{spath}.replicas", low=0, high=_INT32_MAX),
            match_traffic_weight=_bool(
                raw_scale.get("matchTrafficWeight"), f"{spath}.matchTrafficWeight"
            ),
        )
    if set_weight is not None:
        kind = "setWeight"
    return _intern_step(kind, set_weight, scale)


def _parse_weight_record(raw: object, path: str) -> WeightRecord:
    rec = _obj(raw, path, required=True)
    assert rec is not None
    # Recorded stable weights can be negative (M - C - Σ is not capped, `calculateWeightStatus`), so
    # the
    # range is only int32 here; the engine checks the weights it actually uses.
    return WeightRecord(
        weight=_req_int(rec.get("weight"), f"{path}.weight", low=-_INT32_MAX - 1, high=_INT32_MAX),
        pod_template_hash=_str(rec.get("podTemplateHash"), f"{path}.podTemplateHash"),
        service_name=_str(rec.get("serviceName"), f"{path}.serviceName"),
    )


def _parse_recorded_weights(raw: object, path: str) -> RecordedWeights | None:
    weights = _obj(raw, path)
    if weights is None:
        return None
    raw_additional = weights.get("additional")
    additional: list[WeightRecord] = []
    if raw_additional is not None:
        if not isinstance(raw_additional, list):
            raise _Invalid(f"{path}.additional", f"must be a list, got {_show(raw_additional)}")
        additional = [
            _parse_weight_record(item, f"{path}.additional[{i}]")
            for i, item in enumerate(raw_additional)
        ]
    verified = weights.get("verified")
    if verified is not None and not isinstance(verified, bool):
        raise _Invalid(f"{path}.verified", f"must be true, false or null, got {_show(verified)}")
    return RecordedWeights(
        canary=_parse_weight_record(weights.get("canary"), f"{path}.canary"),
        stable=_parse_weight_record(weights.get("stable"), f"{path}.stable"),
        additional=tuple(additional),
        verified=verified,
    )


def _parse_observed_generation(value: object, path: str) -> int | None:
    # Argo writes it as a string holding a number (types.go `ObservedGeneration string`). Very old
    # controllers wrote
    # a spec hash there instead: that is "unknown", not an error, so it can never cause a hold.
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    if isinstance(value, str):
        return int(value) if value.isascii() and value.isdigit() and len(value) <= 19 else None
    raise _Invalid(path, f"must be a string holding a number, got {_show(value)}")


def _parse_max_surge(value: object, path: str) -> int | str:
    if value is None:
        return "25%"
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise _Invalid(path, f"must not be negative, got {value}")
        return value
    if isinstance(value, str) and _PERCENT.match(value):
        return sys.intern(value)
    raise _Invalid(path, f"must be an integer or a percentage such as '25%', got {_show(value)}")


def _annotations(meta: Mapping[str, object]) -> Mapping[str, str]:
    raw = _obj(meta.get("annotations"), "metadata.annotations")
    if not raw:
        return _NO_ANNOTATIONS
    ours: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not key.startswith(ANNOTATION_PREFIX):
            continue  # not ours: never judged, never kept
        if not isinstance(value, str):
            raise _Invalid(f"metadata.annotations[{key}]", f"must be a string, got {_show(value)}")
        ours[sys.intern(key)] = sys.intern(value)  # upstream names, modes: shared copies
    return MappingProxyType(ours) if ours else _NO_ANNOTATIONS


def _identity(
    obj: object, default_namespace: str
) -> tuple[Mapping[str, object] | None, str | None, str | None]:
    """Best-effort (metadata, namespace, name) so even a broken object's error names it."""
    if not isinstance(obj, dict):
        return None, None, None
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return None, None, None
    name = meta.get("name")
    namespace = meta.get("namespace")
    return (
        meta,
        namespace if isinstance(namespace, str) and namespace else default_namespace,
        name if isinstance(name, str) and name else None,
    )


def _check_type(obj: Mapping[str, object], *, kind: str, api_versions: tuple[str, ...]) -> None:
    # List items from the API often omit apiVersion/kind; judge them only when present.
    got_kind = obj.get("kind")
    if got_kind is not None and got_kind != kind:
        raise _Invalid("kind", f"must be {kind!r}, got {_show(got_kind)}")
    got_api = obj.get("apiVersion")
    if got_api is not None and got_api not in api_versions:
        raise _Invalid(
            "apiVersion", f"must be {' or '.join(map(repr, api_versions))}, got {_show(got_api)}"
        )


# --------------------------------------------------------------------------- Argo's validation

#: Argo's validation messages (pkg/apis/rollouts/validation/validation.go), by constant name:
#: a refusal names the rule the way Argo's own `InvalidSpec` condition does.
ARGO_RULES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "InvalidMaxSurgeMaxUnavailable": "MaxSurge and MaxUnavailable both can not be zero",
        "DuplicatedServicesCanaryMessage": "This rollout uses the same service for the stable "
        "and canary services, but two different services are required.",
        "PingPongWithRouterOnlyMessage": "Ping-pong feature works with the ALB, Istio, and "
        "plugin-based traffic routers only",
        "InvalidPingPongProvidedMessage": "Ping service and Pong service must to be set to use "
        "Ping-Pong feature",
        "DuplicatedPingPongServicesMessage": "This rollout uses the same service for the ping "
        "and pong services, but two different services are required.",
        "MissedAlbRootServiceMessage": "Root service field is required for the configuration "
        "with ALB and ping-pong feature enabled",
        "InvalidTrafficRoutingMessage": "Canary service and Stable service must to be set to "
        "use Traffic Routing",
        "InvalidCanaryScaleDownDelay": "Canary scaleDownDelaySeconds can only be used with "
        "traffic routing",
        "InvalidCanaryDynamicStableScale": "Canary dynamicStableScale can only be used with "
        "traffic routing",
        "InvalidCanaryDynamicStableScaleWithScaleDownDelay": "Canary dynamicStableScale cannot "
        "be used with scaleDownDelaySeconds",
        "InvalidCanaryMaxWeightOnlySupportInNginxAndPlugins": "Canary maxTrafficWeight in "
        "traffic routing only supported in Nginx and Plugins",
        "InvalidStepMessage": "Step must have one of the following set: experiment, setWeight, "
        "setCanaryScale, plugin or pause",
        "InvalidSetWeightMessage": "SetWeight needs to be between 0 and {max}",
        "InvalidSetCanaryScaleTrafficPolicy": "SetCanaryScale requires TrafficRouting to be set",
        "InvalidSetHeaderRouteTrafficPolicy": "SetHeaderRoute requires TrafficRouting, supports "
        "Istio and ALB and Apisix",
        "InvalidSetMirrorRouteTrafficPolicy": "SetMirrorRoute requires TrafficRouting, supports "
        "Istio and Plugins",
        "InvalidStringMatchMultipleValuePolicy": "StringMatch match value must have exactly one "
        "of the following: exact, regex, prefix",
        "InvalidStringMatchMissedValuePolicy": "StringMatch value missed, match value must have "
        "one of the following: exact, regex, prefix",
        "InvalidSetHeaderRouteALBValuePolicy": "SetHeaderRoute match value invalid. ALB supports "
        "'exact' value only",
        "MissingFieldMessage": "Rollout has missing field "
        "'spec.strategy.canary.trafficRouting.managedRoutes'",
        "InvalideStepRouteNameNotFoundInManagedRoutes": "Steps define a route that does not "
        "exist in spec.strategy.canary.trafficRouting.managedRoutes",
        "InvalidCanaryExperimentTemplateWeightWithoutTrafficRouting": "Experiment template "
        "weight cannot be set unless TrafficRouting is enabled",
        "ExperimentTemplateWeightRouter": "Experiment template weight is only available for "
        "TrafficRouting with SMI, ALB, Istio and Plugins at this time",
    }
)


def _argo(rule: str, **fmt: object) -> str:
    """`message (Argo Rollouts rule NAME)`, the text a refusal carries."""
    return f"{ARGO_RULES[rule].format(**fmt)} (Argo Rollouts validation rule {rule})"


def _spec_error(path: str, rule: str, **fmt: object) -> SpecError:
    return SpecError(path, rule, ARGO_RULES[rule].format(**fmt))


def _int_or_percent_value(value: int | str) -> int:
    """The number in `maxSurge`/`maxUnavailable` as Argo's validation reads it (25% → 25)."""
    return value if isinstance(value, int) else int(value[:-1])


def _string_match_error(raw: object, path: str, *, alb: bool) -> SpecError | None:
    """Argo's `hasMultipleMatchValues` / `hasALBInvalidValues` for one StringMatch."""
    match = _obj(raw, path)
    if match is None:
        return _spec_error(path, "InvalidStringMatchMissedValuePolicy")
    set_kinds = [k for k in ("exact", "regex", "prefix") if _str(match.get(k), f"{path}.{k}")]
    if alb:
        if set_kinds != ["exact"]:
            return _spec_error(path, "InvalidSetHeaderRouteALBValuePolicy")
        return None
    if len(set_kinds) > 1:
        return _spec_error(path, "InvalidStringMatchMultipleValuePolicy")
    if not set_kinds:
        return _spec_error(path, "InvalidStringMatchMissedValuePolicy")
    return None


def _route_name(step: Mapping[str, object], kind: str, path: str) -> tuple[bool, str | None]:
    raw = _obj(step.get(kind), path)
    if raw is None:
        return False, None
    return True, _str(raw.get("name"), f"{path}.name")


def _match_list(raw: Mapping[str, object], path: str) -> list[object]:
    value = raw.get("match")
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Invalid(f"{path}.match", f"must be a list, got {_show(value)}")
    return value


def _argo_spec_error(
    canary: Mapping[str, object],
    routing: Mapping[str, object] | None,
    *,
    routers: tuple[str, ...],
    canary_service: str | None,
    stable_service: str | None,
    ping_pong: bool,
    max_surge: int | str,
    max_unavailable: int | str,
) -> SpecError | None:
    """The first rule of Argo's `ValidateRolloutStrategyCanary` that touches traffic and this spec
    breaks, in Argo's order (docs/weights.md "Argo's validation"). Rules parse_rollout already
    refuses (two step kinds, a setWeight outside 0..M, equal Services) are not repeated here.
    """
    cpath = "spec.strategy.canary"
    rpath = f"{cpath}.trafficRouting"
    if _int_or_percent_value(max_surge) == 0 and _int_or_percent_value(max_unavailable) == 0:
        return _spec_error(f"{cpath}.maxSurge", "InvalidMaxSurgeMaxUnavailable")
    alb = _obj(routing.get("alb"), f"{rpath}.alb") if routing is not None else None
    istio = _obj(routing.get("istio"), f"{rpath}.istio") if routing is not None else None
    plugins = "plugins" in routers
    if ping_pong:
        if routing is not None and alb is None and istio is None and not plugins:
            return _spec_error(rpath, "PingPongWithRouterOnlyMessage")
        if alb is not None and not _str(alb.get("rootService"), f"{rpath}.alb.rootService"):
            return _spec_error(f"{rpath}.alb.rootService", "MissedAlbRootServiceMessage")
    if routing is not None:
        destination_rule = (
            _obj(istio.get("destinationRule"), f"{rpath}.istio.destinationRule")
            if istio is not None
            else None
        )
        needs_services = (
            (alb is not None and not ping_pong)
            or (istio is not None and destination_rule is None and not ping_pong)
            or any(r in routers for r in ("smi", "apisix", "ambassador", "nginx", "appMesh"))
            or "traefik" in routers
        )
        if needs_services:
            if stable_service is None:
                return _spec_error(f"{cpath}.stableService", "InvalidTrafficRoutingMessage")
            if canary_service is None:
                return _spec_error(f"{cpath}.canaryService", "InvalidTrafficRoutingMessage")
    scale_down_delay = _int(
        canary.get("scaleDownDelaySeconds"),
        f"{cpath}.scaleDownDelaySeconds",
        low=-_INT32_MAX - 1,
        high=_INT32_MAX,
    )
    dynamic = _bool(canary.get("dynamicStableScale"), f"{cpath}.dynamicStableScale")
    if routing is None:
        if scale_down_delay is not None:
            return _spec_error(f"{cpath}.scaleDownDelaySeconds", "InvalidCanaryScaleDownDelay")
        if dynamic:
            return _spec_error(f"{cpath}.dynamicStableScale", "InvalidCanaryDynamicStableScale")
    else:
        if scale_down_delay is not None and dynamic:
            return _spec_error(
                f"{cpath}.dynamicStableScale", "InvalidCanaryDynamicStableScaleWithScaleDownDelay"
            )
        if routing.get("maxTrafficWeight") is not None and "nginx" not in routers and not plugins:
            return _spec_error(
                f"{rpath}.maxTrafficWeight", "InvalidCanaryMaxWeightOnlySupportInNginxAndPlugins"
            )
    managed: list[str] | None = None
    if routing is not None and routing.get("managedRoutes") is not None:
        raw_managed = routing.get("managedRoutes")
        if not isinstance(raw_managed, list):
            raise _Invalid(f"{rpath}.managedRoutes", f"must be a list, got {_show(raw_managed)}")
        managed = []
        for j, item in enumerate(raw_managed):
            route = _obj(item, f"{rpath}.managedRoutes[{j}]", required=True)
            assert route is not None
            managed.append(_str(route.get("name"), f"{rpath}.managedRoutes[{j}].name") or "")
    raw_steps = canary.get("steps")
    for i, raw_step in enumerate(raw_steps if isinstance(raw_steps, list) else ()):
        spath = f"{cpath}.steps[{i}]"
        step = _obj(raw_step, spath, required=True)
        assert step is not None
        if not any(step.get(k) is not None for k in _KNOWN_STEP_KINDS) and not any(
            v is not None for k, v in step.items() if k not in _KNOWN_STEP_KINDS
        ):
            return _spec_error(spath, "InvalidStepMessage")
        if step.get("setCanaryScale") is not None and routing is None:
            return _spec_error(rpath, "InvalidSetCanaryScaleTrafficPolicy")
        has_header, header_name = _route_name(step, "setHeaderRoute", f"{spath}.setHeaderRoute")
        if has_header:
            hpath = f"{spath}.setHeaderRoute"
            if routing is None or (
                istio is None and alb is None and "apisix" not in routers and not plugins
            ):
                return _spec_error(hpath, "InvalidSetHeaderRouteTrafficPolicy")
            header = _obj(step.get("setHeaderRoute"), hpath)
            assert header is not None
            for j, raw_match in enumerate(_match_list(header, hpath)):
                mpath = f"{hpath}.match[{j}]"
                match = _obj(raw_match, mpath, required=True)
                assert match is not None
                error = _string_match_error(match.get("headerValue"), mpath, alb=alb is not None)
                if error is not None:
                    return error
        has_mirror, mirror_name = _route_name(step, "setMirrorRoute", f"{spath}.setMirrorRoute")
        if has_mirror:
            mpath = f"{spath}.setMirrorRoute"
            if routing is None or (istio is None and not plugins):
                return _spec_error(mpath, "InvalidSetMirrorRouteTrafficPolicy")
            mirror = _obj(step.get("setMirrorRoute"), mpath)
            assert mirror is not None
            for j, raw_match in enumerate(_match_list(mirror, mpath)):
                matchpath = f"{mpath}.match[{j}]"
                match = _obj(raw_match, matchpath, required=True)
                assert match is not None
                for part in ("method", "path"):
                    if match.get(part) is not None:
                        error = _string_match_error(match.get(part), matchpath, alb=False)
                        if error is not None:
                            return error
        if routing is not None and (has_header or has_mirror):
            if managed is None:
                return _spec_error(f"{rpath}.managedRoutes", "MissingFieldMessage")
            for has, name, kind in (
                (has_header, header_name, "setHeaderRoute"),
                (has_mirror, mirror_name, "setMirrorRoute"),
            ):
                if has and (name or "") not in managed:
                    return _spec_error(
                        f"{spath}.{kind}", "InvalideStepRouteNameNotFoundInManagedRoutes"
                    )
        experiment = _obj(step.get("experiment"), f"{spath}.experiment")
        templates = experiment.get("templates") if experiment is not None else None
        for j, raw_template in enumerate(templates if isinstance(templates, list) else ()):
            tpath = f"{spath}.experiment.templates[{j}]"
            template = _obj(raw_template, tpath, required=True)
            assert template is not None
            if template.get("weight") is None:
                continue
            if routing is None:
                return _spec_error(
                    f"{tpath}.weight", "InvalidCanaryExperimentTemplateWeightWithoutTrafficRouting"
                )
            if alb is None and istio is None and "smi" not in routers and not plugins:
                return _spec_error(f"{tpath}.weight", "ExperimentTemplateWeightRouter")
    return None


def _invalid_spec_condition(status: Mapping[str, object]) -> str | None:
    """The message of an `InvalidSpec` condition with status True (Argo's own refusal)."""
    conditions = status.get("conditions")
    if not isinstance(conditions, list):
        return None
    for cond in conditions:
        if (
            isinstance(cond, dict)
            and cond.get("type") == "InvalidSpec"
            and cond.get("status") == "True"
        ):
            message = cond.get("message")
            return message if isinstance(message, str) and message else "InvalidSpec"
    return None


# --------------------------------------------------------------------------- Rollout


def parse_rollout(obj: object, *, default_namespace: str = "default") -> Rollout | ObjectError:
    """Read a Rollout from decoded JSON; any defect becomes an `ObjectError` (never raises).

    `default_namespace` names objects without `metadata.namespace` (offline manifests).
    """
    meta, namespace, name = _identity(obj, default_namespace)
    try:
        return _parse_rollout(obj, meta, namespace, name)
    except _Invalid as err:
        return ObjectError(
            "Rollout", namespace if name else None, name, err.path or None, err.message
        )


def _parse_rollout(
    obj: object, meta: Mapping[str, object] | None, namespace: str | None, name: str | None
) -> Rollout:
    if not isinstance(obj, dict):
        raise _Invalid("", f"must be a JSON object, got {_show(obj)}")  # path filled below
    _check_type(obj, kind="Rollout", api_versions=(ROLLOUT_API_VERSION,))
    if meta is None:
        _obj(obj.get("metadata"), "metadata", required=True)
        raise _Invalid("metadata", "must be an object")
    if name is None:
        raise _Invalid(
            "metadata.name", f"must be a non-empty string, got {_show(meta.get('name'))}"
        )
    raw_ns = meta.get("namespace")
    if raw_ns is not None and not isinstance(raw_ns, str):
        raise _Invalid("metadata.namespace", f"must be a string, got {_show(raw_ns)}")
    assert namespace is not None
    key = RolloutKey(sys.intern(namespace), sys.intern(name))
    uid = _str(meta.get("uid"), "metadata.uid")
    generation = _int(meta.get("generation"), "metadata.generation", low=0, high=_INT64_MAX)
    annotations = _annotations(meta)

    spec = _obj(obj.get("spec"), "spec", required=True)
    assert spec is not None
    replicas = _int(spec.get("replicas"), "spec.replicas", low=0, high=_INT32_MAX, default=1)
    assert replicas is not None
    strategy = _obj(spec.get("strategy"), "spec.strategy", required=True)
    assert strategy is not None
    canary = _obj(strategy.get("canary"), "spec.strategy.canary")
    blue_green = _obj(strategy.get("blueGreen"), "spec.strategy.blueGreen")
    if canary is not None and blue_green is not None:
        raise _Invalid("spec.strategy", "must set only one of canary and blueGreen")
    if canary is None and blue_green is None:
        raise _Invalid("spec.strategy", "must set canary or blueGreen")

    status = _obj(obj.get("status"), "status") or {}
    observed_generation = _parse_observed_generation(
        status.get("observedGeneration"), "status.observedGeneration"
    )
    current_pod_hash = _str(status.get("currentPodHash"), "status.currentPodHash")
    stable_rs = _str(status.get("stableRS"), "status.stableRS")
    abort = _bool(status.get("abort"), "status.abort")

    if blue_green is not None:
        # Not an error: the engine skips it (no weights). Keep identity and hashes only.
        return Rollout(
            key=key,
            uid=uid,
            generation=generation,
            annotations=annotations,
            blue_green=True,
            replicas=replicas,
            current_pod_hash=current_pod_hash,
            stable_rs=stable_rs,
            abort=abort,
            observed_generation=observed_generation,
        )
    assert canary is not None
    cpath = "spec.strategy.canary"

    routing = _obj(canary.get("trafficRouting"), f"{cpath}.trafficRouting")
    routers: list[str] = []
    max_weight = DEFAULT_MAX_WEIGHT
    if routing is not None:
        for router in ROUTER_FIELDS:
            value = routing.get(router)
            if value is None:
                continue
            rpath = f"{cpath}.trafficRouting.{router}"
            _obj(value, rpath)
            # An empty plugins map builds no reconciler (one per entry,
            # `NewTrafficRoutingReconciler`).
            if router != "plugins" or value:
                routers.append(router)
        max_weight_value = _int(
            routing.get("maxTrafficWeight"),
            f"{cpath}.trafficRouting.maxTrafficWeight",
            low=1,
            high=KONG_MAX_WEIGHT,
            default=DEFAULT_MAX_WEIGHT,
        )
        assert max_weight_value is not None
        max_weight = max_weight_value

    canary_service = _str(canary.get("canaryService"), f"{cpath}.canaryService")
    stable_service = _str(canary.get("stableService"), f"{cpath}.stableService")
    if canary_service is not None and canary_service == stable_service:
        # Argo rejects it too; both targets would be one Service and the split meaningless.
        raise _Invalid(
            f"{cpath}.stableService",
            f"must differ from canaryService {canary_service!r}; "
            + _argo("DuplicatedServicesCanaryMessage"),
        )
    ping_pong: PingPong | None = None
    raw_pp = _obj(canary.get("pingPong"), f"{cpath}.pingPong")
    if raw_pp is not None:
        ping = _str(raw_pp.get("pingService"), f"{cpath}.pingPong.pingService")
        pong = _str(raw_pp.get("pongService"), f"{cpath}.pingPong.pongService")
        if ping is None:
            raise _Invalid(
                f"{cpath}.pingPong.pingService",
                f"is required; {_argo('InvalidPingPongProvidedMessage')}",
            )
        if pong is None:
            raise _Invalid(
                f"{cpath}.pingPong.pongService",
                f"is required; {_argo('InvalidPingPongProvidedMessage')}",
            )
        if ping == pong:
            raise _Invalid(
                f"{cpath}.pingPong.pongService",
                f"must differ from pingService {ping!r}; "
                + _argo("DuplicatedPingPongServicesMessage"),
            )
        ping_pong = PingPong(ping, pong)

    raw_steps = canary.get("steps")
    steps: tuple[Step, ...] = ()
    if raw_steps is not None:
        if not isinstance(raw_steps, list):
            raise _Invalid(f"{cpath}.steps", f"must be a list, got {_show(raw_steps)}")
        steps = tuple(
            _parse_step(item, f"{cpath}.steps[{i}]", max_weight) for i, item in enumerate(raw_steps)
        )

    threshold: ProgressThreshold | None = None
    raw_threshold = _obj(
        canary.get("replicaProgressThreshold"), f"{cpath}.replicaProgressThreshold"
    )
    if raw_threshold is not None:
        tpath = f"{cpath}.replicaProgressThreshold"
        ttype = raw_threshold.get("type")
        if ttype not in ("Percent", "Pods"):
            raise _Invalid(f"{tpath}.type", f"must be 'Percent' or 'Pods', got {_show(ttype)}")
        assert isinstance(ttype, str)
        value = _req_int(
            raw_threshold.get("value"), f"{tpath}.value", low=-_INT32_MAX - 1, high=_INT32_MAX
        )
        threshold = ProgressThreshold(sys.intern(ttype), value)

    max_surge = _parse_max_surge(canary.get("maxSurge"), f"{cpath}.maxSurge")
    max_unavailable = _parse_max_surge(canary.get("maxUnavailable"), f"{cpath}.maxUnavailable")
    spec_error = _argo_spec_error(
        canary,
        routing,
        routers=tuple(routers),
        canary_service=canary_service,
        stable_service=stable_service,
        ping_pong=ping_pong is not None,
        max_surge=max_surge,
        max_unavailable=max_unavailable,
    )

    canary_status = _obj(status.get("canary"), "status.canary") or {}
    stable_ping_pong = _str(canary_status.get("stablePingPong"), "status.canary.stablePingPong")
    if stable_ping_pong not in (None, "ping", "pong"):
        # It decides which Service is stable: a value Argo never writes cannot be guessed at.
        raise _Invalid(
            "status.canary.stablePingPong",
            f"must be 'ping' or 'pong', got {_show(stable_ping_pong)}",
        )

    return Rollout(
        key=key,
        uid=uid,
        generation=generation,
        annotations=annotations,
        replicas=replicas,
        canary_service=canary_service,
        stable_service=stable_service,
        ping_pong=ping_pong,
        steps=steps,
        traffic_routing=routing is not None,
        has_router=bool(routers),
        routers=tuple(routers),
        max_traffic_weight=max_weight,
        dynamic_stable_scale=_bool(canary.get("dynamicStableScale"), f"{cpath}.dynamicStableScale"),
        abort_scale_down_delay_seconds=_int(
            canary.get("abortScaleDownDelaySeconds"),
            f"{cpath}.abortScaleDownDelaySeconds",
            low=0,
            high=_INT32_MAX,
        ),
        min_pods_per_replica_set=_int(
            canary.get("minPodsPerReplicaSet"),
            f"{cpath}.minPodsPerReplicaSet",
            low=0,
            high=_INT32_MAX,
        ),
        replica_progress_threshold=threshold,
        max_surge=max_surge,
        max_unavailable=max_unavailable,
        spec_error=spec_error,
        current_pod_hash=current_pod_hash,
        stable_rs=stable_rs,
        current_step_index=_int(
            status.get("currentStepIndex"), "status.currentStepIndex", low=0, high=_INT32_MAX
        ),
        abort=abort,
        promote_full=_bool(status.get("promoteFull"), "status.promoteFull"),
        observed_generation=observed_generation,
        weights=_parse_recorded_weights(canary_status.get("weights"), "status.canary.weights"),
        stable_ping_pong=stable_ping_pong,
        invalid_spec=_invalid_spec_condition(status),
    )


# --------------------------------------------------------------------------- ReplicaSet


def parse_replicaset(
    obj: object, *, default_namespace: str = "default"
) -> ReplicaSet | ObjectError:
    """Read the ReplicaSet fields of the replica gate (docs/weights.md); never raises."""
    meta, namespace, name = _identity(obj, default_namespace)
    try:
        if not isinstance(obj, dict):
            raise _Invalid("", f"must be a JSON object, got {_show(obj)}")
        _check_type(obj, kind="ReplicaSet", api_versions=("apps/v1",))
        if meta is None:
            _obj(obj.get("metadata"), "metadata", required=True)
            raise _Invalid("metadata", "must be an object")
        if name is None:
            raise _Invalid(
                "metadata.name", f"must be a non-empty string, got {_show(meta.get('name'))}"
            )
        assert namespace is not None
        labels = _obj(meta.get("labels"), "metadata.labels") or {}
        pod_hash = _str(
            labels.get(POD_TEMPLATE_HASH_LABEL), f"metadata.labels[{POD_TEMPLATE_HASH_LABEL}]"
        )
        owners: list[str] = []
        raw_owners = meta.get("ownerReferences")
        if raw_owners is not None:
            if not isinstance(raw_owners, list):
                raise _Invalid(
                    "metadata.ownerReferences", f"must be a list, got {_show(raw_owners)}"
                )
            for i, ref in enumerate(raw_owners):
                owner = _obj(ref, f"metadata.ownerReferences[{i}]", required=True)
                assert owner is not None
                uid = _str(owner.get("uid"), f"metadata.ownerReferences[{i}].uid")
                if uid is not None:
                    owners.append(uid)
        spec = _obj(obj.get("spec"), "spec") or {}
        status = _obj(obj.get("status"), "status") or {}
        # Kubernetes defaults spec.replicas to 1; a status without availableReplicas means 0.
        replicas = _int(spec.get("replicas"), "spec.replicas", low=0, high=_INT32_MAX, default=1)
        available = _int(
            status.get("availableReplicas"),
            "status.availableReplicas",
            low=0,
            high=_INT32_MAX,
            default=0,
        )
        status_replicas = _int(
            status.get("replicas"), "status.replicas", low=0, high=_INT32_MAX, default=None
        )
        assert replicas is not None and available is not None
        return ReplicaSet(
            namespace=sys.intern(namespace),
            name=name,
            pod_template_hash=pod_hash,
            replicas=replicas,
            available_replicas=available,
            owner_uids=tuple(owners),
            status_replicas=status_replicas,
        )
    except _Invalid as err:
        return ObjectError(
            "ReplicaSet", namespace if name else None, name, err.path or None, err.message
        )


# --------------------------------------------------------------------------- Service


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str | None
    port: int


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    type: str
    cluster_ip: str | None
    ports: tuple[ServicePort, ...]
    selector_hash: str | None  # the rollouts-pod-template-hash Argo wrote into the selector

    @property
    def headless(self) -> bool:
        # Only an explicit "None" makes a Service headless. An absent clusterIP is one the API
        # server has not allocated yet (a manifest not applied) or an ExternalName Service.
        return self.cluster_ip == "None"


def _service_error(obj: Mapping[str, Any], field: str, message: str) -> ObjectError:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    ns, name = meta.get("namespace"), meta.get("name")
    return ObjectError(
        kind="Service",
        namespace=ns if isinstance(ns, str) else None,
        name=name if isinstance(name, str) else None,
        field=field,
        message=message,
        # Counted as a Service kongsplit cannot use, like a headless or ExternalName one.
        reason="missing_service",
    )


def parse_service(obj: object) -> Service | ObjectError:
    """A core/v1 Service → the few fields the mapping needs. Never raises."""
    if not isinstance(obj, dict):
        return ObjectError(
            kind="Service",
            namespace=None,
            name=None,
            field=None,
            message=f"expected an object, got {_show(obj)}",
            reason="missing_service",
        )
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        return _service_error(obj, "metadata.name", "required string missing")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return _service_error(obj, "spec", "required object missing")
    ports: list[ServicePort] = []
    raw_ports = spec.get("ports") or []
    if not isinstance(raw_ports, list):
        return _service_error(obj, "spec.ports", "must be a list")
    for i, p in enumerate(raw_ports):
        if not isinstance(p, dict):
            return _service_error(obj, f"spec.ports[{i}]", "must be an object")
        port = p.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            return _service_error(
                obj,
                f"spec.ports[{i}].port",
                f"must be an integer between 1 and 65535, got {_show(port)}",
            )
        pname = p.get("name")
        if pname is not None and not isinstance(pname, str):
            return _service_error(
                obj, f"spec.ports[{i}].name", f"must be a string, got {_show(pname)}"
            )
        ports.append(
            ServicePort(
                name=sys.intern(pname) if isinstance(pname, str) and pname else None, port=port
            )
        )
    selector = spec.get("selector")
    selector_hash = None
    if isinstance(selector, dict) and isinstance(selector.get(POD_TEMPLATE_HASH_LABEL), str):
        selector_hash = sys.intern(selector[POD_TEMPLATE_HASH_LABEL])
    cluster_ip = spec.get("clusterIP")
    stype = spec.get("type") if isinstance(spec.get("type"), str) else "ClusterIP"
    ns = meta.get("namespace")
    # Interned: the names, hash and type are the same strings the Rollouts and ReplicaSets
    # hold (one copy each, not one per object read).
    return Service(
        namespace=sys.intern(ns) if isinstance(ns, str) and ns else "default",
        name=sys.intern(meta["name"]),
        type=sys.intern(str(stype)),
        cluster_ip=cluster_ip if isinstance(cluster_ip, str) else None,
        ports=tuple(ports),
        selector_hash=selector_hash,
    )


# --------------------------------------------------------------------------- references


@dataclass(frozen=True, slots=True)
class ObjectRef:
    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str | None = None

    @classmethod
    def of(cls, obj: dict[str, Any]) -> ObjectRef:
        """The reference to a raw object as the API sent it."""
        meta = obj.get("metadata") or {}
        return cls(
            api_version=str(obj.get("apiVersion") or ""),
            kind=str(obj.get("kind") or ""),
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            uid=meta.get("uid") or None,
        )
