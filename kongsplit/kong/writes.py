"""The write plan: which target writes take one upstream to what a Rollout wants, in an order
that never passes through zero total weight (docs/weights.md "Write order"). Pure: no I/O.

Given the targets Kong holds in one upstream and the targets one Rollout wants there, decide
which writes to make and in which order:

- **raises** first (creates with a positive weight, weights going up, adoptions), then
  **lowers** (weights going down, foreign targets zeroed, zero-weight creates, stale targets of
  this Rollout deleted). After the raises every weight is at least what it was, and during the
  lowers every target is at least at its final weight, so as long as the desired total is
  positive the upstream never passes through zero total weight — Kong would answer 503
  "failure to get a peer". Writes *within* a phase may run concurrently for the same reason.
- writes whose weight (and tags) already match are skipped;
- a target kongsplit does not own is never deleted; an untagged target at exactly a wanted
  address is adopted (weight set, our tags added to the ones it has);
- foreign targets carrying weight are reported, and zeroed only when ``exclusive``. Targets of
  *another* kongsplit Rollout in the same upstream are reported but never zeroed: two Rollouts
  sharing one upstream would otherwise zero each other on every apply.

The same planner edits a DB-less declarative config (``kong.declarative.edit_config``), where
all writes land in one ``POST /config`` and the order does not matter.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kongsplit.kong.records import KongMode, Target
from kongsplit.kong.targets import MANAGED_TAG, ROLLOUT_TAG_PREFIX, DesiredTarget

#: Drift kinds (``kongsplit_drift_corrections_total{kind}``): the ones a write plan finds, and
#: the two a DB-less node's configuration hash reveals. Defined here once.
DRIFT_WEIGHT = "weight"  # a managed target's weight changed
DRIFT_MISSING = "missing"  # a managed target or the upstream is gone
DRIFT_FOREIGN = "foreign"  # a target kongsplit does not own carries weight
DRIFT_RESTART = "restart"  # a DB-less node came back with the empty configuration
DRIFT_FOREIGN_CONFIG = "foreign_config"  # another writer replaced a DB-less node's config
DRIFT_KINDS = (DRIFT_WEIGHT, DRIFT_MISSING, DRIFT_FOREIGN, DRIFT_RESTART, DRIFT_FOREIGN_CONFIG)

#: Kong's load-balancing algorithms (kong/db/schema/entities/upstreams.lua).
ALGORITHMS = ("round-robin", "consistent-hashing", "least-connections", "latency")
#: Algorithms on which a target at weight 0 can still receive requests: least-connections
#: scores an address (connections + 1) / weight, so weight 0 sorts last but is still picked once
#: the others failed (least_connections.lua getPeer); latency scores ewma / weight, where 0 / 0
#: is NaN and compares false, so a weight-0 address can win (latency.lua pick_and_score). Only
#: round-robin (slots by weight) and consistent-hashing (points by weight) give weight 0 nothing.
WEIGHT_ZERO_UNSAFE = frozenset({"least-connections", "latency"})


class WriteKind(enum.StrEnum):
    CREATE = "create"  # POST a missing target
    UPDATE = "update"  # PATCH the weight of a target of this Rollout
    ADOPT = "adopt"  # PATCH weight and tags of an unowned target at a wanted address
    ZERO_FOREIGN = "zero_foreign"  # PATCH a foreign target to 0 (exclusive upstreams only)
    DELETE = "delete"  # DELETE a target of this Rollout that it no longer wants


@dataclass(frozen=True)
class Write:
    kind: WriteKind
    target: str
    weight: int | None  # the weight written (None for a delete)
    old_weight: int | None = None  # None for a create
    target_id: str | None = None  # None for a create
    tags: tuple[str, ...] | None = None  # tags written (creates and adoptions)
    role: str | None = None


@dataclass(frozen=True)
class Drift:
    """A difference between Kong and the desired state found before writing.

    ``corrected`` says whether this apply put it back (a foreign target with weight is only
    corrected when exclusive). ``target`` is None for a missing upstream.
    """

    kind: str  # "weight" | "missing" | "foreign"
    target: str | None
    expected: int | None
    observed: int | None
    corrected: bool = True


@dataclass(frozen=True)
class WritePlan:
    raises: tuple[Write, ...]
    lowers: tuple[Write, ...]
    drift: tuple[Drift, ...]
    # An urgent plan (an abort) lowers first when what stays up carries weight: one request
    # ends the canary's traffic and the upstream still never passes through zero total.
    lowers_first: bool = False

    @property
    def phases(self) -> tuple[tuple[Write, ...], tuple[Write, ...]]:
        """The two phases in the order they run; writes within a phase are independent."""
        return (self.lowers, self.raises) if self.lowers_first else (self.raises, self.lowers)

    @property
    def writes(self) -> tuple[Write, ...]:
        first, then = self.phases
        return first + then


@dataclass(frozen=True)
class ApplyResult:
    """What one ``apply`` did and saw.

    ``targets`` is every target of the upstream after the apply, as Kong acknowledged it;
    ``foreign`` the targets not owned by this Rollout that still carry weight; ``drift`` what
    differed before writing (the daemon counts it as drift corrections when the apply came from
    a sweep). ``upstream_missing`` is set when the upstream does not exist and creating it was
    not allowed — nothing was written then.
    """

    upstream: str
    workspace: str | None
    mode: KongMode
    writes: tuple[Write, ...] = ()
    targets: tuple[Target, ...] = ()
    foreign: tuple[Target, ...] = ()
    drift: tuple[Drift, ...] = ()
    upstream_created: bool = False
    upstream_missing: bool = False
    config_posted: bool = False  # DB-less: a POST /config was sent (and not answered 304)
    # The upstream's load-balancing algorithm when known (read with the upstream, not on the
    # hot path); see WEIGHT_ZERO_UNSAFE.
    algorithm: str | None = None
    # DB-less: the node's configuration had been replaced behind kongsplit when this apply read
    # it (DRIFT_FOREIGN_CONFIG or DRIFT_RESTART): what it put back is counted as that.
    config_kind: str | None = None
    # A dry run (``kongsplit run --dry-run``, ``kongsplit diff``): Kong was read and the writes
    # planned, nothing was sent. ``writes`` stays empty and ``targets`` is what Kong holds;
    # ``planned`` is what an apply would have written, in its order, and ``upstream_planned``
    # says it would have created the upstream first.
    dry_run: bool = False
    planned: tuple[Write, ...] = ()
    upstream_planned: bool = False
    # DB mode: a write to this upstream (in this apply or a failed one before) got no answer, so
    # it may still land later, over newer weights (``KongAdmin.take_unsettled``).
    unsettled: bool = False

    @property
    def changed(self) -> bool:
        """Kong was changed (never by a dry run)."""
        return bool(self.writes) or self.upstream_created

    def weights(self) -> dict[str, int]:
        """Target string → weight after the apply."""
        return {t.target: t.weight for t in self.targets}


def rollout_tag_of(owner_tags: Iterable[str]) -> str | None:
    return next((t for t in owner_tags if t.startswith(ROLLOUT_TAG_PREFIX)), None)


def write_tags(owner_tags: Sequence[str]) -> tuple[str, ...]:
    """The tags put on created targets: the owner tags, always with ``managed-by-kongsplit``."""
    tags = list(dict.fromkeys(owner_tags))
    if MANAGED_TAG not in tags:
        tags.insert(0, MANAGED_TAG)
    return tuple(tags)


def is_ours(target: Target, owner_tags: Sequence[str]) -> bool:
    """Owned by this Rollout: it carries the Rollout tag (or just the managed tag if none given)."""
    rollout = rollout_tag_of(owner_tags)
    return rollout in target.tags if rollout else target.managed


def _adopted_tags(existing: Sequence[str], owner_tags: Sequence[str]) -> tuple[str, ...]:
    # Keep whatever tags the target had, except another Rollout's claim, and add ours.
    kept = [t for t in existing if not t.startswith(ROLLOUT_TAG_PREFIX)]
    return tuple(dict.fromkeys([*kept, *write_tags(owner_tags)]))


def plan_writes(
    current: Iterable[Target],
    desired: Sequence[DesiredTarget],
    *,
    owner_tags: Sequence[str],
    exclusive: bool = False,
    urgent: bool = False,
) -> WritePlan:
    """The ordered writes taking ``current`` to ``desired`` (see the module docstring).

    ``urgent`` (an abort): lower first when the targets left standing still carry weight, so
    the first request already takes the canary out of traffic.
    """
    by_target = {t.target: t for t in current}
    wanted = {d.target: d for d in desired}
    if len(wanted) != len(desired):
        raise ValueError("desired targets contain the same target twice")
    tags = write_tags(owner_tags)
    raises: list[Write] = []
    lowers: list[Write] = []
    drift: list[Drift] = []

    for d in desired:
        have = by_target.get(d.target)
        if have is None:
            drift.append(Drift(DRIFT_MISSING, d.target, d.weight, None))
            write = Write(WriteKind.CREATE, d.target, d.weight, tags=tags, role=d.role)
            (raises if d.weight > 0 else lowers).append(write)
            continue
        if have.weight != d.weight:
            drift.append(Drift(DRIFT_WEIGHT, d.target, d.weight, have.weight))
        if not is_ours(have, owner_tags):
            new_tags = _adopted_tags(have.tags, owner_tags)
            write = Write(
                WriteKind.ADOPT, d.target, d.weight, have.weight, have.id, new_tags, d.role
            )
            (raises if d.weight >= have.weight else lowers).append(write)
        elif have.weight != d.weight:
            write = Write(WriteKind.UPDATE, d.target, d.weight, have.weight, have.id, role=d.role)
            (raises if d.weight > have.weight else lowers).append(write)

    rollout = rollout_tag_of(owner_tags)
    for t in by_target.values():
        if t.target in wanted:
            continue
        if is_ours(t, owner_tags) and (rollout is not None or not t.rollout_tag):
            # Ours but no longer wanted (a Service's clusterIP changed, target mode switched).
            lowers.append(Write(WriteKind.DELETE, t.target, None, t.weight, t.id))
            continue
        if t.weight == 0:
            continue
        # Another kongsplit Rollout's target is reported but never zeroed (see module docstring).
        zero = exclusive and not t.managed
        drift.append(Drift(DRIFT_FOREIGN, t.target, 0, t.weight, corrected=zero))
        if zero:
            lowers.append(Write(WriteKind.ZERO_FOREIGN, t.target, 0, t.weight, t.id))

    # Zero-weight creates go last: a fresh upstream first gets a target that carries traffic.
    lowers.sort(key=lambda w: w.kind == WriteKind.CREATE)
    lowers_first = urgent and bool(lowers) and bool(raises) and _positive_after(by_target, lowers)
    return WritePlan(tuple(raises), tuple(lowers), tuple(drift), lowers_first)


def _positive_after(current: dict[str, Target], writes: Sequence[Write]) -> bool:
    """Whether the upstream's total weight stays above 0 with only ``writes`` applied."""
    weights = {name: t.weight for name, t in current.items()}
    for w in writes:
        if w.kind == WriteKind.DELETE:
            weights.pop(w.target, None)
        elif w.weight is not None:
            weights[w.target] = w.weight
    return sum(weights.values()) > 0


def apply_write(targets: dict[str, Target], write: Write, result: Target | None) -> None:
    """Update a target map after ``write`` succeeded (``result`` = Kong's answer, if any)."""
    if write.kind == WriteKind.DELETE:
        targets.pop(write.target, None)
    elif result is not None:
        targets[result.target] = result


def foreign_targets(targets: Iterable[Target], owner_tags: Sequence[str]) -> tuple[Target, ...]:
    """Targets not owned by this Rollout that carry weight."""
    return tuple(t for t in targets if t.weight > 0 and not is_ours(t, owner_tags))


# --------------------------------------------------------------------------- changes in words

#: decK's three counts (``Summary: Created: 1 Updated: 2 Deleted: 0``), by what a line does:
#: ``+`` creates (an upstream, a target), ``~`` updates a weight (an adoption too), ``-`` takes a
#: target out of traffic (one of this Rollout's deleted, or one not kongsplit's zeroed).
CREATED, UPDATED, DELETED = "created", "updated", "deleted"
_SIGN = {CREATED: "+", UPDATED: "~", DELETED: "-"}


@dataclass(frozen=True)
class Change:
    """One write as an operator reads it: what ``kongsplit diff`` prints and ``kongsplit run
    --dry-run`` logs, both from the planner's ``Write`` (never re-derived)."""

    upstream: str
    workspace: str | None
    action: str  # "create_upstream", or a WriteKind (create, update, adopt, zero_foreign, delete)
    target: str | None  # None for the upstream itself
    old_weight: int | None  # None for a create
    new_weight: int | None  # None for a delete
    line: str  # decK-style, see ``change_line``

    @property
    def count(self) -> str:
        """Which of decK's counts it adds to: CREATED, UPDATED or DELETED."""
        if self.action in ("create_upstream", WriteKind.CREATE):
            return CREATED
        if self.action in (WriteKind.DELETE, WriteKind.ZERO_FOREIGN):
            return DELETED
        return UPDATED

    def fields(self) -> dict[str, object]:
        """The change as JSON (``diff -o json``) and log fields (``run --dry-run``)."""
        return {
            "upstream": self.upstream,
            "workspace": self.workspace,
            "action": self.action,
            "target": self.target,
            "old_weight": self.old_weight,
            "new_weight": self.new_weight,
            "change": self.line,
        }


def upstream_label(upstream: str, workspace: str | None = None) -> str:
    """``upstream web.shop.svc`` (``… [workspace team-a]`` outside the default workspace)."""
    return f"upstream {upstream}" + (
        f" [workspace {workspace}]" if workspace and workspace != "default" else ""
    )


def change_line(upstream: str, write: Write, *, workspace: str | None = None) -> str:
    """One write, decK-style: ``~ upstream checkout.shop.svc: target 10.0.0.2:80 weight 10 →
    25``; ``+`` a create, ``-`` a target taken out of traffic (deleted, or zeroed when it is
    not kongsplit's and ``kong.exclusiveUpstreams`` is on)."""
    where = f"{upstream_label(upstream, workspace)}: target {write.target}"
    old, new = write.old_weight, write.weight
    if write.kind == WriteKind.CREATE:
        return f"{_SIGN[CREATED]} {where} weight {new} (create)"
    if write.kind == WriteKind.DELETE:
        return f"{_SIGN[DELETED]} {where} weight {old} (delete: no longer wanted)"
    weight = f"weight {old} → {new}" if old != new else f"weight {new}"
    if write.kind == WriteKind.ZERO_FOREIGN:
        return f"{_SIGN[DELETED]} {where} {weight} (zero: not kongsplit's, kong.exclusiveUpstreams)"
    if write.kind == WriteKind.ADOPT:
        tag = rollout_tag_of(write.tags or ()) or MANAGED_TAG
        return f"{_SIGN[UPDATED]} {where} {weight} (adopt: tag {tag})"
    return f"{_SIGN[UPDATED]} {where} {weight}"


def upstream_create_line(upstream: str, *, workspace: str | None = None) -> str:
    return f"{_SIGN[CREATED]} {upstream_label(upstream, workspace)} (create)"


def changes_of(result: ApplyResult) -> list[Change]:
    """Every change of an apply — planned by a dry run, or made — one each, in write order.

    Except: the deletes and zeroings ``plan_writes`` found in Kong's list come in the order Kong
    listed them (by id, random), so each run of them is put in target order here — they are
    one phase's independent writes, and the same state reads the same way every time.
    """
    up, ws = result.upstream, result.workspace
    found = []
    if result.upstream_planned or result.upstream_created:
        line = upstream_create_line(up, workspace=ws)
        found.append(Change(up, ws, "create_upstream", None, None, None, line))
    writes = list(result.planned if result.dry_run else result.writes)
    removals = (WriteKind.DELETE, WriteKind.ZERO_FOREIGN)
    start = 0
    while start < len(writes):
        end = start
        while end < len(writes) and writes[end].kind in removals:
            end += 1
        writes[start:end] = sorted(writes[start:end], key=lambda w: w.target)
        start = end + 1
    for w in writes:
        new = None if w.kind == WriteKind.DELETE else w.weight
        line = change_line(up, w, workspace=ws)
        found.append(Change(up, ws, str(w.kind), w.target, w.old_weight, new, line))
    return found


def change_lines(result: ApplyResult) -> list[str]:
    """``changes_of``, the lines only."""
    return [c.line for c in changes_of(result)]
