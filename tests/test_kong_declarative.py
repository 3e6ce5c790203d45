"""kong.declarative: the DB-less edit of a flat declarative config (pure)."""

from __future__ import annotations

from kong_support import CANARY, OWNER, STABLE, want

from kongsplit.kong.declarative import edit_config
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
