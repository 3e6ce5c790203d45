"""Shared pieces of the benchmarks: test objects, the simulator process, a wired Reconciler.

Everything talks to 127.0.0.1 only. The Kong Admin API simulator runs in its own process
(``python -m kongsplit sim-kong``) so its CPU does not share the event loop with the daemon
under test; the daemon side is a real ``Reconciler`` + ``KongRouter`` fed the objects the way
the watchers would (``on_service`` / ``on_replicaset`` / ``on_rollout``), no Kubernetes server.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import resource
import statistics
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from kongsplit.config import Settings, load_settings
from kongsplit.kong.apply import KongRouter
from kongsplit.logs import setup_logging
from kongsplit.metrics import Metrics
from kongsplit.reconciler import Reconciler

ROOT = Path(__file__).resolve().parents[1]
from fleet import (  # noqa: E402,F401 - re-exported: the benchmarks use them as common.*
    FLIP,
    NAMESPACE,
    STEPS,
    ip_of,
    replicasets,
    services,
    upstream_of,
)
from fleet import rollout as _rollout  # noqa: E402


def rollout(i: int, index: int) -> dict[str, Any]:
    """Rollout ``app{i}`` mid-canary at ``index`` (``fleet.rollout``, with a resourceVersion)."""
    return _rollout(i, index, resource_version=str(1000 + i))


def expected_canary(index: int) -> int:
    return int(STEPS[index]["setWeight"])  # type: ignore[call-overload]


# --------------------------------------------------------------------------- the simulator


@dataclass
class SimProcess:
    url: str
    proc: asyncio.subprocess.Process


@contextlib.asynccontextmanager
async def sim_process(mode: str = "postgres") -> AsyncIterator[SimProcess]:
    """``python -m kongsplit sim-kong`` on a free loopback port, in its own process."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kongsplit",
        "sim-kong",
        "--mode",
        mode,
        "--listen",
        "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=str(ROOT),
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            while True:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise RuntimeError("sim-kong exited before listening")
                m = re.search(r"(http://127\.0\.0\.1:\d+)", line)
                if m:
                    break
        yield SimProcess(m.group(1), proc)
    finally:
        if proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def sim_total_requests(url: str) -> int:
    """The simulator's own count of requests served (``GET /status``; this one included)."""
    async with aiohttp.ClientSession() as s, s.get(f"{url}/status") as r:
        body = await r.json()
    return int(body["server"]["total_requests"])


async def drift(url: str, w: Wired, count: int) -> int:
    """Someone else changes ``count`` stable weights in Kong (behind kongsplit's back)."""
    async with aiohttp.ClientSession() as s:
        for i in range(count):
            up = upstream_of(i)
            targets = w.kong.dbmode.cache.get(None, up) or {}
            t = next(t for t in targets.values() if t.weight > 50)
            path = f"{url}/upstreams/{up}/targets/{t.id}"
            async with s.patch(path, json={"weight": t.weight + 1}) as r:
                if r.status != 200:
                    raise SystemExit(f"drift PATCH {path}: {r.status}")
    return count


# --------------------------------------------------------------------------- the daemon side


def settings(url: str, **reconcile: Any) -> Settings:
    return load_settings(
        env={},
        flags={
            "kong": {"url": url},
            "reconcile": reconcile,
            "leaderElection": {"enabled": False},
        },
    )


def production_logging() -> None:
    """JSON logs at info, as the daemon runs, written to a sink (formatting cost included)."""

    class _Sink(io.TextIOBase):
        def write(self, s: str) -> int:
            return len(s)

    setup_logging("json", "info", stream=_Sink())


@dataclass
class Wired:
    """A Reconciler with its workers running, plus the clocks the benchmarks read."""

    rec: Reconciler
    kong: KongRouter
    metrics: Metrics
    workers: list[asyncio.Task[None]]
    # upstream -> perf_counter() when the last PATCH answer for it arrived
    patch_acked: dict[str, float] = field(default_factory=dict)
    # every apply_latency_seconds observation, exactly as the reconciler made it
    observed_latency: list[float] = field(default_factory=list)
    events: deque[Any] = field(default_factory=lambda: deque(maxlen=1000))

    def requests(self) -> dict[str, int]:
        """Requests sent to Kong by method, from the daemon's own counter."""
        out: dict[str, int] = {}
        for fam in self.metrics.registry.collect():
            if fam.name == "kongsplit_kong_requests":
                for s in fam.samples:
                    if s.name.endswith("_total"):
                        m = s.labels["method"]
                        out[m] = out.get(m, 0) + int(s.value)
        return out

    async def close(self) -> None:
        for t in self.workers:
            t.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)
        self.rec.queue.close()
        await self.kong.close()


@contextlib.asynccontextmanager
async def wired(url: str, *, concurrency: int = 16) -> AsyncIterator[Wired]:
    s = settings(url, concurrency=concurrency)
    metrics = Metrics(CollectorRegistry())
    kong = KongRouter.from_config(s.kong, metrics=metrics)
    w = Wired(rec=None, kong=kong, metrics=metrics, workers=[])  # type: ignore[arg-type]
    w.rec = Reconciler(s, kong=kong, metrics=metrics, events=lambda *a, **k: w.events.append(a))

    # Our own clock: the moment each PATCH answer is back in the daemon's process.
    attempt = kong.client._attempt

    async def timed_attempt(method: str, url: str, path: str, **kw: Any) -> Any:
        result = await attempt(method, url, path, **kw)
        if method == "PATCH":
            w.patch_acked[kw["where"].upstream] = time.perf_counter()
        return result

    kong.client._attempt = timed_attempt  # type: ignore[method-assign]
    observe = metrics.apply_latency.observe

    def recorded(amount: float, *a: Any, **k: Any) -> None:
        w.observed_latency.append(amount)
        observe(amount, *a, **k)

    metrics.apply_latency.observe = recorded  # type: ignore[method-assign]
    w.workers = [
        asyncio.create_task(w.rec.worker(), name=f"worker:{i}") for i in range(concurrency)
    ]
    try:
        yield w
    finally:
        await w.close()


def load(rec: Reconciler, n: int, *, index: int = 0, start: int = 0) -> None:
    """Deliver Services, ReplicaSets, then Rollouts, as the watchers' first lists would."""
    for i in range(start, start + n):
        for svc in services(i):
            rec.on_service("ADDED", svc)
        for rs in replicasets(i):
            rec.on_replicaset("ADDED", rs)
    for i in range(start, start + n):
        rec.on_rollout("ADDED", rollout(i, index))


async def initial_sync(rec: Reconciler) -> None:
    rec.caches_listed.set()
    await rec.initial_sync()


# --------------------------------------------------------------------------- numbers


def rss_mib() -> float:
    """Current resident set size (VmRSS), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1), nearest rank."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, round(q * len(s) + 0.5) - 1))
    return s[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def histogram_buckets(
    metrics: Metrics, name: str = "kongsplit_apply_latency_seconds"
) -> dict[float, float]:
    """A histogram's cumulative bucket counts by upper bound (``le``)."""
    out: dict[float, float] = {}
    for fam in metrics.registry.collect():
        for s in fam.samples:
            if s.name == f"{name}_bucket":
                out[float(s.labels["le"])] = s.value
    return out


def histogram_quantile(
    after: dict[float, float], before: dict[float, float] | None, q: float
) -> float:
    """Prometheus' ``histogram_quantile`` over the observations made between two snapshots."""
    buckets = sorted((le, n - (before or {}).get(le, 0.0)) for le, n in after.items())
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    rank = q * buckets[-1][1]
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / max(count - prev_count, 1e-12)
        prev_le, prev_count = le, count
    return prev_le


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def heading(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def row(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<46} {value:>14}  {note}".rstrip(), flush=True)


def machine() -> str:
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} CPUs (load {load:.2f}), Python {sys.version.split()[0]}, "
        f"aiohttp {aiohttp.__version__}"
    )
