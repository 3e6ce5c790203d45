"""Argo Rollouts' own test states (tests/data/argo/*.json) held against kongsplit's engine.

Each vector restates one state an Argo test builds (the Rollout, its ReplicaSets and Services)
and what that test asserts: the weight `reconcileTrafficRouting` sends its router (or that it
sends none), or the answer of one of the functions the engine restates (`GetCurrentSetWeight`,
`AtDesiredReplicaCountsForCanary`, `CalculateReplicaCountsForTrafficRoutedCanary`, …), or what
Argo's validation says of a spec. `source` names the Argo test (file, function, subtest); the
Argo commit read is in tests/data/argo/NOTE.md. Where kongsplit deliberately differs, the vector's
`deviation` holds Argo's value, kongsplit's and the reason, and docs/weights.md lists it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kongsplit.desired import pick_replicasets
from kongsplit.rollouts import (
    ObjectError,
    ReplicaSet,
    Rollout,
    Service,
    parse_replicaset,
    parse_rollout,
    parse_service,
)
from kongsplit.weights import (
    Skip,
    Split,
    at_desired_replica_counts,
    compute,
    current_set_weight,
    desired_canary_weight,
    dynamically_rolling_back,
    generation_observed,
    replica_counts_traffic_routed,
    replica_progress_threshold_met,
    resolve_services,
    stable_can_carry,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "argo"
VECTORS: list[dict[str, Any]] = [
    vector for path in sorted(DATA.glob("*.json")) for vector in json.loads(path.read_text())
]
ARGO_FILES = {
    "rollout/trafficrouting_test.go",
    "rollout/canary_test.go",
    "utils/replicaset/canary_test.go",
    "utils/rollout/rolloututil_test.go",
    "pkg/apis/rollouts/validation/validation_test.go",
}


def _rollout(vector: dict[str, Any]) -> Rollout:
    parsed = parse_rollout(vector["rollout"])
    assert isinstance(parsed, Rollout), str(parsed)
    return parsed


def _replicasets(vector: dict[str, Any]) -> list[ReplicaSet]:
    out = []
    for raw in vector.get("replicasets", []):
        parsed = parse_replicaset(raw)
        assert isinstance(parsed, ReplicaSet), str(parsed)
        out.append(parsed)
    return out


def _named(vector: dict[str, Any], name: str) -> ReplicaSet | None:
    return next((rs for rs in _replicasets(vector) if rs.name == name), None)


def _by_hash(vector: dict[str, Any], pod_hash: str | None) -> ReplicaSet | None:
    if pod_hash is None:
        return None
    return next((rs for rs in _replicasets(vector) if rs.pod_template_hash == pod_hash), None)


def _wanted(vector: dict[str, Any]) -> dict[str, Any]:
    """kongsplit's expected answer: the deviation's when there is one, else Argo's."""
    deviation = vector.get("deviation")
    return dict(deviation["kongsplit"]) if deviation else dict(vector["expect"])


def _ids(vectors: list[dict[str, Any]]) -> list[Any]:
    return [pytest.param(v, id=v["name"]) for v in vectors]


def _of(function: str) -> list[Any]:
    return _ids([v for v in VECTORS if v["function"] == function])


# --------------------------------------------------------------------------- the file itself


def test_every_vector_names_its_argo_test() -> None:
    assert len(VECTORS) >= 60
    names = [v["name"] for v in VECTORS]
    assert len(names) == len(set(names)), "vector names must be unique"
    for vector in VECTORS:
        source = vector["source"]
        assert source["file"] in ARGO_FILES, vector["name"]
        assert source["test"].startswith("Test"), vector["name"]
        assert vector["why"], vector["name"]
        deviation = vector.get("deviation")
        if deviation is not None:
            assert {"argo", "kongsplit", "reason"} <= deviation.keys(), vector["name"]


def test_docs_list_every_deviation() -> None:
    doc = (ROOT / "docs" / "weights.md").read_text()
    for vector in VECTORS:
        if "deviation" in vector:
            assert f"`{vector['name']}`" in doc, (
                f"docs/weights.md does not list the deviation {vector['name']}"
            )


# ------------------------------------------------------------------- reconcileTrafficRouting


@pytest.mark.parametrize("vector", _of("reconcileTrafficRouting"))
def test_set_weight(vector: dict[str, Any]) -> None:
    rollout = _rollout(vector)
    canary_rs, stable_rs = pick_replicasets(rollout, _replicasets(vector))
    services: dict[str, Service] = {}
    for raw in vector["services"]:
        svc = parse_service(raw)
        assert isinstance(svc, Service)
        services[svc.name] = svc
    _, stable_name = resolve_services(rollout)
    stable_svc = services.get(stable_name) if stable_name else None
    result = compute(
        rollout,
        canary_rs=canary_rs,
        stable_rs=stable_rs,
        stable_service_hash=stable_svc.selector_hash if stable_svc else None,
        replicasets_known=True,
    )
    want = _wanted(vector)
    assert isinstance(result, Split), result
    if want["set_weight"] is None:
        # Argo calls no SetWeight: kongsplit writes nothing either (a hold).
        assert result.hold is not None, (result, vector["why"])
    else:
        assert result.hold is None, (result.hold, vector["why"])
        assert result.canary == want["set_weight"], vector["why"]
        if "additional" in want:
            assert {d.service: d.weight for d in result.additional} == want["additional"]
    if "desired_weight" in vector["expect"]:
        # The weight Argo computed before its stable gate.
        assert result.argo_weight == vector["expect"]["desired_weight"], vector["why"]


# --------------------------------------------------------------------------- Argo's functions


@pytest.mark.parametrize("vector", _of("checkReplicasAvailable"))
def test_check_replicas_available(vector: dict[str, Any]) -> None:
    want = _wanted(vector)
    parsed = parse_rollout(vector["rollout"])
    if "invalid" in want:
        assert isinstance(parsed, ObjectError) and parsed.field == want["invalid"]
        return
    assert isinstance(parsed, Rollout)
    stable = _named(vector, "foo-stable")
    assert stable_can_carry(parsed, stable, vector["weight"]) is want["result"], vector["why"]


@pytest.mark.parametrize("vector", _of("IsDynamicallyRollingBackToStable"))
def test_is_dynamically_rolling_back(vector: dict[str, Any]) -> None:
    rollout = _rollout(vector)
    desired = _named(vector, "desired")
    assert desired is not None
    got = dynamically_rolling_back(rollout, desired, rollout.weights)
    assert got is vector["expect"]["result"], vector["why"]


@pytest.mark.parametrize("vector", _of("CalculateReplicaCountsForTrafficRoutedCanary"))
def test_replica_counts_traffic_routed(vector: dict[str, Any]) -> None:
    rollout = _rollout(vector)
    canary, stable = replica_counts_traffic_routed(
        rollout,
        _by_hash(vector, rollout.current_pod_hash),
        _by_hash(vector, rollout.stable_rs),
        rollout.weights if vector.get("record") else None,
    )
    got = {"canary": canary, "stable": stable}
    want = vector["expect"]
    assert {k: got[k] for k in want} == want, vector["why"]


@pytest.mark.parametrize("vector", _of("GetCurrentSetWeight"))
def test_current_set_weight(vector: dict[str, Any]) -> None:
    assert current_set_weight(_rollout(vector)) == vector["expect"]["result"]


@pytest.mark.parametrize("vector", _of("GetDesiredCanaryWeight"))
def test_desired_canary_weight(vector: dict[str, Any]) -> None:
    rollout = _rollout(vector)
    got = desired_canary_weight(
        rollout, _by_hash(vector, rollout.current_pod_hash), _by_hash(vector, rollout.stable_rs)
    )
    assert got == vector["expect"]["result"], vector["why"]


@pytest.mark.parametrize("vector", _of("AtDesiredReplicaCountsForCanary"))
def test_at_desired_replica_counts(vector: dict[str, Any]) -> None:
    rollout = _rollout(vector)
    got = at_desired_replica_counts(
        rollout, _named(vector, "newRS"), _named(vector, "stableRS"), weights=rollout.weights
    )
    assert got is vector["expect"]["result"], vector["why"]


@pytest.mark.parametrize("vector", _of("ReplicaProgressThresholdMet"))
def test_replica_progress_threshold_met(vector: dict[str, Any]) -> None:
    rollout = _rollout(vector)
    got = replica_progress_threshold_met(
        rollout.replica_progress_threshold, _named(vector, "rs"), vector["desired"]
    )
    assert got is vector["expect"]["result"], vector["why"]


@pytest.mark.parametrize("vector", _of("isGenerationObserved"))
def test_generation_observed(vector: dict[str, Any]) -> None:
    assert generation_observed(_rollout(vector)) is vector["expect"]["result"]


@pytest.mark.parametrize("vector", _of("IsFullyPromoted"))
def test_fully_promoted(vector: dict[str, Any]) -> None:
    assert _rollout(vector).fully_promoted is vector["expect"]["result"]


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("vector", _of("ValidateRollout"))
def test_validation(vector: dict[str, Any]) -> None:
    want = _wanted(vector)
    parsed = parse_rollout(vector["rollout"])
    if want["valid"]:
        assert isinstance(parsed, Rollout), str(parsed)
        assert parsed.spec_error is None, parsed.spec_error
        return
    if isinstance(parsed, ObjectError):
        # Refused while reading (a rule parse_rollout already enforces, or a malformed field).
        assert parsed.field == want["field"], str(parsed)
        if "rule" in want:
            assert want["rule"] in parsed.message, str(parsed)
        return
    error = parsed.spec_error
    assert error is not None, f"kongsplit accepts what Argo refuses ({want['rule']})"
    assert (error.rule, error.field) == (want["rule"], want["field"])
    # And the engine refuses it, naming Argo's rule: Kong is held where it is.
    result = compute(parsed)
    assert isinstance(result, Skip) and result.invalid and result.argo_rule == want["rule"]
