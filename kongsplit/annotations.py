"""The ``kongsplit.io/*`` annotations: the contract between a Rollout and kongsplit. Pure.

A Rollout opts in with ``kongsplit.io/upstream``; the others refine how its Services become Kong
targets. Every value is checked here before anything reaches a request: the upstream and the
workspace, which become Admin API path segments, exactly as Kong checks its own names
(``kong.names``); a value longer than ``MAX_VALUE_BYTES`` is refused before anything else looks
at it. A bad value becomes an ``ObjectError`` naming the annotation, reported on the Rollout,
with the value shown cut short (``shown``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from kongsplit.kong.names import MAX_NAME_BYTES, upstream_name_problem, workspace_name_problem
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

#: The longest value of any ``kongsplit.io/*`` annotation, in bytes of UTF-8: the longest Kong
#: name kongsplit accepts (``kong.names.MAX_NAME_BYTES``) plus the whitespace a YAML block may
#: leave around it. A longer one is refused before it is parsed, memoised or logged.
MAX_VALUE_BYTES = MAX_NAME_BYTES + 3
#: Annotation sets larger than this (keys and values, in characters) are parsed without being
#: memoised, so the memo holds at most ``_MEMO_ENTRIES`` small entries (a few MiB in all) however
#: large and varied the annotations Rollout authors write.
_MEMO_MAX_CHARS = 1024
_MEMO_ENTRIES = 8192
#: How much of a bad value an error message quotes.
SHOWN_CHARS = 64


def shown(value: str, limit: int = SHOWN_CHARS) -> str:
    """``value`` quoted for a message, cut to ``limit`` characters with its full length said."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value.encode('utf-8', 'surrogatepass'))} bytes)"


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

    A value longer than ``MAX_VALUE_BYTES`` is refused first, naming the Rollout and the
    annotation. The answer is memoised (the daemon asks again on every change of a Rollout, and
    the annotations almost never change) when the annotations are small: the memo is bounded
    in bytes, not only in entries.
    """
    size = 0
    for name, value in annotations.items():
        if not name.startswith(ANNOTATION_PREFIX):
            continue
        size += len(name) + len(value)
        if len(value) > MAX_VALUE_BYTES or len(value.encode("utf-8", "surrogatepass")) > (
            MAX_VALUE_BYTES
        ):
            return annotation_error(
                key,
                name,
                f"value too long: {len(value.encode('utf-8', 'surrogatepass'))} bytes, at most "
                f"{MAX_VALUE_BYTES} (starts {shown(value, 32)})",
            )
    if size > _MEMO_MAX_CHARS:
        return _parse(annotations, key, default_workspace)
    return _parse_memo(
        tuple(sorted(a for a in annotations.items() if a[0].startswith(ANNOTATION_PREFIX))),
        key,
        default_workspace,
    )


@functools.lru_cache(maxsize=_MEMO_ENTRIES)
def _parse_memo(
    items: tuple[tuple[str, str], ...], key: RolloutKey, default_workspace: str | None
) -> TargetMapping | ObjectError | None:
    return _parse(dict(items), key, default_workspace)


def _parse(
    annotations: Mapping[str, str], key: RolloutKey, default_workspace: str | None
) -> TargetMapping | ObjectError | None:
    unknown = sorted(
        a for a in annotations if a.startswith(ANNOTATION_PREFIX) and a not in KNOWN_ANNOTATIONS
    )
    if ANN_UPSTREAM not in annotations:
        if unknown or any(a in annotations for a in KNOWN_ANNOTATIONS):
            present = unknown or [a for a in KNOWN_ANNOTATIONS if a in annotations]
            listed = ", ".join(present[:5]) + (
                f" and {len(present) - 5} more" if len(present) > 5 else ""
            )
            return annotation_error(
                key,
                ANN_UPSTREAM,
                f"required when other kongsplit.io annotations are set ({listed})",
            )
        return None
    if unknown:
        return annotation_error(
            key, unknown[0], f"unknown annotation (known: {', '.join(KNOWN_ANNOTATIONS)})"
        )
    raw_upstream = annotations[ANN_UPSTREAM]
    upstream = raw_upstream.strip()
    problem = upstream_name_problem(upstream)
    if problem is not None:
        return annotation_error(
            key,
            ANN_UPSTREAM,
            f"must be a Kong upstream name (a hostname, no IP, no port): {problem}, "
            f"got {shown(raw_upstream)}",
        )
    port: str | int | None = None
    if ANN_PORT in annotations:
        raw = annotations[ANN_PORT].strip()
        if raw.isascii() and raw.isdigit():  # isdigit() alone accepts "²", which int() refuses
            port = int(raw)
            if not 1 <= port <= 65535:
                return annotation_error(
                    key, ANN_PORT, f"port number must be 1..65535, got {shown(raw)}"
                )
        elif re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", raw):
            port = raw
        else:
            return annotation_error(
                key, ANN_PORT, f"must be a Service port name or number, got {shown(raw)}"
            )
    mode = annotations.get(ANN_TARGET_MODE, MODE_CLUSTERIP).strip().lower()
    if mode not in (MODE_CLUSTERIP, MODE_DNS):
        return annotation_error(
            key,
            ANN_TARGET_MODE,
            f"must be 'clusterip' or 'dns', got {shown(annotations[ANN_TARGET_MODE])}",
        )
    # An empty annotation means unset: the configured default applies, as when it is absent.
    workspace = annotations.get(ANN_WORKSPACE, "").strip() or default_workspace or None
    if workspace is not None:
        problem = workspace_name_problem(workspace)
        if problem is not None:
            return annotation_error(
                key,
                ANN_WORKSPACE,
                f"not a valid Kong workspace name: {problem}, got {shown(workspace)}",
            )
    if workspace == "default":
        workspace = None  # Kong's default workspace is the unprefixed Admin API: one upstream
    allow_basic = annotations.get(ANN_ALLOW_BASIC_CANARY, "false").strip().lower()
    if allow_basic not in ("true", "false"):
        return annotation_error(
            key,
            ANN_ALLOW_BASIC_CANARY,
            f"must be 'true' or 'false', got {shown(annotations[ANN_ALLOW_BASIC_CANARY])}",
        )
    return TargetMapping(
        upstream=upstream,
        port=port,
        mode=mode,
        workspace=workspace,
        allow_basic_canary=allow_basic == "true",
    )
