"""One Rollout, with the Services and ReplicaSets of its namespace → what Kong should hold.

This is the single place where the weight engine (``weights``) and the target mapping
(``targets``) meet; ``kongsplit plan`` and the daemon's reconciler both call ``desired_state``,
so what ``plan`` prints is what the daemon writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kongsplit.rollouts import ObjectError, ReplicaSet, Rollout, RolloutKey, is_canary_replicaset
from kongsplit.targets import Service, TargetMapping, TargetPlan, parse_annotations, plan_targets
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


def pick_replicasets(
    rollout: Rollout, replicasets: Iterable[ReplicaSet]
) -> tuple[ReplicaSet | None, ReplicaSet | None]:
    """(canary RS, stable RS) among the ReplicaSets of the Rollout's namespace."""
    canary = stable = None
    for rs in replicasets:
        if is_canary_replicaset(rollout, rs):
            canary = rs
        elif (
            rollout.stable_rs is not None
            and rs.namespace == rollout.key.namespace
            and rs.pod_template_hash == rollout.stable_rs
            and (rollout.uid is None or not rs.owner_uids or rollout.uid in rs.owner_uids)
        ):
            stable = rs
    return canary, stable


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
    targets use the DNS form.
    """
    key = rollout.key
    mapping = parse_annotations(rollout.annotations, key=key, default_workspace=default_workspace)
    canary_rs, stable_rs = pick_replicasets(rollout, replicasets or ())
    stable_hash: str | None = None
    _, stable_name = resolve_services(rollout)
    if services is not None and stable_name is not None and stable_name in services:
        stable_hash = services[stable_name].selector_hash
    result = compute(
        rollout, canary_rs=canary_rs, stable_rs=stable_rs, stable_service_hash=stable_hash
    )
    if isinstance(mapping, ObjectError):
        # A bad annotation stops the writes, not Argo: its weights are still shown (DESIGN §4).
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
    plan = plan_targets(result, mapping, key=key, services=services, cluster_domain=cluster_domain)
    if isinstance(plan, ObjectError):
        return Desired(key, result, mapping, None, skipped=str(plan), error=plan)
    return Desired(key, result, mapping, plan)
