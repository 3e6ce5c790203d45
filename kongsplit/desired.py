"""One Rollout, with the Services and ReplicaSets of its namespace → what Kong should hold.

This is the single place where the weight engine (``weights``) and the target mapping
(``targets``) meet; ``kongsplit plan`` and the daemon's reconciler both call ``desired_state``,
so what ``plan`` prints is what the daemon writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kongsplit.rollouts import ObjectError, ReplicaSet, Rollout, RolloutKey
from kongsplit.targets import (
    ANN_ALLOW_BASIC_CANARY,
    Service,
    TargetMapping,
    TargetPlan,
    parse_annotations,
    plan_targets,
)
from kongsplit.weights import Skip, Split, compute, resolve_services


@dataclass(frozen=True)
class Desired:
    key: RolloutKey
    split: Split | None  # Argo's answer, None when the engine skipped or the Rollout is invalid
    mapping: TargetMapping | None  # None when not opted in
    plan: TargetPlan | None  # the Kong targets to hold; None when nothing can be written
    skipped: str | None = None  # a sentence: why nothing is written for this Rollout
    error: ObjectError | None = None  # malformed input (report it; keep the last applied weights)

    @property
    def hold(self) -> str | None:
        return self.split.hold if self.split is not None else None

    @property
    def router_context(self) -> str | None:
        """`weights.ROUTER_CONTEXTS`: sole, shared (another router too) or basic; None unknown."""
        return self.split.router_context if self.split is not None else None


def pick_replicasets(
    rollout: Rollout, replicasets: Iterable[ReplicaSet]
) -> tuple[ReplicaSet | None, ReplicaSet | None]:
    """(canary RS, stable RS) among the ReplicaSets of the Rollout's namespace.

    A ReplicaSet counts when its pod-template-hash matches and it is not owned by another
    object. Two Rollouts can share a hash (identical templates), so among several candidates
    the one owned by this Rollout wins, then the one Argo would have named
    ``<rollout>-<hash>``; with no way to tell them apart, none is trusted (the engine then
    applies no replica gate rather than another Rollout's).
    """
    return (
        _pick(rollout, replicasets, rollout.current_pod_hash),
        _pick(rollout, replicasets, rollout.stable_rs),
    )


def _candidates(
    rollout: Rollout, replicasets: Iterable[ReplicaSet], pod_hash: str | None
) -> list[ReplicaSet]:
    if pod_hash is None:
        return []
    return [
        rs
        for rs in replicasets
        if rs.namespace == rollout.key.namespace
        and rs.pod_template_hash == pod_hash
        and (rollout.uid is None or not rs.owner_uids or rollout.uid in rs.owner_uids)
    ]


def _pick(
    rollout: Rollout, replicasets: Iterable[ReplicaSet], pod_hash: str | None
) -> ReplicaSet | None:
    candidates = _candidates(rollout, replicasets, pod_hash)
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    owned = [rs for rs in candidates if rollout.uid is not None and rollout.uid in rs.owner_uids]
    if len(owned) == 1:
        return owned[0]
    named = [rs for rs in candidates if rs.name == f"{rollout.key.name}-{pod_hash}"]
    return named[0] if len(named) == 1 else None


def desired_state(
    rollout: Rollout,
    *,
    services: Mapping[str, Service] | None,
    replicasets: Iterable[ReplicaSet] | None,
    default_workspace: str | None = None,
    cluster_domain: str = "cluster.local",
) -> Desired:
    """Argo's split and the Kong targets for it.

    ``services`` (by name, in the Rollout's namespace) and ``replicasets`` are None when
    unknown (offline ``plan`` given only the Rollout): then the replica gate is not applied and
    targets use the DNS form. Known ReplicaSets are all of them: a hash without one is a
    ReplicaSet Argo has yet to create (or no longer has), except when several share it and none
    can be told to be this Rollout's (then nothing is known).
    """
    key = rollout.key
    mapping = parse_annotations(rollout.annotations, key=key, default_workspace=default_workspace)
    rs_list = list(replicasets or ())
    canary_rs, stable_rs = pick_replicasets(rollout, rs_list)
    known = replicasets is not None and not any(
        picked is None and _candidates(rollout, rs_list, pod_hash)
        for picked, pod_hash in (
            (canary_rs, rollout.current_pod_hash),
            (stable_rs, rollout.stable_rs),
        )
    )
    stable_hash: str | None = None
    _, stable_name = resolve_services(rollout)
    if services is not None and stable_name is not None and stable_name in services:
        stable_hash = services[stable_name].selector_hash
    result = compute(
        rollout,
        canary_rs=canary_rs,
        stable_rs=stable_rs,
        stable_service_hash=stable_hash,
        replicasets_known=known,
    )
    if isinstance(mapping, ObjectError):
        # A bad annotation stops the writes, not Argo: its weights are still shown (`plan` prints
        # them).
        split = result if isinstance(result, Split) else None
        return Desired(key, split, None, None, skipped=str(mapping), error=mapping)
    if isinstance(result, Skip):
        error = None
        if result.invalid:
            # The engine's reason already reads "Rollout ns/name: field: what"; keep only "what".
            prefix = f"Rollout {key}: " + (f"{result.field}: " if result.field else "")
            message = result.reason.removeprefix(prefix)
            error = ObjectError(
                kind="Rollout",
                namespace=key.namespace,
                name=key.name,
                field=result.field,
                message=message,
            )
        return Desired(key, None, mapping, None, skipped=result.reason, error=error)
    if mapping is None:
        return Desired(key, result, None, None, skipped="not annotated with kongsplit.io/upstream")
    if result.router_context == "basic" and not mapping.allow_basic_canary:
        # Without trafficRouting Argo scales the stable down as the canary grows: the stable
        # share Kong carries could land on too few pods (docs/weights.md "Router context").
        refusal = ObjectError(
            kind="Rollout",
            namespace=key.namespace,
            name=key.name,
            field="spec.strategy.canary.trafficRouting",
            message="required by kongsplit: without it Argo scales the stable ReplicaSet down "
            "as the canary grows, so Kong's stable share can land on too few pods; add "
            f'trafficRouting: {{}} or annotate {ANN_ALLOW_BASIC_CANARY}: "true"',
        )
        return Desired(key, result, mapping, None, skipped=str(refusal), error=refusal)
    plan = plan_targets(result, mapping, key=key, services=services, cluster_domain=cluster_domain)
    if isinstance(plan, ObjectError):
        return Desired(key, result, mapping, None, skipped=str(plan), error=plan)
    return Desired(key, result, mapping, plan)
