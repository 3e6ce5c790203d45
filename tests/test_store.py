"""The Store's indexes: which Rollouts a Service or ReplicaSet change re-queues."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kongsplit.desired import desired_state
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


# Any JSON in any field of a named object (the watcher checks only the envelope: an object
# with metadata.name): the store and the parsers behind it report, never raise.
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
_FIELDS = ("spec", "status", "apiVersion", "kind")


def _garbage_object(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    obj = json.loads(json.dumps(base))
    for name in draw(st.lists(st.sampled_from(_FIELDS), unique=True, max_size=3)):
        obj[name] = draw(_JSON)
    if draw(st.booleans()):
        obj["metadata"]["annotations"] = draw(
            st.dictionaries(
                st.sampled_from(["kongsplit.io/upstream", "kongsplit.io/port", "x"]), _JSON
            )
        )
    if draw(st.booleans()):
        obj["metadata"]["labels"] = draw(_JSON)
    # A replaced part deep inside spec, where the typed parsers go looking.
    spec = obj.get("spec")
    if isinstance(spec, dict) and draw(st.booleans()):
        for key in list(spec)[: draw(st.integers(0, 3))]:
            spec[key] = draw(_JSON)
    return obj


@st.composite
def garbage_objects(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from(["rollout", "service", "replicaset"]))
    base = {
        "rollout": objects.rollout("web", upstream="web.shop.svc", pod_hash="v2", index=1),
        "service": objects.service("web-stable", "10.0.0.1", "v1"),
        "replicaset": objects.replicaset("web", "v2", 1, 1),
    }[kind]
    return kind, _garbage_object(draw, base)


@settings(max_examples=400, deadline=None)
@given(garbage_objects())
def test_garbage_in_a_named_object_is_reported_never_raised(
    item: tuple[str, dict[str, Any]],
) -> None:
    kind, obj = item
    store = Store()
    store.set_rollout(objects.rollout("web", upstream="web.shop.svc", pod_hash="v2", index=1))
    {
        "rollout": store.set_rollout,
        "service": store.set_service,
        "replicaset": store.set_replicaset,
    }[kind](obj)
    rollout = store.rollouts.get(KEY)
    if isinstance(rollout, Rollout):
        desired_state(
            rollout,
            services=store.services_in("shop"),
            replicasets=store.replicasets_for(rollout),
        )
