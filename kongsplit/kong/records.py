"""Kong's records as the Admin API returns them: frozen values parsed from Kong's JSON with the
shape checked (a wrong shape raises TypeError/KeyError, which the client turns into a
``KongResponseError``), and the deployment modes ``GET /`` reveals. Pure: no I/O.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kongsplit.kong.targets import MANAGED_TAG, ROLLOUT_TAG_PREFIX, owner_label, rollout_of

#: The ``configuration_hash`` of a DB-less node that has no configuration loaded
#: (``DECLARATIVE_EMPTY_CONFIG_HASH`` in Kong's kong/constants.lua).
EMPTY_CONFIG_HASH = "0" * 32


# --- modes --------------------------------------------------------------------------------------


class KongMode(enum.StrEnum):
    DB = "db"  # role traditional with a database: entity writes through any node
    DBLESS = "dbless"  # role traditional, database off: only whole-config POST /config per node
    CONTROL_PLANE = "control_plane"  # hybrid CP: writes as in DB mode, DPs get pushes
    DATA_PLANE = "data_plane"  # hybrid DP: read-only, its config is owned by the CP


@dataclass(frozen=True)
class NodeInfo:
    """What ``GET /`` says about a node."""

    version: str
    edition: str
    node_id: str
    hostname: str
    database: str
    role: str
    mode: KongMode


def parse_mode(database: str, role: str) -> KongMode:
    """The deployment mode from ``configuration.database`` and ``configuration.role``."""
    if role == "data_plane":
        return KongMode.DATA_PLANE
    if role == "control_plane":
        return KongMode.CONTROL_PLANE
    # KIC treats an empty database setting as DB-less too.
    return KongMode.DBLESS if database in ("off", "") else KongMode.DB


# --- records ------------------------------------------------------------------------------------


def _tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise TypeError("tags is not a list of strings")
    # Interned: ``managed-by-kongsplit`` is on every target, a Rollout's tag on each of its
    # targets (one copy each, not one per target read; the cache holds 40,000 of them).
    return tuple(sys.intern(t) for t in value)


@dataclass(frozen=True, slots=True)
class Upstream:
    id: str
    name: str
    tags: tuple[str, ...] = ()
    algorithm: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> Upstream:
        """Raises TypeError/KeyError on a wrong shape; callers turn that into KongResponseError."""
        if not isinstance(data, Mapping):
            raise TypeError("upstream is not an object")
        uid, name = data["id"], data["name"]
        if not isinstance(uid, str) or not isinstance(name, str):
            raise TypeError("upstream id/name are not strings")
        algorithm = data.get("algorithm")
        return cls(
            id=uid,
            name=sys.intern(name),  # the name the Rollout's annotation holds
            tags=_tags(data.get("tags")),
            algorithm=sys.intern(algorithm) if isinstance(algorithm, str) else None,
        )


@dataclass(frozen=True, slots=True)
class Target:
    """One target as Kong lists it (``target`` is Kong's normalised host:port)."""

    id: str
    target: str
    weight: int
    tags: tuple[str, ...] = ()
    upstream_id: str | None = None
    created_at: float | None = None

    @property
    def managed(self) -> bool:
        return MANAGED_TAG in self.tags

    @property
    def rollout_tag(self) -> str | None:
        return next((t for t in self.tags if t.startswith(ROLLOUT_TAG_PREFIX)), None)

    @property
    def owner(self) -> str:
        """``kongsplit:<ns>/<name>``, ``kongsplit`` or ``foreign`` (as ``inspect`` shows it)."""
        return owner_label(self.tags)

    @classmethod
    def from_json(cls, data: Any) -> Target:
        if not isinstance(data, Mapping):
            raise TypeError("target is not an object")
        tid, target, weight = data["id"], data["target"], data.get("weight", 100)
        if not isinstance(tid, str) or not isinstance(target, str):
            raise TypeError("target id/target are not strings")
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise TypeError("target weight is not an integer")
        upstream = data.get("upstream")
        if isinstance(upstream, Mapping):
            upstream = upstream.get("id")
        created = data.get("created_at")
        return cls(
            id=tid,
            target=sys.intern(target),  # the string the desired state holds
            weight=weight,
            tags=_tags(data.get("tags")),
            upstream_id=upstream if isinstance(upstream, str) else None,
            created_at=float(created) if isinstance(created, int | float) else None,
        )


@dataclass(frozen=True)
class NodeStatus:
    """``GET /status``: ``configuration_hash`` only on DB-less nodes and data planes."""

    configuration_hash: str | None
    database_reachable: bool | None

    @property
    def empty(self) -> bool:
        return self.configuration_hash == EMPTY_CONFIG_HASH


@dataclass(frozen=True)
class TargetHealth:
    """One entry of ``GET /upstreams/{u}/health`` on one node: what its balancer holds.

    ``balanced`` is False when the row carries no balancer data at all: a hybrid control plane
    builds no balancers, and a node whose balancer lacks the upstream answers plain target rows
    (``page_for_upstream_with_health`` in Kong's kong/db/dao/targets.lua). A target the
    balancer lacks is ``DNS_ERROR`` there (Kong extrapolates a failed resolution from it).
    """

    target: str
    health: str | None  # HEALTHY | UNHEALTHY | DNS_ERROR | HEALTHCHECKS_OFF | None (no data)
    node_weight: int | None  # data.nodeWeight: the weight this node's balancer loaded
    weight: int | None  # the target's configured weight (from the database, not the node)
    addresses: int = 0  # data.addresses: how many addresses the target resolved to
    total_weight: int | None = None  # data.weight.total: weight over every address
    available_weight: int | None = None  # data.weight.available: over healthy addresses
    balanced: bool = True

    @property
    def resolved(self) -> bool:
        return self.health != "DNS_ERROR" and self.addresses > 0 and (self.total_weight or 0) > 0


@dataclass(frozen=True)
class UpstreamClaim:
    """What Kong says about an upstream before kongsplit drives it.

    ``owner`` is the Rollout Kong's tags name: the upstream's own ``kongsplit-rollout:`` tag
    (kongsplit created it), else the one Rollout tag its managed targets carry. ``tags`` are the
    upstream's: ``managed-by-kongsplit`` there is the consent of whoever owns Kong's
    configuration.
    """

    exists: bool
    owner: tuple[str, str] | None
    tags: tuple[str, ...]

    @property
    def tagged_for_kongsplit(self) -> bool:
        return MANAGED_TAG in self.tags


def claimed_owner(
    upstream_tags: tuple[str, ...], targets: tuple[Target, ...]
) -> tuple[str, str] | None:
    """The Rollout an upstream belongs to, by its tags, then its managed targets' tags."""
    owner = rollout_of(upstream_tags)
    if owner is not None:
        return owner
    owners = {rollout_of(t.tags) for t in targets if t.managed}
    owners.discard(None)
    if len(owners) == 1:
        return next(iter(owners))
    return None
