"""/verify proves traffic, not a configured number: every node's balancer holds the weight and
the targets that must carry traffic resolved to healthy addresses; in hybrid mode the data
planes are asked (listed, or discovered from their Service's EndpointSlices), never the control
plane. The real daemon against kmock and the Kong simulator, over real sockets."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from daemon_support import (
    CANARY_T,
    REPLICASETS,
    ROLLOUTS,
    SERVICES,
    STABLE_T,
    UPSTREAM,
    Harness,
    eventually,
    replicaset,
    rollout,
    service,
    weights,
)
from kmock_shims import ENDPOINTSLICES

from kongsplit.sim.kongsim import KongSim


async def _verify(daemon_port: int | None) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{daemon_port}/verify/shop/web") as resp,
    ):
        return resp.status, await resp.json()


async def _at_step_one(h: Harness) -> None:
    """Argo starts revision v2 and its canary has a ready pod: 90 / 10."""
    await h.create(REPLICASETS, replicaset("v2", 1, 1))
    await h.patch(
        SERVICES, "web-canary", {"spec": {"selector": {"rollouts-pod-template-hash": "v2"}}}
    )
    await h.patch(ROLLOUTS, "web", {"status": {"currentPodHash": "v2", "currentStepIndex": 0}})


async def test_hybrid_verify_needs_every_data_plane(harness: Harness) -> None:
    h = harness
    await h.seed()
    async with KongSim(mode="control_plane", data_planes=2) as kong:
        daemon = await h.start(h.settings(kong={"url": kong.url, "nodes": kong.dp_urls}))
        await eventually(lambda: weights(kong) == {STABLE_T: 100, CANARY_T: 0})
        status, body = await _verify(daemon.port)
        assert (status, body["verified"]) == (200, True), body
        assert set(body["observed"]) == set(kong.dp_urls)  # the data planes, not the CP
        # One data plane lags the control plane's pushes by 1 s: not verified until it catches
        # up. (Its lag starts once the upstream has been on it for longer than the lag.)
        await asyncio.sleep(1.1)
        kong.set_dp_lag(1, 1.0)
        await _at_step_one(h)
        await eventually(lambda: weights(kong) == {STABLE_T: 90, CANARY_T: 10})
        status, body = await _verify(daemon.port)
        assert body["verified"] is False, body
        assert kong.dp_urls[1] in body["reason"] and "serves 0, want 10" in body["reason"]
        assert kong.dp_urls[0] not in body["reason"]
        for _ in range(100):
            status, body = await _verify(daemon.port)
            if body["verified"]:
                break
            await asyncio.sleep(0.05)
        assert body["verified"] is True, body


async def test_a_control_plane_alone_cannot_verify(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    await h.seed()
    caplog.set_level(logging.WARNING, logger="kongsplit")
    async with KongSim(mode="control_plane", data_planes=1) as kong:
        daemon = await h.start(h.settings(kong={"url": kong.url}))
        await eventually(lambda: weights(kong) == {STABLE_T: 100, CANARY_T: 0})
        rec = daemon.reconciler
        assert rec is not None
        await eventually(rec.synced.is_set, what="first sync")
        status, body = await _verify(daemon.port)
    assert status == 503 and body["verified"] is False
    assert "hybrid control plane" in body["reason"] and "kong.nodesFrom" in body["reason"]
    said = [r.getMessage() for r in caplog.records if "/verify will refuse" in r.getMessage()]
    assert len(said) == 1 and "status_listen" in said[0]


def _slice(name: str, url: str, *, ready: bool = True) -> dict[str, Any]:
    parts = urlsplit(url)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "kong",
            "labels": {"kubernetes.io/service-name": "kong-dp-status"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "status", "port": parts.port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [parts.hostname], "conditions": {"ready": ready}}],
    }


async def test_data_planes_are_discovered_from_endpointslices(harness: Harness) -> None:
    h = harness
    await h.seed()
    async with KongSim(mode="control_plane", data_planes=2) as kong:
        await h.create(ENDPOINTSLICES, _slice("dp-a", kong.dp_urls[0]))
        # Another Service's slice in the same namespace is none of ours.
        other = _slice("other", "http://127.0.0.9:1")
        other["metadata"]["labels"] = {"kubernetes.io/service-name": "something-else"}
        await h.create(ENDPOINTSLICES, other)
        nodes_from = {"namespace": "kong", "service": "kong-dp-status", "port": "status"}
        daemon = await h.start(h.settings(kong={"url": kong.url}, **{"kong.nodesFrom": nodes_from}))
        await eventually(lambda: weights(kong) == {STABLE_T: 100, CANARY_T: 0})
        status, body = await _verify(daemon.port)
        assert (status, set(body["observed"])) == (200, {kong.dp_urls[0]}), body
        # A new data plane pod becomes ready: it is verified as it comes.
        await h.create(ENDPOINTSLICES, _slice("dp-b", kong.dp_urls[1]))
        await eventually(
            lambda: set(daemon.kong.verify_nodes) == set(kong.dp_urls), what="dp-b discovered"
        )
        status, body = await _verify(daemon.port)
        assert set(body["observed"]) == set(kong.dp_urls) and body["verified"] is True


async def test_verify_is_false_when_the_canary_resolves_to_nothing(harness: Harness) -> None:
    """dns target mode: Kong resolves the canary Service's name itself; when that fails its
    nodeWeight can be right while no address carries traffic (DNS_ERROR)."""
    h = harness
    await h.create(SERVICES, service("web-stable", "10.96.0.10", "v1"))
    await h.create(SERVICES, service("web-canary", "10.96.0.11", "v1"))
    await h.create(REPLICASETS, replicaset("v1", 4, 4))
    annotations = {"kongsplit.io/upstream": UPSTREAM, "kongsplit.io/target-mode": "dns"}
    await h.create(ROLLOUTS, rollout(annotations=annotations))
    canary_host = "web-canary.shop.svc.cluster.local"
    daemon = await h.start()
    await eventually(lambda: len(weights(h.kong)) == 2, what="dns targets written")
    await _at_step_one(h)
    await eventually(lambda: weights(h.kong).get(f"{canary_host}:80") == 10, what="step 1")
    status, body = await _verify(daemon.port)
    assert (status, body["verified"]) == (200, True), body
    h.kong.dns_failures.add(canary_host)
    _, body = await _verify(daemon.port)
    assert body["verified"] is False
    assert f"{canary_host}:80 is not in this node's balancer (DNS_ERROR), want 10" in body["reason"]


async def test_verify_is_false_when_every_canary_address_is_unhealthy(harness: Harness) -> None:
    h = harness
    await h.seed()
    daemon = await h.start()
    await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0})
    await _at_step_one(h)
    await eventually(lambda: weights(h.kong) == {STABLE_T: 90, CANARY_T: 10})
    assert (await _verify(daemon.port))[1]["verified"] is True
    # Kong's health checker marks the canary's only address unhealthy.
    async with aiohttp.ClientSession() as http:
        passive = {"healthchecks": {"passive": {"unhealthy": {"http_failures": 3}}}}
        async with http.patch(f"{h.kong.url}/upstreams/{UPSTREAM}", json=passive) as r:
            assert r.status == 200, await r.text()
        mark = f"{h.kong.url}/upstreams/{UPSTREAM}/targets/{CANARY_T}/unhealthy"
        async with http.put(mark) as r:
            assert r.status == 204, await r.text()
    _, body = await _verify(daemon.port)
    assert body["verified"] is False
    assert f"{CANARY_T} has no healthy address (weight.available 0)" in body["reason"]
