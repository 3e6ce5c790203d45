"""``kongsplit run`` as a real process: readiness, JSON logs without secrets, SIGTERM → exit 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
from daemon_support import CANARY_T, STABLE_T, Harness, eventually, weights
from kmock_shims import LEASES, url_of

TOKEN = "s3cr3t-admin-token-value"


async def test_run_sigterm_exits_cleanly(
    harness: Harness, tmp_path: Path, unused_tcp_port: int
) -> None:
    h = harness
    await h.seed()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    config = tmp_path / "kongsplit.yaml"
    config.write_text(
        "kong:\n  tokenFile: " + str(token_file) + "\n"
        "reconcile:\n  interval: 1s\n"
        "leaderElection:\n  enabled: false\n"
    )
    env = {**os.environ, "KONGSPLIT_KONG_URL": h.kong.url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kongsplit",
        "run",
        "--config",
        str(config),
        "--kubeconfig",
        str(h.kubeconfig),
        "--listen",
        f"127.0.0.1:{unused_tcp_port}",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as http:
            deadline = asyncio.get_running_loop().time() + 20
            ready = False
            while not ready and asyncio.get_running_loop().time() < deadline:
                try:
                    async with http.get(f"http://127.0.0.1:{unused_tcp_port}/readyz") as r:
                        ready = r.status == 200
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            assert ready, "never ready"
        await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0})
        t0 = asyncio.get_running_loop().time()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 10)
        assert code == 0
        assert asyncio.get_running_loop().time() - t0 < 5
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.stderr is not None
    logs = (await proc.stderr.read()).decode()
    assert TOKEN not in logs
    assert "Traceback" not in logs
    lines = [json.loads(line) for line in logs.splitlines() if line.strip()]
    assert any(
        rec.get("rollout") == "shop/web" and rec.get("upstream") == "web.shop.svc" for rec in lines
    )
    assert lines[-1]["msg"] == "kongsplit stopped"


async def test_run_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("kong:\n  url: http://kong:8001\n  weigth: 3\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kongsplit",
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert "kong.weigth" in err.decode() and str(config) in err.decode()
    assert "Traceback" not in err.decode()


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment with a fresh HOME, no kubeconfig, not in a pod, no Lease
    namespace from the downward API: a laptop with nothing set up."""
    drop = ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "POD_NAMESPACE")
    env = {k: v for k, v in os.environ.items() if k not in drop and k != "POD_NAME"}
    return {**env, "HOME": str(home), **extra}


async def test_run_with_a_missing_kubeconfig_says_so_in_one_line(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kongsplit",
        "run",
        "--kubeconfig",
        str(tmp_path / "missing"),
        "--kong-url",
        "http://127.0.0.1:9",
        "--listen",
        "127.0.0.1:0",
        env=clean_env(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1, err.decode()
    assert (out.decode(), err.decode()) == (
        "",
        f"kongsplit run: kubeconfig {tmp_path / 'missing'} does not exist (given by "
        "--kubeconfig or kubernetes.kubeconfig): give the path of an existing file\n",
    )


async def test_run_from_home_kube_config_with_context_names_and_warns_about_the_lease(
    harness: Harness, tmp_path: Path, unused_tcp_port: int
) -> None:
    """A laptop: ~/.kube/config whose current context is another cluster, --context picks
    kmock; leader election on, no Lease namespace set: a warning, and the Lease it names is the
    one this process holds."""
    h = harness
    await h.seed()
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: elsewhere\n"
        "clusters: [{name: kmock, cluster: {server: '" + str(h.kube.url).rstrip("/") + "'}},"
        " {name: elsewhere, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {}}]\n"
        "contexts: [{name: kmock, context: {cluster: kmock, user: u}},"
        " {name: elsewhere, context: {cluster: elsewhere, user: u}}]\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kongsplit",
        "run",
        "--context",
        "kmock",
        "--kong-url",
        h.kong.url,
        "--listen",
        f"127.0.0.1:{unused_tcp_port}",
        env=clean_env(home),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    identity = f"{socket.gethostname()}-{proc.pid}"
    try:
        await eventually(
            lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}, within=20, what="synced"
        )
        async with h.kube.get(url_of(LEASES, "default", "kongsplit")) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["spec"]["holderIdentity"] == identity
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.stderr is not None
    records = [json.loads(line) for line in (await proc.stderr.read()).decode().splitlines()]
    start = next(r for r in records if " starting: " in r["msg"])
    assert f"Kubernetes from kubeconfig {home / '.kube' / 'config'} (context kmock)" in start["msg"]
    assert start["msg"].endswith(f"leader election on Lease default/kongsplit as {identity}")
    warnings = [r for r in records if r["level"] == "warning" and r["logger"] == "kongsplit.app"]
    assert len(warnings) == 1 and warnings[0]["lease"] == "default/kongsplit"
    assert "KONGSPLIT_LEADER_ELECTION_LEASE_NAMESPACE" in warnings[0]["msg"]


async def test_run_with_unreadable_tls_files_exits_2(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kongsplit",
        "run",
        "--kong-url",
        "https://127.0.0.1:9",
        env={**os.environ, "KONGSPLIT_KONG_TLS_CA_FILE": str(tmp_path / "no-ca.pem")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2, err.decode()
    assert "no-ca.pem" in err.decode() and "Traceback" not in err.decode()


async def test_run_on_a_busy_port_says_so(harness: Harness, unused_tcp_port: int) -> None:
    h = harness
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", unused_tcp_port)
    try:
        env = {
            **os.environ,
            "KONGSPLIT_LEADER_ELECTION_ENABLED": "false",
            "KONGSPLIT_LOG_FORMAT": "text",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kongsplit",
            "run",
            "--kubeconfig",
            str(h.kubeconfig),
            "--kong-url",
            h.kong.url,
            "--listen",
            f"127.0.0.1:{unused_tcp_port}",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        blocker.close()
        await blocker.wait_closed()
    assert proc.returncode == 1, err.decode()
    assert f"cannot listen on 127.0.0.1:{unused_tcp_port}" in err.decode()
    assert "Traceback" not in err.decode()
