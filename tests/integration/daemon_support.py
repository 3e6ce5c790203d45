"""Support for the daemon tests: the real daemon against kmock (a Kubernetes API emulator we
did not write) and the Kong simulator, over real sockets; builders for Argo's objects."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest
from prometheus_client import CollectorRegistry

from kongsplit.app import Daemon
from kongsplit.config import Settings, load_settings
from kongsplit.reconciler import Reconciler, RolloutState
from kongsplit.rollouts import ReplicaSet, Rollout, RolloutKey
from kongsplit.sim import objects
from kongsplit.sim.kongsim import KongSim

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kmock_shims import (
    REPLICASETS,
    ROLLOUTS,
    SERVICES,
    KubeMock,
    create,
    kmock_watch_shim,  # noqa: F401 - fixture
    kube_mock,  # noqa: F401 - fixture
    patch,
)

UPSTREAM = "web.shop.svc"
KEY = RolloutKey("shop", "web")
STABLE_IP, CANARY_IP = "10.96.0.10", "10.96.0.11"
STABLE_T, CANARY_T = f"{STABLE_IP}:80", f"{CANARY_IP}:80"
STEPS = objects.CANARY_STEPS


def rollout(name: str = "web", *, upstream: str = UPSTREAM, **fields: Any) -> dict[str, Any]:
    """A Rollout as Argo leaves it (``kongsplit.sim.objects.rollout``) for web.shop.svc."""
    return objects.rollout(name, upstream=upstream, **fields)


def service(name: str, ip: str | None, pod_hash: str, **fields: Any) -> dict[str, Any]:
    return objects.service(name, ip, pod_hash, app="web", **fields)


def replicaset(pod_hash: str, replicas: int, available: int) -> dict[str, Any]:
    return objects.replicaset("web", pod_hash, replicas, available)


def weights(kong: KongSim, upstream: str = UPSTREAM) -> dict[str, int]:
    try:
        return {t["target"]: t["weight"] for t in kong.targets(upstream)}
    except (KeyError, LookupError):
        return {}


async def eventually(check: Callable[[], bool], *, within: float = 5.0, what: str = "") -> None:
    """Poll ``check`` every 10 ms; fail after ``within`` seconds (no fixed sleeps in tests)."""
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"not within {within}s: {what}")
        await asyncio.sleep(0.01)


# --- witnesses: proof that the daemon has acted, before asserting that Kong did not move ----


def reconciler(daemon: Daemon) -> Reconciler:
    assert daemon.reconciler is not None, "the daemon has not started its reconciler"
    return daemon.reconciler


def seen_rollout(daemon: Daemon, key: RolloutKey = KEY) -> Rollout:
    """The Rollout as the daemon's store holds it (what its watcher delivered last)."""
    parsed = reconciler(daemon).store.rollouts.get(key)
    assert isinstance(parsed, Rollout), f"{key} is not in the store as a valid Rollout: {parsed}"
    return parsed


def seen_replicaset(daemon: Daemon, name: str, namespace: str = "shop") -> ReplicaSet | None:
    return reconciler(daemon).store.replicasets.get(namespace, {}).get(name)


async def acted_on(
    daemon: Daemon, seen: Callable[[Reconciler], bool], *, what: str, within: float = 5.0
) -> RolloutState | None:
    """Wait until the daemon's store shows a change (``seen``), then until every reconcile
    queued by then has finished; returns web's state. A watcher stores a change and queues its
    Rollout in one step, so after this the daemon has reconciled the change: Kong not moving
    is then a decision, not a change not seen yet."""
    rec = reconciler(daemon)
    await eventually(lambda: seen(rec), within=within, what=what)
    await asyncio.wait_for(rec.queue.join(), within)
    return rec.states.get(KEY)


async def swept(daemon: Daemon, *, within: float = 5.0) -> None:
    """One drift sweep run to the end (what the sweeper does each ``reconcile.interval``):
    every Rollout re-read from Kong and reconciled."""
    rec = reconciler(daemon)
    rec.resync_all()
    await asyncio.wait_for(rec.queue.join(), within)


def kong_reads(kong: KongSim, upstream: str = UPSTREAM) -> int:
    """How often the upstream's targets were read (each sweep reads them)."""
    path = f"/upstreams/{upstream}/targets"
    return sum(1 for r in kong.requests if r.method == "GET" and r.path.startswith(path))


def watch_requests(kube: KubeMock) -> int:
    """Watch requests kmock has received (a held watch counts once it arrives)."""
    return sum(1 for r in kube if r.action == kmock.action.WATCH)


def kong_writes(kong: KongSim) -> int:
    """Requests that may change Kong: every POST, PATCH, PUT or DELETE it answered."""
    return sum(1 for r in kong.requests if r.method in ("POST", "PATCH", "PUT", "DELETE"))


def metric(daemon: Daemon, name: str, **labels: str) -> float:
    total = 0.0
    for family in daemon.metrics.registry.collect():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


class Harness:
    """kmock + KongSim + daemons; objects are changed over HTTP so watchers see it."""

    def __init__(self, kube: KubeMock, kong: KongSim, tmp: Path) -> None:
        self.kube = kube
        self.kong = kong
        self.kubeconfig = tmp / "kubeconfig"
        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: kmock\n"
            f"clusters: [{{name: kmock, cluster: {{server: '{str(kube.url).rstrip('/')}'}}}}]\n"
            "users: [{name: kmock, user: {}}]\n"
            "contexts: [{name: kmock, context: {cluster: kmock, user: kmock}}]\n"
        )
        self.daemons: list[tuple[Daemon, asyncio.Task[int]]] = []

    def settings(self, **overrides: Any) -> Settings:
        flags: dict[str, dict[str, Any]] = {
            "kong": {"url": self.kong.url},
            "kubernetes": {"kubeconfig": str(self.kubeconfig)},
            "server": {"listen": "127.0.0.1:0"},
            "reconcile": {"interval": 0.5, "concurrency": 4},
            "leaderElection": {"enabled": False},
        }
        for section, values in overrides.items():
            flags.setdefault(section, {}).update(values)
        return load_settings(env={}, flags=flags)

    async def start(self, settings: Settings | None = None) -> Daemon:
        daemon = Daemon(settings or self.settings(), registry=CollectorRegistry())
        task = asyncio.create_task(daemon.serve(), name="daemon-under-test")
        self.daemons.append((daemon, task))
        await asyncio.wait_for(daemon.started.wait(), 10)
        async with asyncio.timeout(10):
            for w in daemon.watchers:
                await w.listed.wait()
            running = sum(1 for _, t in self.daemons if not t.done())
            while self.kube.open_watches < running * len(daemon.watchers):
                await asyncio.sleep(0.01)  # kmock offers nothing to await for this
        # kmock replays objects at the start of a watch and subscribes to its event bus only
        # afterwards (it ignores resourceVersion), so a change made in that gap is lost by the
        # emulator itself. Let the streams settle before the test changes anything.
        await asyncio.sleep(0.2)
        return daemon

    async def start_unready(self, settings: Settings | None = None) -> Daemon:
        """Start a daemon without waiting for it to list (for daemons expected to fail)."""
        daemon = Daemon(settings or self.settings(), registry=CollectorRegistry())
        self.daemons.append((daemon, asyncio.create_task(daemon.serve(), name="daemon-under-test")))
        return daemon

    async def wait(self, daemon: Daemon) -> int:
        """The daemon's exit code, once it stops by itself."""
        for d, task in self.daemons:
            if d is daemon:
                return await task
        raise AssertionError("unknown daemon")

    async def stop(self, daemon: Daemon) -> int:
        for d, task in self.daemons:
            if d is daemon:
                d.stop()
                return await asyncio.wait_for(task, 15)
        raise AssertionError("unknown daemon")

    async def create(self, resource: str, obj: dict[str, Any]) -> None:
        await create(self.kube, resource, obj)

    async def patch(self, resource: str, name: str, body: dict[str, Any]) -> None:
        await patch(self.kube, resource, "shop", name, body)

    async def events(self) -> list[dict[str, Any]]:
        """Every core/v1 Event in namespace shop, read over HTTP."""
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{str(self.kube.url).rstrip('/')}/api/v1/namespaces/shop/events") as resp,
        ):
            assert resp.status == 200, await resp.text()
            body = await resp.json()
        items: list[dict[str, Any]] = body.get("items") or []
        return items

    async def seed(self, *, rollout_obj: dict[str, Any] | None = None) -> None:
        await self.create(SERVICES, service("web-stable", STABLE_IP, "v1"))
        await self.create(SERVICES, service("web-canary", CANARY_IP, "v1"))
        await self.create(REPLICASETS, replicaset("v1", 4, 4))
        await self.create(ROLLOUTS, rollout_obj or rollout())

    async def close(self) -> None:
        for d, _ in self.daemons:
            d.stop()
        for _, task in self.daemons:
            try:
                await asyncio.wait_for(task, 15)
            except Exception:
                task.cancel()
