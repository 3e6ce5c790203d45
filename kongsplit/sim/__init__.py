"""Simulators behind ``kongsplit demo`` and the tests — never part of the product.

- ``kongsim``: the Kong Admin API (DB mode, DB-less, hybrid roles), held to Kong's own source
  (docs/kong.md) and to Kong's published OpenAPI spec.
- ``kubesim``: a small Kubernetes API server for the demo and ``plan --kubeconfig`` tests.
- ``objects``: builders of Argo's objects (Rollouts, ReplicaSets, Services).
"""

from kongsplit.sim.kongsim import MODES, Faults, KongSim, RequestRecord

__all__ = ["MODES", "Faults", "KongSim", "RequestRecord"]
