"""DB mode and hybrid control planes: a desired upstream applied by entity writes, in plan order.

Target cache (the design the daemon relies on): ``DbModeApplier.cache`` maps
``(workspace, upstream)`` to the targets last read or written there, keyed by target string.
``apply`` plans from the cache when it holds the upstream (no read on the hot path: a weight
change is one PATCH), updates it from every write's answer, and drops and re-reads it when a
write answers 404 or 409 (someone else changed Kong). ``apply(..., refresh=True)`` — what a drift
sweep does — and ``read`` always read Kong (one GET per page of 1,000) and refill the cache.
``reset()`` empties it after a Kong reconnect; ``forget(...)`` drops an upstream no longer
managed. Applies to the same upstream are serialised by a per-upstream lock so two plans never
interleave.

One read per upstream per pass: the reconciler asks ``claim`` (who owns the upstream) before
``apply``; when ``claim`` had to read Kong for it (the targets, or the upstream's absence), the
``apply`` that follows within ``FRESH_READ`` seconds plans from that read instead of reading
again, even with ``refresh`` (a restart or a sweep reads each upstream once, not twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence

from kongsplit.kong.client import URGENT_RETRY, KongAdmin, MayWrite, RetryPolicy
from kongsplit.kong.errors import KongConflict, KongError, KongNotFound
from kongsplit.kong.records import KongMode, Target, Upstream, UpstreamClaim, claimed_owner
from kongsplit.kong.targets import DesiredTarget
from kongsplit.kong.writes import (
    DRIFT_MISSING,
    ApplyResult,
    Drift,
    Write,
    WriteKind,
    WritePlan,
    apply_write,
    foreign_targets,
    plan_writes,
    write_tags,
)

log = logging.getLogger(__name__)

_Key = tuple[str, str]  # (workspace or "", upstream)

#: How long the list of upstreams (their tags and algorithms) is trusted before it is read
#: again: a page per 1,000 upstreams, never on the hot path. A name missing from the list is
#: asked for by name (one request), never by listing every upstream again.
UPSTREAM_LIST_TTL = 30.0
#: How long a read made by ``claim`` stands for the read of the ``apply`` that follows it.
FRESH_READ = 1.0


class TargetCache:
    """Per ``(workspace, upstream)``: the targets last seen in Kong, by target string."""

    def __init__(self) -> None:
        self._entries: dict[_Key, dict[str, Target]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, workspace: str | None, upstream: str) -> dict[str, Target] | None:
        return self._entries.get((workspace or "", upstream))

    def put(
        self, workspace: str | None, upstream: str, targets: Iterable[Target]
    ) -> dict[str, Target]:
        entry = {t.target: t for t in targets}
        self._entries[(workspace or "", upstream)] = entry
        return entry

    def forget(self, workspace: str | None, upstream: str) -> None:
        self._entries.pop((workspace or "", upstream), None)

    def clear(self) -> None:
        self._entries.clear()


class DbModeApplier:
    """Applies desired upstreams through one node's Admin API by entity writes."""

    def __init__(self, client: KongAdmin) -> None:
        self.client = client
        self.cache = TargetCache()
        # One lock per upstream while an apply holds or awaits it (with their count): an
        # upstream nobody is writing keeps none (20,000 idle locks were 6 MiB).
        self._locks: dict[_Key, tuple[asyncio.Lock, int]] = {}
        # Every upstream (tags: consent and ownership; algorithm), from GET /upstreams pages.
        self._upstreams: dict[_Key, Upstream] = {}
        self._listed: dict[str, float] = {}  # workspace → when its upstreams were listed
        self._list_locks: dict[str, asyncio.Lock] = {}
        self._relisting: dict[str, asyncio.Task[None]] = {}  # a listing in the background
        # Upstreams ``claim`` just read from Kong (targets cached, or None: it does not exist),
        # with the time: the next ``apply`` plans from that read (``FRESH_READ``).
        self._fresh: dict[_Key, float] = {}

    def forget(self, upstream: str, workspace: str | None) -> None:
        """Drop what is kept for an upstream no longer managed (ids, its idle lock)."""
        self.cache.forget(workspace, upstream)
        self._fresh.pop((workspace or "", upstream), None)

    async def close(self) -> None:
        """Stop a listing still running in the background (before the client closes)."""
        tasks = list(self._relisting.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def reset(self) -> None:
        """Kong may have restarted or been restored: ids learnt before may be gone."""
        self.cache.clear()
        self._listed.clear()
        self._fresh.clear()

    async def upstream(self, name: str, workspace: str | None) -> Upstream | None:
        """The upstream as Kong lists it, from a list of every upstream read at most every
        ``UPSTREAM_LIST_TTL`` seconds (None for a name not in it: ``claim`` then asks Kong for
        that one). Only the first listing is waited for: once the list is older than the TTL
        it is read again in the background while callers go on with the one they have (at
        10,000 upstreams a listing is 10 pages, ~0.4 s, and every change waiting for it made
        the p99 of the scale run). Concurrent callers share one listing; a failed listing
        leaves the last answer."""
        ws = workspace or ""
        key = (ws, name)
        listed = self._listed.get(ws)
        if listed is not None:
            if time.monotonic() - listed > UPSTREAM_LIST_TTL and ws not in self._relisting:
                task = asyncio.create_task(self._list(ws, workspace), name=f"list-upstreams:{ws}")
                self._relisting[ws] = task
                task.add_done_callback(lambda _: self._relisting.pop(ws, None))
            return self._upstreams.get(key)  # the hot path: no lock, no await
        await self._list(ws, workspace)
        return self._upstreams.get(key)

    async def _list(self, ws: str, workspace: str | None) -> None:
        """Read every upstream of the workspace once (callers meanwhile share this read)."""
        lock = self._list_locks.setdefault(ws, asyncio.Lock())
        async with lock:
            listed = self._listed.get(ws)
            if listed is not None and time.monotonic() - listed <= UPSTREAM_LIST_TTL:
                return  # another caller just listed them
            try:
                upstreams = await self.client.list_upstreams(workspace=workspace)
            except KongError:
                return
            for k in [k for k in self._upstreams if k[0] == ws]:
                del self._upstreams[k]
            for u in upstreams:
                self._upstreams[(ws, u.name)] = u
            self._listed[ws] = time.monotonic()

    async def claim(self, name: str, workspace: str | None) -> UpstreamClaim:
        """Who Kong says owns the upstream, and whether it may be driven (cached reads)."""
        key = (workspace or "", name)
        entry = await self.upstream(name, workspace)
        if entry is None:
            # Not listed (yet): ask for it directly before deciding it does not exist.
            entry = await self.client.get_upstream(name, workspace=workspace)
            if entry is None:
                self.cache.forget(workspace, name)
                self._fresh[key] = time.monotonic()
                return UpstreamClaim(exists=False, owner=None, tags=())
            self._upstreams[key] = entry
        targets = self.cache.get(workspace, name)
        if targets is None:
            read = await self.read(name, workspace)
            self._fresh[key] = time.monotonic()
            found = read or ()
        else:
            found = tuple(targets.values())
        return UpstreamClaim(exists=True, owner=claimed_owner(entry.tags, found), tags=entry.tags)

    async def read(
        self, upstream: str, workspace: str | None, *, retry: RetryPolicy | None = None
    ) -> tuple[Target, ...] | None:
        """Fresh targets of ``upstream`` (None when it is missing); refills the cache."""
        try:
            targets = await self.client.list_targets(upstream, workspace=workspace, retry=retry)
        except KongNotFound:
            self.cache.forget(workspace, upstream)
            return None
        self.cache.put(workspace, upstream, targets)
        return tuple(targets)

    @contextlib.asynccontextmanager
    async def _lock(self, key: _Key) -> AsyncIterator[None]:
        """Applies to one upstream, one at a time; the lock exists only while in use."""
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def apply(
        self,
        upstream: str,
        desired: Sequence[DesiredTarget],
        *,
        owner_tags: Sequence[str],
        workspace: str | None,
        create: bool,
        exclusive: bool,
        refresh: bool,
        mode: KongMode,
        may_write: MayWrite | None,
        urgent: bool = False,
    ) -> ApplyResult:
        """``urgent`` (an abort): lower first when that is safe, and retry in tens of ms."""
        ws = workspace
        retry = URGENT_RETRY if urgent else None
        async with self._lock((ws or "", upstream)):
            done: list[Write] = []
            read_kong = False  # this apply read Kong (a sweep, a cold cache): not the hot path
            drift: tuple[Drift, ...] | None = None
            upstream_created = False
            targets: dict[str, Target] | None = None
            passes = 3  # a stale cache costs one re-read; a racing writer one more
            read_at = self._fresh.pop((ws or "", upstream), None)
            fresh = read_at is not None and time.monotonic() - read_at <= FRESH_READ
            for n in range(passes):
                targets = None if (refresh or n > 0) else self.cache.get(ws, upstream)
                if n == 0 and fresh:
                    # ``claim`` read Kong for this very pass: that read is this one.
                    targets = self.cache.get(ws, upstream)
                    read_kong = True
                if targets is None:
                    read_kong = True
                    read: tuple[Target, ...] | None
                    if n == 0 and fresh:
                        read = None  # claim found no such upstream, just now
                    else:
                        read = await self.read(upstream, ws, retry=retry)
                    if read is None:
                        if not create:
                            missing = Drift(DRIFT_MISSING, None, None, None, corrected=False)
                            return ApplyResult(
                                upstream, ws, mode, drift=(missing,), upstream_missing=True
                            )
                        # Tagged with this Rollout: its ownership survives restarts and any
                        # list order (every replica reads the same claim from Kong).
                        created = await self.client.create_upstream(
                            upstream,
                            tags=write_tags(owner_tags),
                            workspace=ws,
                            may_write=may_write,
                        )
                        self._upstreams[(ws or "", upstream)] = created
                        upstream_created = True
                        read = ()
                    targets = self.cache.put(ws, upstream, read)
                plan = plan_writes(
                    targets.values(),
                    desired,
                    owner_tags=owner_tags,
                    exclusive=exclusive,
                    urgent=urgent,
                )
                if drift is None:
                    drift = plan.drift
                    if upstream_created:
                        drift = (Drift(DRIFT_MISSING, None, None, None), *drift)
                try:
                    await self._run_plan(upstream, ws, plan, targets, done, may_write, retry)
                    break
                except (KongNotFound, KongConflict) as e:
                    # Someone else changed the upstream since we last read it: re-read and re-plan.
                    self.cache.forget(ws, upstream)
                    if n == passes - 1:
                        raise
                    log.info(
                        "Kong changed under a write; re-reading the upstream",
                        extra={"upstream": upstream, "status": getattr(e, "status", None)},
                    )
            # The dict the writes updated, not a cache lookup: the cache may be cleared meanwhile.
            final = targets or {}
            key = (ws or "", upstream)
            entry = await self.upstream(upstream, ws) if read_kong else self._upstreams.get(key)
            algorithm = (entry.algorithm or "round-robin") if entry is not None else None
            return ApplyResult(
                upstream,
                ws,
                mode,
                writes=tuple(done),
                targets=tuple(final.values()),
                foreign=foreign_targets(final.values(), owner_tags),
                drift=drift or (),
                upstream_created=upstream_created,
                algorithm=algorithm,
            )

    async def plan(
        self,
        upstream: str,
        desired: Sequence[DesiredTarget],
        *,
        owner_tags: Sequence[str],
        workspace: str | None,
        create: bool,
        exclusive: bool,
        refresh: bool,
        mode: KongMode,
        urgent: bool = False,
    ) -> ApplyResult:
        """What ``apply`` would write, planned the same way and never sent (a dry run): Kong is
        read as ``apply`` reads it (the cache, or Kong itself on ``refresh`` or a cold cache),
        ``plan_writes`` plans, and the result says what Kong holds and what would be written."""
        ws = workspace
        key = (ws or "", upstream)
        async with self._lock(key):
            targets = None if refresh else self.cache.get(ws, upstream)
            read_kong = targets is None
            missing = False
            if targets is None:
                read = await self.read(upstream, ws, retry=URGENT_RETRY if urgent else None)
                if read is None:
                    if not create:
                        gone = Drift(DRIFT_MISSING, None, None, None, corrected=False)
                        return ApplyResult(
                            upstream, ws, mode, drift=(gone,), upstream_missing=True, dry_run=True
                        )
                    missing, read = True, ()
                targets = {t.target: t for t in read}
            plan = plan_writes(
                targets.values(), desired, owner_tags=owner_tags, exclusive=exclusive, urgent=urgent
            )
            drift = plan.drift
            algorithm = None
            if missing:
                drift = (Drift(DRIFT_MISSING, None, None, None), *drift)
            else:
                entry = await self.upstream(upstream, ws) if read_kong else self._upstreams.get(key)
                algorithm = (entry.algorithm or "round-robin") if entry is not None else None
            return ApplyResult(
                upstream,
                ws,
                mode,
                targets=tuple(targets.values()),
                foreign=foreign_targets(targets.values(), owner_tags),
                drift=drift,
                algorithm=algorithm,
                dry_run=True,
                planned=plan.writes,
                upstream_planned=missing,
            )

    async def _run_plan(
        self,
        upstream: str,
        ws: str | None,
        plan: WritePlan,
        targets: dict[str, Target],
        done: list[Write],
        may_write: MayWrite | None,
        retry: RetryPolicy | None,
    ) -> None:
        # Raises, then lowers (an urgent plan may lower first); within a phase writes are
        # independent and run concurrently.
        for phase in plan.phases:
            if not phase:
                continue
            results: list[Target | BaseException | None]
            if len(phase) == 1:  # the common case: no task to spawn for a single write
                try:
                    results = [await self._write(upstream, ws, phase[0], may_write, retry)]
                except KongError as e:
                    results = [e]
            else:
                results = await asyncio.gather(
                    *(self._write(upstream, ws, w, may_write, retry) for w in phase),
                    return_exceptions=True,
                )
            failure: BaseException | None = None
            for write, result in zip(phase, results, strict=True):
                if isinstance(result, BaseException):
                    failure = failure or result
                    continue
                apply_write(targets, write, result)
                done.append(write)
            if failure is not None:
                raise failure

    async def _write(
        self,
        upstream: str,
        ws: str | None,
        w: Write,
        may_write: MayWrite | None,
        retry: RetryPolicy | None,
    ) -> Target | None:
        client = self.client
        if w.kind == WriteKind.CREATE:
            assert w.weight is not None
            return await client.create_target(
                upstream,
                w.target,
                w.weight,
                tags=w.tags or (),
                workspace=ws,
                may_write=may_write,
                retry=retry,
            )
        assert w.target_id is not None
        if w.kind == WriteKind.DELETE:
            await client.delete_target(
                upstream,
                w.target_id,
                workspace=ws,
                target=w.target,
                may_write=may_write,
                retry=retry,
            )
            return None
        return await client.update_target(
            upstream,
            w.target_id,
            weight=w.weight,
            tags=w.tags,
            workspace=ws,
            target=w.target,
            may_write=may_write,
            retry=retry,
        )
