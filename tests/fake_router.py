"""An in-memory Kong behind the reconciler's ``Router`` protocol (``kongsplit.reconciler.Router``).

The reconciler is tested against this instead of the Kong client: it keeps the targets of each
upstream, takes each apply to the desired targets with the real pure write planner
(``kong.writes.plan_writes``), so the ``ApplyResult`` it returns (writes, drift, foreign
targets, a created or missing upstream) is the one ``kong.dbmode`` would build. It has no cache:
every apply plans against what it holds now, as a sweep (``refresh``) does; ``refresh`` is
recorded so a test can tell a sweep's apply from a change's.

A test changes Kong behind the reconciler's back (``set_weight``, ``delete_target``, ``wipe``,
``add_target``), makes the next calls fail (``fail_next``), every call (``down``) or the applies to
one upstream (``refused``), runs
code just before a write (``before_write``: lose leadership mid-apply), and reads back every
apply it received (``applies``), every ``read``, ``forget`` and ``reset``, and counts ``verify``
calls (``verifies``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from kongsplit.kong.apply import Verification
from kongsplit.kong.client import MayWrite, budget_of
from kongsplit.kong.errors import KongError, KongNotLeader
from kongsplit.kong.records import KongMode, NodeInfo, Target, UpstreamClaim, claimed_owner
from kongsplit.kong.targets import MANAGED_TAG, DesiredTarget
from kongsplit.kong.writes import (
    DRIFT_MISSING,
    ApplyResult,
    Drift,
    WriteKind,
    apply_write,
    foreign_targets,
    plan_writes,
    write_tags,
)

_Key = tuple[str, str]  # (workspace or "", upstream)


@dataclass(frozen=True)
class Applied:
    """One ``apply`` the fake received (``result`` is None when it raised)."""

    upstream: str
    workspace: str | None
    weights: dict[str, int]
    owner_tags: tuple[str, ...]
    refresh: bool
    result: ApplyResult | None
    error: KongError | None = None

    @property
    def wrote(self) -> bool:
        return self.result is not None and self.result.changed


@dataclass
class FakeRouter:
    """A Kong node in memory: the ``Router`` protocol plus levers for tests."""

    node_mode: KongMode = KongMode.DB
    create_upstreams: bool = True
    exclusive_upstreams: bool = False
    display_url: str = "http://kong.test:8001"
    #: Called just before the first write of an apply (e.g. to lose leadership mid-apply).
    before_write: Callable[[], None] | None = None
    #: Every call fails with this while set (Kong down, a refused token).
    down: KongError | None = None
    #: Applies to these upstreams fail with the error given (Kong refusing one upstream).
    refused: dict[str, KongError] = field(default_factory=dict)
    #: What ``verify`` answers (``/verify``); None: compare the desired weights with Kong's.
    verification: Verification | None = None
    applies: list[Applied] = field(default_factory=list)
    reads: list[_Key] = field(default_factory=list)
    claims: list[_Key] = field(default_factory=list)
    forgotten: list[_Key] = field(default_factory=list)
    resets: int = 0
    probes: int = 0
    verifies: int = 0  # ``verify`` calls: what the HTTP server asked of Kong
    _mode: KongMode | None = None
    _upstreams: dict[_Key, dict[str, Target]] = field(default_factory=dict)
    _upstream_tags: dict[_Key, tuple[str, ...]] = field(default_factory=dict)
    _fail: list[KongError] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # --- levers ---------------------------------------------------------------------------

    def fail_next(self, *errors: KongError) -> None:
        """The next calls (apply, read, probe, ensure_mode) raise these, in order."""
        self._fail.extend(errors)

    def weights(self, upstream: str, workspace: str | None = None) -> dict[str, int]:
        return {t.target: t.weight for t in self._targets(upstream, workspace).values()}

    def targets(self, upstream: str, workspace: str | None = None) -> tuple[Target, ...]:
        return tuple(self._targets(upstream, workspace).values())

    def has_upstream(self, upstream: str, workspace: str | None = None) -> bool:
        return ((workspace or ""), upstream) in self._upstreams

    def add_upstream(
        self, upstream: str, *, tags: Sequence[str] = (), workspace: str | None = None
    ) -> None:
        """An upstream someone else created (no consent for kongsplit unless ``tags`` give it)."""
        key = ((workspace or ""), upstream)
        self._upstreams.setdefault(key, {})
        self._upstream_tags[key] = tuple(tags)

    def add_target(
        self,
        upstream: str,
        target: str,
        weight: int,
        *,
        tags: Sequence[str] = (),
        workspace: str | None = None,
    ) -> None:
        """A target someone else put there (foreign unless ``tags`` say otherwise). An upstream
        it creates carries the consent tag: these tests are about targets, not consent."""
        key = ((workspace or ""), upstream)
        self._upstream_tags.setdefault(key, (MANAGED_TAG,))
        held = self._upstreams.setdefault(key, {})
        held[target] = Target(f"t{next(self._ids)}", target, weight, tuple(tags))

    def set_weight(
        self, upstream: str, target: str, weight: int, *, workspace: str | None = None
    ) -> None:
        """Someone changes a weight behind kongsplit's back."""
        held = self._targets(upstream, workspace)
        old = held[target]
        held[target] = Target(old.id, old.target, weight, old.tags)

    def delete_target(self, upstream: str, target: str, *, workspace: str | None = None) -> None:
        del self._targets(upstream, workspace)[target]

    def wipe(self) -> None:
        """Kong's database is emptied (or a DB-less node's configuration replaced)."""
        self._upstreams.clear()
        self._upstream_tags.clear()

    @property
    def written(self) -> list[Applied]:
        """The applies that changed something in Kong."""
        return [a for a in self.applies if a.wrote]

    # --- the Router protocol --------------------------------------------------------------

    @property
    def mode(self) -> KongMode | None:
        return self._mode

    async def ensure_mode(self) -> KongMode:
        self._maybe_fail()
        self._mode = self.node_mode
        return self._mode

    async def probe(self) -> NodeInfo:
        self.probes += 1
        self._maybe_fail()
        db = "off" if self.node_mode == KongMode.DBLESS else "postgres"
        return NodeInfo("3.9.1", "community", "node-1", "kong-0", db, "traditional", self.node_mode)

    async def apply(
        self,
        upstream: str,
        desired: Sequence[DesiredTarget],
        *,
        owner_tags: Sequence[str],
        workspace: str | None = None,
        refresh: bool = False,
        may_write: MayWrite | None = None,
        urgent: bool = False,
    ) -> ApplyResult:
        def record(result: ApplyResult | None, error: KongError | None = None) -> None:
            weights = {d.target: d.weight for d in desired}
            self.applies.append(
                Applied(upstream, workspace, weights, tuple(owner_tags), refresh, result, error)
            )

        try:
            result = self._apply(upstream, desired, owner_tags, workspace, may_write)
        except KongError as e:
            record(None, e)
            raise
        record(result)
        return result

    async def read(
        self, upstream: str, *, workspace: str | None = None
    ) -> tuple[Target, ...] | None:
        self.reads.append(((workspace or ""), upstream))
        self._maybe_fail()
        held = self._upstreams.get(((workspace or ""), upstream))
        return None if held is None else tuple(held.values())

    async def claim(self, upstream: str, *, workspace: str | None = None) -> UpstreamClaim:
        self.claims.append(((workspace or ""), upstream))
        self._maybe_fail()
        key = ((workspace or ""), upstream)
        held = self._upstreams.get(key)
        if held is None:
            return UpstreamClaim(exists=False, owner=None, tags=())
        tags = self._upstream_tags.get(key, ())
        return UpstreamClaim(
            exists=True, owner=claimed_owner(tags, tuple(held.values())), tags=tags
        )

    def forget(self, upstream: str, *, workspace: str | None = None) -> None:
        self.forgotten.append(((workspace or ""), upstream))

    def reset(self) -> None:
        self.resets += 1

    # --- what the HTTP server also asks ---------------------------------------------------

    async def verify(
        self, upstream: str, desired: Mapping[str, int], *, workspace: str | None = None
    ) -> Verification:
        self.verifies += 1
        if self.verification is not None:
            return self.verification
        seen: dict[str, int | None] = dict(self.weights(upstream, workspace))
        reasons = tuple(
            f"{self.display_url}: {t} serves {seen.get(t)}, want {w}"
            for t, w in desired.items()
            if seen.get(t) != w
        )
        return Verification(not reasons, dict(desired), {self.display_url: seen}, reasons)

    # --- internals ------------------------------------------------------------------------

    def _targets(self, upstream: str, workspace: str | None) -> dict[str, Target]:
        return self._upstreams[((workspace or ""), upstream)]

    def _maybe_fail(self) -> None:
        if self._fail:
            raise self._fail.pop(0)
        if self.down is not None:
            raise self.down

    def _apply(
        self,
        upstream: str,
        desired: Sequence[DesiredTarget],
        owner_tags: Sequence[str],
        workspace: str | None,
        may_write: MayWrite | None,
    ) -> ApplyResult:
        self._maybe_fail()
        if upstream in self.refused:
            raise self.refused[upstream]
        mode = self.node_mode
        key = ((workspace or ""), upstream)
        held = self._upstreams.get(key)
        created = held is None
        if created and not self.create_upstreams:
            missing = Drift(DRIFT_MISSING, None, None, None, corrected=False)
            return ApplyResult(upstream, workspace, mode, drift=(missing,), upstream_missing=True)
        current = dict(held or {})
        plan = plan_writes(
            current.values(), desired, owner_tags=owner_tags, exclusive=self.exclusive_upstreams
        )
        if plan.writes or created:
            if self.before_write is not None:
                self.before_write()
            if may_write is not None and budget_of(may_write()) <= 0:
                raise KongNotLeader(f"not the leader: no write to upstream {upstream}")
        for write in plan.writes:
            if write.kind == WriteKind.DELETE:
                apply_write(current, write, None)
                continue
            old = current.get(write.target)
            tags = write.tags if write.tags is not None else (old.tags if old else ())
            tid = old.id if old is not None else f"t{next(self._ids)}"
            assert write.weight is not None
            apply_write(current, write, Target(tid, write.target, write.weight, tags))
        self._upstreams[key] = current
        if created:
            self._upstream_tags[key] = write_tags(owner_tags)
        drift = plan.drift
        if created:
            drift = (Drift(DRIFT_MISSING, None, None, None), *drift)
        return ApplyResult(
            upstream,
            workspace,
            mode,
            writes=plan.writes,
            targets=tuple(current.values()),
            foreign=foreign_targets(current.values(), owner_tags),
            drift=drift,
            upstream_created=created,
        )
