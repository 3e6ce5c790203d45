"""kongsplit's own HTTP endpoints: ``/healthz``, ``/readyz``, ``/metrics``, ``/state``, ``/verify``.

``/verify/{namespace}/{name}`` is the proof an Argo ``AnalysisTemplate`` web metric asks for:
it reads ``/upstreams/{u}/health`` on every Kong node kongsplit knows of and says whether each
node's balancer really serves the desired weights (the node-local truth, docs/kong.md "Health"), so
a
``setWeight`` step only completes once Kong has caught up.

The endpoints are not an amplifier: concurrent ``/verify`` calls for one Rollout share one
read of Kong (``Singleflight``); only the documented ``GET`` routes exist (any other method is
405, any other path 404, before a handler runs); a request line or header over 4 KiB, more than
64 headers, or any request body is refused before it is read (``start_server``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kongsplit.kong.apply import KongRouter, Verification
from kongsplit.reconciler import Reconciler
from kongsplit.rollouts import RolloutKey

logger = logging.getLogger("kongsplit.server")


@dataclass
class Probes:
    """What the probes read: liveness of the root tasks and the readiness conditions."""

    alive: Callable[[], bool]
    ready: Callable[[], tuple[bool, str]]


class Singleflight:
    """One Kong read per Rollout however many callers ask at once: a caller asking while a
    verification with the same inputs is in flight waits for that one's answer.

    The read runs as its own task (a caller that hangs up does not cancel the others' answer)
    and is forgotten as soon as it ends, so the next caller reads Kong afresh.
    """

    def __init__(self) -> None:
        self._flights: dict[RolloutKey, tuple[Hashable, asyncio.Task[Verification]]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    async def do(
        self,
        key: RolloutKey,
        inputs: Hashable,
        read: Callable[[], Awaitable[Verification]],
    ) -> Verification:
        flight = self._flights.get(key)
        if flight is None or flight[0] != inputs:
            task = asyncio.create_task(_run(read), name=f"verify:{key}")
            self._flights[key] = (inputs, task)
            task.add_done_callback(lambda done: self._landed(key, done))
        else:
            task = flight[1]
        return await asyncio.shield(task)

    def _landed(self, key: RolloutKey, task: asyncio.Task[Verification]) -> None:
        flight = self._flights.get(key)
        if flight is not None and flight[1] is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter got it already, or none is left

    async def close(self) -> None:
        tasks = [task for _, task in self._flights.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _run(read: Callable[[], Awaitable[Verification]]) -> Verification:
    return await read()


RECONCILER = web.AppKey("reconciler", Reconciler)
PROBES = web.AppKey("probes", Probes)
ROUTER = web.AppKey("router", KongRouter)
VERIFY_FLIGHTS = web.AppKey("verify_flights", Singleflight)
#: The only routes: every one a GET (HEAD too is refused: it would run the handler).
ROUTES = ("/healthz", "/readyz", "/metrics", "/state", "/verify/{namespace}/{name}")
#: Request limits (aiohttp's own parser enforces the first three before any handler runs).
MAX_LINE_BYTES = 4096
MAX_FIELD_BYTES = 4096
MAX_HEADERS = 64


async def healthz(request: web.Request) -> web.Response:
    if request.app[PROBES].alive():
        return web.json_response({"status": "ok"})
    return web.json_response({"status": "a root task has stopped"}, status=503)


async def readyz(request: web.Request) -> web.Response:
    ready, why = request.app[PROBES].ready()
    return web.json_response({"ready": ready, "reason": why}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[RECONCILER].metrics.registry
    body = generate_latest(registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def state(request: web.Request) -> web.Response:
    reconciler = request.app[RECONCILER]
    rollouts = [s.as_json() for s in sorted(reconciler.states.values(), key=lambda s: str(s.key))]
    dry_run = bool(getattr(request.app[ROUTER], "dry_run", False))
    return web.json_response(
        {
            # As ``kongsplit_leader``: may this process write to Kong? A dry run never does.
            "leader": reconciler.is_leader() and not dry_run,
            "dry_run": dry_run,
            "kong_url": request.app[ROUTER].display_url,
            "kong_mode": str(reconciler.kong.mode) if reconciler.kong.mode else None,
            "queue": {"queued": len(reconciler.queue), "in_flight": reconciler.queue.active},
            "rollouts": rollouts,
        }
    )


async def verify(request: web.Request) -> web.Response:
    reconciler = request.app[RECONCILER]
    key = RolloutKey(request.match_info["namespace"], request.match_info["name"])
    st = reconciler.states.get(key)
    if st is None or st.desired is None or st.upstream is None:
        return web.json_response(
            {
                "verified": False,
                "desired": None,
                "observed": None,
                "reason": f"Rollout {key} is not managed by kongsplit "
                "(not annotated, invalid or unknown)",
            },
            status=404,
        )
    router, upstream, workspace = request.app[ROUTER], st.upstream, st.workspace
    desired = st.desired.weights()
    found = await request.app[VERIFY_FLIGHTS].do(
        key,
        (upstream, workspace, tuple(sorted(desired.items()))),
        lambda: router.verify(upstream, desired, workspace=workspace),
    )
    body: dict[str, Any] = {
        "verified": found.verified,
        "desired": found.desired,
        "observed": found.observed,
        "hold": st.hold,
    }
    if found.reasons:
        body["reason"] = "; ".join(found.reasons[:10])
    if found.refused:  # not a weight missing: verification is impossible as configured
        return web.json_response(body, status=503)
    return web.json_response(body)


@web.middleware
async def no_bodies(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every route is a GET without a body: a request carrying one is answered 413 and its
    connection closed, before a byte of the body is read."""
    if request.body_exists:
        response = web.json_response({"error": "request bodies are not accepted"}, status=413)
        response.force_close()
        return response
    return await handler(request)


def make_app(reconciler: Reconciler, router: KongRouter, probes: Probes) -> web.Application:
    app = web.Application(middlewares=[no_bodies], client_max_size=1024)
    app[RECONCILER] = reconciler
    app[ROUTER] = router
    app[PROBES] = probes
    flights = Singleflight()
    app[VERIFY_FLIGHTS] = flights

    async def land_flights(_: web.Application) -> None:
        await flights.close()

    app.on_cleanup.append(land_flights)
    handlers = (healthz, readyz, metrics, state, verify)
    for path, handler in zip(ROUTES, handlers, strict=True):
        app.router.add_get(path, handler, allow_head=False)
    return app


async def start_server(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (to clean up) and the bound port (port 0 = any free).

    A request line or a header longer than 4 KiB, or more than 64 headers, is refused by the
    parser (400/414/431) before any handler runs; an unread body is never drained (no
    lingering): the connection is closed instead.
    """
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        max_line_size=MAX_LINE_BYTES,
        max_field_size=MAX_FIELD_BYTES,
        max_headers=MAX_HEADERS,
        lingering_time=0,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    for address in runner.addresses:  # the real port when asked for port 0
        if isinstance(address, tuple) and len(address) >= 2:
            bound = int(address[1])
            break
    return runner, bound
