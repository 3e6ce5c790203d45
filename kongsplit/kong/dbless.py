"""DB-less Kong: desired upstreams applied as one ``/config`` edit, and the config-hash watch.

A DB-less node takes only whole configurations, so two upstreams edited by separate
GET → edit → POST rounds would overwrite each other. ``DblessApplier.apply`` queues an upstream's
edit; the flusher (``run``, a root task of the daemon) applies every pending edit to one
``GET /config`` and sends one ``POST /config?check_hash=1``, at most once per
``COALESCE_SECONDS`` per node (docs/sidecar.md): an abort waits no longer than that.

``watch`` polls ``/status`` ``configuration_hash`` (as Kong Ingress Controller's
config_change_detector.go does): a hash kongsplit's own POSTs did not produce means another
writer (Kong Ingress Controller, a restart with ``declarative_config``) replaced the config; 32
zeros mean the node restarted empty. The caller is told which (``foreign_config`` or
``restart``) and re-applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kongsplit.kong.client import KongAdmin, MayWrite, budget_of
from kongsplit.kong.declarative import ConfigEdit, config_claim, edit_config
from kongsplit.kong.errors import KongError, KongNotReady, KongResponseError, for_upstream
from kongsplit.kong.records import EMPTY_CONFIG_HASH, KongMode, UpstreamClaim
from kongsplit.kong.targets import DesiredTarget
from kongsplit.kong.writes import (
    DRIFT_FOREIGN_CONFIG,
    DRIFT_RESTART,
    ApplyResult,
    foreign_targets,
)

log = logging.getLogger(__name__)

COALESCE_SECONDS = 0.1  # at most one POST /config per node per this window
CLAIM_TTL = 30.0  # how long a read config answers ownership questions


@dataclass
class _PendingEdit:
    """One upstream's edit waiting for the next ``/config`` round trip."""

    desired: tuple[DesiredTarget, ...]
    owner_tags: tuple[str, ...]
    create: bool
    exclusive: bool
    may_write: MayWrite | None
    future: asyncio.Future[ApplyResult]
    waiters: list[asyncio.Future[ApplyResult]] = field(default_factory=list)

    def resolve(self, result: ApplyResult) -> None:
        for fut in (self.future, *self.waiters):
            if not fut.done():
                fut.set_result(result)

    def fail(self, error: BaseException) -> None:
        for fut in (self.future, *self.waiters):
            if not fut.done():
                fut.set_exception(error)


class DblessApplier:
    """Coalesced ``/config`` edits for one DB-less node, and the watch of its config hash."""

    def __init__(self, client: KongAdmin, *, coalesce: float = COALESCE_SECONDS) -> None:
        self.client = client
        self.coalesce = coalesce
        self._pending: dict[str, _PendingEdit] = {}
        self._wakeup = asyncio.Event()
        self._last_post = -coalesce
        self._running = False
        self.own_config_hashes: deque[str] = deque(maxlen=32)  # what our POSTs loaded
        # The node's config as last read or posted (claims are answered from it).
        self._config: dict[str, Any] | None = None
        self._config_at = -1e9

    async def apply(
        self,
        upstream: str,
        desired: Sequence[DesiredTarget],
        *,
        owner_tags: Sequence[str],
        create: bool,
        exclusive: bool,
        may_write: MayWrite | None,
    ) -> ApplyResult:
        """Queue this upstream's edit for the next round trip and wait for its result."""
        if not self._running:
            raise KongError(
                "internal: the DB-less flusher is not running (start DblessApplier.run)",
                upstream=upstream,
            )
        loop = asyncio.get_running_loop()
        edit = _PendingEdit(
            tuple(desired), tuple(owner_tags), create, exclusive, may_write, loop.create_future()
        )
        previous = self._pending.get(upstream)
        if previous is not None:  # a newer desired state for the same upstream wins
            edit.waiters.extend([previous.future, *previous.waiters])
        self._pending[upstream] = edit
        self._wakeup.set()
        return await asyncio.shield(edit.future)

    async def run(self) -> None:
        """The flusher: one ``/config`` round trip per window for everything pending."""
        self._running = True
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                wait = self._last_post + self.coalesce - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if self._pending:
                    await self._flush()
        finally:
            self._running = False
            for edit in self._pending.values():
                edit.fail(KongError("the DB-less flusher stopped", upstream=None))
            self._pending.clear()

    async def _flush(self) -> None:
        batch, self._pending = self._pending, {}
        try:
            results = await self._post_batch(batch)
        except KongError as e:
            # One round trip served every upstream of the batch: each waiter is told the
            # failure with its own upstream named, never the batch's first one.
            for upstream, edit in batch.items():
                edit.fail(for_upstream(e, upstream))
        except Exception as e:  # a bug: every waiter learns of it, the flusher survives
            for edit in batch.values():
                edit.fail(e)
        else:
            for upstream, edit in batch.items():
                if upstream in results:  # the others were failed individually
                    edit.resolve(results[upstream])
        finally:
            self._last_post = time.monotonic()

    async def _post_batch(self, batch: dict[str, _PendingEdit]) -> dict[str, ApplyResult]:
        client = self.client
        # Never edit a node that has not loaded its owner's config yet: posting onto the empty
        # hash would make kongsplit's few targets the node's whole configuration.
        status = await client.status()
        # A hash that is neither the one we loaded last nor one of ours: another writer (or a
        # restart) replaced the config since, whether or not the watch has noticed yet.
        current = status.configuration_hash
        replaced: str | None = None
        if self.own_config_hashes and current not in self.own_config_hashes:
            replaced = DRIFT_RESTART if status.empty else DRIFT_FOREIGN_CONFIG
        if status.configuration_hash == EMPTY_CONFIG_HASH:
            raise KongNotReady(
                f"Kong at {client.display_url} has no configuration loaded yet "
                "(configuration_hash is empty); not editing it until its owner "
                "(declarative_config or Kong Ingress Controller) loads one"
            )
        base = await client.get_config()
        self._config, self._config_at = base, time.monotonic()
        # Each upstream's edit is checked on its own: one malformed entry in Kong's config (or
        # one bad desired state) fails only that upstream's waiters, never the whole batch —
        # an abort must not wait behind someone else's garbage. Edits change the config in
        # place, so a failure restarts from a fresh copy without the failing upstream.
        while True:
            config = copy.deepcopy(base)
            edits: dict[str, ConfigEdit] = {}
            failed: str | None = None
            for upstream, pending in batch.items():
                try:
                    edits[upstream] = edit_config(
                        config,
                        upstream,
                        pending.desired,
                        owner_tags=pending.owner_tags,
                        create_upstream=pending.create,
                        exclusive=pending.exclusive,
                    )
                except (TypeError, KeyError, ValueError) as e:
                    pending.fail(
                        KongResponseError(
                            f"GET /config (upstream {upstream}): the declarative config has an "
                            f"unexpected shape ({e})",
                            method="GET",
                            path="/config",
                            upstream=upstream,
                        )
                    )
                    failed = upstream
                    break
            if failed is None:
                break
            batch = {u: p for u, p in batch.items() if u != failed}
            if not batch:
                return {}
        changed = any(e.plan.writes or e.upstream_created for e in edits.values())
        posted = False
        if changed:
            guards = [p.may_write for p in batch.values() if p.may_write is not None]
            posted = await client.post_config(
                config, may_write=(lambda: min(budget_of(g()) for g in guards)) if guards else None
            )
            if posted:
                self._config, self._config_at = config, time.monotonic()
            if posted:
                # Remember the hash this POST produced, so the watch can tell our writes from
                # another writer's (one read per POST, not one per upstream).
                with contextlib.suppress(KongError):
                    own = (await client.status()).configuration_hash
                    if own:
                        self.own_config_hashes.append(own)
        results: dict[str, ApplyResult] = {}
        for upstream, edit in edits.items():
            targets = tuple(edit.targets.values())
            pending = batch[upstream]
            if edit.upstream_missing:
                results[upstream] = ApplyResult(
                    upstream, None, KongMode.DBLESS, drift=edit.plan.drift, upstream_missing=True
                )
                continue
            wrote = bool(edit.plan.writes or edit.upstream_created)
            results[upstream] = ApplyResult(
                upstream,
                None,
                KongMode.DBLESS,
                writes=edit.plan.writes if wrote else (),
                targets=targets,
                foreign=foreign_targets(targets, pending.owner_tags),
                drift=edit.plan.drift,
                upstream_created=edit.upstream_created,
                config_posted=posted and wrote,
                algorithm=edit.algorithm,
                config_kind=replaced,
            )
        return results

    async def claim(self, upstream: str) -> UpstreamClaim:
        """Who the node's configuration says owns ``upstream`` (the config as last read or
        posted; read again when older than ``CLAIM_TTL``)."""
        if self._config is None or time.monotonic() - self._config_at > CLAIM_TTL:
            self._config, self._config_at = await self.client.get_config(), time.monotonic()
        return config_claim(self._config, upstream)

    async def watch(
        self,
        on_change: Callable[[str], None],
        *,
        interval: float,
        active: Callable[[], bool] = lambda: True,
    ) -> None:
        """Poll the node's config hash every ``interval``; report another writer or a restart.

        ``on_change`` gets ``"foreign_config"`` or ``"restart"``. ``active`` (the leader check)
        gates the polling.
        """
        last: str | None = None
        while True:
            await asyncio.sleep(interval)
            if not active():
                continue
            try:
                status = await self.client.status()
            except KongError:
                continue
            current = status.configuration_hash
            if current is None or current == last:
                continue
            if last is not None and current not in self.own_config_hashes:
                kind = DRIFT_RESTART if status.empty else DRIFT_FOREIGN_CONFIG
                log.warning(
                    "Kong's configuration changed behind kongsplit (%s, hash %s); re-applying",
                    kind,
                    current,
                )
                on_change(kind)
            last = current
