"""The ``kongsplit.io/*`` annotations: the contract between a Rollout and kongsplit. Pure.

A Rollout opts in with ``kongsplit.io/upstream``; the others refine how its Services become Kong
targets. Every value is checked here, the way Kong checks names, before anything reaches a
request; a bad one becomes an ``ObjectError`` naming the annotation, reported on the Rollout.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from kongsplit.rollouts import ANNOTATION_PREFIX, ObjectError, RolloutKey

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


# Kong upstream names must be valid hostnames without port (docs/kong.md "Upstream names").
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)"
    r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$"
)
_WORKSPACE_RE = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")


def is_opted_in(annotations: object) -> bool:
    """Whether raw ``metadata.annotations`` carry any ``kongsplit.io/`` annotation (even a bad
    one: a Rollout that tried to opt in is reported, not ignored)."""
    return isinstance(annotations, dict) and any(
        isinstance(a, str) and a.startswith(ANNOTATION_PREFIX) for a in annotations
    )


@dataclass(frozen=True, slots=True)
class TargetMapping:
    """What the annotations say: which upstream, which Service port, which target form."""

    upstream: str
    port: str | int | None
    mode: str
    workspace: str | None
    allow_basic_canary: bool = False


def annotation_error(key: RolloutKey, annotation: str, message: str) -> ObjectError:
    return ObjectError(
        kind="Rollout",
        namespace=key.namespace,
        name=key.name,
        field=f"metadata.annotations[{annotation}]",
        message=message,
        reason="invalid_annotation",
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
            return annotation_error(
                key,
                ANN_UPSTREAM,
                f"required when other kongsplit.io annotations are set ({', '.join(present)})",
            )
        return None
    if unknown:
        return annotation_error(
            key, unknown[0], f"unknown annotation (known: {', '.join(KNOWN_ANNOTATIONS)})"
        )
    upstream = annotations[ANN_UPSTREAM].strip()
    if not _HOSTNAME_RE.match(upstream) or _is_ip(upstream):
        return annotation_error(
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
                return annotation_error(key, ANN_PORT, f"port number must be 1..65535, got {raw!r}")
        elif re.match(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", raw):
            port = raw
        else:
            return annotation_error(
                key, ANN_PORT, f"must be a Service port name or number, got {raw!r}"
            )
    mode = annotations.get(ANN_TARGET_MODE, MODE_CLUSTERIP).strip().lower()
    if mode not in (MODE_CLUSTERIP, MODE_DNS):
        return annotation_error(
            key,
            ANN_TARGET_MODE,
            f"must be 'clusterip' or 'dns', got {annotations[ANN_TARGET_MODE]!r}",
        )
    # An empty annotation means unset: the configured default applies, as when it is absent.
    workspace = annotations.get(ANN_WORKSPACE, "").strip() or default_workspace or None
    if workspace is not None and not _WORKSPACE_RE.match(workspace):
        return annotation_error(key, ANN_WORKSPACE, f"not a valid workspace name: {workspace!r}")
    if workspace == "default":
        workspace = None  # Kong's default workspace is the unprefixed Admin API: one upstream
    allow_basic = annotations.get(ANN_ALLOW_BASIC_CANARY, "false").strip().lower()
    if allow_basic not in ("true", "false"):
        return annotation_error(
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
