"""``kongsplit diff``: what ``kongsplit run`` would write to Kong, against the Kubernetes
simulator (KubeSim, read through a kubeconfig) or files, and the Kong simulator (DB mode,
DB-less, a hybrid control plane), all over real sockets. Each case checks the exit code (0 in
sync, 1 changes, 2 error), the lines, and that Kong received no write at all."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kongsplit import cli
from kongsplit.kong.targets import owner_tags_for
from kongsplit.sim.kongsim import KongSim
from kongsplit.sim.kubesim import KubeSim
from kongsplit.sim.objects import replicaset, rollout, service

ROOT = Path(__file__).resolve().parents[1]
U = "checkout.shop.svc"
STABLE, CANARY = "10.96.0.10:80", "10.96.0.11:80"
WEB = "web.shop.svc"
WEB_STABLE, WEB_CANARY = "10.96.1.10:80", "10.96.1.11:80"
OWNER = list(owner_tags_for("shop", "checkout"))
ANNOTATIONS = {"kongsplit.io/upstream": U, "kongsplit.io/port": "http"}


def checkout_objects(*, index: int = 2) -> list[dict[str, Any]]:
    """shop/checkout at setWeight 25 (step index 2), its canary fully available."""
    return [
        service("checkout-stable", "10.96.0.10", "v1"),
        service("checkout-canary", "10.96.0.11", "v2"),
        replicaset("checkout", "v1", 8, 8),
        replicaset("checkout", "v2", 2, 2),
        rollout(
            "checkout",
            annotations=ANNOTATIONS,
            pod_hash="v2",
            stable_rs="v1",
            index=index,
            replicas=8,
        ),
    ]


def web_objects(namespace: str = "shop", name: str = "web", **fields: Any) -> list[dict[str, Any]]:
    """A fully promoted Rollout with its two Services (100 / 0)."""
    return [
        service(f"{name}-stable", "10.96.1.10", "v1", namespace),
        service(f"{name}-canary", "10.96.1.11", "v1", namespace),
        replicaset(name, "v1", 2, 2, namespace),
        rollout(name, namespace, pod_hash="v1", **fields),
    ]


def kong_holds_checkout_at(kong: KongSim, stable: int, canary: int) -> None:
    """checkout.shop.svc as a writing kongsplit leaves it."""
    kong.add_upstream(U, tags=OWNER)
    kong.add_target(U, STABLE, stable, tags=OWNER)
    kong.add_target(U, CANARY, canary, tags=OWNER)


def writes(kong: KongSim) -> list[str]:
    return [f"{r.method} {r.path}" for r in kong.requests if r.method != "GET"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class World:
    kube: KubeSim
    kong: KongSim
    kubeconfig: Path

    def apply(self, objs: list[dict[str, Any]]) -> None:
        for obj in objs:
            self.kube.apply(obj)


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "sim", "cluster": {"server": server}}],
                "users": [{"name": "anyone", "user": {}}],
                "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": "anyone"}}],
                "current-context": "sim",
            }
        )
    )
    return path


@pytest.fixture(autouse=True)
def _no_outside_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing of the machine running the tests: no KONGSPLIT_*, no kubeconfig, no cluster."""
    for name in list(os.environ):
        if name.upper().startswith("KONGSPLIT_") or name in (
            "KUBECONFIG",
            "KUBERNETES_SERVICE_HOST",
            "KUBERNETES_SERVICE_PORT",
        ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


async def make_world(tmp_path: Path, mode: str = "postgres", **kong: Any) -> AsyncIterator[World]:
    async with KubeSim() as kube, KongSim(mode=mode, **kong) as sim:
        yield World(kube, sim, write_kubeconfig(tmp_path / "kubeconfig", kube.url))


@pytest.fixture()
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async for w in make_world(tmp_path):
        yield w


async def diff(
    capsys: pytest.CaptureFixture[str], *argv: str, stdin: str | None = None
) -> tuple[int, str, str]:
    """``kongsplit diff …`` in-process (its own event loop, in a thread), as the CLI runs it."""
    capsys.readouterr()
    if stdin is not None:
        import io

        sys.stdin = io.StringIO(stdin)
    try:
        code = await asyncio.to_thread(_main, ["diff", *argv])
    finally:
        sys.stdin = sys.__stdin__
    out, err = capsys.readouterr()
    return code, out, err


def _main(argv: list[str]) -> int:
    """``cli.main``, with a usage mistake's exit (argparse's SystemExit) as its code."""
    try:
        return cli.main(argv)
    except SystemExit as e:
        return int(e.code or 0)


async def diff_process(*argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kongsplit",
        "diff",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# --------------------------------------------------------------------------- exit 1: changes

CHECKOUT_10_TO_25 = [
    f"~ upstream {U}: target {CANARY} weight 10 → 25",
    f"~ upstream {U}: target {STABLE} weight 90 → 75",
]
IN_SYNC = "Summary: Created: 0 Updated: 0 Deleted: 0\nRollouts: 1 in sync\n"
WEB_CREATED = [
    f"+ upstream {WEB} (create)",
    f"+ upstream {WEB}: target {WEB_STABLE} weight 100 (create)",
    f"+ upstream {WEB}: target {WEB_CANARY} weight 0 (create)",
]


async def test_changes_in_db_mode_as_a_process(world: World) -> None:
    """The whole command as an operator runs it: lines in write order (raise before lower),
    a refused thief, a foreign target's warning, the summary; exit 1; Kong untouched."""
    world.apply(checkout_objects())
    world.apply(web_objects())
    world.apply(web_objects("aaa", "grab", upstream=U))  # another team naming checkout's upstream
    kong_holds_checkout_at(world.kong, 90, 10)
    world.kong.add_target(U, "10.9.0.1:80", 5, tags=["team-a"])
    env = {"PATH": os.environ["PATH"], "HOME": str(world.kubeconfig.parent)}
    code, out, err = await diff_process(
        "--kubeconfig", str(world.kubeconfig), "--kong-url", world.kong.url, env=env
    )
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        f"! Rollout aaa/grab refused: metadata.annotations[kongsplit.io/upstream]: upstream {U} "
        "is already managed by Rollout shop/checkout",
        *CHECKOUT_10_TO_25,
        f"! upstream {U}: target 10.9.0.1:80 weight 5 is not kongsplit's and keeps its weight: "
        "the split is not exact; kong.exclusiveUpstreams would zero it",
        *WEB_CREATED,
        "",
        "Summary: Created: 3 Updated: 2 Deleted: 0",
        "Rollouts: 2 with changes, 1 refused; 1 warning",
    ]
    assert writes(world.kong) == []
    assert {t["target"]: t["weight"] for t in world.kong.targets(U)} == {
        STABLE: 90,
        CANARY: 10,
        "10.9.0.1:80": 5,
    }


async def test_json_for_scripts(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.apply(checkout_objects())
    kong_holds_checkout_at(world.kong, 90, 10)
    code, out, err = await diff(
        capsys, "--kubeconfig", str(world.kubeconfig), "--kong-url", world.kong.url, "-o", "json"
    )
    assert (code, err) == (1, "")
    report = json.loads(out)
    assert report["in_sync"] is False and report["errors"] == []
    assert report["summary"] == {"created": 0, "updated": 2, "deleted": 0}
    assert report["changes"][0] == {
        "node": world.kong.url,
        "rollout": "shop/checkout",
        "upstream": U,
        "workspace": None,
        "action": "update",
        "target": CANARY,
        "old_weight": 10,
        "new_weight": 25,
        "change": CHECKOUT_10_TO_25[0],
    }
    assert report["nodes"] == [
        {
            "url": world.kong.url,
            "mode": "db",
            "rollouts": [
                {
                    "namespace": "shop",
                    "name": "checkout",
                    "upstream": U,
                    "workspace": None,
                    "status": "changes",
                    "reason": None,
                    "changes": CHECKOUT_10_TO_25,
                    "warnings": [],
                }
            ],
        }
    ]


@pytest.mark.parametrize(
    ("mode", "data_planes"),
    [
        pytest.param("off", 0, id="dbless"),
        pytest.param("control_plane", 1, id="hybrid-control-plane"),
    ],
)
async def test_dbless_and_hybrid_control_plane(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str, data_planes: int
) -> None:
    async for world in make_world(tmp_path, mode, data_planes=data_planes):
        world.apply(checkout_objects())
        world.apply(web_objects())
        if mode == "off":
            # The node's owner (KIC, declarative_config) loaded a config with kongsplit's targets.
            world.kong.external_config_push(
                {
                    "_format_version": "3.0",
                    "upstreams": [{"name": U, "tags": OWNER}],
                    "targets": [
                        {"upstream": U, "target": STABLE, "weight": 90, "tags": OWNER},
                        {"upstream": U, "target": CANARY, "weight": 10, "tags": OWNER},
                    ],
                }
            )
            loaded = world.kong.config_hash()
        else:
            kong_holds_checkout_at(world.kong, 90, 10)
        code, out, err = await diff(
            capsys, "--kubeconfig", str(world.kubeconfig), "--kong-url", world.kong.url
        )
        assert (code, err) == (1, "")
        assert out.splitlines() == [
            *CHECKOUT_10_TO_25,
            *WEB_CREATED,
            "",
            "Summary: Created: 3 Updated: 2 Deleted: 0",
            "Rollouts: 2 with changes",
        ]
        assert writes(world.kong) == []
        if mode == "off":
            assert world.kong.config_hash() == loaded
            assert any(r.path == "/config" for r in world.kong.requests)  # it read the config


def dbless_config(stable: int, canary: int) -> dict[str, Any]:
    """A DB-less node's configuration as its owner loaded it, with kongsplit's targets."""
    return {
        "_format_version": "3.0",
        "upstreams": [{"name": U, "tags": OWNER}],
        "targets": [
            {"upstream": U, "target": STABLE, "weight": stable, "tags": OWNER},
            {"upstream": U, "target": CANARY, "weight": canary, "tags": OWNER},
        ],
    }


async def test_every_dbless_node_is_compared(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """DB-less: each node holds its own configuration (its own sidecar writes it), so each
    node kong.nodes lists is compared; one that cannot be read is an error of its own (exit 2)
    and the others are still shown."""
    world.apply(checkout_objects())
    down = f"http://127.0.0.1:{closed_port()}"
    async with KongSim(mode="off") as behind, KongSim(mode="off") as current:
        behind.external_config_push(dbless_config(90, 10))
        current.external_config_push(dbless_config(75, 25))
        argv = ["--kubeconfig", str(world.kubeconfig), "--kong-url", behind.url]
        nodes = ["--node", behind.url, "--node", current.url]
        code, out, err = await diff(capsys, *argv, *nodes)
        assert (code, err) == (1, "")
        assert out.splitlines() == [
            f"node {behind.url} (dbless):",
            *CHECKOUT_10_TO_25,
            f"node {current.url} (dbless):",
            "(nothing to write)",
            "",
            "Summary: Created: 0 Updated: 2 Deleted: 0",
            "Rollouts: 1 with changes",
        ]
        code, out, err = await diff(capsys, *argv, "-o", "json", *nodes)
        report = json.loads(out)
        assert code == 1 and [n["url"] for n in report["nodes"]] == [behind.url, current.url]
        assert {c["node"] for c in report["changes"]} == {behind.url}
        # The same through the config file, one node down.
        config = tmp_config(world.kubeconfig.parent, {"kong": {"nodes": [current.url, down]}})
        code, out, err = await diff(capsys, *argv, "--config", str(config))
        assert code == 2
        assert out.splitlines()[:4] == [
            f"node {behind.url} (dbless):",
            *CHECKOUT_10_TO_25,
            f"node {current.url} (dbless):",
        ]
        assert err.startswith(f"kongsplit diff: node {down}: GET /: connection refused")
        assert err.count("\n") == 1
        for sim in (behind, current):
            assert writes(sim) == []


async def test_db_mode_compares_kong_url_alone(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """DB mode: every node reads one database; kong.nodes (here: one that is down, as a hybrid
    data plane's Status API would be for writes) is not asked at all."""
    world.apply(checkout_objects())
    kong_holds_checkout_at(world.kong, 75, 25)
    down = f"http://127.0.0.1:{closed_port()}"
    code, out, err = await diff(
        capsys,
        "--kubeconfig",
        str(world.kubeconfig),
        "--kong-url",
        world.kong.url,
        "--node",
        down,
    )
    assert (code, out, err) == (0, IN_SYNC, "")


async def test_every_kind_of_write(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """Adopt (an untagged target at a wanted address), zero a foreign one (exclusive), delete
    one of ours no longer wanted (a Service's old clusterIP), through the config file."""
    world.apply(checkout_objects())
    world.kong.add_upstream(U, tags=["managed-by-kongsplit"])  # consent, no owner yet
    world.kong.add_target(U, STABLE, 75, tags=["team-a"])
    world.kong.add_target(U, CANARY, 25, tags=OWNER)
    world.kong.add_target(U, "10.96.0.99:80", 20, tags=OWNER)
    world.kong.add_target(U, "10.9.0.1:80", 5, tags=["team-b"])
    config = tmp_config(world.kubeconfig.parent, {"kong": {"exclusiveUpstreams": True}})
    code, out, err = await diff(
        capsys,
        "--config",
        str(config),
        "--kubeconfig",
        str(world.kubeconfig),
        "--kong-url",
        world.kong.url,
    )
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        f"~ upstream {U}: target {STABLE} weight 75 (adopt: tag kongsplit-rollout:shop.checkout)",
        f"- upstream {U}: target 10.9.0.1:80 weight 5 → 0 (zero: not kongsplit's, "
        "kong.exclusiveUpstreams)",
        f"- upstream {U}: target 10.96.0.99:80 weight 20 (delete: no longer wanted)",
        "",
        "Summary: Created: 0 Updated: 1 Deleted: 2",
        "Rollouts: 1 with changes",
    ]
    assert writes(world.kong) == []


def tmp_config(where: Path, values: dict[str, Any]) -> Path:
    path = where / "kongsplit.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


# --------------------------------------------------------------------------- exit 0: in sync


async def test_in_sync(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.apply(checkout_objects())
    kong_holds_checkout_at(world.kong, 75, 25)
    code, out, err = await diff(
        capsys, "--kubeconfig", str(world.kubeconfig), "--kong-url", world.kong.url
    )
    assert (code, out, err) == (0, IN_SYNC, "")
    code, out, _ = await diff(
        capsys, "--kubeconfig", str(world.kubeconfig), "--kong-url", world.kong.url, "-o", "json"
    )
    assert code == 0 and json.loads(out)["in_sync"] is True


async def test_refusals_and_holds_are_said_and_change_nothing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """What kongsplit would not write: an upstream it was given no consent for, a bad
    annotation, a Rollout whose status lags its spec (held while Kong holds its targets)."""
    world.apply(checkout_objects())
    kong_holds_checkout_at(world.kong, 90, 10)
    changed = checkout_objects()[-1]
    changed["spec"]["strategy"]["canary"]["steps"] = [{"setWeight": 30}]
    world.kube.apply(changed)  # generation 2; Argo has not observed it yet (observedGeneration 1)
    world.apply(web_objects())
    world.kong.add_upstream(WEB)  # someone else's upstream: no tag, no allowUpstreams
    world.apply(web_objects("shop", "bad", annotations={"kongsplit.io/upstream": "bad..svc"}))
    code, out, err = await diff(
        capsys, "--kubeconfig", str(world.kubeconfig), "--kong-url", world.kong.url
    )
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("! Rollout shop/bad invalid: metadata.annotations[")
    assert lines[1:] == [
        "= Rollout shop/checkout held: status.observedGeneration 1 is below metadata.generation "
        f"2: the status may still describe the previous spec; kongsplit keeps upstream {U} as "
        "it is",
        f"! Rollout shop/web refused: metadata.annotations[kongsplit.io/upstream]: upstream {WEB} "
        "exists in Kong and was not created by kongsplit: kongsplit drives it only with the "
        "consent of whoever owns Kong's configuration (the tag managed-by-kongsplit on the "
        "upstream, or kong.allowUpstreams naming it for namespace shop)",
        "",
        "Summary: Created: 0 Updated: 0 Deleted: 0",
        "Rollouts: 1 refused, 1 invalid, 1 held",
    ]
    assert writes(world.kong) == []


async def test_create_upstreams_off_is_a_refusal(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.apply(web_objects())
    config = tmp_config(world.kubeconfig.parent, {"kong": {"createUpstreams": False}})
    code, out, _ = await diff(
        capsys,
        "--config",
        str(config),
        "--kubeconfig",
        str(world.kubeconfig),
        "--kong-url",
        world.kong.url,
    )
    assert code == 0
    assert out.splitlines() == [
        f"! Rollout shop/web refused: upstream {WEB} does not exist in Kong and "
        "kong.createUpstreams is off",
        "",
        "Summary: Created: 0 Updated: 0 Deleted: 0",
        "Rollouts: 1 refused",
    ]


async def test_namespaces_and_files(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """-n reads only those namespaces; -f reads files (and '-' stdin) instead of the cluster."""
    world.apply(checkout_objects())
    world.apply(web_objects("other", "web", upstream="web.other.svc"))
    kong_holds_checkout_at(world.kong, 75, 25)
    argv = ["--kubeconfig", str(world.kubeconfig), "--kong-url", world.kong.url]
    code, out, _ = await diff(capsys, *argv, "-n", "shop")
    assert (code, out) == (0, IN_SYNC)
    code, out, _ = await diff(capsys, *argv, "-A")
    assert code == 1 and out.splitlines()[-2:] == [
        "Summary: Created: 3 Updated: 0 Deleted: 0",
        "Rollouts: 1 with changes, 1 in sync",
    ]
    assert world.kube.requests  # read live
    # The same objects from a file (as `kubectl get rollout,svc,rs -o yaml` prints them).
    listed = {"apiVersion": "v1", "kind": "List", "items": checkout_objects()}
    path = tmp_path / "shop.yaml"
    path.write_text(yaml.safe_dump(listed))
    code, out, err = await diff(capsys, "-f", str(path), "--kong-url", world.kong.url)
    assert (code, out, err) == (0, IN_SYNC, "")
    # From stdin, at step 0: Argo keeps the canary at 0 while its ReplicaSet has 2 pods, not 1.
    listed["items"] = checkout_objects(index=0)
    code, out, err = await diff(
        capsys, "-f", "-", "--kong-url", world.kong.url, stdin=yaml.safe_dump(listed)
    )
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        f"~ upstream {U}: target {STABLE} weight 75 → 100",
        f"~ upstream {U}: target {CANARY} weight 25 → 0",
        "",
        "Summary: Created: 0 Updated: 2 Deleted: 0",
        "Rollouts: 1 with changes",
    ]
    assert writes(world.kong) == []


async def test_no_annotated_rollouts(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.apply(web_objects(annotations={}))
    code, out, _ = await diff(
        capsys, "--kubeconfig", str(world.kubeconfig), "--kong-url", world.kong.url
    )
    assert (code, out) == (
        0,
        "Summary: Created: 0 Updated: 0 Deleted: 0\n"
        "Rollouts: none annotated with kongsplit.io/upstream\n",
    )


# --------------------------------------------------------------------------- exit 2: errors


async def test_kong_unreachable_is_one_line_as_a_process(world: World) -> None:
    world.apply(checkout_objects())
    down = f"http://admin:s3cret@127.0.0.1:{closed_port()}"
    env = {"PATH": os.environ["PATH"], "HOME": str(world.kubeconfig.parent)}
    code, out, err = await diff_process(
        "--kubeconfig", str(world.kubeconfig), "--kong-url", down, env=env
    )
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "Traceback" not in err and "s3cret" not in err
    assert err.startswith("kongsplit diff: GET /: connection refused by ***@127.0.0.1:")
    assert "check kong.url / --kong-url" in err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        pytest.param(
            ["-f", "x.yaml", "-n", "shop"],
            "compare Rollouts from -f FILE or from the cluster (--kubeconfig, --context, -n, "
            "-A), not both",
            id="files-and-cluster",
        ),
        pytest.param(
            ["-n", "shop", "-A"], "give -n NAMESPACE or -A (every namespace), not both", id="n-A"
        ),
        pytest.param(["-f", "missing.yaml"], "missing.yaml: cannot read: ", id="no-such-file"),
        pytest.param(
            ["-f", "{bad}"], "{bad}, document 1: not valid YAML or JSON at line 2", id="bad-yaml"
        ),
        pytest.param(["--kubeconfig", "nowhere"], "nowhere", id="no-kubeconfig"),
        pytest.param(
            ["--kong-url", "https://kong:8444", "--ca-file", "missing-ca.pem"],
            "missing-ca.pem",
            id="tls-file-missing",
        ),
        pytest.param(
            ["--kong-url", "kong:8001"],
            "flag --kong-url: expected an http:// or https:// URL, got 'kong:8001'",
            id="bad-kong-url",
        ),
        pytest.param(
            ["--kong-url", "http://[::1"],
            "flag --kong-url: not a valid URL (Invalid IPv6 URL): 'http://[::1'",
            id="malformed-kong-url",
        ),
    ],
)
async def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    words: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "{bad}").write_text("a: [b\n")
    code, out, err = await diff(capsys, *args)
    assert (code, out) == (2, "")
    assert err.startswith("kongsplit diff: ") and words in err and err.count("\n") == 1, err


async def test_a_terminal_that_cannot_print_unicode_gets_ascii(world: World) -> None:
    """A non-UTF-8 stdout (a Latin-1 locale, PYTHONIOENCODING): the arrows become ``->``, the
    JSON is escaped; no traceback, and the exit code still says "changes" (it said 1 after a
    UnicodeEncodeError too, which a script reads as "changes")."""
    world.apply(checkout_objects())
    kong_holds_checkout_at(world.kong, 90, 10)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(world.kubeconfig.parent),
        "PYTHONIOENCODING": "latin-1",
    }
    argv = ("--kubeconfig", str(world.kubeconfig), "--kong-url", world.kong.url)
    code, out, err = await diff_process(*argv, env=env)
    assert (code, err) == (1, "")
    assert out.splitlines()[:2] == [line.replace("→", "->") for line in CHECKOUT_10_TO_25]
    code, out, err = await diff_process(*argv, "-o", "json", env=env)
    assert (code, err) == (1, "")
    assert json.loads(out)["in_sync"] is False


async def test_a_reader_that_goes_away_keeps_the_exit_code(world: World) -> None:
    """``kongsplit diff | head -1``: the pipe closes early; the exit code still says 1
    (changes), never 0 ("in sync")."""
    world.apply(checkout_objects())
    kong_holds_checkout_at(world.kong, 90, 10)
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    env = {"PATH": os.environ["PATH"], "HOME": str(world.kubeconfig.parent)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kongsplit",
        "diff",
        "--kubeconfig",
        str(world.kubeconfig),
        "--kong-url",
        world.kong.url,
        stdout=write,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    os.close(write)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert (proc.returncode, err.decode()) == (1, "")


@pytest.mark.parametrize("namespace", ["../../api/v1/namespaces/shop/services/x#", "BAD NS", "a/b"])
async def test_a_namespace_that_is_no_name_is_refused_before_any_request(
    world: World, capsys: pytest.CaptureFixture[str], namespace: str
) -> None:
    code, out, err = await diff(
        capsys, "--kubeconfig", str(world.kubeconfig), "-n", namespace, "--kong-url", world.kong.url
    )
    assert (code, out) == (2, "")
    assert "is not a namespace name" in err and err.count("\n") == 1 and "Traceback" not in err
    assert world.kong.requests == []


async def test_the_same_object_twice_with_different_content(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text(yaml.safe_dump_all(checkout_objects()))
    two.write_text(yaml.safe_dump_all(checkout_objects(index=4)))
    code, out, err = await diff(
        capsys, "-f", str(one), "-f", str(two), "--kong-url", world.kong.url
    )
    assert (code, out) == (2, "")
    assert err.startswith("kongsplit diff: Rollout shop/checkout is given twice with different")
    assert writes(world.kong) == [] and world.kong.requests == []  # Kong not even asked


async def test_cluster_unreachable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    down = f"http://127.0.0.1:{closed_port()}"
    config = write_kubeconfig(tmp_path / "kubeconfig", down)
    code, out, err = await diff(capsys, "--kubeconfig", str(config))
    assert (code, out) == (2, "")
    assert err == (
        f"kongsplit diff: cannot reach the Kubernetes API at {down}: connection refused; "
        "check the kubeconfig (--kubeconfig, --context) and that the cluster is up\n"
    )


async def test_kong_refusing_the_token_never_shows_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async for world in make_world(tmp_path, token="right-token"):
        world.apply(checkout_objects())
        token = tmp_path / "token"
        token.write_text("wrong-token-s3cret\n")
        code, out, err = await diff(
            capsys,
            "--kubeconfig",
            str(world.kubeconfig),
            "--kong-url",
            world.kong.url,
            "--token-file",
            str(token),
        )
        assert (code, out) == (2, "")
        assert err.startswith("kongsplit diff: GET /: ") and err.count("\n") == 1
        assert "401" in err and "s3cret" not in err and "right-token" not in err


async def test_a_data_plane_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async for world in make_world(tmp_path, "data_plane"):
        world.apply(checkout_objects())
        code, out, err = await diff(
            capsys, "--kubeconfig", str(world.kubeconfig), "--kong-url", world.kong.url
        )
        assert (code, out) == (2, "")
        assert "is a hybrid data plane" in err and "control plane's Admin API" in err


async def test_kong_failing_part_way_is_exit_2_with_what_was_compared(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """Kong answers GET / but fails reading one upstream: the other Rollouts are still shown,
    the failure is named on stderr, and the exit code says the diff is incomplete."""
    world.apply(checkout_objects())
    world.apply(web_objects())
    kong_holds_checkout_at(world.kong, 90, 10)
    world.kong.faults.fail_next(100, 500, path_prefix=f"/upstreams/{WEB}")
    code, out, err = await diff(
        capsys, "--kubeconfig", str(world.kubeconfig), "--kong-url", world.kong.url
    )
    assert code == 2
    assert out.splitlines()[:2] == CHECKOUT_10_TO_25
    assert err.startswith("kongsplit diff: Rollout shop/web: ") and err.count("\n") == 1
    assert "Kong answered 500" in err
