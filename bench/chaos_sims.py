"""The simulators of the chaos run, each in its own process with a control port (loopback only).

    python bench/chaos_sims.py kong     # KongSim, 2 Admin API nodes on one database (DB mode)
    python bench/chaos_sims.py kube     # KubeSim

Each prints one JSON line with its URLs, then serves until SIGTERM/SIGINT. The control port is
the driver's (``bench/chaos.py``) and never the daemon's:

kong: ``POST /faults`` arms a fault rule (kongsim.faults), ``POST /slow`` a slow window for a
while, ``POST /wipe`` empties the database, ``POST /clear`` disarms everything, ``GET /state``
is every upstream's weights now, ``GET /history`` every commit (time, upstream, node, weights),
every wipe and the faults' counts. Times are ``time.monotonic()``: one clock for every process
on the machine.

kube: ``POST /apply`` creates or replaces objects (the world before the run), ``POST /expire``
answers open watches 410 Gone and forgets older versions (compaction), ``POST /drop`` cuts open
watch connections, ``GET /stats``. Argo's changes during the run go through the ordinary
Kubernetes API, as the real controller's do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kongsplit.sim.kongsim import KongSim
from kongsplit.sim.kongsim.faults import FaultAction
from kongsplit.sim.kubesim import KubeSim

#: Fault rules armed but not yet consumed above this many: further ones are refused, so an idle
#: Kong does not pile up a burst of errors for the next writes.
MAX_PENDING_RULES = 8


async def _control(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


class KongSide:
    def __init__(self, nodes: int) -> None:
        self.sim = KongSim(nodes=nodes)
        self.commits: list[tuple[float, str, int | None, dict[str, int] | None]] = []
        self.wipes: list[float] = []
        self.slow: list[tuple[float, float, float, bool]] = []  # start, end, seconds, after
        self.refused = 0
        self.sim.store.on_commit.append(self._committed)
        # every request a fault hit: time, method, path, node, what
        self.fault_log: list[tuple[float, str, str, int, str]] = []
        take = self.sim.faults.take

        def logged(method: str, path: str, node: int) -> FaultAction:
            action = take(method, path, node)
            what = []
            if action.delay:
                what.append(f"delay {action.delay:.1f}s")
            if action.delay_after:
                what.append(f"answer {action.delay_after:.1f}s late")
            if action.status is not None:
                what.append(str(action.status))
            if action.reset or action.reset_after:
                what.append("reset after the write" if action.reset_after else "reset")
            if what:
                self.fault_log.append((time.monotonic(), method, path, node, ", ".join(what)))
            return action

        self.sim.faults.take = logged  # type: ignore[method-assign]

    def _committed(self, workspace: str, upstream: str, node: int | None) -> None:
        store = self.sim.store
        ws = store.workspace(workspace)
        up = store.find_upstream(ws, upstream) if ws is not None else None
        weights = None
        if ws is not None and up is not None:
            weights = {t["target"]: t["weight"] for t in store.targets_newest_first(ws, up["id"])}
        self.commits.append((time.monotonic(), upstream, node, weights))

    def weights(self) -> dict[str, dict[str, int]]:
        store = self.sim.store
        ws = store.workspace("default")
        assert ws is not None
        return {
            u["name"]: {t["target"]: t["weight"] for t in store.targets_newest_first(ws, u["id"])}
            for u in store.list_upstreams(ws)
        }

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/faults", self.faults)
        app.router.add_post("/slow", self.slow_window)
        app.router.add_post("/wipe", self.wipe)
        app.router.add_post("/clear", self.clear)
        app.router.add_get("/state", self.state)
        app.router.add_get("/history", self.history)
        return app

    async def faults(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        f = self.sim.faults
        pending = sum(1 for r in f.rules if r.kind != "delay")
        if pending >= MAX_PENDING_RULES:
            self.refused += 1
            return web.json_response({"armed": False})
        kind = body.pop("kind")
        if kind == "status":
            f.fail_next(**body)
        elif kind == "rate_limit":
            f.rate_limit_next(**body)
        elif kind == "reset":
            f.reset_next(**body)
        else:
            raise web.HTTPBadRequest(text=f"unknown fault kind {kind!r}")
        return web.json_response({"armed": True})

    async def slow_window(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        seconds, duration = float(body["seconds"]), float(body["duration"])
        after = bool(body.get("after", False))
        rule = self.sim.faults.delay(seconds, after=after)
        start = time.monotonic()
        self.slow.append((start, start + duration, seconds, after))
        asyncio.get_running_loop().call_later(duration, self.sim.faults.remove, rule)
        return web.json_response({"start": start})

    async def wipe(self, request: web.Request) -> web.Response:
        self.sim.wipe()
        self.wipes.append(time.monotonic())
        return web.json_response({"t": self.wipes[-1]})

    async def clear(self, request: web.Request) -> web.Response:
        self.sim.faults.clear()
        return web.json_response({})

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response(self.weights())

    async def history(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "commits": self.commits,
                "wipes": self.wipes,
                "slow": self.slow,
                "faults": self.sim.faults.counts,
                "fault_log": self.fault_log,
                "refused": self.refused,
                "requests": sum(n.total_requests for n in self.sim._nodes),
            }
        )


class KubeSide:
    def __init__(self) -> None:
        # etcd keeps minutes of history; 1,000 changes (the default) is seconds of a busy run.
        self.sim = KubeSim(history_size=50_000)
        self.expired = 0
        self.dropped = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/apply", self.apply)
        app.router.add_post("/expire", self.expire)
        app.router.add_post("/drop", self.drop)
        app.router.add_get("/stats", self.stats)
        return app

    async def apply(self, request: web.Request) -> web.Response:
        for obj in await request.json():
            self.sim.apply(obj)
        return web.json_response({"resourceVersion": self.sim.resource_version})

    async def expire(self, request: web.Request) -> web.Response:
        n = self.sim.open_watches
        self.sim.expire_watches(410)
        self.expired += 1
        return web.json_response({"watches": n})

    async def drop(self, request: web.Request) -> web.Response:
        n = self.sim.open_watches
        self.sim.drop_watches()
        self.dropped += 1
        return web.json_response({"watches": n})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "open_watches": self.sim.open_watches,
                "requests": len(self.sim.requests),
                "resourceVersion": self.sim.resource_version,
            }
        )


async def serve(role: str, nodes: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if role == "kong":
        kong = KongSide(nodes)
        await kong.sim.start("127.0.0.1", 0)
        runner, control = await _control(kong.app())
        print(json.dumps({"urls": kong.sim.urls, "control": control}), flush=True)
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 5)
                kong.sim.requests.clear()  # the request log is not needed; keep memory flat
        finally:
            await runner.cleanup()
            await kong.sim.stop()
        return 0
    kube = KubeSide()
    await kube.sim.start("127.0.0.1", 0)
    runner, control = await _control(kube.app())
    print(json.dumps({"url": kube.sim.url, "control": control}), flush=True)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5)
            kube.sim.requests.clear()
    finally:
        await runner.cleanup()
        await kube.sim.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=("kong", "kube"))
    parser.add_argument("--nodes", type=int, default=2, help="Kong Admin API nodes (kong)")
    args = parser.parse_args()
    return asyncio.run(serve(args.role, args.nodes))


if __name__ == "__main__":
    sys.exit(main())
