"""``kongsplit run`` as a real process: readiness, JSON logs without secrets, SIGTERM → exit 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
from daemon_support import CANARY_T, STABLE_T, Harness, eventually, weights

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


async def test_run_without_any_kubernetes_config_says_so(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")
    }
    env["KONGSPLIT_LOG_FORMAT"] = "text"
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
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    text = err.decode()
    assert proc.returncode == 1, text
    assert "cannot reach Kubernetes" in text and "missing" in text
    assert "Traceback" not in text


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
