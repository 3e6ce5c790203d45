"""``kongsplit run``: wiring the daemon — named, guarded root tasks and a graceful stop.

Every long-running coroutine is a named root task. If one of them ends (a bug, or a dependency
that cannot be recovered), the process stops loudly with exit code 1 instead of living on as a
zombie that reports healthy. SIGTERM/SIGINT stop the intake, let in-flight Kong writes finish
(bounded), release the leader Lease so a follower takes over at once, and exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from prometheus_client import CollectorRegistry

from kongsplit import kube
from kongsplit.config import (
    CONFIG_ENV,
    ConfigError,
    Settings,
    env_help,
    flag_help,
    load_settings,
    redact_url,
)
from kongsplit.events import EventRecorder
from kongsplit.heap import HeapKeeper
from kongsplit.kong.apply import KongRouter
from kongsplit.kong.errors import KongError, KongModeError
from kongsplit.leader import LeaderElector
from kongsplit.logs import setup_logging
from kongsplit.metrics import Metrics
from kongsplit.nodes import NodeDiscovery
from kongsplit.reconciler import Reconciler, wait_for_kong_mode
from kongsplit.server import Probes, make_app, start_server
from kongsplit.version import package_version
from kongsplit.watcher import ENDPOINTSLICES, REPLICASETS, ROLLOUTS, SERVICES, Watcher

logger = logging.getLogger("kongsplit.app")

SHUTDOWN_GRACE = 5.0  # seconds in-flight writes get after SIGTERM
#: How often the heap is checked (kongsplit.heap): a burst of 10,000 changes makes ~300,000
#: long-lived objects in 8 s, so a check every sweep would let full collections walk them all.
HEAP_TICK = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # The epilog lists every KONGSPLIT_* variable, generated from the schema in kongsplit.config.
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = env_help()
    parser.add_argument("--config", metavar="FILE", help=f"YAML config file (else ${CONFIG_ENV})")
    parser.add_argument("--kong-url", metavar="URL", help=flag_help("kong", "url"))
    parser.add_argument("--token-file", metavar="FILE", help=flag_help("kong", "tokenFile"))
    parser.add_argument("--kubeconfig", metavar="FILE", help=flag_help("kubernetes", "kubeconfig"))
    parser.add_argument("--context", metavar="NAME", help=flag_help("kubernetes", "context"))
    parser.add_argument(
        "--namespace",
        metavar="NS",
        action="append",
        help=flag_help("kubernetes", "namespaces") + "; repeat it for several",
    )
    parser.add_argument("--listen", metavar="HOST:PORT", help=flag_help("server", "listen"))
    # No argparse choices: the schema checks the value, so a bad one is the same single line as
    # from the environment or the file (argparse would print its usage first).
    parser.add_argument("--log-format", metavar="json|text", help=flag_help("log", "format"))
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="read Kubernetes and Kong as always, log every write it would make (one JSON line "
        "each, with rollout and upstream: `kongsplit diff`'s words) and send none; it takes no "
        "leader Lease and posts no Event either, so it can run beside the real daemon",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    flags = {
        "kong": {"url": args.kong_url, "tokenFile": args.token_file},
        "kubernetes": {
            "kubeconfig": args.kubeconfig,
            "context": args.context,
            "namespaces": args.namespace,
        },
        "server": {"listen": args.listen},
        "log": {"format": args.log_format},
    }
    return load_settings(args.config, flags=flags)


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except ConfigError as e:
        print(f"kongsplit run: {e}", file=sys.stderr)
        return 2
    try:
        # The process's own collector policy (kongsplit.heap); tests running a Daemon in-process
        # leave theirs alone.
        daemon = Daemon(settings, dry_run=args.dry_run, heap=HeapKeeper())
    except KongError as e:  # e.g. unreadable TLS files: a configuration problem, said plainly
        print(f"kongsplit run: {e}", file=sys.stderr)
        return 2
    try:  # before any log line: a run with no cluster to talk to is told what to give, plainly
        kube.resolve_source(settings.kubernetes.kubeconfig, context=settings.kubernetes.context)
    except kube.KubeConfigError as e:
        print(f"kongsplit run: {e}", file=sys.stderr)
        return 1
    setup_logging(settings.log.format, settings.log.level)
    return asyncio.run(daemon.main())


class Daemon:
    """The whole daemon; tests run it in-process with their own registry and stop event."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: CollectorRegistry | None = None,
        kong: KongRouter | None = None,
        dry_run: bool = False,
        heap: HeapKeeper | None = None,
    ) -> None:
        self.settings = settings
        self.heap = heap
        # ``run --dry-run``: the Kong client refuses every write (``KongRouter(dry_run=True)``
        # plans and logs instead); no Lease is taken and no Event posted, so nothing is written
        # anywhere and a real daemon running beside it is not disturbed.
        self.dry_run = dry_run
        self.metrics = Metrics(registry or CollectorRegistry())
        self.metrics.kong_tls_verify.set(0 if settings.kong.tls.insecure_skip_verify else 1)
        self.kong = kong or KongRouter.from_config(
            settings.kong, metrics=self.metrics, dry_run=dry_run
        )
        self.stop_event = asyncio.Event()
        self.port: int | None = None  # the bound HTTP port, once serving
        self.started = asyncio.Event()
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.reconciler: Reconciler | None = None
        self.watchers: list[Watcher] = []
        self.elector: LeaderElector | None = None

    def stop(self) -> None:
        self.stop_event.set()

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        try:
            return await self.serve()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    async def serve(self) -> int:
        """Run until ``stop()`` (exit 0) or until a root task dies (exit 1)."""
        s = self.settings
        le = s.leader_election
        try:
            source = kube.resolve_source(s.kubernetes.kubeconfig, context=s.kubernetes.context)
            api = await kube.client_for(source)
        except kube.KubeConfigError as e:
            logger.error("%s", e)
            await self.kong.close()
            return 1
        lease = f"{le.lease_namespace}/{le.lease_name}"
        elect = le.enabled and not self.dry_run
        logger.info(
            "kongsplit %s starting: Kong %s, Kubernetes from %s, namespaces %s, %s",
            package_version(),
            redact_url(s.kong.url),
            source.describe(),
            ",".join(s.kubernetes.namespaces) or "all",
            "DRY RUN: every write is logged ('dry run: would write …'), none is sent; no "
            "leader Lease, no Events"
            if self.dry_run
            else f"leader election on Lease {lease} as {le.identity}"
            if le.enabled
            else "leader election off (this process always writes to Kong)",
            extra={"dry_run": True} if self.dry_run else None,
        )
        if s.kong.tls.insecure_skip_verify:
            where = s.origins.get("kong.tls.insecureSkipVerify", "kong.tls.insecureSkipVerify")
            logger.warning(
                "TLS verification of the Kong Admin API is off (%s): kongsplit does not check "
                "whose certificate %s presents, so anyone on the path can read the admin token "
                "and answer in Kong's place; set kong.tls.caFile to the CA that signed Kong's "
                "certificate and turn insecureSkipVerify off (kongsplit_kong_tls_verify is 0 "
                "meanwhile)",
                where,
                redact_url(s.kong.url),
            )
        if elect and not s.is_set("leaderElection.leaseNamespace"):
            if not os.environ.get("POD_NAMESPACE"):
                logger.warning(
                    "leader election Lease %s: not running in a pod ($POD_NAMESPACE is unset) and "
                    "leaderElection.leaseNamespace is not set, so the Lease is in namespace %s; "
                    "an in-cluster kongsplit installed by the chart holds its Lease in its "
                    "release namespace: set leaderElection.leaseNamespace (or "
                    "KONGSPLIT_LEADER_ELECTION_LEASE_NAMESPACE) to that namespace, or both will "
                    "write to Kong",
                    lease,
                    le.lease_namespace,
                    extra={"lease": lease},
                )
        events = EventRecorder(api, component="kongsplit", host=s.leader_election.identity)
        if elect:
            self.elector = LeaderElector(
                api,
                name=s.leader_election.lease_name,
                namespace=s.leader_election.lease_namespace,
                identity=s.leader_election.identity,
                lease_duration=s.leader_election.lease_duration_seconds,
                metrics=self.metrics,
            )
            elector = self.elector

            def is_leader() -> bool:
                return elector.is_leader
        else:
            # A dry run plans as a leader would, and may write nothing (kongsplit_leader 0).
            self.metrics.leader.set(0 if self.dry_run else 1)

            def is_leader() -> bool:
                return True

        rec = Reconciler(
            s,
            kong=self.kong,
            metrics=self.metrics,
            events=None if self.dry_run else events.post,
            is_leader=is_leader,
            write_budget=self.elector.write_budget if self.elector is not None else None,
        )
        self.reconciler = rec
        ns = s.kubernetes.namespaces
        self.watchers = [
            Watcher(api, ROLLOUTS, namespaces=ns, on_event=rec.on_rollout, metrics=self.metrics),
            Watcher(
                api, REPLICASETS, namespaces=ns, on_event=rec.on_replicaset, metrics=self.metrics
            ),
            Watcher(api, SERVICES, namespaces=ns, on_event=rec.on_service, metrics=self.metrics),
        ]
        nodes_from = s.kong.nodes_from
        if nodes_from.service:
            # Hybrid: /verify reads the data planes, discovered from their Service's slices.
            discovery = NodeDiscovery(
                replace(
                    nodes_from,
                    namespace=nodes_from.namespace or s.leader_election.lease_namespace,
                ),
                on_change=self.kong.set_verify_nodes,
            )
            self.watchers.append(
                Watcher(
                    api,
                    ENDPOINTSLICES,
                    namespaces=[discovery.config.namespace or ""],
                    on_event=discovery.on_slice,
                    metrics=self.metrics,
                    label_selector=discovery.label_selector,
                )
            )
        probes = Probes(alive=self._alive, ready=self._ready)
        host, port = s.server.host_port
        runner = None
        try:
            try:
                runner, self.port = await start_server(make_app(rec, self.kong, probes), host, port)
            except OSError as e:
                logger.error("cannot listen on %s:%d: %s", host, port, e.strerror or e)
                return 1
            logger.info(
                "serving /healthz /readyz /metrics /state /verify on %s:%d", host, self.port
            )
            roots: dict[str, Callable[[], Coroutine[Any, Any, Any]]] = {
                **({} if self.dry_run else {"events": events.run}),
                "sweeper": rec.sweeper,
                "kong-prober": rec.kong_prober,
                "leadership": self._leadership,
                "kong-mode": self._check_kong_mode,
                **self.kong.root_tasks(on_config_change=rec.config_replaced, active=is_leader),
            }
            for w in self.watchers:
                roots[f"watcher:{w.resource.plural}"] = w.run
            for i in range(s.reconcile.concurrency):
                roots[f"worker:{i}"] = rec.worker
            roots["worker:aborts"] = functools.partial(rec.worker, urgent_only=True)
            if self.elector is not None:
                roots["leader-election"] = self.elector.run
            if self.heap is not None:
                roots["heap"] = functools.partial(self.heap.run, HEAP_TICK)
                self.heap.settle()  # everything imported and built so far: out of GC walks
            for name, fn in roots.items():
                self.tasks[name] = asyncio.create_task(fn(), name=name)
            self.started.set()
            return await self._guard()
        finally:
            await self._shutdown(runner, api)

    async def _guard(self) -> int:
        stop = asyncio.create_task(self.stop_event.wait(), name="stop-signal")
        try:
            done, _ = await asyncio.wait(
                [stop, *self.tasks.values()], return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop.cancel()
        if stop in done:
            logger.info("stop requested; finishing in-flight writes")
            return 0
        for task in done:
            exc = None if task.cancelled() else task.exception()
            if isinstance(exc, KongModeError):
                # Expected, and the message says what to do: one line, no traceback.
                logger.critical("%s; exiting", exc)
                continue
            logger.critical(
                "root task %s stopped%s; exiting",
                task.get_name(),
                f": {exc!r}" if exc else " unexpectedly",
                exc_info=exc,
            )
        return 1

    async def _check_kong_mode(self) -> None:
        """At start, on every replica and whatever Kubernetes says: is ``kong.url`` a Kong this
        process may write to? A data plane or Konnect stops the process at once with the fix
        (a follower, or a daemon waiting for its watches, would otherwise never find out)."""
        # Failures are reported by the prober and the initial sync; here they are just retried.
        await wait_for_kong_mode(self.kong)
        await asyncio.Event().wait()  # done; stays alive for the guard

    async def _leadership(self) -> None:
        """Initial sync, then a full resync each time this replica becomes the leader."""
        for w in self.watchers:
            await w.listed.wait()
        assert self.reconciler is not None
        rec = self.reconciler
        rec.caches_listed.set()
        elector = self.elector
        if elector is None:
            await rec.initial_sync()
            self._settle_heap()
            self._warn_if_unverifiable()
            await asyncio.Event().wait()  # nothing more to do; stays alive for the guard
            return
        while True:
            await elector.leading.wait()
            logger.info("leading: syncing every managed Rollout to Kong")
            rec.leadership_gained()
            rec.synced.clear()
            await rec.initial_sync()
            self._settle_heap()
            self._warn_if_unverifiable()
            await elector.following.wait()
            logger.info("lost leadership: no more writes to Kong")

    def _settle_heap(self) -> None:
        """After a full sync the caches hold every Rollout: freeze them (kongsplit.heap)."""
        if self.heap is not None:
            self.heap.settle()

    def _warn_if_unverifiable(self) -> None:
        refusal = self.kong.verify_refusal()
        if refusal is not None and not self.settings.kong.nodes_from.service:
            logger.warning("/verify will refuse to answer: %s", refusal)

    def _alive(self) -> bool:
        return bool(self.tasks) and all(not t.done() for t in self.tasks.values())

    def _ready(self) -> tuple[bool, str]:
        if not all(w.listed.is_set() for w in self.watchers):
            return False, "waiting for the first full list of Rollouts, ReplicaSets and Services"
        rec = self.reconciler
        if rec is None:
            return False, "starting"
        leading = self.elector is None or self.elector.is_leader
        problem = f"; Kong: {rec.kong_problem}" if rec.kong_problem else ""
        if leading and not rec.synced.is_set():
            return False, f"waiting for the first successful sync with Kong{problem}"
        role = "dry run" if self.dry_run else "leading" if leading else "following (caches warm)"
        return True, role + problem

    async def _shutdown(self, runner: Any, api: Any) -> None:
        # The workers and the DB-less flusher their writes wait on stop last, after a drain.
        workers = {
            n: t
            for n, t in self.tasks.items()
            if n.startswith("worker:") or n == "kong-dbless-flush"
        }
        others = {n: t for n, t in self.tasks.items() if n not in workers}
        # Stop intake first, so nothing new is queued while writes drain.
        for t in others.values():
            t.cancel()
        await asyncio.gather(*others.values(), return_exceptions=True)
        if self.reconciler is not None and workers:
            rec = self.reconciler
            rec.queue.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHUTDOWN_GRACE):
                    await rec.queue.drained()
        for t in workers.values():
            t.cancel()
        await asyncio.gather(*workers.values(), return_exceptions=True)
        if self.elector is not None:
            with contextlib.suppress(Exception):
                await self.elector.release()
        if runner is not None:
            await runner.cleanup()
        await self.kong.close()
        await api.close()
        logger.info("kongsplit stopped")
