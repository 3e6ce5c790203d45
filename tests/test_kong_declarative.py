"""kong.declarative: the DB-less edit of a flat declarative config (pure)."""

from __future__ import annotations

from kong_support import CANARY, OWNER, STABLE, want

from kongsplit.kong.declarative import config_claim, edit_config, upstream_targets
from kongsplit.kong.targets import MANAGED_TAG


def test_edit_config_flat_export() -> None:
    config = {
        "_format_version": "3.0",
        "_transform": False,
        "upstreams": [{"id": "u1", "name": "shop.svc"}],
        "targets": [
            {"id": "t1", "target": "10.0.0.1:80", "weight": 100, "upstream": "u1", "tags": None},
            {"id": "t9", "target": "10.5.5.5:80", "weight": 100, "upstream": "u-other"},
        ],
    }
    edit = edit_config(
        config, "shop.svc", want(80, 20), owner_tags=OWNER, create_upstream=True, exclusive=False
    )
    targets = {t["target"]: t for t in config["targets"]}
    assert targets["10.0.0.1:80"]["weight"] == 80
    assert targets["10.0.0.1:80"]["tags"] == list(OWNER)  # adopted
    assert targets["10.0.0.2:80"] == {
        "id": targets["10.0.0.2:80"]["id"],
        "target": "10.0.0.2:80",
        "weight": 20,
        "upstream": "u1",
        "tags": list(OWNER),
    }
    assert targets["10.5.5.5:80"]["weight"] == 100  # another upstream's target is untouched
    assert {t.target: t.weight for t in edit.targets.values()} == {STABLE: 80, CANARY: 20}


def test_edit_config_missing_upstream() -> None:
    config: dict[str, object] = {"_format_version": "3.0"}
    edit = edit_config(
        config, "new.svc", want(100, 0), owner_tags=OWNER, create_upstream=False, exclusive=False
    )
    assert edit.upstream_missing and not edit.plan.writes
    edit = edit_config(
        config, "new.svc", want(100, 0), owner_tags=OWNER, create_upstream=True, exclusive=False
    )
    assert edit.upstream_created
    assert config["upstreams"] == [
        {"id": edit.targets[STABLE].upstream_id, "name": "new.svc", "tags": [MANAGED_TAG, OWNER[1]]}
    ]


def test_upstream_targets_are_read_as_the_edit_reads_them() -> None:
    """The targets a dry run reports as Kong's: target strings normalised, other upstreams' and
    malformed entries left out; None for an upstream the config does not have."""
    config = {
        "upstreams": [{"id": "u1", "name": "shop.svc", "tags": ["managed-by-kongsplit"]}],
        "targets": [
            {"id": "t1", "target": "010.0.0.1:80", "weight": 100, "upstream": {"id": "u1"}},
            {"id": "t2", "target": "10.0.0.2:80", "weight": "heavy", "upstream": "u1"},
            {"id": "t9", "target": "10.5.5.5:80", "weight": 100, "upstream": "u-other"},
        ],
    }
    found = upstream_targets(config, "shop.svc")
    assert found is not None and [(t.target, t.weight) for t in found] == [("10.0.0.1:80", 100)]
    assert upstream_targets(config, "gone.svc") is None
    assert config_claim(config, "shop.svc").tagged_for_kongsplit
    assert not config_claim(config, "gone.svc").exists
