"""kong.writes: the write plan (pure) — order, skips, adoption, foreign targets, drift."""

from __future__ import annotations

import pytest
from kong_support import CANARY, OTHER, OWNER, STABLE, replay, target, want

from kongsplit.kong.records import KongMode, Target
from kongsplit.kong.targets import DesiredTarget
from kongsplit.kong.writes import (
    CREATED,
    DELETED,
    UPDATED,
    ApplyResult,
    Write,
    WriteKind,
    change_line,
    change_lines,
    changes_of,
    plan_writes,
)


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


# --- the words: `kongsplit diff` prints them, `run --dry-run` logs them -------------------------


@pytest.mark.parametrize(
    ("write", "workspace", "line"),
    [
        pytest.param(
            Write(WriteKind.UPDATE, CANARY, 25, 10),
            None,
            f"~ upstream u.svc: target {CANARY} weight 10 → 25",
            id="update",
        ),
        pytest.param(
            Write(WriteKind.CREATE, STABLE, 0),
            None,
            f"+ upstream u.svc: target {STABLE} weight 0 (create)",
            id="create",
        ),
        pytest.param(
            Write(WriteKind.DELETE, STABLE, None, 20),
            None,
            f"- upstream u.svc: target {STABLE} weight 20 (delete: no longer wanted)",
            id="delete",
        ),
        pytest.param(
            Write(WriteKind.ADOPT, STABLE, 100, 100, tags=("team-a", *OWNER)),
            None,
            f"~ upstream u.svc: target {STABLE} weight 100 (adopt: tag {OWNER[1]})",
            id="adopt-same-weight",
        ),
        pytest.param(
            Write(WriteKind.ADOPT, STABLE, 75, 100, tags=OWNER),
            None,
            f"~ upstream u.svc: target {STABLE} weight 100 → 75 (adopt: tag {OWNER[1]})",
            id="adopt-new-weight",
        ),
        pytest.param(
            Write(WriteKind.ZERO_FOREIGN, "10.9.0.1:80", 0, 5),
            None,
            "- upstream u.svc: target 10.9.0.1:80 weight 5 → 0 (zero: not kongsplit's, "
            "kong.exclusiveUpstreams)",
            id="zero-foreign",
        ),
        pytest.param(
            Write(WriteKind.UPDATE, CANARY, 25, 10),
            "team-a",
            f"~ upstream u.svc [workspace team-a]: target {CANARY} weight 10 → 25",
            id="workspace",
        ),
        pytest.param(
            Write(WriteKind.UPDATE, CANARY, 25, 10),
            "default",
            f"~ upstream u.svc: target {CANARY} weight 10 → 25",
            id="default-workspace-unsaid",
        ),
    ],
)
def test_change_line(write: Write, workspace: str | None, line: str) -> None:
    assert change_line("u.svc", write, workspace=workspace) == line


def test_change_lines_of_a_dry_run_and_of_an_apply() -> None:
    plan = plan_writes([], want(100, 0), owner_tags=OWNER)
    dry = ApplyResult(
        "u.svc", None, KongMode.DB, dry_run=True, planned=plan.writes, upstream_planned=True
    )
    assert change_lines(dry) == [
        "+ upstream u.svc (create)",
        f"+ upstream u.svc: target {STABLE} weight 100 (create)",
        f"+ upstream u.svc: target {CANARY} weight 0 (create)",
    ]
    assert not dry.changed
    done = ApplyResult("u.svc", None, KongMode.DB, writes=plan.writes, upstream_created=True)
    assert change_lines(done) == change_lines(dry) and done.changed
    assert changes_of(dry)[1].fields() == {
        "upstream": "u.svc",
        "workspace": None,
        "action": "create",
        "target": STABLE,
        "old_weight": None,
        "new_weight": 100,
        "change": f"+ upstream u.svc: target {STABLE} weight 100 (create)",
    }


@pytest.mark.parametrize(
    ("write", "count"),
    [
        pytest.param(Write(WriteKind.CREATE, STABLE, 0), CREATED, id="create"),
        pytest.param(Write(WriteKind.UPDATE, STABLE, 0, 25), UPDATED, id="update-to-0"),
        pytest.param(Write(WriteKind.ADOPT, STABLE, 10, 10, tags=OWNER), UPDATED, id="adopt"),
        pytest.param(Write(WriteKind.ZERO_FOREIGN, STABLE, 0, 5), DELETED, id="zero-foreign"),
        pytest.param(Write(WriteKind.DELETE, STABLE, None, 5), DELETED, id="delete"),
    ],
)
def test_decks_counts_follow_the_sign_of_the_line(write: Write, count: str) -> None:
    """decK's Created/Updated/Deleted: ``+``, ``~``, ``-`` (a target taken out of traffic)."""
    result = ApplyResult("u.svc", None, KongMode.DB, dry_run=True, planned=(write,))
    (change,) = changes_of(result)
    assert change.count == count
    assert change.line[0] == {CREATED: "+", UPDATED: "~", DELETED: "-"}[count]
    fresh = ApplyResult("u.svc", None, KongMode.DB, dry_run=True, upstream_planned=True)
    assert [c.count for c in changes_of(fresh)] == [CREATED]


def test_changes_read_in_write_order_with_removals_by_target() -> None:
    """Deletes and zeroings come from Kong's list (ordered by id, at random): each run of them
    is shown by target, so the same state reads the same way; nothing else moves."""
    planned = (
        Write(WriteKind.UPDATE, CANARY, 25, 10),
        Write(WriteKind.DELETE, "10.0.0.9:80", None, 5),
        Write(WriteKind.ZERO_FOREIGN, "10.0.0.1:80", 0, 5),
        Write(WriteKind.DELETE, "10.0.0.5:80", None, 5),
        Write(WriteKind.CREATE, OTHER, 0),
    )
    result = ApplyResult("u.svc", None, KongMode.DB, dry_run=True, planned=planned)
    assert [c.target for c in changes_of(result)] == [
        CANARY,
        "10.0.0.1:80",
        "10.0.0.5:80",
        "10.0.0.9:80",
        OTHER,
    ]
