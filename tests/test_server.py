"""kongsplit's HTTP endpoints (``kongsplit.server``) on a real socket (``start_server`` on port
0), over a real ``Reconciler`` writing to the in-memory Kong of tests/fake_router.py, with the
probes' answers given by each test. What the daemon's probes answer is tests/test_app.py's."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from fake_router import FakeRouter
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from kongsplit.config import load_settings
from kongsplit.kong.apply import KongRouter, Verification
from kongsplit.kong.client import RetryPolicy
from kongsplit.kong.errors import KongClientError
from kongsplit.metrics import Metrics
from kongsplit.reconciler import Reconciler
from kongsplit.server import Probes, make_app, start_server
from kongsplit.sim import objects
from kongsplit.sim.kongsim import KongSim

UPSTREAM = "web.shop.svc"
_NO_RETRY = RetryPolicy(attempts=1)
STABLE_T, CANARY_T = "10.96.0.10:80", "10.96.0.11:80"
STATE_KEYS = {
    "namespace",
    "name",
    "upstream",
    "workspace",
    "desired",
    "applied",
    "observed",
    "in_sync",
    "state",
    "rule",
    "hold",
    "router_context",
    "algorithm",
    "last_apply",
    "last_error",
    "foreign_targets",
}


@dataclass
class Served:
    base: str
    http: aiohttp.ClientSession
    rec: Reconciler
    kong: FakeRouter
    probes: dict[str, Any]

    async def get(self, path: str) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.http.get(self.base + path) as resp:
            body: Any = (
                await resp.json() if resp.content_type == "application/json" else await resp.text()
            )
            return resp.status, body, resp

    def seed(self, rollout: dict[str, Any] | None = None) -> None:
        self.rec.on_service("ADDED", objects.service("web-stable", "10.96.0.10", "v1", app="web"))
        self.rec.on_service("ADDED", objects.service("web-canary", "10.96.0.11", "v1", app="web"))
        self.rec.on_replicaset("ADDED", objects.replicaset("web", "v1", 4, 4))
        self.rec.on_rollout("ADDED", rollout or objects.rollout("web", upstream=UPSTREAM))

    async def settle(self) -> None:
        queue = self.rec.queue
        while len(queue):
            key, flags = await queue.get()
            try:
                await self.rec.reconcile(key, refresh=flags.refresh)
            finally:
                queue.done(key)


@pytest.fixture()
async def served() -> AsyncIterator[Served]:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    kong = FakeRouter()
    settings = load_settings(env={}, flags={"kong": {"url": kong.display_url}})
    rec = Reconciler(settings, kong=kong, metrics=metrics)
    probes: dict[str, Any] = {"alive": True, "ready": (True, "leading")}
    app = make_app(
        rec,
        kong,  # type: ignore[arg-type]  # the fake stands in for KongRouter: verify, display_url
        Probes(alive=lambda: probes["alive"], ready=lambda: probes["ready"]),
    )
    runner, port = await start_server(app, "127.0.0.1", 0)
    try:
        assert port != 0
        async with aiohttp.ClientSession() as http:
            yield Served(f"http://127.0.0.1:{port}", http, rec, kong, probes)
    finally:
        rec.queue.close()
        await runner.cleanup()


# --------------------------------------------------------------------------- probes


@pytest.mark.parametrize(
    ("alive", "status", "body"),
    [
        pytest.param(True, 200, {"status": "ok"}, id="alive"),
        pytest.param(False, 503, {"status": "a root task has stopped"}, id="a-root-task-stopped"),
    ],
)
async def test_healthz(served: Served, alive: bool, status: int, body: dict[str, str]) -> None:
    served.probes["alive"] = alive
    assert (await served.get("/healthz"))[:2] == (status, body)


@pytest.mark.parametrize(
    ("ready", "reason", "status"),
    [
        pytest.param(True, "leading", 200, id="leading"),
        pytest.param(True, "following (caches warm)", 200, id="following"),
        pytest.param(
            False,
            "waiting for the first successful sync with Kong; Kong: refused",
            503,
            id="waiting-for-kong",
        ),
    ],
)
async def test_readyz_says_why(served: Served, ready: bool, reason: str, status: int) -> None:
    served.probes["ready"] = (ready, reason)
    assert (await served.get("/readyz"))[:2] == (status, {"ready": ready, "reason": reason})


# --------------------------------------------------------------------------- /metrics


async def test_metrics_is_the_reconcilers_registry_in_prometheus_text(served: Served) -> None:
    served.seed()
    await served.settle()
    status, text, resp = await served.get("/metrics")
    assert status == 200
    assert resp.headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert 'kongsplit_rollouts{state="managed"} 1.0' in text
    assert (
        'kongsplit_desired_weight{role="stable",rollout="web",rollout_namespace="shop",'
        'upstream="web.shop.svc"} 100.0'
    ) in text


# --------------------------------------------------------------------------- /state


async def test_state_shape(served: Served) -> None:
    status, body, _ = await served.get("/state")
    assert status == 200
    assert body == {
        "leader": True,
        "dry_run": False,
        "kong_url": served.kong.display_url,
        "kong_mode": None,  # not asked yet
        "queue": {"queued": 0, "in_flight": 0},
        "rollouts": [],
    }
    await served.kong.ensure_mode()
    served.seed()
    served.rec.on_rollout(
        "ADDED",
        objects.rollout(
            "api",
            upstream="api.shop.svc",
            stable_service="web-stable",
            canary_service="web-canary",
        ),
    )
    served.rec.on_rollout("ADDED", objects.rollout("bad", annotations={"kongsplit.io/port": "x"}))
    body = (await served.get("/state"))[1]
    assert body["kong_mode"] == "db" and body["queue"] == {"queued": 3, "in_flight": 0}
    served.kong.refused["api.shop.svc"] = KongClientError("Kong answered 400", status=400)
    await served.settle()
    body = (await served.get("/state"))[1]
    assert [(r["namespace"], r["name"]) for r in body["rollouts"]] == [
        ("shop", "api"),
        ("shop", "bad"),
        ("shop", "web"),
    ]  # sorted by key
    assert all(set(r) == STATE_KEYS for r in body["rollouts"])
    web = body["rollouts"][2]
    assert web["desired"] == [
        {"target": STABLE_T, "weight": 100, "role": "stable", "service": "web-stable"},
        {"target": CANARY_T, "weight": 0, "role": "canary", "service": "web-canary"},
    ]
    assert web["applied"] == web["observed"] == {STABLE_T: 100, CANARY_T: 0}
    assert (web["in_sync"], web["state"], web["rule"], web["hold"]) == (
        True,
        "managed",
        "fully-promoted",
        None,
    )
    assert isinstance(web["last_apply"], float) and web["last_error"] is None
    bad = body["rollouts"][1]
    assert (bad["state"], bad["desired"], bad["in_sync"]) == ("invalid", None, False)
    assert "kongsplit.io/port" in bad["last_error"]
    api = body["rollouts"][0]
    assert (api["state"], api["in_sync"], api["applied"], api["observed"]) == (
        "failing",
        False,
        None,
        None,
    )
    assert api["last_error"] == "Kong answered 400" and api["desired"] is not None


# --------------------------------------------------------------------------- /verify


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(None, id="unknown"),
        pytest.param(
            objects.rollout("web", annotations={"kongsplit.io/upstream": "10.0.0.1:80"}),
            id="invalid",
        ),
        pytest.param(objects.rollout("web", annotations={}), id="not-annotated"),
    ],
)
async def test_verify_is_404_for_a_rollout_not_managed(
    served: Served, setup: dict[str, Any] | None
) -> None:
    if setup is not None:
        served.seed(setup)
        await served.settle()
    status, body, _ = await served.get("/verify/shop/web")
    assert status == 404
    assert body == {
        "verified": False,
        "desired": None,
        "observed": None,
        "reason": "Rollout shop/web is not managed by kongsplit "
        "(not annotated, invalid or unknown)",
    }


async def test_verify_verified(served: Served) -> None:
    served.seed()
    await served.settle()
    status, body, _ = await served.get("/verify/shop/web")
    assert status == 200
    assert body == {
        "verified": True,
        "desired": {STABLE_T: 100, CANARY_T: 0},
        "observed": {served.kong.display_url: {STABLE_T: 100, CANARY_T: 0}},
        "hold": None,
    }


async def test_verify_not_verified_says_why_and_shows_a_hold(served: Served) -> None:
    held = objects.rollout("web", upstream=UPSTREAM)
    held["metadata"]["generation"] = 2
    served.seed(held)
    await served.settle()
    reasons = tuple(f"node-{i}: {STABLE_T} serves None, want 100" for i in range(12))
    served.kong.verification = Verification(
        False, {STABLE_T: 100, CANARY_T: 0}, {"node-0": "GET /upstreams: 503"}, reasons
    )
    status, body, _ = await served.get("/verify/shop/web")
    assert status == 200
    assert body["verified"] is False
    assert body["observed"] == {"node-0": "GET /upstreams: 503"}
    assert body["reason"] == "; ".join(reasons[:10])  # the first ten
    assert body["hold"].startswith("status.observedGeneration 1 is below metadata.generation 2")


# --------------------------------------------------------------------------- not an amplifier


async def test_concurrent_verify_calls_for_one_rollout_share_one_kong_read() -> None:
    """500 callers at once, three Kong nodes whose /health answers after 4 s: before, each
    call read every node (1,500 reads); now the callers share one verification (3 reads).
    (4 s, not less: on a loaded 2-CPU machine opening 500 connections took over 1.5 s, and a
    caller arriving after the shared read landed rightly starts a new one.)"""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    fake = FakeRouter()
    async with KongSim(nodes=3) as sim:
        sim.add_upstream(UPSTREAM)
        sim.add_target(UPSTREAM, STABLE_T, weight=100)
        sim.add_target(UPSTREAM, CANARY_T, weight=0)
        settings = load_settings(env={}, flags={"kong": {"url": sim.url, "nodes": sim.admin_urls}})
        router = KongRouter.from_config(settings.kong, metrics=metrics)
        rec = Reconciler(settings, kong=fake, metrics=metrics)
        rec.on_service("ADDED", objects.service("web-stable", "10.96.0.10", "v1", app="web"))
        rec.on_service("ADDED", objects.service("web-canary", "10.96.0.11", "v1", app="web"))
        rec.on_replicaset("ADDED", objects.replicaset("web", "v1", 4, 4))
        rec.on_rollout("ADDED", objects.rollout("web", upstream=UPSTREAM))
        key, _ = await rec.queue.get()
        await rec.reconcile(key)
        rec.queue.done(key)
        app = make_app(rec, router, Probes(alive=lambda: True, ready=lambda: (True, "")))
        runner, port = await start_server(app, "127.0.0.1", 0)
        health = f"/upstreams/{UPSTREAM}/health"
        sim.faults.delay(4.0, path_prefix=health)
        try:
            connector = aiohttp.TCPConnector(limit=0)  # every caller on its own connection
            async with aiohttp.ClientSession(connector=connector) as http:

                async def call() -> tuple[int, Any]:
                    async with http.get(f"http://127.0.0.1:{port}/verify/shop/web") as resp:
                        return resp.status, await resp.json()

                answers = await asyncio.gather(*(call() for _ in range(500)))
        finally:
            await runner.cleanup()
            await router.close()
            rec.queue.close()
        reads = [r for r in sim.requests if r.path.startswith(health)]
    assert {(status, body["verified"]) for status, body in answers} == {(200, True)}
    assert len(reads) == 3, f"{len(reads)} reads of Kong for 500 calls"
    assert sorted(r.node for r in reads) == [0, 1, 2]


async def test_a_new_verification_starts_once_the_shared_one_landed(served: Served) -> None:
    served.seed()
    await served.settle()
    for expected in (1, 2, 3):
        assert (await served.get("/verify/shop/web"))[0] == 200
        assert served.kong.verifies == expected  # nothing is cached after the flight lands


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("POST", "/verify/shop/web", 405, id="post-verify"),
        pytest.param("PUT", "/state", 405, id="put-state"),
        pytest.param("DELETE", "/verify/shop/web", 405, id="delete-verify"),
        pytest.param("PATCH", "/metrics", 405, id="patch-metrics"),
        pytest.param("HEAD", "/verify/shop/web", 405, id="head-verify"),
        pytest.param("OPTIONS", "/verify/shop/web", 405, id="options-verify"),
        pytest.param("GET", "/verify/shop", 404, id="verify-without-name"),
        pytest.param("GET", "/verify/shop/web/extra", 404, id="verify-extra-segment"),
        pytest.param("GET", "/admin", 404, id="unknown-path"),
        pytest.param("GET", "/state/", 404, id="trailing-slash"),
    ],
)
async def test_only_the_documented_get_routes_exist(
    served: Served, method: str, path: str, status: int
) -> None:
    """Anything but the five GET routes is refused before a handler runs: the reconciler and
    Kong are never asked (HEAD used to run the /verify handler, reading every Kong node)."""
    served.seed()
    await served.settle()
    async with served.http.request(method, served.base + path) as resp:
        assert resp.status == status
    assert served.kong.verifies == 0
    # Witness: the count does move for the one way to ask.
    assert (await served.get("/verify/shop/web"))[0] == 200 and served.kong.verifies == 1


async def _raw(served: Served, request: bytes) -> tuple[bytes, float]:
    """Send ``request`` on a fresh connection; the status line it gets back and how long the
    answer (and the connection's end) took."""
    host, port = served.base.removeprefix("http://").split(":")
    loop = asyncio.get_running_loop()
    started = loop.time()
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            status = await reader.readline()
            await reader.read()  # until the server closes the connection
    finally:
        writer.close()
    return status, loop.time() - started


@pytest.mark.parametrize(
    ("request_bytes", "statuses"),
    [
        pytest.param(
            b"GET /verify/shop/" + b"w" * 6000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            (b"414", b"400"),
            id="6k-url",
        ),
        pytest.param(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 6000 + b"\r\n\r\n",
            (b"431", b"400"),
            id="6k-header",
        ),
        pytest.param(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%d: v\r\n" % i for i in range(100))
            + b"\r\n",
            (b"431", b"400"),
            id="100-headers",
        ),
        pytest.param(
            b"POST /state HTTP/1.1\r\nHost: x\r\nContent-Length: 10737418240\r\n\r\nab",
            (b"413",),
            id="10GiB-body-announced",
        ),
        pytest.param(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"10000\r\n" + b"z" * 1000,
            (b"413",),
            id="chunked-body",
        ),
    ],
)
async def test_a_huge_request_is_refused_cheaply(
    served: Served, request_bytes: bytes, statuses: tuple[bytes, ...]
) -> None:
    """Refused by status, at once, with the connection closed: the server never reads (nor
    waits for) the rest. Before: a 6 KiB URL or header and 100 headers were served (aiohttp's
    defaults are 8 KiB and 128), and an unread body was drained for up to 10 s."""
    status, took = await _raw(served, request_bytes)
    assert status.split(b" ")[1] in statuses, status
    assert took < 1.0


@pytest.mark.parametrize(
    ("host", "reachable_on_other_address"),
    [
        pytest.param("127.0.0.1", False, id="loopback-only"),
        pytest.param("0.0.0.0", True, id="all-interfaces"),  # the witness: the probe can connect
    ],
)
async def test_server_listen_binds_only_the_address_given(
    served: Served, host: str, reachable_on_other_address: bool
) -> None:
    """server.listen (--listen, KONGSPLIT_SERVER_LISTEN) 127.0.0.1:PORT: nothing off this host
    reaches the endpoints. Probed on 127.0.0.2, another address of the loopback interface: a
    socket bound to 127.0.0.1 alone refuses it, one bound to 0.0.0.0 accepts it."""
    app = make_app(
        served.rec,
        served.kong,  # type: ignore[arg-type]
        Probes(alive=lambda: True, ready=lambda: (True, "")),
    )
    runner, port = await start_server(app, host, 0)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        try:
            _, writer = await asyncio.open_connection("127.0.0.2", port)
        except ConnectionRefusedError:
            reached = False
        else:
            writer.close()
            reached = True
    finally:
        await runner.cleanup()
    assert reached is reachable_on_other_address


async def test_verify_shows_node_urls_without_their_credentials() -> None:
    """kong.nodes may carry user:password@ (a proxy's basic auth): /verify names the nodes in
    `observed` and in `reason`, which Argo's analysis runs store; before, as configured."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    with socket.socket() as s:  # a node that is down: its error names it too
        s.bind(("127.0.0.1", 0))
        down = s.getsockname()[1]
    async with KongSim() as sim:
        sim.add_upstream(UPSTREAM)
        sim.add_target(UPSTREAM, STABLE_T, weight=100)
        sim.add_target(UPSTREAM, CANARY_T, weight=0)
        up_node = sim.url.replace("http://", "http://admin:s3c@ret@")
        down_node = f"http://admin:s3cret@127.0.0.1:{down}"
        settings = load_settings(
            env={}, flags={"kong": {"url": sim.url, "nodes": [up_node, down_node]}}
        )
        router = KongRouter.from_config(settings.kong, metrics=metrics, retry=_NO_RETRY)
        rec = Reconciler(settings, kong=FakeRouter(), metrics=metrics)
        rec.on_service("ADDED", objects.service("web-stable", "10.96.0.10", "v1", app="web"))
        rec.on_service("ADDED", objects.service("web-canary", "10.96.0.11", "v1", app="web"))
        rec.on_replicaset("ADDED", objects.replicaset("web", "v1", 4, 4))
        rec.on_rollout("ADDED", objects.rollout("web", upstream=UPSTREAM))
        key, _ = await rec.queue.get()
        await rec.reconcile(key)
        rec.queue.done(key)
        app = make_app(rec, router, Probes(alive=lambda: True, ready=lambda: (True, "")))
        runner, port = await start_server(app, "127.0.0.1", 0)
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{port}/verify/shop/web") as resp,
            ):
                text = await resp.text()
                body = await resp.json()
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{port}/state") as resp,
            ):
                state_text = await resp.text()
        finally:
            await runner.cleanup()
            await router.close()
            rec.queue.close()
    assert "s3c" not in text and "ret@" not in text and "s3c" not in state_text
    assert set(body["observed"]) == {
        sim.url.replace("http://", "http://***@"),
        f"http://***@127.0.0.1:{down}",
    }
    assert f"http://***@127.0.0.1:{down}: " in body["reason"]
