"""kongsplit's Prometheus metrics, bound to a registry the caller injects (one per test).

Names are part of the external contract (README "Metrics", generated from the definitions here
by ``python -m kongsplit.metrics``); the alert rules and the Grafana dashboard
(deploy/grafana/kongsplit.json) read them. Label values come from fixed sets (roles, drift kinds,
error reasons) so cardinality is bounded by the number of managed Rollouts.

Label names never clash with the labels Prometheus gives a target (``job``, ``instance``, and
``namespace``, ``pod``, ``service``, ``container``, ``endpoint`` from Kubernetes discovery): the
Rollout's namespace is ``rollout_namespace``, so a scrape keeps every label as exported without
``honor_labels`` and ``namespace`` always means where kongsplit runs (docs/operations.md
"Metrics").
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kongsplit.kong.targets import ROLE_CANARY, ROLE_STABLE
from kongsplit.kong.writes import ALGORITHMS
from kongsplit.version import package_version
from kongsplit.weights import ROUTER_CONTEXTS

NAMESPACE = "kongsplit"

#: The Rollout's namespace: not ``namespace``, the label Prometheus gives the scraped target.
L_NAMESPACE = "rollout_namespace"
L_ROLLOUT = "rollout"
L_UPSTREAM = "upstream"
L_ROLE = "role"
L_KIND = "kind"
L_REASON = "reason"
L_METHOD = "method"
L_CODE = "code"
L_RESOURCE = "resource"
#: Labels Prometheus sets on a scraped target itself (plus Kubernetes service discovery's, as
#: the Prometheus Operator and common relabelings name them): kongsplit exports none of them.
TARGET_LABELS = ("job", "instance", "namespace", "pod", "service", "container", "endpoint")

ROLLOUT_LABELS = (L_NAMESPACE, L_ROLLOUT, L_UPSTREAM)
ROLES = (ROLE_STABLE, ROLE_CANARY)
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
#: ``kongsplit_watch_events_skipped_total{reason}``: why a watch line or listed item was skipped.
SKIP_REASONS = ("oversized", "malformed", "invalid")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class MetricDoc:
    """One exported metric as README "Metrics" lists it."""

    name: str  # as scraped: a counter's ends in ``_total``
    type: str
    help: str
    labels: tuple[str, ...] = ()
    #: The closed set of values a label takes (open ones, like ``code``, are not listed).
    values: tuple[tuple[str, tuple[str, ...]], ...] = ()


class Metrics:
    """Every metric kongsplit exports; counters are named without ``_total`` (added for us).

    The registry also gets prometheus_client's process, platform and GC collectors
    (``process_*``, ``python_info``, ``python_gc_*``), and no ``*_created`` series: they would
    double the per-Rollout series for a start time nothing here reads.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        # A process-wide switch in prometheus_client; kongsplit exports through this class only.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream
        self.registry = registry
        #: What README "Metrics" says of each kongsplit_* metric, in definition order.
        self.docs: list[MetricDoc] = []
        ProcessCollector(registry=registry)  # process_*: CPU, memory, open fds (Linux /proc)
        PlatformCollector(registry=registry)  # python_info{implementation,version,...}
        GCCollector(registry=registry)  # python_gc_*{generation}
        # Per-Rollout weights are read from the reconciler's state at scrape time (a custom
        # collector), not kept as gauge children: no series object, lock or label lookup per
        # Rollout on the hot path, and a Rollout that is gone or changed roles simply stops
        # being reported. The reconciler installs the sources when it is made.
        self.weights = WeightsCollector()
        registry.register(self.weights)
        weight_values = ((L_ROLE, ROLES),)
        self._doc(
            "desired_weight", "gauge", WeightsCollector.DESIRED_HELP, WEIGHT_LABELS, weight_values
        )
        self._doc(
            "observed_weight", "gauge", WeightsCollector.OBSERVED_HELP, WEIGHT_LABELS, weight_values
        )
        self.rollout_states = self._counts(
            "rollouts",
            "Rollouts annotated for kongsplit, by state (managed, held, invalid, refused, "
            "failing).",
            "state",
            ROLLOUT_STATES,
        )
        self.router_contexts = self._counts(
            "rollouts_by_router",
            "Managed Rollouts by router context: sole (kongsplit routes alone), shared (another "
            "router too), basic (no trafficRouting, allowed by annotation).",
            "context",
            ROUTER_CONTEXTS,
        )
        self.upstream_algorithms = self._counts(
            "managed_upstreams",
            "Managed upstreams by load-balancing algorithm; least-connections and latency can "
            "still send requests to a weight-0 target (docs/kong.md).",
            "algorithm",
            ALGORITHMS,
        )
        self.drift_corrections = self._counter(
            "drift_corrections",
            "Targets put back after Kong differed from the desired state, by kind.",
            (*ROLLOUT_LABELS, L_KIND),
            ((L_KIND, DRIFT_KINDS),),
        )
        self.kong_up = self._gauge(
            "kong_up", "1 when the last request to the Kong Admin API got an answer, else 0."
        )
        self.kong_auth_ok = self._gauge(
            "kong_auth_ok",
            "0 while the Kong Admin API refuses kongsplit's admin token (401/403), else 1.",
        )
        self.kong_auth_ok.set(1)
        self.kong_tls_verify = self._gauge(
            "kong_tls_verify",
            "0 while kong.tls.insecureSkipVerify turns off checking the Kong Admin API's "
            "certificate (anyone on the path can read the admin token), else 1.",
        )
        self.kong_tls_verify.set(1)
        self.kong_requests = self._counter(
            "kong_requests",
            "Requests sent to the Kong Admin API, by method and status code (0 = no answer).",
            (L_METHOD, L_CODE),
        )
        self.kong_request_duration = self._histogram(
            "kong_request_duration_seconds", "Time for one Kong Admin API request."
        )
        self.apply_latency = self._histogram(
            "apply_latency_seconds",
            "From a Rollout change being seen to Kong acknowledging the weights.",
        )
        self.reconcile_errors = self._counter(
            "reconcile_errors",
            "Rollouts that could not be reconciled, by reason.",
            (L_REASON,),
            ((L_REASON, ERROR_REASONS),),
        )
        self.managed_rollouts = self._gauge(
            "managed_rollouts", "Rollouts annotated for kongsplit and currently managed."
        )
        self.leader = self._gauge(
            "leader", "1 while this replica may write to Kong (leader, or leader election off)."
        )
        self.leader_identity_clashes = self._counter(
            "leader_identity_clashes",
            "Times another process was found holding the leader Lease under this replica's "
            "identity (two replicas configured with the same leaderElection.identity).",
        )
        self.watch_restarts = self._counter(
            "watch_restarts",
            "Kubernetes watches restarted (410 Gone relists, dropped connections), by resource "
            "(rollouts, replicasets, services, endpointslices).",
            (L_RESOURCE,),
        )
        self.watch_events_skipped = self._counter(
            "watch_events_skipped",
            "Kubernetes watch lines or list items skipped as unusable, by resource and reason "
            "(oversized: a line over 4 MiB; malformed: not JSON; invalid: not an event or object "
            "of the right shape); a skipped watch line is followed by a relist.",
            (L_RESOURCE, L_REASON),
            ((L_REASON, SKIP_REASONS),),
        )
        self.last_sync_timestamp = self._gauge(
            "last_sync_timestamp_seconds",
            "Unix time of the last complete, successful sync with Kong.",
        )
        self.build_info = self._gauge(
            "build_info", "Always 1; the version label says which kongsplit runs.", ("version",)
        )
        self.build_info.labels(version=package_version()).set(1)
        for reason in ERROR_REASONS:
            self.reconcile_errors.labels(reason=reason)

    def watching(self, resource: str) -> None:
        """Export the watch series of ``resource`` at 0 from the start (a watcher calls this),
        so ``increase()`` in an alert or dashboard sees its first restart or skip."""
        self.watch_restarts.labels(resource=resource)
        for reason in SKIP_REASONS:
            self.watch_events_skipped.labels(resource=resource, reason=reason)

    def applying(self, namespace: str, rollout: str, upstream: str) -> None:
        """Export a Rollout's drift series at 0 for every kind from its first apply on (the
        reporter calls this once per Rollout and upstream), so ``increase()`` in an alert or
        dashboard sees its first correction; forget_rollout drops them again."""
        for kind in DRIFT_KINDS:
            self.drift_corrections.labels(namespace, rollout, upstream, kind)

    # -- definitions: each records what README "Metrics" says of it

    def _doc(
        self,
        name: str,
        kind: str,
        documentation: str,
        labels: Sequence[str] = (),
        values: tuple[tuple[str, tuple[str, ...]], ...] = (),
    ) -> None:
        scraped = f"{NAMESPACE}_{name}" + ("_total" if kind == "counter" else "")
        self.docs.append(MetricDoc(scraped, kind, documentation, tuple(labels), values))

    def _counter(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        values: tuple[tuple[str, tuple[str, ...]], ...] = (),
    ) -> Counter:
        self._doc(name, "counter", documentation, labels, values)
        return Counter(name, documentation, labels, namespace=NAMESPACE, registry=self.registry)

    def _gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        self._doc(name, "gauge", documentation, labels)
        return Gauge(name, documentation, labels, namespace=NAMESPACE, registry=self.registry)

    def _histogram(self, name: str, documentation: str) -> Histogram:
        self._doc(name, "histogram", documentation)
        return Histogram(
            name,
            documentation,
            buckets=_LATENCY_BUCKETS,
            namespace=NAMESPACE,
            registry=self.registry,
        )

    def _counts(
        self, name: str, documentation: str, label: str, values: tuple[str, ...]
    ) -> CountsCollector:
        collector = CountsCollector(name, documentation, label, values)
        self.registry.register(collector)
        self._doc(name, "gauge", documentation, (label,), ((label, values),))
        return collector

    def forget_rollout(self, namespace: str, rollout: str, upstream: str) -> None:
        """Drop the per-Rollout counter series of a Rollout no longer managed (or moved)."""
        for kind in DRIFT_KINDS:
            with contextlib.suppress(KeyError):
                self.drift_corrections.remove(namespace, rollout, upstream, kind)


#: One row per (Rollout, role): namespace, rollout, upstream, role, desired, observed.
WeightRow = tuple[str, str, str, str, int | None, int | None]
WEIGHT_LABELS = (*ROLLOUT_LABELS, L_ROLE)


class WeightsCollector(Collector):
    """``kongsplit_desired_weight`` and ``kongsplit_observed_weight``, built at scrape time."""

    DESIRED_HELP = "Weight kongsplit holds for a target role, as Argo Rollouts would route it."
    OBSERVED_HELP = "Weight the Kong Admin API last reported for a target role."

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[WeightRow]] | None = None

    def describe(self) -> list[Metric]:
        return list(self._families(()))

    def collect(self) -> list[Metric]:
        return list(self._families(self.source() if self.source is not None else ()))

    @classmethod
    def _families(cls, rows: Iterable[WeightRow]) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        labels = list(WEIGHT_LABELS)
        desired = GaugeMetricFamily(f"{NAMESPACE}_desired_weight", cls.DESIRED_HELP, labels=labels)
        observed = GaugeMetricFamily(
            f"{NAMESPACE}_observed_weight", cls.OBSERVED_HELP, labels=labels
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


# --- README "Metrics", generated: ``python -m kongsplit.metrics [--write README.md]`` ---

README_BEGIN = "<!-- metrics: begin -->"
README_END = "<!-- metrics: end -->"


def markdown_reference() -> str:
    """README's list of metrics, from the definitions above (``python -m kongsplit.metrics``)."""
    docs = Metrics(CollectorRegistry()).docs
    lines = [
        README_BEGIN,
        "<!-- Generated from kongsplit/metrics.py by `python -m kongsplit.metrics --write "
        "README.md`:",
        "     edit the definitions, not this list (tests/test_metrics.py fails when they "
        "differ). -->",
        "",
    ]
    for doc in docs:
        labels = "{" + ",".join(doc.labels) + "}" if doc.labels else ""
        item = f"- `{doc.name}{labels}` ({doc.type}): {doc.help}"
        for label, values in doc.values:
            item += f" `{label}`: " + ", ".join(f"`{v}`" for v in values) + "."
        lines.append(item)
    lines += [
        "",
        "Beside them, prometheus_client's standard collectors: `process_*` (CPU, memory, open "
        "file descriptors; on Linux), `python_info` and `python_gc_*`. No `*_created` series are "
        "exported.",
        README_END,
    ]
    return "\n".join(lines) + "\n"


def readme_with_reference(readme: str) -> str:
    """``readme`` with the text between the markers replaced by ``markdown_reference()``."""
    head, found, rest = readme.partition(README_BEGIN)
    _, ended, tail = rest.partition(README_END + "\n")
    if not found or not ended:
        raise ValueError(f"README has no {README_BEGIN} ... {README_END} block")
    return head + markdown_reference() + tail


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kongsplit.metrics",
        description="Print README's list of kongsplit's metrics, or rewrite it in place.",
    )
    parser.add_argument("--write", metavar="README", help="replace the list in this file")
    args = parser.parse_args(argv)
    if args.write is None:
        sys.stdout.write(markdown_reference())
        return 0
    path = Path(args.write)
    path.write_text(readme_with_reference(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":  # python -m kongsplit.metrics --write README.md
    sys.exit(main())
