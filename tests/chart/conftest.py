"""Fixtures for the chart, alert-rule and image tests: the real tools and a scrapeable kongsplit.

The tools (helm, promtool, prometheus, hadolint, kubernetes-validate) come from
`bash .ci/install-tools`, which puts them in `.tools/bin`; PATH is the fallback. CI always installs
them, so with CI=true a missing tool fails the test instead of skipping it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from chart_support import CHART, find_tool, run
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from kongsplit.metrics import Metrics


@pytest.fixture(scope="session")
def helm() -> str:
    return find_tool("helm")


@pytest.fixture(scope="session")
def promtool() -> str:
    return find_tool("promtool")


@pytest.fixture(scope="session")
def prometheus() -> str:
    return find_tool("prometheus")


@pytest.fixture(scope="session")
def hadolint() -> str:
    return find_tool("hadolint")


@pytest.fixture(scope="session")
def kubernetes_validate() -> str:
    return find_tool("kubernetes-validate")


Renderer = Callable[..., str]


@pytest.fixture(scope="session")
def helm_template(helm: str) -> Renderer:
    """`helm template` of the chart: the manifest text (or, with expect_ok=False, the error)."""

    def render(
        *values_files: Path,
        sets: dict[str, str] | None = None,
        set_json: dict[str, str] | None = None,
        release: str = "kongsplit",
        namespace: str = "kongsplit-system",
        show_only: str | None = None,
        expect_ok: bool = True,
    ) -> str:
        cmd = [helm, "template", release, str(CHART), "--namespace", namespace]
        for f in values_files:
            cmd += ["-f", str(f)]
        for key, value in (sets or {}).items():
            cmd += ["--set", f"{key}={value}"]
        for key, value in (set_json or {}).items():
            cmd += ["--set-json", f"{key}={value}"]
        if show_only:
            cmd += ["--show-only", show_only]
        proc = run(cmd)
        if expect_ok:
            assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
            return proc.stdout
        assert proc.returncode != 0, f"helm template accepted what it should reject: {cmd}"
        return proc.stderr

    return render


def fill_metrics(metrics: Metrics) -> None:
    """A few label sets, as a leader in the middle of a canary would export them."""
    labels = {"namespace": "shop", "rollout": "checkout", "upstream": "checkout.shop.svc"}
    metrics.desired_weight.labels(**labels, role="canary").set(25)
    metrics.desired_weight.labels(**labels, role="stable").set(75)
    metrics.observed_weight.labels(**labels, role="canary").set(10)  # Kong lags: a mismatch
    metrics.observed_weight.labels(**labels, role="stable").set(90)
    metrics.drift_corrections.labels(**labels, kind="weight").inc(2)
    metrics.kong_up.set(0)
    metrics.kong_requests.labels(method="PATCH", code="200").inc(7)
    metrics.kong_requests.labels(method="GET", code="0").inc()
    metrics.kong_request_duration.observe(0.004)
    metrics.apply_latency.observe(0.003)
    metrics.reconcile_errors.labels(reason="kong_unavailable").inc()
    metrics.managed_rollouts.set(1)
    metrics.leader.set(1)
    metrics.watch_restarts.labels(resource="rollouts").inc()
    metrics.last_sync_timestamp.set_to_current_time()


@pytest.fixture
async def kongsplit_metrics_url() -> AsyncIterator[str]:
    """URL of a running kongsplit-like `/metrics` on 127.0.0.1.

    The daemon is not finished yet, so this serves `kongsplit.metrics.Metrics` on its own aiohttp
    server with the exposition the daemon will give. The lead will switch this fixture to the real
    daemon's server (`kongsplit.server`) once it exists; the tests only need the URL.
    """
    registry = CollectorRegistry()
    fill_metrics(Metrics(registry))

    async def metrics_handler(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/metrics"
    finally:
        await runner.cleanup()
