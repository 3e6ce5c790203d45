"""The simulators of the scale run (``bench/scale.py``), each in its own process with a control
port (loopback only), and the objects the run is made of.

    python bench/scale_sims.py kong     # KongSim, one Admin API node (DB mode)
    python bench/scale_sims.py kube     # KubeSim
    python bench/scale_sims.py probe    # polls the daemon's /healthz every 50 ms

Each prints one JSON line with its URLs, then serves until SIGTERM/SIGINT. The control port is
the driver's, never the daemon's. Times are ``time.monotonic()``: one clock for every process
on the machine, so a change stamped by KubeSim and the commit it causes in KongSim compare.

kong: ``POST /expect`` sets the weights every upstream should reach (``GET /progress`` says
how many do, and when the last one got there), ``POST /record`` turns the commit log on or off
(``GET /commits`` takes it), ``POST /window`` opens a request log (``GET /window`` takes it:
time and kind of every request since), ``POST /slow`` and ``POST /clear`` arm and disarm a delay
on every request, ``GET /targets`` lists every target (for the bare-aiohttp floor), ``GET /stats``
the process's CPU time and requests served.

probe: ``POST /target`` names the daemon to poll (``{"url": ...}``; null stops), ``GET /samples``
takes every poll since the last take: ``[t, seconds, ok]``, ``t`` when it was sent. The prober
has a process of its own so that the driver's work (the bare-aiohttp floor is CPU-bound) does not
show up as the daemon's latency.

kube: ``POST /populate`` creates N Rollouts with their Services and ReplicaSets,
``POST /flip`` changes many Rollouts' step at once (a burst, in-process, as fast as the API
server takes them), ``POST /record`` and ``GET /changes`` log when each Rollout's status
changed, ``GET /stats``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos_sims import _control
from fleet import (  # noqa: F401 - scale.py takes them from here too
    FLIP,
    NAMESPACE,
    STEPS,
    replicasets,
    rollout,
    services,
    upstream_of,
    weights_at,
)

from kongsplit.sim.kongsim import KongSim
from kongsplit.sim.kongsim.faults import FaultAction, FaultRule
from kongsplit.sim.kubesim import KubeSim

ROLLOUTS = ("argoproj.io/v1alpha1", "rollouts")


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# --------------------------------------------------------------------------- Kong


def _kind(method: str, path: str) -> str:
    """What a request is, for the request log: ``GET targets``, ``PATCH target``…"""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["upstreams"]:
        if len(parts) == 1:
            return f"{method} upstreams"
        if len(parts) == 2:
            return f"{method} upstream"
        if parts[2] == "targets":
            return f"{method} {'targets' if len(parts) == 3 else 'target'}"
    return f"{method} {'/'.join(parts[:1]) or '/'}"


class KongSide:
    def __init__(self) -> None:
        self.sim = KongSim(nodes=1)
        self.ws = self.sim.store.workspace("default")
        self.expected: dict[str, dict[str, int]] = {}
        self.matched: set[str] = set()
        self.done_at: float | None = None
        self.last_match_at: float | None = None
        self.recording = False
        self.commits: list[tuple[float, str, dict[str, int]]] = []
        self.window: list[tuple[float, str]] | None = None
        self.slow_rule: FaultRule | None = None
        self.sim.store.on_commit.append(self._committed)
        take = self.sim.faults.take

        def logged(method: str, path: str, node: int) -> FaultAction:
            if self.window is not None:
                self.window.append((time.monotonic(), _kind(method, path)))
            return take(method, path, node)

        self.sim.faults.take = logged  # type: ignore[method-assign]

    def _weights(self, upstream: str) -> dict[str, int] | None:
        ws = self.ws
        assert ws is not None
        uid = ws.upstream_ids_by_name.get(upstream)
        if uid is None:
            return None
        return {
            target: ws.targets[tid]["weight"]
            for target, tid in ws.targets_by_upstream.get(uid, {}).items()
        }

    def _committed(self, workspace: str, upstream: str, node: int | None) -> None:
        if not self.recording and upstream not in self.expected:
            return
        now = time.monotonic()
        weights = self._weights(upstream) or {}
        if self.recording:
            self.commits.append((now, upstream, weights))
        self._check(upstream, weights, now)

    def _check(self, upstream: str, weights: dict[str, int], now: float) -> None:
        want = self.expected.get(upstream)
        if want is None:
            return
        if all(weights.get(t) == w for t, w in want.items()):
            if upstream not in self.matched:
                self.matched.add(upstream)
                self.last_match_at = now
                if len(self.matched) == len(self.expected) and self.done_at is None:
                    self.done_at = now
        else:
            self.matched.discard(upstream)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/expect", self.expect)
        app.router.add_get("/progress", self.progress)
        app.router.add_post("/record", self.record)
        app.router.add_get("/commits", self.take_commits)
        app.router.add_post("/window", self.open_window)
        app.router.add_get("/window", self.take_window)
        app.router.add_post("/slow", self.slow)
        app.router.add_post("/clear", self.clear)
        app.router.add_get("/targets", self.targets)
        app.router.add_get("/stats", self.stats)
        return app

    async def expect(self, request: web.Request) -> web.Response:
        """``{"index": {"<i>": step}}``: app{i}'s upstream must reach the weights of that
        step. Upstreams already there count at once."""
        body: dict[str, Any] = await request.json()
        self.expected = {
            upstream_of(int(i)): weights_at(int(i), int(step)) for i, step in body["index"].items()
        }
        self.matched, self.done_at, self.last_match_at = set(), None, None
        now = time.monotonic()
        for upstream in self.expected:
            self._check(upstream, self._weights(upstream) or {}, now)
        return web.json_response({"matched": len(self.matched), "t": now})

    async def progress(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "matched": len(self.matched),
                "expected": len(self.expected),
                "done_at": self.done_at,
                "last_match_at": self.last_match_at,
            }
        )

    async def record(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        self.recording = bool(body["on"])
        if self.recording:
            self.commits = []
        return web.json_response({})

    async def take_commits(self, request: web.Request) -> web.Response:
        commits, self.commits = self.commits, []
        return web.json_response(commits)

    async def open_window(self, request: web.Request) -> web.Response:
        self.window = []
        return web.json_response({"t": time.monotonic(), "cpu": cpu_seconds()})

    async def take_window(self, request: web.Request) -> web.Response:
        window, self.window = self.window or [], None
        return web.json_response({"requests": window, "t": time.monotonic(), "cpu": cpu_seconds()})

    async def slow(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        if self.slow_rule is not None:
            self.sim.faults.remove(self.slow_rule)
        self.slow_rule = self.sim.faults.delay(float(body["seconds"]))
        return web.json_response({"t": time.monotonic()})

    async def clear(self, request: web.Request) -> web.Response:
        self.sim.faults.clear()
        self.slow_rule = None
        return web.json_response({"t": time.monotonic()})

    async def targets(self, request: web.Request) -> web.Response:
        ws = self.ws
        assert ws is not None
        out = []
        for upstream in ws.upstreams.values():
            for target, tid in ws.targets_by_upstream.get(upstream["id"], {}).items():
                out.append([upstream["name"], tid, ws.targets[tid]["weight"], target])
        return web.json_response(out)

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "cpu": cpu_seconds(),
                "requests": sum(n.total_requests for n in self.sim._nodes),
                "rss_mib": rss_mib(),
                "upstreams": len(self.ws.upstreams) if self.ws else 0,
                "t": time.monotonic(),
            }
        )


# --------------------------------------------------------------------------- Kubernetes


class KubeSide:
    def __init__(self) -> None:
        # etcd keeps minutes of history; a burst of 20,000 changes must stay replayable.
        self.sim = KubeSim(history_size=100_000)
        self.recording = False
        self.changes: list[tuple[str, float, int]] = []  # Rollout name, time, step index
        emit = self.sim._emit
        rollouts = self.sim.resource(*ROLLOUTS)

        def stamped(res: Any, event_type: str, obj: dict[str, Any]) -> None:
            emit(res, event_type, obj)
            if self.recording and res is rollouts and event_type == "MODIFIED":
                index = obj.get("status", {}).get("currentStepIndex", 0)
                self.changes.append((obj["metadata"]["name"], time.monotonic(), int(index)))

        self.sim._emit = stamped  # type: ignore[method-assign]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/populate", self.populate)
        app.router.add_post("/flip", self.flip)
        app.router.add_post("/record", self.record)
        app.router.add_get("/changes", self.take_changes)
        app.router.add_get("/stats", self.stats)
        return app

    async def populate(self, request: web.Request) -> web.Response:
        """``{"n": N, "index": step}``: Services and ReplicaSets first, then the Rollouts."""
        body: dict[str, Any] = await request.json()
        n, index = int(body["n"]), int(body.get("index", 0))
        for i in range(n):
            for obj in (*services(i), *replicasets(i)):
                self.sim.apply(obj)
            if i % 500 == 499:
                await asyncio.sleep(0)
        for i in range(n):
            self.sim.apply(rollout(i, index))
            if i % 500 == 499:
                await asyncio.sleep(0)
        return web.json_response({"resourceVersion": self.sim.resource_version})

    async def flip(self, request: web.Request) -> web.Response:
        """``{"index": {"<i>": step}}``: set each Rollout's ``status.currentStepIndex``, as
        Argo's status writes would, as fast as the server takes them (yielding every 100 so
        the watch streams flow meanwhile)."""
        body: dict[str, Any] = await request.json()
        first = time.monotonic()
        for k, (i, step) in enumerate(body["index"].items()):
            self.sim._patch(
                self.sim.resource(*ROLLOUTS),
                (NAMESPACE, f"app{i}"),
                {"status": {"currentStepIndex": int(step)}},
                subresource="status",
            )
            if k % 100 == 99:
                await asyncio.sleep(0)
        return web.json_response({"first": first, "last": time.monotonic()})

    async def record(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        self.recording = bool(body["on"])
        if self.recording:
            self.changes = []
        return web.json_response({})

    async def take_changes(self, request: web.Request) -> web.Response:
        changes, self.changes = self.changes, []
        return web.json_response(changes)

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "cpu": cpu_seconds(),
                "requests": len(self.sim.requests),
                "open_watches": self.sim.open_watches,
                "rss_mib": rss_mib(),
                "t": time.monotonic(),
            }
        )


# --------------------------------------------------------------------------- /healthz


class Prober:
    INTERVAL = 0.05

    def __init__(self) -> None:
        self.url: str | None = None
        self.samples: list[tuple[float, float, bool]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/target", self.target)
        app.router.add_get("/samples", self.take)
        return app

    async def target(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        self.url = body.get("url")
        return web.json_response({"t": time.monotonic()})

    async def take(self, request: web.Request) -> web.Response:
        samples, self.samples = self.samples, []
        return web.json_response(samples)

    async def run(self) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                started = time.monotonic()
                url = self.url
                if url is not None:
                    try:
                        async with http.get(f"{url}/healthz") as r:
                            await r.read()
                            ok = r.status == 200
                    except (aiohttp.ClientError, TimeoutError, OSError):
                        ok = False
                    if url == self.url:
                        self.samples.append((started, time.monotonic() - started, ok))
                        if len(self.samples) > 200_000:  # nobody is taking them: stay bounded
                            del self.samples[:100_000]
                await asyncio.sleep(max(0.0, started + self.INTERVAL - time.monotonic()))


async def serve(role: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if role == "probe":
        prober = Prober()
        task = asyncio.create_task(prober.run())
        runner, control = await _control(prober.app())
        print(json.dumps({"control": control}), flush=True)
        try:
            await stop.wait()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await runner.cleanup()
        return 0
    side: KongSide | KubeSide
    if role == "kong":
        side = KongSide()
        await side.sim.start("127.0.0.1", 0)
        info: dict[str, Any] = {"url": side.sim.url}
    else:
        side = KubeSide()
        await side.sim.start("127.0.0.1", 0)
        info = {"url": side.sim.url}
    runner, control = await _control(side.app())
    print(json.dumps({**info, "control": control}), flush=True)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2)
            side.sim.requests.clear()  # the request log is not needed; keep memory flat
    finally:
        await runner.cleanup()
        await side.sim.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=("kong", "kube", "probe"))
    args = parser.parse_args()
    return asyncio.run(serve(args.role))


if __name__ == "__main__":
    sys.exit(main())
