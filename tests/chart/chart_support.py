"""Paths and helpers shared by the chart, alert and image tests (imported by their modules)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kongsplit"
TOOLS_BIN = ROOT / ".tools" / "bin"
RULES_FILE = ROOT / "deploy" / "prometheus" / "kongsplit-alerts.yaml"
RULES_TEST_FILE = ROOT / "deploy" / "prometheus" / "kongsplit-alerts.test.yaml"
DASHBOARD_FILE = ROOT / "deploy" / "grafana" / "kongsplit.json"
CHART_DASHBOARD_FILE = CHART / "dashboards" / "kongsplit.json"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))


def find_tool(name: str) -> str:
    """Path of a tool from .tools/bin or PATH; skip locally, fail in CI, when it is missing."""
    local = TOOLS_BIN / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} not found in {TOOLS_BIN} or PATH: run `bash .ci/install-tools`"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def run(
    cmd: list[str], *, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a tool with a bounded wait; the caller checks returncode and output."""
    return subprocess.run(
        cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )


def load_docs(manifest: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(manifest) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def poll(
    session: aiohttp.ClientSession,
    url: str,
    ready: Callable[[Any], Any],
    *,
    within: float,
    what: str,
    params: dict[str, str] | None = None,
) -> Any:
    """GET url until ready(answer) is truthy (the JSON for /api/ URLs, else True on a 200);
    bounded by `within` seconds."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        try:
            async with session.get(url, params=params) as resp:
                if resp.status == 200:
                    last = await resp.json(content_type=None) if "/api/" in url else True
                    if ready(last):
                        return last
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.25)
    pytest.fail(f"timed out after {within}s waiting for {what}; last answer: {last!r}")


@contextlib.asynccontextmanager
async def prometheus_server(
    prometheus: str,
    tmp_path: Path,
    metrics_url: str,
    *,
    rule_files: Sequence[Path] = (),
    target_labels: dict[str, str] | None = None,
) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """A real Prometheus scraping ``metrics_url`` every second as job ``kongsplit``, loading
    ``rule_files``: yields its base URL and a session, once the target has been scraped.
    ``target_labels`` are added to the target as Kubernetes discovery would (``namespace``...)."""
    target = metrics_url.removeprefix("http://").removesuffix("/metrics")
    static: dict[str, Any] = {"targets": [target]}
    if target_labels:
        static["labels"] = target_labels
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(f) for f in rule_files],
        "scrape_configs": [{"job_name": "kongsplit", "static_configs": [static]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = await asyncio.create_subprocess_exec(
        prometheus,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await poll(session, f"{base}/-/ready", bool, within=30, what="Prometheus ready")
            await poll(
                session,
                f"{base}/api/v1/targets",
                lambda j: any(t["health"] == "up" for t in j["data"]["activeTargets"]),
                within=30,
                what="the kongsplit target to be scraped",
            )
            yield base, session
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(), 10)
        except TimeoutError:
            proc.kill()
            _, stderr = await proc.communicate()
        (tmp_path / "prometheus.log").write_bytes(stderr or b"")  # kept for a failing run


def find_python(minor: str) -> str:
    """An interpreter of Python ``minor`` (e.g. "3.11") with pip: the one running the tests when it
    is that version (CI's), else ``python3.11`` on PATH, else the newest pyenv build of it. Skip
    locally, fail in CI, when there is none."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == minor:
        return sys.executable
    candidates: list[str] = []
    on_path = shutil.which(f"python{minor}")
    if on_path:
        candidates.append(on_path)
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    builds = sorted(
        root.glob(f"versions/{minor}.*/bin/python{minor}"),
        key=lambda p: [int(n) for n in p.parts[-3].split(".") if n.isdigit()],
    )
    candidates += [str(p) for p in reversed(builds)]
    for candidate in candidates:
        proc = run([candidate, "-c", "import sys, pip; print('%d.%d' % sys.version_info[:2])"])
        if proc.returncode == 0 and proc.stdout.strip() == minor:
            return candidate
    message = f"no Python {minor} (python{minor} on PATH or a pyenv build): the image's version"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
