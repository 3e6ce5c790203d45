"""One Rollout, with the Services and ReplicaSets of its namespace → what Kong should hold.

This is the single place where the weight engine (``weights``) and the target mapping
(``targets``) meet; ``kongsplit plan`` and the daemon's reconciler both call ``desired_state``,
so what ``plan`` prints is what the daemon writes.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kongsplit.annotations import (
    ANN_ALLOW_BASIC_CANARY,
    ANN_PORT,
    ANN_TARGET_MODE,
    MODE_CLUSTERIP,
    TargetMapping,
    annotation_error,
    parse_annotations,
)
from kongsplit.kong.targets import (
    ROLE_CANARY,
    ROLE_EXPERIMENT,
    ROLE_STABLE,
    DesiredTarget,
    DesiredUpstream,
    normalize_target,
    pending_target,
)
from kongsplit.rollouts import ObjectError, ReplicaSet, Rollout, RolloutKey, Service
from kongsplit.weights import Skip, Split, compute, resolve_services

_IP_SHAPE = re.compile(r"^(\d{1,3}(\.\d{1,3}){3}|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$")


@dataclass(frozen=True)
class Desired:
    key: RolloutKey
    split: Split | None  # Argo's answer, None when the engine skipped or the Rollout is invalid
    mapping: TargetMapping | None  # None when not opted in
    plan: DesiredUpstream | None  # the Kong targets to hold; None when nothing can be written
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
    services: Mapping[str, Service | ObjectError] | None,
    replicasets: Iterable[ReplicaSet] | None,
    default_workspace: str | None = None,
    cluster_domain: str = "cluster.local",
    placeholders: bool = False,
) -> Desired:
    """Argo's split and the Kong targets for it.

    ``services`` (by name, in the Rollout's namespace) and ``replicasets`` are None when
    unknown (offline ``plan`` given only the Rollout): then the replica gate is not applied and
    targets use the DNS form. ``placeholders`` (offline ``plan`` only): a Service without a
    clusterIP yet gets a placeholder target instead of an error (``targets.plan_targets``).
    Known ReplicaSets are all of them: a hash without one is a ReplicaSet Argo has yet to
    create (or no longer has), except when several share it and none can be told to be this
    Rollout's (then nothing is known).
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
    stable_svc = services.get(stable_name) if services is not None and stable_name else None
    if isinstance(stable_svc, Service):
        stable_hash = stable_svc.selector_hash
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
    plan = plan_targets(
        result,
        mapping,
        key=key,
        services=services,
        cluster_domain=cluster_domain,
        placeholders=placeholders,
    )
    if isinstance(plan, ObjectError):
        return Desired(key, result, mapping, None, skipped=str(plan), error=plan)
    return Desired(key, result, mapping, plan)


# --------------------------------------------------------------------------- Services → targets


def plan_targets(
    split: Split,
    mapping: TargetMapping,
    *,
    key: RolloutKey,
    services: Mapping[str, Service | ObjectError] | None,
    cluster_domain: str = "cluster.local",
    placeholders: bool = False,
) -> DesiredUpstream | ObjectError:
    """The targets and weights to hold in Kong for this split.

    ``services`` maps Service name → Service in the Rollout's namespace; None means "unknown"
    (offline ``plan`` without Service objects), where clusterip mode falls back to the DNS form.
    Both stable and canary targets are always held; the one without traffic sits at weight 0.
    With ``placeholders`` (offline ``plan`` of manifests not applied yet), a Service without a
    clusterIP gets a placeholder target marked ``address_pending`` instead of an error.
    """
    if split.stable_service is None or split.canary_service is None:
        return ObjectError(
            kind="Rollout",
            namespace=key.namespace,
            name=key.name,
            field="spec.strategy.canary.stableService",
            message="stableService and canaryService (or pingPong) are required for kongsplit",
        )
    wanted: list[tuple[str, int, str]] = [
        (split.stable_service, split.stable, ROLE_STABLE),
        (split.canary_service, split.canary, ROLE_CANARY),
    ]
    wanted += [(d.service, d.weight, ROLE_EXPERIMENT) for d in split.additional]
    targets: list[DesiredTarget] = []
    seen: dict[str, str] = {}
    for service_name, weight, role in wanted:
        found = _target_for(
            service_name,
            mapping,
            key=key,
            services=services,
            cluster_domain=cluster_domain,
            placeholders=placeholders,
        )
        if isinstance(found, ObjectError):
            return found
        target, pending = found
        if target in seen:
            return ObjectError(
                kind="Rollout",
                namespace=key.namespace,
                name=key.name,
                field="spec.strategy.canary",
                message=f"Services {seen[target]} and {service_name} resolve to the same "
                f"Kong target {target}; their weights cannot be told apart",
            )
        seen[target] = service_name
        targets.append(
            DesiredTarget(
                target=target,
                weight=weight,
                role=role,
                service=service_name,
                address_pending=pending,
            )
        )
    return DesiredUpstream(
        upstream=mapping.upstream, workspace=mapping.workspace, targets=tuple(targets)
    )


def _target_for(
    service_name: str,
    mapping: TargetMapping,
    *,
    key: RolloutKey,
    services: Mapping[str, Service | ObjectError] | None,
    cluster_domain: str,
    placeholders: bool = False,
) -> tuple[str, bool] | ObjectError:
    """(target, address pending) for one Service, or why there is none."""
    service = services.get(service_name) if services is not None else None
    if isinstance(service, ObjectError):
        return service  # it exists but cannot be read (an invalid port): say what is wrong
    if services is not None and service is None:
        return ObjectError(
            kind="Rollout",
            namespace=key.namespace,
            name=key.name,
            field="spec.strategy.canary",
            message=f"Service {key.namespace}/{service_name} not found",
            reason="missing_service",
        )
    # ExternalName first: such a Service has no clusterIP either, but is not headless.
    if service is not None and service.type == "ExternalName":
        return ObjectError(
            kind="Service",
            namespace=key.namespace,
            name=service_name,
            field="spec.type",
            message="ExternalName Services have no cluster IP to target",
            reason="missing_service",
        )
    if service is not None and service.headless:
        return ObjectError(
            kind="Service",
            namespace=key.namespace,
            name=service_name,
            field="spec.clusterIP",
            message="headless Service refused: its name resolves to every pod, so Kong's "
            "weight would be multiplied by the pod count",
            reason="missing_service",
        )
    pending = (
        placeholders
        and mapping.mode == MODE_CLUSTERIP
        and service is not None
        and not service.cluster_ip
    )
    if mapping.mode == MODE_CLUSTERIP and service is not None and not pending:
        bad_ip = _check_cluster_ip(service.cluster_ip)
        if bad_ip is not None:
            return ObjectError(
                kind="Service",
                namespace=key.namespace,
                name=service_name,
                field="spec.clusterIP",
                message=bad_ip,
                reason="missing_service",
            )
    port = _port_for(service, mapping, key=key, service_name=service_name)
    if isinstance(port, ObjectError):
        return port
    if pending:
        return pending_target(key.namespace, service_name, port), True
    if mapping.mode == MODE_CLUSTERIP and service is not None:
        assert service.cluster_ip is not None
        host = f"[{service.cluster_ip}]" if ":" in service.cluster_ip else service.cluster_ip
    else:
        host = f"{service_name}.{key.namespace}.svc.{cluster_domain}"
    try:
        # Interned: the one copy of this target string that the desired state, the state's
        # observed weights and Kong's cached targets all hold.
        return sys.intern(normalize_target(f"{host}:{port}")), False
    except ValueError as e:
        return ObjectError(
            kind="Service",
            namespace=key.namespace,
            name=service_name,
            field="spec.clusterIP",
            message=f"not a valid Kong target: {e}",
            reason="missing_service",
        )


def _check_cluster_ip(ip: str | None) -> str | None:
    """Why ``ip`` cannot be a clusterip-mode target host, or None when it can."""
    if not ip:
        return (
            "not set (not allocated yet?): clusterip mode needs the address the cluster gave the "
            f"Service; give the Service as the cluster returns it, or use {ANN_TARGET_MODE}: dns"
        )
    # Dotted IPv4 (leading zeros are Kong's to drop) or IPv6; a hostname-shaped value would
    # otherwise pass target normalisation as a hostname.
    if not _IP_SHAPE.match(ip):
        return f"not an IP address: {ip!r}"
    return None


def _port_for(
    service: Service | None, mapping: TargetMapping, *, key: RolloutKey, service_name: str
) -> int | ObjectError:
    wanted = mapping.port
    if service is None:
        if isinstance(wanted, int):
            return wanted
        return annotation_error(
            key,
            ANN_PORT,
            f"Service {key.namespace}/{service_name} is not known, so the port must be a number"
            + (f", got {wanted!r}" if wanted is not None else ""),
        )
    if not service.ports:
        return ObjectError(
            kind="Service",
            namespace=key.namespace,
            name=service_name,
            field="spec.ports",
            message="Service has no ports",
            reason="missing_service",
        )
    if wanted is None:
        if len(service.ports) > 1:
            names = ", ".join(p.name or str(p.port) for p in service.ports)
            return annotation_error(
                key,
                ANN_PORT,
                f"required: Service {key.namespace}/{service_name} has several ports ({names})",
            )
        return service.ports[0].port
    for p in service.ports:
        if (isinstance(wanted, int) and p.port == wanted) or (
            isinstance(wanted, str) and p.name == wanted
        ):
            return p.port
    names = ", ".join(p.name or str(p.port) for p in service.ports)
    kind = "named" if isinstance(wanted, str) else "with number"
    return annotation_error(
        key,
        ANN_PORT,
        f"Service {key.namespace}/{service_name} has no port {kind} {wanted!r} (ports: {names})",
    )
