"""kongsplit.desired: one Rollout + its Services and ReplicaSets → what Kong should hold."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kongsplit.annotations import ANN_PORT, MODE_CLUSTERIP, MODE_DNS, TargetMapping
from kongsplit.desired import Desired, desired_state, pick_replicasets, plan_targets
from kongsplit.kong.targets import ROLE_CANARY, ROLE_EXPERIMENT, ROLE_STABLE, DesiredTarget
from kongsplit.rollouts import (
    ObjectError,
    ReplicaSet,
    Rollout,
    RolloutKey,
    Service,
    ServicePort,
    parse_rollout,
)
from kongsplit.weights import Destination, Split

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


# --------------------------------------------------------------------------- plan_targets


def svc(
    name: str,
    ip: str | None = "10.96.14.20",
    *ports: tuple[str | None, int],
    type: str = "ClusterIP",
) -> Service:
    return Service(
        namespace="shop",
        name=name,
        type=type,
        cluster_ip=ip,
        ports=tuple(ServicePort(n, p) for n, p in (ports or [("http", 80)])),
        selector_hash=None,
    )


def split(canary: int = 25, *additional: Destination, stable: int | None = None) -> Split:
    rest = 100 - canary - sum(d.weight for d in additional)
    return Split(
        canary=canary,
        stable=rest if stable is None else stable,
        max=100,
        additional=tuple(additional),
        canary_service="checkout-canary",
        stable_service="checkout-stable",
        rule="step",
    )


def mapping(port: str | int | None = None, mode: str = MODE_CLUSTERIP) -> TargetMapping:
    return TargetMapping("checkout.shop.svc", port, mode, None)


def services(*items: Service) -> dict[str, Service]:
    return {s.name: s for s in items}


TWO_PORTS = (("http", 80), ("metrics", 9090))


@pytest.mark.parametrize(
    ("the_split", "the_mapping", "the_services", "domain", "expected"),
    [
        pytest.param(
            split(25),
            mapping(),
            services(svc("checkout-stable", "10.96.14.20"), svc("checkout-canary", "10.96.14.21")),
            "cluster.local",
            [("10.96.14.20:80", 75, ROLE_STABLE), ("10.96.14.21:80", 25, ROLE_CANARY)],
            id="clusterip-single-port",
        ),
        pytest.param(
            split(10),
            mapping("metrics"),
            services(
                svc("checkout-stable", "10.0.0.1", *TWO_PORTS),
                svc("checkout-canary", "10.0.0.2", *TWO_PORTS),
            ),
            "cluster.local",
            [("10.0.0.1:9090", 90, ROLE_STABLE), ("10.0.0.2:9090", 10, ROLE_CANARY)],
            id="clusterip-port-by-name",
        ),
        pytest.param(
            split(10),
            mapping(80),
            services(
                svc("checkout-stable", "10.0.0.1", *TWO_PORTS),
                svc("checkout-canary", "10.0.0.2", *TWO_PORTS),
            ),
            "cluster.local",
            [("10.0.0.1:80", 90, ROLE_STABLE), ("10.0.0.2:80", 10, ROLE_CANARY)],
            id="clusterip-port-by-number",
        ),
        pytest.param(
            split(0),
            mapping(),
            services(svc("checkout-stable", "10.0.0.1"), svc("checkout-canary", "10.0.0.2")),
            "cluster.local",
            [("10.0.0.1:80", 100, ROLE_STABLE), ("10.0.0.2:80", 0, ROLE_CANARY)],
            id="canary-at-zero-still-held",
        ),
        pytest.param(
            split(100),
            mapping(),
            services(svc("checkout-stable", "10.0.0.1"), svc("checkout-canary", "10.0.0.2")),
            "cluster.local",
            [("10.0.0.1:80", 0, ROLE_STABLE), ("10.0.0.2:80", 100, ROLE_CANARY)],
            id="stable-at-zero-still-held",
        ),
        pytest.param(
            split(25),
            mapping(mode=MODE_DNS),
            services(svc("checkout-stable", "10.0.0.1"), svc("checkout-canary", "10.0.0.2")),
            "cluster.local",
            [
                ("checkout-stable.shop.svc.cluster.local:80", 75, ROLE_STABLE),
                ("checkout-canary.shop.svc.cluster.local:80", 25, ROLE_CANARY),
            ],
            id="dns-mode",
        ),
        pytest.param(
            split(25),
            mapping("http", mode=MODE_DNS),
            services(
                svc("checkout-stable", "10.0.0.1", ("http", 8443)),
                svc("checkout-canary", None, ("http", 8443)),
            ),
            "corp.example",
            [
                ("checkout-stable.shop.svc.corp.example:8443", 75, ROLE_STABLE),
                ("checkout-canary.shop.svc.corp.example:8443", 25, ROLE_CANARY),
            ],
            id="dns-mode-cluster-domain-unallocated-ip-ok",
        ),
        pytest.param(
            split(25),
            mapping(8080),
            None,
            "cluster.local",
            [
                ("checkout-stable.shop.svc.cluster.local:8080", 75, ROLE_STABLE),
                ("checkout-canary.shop.svc.cluster.local:8080", 25, ROLE_CANARY),
            ],
            id="services-unknown-fall-back-to-dns",
        ),
        pytest.param(
            split(20, Destination("exp-a", 10), Destination("exp-b", 5)),
            mapping(),
            services(
                svc("checkout-stable", "10.0.0.1"),
                svc("checkout-canary", "10.0.0.2"),
                svc("exp-a", "10.0.0.3"),
                svc("exp-b", "10.0.0.4"),
            ),
            "cluster.local",
            [
                ("10.0.0.1:80", 65, ROLE_STABLE),
                ("10.0.0.2:80", 20, ROLE_CANARY),
                ("10.0.0.3:80", 10, ROLE_EXPERIMENT),
                ("10.0.0.4:80", 5, ROLE_EXPERIMENT),
            ],
            id="experiment-destinations",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(svc("checkout-stable", "fd00::14:20"), svc("checkout-canary", "FD00::14:21")),
            "cluster.local",
            [
                ("[fd00:0000:0000:0000:0000:0000:0014:0020]:80", 75, ROLE_STABLE),
                ("[fd00:0000:0000:0000:0000:0000:0014:0021]:80", 25, ROLE_CANARY),
            ],
            id="ipv6-expanded-bracketed-lowercase",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(svc("checkout-stable", "010.096.014.020"), svc("checkout-canary", "10.0.0.2")),
            "cluster.local",
            [("10.96.14.20:80", 75, ROLE_STABLE), ("10.0.0.2:80", 25, ROLE_CANARY)],
            id="ipv4-leading-zeros-dropped",
        ),
    ],
)
def test_plan_targets(
    the_split: Split,
    the_mapping: TargetMapping,
    the_services: dict[str, Service] | None,
    domain: str,
    expected: list[tuple[str, int, str]],
) -> None:
    plan = plan_targets(
        the_split, the_mapping, key=KEY, services=the_services, cluster_domain=domain
    )
    assert not isinstance(plan, ObjectError), plan
    assert [(t.target, t.weight, t.role) for t in plan.targets] == expected
    assert plan.upstream == "checkout.shop.svc"
    assert plan.weights() == {t: w for t, w, _ in expected}


def test_plan_targets_keeps_service_names_and_workspace() -> None:
    plan = plan_targets(
        split(25),
        TargetMapping("u", None, MODE_CLUSTERIP, "team-a"),
        key=KEY,
        services=services(svc("checkout-stable", "10.0.0.1"), svc("checkout-canary", "10.0.0.2")),
    )
    assert not isinstance(plan, ObjectError)
    assert plan.workspace == "team-a"
    assert plan.targets == (
        DesiredTarget("10.0.0.1:80", 75, ROLE_STABLE, "checkout-stable"),
        DesiredTarget("10.0.0.2:80", 25, ROLE_CANARY, "checkout-canary"),
    )


GOOD_STABLE = svc("checkout-stable", "10.0.0.1")


@pytest.mark.parametrize(
    ("the_split", "the_mapping", "the_services", "kind", "name", "field", "words"),
    [
        pytest.param(
            split(25),
            mapping(),
            services(GOOD_STABLE, svc("checkout-canary", "None")),
            "Service",
            "checkout-canary",
            "spec.clusterIP",
            "headless",
            id="headless-clusterip-mode",
        ),
        pytest.param(
            split(25),
            mapping(mode=MODE_DNS),
            services(GOOD_STABLE, svc("checkout-canary", "None")),
            "Service",
            "checkout-canary",
            "spec.clusterIP",
            "headless",
            id="headless-dns-mode",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(GOOD_STABLE, svc("checkout-canary", None, type="ExternalName")),
            "Service",
            "checkout-canary",
            "spec.type",
            "ExternalName",
            id="external-name",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(GOOD_STABLE, svc("checkout-canary", None)),
            "Service",
            "checkout-canary",
            "spec.clusterIP",
            "not set",
            id="clusterip-unallocated",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(GOOD_STABLE, svc("checkout-canary", "canary.example")),
            "Service",
            "checkout-canary",
            "spec.clusterIP",
            "not an IP address",
            id="clusterip-hostname",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(GOOD_STABLE, svc("checkout-canary", "10.0.0.300")),
            "Service",
            "checkout-canary",
            "spec.clusterIP",
            "not a valid Kong target",
            id="clusterip-octet-out-of-range",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(svc("checkout-stable", "10.0.0.1", *TWO_PORTS), svc("checkout-canary")),
            "Rollout",
            "checkout",
            f"metadata.annotations[{ANN_PORT}]",
            "several ports (http, metrics)",
            id="several-ports-need-annotation",
        ),
        pytest.param(
            split(25),
            mapping("grpc"),
            services(
                svc("checkout-stable", "10.0.0.1", *TWO_PORTS),
                svc("checkout-canary", "10.0.0.2", *TWO_PORTS),
            ),
            "Rollout",
            "checkout",
            f"metadata.annotations[{ANN_PORT}]",
            "no port named 'grpc' (ports: http, metrics)",
            id="missing-port-name",
        ),
        pytest.param(
            split(25),
            mapping(8080),
            services(GOOD_STABLE, svc("checkout-canary", "10.0.0.2")),
            "Rollout",
            "checkout",
            f"metadata.annotations[{ANN_PORT}]",
            "no port with number 8080",
            id="target-port-is-not-the-port",
        ),
        pytest.param(
            split(25),
            mapping("http"),
            None,
            "Rollout",
            "checkout",
            f"metadata.annotations[{ANN_PORT}]",
            "must be a number",
            id="unknown-services-need-numeric-port",
        ),
        pytest.param(
            split(25),
            mapping(),
            None,
            "Rollout",
            "checkout",
            f"metadata.annotations[{ANN_PORT}]",
            "must be a number",
            id="unknown-services-need-a-port",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(
                GOOD_STABLE, Service("shop", "checkout-canary", "ClusterIP", "10.0.0.2", (), None)
            ),
            "Service",
            "checkout-canary",
            "spec.ports",
            "no ports",
            id="service-without-ports",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(GOOD_STABLE, svc("checkout-canary", "10.0.0.1")),
            "Rollout",
            "checkout",
            "spec.strategy.canary",
            "checkout-stable and checkout-canary resolve to the same Kong target 10.0.0.1:80",
            id="same-target",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(GOOD_STABLE, svc("checkout-canary", "010.0.0.1")),
            "Rollout",
            "checkout",
            "spec.strategy.canary",
            "same Kong target 10.0.0.1:80",
            id="same-target-after-normalisation",
        ),
        pytest.param(
            split(25, Destination("exp", 5)),
            mapping(),
            services(GOOD_STABLE, svc("checkout-canary", "10.0.0.2"), svc("exp", "10.0.0.2")),
            "Rollout",
            "checkout",
            "spec.strategy.canary",
            "checkout-canary and exp",
            id="experiment-same-target-as-canary",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(GOOD_STABLE),
            "Rollout",
            "checkout",
            "spec.strategy.canary",
            "Service shop/checkout-canary not found",
            id="service-missing",
        ),
        pytest.param(
            Split(0, 100, 100, (), None, "s", "step"),
            mapping(),
            None,
            "Rollout",
            "checkout",
            "spec.strategy.canary.stableService",
            "required",
            id="no-canary-service",
        ),
    ],
)
def test_plan_targets_refused(
    the_split: Split,
    the_mapping: TargetMapping,
    the_services: dict[str, Service] | None,
    kind: str,
    name: str,
    field: str,
    words: str,
) -> None:
    got = plan_targets(the_split, the_mapping, key=KEY, services=the_services)
    assert isinstance(got, ObjectError), got
    assert (got.kind, got.namespace, got.name, got.field) == (kind, "shop", name, field)
    assert words in got.message


@given(address=st.ip_addresses(v=6), port=st.integers(1, 65535))
def test_ipv6_cluster_ip_is_normalised_the_kong_way(
    address: ipaddress.IPv6Address, port: int
) -> None:
    canary_ip = str(address)
    stable_ip = "10.0.0.1"
    plan = plan_targets(
        split(25),
        mapping(port),
        key=KEY,
        services=services(
            svc("checkout-stable", stable_ip, ("http", port)),
            svc("checkout-canary", canary_ip, ("http", port)),
        ),
    )
    assert not isinstance(plan, ObjectError), plan
    canary = plan.targets[1].target
    # Kong's form: bracketed, fully expanded, zero-padded, lower-case (docs/kong.md "Target
    # strings").
    assert canary == f"[{address.exploded}]:{port}"
    assert canary == canary.lower()
    assert len(canary.split("]")[0]) == 1 + 39


@pytest.mark.parametrize("unallocated", [None, ""])
def test_placeholder_for_a_cluster_ip_not_allocated_yet(unallocated: str | None) -> None:
    # Offline plan of manifests not applied yet: the weights, and a placeholder for the address.
    plan = plan_targets(
        split(25),
        mapping(),
        key=KEY,
        services=services(GOOD_STABLE, svc("checkout-canary", unallocated)),
        placeholders=True,
    )
    assert not isinstance(plan, ObjectError), plan
    assert plan.targets == (
        DesiredTarget("10.0.0.1:80", 75, ROLE_STABLE, "checkout-stable"),
        DesiredTarget(
            "<clusterIP of shop/checkout-canary>:80",
            25,
            ROLE_CANARY,
            "checkout-canary",
            address_pending=True,
        ),
    )


@pytest.mark.parametrize(
    ("canary", "field", "words"),
    [
        pytest.param(svc("checkout-canary", "None"), "spec.clusterIP", "headless", id="headless"),
        pytest.param(
            svc("checkout-canary", None, type="ExternalName"),
            "spec.type",
            "ExternalName",
            id="external-name",
        ),
        pytest.param(
            svc("checkout-canary", "canary.example"),
            "spec.clusterIP",
            "not an IP address",
            id="clusterip-hostname",
        ),
    ],
)
def test_placeholders_cover_only_an_absent_cluster_ip(
    canary: Service, field: str, words: str
) -> None:
    got = plan_targets(
        split(25), mapping(), key=KEY, services=services(GOOD_STABLE, canary), placeholders=True
    )
    assert isinstance(got, ObjectError), got
    assert (got.kind, got.name, got.field) == ("Service", "checkout-canary", field)
    assert words in got.message


def test_dns_mode_needs_no_placeholder() -> None:
    got = plan_targets(
        split(25),
        mapping(mode=MODE_DNS),
        key=KEY,
        services=services(GOOD_STABLE, svc("checkout-canary", None)),
        placeholders=True,
    )
    assert not isinstance(got, ObjectError), got
    assert [(t.target, t.address_pending) for t in got.targets] == [
        ("checkout-stable.shop.svc.cluster.local:80", False),
        ("checkout-canary.shop.svc.cluster.local:80", False),
    ]
