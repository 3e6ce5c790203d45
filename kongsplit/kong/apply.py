"""``KongRouter``: the one face Kong shows the reconciler — apply, read, forget, verify, probe.

Like Argo Rollouts' ``TrafficRoutingReconciler`` (the reconciler computes, a router applies and
verifies) and Kong Ingress Controller's sendconfig (a strategy per node mode), the router picks
how a desired upstream reaches Kong from the mode ``GET /`` reveals: entity writes through any
node in DB mode and on hybrid control planes (``kong.dbmode``), a coalesced ``/config`` edit on
a DB-less node (``kong.dbless``). ``verify`` reads what every known node's balancer really
serves. The reconciler sees only the ``Router`` protocol it declares, so its tests replace this
class with an in-memory fake.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kongsplit.config import KongConfig, redact_url
from kongsplit.kong.client import KongAdmin, MayWrite, RetryPolicy
from kongsplit.kong.dbless import DblessApplier
from kongsplit.kong.dbmode import DbModeApplier
from kongsplit.kong.errors import KongError
from kongsplit.kong.records import KongMode, NodeInfo, Target, TargetHealth, UpstreamClaim
from kongsplit.kong.targets import DesiredTarget
from kongsplit.kong.writes import ApplyResult
from kongsplit.metrics import Metrics

RootTask = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Verification:
    """Whether every node's balancer serves the desired weights (``/verify``'s answer).

    ``refused`` means verification is impossible as configured (a hybrid control plane and no
    data planes to ask), not that a weight is missing.
    """

    verified: bool
    desired: dict[str, int]
    observed: dict[str, dict[str, int | None] | str]  # node → target → nodeWeight, or an error
    reasons: tuple[str, ...] = field(default_factory=tuple)
    refused: bool = False


class KongRouter:
    """Applies and verifies desired upstreams on one Kong (and reads health on its nodes)."""

    def __init__(
        self,
        client: KongAdmin,
        *,
        create_upstreams: bool = True,
        exclusive_upstreams: bool = False,
        verify_nodes: Sequence[str] = (),
        config_poll_interval: float = 2.0,
        dry_run: bool = False,
    ) -> None:
        self.client = client
        # A dry run: ``apply`` reads Kong and plans exactly as it would write, and sends nothing
        # (``DbModeApplier.plan``, ``DblessApplier.plan``); the client refuses writes besides.
        self.dry_run = dry_run
        if dry_run:
            client.read_only = True
        self.create_upstreams = create_upstreams
        self.exclusive_upstreams = exclusive_upstreams
        # The nodes whose balancers /verify reads: configured (kong.nodes), discovered
        # (kong.nodesFrom, via ``set_verify_nodes``), or the Admin API node itself.
        self.configured_nodes = tuple(verify_nodes)
        self.verify_nodes = self.configured_nodes or (client.url,)
        self.config_poll_interval = config_poll_interval
        self.dbmode = DbModeApplier(client)
        self.dbless = DblessApplier(client)

    @classmethod
    def from_config(
        cls,
        kong: KongConfig,
        *,
        metrics: Metrics | None = None,
        retry: RetryPolicy | None = None,
        dry_run: bool = False,
    ) -> KongRouter:
        return cls(
            KongAdmin.from_config(kong, metrics=metrics, retry=retry, read_only=dry_run),
            create_upstreams=kong.create_upstreams,
            exclusive_upstreams=kong.exclusive_upstreams,
            verify_nodes=kong.nodes,
            config_poll_interval=kong.config_poll_interval,
            dry_run=dry_run,
        )

    @property
    def mode(self) -> KongMode | None:
        return self.client.mode

    @property
    def display_url(self) -> str:
        return self.client.display_url

    async def close(self) -> None:
        await self.dbmode.close()
        await self.client.close()

    # --- the Router protocol ----------------------------------------------------------------

    async def ensure_mode(self) -> KongMode:
        """The node's mode (read once); ``KongModeError`` for a mode kongsplit cannot serve."""
        return await self.client.ensure_mode()

    async def probe(self) -> NodeInfo:
        """``GET /``: is the Admin API there and answering?"""
        return await self.client.node_info()

    async def apply(
        self,
        upstream: str,
        desired: Sequence[DesiredTarget],
        *,
        owner_tags: Sequence[str],
        workspace: str | None = None,
        refresh: bool = False,
        may_write: MayWrite | None = None,
        create_upstream: bool | None = None,
        exclusive: bool | None = None,
        urgent: bool = False,
    ) -> ApplyResult:
        """Make ``upstream`` hold ``desired``, in an order that never zeroes it.

        ``owner_tags`` are the tags of this Rollout's targets (``owner_tags_for(ns, name)``).
        ``refresh`` re-reads Kong instead of trusting what is cached (drift sweeps).
        ``may_write`` is asked before every write attempt (``KongNotLeader`` when it says no).
        ``urgent`` (an abort) lowers first where safe and retries in tens of milliseconds.
        Raises KongError subclasses; never writes when nothing differs. A dry run plans the
        same writes and sends none (``ApplyResult.dry_run``, ``.planned``).
        """
        ws = workspace if workspace is not None else self.client.workspace
        create = self.create_upstreams if create_upstream is None else create_upstream
        excl = self.exclusive_upstreams if exclusive is None else exclusive
        mode = await self.ensure_mode()
        if self.dry_run and mode == KongMode.DBLESS:
            return await self.dbless.plan(
                upstream, desired, owner_tags=owner_tags, create=create, exclusive=excl
            )
        if self.dry_run:
            return await self.dbmode.plan(
                upstream,
                desired,
                owner_tags=owner_tags,
                workspace=ws,
                create=create,
                exclusive=excl,
                refresh=refresh,
                mode=mode,
                urgent=urgent,
            )
        if mode == KongMode.DBLESS:
            return await self.dbless.apply(
                upstream,
                desired,
                owner_tags=owner_tags,
                create=create,
                exclusive=excl,
                may_write=may_write,
            )
        result = await self.dbmode.apply(
            upstream,
            desired,
            owner_tags=owner_tags,
            workspace=ws,
            create=create,
            exclusive=excl,
            refresh=refresh,
            mode=mode,
            may_write=may_write,
            urgent=urgent,
        )
        if self.client.take_unsettled(upstream):
            result = replace(result, unsettled=True)
        return result

    async def claim(self, upstream: str, *, workspace: str | None = None) -> UpstreamClaim:
        """What Kong says of ``upstream`` before it is driven: exists, owner, consent tags.
        Answered from what is cached (one listing of upstreams, the targets read anyway)."""
        ws = workspace if workspace is not None else self.client.workspace
        mode = await self.ensure_mode()
        if mode == KongMode.DBLESS:
            return await self.dbless.claim(upstream)
        return await self.dbmode.claim(upstream, ws)

    async def read(
        self, upstream: str, *, workspace: str | None = None
    ) -> tuple[Target, ...] | None:
        """The upstream's targets as Kong holds them now (None when it does not exist)."""
        ws = workspace if workspace is not None else self.client.workspace
        return await self.dbmode.read(upstream, ws)

    def forget(self, upstream: str, *, workspace: str | None = None) -> None:
        """Drop what is kept for an upstream no longer managed."""
        ws = workspace if workspace is not None else self.client.workspace
        self.dbmode.forget(upstream, ws)

    def reset(self) -> None:
        """Kong came back (it may have restarted): nothing learnt before is trusted."""
        self.dbmode.reset()

    def set_verify_nodes(self, urls: Sequence[str]) -> None:
        """The nodes to verify on, as discovered (``kong.nodesFrom``): replaces the list."""
        self.configured_nodes = tuple(urls)
        self.verify_nodes = self.configured_nodes or (self.client.url,)

    def verify_refusal(self) -> str | None:
        """Why /verify cannot answer as configured, or None."""
        if self.client.mode == KongMode.CONTROL_PLANE and not self.configured_nodes:
            return (
                f"Kong at {self.display_url} is a hybrid control plane: it builds no balancers, "
                "so it cannot show what is served; list the data planes' Status API URLs "
                "(status_listen) in kong.nodes, or discover them with kong.nodesFrom"
            )
        return None

    async def verify(
        self, upstream: str, desired: Mapping[str, int], *, workspace: str | None = None
    ) -> Verification:
        """Does every known node serve ``desired`` (target → weight) right now?

        Per node and target: the balancer's ``nodeWeight`` equals the desired weight, and a
        target that must carry traffic resolved to addresses (not ``DNS_ERROR``, total weight
        above 0) of which some are healthy (``weight.available`` above 0) — the weight Kong
        loaded is not yet traffic (docs/kong.md "Health").
        """
        refusal = self.verify_refusal()
        if refusal is not None:
            return Verification(False, dict(desired), {}, (refusal,), refused=True)

        async def read(node: str) -> tuple[str, list[TargetHealth] | str]:
            shown = redact_url(node)  # /verify's answer names nodes: never their credentials
            try:
                return shown, await self.client.health(upstream, node_url=node, workspace=workspace)
            except KongError as e:
                return shown, str(e)

        results = await asyncio.gather(*(read(n) for n in self.verify_nodes))
        observed: dict[str, dict[str, int | None] | str] = {}
        reasons: list[str] = []
        for node, rows in results:
            if isinstance(rows, str):
                observed[node] = rows
                reasons.append(f"{node}: {rows}")
                continue
            by_target = {h.target: h for h in rows}
            observed[node] = {h.target: h.node_weight for h in rows}
            if rows and not any(h.balanced for h in rows):
                reasons.append(
                    f"{node}: no balancer data for upstream {upstream} (a hybrid control plane "
                    "builds none, or the upstream has not reached this node yet)"
                )
                continue
            for target, weight in desired.items():
                problem = _serving_problem(by_target.get(target), weight)
                if problem is not None:
                    reasons.append(f"{node}: {target} {problem}")
        return Verification(not reasons, dict(desired), observed, tuple(reasons))

    def root_tasks(
        self, *, on_config_change: Callable[[str], None], active: Callable[[], bool]
    ) -> dict[str, RootTask]:
        """The long-running coroutines the daemon must run, guarded, for this Kong.

        DB-less nodes need the ``/config`` flusher and the config-hash watch; in DB mode the
        coroutines only wait (the mode is known after the first ``GET /``).
        """

        async def flusher() -> None:
            await self.dbless.run()

        async def config_watch() -> None:
            if await self._mode_known() != KongMode.DBLESS:
                await asyncio.Event().wait()
            await self.dbless.watch(
                on_config_change, interval=self.config_poll_interval, active=active
            )

        return {"kong-dbless-flush": flusher, "kong-config-watch": config_watch}

    async def _mode_known(self) -> KongMode:
        await self.client.mode_known.wait()
        assert self.client.mode is not None
        return self.client.mode


def _serving_problem(row: TargetHealth | None, weight: int) -> str | None:
    """Why ``row`` (one node's view of one target) does not serve ``weight``, or None."""
    got = row.node_weight if row is not None else None
    if weight == 0:
        # A target at weight 0 may be absent from the balancer altogether.
        return None if not got else f"serves {got}, want 0"
    if row is None or got is None:
        if row is not None and row.health == "DNS_ERROR":
            return f"is not in this node's balancer (DNS_ERROR), want {weight}"
        return f"is not in this node's balancer yet, want {weight}"
    if got != weight:
        return f"serves {got}, want {weight}"
    if not row.resolved:
        return "resolved to no address (DNS_ERROR): it carries no traffic"
    if row.available_weight is not None and row.available_weight <= 0:
        return "has no healthy address (weight.available 0): it carries no traffic"
    return None
