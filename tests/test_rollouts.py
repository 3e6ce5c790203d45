"""kongsplit.rollouts: Rollout/ReplicaSet parsing, validation that names the field, memory."""

from __future__ import annotations

import copy
import gc
import tracemalloc
from typing import Any

import pytest

from kongsplit.rollouts import (
    CanaryScale,
    ObjectError,
    PingPong,
    ProgressThreshold,
    ReplicaSet,
    Rollout,
    RolloutKey,
    Service,
    ServicePort,
    Step,
    WeightRecord,
    is_canary_replicaset,
    parse_replicaset,
    parse_rollout,
    parse_service,
)

CPATH = "spec.strategy.canary"


def rollout_json(**patch: Any) -> dict[str, Any]:
    """A valid canary Rollout mid-update; `patch` is deep-merged (a None value deletes a key)."""
    base: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {
            "name": "checkout",
            "namespace": "shop",
            "uid": "u-1",
            "generation": 2,
            "annotations": {
                "kongsplit.io/upstream": "checkout.svc",
                "rollout.argoproj.io/revision": "2",
                "kubectl.kubernetes.io/last-applied-configuration": "{...}",
            },
        },
        "spec": {
            "replicas": 10,
            "strategy": {
                "canary": {
                    "canaryService": "checkout-canary",
                    "stableService": "checkout-stable",
                    "trafficRouting": {"nginx": {"stableIngress": "checkout"}},
                    "steps": [{"setWeight": 10}, {"pause": {}}, {"setWeight": 25}, {"pause": {}}],
                }
            },
        },
        "status": {
            "observedGeneration": "2",
            "currentPodHash": "new",
            "stableRS": "old",
            "currentStepIndex": 1,
            "canary": {
                "weights": {
                    "canary": {"weight": 10, "podTemplateHash": "new", "serviceName": "c"},
                    "stable": {"weight": 90, "podTemplateHash": "old", "serviceName": "s"},
                    "verified": True,
                }
            },
        },
    }
    return merge(base, patch)


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict) and value:
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def canary_patch(**fields: Any) -> dict[str, Any]:
    return {"spec": {"strategy": {"canary": fields}}}


def ok(obj: object) -> Rollout:
    result = parse_rollout(obj)
    assert isinstance(result, Rollout), str(result)
    return result


# --------------------------------------------------------------------------- happy paths


def test_parses_the_fields_the_engine_needs() -> None:
    r = ok(rollout_json())
    assert r.key == RolloutKey("shop", "checkout")
    assert str(r.key) == "shop/checkout"
    assert r.uid == "u-1"
    assert r.generation == 2
    assert dict(r.annotations) == {"kongsplit.io/upstream": "checkout.svc"}
    assert not r.blue_green
    assert r.replicas == 10
    assert (r.canary_service, r.stable_service) == ("checkout-canary", "checkout-stable")
    assert r.steps == (
        Step("setWeight", 10),
        Step("pause"),
        Step("setWeight", 25),
        Step("pause"),
    )
    assert r.traffic_routing and r.has_router and r.routers == ("nginx",)
    assert r.max_traffic_weight == 100
    assert (r.current_pod_hash, r.stable_rs, r.current_step_index) == ("new", "old", 1)
    assert r.observed_generation == 2  # a string in the API, a number here
    assert r.weights is not None
    assert r.weights.canary == WeightRecord(10, "new", "c")
    assert r.weights.stable == WeightRecord(90, "old", "s")
    assert r.weights.verified is True
    assert not r.abort and not r.promote_full and not r.fully_promoted


def test_rollout_is_hashable_and_steps_are_interned() -> None:
    a, b = ok(rollout_json()), ok(rollout_json())
    assert a == b and hash(a) == hash(b)
    assert all(x is y for x, y in zip(a.steps, b.steps, strict=True))


def test_defaults_for_a_minimal_canary() -> None:
    r = ok(
        {
            "metadata": {"name": "x"},
            "spec": {"strategy": {"canary": {}}},
        }
    )
    assert r.key == RolloutKey("default", "x")
    assert r.replicas == 1
    assert r.steps == ()
    assert not r.traffic_routing and not r.has_router
    assert r.current_pod_hash is None and r.stable_rs is None and r.fully_promoted
    assert r.weights is None and r.observed_generation is None and r.generation is None
    assert r.max_surge == "25%"


@pytest.mark.parametrize(
    ("routing", "routers"),
    [
        pytest.param({}, (), id="empty-trafficRouting"),
        pytest.param({"maxTrafficWeight": 1000}, (), id="only-maxTrafficWeight"),
        pytest.param({"managedRoutes": [{"name": "h"}]}, (), id="only-managedRoutes"),
        pytest.param({"plugins": {}}, (), id="empty-plugins-map"),
        pytest.param({"istio": None}, (), id="null-router"),
        pytest.param({"plugins": {"argoproj-labs/gatewayAPI": {}}}, ("plugins",), id="plugin"),
        pytest.param({"alb": {"ingress": "i"}, "smi": {}}, ("alb", "smi"), id="two-routers"),
        pytest.param({"apisix": {}}, ("apisix",), id="apisix"),
    ],
)
def test_router_detection(routing: dict[str, Any], routers: tuple[str, ...]) -> None:
    obj = rollout_json()
    obj["spec"]["strategy"]["canary"]["trafficRouting"] = routing
    r = ok(obj)
    assert r.traffic_routing
    assert r.routers == routers
    assert r.has_router is bool(routers)


def test_no_traffic_routing() -> None:
    r = ok(rollout_json(**canary_patch(trafficRouting=None)))
    assert not r.traffic_routing and not r.has_router


def test_blue_green_is_parsed_not_rejected() -> None:
    obj = rollout_json()
    obj["spec"]["strategy"] = {"blueGreen": {"activeService": "a", "previewService": "p"}}
    r = ok(obj)
    assert r.blue_green
    assert r.steps == ()


def test_canary_options() -> None:
    r = ok(
        rollout_json(
            **canary_patch(
                dynamicStableScale=True,
                abortScaleDownDelaySeconds=0,
                minPodsPerReplicaSet=2,
                replicaProgressThreshold={"type": "Percent", "value": 70},
                maxSurge=3,
                pingPong={"pingService": "ping", "pongService": "pong"},
                steps=[
                    {"setCanaryScale": {"replicas": 2}},
                    {"setCanaryScale": {"weight": 40}},
                    {"setCanaryScale": {"matchTrafficWeight": True}},
                    {"setHeaderRoute": {"name": "h"}},
                    {"experiment": {"templates": []}},
                    {"analysis": {"templates": []}},
                    {"plugin": {"name": "p"}},
                    {"setMirrorRoute": {"name": "m"}},
                ],
            ),
            status={"canary": {"stablePingPong": "ping"}},
        )
    )
    assert r.dynamic_stable_scale
    assert r.abort_scale_down_delay_seconds == 0
    assert r.min_pods_per_replica_set == 2
    assert r.replica_progress_threshold == ProgressThreshold("Percent", 70)
    assert r.max_surge == 3
    assert r.ping_pong == PingPong("ping", "pong")
    assert r.stable_ping_pong == "ping"
    assert [s.kind for s in r.steps] == [
        "setCanaryScale",
        "setCanaryScale",
        "setCanaryScale",
        "setHeaderRoute",
        "experiment",
        "analysis",
        "plugin",
        "setMirrorRoute",
    ]
    assert r.steps[0].canary_scale == CanaryScale(replicas=2)
    assert r.steps[1].canary_scale == CanaryScale(weight=40)
    assert r.steps[2].canary_scale == CanaryScale(match_traffic_weight=True)


@pytest.mark.parametrize(
    ("patch", "check"),
    [
        pytest.param(
            canary_patch(steps=[{"fooBar": {"x": 1}}, {}]),
            lambda r: [s.kind for s in r.steps] == ["fooBar", "unknown"],
            id="unknown-and-empty-step-kinds",
        ),
        pytest.param(
            canary_patch(steps=[{"setWeight": None, "pause": {}}]),
            lambda r: r.steps == (Step("pause"),),
            id="null-setWeight-is-absent",
        ),
        pytest.param(
            canary_patch(steps=[{"setWeight": 20, "setCanaryScale": {"replicas": 1}}]),
            lambda r: r.steps[0].set_weight == 20,
            id="setWeight-with-setCanaryScale-allowed",
        ),
        pytest.param(
            {"spec": {"futureField": [1, 2]}, "status": {"phase": "Paused", "whatever": {}}},
            lambda r: r.replicas == 10,
            id="extra-fields",
        ),
        pytest.param(
            {"status": {"observedGeneration": "5f7c9d8b6c"}},
            lambda r: r.observed_generation is None,
            id="legacy-hash-observedGeneration",
        ),
        pytest.param(
            {"status": {"observedGeneration": 2}},
            lambda r: r.observed_generation == 2,
            id="integer-observedGeneration",
        ),
        pytest.param(
            {"apiVersion": None, "kind": None},
            lambda r: r.key.name == "checkout",
            id="list-item-without-apiVersion-kind",
        ),
        pytest.param(
            {"status": {"canary": {"weights": {"stable": {"weight": -10}}}}},
            lambda r: r.weights.stable.weight == -10,
            id="negative-recorded-stable-weight",
        ),
        pytest.param(
            {"status": {"currentPodHash": "", "stableRS": ""}},
            lambda r: r.current_pod_hash is None and r.fully_promoted,
            id="empty-hashes-are-unset",
        ),
        pytest.param(
            {"metadata": {"annotations": {"other.io/x": 5}}},
            lambda r: "other.io/x" not in r.annotations,
            id="foreign-annotation-not-judged",
        ),
        pytest.param(
            {"status": None},
            lambda r: r.current_step_index is None and r.weights is None,
            id="no-status",
        ),
        pytest.param(
            canary_patch(trafficRouting={"nginx": {}, "maxTrafficWeight": 65535}),
            lambda r: r.max_traffic_weight == 65535,
            id="max-weight-kong-limit",
        ),
    ],
)
def test_lenient_where_argo_is(patch: dict[str, Any], check: Any) -> None:
    assert check(ok(rollout_json(**patch)))


# --------------------------------------------------------------------------- errors


def _steps_with(third: Any) -> dict[str, Any]:
    return canary_patch(steps=[{"setWeight": 10}, {"pause": {}}, third])


BAD_CASES = [
    pytest.param({"apiVersion": "apps/v1"}, "apiVersion", "must be", id="wrong-apiVersion"),
    pytest.param({"kind": "Deployment"}, "kind", "must be 'Rollout'", id="wrong-kind"),
    pytest.param({"spec": None}, "spec", "is required", id="missing-spec"),
    pytest.param({"spec": [1]}, "spec", "must be an object, got a list", id="spec-not-object"),
    pytest.param(
        {"spec": {"strategy": None}}, "spec.strategy", "is required", id="missing-strategy"
    ),
    pytest.param(
        {"spec": {"strategy": {"blueGreen": {}}}},
        "spec.strategy",
        "only one of canary and blueGreen",
        id="both-strategies",
    ),
    pytest.param(
        {"spec": {"strategy": {"canary": None, "rollingUpdate": {}}}},
        "spec.strategy",
        "must set canary or blueGreen",
        id="no-strategy",
    ),
    pytest.param(
        _steps_with({"setWeight": "ten"}),
        f"{CPATH}.steps[2].setWeight",
        "must be an integer between 0 and 100, got 'ten'",
        id="setWeight-ten",
    ),
    pytest.param(
        _steps_with({"setWeight": 101}),
        f"{CPATH}.steps[2].setWeight",
        "between 0 and 100, got 101",
        id="setWeight-above-max",
    ),
    pytest.param(
        _steps_with({"setWeight": -1}),
        f"{CPATH}.steps[2].setWeight",
        "got -1",
        id="setWeight-negative",
    ),
    pytest.param(
        _steps_with({"setWeight": 12.5}),
        f"{CPATH}.steps[2].setWeight",
        "got 12.5",
        id="setWeight-fraction",
    ),
    pytest.param(
        _steps_with({"setWeight": True}),
        f"{CPATH}.steps[2].setWeight",
        "got true",
        id="setWeight-bool",
    ),
    pytest.param(
        merge(
            canary_patch(trafficRouting={"nginx": {}, "maxTrafficWeight": 1000}),
            _steps_with({"setWeight": 1001}),
        ),
        f"{CPATH}.steps[2].setWeight",
        "between 0 and 1000, got 1001",
        id="setWeight-above-custom-max",
    ),
    pytest.param(
        _steps_with({"setWeight": 10, "pause": {}}),
        f"{CPATH}.steps[2]",
        "only one of setWeight, pause",
        id="two-step-kinds",
    ),
    pytest.param(_steps_with("pause"), f"{CPATH}.steps[2]", "must be an object", id="step-str"),
    pytest.param(_steps_with(None), f"{CPATH}.steps[2]", "is required", id="step-null"),
    pytest.param(
        canary_patch(steps={"setWeight": 10}), f"{CPATH}.steps", "must be a list", id="steps-obj"
    ),
    pytest.param(
        _steps_with({"setCanaryScale": {"replicas": "2"}}),
        f"{CPATH}.steps[2].setCanaryScale.replicas",
        "got '2'",
        id="setCanaryScale-replicas",
    ),
    pytest.param(
        _steps_with({"setCanaryScale": {"weight": 500}}),
        f"{CPATH}.steps[2].setCanaryScale.weight",
        "between 0 and 100",
        id="setCanaryScale-weight",
    ),
    pytest.param(
        canary_patch(trafficRouting={"nginx": {}, "maxTrafficWeight": 0}),
        f"{CPATH}.trafficRouting.maxTrafficWeight",
        "between 1 and 65535, got 0",
        id="maxTrafficWeight-zero",
    ),
    pytest.param(
        canary_patch(trafficRouting={"nginx": {}, "maxTrafficWeight": -100}),
        f"{CPATH}.trafficRouting.maxTrafficWeight",
        "got -100",
        id="maxTrafficWeight-negative",
    ),
    pytest.param(
        canary_patch(trafficRouting={"nginx": {}, "maxTrafficWeight": 65536}),
        f"{CPATH}.trafficRouting.maxTrafficWeight",
        "got 65536",
        id="maxTrafficWeight-above-kong-max",
    ),
    pytest.param(
        canary_patch(trafficRouting={"nginx": {}, "maxTrafficWeight": "1000"}),
        f"{CPATH}.trafficRouting.maxTrafficWeight",
        "got '1000'",
        id="maxTrafficWeight-string",
    ),
    pytest.param(
        canary_patch(trafficRouting="nginx"),
        f"{CPATH}.trafficRouting",
        "must be an object",
        id="trafficRouting-string",
    ),
    pytest.param(
        canary_patch(trafficRouting={"istio": "yes"}),
        f"{CPATH}.trafficRouting.istio",
        "must be an object",
        id="router-string",
    ),
    pytest.param({"spec": {"replicas": "3"}}, "spec.replicas", "got '3'", id="replicas-string"),
    pytest.param({"spec": {"replicas": 2.5}}, "spec.replicas", "got 2.5", id="replicas-float"),
    pytest.param({"spec": {"replicas": -1}}, "spec.replicas", "got -1", id="replicas-negative"),
    pytest.param(
        canary_patch(canaryService=5), f"{CPATH}.canaryService", "string", id="service-int"
    ),
    pytest.param(
        canary_patch(stableService="checkout-canary"),
        f"{CPATH}.stableService",
        "must differ",
        id="same-services",
    ),
    pytest.param(
        canary_patch(pingPong={"pingService": "a"}),
        f"{CPATH}.pingPong.pongService",
        "is required",
        id="pingPong-half",
    ),
    pytest.param(
        canary_patch(dynamicStableScale="true"),
        f"{CPATH}.dynamicStableScale",
        "true or false",
        id="dynamicStableScale-string",
    ),
    pytest.param(
        canary_patch(abortScaleDownDelaySeconds=-5),
        f"{CPATH}.abortScaleDownDelaySeconds",
        "got -5",
        id="abortScaleDownDelay-negative",
    ),
    pytest.param(
        canary_patch(minPodsPerReplicaSet="2"),
        f"{CPATH}.minPodsPerReplicaSet",
        "got '2'",
        id="minPods-string",
    ),
    pytest.param(
        canary_patch(maxSurge="lots"), f"{CPATH}.maxSurge", "percentage", id="maxSurge-word"
    ),
    pytest.param(
        canary_patch(replicaProgressThreshold={"type": "Ratio", "value": 1}),
        f"{CPATH}.replicaProgressThreshold.type",
        "'Percent' or 'Pods'",
        id="threshold-type",
    ),
    pytest.param({"status": []}, "status", "must be an object", id="status-list"),
    pytest.param(
        {"status": {"currentStepIndex": "2"}},
        "status.currentStepIndex",
        "got '2'",
        id="index-string",
    ),
    pytest.param(
        {"status": {"currentStepIndex": -1}}, "status.currentStepIndex", "got -1", id="index-neg"
    ),
    pytest.param({"status": {"abort": "yes"}}, "status.abort", "true or false", id="abort-str"),
    pytest.param(
        {"status": {"promoteFull": 1}}, "status.promoteFull", "true or false", id="promoteFull-int"
    ),
    pytest.param(
        {"status": {"currentPodHash": 123}},
        "status.currentPodHash",
        "must be a string",
        id="hash-int",
    ),
    pytest.param(
        {"status": {"observedGeneration": [2]}},
        "status.observedGeneration",
        "string holding a number",
        id="observedGeneration-list",
    ),
    pytest.param(
        {"status": {"canary": {"weights": {"canary": {"weight": "10"}}}}},
        "status.canary.weights.canary.weight",
        "got '10'",
        id="recorded-weight-string",
    ),
    pytest.param(
        {"status": {"canary": {"weights": {"canary": None}}}},
        "status.canary.weights.canary",
        "is required",
        id="recorded-canary-missing",
    ),
    pytest.param(
        {"status": {"canary": {"weights": {"additional": [{"serviceName": "x"}]}}}},
        "status.canary.weights.additional[0].weight",
        "is required",
        id="recorded-additional-no-weight",
    ),
    pytest.param(
        {"status": {"canary": {"weights": {"verified": "no"}}}},
        "status.canary.weights.verified",
        "true, false or null",
        id="verified-string",
    ),
    pytest.param(
        {"status": {"canary": {"stablePingPong": "pang"}}},
        "status.canary.stablePingPong",
        "'ping' or 'pong'",
        id="stablePingPong-typo",
    ),
    pytest.param(
        {"metadata": {"annotations": {"kongsplit.io/port": 8080}}},
        "metadata.annotations[kongsplit.io/port]",
        "must be a string, got 8080",
        id="annotation-not-string",
    ),
    pytest.param(
        {"metadata": {"annotations": ["a"]}},
        "metadata.annotations",
        "must be an object",
        id="annotations-list",
    ),
    pytest.param(
        {"metadata": {"generation": "2"}}, "metadata.generation", "got '2'", id="generation-str"
    ),
]


@pytest.mark.parametrize(("patch", "field", "message"), BAD_CASES)
def test_malformed_rollout_names_the_field(patch: dict[str, Any], field: str, message: str) -> None:
    err = parse_rollout(rollout_json(**patch))
    assert isinstance(err, ObjectError), err
    assert err.kind == "Rollout"
    assert err.field == field
    assert message in err.message
    assert (err.namespace, err.name) == ("shop", "checkout")
    assert str(err) == f"Rollout shop/checkout: {field}: {err.message}"


def test_error_sentence_matches_the_contract_example() -> None:
    err = parse_rollout(rollout_json(**_steps_with({"setWeight": "ten"})))
    assert str(err) == (
        "Rollout shop/checkout: spec.strategy.canary.steps[2].setWeight: "
        "must be an integer between 0 and 100, got 'ten'"
    )


@pytest.mark.parametrize(
    ("obj", "field", "name"),
    [
        pytest.param(None, None, None, id="null"),
        pytest.param([1, 2], None, None, id="list"),
        pytest.param("Rollout", None, None, id="string"),
        pytest.param({"kind": "Rollout"}, "metadata", None, id="no-metadata"),
        pytest.param({"metadata": {"name": ""}, "spec": {}}, "metadata.name", None, id="no-name"),
        pytest.param(
            {"metadata": {"name": "x", "namespace": 3}, "spec": {}},
            "metadata.namespace",
            "x",
            id="namespace-int",
        ),
    ],
)
def test_unnamed_or_non_object_input(obj: object, field: str | None, name: str | None) -> None:
    err = parse_rollout(obj)
    assert isinstance(err, ObjectError)
    assert err.field == field
    assert err.name == name
    if name is None:
        assert str(err).startswith("Rollout <unnamed>: ")


def test_huge_bad_value_is_shown_short() -> None:
    err = parse_rollout(rollout_json(**_steps_with({"setWeight": "x" * 5000})))
    assert isinstance(err, ObjectError)
    assert len(str(err)) < 200


# --------------------------------------------------------------------------- ReplicaSet


def rs_json(**patch: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": "checkout-new",
            "namespace": "shop",
            "labels": {"app": "checkout", "rollouts-pod-template-hash": "new"},
            "ownerReferences": [{"kind": "Rollout", "name": "checkout", "uid": "u-1"}],
        },
        "spec": {"replicas": 3},
        "status": {"replicas": 3, "availableReplicas": 2},
    }
    return merge(base, patch)


def test_parse_replicaset() -> None:
    rs = parse_replicaset(rs_json())
    assert rs == ReplicaSet("shop", "checkout-new", "new", 3, 2, ("u-1",), status_replicas=3)


def test_replicaset_defaults() -> None:
    rs = parse_replicaset({"metadata": {"name": "x"}})
    assert rs == ReplicaSet("default", "x", None, 1, 0, ())
    fresh = parse_replicaset(rs_json(status={"availableReplicas": None}))
    assert isinstance(fresh, ReplicaSet) and fresh.available_replicas == 0


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        pytest.param({"kind": "Deployment"}, "kind", id="kind"),
        pytest.param({"apiVersion": "extensions/v1beta1"}, "apiVersion", id="apiVersion"),
        pytest.param({"spec": {"replicas": "3"}}, "spec.replicas", id="replicas"),
        pytest.param(
            {"status": {"availableReplicas": -1}}, "status.availableReplicas", id="available"
        ),
        pytest.param({"metadata": {"labels": []}}, "metadata.labels", id="labels"),
        pytest.param(
            {"metadata": {"labels": {"rollouts-pod-template-hash": 7}}},
            "metadata.labels[rollouts-pod-template-hash]",
            id="hash-label",
        ),
        pytest.param(
            {"metadata": {"ownerReferences": [3]}}, "metadata.ownerReferences[0]", id="owner"
        ),
    ],
)
def test_malformed_replicaset(patch: dict[str, Any], field: str) -> None:
    err = parse_replicaset(rs_json(**patch))
    assert isinstance(err, ObjectError)
    assert err.kind == "ReplicaSet" and err.field == field
    assert str(err).startswith(f"ReplicaSet shop/checkout-new: {field}: ")


@pytest.mark.parametrize("obj", [None, 1, [], "x", {"metadata": 5}, {"metadata": {}}])
def test_replicaset_never_raises(obj: object) -> None:
    assert isinstance(parse_replicaset(obj), ObjectError)


@pytest.mark.parametrize(
    ("rs_patch", "expected"),
    [
        pytest.param({}, True, id="match"),
        pytest.param({"metadata": {"namespace": "other"}}, False, id="other-namespace"),
        pytest.param(
            {"metadata": {"labels": {"rollouts-pod-template-hash": "old"}}}, False, id="stable-rs"
        ),
        pytest.param({"metadata": {"ownerReferences": [{"uid": "u-2"}]}}, False, id="other-owner"),
        pytest.param({"metadata": {"ownerReferences": None}}, True, id="owners-unknown"),
    ],
)
def test_is_canary_replicaset(rs_patch: dict[str, Any], expected: bool) -> None:
    rs = parse_replicaset(rs_json(**rs_patch))
    assert isinstance(rs, ReplicaSet)
    assert is_canary_replicaset(ok(rollout_json()), rs) is expected


# --------------------------------------------------------------------------- memory


def test_five_thousand_rollouts_stay_small() -> None:
    """<= 100 MiB resident at 5,000 Rollouts (bench/README.md); the parsed values are a small
    part."""
    raws = []
    for i in range(5000):
        obj = rollout_json()
        obj["metadata"]["name"] = f"app-{i}"
        obj["metadata"]["uid"] = f"uid-{i:08d}"
        obj["status"]["currentPodHash"] = f"h{i:08x}"
        raws.append(obj)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        parsed = [parse_rollout(obj) for obj in raws]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert all(isinstance(r, Rollout) for r in parsed)
    per_rollout = (after - before) / len(parsed)
    assert per_rollout < 2048, f"{per_rollout:.0f} bytes per Rollout"


# --------------------------------------------------------------------------- Service


def service_json(name: str = "checkout-stable", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"clusterIP": "10.96.14.20", "ports": [{"name": "http", "port": 80}]}
    body.update(spec)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": body,
    }


def test_parse_service_reads_what_the_mapping_needs() -> None:
    obj = service_json(
        ports=[
            {"name": "http", "port": 80, "targetPort": 8080},
            {"port": 9090, "targetPort": "metrics"},
        ],
        selector={"app": "checkout", "rollouts-pod-template-hash": "5f6c"},
    )
    assert parse_service(obj) == Service(
        namespace="shop",
        name="checkout-stable",
        type="ClusterIP",
        cluster_ip="10.96.14.20",
        ports=(ServicePort("http", 80), ServicePort(None, 9090)),
        selector_hash="5f6c",
    )


def test_parse_service_defaults_namespace() -> None:
    obj = service_json()
    del obj["metadata"]["namespace"]
    got = parse_service(obj)
    assert isinstance(got, Service)
    assert got.namespace == "default"


@pytest.mark.parametrize(
    ("cluster_ip", "headless"),
    [
        pytest.param("None", True, id="explicit-None-is-headless"),
        pytest.param(None, False, id="absent-is-unallocated-not-headless"),
        pytest.param("10.0.0.1", False, id="ip"),
    ],
)
def test_service_headless(cluster_ip: str | None, headless: bool) -> None:
    obj = service_json(clusterIP=cluster_ip)
    got = parse_service(obj)
    assert isinstance(got, Service)
    assert got.headless is headless


@pytest.mark.parametrize(
    ("obj", "field", "words"),
    [
        pytest.param(["not", "a", "map"], None, "expected an object, got a list", id="not-object"),
        pytest.param({"spec": {}}, "metadata.name", "required", id="no-metadata"),
        pytest.param({"metadata": {"name": "s"}}, "spec", "required", id="no-spec"),
        pytest.param(service_json(ports={"http": 80}), "spec.ports", "list", id="ports-map"),
        pytest.param(service_json(ports=["http"]), "spec.ports[0]", "object", id="port-not-map"),
        pytest.param(
            service_json(ports=[{"port": "80"}]), "spec.ports[0].port", "'80'", id="port-string"
        ),
        pytest.param(
            service_json(ports=[{"port": 0}]), "spec.ports[0].port", "1 and 65535", id="port-0"
        ),
        pytest.param(
            service_json(ports=[{"port": 80}, {"port": True}]),
            "spec.ports[1].port",
            "got true",  # JSON's word, as the user wrote it
            id="port-bool",
        ),
        pytest.param(
            service_json(ports=[{"port": "9" * 100_000}]),
            "spec.ports[0].port",
            "got '99999",
            id="port-huge-string-shown-cut-short",
        ),
        pytest.param(
            service_json(ports=[{"name": ["http"], "port": 80}]),
            "spec.ports[0].name",
            "must be a string, got a list",
            id="port-name-not-string",
        ),
    ],
)
def test_parse_service_invalid(obj: object, field: str | None, words: str) -> None:
    got = parse_service(obj)
    assert isinstance(got, ObjectError), got
    assert got.kind == "Service"
    assert got.field == field
    assert words in got.message
    assert len(got.message) < 200
    # Counted with the Services kongsplit cannot use (kongsplit_reconcile_errors_total).
    assert got.reason == "missing_service"
