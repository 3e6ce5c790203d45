"""``kongsplit diff`` and ``kongsplit run --dry-run`` as processes, against kmock and the Kong
simulator over real sockets, in DB mode and DB-less: what a diff shows is what a real ``run``
then writes, after which the next diff exits 0; a dry run logs the same changes, one JSON line
each, while Kong receives nothing but GETs (and Kubernetes no Lease and no Event)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

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
    weights,
)
from kmock_shims import LEASES, url_of

from kongsplit.sim.kongsim import KongSim

ROOT = Path(__file__).resolve().parents[2]
IN_SYNC = "Summary: Created: 0 Updated: 0 Deleted: 0\nRollouts: 1 in sync\n"
#: The owner of a DB-less node's configuration (KIC, declarative_config) consents with the tag.
OWNER_CONFIG = {
    "_format_version": "3.0",
    "upstreams": [{"name": UPSTREAM, "tags": ["managed-by-kongsplit"]}],
    "services": [{"name": "web", "host": UPSTREAM, "port": 80}],
}
#: Argo at setWeight 25 (step index 2) of revision v2, its one canary pod available.
CANARY_AT_25 = [
    f"~ upstream {UPSTREAM}: target {CANARY_T} weight 0 → 25",
    f"~ upstream {UPSTREAM}: target {STABLE_T} weight 100 → 75",
]


@pytest.fixture(params=["postgres", "off"], ids=["db", "dbless"])
async def kong(request: pytest.FixtureRequest, harness: Harness) -> AsyncIterator[KongSim]:
    """The Kong the commands are pointed at: the harness's DB-mode simulator, or a DB-less one
    whose owner loaded a configuration first."""
    if request.param == "postgres":
        yield harness.kong
        return
    async with KongSim(mode="off") as sim:
        sim.external_config_push(OWNER_CONFIG)
        yield sim


def env_for(h: Harness) -> dict[str, str]:
    """Nothing of the machine running the tests: no KONGSPLIT_*, no kubeconfig of its own."""
    return {"PATH": os.environ["PATH"], "HOME": str(h.kubeconfig.parent)}


def kong_writes(kong: KongSim) -> list[str]:
    return [f"{r.method} {r.path}" for r in kong.requests if r.method != "GET"]


async def kongsplit(h: Harness, *argv: str) -> tuple[int, str, str]:
    """One ``kongsplit`` command as a process, to its end."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kongsplit",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env_for(h),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def change_lines(out: str) -> list[str]:
    """The ``+``/``~``/``-`` lines of a diff's output."""
    return [line for line in out.splitlines() if line[:1] in ("+", "~", "-")]


async def diff(h: Harness, kong: KongSim) -> tuple[int, str, str]:
    return await kongsplit(h, "diff", "--kubeconfig", str(h.kubeconfig), "--kong-url", kong.url)


class Daemon:
    """``kongsplit run`` as a process, its JSON log lines collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.records: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(
        cls, h: Harness, kong: KongSim, port: int, *flags: str, log_level: str = "info"
    ) -> Daemon:
        config = h.kubeconfig.parent / "kongsplit.yaml"
        config.write_text(
            "reconcile:\n  interval: 1s\nkong:\n  configPollInterval: 0.2s\n"
            f"log:\n  level: {log_level}\n"
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kongsplit",
            "run",
            "--config",
            str(config),
            "--kubeconfig",
            str(h.kubeconfig),
            "--kong-url",
            kong.url,
            "--listen",
            f"127.0.0.1:{port}",
            *flags,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
            env=env_for(h),
        )
        daemon = cls(proc, port)
        try:
            await daemon._ready()
        except BaseException:
            await daemon.stop()
            raise
        return daemon

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.records.append(json.loads(line))

    async def _ready(self) -> None:
        async with aiohttp.ClientSession() as http:
            deadline = asyncio.get_running_loop().time() + 30
            while asyncio.get_running_loop().time() < deadline:
                assert self.proc.returncode is None, self.records
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/readyz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        pytest.fail(f"kongsplit run never ready: {self.records}")

    def said(self, prefix: str, level: str = "info") -> list[dict[str, Any]]:
        return [r for r in self.records if r["msg"].startswith(prefix) and r["level"] == level]

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.proc.wait(), 15)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
        await self._reader
        assert "Traceback" not in json.dumps(self.records)
        return code


async def start_canary_at_25(h: Harness) -> None:
    """Argo starts revision v2 and reaches setWeight 25 (one canary pod of four, available)."""
    await h.create(REPLICASETS, replicaset("v2", 1, 1))
    await h.patch(
        SERVICES, "web-canary", {"spec": {"selector": {"rollouts-pod-template-hash": "v2"}}}
    )
    await h.patch(ROLLOUTS, "web", {"status": {"currentPodHash": "v2", "currentStepIndex": 2}})


async def test_a_run_writes_what_the_diff_showed_and_the_next_diff_is_in_sync(
    harness: Harness, kong: KongSim, unused_tcp_port: int
) -> None:
    h = harness
    dbless = kong is not h.kong
    await h.seed()  # web promoted at v1: 100 / 0

    # 1. Nothing in Kong yet: the diff shows the creates, exit 1, and Kong is only read.
    code, out, err = await diff(h, kong)
    created = [
        f"+ upstream {UPSTREAM}: target {STABLE_T} weight 100 (create)",
        f"+ upstream {UPSTREAM}: target {CANARY_T} weight 0 (create)",
    ]
    if not dbless:  # DB-less: the node's owner loaded the upstream; DB mode: kongsplit makes it
        created.insert(0, f"+ upstream {UPSTREAM} (create)")
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        *created,
        "",
        f"Summary: Created: {len(created)} Updated: 0 Deleted: 0",
        "Rollouts: 1 with changes",
    ]
    assert kong_writes(kong) == []

    # 2. A real run writes exactly that.
    daemon = await Daemon.start(h, kong, unused_tcp_port)
    await eventually(lambda: weights(kong) == {STABLE_T: 100, CANARY_T: 0}, within=20)
    assert await daemon.stop() == 0
    if dbless:
        assert kong_writes(kong) == ["POST /config"]  # every change in one /config
    else:
        assert kong_writes(kong) == [
            "POST /upstreams",
            f"POST /upstreams/{UPSTREAM}/targets",
            f"POST /upstreams/{UPSTREAM}/targets",
        ]

    # 3. The next diff: in sync, exit 0.
    assert await diff(h, kong) == (0, IN_SYNC, "")

    # 4. Argo moves on: the diff shows the weight change decK-style, a run makes it, in sync.
    await start_canary_at_25(h)
    written = len(kong_writes(kong))
    code, out, err = await diff(h, kong)
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        *CANARY_AT_25,
        "",
        "Summary: Created: 0 Updated: 2 Deleted: 0",
        "Rollouts: 1 with changes",
    ]
    assert len(kong_writes(kong)) == written
    daemon = await Daemon.start(h, kong, unused_tcp_port)
    await eventually(lambda: weights(kong) == {STABLE_T: 75, CANARY_T: 25}, within=20)
    assert await daemon.stop() == 0
    assert len(kong_writes(kong)) - written == (1 if dbless else 2)  # one /config, or 2 PATCHes
    assert await diff(h, kong) == (0, IN_SYNC, "")


async def test_run_dry_run_logs_the_diff_and_writes_nothing(
    harness: Harness, kong: KongSim, unused_tcp_port: int
) -> None:
    """Leader election is on (the default): a dry run still takes no Lease."""
    h = harness
    await h.seed()
    _, out, _ = await diff(h, kong)
    first = change_lines(out)
    assert first  # there is something a run would write

    daemon = await Daemon.start(h, kong, unused_tcp_port, "--dry-run", log_level="debug")
    try:
        start = daemon.said("kongsplit ")[0]
        assert "DRY RUN" in start["msg"] and start["dry_run"] is True
        # Witness: the daemon planned the first sync and logged it, in the diff's words.
        await eventually(lambda: len(daemon.said("dry run: would write")) == len(first))
        logged = daemon.said("dry run: would write")
        assert [r["change"] for r in logged] == first
        for r in logged:
            assert (r["rollout"], r["upstream"], r["dry_run"]) == ("shop/web", UPSTREAM, True)
            assert r["msg"] == f"dry run: would write {r['change']}"

        # Argo moves on. Kong still holds nothing of kongsplit's (nothing was written), so
        # what a run would write now is what the diff says at this state: the dry run logs
        # exactly that (the witness that it saw the change), and still writes nothing.
        await start_canary_at_25(h)
        _, out, _ = await diff(h, kong)
        now = change_lines(out)
        assert any(f"target {CANARY_T} weight 25" in line for line in now), now

        def logged_now() -> list[str]:
            return [r["change"] for r in daemon.said("dry run: would write")][-len(now) :]

        await eventually(lambda: logged_now() == now, within=10, what=f"logged {now}")
        canary = next(r for r in daemon.said("dry run: would write") if r["new_weight"] == 25)
        assert (canary["rollout"], canary["upstream"], canary["target"]) == (
            "shop/web",
            UPSTREAM,
            CANARY_T,
        )
        # The next sweeps (every 1 s) find the same plan: said again at debug (the witness that
        # they ran), never again at info.
        lines = len(daemon.said("dry run: would write"))
        again = len(daemon.said("dry run: would write", "debug"))
        await eventually(
            lambda: len(daemon.said("dry run: would write", "debug")) >= again + 2 * len(now),
            what="two sweeps re-planned",
        )
        assert len(daemon.said("dry run: would write")) == lines
        # /state and the metric agree: a dry run plans as a leader would, but writes nothing.
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{daemon.port}/state") as resp,
        ):
            body = await resp.json()
        assert (body["dry_run"], body["leader"]) == (True, False)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{daemon.port}/metrics") as resp,
        ):
            assert "\nkongsplit_leader 0.0\n" in await resp.text()
    finally:
        assert await daemon.stop() == 0

    assert kong_writes(kong) == []
    assert kong.requests, "the dry run read Kong"
    # Nothing written to Kubernetes either: no Lease, no Event.
    async with h.kube.get(url_of(LEASES, "default", "kongsplit")) as resp:
        assert resp.status == 404, await resp.text()
    assert await h.events() == []
