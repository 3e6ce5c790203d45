"""Chaos run: the real ``kongsplit run`` (two replicas, leader election) against the Kubernetes
API simulator and the Kong simulator while Argo's part, Kong and the cluster misbehave.

    python bench/chaos.py --rollouts 1000 --duration 300     # the full run
    python bench/chaos.py --quick                            # CI size: 100 Rollouts, < 45 s

Prints one JSON line last on stdout (``rollouts, changes, aborts, faults_injected, converged,
lost_updates, never_desired_writes, zero_total_moments, stale_writes_gt5s, abort_p50_s,
abort_p99_s, crashes, rss_mib_max`` and more); evidence of every kind of violation goes to
stderr. The invariants and how they are judged: ``bench/chaos_check.py`` and bench/README.md
("Chaos"). Everything listens on 127.0.0.1.

Processes: KongSim (2 Admin API nodes on one database) and KubeSim each in their own process
(``bench/chaos_sims.py``), replica A writing through Kong node 0 and replica B through node 1
(so each commit names its writer), this driver playing Argo Rollouts over the Kubernetes API.
The seed fixes every random choice of the driver (which Rollout does what, when each fault
strikes); the interleaving with the daemons' own timing is not reproducible to the
millisecond.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import math
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from chaos_check import Abort, Commit, Desired, Report, Window, check, percentile  # noqa: E402

from kongsplit.desired import desired_state  # noqa: E402
from kongsplit.rollouts import (  # noqa: E402
    ReplicaSet,
    Rollout,
    Service,
    parse_replicaset,
    parse_rollout,
    parse_service,
)
from kongsplit.sim import objects  # noqa: E402

STEPS = objects.CANARY_STEPS  # 10, pause, 25, pause, 50, pause, 75, pause
REPLICAS = 4
LEASE = ("kongsplit", "kongsplit")  # namespace, name
IDENTITIES = ("chaos-a", "chaos-b")
ROLLOUTS_API = "/apis/argoproj.io/v1alpha1"
MERGE = {"Content-Type": "application/merge-patch+json"}


# --------------------------------------------------------------------------- settings


@dataclass
class Plan:
    """Sizes, rates and counts of one run (``--quick`` and the full run differ only here)."""

    rollouts: int = 1000
    duration: float = 300.0  # seconds of chaos (Argo changes and faults)
    seed: int = 1
    namespaces: int = 4
    changes_per_rollout: float = 6.6  # Argo actions per Rollout over the run, on average
    abort_share: float = 0.09  # of the actions on a progressing Rollout
    promote_full_share: float = 0.03
    aborted_for: tuple[float, float] = (4.0, 12.0)  # how long an abort stays before a retry
    kong_fault_rate: float = 8.0  # fault rules armed per second (each hits 1-3 requests)
    slow_windows: int = 8
    slow_window_length: tuple[float, float] = (2.0, 5.0)
    slow_delay: tuple[float, float] = (1.0, 3.0)  # seconds each answer is late in a window
    wipes: int = 2
    watch_expiries: int = 6  # 410 Gone to every open watch (and compaction)
    watch_drops: int = 6  # every open watch connection cut
    # SIGKILL of the leader. The first kill (and every other one after it) restarts the process
    # after the Lease expired, so the other replica takes over; the rest restart it sooner, so
    # the same identity takes its own Lease back.
    kills: int = 2
    restart_after: tuple[float, float] = (0.5, 2.0)  # the sooner restarts
    # The Lease deleted by hand (kubectl delete lease) while a leader holds it.
    lease_deletions: int = 1
    reconcile_interval: float = 5.0
    lease_duration: float = 3.0
    quiet_max: float = 60.0  # longest wait for convergence once the chaos stops
    settle: float = 3.0  # kept watching after convergence: a late write would show
    sabotage: str | None = None

    @classmethod
    def quick(cls, seed: int) -> Plan:
        return cls(
            rollouts=100,
            duration=22.0,
            seed=seed,
            namespaces=2,
            aborted_for=(2.0, 4.0),
            kong_fault_rate=5.0,
            slow_windows=2,
            slow_window_length=(1.0, 2.0),
            wipes=2,
            watch_expiries=2,
            watch_drops=2,
            kills=1,
            quiet_max=12.0,
            settle=2.0,
        )


# --------------------------------------------------------------------------- processes


def _env() -> dict[str, str]:
    # Unknown KONGSPLIT_* variables make `kongsplit run` exit 2: give the daemons none.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONGSPLIT")}
    env.pop("POD_NAMESPACE", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


async def start_sim(
    role: str, script: str = "chaos_sims.py"
) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    """``python bench/<script> <role>`` (a simulator with its control port): the process and
    the JSON line it prints once it listens (with its ``pid``). bench/scale.py uses it too."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH / script),
        role,
        stdout=asyncio.subprocess.PIPE,
        cwd=str(ROOT),
        env=_env(),
    )
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        line = await proc.stdout.readline()
    if not line:
        raise RuntimeError(f"the {role} simulator exited before listening")
    info: dict[str, Any] = json.loads(line)
    info["pid"] = proc.pid
    return proc, info


async def _stop(proc: asyncio.subprocess.Process, *, grace: float = 15.0) -> int | None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return None
    return proc.returncode


@dataclass
class Replica:
    """One ``kongsplit run`` process slot: restarted with the same identity after a kill."""

    identity: str
    config: Path
    log: Path
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    started_at: float = 0.0  # time.monotonic() of the last start
    expected_exit: bool = False
    crashes: list[str] = field(default_factory=list)
    rss_max: float = 0.0


class Daemons:
    def __init__(self, workdir: Path, plan: Plan, kong_urls: list[str], kubeconfig: Path) -> None:
        self.plan = plan
        self.replicas: list[Replica] = []
        self.stopping = False
        self._watchers: set[asyncio.Task[None]] = set()
        for i, identity in enumerate(IDENTITIES):
            config = workdir / f"{identity}.yaml"
            settings = {
                "kong": {"url": kong_urls[i % len(kong_urls)]},
                "kubernetes": {"kubeconfig": str(kubeconfig)},
                "server": {"listen": "127.0.0.1:0"},
                "reconcile": {"interval": plan.reconcile_interval, "concurrency": 16},
                "leaderElection": {
                    "enabled": True,
                    "leaseNamespace": LEASE[0],
                    "leaseName": LEASE[1],
                    "leaseDurationSeconds": plan.lease_duration,
                    "identity": identity,
                },
                "log": {"format": "json", "level": "info"},
            }
            config.write_text(json.dumps(settings, indent=2))  # JSON is YAML
            self.replicas.append(Replica(identity, config, workdir / f"{identity}.log"))

    def command(self, r: Replica) -> list[str]:
        if self.plan.sabotage:
            return [
                sys.executable,
                str(BENCH / "chaos_sabotage.py"),
                self.plan.sabotage,
                "run",
                "--config",
                str(r.config),
            ]
        return [sys.executable, "-m", "kongsplit", "run", "--config", str(r.config)]

    async def start(self, r: Replica) -> None:
        r.expected_exit = False
        r.starts += 1
        r.started_at = time.monotonic()
        log = open(r.log, "ab")  # noqa: ASYNC230, SIM115 - a local file, closed below
        try:
            log.write(f"--- start {r.starts} at {time.monotonic():.3f}\n".encode())
            log.flush()
            r.proc = await asyncio.create_subprocess_exec(
                *self.command(r),
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                cwd=str(ROOT),
                env=_env(),
            )
        finally:
            log.close()
        task = asyncio.create_task(self._watch(r, r.proc))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _watch(self, r: Replica, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if r.proc is not proc or r.expected_exit or self.stopping:
            return
        tail = r.log.read_text(errors="replace").splitlines()[-5:]
        r.crashes.append(f"{r.identity} exited {code} unasked: " + " | ".join(tail))
        await asyncio.sleep(1.0)  # a pod's restart; the run goes on
        if not self.stopping:
            await self.start(r)

    def kill(self, r: Replica) -> None:
        if r.proc is not None and r.proc.returncode is None:
            r.expected_exit = True
            r.proc.kill()

    def by_identity(self, identity: str) -> Replica | None:
        return next((r for r in self.replicas if r.identity == identity), None)

    def sample_rss(self) -> None:
        for r in self.replicas:
            if r.proc is None or r.proc.returncode is not None:
                continue
            try:
                with open(f"/proc/{r.proc.pid}/status") as f:
                    for line in f:
                        if line.startswith(("VmRSS:", "VmHWM:")):
                            r.rss_max = max(r.rss_max, int(line.split()[1]) / 1024)
            except OSError:
                pass

    async def stop_all(self) -> list[str]:
        """SIGTERM every replica; an exit other than 0 is reported."""
        self.stopping = True
        problems = []
        for r in self.replicas:
            if r.proc is None:
                continue
            self.sample_rss()
            r.expected_exit = True
            code = await _stop(r.proc)
            if code != 0:
                problems.append(f"{r.identity} exited {code} on SIGTERM")
        for t in list(self._watchers):
            t.cancel()
        return problems

    @property
    def crashes(self) -> list[str]:
        return [c for r in self.replicas for c in r.crashes]

    def log_errors(self) -> dict[str, int]:
        """error/critical lines in the daemons' logs, by message start."""
        out: dict[str, int] = {}
        for r in self.replicas:
            for line in r.log.read_text(errors="replace").splitlines():
                if not line.startswith("{"):
                    if "Traceback" in line:
                        out["traceback"] = out.get("traceback", 0) + 1
                    continue
                with contextlib.suppress(ValueError):
                    rec = json.loads(line)
                    if rec.get("level") in ("error", "critical"):
                        key = str(rec.get("msg", ""))[:60]
                        out[key] = out.get(key, 0) + 1
        return out


# --------------------------------------------------------------------------- Argo's part


@dataclass
class App:
    """One Rollout with its Services and ReplicaSets, as the API server last returned them."""

    ns: str
    name: str
    index: int
    rollout: dict[str, Any]
    services: dict[str, dict[str, Any]]
    replicasets: dict[str, dict[str, Any]]
    rev: int = 0
    desired: dict[str, int] | None = None
    phase: str = "promoted"  # promoted | progressing | aborted | promoting
    pending_abort: int | None = None  # index into World.aborts awaiting its "until"
    abort_in_force: int | None = None  # index into World.aborts until status.abort is cleared

    @property
    def upstream(self) -> str:
        return f"{self.name}.{self.ns}.svc"

    @property
    def canary_target(self) -> str:
        return f"{_ip(self.index, True)}:80"

    def pod_hash(self, rev: int) -> str:
        return f"h{self.index}r{rev}"


def _ip(i: int, canary: bool) -> str:
    n = 2 * i + (1 if canary else 0)
    return f"10.{96 + n // 65536}.{(n // 256) % 256}.{n % 256}"


def _build_app(i: int, namespaces: int) -> App:
    ns = f"shop-{i % namespaces}"
    name = f"app{i}"
    h0 = f"h{i}r0"
    ro = objects.rollout(
        name,
        ns,
        pod_hash=h0,
        replicas=REPLICAS,
        annotations={"kongsplit.io/upstream": f"{name}.{ns}.svc", "kongsplit.io/port": "http"},
        uid=f"uid-{ns}-{name}",
    )
    # A canary that has pods is past Argo's replica gate at every step, so the weight depends on
    # the Rollout alone and a change to it is one object (the gate's holds are unit-tested).
    ro["spec"]["strategy"]["canary"]["replicaProgressThreshold"] = {"type": "Pods", "value": 1}
    services = {
        f"{name}-stable": objects.service(f"{name}-stable", _ip(i, False), h0, ns, app=name),
        f"{name}-canary": objects.service(f"{name}-canary", _ip(i, True), h0, ns, app=name),
    }
    rs = objects.replicaset(name, h0, REPLICAS, REPLICAS, ns, owner_uid=f"uid-{ns}-{name}")
    return App(ns, name, i, ro, services, {rs["metadata"]["name"]: rs})


def compute_desired(app: App) -> dict[str, int] | None:
    """kongsplit's own engine on the objects as they are now; None on a hold (keep)."""
    ro = parse_rollout(app.rollout)
    if not isinstance(ro, Rollout):
        raise AssertionError(f"the driver wrote an unparseable Rollout: {ro}")
    services = {}
    for name, obj in app.services.items():
        if isinstance(svc := parse_service(obj), Service):
            services[name] = svc
    rss = [
        rs for o in app.replicasets.values() if isinstance(rs := parse_replicaset(o), ReplicaSet)
    ]
    d = desired_state(ro, services=services, replicasets=rss)
    if d.plan is None or d.hold is not None:
        return None
    return d.plan.weights()


class Kube:
    """The Kubernetes API as Argo uses it (plain HTTP to the simulator)."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.writes = 0

    async def _call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        self.writes += 1
        async with self.http.request(method, self.url + path, json=body, **kw) as resp:
            data = await resp.json()
            if resp.status >= 300:
                raise RuntimeError(f"{method} {path}: {resp.status} {data}")
            return data

    async def patch_rollout_status(self, app: App, status: dict[str, Any]) -> None:
        path = f"{ROLLOUTS_API}/namespaces/{app.ns}/rollouts/{app.name}/status"
        app.rollout = await self._call("PATCH", path, {"status": status}, headers=MERGE)

    async def patch_service_hash(self, app: App, service: str, pod_hash: str) -> None:
        path = f"/api/v1/namespaces/{app.ns}/services/{service}"
        body = {"spec": {"selector": {objects.HASH_LABEL: pod_hash}}}
        app.services[service] = await self._call("PATCH", path, body, headers=MERGE)

    async def create_replicaset(self, app: App, rs: dict[str, Any]) -> None:
        path = f"/apis/apps/v1/namespaces/{app.ns}/replicasets"
        created = await self._call("POST", path, rs)
        app.replicasets[created["metadata"]["name"]] = created

    async def delete_replicaset(self, app: App, name: str) -> None:
        await self._call("DELETE", f"/apis/apps/v1/namespaces/{app.ns}/replicasets/{name}")
        app.replicasets.pop(name, None)

    async def delete_lease(self) -> None:
        ns, name = LEASE
        path = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}"
        async with self.http.delete(self.url + path) as resp:
            await resp.read()

    async def lease(self) -> dict[str, Any] | None:
        ns, name = LEASE
        path = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}"
        async with self.http.get(self.url + path) as resp:
            if resp.status != 200:
                return None
            lease: dict[str, Any] = await resp.json()
            return lease


class World:
    """Every Rollout, Argo's actions on them, and the desired history they make."""

    def __init__(self, plan: Plan, rng: random.Random) -> None:
        self.plan = plan
        self.rng = rng
        self.apps = [_build_app(i, plan.namespaces) for i in range(plan.rollouts)]
        self.desired: dict[str, list[list[Any]]] = {}  # upstream -> [start, end, weights]
        # [upstream, canary, t, until, canary_before, cleared]
        self.aborts: list[list[Any]] = []
        self.actions: dict[str, int] = {}
        self.mean_gap = plan.duration / plan.changes_per_rollout

    def record(self, app: App, sent: float, acked: float) -> None:
        new = compute_desired(app)
        if new is None or new == app.desired:
            return
        history = self.desired.setdefault(app.upstream, [])
        if history:
            history[-1][1] = acked
        history.append([sent, math.inf, new])
        app.desired = new
        if app.pending_abort is not None:
            self.aborts[app.pending_abort][3] = sent
            app.pending_abort = None

    def initial_objects(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for app in self.apps:
            out += list(app.services.values()) + list(app.replicasets.values())
        out += [app.rollout for app in self.apps]
        return out

    def gap(self) -> float:
        return min(max(self.rng.expovariate(1 / self.mean_gap), 0.3), 3 * self.mean_gap)

    async def act(self, kube: Kube, app: App) -> float:
        """One Argo action on ``app``; the seconds until its next one."""
        rng = self.rng
        if app.phase == "promoted" or (app.phase == "aborted" and rng.random() < 0.5):
            await self._new_revision(kube, app)
            return self.gap()
        if app.phase == "aborted":
            self._count("retry")
            await self._status(kube, app, {"abort": None, "currentStepIndex": 0})
            app.phase = "progressing"
            return self.gap()
        if app.phase == "promoting" or int(app.rollout["status"].get("currentStepIndex", 0)) >= len(
            STEPS
        ):
            await self._promote(kube, app)
            return self.gap()
        roll = rng.random()
        if roll < self.plan.abort_share:
            self._count("abort")
            before = (app.desired or {}).get(app.canary_target, 0)
            sent = time.monotonic()
            await self._status(kube, app, {"abort": True}, sent=sent)
            # Recorded once the API took it; no await between these lines (other Rollouts append).
            self.aborts.append([app.upstream, app.canary_target, sent, math.inf, before, math.inf])
            app.pending_abort = len(self.aborts) - 1  # its "until": the next desired change
            app.abort_in_force = app.pending_abort
            app.phase = "aborted"
            return rng.uniform(*self.plan.aborted_for)
        if roll < self.plan.abort_share + self.plan.promote_full_share:
            self._count("promote_full")
            await self._status(kube, app, {"promoteFull": True})
            app.phase = "promoting"
            return self.gap()
        self._count("step")
        index = int(app.rollout["status"].get("currentStepIndex", 0))
        await self._status(kube, app, {"currentStepIndex": index + 1})
        return self.gap()

    def _count(self, what: str) -> None:
        self.actions[what] = self.actions.get(what, 0) + 1

    async def _status(
        self, kube: Kube, app: App, status: dict[str, Any], *, sent: float | None = None
    ) -> None:
        sent = time.monotonic() if sent is None else sent
        await kube.patch_rollout_status(app, status)
        acked = time.monotonic()
        if "abort" in status and status["abort"] is None and app.abort_in_force is not None:
            self.aborts[app.abort_in_force][5] = acked  # the abort was in force until now
            app.abort_in_force = None
        self.record(app, sent, acked)

    async def _new_revision(self, kube: Kube, app: App) -> None:
        """Argo's order: the new ReplicaSet, the canary Service's selector, then the status."""
        self._count("new_revision")
        stable = app.rollout["status"]["stableRS"]
        for name in [n for n, rs in app.replicasets.items() if _hash_of(rs) != stable]:
            sent = time.monotonic()
            await kube.delete_replicaset(app, name)  # an old revision, scaled down long ago
            self.record(app, sent, time.monotonic())
        app.rev += 1
        new = app.pod_hash(app.rev)
        rs = objects.replicaset(
            app.name, new, REPLICAS, REPLICAS, app.ns, owner_uid=f"uid-{app.ns}-{app.name}"
        )
        sent = time.monotonic()
        await kube.create_replicaset(app, rs)
        self.record(app, sent, time.monotonic())
        sent = time.monotonic()
        await kube.patch_service_hash(app, f"{app.name}-canary", new)
        self.record(app, sent, time.monotonic())
        await self._status(
            kube,
            app,
            {"currentPodHash": new, "currentStepIndex": 0, "abort": None, "promoteFull": None},
        )
        app.phase = "progressing"

    async def _promote(self, kube: Kube, app: App) -> None:
        """Argo's order: the stable Service's selector first, then status.stableRS."""
        self._count("promote")
        current = app.rollout["status"]["currentPodHash"]
        sent = time.monotonic()
        await kube.patch_service_hash(app, f"{app.name}-stable", current)
        self.record(app, sent, time.monotonic())
        await self._status(kube, app, {"stableRS": current, "promoteFull": None})
        app.phase = "promoted"


def _hash_of(rs: dict[str, Any]) -> str:
    return str(rs["metadata"]["labels"][objects.HASH_LABEL])


# --------------------------------------------------------------------------- the run


@dataclass
class Faulted:
    """What was done to the system, and when."""

    kong_rules: int = 0
    kong_refused: int = 0
    wipes: list[float] = field(default_factory=list)
    expiries: int = 0
    drops: int = 0
    kills: list[tuple[float, str]] = field(default_factory=list)
    lease_deletions: list[float] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)


class Run:
    def __init__(
        self, plan: Plan, workdir: Path, *, log: Callable[[str], None], keep: bool = False
    ) -> None:
        self.plan = plan
        self.workdir = workdir
        self.keep = keep  # write history.json (everything the judge saw) into workdir
        self.log = log
        self.rng = random.Random(plan.seed)
        self.world = World(plan, random.Random(self.rng.random()))
        self.faults = Faulted()
        self.lease_log: list[tuple[float, str, str]] = []  # time, holder, resourceVersion
        self.stop_chaos = asyncio.Event()
        self.restarts: list[asyncio.Task[None]] = []  # kills, each until its process is back
        self.driver_errors: list[str] = []

    async def main(self) -> dict[str, Any]:
        wall = time.monotonic()
        kong_proc, kong = await start_sim("kong")
        kube_proc, kube_info = await start_sim("kube")
        self.kong_control = kong["control"]
        self.kube_control = kube_info["control"]
        kubeconfig = self.workdir / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "chaos", "cluster": {"server": kube_info["url"]}}],
                    "users": [{"name": "chaos", "user": {}}],
                    "contexts": [
                        {"name": "chaos", "context": {"cluster": "chaos", "user": "chaos"}}
                    ],
                    "current-context": "chaos",
                }
            )
        )
        daemons = Daemons(self.workdir, self.plan, kong["urls"], kubeconfig)
        self.daemons = daemons
        timeout = aiohttp.ClientTimeout(total=30)
        connector = aiohttp.TCPConnector(limit=64)
        try:
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
                self.http = http
                kube = Kube(http, kube_info["url"])
                result = await self._run(kube, daemons, wall)
                result["k8s_writes"] = kube.writes
        finally:
            crashes_at_stop = await daemons.stop_all()
            await _stop(kube_proc)
            await _stop(kong_proc)
        result["crashes"] += len(crashes_at_stop)
        result["crash_details"] = daemons.crashes + crashes_at_stop
        result["rss_mib_max"] = round(max(r.rss_max for r in daemons.replicas), 1)
        result["wall_s"] = round(time.monotonic() - wall, 1)
        return result

    async def _post(self, url: str, body: Any = None) -> Any:
        async with self.http.post(url, json=body) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def _get(self, url: str) -> Any:
        async with self.http.get(url) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def _run(self, kube: Kube, daemons: Daemons, wall: float) -> dict[str, Any]:
        plan, world = self.plan, self.world
        sent = time.monotonic()
        await self._post(f"{self.kube_control}/apply", world.initial_objects())
        acked = time.monotonic()
        for app in world.apps:
            world.record(app, sent, acked)
        for r in daemons.replicas:
            await daemons.start(r)
        samplers = [
            asyncio.create_task(self._sample_rss()),
            asyncio.create_task(self._watch_lease(kube)),
        ]
        try:
            synced = await self._converge(deadline=60 + plan.rollouts * 0.06)
            if synced is None:
                raise RuntimeError("the daemons never brought Kong to the initial weights")
            self.log(f"initial sync: {synced:.1f}s; chaos for {plan.duration:.0f}s")
            self.origin = time.monotonic()
            chaos = [
                asyncio.create_task(self._argo(kube)),
                asyncio.create_task(self._kong_faults()),
                asyncio.create_task(self._scheduled(kube)),
            ]
            await asyncio.sleep(plan.duration)
            self.stop_chaos.set()
            await asyncio.gather(*chaos)
            quiet_start = time.monotonic()
            await self._post(f"{self.kong_control}/clear")
            async with asyncio.timeout(30):  # a replica killed near the end is back for the quiet
                await asyncio.gather(*self.restarts)
            converged_after = await self._converge(deadline=plan.quiet_max)
            await asyncio.sleep(plan.settle)
            end = time.monotonic()
            final = await self._get(f"{self.kong_control}/state")
            history = await self._get(f"{self.kong_control}/history")
        finally:
            for t in samplers:
                t.cancel()
            await asyncio.gather(*samplers, return_exceptions=True)
        return self._judge(history, final, end, quiet_start, converged_after)

    async def _converge(self, *, deadline: float) -> float | None:
        """Seconds until Kong holds every upstream's current desired weights, or None."""
        start = time.monotonic()
        while time.monotonic() - start < deadline:
            state = await self._get(f"{self.kong_control}/state")
            if all(
                app.desired is not None
                and all(state.get(app.upstream, {}).get(t) == w for t, w in app.desired.items())
                for app in self.world.apps
            ):
                return time.monotonic() - start
            await asyncio.sleep(0.25)
        return None

    async def _sample_rss(self) -> None:
        while True:
            self.daemons.sample_rss()
            await asyncio.sleep(0.5)

    async def _watch_lease(self, kube: Kube) -> None:
        last = None
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                lease = await kube.lease()
                if lease is not None:
                    holder = str((lease.get("spec") or {}).get("holderIdentity") or "")
                    rv = str(lease["metadata"]["resourceVersion"])
                    if (holder, rv) != last:
                        last = (holder, rv)
                        self.lease_log.append((time.monotonic(), holder, rv))
            await asyncio.sleep(0.1)

    # ---- Argo

    async def _argo(self, kube: Kube) -> None:
        world = self.world
        rng = world.rng
        start = time.monotonic()
        queue = [(start + rng.uniform(0, world.mean_gap), i) for i in range(len(world.apps))]
        heapq.heapify(queue)
        limit = asyncio.Semaphore(32)
        running: set[asyncio.Task[None]] = set()

        async def one(i: int) -> None:
            try:
                async with limit:
                    wait = await world.act(kube, world.apps[i])
            except (aiohttp.ClientError, TimeoutError, RuntimeError) as e:
                # The simulator refused or did not answer: Argo would try again later too.
                self.driver_errors.append(f"{world.apps[i].name}: {e!r}"[:300])
                wait = 1.0
            if not self.stop_chaos.is_set():
                heapq.heappush(queue, (time.monotonic() + wait, i))

        while not self.stop_chaos.is_set():
            if not queue:
                await asyncio.sleep(0.05)
                continue
            due, i = queue[0]
            now = time.monotonic()
            if due > now:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop_chaos.wait(), min(due - now, 0.2))
                continue
            heapq.heappop(queue)
            task = asyncio.create_task(one(i))
            running.add(task)
            task.add_done_callback(running.discard)
        await asyncio.gather(*running)

    # ---- faults

    async def _kong_faults(self) -> None:
        rng = random.Random(self.rng.random())
        methods = [None, "PATCH", "PATCH", "GET"]  # POSTs are rare: a rule for them would wait
        while not self.stop_chaos.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.stop_chaos.wait(), rng.expovariate(self.plan.kong_fault_rate)
                )
            if self.stop_chaos.is_set():
                return
            roll = rng.random()
            method = rng.choice(methods)
            body: dict[str, Any]
            if roll < 0.5:
                body = {
                    "kind": "status",
                    "n": rng.randint(1, 3),
                    "status": rng.choice([500, 502, 503, 504]),
                }
            elif roll < 0.75:
                body = {"kind": "rate_limit", "n": rng.randint(1, 3), "retry_after": 1}
            else:
                body = {"kind": "reset", "n": rng.randint(1, 2), "after": rng.random() < 0.5}
            if method is not None:
                body["method"] = method
            armed = await self._post(f"{self.kong_control}/faults", body)
            if armed["armed"]:
                self.faults.kong_rules += 1
            else:
                self.faults.kong_refused += 1

    def _schedule(self) -> list[tuple[float, str]]:
        """(seconds into the chaos, what) for the counted faults, from the seed."""
        p, rng = self.plan, random.Random(self.rng.random())
        d = p.duration
        events: list[tuple[float, str]] = []
        events += [(rng.uniform(0.15 * d, 0.85 * d), "wipe") for _ in range(p.wipes)]
        events += [(rng.uniform(0.05 * d, 0.9 * d), "expire") for _ in range(p.watch_expiries)]
        events += [(rng.uniform(0.05 * d, 0.9 * d), "drop") for _ in range(p.watch_drops)]
        # Kills spread out: one per equal slice of the middle of the run.
        for k in range(p.kills):
            lo = 0.15 * d + k * 0.7 * d / p.kills
            events.append((rng.uniform(lo, lo + 0.5 * 0.7 * d / p.kills), "kill"))
        events += [
            (rng.uniform(0.7 * d, 0.85 * d), "delete-lease") for _ in range(p.lease_deletions)
        ]
        # Slow windows: one per equal slice, not overlapping.
        for k in range(p.slow_windows):
            lo = 0.05 * d + k * 0.85 * d / p.slow_windows
            events.append((rng.uniform(lo, lo + 0.3 * 0.85 * d / p.slow_windows), "slow"))
        return sorted(events)

    async def _scheduled(self, kube: Kube) -> None:
        rng = random.Random(self.rng.random())
        for at, what in self._schedule():
            delay = self.origin + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            if what == "wipe":
                await self._post(f"{self.kong_control}/wipe")
                self.faults.wipes.append(now)
            elif what == "expire":
                await self._post(f"{self.kube_control}/expire")
                self.faults.expiries += 1
            elif what == "drop":
                await self._post(f"{self.kube_control}/drop")
                self.faults.drops += 1
            elif what == "delete-lease":
                await kube.delete_lease()
                self.faults.lease_deletions.append(now)
            elif what == "slow":
                length = rng.uniform(*self.plan.slow_window_length)
                seconds = rng.uniform(*self.plan.slow_delay)
                after = rng.random() < 0.5
                body = {"seconds": seconds, "duration": length, "after": after}
                await self._post(f"{self.kong_control}/slow", body)
                self.faults.windows.append(Window(now, now + length + seconds, "kong-slow"))
            elif what == "kill":
                if len(self.faults.kills) % 2 == 0:  # failover: back after the Lease expired
                    lease = self.plan.lease_duration
                    later = rng.uniform(lease + 0.5, lease + 2.0)
                else:
                    later = rng.uniform(*self.plan.restart_after)
                self.restarts.append(asyncio.create_task(self._kill_leader(later)))

    async def _kill_leader(self, restart_after: float) -> None:
        holder = self.lease_log[-1][1] if self.lease_log else ""
        replica = self.daemons.by_identity(holder)
        if replica is None:
            self.log(f"no leader to kill (lease holder {holder!r})")
            return
        rv_at_kill = self.lease_log[-1][2]
        starts = replica.starts
        self.daemons.kill(replica)
        killed = time.monotonic()
        self.faults.kills.append((killed, replica.identity))
        restarted = asyncio.create_task(self._restart(replica, restart_after))
        # No leader until a live replica writes the Lease: the other one, or this one once it
        # is back (a renewal the dead process had sent before the kill can still land).
        deadline = killed + 30.0
        while time.monotonic() < deadline:
            back = replica.started_at if replica.starts > starts else math.inf
            after = [
                t
                for t, holder, rv in self.lease_log
                if t > killed and rv != rv_at_kill and (holder != replica.identity or t > back)
            ]
            if after:
                deadline = after[0]
                break
            await asyncio.sleep(0.05)
        self.faults.windows.append(Window(killed, deadline, "no-leader"))
        await restarted

    async def _restart(self, replica: Replica, after: float) -> None:
        await asyncio.sleep(after)
        if replica.proc is not None:
            await replica.proc.wait()
        await self.daemons.start(replica)

    # ---- judging

    def _judge(
        self,
        history: dict[str, Any],
        final: dict[str, dict[str, int]],
        end: float,
        quiet_start: float,
        converged_after: float | None,
    ) -> dict[str, Any]:
        world, plan = self.world, self.plan
        desired = {
            u: [Desired(s, e, w) for s, e, w in entries] for u, entries in world.desired.items()
        }
        commits = [Commit(t, u, n, w) for t, u, n, w in history["commits"]]
        aborts = [
            Abort(u, c, t, until if math.isfinite(until) else end, before, cleared)
            for u, c, t, until, before, cleared in world.aborts
        ]
        if self.keep:
            with open(self.workdir / "history.json", "w") as f:
                json.dump(
                    {
                        "origin": self.origin,
                        "desired": world.desired,
                        "aborts": world.aborts,
                        "windows": [vars(w) for w in self.faults.windows],
                        "kills": self.faults.kills,
                        "lease": self.lease_log,
                        "driver_errors": self.driver_errors,
                        **history,
                    },
                    f,
                    default=str,
                )
        report = check(
            desired,
            commits,
            wipes=history["wipes"],
            final={app.upstream: final.get(app.upstream) for app in world.apps},
            aborts=aborts,
            windows=self.faults.windows,
            origin=self.origin,
        )
        self.report = report
        crashes = self.daemons.crashes
        faults = dict(history["faults"])
        injected = sum(faults.values())
        all_latencies = report.abort_latencies_all

        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 3)

        by_node: dict[str, int] = {}
        for _, _, node, _ in history["commits"]:
            key = IDENTITIES[node] if node is not None and node < len(IDENTITIES) else str(node)
            by_node[key] = by_node.get(key, 0) + 1
        overlap = _two_writers(commits)
        for t0, t1, n in overlap:
            report.example(
                "two_writers",
                t=round(t0 - self.origin, 3),
                lasted_s=round(t1 - t0, 3),
                commits=n,
            )
        _attach_faults(report, history["fault_log"], self.origin)
        return {
            "seed": plan.seed,
            "rollouts": plan.rollouts,
            "duration_s": plan.duration,
            "changes": sum(world.actions.values()),
            "aborts": world.actions.get("abort", 0),
            "faults_injected": injected
            + len(self.faults.wipes)
            + self.faults.expiries
            + self.faults.drops
            + len(self.faults.kills)
            + len(self.faults.lease_deletions),
            "converged": converged_after is not None and report.lost_updates == 0,
            "lost_updates": report.lost_updates,
            "never_desired_writes": report.never_desired_writes,
            "zero_total_moments": report.zero_total_moments,
            "stale_writes_gt5s": report.stale_writes_gt5s,
            "abort_p50_s": r(percentile(report.abort_latencies, 0.5)),
            "abort_p99_s": r(percentile(report.abort_latencies, 0.99)),
            "crashes": len(crashes),
            "rss_mib_max": 0.0,  # filled in once the daemons are stopped
            # beyond the required keys
            "abort_p50_s_all": r(percentile(all_latencies, 0.5)),
            "abort_p99_s_all": r(percentile(all_latencies, 0.99)),
            "abort_max_s_all": r(max(all_latencies, default=None) if all_latencies else None),
            "abort_max_s": r(max(report.abort_latencies) if report.abort_latencies else None),
            "aborts_measured": len(report.abort_latencies),
            "aborts_in_windows": len(report.abort_latencies_excluded),
            "aborts_unresolved": report.aborts_unresolved,
            "aborts_trivial": report.aborts_trivial,
            "write_order_violations": report.write_order_violations,
            "unknown_target_writes": report.unknown_target_writes,
            "stale_max_s": round(report.stale_max_s, 3),
            "converge_s": r(converged_after),
            "quiet_s": round(end - quiet_start, 1),
            "writes": report.writes,
            "commits": report.commits,
            "commits_by_replica": by_node,
            "two_writer_spells": len(overlap),
            "two_writer_s": round(sum(t1 - t0 for t0, t1, _ in overlap), 3),
            "lease_deletions": len(self.faults.lease_deletions),
            "actions": world.actions,
            "k8s_writes": 0,
            "kong_faults": faults,
            "kong_requests": history["requests"],
            "wipes": len(self.faults.wipes),
            "watch_410s": self.faults.expiries,
            "watch_drops": self.faults.drops,
            "kills": [k for _, k in self.faults.kills],
            "slow_windows": len([w for w in self.faults.windows if w.kind == "kong-slow"]),
            "no_leader_s": [
                round(w.end - w.start, 2) for w in self.faults.windows if w.kind == "no-leader"
            ],
            "leaders": [
                h
                for i, (_, h, _) in enumerate(self.lease_log)
                if i == 0 or h != self.lease_log[i - 1][1]
            ],
            "daemon_errors": self.daemons.log_errors(),
            "driver_errors": len(self.driver_errors),
            "driver_error_details": self.driver_errors[:5],
            "sabotage": plan.sabotage,
        }


def _two_writers(commits: list[Commit], gap: float = 1.0) -> list[tuple[float, float, int]]:
    """Spells in which both replicas committed to Kong: (first, last, commits) of every run of
    commits where each one is within ``gap`` seconds of a commit by the other replica. A clean
    failover has none: the dead leader wrote nothing after the kill."""
    ordered = sorted((c for c in commits if c.node is not None), key=lambda c: c.t)
    last: dict[int, float] = {}
    spells: list[tuple[float, float, int]] = []
    for c in ordered:
        assert c.node is not None
        others = [t for n, t in last.items() if n != c.node and c.t - t <= gap]
        if others:
            start = min(others)
            if spells and start <= spells[-1][1] + gap:
                first, _, n = spells[-1]
                spells[-1] = (first, c.t, n + 1)
            else:
                spells.append((start, c.t, 2))
        last[c.node] = c.t
    return spells


def _attach_faults(report: Report, fault_log: list[list[Any]], origin: float) -> None:
    """Name the Kong faults that hit an upstream's requests during each slow or unresolved
    abort and before each stale write (the evidence a reader needs)."""
    by_upstream: dict[str, list[tuple[float, str]]] = {}
    for t, method, path, _node, what in fault_log:
        parts = path.split("/")
        if len(parts) > 2 and parts[1] == "upstreams":
            by_upstream.setdefault(parts[2], []).append((t - origin, f"{method} {what}"))
        else:
            by_upstream.setdefault("", []).append((t - origin, f"{method} {path} {what}"))
    for kind in ("abort_slow", "abort_unresolved", "stale"):
        for e in report.examples.get(kind, []):
            # from 2 s before (a retry chain in progress counts) to the end of the interval
            start = float(e["t"]) - (float(e["late_s"]) if kind == "stale" else 0.0) - 2.0
            end = float(e["t"]) + float(e.get("latency_s") or e.get("waited_s") or 0.0)
            hits = by_upstream.get(str(e["upstream"]), [])
            e["kong_faults"] = [f"{t:.3f} {w}" for t, w in hits if start - 0.05 <= t <= end]


def describe(report: Report) -> str:
    """The evidence of every kind of violation, for people (stderr)."""
    lines = []
    for kind, found in report.examples.items():
        lines.append(f"{kind}: {len(found)} example(s)")
        lines += [f"  {json.dumps(e, default=str)}" for e in found]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rollouts", type=int, default=None, help="Rollouts (1000; --quick 100)")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds of chaos (300; --quick 22)"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--quick", action="store_true", help="the CI size: 100 Rollouts, < 45 s")
    parser.add_argument(
        "--sabotage",
        choices=("write-order", "no-abort", "slow-writes", "half-canary"),
        default=None,
        help="run the daemons with a deliberate defect (bench/chaos_sabotage.py): the run must "
        "then fail its invariants",
    )
    parser.add_argument("--keep", metavar="DIR", help="keep the daemons' logs and configs here")
    return parser.parse_args(argv)


def plan_from(args: argparse.Namespace) -> Plan:
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    plan = Plan.quick(seed) if args.quick else Plan(seed=seed)
    if args.rollouts is not None:
        plan.rollouts = args.rollouts
    if args.duration is not None:
        plan.duration = args.duration
    plan.sabotage = args.sabotage
    return plan


async def run(
    plan: Plan, *, keep: str | None = None, log: Callable[[str], None] | None = None
) -> tuple[dict[str, Any], Report]:
    say = log or (lambda s: print(s, file=sys.stderr, flush=True))
    if keep:
        workdir = Path(keep)
        os.makedirs(workdir, exist_ok=True)
        runner = Run(plan, workdir, log=say, keep=True)
        result = await runner.main()
    else:
        with tempfile.TemporaryDirectory(prefix="kongsplit-chaos-") as tmp:
            runner = Run(plan, Path(tmp), log=say)
            result = await runner.main()
    return result, runner.report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = plan_from(args)
    print(
        f"chaos: {plan.rollouts} Rollouts, {plan.duration:.0f}s, seed {plan.seed}"
        + (f", sabotage {plan.sabotage}" if plan.sabotage else ""),
        file=sys.stderr,
        flush=True,
    )
    result, report = asyncio.run(run(plan, keep=args.keep))
    evidence = describe(report)
    if evidence:
        print(evidence, file=sys.stderr, flush=True)
    for line in result.get("crash_details") or []:
        print(f"crash: {line}", file=sys.stderr, flush=True)
    for line in result.pop("driver_error_details", None) or []:
        print(f"driver error: {line}", file=sys.stderr, flush=True)
    result.pop("crash_details", None)
    print(json.dumps(result, separators=(", ", ": ")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
