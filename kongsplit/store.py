"""The daemon's cache of what the watchers deliver, and the indexes that route changes.

``Store`` keeps the parsed Rollouts, Services and ReplicaSets (only the fields the engine
needs), and knows which Rollouts use which Service or pod-template-hash, so a change to a
Service or ReplicaSet re-queues only the Rollouts that read it.
"""

from __future__ import annotations

from typing import Any

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
        # (namespace, pod-template-hash) → its ReplicaSets by name, so a reconcile looks at the
        # one or two ReplicaSets its Rollout names instead of scanning the namespace (at 1,000
        # Rollouts in one namespace the scan was most of a burst's CPU).
        self._rs_by_hash: dict[tuple[str, str], dict[str, ReplicaSet]] = {}
        # (namespace, service or pod-template-hash) → Rollouts that care about it
        self._service_users: dict[tuple[str, str], set[RolloutKey]] = {}
        self._hash_users: dict[tuple[str, str], set[RolloutKey]] = {}
        self._indexed: dict[RolloutKey, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        # kongsplit.io/upstream value → the Rollouts naming it: every claimant of an upstream,
        # whether or not it has been reconciled yet (ownership must not depend on that order).
        self.upstream_users: dict[str, set[RolloutKey]] = {}
        self._upstream_of: dict[RolloutKey, str] = {}

    # Rollouts -------------------------------------------------------------------------
    def set_rollout(self, obj: dict[str, Any]) -> RolloutKey | None:
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else None
        if meta is None or not isinstance(meta.get("name"), str):
            return None
        key = RolloutKey(str(meta.get("namespace") or "default"), meta["name"])
        parsed = parse_rollout(obj)
        self.rollouts[key] = parsed
        if is_opted_in(meta.get("annotations")):
            self.opted_in.add(key)
        else:
            self.opted_in.discard(key)
        self.raw_refs[key] = ObjectRef(
            api_version="argoproj.io/v1alpha1",
            kind="Rollout",
            namespace=key.namespace,
            name=key.name,
            uid=meta.get("uid") if isinstance(meta.get("uid"), str) else None,
        )
        self._reindex(key, parsed if isinstance(parsed, Rollout) else None)
        annotations = meta.get("annotations")
        named = annotations.get(ANN_UPSTREAM) if isinstance(annotations, dict) else None
        self._index_upstream(key, named.strip() if isinstance(named, str) else None)
        return key

    def _index_upstream(self, key: RolloutKey, upstream: str | None) -> None:
        old = self._upstream_of.get(key)
        if old == upstream:
            return
        if old is not None:
            users = self.upstream_users.get(old)
            if users is not None:
                users.discard(key)
                if not users:
                    del self.upstream_users[old]
            del self._upstream_of[key]
        if upstream:
            self.upstream_users.setdefault(upstream, set()).add(key)
            self._upstream_of[key] = upstream

    def delete_rollout(self, obj: dict[str, Any]) -> RolloutKey | None:
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else None
        if meta is None or not isinstance(meta.get("name"), str):
            return None
        key = RolloutKey(str(meta.get("namespace") or "default"), meta["name"])
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
            for item in stale:
                users = index.get((key.namespace, item))
                if users is not None:
                    users.discard(key)
                    if not users:  # no empty sets left behind, revision after revision
                        del index[(key.namespace, item)]
        for name in services:
            self._service_users.setdefault((key.namespace, name), set()).add(key)
        for h in hashes:
            self._hash_users.setdefault((key.namespace, h), set()).add(key)
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
        return set(self._service_users.get((ns, name), ()))

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
            users |= self._hash_users.get((ns, old.pod_template_hash or ""), set())
        if parsed is None:
            return set(users)
        self.replicasets.setdefault(ns, {})[name] = parsed
        assert parsed.pod_template_hash is not None
        self._rs_by_hash.setdefault((ns, parsed.pod_template_hash), {})[name] = parsed
        return users | self._hash_users.get((ns, parsed.pod_template_hash), set())

    def _unindex_replicaset(self, ns: str, name: str, old: ReplicaSet) -> None:
        if old.pod_template_hash is None:
            return
        group = self._rs_by_hash.get((ns, old.pod_template_hash))
        if group is not None:
            group.pop(name, None)
            if not group:
                del self._rs_by_hash[(ns, old.pod_template_hash)]
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
            if h is not None:
                found.update(self._rs_by_hash.get((ns, h), {}))
        return list(found.values())
