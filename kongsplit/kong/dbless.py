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
import gc
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kongsplit.kong import configtext
from kongsplit.kong.client import KongAdmin, MayWrite, budget_of
from kongsplit.kong.declarative import (
    ConfigEdit,
    config_claim,
    edit_config,
    editable_copy,
    upstream_targets,
)
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
CONFLICT_RETRIES = 3  # edits redone on a fresh config when another writer pushed meanwhile
FREEZE_ENTITIES = 2_000  # configs this large are kept out of the garbage collector's walks


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


@dataclass(frozen=True, slots=True)
class _KnownConfig:
    config: dict[str, Any]
    hash: str | None  # the node's configuration_hash while this config is loaded
    at: float  # monotonic time it was read or posted


def _all_may_write(batch: dict[str, _PendingEdit]) -> MayWrite | None:
    """One POST serves every edit of the batch: it may go only while each of them may."""
    guards = [p.may_write for p in batch.values() if p.may_write is not None]
    if not guards:
        return None
    return lambda: min(budget_of(g()) for g in guards)


def _keep_out_of_gc(config: dict[str, Any]) -> None:
    """A large config just read is moved out of the cyclic garbage collector's sight.

    Parsing leaves tens of thousands of dicts and lists, and every later generation-2 collection
    would walk them with the GIL held: 55-120 ms stalls of the event loop at 5 MB
    (bench/README.md, section 5). ``gc.freeze()`` moves every object alive now into the
    permanent generation; the config holds no reference cycles, so refcounting still frees it
    when it is replaced. Small configs are left alone.
    """
    if len(config.get("targets") or ()) + len(config.get("services") or ()) >= FREEZE_ENTITIES:
        gc.freeze()


def _shape_error(upstream: str, error: Exception) -> KongResponseError:
    return KongResponseError(
        f"GET /config (upstream {upstream}): the declarative config has an unexpected shape "
        f"({error})",
        method="GET",
        path="/config",
        upstream=upstream,
    )


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
        # The node's config as last read or posted, with its hash: edits start from it while
        # the node still reports that hash, and claims are answered from it.
        self._known: _KnownConfig | None = None

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

    async def plan(
        self,
        upstream: str,
        desired: Sequence[DesiredTarget],
        *,
        owner_tags: Sequence[str],
        create: bool,
        exclusive: bool,
    ) -> ApplyResult:
        """What ``apply`` would write, edited the same way on a copy of the node's configuration
        and never posted (a dry run). No flusher involved: nothing is queued or sent."""
        try:
            base = await self._config_at(await self._loaded_hash())
        except KongError as e:
            raise for_upstream(e, upstream) from None
        try:
            edit = edit_config(
                editable_copy(base),
                upstream,
                desired,
                owner_tags=owner_tags,
                create_upstream=create,
                exclusive=exclusive,
            )
        except (TypeError, KeyError, ValueError) as e:
            raise _shape_error(upstream, e) from None
        if edit.upstream_missing:
            return ApplyResult(
                upstream,
                None,
                KongMode.DBLESS,
                drift=edit.plan.drift,
                upstream_missing=True,
                dry_run=True,
            )
        targets = upstream_targets(base, upstream) or ()
        return ApplyResult(
            upstream,
            None,
            KongMode.DBLESS,
            targets=targets,
            foreign=foreign_targets(targets, owner_tags),
            drift=edit.plan.drift,
            algorithm=None if edit.upstream_created else edit.algorithm,
            dry_run=True,
            planned=edit.plan.writes,
            upstream_planned=edit.upstream_created,
        )

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
        except Exception as e:
            # One round trip served every upstream of the batch: each waiter is told the
            # failure with its own upstream named, never the batch's first one. Whatever it
            # was, the flusher lives on: it serves every later edit of this node.
            if not isinstance(e, KongError):
                log.error("DB-less edit failed unexpectedly: %r", e, exc_info=e)
            for upstream, edit in batch.items():
                edit.fail(for_upstream(e, upstream) if isinstance(e, KongError) else e)
        else:
            for upstream, edit in batch.items():
                if upstream in results:  # the others were failed individually
                    edit.resolve(results[upstream])
        finally:
            self._last_post = time.monotonic()

    async def _post_batch(self, batch: dict[str, _PendingEdit]) -> dict[str, ApplyResult]:
        """One read-edit-write of the node's configuration for every upstream of ``batch``.

        Kong's ``POST /config`` replaces the whole configuration and has no compare-and-swap, so
        the config is edited only at the hash it was read at, and that hash is checked again
        right before the POST: when it moved (another writer pushed), the edit is redone on the
        new configuration, up to ``CONFLICT_RETRIES`` times. A push landing between that check
        and the POST is still lost to kongsplit's; nothing outside Kong can prevent it
        (docs/sidecar.md).
        """
        client = self.client
        replaced: str | None = None
        for _attempt in range(CONFLICT_RETRIES + 1):
            current = await self._loaded_hash()
            if self.own_config_hashes and current not in self.own_config_hashes:
                # Neither the config we loaded last nor one of ours: another writer (or a
                # restart) replaced it since, whether or not the watch has noticed yet.
                replaced = replaced or DRIFT_FOREIGN_CONFIG
            base = await self._config_at(current)
            config, edits, batch = self._edit(base, batch)
            if not batch:
                return {}
            changed = any(e.plan.writes or e.upstream_created for e in edits.values())
            if not changed:
                return self._results(batch, edits, posted=False, replaced=replaced)
            try:
                text = await configtext.dump_json_async(config)
            except configtext.KongYAMLError as e:
                raise KongResponseError(
                    f"GET /config: Kong's configuration holds values kongsplit cannot post back "
                    f"unchanged ({e}); report this with the node's GET /config",
                    method="GET",
                    path="/config",
                ) from None
            if await self._loaded_hash() != current:
                replaced = DRIFT_FOREIGN_CONFIG
                log.warning(
                    "Kong's configuration changed while kongsplit edited it; editing it again",
                    extra={"upstream": ",".join(sorted(batch))},
                )
                continue
            new_hash = configtext.config_hash(text)
            # Ours before Kong has it: the watch, polling meanwhile, must not take it as foreign.
            self.own_config_hashes.append(new_hash)
            posted = await client.post_config(text, may_write=_all_may_write(batch))
            self._known = _KnownConfig(config, new_hash, time.monotonic())
            return self._results(batch, edits, posted=posted, replaced=replaced)
        raise KongError(
            f"Kong at {client.display_url}: its configuration changed {CONFLICT_RETRIES + 1} "
            "times while kongsplit edited it (another writer is pushing /config); retrying "
            "later",
            upstream=None,
        )

    async def _loaded_hash(self) -> str | None:
        """The node's ``configuration_hash``; refuses an empty node (nothing to edit until its
        owner loads a config: posting onto it would make kongsplit's few targets the node's whole
        configuration)."""
        status = await self.client.status()
        if status.configuration_hash == EMPTY_CONFIG_HASH:
            raise KongNotReady(
                f"Kong at {self.client.display_url} has no configuration loaded yet "
                "(configuration_hash is empty); not editing it until its owner "
                "(declarative_config or Kong Ingress Controller) loads one"
            )
        return status.configuration_hash

    async def _config_at(self, wanted: str | None) -> dict[str, Any]:
        """The node's configuration at hash ``wanted``: the one kongsplit posted or read last
        when the hash is still that, else ``GET /config`` — accepted only when the hash did not
        move during the read (a node that restarted empty meanwhile is refused, not edited)."""
        known = self._known
        if known is not None and wanted is not None and known.hash == wanted:
            return known.config
        for _attempt in range(CONFLICT_RETRIES + 1):
            config = await self.client.get_config()
            after = await self._loaded_hash()
            if after == wanted:
                self._known = _KnownConfig(config, wanted, time.monotonic())
                _keep_out_of_gc(config)
                return config
            wanted = after
        raise KongError(
            f"Kong at {self.client.display_url}: its configuration kept changing while "
            "kongsplit read it (another writer is pushing /config); retrying later",
            upstream=None,
        )

    def _edit(
        self, base: dict[str, Any], batch: dict[str, _PendingEdit]
    ) -> tuple[dict[str, Any], dict[str, ConfigEdit], dict[str, _PendingEdit]]:
        """Every pending edit applied to a copy of ``base``.

        Each upstream's edit is checked on its own: one malformed entry in Kong's config (or one
        bad desired state) fails only that upstream's waiters, never the whole batch — an abort
        must not wait behind someone else's garbage. A failure restarts from a fresh copy
        without the failing upstream.
        """
        while True:
            config = editable_copy(base)
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
                    pending.fail(_shape_error(upstream, e))
                    failed = upstream
                    break
            if failed is None:
                return config, edits, batch
            batch = {u: p for u, p in batch.items() if u != failed}

    def _results(
        self,
        batch: dict[str, _PendingEdit],
        edits: dict[str, ConfigEdit],
        *,
        posted: bool,
        replaced: str | None,
    ) -> dict[str, ApplyResult]:
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
        known = self._known
        if known is None or time.monotonic() - known.at > CLAIM_TTL:
            try:
                await self._config_at(await self._loaded_hash())
            except KongError as e:
                raise for_upstream(e, upstream) from None
            known = self._known
        assert known is not None
        return config_claim(known.config, upstream)

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
