"""``kongsplit demo``: the real daemon against the built-in Kubernetes and Kong simulators.

Everything runs in one process over real sockets: a Kubernetes API fake (``sim.kube``), a Kong
Admin API simulator with two nodes (``sim.kongsim``) and the unmodified daemon (``app.Daemon``)
with leader election. The script plays Argo Rollouts' part — it writes Rollout status and
ReplicaSet availability the way the controller would — and shows what lands in Kong:

1. ``checkout`` walks a canary 10 → 25 → 50 → 75 → 100 and is promoted; half-way someone
   changes a weight behind kongsplit's back and the drift sweep puts it back.
2. ``payments`` reaches 25 % and is aborted: the canary must drop to 0 at once.

Each step waits (bounded) until Kong's Admin API reports the expected weights; the summary says
how long each took. On a terminal the screen is redrawn; piped (or ``--plain``) every frame is
appended as plain lines with fixed columns, no escape codes and no line over 100 columns.
Exit 0 when every expectation held, 1 otherwise, 2 when the log file cannot be written.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiohttp

from kongsplit.app import Daemon
from kongsplit.config import load_settings
from kongsplit.logs import setup_logging
from kongsplit.sim.kongsim import KongSim
from kongsplit.sim.kubesim import KubeSim
from kongsplit.sim.objects import CANARY_STEPS, ROLLOUTS, canary_pods, replicaset, rollout, service

STEPS = CANARY_STEPS
REPLICAS = 4
APPS = {  # Rollout → (stable Service clusterIP, canary Service clusterIP)
    "checkout": ("10.96.0.10", "10.96.0.11"),
    "payments": ("10.96.0.20", "10.96.0.21"),
}
DRIFT_WEIGHT = 90  # what "someone" sets the checkout canary target to, by hand, at setWeight 50

TITLE = "kongsplit demo · the real daemon · Kubernetes API fake · Kong Admin API sim (2 nodes)"
#: Column widths of a frame: Rollout, Argo's stage, kongsplit's desired split, what Kong reports.
W_APP, W_STAGE, W_SPLIT = 9, 31, 21
HEADER = (
    f"{'ROLLOUT':<{W_APP}}  {'STAGE (Argo)':<{W_STAGE}}  {'DESIRED (kongsplit)':<{W_SPLIT}}  "
    "KONG ADMIN API"
)
BAR_WIDTH = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--step-seconds",
        type=float,
        default=1.0,
        help="how long each canary step is shown (default 1.0)",
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="no screen redraws (the default when output is not a terminal)",
    )
    parser.add_argument(
        "--log-file",
        default=None,
        help="write the daemon's JSON logs here (default: a temporary file)",
    )


def run(args: argparse.Namespace) -> int:
    return asyncio.run(
        Demo(
            args.step_seconds, plain=args.plain or not sys.stdout.isatty(), log_file=args.log_file
        ).main()
    )


# --------------------------------------------------------------------------- the show


@dataclass
class StepResult:
    rollout: str
    label: str
    expected: dict[str, int]
    seconds: float | None  # None: Kong never showed it


@dataclass
class Demo:
    step_seconds: float
    plain: bool
    log_file: str | None = None
    out: TextIO = field(default_factory=lambda: sys.stdout)
    results: list[StepResult] = field(default_factory=list)
    events_seen: list[str] = field(default_factory=list)
    stage: dict[str, str] = field(default_factory=dict)  # Rollout → what Argo is doing now
    feed: deque[str] = field(default_factory=lambda: deque(maxlen=8))
    daemon_port: int | None = None

    async def main(self) -> int:
        tmp = tempfile.mkdtemp(prefix="kongsplit-demo-")
        log_path = self.log_file or os.path.join(tmp, "daemon.log")
        try:
            log_stream = open(log_path, "w", encoding="utf-8")  # noqa: ASYNC230, SIM115 - once, at start; closed below
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            print(
                f"kongsplit demo: cannot write the log file {log_path}: {e.strerror or e} — "
                "give a writable path with --log-file",
                file=sys.stderr,
            )
            return 2
        setup_logging("json", os.environ.get("KONGSPLIT_DEMO_LOG_LEVEL", "info"), stream=log_stream)
        try:
            return await self._main(tmp, log_path)
        finally:
            logging.getLogger().handlers.clear()
            log_stream.close()

    async def _main(self, tmp: str, log_path: str) -> int:
        async with KubeSim() as kube, KongSim(nodes=2, propagation_delay=0.2) as kong:
            kubeconfig = os.path.join(tmp, "kubeconfig")
            kube.write_kubeconfig(kubeconfig)
            settings = load_settings(
                env={},
                flags={
                    "kong": {"url": kong.urls[0], "nodes": list(kong.urls)},
                    "kubernetes": {"kubeconfig": kubeconfig},
                    "server": {"listen": "127.0.0.1:0"},
                    "reconcile": {"interval": max(0.5, self.step_seconds)},
                    "leaderElection": {
                        "enabled": True,
                        "leaseNamespace": "kongsplit",
                        "leaseDurationSeconds": 4,
                        "identity": "kongsplit-demo",
                    },
                },
            )
            if self.plain:
                self._say(TITLE + "\n")
            self._say(f"Kubernetes API fake  {kube.url}")
            self._say(f"Kong Admin API sim   {', '.join(kong.urls)} (2 nodes, DB mode)")
            self._say(f"daemon logs          {log_path}\n")
            for app, (stable_ip, canary_ip) in APPS.items():
                kube.apply(service(f"{app}-stable", stable_ip, "v1hash"))
                kube.apply(service(f"{app}-canary", canary_ip, "v1hash"))
                kube.apply(replicaset(app, "v1hash", REPLICAS, REPLICAS))
                annotations = {
                    "kongsplit.io/upstream": f"{app}.shop.svc",
                    "kongsplit.io/port": "http",
                }
                kube.apply(
                    rollout(app, annotations=annotations, pod_hash="v1hash", replicas=REPLICAS)
                )
            daemon = Daemon(settings)
            task = asyncio.create_task(daemon.main(), name="daemon")
            try:
                async with aiohttp.ClientSession() as http:
                    ok = await self._script(kube, kong, daemon, http)
            finally:
                daemon.stop()
                code = await task
            ok = ok and code == 0
            self._summary(daemon, ok)
            return 0 if ok else 1

    async def _script(
        self, kube: KubeSim, kong: KongSim, daemon: Daemon, http: aiohttp.ClientSession
    ) -> bool:
        await asyncio.wait_for(daemon.started.wait(), 10)
        self.daemon_port = daemon.port
        self.stage = {
            "checkout": "v1 stable, fully promoted",
            "payments": "v1 stable, fully promoted",
        }
        ok = await self._expect(
            http, kong, "checkout", "v1 fully promoted", stable=100, canary=0, within=15
        )
        ok &= await self._expect(http, kong, "payments", "v1 fully promoted", stable=100, canary=0)
        # A new revision: Argo resets the index, points the canary Service at the new hash.
        for app in ("checkout", "payments"):
            self.stage[app] = "v2 rolling out, no pod ready"
            kube.apply(replicaset(app, "v2hash", 1, 0))
            kube.patch(
                "v1",
                "services",
                "shop",
                f"{app}-canary",
                {"spec": {"selector": {"rollouts-pod-template-hash": "v2hash"}}},
            )
            kube.patch(
                *ROLLOUTS,
                "shop",
                app,
                {"status": {"currentPodHash": "v2hash", "currentStepIndex": 0}},
            )
        ok &= await self._expect(
            http, kong, "checkout", "v2 created, no pod ready yet", stable=100, canary=0
        )
        for index, weight in ((0, 10), (2, 25), (4, 50), (6, 75)):
            self.stage["checkout"] = f"setWeight {weight} (step {index + 1}/{len(STEPS)})"
            pods = canary_pods(weight, REPLICAS)
            kube.apply(replicaset("checkout", "v2hash", pods, pods))
            kube.patch(*ROLLOUTS, "shop", "checkout", {"status": {"currentStepIndex": index}})
            ok &= await self._expect(
                http, kong, "checkout", f"setWeight {weight}", stable=100 - weight, canary=weight
            )
            if weight == 25:
                # payments reaches 25 too, then is aborted below.
                self.stage["payments"] = f"setWeight 25 (step 3/{len(STEPS)})"
                kube.apply(replicaset("payments", "v2hash", 1, 1))
                kube.patch(*ROLLOUTS, "shop", "payments", {"status": {"currentStepIndex": 2}})
                ok &= await self._expect(
                    http, kong, "payments", "setWeight 25", stable=75, canary=25
                )
            if weight == 50:
                ok &= await self._drift(http, kong, daemon, wanted=weight)
            await asyncio.sleep(self.step_seconds / 2)
            kube.patch(*ROLLOUTS, "shop", "checkout", {"status": {"currentStepIndex": index + 1}})
            self.stage["checkout"] = f"paused (step {index + 2}/{len(STEPS)})"
            await self._show(http, kong, f"checkout paused after setWeight {weight}")
            await asyncio.sleep(self.step_seconds / 2)
        # Abort payments: canary to 0 at once (its pods go away 30 s later in a real cluster).
        self.stage["payments"] = "aborted"
        kube.patch(
            *ROLLOUTS, "shop", "payments", {"status": {"abort": True, "currentStepIndex": 0}}
        )
        ok &= await self._expect(http, kong, "payments", "aborted", stable=100, canary=0)
        # checkout: end of steps, canary fully scaled → 100, then promotion.
        self.stage["checkout"] = "all steps done, canary at 100 %"
        kube.apply(replicaset("checkout", "v2hash", REPLICAS, REPLICAS))
        kube.patch(*ROLLOUTS, "shop", "checkout", {"status": {"currentStepIndex": len(STEPS)}})
        ok &= await self._expect(http, kong, "checkout", "all steps done", stable=0, canary=100)
        kube.patch(*ROLLOUTS, "shop", "checkout", {"status": {"stableRS": "v2hash"}})
        self.stage["checkout"] = "promoted; selector not switched"
        await asyncio.sleep(self.step_seconds / 2)
        await self._show(http, kong, "checkout promoted; stable Service not switched yet (hold)")
        kube.patch(
            "v1",
            "services",
            "shop",
            "checkout-stable",
            {"spec": {"selector": {"rollouts-pod-template-hash": "v2hash"}}},
        )
        self.stage["checkout"] = "v2 stable, fully promoted"
        ok &= await self._expect(
            http, kong, "checkout", "promoted, stable = v2", stable=100, canary=0
        )
        ok &= await self._verify(http, daemon, "checkout")
        return ok

    async def _drift(
        self, http: aiohttp.ClientSession, kong: KongSim, daemon: Daemon, *, wanted: int
    ) -> bool:
        """Someone edits Kong by hand; the drift sweep must put it back, and count it."""
        canary = f"{APPS['checkout'][1]}:80"
        kong.set_weight("checkout.shop.svc", canary, DRIFT_WEIGHT)
        self._note(
            f">> drift: someone set canary target {canary} to {DRIFT_WEIGHT} by hand "
            f"(kongsplit holds {wanted})"
        )
        ok = await self._expect(
            http,
            kong,
            "checkout",
            "drift put back",
            stable=100 - wanted,
            canary=wanted,
            within=max(5.0, 3 * self.step_seconds),
        )
        took = self.results[-1].seconds
        if not ok or took is None:
            return False
        # The counter moves right after Kong acknowledged the write: give it a moment.
        deadline = time.monotonic() + 2
        counted = _drift_count(daemon, "checkout", "weight")
        while counted < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            counted = _drift_count(daemon, "checkout", "weight")
        self._note(f"   → kongsplit put back {wanted} within {took:.2f} s")
        self._note(
            f'   → drift counted: kongsplit_drift_corrections_total{{kind="weight"}} {counted:.0f}'
        )
        return counted >= 1

    def _note(self, text: str) -> None:
        """A line worth keeping: printed when plain, in the recent feed when redrawing, and
        repeated in the summary."""
        self.events_seen.append(text)
        if self.plain:
            self._say(text)
        else:
            self.feed.append(f"{time.strftime('%H:%M:%S')}  {text.strip()}")

    # ---- helpers ---------------------------------------------------------------------------
    async def _kong_weights(
        self, http: aiohttp.ClientSession, kong: KongSim, upstream: str
    ) -> dict[str, int]:
        async with http.get(f"{kong.urls[0]}/upstreams/{upstream}/targets") as resp:
            if resp.status != 200:
                return {}
            body = await resp.json()
        return {t["target"]: t["weight"] for t in body.get("data", [])}

    async def _expect(
        self,
        http: aiohttp.ClientSession,
        kong: KongSim,
        app: str,
        label: str,
        *,
        stable: int,
        canary: int,
        within: float = 5.0,
    ) -> bool:
        stable_ip, canary_ip = APPS[app]
        want = {f"{stable_ip}:80": stable, f"{canary_ip}:80": canary}
        start = time.monotonic()
        seen: dict[str, int] = {}
        while time.monotonic() - start < within:
            seen = await self._kong_weights(http, kong, f"{app}.shop.svc")
            if all(seen.get(t) == w for t, w in want.items()):
                took = time.monotonic() - start
                self.results.append(StepResult(app, label, want, took))
                await self._show(
                    http, kong, f"{app}: {label}  (Kong had it after {took * 1000:.0f} ms)"
                )
                return True
            await asyncio.sleep(0.01)
        self.results.append(StepResult(app, label, want, None))
        self._say(f"!! {app}: {label}: Kong shows {seen}, expected {want}")
        return False

    async def _verify(self, http: aiohttp.ClientSession, daemon: Daemon, app: str) -> bool:
        """Ask kongsplit's /verify, as an Argo AnalysisTemplate would (nodes lag 0.2 s)."""
        url = f"http://127.0.0.1:{daemon.port}/verify/shop/{app}"
        deadline = time.monotonic() + 10
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            async with http.get(url) as resp:
                body = await resp.json()
            if body.get("verified"):
                self._say(f"/verify/shop/{app}: verified on {len(body['observed'])} Kong nodes")
                return True
            await asyncio.sleep(0.1)
        self._say(f"!! /verify/shop/{app} never verified: {body}")
        return False

    async def _show(self, http: aiohttp.ClientSession, kong: KongSim, title: str) -> None:
        """One frame: per Rollout its stage, kongsplit's desired split (from ``/state``), what
        Kong's Admin API reports (a bar per target), and the latest events."""
        self.feed.append(f"{time.strftime('%H:%M:%S')}  {title}")
        desired = await self._desired(http)
        lines = [HEADER]
        for app, (stable_ip, canary_ip) in APPS.items():
            weights = await self._kong_weights(http, kong, f"{app}.shop.svc")
            targets = {"stable": f"{stable_ip}:80", "canary": f"{canary_ip}:80"}
            want = desired.get(app, {})
            shown = " ".join(f"{r} {want.get(t, '-'):>3}" for r, t in targets.items())
            got = " ".join(f"{r} {weights.get(t, '-'):>3}" for r, t in targets.items())
            mark = "✓" if want and all(weights.get(t) == w for t, w in want.items()) else "…"
            stage = self.stage.get(app, "")
            lines.append(
                f"{app:<{W_APP}.{W_APP}}  {stage:<{W_STAGE}.{W_STAGE}}  {shown:<{W_SPLIT}}  "
                f"{got:<{W_SPLIT}}  {mark}"
            )
            total = sum(weights.values()) or 1
            for role, target in targets.items():
                weight = weights.get(target, 0)
                bar = "█" * round(BAR_WIDTH * weight / total)
                lines.append(f"  {role:<6}  {target:<15}  {weight:>4}  {bar}".rstrip())
        if self.plain:
            self._say("── " + title)
            self._say("\n".join(lines))
            return
        lines = [TITLE, *lines, "", "recent:", *(f"  {line}" for line in self.feed)]
        self.out.write("\x1b[2J\x1b[H" + "\n".join(lines) + "\n")
        self.out.flush()

    async def _desired(self, http: aiohttp.ClientSession) -> dict[str, dict[str, int]]:
        """What the daemon holds as desired, per Rollout (its ``/state``)."""
        if self.daemon_port is None:
            return {}
        try:
            async with http.get(f"http://127.0.0.1:{self.daemon_port}/state") as resp:
                body = await resp.json()
        except aiohttp.ClientError:
            return {}
        return {
            r["name"]: {t["target"]: t["weight"] for t in r["desired"] or []}
            for r in body.get("rollouts", [])
        }

    def _summary(self, daemon: Daemon, ok: bool) -> None:
        self._say("\n== summary")
        for r in self.results:
            took = "MISSED" if r.seconds is None else f"{r.seconds * 1000:7.0f} ms"
            self._say(f"   {r.rollout:<9} {r.label:<40} {took}")
        drift = _metric_total(daemon, "kongsplit_drift_corrections_total")
        self._say(f"   drift corrections counted: {drift:.0f}")
        for note in self.events_seen:
            self._say(f"   {note}")
        self._say("demo " + ("passed: every split landed in Kong" if ok else "FAILED"))

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)


def _drift_count(daemon: Daemon, rollout: str, kind: str) -> float:
    """kongsplit_drift_corrections_total{rollout=…, kind=…} as the daemon's /metrics shows it."""
    total = 0.0
    for family in daemon.metrics.registry.collect():
        for sample in family.samples:
            if (
                sample.name == "kongsplit_drift_corrections_total"
                and sample.labels.get("rollout") == rollout
                and sample.labels.get("kind") == kind
            ):
                total += sample.value
    return total


def _metric_total(daemon: Daemon, name: str) -> float:
    total = 0.0
    for family in daemon.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total
