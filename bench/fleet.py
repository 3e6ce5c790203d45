"""The objects the benchmarks are made of: Rollout ``app{i}`` with its two Services and two
ReplicaSets, all in one namespace. Light on purpose (only the simulator's object builders), so
the simulator processes of the scale run import it without the daemon.

Used by ``bench/common.py`` (the in-process benchmarks) and ``bench/scale_sims.py`` /
``bench/scale.py`` (the whole process at scale).
"""

from __future__ import annotations

from typing import Any

from kongsplit.sim import objects

NAMESPACE = "shop"  # every Rollout in one namespace: the worst case for per-namespace work
STEPS = objects.CANARY_STEPS
FLIP = {0: 2, 2: 0}  # currentStepIndex: setWeight 10 <-> setWeight 25 (one canary pod both)


def upstream_of(i: int) -> str:
    return f"app{i}.{NAMESPACE}.svc"


def ip_of(i: int, canary: bool) -> str:
    n = 2 * i + (1 if canary else 0)
    return f"10.{96 + n // 65536}.{(n // 256) % 256}.{n % 256}"


def weights_at(i: int, index: int) -> dict[str, int]:
    """Kong's weights for Rollout ``app{i}`` at step ``index`` (a setWeight step)."""
    canary = int(STEPS[index]["setWeight"])
    return {f"{ip_of(i, False)}:80": 100 - canary, f"{ip_of(i, True)}:80": canary}


def rollout(i: int, index: int, *, resource_version: str | None = None) -> dict[str, Any]:
    """Rollout ``app{i}`` mid-canary (new hash ``c{i}``, stable ``s{i}``) at ``index``, with the
    fields a real one also carries, so parsing costs what it costs in a cluster."""
    obj = objects.rollout(
        f"app{i}",
        NAMESPACE,
        upstream=upstream_of(i),
        pod_hash=f"c{i}",
        stable_rs=f"s{i}",
        index=index,
        uid=f"uid-{i}",
    )
    obj["metadata"]["labels"] = {"app": f"app{i}", "team": "shop"}
    if resource_version is not None:
        obj["metadata"]["resourceVersion"] = resource_version
    obj["spec"]["template"] = {
        "metadata": {"labels": {"app": f"app{i}"}},
        "spec": {"containers": [{"name": "web", "image": f"registry/app{i}:2"}]},
    }
    obj["status"].update(replicas=8, availableReplicas=8)
    return obj


def services(i: int) -> list[dict[str, Any]]:
    return [
        objects.service(f"app{i}-stable", ip_of(i, False), f"s{i}", NAMESPACE, app=f"app{i}"),
        objects.service(f"app{i}-canary", ip_of(i, True), f"c{i}", NAMESPACE, app=f"app{i}"),
    ]


def replicasets(i: int) -> list[dict[str, Any]]:
    # The canary ReplicaSet at 1 of 4 pods: Argo's count for both setWeight 10 and 25, so
    # moving between those steps passes the replica gate at once.
    return [
        objects.replicaset(f"app{i}", f"s{i}", 4, 4, NAMESPACE, owner_uid=f"uid-{i}"),
        objects.replicaset(f"app{i}", f"c{i}", 1, 1, NAMESPACE, owner_uid=f"uid-{i}"),
    ]
