"""Fixtures for the chart, alert-rule and image tests: the real tools and a scrapeable kongsplit.

The tools (helm, promtool, prometheus, hadolint, kubernetes-validate) come from
`bash .ci/install-tools`, which puts them in `.tools/bin`; PATH is the fallback. CI always installs
them, so with CI=true a missing tool fails the test instead of skipping it.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import CHART, find_tool, free_port, run
from prometheus_client import CollectorRegistry

from kongsplit.app import Daemon
from kongsplit.config import load_settings
from kongsplit.sim import objects
from kongsplit.sim.kongsim import KongSim
from kongsplit.sim.kubesim import KubeSim


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


def canary_seed() -> list[dict[str, Any]]:
    """Rollout shop/checkout (upstream checkout.shop.svc) at its first step, setWeight 10, with
    its stable and canary Services and ReplicaSets: what a scraped daemon manages."""
    steps = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 25}]
    return [
        objects.service("checkout-stable", "10.96.0.10", "v1"),
        objects.service("checkout-canary", "10.96.0.11", "v2"),
        objects.replicaset("checkout", "v1", 4, 4),  # the stable: Argo routes nothing without
        objects.replicaset("checkout", "v2", 1, 1),
        objects.rollout(
            "checkout",
            pod_hash="v2",
            stable_rs="v1",
            index=0,
            steps=steps,
            upstream="checkout.shop.svc",
        ),
    ]


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
        kube_version: str | None = None,
        expect_ok: bool = True,
    ) -> str:
        cmd = [helm, "template", release, str(CHART), "--namespace", namespace]
        if kube_version:
            cmd += ["--kube-version", kube_version]
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


@pytest.fixture
async def kongsplit_metrics_url(tmp_path: Path) -> AsyncIterator[str]:
    """``/metrics`` of a real, running kongsplit daemon on 127.0.0.1.

    The daemon runs in-process against the built-in Kubernetes fake and Kong simulator and is
    driven into the states the alerts are about: a Rollout mid-canary, one weight corrected
    behind its back (drift counted), then Kong stopped while the Rollout moves on, so desired
    (25) differs from observed (10) and ``kongsplit_kong_up`` is 0.
    """
    ns = "shop"
    async with KubeSim() as kube, KongSim() as kong:
        kubeconfig = tmp_path / "kubeconfig"
        kube.write_kubeconfig(str(kubeconfig))
        for obj in canary_seed():
            kube.apply(obj)
        settings = load_settings(
            env={},
            flags={
                "kong": {"url": kong.url},
                "kubernetes": {"kubeconfig": str(kubeconfig)},
                "server": {"listen": "127.0.0.1:0"},
                "reconcile": {"interval": 0.3},
                "leaderElection": {"enabled": True, "leaseNamespace": ns, "identity": "chart-test"},
            },
        )
        daemon = Daemon(settings, registry=CollectorRegistry())
        task = asyncio.create_task(daemon.serve())

        def targets() -> dict[str, int]:
            try:
                return {t["target"]: t["weight"] for t in kong.targets("checkout.shop.svc")}
            except LookupError:
                return {}

        def sample(name: str, **labels: str) -> float | None:
            value = daemon.metrics.registry.get_sample_value(name, labels or None)
            return value

        async def until(check: Callable[[], bool], what: str) -> None:
            deadline = asyncio.get_running_loop().time() + 15
            while not check():
                if asyncio.get_running_loop().time() > deadline:
                    pytest.fail(f"daemon never reached: {what}")
                await asyncio.sleep(0.02)

        try:
            await until(lambda: targets() == {"10.96.0.10:80": 90, "10.96.0.11:80": 10}, "10/90")
            kong.set_weight("checkout.shop.svc", "10.96.0.11:80", 60)
            await until(
                lambda: (
                    (
                        sample(
                            "kongsplit_drift_corrections_total",
                            rollout_namespace=ns,
                            rollout="checkout",
                            upstream="checkout.shop.svc",
                            kind="weight",
                        )
                        or 0
                    )
                    >= 1
                ),
                "drift counted",
            )
            await kong.stop()
            kube.patch(
                "argoproj.io/v1alpha1",
                "rollouts",
                ns,
                "checkout",
                {"status": {"currentStepIndex": 2}},
            )
            await until(
                lambda: (
                    sample("kongsplit_kong_up") == 0
                    and sample(
                        "kongsplit_desired_weight",
                        rollout_namespace=ns,
                        rollout="checkout",
                        upstream="checkout.shop.svc",
                        role="canary",
                    )
                    == 25
                ),
                "Kong down, desired 25",
            )
            assert daemon.port is not None
            yield f"http://127.0.0.1:{daemon.port}/metrics"
        finally:
            daemon.stop()
            await asyncio.wait_for(task, 15)


@pytest.fixture
async def kongsplit_run_metrics_url(tmp_path: Path) -> AsyncIterator[str]:
    """``/metrics`` of ``kongsplit run`` as a separate process (as the image runs it), against
    the built-in Kubernetes and Kong simulators, once it has written the first step's 90 / 10."""
    async with KubeSim() as kube, KongSim() as kong:
        kubeconfig = tmp_path / "kubeconfig"
        kube.write_kubeconfig(str(kubeconfig))
        for obj in canary_seed():
            kube.apply(obj)
        config = tmp_path / "kongsplit.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "kong": {"url": kong.url},
                    "reconcile": {"interval": "1s"},
                    "leaderElection": {"enabled": True, "leaseNamespace": "shop"},
                }
            ),
            encoding="utf-8",
        )
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kongsplit",
            "run",
            "--config",
            str(config),
            "--kubeconfig",
            str(kubeconfig),
            "--listen",
            f"127.0.0.1:{port}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:

            def synced() -> bool:
                try:
                    got = {t["target"]: t["weight"] for t in kong.targets("checkout.shop.svc")}
                except LookupError:
                    return False
                return got == {"10.96.0.10:80": 90, "10.96.0.11:80": 10}

            deadline = asyncio.get_running_loop().time() + 20
            while not synced():
                if proc.returncode is not None or asyncio.get_running_loop().time() > deadline:
                    pytest.fail(f"kongsplit run never wrote 90 / 10 (exit {proc.returncode})")
                await asyncio.sleep(0.05)
            yield f"http://127.0.0.1:{port}/metrics"
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            assert proc.stderr is not None
            (tmp_path / "kongsplit.log").write_bytes(await proc.stderr.read())
