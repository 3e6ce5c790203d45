"""kongsplit's own HTTP endpoints: ``/healthz``, ``/readyz``, ``/metrics``, ``/state``, ``/verify``.

``/verify/{namespace}/{name}`` is the proof an Argo ``AnalysisTemplate`` web metric asks for:
it reads ``/upstreams/{u}/health`` on every Kong node kongsplit knows of and says whether each
node's balancer really serves the desired weights (the node-local truth, docs/kong.md "Health"), so
a
``setWeight`` step only completes once Kong has caught up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kongsplit.kong.apply import KongRouter
from kongsplit.reconciler import Reconciler
from kongsplit.rollouts import RolloutKey

logger = logging.getLogger("kongsplit.server")


@dataclass
class Probes:
    """What the probes read: liveness of the root tasks and the readiness conditions."""

    alive: Callable[[], bool]
    ready: Callable[[], tuple[bool, str]]


RECONCILER = web.AppKey("reconciler", Reconciler)
PROBES = web.AppKey("probes", Probes)
ROUTER = web.AppKey("router", KongRouter)


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
    return web.json_response(
        {
            "leader": reconciler.is_leader(),
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
    found = await request.app[ROUTER].verify(
        st.upstream, st.desired.weights(), workspace=st.workspace
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


def make_app(reconciler: Reconciler, router: KongRouter, probes: Probes) -> web.Application:
    app = web.Application()
    app[RECONCILER] = reconciler
    app[ROUTER] = router
    app[PROBES] = probes
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/state", state)
    app.router.add_get("/verify/{namespace}/{name}", verify)
    return app


async def start_server(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (to clean up) and the bound port (port 0 = any free)."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    for address in runner.addresses:  # the real port when asked for port 0
        if isinstance(address, tuple) and len(address) >= 2:
            bound = int(address[1])
            break
    return runner, bound
