"""kongsplit's metrics, each test on its own registry: the names (an external contract, listed in
the README, which is generated from them), the label names (none a scrape target's), the standard
collectors and no ``_created`` series, the collectors read at scrape time, and the series dropped
with a Rollout."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kongsplit import metrics as metrics_module
from kongsplit.kong.writes import DRIFT_KINDS as PLANNER_DRIFT_KINDS
from kongsplit.metrics import (
    DRIFT_KINDS,
    ERROR_REASONS,
    ROLLOUT_STATES,
    SKIP_REASONS,
    TARGET_LABELS,
    Metrics,
    WeightRow,
    markdown_reference,
    readme_with_reference,
)
from kongsplit.version import package_version
from kongsplit.watcher import ENDPOINTSLICES, REPLICASETS, ROLLOUTS, SERVICES

ROOT = Path(__file__).resolve().parents[1]


def fresh() -> tuple[CollectorRegistry, Metrics]:
    registry = CollectorRegistry()
    return registry, Metrics(registry)


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called ``name``: sorted labels → value."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == name
    }


# --------------------------------------------------------------------------- names and types


@pytest.mark.parametrize(
    ("family", "kind", "labels"),
    [
        pytest.param("kongsplit_desired_weight", "gauge", None, id="desired_weight"),
        pytest.param("kongsplit_observed_weight", "gauge", None, id="observed_weight"),
        pytest.param("kongsplit_rollouts", "gauge", {"state"}, id="rollouts"),
        pytest.param(
            "kongsplit_drift_corrections",
            "counter",
            {"rollout_namespace", "rollout", "upstream", "kind"},
            id="drift_corrections",
        ),
        pytest.param("kongsplit_kong_up", "gauge", set(), id="kong_up"),
        pytest.param("kongsplit_kong_auth_ok", "gauge", set(), id="kong_auth_ok"),
        pytest.param("kongsplit_kong_tls_verify", "gauge", set(), id="kong_tls_verify"),
        pytest.param("kongsplit_kong_requests", "counter", {"method", "code"}, id="kong_requests"),
        pytest.param(
            "kongsplit_kong_request_duration_seconds", "histogram", set(), id="request_duration"
        ),
        pytest.param("kongsplit_apply_latency_seconds", "histogram", set(), id="apply_latency"),
        pytest.param("kongsplit_reconcile_errors", "counter", {"reason"}, id="reconcile_errors"),
        pytest.param("kongsplit_managed_rollouts", "gauge", set(), id="managed_rollouts"),
        pytest.param("kongsplit_leader", "gauge", set(), id="leader"),
        pytest.param("kongsplit_watch_restarts", "counter", {"resource"}, id="watch_restarts"),
        pytest.param(
            "kongsplit_watch_events_skipped",
            "counter",
            {"resource", "reason"},
            id="watch_events_skipped",
        ),
        pytest.param(
            "kongsplit_last_sync_timestamp_seconds", "gauge", set(), id="last_sync_timestamp"
        ),
        pytest.param("kongsplit_build_info", "gauge", {"version"}, id="build_info"),
    ],
)
def test_each_metric_has_its_name_type_and_labels(
    family: str, kind: str, labels: set[str] | None
) -> None:
    registry, metrics = fresh()
    # Labelled series show once used.
    metrics.watch_restarts.labels(resource="rollouts").inc()
    metrics.watch_events_skipped.labels(resource="rollouts", reason="malformed").inc()
    metrics.kong_requests.labels(method="GET", code="200").inc()
    metrics.drift_corrections.labels("shop", "web", "web.shop.svc", "weight").inc()
    found = {f.name: f for f in registry.collect()}
    assert family in found, sorted(found)
    assert found[family].type == kind
    if labels is not None:
        label_sets = {frozenset(s.labels) - {"le"} for s in found[family].samples}
        assert label_sets == {frozenset(labels)}


def touched() -> tuple[CollectorRegistry, Metrics]:
    """A registry in which every labelled metric has a series (and a Rollout has weights)."""
    registry, metrics = fresh()
    metrics.weights.source = lambda: ROWS
    metrics.watching("rollouts")
    metrics.kong_requests.labels(method="GET", code="200").inc()
    metrics.drift_corrections.labels("shop", "web", "web.shop.svc", "weight").inc()
    metrics.apply_latency.observe(0.01)
    return registry, metrics


def test_the_readme_lists_every_metric_exported() -> None:
    registry, _ = fresh()
    text = generate_latest(registry).decode()
    scraped = set(re.findall(r"^# TYPE (kongsplit_\S+) \S+$", text, re.M))  # counters: _total
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(kongsplit_[a-z_]+)", section))
    assert listed == scraped


def test_readme_metrics_list_is_current() -> None:
    """README "Metrics" is what ``python -m kongsplit.metrics`` prints from the definitions."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_with_reference(readme) == readme, (
        "README.md's metrics list is not what kongsplit/metrics.py defines: regenerate it with "
        "`python -m kongsplit.metrics --write README.md`"
    )


def test_python_m_kongsplit_metrics_prints_and_writes_the_list(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kongsplit.metrics"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == markdown_reference()
    stale = tmp_path / "README.md"
    stale.write_text(
        "# x\n\n## Metrics\n\n<!-- metrics: begin -->\n- old\n<!-- metrics: end -->\n\n## Next\n"
    )
    metrics_module.main(["--write", str(stale)])
    assert stale.read_text() == "# x\n\n## Metrics\n\n" + markdown_reference() + "\n## Next\n"
    with pytest.raises(ValueError, match="metrics: begin"):
        readme_with_reference("# no markers\n")


def test_docs_say_what_the_scrape_shows() -> None:
    """Each documented metric is scraped with that name, type, help text and label names."""
    registry, metrics = touched()
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for doc in metrics.docs:
        family = families[doc.name.removesuffix("_total")]
        assert family.type == doc.type, doc.name
        assert family.documentation == doc.help, doc.name
        names = {s.name for s in family.samples}
        assert doc.name in names or f"{doc.name}_count" in names, (doc.name, names)
        label_sets = {frozenset(s.labels) - {"le"} for s in family.samples}
        assert label_sets == {frozenset(doc.labels)}, doc.name
        for label, values in doc.values:  # a closed set: what the daemon can export
            assert {s.labels[label] for s in family.samples} <= set(values), (doc.name, label)
    documented = {d.name.removesuffix("_total") for d in metrics.docs}
    assert documented == {n for n in families if n.startswith("kongsplit_")}


def test_no_label_is_a_scrape_targets_label() -> None:
    """A label Prometheus also sets on the target (``namespace`` from Kubernetes discovery,
    ``job``, ``instance``...) would be renamed ``exported_*`` or need honor_labels: none is."""
    registry, metrics = touched()
    exported = {
        label for family in registry.collect() for s in family.samples for label in s.labels
    }
    assert "rollout_namespace" in exported
    assert not exported & set(TARGET_LABELS), exported & set(TARGET_LABELS)
    assert not {label for d in metrics.docs for label in d.labels} & set(TARGET_LABELS)


def test_process_platform_and_gc_collectors_and_no_created_series() -> None:
    registry, _ = touched()
    text = generate_latest(registry).decode()
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert {"python_info", "python_gc_objects_collected_total"} <= names
    if sys.platform == "linux":  # ProcessCollector reads /proc
        assert {
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        } <= names
    assert "_created" not in text
    assert not [n for n in names if n.endswith("_created")]


def test_watching_a_resource_exports_its_series_at_zero() -> None:
    """So increase() sees the first restart or skip of a watch (alerts, the dashboard)."""
    registry, metrics = fresh()
    assert samples(registry, "kongsplit_watch_restarts_total") == {}
    metrics.watching("services")
    assert samples(registry, "kongsplit_watch_restarts_total") == {(("resource", "services"),): 0}
    assert samples(registry, "kongsplit_watch_events_skipped_total") == {
        (("reason", r), ("resource", "services")): 0.0 for r in SKIP_REASONS
    }
    # The resource names the watchers use, and the reasons the watcher's _Skipped carries.
    plurals = {r.plural for r in (ROLLOUTS, REPLICASETS, SERVICES, ENDPOINTSLICES)}
    help_text = next(d.help for d in metrics.docs if d.name == "kongsplit_watch_restarts_total")
    assert all(p in help_text for p in plurals)
    watcher_source = (ROOT / "kongsplit" / "watcher.py").read_text(encoding="utf-8")
    assert set(re.findall(r'_Skipped\(\s*"(\w+)"', watcher_source)) == set(SKIP_REASONS)


def test_drift_kinds_are_the_planners() -> None:
    """The label values of drift_corrections{kind} are the kinds the write planner defines."""
    assert DRIFT_KINDS == PLANNER_DRIFT_KINDS


def test_start_values() -> None:
    registry, _ = fresh()
    value = registry.get_sample_value
    assert value("kongsplit_build_info", {"version": package_version()}) == 1
    assert value("kongsplit_kong_auth_ok") == 1  # no refusal seen yet
    assert value("kongsplit_kong_tls_verify") == 1  # the daemon sets 0 for insecureSkipVerify
    assert value("kongsplit_leader") == 0
    # Every error reason has a series from the start, so rate() and alerts see the first error.
    assert samples(registry, "kongsplit_reconcile_errors_total") == {
        (("reason", r),): 0.0 for r in ERROR_REASONS
    }


def test_two_metrics_cannot_share_a_registry() -> None:
    """Why each test (and each in-process daemon) gets its own registry."""
    registry, _ = fresh()
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Metrics(registry)


# --------------------------------------------------------------------------- read at scrape time


ROWS: list[WeightRow] = [
    ("shop", "web", "web.shop.svc", "canary", 25, 10),
    ("shop", "web", "web.shop.svc", "stable", 75, 90),
    ("shop", "new", "new.shop.svc", "stable", 100, None),  # never seen in Kong yet
    ("shop", "gone", "gone.shop.svc", "canary", None, 5),  # Kong has it, nothing is desired
]


def test_weights_are_read_from_the_source_at_each_scrape() -> None:
    registry, metrics = fresh()
    assert samples(registry, "kongsplit_desired_weight") == {}  # no source yet: no rows
    rows = list(ROWS)
    metrics.weights.source = lambda: rows
    desired = samples(registry, "kongsplit_desired_weight")
    observed = samples(registry, "kongsplit_observed_weight")

    def key(ns: str, name: str, upstream: str, role: str) -> tuple[tuple[str, str], ...]:
        labels = {"rollout_namespace": ns, "rollout": name, "upstream": upstream, "role": role}
        return tuple(sorted(labels.items()))

    assert desired == {key(*r[:4]): r[4] for r in ROWS if r[4] is not None}
    assert observed == {key(*r[:4]): r[5] for r in ROWS if r[5] is not None}
    rows[:] = ROWS[:1]  # the source changed: the next scrape shows only what it yields now
    assert list(samples(registry, "kongsplit_desired_weight")) == [key(*ROWS[0][:4])]


@pytest.mark.parametrize(
    ("states", "counted"),
    [
        pytest.param(None, {}, id="no-source"),
        pytest.param([], {}, id="no-rollouts"),
        pytest.param(["managed", "managed", "held"], {"managed": 2, "held": 1}, id="some"),
        pytest.param(list(ROLLOUT_STATES), dict.fromkeys(ROLLOUT_STATES, 1), id="one-each"),
    ],
)
def test_rollouts_by_state_always_exports_every_state(
    states: list[str] | None, counted: dict[str, int]
) -> None:
    registry, metrics = fresh()
    if states is not None:
        metrics.rollout_states.source = lambda: states
    assert samples(registry, "kongsplit_rollouts") == {
        (("state", s),): float(counted.get(s, 0)) for s in ROLLOUT_STATES
    }


# --------------------------------------------------------------------------- forgetting


def test_forget_rollout_drops_its_drift_series_only() -> None:
    registry, metrics = fresh()
    for name in ("web", "other"):
        for kind in ("weight", "missing"):
            metrics.drift_corrections.labels("shop", name, f"{name}.shop.svc", kind).inc()
    metrics.forget_rollout("shop", "web", "web.shop.svc")
    left = samples(registry, "kongsplit_drift_corrections_total")
    assert {dict(k)["rollout"] for k in left} == {"other"} and len(left) == 2
    metrics.forget_rollout("shop", "web", "web.shop.svc")  # again: nothing left to drop, no error
    metrics.forget_rollout("shop", "never", "never.shop.svc")
    assert samples(registry, "kongsplit_drift_corrections_total") == left
