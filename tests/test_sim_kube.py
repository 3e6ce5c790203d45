"""KubeSim, the demo's Kubernetes API fake, driven by the real kubernetes-asyncio client.

Also covers kongsplit.kube (client construction from a kubeconfig, the JSON request helper),
since KubeSim's kubeconfig is the natural thing to load; how the kubeconfig is found, and every
way that fails, is in tests/test_kubeconfig.py. The watcher's tests run against
KubeSim as well as kmock (tests/test_watcher.py, parametrised).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from kongsplit import kube
from kongsplit.sim.kubesim import KubeSim, merge_patch

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "rollouts"


def rollout(ns: str, name: str, **fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": ns, **fields.pop("metadata", {})},
        **fields,
    }


@pytest.fixture()
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(bookmark_interval=0.1) as s:
        yield s


@pytest.fixture()
async def api(sim: KubeSim, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    path = tmp_path / "kubeconfig"
    sim.write_kubeconfig(str(path))
    api = await kube.make_api_client(str(path))
    try:
        yield api
    finally:
        await api.close()


# --- kongsplit.kube: building the client ---


async def test_kubeconfig_from_the_environment(
    sim: KubeSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config"
    sim.write_kubeconfig(str(path))
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{path}")
    api = await kube.make_api_client(None)
    try:
        found = await kube.request(api, "GET", "/api/v1/services")
        assert found["items"] == []
    finally:
        await api.close()


async def test_broken_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "broken"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "x"}))
    with pytest.raises(kube.KubeConfigError, match="broken"):
        await kube.make_api_client(str(path))


async def test_request_errors_carry_the_status(api: client.ApiClient) -> None:
    with pytest.raises(kube.KubeApiError) as info:
        await kube.request(api, "GET", "/apis/argoproj.io/v1alpha1/namespaces/x/rollouts/nope")
    assert (info.value.status, info.value.reason) == (404, "NotFound")
    assert not info.value.retriable


async def test_unreachable_server_is_kube_unavailable() -> None:
    api = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))
    try:
        with pytest.raises(kube.KubeUnavailable):
            await kube.request(api, "GET", "/api/v1/services")
    finally:
        await api.close()


# --- the generated API classes against the fake ---


async def test_custom_objects_crud(sim: KubeSim, api: client.ApiClient) -> None:
    crd = client.CustomObjectsApi(api)
    created = await crd.create_namespaced_custom_object(
        GROUP, VERSION, "shop", PLURAL, rollout("shop", "web", spec={"replicas": 3})
    )
    assert created["metadata"]["generation"] == 1
    assert created["metadata"]["uid"] and created["metadata"]["creationTimestamp"]
    got = await crd.get_namespaced_custom_object(GROUP, VERSION, "shop", PLURAL, "web")
    assert got == created

    merge = "application/merge-patch+json"  # the client would pick JSON patch for CRs
    patched = await crd.patch_namespaced_custom_object(
        GROUP, VERSION, "shop", PLURAL, "web", {"spec": {"replicas": 5}}, _content_type=merge
    )
    assert patched["spec"]["replicas"] == 5 and patched["metadata"]["generation"] == 2
    assert int(patched["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])

    status = await crd.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        "shop",
        PLURAL,
        "web",
        {"status": {"currentStepIndex": 1}, "spec": {"x": 1}},
        _content_type=merge,
    )
    # The status subresource changes only status, and never the generation.
    assert status["status"] == {"currentStepIndex": 1}
    assert status["spec"] == {"replicas": 5} and status["metadata"]["generation"] == 2

    listed = await crd.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["web"]
    assert listed["metadata"]["resourceVersion"] == sim.resource_version

    await crd.delete_namespaced_custom_object(GROUP, VERSION, "shop", PLURAL, "web")
    with pytest.raises(ApiException) as info:
        await crd.get_namespaced_custom_object(GROUP, VERSION, "shop", PLURAL, "web")
    assert info.value.status == 404
    assert json.loads(info.value.body)["kind"] == "Status"

    with pytest.raises(ApiException) as info:
        await crd.create_namespaced_custom_object(
            GROUP, VERSION, "shop", PLURAL, rollout("shop", "a")
        )
        await crd.create_namespaced_custom_object(
            GROUP, VERSION, "shop", PLURAL, rollout("shop", "a")
        )
    assert info.value.status == 409 and json.loads(info.value.body)["reason"] == "AlreadyExists"


async def test_core_and_apps_lists(sim: KubeSim, api: client.ApiClient) -> None:
    sim.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "s", "namespace": "a"},
            "spec": {"clusterIP": "10.0.0.1", "ports": [{"port": 80}]},
        }
    )
    sim.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "rs", "namespace": "b", "labels": {"app": "x"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "x"}}},
            "status": {"replicas": 2, "availableReplicas": 2},
        }
    )
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    services = await core.list_service_for_all_namespaces()
    assert [s.spec.cluster_ip for s in services.items] == ["10.0.0.1"]
    assert (await core.list_namespaced_service("b")).items == []
    replicasets = await apps.list_namespaced_replica_set("b", label_selector="app=x")
    assert [r.status.available_replicas for r in replicasets.items] == [2]
    assert (await apps.list_namespaced_replica_set("b", label_selector="app=y")).items == []


async def test_lease_replace_conflicts_on_a_stale_resource_version(api: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(api)
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "l", "namespace": "ns"},
        "spec": {"holderIdentity": "a"},
    }
    created = await leases.create_namespaced_lease("ns", body)
    stale = created.metadata.resource_version
    created.spec.holder_identity = "b"
    replaced = await leases.replace_namespaced_lease("l", "ns", created)
    assert replaced.spec.holder_identity == "b"
    created.metadata.resource_version = stale
    with pytest.raises(ApiException) as info:
        await leases.replace_namespaced_lease("l", "ns", created)
    assert info.value.status == 409
    assert json.loads(info.value.body)["reason"] == "Conflict"


async def test_kubernetes_asyncio_watch_with_watch_true(
    sim: KubeSim, api: client.ApiClient
) -> None:
    crd = client.CustomObjectsApi(api)
    sim.apply(rollout("shop", "a"))
    start = sim.resource_version
    sim.patch(f"{GROUP}/{VERSION}", "Rollout", "shop", "a", {"status": {"phase": "Paused"}})
    seen: list[tuple[str, str]] = []
    async with watch.Watch() as w:
        stream = w.stream(
            crd.list_namespaced_custom_object,
            GROUP,
            VERSION,
            "shop",
            PLURAL,
            resource_version=start,
            timeout_seconds=1,
        )
        async for event in stream:
            seen.append((event["type"], event["object"]["status"]["phase"]))
            break
    assert seen == [("MODIFIED", "Paused")]


async def raw_watch(api: client.ApiClient, path: str, **query: Any) -> list[dict[str, Any]]:
    """Every event of one watch request until the server ends it."""
    response = await kube.open_stream(
        api,
        path,
        query={"watch": "true", **query},
        client_timeout=aiohttp.ClientTimeout(total=5),
    )
    async with response:
        body = await response.read()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


async def test_watch_replays_from_a_resource_version_with_bookmarks(
    sim: KubeSim, api: client.ApiClient
) -> None:
    sim.apply(rollout("a", "one"))
    since = sim.resource_version
    sim.apply(rollout("a", "two"))
    sim.apply(rollout("b", "three"))
    sim.delete(f"{GROUP}/{VERSION}", "rollouts", "a", "one")
    events = await raw_watch(
        api,
        "/apis/argoproj.io/v1alpha1/namespaces/a/rollouts",
        resourceVersion=since,
        allowWatchBookmarks="true",
        timeoutSeconds=0.5,
    )
    changes = [
        (e["type"], e["object"]["metadata"]["name"]) for e in events if e["type"] != "BOOKMARK"
    ]
    assert changes == [("ADDED", "two"), ("DELETED", "one")]
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert (
        bookmarks and bookmarks[-1]["object"]["metadata"]["resourceVersion"] == sim.resource_version
    )


async def test_watch_without_version_starts_with_the_current_state(
    sim: KubeSim, api: client.ApiClient
) -> None:
    sim.apply(rollout("a", "one"))
    events = await raw_watch(api, "/apis/argoproj.io/v1alpha1/rollouts", timeoutSeconds=0.2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "one")]


async def test_too_old_resource_version_gets_410(api: client.ApiClient) -> None:
    async with KubeSim(history_size=2) as small:
        api2 = client.ApiClient(client.Configuration(host=small.url))
        try:
            for name in ("a", "b", "c", "d"):  # versions 1-4; 1 and 2 fall out of the window
                small.apply(rollout("ns", name))
            events = await raw_watch(
                api2, "/apis/argoproj.io/v1alpha1/rollouts", resourceVersion="1", timeoutSeconds=1
            )
            assert [(e["type"], e["object"]["code"]) for e in events] == [("ERROR", 410)]
            # Still within the window: fine.
            events = await raw_watch(
                api2, "/apis/argoproj.io/v1alpha1/rollouts", resourceVersion="2", timeoutSeconds=0.2
            )
            assert [e["object"]["metadata"]["name"] for e in events] == ["c", "d"]
        finally:
            await api2.close()


async def test_expire_watches_sends_410_to_open_watches(
    sim: KubeSim, api: client.ApiClient
) -> None:
    sim.apply(rollout("ns", "a"))
    since = sim.resource_version
    task = asyncio.create_task(
        raw_watch(api, "/apis/argoproj.io/v1alpha1/rollouts", resourceVersion=since)
    )
    async with asyncio.timeout(3):
        while not sim.open_watches:
            await asyncio.sleep(0.01)
    sim.expire_watches()
    events = await asyncio.wait_for(task, 3)
    assert events[-1]["type"] == "ERROR" and events[-1]["object"]["code"] == 410
    # ... and that version is gone for new watches too.
    again = await raw_watch(api, "/apis/argoproj.io/v1alpha1/rollouts", resourceVersion=since)
    assert again[0]["object"]["reason"] == "Expired"


async def test_drop_watches_closes_the_connection_mid_stream(
    sim: KubeSim, api: client.ApiClient
) -> None:
    sim.apply(rollout("ns", "a"))
    since = sim.resource_version
    response = await kube.open_stream(
        api,
        "/apis/argoproj.io/v1alpha1/rollouts",
        query={"watch": "true", "resourceVersion": since},
        client_timeout=aiohttp.ClientTimeout(total=5),
    )
    async with response:
        async with asyncio.timeout(3):
            while not sim.open_watches:
                await asyncio.sleep(0.01)
        sim.apply(rollout("ns", "b"))
        line = await response.content.readline()
        assert json.loads(line)["object"]["metadata"]["name"] == "b"
        sim.drop_watches()
        # No ERROR event and no clean end: the stream breaks.
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.content.read()
    # The version is still retained: a resumed watch replays from it.
    again = await raw_watch(
        api, "/apis/argoproj.io/v1alpha1/rollouts", resourceVersion=since, timeoutSeconds=0.2
    )
    assert [e["object"]["metadata"]["name"] for e in again if e["type"] == "ADDED"] == ["b"]


async def test_discovery(api: client.ApiClient) -> None:
    groups = await kube.request(api, "GET", "/apis")
    names = {g["name"] for g in groups["groups"]}
    assert {"argoproj.io", "apps", "coordination.k8s.io", "events.k8s.io"} <= names
    resources = await kube.request(api, "GET", "/apis/argoproj.io/v1alpha1")
    assert [r["name"] for r in resources["resources"]] == ["rollouts"]
    core = await kube.request(api, "GET", "/api")
    assert core["versions"] == ["v1"]


async def test_unsupported_patch_type_is_refused(sim: KubeSim, api: client.ApiClient) -> None:
    sim.apply(rollout("ns", "a"))
    with pytest.raises(kube.KubeApiError) as info:
        await kube.request(
            api,
            "PATCH",
            "/apis/argoproj.io/v1alpha1/namespaces/ns/rollouts/a",
            body=[{"op": "add", "path": "/spec", "value": {}}],
            content_type="application/json-patch+json",
        )
    assert info.value.status == 415


def test_direct_api() -> None:
    sim = KubeSim()
    created = sim.apply(rollout("ns", "a", spec={"v": 1}))
    assert created["metadata"]["resourceVersion"] == "1"
    replaced = sim.apply(rollout("ns", "a", spec={"v": 2}))
    assert (
        replaced["metadata"]["generation"] == 2
        and replaced["metadata"]["uid"] == created["metadata"]["uid"]
    )
    assert sim.get(f"{GROUP}/{VERSION}", "Rollout", "ns", "a") == replaced
    assert sim.list(f"{GROUP}/{VERSION}", "rollouts", "other") == []
    with pytest.raises(KeyError):
        sim.patch(f"{GROUP}/{VERSION}", "rollouts", "ns", "missing", {})
    with pytest.raises(KeyError):
        sim.resource("v1", "pods")
    assert sim.delete(f"{GROUP}/{VERSION}", "rollouts", "ns", "a") is not None
    assert sim.delete(f"{GROUP}/{VERSION}", "rollouts", "ns", "a") is None
    assert sim.resource_version == "3"


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        pytest.param({"a": 1}, {"a": None}, {}, id="null-deletes"),
        pytest.param(
            {"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}, {"a": {"b": 3, "c": 2}}, id="nested-merge"
        ),
        pytest.param({"a": [1, 2]}, {"a": [3]}, {"a": [3]}, id="lists-replace"),
        pytest.param({"a": 1}, {"b": {"c": None}}, {"a": 1, "b": {}}, id="null-inside-new"),
    ],
)
def test_merge_patch(
    target: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert merge_patch(target, patch) == expected
