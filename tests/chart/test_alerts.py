"""The alert rules with the real Prometheus tools.

The chart's `templates/_alerts.tpl` is the single source; deploy/prometheus/kongsplit-alerts.yaml
is its rendering with the default values (regenerate with KONGSPLIT_UPDATE_ALERTS=1). promtool
checks and unit-tests the plain file (one test group per alert, firing and not firing), and a real
Prometheus server scrapes a kongsplit `/metrics`, loads the rules and evaluates every expression.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from chart_support import (
    ROOT,
    RULES_FILE,
    RULES_TEST_FILE,
    load_docs,
    one,
    poll,
    prometheus_server,
    run,
)

pytestmark = pytest.mark.tools

HEADER = """\
# kongsplit alert rules for a plain Prometheus (`rule_files:`). Runbook: docs/runbook.md.
# GENERATED from charts/kongsplit/templates/_alerts.tpl with the chart's default values, which is
# also what the chart's PrometheusRule renders (metrics.prometheusRule.*). Do not edit by hand:
#   KONGSPLIT_UPDATE_ALERTS=1 pytest tests/chart/test_alerts.py -k plain_rules
# The series are selected with job=~".*kongsplit.*" (metrics.prometheusRule.selector).
"""


def rendered_groups(helm_template: Any, **sets: str) -> list[dict[str, Any]]:
    manifest = helm_template(
        sets={"metrics.prometheusRule.enabled": "true", **sets},
        show_only="templates/prometheusrule.yaml",
    )
    return one(load_docs(manifest), "PrometheusRule")["spec"]["groups"]


def all_rules(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"]]


def test_plain_rules_file_is_the_chart_rendering(helm_template: Any) -> None:
    groups = rendered_groups(helm_template)
    if os.environ.get("KONGSPLIT_UPDATE_ALERTS") == "1":
        body = yaml.safe_dump({"groups": groups}, sort_keys=False, width=1000)
        RULES_FILE.write_text(HEADER + body, encoding="utf-8")
    plain = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    assert plain == {"groups": groups}, (
        "deploy/prometheus/kongsplit-alerts.yaml drifted from the chart's rules: "
        "regenerate it with KONGSPLIT_UPDATE_ALERTS=1"
    )


def test_every_alert_is_documented_and_annotated(helm_template: Any) -> None:
    rules = all_rules(rendered_groups(helm_template))
    runbook = (ROOT / "docs" / "runbook.md").read_text(encoding="utf-8")
    headings = {h.strip().lower() for h in re.findall(r"^## (\w+)", runbook, flags=re.M)}
    for rule in rules:
        name = rule["alert"]
        ann = rule["annotations"]
        assert ann["summary"] and ann["description"], name
        assert ann["runbook_url"].endswith(f"#{name.lower()}"), name
        assert name.lower() in headings, f"docs/runbook.md has no section '## {name}'"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        uses = set(re.findall(r"kongsplit_\w+", rule["expr"]))
        if uses & {"kongsplit_desired_weight", "kongsplit_drift_corrections_total"}:
            # Per-Rollout alerts name the Rollout and the upstream.
            for label in ("rollout_namespace", "rollout", "upstream"):
                assert f"$labels.{label}" in ann["description"], (name, label)


def test_thresholds_come_from_values(helm_template: Any) -> None:
    rules = {
        r["alert"]: r
        for r in all_rules(
            rendered_groups(
                helm_template,
                **{
                    "metrics.prometheusRule.alerts.driftCorrections.threshold": "7",
                    "metrics.prometheusRule.alerts.driftCorrections.window": "30m",
                    "metrics.prometheusRule.alerts.kongUnreachable.for": "1m",
                    "metrics.prometheusRule.alerts.syncStale.thresholdSeconds": "90",
                    "metrics.prometheusRule.selector": 'job="kongsplit"',
                    "metrics.prometheusRule.additionalLabels.team": "platform",
                },
            )
        )
    }
    drift = rules["KongsplitDriftCorrections"]
    assert drift["expr"].endswith("[30m])) > 7")
    assert "in 30m" in drift["annotations"]["description"]
    assert rules["KongsplitKongAdminUnreachable"]["for"] == "1m"
    assert "> 90)" in rules["KongsplitSyncStale"]["expr"]
    for rule in rules.values():
        assert 'job="kongsplit"' in rule["expr"]
        assert ".*kongsplit.*" not in rule["expr"]
        assert rule["labels"]["team"] == "platform"


def test_promtool_check_rules(promtool: str) -> None:
    proc = run([promtool, "check", "rules", str(RULES_FILE)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 11 rules found" in proc.stdout, proc.stdout


def test_promtool_unit_tests_cover_every_alert(promtool: str) -> None:
    """One test group per alert in the unit-test file, each asserting it fires and stays quiet."""
    plain = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    names = {r["alert"] for g in plain["groups"] for r in g["rules"]}
    tests = yaml.safe_load(RULES_TEST_FILE.read_text(encoding="utf-8"))
    firing: dict[str, int] = {}
    quiet: dict[str, int] = {}
    for group in tests["tests"]:
        for case in group.get("alert_rule_test", []):
            bucket = firing if case["exp_alerts"] else quiet
            bucket[case["alertname"]] = bucket.get(case["alertname"], 0) + 1
    assert set(firing) == names, f"alerts without a firing test: {names - set(firing)}"
    assert set(quiet) == names, f"alerts without a not-firing test: {names - set(quiet)}"
    # promtool resolves rule_files relative to the test file.
    proc = run([promtool, "test", "rules", str(RULES_TEST_FILE)], timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


async def test_promtool_check_metrics_on_scrape(promtool: str, kongsplit_metrics_url: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(kongsplit_metrics_url) as resp:
        assert resp.status == 200
        exposition = await resp.text()
    proc = await asyncio.to_thread(run, [promtool, "check", "metrics"], stdin=exposition)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'kongsplit_desired_weight{role="canary",rollout="checkout",rollout_namespace="shop"' in (
        exposition
    )


async def test_prometheus_loads_and_evaluates_rules(
    prometheus: str, kongsplit_metrics_url: str, tmp_path: Path
) -> None:
    async with prometheus_server(
        prometheus, tmp_path, kongsplit_metrics_url, rule_files=[RULES_FILE]
    ) as (base, session):

        def evaluated_after_scrape(j: Any) -> bool:
            # Both groups have evaluated scraped series once these two turn pending:
            # the scrape says Kong is unreachable and the canary is at 10, not 25.
            state = {r["name"]: r["state"] for g in j["data"]["groups"] for r in g["rules"]}
            return all(
                state.get(name) == "pending"
                for name in ("KongsplitKongAdminUnreachable", "KongsplitWeightMismatch")
            )

        rules_answer = await poll(
            session,
            f"{base}/api/v1/rules",
            evaluated_after_scrape,
            within=30,
            what="the rules to be evaluated on scraped data",
        )
        rules = [r for g in rules_answer["data"]["groups"] for r in g["rules"]]
        plain = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
        expected = [r for g in plain["groups"] for r in g["rules"]]
        assert sorted(r["name"] for r in rules) == sorted(r["alert"] for r in expected)
        for rule in rules:
            assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
            assert not rule.get("lastError"), (rule["name"], rule["lastError"])
        state = {r["name"]: r["state"] for r in rules}
        assert state["KongsplitDown"] == "inactive"
        assert state["KongsplitNoLeader"] == "inactive"
        mismatch = next(r for r in rules if r["name"] == "KongsplitWeightMismatch")
        labels = {(a["labels"]["rollout"], a["labels"]["role"]) for a in mismatch["alerts"]}
        assert labels == {("checkout", "canary"), ("checkout", "stable")}
        # The Rollout's namespace arrives as rollout_namespace; `namespace` is not exported.
        assert {a["labels"]["rollout_namespace"] for a in mismatch["alerts"]} == {"shop"}
        assert not any("exported_namespace" in a["labels"] for a in mismatch["alerts"])

        for rule in expected:
            async with session.get(f"{base}/api/v1/query", params={"query": rule["expr"]}) as resp:
                answer = await resp.json()
            assert resp.status == 200 and answer["status"] == "success", (rule["alert"], answer)
