"""kongsplit.weights: the reference vectors (tests/data), every rule of docs/weights.md, the replica
gate,
holds, ping-pong, experiments, malformed input, and properties over generated Rollouts."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kongsplit.rollouts import ReplicaSet, Rollout, parse_rollout
from kongsplit.weights import (
    HOLD_IDS,
    HOLDS,
    ROUTER_CONTEXTS,
    RULE_IDS,
    RULES,
    Destination,
    Skip,
    Split,
    compute,
    compute_json,
    desired_canary_replicas,
    render_doc,
    resolve_services,
)

DATA = Path(__file__).resolve().parent / "data"
VECTORS = json.loads((DATA / "argo-weight-vectors.json").read_text())


# --------------------------------------------------------------------------- reference vectors


@pytest.mark.parametrize("case", [pytest.param(c, id=c["name"]) for c in VECTORS])
def test_reference_vector(case: dict[str, Any]) -> None:
    expect = case["expect"]
    result = compute_json(case["rollout"])
    if "blueGreen" in case["rollout"]["spec"]["strategy"]:
        # Blue-green: "ignore" (docs/weights.md); the 0/0 weights and null services are
        # placeholders.
        assert (expect["canary_service"], expect["stable_service"]) == (None, None)
        assert isinstance(result, Skip), result
        assert not result.invalid
        return
    assert isinstance(result, Split), result
    got = (result.canary, result.stable, result.canary_service, result.stable_service)
    want = (
        expect["canary_weight"],
        expect["stable_weight"],
        expect["canary_service"],
        expect["stable_service"],
    )
    assert got == want, case["why"]
    assert result.rule in RULE_IDS
    assert result.hold is None  # every vector has observedGeneration == generation


def test_vector_file_is_complete() -> None:
    assert len(VECTORS) == 37
    assert len({c["name"] for c in VECTORS}) == 37


# --------------------------------------------------------------------------- builders


STEPS = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 25}, {"pause": {}}, {"setWeight": 75}]


def rollout(
    *,
    steps: list[Any] | None = None,
    routing: dict[str, Any] | None = None,
    canary: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    replicas: int = 10,
    generation: int = 2,
    no_routing: bool = False,
) -> dict[str, Any]:
    """A canary Rollout mid-update (new over old) with `trafficRouting: {}` unless told."""
    spec_canary: dict[str, Any] = {
        "canaryService": "svc-canary",
        "stableService": "svc-stable",
        "steps": copy.deepcopy(STEPS if steps is None else steps),
    }
    if not no_routing:
        spec_canary["trafficRouting"] = {} if routing is None else routing
    spec_canary.update(canary or {})
    st_: dict[str, Any] = {
        "observedGeneration": str(generation),
        "currentPodHash": "new",
        "stableRS": "old",
        "currentStepIndex": 0,
    }
    st_.update(status or {})
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "app", "namespace": "ns", "generation": generation, "uid": "u"},
        "spec": {"replicas": replicas, "strategy": {"canary": spec_canary}},
        "status": st_,
    }


def record(
    canary: int,
    stable: int,
    *,
    canary_hash: str = "new",
    stable_hash: str = "old",
    additional: Sequence[tuple[str, int]] = (),
) -> dict[str, Any]:
    return {
        "canary": {
            "weights": {
                "canary": {"weight": canary, "podTemplateHash": canary_hash, "serviceName": "c"},
                "stable": {"weight": stable, "podTemplateHash": stable_hash, "serviceName": "s"},
                "additional": [
                    {"weight": w, "serviceName": svc, "podTemplateHash": f"x-{svc}"}
                    for svc, w in additional
                ],
            }
        }
    }


NGINX = {"nginx": {"stableIngress": "ing"}}
PLUGIN = {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "r"}}}


def rs(available: int, replicas: int | None = None, *, hash_: str = "new") -> ReplicaSet:
    return ReplicaSet(
        namespace="ns",
        name=f"app-{hash_}",
        pod_template_hash=hash_,
        replicas=available if replicas is None else replicas,
        available_replicas=available,
        owner_uids=("u",),
    )


def parsed(obj: dict[str, Any]) -> Rollout:
    result = parse_rollout(obj)
    assert isinstance(result, Rollout), str(result)
    return result


def split(obj: dict[str, Any], **kw: Any) -> Split:
    result = compute(parsed(obj), **kw)
    assert isinstance(result, Split), result
    return result


# --------------------------------------------------------------------------- the rule ladder


RULE_CASES = [
    # 1. dynamic rollback
    pytest.param(
        rollout(
            routing=PLUGIN,
            canary={"dynamicStableScale": True},
            status={
                "currentPodHash": "old",
                "currentStepIndex": 5,
                **record(25, 75, stable_hash="old"),
            },
        ),
        {},
        (25, 75, "dynamic-rollback"),
        id="dynamic-rollback-holds-recorded",
    ),
    pytest.param(
        rollout(
            routing=PLUGIN,
            canary={"dynamicStableScale": True},
            status={
                "currentPodHash": "old",
                "currentStepIndex": 5,
                **record(25, 75, stable_hash="old"),
            },
        ),
        {"canary_rs": rs(4, 10, hash_="old")},
        (25, 75, "dynamic-rollback"),
        id="dynamic-rollback-stable-still-scaling",
    ),
    pytest.param(
        rollout(
            routing=PLUGIN,
            canary={"dynamicStableScale": True},
            status={
                "currentPodHash": "old",
                "currentStepIndex": 5,
                **record(25, 75, stable_hash="old"),
            },
        ),
        {"canary_rs": rs(10, 10, hash_="old")},
        (0, 100, "fully-promoted"),
        id="dynamic-rollback-ends-when-stable-full",
    ),
    pytest.param(
        rollout(
            routing=PLUGIN,
            status={
                "currentPodHash": "old",
                "currentStepIndex": 5,
                **record(25, 75, stable_hash="old"),
            },
        ),
        {},
        (0, 100, "fully-promoted"),
        id="rollback-without-dynamic-scale-is-immediate",
    ),
    pytest.param(
        rollout(
            canary={"dynamicStableScale": True},
            status={
                "currentPodHash": "old",
                "currentStepIndex": 5,
                **record(25, 75, stable_hash="old"),
            },
        ),
        {},
        (0, 100, "fully-promoted"),
        id="rollback-record-ignored-without-router",
    ),
    # 2. fully promoted
    pytest.param(
        rollout(status={"currentPodHash": "new", "stableRS": "new", "currentStepIndex": 5}),
        {},
        (0, 100, "fully-promoted"),
        id="fully-promoted",
    ),
    pytest.param(
        {**rollout(), "status": None},
        {"canary_rs": rs(0)},
        (0, 100, "fully-promoted"),
        id="no-status-is-promoted",
    ),
    # 3. abort
    pytest.param(
        rollout(status={"abort": True, "currentStepIndex": 4}),
        {"canary_rs": rs(8)},
        (0, 100, "aborted"),
        id="aborted",
    ),
    pytest.param(
        rollout(routing=NGINX, status={"abort": True, "currentStepIndex": 3, **record(25, 75)}),
        {},
        (0, 100, "aborted"),
        id="aborted-ignores-fresh-record",
    ),
    pytest.param(
        rollout(
            routing=NGINX,
            canary={"dynamicStableScale": True},
            status={"abort": True, **record(75, 25)},
        ),
        {"canary_rs": rs(8), "stable_rs": rs(10, hash_="old")},
        # Argo walks back from the record (75) to the step the 8 canary pods still cover (25);
        # its TestDynamicScalingDecreaseWeightAccordingToStepWeightsAvailabilityWhenAborted.
        (25, 75, "aborted"),
        id="aborted-dynamic-walks-back-from-record",
    ),
    pytest.param(
        # No record (trafficRouting: {}): the stable has 3 of 10 pods, so at least 70 stays on
        # the canary; the step walk-back (75 needs 8 pods, not < 8; 25 needs 3) gives 25.
        rollout(canary={"dynamicStableScale": True}, status={"abort": True}),
        {"canary_rs": rs(8), "stable_rs": rs(3, 10, hash_="old")},
        (70, 30, "aborted"),
        id="aborted-dynamic-no-record-follows-stable",
    ),
    pytest.param(
        rollout(canary={"dynamicStableScale": True}, status={"abort": True}),
        {"canary_rs": rs(8), "stable_rs": rs(10, hash_="old")},
        (25, 75, "aborted"),
        id="aborted-dynamic-no-record-steps-down",
    ),
    pytest.param(
        rollout(canary={"dynamicStableScale": True}, status={"abort": True}),
        {"canary_rs": rs(0), "stable_rs": rs(10, hash_="old")},
        (0, 100, "aborted"),
        id="aborted-dynamic-no-record-drained",
    ),
    pytest.param(
        rollout(
            canary={"dynamicStableScale": True, "abortScaleDownDelaySeconds": 60},
            status={"abort": True},
        ),
        {"canary_rs": rs(8), "stable_rs": rs(10, hash_="old")},
        (0, 100, "aborted"),
        id="aborted-dynamic-explicit-delay-ignores-canary-size",
    ),
    # 4. new RS unavailable
    pytest.param(
        rollout(status={"currentStepIndex": 2}),
        {"canary_rs": rs(0, 3)},
        (0, 100, "new-rs-unavailable"),
        id="new-rs-no-available-pod",
    ),
    # 5. promoteFull
    pytest.param(
        rollout(
            routing=NGINX, status={"promoteFull": True, "currentStepIndex": 3, **record(25, 75)}
        ),
        {"canary_rs": rs(6, 10)},
        (25, 75, "promote-full"),
        id="promote-full-recorded",
    ),
    pytest.param(
        rollout(status={"promoteFull": True, "currentStepIndex": 3}),
        {"canary_rs": rs(6, 10)},
        (0, 100, "promote-full"),
        id="promote-full-no-record",
    ),
    pytest.param(
        rollout(canary={"dynamicStableScale": True}, status={"promoteFull": True}),
        {"canary_rs": rs(5, 10)},
        (50, 50, "promote-full"),
        id="promote-full-dynamic-follows-canary",
    ),
    pytest.param(
        rollout(
            routing=NGINX,
            canary={"dynamicStableScale": True},
            status={"promoteFull": True, **record(30, 70)},
        ),
        {"canary_rs": rs(5, 10)},
        # The canary's available pods, not the record: TestRolloutUseDynamicWeightOnPromoteFull.
        (50, 50, "promote-full"),
        id="promote-full-dynamic-ignores-record",
    ),
    pytest.param(
        rollout(
            routing=NGINX,
            status={"promoteFull": True, **record(30, 70, canary_hash="older")},
        ),
        {},
        (0, 100, "promote-full"),
        id="promote-full-stale-record",
    ),
    # 6. fresh record
    pytest.param(
        rollout(routing=NGINX, status={"currentStepIndex": 2, **record(10, 90)}),
        {"canary_rs": rs(0, 3)},
        # A canary without an available pod gets 0 whatever was recorded (Argo's newRS branch;
        # its TestNewRolloutResetsWeightBeforeUpdatingHash).
        (0, 100, "new-rs-unavailable"),
        id="unavailable-canary-beats-fresh-record",
    ),
    pytest.param(
        rollout(status={"currentStepIndex": 2, **record(10, 90)}),
        {},
        (25, 75, "step"),
        id="record-ignored-without-router",
    ),
    pytest.param(
        rollout(routing=NGINX, status={"currentStepIndex": 2, **record(10, 90, stable_hash="x")}),
        {},
        (25, 75, "step"),
        id="record-of-other-stable-not-fresh",
    ),
    # 7. stale record
    pytest.param(
        rollout(routing=NGINX, status={"currentStepIndex": 0, **record(25, 75, canary_hash="v2")}),
        {},
        (0, 100, "stale-record"),
        id="stale-record-new-revision",
    ),
    # 8. steps
    pytest.param(
        rollout(steps=[], status={"currentStepIndex": None}),
        {},
        (0, 100, "no-steps"),
        id="no-steps",
    ),
    pytest.param(rollout(status={"currentStepIndex": 3}), {}, (25, 75, "step"), id="step"),
    pytest.param(
        rollout(status={"currentStepIndex": None}), {}, (10, 90, "step"), id="index-missing"
    ),
    pytest.param(rollout(status={"currentStepIndex": 5}), {}, (100, 0, "end-of-steps"), id="end"),
    pytest.param(
        rollout(status={"currentStepIndex": 9}), {}, (100, 0, "end-of-steps"), id="past-end"
    ),
    pytest.param(
        rollout(no_routing=True, status={"currentStepIndex": 2}),
        {},
        (25, 75, "step"),
        id="basic-canary-step",
    ),
]


@pytest.mark.parametrize(("obj", "kw", "want"), RULE_CASES)
def test_rules(obj: dict[str, Any], kw: dict[str, Any], want: tuple[int, int, str]) -> None:
    result = split(obj, **kw)
    assert (result.canary, result.stable, result.rule) == want
    assert result.canary + result.stable + sum(d.weight for d in result.additional) == result.max


# --------------------------------------------------------------------------- replica gate


GATE_CASES = [
    pytest.param(
        rollout(status={"currentStepIndex": 2}),
        rs(1, 3),
        10,
        "replica-gate-previous",
        id="canary-scaling-keeps-previous",
    ),
    pytest.param(
        rollout(status={"currentStepIndex": 2}),
        rs(2, 2),
        10,
        "replica-gate-previous",
        id="canary-below-desired-spec",
    ),
    pytest.param(
        rollout(status={"currentStepIndex": 2}),
        rs(0, 3),
        0,
        "new-rs-unavailable",
        id="no-available-pod",
    ),
    pytest.param(
        rollout(status={"currentStepIndex": 2}), rs(3, 3), 25, "step", id="at-desired-count"
    ),
    pytest.param(
        rollout(status={"currentStepIndex": 2}),
        rs(3, 4),
        10,
        "replica-gate-previous",
        id="spec-above-desired",
    ),
    pytest.param(
        rollout(status={"currentStepIndex": 0}), rs(1, 1), 10, "step", id="first-step-at-desired"
    ),
    pytest.param(
        rollout(status={"currentStepIndex": 0}),
        rs(0, 1),
        0,
        "new-rs-unavailable",
        id="first-step-unavailable",
    ),
    pytest.param(
        rollout(status={"currentStepIndex": 3}), rs(3, 3), 25, "step", id="pause-at-desired"
    ),
    pytest.param(
        rollout(status={"currentStepIndex": 5}),
        rs(8, 10),
        75,
        "replica-gate-previous",
        id="end-of-steps-not-yet-100",
    ),
    pytest.param(
        rollout(status={"currentStepIndex": 5}),
        rs(10, 10),
        100,
        "end-of-steps",
        id="end-of-steps-at-100",
    ),
    pytest.param(
        rollout(status={"currentStepIndex": 9}),
        rs(8, 10),
        75,
        "replica-gate-previous",
        id="index-past-end-clamped",
    ),
    pytest.param(
        rollout(status={"currentStepIndex": 2}),
        rs(3, 3, hash_="other"),
        25,
        "step",
        id="rs-of-other-hash-ignored",
    ),
    # setCanaryScale fixes the count (no minPods), until matchTrafficWeight.
    pytest.param(
        rollout(
            steps=[{"setCanaryScale": {"replicas": 2}}, {"setWeight": 30}, {"pause": {}}],
            status={"currentStepIndex": 2},
        ),
        rs(2, 2),
        30,
        "step",
        id="setCanaryScale-replicas-met",
    ),
    pytest.param(
        rollout(
            steps=[{"setCanaryScale": {"replicas": 2}}, {"setWeight": 30}, {"pause": {}}],
            status={"currentStepIndex": 2},
        ),
        rs(3, 3),
        30,
        "replica-gate-previous",
        id="setCanaryScale-replicas-not-met",
    ),
    pytest.param(
        rollout(
            steps=[{"setCanaryScale": {"weight": 50}}, {"setWeight": 10}, {"pause": {}}],
            status={"currentStepIndex": 2},
        ),
        rs(5, 5),
        10,
        "step",
        id="setCanaryScale-weight",
    ),
    pytest.param(
        rollout(
            steps=[
                {"setCanaryScale": {"replicas": 4}},
                {"setWeight": 10},
                {"setCanaryScale": {"matchTrafficWeight": True}},
                {"pause": {}},
            ],
            status={"currentStepIndex": 3},
        ),
        rs(1, 1),
        10,
        "step",
        id="matchTrafficWeight-cancels-scale",
    ),
    # minPodsPerReplicaSet floors ceil(W x replicas / M)
    pytest.param(
        rollout(canary={"minPodsPerReplicaSet": 3}, status={"currentStepIndex": 0}),
        rs(1, 1),
        0,
        "replica-gate-previous",
        id="minPods-not-met",
    ),
    pytest.param(
        rollout(canary={"minPodsPerReplicaSet": 3}, status={"currentStepIndex": 0}),
        rs(3, 3),
        10,
        "step",
        id="minPods-met",
    ),
    pytest.param(
        rollout(canary={"minPodsPerReplicaSet": 30}, status={"currentStepIndex": 0}),
        rs(10, 10),
        10,
        "step",
        id="minPods-capped-at-replicas",
    ),
    # replicaProgressThreshold loosens "available == desired"
    pytest.param(
        rollout(
            canary={"replicaProgressThreshold": {"type": "Percent", "value": 60}},
            status={"currentStepIndex": 2},
        ),
        rs(2, 3),
        25,
        "step",
        id="threshold-percent-met",
    ),
    pytest.param(
        rollout(
            canary={"replicaProgressThreshold": {"type": "Percent", "value": 70}},
            status={"currentStepIndex": 2},
        ),
        rs(2, 3),
        10,
        "replica-gate-previous",
        id="threshold-percent-not-met",
    ),
    pytest.param(
        rollout(
            canary={"replicaProgressThreshold": {"type": "Pods", "value": 1}},
            status={"currentStepIndex": 2},
        ),
        rs(1, 3),
        25,
        "step",
        id="threshold-pods-met",
    ),
    # maxTrafficWeight 1000: setWeight 250 of 10 replicas -> ceil(2.5) = 3 pods
    pytest.param(
        rollout(
            routing={"nginx": {}, "maxTrafficWeight": 1000},
            steps=[{"setWeight": 50}, {"pause": {}}, {"setWeight": 250}, {"pause": {}}],
            status={"currentStepIndex": 2},
        ),
        rs(2, 3),
        50,
        "replica-gate-previous",
        id="max-1000-scaling",
    ),
    pytest.param(
        rollout(
            routing={"nginx": {}, "maxTrafficWeight": 1000},
            steps=[{"setWeight": 50}, {"pause": {}}, {"setWeight": 250}, {"pause": {}}],
            status={"currentStepIndex": 2},
        ),
        rs(3, 3),
        250,
        "step",
        id="max-1000-at-desired",
    ),
    # basic canary (no trafficRouting): Argo's closest count, one surge pod allowed
    pytest.param(
        rollout(no_routing=True, status={"currentStepIndex": 2}),
        rs(3, 3),
        25,
        "step",
        id="basic-canary-at-desired",
    ),
    pytest.param(
        rollout(no_routing=True, status={"currentStepIndex": 2}),
        rs(2, 2),
        10,
        "replica-gate-previous",
        id="basic-canary-scaling",
    ),
]


@pytest.mark.parametrize(("obj", "canary_rs", "canary", "rule"), GATE_CASES)
def test_replica_gate(obj: dict[str, Any], canary_rs: ReplicaSet, canary: int, rule: str) -> None:
    result = split(obj, canary_rs=canary_rs)
    assert (result.canary, result.rule) == (canary, rule)
    assert result.stable == result.max - canary


def test_setCanaryScale_without_trafficRouting_is_argo_invalid() -> None:
    # Argo refuses the spec (its validation test "invalid setCanaryScale without
    # trafficRouting"); kongsplit used to ignore the step and route the setWeight.
    obj = rollout(
        steps=[{"setCanaryScale": {"replicas": 2}}, {"setWeight": 30}],
        no_routing=True,
        status={"currentStepIndex": 1},
    )
    result = compute_json(obj, canary_rs=rs(3, 3))
    assert isinstance(result, Skip) and result.invalid
    assert result.argo_rule == "InvalidSetCanaryScaleTrafficPolicy"
    assert result.field == "spec.strategy.canary.trafficRouting"


@pytest.mark.parametrize(
    ("obj", "desired"),
    [
        pytest.param(rollout(status={"currentStepIndex": 2}), 3, id="ceil-25pct-of-10"),
        pytest.param(rollout(replicas=3, status={"currentStepIndex": 0}), 1, id="ceil-10pct-of-3"),
        pytest.param(rollout(status={"currentStepIndex": 5}), 10, id="end-of-steps"),
        pytest.param(rollout(status={"promoteFull": True}), 10, id="promote-full"),
        pytest.param(rollout(status={"stableRS": None}), 10, id="no-stable-rs"),
        pytest.param(rollout(replicas=0, status={"currentStepIndex": 2}), 0, id="zero-replicas"),
        pytest.param(
            rollout(canary={"minPodsPerReplicaSet": 2}, steps=[{"setWeight": 0}]),
            0,
            id="zero-stays-zero-with-minPods",
        ),
        pytest.param(
            rollout(
                steps=[{"setCanaryScale": {"replicas": 1}}, {"setWeight": 50}],
                canary={"dynamicStableScale": True, "minPodsPerReplicaSet": 2},
                status={"currentStepIndex": 1},
            ),
            2,
            id="dynamic-floors-setCanaryScale",
        ),
        pytest.param(
            rollout(
                steps=[{"setCanaryScale": {"replicas": 4}}, {"setWeight": 50}],
                status={"currentStepIndex": 1, "abort": True},
            ),
            0,
            id="abort-ignores-setCanaryScale",
        ),
        pytest.param(
            rollout(
                steps=[{"setCanaryScale": {"replicas": 4}}, {"setWeight": 50}],
                canary={"abortScaleDownDelaySeconds": 0},
                status={"currentStepIndex": 1, "abort": True},
            ),
            4,
            id="abort-delay-0-keeps-setCanaryScale",
        ),
        pytest.param(
            rollout(no_routing=True, replicas=1, canary={"maxSurge": 0}, steps=[{"setWeight": 50}]),
            1,
            id="basic-one-replica-no-surge",
        ),
        pytest.param(
            rollout(
                no_routing=True, replicas=4, canary={"maxSurge": "0%"}, steps=[{"setWeight": 10}]
            ),
            1,
            id="basic-never-zero-for-partial-weight",
        ),
    ],
)
def test_desired_canary_replicas(obj: dict[str, Any], desired: int) -> None:
    assert desired_canary_replicas(parsed(obj)) == desired


# --------------------------------------------------------------------------- holds


HOLD_CASES = [
    pytest.param(
        rollout(generation=3) | {"status": {**rollout()["status"], "observedGeneration": "2"}},
        None,
        "observedGeneration 2 is below metadata.generation 3",
        id="observed-generation-lags",
    ),
    pytest.param(
        rollout(status={"observedGeneration": None}),
        None,
        None,
        id="no-observed-generation-no-hold",
    ),
    pytest.param(
        rollout(status={"observedGeneration": "abc"}),
        None,
        None,
        id="legacy-observed-generation-no-hold",
    ),
    pytest.param(
        rollout(status={"stableRS": "new", "currentStepIndex": 5}),
        "old",
        "promotion in flight",
        id="promotion-in-flight",
    ),
    pytest.param(
        rollout(status={"stableRS": "new", "currentStepIndex": 5}), "new", None, id="promotion-done"
    ),
    pytest.param(
        rollout(status={"stableRS": "new", "currentStepIndex": 5}),
        None,
        None,
        id="selector-unknown-no-hold",
    ),
    pytest.param(
        rollout(status={"currentStepIndex": 2}), "old", None, id="mid-update-selector-old-is-normal"
    ),
    pytest.param(
        rollout(generation=3)
        | {"status": {**rollout()["status"], "observedGeneration": "2", "abort": True}},
        "zzz",
        None,
        id="abort-beats-generation-hold",
    ),
    pytest.param(
        rollout(status={"stableRS": None, "currentPodHash": None}),
        "old",
        None,
        id="empty-status-no-promotion-hold",
    ),
]


@pytest.mark.parametrize(("obj", "selector", "hold"), HOLD_CASES)
def test_holds(obj: dict[str, Any], selector: str | None, hold: str | None) -> None:
    result = split(obj, stable_service_hash=selector)
    if hold is None:
        assert result.hold is None
    else:
        assert result.hold is not None and hold in result.hold


def test_hold_keeps_argo_weights() -> None:
    obj = rollout(generation=3, status={"currentStepIndex": 2, "observedGeneration": "2"})
    result = split(obj)
    assert result.hold is not None
    assert (result.canary, result.stable) == (25, 75)


def test_abort_mid_promotion_has_no_hold() -> None:
    obj = rollout(status={"abort": True, "currentStepIndex": 2})
    assert split(obj, stable_service_hash="older").hold is None


# --------------------------------------------------------------------------- services


PING_PONG = {"pingPong": {"pingService": "ping", "pongService": "pong"}}


@pytest.mark.parametrize(
    ("canary_spec", "routing", "stable_pp", "want"),
    [
        pytest.param({}, PLUGIN, None, ("svc-canary", "svc-stable"), id="named-services"),
        pytest.param(
            {"canaryService": None, "stableService": None, **PING_PONG},
            PLUGIN,
            "ping",
            ("pong", "ping"),
            id="ping-is-stable",
        ),
        pytest.param(
            {"canaryService": None, "stableService": None, **PING_PONG},
            PLUGIN,
            "pong",
            ("ping", "pong"),
            id="pong-is-stable",
        ),
        pytest.param(
            {"canaryService": None, "stableService": None, **PING_PONG},
            PLUGIN,
            None,
            ("ping", "pong"),
            id="unset-means-pong-stable",
        ),
        pytest.param(
            PING_PONG,
            # Argo requires rootService with ALB ping-pong (MissedAlbRootServiceMessage).
            {"alb": {"ingress": "i", "rootService": "root"}},
            "ping",
            ("pong", "ping"),
            id="alb-prefers-ping-pong",
        ),
        pytest.param(
            PING_PONG,
            PLUGIN,
            "ping",
            ("svc-canary", "svc-stable"),
            id="others-prefer-named-services",
        ),
        pytest.param(
            {"canaryService": None, "stableService": None}, {}, None, (None, None), id="no-services"
        ),
    ],
)
def test_services(
    canary_spec: dict[str, Any],
    routing: dict[str, Any],
    stable_pp: str | None,
    want: tuple[str | None, str | None],
) -> None:
    obj = rollout(routing=routing, status={"canary": {"stablePingPong": stable_pp}})
    for key, value in canary_spec.items():
        if value is None:
            obj["spec"]["strategy"]["canary"].pop(key, None)
        else:
            obj["spec"]["strategy"]["canary"][key] = value
    if stable_pp is None:
        obj["status"].pop("canary")
    result = split(obj)
    assert (result.canary_service, result.stable_service) == want
    assert resolve_services(parsed(obj)) == want


# --------------------------------------------------------------------------- experiments


def test_experiment_destinations_from_fresh_record() -> None:
    obj = rollout(
        routing=PLUGIN,
        status={"currentStepIndex": 1, **record(20, 70, additional=[("base", 5), ("cand", 5)])},
    )
    result = split(obj)
    assert result.additional == (Destination("base", 5), Destination("cand", 5))
    assert (result.canary, result.stable, result.rule) == (20, 70, "recorded")


def test_experiments_dropped_when_argo_drops_them() -> None:
    # Abort and promoteFull call SetWeight without experiment destinations.
    base = record(20, 70, additional=[("base", 5)])
    for extra in ({"abort": True}, {"promoteFull": True}):
        result = split(rollout(routing=PLUGIN, status={**base, **extra}))
        assert result.additional == ()
        assert result.canary + result.stable == 100


def test_experiments_exceeding_max_clamp_stable() -> None:
    obj = rollout(routing=PLUGIN, status=record(60, -20, additional=[("a", 30), ("b", 30)]))
    result = split(obj)
    assert (result.canary, result.stable) == (60, 0)
    assert result.notes and "clamped" in result.notes[0]


def test_experiment_with_max_weight_1000() -> None:
    obj = rollout(
        routing={"plugins": {"p": {}}, "maxTrafficWeight": 1000},
        steps=[{"setWeight": 100}, {"experiment": {}}],
        status={"currentStepIndex": 1, **record(100, 850, additional=[("e", 50)])},
    )
    result = split(obj)
    assert (result.canary, result.stable, result.max) == (100, 850, 1000)


# --------------------------------------------------------------------------- invalid / skip


def test_blue_green_is_skipped_not_invalid() -> None:
    obj = rollout()
    obj["spec"]["strategy"] = {"blueGreen": {"activeService": "a"}}
    result = compute_json(obj)
    assert isinstance(result, Skip)
    assert not result.invalid
    assert "blue-green" in result.reason


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        pytest.param(
            lambda o: o["spec"]["strategy"]["canary"]["steps"][2].update(setWeight="ten"),
            "spec.strategy.canary.steps[2].setWeight",
            id="setWeight-ten",
        ),
        pytest.param(
            lambda o: o["spec"]["strategy"]["canary"].update(
                trafficRouting={"maxTrafficWeight": 0}
            ),
            "spec.strategy.canary.trafficRouting.maxTrafficWeight",
            id="maxTrafficWeight-0",
        ),
        pytest.param(lambda o: o["spec"].update(replicas="x"), "spec.replicas", id="replicas"),
        pytest.param(lambda o: o.update(apiVersion="v1"), "apiVersion", id="apiVersion"),
        pytest.param(lambda o: o.pop("spec"), "spec", id="no-spec"),
        pytest.param(
            lambda o: o["status"].update(currentStepIndex=[]), "status.currentStepIndex", id="index"
        ),
    ],
)
def test_compute_json_reports_malformed(mutate: Any, field: str) -> None:
    obj = rollout()
    mutate(obj)
    result = compute_json(obj)
    assert isinstance(result, Skip)
    assert result.invalid
    assert result.field == field
    assert result.reason.startswith(f"Rollout ns/app: {field}: ")


@pytest.mark.parametrize(
    ("status", "field"),
    [
        pytest.param(
            record(150, -50), "status.canary.weights.canary.weight", id="canary-above-max"
        ),
        pytest.param(record(-1, 101), "status.canary.weights.canary.weight", id="canary-negative"),
        pytest.param(
            record(10, 80, additional=[("e", -10)]),
            "status.canary.weights.additional[0].weight",
            id="experiment-negative",
        ),
    ],
)
def test_recorded_weight_out_of_range_is_invalid(status: dict[str, Any], field: str) -> None:
    result = compute(parsed(rollout(routing=NGINX, status=status)))
    assert isinstance(result, Skip) and result.invalid and result.field == field


def test_hand_made_rollout_with_zero_max_is_invalid() -> None:
    bad = dataclasses.replace(parsed(rollout()), max_traffic_weight=0)
    result = compute(bad)
    assert isinstance(result, Skip) and result.invalid
    assert result.field == "spec.strategy.canary.trafficRouting.maxTrafficWeight"


def test_experiment_without_service_is_invalid() -> None:
    obj = rollout(routing=NGINX, status=record(10, 85, additional=[("e", 5)]))
    del obj["status"]["canary"]["weights"]["additional"][0]["serviceName"]
    result = compute_json(obj)
    assert isinstance(result, Skip) and result.invalid
    assert result.field == "status.canary.weights.additional[0].serviceName"


# --------------------------------------------------------------------------- properties

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
HASHES = st.sampled_from(["a", "b", "c", None])


@st.composite
def canary_rollouts(
    draw: st.DrawFn, *, argo_valid: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A canary Rollout in any status Argo could write, plus compute() keywords.

    `argo_valid` keeps to what Argo's validation accepts (pkg/apis/rollouts/validation):
    maxTrafficWeight only with nginx or plugins, dynamicStableScale and setCanaryScale only with
    trafficRouting, setHeaderRoute only with a router that supports it and its managedRoutes.
    """
    m = draw(st.one_of(st.none(), st.integers(1, 65535), st.sampled_from([1, 100, 1000])))
    routing: dict[str, Any] | None = draw(
        st.sampled_from([None, {}, {"nginx": {}}, {"plugins": {"p": {}}}, {"alb": {}}])
    )
    if routing is None or (argo_valid and not ({"nginx", "plugins"} & routing.keys())):
        m = None  # maxTrafficWeight lives inside trafficRouting, with nginx or plugins only
    elif m is not None:
        routing = {**routing, "maxTrafficWeight": m}
    header_routes = routing is not None and bool({"plugins", "alb"} & routing.keys())
    if routing is not None and header_routes:
        routing = {**routing, "managedRoutes": [{"name": "h"}]}
    top = 100 if m is None else m
    step = st.one_of(
        st.builds(lambda w: {"setWeight": w}, st.integers(0, top)),
        st.just({"pause": {}}),
        st.just({"analysis": {}}),
        st.just({"experiment": {}}),
        st.builds(lambda n: {"setCanaryScale": {"replicas": n}}, st.integers(0, 20)),
        st.builds(lambda w: {"setCanaryScale": {"weight": w}}, st.integers(0, top)),
        st.just({"setCanaryScale": {"matchTrafficWeight": True}}),
        st.just({"setHeaderRoute": {"name": "h"}}),
    )
    steps = draw(st.lists(step, max_size=8))
    if argo_valid:
        steps = [
            s_
            for s_ in steps
            if not ("setCanaryScale" in s_ and routing is None)
            and not ("setHeaderRoute" in s_ and not header_routes)
        ]
    canary: dict[str, Any] = {"steps": steps, "canaryService": "c", "stableService": "s"}
    if routing is not None:
        canary["trafficRouting"] = routing
    canary["dynamicStableScale"] = draw(st.booleans()) and not (argo_valid and routing is None)
    if draw(st.booleans()):
        canary["minPodsPerReplicaSet"] = draw(st.integers(0, 5))
    if draw(st.booleans()):
        canary["abortScaleDownDelaySeconds"] = draw(st.integers(0, 60))
    if draw(st.booleans()):
        canary["replicaProgressThreshold"] = {
            "type": draw(st.sampled_from(["Percent", "Pods"])),
            "value": draw(st.integers(-1, 100)),
        }
    replicas = draw(st.integers(0, 20))
    status: dict[str, Any] = {
        "currentPodHash": draw(HASHES),
        "stableRS": draw(HASHES),
        "abort": draw(st.booleans()),
        "promoteFull": draw(st.booleans()),
        "observedGeneration": draw(st.sampled_from([None, "1", "2"])),
    }
    if draw(st.booleans()):
        status["currentStepIndex"] = draw(st.integers(0, len(steps) + 2))
    if draw(st.booleans()):
        c = draw(st.integers(0, top))
        extra = draw(st.lists(st.integers(0, top), max_size=3))
        status["canary"] = {
            "weights": {
                "canary": {"weight": c, "podTemplateHash": draw(HASHES)},
                "stable": {"weight": top - c - sum(extra), "podTemplateHash": draw(HASHES)},
                "additional": [{"weight": w, "serviceName": f"e{i}"} for i, w in enumerate(extra)],
            }
        }
    obj = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "r", "namespace": "n", "generation": 2},
        "spec": {"replicas": replicas, "strategy": {"canary": canary}},
        "status": status,
    }

    def replica_set(hash_: str | None) -> ReplicaSet | None:
        if hash_ is None or not draw(st.booleans()):
            return None
        spec = draw(st.integers(0, 25))
        return ReplicaSet("n", f"r-{hash_}", hash_, spec, draw(st.integers(0, spec + 2)))

    kw = {
        "canary_rs": replica_set(status["currentPodHash"]),
        "stable_rs": replica_set(status["stableRS"]),
        "stable_service_hash": draw(HASHES),
        "replicasets_known": draw(st.booleans()),
    }
    return obj, kw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(canary_rollouts())
def test_property_weights_add_up(case: tuple[dict[str, Any], dict[str, Any]]) -> None:
    obj, kw = case
    result = compute_json(obj, **kw)
    assert isinstance(result, Split), result
    experiments = sum(d.weight for d in result.additional)
    assert 0 <= result.canary <= result.max
    assert 0 <= result.stable <= result.max
    assert all(0 <= d.weight <= result.max for d in result.additional)
    if result.canary + experiments <= result.max:
        assert result.canary + result.stable + experiments == result.max
    else:
        assert result.stable == 0 and result.notes
    assert result.rule in RULE_IDS
    assert result.hold_id is None or result.hold_id in HOLD_IDS
    assert result.router_context in ROUTER_CONTEXTS
    if obj["status"]["abort"]:
        assert result.hold is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(canary_rollouts(argo_valid=False))
def test_property_argo_invalid_specs_are_refused_by_rule(
    case: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    obj, kw = case
    parsed_ = parse_rollout(obj)
    assert isinstance(parsed_, Rollout)
    result = compute_json(obj, **kw)
    if parsed_.spec_error is None:
        assert isinstance(result, Split), result
    else:
        # Argo marks it InvalidSpec and stops: kongsplit writes nothing and names the rule.
        assert isinstance(result, Skip) and result.invalid
        assert result.argo_rule == parsed_.spec_error.rule
        assert result.field == parsed_.spec_error.field


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(canary_rollouts(), st.data())
def test_property_mutated_rollouts_never_raise(
    case: tuple[dict[str, Any], dict[str, Any]], data: st.DataObject
) -> None:
    obj, kw = case
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(obj)))
        replacement = data.draw(JSON)
        if not path:
            obj = replacement
            break
        parent = obj
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = replacement
    result = compute_json(obj, **kw)
    assert isinstance(result, Split | Skip)
    if isinstance(result, Skip) and result.invalid:
        assert result.reason


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_property_arbitrary_json_never_raises(obj: Any) -> None:
    result = compute_json(obj)
    assert isinstance(result, Skip) and result.invalid


# --------------------------------------------------------------------------- docs/weights.md


def test_docs_rule_tables_are_generated_from_the_engine() -> None:
    doc_path = Path(__file__).resolve().parent.parent / "docs" / "weights.md"
    doc = doc_path.read_text()
    assert render_doc(doc) == doc, (
        "docs/weights.md's rule tables are stale: run `python -m kongsplit.weights "
        "docs/weights.md` from the repository root and commit the result"
    )


def test_every_rule_and_hold_cites_an_argo_function() -> None:
    for rule in (*RULES, *HOLDS):
        assert rule.argo.startswith("`") and ".go)" in rule.argo, rule.id
    assert len({r.id for r in (*RULES, *HOLDS)}) == len(RULES) + len(HOLDS)
