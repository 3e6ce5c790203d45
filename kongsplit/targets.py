"""Pure mapping: a Rollout's ``kongsplit.io/*`` annotations and a Split → the Kong targets to hold.

Nothing here does I/O. Services arrive as parsed values (``parse_service``) from the watcher's
cache or from the files given to ``kongsplit plan``. Target strings are normalised exactly the
way Kong normalises them (docs/kong.md "Target strings"), so a later comparison with what
Kong lists is a plain string comparison.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kongsplit.kongtarget import normalize_target
from kongsplit.rollouts import ObjectError, RolloutKey
from kongsplit.weights import Split

ANNOTATION_PREFIX = "kongsplit.io/"
ANN_UPSTREAM = "kongsplit.io/upstream"
ANN_PORT = "kongsplit.io/port"
ANN_TARGET_MODE = "kongsplit.io/target-mode"
ANN_WORKSPACE = "kongsplit.io/workspace"
#: "true" accepts a Rollout without trafficRouting (docs/weights.md "Router context").
ANN_ALLOW_BASIC_CANARY = "kongsplit.io/allow-basic-canary"
KNOWN_ANNOTATIONS = (
    ANN_UPSTREAM,
    ANN_PORT,
    ANN_TARGET_MODE,
    ANN_WORKSPACE,
    ANN_ALLOW_BASIC_CANARY,
)

MODE_CLUSTERIP = "clusterip"
MODE_DNS = "dns"

ROLE_CANARY = "canary"
ROLE_STABLE = "stable"
ROLE_EXPERIMENT = "experiment"

POD_TEMPLATE_HASH = "rollouts-pod-template-hash"

# Kong upstream names must be valid hostnames without port (docs/kong.md "Upstream names").
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)"
    r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$"
)
_WORKSPACE_RE = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
_IP_SHAPE = re.compile(r"^(\d{1,3}(\.\d{1,3}){3}|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$")


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
    )


def parse_service(obj: object) -> Service | ObjectError:
    """A core/v1 Service → the few fields the mapping needs. Never raises."""
    if not isinstance(obj, dict):
        return ObjectError(
            kind="Service",
            namespace=None,
            name=None,
            field=None,
            message=f"expected an object, got {type(obj).__name__}",
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
                f"must be an integer between 1 and 65535, got {port!r}",
            )
        pname = p.get("name")
        ports.append(
            ServicePort(name=pname if isinstance(pname, str) and pname else None, port=port)
        )
    selector = spec.get("selector")
    selector_hash = None
    if isinstance(selector, dict) and isinstance(selector.get(POD_TEMPLATE_HASH), str):
        selector_hash = selector[POD_TEMPLATE_HASH]
    cluster_ip = spec.get("clusterIP")
    stype = spec.get("type") if isinstance(spec.get("type"), str) else "ClusterIP"
    ns = meta.get("namespace")
    return Service(
        namespace=ns if isinstance(ns, str) and ns else "default",
        name=meta["name"],
        type=str(stype),
        cluster_ip=cluster_ip if isinstance(cluster_ip, str) else None,
        ports=tuple(ports),
        selector_hash=selector_hash,
    )


@dataclass(frozen=True, slots=True)
class TargetMapping:
    """What the annotations say: which upstream, which Service port, which target form."""

    upstream: str
    port: str | int | None
    mode: str
    workspace: str | None
    allow_basic_canary: bool = False


def _annotation_error(key: RolloutKey, annotation: str, message: str) -> ObjectError:
    return ObjectError(
        kind="Rollout",
        namespace=key.namespace,
        name=key.name,
        field=f"metadata.annotations[{annotation}]",
        message=message,
    )


def parse_annotations(
    annotations: Mapping[str, str], *, key: RolloutKey, default_workspace: str | None = None
) -> TargetMapping | ObjectError | None:
    """The ``kongsplit.io/*`` annotations → a TargetMapping; None when not opted in.

    Memoised: the daemon asks again on every change of a Rollout, and the annotations almost
    never change (the answer is a frozen value either way).
    """
    return _parse_annotations(tuple(sorted(annotations.items())), key, default_workspace)


@functools.lru_cache(maxsize=8192)
def _parse_annotations(
    items: tuple[tuple[str, str], ...], key: RolloutKey, default_workspace: str | None
) -> TargetMapping | ObjectError | None:
    annotations = dict(items)
    unknown = sorted(
        a for a in annotations if a.startswith(ANNOTATION_PREFIX) and a not in KNOWN_ANNOTATIONS
    )
    if ANN_UPSTREAM not in annotations:
        if unknown or any(a in annotations for a in KNOWN_ANNOTATIONS):
            present = unknown or [a for a in KNOWN_ANNOTATIONS if a in annotations]
            return _annotation_error(
                key,
                ANN_UPSTREAM,
                f"required when other kongsplit.io annotations are set ({', '.join(present)})",
            )
        return None
    if unknown:
        return _annotation_error(
            key, unknown[0], f"unknown annotation (known: {', '.join(KNOWN_ANNOTATIONS)})"
        )
    upstream = annotations[ANN_UPSTREAM].strip()
    if not _HOSTNAME_RE.match(upstream) or _is_ip(upstream):
        return _annotation_error(
            key,
            ANN_UPSTREAM,
            "must be a Kong upstream name (a hostname, no IP, no port), "
            f"got {annotations[ANN_UPSTREAM]!r}",
        )
    port: str | int | None = None
    if ANN_PORT in annotations:
        raw = annotations[ANN_PORT].strip()
        if raw.isascii() and raw.isdigit():  # isdigit() alone accepts "²", which int() refuses
            port = int(raw)
            if not 1 <= port <= 65535:
                return _annotation_error(
                    key, ANN_PORT, f"port number must be 1..65535, got {raw!r}"
                )
        elif re.match(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", raw):
            port = raw
        else:
            return _annotation_error(
                key, ANN_PORT, f"must be a Service port name or number, got {raw!r}"
            )
    mode = annotations.get(ANN_TARGET_MODE, MODE_CLUSTERIP).strip().lower()
    if mode not in (MODE_CLUSTERIP, MODE_DNS):
        return _annotation_error(
            key,
            ANN_TARGET_MODE,
            f"must be 'clusterip' or 'dns', got {annotations[ANN_TARGET_MODE]!r}",
        )
    # An empty annotation means unset: the configured default applies, as when it is absent.
    workspace = annotations.get(ANN_WORKSPACE, "").strip() or default_workspace or None
    if workspace is not None and not _WORKSPACE_RE.match(workspace):
        return _annotation_error(key, ANN_WORKSPACE, f"not a valid workspace name: {workspace!r}")
    if workspace == "default":
        workspace = None  # Kong's default workspace is the unprefixed Admin API: one upstream
    allow_basic = annotations.get(ANN_ALLOW_BASIC_CANARY, "false").strip().lower()
    if allow_basic not in ("true", "false"):
        return _annotation_error(
            key,
            ANN_ALLOW_BASIC_CANARY,
            f"must be 'true' or 'false', got {annotations[ANN_ALLOW_BASIC_CANARY]!r}",
        )
    return TargetMapping(
        upstream=upstream,
        port=port,
        mode=mode,
        workspace=workspace,
        allow_basic_canary=allow_basic == "true",
    )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class DesiredTarget:
    target: str  # normalised the Kong way, e.g. "10.96.0.12:80"
    weight: int
    role: str
    service: str


@dataclass(frozen=True, slots=True)
class TargetPlan:
    upstream: str
    workspace: str | None
    targets: tuple[DesiredTarget, ...]

    def weights(self) -> dict[str, int]:
        return {t.target: t.weight for t in self.targets}


def plan_targets(
    split: Split,
    mapping: TargetMapping,
    *,
    key: RolloutKey,
    services: Mapping[str, Service] | None,
    cluster_domain: str = "cluster.local",
) -> TargetPlan | ObjectError:
    """The targets and weights to hold in Kong for this split.

    ``services`` maps Service name → Service in the Rollout's namespace; None means "unknown"
    (offline ``plan`` without Service objects), where clusterip mode falls back to the DNS form.
    Both stable and canary targets are always held; the one without traffic sits at weight 0.
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
        target = _target_for(
            service_name, mapping, key=key, services=services, cluster_domain=cluster_domain
        )
        if isinstance(target, ObjectError):
            return target
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
        targets.append(DesiredTarget(target=target, weight=weight, role=role, service=service_name))
    return TargetPlan(
        upstream=mapping.upstream, workspace=mapping.workspace, targets=tuple(targets)
    )


def _target_for(
    service_name: str,
    mapping: TargetMapping,
    *,
    key: RolloutKey,
    services: Mapping[str, Service] | None,
    cluster_domain: str,
) -> str | ObjectError:
    service = services.get(service_name) if services is not None else None
    if services is not None and service is None:
        return ObjectError(
            kind="Rollout",
            namespace=key.namespace,
            name=key.name,
            field="spec.strategy.canary",
            message=f"Service {key.namespace}/{service_name} not found",
        )
    # ExternalName first: such a Service has no clusterIP either, but is not headless.
    if service is not None and service.type == "ExternalName":
        return ObjectError(
            kind="Service",
            namespace=key.namespace,
            name=service_name,
            field="spec.type",
            message="ExternalName Services have no cluster IP to target",
        )
    if service is not None and service.headless:
        return ObjectError(
            kind="Service",
            namespace=key.namespace,
            name=service_name,
            field="spec.clusterIP",
            message="headless Service refused: its name resolves to every pod, so Kong's "
            "weight would be multiplied by the pod count",
        )
    if mapping.mode == MODE_CLUSTERIP and service is not None:
        bad_ip = _check_cluster_ip(service.cluster_ip)
        if bad_ip is not None:
            return ObjectError(
                kind="Service",
                namespace=key.namespace,
                name=service_name,
                field="spec.clusterIP",
                message=bad_ip,
            )
    port = _port_for(service, mapping, key=key, service_name=service_name)
    if isinstance(port, ObjectError):
        return port
    if mapping.mode == MODE_CLUSTERIP and service is not None:
        assert service.cluster_ip is not None
        host = f"[{service.cluster_ip}]" if ":" in service.cluster_ip else service.cluster_ip
    else:
        host = f"{service_name}.{key.namespace}.svc.{cluster_domain}"
    try:
        return normalize_target(f"{host}:{port}")
    except ValueError as e:
        return ObjectError(
            kind="Service",
            namespace=key.namespace,
            name=service_name,
            field="spec.clusterIP",
            message=f"not a valid Kong target: {e}",
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
        return _annotation_error(
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
        )
    if wanted is None:
        if len(service.ports) > 1:
            names = ", ".join(p.name or str(p.port) for p in service.ports)
            return _annotation_error(
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
    return _annotation_error(
        key,
        ANN_PORT,
        f"Service {key.namespace}/{service_name} has no port {kind} {wanted!r} (ports: {names})",
    )
