"""Scale: the whole ``kongsplit run`` process from 1,000 to 20,000 Rollouts (issue 14).

    python bench/scale.py                          # N = 1,000, 5,000, 10,000, 20,000 (~15 min)
    python bench/scale.py --sizes 1000,10000       # chosen sizes
    python bench/scale.py --quick                  # CI size: N = 500, < 60 s

For each N, in one run: the real daemon (``python -m kongsplit run``, leader election on, JSON
logs at info to a file) against KubeSim and KongSim, each in its own process
(``bench/scale_sims.py``); this driver plays Argo Rollouts over the Kubernetes API and watches
the daemon from outside (``/healthz`` every 50 ms, ``/proc/<pid>`` for memory and CPU). Every
time below is ``time.monotonic()`` taken in the process where the thing happened (KubeSim when
a Rollout's status changed, KongSim when a write committed): one clock on one machine.

Phases, in order (bench/README.md "Scale" and docs/performance.md say more):

1. start-up from an empty Kong: process spawned → Kong holds every upstream's weights;
2. apply latency under a steady background of 50 changes/s: a Rollout's status change at the
   API server → Kong committed the PATCH that completes its weights (p50, p99);
3. a burst: every Rollout changes at once → Kong holds every new weight; against the
   bare-aiohttp floor: the same PATCHes sent by a plain loop with the same in-flight limit
   (``reconcile.concurrency``), interleaved round by round;
4. idle for two sweeps: the drift sweep's duration and requests, and writes (must be 0);
5. optionally (``--slow-at``) a Kong that answers every request 1 s late during a burst: memory
   and ``/healthz`` meanwhile, then the time to converge once Kong is fast again;
6. a restart against a Kong that already holds everything: spawned → ``/readyz`` (every
   Rollout processed once), with Kong's reads and writes counted (writes must be 0).

Prints a table, one JSON line per N (last on stdout) and, with matplotlib installed
(``pip install '.[bench]'``), a PNG of every figure against N.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import random
import re
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from chaos import _env, _stop, start_sim  # noqa: E402
from scale_sims import FLIP, NAMESPACE, upstream_of, weights_at  # noqa: E402

#: Every key the JSON line of one N carries (more follow them).
KEYS = (
    "rollouts",
    "startup_empty_s",
    "startup_populated_s",
    "apply_p50_ms",
    "apply_p99_ms",
    "burst_s",
    "floor_s",
    "burst_floor_ratio",
    "sweep_s",
    "sweep_requests",
    "idle_writes",
    "rss_mib",
    "rss_per_rollout_kib",
    "healthz_max_ms",
)
WRITES = ("POST", "PATCH", "PUT", "DELETE")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") / 1024


@dataclass
class Plan:
    sizes: tuple[int, ...] = (1000, 5000, 10000, 20000)
    concurrency: int = 16  # reconcile.concurrency, and the floor's in-flight limit
    interval: float = 10.0  # reconcile.interval (the default)
    rate: float = 50.0  # background changes per second
    background: float = 20.0  # seconds of background changes
    rounds: int = 2  # burst/floor rounds
    slow_at: tuple[int, ...] = (10000,)
    slow_seconds: float = 30.0
    slow_delay: float = 1.0
    quick: bool = False
    png: str | None = None
    profile: str | None = None  # --profile DIR: py-spy per phase
    stalls: bool = False  # --stalls: the daemon writes where its event loop stalled

    @classmethod
    def quick_plan(cls) -> Plan:
        return cls(
            sizes=(500,),
            interval=2.0,
            background=5.0,
            rounds=1,
            slow_at=(500,),
            slow_seconds=3.0,
            quick=True,
        )


# --------------------------------------------------------------------------- processes


async def start_scale_sim(role: str) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    return await start_sim(role, "scale_sims.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu(pid: int) -> float:
    """utime + stime of a process, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_mem(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (peak), MiB."""
    rss = hwm = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


class Daemon:
    """One ``kongsplit run`` process, watched from outside."""

    def __init__(
        self, workdir: Path, name: str, kong_url: str, kubeconfig: Path, plan: Plan
    ) -> None:
        self.port = free_port()
        self.config = workdir / f"{name}.yaml"
        self.log = workdir / f"{name}.log"
        self.gc_log = workdir / f"{name}.gc.jsonl"
        self.extra_env = (
            {
                "SCALE_STALL_LOG": str(workdir / f"{name}.stalls.jsonl"),
                "SCALE_HEAP_LOG": str(workdir / f"{name}.heap.jsonl"),
            }
            if plan.stalls
            else {}
        )
        settings = {
            "kong": {"url": kong_url},
            "kubernetes": {"kubeconfig": str(kubeconfig)},
            "server": {"listen": f"127.0.0.1:{self.port}"},
            "reconcile": {"interval": plan.interval, "concurrency": plan.concurrency},
            "leaderElection": {
                "enabled": True,
                "leaseNamespace": "kongsplit",
                "leaseName": "kongsplit",
                "identity": "scale-a",
            },
            "log": {"format": "json", "level": "info"},
        }
        self.config.write_text(json.dumps(settings, indent=2))  # JSON is YAML
        self.proc: asyncio.subprocess.Process | None = None
        self.spawned = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> float:
        log = open(self.log, "ab")  # noqa: ASYNC230, SIM115 - a local file, closed below
        try:
            self.spawned = time.monotonic()
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(BENCH / "scale_gc.py"),  # kongsplit.cli.main, GC pauses logged
                "run",
                "--config",
                str(self.config),
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                cwd=str(ROOT),
                env={**_env(), "SCALE_GC_LOG": str(self.gc_log), **self.extra_env},
            )
        finally:
            log.close()
        return self.spawned

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self) -> tuple[int | None, float]:
        assert self.proc is not None
        t = time.monotonic()
        code = await _stop(self.proc, grace=30)
        return code, time.monotonic() - t

    def errors(self) -> list[str]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if "Traceback" in line:
                out.append(line)
            elif line.startswith("{"):
                with contextlib.suppress(ValueError):
                    rec = json.loads(line)
                    if rec.get("level") in ("error", "critical"):
                        out.append(str(rec.get("msg", ""))[:200])
        return out


# --------------------------------------------------------------------------- profiling


class Profiler:
    """``--profile DIR``: a py-spy record of the daemon per phase (raw collapsed stacks, and a
    summary of the heaviest functions beside it). py-spy samples from outside the process, so
    the figures of a profiled run are a little worse than an unprofiled one's."""

    def __init__(self, outdir: Path | None, rate: int = 100) -> None:
        self.outdir = outdir
        self.rate = rate

    @contextlib.asynccontextmanager
    async def phase(self, d: Daemon, name: str) -> Any:
        if self.outdir is None:
            yield
            return
        self.outdir.mkdir(parents=True, exist_ok=True)
        out = self.outdir / f"{name}.txt"
        spy: list[asyncio.subprocess.Process] = []

        async def record() -> None:
            while d.proc is None or not d.alive():  # noqa: ASYNC110 - another process's state
                await asyncio.sleep(0.01)
            spy.append(
                await asyncio.create_subprocess_exec(
                    str(Path(sys.executable).with_name("py-spy")),
                    "record",
                    "--pid",
                    str(d.pid),
                    "--rate",
                    str(self.rate),
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(out),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            )

        starter = asyncio.create_task(record())
        try:
            yield
        finally:
            starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starter
            for p in spy:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGINT)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(20):
                        await p.wait()
            if out.exists():
                (self.outdir / f"{name}.top.txt").write_text(profile_summary(out))


def profile_summary(path: Path, top: int = 40) -> str:
    """The heaviest functions of a py-spy raw profile: own samples and inclusive samples."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";") if f]
        if not frames:
            continue
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count
    lines = [f"{path.name}: {total} samples"]
    for title, table_ in (("own", own), ("inclusive", incl)):
        lines.append(f"-- {title}")
        for f, c in sorted(table_.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"{100 * c / max(1, total):6.1f}%  {c:7d}  {f}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- watching it


@dataclass
class PhaseStats:
    healthz_max: float = 0.0  # seconds
    healthz_polls: int = 0
    healthz_failures: int = 0  # answered non-200 or not within 5 s (after the first answer)
    rss_max: float = 0.0  # MiB
    gc_max_ms: float = 0.0  # the daemon's longest garbage collection
    gc_full: int = 0  # generation-2 collections


class Observer:
    """``/healthz`` every 50 ms (polled by a process of its own, ``scale_sims.py probe``),
    memory every 250 ms and the garbage collector's pauses (``scale_gc.py``), per named phase:
    a sample counts in the phase that was under way when it was taken."""

    def __init__(self, http: aiohttp.ClientSession, probe: Control) -> None:
        self.http = http
        self.probe = probe
        self.daemon: Daemon | None = None
        self.phase = "setup"
        self.phases: dict[str, PhaseStats] = {}
        self._starts: list[float] = [0.0]
        self._names: list[str] = ["setup"]
        self.first_answer: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._gc_read: dict[Path, int] = {}

    def watch(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.first_answer = None

    async def target(self, daemon: Daemon | None) -> None:
        await self.flush()
        if daemon is not None:
            self.watch(daemon)
        await self.probe.post("/target", {"url": daemon.url if daemon is not None else None})

    def enter(self, phase: str) -> PhaseStats:
        self.phase = phase
        self._starts.append(time.monotonic())
        self._names.append(phase)
        return self.phases.setdefault(phase, PhaseStats())

    def _at(self, t: float) -> PhaseStats:
        name = self._names[max(0, bisect.bisect_right(self._starts, t) - 1)]
        return self.phases.setdefault(name, PhaseStats())

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._pull()), asyncio.create_task(self._memory())]

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(aiohttp.ClientError, OSError):
            await self.probe.post("/target", {"url": None})

    async def flush(self) -> None:
        """Take every /healthz sample and GC pause recorded so far into the phases."""
        for t, took, ok in await self.probe.get("/samples"):
            if self.first_answer is None:
                if ok:
                    self.first_answer = t + took
                continue
            stats = self._at(t)
            stats.healthz_polls += 1
            stats.healthz_max = max(stats.healthz_max, took)
            stats.healthz_failures += not ok
        d = self.daemon
        if d is not None and d.gc_log.exists():
            done = self._gc_read.get(d.gc_log, 0)
            with open(d.gc_log, "rb") as f:  # noqa: ASYNC230 - a local file, read at once
                f.seek(done)
                data = f.read()
            complete = data[: data.rfind(b"\n") + 1]
            self._gc_read[d.gc_log] = done + len(complete)
            for line in complete.splitlines():
                rec = json.loads(line)
                stats = self._at(rec["t"])
                stats.gc_max_ms = max(stats.gc_max_ms, rec["ms"])
                stats.gc_full += rec["gen"] == 2

    async def _pull(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            with contextlib.suppress(aiohttp.ClientError, OSError):
                await self.flush()

    async def _memory(self) -> None:
        while True:
            d = self.daemon
            if d is not None and d.alive():
                with contextlib.suppress(OSError):
                    rss, _ = proc_mem(d.pid)
                    stats = self.phases.setdefault(self.phase, PhaseStats())
                    stats.rss_max = max(stats.rss_max, rss)
            await asyncio.sleep(0.25)


class Control:
    """The simulators' control ports."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url

    async def get(self, path: str) -> Any:
        async with self.http.get(self.url + path) as r:
            r.raise_for_status()
            return await r.json()

    async def post(self, path: str, body: Any = None) -> Any:
        async with self.http.post(self.url + path, json=body or {}) as r:
            r.raise_for_status()
            return await r.json()


# --------------------------------------------------------------------------- the run of one N


@dataclass
class SizeRun:
    plan: Plan
    n: int
    http: aiohttp.ClientSession
    kong: Control
    kube: Control
    kong_url: str
    kube_url: str
    obs: Observer
    baseline_rss: float
    index: dict[int, int] = field(default_factory=dict)
    out: dict[str, Any] = field(default_factory=dict)

    async def wait_converged(self, deadline: float) -> dict[str, Any]:
        until = time.monotonic() + deadline
        while time.monotonic() < until:
            p = await self.kong.get("/progress")
            if p["done_at"] is not None:
                return p  # type: ignore[no-any-return]
            await asyncio.sleep(0.1)
        p = await self.kong.get("/progress")
        raise RuntimeError(f"N={self.n}: Kong never reached the weights: {p}")

    async def wait_ready(self, d: Daemon, deadline: float) -> float:
        until = time.monotonic() + deadline
        while time.monotonic() < until:
            if not d.alive():
                raise RuntimeError(f"the daemon exited: {d.errors()[-5:]}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with self.http.get(f"{d.url}/readyz") as r:
                    await r.read()
                    if r.status == 200:
                        return time.monotonic()
            await asyncio.sleep(0.05)
        raise RuntimeError(f"N={self.n}: the daemon never became ready")

    async def expect(self, index: dict[int, int]) -> None:
        await self.kong.post("/expect", {"index": {str(i): s for i, s in index.items()}})

    # -- 1. start-up from an empty Kong
    async def startup_empty(self, d: Daemon) -> None:
        self.index = dict.fromkeys(range(self.n), 0)
        await self.kube.post("/populate", {"n": self.n, "index": 0})
        await self.expect(self.index)
        stats = self.obs.enter("startup_empty")
        await self.obs.target(d)
        spawned = await d.start()
        cpu_at: float | None = None
        deadline = 120 + self.n * 0.01
        progress = await self.wait_converged(deadline)
        with contextlib.suppress(OSError):
            cpu_at = proc_cpu(d.pid)
        ready = await self.wait_ready(d, deadline)
        self.out["startup_empty_s"] = round(progress["done_at"] - spawned, 2)
        self.out["startup_empty_ready_s"] = round(ready - spawned, 2)
        self.out["process_up_s"] = round((self.obs.first_answer or ready) - spawned, 2)
        self.out["startup_empty_cpu_s"] = round(cpu_at or 0.0, 2)
        del stats

    # -- 2. apply latency under a steady background of changes
    async def background(self, d: Daemon) -> None:
        plan = self.plan
        self.obs.enter("background")
        await self.kube.post("/record", {"on": True})
        await self.kong.post("/record", {"on": True})
        await self.kong.post("/window")  # every request meanwhile: when the sweeps ran
        cpu0 = proc_cpu(d.pid)
        kube0 = await self.kube.get("/stats")
        rng = random.Random(self.n)
        recent: dict[int, float] = {}
        count = int(plan.rate * plan.background)
        started = time.monotonic()
        sends: list[asyncio.Task[None]] = []
        for k in range(count):
            await asyncio.sleep(max(0.0, started + k / plan.rate - time.monotonic()))
            now = time.monotonic()
            while True:
                i = rng.randrange(self.n)
                if now - recent.get(i, -10.0) > 2.0:  # one change at a time per Rollout
                    break
            recent[i] = now
            self.index[i] = FLIP[self.index[i]]
            sends.append(asyncio.create_task(self._status(i, self.index[i])))
        await asyncio.gather(*sends)
        sent_for = time.monotonic() - started
        await asyncio.sleep(2.0)
        cpu = proc_cpu(d.pid) - cpu0
        kube1 = await self.kube.get("/stats")
        # KubeSim's CPU per Rollout status change: the PATCH, and the watch event it sends the
        # daemon (plus the daemon's few own requests: Lease renewals).
        self.out["kubesim_us_per_change"] = round(
            (kube1["cpu"] - kube0["cpu"]) / max(1, count) * 1e6, 1
        )
        window = await self.kong.get("/window")
        await self.kube.post("/record", {"on": False})
        await self.kong.post("/record", {"on": False})
        changes = await self.kube.get("/changes")
        commits = await self.kong.get("/commits")
        timed, missing = match(changes, commits)
        latencies = [lat for _, lat in timed]
        # Which changes met a drift sweep (their interval overlaps one): the tail's cause.
        spans = sweep_spans(window["requests"], gap=min(1.0, self.plan.interval / 4))
        during = [lat for t, lat in timed if any(a <= t + lat and t <= b for a, b in spans)]
        outside = [lat for t, lat in timed if not any(a <= t + lat and t <= b for a, b in spans)]
        self.out["apply_sweeps_during_background"] = len(spans)
        self.out["apply_share_meeting_a_sweep"] = round(len(during) / max(1, len(timed)), 3)
        self.out["apply_p99_ms_meeting_a_sweep"] = (
            round(pct(during, 0.99) * 1000, 2) if during else None
        )
        self.out["apply_p99_ms_outside_sweeps"] = (
            round(pct(outside, 0.99) * 1000, 2) if outside else None
        )
        self.out["apply_changes"] = len(changes)
        self.out["apply_unmatched"] = missing
        self.out["apply_p50_ms"] = round(pct(latencies, 0.50) * 1000, 2)
        self.out["apply_p99_ms"] = round(pct(latencies, 0.99) * 1000, 2)
        self.out["apply_max_ms"] = round(max(latencies, default=0.0) * 1000, 2)
        self.out["background_rate"] = round(count / sent_for, 1)
        self.out["background_cpu_s_per_1k"] = round(cpu / max(1, count) * 1000, 2)

    async def _status(self, i: int, step: int) -> None:
        path = f"/apis/argoproj.io/v1alpha1/namespaces/{NAMESPACE}/rollouts/app{i}/status"
        body = {"status": {"currentStepIndex": step}}
        headers = {"Content-Type": "application/merge-patch+json"}
        async with self.http.patch(self.kube_url + path, json=body, headers=headers) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"status PATCH of app{i}: {r.status}")

    # -- 3. a burst of N changes, against the bare-aiohttp floor
    async def burst(self, d: Daemon) -> None:
        bursts: list[float] = []
        floors: list[float] = []
        cpus: list[float] = []
        kong_us: list[float] = []
        floor_kong_us: list[float] = []
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100), timeout=aiohttp.ClientTimeout(total=60)
        ) as floor_http:
            for _ in range(self.plan.rounds):
                self.obs.enter("floor")
                reqs = await self._floor_requests()
                floor, us = await self._floor(floor_http, reqs)
                floors.append(floor)
                floor_kong_us.append(us)
                self.obs.enter("burst")
                new = {i: FLIP[s] for i, s in self.index.items()}
                await self.expect(new)
                cpu0 = proc_cpu(d.pid)
                k0 = await self.kong.get("/stats")
                flipped = await self.kube.post(
                    "/flip", {"index": {str(i): s for i, s in new.items()}}
                )
                progress = await self.wait_converged(120 + self.n * 0.01)
                k1 = await self.kong.get("/stats")
                cpus.append(proc_cpu(d.pid) - cpu0)
                kong_us.append((k1["cpu"] - k0["cpu"]) / max(1, k1["requests"] - k0["requests"]))
                bursts.append(progress["done_at"] - flipped["first"])
                self.out["burst_kube_s"] = round(flipped["last"] - flipped["first"], 2)
                self.index = new
                await asyncio.sleep(1.0)
        ratios = [b / f for b, f in zip(bursts, floors, strict=True)]
        self.out["burst_s"] = round(statistics.median(bursts), 2)
        self.out["floor_s"] = round(statistics.median(floors), 2)
        self.out["burst_floor_ratio"] = round(statistics.median(ratios), 2)
        self.out["burst_rounds"] = [round(b, 2) for b in bursts]
        self.out["floor_rounds"] = [round(f, 2) for f in floors]
        self.out["cpu_s_per_1k_changes"] = round(statistics.median(cpus) / self.n * 1000, 3)
        self.out["kongsim_us_per_request_burst"] = round(statistics.median(kong_us) * 1e6, 1)
        self.out["kongsim_us_per_request_floor"] = round(statistics.median(floor_kong_us) * 1e6, 1)

    async def _floor_requests(self) -> list[tuple[str, bytes]]:
        """The PATCHes of one burst: every target, the weight it already holds (so Kong's state
        does not move), as a bare client would send them."""
        out = []
        for upstream, tid, weight, _ in await self.kong.get("/targets"):
            path = f"/upstreams/{quote(upstream, safe='')}/targets/{quote(tid, safe='')}"
            out.append((path, json.dumps({"weight": weight}).encode()))
        return out

    async def _floor(
        self, http: aiohttp.ClientSession, reqs: list[tuple[str, bytes]]
    ) -> tuple[float, float]:
        sem = asyncio.Semaphore(self.plan.concurrency)
        headers = {"Content-Type": "application/json"}

        async def one(path: str, body: bytes) -> None:
            async with sem, http.patch(self.kong_url + path, data=body, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"floor PATCH {path}: {r.status}")

        await asyncio.gather(*(one(p, b) for p, b in reqs[:200]))  # warm the connections
        k0 = await self.kong.get("/stats")
        t0 = time.monotonic()
        await asyncio.gather(*(one(p, b) for p, b in reqs))
        took = time.monotonic() - t0
        k1 = await self.kong.get("/stats")
        return took, (k1["cpu"] - k0["cpu"]) / max(1, k1["requests"] - k0["requests"])

    # -- 4. idle: sweeps, and writes while nothing changes
    async def idle(self, d: Daemon) -> None:
        self.obs.enter("idle")
        await asyncio.sleep(1.0)
        opened = await self.kong.post("/window")
        cpu0 = proc_cpu(d.pid)
        await asyncio.sleep(2 * self.plan.interval + 1.5)
        window = await self.kong.get("/window")
        cpu = proc_cpu(d.pid) - cpu0
        reqs = window["requests"]
        self.out["idle_writes"] = sum(1 for _, kind in reqs if kind.startswith(WRITES))
        sweeps = sweep_clusters(
            reqs, opened["t"], window["t"], gap=min(1.0, self.plan.interval / 4)
        )
        if sweeps:
            longest = max(sweeps, key=lambda s: s["requests"])
            self.out["sweep_s"] = round(longest["s"], 2)
            self.out["sweep_requests"] = longest["requests"]
            self.out["sweep_kinds"] = longest["kinds"]
            self.out["sweeps_seen"] = len(sweeps)
            self.out["kongsim_us_per_request_sweep"] = round(
                (window["cpu"] - opened["cpu"]) / max(1, len(reqs)) * 1e6, 1
            )
        else:
            self.out["sweep_s"] = None
            self.out["sweep_requests"] = None
        # Idle, the daemon's only work is the sweep (and a Lease renewal, a probe): its CPU
        # over the window, per interval, is the CPU of one sweep.
        window_s = window["t"] - opened["t"]
        self.out["sweep_cpu_s"] = round(cpu * self.plan.interval / window_s, 2)
        rss, hwm = proc_mem(d.pid)
        if self.plan.stalls:  # --diagnose: the daemon writes a census of its heap
            os.kill(d.pid, signal.SIGUSR2)
        self.out["rss_steady_mib"] = round(rss, 1)
        self.out["rss_mib"] = round(hwm, 1)  # replaced by the peak over every phase at the end
        self.out["rss_per_rollout_kib"] = round((rss - self.baseline_rss) * 1024 / self.n, 2)

    # -- the simulator's own cost per request, at this N
    async def simcost(self) -> None:
        """KongSim's CPU per request for each kind the daemon sends, measured in its process
        (``/stats``) while this driver sends 2,000 of each at 4 in flight: the daemon's
        figures are only as good as this is flat in N (indexes, not scans)."""
        rng = random.Random(self.n + 1)
        targets = await self.kong.get("/targets")
        picks = [targets[rng.randrange(len(targets))] for _ in range(2000)]
        sem = asyncio.Semaphore(4)
        headers = {"Content-Type": "application/json"}
        out: dict[str, float] = {}

        async def one(method: str, path: str, body: bytes | None) -> None:
            async with (
                sem,
                self.http.request(method, self.kong_url + path, data=body, headers=headers) as r,
            ):
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"{method} {path}: {r.status}")

        kinds = {
            "get_targets": [
                ("GET", f"/upstreams/{quote(u, safe='')}/targets", None) for u, _, _, _ in picks
            ],
            "patch_target": [
                (
                    "PATCH",
                    f"/upstreams/{quote(u, safe='')}/targets/{tid}",
                    json.dumps({"weight": w}).encode(),
                )
                for u, tid, w, _ in picks
            ],
            "get_upstream": [
                ("GET", f"/upstreams/{quote(u, safe='')}", None) for u, _, _, _ in picks
            ],
            "list_upstreams_page": [("GET", "/upstreams?size=1000", None)] * 200,
        }
        for kind, reqs in kinds.items():
            k0 = await self.kong.get("/stats")
            await asyncio.gather(*(one(*r) for r in reqs))
            k1 = await self.kong.get("/stats")
            served = max(1, k1["requests"] - k0["requests"])  # the daemon's too, if any
            out[kind] = round((k1["cpu"] - k0["cpu"]) / served * 1e6, 1)
        self.out["kongsim_us_per_request"] = out
        self.out["kongsim_us_per_patch"] = out["patch_target"]

    # -- 5. a slow Kong
    async def slow(self, d: Daemon) -> None:
        plan = self.plan
        stats = self.obs.enter("slow")
        rss0, _ = proc_mem(d.pid)
        new = {i: FLIP[s] for i, s in self.index.items()}
        await self.expect(new)
        await self.kong.post("/slow", {"seconds": plan.slow_delay})
        await self.kube.post("/flip", {"index": {str(i): s for i, s in new.items()}})
        samples = []
        until = time.monotonic() + plan.slow_seconds
        while time.monotonic() < until:
            await asyncio.sleep(1.0)
            samples.append(proc_mem(d.pid)[0])
        p = await self.kong.get("/progress")
        cleared = (await self.kong.post("/clear"))["t"]
        self.obs.enter("slow_recovery")
        await self.obs.flush()
        progress = await self.wait_converged(120 + self.n * 0.02)
        self.index = new
        half = samples[len(samples) // 2 :] or samples
        self.out["slow_delay_s"] = plan.slow_delay
        self.out["slow_seconds"] = plan.slow_seconds
        self.out["slow_applied"] = p["matched"]
        self.out["slow_rss_growth_mib"] = round(stats.rss_max - rss0, 1)
        # growth over the second half of the window: flat means bounded
        self.out["slow_rss_growth_second_half_mib"] = round(max(half) - half[0], 1) if half else 0
        self.out["slow_healthz_max_ms"] = round(stats.healthz_max * 1000, 1)
        self.out["slow_recovered_s"] = round(progress["done_at"] - cleared, 2)

    # -- 6. a restart against a Kong that holds everything
    async def restart(self, d: Daemon, fresh: Daemon) -> None:
        # The peak over every phase of this daemon's life (start-up from empty Kong to here).
        self.out["rss_mib"] = round(proc_mem(d.pid)[1], 1)
        self.obs.enter("stop")
        await self.obs.target(None)  # a daemon shutting down is not asked how it is
        code, took = await d.stop()
        self.out["stop_exit"] = code
        self.out["stop_s"] = round(took, 2)
        opened = await self.kong.post("/window")
        self.obs.enter("startup_populated")
        await self.obs.target(fresh)
        spawned = await fresh.start()
        ready = await self.wait_ready(fresh, 120 + self.n * 0.01)
        await asyncio.sleep(0.5)
        window = await self.kong.get("/window")
        reqs = [(t, kind) for t, kind in window["requests"] if spawned <= t <= ready]
        kinds: dict[str, int] = {}
        for _, kind in reqs:
            kinds[kind] = kinds.get(kind, 0) + 1
        self.out["startup_populated_s"] = round(ready - spawned, 2)
        self.out["restart_requests"] = kinds
        self.out["restart_writes"] = sum(n for k, n in kinds.items() if k.startswith(WRITES))
        self.out["restart_reads_per_upstream"] = round(
            sum(n for k, n in kinds.items() if k.startswith("GET")) / self.n, 3
        )
        del opened


def match(
    changes: list[list[Any]], commits: list[list[Any]]
) -> tuple[list[tuple[float, float]], int]:
    """For each status change, the first later commit that completes its weights: (the
    change's time, its latency) each, and how many found none."""
    by_upstream: dict[str, list[tuple[float, dict[str, int]]]] = {}
    for t, upstream, weights in commits:
        by_upstream.setdefault(upstream, []).append((t, weights))
    timed: list[tuple[float, float]] = []
    missing = 0
    for name, t, step in changes:
        i = int(name.removeprefix("app"))
        want = weights_at(i, step)
        for tc, weights in by_upstream.get(upstream_of(i), []):
            if tc >= t and all(weights.get(k) == w for k, w in want.items()):
                timed.append((t, tc - t))
                break
        else:
            missing += 1
    return timed, missing


def sweep_spans(
    reqs: Iterable[list[Any]], *, gap: float, least: int = 100
) -> list[tuple[float, float]]:
    """(start, end) of every run of at least ``least`` reads with no pause over ``gap``: the
    drift sweeps (a change's pass reads nothing; a late check reads one upstream)."""
    spans: list[list[float]] = []
    count: list[int] = []
    for t, kind in sorted(reqs):
        if kind not in ("GET targets", "GET upstreams", "GET upstream"):
            continue
        if spans and t - spans[-1][1] <= gap:
            spans[-1][1] = t
            count[-1] += 1
        else:
            spans.append([t, t])
            count.append(1)
    return [(a, b) for (a, b), n in zip(spans, count, strict=True) if n >= least]


def sweep_clusters(
    reqs: Iterable[list[Any]], start: float, end: float, *, gap: float
) -> list[dict[str, Any]]:
    """GETs of upstreams and targets grouped into sweeps (a pause over ``gap`` separates two);
    only sweeps wholly inside the window count."""
    gets = sorted(
        (t, kind) for t, kind in reqs if kind in ("GET targets", "GET upstreams", "GET upstream")
    )
    clusters: list[list[tuple[float, str]]] = []
    for t, kind in gets:
        if clusters and t - clusters[-1][-1][0] <= gap:
            clusters[-1].append((t, kind))
        else:
            clusters.append([(t, kind)])
    out = []
    for c in clusters:
        if c[0][0] - start <= gap or end - c[-1][0] <= gap:
            continue  # cut by the window: not a whole sweep
        kinds: dict[str, int] = {}
        for _, kind in c:
            kinds[kind] = kinds.get(kind, 0) + 1
        out.append({"s": c[-1][0] - c[0][0], "requests": len(c), "kinds": kinds})
    return out


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    return s[max(0, min(len(s) - 1, round(q * len(s) + 0.5) - 1))]


# --------------------------------------------------------------------------- driving


def kubeconfig(path: Path, url: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "scale", "cluster": {"server": url}}],
                "users": [{"name": "scale", "user": {}}],
                "contexts": [{"name": "scale", "context": {"cluster": "scale", "user": "scale"}}],
                "current-context": "scale",
            }
        )
    )
    return path


async def with_sims(fn: Any, *args: Any) -> Any:
    kong_proc, kong = await start_scale_sim("kong")
    kube_proc, kube = await start_scale_sim("kube")
    probe_proc, probe = await start_scale_sim("probe")
    kong["probe"] = probe["control"]
    try:
        return await fn(kong, kube, *args)
    finally:
        await _stop(probe_proc)
        await _stop(kube_proc)
        await _stop(kong_proc)


async def baseline(plan: Plan, workdir: Path, http: aiohttp.ClientSession) -> float:
    """VmRSS of the daemon managing nothing (imports, clients, tasks): what N adds to."""

    async def run(kong: dict[str, Any], kube: dict[str, Any]) -> float:
        cfg = kubeconfig(workdir / "kubeconfig-idle", kube["url"])
        d = Daemon(workdir, "daemon-idle", kong["url"], cfg, plan)
        await d.start()
        try:
            until = time.monotonic() + 60
            while time.monotonic() < until:
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"{d.url}/readyz") as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)
            return proc_mem(d.pid)[0]
        finally:
            await d.stop()

    rss: float = await with_sims(run)
    return rss


async def run_size(
    plan: Plan, n: int, workdir: Path, http: aiohttp.ClientSession, base_rss: float, log: Any
) -> dict[str, Any]:
    async def run(kong: dict[str, Any], kube: dict[str, Any]) -> dict[str, Any]:
        cfg = kubeconfig(workdir / f"kubeconfig-{n}", kube["url"])
        obs = Observer(http, Control(http, kong["probe"]))
        obs.start()
        s = SizeRun(
            plan,
            n,
            http,
            Control(http, kong["control"]),
            Control(http, kube["control"]),
            kong["url"],
            kube["url"],
            obs,
            base_rss,
        )
        s.out["rollouts"] = n
        s.out["load_avg_1m"] = round(os.getloadavg()[0], 2)
        d = Daemon(workdir, f"daemon-{n}", kong["url"], cfg, plan)
        fresh = Daemon(workdir, f"daemon-{n}-restarted", kong["url"], cfg, plan)
        prof = Profiler(Path(plan.profile) / str(n) if plan.profile else None)
        try:
            async with prof.phase(d, "startup_empty"):
                await s.startup_empty(d)
            log(f"N={n}: start-up from empty Kong {s.out['startup_empty_s']} s")
            async with prof.phase(d, "background"):
                await s.background(d)
            log(f"N={n}: apply p50 {s.out['apply_p50_ms']} ms, p99 {s.out['apply_p99_ms']} ms")
            async with prof.phase(d, "burst"):
                await s.burst(d)
            log(f"N={n}: burst {s.out['burst_s']} s, floor {s.out['floor_s']} s")
            async with prof.phase(d, "idle"):
                await s.idle(d)
            log(f"N={n}: sweep {s.out['sweep_s']} s, {s.out['sweep_requests']} requests")
            s.obs.enter("simcost")
            await s.simcost()
            log(f"N={n}: KongSim CPU per request (µs): {s.out['kongsim_us_per_request']}")
            if n in plan.slow_at:
                async with prof.phase(d, "slow"):
                    await s.slow(d)
                log(f"N={n}: slow Kong: +{s.out['slow_rss_growth_mib']} MiB")
            async with prof.phase(fresh, "startup_populated"):
                await s.restart(d, fresh)
            log(f"N={n}: restart {s.out['startup_populated_s']} s")
            await obs.flush()
            phases = obs.phases.values()
            s.out["healthz_max_ms"] = round(max(p.healthz_max for p in phases) * 1000, 1)
            s.out["healthz_by_phase_ms"] = {
                name: round(p.healthz_max * 1000, 1) for name, p in obs.phases.items()
            }
            s.out["gc_max_ms"] = round(max(p.gc_max_ms for p in phases), 1)
            s.out["gc_full_collections"] = sum(p.gc_full for p in phases)
            s.out["gc_max_by_phase_ms"] = {
                name: round(p.gc_max_ms, 1) for name, p in obs.phases.items()
            }
            s.out["healthz_polls"] = sum(p.healthz_polls for p in obs.phases.values())
            s.out["healthz_failures"] = sum(p.healthz_failures for p in obs.phases.values())
            s.out["rss_restarted_mib"] = round(proc_mem(fresh.pid)[0], 1)
            s.out["daemon_errors"] = len(d.errors()) + len(fresh.errors())
            kstats = await s.kong.get("/stats")
            s.out["kongsim_rss_mib"] = round(kstats["rss_mib"], 1)
            s.out["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
            return s.out
        finally:
            await obs.close()
            for daemon in (d, fresh):
                if daemon.alive():
                    await daemon.stop()

    result: dict[str, Any] = await with_sims(run)
    return result


def machine() -> dict[str, Any]:
    """What docs/performance.md says the figures were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "mem_mib": mem,
        "python": sys.version.split()[0],
        "aiohttp": aiohttp.__version__,
        "kernel": os.uname().release,
    }


def table(results: list[dict[str, Any]]) -> str:
    cols = [
        ("N", "rollouts", "{:,}"),
        ("start empty s", "startup_empty_s", "{:.2f}"),
        ("start populated s", "startup_populated_s", "{:.2f}"),
        ("apply p50 ms", "apply_p50_ms", "{:.2f}"),
        ("apply p99 ms", "apply_p99_ms", "{:.2f}"),
        ("burst s", "burst_s", "{:.2f}"),
        ("floor s", "floor_s", "{:.2f}"),
        ("burst/floor", "burst_floor_ratio", "{:.2f}"),
        ("sweep s", "sweep_s", "{:.2f}"),
        ("sweep req", "sweep_requests", "{:,}"),
        ("idle writes", "idle_writes", "{}"),
        ("RSS MiB", "rss_mib", "{:.1f}"),
        ("KiB/Rollout", "rss_per_rollout_kib", "{:.2f}"),
        ("CPU s/1k chg", "cpu_s_per_1k_changes", "{:.3f}"),
        ("healthz max ms", "healthz_max_ms", "{:.1f}"),
        ("GC max ms", "gc_max_ms", "{:.1f}"),
        ("KongSim µs/PATCH", "kongsim_us_per_patch", "{:.0f}"),
    ]
    rows = [[h for h, _, _ in cols]]
    for r in results:
        rows.append([fmt.format(r[k]) if r.get(k) is not None else "-" for _, k, fmt in cols])
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    return "\n".join("  ".join(cell.rjust(widths[i]) for i, cell in enumerate(row)) for row in rows)


def plot(results: list[dict[str, Any]], path: str) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install '.[bench]'): no PNG"
    ns = [r["rollouts"] for r in results]
    panels = [
        (
            "start-up (s)",
            [("from empty Kong", "startup_empty_s"), ("restart", "startup_populated_s")],
        ),
        ("apply latency (ms)", [("p50", "apply_p50_ms"), ("p99", "apply_p99_ms")]),
        ("burst of N changes (s)", [("kongsplit", "burst_s"), ("bare aiohttp floor", "floor_s")]),
        ("burst / floor", [("ratio", "burst_floor_ratio")]),
        ("drift sweep (s)", [("sweep", "sweep_s")]),
        ("daemon RSS (MiB)", [("peak", "rss_mib")]),
        ("RSS per Rollout (KiB)", [("growth over idle daemon", "rss_per_rollout_kib")]),
        ("CPU s per 1,000 changes", [("burst", "cpu_s_per_1k_changes")]),
        ("/healthz max (ms)", [("all phases", "healthz_max_ms"), ("GC pause", "gc_max_ms")]),
    ]
    fig, axes = plt.subplots(3, 3, figsize=(13, 10))
    for ax, (title, series) in zip(axes.flat, panels, strict=True):
        for label, key in series:
            ys = [r.get(key) for r in results]
            pts = [(x, y) for x, y in zip(ns, ys, strict=True) if y is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=label)
        ax.set_title(title)
        ax.set_xlabel("Rollouts")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8)
    load = ", ".join(f"{r['load_avg_1m']:.2f}" for r in results)
    fig.suptitle(f"kongsplit run at scale, {os.cpu_count()} CPUs (load average {load})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return f"plot: {path}"


async def main_async(plan: Plan, keep: str | None = None) -> list[dict[str, Any]]:
    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def dump() -> None:  # kill -USR1: where every task of the driver is
        for task in asyncio.all_tasks():
            coro: Any = task.get_coro()
            while coro is not None:
                frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
                if frame is not None:
                    print(f"  {frame.f_code.co_filename}:{frame.f_lineno}", file=sys.stderr)
                coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
            print("--", file=sys.stderr)

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)
    started = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="kongsplit-scale-") as tmp:
        workdir = Path(keep or tmp)
        workdir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64), timeout=aiohttp.ClientTimeout(total=120)
        ) as http:
            base = await baseline(plan, workdir, http)
            log(f"idle daemon (no Rollouts): {base:.1f} MiB RSS")
            for n in plan.sizes:
                out = await run_size(plan, n, workdir, http, base, log)
                out["baseline_rss_mib"] = round(base, 1)
                out["wall_s"] = round(time.monotonic() - started, 1)  # since the run began
                out["machine"] = machine()
                results.append(out)
                if keep:  # every size as soon as it is done: a long run leaves what it measured
                    with open(workdir / "results.jsonl", "a") as f:  # noqa: ASYNC230
                        f.write(json.dumps(out) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", help="comma-separated N (default 1000,5000,10000,20000)")
    p.add_argument("--quick", action="store_true", help="CI size: N=500, < 60 s")
    p.add_argument("--rounds", type=int, help="burst/floor rounds (default 2)")
    p.add_argument("--background", type=float, help="seconds of 50 changes/s (default 20)")
    p.add_argument("--slow-at", help="sizes with the slow-Kong phase (default 10000; 'none')")
    p.add_argument("--png", help="where to write the plot (default docs/scale.png; none: --no-png)")
    p.add_argument("--no-png", action="store_true")
    p.add_argument("--keep", metavar="DIR", help="keep the daemons' configs and logs in DIR")
    p.add_argument(
        "--diagnose",
        action="store_true",
        help="the daemons log where their event loop stalled over 50 ms, and a census of their "
        "heap when idle (into the DIR of --keep)",
    )
    p.add_argument(
        "--profile", metavar="DIR", help="py-spy record of the daemon per phase into DIR/<N>/"
    )
    args = p.parse_args(argv)
    plan = Plan.quick_plan() if args.quick else Plan()
    if args.sizes:
        plan.sizes = tuple(int(x.replace("_", "")) for x in args.sizes.split(","))
    if args.rounds:
        plan.rounds = args.rounds
    if args.background:
        plan.background = args.background
    plan.profile = args.profile
    plan.stalls = args.diagnose
    if args.slow_at:
        plan.slow_at = (
            () if args.slow_at == "none" else tuple(int(x) for x in args.slow_at.split(","))
        )
    results = asyncio.run(main_async(plan, args.keep))
    print(f"machine: {json.dumps(machine())}", flush=True)
    print(table(results), flush=True)
    png = args.png or (None if plan.quick else str(ROOT / "docs" / "scale.png"))
    if png and not args.no_png:
        print(plot(results, png), flush=True)
    for r in results:
        print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
