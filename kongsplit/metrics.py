"""kongsplit's Prometheus metrics, bound to a registry the caller injects (one per test).

Names are part of the external contract (README "Metrics") and the alert rules in the chart read
them; label values come from fixed sets (roles, drift kinds, error reasons) so cardinality is
bounded by the number of managed Rollouts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kongsplit.kong.writes import ALGORITHMS
from kongsplit.version import package_version
from kongsplit.weights import ROUTER_CONTEXTS

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
DRIFT_KINDS = ("weight", "missing", "foreign", "restart", "foreign_config")
#: ``kongsplit_rollouts{state}``: what became of each Rollout annotated for kongsplit.
ROLLOUT_STATES = (
    "managed",  # Kong holds (or is being given) Argo's split
    "held",  # Argo's order says write nothing now (promotion in flight, spec not observed)
    "invalid",  # a bad annotation, a malformed Rollout, a missing Service: nothing written
    "refused",  # its upstream belongs to another Rollout: nothing written
    "failing",  # Kong keeps refusing or not answering its writes
)
ERROR_REASONS = (
    "invalid_rollout",
    "invalid_annotation",
    "missing_service",
    "upstream_taken",
    "upstream_not_consented",
    "kong_auth",
    "kong_client_error",
    "kong_unavailable",
    "foreign_targets",
    "upstream_missing",
    "internal",
)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Every metric kongsplit exports; counters are named without ``_total`` (added for us)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # Per-Rollout weights are read from the reconciler's state at scrape time (a custom
        # collector), not kept as gauge children: no series object, lock or label lookup per
        # Rollout on the hot path, and a Rollout that is gone or changed roles simply stops
        # being reported. The reconciler installs the sources when it is made.
        self.weights = WeightsCollector()
        registry.register(self.weights)
        self.rollout_states = CountsCollector(
            "rollouts",
            "Rollouts annotated for kongsplit, by state (managed, held, invalid, refused, "
            "failing).",
            "state",
            ROLLOUT_STATES,
        )
        registry.register(self.rollout_states)
        self.router_contexts = CountsCollector(
            "rollouts_by_router",
            "Managed Rollouts by router context: sole (kongsplit routes alone), shared (another "
            "router too), basic (no trafficRouting, allowed by annotation).",
            "context",
            ROUTER_CONTEXTS,
        )
        registry.register(self.router_contexts)
        self.upstream_algorithms = CountsCollector(
            "managed_upstreams",
            "Managed upstreams by load-balancing algorithm; least-connections and latency can "
            "still send requests to a weight-0 target (docs/kong.md).",
            "algorithm",
            ALGORITHMS,
        )
        registry.register(self.upstream_algorithms)
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
        self.kong_auth_ok = Gauge(
            "kong_auth_ok",
            "0 while the Kong Admin API refuses kongsplit's admin token (401/403), else 1.",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.kong_auth_ok.set(1)
        self.kong_tls_verify = Gauge(
            "kong_tls_verify",
            "0 while kong.tls.insecureSkipVerify turns off checking the Kong Admin API's "
            "certificate (anyone on the path can read the admin token), else 1.",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.kong_tls_verify.set(1)
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
        self.leader_identity_clashes = Counter(
            "leader_identity_clashes",
            "Times another process was found holding the leader Lease under this replica's "
            "identity (two replicas configured with the same leaderElection.identity).",
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
        self.watch_events_skipped = Counter(
            "watch_events_skipped",
            "Kubernetes watch lines or list items skipped as unusable, by resource and reason "
            "(oversized: a line over 4 MiB; malformed: not JSON; invalid: not an event or object "
            "of the right shape); a skipped watch line is followed by a relist.",
            ["resource", L_REASON],
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
        """Drop the per-Rollout counter series of a Rollout no longer managed (or moved)."""
        for kind in DRIFT_KINDS:
            with contextlib.suppress(KeyError):
                self.drift_corrections.remove(namespace, rollout, upstream, kind)


#: One row per (Rollout, role): namespace, rollout, upstream, role, desired, observed.
WeightRow = tuple[str, str, str, str, int | None, int | None]


class WeightsCollector(Collector):
    """``kongsplit_desired_weight`` and ``kongsplit_observed_weight``, built at scrape time."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[WeightRow]] | None = None

    def describe(self) -> list[Metric]:
        return list(self._families(()))

    def collect(self) -> list[Metric]:
        return list(self._families(self.source() if self.source is not None else ()))

    @staticmethod
    def _families(rows: Iterable[WeightRow]) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        labels = [*ROLLOUT_LABELS, L_ROLE]
        desired = GaugeMetricFamily(
            f"{NAMESPACE}_desired_weight",
            "Weight kongsplit holds for a target role, as Argo Rollouts would route it.",
            labels=labels,
        )
        observed = GaugeMetricFamily(
            f"{NAMESPACE}_observed_weight",
            "Weight the Kong Admin API last reported for a target role.",
            labels=labels,
        )
        for namespace, rollout, upstream, role, want, seen in rows:
            if want is not None:
                desired.add_metric([namespace, rollout, upstream, role], want)
            if seen is not None:
                observed.add_metric([namespace, rollout, upstream, role], seen)
        return desired, observed


class CountsCollector(Collector):
    """A gauge of annotated Rollouts counted by one label at scrape time, every known value
    always exported (0 when none), so an alert has a series to watch for as long as it lasts.

    ``kongsplit_rollouts{state}`` and ``kongsplit_rollouts_by_router{context}`` are two.
    """

    def __init__(self, name: str, documentation: str, label: str, values: Iterable[str]) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self.values = tuple(values)
        self.source: Callable[[], Iterable[str | None]] | None = None

    def describe(self) -> list[Metric]:
        return [self._family(())]

    def collect(self) -> list[Metric]:
        return [self._family(self.source() if self.source is not None else ())]

    def _family(self, found: Iterable[str | None]) -> GaugeMetricFamily:
        counts = dict.fromkeys(self.values, 0)
        for value in found:
            if value is not None:
                counts[value] = counts.get(value, 0) + 1
        family = GaugeMetricFamily(
            f"{NAMESPACE}_{self.name}", self.documentation, labels=[self.label]
        )
        for value, n in counts.items():
            family.add_metric([value], n)
        return family
