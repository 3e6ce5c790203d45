"""``kongsplit plan`` reading a cluster: --kubeconfig, --context, -n, $KUBECONFIG, ~/.kube/config.

The command runs as a subprocess, as an operator runs it, against a Kubernetes API served over a
real socket: the built-in fake (kongsplit.sim.kubesim), kmock (which lists objects as they were
stored, without the apiVersion/kind the API server leaves out of list items), and the real
``kubectl`` printing ``kubectl get rollout,svc,rs -o yaml`` for ``plan -``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import trustme
import yaml
from aiohttp import web
from kmock_shims import REPLICASETS, ROLLOUTS, SERVICES, KubeMock, create

from kongsplit.sim.kubesim import KubeSim
from kongsplit.sim.objects import replicaset, rollout, service

pytest_plugins = ("kmock_shims",)

ROOT = Path(__file__).resolve().parents[1]
ANNOTATIONS = {"kongsplit.io/upstream": "checkout.shop.svc", "kongsplit.io/port": "http"}


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_kubeconfig(path: Path, servers: dict[str, str], current: str) -> Path:
    """A kubeconfig with one context per server (plain http, no credentials)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": url}} for n, url in servers.items()],
        "users": [{"name": "anyone", "user": {}}],
        "contexts": [{"name": n, "context": {"cluster": n, "user": "anyone"}} for n in servers],
        "current-context": current,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any Kubernetes configuration of the machine running the tests."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")
    }
    return {**env, **extra}


async def plan(
    *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kongsplit",
        "plan",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env if env is not None else clean_env(),
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def weights(rollout_json: dict[str, Any]) -> dict[str, int]:
    return {t["target"]: t["weight"] for t in rollout_json["targets"]}


def seed(kube: KubeSim) -> None:
    """shop/checkout at setWeight 25 with its canary ReplicaSet still scaling (1 of 2 pods), and
    a fully promoted shop2/other: the replica gate keeps checkout's canary at 10."""
    kube.apply(service("checkout-stable", "10.96.0.10", "v1"))
    kube.apply(service("checkout-canary", "10.96.0.11", "v2"))
    kube.apply(replicaset("checkout", "v1", 8, 8))
    kube.apply(replicaset("checkout", "v2", 2, 1))
    kube.apply(
        rollout(
            "checkout",
            annotations=ANNOTATIONS,
            pod_hash="v2",
            stable_rs="v1",
            index=2,
            replicas=8,
        )
    )
    kube.apply(service("other-stable", "10.96.1.10", "v1", "shop2"))
    kube.apply(service("other-canary", "10.96.1.11", "v1", "shop2"))
    kube.apply(replicaset("other", "v1", 2, 2, "shop2"))
    kube.apply(rollout("other", "shop2", pod_hash="v1"))


@pytest.fixture()
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim() as kube:
        seed(kube)
        yield kube


CHECKOUT_AT_THE_GATE = {"10.96.0.10:80": 90, "10.96.0.11:80": 10}


@pytest.mark.parametrize(
    ("flags", "names", "paths"),
    [
        pytest.param(
            [],
            ["checkout", "other"],
            {
                "/apis/argoproj.io/v1alpha1/rollouts",
                "/api/v1/services",
                "/apis/apps/v1/replicasets",
            },
            id="all-namespaces",
        ),
        pytest.param(
            ["-n", "shop"],
            ["checkout"],
            {
                "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts",
                "/api/v1/namespaces/shop/services",
                "/apis/apps/v1/namespaces/shop/replicasets",
            },
            id="one-namespace",
        ),
        pytest.param(
            ["-n", "shop", "--namespace", "shop2"],
            ["checkout", "other"],
            None,
            id="namespace-repeated",
        ),
        pytest.param(["-n", "shop2,shop"], ["other", "checkout"], None, id="namespaces-commas"),
        pytest.param(
            ["-A"],
            ["checkout", "other"],
            {
                "/apis/argoproj.io/v1alpha1/rollouts",
                "/api/v1/services",
                "/apis/apps/v1/replicasets",
            },
            id="all-namespaces-flag",
        ),
    ],
)
async def test_kubeconfig_reads_rollouts_services_and_replicasets_live(
    sim: KubeSim,
    tmp_path: Path,
    flags: list[str],
    names: list[str],
    paths: set[str] | None,
) -> None:
    config = write_kubeconfig(tmp_path / "kubeconfig", {"sim": sim.url}, "sim")
    code, out, err = await plan("--json", "--kubeconfig", str(config), *flags)
    assert (code, err) == (0, "")
    found = json.loads(out)["rollouts"]
    assert [r["name"] for r in found] == names
    by_name = {r["name"]: r for r in found}
    checkout = by_name.get("checkout")
    if checkout is not None:
        # The live ReplicaSet is used: 1 of 2 canary pods → Argo keeps the previous step's 10.
        assert (checkout["canary_weight"], checkout["rule"]) == (10, "replica-gate-previous")
        assert weights(checkout) == CHECKOUT_AT_THE_GATE  # the live Services' clusterIPs
    if "other" in by_name:
        assert weights(by_name["other"]) == {"10.96.1.10:80": 100, "10.96.1.11:80": 0}
    if paths is not None:
        assert {path for method, path in sim.requests if method == "GET"} == paths


async def test_namespaces_and_all_namespaces_together_is_a_mistake(tmp_path: Path) -> None:
    code, out, err = await plan("-n", "shop", "-A")
    assert (code, out) == (2, "")
    assert err == "kongsplit plan: give -n NAMESPACE or -A (every namespace), not both\n"


async def test_context_picks_the_cluster(sim: KubeSim, tmp_path: Path) -> None:
    # The current context points at nothing; --context names the one that answers.
    down = f"http://127.0.0.1:{closed_port()}"
    config = write_kubeconfig(tmp_path / "kubeconfig", {"down": down, "sim": sim.url}, "down")
    code, out, err = await plan("--kubeconfig", str(config), "--context", "sim", "-n", "shop")
    assert (code, err) == (0, "")
    assert "  10.96.0.11:80      10   10.0%  canary      checkout-canary\n" in out
    code, out, err = await plan("--kubeconfig", str(config), "-n", "shop")
    assert (code, out) == (2, "")
    assert err == (
        f"kongsplit plan: cannot reach the Kubernetes API at {down}: connection refused; "
        "check the kubeconfig (--kubeconfig, --context) and that the cluster is up\n"
    )


async def test_kubeconfig_from_the_environment(sim: KubeSim, tmp_path: Path) -> None:
    config = write_kubeconfig(tmp_path / "elsewhere" / "config", {"sim": sim.url}, "sim")
    code, out, err = await plan(
        "--json", "-n", "shop", env=clean_env(KUBECONFIG=str(config), HOME=str(tmp_path))
    )
    assert (code, err) == (0, "")
    assert weights(json.loads(out)["rollouts"][0]) == CHECKOUT_AT_THE_GATE


async def test_default_kubeconfig_is_home_kube_config(sim: KubeSim, tmp_path: Path) -> None:
    write_kubeconfig(tmp_path / ".kube" / "config", {"sim": sim.url, "other": sim.url}, "sim")
    code, out, err = await plan("--json", "--context", "other", env=clean_env(HOME=str(tmp_path)))
    assert (code, err) == (0, "")
    assert [r["name"] for r in json.loads(out)["rollouts"]] == ["checkout", "other"]


async def test_an_empty_namespace_says_so(sim: KubeSim, tmp_path: Path) -> None:
    config = write_kubeconfig(tmp_path / "kubeconfig", {"sim": sim.url}, "sim")
    code, out, err = await plan("--kubeconfig", str(config), "-n", "nothing-here")
    assert (code, out, err) == (0, "no Rollouts in the cluster in namespace nothing-here\n", "")


async def test_a_service_missing_from_the_cluster_is_not_found(
    sim: KubeSim, tmp_path: Path
) -> None:
    # Live, the cluster's Services are all there is: no dns-form fallback for a missing one.
    sim.delete("v1", "services", "shop2", "other-canary")
    sim.delete("v1", "services", "shop2", "other-stable")
    config = write_kubeconfig(tmp_path / "kubeconfig", {"sim": sim.url}, "sim")
    code, _, err = await plan("--kubeconfig", str(config), "-n", "shop2")
    assert code == 2
    assert err == (
        f"kongsplit plan: cluster {sim.url}: Rollout shop2/other: spec.strategy.canary: "
        "Service shop2/other-stable not found\n"
    )


# --------------------------------------------------------------------------- kmock


async def test_list_items_without_apiversion_and_kind(kube_mock: KubeMock, tmp_path: Path) -> None:
    """The API server leaves apiVersion/kind out of list items; plan must not need them."""

    def bare(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}

    await create(kube_mock, SERVICES, bare(service("checkout-stable", "10.96.0.10", "v1")))
    await create(kube_mock, SERVICES, bare(service("checkout-canary", "10.96.0.11", "v2")))
    await create(kube_mock, REPLICASETS, bare(replicaset("checkout", "v2", 2, 0)))
    await create(
        kube_mock,
        ROLLOUTS,
        bare(rollout("checkout", annotations=ANNOTATIONS, pod_hash="v2", stable_rs="v1", index=2)),
    )
    async with kube_mock.get("/api/v1/services") as response:
        listed = await response.json()
    assert [sorted(item) for item in listed["items"]] == [["metadata", "spec"]] * 2
    config = write_kubeconfig(tmp_path / "kubeconfig", {"kmock": str(kube_mock.url)}, "kmock")
    code, out, err = await plan("--json", "--kubeconfig", str(config))
    assert (code, err) == (0, "")
    [checkout] = json.loads(out)["rollouts"]
    # The canary ReplicaSet has no available pod: canary 0 (the ReplicaSet was read and used).
    assert (checkout["canary_weight"], checkout["rule"]) == (0, "new-rs-unavailable")
    assert weights(checkout) == {"10.96.0.10:80": 100, "10.96.0.11:80": 0}


@pytest.mark.parametrize(
    ("resource", "status", "reason", "expected"),
    [
        pytest.param(
            ROLLOUTS,
            404,
            "NotFound",
            "the cluster at {url} has no Rollouts (rollouts.argoproj.io not served): install "
            "Argo Rollouts there, or pick the cluster that has it with --context",
            id="no-argo-rollouts",
        ),
        pytest.param(
            SERVICES,
            403,
            "Forbidden",
            "the Kubernetes API at {url} does not let this user list services in all "
            'namespaces (403 Forbidden: services is forbidden: User "dev" cannot list '
            'resource "services"); use a context that may, or name allowed namespaces with -n',
            id="forbidden",
        ),
        pytest.param(
            REPLICASETS,
            401,
            "Unauthorized",
            "the Kubernetes API at {url} did not accept the kubeconfig's credentials (401 "
            "Unauthorized: Unauthorized); log in again or pick another --context",
            id="unauthorized",
        ),
        pytest.param(
            ROLLOUTS,
            500,
            "InternalError",
            "the Kubernetes API at {url} answered listing rollouts.argoproj.io in all "
            "namespaces: 500 InternalError: etcd is sad",
            id="server-error",
        ),
    ],
)
async def test_api_refusals_are_one_line(
    kube_mock: KubeMock, tmp_path: Path, resource: str, status: int, reason: str, expected: str
) -> None:
    messages = {
        403: 'services is forbidden: User "dev" cannot list resource "services"',
        401: "Unauthorized",
        404: "the server could not find the requested resource",
        500: "etcd is sad",
    }

    def refuse(request: kmock.Request) -> Any:
        raise kmock.KubernetesError(status, reason, messages[status])

    kube_mock[kmock.action.LIST, kmock.resource(resource)] << refuse
    url = str(kube_mock.url).rstrip("/")
    config = write_kubeconfig(tmp_path / "kubeconfig", {"kmock": url}, "kmock")
    code, out, err = await plan("--kubeconfig", str(config))
    assert (code, out) == (2, "")
    assert err == f"kongsplit plan: {expected.format(url=url)}\n"


async def test_an_untrusted_certificate_is_named(tmp_path: Path) -> None:
    # An API server whose certificate the kubeconfig does not trust (no certificate-authority).
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    url = f"https://127.0.0.1:{runner.addresses[0][1]}"
    try:
        config = write_kubeconfig(tmp_path / "kubeconfig", {"tls": url}, "tls")
        code, out, err = await plan("--kubeconfig", str(config))
    finally:
        await runner.cleanup()
    assert (code, out) == (2, "")
    assert err == (
        f"kongsplit plan: cannot reach the Kubernetes API at {url}: its TLS certificate is not "
        "trusted (unable to get local issuer certificate); check the kubeconfig (--kubeconfig, "
        "--context) and that the cluster is up\n"
    )


async def test_https_to_a_plain_http_server_is_named(tmp_path: Path) -> None:
    """A kubeconfig saying https:// for a server that speaks plain HTTP: aiohttp's wrapper of
    the ssl error has no ``reason`` (it crashed the message with a traceback); one line, the
    likely fix."""
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"https://127.0.0.1:{runner.addresses[0][1]}"
    try:
        config = write_kubeconfig(tmp_path / "kubeconfig", {"plain": url}, "plain")
        code, out, err = await plan("--kubeconfig", str(config))
    finally:
        await runner.cleanup()
    assert (code, out) == (2, "")
    assert err == (
        f"kongsplit plan: cannot reach the Kubernetes API at {url}: the TLS handshake failed: the "
        "server does not speak TLS (http://, not https://?); check the kubeconfig (--kubeconfig, "
        "--context) and that the cluster is up\n"
    )


# --------------------------------------------------------------------------- kubeconfig errors


async def test_unknown_context_is_named(tmp_path: Path) -> None:
    config = write_kubeconfig(tmp_path / "kubeconfig", {"a": "http://127.0.0.1:1"}, "a")
    code, out, err = await plan("--kubeconfig", str(config), "--context", "prod")
    assert (code, out) == (2, "")
    assert err == (
        f"kongsplit plan: kubeconfig {config} has no context 'prod' (its contexts: a): "
        "give --context one of them\n"
    )


async def test_missing_kubeconfig_file(tmp_path: Path) -> None:
    code, out, err = await plan("--kubeconfig", str(tmp_path / "nope"))
    assert (code, out) == (2, "")
    assert err == (
        f"kongsplit plan: kubeconfig {tmp_path / 'nope'} does not exist (given by --kubeconfig or "
        "kubernetes.kubeconfig): give the path of an existing file\n"
    )


async def test_context_without_any_kubeconfig(tmp_path: Path) -> None:
    code, out, err = await plan("--context", "prod", env=clean_env(HOME=str(tmp_path)))
    assert (code, out) == (2, "")
    assert err == (
        f"kongsplit plan: no kubeconfig found ({tmp_path}/.kube/config does not exist, "
        "$KUBECONFIG is unset) and not running in a pod: give --kubeconfig FILE\n"
    )


async def test_files_and_a_cluster_together_are_refused(tmp_path: Path) -> None:
    code, out, err = await plan("examples/checkout.yaml", "-n", "shop")
    assert (code, out) == (2, "")
    assert err == (
        "kongsplit plan: give Rollout files, or --kubeconfig/--context/--namespace to read a "
        "cluster, not both\n"
    )


# --------------------------------------------------------------------------- real kubectl


def kubectl() -> str:
    """kubectl from .tools/bin or PATH; skip locally, fail in CI, when it is missing."""
    found = shutil.which(
        "kubectl", path=f"{ROOT / '.tools' / 'bin'}{os.pathsep}{os.environ['PATH']}"
    )
    if found:
        return found
    message = "kubectl not found in .tools/bin or PATH: run `bash .ci/install-tools`"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.mark.tools
async def test_real_kubectl_get_output_piped_into_plan(sim: KubeSim, tmp_path: Path) -> None:
    config = write_kubeconfig(tmp_path / "kubeconfig", {"sim": sim.url}, "sim")
    proc = await asyncio.create_subprocess_exec(
        kubectl(),
        "--kubeconfig",
        str(config),
        "get",
        "rollout,svc,rs",
        "-n",
        "shop",
        "-o",
        "yaml",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(HOME=str(tmp_path)),
    )
    listing, kubectl_err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, kubectl_err.decode()
    document = yaml.safe_load(listing)
    assert (document["apiVersion"], document["kind"]) == ("v1", "List")
    assert sorted(item["kind"] for item in document["items"]) == [
        "ReplicaSet",
        "ReplicaSet",
        "Rollout",
        "Service",
        "Service",
    ]
    code, out, err = await plan("--json", "-", stdin=listing.decode())
    assert (code, err) == (0, "")
    [checkout] = json.loads(out)["rollouts"]
    assert (checkout["canary_weight"], checkout["rule"]) == (10, "replica-gate-previous")
    assert weights(checkout) == CHECKOUT_AT_THE_GATE
