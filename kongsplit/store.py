"""The daemon's cache of what the watchers deliver, and the indexes that route changes.

``Store`` keeps the parsed Rollouts, Services and ReplicaSets (only the fields the engine
needs), and knows which Rollouts use which Service or pod-template-hash, so a change to a
Service or ReplicaSet re-queues only the Rollouts that read it.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Hashable
from typing import Any, TypeVar

from kongsplit.annotations import ANN_UPSTREAM, is_opted_in
from kongsplit.rollouts import (
    ObjectError,
    ObjectRef,
    ReplicaSet,
    Rollout,
    RolloutKey,
    Service,
    parse_replicaset,
    parse_rollout,
    parse_service,
)
from kongsplit.weights import resolve_services

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V", bound=Hashable)


# A reverse index where nearly every entry has one member (a Service used by one Rollout, a hash
# by one ReplicaSet): that member is stored as the value itself, a set only from the second on.
# At 20,000 Rollouts the sets were a fifth of the daemon's own memory.
def _index_add(index: dict[_K, Any], key: _K, member: _V) -> None:
    held = index.get(key)
    if held is None:
        index[key] = member
    elif isinstance(held, set):
        held.add(member)
    elif held != member:
        index[key] = {held, member}


def _index_discard(index: dict[_K, Any], key: _K, member: _V) -> None:
    held = index.get(key)
    if held is None:
        return
    if isinstance(held, set):
        held.discard(member)
        if len(held) == 1:
            index[key] = next(iter(held))
    elif held == member:
        del index[key]


def _members(index: dict[_K, Any], key: _K) -> Collection[Any]:
    held = index.get(key)
    if held is None:
        return ()
    return held if isinstance(held, set) else (held,)


class Store:
    """Parsed Rollouts, Services and ReplicaSets, plus the reverse indexes that route changes."""

    def __init__(self) -> None:
        self.rollouts: dict[RolloutKey, Rollout | ObjectError] = {}
        self.raw_refs: dict[RolloutKey, ObjectRef] = {}
        self.opted_in: set[RolloutKey] = (
            set()
        )  # carries a kongsplit.io/ annotation (even if invalid)
        # A Service that cannot be read is kept as its ObjectError, so a Rollout using it is told
        # what is wrong with it (an invalid port), not that it does not exist.
        self.services: dict[str, dict[str, Service | ObjectError]] = {}
        self.replicasets: dict[str, dict[str, ReplicaSet]] = {}
        # (namespace, pod-template-hash) → its ReplicaSets by name (one: the ReplicaSet
        # itself), so a reconcile looks at the one or two ReplicaSets its Rollout names instead
        # of scanning the namespace (at 1,000 Rollouts in one namespace the scan was most of a
        # burst's CPU).
        self._rs_by_hash: dict[tuple[str, str], ReplicaSet | dict[str, ReplicaSet]] = {}
        # (namespace, service or pod-template-hash) → Rollouts that care about it (one Rollout,
        # or a set: _index_add)
        self._service_users: dict[tuple[str, str], RolloutKey | set[RolloutKey]] = {}
        self._hash_users: dict[tuple[str, str], RolloutKey | set[RolloutKey]] = {}
        self._indexed: dict[RolloutKey, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        # kongsplit.io/upstream value → the Rollouts naming it: every claimant of an upstream,
        # whether or not it has been reconciled yet (ownership must not depend on that order).
        self._upstream_users: dict[str, RolloutKey | set[RolloutKey]] = {}
        self._upstream_of: dict[RolloutKey, str] = {}

    # Rollouts -------------------------------------------------------------------------
    def set_rollout(self, obj: dict[str, Any]) -> RolloutKey | None:
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else None
        if meta is None or not isinstance(meta.get("name"), str):
            return None
        key = self._key(meta)
        parsed = parse_rollout(obj)
        self.rollouts[key] = parsed
        if is_opted_in(meta.get("annotations")):
            self.opted_in.add(key)
        else:
            self.opted_in.discard(key)
        uid = meta.get("uid")
        self.raw_refs[key] = ObjectRef(
            api_version="argoproj.io/v1alpha1",
            kind="Rollout",
            namespace=key.namespace,
            name=key.name,
            uid=sys.intern(uid) if isinstance(uid, str) else None,  # its ReplicaSets' owner
        )
        self._reindex(key, parsed if isinstance(parsed, Rollout) else None)
        annotations = meta.get("annotations")
        named = annotations.get(ANN_UPSTREAM) if isinstance(annotations, dict) else None
        self._index_upstream(key, named.strip() if isinstance(named, str) else None)
        return key

    def _key(self, meta: dict[str, Any]) -> RolloutKey:
        """The Rollout's key; the key already held when there is one (a change of a known
        Rollout keeps no second copy of its names)."""
        key = RolloutKey(sys.intern(str(meta.get("namespace") or "default")), meta["name"])
        held = self.raw_refs.get(key)
        return RolloutKey(held.namespace, held.name) if held is not None else key

    def upstream_users(self, upstream: str) -> Collection[RolloutKey]:
        """The Rollouts whose annotations name ``upstream``."""
        return _members(self._upstream_users, upstream)

    def _index_upstream(self, key: RolloutKey, upstream: str | None) -> None:
        old = self._upstream_of.get(key)
        if old == upstream:
            return
        if old is not None:
            _index_discard(self._upstream_users, old, key)
            del self._upstream_of[key]
        if upstream:
            _index_add(self._upstream_users, upstream, key)
            self._upstream_of[key] = upstream

    def delete_rollout(self, obj: dict[str, Any]) -> RolloutKey | None:
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else None
        if meta is None or not isinstance(meta.get("name"), str):
            return None
        key = self._key(meta)
        self.rollouts.pop(key, None)
        self.raw_refs.pop(key, None)
        self.opted_in.discard(key)
        self._reindex(key, None)
        self._index_upstream(key, None)
        return key

    def _reindex(self, key: RolloutKey, rollout: Rollout | None) -> None:
        services: tuple[str, ...] = ()
        hashes: tuple[str, ...] = ()
        if rollout is not None:
            names = list(resolve_services(rollout))
            if rollout.ping_pong is not None:
                names += [rollout.ping_pong.ping_service, rollout.ping_pong.pong_service]
            services = tuple(sorted({n for n in names if n}))
            hashes = tuple(sorted({h for h in (rollout.current_pod_hash, rollout.stable_rs) if h}))
        old = self._indexed.get(key, ((), ()))
        if old == (services, hashes):
            return
        for index, stale in ((self._service_users, old[0]), (self._hash_users, old[1])):
            for item in stale:  # no empty entries left behind, revision after revision
                _index_discard(index, (key.namespace, item), key)
        for name in services:
            _index_add(self._service_users, (key.namespace, name), key)
        for h in hashes:
            _index_add(self._hash_users, (key.namespace, h), key)
        if services or hashes:
            self._indexed[key] = (services, hashes)
        else:
            self._indexed.pop(key, None)

    # Services and ReplicaSets -------------------------------------------------------------
    def set_service(self, obj: dict[str, Any], deleted: bool = False) -> set[RolloutKey]:
        parsed = parse_service(obj)
        if isinstance(parsed, ObjectError):
            if parsed.name is None:
                return set()
            ns, name = parsed.namespace or "default", parsed.name
        else:
            ns, name = parsed.namespace, parsed.name
        if deleted:
            bucket = self.services.get(ns)
            if bucket is not None:
                bucket.pop(name, None)
                if not bucket:
                    del self.services[ns]
        else:
            self.services.setdefault(ns, {})[name] = parsed
        return set(_members(self._service_users, (ns, name)))

    def set_replicaset(self, obj: dict[str, Any], deleted: bool = False) -> set[RolloutKey]:
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        assert isinstance(meta, dict)
        if not isinstance(meta.get("name"), str):
            return set()
        ns, name = str(meta.get("namespace") or "default"), meta["name"]
        parsed = None if deleted else parse_replicaset(obj)
        if isinstance(parsed, ObjectError) or (parsed is not None and not parsed.pod_template_hash):
            parsed = None  # unreadable, or not one of Argo's: we keep no such ReplicaSet
        # Remove what we held under this name first: a DELETED tombstone from a relist has a
        # name only, and a ReplicaSet can lose its hash label; neither may linger in an index.
        users: set[RolloutKey] = set()
        old = self.replicasets.get(ns, {}).pop(name, None)
        if old is not None:
            self._unindex_replicaset(ns, name, old)
            users.update(_members(self._hash_users, (ns, old.pod_template_hash or "")))
        if parsed is None:
            return users
        self.replicasets.setdefault(ns, {})[name] = parsed
        assert parsed.pod_template_hash is not None
        where = (ns, parsed.pod_template_hash)
        group = self._rs_by_hash.get(where)
        if group is None or (isinstance(group, ReplicaSet) and group.name == name):
            self._rs_by_hash[where] = parsed
        elif isinstance(group, ReplicaSet):
            self._rs_by_hash[where] = {group.name: group, name: parsed}
        else:
            group[name] = parsed
        users.update(_members(self._hash_users, where))
        return users

    def _unindex_replicaset(self, ns: str, name: str, old: ReplicaSet) -> None:
        if old.pod_template_hash is None:
            return
        where = (ns, old.pod_template_hash)
        group = self._rs_by_hash.get(where)
        if isinstance(group, ReplicaSet):
            if group.name == name:
                del self._rs_by_hash[where]
        elif group is not None:
            group.pop(name, None)
            if len(group) == 1:
                self._rs_by_hash[where] = next(iter(group.values()))
        bucket = self.replicasets.get(ns)
        if bucket is not None and not bucket:
            del self.replicasets[ns]

    def services_in(self, namespace: str) -> dict[str, Service | ObjectError]:
        return self.services.get(namespace, {})

    def replicasets_for(self, rollout: Rollout) -> list[ReplicaSet]:
        """The ReplicaSets of the Rollout's namespace whose hash is its current or stable one:
        the only ones ``pick_replicasets`` can choose (its choice does not depend on order)."""
        ns = rollout.key.namespace
        found: dict[str, ReplicaSet] = {}
        for h in (rollout.current_pod_hash, rollout.stable_rs):
            if h is None:
                continue
            group = self._rs_by_hash.get((ns, h))
            if isinstance(group, ReplicaSet):
                found[group.name] = group
            elif group is not None:
                found.update(group)
        return list(found.values())
