"""``kongsplit get rollout NAME`` / ``get rollouts`` as an operator runs them: a subprocess,
against KubeSim (and kmock) and the Kong simulator over real sockets, with the real daemon
applying the weights and posting its Events. ``--watch`` runs in a pseudo-terminal read through
a VT100 emulator (pyte): the test changes the Rollout, reads the screen, compares the frames,
and presses Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import os
import re
import shutil
import signal
import socket
import struct
import sys
import termios
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock
import pyte
import pytest
import yaml
from kmock_shims import REPLICASETS, ROLLOUTS, SERVICES, KubeMock, create
from prometheus_client import CollectorRegistry

from kongsplit import argoview, get
from kongsplit.app import Daemon
from kongsplit.config import load_settings
from kongsplit.events import REASON_APPLIED
from kongsplit.kong.targets import owner_tags_for
from kongsplit.sim import objects
from kongsplit.sim.kongsim import KongSim
from kongsplit.sim.kubesim import KubeSim

pytest_plugins = ("kmock_shims",)

ROOT = Path(__file__).resolve().parents[1]
U = "checkout.shop.svc"
STABLE_IP, CANARY_IP = "10.96.14.20", "10.96.14.21"
STABLE, CANARY = f"{STABLE_IP}:80", f"{CANARY_IP}:80"
OWNER = list(owner_tags_for("shop", "checkout"))
RO = ("argoproj.io/v1alpha1", "rollouts")
#: When the seeded objects were created (KubeSim keeps a given creationTimestamp): their AGE is
#: then the same on every frame of a test, so whole screens can be compared.
CREATED = "2025-01-01T00:00:00Z"


# --------------------------------------------------------------------------- Argo's objects


def replicaset(pod_hash: str, pods: int, revision: int, ready: int | None = None) -> dict[str, Any]:
    rs = objects.replicaset("checkout", pod_hash, pods, pods if ready is None else ready)
    rs["metadata"]["annotations"] = {"rollout.argoproj.io/revision": str(revision)}
    rs["metadata"]["generation"] = 1
    rs["status"].update(
        {"observedGeneration": 1, "readyReplicas": pods if ready is None else ready}
    )
    return rs


def paused_at(index: int) -> dict[str, Any]:
    """The Rollout's status as Argo leaves it paused at step ``index`` of revision v2."""
    return {
        "currentPodHash": "v2",
        "stableRS": "v1",
        "currentStepIndex": index,
        "observedGeneration": "1",
        "replicas": 5,
        "updatedReplicas": 1,
        "readyReplicas": 5,
        "availableReplicas": 5,
        "controllerPause": True,
        "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2025-01-01T00:00:00Z"}],
    }


def seed(kube: KubeSim, *, index: int = 3, namespace: str = "shop") -> None:
    """checkout: 8 steps, paused at ``index`` (3: after setWeight 25), canary v2 with one pod."""
    kube.apply(objects.service("checkout-stable", STABLE_IP, "v1", namespace))
    kube.apply(objects.service("checkout-canary", CANARY_IP, "v2", namespace))
    for rs in (replicaset("v1", 4, 1), replicaset("v2", 1, 2)):
        rs["metadata"].update(namespace=namespace, creationTimestamp=CREATED)
        kube.apply(rs)
    ro = objects.rollout("checkout", namespace, pod_hash="v2", stable_rs="v1", index=index)
    ro["metadata"]["creationTimestamp"] = CREATED
    ro["status"] = paused_at(index)
    kube.apply(ro)


def kubeconfig(path: Path, server: str, *, namespace: str | None = None, token: str = "") -> Path:
    context: dict[str, Any] = {"cluster": "sim", "user": "sim"}
    if namespace:
        context["namespace"] = namespace
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "sim", "cluster": {"server": server}}],
                "users": [{"name": "sim", "user": {"token": token} if token else {}}],
                "contexts": [{"name": "sim", "context": context}],
                "current-context": "sim",
            }
        )
    )
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """No kubeconfig, KONGSPLIT_* or colour setting of the machine running the tests."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "NO_COLOR")
        and not k.startswith("KONGSPLIT_")
    }
    return {**env, "PYTHONIOENCODING": "utf-8", **extra}


async def kongsplit(*argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kongsplit",
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def eventually(check: Callable[[], bool], *, within: float = 10.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"not within {within}s: {what}")
        await asyncio.sleep(0.02)


def kong_weights(kong: KongSim) -> dict[str, int]:
    try:
        return {t["target"]: t["weight"] for t in kong.targets(U)}
    except (KeyError, LookupError):
        return {}


# --------------------------------------------------------------------------- the world


@dataclass
class World:
    kube: KubeSim
    kong: KongSim
    kubeconfig: Path
    daemon: Daemon | None

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(KUBECONFIG=str(self.kubeconfig), **extra)

    def kong_args(self) -> list[str]:
        return [
            "--kong-url",
            self.kong.url,
            "--node",
            self.kong.urls[0],
            "--node",
            self.kong.urls[1],
        ]


@contextlib.asynccontextmanager
async def world(tmp_path: Path, *, daemon: bool = True, index: int = 3) -> AsyncIterator[World]:
    async with KubeSim() as kube, KongSim(nodes=2) as kong:
        seed(kube, index=index)
        config = kubeconfig(tmp_path / "kubeconfig", kube.url, namespace="shop")
        running: Daemon | None = None
        task: asyncio.Task[int] | None = None
        if daemon:
            settings = load_settings(
                env={},
                flags={
                    "kong": {"url": kong.url},
                    "kubernetes": {"kubeconfig": str(config)},
                    "server": {"listen": "127.0.0.1:0"},
                    "reconcile": {"interval": 0.5},
                    "leaderElection": {"enabled": False},
                },
            )
            running = Daemon(settings, registry=CollectorRegistry())
            task = asyncio.create_task(running.serve(), name="daemon-under-test")
        try:
            if running is not None:
                await eventually(
                    lambda: (
                        kong_weights(kong) == {STABLE: 75, CANARY: 25}
                        if index == 3
                        else bool(kong_weights(kong))
                    ),
                    what="the first apply",
                )
                await eventually(
                    lambda: any(e.get("reason") == REASON_APPLIED for e in kube.events),
                    what="the KongWeightsApplied Event",
                )
            yield World(kube, kong, config, running)
        finally:
            if running is not None and task is not None:
                running.stop()
                await asyncio.wait_for(task, 15)


# --------------------------------------------------------------------------- one Rollout


async def test_rollout_view_argo_status_split_kong_nodes_and_last_apply(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        code, out, err = await kongsplit(
            "get", "rollout", "checkout", "-n", "shop", *w.kong_args(), env=w.env()
        )
    assert (code, err) == (0, "")
    lines = out.splitlines()
    fields = {
        line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
        for line in lines[: lines.index("")]  # the summary, up to the tree
    }
    assert fields["Status"] == "॥ Paused"  # Argo's icon and phase, no colour (not a terminal)
    assert fields["Message"] == "CanaryPauseStep"
    assert fields["Step"] == "3/8 (pause)"
    assert fields["SetWeight"] == "25"
    assert fields["kongsplit"] == "managed, canary 25 / stable 75 of 100 (rule: step)"
    assert fields["In Kong"] == "in sync"
    assert fields["Last applied"].endswith(f"ago, Event {REASON_APPLIED})")
    assert "Kong upstream:  checkout.shop.svc" in lines
    tree = lines[lines.index(next(x for x in lines if x.startswith("NAME "))) :]
    assert tree[1].split()[:6] == ["⟳", "checkout", "Rollout", "॥", "Paused", tree[1].split()[5]]
    assert tree[1].endswith("setWeight 25, step 3/8")
    assert tree[2].strip() == "├──# revision:2"
    assert tree[3].split()[:4] == ["│", "└──⧉", "checkout-v2", "ReplicaSet"]
    assert tree[3].endswith("canary,ready:1/1")
    assert tree[5].split()[:3] == ["└──⧉", "checkout-v1", "ReplicaSet"]
    assert tree[5].endswith("stable,ready:4/4")
    head = next(i for i, x in enumerate(lines) if x.startswith("Kong http://"))
    assert lines[head] == f"Kong {w.kong.url} (3.9.3 community, mode db)"
    assert lines[head + 1].split() == [
        "TARGET", "ROLE", "SERVICE", "DESIRED", "KONG", "DRIFT", "NODE1", "NODE2",
    ]  # fmt: skip
    assert lines[head + 2].split() == [
        STABLE, "stable", "checkout-stable", "75", "75",
        "75", "HEALTHCHECKS_OFF", "75", "HEALTHCHECKS_OFF",
    ]  # fmt: skip
    assert lines[head + 3].split() == [
        CANARY, "canary", "checkout-canary", "25", "25",
        "25", "HEALTHCHECKS_OFF", "25", "HEALTHCHECKS_OFF",
    ]  # fmt: skip
    assert lines[head + 4] == f"  nodes: [1] {w.kong.urls[0]}  [2] {w.kong.urls[1]}"
    assert "\x1b[" not in out


async def test_json_view_for_scripts(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        code, out, err = await kongsplit(
            "get", "rollout", "checkout", *w.kong_args(), "-o", "json", env=w.env()
        )  # no -n: the context's namespace (shop)
    assert (code, err) == (0, "")
    [view] = json.loads(out)["rollouts"]
    assert (view["namespace"], view["name"]) == ("shop", "checkout")
    assert (view["status"], view["message"]) == ("Paused", "CanaryPauseStep")
    assert (view["step"], view["current_step"], view["set_weight"]) == ("3/8", "pause", 25)
    assert [(r["name"], r["role"], r["ready"], r["desired"]) for r in view["replicasets"]] == [
        ("checkout-v2", "canary", 1, 1),
        ("checkout-v1", "stable", 4, 4),
    ]
    ks = view["kongsplit"]
    assert (ks["upstream"], ks["state"], ks["rule"], ks["hold"]) == (U, "managed", "step", None)
    assert ks["desired"] == [
        {"target": STABLE, "role": "stable", "service": "checkout-stable", "weight": 75},
        {"target": CANARY, "role": "canary", "service": "checkout-canary", "weight": 25},
    ]
    kong = view["kong"]
    assert (kong["mode"], kong["upstream_found"], kong["in_sync"], kong["serving"]) == (
        "db",
        True,
        True,
        True,
    )
    assert [(t["target"], t["desired"], t["weight"], t["drift"]) for t in kong["targets"]] == [
        (STABLE, 75, 75, False),
        (CANARY, 25, 25, False),
    ]
    assert [n["served"] for n in kong["targets"][1]["nodes"]] == [25, 25]
    assert view["drift"] is False
    assert view["last_applied"]["source"] == "event"
    assert view["last_applied"]["time"].endswith("Z")


async def test_drift_and_a_node_behind(tmp_path: Path) -> None:
    """No daemon: Kong holds 90/10 where the Rollout wants 75/25; node 2 lags the database."""
    async with world(tmp_path, daemon=False) as w:
        w.kong.add_upstream(U, tags=["managed-by-kongsplit"])
        w.kong.add_target(U, STABLE, 90, tags=OWNER)
        w.kong.add_target(U, CANARY, 10, tags=OWNER)
        w.kong.add_target(U, "10.9.9.9:80", 5)  # foreign, carrying weight
        code, out, err = await kongsplit(
            "get", "rollout", "checkout", "-n", "shop", *w.kong_args(), env=w.env()
        )
        assert (code, err) == (0, "")
        assert "  In Kong:      DRIFT" in out
        assert "  Last applied: unknown (no KongWeightsApplied Event)" in out
        rows = {line.split()[0]: line.split() for line in out.splitlines() if ":80 " in line}
        assert rows[STABLE][3:6] == ["75", "90", "*"]
        assert rows[CANARY][3:6] == ["25", "10", "*"]
        assert rows["10.9.9.9:80"][1:6] == ["foreign", "-", "-", "5", "*"]
        assert rows[CANARY][6:] == ["10≠", "HEALTHCHECKS_OFF", "10≠", "HEALTHCHECKS_OFF"]
        assert "  ≠ this node serves another weight (not caught up yet, or drifted)" in out
        code, out, _ = await kongsplit(
            "get", "rollouts", "-n", "shop", "--kong-url", w.kong.url, env=w.env()
        )
    assert code == 0
    assert out.splitlines()[1].split() == [
        "checkout", "Paused", "3/8", "25", "5/5", U, "25/75", "10/90", "managed", "DRIFT", "-",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "state", "reason"),
    [
        pytest.param(
            "missing-service",
            "invalid",
            "Reason:       Rollout shop/checkout: spec.strategy.canary: Service "
            "shop/checkout-canary not found",
            id="invalid",
        ),
        pytest.param(
            "not-observed",
            "held",
            "Held:         status.observedGeneration 1 is below metadata.generation 2: the "
            "status may still describe the previous spec",
            id="held",
        ),
        pytest.param(
            "not-annotated",
            "unmanaged",
            "Reason:       not annotated with kongsplit.io/upstream",
            id="unmanaged",
        ),
    ],
)
async def test_held_and_invalid_say_why(tmp_path: Path, case: str, state: str, reason: str) -> None:
    async with world(tmp_path, daemon=False) as w:
        if case == "missing-service":
            w.kube.delete("v1", "services", "shop", "checkout-canary")
        elif case == "not-observed":
            w.kube.patch(*RO, "shop", "checkout", {"spec": {"replicas": 5}})
        else:
            w.kube.patch(*RO, "shop", "checkout", {"metadata": {"annotations": None}})
        code, out, err = await kongsplit(
            "get", "rollout", "checkout", "--kong-url", w.kong.url, env=w.env()
        )
    assert (code, err) == (0, "")
    line = next(x for x in out.splitlines() if x.startswith("  kongsplit:"))
    assert line.split(":", 1)[1].strip().split(",")[0] == state
    assert f"  {reason}" in out.splitlines()


async def test_state_url_gives_the_daemons_last_apply(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        assert w.daemon is not None and w.daemon.port is not None
        url = f"http://127.0.0.1:{w.daemon.port}"
        code, out, err = await kongsplit(
            "get", "rollout", "checkout", "--kong-url", w.kong.url, "--state-url", url,
            "-o", "json", env=w.env(),
        )  # fmt: skip
        assert (code, err) == (0, "")
        [view] = json.loads(out)["rollouts"]
        assert view["last_applied"]["source"] == "state"
        assert view["kongsplit"]["daemon_state"] == "managed"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        code, out, err = await kongsplit(
            "get", "rollout", "checkout", "--kong-url", w.kong.url,
            "--state-url", f"http://op:s3cret@127.0.0.1:{closed}", env=w.env(),
        )  # fmt: skip
    assert (code, err) == (0, "")
    assert f"! cannot read kongsplit's /state at http://***@127.0.0.1:{closed} (" in out
    assert "s3cret" not in out
    assert f"Event {REASON_APPLIED})" in out  # the Events still say when


# --------------------------------------------------------------------------- the list


async def test_list_one_namespace_and_all(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        seed(w.kube, namespace="cart")  # same names in another namespace, not annotated for us
        w.kube.patch(*RO, "cart", "checkout", {"metadata": {"annotations": None}})
        code, out, err = await kongsplit("get", "rollouts", "--kong-url", w.kong.url, env=w.env())
        assert (code, err) == (0, "")
        header, *rows = out.splitlines()
        assert header.split() == [
            "NAME", "STATUS", "STEP", "SET-WEIGHT", "READY", "UPSTREAM", "SPLIT", "KONG",
            "KONGSPLIT", "DRIFT", "LAST-APPLIED",
        ]  # fmt: skip
        assert len(rows) == 1  # the context's namespace only
        assert rows[0].split()[:10] == [
            "checkout", "Paused", "3/8", "25", "5/5", U, "25/75", "25/75", "managed", "in",
        ]  # fmt: skip
        code, out, err = await kongsplit(
            "get", "rollouts", "-A", "--kong-url", w.kong.url, env=w.env()
        )
    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split()[:2] == ["NAMESPACE", "NAME"]
    assert [r.split()[:2] + r.split()[6:9] for r in rows] == [
        ["cart", "checkout", "-", "-", "-"],
        ["shop", "checkout", U, "25/75", "25/75"],
    ]


# --------------------------------------------------------------------------- Kong's modes


async def test_dbless_nodes_are_judged_each_on_its_own_config(tmp_path: Path) -> None:
    async with KubeSim() as kube, KongSim(mode="off", nodes=2) as kong:
        seed(kube)
        config = kubeconfig(tmp_path / "kubeconfig", kube.url, namespace="shop")
        for node, canary in ((0, 25), (1, 10)):  # node 2's sidecar has not written yet
            kong.add_upstream(U, node=node)
            kong.add_target(U, STABLE, 100 - canary, tags=OWNER, node=node)
            kong.add_target(U, CANARY, canary, tags=OWNER, node=node)
        code, out, err = await kongsplit(
            "get", "rollout", "checkout", "--kong-url", kong.url, "--node", kong.urls[0],
            "--node", kong.urls[1], "-o", "json", env=clean_env(KUBECONFIG=str(config)),
        )  # fmt: skip
    assert (code, err) == (0, "")
    [view] = json.loads(out)["rollouts"]
    assert view["kong"]["mode"] == "dbless"
    canary_row = view["kong"]["targets"][1]
    assert canary_row["weight"] == 25  # the node at --kong-url agrees…
    assert [n["weight"] for n in canary_row["nodes"]] == [25, 10]  # …its neighbour does not
    assert canary_row["drift"] is True and view["drift"] is True


async def test_hybrid_control_plane_needs_its_data_planes(tmp_path: Path) -> None:
    async with KubeSim() as kube, KongSim(mode="control_plane", data_planes=1) as kong:
        seed(kube)
        config = kubeconfig(tmp_path / "kubeconfig", kube.url, namespace="shop")
        kong.add_upstream(U)
        kong.add_target(U, STABLE, 75, tags=OWNER)
        kong.add_target(U, CANARY, 25, tags=OWNER)
        env = clean_env(KUBECONFIG=str(config))
        code, out, err = await kongsplit(
            "get", "rollout", "checkout", "--kong-url", kong.url, env=env
        )
        assert (code, err) == (0, "")
        assert "is a hybrid control plane: it builds no balancers" in out
        assert "list their Status API URLs with --node" in out
        code, out, err = await kongsplit(
            "get", "rollout", "checkout", "--kong-url", kong.url, "--node", kong.dp_urls[0],
            "-o", "json", env=env,
        )  # fmt: skip
    assert (code, err) == (0, "")
    [view] = json.loads(out)["rollouts"]
    assert [t["nodes"][0]["served"] for t in view["kong"]["targets"]] == [75, 25]


# --------------------------------------------------------------------------- mistakes


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        pytest.param(
            ["get", "rollout"],
            2,
            "give the Rollout's name (kongsplit get rollout NAME)",
            id="no-name",
        ),
        pytest.param(
            ["get", "rollout", "nope"], 1,
            "Rollout nope not found in namespace shop (Rollouts there: checkout); check the name,"
            " or give -n NAMESPACE",
            id="not-found",
        ),
        pytest.param(
            ["get", "rollout", "checkout", "-A"], 2, "a Rollout is named within one namespace",
            id="name-and-A",
        ),
        pytest.param(
            ["get", "rollouts", "-A", "-n", "x"], 2,
            "kongsplit get: give -n NAMESPACE or -A (every namespace), not both", id="A-and-n",
        ),
        pytest.param(["get", "rollouts", "-n", "a,b"], 2, "give one namespace", id="two-ns"),
        pytest.param(["get", "pods"], 2, "invalid choice: 'pods'", id="other-kind"),
        pytest.param(
            ["get", "rollouts", "--context", "prod"], 1,
            "has no context 'prod' (its contexts: sim): give --context one of them",
            id="unknown-context",
        ),
        pytest.param(
            ["get", "rollouts", "--kubeconfig", "/nonexistent/kc"], 1,
            "kubeconfig /nonexistent/kc does not exist", id="missing-kubeconfig",
        ),
        pytest.param(
            ["get", "rollout", "checkout", "--kong-url", "http://admin:s3cret@127.0.0.1:{closed}"],
            1, "connection refused by ***@127.0.0.1", id="kong-down",
        ),
        pytest.param(["get", "rollouts", "--kong-url", "kong:8001"], 2, "http://", id="bad-url"),
        pytest.param(["get", "rollouts", "--interval", "0"], 2, "between 0.1", id="interval"),
    ],
)  # fmt: skip
async def test_every_mistake_is_one_line(
    tmp_path: Path, argv: list[str], code: int, says: str
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    async with world(tmp_path, daemon=False) as w:
        argv = [a.replace("{closed}", str(closed)) for a in argv]
        if "--kong-url" not in argv:
            argv += ["--kong-url", w.kong.url]
        got, out, err = await kongsplit(*argv, env=w.env())
    assert got == code, err
    assert says in err
    assert err.count("\n") == 1 and "Traceback" not in err and "s3cret" not in out + err
    assert "Error" not in err.replace("error", "")  # no library class names
    if any("s3cret@" in a for a in argv):
        # Kong down: the Rollout is still shown, Kong's part says why, and the exit code is 1.
        assert out.startswith("Name:           checkout\n")
        assert "  In Kong:      cannot tell: GET /: connection refused by ***@127.0.0.1:" in out
    else:
        assert out == ""


async def test_an_unreachable_cluster_and_a_refusal(tmp_path: Path, kube_mock: KubeMock) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    config = kubeconfig(tmp_path / "down", f"http://127.0.0.1:{closed}", token="t0ken-secret")
    code, out, err = await kongsplit("get", "rollouts", env=clean_env(KUBECONFIG=str(config)))
    assert (code, out) == (1, "")
    assert err == (
        f"kongsplit get: cannot reach the Kubernetes API at http://127.0.0.1:{closed}: "
        "connection refused; check the kubeconfig (--kubeconfig, --context) and that the "
        "cluster is up\n"
    )

    def refuse(request: kmock.Request) -> Any:
        raise kmock.KubernetesError(403, "Forbidden", "rollouts is forbidden")

    kube_mock[kmock.action.LIST, kmock.resource(ROLLOUTS)] << refuse
    config = kubeconfig(tmp_path / "kmock", str(kube_mock.url).rstrip("/"), namespace="shop")
    code, out, err = await kongsplit("get", "rollouts", env=clean_env(KUBECONFIG=str(config)))
    assert (code, out) == (1, "")
    assert err.startswith(
        "kongsplit get: the Kubernetes API at http://127.0.0.1:"
    ) and err.endswith(
        "does not let this user list rollouts.argoproj.io in namespace shop (403 Forbidden: "
        "rollouts is forbidden); use a context that may, or name allowed namespaces with -n\n"
    )
    assert "t0ken-secret" not in err


async def test_against_kmock(tmp_path: Path, kube_mock: KubeMock) -> None:
    """kmock lists items as stored (no apiVersion/kind) and ignores field selectors."""
    for resource, obj in (
        (SERVICES, objects.service("checkout-stable", STABLE_IP, "v1")),
        (SERVICES, objects.service("checkout-canary", CANARY_IP, "v2")),
        (REPLICASETS, replicaset("v1", 4, 1)),
        (REPLICASETS, replicaset("v2", 1, 2)),
        (ROLLOUTS, {**objects.rollout("checkout", pod_hash="v2", stable_rs="v1", index=3),
                    "status": paused_at(3)}),
    ):  # fmt: skip
        await create(kube_mock, resource, obj)
    await create(
        kube_mock,
        "v1/events",
        {
            "metadata": {"name": "checkout.1", "namespace": "shop"},
            "involvedObject": {"kind": "Rollout", "namespace": "shop", "name": "checkout"},
            "reason": REASON_APPLIED,
            "message": "applied",
            "lastTimestamp": "2025-03-04T05:06:07Z",
        },
    )
    config = kubeconfig(tmp_path / "kc", str(kube_mock.url).rstrip("/"), namespace="shop")
    async with KongSim() as kong:
        kong.add_upstream(U)
        kong.add_target(U, STABLE, 75, tags=OWNER)
        kong.add_target(U, CANARY, 25, tags=OWNER)
        code, out, err = await kongsplit(
            "get", "rollout", "checkout", "--kong-url", kong.url, "-o", "json",
            env=clean_env(KUBECONFIG=str(config)),
        )  # fmt: skip
    assert (code, err) == (0, "")
    [view] = json.loads(out)["rollouts"]
    assert (view["status"], view["step"], view["drift"]) == ("Paused", "3/8", False)
    assert view["last_applied"] == {
        "time": "2025-03-04T05:06:07Z",
        "source": "event",
        "message": "applied",
    }


async def test_kubeconfig_list_and_context_namespace(tmp_path: Path) -> None:
    """$KUBECONFIG naming two files: the second one's context (namespace cart) is current."""
    async with KubeSim() as kube, KongSim() as kong:
        seed(kube, namespace="cart")
        first = tmp_path / "a.yaml"
        first.write_text("apiVersion: v1\nkind: Config\n")
        second = kubeconfig(tmp_path / "b.yaml", kube.url, namespace="cart")
        env = clean_env(KUBECONFIG=f"{first}{os.pathsep}{second}")
        code, out, err = await kongsplit("get", "rollouts", "--kong-url", kong.url, env=env)
        assert (code, err) == (0, "")
        assert out.splitlines()[1].startswith("checkout ")
        home = tmp_path / "home"
        (home / ".kube").mkdir(parents=True)
        kubeconfig(home / ".kube" / "config", kube.url)
        code, out, err = await kongsplit(
            "get", "rollouts", "--kong-url", kong.url, env=clean_env(HOME=str(home))
        )  # ~/.kube/config, a context without a namespace: default
    assert (code, err) == (0, "")
    assert out == "No Rollouts in namespace default.\n"


async def test_a_terminal_that_cannot_show_unicode_gets_ascii(tmp_path: Path) -> None:
    async with world(tmp_path, daemon=False) as w:
        code, out, err = await kongsplit(
            "get", "rollout", "checkout", "--kong-url", w.kong.url,
            env=w.env(PYTHONIOENCODING="ascii"),
        )  # fmt: skip
    assert (code, err) == (0, "")
    assert out.isascii()
    assert "Status:         Paused" in out.splitlines()
    assert "|--revision:2" in out and "`--checkout-v1" in out


def test_the_event_reason_is_the_daemons() -> None:
    assert get.REASON_APPLIED == REASON_APPLIED


# --------------------------------------------------------------------------- the plugin


def _tool(name: str) -> str:
    found = shutil.which(name, path=f"{ROOT / '.tools' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing: run .ci/install-tools")
        pytest.skip(f"{name} is not installed (.ci/install-tools puts it in .tools/bin)")
    return found


async def test_kubectl_plugin(tmp_path: Path) -> None:
    """``kubectl kongsplit …`` through the real kubectl, finding the console script on PATH."""
    kubectl = _tool("kubectl")
    plugin = Path(sys.executable).parent / "kubectl-kongsplit"
    if not plugin.exists():
        pytest.fail(f"{plugin} is missing: pip install the package (it ships the entry point)")
    async with world(tmp_path, daemon=False) as w:
        path = f"{plugin.parent}{os.pathsep}{os.environ['PATH']}"
        env = w.env(PATH=path)
        proc = await asyncio.create_subprocess_exec(
            kubectl, "kongsplit", "version", env=env, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0 and out.decode().startswith("kongsplit ")
        proc = await asyncio.create_subprocess_exec(
            kubectl, "kongsplit", "get", "rollout", "checkout", "--kong-url", w.kong.url,
            "-o", "json", env=env, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        assert json.loads(out)["rollouts"][0]["step"] == "3/8"
        proc = await asyncio.create_subprocess_exec(
            kubectl, "kongsplit", "get", "--bogus", env=env, stderr=asyncio.subprocess.PIPE
        )
        _, err = await proc.communicate()
    assert proc.returncode == 2
    assert err.decode().startswith("kubectl kongsplit get: ")


# --------------------------------------------------------------------------- --watch


class Terminal:
    """A pseudo-terminal running one command, its screen read through pyte."""

    def __init__(self, rows: int = 45, cols: int = 150) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, *argv: str, env: dict[str, str]) -> None:
        slave = self.slave

        def controlling_terminal() -> None:  # after setsid (start_new_session)
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

        self.proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**env, "TERM": "xterm"},
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=controlling_terminal,
        )
        os.close(self.slave)
        loop = asyncio.get_running_loop()
        loop.add_reader(self.master, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
            return
        self.raw += data
        self.stream.feed(data)

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def text(self) -> str:
        return "\n".join(self.lines()).rstrip()

    async def until(self, check: Callable[[str], bool], what: str, within: float = 15) -> str:
        try:
            await eventually(lambda: check(self.text()), within=within, what=what)
        except BaseException:
            print(self.text())
            raise
        return self.text()

    def press(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def resize(self, rows: int, cols: int) -> None:
        self.screen.resize(rows, cols)
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    async def close(self) -> int:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            if self.proc.returncode is None:
                await asyncio.wait_for(self.proc.wait(), 10)
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)
        assert self.proc.returncode is not None
        return self.proc.returncode


def _row(screen: str, target: str) -> list[str]:
    return next(line.split() for line in screen.splitlines() if line.strip().startswith(target))


def expected_screen(w: World, *, step: int, canary: int, rule: str) -> list[str]:
    """The whole screen ``get rollout checkout --watch`` draws (45 rows), the Rollout paused at
    ``step`` with Kong serving ``canary`` on both nodes; the last apply's time as
    :func:`screen_of` writes it."""
    age = argoview.age(CREATED)
    a = f"{'AGE':<{max(3, len(age))}}"
    g = f"{age:<{len(a)}}"
    stable = 100 - canary
    s, c, h = f"{stable:>2}", f"{canary:>2}", "HEALTHCHECKS_OFF"
    lines = f"""\
Name:           checkout
Namespace:      shop
Status:         ॥ Paused
Message:        CanaryPauseStep
Strategy:       Canary
  Step:         {step}/8 (pause)
  SetWeight:    {canary}
Replicas:
  Desired:      4
  Current:      5
  Updated:      1
  Ready:        5
  Available:    5
Kong upstream:  checkout.shop.svc
  kongsplit:    managed, canary {canary} / stable {stable} of 100 (rule: {rule})
  In Kong:      in sync
  Last applied: <time> (<age> ago, Event KongWeightsApplied)

NAME                 KIND        STATUS     {a}  INFO
⟳ checkout           Rollout     ॥ Paused   {g}  setWeight {canary}, step {step}/8
├──# revision:2
│  └──⧉ checkout-v2  ReplicaSet  ✔ Healthy  {g}  canary,ready:1/1
└──# revision:1
   └──⧉ checkout-v1  ReplicaSet  ✔ Healthy  {g}  stable,ready:4/4

Kong {w.kong.url} (3.9.3 community, mode db)
  TARGET          ROLE    SERVICE          DESIRED  KONG  DRIFT  NODE1                NODE2
  {STABLE}  stable  checkout-stable       {s}    {s}         {s} {h}  {s} {h}
  {CANARY}  canary  checkout-canary       {c}    {c}         {c} {h}  {c} {h}
  nodes: [1] {w.kong.urls[0]}  [2] {w.kong.urls[1]}""".split("\n")
    return [line.rstrip() for line in lines] + [""] * (45 - len(lines))


_APPLIED = re.compile(
    r"^  Last applied: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(\S+ ago, Event KongWeightsApplied\)$"
)


def screen_of(term: Terminal) -> list[str]:
    """Every row of the terminal, the last apply's time (which moves) written as a token."""
    return [
        "  Last applied: <time> (<age> ago, Event KongWeightsApplied)"
        if _APPLIED.match(line)
        else line
        for line in term.lines()
    ]


async def test_watch_redraws_in_place_and_ctrl_c_exits_0(tmp_path: Path) -> None:
    async with world(tmp_path, index=1) as w:
        await eventually(lambda: kong_weights(w.kong) == {STABLE: 90, CANARY: 10}, what="10 %")
        term = Terminal()
        await term.start(
            sys.executable, "-m", "kongsplit", "get", "rollout", "checkout", "--watch",
            "--interval", "0.5", *w.kong_args(), env=w.env(),
        )  # fmt: skip
        try:
            at_10 = expected_screen(w, step=1, canary=10, rule="step")
            await term.until(lambda _: screen_of(term) == at_10, "the first frame at 10 %")
            first = term.text()
            # Argo moves on to setWeight 25; the daemon writes Kong; the frame follows both.
            w.kube.patch(*RO, "shop", "checkout", {"status": {"currentStepIndex": 3}})
            at_25 = expected_screen(w, step=3, canary=25, rule="step")
            await term.until(lambda _: screen_of(term) == at_25, "the frame at 25 %")
            second = term.text()
            changed = {
                a.split()[0].rstrip(":")
                for a, b in zip(first.splitlines(), second.splitlines(), strict=True)
                if a != b and a.split()
            }
            # In place: the same screen lines, only what moved differs.
            assert changed == {"Step", "SetWeight", "kongsplit", "Last", "⟳", STABLE, CANARY}
            term.press(b"\x03")  # Ctrl-C
            code = await term.close()
        finally:
            if term.proc is not None and term.proc.returncode is None:
                term.proc.kill()
                await term.proc.wait()
    assert code == 0
    assert b"\x1b[?25h" in term.raw  # the cursor is given back
    assert b"\x1b[32min sync\x1b[0m" in term.raw  # colours on a terminal
    assert b"Traceback" not in term.raw


async def test_watch_fits_a_resized_terminal(tmp_path: Path) -> None:
    """SIGWINCH: the frame is drawn again at once, cut to the terminal's new height."""
    async with world(tmp_path, daemon=False) as w:
        term = Terminal()
        await term.start(
            sys.executable, "-m", "kongsplit", "get", "rollout", "checkout", "-w",
            "--interval", "30", "--kong-url", w.kong.url, env=w.env(),
        )  # fmt: skip
        try:
            full = await term.until(lambda s: "Kong http://" in s, "the whole frame")
            term.resize(12, 150)  # the kernel sends SIGWINCH to the watch
            await term.until(
                lambda s: s.splitlines() == full.splitlines()[:11], "the frame cut to 11 rows"
            )
            term.press(b"\x03")
            code = await term.close()
        finally:
            if term.proc is not None and term.proc.returncode is None:
                term.proc.kill()
                await term.proc.wait()
    assert code == 0


async def test_watch_piped_prints_a_frame_per_change_only(tmp_path: Path) -> None:
    """Piped (no terminal), the text frames are printed when the view changes: not because an
    age ticked or Kong was read again."""
    async with world(tmp_path) as w:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kongsplit", "get", "rollouts", "-w", "--interval", "0.2",
            "--kong-url", w.kong.url, env=w.env(), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        try:
            frames: list[list[str]] = [[]]

            async def read_for(seconds: float) -> None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(seconds):
                        while True:
                            line = (await proc.stdout.readline()).decode()  # type: ignore[union-attr]
                            assert line, "the watch ended"
                            if line == "\n":
                                frames.append([])
                            else:
                                frames[-1].append(line.rstrip("\n"))

            await read_for(2.5)  # Kong read about ten times, the ages ticking: one frame
            assert len(frames) == 2 and frames[1] == [], frames
            assert frames[0][1].split()[:3] == ["checkout", "Paused", "3/8"]
            w.kube.patch(*RO, "shop", "checkout", {"status": {"currentStepIndex": 5}})
            await read_for(2.5)
            assert [f[1].split()[2] for f in frames if f][-1] == "5/8"
            assert len(frames) <= 5  # the step, the daemon's write, its Event: not one per read
            proc.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(proc.wait(), 10)
            err = await proc.stderr.read()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert (code, err) == (0, b"")


async def test_watch_follows_a_rollout_list_and_a_deletion(tmp_path: Path) -> None:
    """``get rollouts --watch``: a Rollout created, then deleted, each redrawn in place."""
    async with world(tmp_path) as w:
        term = Terminal()
        await term.start(
            sys.executable, "-m", "kongsplit", "get", "rollouts", "-w", "--interval", "0.5",
            "--kong-url", w.kong.url, env=w.env(),
        )  # fmt: skip
        try:
            await term.until(
                lambda s: len(s.splitlines()) == 2 and "checkout" in s, "the list of one"
            )
            w.kube.apply(objects.rollout("cart", "shop"))
            screen = await term.until(lambda s: len(s.splitlines()) == 3, "the list of two")
            assert [line.split()[0] for line in screen.splitlines()] == [
                "NAME", "cart", "checkout"
            ]  # fmt: skip
            w.kube.delete(*RO, "shop", "cart")
            await term.until(lambda s: len(s.splitlines()) == 2, "the list of one again")
            w.kube.delete(*RO, "shop", "checkout")
            await term.until(lambda s: s == "No Rollouts in namespace shop.", "none")
            term.press(b"\x03")
            code = await term.close()
        finally:
            if term.proc is not None and term.proc.returncode is None:
                term.proc.kill()
                await term.proc.wait()
    assert code == 0 and b"Traceback" not in term.raw


async def test_watch_shows_drift_kong_going_away_and_a_deletion(tmp_path: Path) -> None:
    """No daemon here (it would put a weight back before the next read): a weight changed by
    hand is shown as drift, then in sync again; trouble while watching is a line in the frame,
    not an exit: Kong stopping, the Rollout deleted under ``get rollout NAME``."""
    async with world(tmp_path, daemon=False) as w:
        w.kong.add_upstream(U)
        w.kong.add_target(U, STABLE, 75, tags=OWNER)
        w.kong.add_target(U, CANARY, 25, tags=OWNER)
        term = Terminal()
        await term.start(
            sys.executable, "-m", "kongsplit", "get", "rollout", "checkout", "-w",
            "--interval", "0.3", "--kong-url", w.kong.url, env=w.env(),
        )  # fmt: skip
        try:
            await term.until(lambda s: "In Kong:      in sync" in s, "in sync")
            w.kong.set_weight(U, CANARY, 40)
            w.kong.set_weight(U, STABLE, 60)
            screen = await term.until(lambda s: "In Kong:      DRIFT" in s, "the drift")
            assert _row(screen, CANARY)[:6] == [
                CANARY,
                "canary",
                "checkout-canary",
                "25",
                "40",
                "*",
            ]
            w.kong.set_weight(U, CANARY, 25)
            w.kong.set_weight(U, STABLE, 75)
            await term.until(lambda s: "In Kong:      in sync" in s, "in sync again")
            await w.kong.stop()
            screen = await term.until(lambda s: "In Kong:      cannot tell: " in s, "Kong gone")
            assert "connection refused" in screen and "Status:         ॥ Paused" in screen
            w.kube.delete(*RO, "shop", "checkout")
            await term.until(lambda s: s == "Rollout shop/checkout is gone (deleted)", "deleted")
            term.press(b"\x03")
            code = await term.close()
        finally:
            if term.proc is not None and term.proc.returncode is None:
                term.proc.kill()
                await term.proc.wait()
    assert code == 0 and b"Traceback" not in term.raw


@pytest.mark.parametrize(
    ("watch", "code"), [pytest.param(False, 130, id="get"), pytest.param(True, 0, id="watch")]
)
async def test_ctrl_c_while_the_cluster_does_not_answer(
    tmp_path: Path, watch: bool, code: int
) -> None:
    """Ctrl-C before anything is drawn (an API server that accepts and never answers): the
    shell's 130 for a one-shot ``get``, 0 for ``--watch`` (stopping it is how it ends); no
    traceback, nothing else on the terminal."""
    hanging: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hanging.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{port}")
    term = Terminal()
    try:
        await term.start(
            sys.executable, "-m", "kongsplit", "get", "rollouts", *(["-w"] if watch else []),
            "--kong-url", "http://127.0.0.1:9", env=clean_env(KUBECONFIG=str(config)),
        )  # fmt: skip
        await eventually(lambda: bool(hanging), what="the request reaching the cluster")
        term.press(b"\x03")
        got = await term.close()
    finally:
        if term.proc is not None and term.proc.returncode is None:
            term.proc.kill()
            await term.proc.wait()
        for writer in hanging:
            writer.close()
        server.close()
        await server.wait_closed()
    assert got == code
    assert term.text() == "^C"  # the terminal's echo of the key, and nothing of ours


async def test_watch_json_lines_when_piped(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kongsplit", "get", "rollouts", "-w", "-o", "json",
            "--interval", "0.5", "--kong-url", w.kong.url, env=w.env(), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        try:
            docs: list[dict[str, Any]] = []

            async def until(check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
                while True:
                    line = await asyncio.wait_for(proc.stdout.readline(), 15)  # type: ignore[union-attr]
                    assert line, "the watch ended"
                    docs.append(json.loads(line))
                    if check(docs[-1]):
                        return docs[-1]

            await until(lambda d: d["rollouts"][0]["step"] == "3/8")
            w.kube.patch(*RO, "shop", "checkout", {"status": {"currentStepIndex": 5}})
            doc = await until(lambda d: d["rollouts"][0]["kong"]["targets"][1]["weight"] == 50)
            assert doc["rollouts"][0]["set_weight"] == 50 and doc["rollouts"][0]["drift"] is False
            assert all(a != b for a, b in itertools.pairwise(docs))  # changes only
            proc.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(proc.wait(), 10)
            err = await proc.stderr.read()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert (code, err) == (0, b"")


def test_an_annotated_rollout_kongsplit_cannot_route_is_invalid_as_the_daemon_says() -> None:
    """An annotated blue-green Rollout: the daemon reports it invalid (Event, metric, /state)
    and so does ``diff``; ``get`` said "skipped" (a red-team finding)."""
    from kongsplit import get
    from kongsplit.desired import desired_state
    from kongsplit.rollouts import Rollout, parse_rollout
    from kongsplit.sim import objects

    raw = objects.rollout("web", upstream="web.shop.svc")
    raw["spec"]["strategy"] = {"blueGreen": {"activeService": "web-active"}}
    parsed = parse_rollout(raw)
    assert isinstance(parsed, Rollout)
    part = get._kongsplit_part(desired_state(parsed, services={}, replicasets=[]), None, None)
    assert part["state"] == "invalid" and "blue-green" in str(part["reason"])
