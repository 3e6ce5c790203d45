"""The Store's indexes: which Rollouts a Service or ReplicaSet change re-queues."""

from __future__ import annotations

from kongsplit.rollouts import Rollout, RolloutKey
from kongsplit.sim import objects
from kongsplit.store import Store

KEY = RolloutKey("shop", "web")


def test_service_and_replicaset_changes_requeue_only_their_rollouts() -> None:
    store = Store()
    store.set_rollout(objects.rollout("web", pod_hash="v2", stable_rs="v1", index=0))
    store.set_rollout(objects.rollout("other", pod_hash="o2", stable_rs="o1", index=0))
    assert store.set_service(objects.service("web-stable", "10.0.0.1", "v1")) == {KEY}
    assert store.set_service(objects.service("unrelated", "10.0.0.9", "x")) == set()
    assert store.set_replicaset(objects.replicaset("web", "v2", 1, 1)) == {KEY}
    assert store.set_replicaset(objects.replicaset("other", "zz", 1, 1)) == set()


def test_a_tombstoned_replicaset_leaves_every_index() -> None:
    """A relist delivers DELETED with a name only; nothing of the old object may linger."""
    store = Store()
    rollout = objects.rollout("web", pod_hash="v2", stable_rs="v1", index=0)
    store.set_rollout(rollout)
    store.set_replicaset(objects.replicaset("web", "v2", 1, 1))
    tombstone = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web-v2", "namespace": "shop", "resourceVersion": "9"},
    }
    assert store.set_replicaset(tombstone, deleted=True) == {KEY}
    parsed = store.rollouts[KEY]
    assert isinstance(parsed, Rollout)
    assert store.replicasets_for(parsed) == []
    assert store.replicasets == {}


def test_a_replicaset_that_loses_its_hash_label_is_dropped() -> None:
    store = Store()
    store.set_rollout(objects.rollout("web", pod_hash="v2", stable_rs="v1", index=0))
    rs = objects.replicaset("web", "v2", 1, 1)
    store.set_replicaset(rs)
    del rs["metadata"]["labels"]["rollouts-pod-template-hash"]
    store.set_replicaset(rs)
    assert store.replicasets == {}


def test_revisions_leave_no_empty_index_sets() -> None:
    store = Store()
    for revision in range(50):
        store.set_rollout(objects.rollout("web", pod_hash=f"h{revision}", stable_rs="h0"))
    assert len(store._hash_users) == 2  # the current hash and the stable one, nothing more
    store.delete_rollout(objects.rollout("web"))
    assert store._hash_users == {} and store._service_users == {}
