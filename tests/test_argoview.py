"""``kongsplit.argoview`` held to Argo Rollouts' own tests: each phase case restates one in
utils/rollout/rolloututil_test.go (TestRolloutStatus*, Test_isGenerationObserved), each
ReplicaSet case a branch of getReplicaSetHealth (pkg/kubectl-argo-rollouts/info/
replicaset_info.go), each weight case GetCurrentSetWeight (utils/replicaset/canary.go)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from kongsplit import argoview


def canary(**status: Any) -> dict[str, Any]:
    """Argo's ``newCanaryRollout()``: 5 replicas, steps setWeight 10, pause 60, setWeight 20."""
    base: dict[str, Any] = {
        "metadata": {"name": "can-guestbook", "namespace": "test", "uid": "u1"},
        "spec": {
            "replicas": 5,
            "strategy": {
                "canary": {
                    "steps": [{"setWeight": 10}, {"pause": {"duration": 60}}, {"setWeight": 20}]
                }
            },
        },
        "status": {
            "currentStepIndex": 1,
            "replicas": 4,
            "readyReplicas": 1,
            "updatedReplicas": 3,
            "availableReplicas": 2,
        },
    }
    base["status"].update(status)
    return base


def blue_green(**status: Any) -> dict[str, Any]:
    ro = canary(**status)
    ro["spec"]["strategy"] = {"blueGreen": {"activeService": "active"}}
    return ro


def healthy(**extra: Any) -> dict[str, Any]:
    return {
        "replicas": 5,
        "updatedReplicas": 5,
        "availableReplicas": 5,
        "readyReplicas": 5,
        "stableRS": "abc1234",
        "currentPodHash": "abc1234",
        **extra,
    }


def _with(ro: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    ro = copy.deepcopy(ro)
    *parents, last = path.split(".")
    at = ro
    for p in parents:
        at = at.setdefault(p, {})
    at[last] = value
    return ro


PHASES = [
    pytest.param(
        canary(
            conditions=[
                {
                    "type": "Progressing",
                    "reason": "ProgressDeadlineExceeded",
                    "message": "timed out",
                }
            ]
        ),
        ("Degraded", "ProgressDeadlineExceeded: timed out"),
        id="degraded-timed-out",
    ),
    pytest.param(
        canary(
            abort=True,
            conditions=[
                {
                    "type": "Progressing",
                    "reason": "RolloutAborted",
                    "message": "Rollout aborted update to revision 2",
                }
            ],
        ),
        ("Degraded", "RolloutAborted: Rollout aborted update to revision 2"),
        id="aborted-is-degraded",
    ),
    pytest.param(
        canary(conditions=[{"type": "InvalidSpec", "message": "bad"}]),
        ("Degraded", "InvalidSpec: bad"),
        id="invalid-spec",
    ),
    pytest.param(_with(canary(), "spec.paused", True), ("Paused", "manually paused"), id="paused"),
    pytest.param(
        canary(pauseConditions=[{"reason": "CanaryPauseStep"}], controllerPause=True),
        ("Paused", "CanaryPauseStep"),
        id="paused-at-step",
    ),
    pytest.param(
        canary(controllerPause=True),
        ("Progressing", "waiting for rollout to unpause"),
        id="unpausing",
    ),
    pytest.param(
        canary(updatedReplicas=4, availableReplicas=4, replicas=5),
        ("Progressing", "more replicas need to be updated"),
        id="updating",
    ),
    pytest.param(
        canary(updatedReplicas=5, availableReplicas=4, replicas=5),
        ("Progressing", "updated replicas are still becoming available"),
        id="becoming-available",
    ),
    pytest.param(
        canary(updatedReplicas=5, availableReplicas=5, replicas=7),
        ("Progressing", "old replicas are pending termination"),
        id="old-replicas",
    ),
    pytest.param(
        blue_green(**healthy(currentPodHash="def5678", blueGreen={"activeSelector": "abc1234"})),
        ("Progressing", "active service cutover pending"),
        id="bg-cutover",
    ),
    pytest.param(
        _with(
            blue_green(
                **healthy(currentPodHash="def5678", blueGreen={"activeSelector": "def5678"})
            ),
            "spec.strategy.blueGreen.postPromotionAnalysis",
            {},
        ),
        ("Progressing", "waiting for analysis to complete"),
        id="bg-analysis",
    ),
    pytest.param(
        blue_green(**healthy(currentPodHash="def5678", blueGreen={"activeSelector": "def5678"})),
        ("Progressing", "waiting for post-promotion verification to complete"),
        id="bg-verification",
    ),
    pytest.param(
        _with(
            {
                **canary(),
                "status": {"observedGeneration": "0", "stableRS": "a", "currentPodHash": "a"},
            },
            "spec.replicas",
            None,
        ),
        ("Progressing", "more replicas need to be updated"),
        id="new-rollout-partial-status",
    ),
    pytest.param(
        _with(
            {
                **canary(),
                "status": {"observedGeneration": "1", "stableRS": "a", "currentPodHash": "a"},
            },
            "metadata.generation",
            2,
        ),
        ("Progressing", "waiting for rollout spec update to be observed"),
        id="generation-not-observed",
    ),
    pytest.param(
        _with(
            {
                **canary(),
                "status": {
                    "observedGeneration": "7d66d4485f",
                    "stableRS": "a",
                    "currentPodHash": "a",
                },
            },
            "metadata.generation",
            2,
        ),
        ("Progressing", "more replicas need to be updated"),
        id="v09-hash-generation",
    ),
    pytest.param(
        _with(
            {
                **canary(),
                "status": {
                    "observedGeneration": "1366344857",
                    "stableRS": "a",
                    "currentPodHash": "a",
                },
            },
            "metadata.generation",
            2,
        ),
        ("Progressing", "more replicas need to be updated"),
        id="v09-numeric-hash",
    ),
    pytest.param(
        _with(canary(**healthy()), "spec.restartAt", "2025-01-01T00:00:00Z"),
        ("Progressing", "rollout is restarting"),
        id="restarting",
    ),
    pytest.param(
        _with(
            canary(**healthy(restartedAt="2025-01-01T00:00:00Z")),
            "spec.restartAt",
            "2025-01-01T00:00:00Z",
        ),
        ("Healthy", ""),
        id="restarted",
    ),
    pytest.param(canary(**healthy()), ("Healthy", ""), id="healthy"),
    pytest.param(
        blue_green(**healthy(blueGreen={"activeSelector": "abc1234"})),
        ("Healthy", ""),
        id="bg-healthy",
    ),
    pytest.param(
        canary(**healthy(stableRS="old")),
        ("Progressing", "waiting for all steps to complete"),
        id="steps-left",
    ),
    pytest.param(
        canary(phase="Paused", message="canary pause"),
        ("Paused", "canary pause"),
        id="controller-phase",
    ),
    pytest.param(
        {"spec": "garbage", "status": 7},
        ("Progressing", "more replicas need to be updated"),
        id="garbage",
    ),
]


@pytest.mark.parametrize(("rollout", "expected"), PHASES)
def test_phase_as_argos_plugin_shows_it(rollout: dict[str, Any], expected: tuple[str, str]) -> None:
    assert argoview.rollout_phase(rollout) == expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param({"currentStepIndex": 0}, 10, id="first-step"),
        pytest.param({"currentStepIndex": 1}, 10, id="pause-keeps-10"),
        pytest.param({"currentStepIndex": 2}, 20, id="second-weight"),
        pytest.param({"currentStepIndex": 3}, 100, id="past-the-end"),
        pytest.param({}, 10, id="no-index-is-0"),
        pytest.param({"currentStepIndex": 2, "abort": True}, 0, id="aborted"),
    ],
)
def test_set_weight(status: dict[str, Any], expected: int) -> None:
    ro = canary()
    ro["status"] = status
    assert argoview.current_set_weight(ro) == expected


def test_set_weight_and_step_edges() -> None:
    ro = canary()
    ro["spec"]["strategy"]["canary"]["trafficRouting"] = {"maxTrafficWeight": 1000}
    ro["spec"]["strategy"]["canary"]["steps"] = []
    assert argoview.current_set_weight(ro) == 1000  # no steps: M
    assert argoview.current_set_weight(blue_green()) is None
    step = argoview.step_of(canary(currentStepIndex=1))
    assert (step.text, step.current) == ("1/3", "pause 60")
    assert argoview.step_of(canary(currentStepIndex=3)).current is None
    assert argoview.step_of({"status": {"currentStepIndex": 2}}).text == "-"
    assert argoview.strategy(blue_green()) == "BlueGreen"
    assert argoview.strategy({"spec": {}}) == "unknown"


def _rs(name: str, pod_hash: str, **fields: Any) -> dict[str, Any]:
    rs: dict[str, Any] = {
        "metadata": {
            "name": name,
            "generation": 1,
            "labels": {"rollouts-pod-template-hash": pod_hash},
            "annotations": {"rollout.argoproj.io/revision": "1"},
            "ownerReferences": [{"uid": "u1"}],
        },
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 1,
            "replicas": 2,
            "readyReplicas": 2,
            "availableReplicas": 2,
        },
    }
    for path, value in fields.items():
        rs = _with(rs, path.replace("__", "."), value)
    return rs


@pytest.mark.parametrize(
    ("fields", "health"),
    [
        pytest.param({}, "Healthy", id="healthy"),
        pytest.param({"status__availableReplicas": 1}, "Progressing", id="short"),
        pytest.param({"metadata__generation": 2}, "Progressing", id="not-observed"),
        pytest.param(
            {"status__conditions": [{"type": "ReplicaFailure", "status": "True"}]},
            "ReplicaFailure",
            id="failure",
        ),
        pytest.param(
            {"spec__replicas": 0, "status__availableReplicas": 0}, "ScaledDown", id="scaled-down"
        ),
    ],
)
def test_replicaset_health(fields: dict[str, Any], health: str) -> None:
    [info] = argoview.replicaset_infos(canary(), [_rs("a", "h", **fields)])
    assert info.status == health


def test_replicasets_are_the_rollouts_own_newest_first_with_roles() -> None:
    ro = canary(stableRS="s", currentPodHash="c")
    found = argoview.replicaset_infos(
        ro,
        [
            _rs("ro-s", "s"),
            _rs("ro-c", "c", metadata__annotations={"rollout.argoproj.io/revision": "2"}),
            _rs("other", "c", metadata__ownerReferences=[{"uid": "someone-else"}]),
            _rs("ro-old", "o", spec__replicas=0, status__availableReplicas=0),
        ],
    )
    assert [(r.name, r.revision, r.role, r.status) for r in found] == [
        ("ro-c", 2, "canary", "Healthy"),
        ("ro-old", 1, None, "ScaledDown"),
        ("ro-s", 1, "stable", "Healthy"),
    ]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (5, "5s"),
        (119, "119s"),
        (150, "2m30s"),
        (600, "10m"),
        (3 * 3600 + 300, "3h5m"),
        (10 * 3600, "10h"),
        (50 * 3600, "2d2h"),
        (20 * 86400, "20d"),
        (-3, "0s"),
    ],
)
def test_age_as_kubectl_writes_it(seconds: int, shown: str) -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC)
    then = datetime.fromtimestamp(now.timestamp() - seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert argoview.age(then, now) == shown
    assert argoview.age("yesterday", now) == "-" and argoview.age(None, now) == "-"
