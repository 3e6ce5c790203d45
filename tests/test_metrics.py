"""kongsplit's metrics, each test on its own registry: the names (an external contract, listed in
the README), the collectors read at scrape time, and the series dropped with a Rollout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from kongsplit.kong.writes import DRIFT_KINDS as PLANNER_DRIFT_KINDS
from kongsplit.metrics import DRIFT_KINDS, ERROR_REASONS, ROLLOUT_STATES, Metrics, WeightRow
from kongsplit.version import package_version

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
            {"namespace", "rollout", "upstream", "kind"},
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


def test_the_readme_lists_every_metric_exported() -> None:
    registry, _ = fresh()
    text = generate_latest(registry).decode()
    scraped = set(re.findall(r"^# TYPE (\S+) \S+$", text, re.M))  # counters end in _total
    # prometheus_client adds a *_created gauge beside counters and histograms: not ours to list.
    names = {n for n in scraped if not n.endswith("_created")}
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(kongsplit_[a-z_]+)", section))
    assert listed == names


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
        labels = {"namespace": ns, "rollout": name, "upstream": upstream, "role": role}
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
