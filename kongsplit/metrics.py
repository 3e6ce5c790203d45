"""kongsplit's Prometheus metrics, bound to a registry the caller injects (one per test).

Names are part of the external contract (DESIGN.md §4) and the alert rules in the chart read
them; label values come from fixed sets (roles, drift kinds, error reasons) so cardinality is
bounded by the number of managed Rollouts.
"""

from __future__ import annotations

import contextlib
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

NAMESPACE = "kongsplit"

L_NAMESPACE = "namespace"
L_ROLLOUT = "rollout"
L_UPSTREAM = "upstream"
L_ROLE = "role"
L_KIND = "kind"
L_REASON = "reason"
L_METHOD = "method"
L_CODE = "code"

ROLLOUT_LABELS = (L_NAMESPACE, L_ROLLOUT, L_UPSTREAM)
ROLES = ("canary", "stable", "experiment")
DRIFT_KINDS = ("weight", "missing", "foreign", "restart", "foreign_config")
ERROR_REASONS = (
    "invalid_rollout",
    "invalid_annotation",
    "missing_service",
    "kong_client_error",
    "kong_unavailable",
    "foreign_targets",
    "upstream_missing",
    "internal",
)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def package_version() -> str:
    try:
        return version("kongsplit")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


class Metrics:
    """Every metric kongsplit exports; counters are named without ``_total`` (added for us)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.desired_weight = Gauge(
            "desired_weight",
            "Weight kongsplit holds for a target role, as Argo Rollouts would route it.",
            [*ROLLOUT_LABELS, L_ROLE],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.observed_weight = Gauge(
            "observed_weight",
            "Weight the Kong Admin API last reported for a target role.",
            [*ROLLOUT_LABELS, L_ROLE],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.drift_corrections = Counter(
            "drift_corrections",
            "Targets put back after Kong differed from the desired state, by kind.",
            [*ROLLOUT_LABELS, L_KIND],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.kong_up = Gauge(
            "kong_up",
            "1 when the last request to the Kong Admin API got an answer, else 0.",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.kong_requests = Counter(
            "kong_requests",
            "Requests sent to the Kong Admin API, by method and status code (0 = no answer).",
            [L_METHOD, L_CODE],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.kong_request_duration = Histogram(
            "kong_request_duration_seconds",
            "Time for one Kong Admin API request.",
            buckets=_LATENCY_BUCKETS,
            namespace=NAMESPACE,
            registry=registry,
        )
        self.apply_latency = Histogram(
            "apply_latency_seconds",
            "From a Rollout change being seen to Kong acknowledging the weights.",
            buckets=_LATENCY_BUCKETS,
            namespace=NAMESPACE,
            registry=registry,
        )
        self.reconcile_errors = Counter(
            "reconcile_errors",
            "Rollouts that could not be reconciled, by reason.",
            [L_REASON],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.managed_rollouts = Gauge(
            "managed_rollouts",
            "Rollouts annotated for kongsplit and currently managed.",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.leader = Gauge(
            "leader",
            "1 while this replica may write to Kong (leader, or leader election off).",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.watch_restarts = Counter(
            "watch_restarts",
            "Kubernetes watches restarted (410 Gone relists, dropped connections).",
            ["resource"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.last_sync_timestamp = Gauge(
            "last_sync_timestamp_seconds",
            "Unix time of the last complete, successful sync with Kong.",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.build_info = Gauge(
            "build_info",
            "Always 1; the version label says which kongsplit runs.",
            ["version"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.build_info.labels(version=package_version()).set(1)
        for reason in ERROR_REASONS:
            self.reconcile_errors.labels(reason=reason)

    def forget_rollout(self, namespace: str, rollout: str, upstream: str) -> None:
        """Drop the per-Rollout series of a Rollout no longer managed (or moved upstream)."""
        for kind in DRIFT_KINDS:
            with contextlib.suppress(KeyError):
                self.drift_corrections.remove(namespace, rollout, upstream, kind)
        for role in ROLES:
            for gauge in (self.desired_weight, self.observed_weight):
                with contextlib.suppress(KeyError):  # that role was never set
                    gauge.remove(namespace, rollout, upstream, role)
