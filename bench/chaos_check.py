"""The chaos run's judge: Kong's write history against the desired history (bench/README.md).

Pure, no I/O: ``bench/chaos.py`` hands it what the run recorded and prints what it finds;
``tests/chaos/test_check.py`` holds it to synthetic histories (a broken write order, a disabled
abort path, a stale or an invented weight must each be caught).

Inputs, all on one clock (``time.monotonic()``, system-wide on Linux, so the driver's and the
simulator's timestamps compare):

- **desired history** per upstream: ``Desired(start, end, weights)`` entries in order. An
  entry is desired from ``start`` (the moment the change that made it was *sent* to the
  Kubernetes API) until ``end`` (the moment the API *acknowledged* the change that replaced it;
  ``inf`` for the last). While a change is in flight both values count as desired.
- **commits**: every change the Kong simulator committed to an upstream, as the weights of all
  its targets right after it (``None`` once the upstream is gone), with the time and the node
  (so the replica) that wrote it; and the times the Kong database was wiped.

The invariants (a "write" below is a commit that changes one target's weight, or creates the
target; a commit that changes nothing is not a write):

- **lost update**: at the end, after the quiet period, an upstream whose weights in Kong are not
  its last desired weights (a desired target missing counts).
- **never-desired write**: a write of weight *w* to target *x* when *x* was never desired at *w*
  at any moment up to then. Checked per target, not per pair: the documented write order
  (raise before lower) passes through states that mix the old weight of one target with the new
  weight of the other, and each of those is one target's desired weight at some moment. A write
  that is merely late is not "never desired": it is measured as a stale write.
- **stale write (> 5 s)**: a write of a weight that is not desired for that target when it lands
  and stopped being desired more than 5 s earlier.
- **zero-total moment**: a committed state of an upstream whose targets' weights sum to 0 after
  the sum was positive once. A wipe of the Kong database starts the upstream afresh (an upstream
  is always created empty, before its first target).
- **write-order violation** (reported beside the others): a commit that lowers a target while
  another is still below its desired weight (the desired weights last sent): the lower went
  before the raise. A raise that failed and left the sum short lowers nothing and is not one.
  Except the order an abort is
  written in: while an abort is in force, its canary at 0 with the stable still above 0 (one
  request ends canary traffic; the total never reaches 0).
- **abort latency**: from the moment an abort was sent to the Kubernetes API to the moment
  Kong's canary target reached weight 0 for good (no later non-zero commit before the Rollout's
  next change); an upstream that is gone counts as canary 0. An abort whose canary was still not
  0 when the Rollout changed again is *unresolved* and counted with that lower bound. Reported
  over every abort whose canary desired weight before it was positive, and again without the
  aborts whose interval [abort, canary 0] touches an exclusion window (no replica alive and
  leading, or Kong answering slowly).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

STALE_AFTER = 5.0  # seconds: a write landing later than this after its value stopped being desired
EXAMPLES = 5  # evidence kept per kind of violation


@dataclass(frozen=True)
class Desired:
    start: float
    end: float
    weights: Mapping[str, int]


@dataclass(frozen=True)
class Commit:
    t: float
    upstream: str
    node: int | None
    weights: Mapping[str, int] | None  # None: the upstream is gone


@dataclass(frozen=True)
class Abort:
    upstream: str
    canary: str  # the canary target string
    t: float  # sent to the Kubernetes API
    until: float  # the Rollout's next change (inf: none)
    canary_before: int  # the canary's desired weight just before the abort
    cleared: float = math.inf  # status.abort cleared (a retry, a new revision): no longer in force


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    kind: str  # "no-leader" | "kong-slow"


@dataclass
class Report:
    writes: int = 0
    commits: int = 0
    lost_updates: int = 0
    never_desired_writes: int = 0
    stale_writes_gt5s: int = 0
    stale_max_s: float = 0.0
    zero_total_moments: int = 0
    write_order_violations: int = 0
    unknown_target_writes: int = 0
    abort_latencies: list[float] = field(default_factory=list)
    abort_latencies_excluded: list[float] = field(default_factory=list)  # inside a window
    aborts_unresolved: int = 0
    aborts_trivial: int = 0  # canary already desired at 0 before the abort: nothing to measure
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def example(self, kind: str, **evidence: Any) -> None:
        found = self.examples.setdefault(kind, [])
        if len(found) < EXAMPLES:
            found.append(evidence)

    @property
    def abort_latencies_outside(self) -> list[float]:
        return self.abort_latencies

    @property
    def abort_latencies_all(self) -> list[float]:
        return sorted(self.abort_latencies + self.abort_latencies_excluded)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1), nearest rank; None without values."""
    s = sorted(values)
    if not s:
        return None
    k = max(0, min(len(s) - 1, math.ceil(q * len(s)) - 1))
    return s[k]


class _Target:
    """One target's desired weights over time: intervals per weight."""

    def __init__(self) -> None:
        self.by_weight: dict[int, list[tuple[float, float]]] = {}

    def add(self, weight: int, start: float, end: float) -> None:
        self.by_weight.setdefault(weight, []).append((start, end))

    def ever(self, weight: int, t: float) -> bool:
        return any(start <= t for start, _ in self.by_weight.get(weight, ()))

    def at(self, weight: int, t: float) -> bool:
        return any(start <= t <= end for start, end in self.by_weight.get(weight, ()))

    def last_end(self, weight: int, t: float) -> float | None:
        ends = [end for start, end in self.by_weight.get(weight, ()) if end <= t and start <= t]
        return max(ends) if ends else None


def _targets_of(history: Sequence[Desired]) -> dict[str, _Target]:
    out: dict[str, _Target] = {}
    for entry in history:
        for target, weight in entry.weights.items():
            out.setdefault(target, _Target()).add(weight, entry.start, entry.end)
    return out


def check(
    desired: Mapping[str, Sequence[Desired]],
    commits: Iterable[Commit],
    *,
    wipes: Sequence[float] = (),
    final: Mapping[str, Mapping[str, int] | None],
    aborts: Sequence[Abort] = (),
    windows: Sequence[Window] = (),
    origin: float = 0.0,
    stale_after: float = STALE_AFTER,
) -> Report:
    """Judge one run. ``final`` is Kong's state of every upstream at the end (None: missing);
    ``origin`` is subtracted from the times shown in the evidence."""
    report = Report()
    targets = {u: _targets_of(h) for u, h in desired.items()}
    pairs = {u: [(e.start, dict(e.weights)) for e in h] for u, h in desired.items()}
    wipe_times = sorted(wipes)
    aborts_of: dict[str, list[Abort]] = {}
    for a in aborts:
        aborts_of.setdefault(a.upstream, []).append(a)
    ordered = sorted(commits, key=lambda c: c.t)
    by_upstream: dict[str, list[Commit]] = {}
    for c in ordered:
        by_upstream.setdefault(c.upstream, []).append(c)

    for upstream, history in by_upstream.items():
        wanted = targets.get(upstream, {})
        prev: dict[str, int] = {}
        positive = False
        wiped_seen = 0
        for c in history:
            report.commits += 1
            # A wipe between the previous commit and this one: the upstream starts afresh.
            n = bisect.bisect_right(wipe_times, c.t)
            if n > wiped_seen:
                wiped_seen = n
                prev, positive = {}, False
            if c.weights is None:
                prev, positive = {}, False
                continue
            state = dict(c.weights)
            total = sum(state.values())
            when = round(c.t - origin, 3)
            if total == 0 and positive:
                report.zero_total_moments += 1
                report.example(
                    "zero_total", upstream=upstream, t=when, node=c.node, state=state, before=prev
                )
            if total > 0:
                positive = True
            for target, weight in state.items():
                if prev.get(target) == weight:
                    continue
                report.writes += 1
                line = wanted.get(target)
                if line is None:
                    report.unknown_target_writes += 1
                    report.example("unknown_target", upstream=upstream, t=when, target=target)
                    continue
                if not line.ever(weight, c.t):
                    report.never_desired_writes += 1
                    report.example(
                        "never_desired",
                        upstream=upstream,
                        t=when,
                        node=c.node,
                        target=target,
                        weight=weight,
                        state=state,
                        desired=_desired_near(pairs.get(upstream, []), c.t, origin),
                    )
                    continue
                if line.at(weight, c.t):
                    continue
                ended = line.last_end(weight, c.t)
                late = c.t - ended if ended is not None else 0.0
                report.stale_max_s = max(report.stale_max_s, late)
                if late > stale_after:
                    report.stale_writes_gt5s += 1
                    report.example(
                        "stale",
                        upstream=upstream,
                        t=when,
                        node=c.node,
                        target=target,
                        weight=weight,
                        late_s=round(late, 3),
                        desired=_desired_near(pairs.get(upstream, []), c.t, origin),
                    )
            if _lowered_before_raised(state, prev, _desired_at(pairs.get(upstream, []), c.t)):
                pair = {t: state[t] for t in wanted if t in state}
                # A lower to a value no longer desired is a request landing late (Kong carried
                # out a write the daemon had given up on): a stale write, measured as such, not
                # a plan that lowered first.
                current = all(
                    wanted[t].at(w, c.t) for t, w in pair.items() if t in prev and w < prev[t]
                )
                if current and not _abort_order(aborts_of.get(upstream, ()), c.t, pair):
                    report.write_order_violations += 1
                    report.example(
                        "write_order",
                        upstream=upstream,
                        t=when,
                        node=c.node,
                        state=pair,
                        before=prev,
                    )
            prev = state

    for upstream, history in desired.items():
        if not history:
            continue
        want = dict(history[-1].weights)
        have = final.get(upstream)
        if have is None or any(have.get(t) != w for t, w in want.items()):
            report.lost_updates += 1
            report.example("lost_update", upstream=upstream, desired=want, kong=have)

    _aborts(report, aborts, by_upstream, wipe_times, windows, origin)
    return report


def _desired_at(
    pairs: Sequence[tuple[float, Mapping[str, int]]], t: float
) -> Mapping[str, int] | None:
    """The latest desired weights sent at or before ``t``."""
    found = None
    for start, weights in pairs:
        if start <= t:
            found = weights
    return found


def _lowered_before_raised(
    state: Mapping[str, int], prev: Mapping[str, int], want: Mapping[str, int] | None
) -> bool:
    """This commit lowered a target while another still waits below its desired weight: the
    lower went first. (A raise that failed, leaving the sum short, lowers nothing.)"""
    if want is None:
        return False
    lowered = any(t in prev and w < prev[t] for t, w in state.items())
    return lowered and any(state.get(t, 0) < w for t, w in want.items())


def _abort_order(aborts: Sequence[Abort], t: float, pair: Mapping[str, int]) -> bool:
    """The order an abort is written in (issue 12 item 7): canary to 0 first while the stable
    already carries weight, one request ending canary traffic; the total stays above 0. Every
    plan is written so while ``status.abort`` is set (a new revision's objects change before
    Argo clears it)."""
    return sum(pair.values()) > 0 and any(
        a.t <= t <= max(a.until, a.cleared) and pair.get(a.canary) == 0 for a in aborts
    )


def _desired_near(
    pairs: Sequence[tuple[float, Mapping[str, int]]], t: float, origin: float
) -> list[tuple[float, Mapping[str, int]]]:
    """The desired entries around ``t`` (the last three started by then, the next one)."""
    i = bisect.bisect_right([start for start, _ in pairs], t)
    return [(round(start - origin, 3), w) for start, w in pairs[max(0, i - 3) : i + 1]]


def canary_timeline(
    history: Sequence[Commit], canary: str, wipes: Sequence[float]
) -> list[tuple[float, int]]:
    """(time, canary weight) at every commit and wipe; a missing target or upstream is 0."""
    events: list[tuple[float, int]] = [(t, 0) for t in wipes]
    for c in history:
        events.append((c.t, 0 if c.weights is None else c.weights.get(canary, 0)))
    events.sort(key=lambda e: e[0])
    return events


def _aborts(
    report: Report,
    aborts: Sequence[Abort],
    by_upstream: Mapping[str, Sequence[Commit]],
    wipes: Sequence[float],
    windows: Sequence[Window],
    origin: float,
) -> None:
    timelines: dict[tuple[str, str], list[tuple[float, int]]] = {}
    for a in aborts:
        if a.canary_before <= 0:
            report.aborts_trivial += 1
            continue
        key = (a.upstream, a.canary)
        if key not in timelines:
            timelines[key] = canary_timeline(by_upstream.get(a.upstream, ()), a.canary, wipes)
        line = timelines[key]
        times = [t for t, _ in line]
        i = bisect.bisect_right(times, a.t)
        weight = line[i - 1][1] if i > 0 else 0
        reached: float | None = a.t if weight == 0 else None
        for t, w in line[i:]:
            if t >= a.until:
                break
            if w == 0 and reached is None:
                reached = t
            elif w != 0:
                reached = None
        if reached is None:
            report.aborts_unresolved += 1
            end = a.until if math.isfinite(a.until) else a.t
            latency = end - a.t
            report.example(
                "abort_unresolved",
                upstream=a.upstream,
                t=round(a.t - origin, 3),
                canary_weight_at_next_change=_weight_at(line, a.until),
                waited_s=round(latency, 3),
            )
        else:
            end = reached
            latency = reached - a.t
        inside = [w for w in windows if w.start <= end and a.t <= w.end]
        if inside:
            report.abort_latencies_excluded.append(latency)
        else:
            report.abort_latencies.append(latency)
            if latency > 1.0:
                report.example(
                    "abort_slow",
                    upstream=a.upstream,
                    t=round(a.t - origin, 3),
                    latency_s=round(latency, 3),
                )


def _weight_at(line: Sequence[tuple[float, int]], t: float) -> int:
    i = bisect.bisect_right([x for x, _ in line], t)
    return line[i - 1][1] if i > 0 else 0
