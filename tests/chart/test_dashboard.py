"""The Grafana dashboard deploy/grafana/kongsplit.json: its shape, decoded by Grafana's own types
(grafana-foundation-sdk), every PromQL expression parsed by the real promtool, every metric it
reads found in a real daemon's scrape (in-process and `kongsplit run`), every query answered with
series carrying its legend's labels by a real Prometheus that scraped that daemon, and the chart's
ConfigMap carrying it (rendered from the chart directory and from the packaged chart).

The chart keeps an identical copy in charts/kongsplit/dashboards/ (``.Files.Get`` reads only
inside the chart); test_chart_copy_is_the_dashboard fails when the two differ.
"""

from __future__ import annotations

import json
import re
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from chart_support import (
    CHART,
    CHART_DASHBOARD_FILE,
    CI_VALUES,
    DASHBOARD_FILE,
    RULES_FILE,
    by_kind,
    load_docs,
    one,
    poll,
    prometheus_server,
    run,
)
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from kongsplit.metrics import Metrics

DS = {"type": "prometheus", "uid": "${datasource}"}
VARIABLES = ("datasource", "job", "rollout_namespace", "rollout")
#: Grafana's own variables the queries may use, and what they stand for in these tests.
BUILTINS = {"__rate_interval": "1m", "__range": "5m", "__interval": "15s"}
#: The panel types used (all in Grafana's core).
PANEL_TYPES = {"row", "stat", "timeseries", "state-timeline"}
#: What the real daemon of the kongsplit_metrics_url fixture is called and manages.
SCRAPED = {"job": "kongsplit", "rollout_namespace": "shop", "rollout": "checkout"}
#: What a ServiceMonitor's relabelings give that daemon's target: where kongsplit itself runs.
TARGET_LABELS = {"namespace": "kongsplit-system", "pod": "kongsplit-0", "service": "kongsplit"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return loaded


def panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dash["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def queries(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) of every panel target."""
    return [
        (f"panel {p['id']} {p['title']!r} target {t['refId']}", t["expr"])
        for p in panels(dash)
        for t in p.get("targets", [])
    ]


def variable_selectors(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, selector) inside each ``label_values(selector, label)`` variable query."""
    found = []
    for var in dash["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]["query"])
        assert m, var["query"]
        assert var["definition"] == var["query"]["query"]
        found.append((f"variable {var['name']}", m.group(1)))
    return found


def substitute(expr: str, values: dict[str, str]) -> str:
    """``$name`` and ``${name}`` replaced as Grafana would for one selected value each."""

    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return {**BUILTINS, **values}[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: every selector here has matchers (job=~"$job")."""
    return set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr))


# --------------------------------------------------------------------------- shape


def test_dashboard_is_grafana_shaped() -> None:
    dash = dashboard()
    assert dash["uid"] == "kongsplit" and dash["title"] == "kongsplit"
    assert dash["id"] is None  # provisioned, never tied to one Grafana's database id
    assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 39
    # What Grafana's later schema migrations (40-43) would change is already so.
    assert isinstance(dash["refresh"], str)
    assert "time_options" not in dash["timepicker"]
    text = DASHBOARD_FILE.read_text(encoding="utf-8")
    assert "formatTime" not in text and "hideFrom" not in text
    assert "__inputs" not in dash  # a sidecar provisions it as it is: no import-time inputs

    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert tuple(variables) == VARIABLES
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "rollout_namespace", "rollout"):
        var = variables[name]
        assert var["type"] == "query" and var["datasource"] == DS, name
        assert var["query"]["query"].startswith("label_values("), name
        assert var["query"]["query"].endswith(f", {name})"), name
        assert var["multi"] and var["includeAll"], name

    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(dash):
        assert panel["type"] in PANEL_TYPES, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DS, panel["title"]
        assert panel["description"], panel["title"]
        targets = panel["targets"]
        assert targets, panel["title"]
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), panel["title"]
        for t in targets:
            assert t["datasource"] == DS and t["expr"].strip(), (panel["title"], t["refId"])
        if "repeat" in panel:
            assert panel["repeat"] in variables and variables[panel["repeat"]]["multi"]

    # Every variable or built-in a query or title names exists.
    used = set()
    for _, expr in [*queries(dash), *variable_selectors(dash)]:
        used |= {a or b for a, b in re.findall(r"\$\{(\w+)\}|\$(\w+)", expr)}
    for panel in panels(dash):
        used |= set(re.findall(r"\$(\w+)", panel["title"]))
    assert used <= set(VARIABLES) | set(BUILTINS), used - set(VARIABLES) - set(BUILTINS)


#: What Grafana writes into a dashboard that its schema does not describe: the text of a query
#: variable's editor (``definition``), and the database id (null: provisioned, never imported).
NOT_IN_SCHEMA = (re.compile(r"/templating/list/\d+/definition"), re.compile(r"/id"))


def lost_in_round_trip(original: Any, decoded: Any, path: str = "") -> list[str]:
    """Paths of ``original`` that ``decoded`` does not hold as they were."""
    if isinstance(original, dict) and isinstance(decoded, dict):
        lost = []
        for key, value in original.items():
            if key not in decoded:
                lost.append(f"{path}/{key}")
            else:
                lost += lost_in_round_trip(value, decoded[key], f"{path}/{key}")
        return lost
    if isinstance(original, list) and isinstance(decoded, list) and len(original) == len(decoded):
        return [
            p
            for i, (a, b) in enumerate(zip(original, decoded, strict=True))
            for p in lost_in_round_trip(a, b, f"{path}/{i}")
        ]
    return [] if original == decoded else [f"{path} ({original!r} became {decoded!r})"]


def test_dashboard_decodes_with_grafanas_own_types() -> None:
    """Grafana's dashboard types (grafana-foundation-sdk, generated from Grafana 11.6's schema)
    decode the dashboard, each panel's options and field config with its panel plugin's types
    and each target as a Prometheus query, and encode it back without losing a key or value:
    every field the dashboard sets is one Grafana knows, spelled and placed as Grafana has it."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models import dashboard as gd
    from grafana_foundation_sdk.models import prometheus as gp

    register_default_plugins()
    original = dashboard()
    model = gd.Dashboard.from_json(original)
    for panel in model.panels or []:
        if isinstance(panel, gd.RowPanel):
            continue
        assert isinstance(panel, gd.Panel), panel
        # Decoded by the panel plugin's own types, not kept as an opaque dict.
        assert not isinstance(panel.options, dict), (panel.title, panel.options)
        assert panel.field_config is not None, panel.title
        custom = panel.field_config.defaults.custom
        assert custom is None or not isinstance(custom, dict), (panel.title, custom)
        for target in panel.targets or []:
            assert isinstance(target, gp.Dataquery), (panel.title, target)
    encoded = json.loads(json.dumps(model, cls=JSONEncoder))
    lost = [
        p
        for p in lost_in_round_trip(original, encoded)
        if not any(r.fullmatch(p) for r in NOT_IN_SCHEMA)
    ]
    assert not lost, f"not in Grafana's dashboard schema: {lost}"
    assert encoded["schemaVersion"] == gd.Dashboard().schema_version  # Grafana 11.6's


def test_every_selector_is_scoped_to_the_job_variable() -> None:
    """So the dashboard shows one kongsplit's series, never another job's process_* ones."""
    dash = dashboard()
    for where, expr in queries(dash):
        selectors = re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*\{([^}]*)\}", expr)
        assert selectors, where
        for matchers in selectors:
            assert 'job=~"$job"' in matchers, (where, matchers)
        # No metric selected without braces (it would escape the job filter).
        bare = re.findall(r"\b((?:kongsplit|process|python)_\w+)\b(?!\{)", expr)
        assert not bare, (where, bare)


def test_dashboard_shows_every_kongsplit_metric() -> None:
    """Every metric kongsplit defines is on a panel (histograms through their buckets)."""
    documented = {d.name for d in Metrics(CollectorRegistry()).docs}
    used = set()
    for _, expr in queries(dashboard()):
        used |= {n.removesuffix("_bucket") for n in metric_names(expr)}
    missing = {n for n in documented if n not in used}
    assert not missing, f"metrics on no panel: {sorted(missing)}"


def test_alerts_the_dashboard_names_exist() -> None:
    """Panel descriptions point at the alert that watches the same series: real alert names."""
    named = set(re.findall(r"\bKongsplit[A-Z]\w+", DASHBOARD_FILE.read_text(encoding="utf-8")))
    rules = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert named, "no alert named in the dashboard"
    assert named <= alerts, f"no such alert: {sorted(named - alerts)}"


def test_chart_copy_is_the_dashboard() -> None:
    assert CHART_DASHBOARD_FILE.read_bytes() == DASHBOARD_FILE.read_bytes(), (
        "charts/kongsplit/dashboards/kongsplit.json differs from deploy/grafana/kongsplit.json: "
        "copy the latter over the former"
    )


# --------------------------------------------------------------------------- the real tools


@pytest.mark.tools
def test_promtool_parses_every_expression(promtool: str, tmp_path: Path) -> None:
    """Each query, with the variables substituted, as a recording rule promtool must load."""
    dash = dashboard()
    exprs = [*queries(dash), *variable_selectors(dash)]
    values = {"job": ".*kongsplit.*", "rollout_namespace": ".*", "rollout": ".*"}
    rules = [
        {"record": f"kongsplit_dashboard:query_{i}", "expr": substitute(expr, values)}
        for i, (_, expr) in enumerate(exprs)
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = run([promtool, "check", "rules", str(path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout, proc.stdout


async def scraped_names(metrics_url: str) -> set[str]:
    """The sample names of one real GET /metrics."""
    async with aiohttp.ClientSession() as session, session.get(metrics_url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        exposition = await resp.text()
    return {s.name for f in text_string_to_metric_families(exposition) for s in f.samples}


def assert_dashboard_reads_only(scraped: set[str]) -> None:
    dash = dashboard()
    read = set()
    for _, expr in [*queries(dash), *variable_selectors(dash)]:
        read |= metric_names(expr)
    assert read, "no metric names found in the dashboard"
    assert read <= scraped, f"not exported by kongsplit: {sorted(read - scraped)}"
    # The scrape the dashboard is built on: standard collectors in, no _created series.
    assert {"process_cpu_seconds_total", "process_open_fds", "python_info"} <= scraped
    assert not [n for n in scraped if n.endswith("_created")]


async def test_every_metric_read_is_in_a_real_daemons_scrape(kongsplit_metrics_url: str) -> None:
    """The daemon of the Prometheus test below (mid-canary, drift counted, Kong down)."""
    assert_dashboard_reads_only(await scraped_names(kongsplit_metrics_url))


async def test_every_metric_read_is_in_kongsplit_runs_scrape(
    kongsplit_run_metrics_url: str,
) -> None:
    """`kongsplit run` as its own process, as the image starts it, managing a canary."""
    assert_dashboard_reads_only(await scraped_names(kongsplit_run_metrics_url))


@pytest.mark.tools
async def test_every_query_returns_series_in_prometheus(
    prometheus: str, kongsplit_metrics_url: str, tmp_path: Path
) -> None:
    """A real Prometheus scrapes the daemon (mid-canary, drift counted, Kong down) with the
    target labels Kubernetes discovery adds (``namespace`` is where kongsplit runs, not the
    Rollout's). Each panel query, for that daemon's job and Rollout, asked the way Grafana asks
    it (a range query for a graph, an instant one for a stat), answers with series that carry
    every label its legend names; the variable queries offer that job, namespace and Rollout."""
    dash = dashboard()
    async with prometheus_server(
        prometheus, tmp_path, kongsplit_metrics_url, target_labels=TARGET_LABELS
    ) as (base, session):
        for panel in panels(dash):
            for target in panel.get("targets", []):
                where = f"panel {panel['id']} {panel['title']!r} target {target['refId']}"
                query = substitute(target["expr"], SCRAPED)
                params = {"query": query}
                if target["range"]:
                    now = time.time()
                    url = f"{base}/api/v1/query_range"
                    params |= {"start": str(now - 60), "end": str(now), "step": "1"}
                else:
                    assert target["instant"], where
                    url = f"{base}/api/v1/query"
                # rate() and increase() need two scrapes in their window: wait for them.
                answer = await poll(
                    session,
                    url,
                    lambda j: j["status"] == "success" and j["data"]["result"],
                    params=params,
                    within=20,
                    what=f"{where}: {query}",
                )
                legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
                for series in answer["data"]["result"]:
                    missing = legend - set(series["metric"])
                    assert not missing, f"{where}: legend names {missing}, not on {series}"
                    if "rollout_namespace" in series["metric"]:
                        assert series["metric"]["rollout_namespace"] == "shop", (where, series)
        for var in dash["templating"]["list"]:
            if var["type"] != "query":
                continue
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]["query"])
            assert m
            selector, label = substitute(m.group(1), SCRAPED), m.group(2)
            answer = await poll(
                session,
                f"{base}/api/v1/label/{label}/values",
                lambda j, label=label: j["data"] == [SCRAPED[label]],
                params={"match[]": selector},
                within=10,
                what=f"variable {var['name']} to offer {SCRAPED[label]} alone",
            )
            assert answer["data"] == [SCRAPED[label]]


# --------------------------------------------------------------------------- the chart


def dashboard_config_maps(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in by_kind(docs, "ConfigMap") if "kongsplit.json" in d.get("data", {})]


@pytest.mark.tools
@pytest.mark.parametrize(
    "sets",
    [
        pytest.param({}, id="default"),
        pytest.param({"metrics.grafanaDashboard.enabled": "false"}, id="off"),
        pytest.param({"metrics.serviceMonitor.enabled": "true"}, id="other-monitoring-on"),
    ],
)
def test_no_dashboard_unless_enabled(helm_template: Any, sets: dict[str, str]) -> None:
    assert dashboard_config_maps(load_docs(helm_template(sets=sets))) == []


@pytest.mark.tools
def test_dashboard_config_map_for_the_grafana_sidecar(helm_template: Any) -> None:
    docs = load_docs(helm_template(sets={"metrics.grafanaDashboard.enabled": "true"}))
    (cm,) = dashboard_config_maps(docs)
    meta = cm["metadata"]
    assert meta["name"] == "kongsplit-dashboard"
    assert meta["namespace"] == "kongsplit-system"  # the release's, by default
    assert meta["labels"]["grafana_dashboard"] == "1"  # the sidecar's default label
    assert meta["labels"]["app.kubernetes.io/name"] == "kongsplit"
    assert "annotations" not in meta
    assert list(cm["data"]) == ["kongsplit.json"]
    # Byte for byte the file in deploy/grafana, and so the same dashboard.
    assert cm["data"]["kongsplit.json"] == DASHBOARD_FILE.read_text(encoding="utf-8")
    assert json.loads(cm["data"]["kongsplit.json"]) == dashboard()


@pytest.mark.tools
def test_packaged_chart_carries_the_dashboard(helm: str, tmp_path: Path) -> None:
    """What users install is the packaged chart: `helm package` must take dashboards/ along
    (a symlink to deploy/grafana would not be), and the ConfigMap rendered from the package holds
    the same bytes."""
    proc = run([helm, "package", str(CHART), "--destination", str(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    (package,) = tmp_path.glob("kongsplit-*.tgz")
    with tarfile.open(package) as tar:
        member = tar.extractfile("kongsplit/dashboards/kongsplit.json")
        assert member is not None
        assert member.read() == DASHBOARD_FILE.read_bytes()
    proc = run(
        [
            helm,
            "template",
            "kongsplit",
            str(package),
            "--namespace",
            "kongsplit-system",
            "--set",
            "metrics.grafanaDashboard.enabled=true",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    (cm,) = dashboard_config_maps(load_docs(proc.stdout))
    assert cm["data"]["kongsplit.json"] == DASHBOARD_FILE.read_text(encoding="utf-8")


@pytest.mark.tools
def test_dashboard_label_namespace_and_annotations_come_from_values(helm_template: Any) -> None:
    docs = load_docs(
        helm_template(
            sets={
                "metrics.grafanaDashboard.enabled": "true",
                "metrics.grafanaDashboard.namespace": "grafana",
                "metrics.grafanaDashboard.label": "example.com/dashboard",
                "metrics.grafanaDashboard.labelValue": "kong",
            },
            set_json={"metrics.grafanaDashboard.annotations": '{"grafana_folder": "Kong"}'},
            release="edge",
        )
    )
    (cm,) = dashboard_config_maps(docs)
    meta = cm["metadata"]
    assert meta["name"] == "edge-kongsplit-dashboard"
    assert meta["namespace"] == "grafana"
    assert meta["labels"]["example.com/dashboard"] == "kong"
    assert "grafana_dashboard" not in meta["labels"]
    assert meta["annotations"] == {"grafana_folder": "Kong"}


@pytest.mark.tools
def test_monitoring_ci_values_render_the_dashboard(helm_template: Any) -> None:
    """ci/monitoring-values.yaml turns it on, so lint and kubernetes-validate (test_chart.py,
    every ci/*-values.yaml) check the ConfigMap too."""
    (values,) = [p for p in CI_VALUES if p.name == "monitoring-values.yaml"]
    (cm,) = dashboard_config_maps(load_docs(helm_template(values)))
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Kong"}
    assert json.loads(cm["data"]["kongsplit.json"]) == dashboard()


@pytest.mark.tools
def test_dashboard_config_map_validates_against_kubernetes(
    helm_template: Any, kubernetes_validate: str
) -> None:
    docs = load_docs(helm_template(sets={"metrics.grafanaDashboard.enabled": "true"}))
    cm = one(dashboard_config_maps(docs), "ConfigMap")
    proc = run([kubernetes_validate, "-k", "1.30.0", "--strict", "-"], stdin=yaml.safe_dump(cm))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "INFO - passed" in proc.stdout, proc.stdout


@pytest.mark.tools
@pytest.mark.parametrize(
    ("sets", "complaint"),
    [
        pytest.param({"metrics.grafanaDashboard.enabled": "yes"}, "enabled", id="enabled-string"),
        pytest.param({"metrics.grafanaDashboard.label": "no spaces"}, "label", id="label"),
        pytest.param({"metrics.grafanaDashboard.labelValue": "-1"}, "labelValue", id="label-value"),
        pytest.param({"metrics.grafanaDashboard.namespace": "Grafana"}, "namespace", id="ns"),
        pytest.param({"metrics.grafanaDashboard.folder": "x"}, "folder", id="unknown-key"),
    ],
)
def test_schema_rejects_bad_dashboard_values(
    helm_template: Any, sets: dict[str, str], complaint: str
) -> None:
    error = helm_template(sets=sets, expect_ok=False)
    assert "schema" in error and complaint in error, error
