"""The chaos run's judge (bench/chaos_check.py) on synthetic histories: each defect the chaos
run is there to find must be caught, and a clean history must pass.

One upstream ``u`` with a stable target ``S`` and a canary ``C``; the desired history moves
100/0 → 90/10 → 75/25 → abort (100/0), each change sent at the times below and acknowledged
10 ms later.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from chaos_check import Abort, Commit, Desired, Report, Window, check, percentile

S, C = "10.96.0.10:80", "10.96.0.11:80"
ACK = 0.01


def history(*changes: tuple[float, int]) -> list[Desired]:
    """Desired entries from (sent at, canary weight), stable = 100 - canary."""
    out: list[Desired] = []
    for i, (t, canary) in enumerate(changes):
        end = changes[i + 1][0] + ACK if i + 1 < len(changes) else math.inf
        out.append(Desired(t, end, {S: 100 - canary, C: canary}))
    return out


DESIRED = {"u": history((0.0, 0), (10.0, 10), (20.0, 25), (30.0, 0))}
ABORT = Abort("u", C, t=30.0, until=60.0, canary_before=25)


def commits(*states: tuple[float, int, int]) -> list[Commit]:
    """Commits of (time, stable, canary)."""
    return [Commit(t, "u", 0, {S: s, C: c}) for t, s, c in states]


#: What kongsplit does: raise before lower, each change a few ms after it was sent; an abort
#: takes the canary out first while the stable carries weight (issue 12 item 7).
GOOD = [
    Commit(0.05, "u", 0, {}),  # the upstream is created empty
    Commit(0.06, "u", 0, {S: 100}),  # the stable target first ...
    *commits(
        (0.07, 100, 0),  # ... a zero-weight create last
        (10.02, 100, 10),  # raise the canary ...
        (10.03, 90, 10),  # ... then lower the stable
        (20.02, 90, 25),
        (20.03, 75, 25),
        (30.02, 75, 0),  # abort: one request ends canary traffic ...
        (30.03, 100, 0),  # ... then the stable takes it all
    ),
]


def judge(
    found: list[Commit],
    final: dict[str, int] | None = None,
    *,
    wipes: tuple[float, ...] = (),
    windows: tuple[Window, ...] = (),
) -> Report:
    """The judge with Kong's final state = the last commit (unless given)."""
    last = found[-1].weights
    return check(
        DESIRED,
        found,
        final={"u": final if final is not None else last},
        aborts=[ABORT],
        wipes=wipes,
        windows=windows,
    )


def test_a_clean_history_passes() -> None:
    r = judge(GOOD)
    assert (
        r.lost_updates,
        r.never_desired_writes,
        r.zero_total_moments,
        r.stale_writes_gt5s,
        r.write_order_violations,
        r.aborts_unresolved,
    ) == (0, 0, 0, 0, 0, 0)
    assert r.abort_latencies == [pytest.approx(0.02)]
    assert r.writes == 8  # two creates, then two weight changes per desired change


def test_a_broken_write_order_is_caught() -> None:
    """Lower before raise outside an abort: from 90/10 to 75/25 the stable drops first (85 in
    all), and on a full shift (0/100 → 100/0) the upstream reaches zero total weight. The
    abort's own order (canary 0 first, the stable still at 75) is not a violation."""
    found = [
        *GOOD[:4],
        *commits((20.02, 75, 10), (20.03, 75, 25)),  # lowered first: 85 total
        *GOOD[6:],
    ]
    r = judge(found)
    assert r.write_order_violations == 1
    assert r.examples["write_order"][0]["state"] == {S: 75, C: 10}
    full = {"u": history((0.0, 100), (10.0, 0))}
    broken = commits((0.05, 0, 100), (10.02, 0, 0), (10.03, 100, 0))
    r2 = check(full, broken, final={"u": {S: 100, C: 0}})
    assert r2.zero_total_moments == 1 and r2.write_order_violations == 1


def test_a_disabled_abort_path_is_caught() -> None:
    """The abort never reaches Kong: the canary keeps 25 to the end."""
    found = GOOD[:7]
    r = judge(found)
    assert r.lost_updates == 1
    assert r.aborts_unresolved == 1
    assert r.abort_latencies == [pytest.approx(30.0)]  # counted with its lower bound
    assert r.examples["lost_update"][0] == {
        "upstream": "u",
        "desired": {S: 100, C: 0},
        "kong": {S: 75, C: 25},
    }


def test_a_late_abort_is_measured_and_an_excluded_window_set_apart() -> None:
    found = [*GOOD[:7], *commits((32.5, 100, 25), (32.6, 100, 0))]
    r = judge(found)
    assert r.abort_latencies == [pytest.approx(2.6)]
    slow = Window(31.0, 33.0, "kong-slow")
    r2 = judge(found, windows=(slow,))
    assert r2.abort_latencies == [] and r2.abort_latencies_excluded == [pytest.approx(2.6)]
    assert r2.abort_latencies_all == [pytest.approx(2.6)]


def test_an_abort_undone_by_a_late_write_counts_from_the_last_zero() -> None:
    """Canary 0 lands, then a stale 25 lands on top, then 0 again: the abort took until the
    second 0."""
    found = [*GOOD, *commits((31.0, 100, 25), (33.0, 100, 0))]
    r = judge(found)
    assert r.abort_latencies == [pytest.approx(3.0)]


def test_a_stale_write_is_caught() -> None:
    """75/25 stopped being desired at 30.01; a retry of it lands 6 s later."""
    found = [*GOOD, *commits((36.5, 100, 25), (36.6, 100, 0))]
    r = judge(found)
    assert r.stale_writes_gt5s == 1
    assert r.examples["stale"][0]["target"] == C and r.examples["stale"][0]["late_s"] > 6
    assert r.never_desired_writes == 0
    # the same write 4 s late is late but within the bound
    r2 = judge([*GOOD, *commits((34.0, 100, 25), (34.1, 100, 0))])
    assert r2.stale_writes_gt5s == 0 and 3.9 < r2.stale_max_s < 4.1


def test_a_value_never_desired_is_caught() -> None:
    found = [*GOOD, *commits((40.0, 60, 40), (40.1, 100, 0))]
    r = judge(found)
    assert r.never_desired_writes == 2  # 60 on the stable and 40 on the canary
    assert r.stale_writes_gt5s == 0


def test_a_value_written_before_it_was_desired_is_caught() -> None:
    """A write of 25 before anyone asked for it (at 15 s; 25 is desired from 20 s)."""
    found = [*GOOD[:5], *commits((15.0, 90, 25), (15.1, 90, 10)), *GOOD[5:]]
    r = judge(found)
    assert r.never_desired_writes == 1


def test_a_wipe_starts_the_upstream_afresh() -> None:
    """After a wipe the upstream comes back empty (total 0): not a zero-total moment; the
    recreated targets are writes like any other."""
    found = [
        *GOOD[:7],
        Commit(25.0, "u", 1, {}),  # recreated by the other replica after the wipe at 24
        Commit(25.01, "u", 1, {S: 75}),
        Commit(25.02, "u", 1, {S: 75, C: 25}),
        *commits((30.02, 100, 25), (30.03, 100, 0)),
    ]
    r = judge(found, wipes=(24.0,))
    assert r.zero_total_moments == 0 and r.never_desired_writes == 0
    assert r.write_order_violations == 0  # a missing target is a rebuild, not an order
    # without the wipe recorded, the empty upstream is a zero-total moment
    assert judge(found).zero_total_moments == 1


def test_a_lost_update_is_an_upstream_not_at_its_last_desired_weights() -> None:
    r = judge(GOOD, final={S: 100})  # canary target missing at the end
    assert r.lost_updates == 1
    assert check(DESIRED, GOOD, final={"u": None}).lost_updates == 1


def test_an_abort_with_the_canary_already_at_0_is_not_measured() -> None:
    r = check(DESIRED, GOOD, final={"u": {S: 100, C: 0}}, aborts=[Abort("u", C, 1.0, 5.0, 0)])
    assert r.aborts_trivial == 1 and r.abort_latencies == []


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 0.99) == 99.0 and percentile(values, 1.0) == 100.0


def test_a_failed_raise_is_not_a_write_order_violation() -> None:
    """After an abort (canary out first: 50/0) Argo retries (90/10). A raise phase whose stable
    raise landed and whose canary raise failed leaves 90/0, short of the desired sum without any
    lower: no violation (the chaos run's one "violation" at 1,000 Rollouts was this). Lowering
    the stable 100 → 90 before the canary's raise is one."""
    desired = {"u": history((0.0, 50), (10.0, 0), (20.0, 10))}
    abort = [Abort("u", C, 10.0, 20.0, 50, cleared=20.0)]  # the retry clears it
    raised = commits((0.05, 50, 50), (10.02, 50, 0), (20.02, 90, 0))
    r = check(desired, raised, final={"u": {S: 90, C: 0}}, aborts=abort)
    assert r.write_order_violations == 0
    lowered = commits((0.05, 50, 50), (10.02, 50, 0), (10.03, 100, 0), (20.02, 90, 0))
    r2 = check(desired, lowered, final={"u": {S: 90, C: 0}}, aborts=abort)
    assert r2.write_order_violations == 1
    assert r2.examples["write_order"][0]["state"] == {S: 90, C: 0}


def test_while_the_abort_is_in_force_every_plan_may_take_the_canary_out_first() -> None:
    """A new revision's objects change before Argo clears status.abort: the daemon still
    writes urgently (canary 0 first), which is no violation until the abort is cleared."""
    desired = {"u": history((0.0, 50), (10.0, 0), (12.0, 10), (14.0, 0))}
    found = commits((0.05, 50, 50), (10.02, 50, 0), (10.03, 100, 0), (12.02, 100, 10))
    found += commits((12.03, 90, 10), (14.02, 90, 0), (14.03, 100, 0))
    in_force = [Abort("u", C, 10.0, 12.0, 50, cleared=15.0)]
    r = check(desired, found, final={"u": {S: 100, C: 0}}, aborts=in_force)
    assert r.write_order_violations == 0
    cleared = [Abort("u", C, 10.0, 12.0, 50, cleared=13.0)]
    r2 = check(desired, found, final={"u": {S: 100, C: 0}}, aborts=cleared)
    assert r2.write_order_violations == 1


def test_a_late_landing_of_a_value_no_longer_desired_is_stale_not_a_write_order() -> None:
    """The chaos run's case: the abort's canary → 0, held by a slow Kong past the client's
    timeout, lands after the retry (90/10) was written. The canary is lowered while the stable
    is short, but by a request the daemon gave up on, not by a plan: it is a stale write
    (0.59 s late here). A plan lowering to a value desired now is still a violation."""
    desired = {"u": history((0.0, 10), (10.0, 0), (12.0, 10))}
    abort = [Abort("u", C, 10.0, 12.0, 10, cleared=12.0)]
    found = commits((0.05, 90, 10), (10.02, 90, 0), (10.03, 100, 0), (12.02, 100, 10))
    found += commits((12.03, 90, 10), (12.6, 90, 0))
    r = check(desired, found, final={"u": {S: 90, C: 10}}, aborts=abort)
    assert r.write_order_violations == 0
    assert 0.58 < r.stale_max_s < 0.6
    lowered_first = commits((0.05, 90, 10), (10.02, 90, 0), (10.03, 100, 0), (12.02, 90, 0))
    lowered_first += commits((12.03, 90, 10))
    r2 = check(desired, lowered_first, final={"u": {S: 90, C: 10}}, aborts=abort)
    assert r2.write_order_violations == 1
