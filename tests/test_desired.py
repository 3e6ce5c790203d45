"""kongsplit.desired: one Rollout + its Services and ReplicaSets → what Kong should hold."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kongsplit.desired import Desired, desired_state, pick_replicasets
from kongsplit.rollouts import ObjectError, ReplicaSet, Rollout, RolloutKey, parse_rollout
from kongsplit.targets import Service, ServicePort

KEY = RolloutKey("shop", "checkout")


def rollout_json(
    *,
    annotations: dict[str, str] | None = None,
    status: dict[str, Any] | None = None,
    canary: dict[str, Any] | None = None,
    blue_green: bool = False,
    generation: int = 3,
) -> dict[str, Any]:
    """checkout, 8 replicas, at its second setWeight (25, step index 2) unless told otherwise."""
    strategy: dict[str, Any]
    if blue_green:
        strategy = {"blueGreen": {"activeService": "checkout-active"}}
    else:
        strategy = {
            "canary": {
                "stableService": "checkout-stable",
                "canaryService": "checkout-canary",
                "trafficRouting": {},
                "steps": [
                    {"setWeight": 10},
                    {"pause": {"duration": "2m"}},
                    {"setWeight": 25},
                    {"pause": {}},
                ],
                **(canary or {}),
            }
        }
    base_status = {
        "observedGeneration": str(generation),
        "currentPodHash": "new",
        "stableRS": "old",
        "currentStepIndex": 2,
    }
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {
            "name": "checkout",
            "namespace": "shop",
            "generation": generation,
            "annotations": {"kongsplit.io/upstream": "checkout.shop.svc"}
            if annotations is None
            else annotations,
        },
        "spec": {"replicas": 8, "strategy": strategy},
        "status": {**base_status, **(status or {})},
    }


def rollout(**kwargs: Any) -> Rollout:
    parsed = parse_rollout(rollout_json(**kwargs))
    assert isinstance(parsed, Rollout), parsed
    return parsed


def service(name: str, ip: str, selector_hash: str | None = None) -> Service:
    return Service("shop", name, "ClusterIP", ip, (ServicePort("http", 80),), selector_hash)


SERVICES = {
    "checkout-stable": service("checkout-stable", "10.96.14.20", "old"),
    "checkout-canary": service("checkout-canary", "10.96.14.21", "new"),
}


def rs(pod_hash: str, replicas: int, available: int, namespace: str = "shop") -> ReplicaSet:
    return ReplicaSet(namespace, f"checkout-{pod_hash}", pod_hash, replicas, available)


STABLE = ReplicaSet("shop", "checkout-old", "old", 8, 8)


def weights(desired: Desired) -> tuple[int, int] | None:
    return None if desired.split is None else (desired.split.canary, desired.split.stable)


# --------------------------------------------------------------------------- the happy path


def test_clusterip_targets_from_services() -> None:
    desired = desired_state(rollout(), services=SERVICES, replicasets=None)
    assert (desired.error, desired.skipped, desired.hold) == (None, None, None)
    assert desired.plan is not None
    assert desired.plan.weights() == {"10.96.14.20:80": 75, "10.96.14.21:80": 25}
    assert desired.mapping is not None and desired.mapping.upstream == "checkout.shop.svc"


def test_dns_targets_without_services() -> None:
    r = rollout(annotations={"kongsplit.io/upstream": "u", "kongsplit.io/port": "8080"})
    desired = desired_state(r, services=None, replicasets=None, cluster_domain="k8s.lan")
    assert desired.plan is not None
    assert desired.plan.weights() == {
        "checkout-stable.shop.svc.k8s.lan:8080": 75,
        "checkout-canary.shop.svc.k8s.lan:8080": 25,
    }


def test_default_workspace_reaches_the_plan() -> None:
    desired = desired_state(rollout(), services=SERVICES, replicasets=None, default_workspace="ws")
    assert desired.plan is not None and desired.plan.workspace == "ws"


# --------------------------------------------------------------------------- replica gate


@pytest.mark.parametrize(
    ("replicasets", "expected", "rule"),
    [
        pytest.param(None, (25, 75), "step", id="replicasets-unknown-no-gate"),
        pytest.param([STABLE, rs("new", 2, 2)], (25, 75), "step", id="canary-at-desired-count"),
        pytest.param(
            [STABLE, rs("new", 2, 1)], (10, 90), "replica-gate-previous", id="canary-scaling"
        ),
        pytest.param([STABLE, rs("new", 2, 0)], (0, 100), "new-rs-unavailable", id="canary-no-pod"),
        # Known ReplicaSets without one for the current hash: Argo creates it with 0 pods.
        pytest.param(
            [STABLE, rs("other", 2, 0)], (0, 100), "new-rs-unavailable", id="other-hash-ignored"
        ),
        pytest.param(
            [STABLE, rs("new", 2, 2, namespace="elsewhere")],
            (0, 100),
            "new-rs-unavailable",
            id="other-namespace",
        ),
        # Without dynamicStableScale the stable must be at spec.replicas (its side of
        # AtDesiredReplicaCountsForCanary) before the next weight.
        pytest.param(
            [rs("old", 7, 7), rs("new", 2, 2)],
            (10, 90),
            "replica-gate-previous",
            id="stable-not-at-full-count",
        ),
    ],
)
def test_replica_gate_uses_the_canary_replicaset(
    replicasets: list[ReplicaSet] | None, expected: tuple[int, int], rule: str
) -> None:
    desired = desired_state(rollout(), services=SERVICES, replicasets=replicasets)
    assert weights(desired) == expected
    assert desired.split is not None and desired.split.rule == rule
    assert desired.plan is not None
    assert sorted(desired.plan.weights().values()) == sorted(expected)


def test_no_stable_replicaset_holds() -> None:
    # Argo's checkReplicasAvailable: no stable ReplicaSet, no SetWeight; a first write is 0.
    desired = desired_state(rollout(), services=SERVICES, replicasets=[rs("new", 2, 2)])
    assert desired.split is not None and desired.split.hold_id == "no-stable-replicaset"
    assert weights(desired) == (0, 100)
    # Argo's own answer before its gate: without a stable the replica gate keeps step 0's 10.
    assert desired.split.argo_weight == 10


def test_stable_that_cannot_carry_its_share_holds() -> None:
    # Stable weight 75 of 100 on 8 replicas needs 75 × 8 // 100 = 6 available pods.
    ok = desired_state(rollout(), services=SERVICES, replicasets=[rs("old", 8, 6), rs("new", 2, 2)])
    assert ok.split is not None and ok.split.hold is None
    held = desired_state(
        rollout(), services=SERVICES, replicasets=[rs("old", 8, 5), rs("new", 2, 2)]
    )
    assert held.split is not None and held.split.hold_id == "stable-unavailable"
    assert held.hold is not None and "5 available pods, 6 needed" in held.hold


def test_ambiguous_replicasets_are_unknown_not_missing() -> None:
    # Two unowned ReplicaSets share the canary hash and neither is named for this Rollout: the
    # canary is unknown (no gate), not missing (which would mean weight 0).
    theirs = [ReplicaSet("shop", "a-new", "new", 2, 2), ReplicaSet("shop", "b-new", "new", 2, 0)]
    desired = desired_state(rollout(), services=SERVICES, replicasets=[STABLE, *theirs])
    assert weights(desired) == (25, 75)


def test_argos_replica_gate_beats_a_fresh_record() -> None:
    # Argo recomputes each time (reconcileTrafficRouting): a canary below its count gets the
    # previous step's weight whatever was recorded (its TestRolloutUsePreviousSetWeight).
    r = rollout(
        canary={"trafficRouting": {"plugins": {"argoproj-labs/kong": {}}}},
        status={
            "canary": {
                "weights": {
                    "canary": {"weight": 40, "podTemplateHash": "new"},
                    "stable": {"weight": 60, "podTemplateHash": "old"},
                }
            }
        },
    )
    desired = desired_state(r, services=SERVICES, replicasets=[STABLE, rs("new", 2, 1)])
    assert weights(desired) == (10, 90)
    assert desired.split is not None and desired.split.rule == "replica-gate-previous"


def test_fresh_recorded_weights_are_mirrored_when_replicasets_are_unknown() -> None:
    r = rollout(
        canary={"trafficRouting": {"plugins": {"argoproj-labs/kong": {}}}},
        status={
            "canary": {
                "weights": {
                    "canary": {"weight": 40, "podTemplateHash": "new"},
                    "stable": {"weight": 60, "podTemplateHash": "old"},
                }
            }
        },
    )
    desired = desired_state(r, services=SERVICES, replicasets=None)
    assert weights(desired) == (40, 60)
    assert desired.split is not None and desired.split.rule == "recorded"


def test_experiment_destinations_become_targets() -> None:
    r = rollout(
        canary={"trafficRouting": {"plugins": {"argoproj-labs/kong": {}}}},
        status={
            "canary": {
                "weights": {
                    "canary": {"weight": 20, "podTemplateHash": "new"},
                    "stable": {"weight": 70, "podTemplateHash": "old"},
                    "additional": [
                        {"weight": 10, "podTemplateHash": "exp", "serviceName": "checkout-exp"}
                    ],
                }
            }
        },
    )
    services = {**SERVICES, "checkout-exp": service("checkout-exp", "10.96.14.22")}
    desired = desired_state(r, services=services, replicasets=None)
    assert desired.plan is not None
    got = [(t.target, t.weight, t.role) for t in desired.plan.targets]
    assert got == [
        ("10.96.14.20:80", 70, "stable"),
        ("10.96.14.21:80", 20, "canary"),
        ("10.96.14.22:80", 10, "experiment"),
    ]


# --------------------------------------------------------------------------- holds


@pytest.mark.parametrize(
    ("kwargs", "services", "words"),
    [
        pytest.param(
            {"status": {"observedGeneration": "2"}},
            SERVICES,
            "observedGeneration 2",
            id="observed-generation-lags",
        ),
        pytest.param(
            {"status": {"stableRS": "new"}},
            {**SERVICES, "checkout-stable": service("checkout-stable", "10.96.14.20", "old")},
            "promotion in flight",
            id="stable-service-not-yet-switched",
        ),
    ],
)
def test_hold(kwargs: dict[str, Any], services: dict[str, Service], words: str) -> None:
    desired = desired_state(rollout(**kwargs), services=services, replicasets=None)
    assert desired.hold is not None and words in desired.hold
    assert desired.plan is not None  # the answer is still computed; holding is the writer's job


def test_abort_beats_hold() -> None:
    r = rollout(status={"abort": True, "observedGeneration": "2"})
    desired = desired_state(r, services=SERVICES, replicasets=None)
    assert desired.hold is None
    assert weights(desired) == (0, 100)


# --------------------------------------------------------------------------- skipped, errors


def test_not_annotated_is_skipped_with_weights() -> None:
    desired = desired_state(rollout(annotations={}), services=SERVICES, replicasets=None)
    assert desired.error is None
    assert desired.skipped == "not annotated with kongsplit.io/upstream"
    assert weights(desired) == (25, 75)
    assert (desired.mapping, desired.plan) == (None, None)


def test_blue_green_is_skipped_without_weights() -> None:
    desired = desired_state(rollout(blue_green=True), services=SERVICES, replicasets=None)
    assert desired.error is None
    assert desired.skipped is not None and "blue-green" in desired.skipped
    assert (desired.split, desired.plan) == (None, None)


def test_bad_annotation_is_an_error_but_weights_are_still_argos() -> None:
    r = rollout(annotations={"kongsplit.io/upstream": "u", "kongsplit.io/target-mode": "nodeport"})
    desired = desired_state(r, services=SERVICES, replicasets=None)
    assert isinstance(desired.error, ObjectError)
    assert desired.error.field == "metadata.annotations[kongsplit.io/target-mode]"
    assert desired.skipped == str(desired.error)
    assert weights(desired) == (25, 75)
    assert desired.plan is None


@pytest.mark.parametrize(
    ("services", "missing"),
    [
        pytest.param({}, "checkout-stable", id="both-missing-first-named"),
        pytest.param(
            {"checkout-stable": SERVICES["checkout-stable"]}, "checkout-canary", id="canary-missing"
        ),
    ],
)
def test_missing_service_is_reported_with_weights(
    services: dict[str, Service], missing: str
) -> None:
    # The reconciler files this under reason "missing_service"; weights are still Argo's.
    desired = desired_state(rollout(), services=services, replicasets=None)
    assert isinstance(desired.error, ObjectError)
    assert desired.error.field == "spec.strategy.canary"
    assert desired.error.message == f"Service shop/{missing} not found"
    assert desired.skipped == str(desired.error)
    assert weights(desired) == (25, 75)
    assert desired.plan is None


def test_target_error_keeps_split() -> None:
    services = {**SERVICES, "checkout-canary": service("checkout-canary", "None")}
    desired = desired_state(rollout(), services=services, replicasets=None)
    assert isinstance(desired.error, ObjectError)
    assert (desired.error.kind, desired.error.name) == ("Service", "checkout-canary")
    assert weights(desired) == (25, 75)


def test_bad_recorded_weight_is_an_error_on_the_rollout() -> None:
    r = rollout(
        canary={"trafficRouting": {"plugins": {"argoproj-labs/kong": {}}}},
        status={
            "canary": {
                "weights": {
                    "canary": {"weight": 140, "podTemplateHash": "new"},
                    "stable": {"weight": -40, "podTemplateHash": "old"},
                }
            }
        },
    )
    desired = desired_state(r, services=SERVICES, replicasets=None)
    assert isinstance(desired.error, ObjectError)
    assert desired.error.field == "status.canary.weights.canary.weight"
    assert desired.error.message.startswith("recorded canary weight 140")
    assert str(desired.error).count("status.canary.weights.canary.weight") == 1
    assert desired.split is None


# --------------------------------------------------------------------------- pick_replicasets


def test_pick_replicasets() -> None:
    r = rollout()
    canary, stable = rs("new", 2, 2), rs("old", 8, 8)
    assert pick_replicasets(r, [rs("x", 1, 1), stable, canary]) == (canary, stable)
    assert pick_replicasets(r, []) == (None, None)


def test_pick_replicasets_respects_owner_uid() -> None:
    obj = copy.deepcopy(rollout_json())
    obj["metadata"]["uid"] = "uid-1"
    r = parse_rollout(obj)
    assert isinstance(r, Rollout)
    foreign = ReplicaSet("shop", "x", "new", 2, 2, owner_uids=("uid-2",))
    owned = ReplicaSet("shop", "y", "new", 2, 2, owner_uids=("uid-1",))
    assert pick_replicasets(r, [foreign]) == (None, None)
    assert pick_replicasets(r, [foreign, owned]) == (owned, None)


def test_replicasets_sharing_a_hash_are_told_apart_by_owner_and_name() -> None:
    """Two Rollouts with identical templates share a pod-template-hash: never use the other's RS."""
    from kongsplit.desired import pick_replicasets
    from kongsplit.rollouts import ReplicaSet, Rollout, RolloutKey

    rollout = Rollout(
        key=RolloutKey("shop", "checkout"), uid="uid-c", current_pod_hash="h2", stable_rs="h1"
    )
    mine = ReplicaSet("shop", "checkout-h2", "h2", 4, 4, owner_uids=("uid-c",))
    theirs = ReplicaSet("shop", "payments-h2", "h2", 4, 0, owner_uids=("uid-p",))
    unowned_other = ReplicaSet("shop", "payments-h2", "h2", 4, 0)
    unowned_mine = ReplicaSet("shop", "checkout-h2", "h2", 4, 4)
    assert pick_replicasets(rollout, [mine, theirs])[0] is mine
    assert pick_replicasets(rollout, [theirs, mine])[0] is mine
    assert pick_replicasets(rollout, [unowned_mine, unowned_other])[0] is unowned_mine
    ambiguous = ReplicaSet("shop", "other-h2", "h2", 4, 0)
    assert pick_replicasets(rollout, [ambiguous, unowned_other])[0] is None
