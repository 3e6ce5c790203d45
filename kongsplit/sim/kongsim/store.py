"""The simulated Kong database: upstreams and targets per workspace, with indexes.

One ``Store`` is "the Postgres database" shared by every node in DB mode; in DB-less mode each
node owns its own ``Store`` (its in-memory config). Writes go through the DAO-like methods
here, which apply Kong's rules (normalisation, uniqueness, cascade delete) and record a
snapshot of the upstream's targets so each node's *balancer view* can lag behind the database
(``db_update_frequency``, docs/kong.md "Propagation") without any background task.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kongsplit.sim.kongsim.schema import (
    TARGET_FIELDS,
    UPSTREAM_FIELDS,
    VersionProfile,
    apply_upstream_shorthands,
    deep_copy,
    format_target,
    is_uuid,
    new_id,
    schema_violation,
    unique_violation,
    upstream_entity_checks,
    validate_fields,
)

Entity = dict[str, Any]


@dataclass(frozen=True)
class BalancerTarget:
    """What a node's balancer holds for one target."""

    id: str
    target: str
    weight: int


@dataclass(frozen=True)
class BalancerState:
    """A node's balancer for one upstream at some moment (None targets = upstream gone)."""

    upstream: Entity | None
    targets: tuple[BalancerTarget, ...]


@dataclass
class _History:
    times: list[float] = field(default_factory=list)
    writers: list[int | None] = field(default_factory=list)
    states: list[BalancerState] = field(default_factory=list)


@dataclass
class Workspace:
    id: str
    name: str
    upstreams: dict[str, Entity] = field(default_factory=dict)
    upstream_ids_by_name: dict[str, str] = field(default_factory=dict)
    targets: dict[str, Entity] = field(default_factory=dict)
    # upstream id -> {normalised target string -> target id}
    targets_by_upstream: dict[str, dict[str, str]] = field(default_factory=dict)
    # Upstream ids in order (Postgres pages by id): kept sorted by the Store's writes, None when
    # the upstreams were replaced wholesale (a declarative load), rebuilt on the next read.
    sorted_upstream_ids: list[str] | None = None


class Store:
    """Entities of all workspaces plus the per-upstream balancer history."""

    def __init__(
        self,
        *,
        profile: VersionProfile,
        workspaces: tuple[str, ...],
        clock: Callable[[], float],
        wall_clock: Callable[[], float] = time.time,
        history_window: float = 0.0,
    ) -> None:
        self.profile = profile
        self.clock = clock
        self.wall_clock = wall_clock
        self.history_window = history_window
        self.workspaces: dict[str, Workspace] = {}
        self.workspace_ids: dict[str, str] = {}
        for name in workspaces:
            self.add_workspace(name)
        self._history: dict[tuple[str, str], _History] = {}
        # DB-less: config sections the simulator does not model, kept for GET /config
        self.declarative_extra: dict[str, Any] = {}
        # DB-less: a target's text as posted (Kong stores and exports it unnormalised), by id
        self.declarative_target_text: dict[str, str] = {}
        self.on_write: list[Callable[[str, str], None]] = []
        # Like on_write, with the node whose request made the change (None: a test helper or a
        # declarative load): (workspace, upstream name, node).
        self.on_commit: list[Callable[[str, str, int | None], None]] = []

    # -- workspaces ----------------------------------------------------------------------------
    def add_workspace(self, name: str) -> Workspace:
        ws = Workspace(id=new_id(), name=name)
        self.workspaces[name] = ws
        self.workspace_ids[ws.id] = name
        return ws

    def workspace(self, name_or_id: str) -> Workspace | None:
        if name_or_id in self.workspaces:
            return self.workspaces[name_or_id]
        name = self.workspace_ids.get(name_or_id.lower())
        return self.workspaces.get(name) if name else None

    def wipe(self) -> None:
        for ws in self.workspaces.values():
            ws.upstreams.clear()
            ws.upstream_ids_by_name.clear()
            ws.targets.clear()
            ws.targets_by_upstream.clear()
            ws.sorted_upstream_ids = None
        self._history.clear()
        self.declarative_extra = {}
        self.declarative_target_text = {}

    # -- timestamps ----------------------------------------------------------------------------
    def _stamp_upstream(self, entity: Entity, *, created: bool) -> None:
        now = int(self.wall_clock())
        if created and not isinstance(entity.get("created_at"), int):
            entity["created_at"] = now
        if self.profile.has_updated_at:
            entity["updated_at"] = now
        else:
            entity.pop("updated_at", None)

    def _stamp_target(self, entity: Entity, *, created: bool) -> None:
        now = round(self.wall_clock(), 3)
        if created and not isinstance(entity.get("created_at"), int | float):
            entity["created_at"] = now
        if self.profile.has_updated_at:
            entity["updated_at"] = now
        else:
            entity.pop("updated_at", None)

    def _shape(self, entity: Entity, order: tuple[str, ...]) -> Entity:
        out = {k: entity.get(k) for k in order if k in entity or k != "updated_at"}
        if not self.profile.has_updated_at:
            out.pop("updated_at", None)
        return out

    # -- upstream lookups ----------------------------------------------------------------------
    def find_upstream(self, ws: Workspace, id_or_name: str) -> Entity | None:
        if is_uuid(id_or_name):
            found = ws.upstreams.get(id_or_name.lower())
            if found is not None:
                return found
        uid = ws.upstream_ids_by_name.get(id_or_name)
        return ws.upstreams.get(uid) if uid else None

    def list_upstreams(self, ws: Workspace) -> list[Entity]:
        """All upstreams ordered by id, as Postgres pages them."""
        return [ws.upstreams[k] for k in self.upstream_ids(ws)]

    def upstream_ids(self, ws: Workspace) -> list[str]:
        """Every upstream id in order, from the index (sorted once after a wholesale load)."""
        if ws.sorted_upstream_ids is None or len(ws.sorted_upstream_ids) != len(ws.upstreams):
            ws.sorted_upstream_ids = sorted(ws.upstreams)
        return ws.sorted_upstream_ids

    def upstream_page(self, ws: Workspace, after: str | None, size: int) -> list[Entity]:
        """Up to ``size`` upstreams with an id above ``after``, in id order: a binary search
        in the index, so a page costs the same at 20 upstreams or 20,000."""
        ids = self.upstream_ids(ws)
        start = 0 if after is None else bisect.bisect_right(ids, after)
        return [ws.upstreams[k] for k in ids[start : start + size]]

    # -- upstream writes -----------------------------------------------------------------------
    def validate_upstream(
        self, data: dict[str, Any], *, coerce: bool, base: Entity | None
    ) -> Entity:
        data = dict(data)
        apply_upstream_shorthands(data)
        entity, errors = validate_fields(
            UPSTREAM_FIELDS, data, coerce=coerce, partial=base is not None, base=base
        )
        if not errors:
            checks = upstream_entity_checks(entity)
            if checks:
                errors["@entity"] = checks
        if errors:
            raise schema_violation(errors)
        return entity

    def insert_upstream(
        self, ws: Workspace, data: dict[str, Any], *, coerce: bool = False, node: int | None = None
    ) -> Entity:
        entity = self.validate_upstream(data, coerce=coerce, base=None)
        entity["id"] = (entity.get("id") or new_id()).lower()
        if entity["id"] in ws.upstreams:
            raise unique_violation({"id": entity["id"]})
        if entity["name"] in ws.upstream_ids_by_name:
            raise unique_violation({"name": entity["name"]})
        self._stamp_upstream(entity, created=True)
        entity = self._shape(entity, tuple(UPSTREAM_FIELDS))
        ws.upstreams[entity["id"]] = entity
        ws.upstream_ids_by_name[entity["name"]] = entity["id"]
        ws.targets_by_upstream[entity["id"]] = {}
        if ws.sorted_upstream_ids is not None:
            bisect.insort(ws.sorted_upstream_ids, entity["id"])
        self._committed(ws, entity["id"], node)
        return entity

    def update_upstream(
        self,
        ws: Workspace,
        current: Entity,
        data: dict[str, Any],
        *,
        coerce: bool = False,
        node: int | None = None,
    ) -> Entity:
        data = {k: v for k, v in data.items() if k not in ("id",)} | {"id": current["id"]}
        entity = self.validate_upstream(data, coerce=coerce, base=current)
        self._replace_upstream(ws, current, entity, node=node)
        return ws.upstreams[current["id"]]

    def upsert_upstream(
        self,
        ws: Workspace,
        data: dict[str, Any],
        *,
        current: Entity | None,
        coerce: bool = False,
        node: int | None = None,
    ) -> Entity:
        """PUT: full replacement (defaults for absent fields), or an insert."""
        if current is None:
            return self.insert_upstream(ws, data, coerce=coerce, node=node)
        data = dict(data)
        data["id"] = current["id"]
        data.setdefault("created_at", current["created_at"])
        entity = self.validate_upstream(data, coerce=coerce, base=None)
        self._replace_upstream(ws, current, entity, node=node)
        return ws.upstreams[current["id"]]

    def _replace_upstream(
        self, ws: Workspace, current: Entity, entity: Entity, *, node: int | None
    ) -> None:
        other = ws.upstream_ids_by_name.get(entity["name"])
        if other is not None and other != current["id"]:
            raise unique_violation({"name": entity["name"]})
        entity["id"] = current["id"]
        entity["created_at"] = current["created_at"]
        self._stamp_upstream(entity, created=False)
        entity = self._shape(entity, tuple(UPSTREAM_FIELDS))
        if current["name"] != entity["name"]:
            del ws.upstream_ids_by_name[current["name"]]
        ws.upstream_ids_by_name[entity["name"]] = entity["id"]
        ws.upstreams[entity["id"]] = entity
        self._committed(ws, entity["id"], node)

    def delete_upstream(self, ws: Workspace, current: Entity, *, node: int | None = None) -> None:
        uid = current["id"]
        for tid in ws.targets_by_upstream.pop(uid, {}).values():
            ws.targets.pop(tid, None)
        if ws.upstreams.pop(uid, None) is not None and ws.sorted_upstream_ids is not None:
            ids = ws.sorted_upstream_ids
            at = bisect.bisect_left(ids, uid)
            if at < len(ids) and ids[at] == uid:
                del ids[at]
            else:
                ws.sorted_upstream_ids = None
        ws.upstream_ids_by_name.pop(current["name"], None)
        self._committed(ws, uid, node, name=current["name"])

    # -- target lookups ------------------------------------------------------------------------
    def find_target(self, ws: Workspace, upstream: Entity, id_or_target: str) -> Entity | None:
        """By UUID (must belong to this upstream) or by exact normalised ``host:port``."""
        if is_uuid(id_or_target):
            found = ws.targets.get(id_or_target.lower())
            if found is not None and found["upstream"]["id"] == upstream["id"]:
                return found
            if found is not None:
                return None
        tid = ws.targets_by_upstream.get(upstream["id"], {}).get(id_or_target)
        return ws.targets.get(tid) if tid else None

    def targets_newest_first(self, ws: Workspace, upstream_id: str) -> list[Entity]:
        items = [ws.targets[t] for t in ws.targets_by_upstream.get(upstream_id, {}).values()]
        items.sort(key=lambda e: (e["created_at"], e["id"]), reverse=True)
        return items

    def targets_by_id(self, ws: Workspace, upstream_id: str) -> list[Entity]:
        items = [ws.targets[t] for t in ws.targets_by_upstream.get(upstream_id, {}).values()]
        items.sort(key=lambda e: e["id"])
        return items

    # -- target writes -------------------------------------------------------------------------
    def insert_target(
        self,
        ws: Workspace,
        upstream: Entity,
        data: dict[str, Any],
        *,
        coerce: bool = False,
        node: int | None = None,
        dry_run: bool = False,
    ) -> Entity:
        data = dict(data)
        data["upstream"] = {"id": upstream["id"]}
        raw_target = data.get("target")
        if isinstance(raw_target, str):
            # the DAO formats the target before schema validation (kong/db/dao/targets.lua
            # format_target)
            formatted = format_target(raw_target)
            if formatted is None:
                raise schema_violation(
                    {"target": "Invalid target; not a valid hostname or ip address"}
                )
            data["target"] = formatted
        entity, errors = validate_fields(TARGET_FIELDS, data, coerce=coerce, partial=False)
        if errors:
            raise schema_violation(errors)
        if dry_run:
            return entity
        entity["id"] = (entity.get("id") or new_id()).lower()
        index = ws.targets_by_upstream.setdefault(upstream["id"], {})
        if entity["id"] in ws.targets:
            raise unique_violation({"id": entity["id"]})
        if entity["target"] in index:
            raise unique_violation({"target": entity["target"], "upstream": {"id": upstream["id"]}})
        self._stamp_target(entity, created=True)
        entity = self._shape(entity, tuple(TARGET_FIELDS))
        ws.targets[entity["id"]] = entity
        index[entity["target"]] = entity["id"]
        self._committed(ws, upstream["id"], node)
        return entity

    def update_target(
        self,
        ws: Workspace,
        upstream: Entity,
        current: Entity,
        data: dict[str, Any],
        *,
        coerce: bool = False,
        node: int | None = None,
        dry_run: bool = False,
    ) -> Entity:
        data = {k: v for k, v in data.items() if k != "id"}
        data["upstream"] = {"id": upstream["id"]}
        raw_target = data.get("target")
        if isinstance(raw_target, str):
            formatted = format_target(raw_target)
            if formatted is None:
                raise schema_violation(
                    {
                        "target": f"Invalid target ('{raw_target}'); "
                        "not a valid hostname or ip address"
                    }
                )
            data["target"] = formatted
        entity, errors = validate_fields(
            TARGET_FIELDS, data, coerce=coerce, partial=True, base=current
        )
        if errors:
            raise schema_violation(errors)
        if dry_run:
            return entity
        index = ws.targets_by_upstream.setdefault(upstream["id"], {})
        other = index.get(entity["target"])
        if other is not None and other != current["id"]:
            raise unique_violation({"target": entity["target"], "upstream": {"id": upstream["id"]}})
        entity["id"] = current["id"]
        entity["created_at"] = current["created_at"]
        self._stamp_target(entity, created=False)
        entity = self._shape(entity, tuple(TARGET_FIELDS))
        if entity["target"] != current["target"]:
            index.pop(current["target"], None)
        index[entity["target"]] = entity["id"]
        ws.targets[entity["id"]] = entity
        self._committed(ws, upstream["id"], node)
        return entity

    def delete_target(
        self, ws: Workspace, upstream: Entity, current: Entity, *, node: int | None = None
    ) -> None:
        ws.targets.pop(current["id"], None)
        ws.targets_by_upstream.get(upstream["id"], {}).pop(current["target"], None)
        self._committed(ws, upstream["id"], node)

    # -- change notification and balancer history -----------------------------------------------
    def commit_upstream(
        self, ws: Workspace, upstream_id: str, *, node: int | None, name: str | None = None
    ) -> None:
        """Record that ``upstream_id`` changed by other means (a declarative load)."""
        self._committed(ws, upstream_id, node, name=name)

    def _committed(
        self, ws: Workspace, upstream_id: str, node: int | None, *, name: str | None = None
    ) -> None:
        upstream = ws.upstreams.get(upstream_id)
        state = BalancerState(
            upstream=deep_copy(upstream) if upstream is not None else None,
            targets=tuple(
                BalancerTarget(id=t["id"], target=t["target"], weight=t["weight"])
                for t in self.targets_newest_first(ws, upstream_id)
            )
            if upstream is not None
            else (),
        )
        hist = self._history.setdefault((ws.name, upstream_id), _History())
        now = self.clock()
        hist.times.append(now)
        hist.writers.append(node)
        hist.states.append(state)
        self._prune(hist, now)
        upstream_name = upstream["name"] if upstream is not None else (name or upstream_id)
        for callback in list(self.on_write):
            callback(ws.name, upstream_name)
        for hook in list(self.on_commit):
            hook(ws.name, upstream_name, node)

    def _prune(self, hist: _History, now: float) -> None:
        # Keep everything a lagging node could still be looking at, plus one older entry.
        horizon = now - self.history_window
        cut = bisect.bisect_right(hist.times, horizon) - 1
        if cut > 0:
            del hist.times[:cut], hist.writers[:cut], hist.states[:cut]

    def balancer_view(
        self, ws: Workspace, upstream_id: str, *, node: int, delay: float
    ) -> BalancerState | None:
        """What ``node``'s balancer holds: the database as of ``now - delay``, except that a
        node sees its own writes at once (it rebuilds the balancer from the database then)."""
        hist = self._history.get((ws.name, upstream_id))
        if hist is None or not hist.times:
            return None
        now = self.clock()
        horizon = now - delay
        own = max(
            (t for t, w in zip(hist.times, hist.writers, strict=True) if w == node and t <= now),
            default=None,
        )
        if own is not None and own > horizon:
            horizon = own
        idx = bisect.bisect_right(hist.times, horizon) - 1
        if idx < 0:
            return None
        return hist.states[idx]

    def iter_targets(self, ws: Workspace) -> Iterator[Entity]:
        yield from ws.targets.values()
