"""kong.writes: the write plan (pure) — order, skips, adoption, foreign targets, drift."""

from __future__ import annotations

import pytest
from kong_support import CANARY, OTHER, OWNER, STABLE, replay, target, want

from kongsplit.kong.records import Target
from kongsplit.kong.targets import DesiredTarget
from kongsplit.kong.writes import Write, WriteKind, plan_writes


@pytest.mark.parametrize(
    ("current", "desired"),
    [
        pytest.param([target(STABLE, 100), target(CANARY, 0)], want(0, 100), id="100/0-to-0/100"),
        pytest.param([target(STABLE, 0), target(CANARY, 100)], want(100, 0), id="0/100-to-100/0"),
        pytest.param([target(STABLE, 75), target(CANARY, 25)], want(25, 75), id="75/25-to-25/75"),
        pytest.param([], want(100, 0), id="fresh-upstream"),
        pytest.param([], want(0, 100), id="fresh-upstream-canary-only"),
        pytest.param([target(STABLE, 100)], want(0, 100), id="canary-missing"),
        pytest.param(
            [target(STABLE, 100, ()), target(CANARY, 0, ())], want(0, 100), id="adopt-both-and-swap"
        ),
        pytest.param(
            [target(STABLE, 100), target("10.9.9.9:80", 50)], want(0, 100), id="stale-owned-deleted"
        ),
    ],
)
def test_plan_never_passes_through_zero_total(
    current: list[Target], desired: list[DesiredTarget]
) -> None:
    plan = plan_writes(current, desired, owner_tags=OWNER, exclusive=True)
    totals = replay(current, plan)
    assert totals, "expected writes"
    assert all(total > 0 for total in totals), totals
    final = {t.target: t.weight for t in current}
    for w in plan.writes:
        if w.kind == WriteKind.DELETE:
            final.pop(w.target)
        else:
            assert w.weight is not None
            final[w.target] = w.weight
    assert final == {d.target: d.weight for d in desired}


def test_plan_skips_matching_weights() -> None:
    plan = plan_writes([target(STABLE, 90), target(CANARY, 10)], want(90, 10), owner_tags=OWNER)
    assert plan.writes == ()
    assert plan.drift == ()


def test_plan_raise_before_lower_and_zero_creates_last() -> None:
    plan = plan_writes([], want(100, 0), owner_tags=OWNER)
    assert [(w.kind, w.target, w.weight) for w in plan.raises] == [(WriteKind.CREATE, STABLE, 100)]
    assert [(w.kind, w.target, w.weight) for w in plan.lowers] == [(WriteKind.CREATE, CANARY, 0)]
    assert plan.raises[0].tags == OWNER


def test_plan_adopts_untagged_target_keeping_its_tags() -> None:
    current = [target(STABLE, 100, ("team-a",)), target(CANARY, 0)]
    plan = plan_writes(current, want(100, 0), owner_tags=OWNER)
    assert plan.writes == (
        Write(WriteKind.ADOPT, STABLE, 100, 100, f"id-{STABLE}", ("team-a", *OWNER), "stable"),
    )


def test_plan_foreign_reported_not_touched_unless_exclusive() -> None:
    current = [
        target(STABLE, 90),
        target(CANARY, 10),
        target("10.7.7.7:80", 50, ()),
        target("10.7.7.8:80", 0, ()),
    ]
    plan = plan_writes(current, want(90, 10), owner_tags=OWNER)
    assert plan.writes == ()
    assert [(d.kind, d.target, d.corrected) for d in plan.drift] == [
        ("foreign", "10.7.7.7:80", False)
    ]
    plan = plan_writes(current, want(90, 10), owner_tags=OWNER, exclusive=True)
    assert [(w.kind, w.target, w.weight) for w in plan.writes] == [
        (WriteKind.ZERO_FOREIGN, "10.7.7.7:80", 0)
    ]


def test_plan_other_rollouts_targets_never_zeroed() -> None:
    current = [target(STABLE, 90), target(CANARY, 10), target("10.8.8.8:80", 20, OTHER)]
    plan = plan_writes(current, want(90, 10), owner_tags=OWNER, exclusive=True)
    assert plan.writes == ()
    assert [d.kind for d in plan.drift] == ["foreign"]


def test_plan_drift_kinds() -> None:
    plan = plan_writes([target(STABLE, 50)], want(90, 10), owner_tags=OWNER)
    assert sorted((d.kind, d.target) for d in plan.drift) == [
        ("missing", CANARY),
        ("weight", STABLE),
    ]


def test_plan_rejects_duplicate_desired() -> None:
    with pytest.raises(ValueError, match="twice"):
        plan_writes([], [DesiredTarget(STABLE, 1), DesiredTarget(STABLE, 2)], owner_tags=OWNER)


def test_desired_weight_range() -> None:
    with pytest.raises(ValueError, match="outside"):
        DesiredTarget(STABLE, 65536)
