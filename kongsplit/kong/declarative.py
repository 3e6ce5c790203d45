"""The DB-less edit: the write plan applied to a node's declarative configuration. Pure.

A DB-less Kong takes only whole configurations (``POST /config``), so a weight change is an edit
of the flat export ``GET /config`` returns (every entity with its id, foreign keys as ids; Kong's
kong/db/declarative/export.lua). Everything other than the managed targets stays as its owner
wrote it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kongsplit.kong.records import Target, UpstreamClaim, claimed_owner
from kongsplit.kong.targets import DesiredTarget, normalize_target
from kongsplit.kong.writes import (
    DRIFT_MISSING,
    Drift,
    WriteKind,
    WritePlan,
    plan_writes,
    write_tags,
)

_NS = uuid.UUID("7d2f5a3e-3c1b-4e8a-9a43-6b1f0c2d9e51")  # kongsplit's UUIDv5 namespace


@dataclass
class ConfigEdit:
    """The result of planning against a DB-less config (``config`` is edited in place)."""

    config: dict[str, Any]
    plan: WritePlan
    targets: dict[str, Target] = field(default_factory=dict)  # after the edit
    upstream_created: bool = False
    upstream_missing: bool = False
    algorithm: str | None = None


def _fk(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) else None


def _entity_list(config: dict[str, Any], key: str) -> list[Any]:
    value = config.get(key)
    if value is None:
        value = config[key] = []
    if not isinstance(value, list):
        raise TypeError(f"{key} is not a list")
    return value


def _normal(target: str) -> str:
    try:
        return normalize_target(target)
    except ValueError:
        return target


def editable_copy(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` that :func:`edit_config` may edit, leaving ``config`` as it was.

    The edit appends to and removes from the ``upstreams`` and ``targets`` lists and sets a
    target's ``weight`` and ``tags``; only those are copied (a deep copy of a 5 MB config would
    cost a second of the event loop).
    """
    copied = dict(config)
    for key in ("upstreams", "targets"):
        value = copied.get(key)
        if isinstance(value, list):
            copied[key] = [dict(e) if isinstance(e, dict) else e for e in value]
    return copied


def edit_config(
    config: dict[str, Any],
    upstream: str,
    desired: Sequence[DesiredTarget],
    *,
    owner_tags: Sequence[str],
    create_upstream: bool,
    exclusive: bool,
) -> ConfigEdit:
    """Plan and apply the writes for ``upstream`` to a flat declarative config (Kong's export).

    Raises TypeError/KeyError when the config does not have the shape of Kong's export.
    """
    upstreams = _entity_list(config, "upstreams")
    entry = next((u for u in upstreams if isinstance(u, dict) and u.get("name") == upstream), None)
    created = False
    if entry is None:
        if not create_upstream:
            drift = (Drift(DRIFT_MISSING, None, None, None, corrected=False),)
            return ConfigEdit(config, WritePlan((), (), drift), upstream_missing=True)
        # Tagged with this Rollout: the ownership every sidecar reads back from the config.
        entry = {
            "id": str(uuid.uuid5(_NS, f"upstream:{upstream}")),
            "name": upstream,
            "tags": list(write_tags(owner_tags)),
        }
        upstreams.append(entry)
        created = True
    upstream_id = entry["id"]
    if not isinstance(upstream_id, str):
        raise TypeError("upstream id is not a string")

    targets_list = _entity_list(config, "targets")
    raw_by_target: dict[str, dict[str, Any]] = {}
    current: dict[str, Target] = {}
    fk_as_object = False
    for raw in targets_list:
        if not isinstance(raw, dict):
            raise TypeError("a target is not a mapping")
        if isinstance(raw.get("upstream"), Mapping):
            fk_as_object = True
        if _fk(raw.get("upstream")) != upstream_id:
            continue
        t = Target.from_json({**raw, "target": _normal(str(raw.get("target", "")))})
        raw_by_target[t.target] = raw
        current[t.target] = t

    plan = plan_writes(current.values(), desired, owner_tags=owner_tags, exclusive=exclusive)
    if created:
        missing = Drift(DRIFT_MISSING, None, None, None)
        plan = WritePlan(plan.raises, plan.lowers, (missing, *plan.drift))
    for w in plan.writes:
        if w.kind == WriteKind.DELETE:
            targets_list.remove(raw_by_target[w.target])
            current.pop(w.target, None)
            continue
        if w.kind == WriteKind.CREATE:
            raw = {
                "id": str(uuid.uuid5(_NS, f"target:{upstream_id}:{w.target}")),
                "target": w.target,
                "weight": w.weight,
                "upstream": {"id": upstream_id} if fk_as_object else upstream_id,
                "tags": list(w.tags or ()),
            }
            targets_list.append(raw)
            raw_by_target[w.target] = raw
        else:
            raw = raw_by_target[w.target]
            raw["weight"] = w.weight
            if w.tags is not None:
                raw["tags"] = list(w.tags)
        current[w.target] = Target.from_json({**raw, "target": w.target})
    algorithm = entry.get("algorithm")
    return ConfigEdit(
        config,
        plan,
        current,
        upstream_created=created,
        algorithm=algorithm if isinstance(algorithm, str) else "round-robin",
    )


def _upstream_entry(config: Mapping[str, Any], upstream: str) -> dict[str, Any] | None:
    upstreams = config.get("upstreams")
    return next(
        (
            u
            for u in (upstreams if isinstance(upstreams, list) else ())
            if isinstance(u, dict) and u.get("name") == upstream
        ),
        None,
    )


def upstream_targets(config: Mapping[str, Any], upstream: str) -> tuple[Target, ...] | None:
    """The targets of ``upstream`` in a declarative config, target strings normalised as
    :func:`edit_config` reads them (entries of the wrong shape left out); None when the config
    has no such upstream."""
    entry = _upstream_entry(config, upstream)
    if entry is None:
        return None
    uid = entry.get("id")
    found = []
    for raw in config.get("targets") or ():
        if isinstance(raw, dict) and _fk(raw.get("upstream")) == uid:
            try:
                found.append(
                    Target.from_json(
                        {
                            **raw,
                            "id": str(raw.get("id", "")),
                            "target": _normal(str(raw.get("target", ""))),
                        }
                    )
                )
            except (TypeError, KeyError):
                continue
    return tuple(found)


def config_claim(config: Mapping[str, Any], upstream: str) -> UpstreamClaim:
    """Who a declarative config says owns ``upstream`` (see ``records.UpstreamClaim``)."""
    entry = _upstream_entry(config, upstream)
    targets = upstream_targets(config, upstream)
    if entry is None or targets is None:
        return UpstreamClaim(exists=False, owner=None, tags=())
    raw_tags = entry.get("tags")
    tags = tuple(t for t in (raw_tags if isinstance(raw_tags, list) else ()) if isinstance(t, str))
    return UpstreamClaim(exists=True, owner=claimed_owner(tags, targets), tags=tags)
