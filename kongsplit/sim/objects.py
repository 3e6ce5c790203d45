"""Kubernetes objects as Argo Rollouts and its cluster would write them, for the simulators.

One place builds the Rollouts, Services and ReplicaSets that ``kongsplit demo``, the integration
tests and the benchmarks feed to the daemon, so they all exercise the same shapes Argo writes:
a Rollout with ``trafficRouting: {}`` and two Services whose selectors carry
``rollouts-pod-template-hash``, and ReplicaSets named ``<rollout>-<hash>`` owned by the Rollout.
"""

from __future__ import annotations

from typing import Any

CANARY_STEPS: list[dict[str, Any]] = [
    {"setWeight": 10},
    {"pause": {}},
    {"setWeight": 25},
    {"pause": {}},
    {"setWeight": 50},
    {"pause": {}},
    {"setWeight": 75},
    {"pause": {}},
]
HASH_LABEL = "rollouts-pod-template-hash"
ROLLOUTS = ("argoproj.io/v1alpha1", "rollouts")


def rollout(
    name: str,
    namespace: str = "shop",
    *,
    upstream: str | None = None,
    annotations: dict[str, str] | None = None,
    pod_hash: str = "v1",
    stable_rs: str | None = None,
    index: int | None = None,
    replicas: int = 4,
    steps: list[dict[str, Any]] | None = None,
    stable_service: str | None = None,
    canary_service: str | None = None,
    uid: str | None = None,
) -> dict[str, Any]:
    """A canary Rollout as Argo leaves it: ``status.currentPodHash``, ``stableRS``, the index.

    ``upstream`` (default ``<name>.<namespace>.svc``) becomes the ``kongsplit.io/upstream``
    annotation unless ``annotations`` are given whole. With the defaults the Rollout is fully
    promoted at revision ``v1``.
    """
    status: dict[str, Any] = {
        "observedGeneration": "1",
        "currentPodHash": pod_hash,
        "stableRS": stable_rs if stable_rs is not None else pod_hash,
    }
    if index is not None:
        status["currentStepIndex"] = index
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "generation": 1,
        "uid": uid or f"uid-{namespace}-{name}",
        "annotations": annotations
        if annotations is not None
        else {"kongsplit.io/upstream": upstream or f"{name}.{namespace}.svc"},
    }
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {
                "canary": {
                    "stableService": stable_service or f"{name}-stable",
                    "canaryService": canary_service or f"{name}-canary",
                    "trafficRouting": {},
                    "steps": steps if steps is not None else CANARY_STEPS,
                }
            },
        },
        "status": status,
    }


def service(
    name: str,
    cluster_ip: str | None,
    pod_hash: str,
    namespace: str = "shop",
    *,
    app: str | None = None,
    ports: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ClusterIP Service selecting one pod-template-hash (``cluster_ip=None`` → headless)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip if cluster_ip is not None else "None",
            "selector": {"app": app or name.rsplit("-", 1)[0], HASH_LABEL: pod_hash},
            "ports": ports or [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    }


def replicaset(
    rollout_name: str,
    pod_hash: str,
    replicas: int,
    available: int,
    namespace: str = "shop",
    *,
    owner_uid: str | None = None,
) -> dict[str, Any]:
    """The ReplicaSet Argo creates for one revision: ``<rollout>-<hash>``, owned by the Rollout."""
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{rollout_name}-{pod_hash}",
            "namespace": namespace,
            "labels": {"app": rollout_name, HASH_LABEL: pod_hash},
            "ownerReferences": [
                {
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "Rollout",
                    "name": rollout_name,
                    "uid": owner_uid or f"uid-{namespace}-{rollout_name}",
                    "controller": True,
                }
            ],
        },
        "spec": {"replicas": replicas},
        "status": {"replicas": replicas, "availableReplicas": available},
    }


def canary_pods(weight: int, replicas: int, max_weight: int = 100) -> int:
    """Pods Argo gives a traffic-routed canary at ``weight``: ceil(weight × replicas / M)."""
    return -(-weight * replicas // max_weight)
