"""The DB-less round trip against Kong's own libraries: lyaml export → kongsplit → cjson/lyaml.

A realistic node configuration (tests/kong_configs.py) is exported the way Kong's
``GET /config`` builds its text (kong/db/declarative/export.lua, with the real lyaml), read by
kongsplit, edited by kongsplit's own DB-less editor (``declarative.edit_config``: weights changed,
a target added), written with :func:`configtext.dump_json`, and read back the way Kong's
``POST /config`` reads a string (kong/db/declarative/init.lua ``_M:unserialize``: cjson, then
lyaml). Everything but the managed targets must come back identical.

PyYAML's round trip, which kongsplit used before, is kept as the witness of why: it changes or
cannot read values lyaml writes, and the YAML it writes makes Kong's lyaml read other values.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import math
import re
from typing import Any

import pytest
import yaml
from kong_configs import MANAGED_UPSTREAM, TRICKY, realistic_config
from lyaml_support import Lyaml, lua_value, to_python

from kongsplit.kong import configtext
from kongsplit.kong.declarative import edit_config
from kongsplit.kong.targets import DesiredTarget, owner_tags_for

OWNER = owner_tags_for("shop", "checkout")
DESIRED = [
    DesiredTarget("10.96.0.10:80", 75, "stable"),
    DesiredTarget("10.96.0.11:80", 20, "canary"),
    DesiredTarget("10.96.0.12:80", 5, "canary"),  # not in Kong yet: added
]


def _edit(config: dict[str, Any]) -> None:
    edit_config(
        config, MANAGED_UPSTREAM, DESIRED, owner_tags=OWNER, create_upstream=False, exclusive=False
    )


def _managed(config: dict[str, Any]) -> dict[str, int]:
    (upstream,) = [u for u in config["upstreams"] if u["name"] == MANAGED_UPSTREAM]
    return {t["target"]: t["weight"] for t in config["targets"] if t["upstream"] == upstream["id"]}


@pytest.fixture(scope="module")
def exported(lyaml: Lyaml) -> str:
    """Kong's GET /config text for the realistic configuration, written by the real lyaml."""
    return lyaml.export(realistic_config())


def test_kongsplit_reads_the_export_as_kong_holds_it(lyaml: Lyaml, exported: str) -> None:
    (kong_reads,) = lyaml.load([exported])
    assert kong_reads.lua() == lua_value(realistic_config())  # the export is faithful...
    assert lua_value(configtext.load(exported)) == kong_reads.lua()  # ...and so is kongsplit


def test_edit_and_post_changes_only_the_managed_targets(lyaml: Lyaml, exported: str) -> None:
    config = configtext.load(exported)
    assert _managed(config) == {"10.96.0.10:80": 90, "10.96.0.11:80": 10}
    _edit(config)
    assert _managed(config) == {"10.96.0.10:80": 75, "10.96.0.11:80": 20, "10.96.0.12:80": 5}

    posted = configtext.dump_json(config)
    parser, kong_holds = lyaml.unserialize(posted)
    assert parser == "cjson"  # JSON text: Kong's first try reads it, lyaml is never asked

    original = realistic_config()
    expected = copy.deepcopy(original)
    _edit(expected)
    assert kong_holds == lua_value(expected)
    # Said entity by entity: only the managed upstream's targets differ from the original.
    posted_config = json.loads(posted)
    for name, entities in original.items():
        if name != "targets":
            assert lua_value(posted_config[name]) == lua_value(entities), name
    others = [t for t in original["targets"] if t["target"] not in _managed(original)]
    assert others and all(t in posted_config["targets"] for t in others)

    # The hash Kong records for this POST (kong/db/declarative/init.lua: md5 of the string).
    assert configtext.config_hash(posted) == hashlib.md5(posted.encode()).hexdigest()


def test_the_simulator_export_reads_as_lyamls(lyaml: Lyaml, exported: str) -> None:
    """configtext.export_lyaml (for the simulator's GET /config) says the same as Kong's export."""
    mine = configtext.export_lyaml(realistic_config())
    (kong_reads_mine,) = lyaml.load([mine])
    (kong_reads_kongs,) = lyaml.load([exported])
    assert kong_reads_mine.lua() == kong_reads_kongs.lua()

    # The same lines, up to the order of keys inside a mapping (Lua's pairs order decides which
    # key comes first and so carries a sequence's "- ").
    def lines(text: str) -> list[str]:
        return sorted(re.sub(r"^\s*(- )*", "", line) for line in text.splitlines())

    assert lines(mine) == lines(exported)


def test_a_nul_survives_kongsplits_round_trip(lyaml: Lyaml) -> None:
    """lyaml's loader ends a string at a NUL (ext/yaml/lyaml.h pushes it with lua_pushstring);
    kongsplit reads the whole string from the export, so what Kong holds is posted back."""
    config = {"_format_version": "3.0", "consumers": [{"username": "a\0b"}]}
    text = lyaml.export(config)
    (lyaml_reads,) = lyaml.load([text])
    assert lyaml_reads.lua() == lua_value({**config, "consumers": [{"username": "a"}]})
    assert lua_value(configtext.load(text, cut_at_nul=True)) == lyaml_reads.lua()
    _, kong_holds = lyaml.unserialize(configtext.dump_json(configtext.load(text)))
    assert kong_holds == lua_value(config)


def test_json_carries_what_yaml_only_spells_with_dots(lyaml: Lyaml) -> None:
    """.inf/-.inf/.nan floats and numbers past 2**53 reach Kong as the same doubles via cjson."""
    text = lyaml.export(
        {"_format_version": "3.0", "x": [{"f": [math.inf, -math.inf, math.nan, 2**60 + 1, 0.1]}]}
    )
    (kong_holds_now,) = lyaml.load([text])
    _, kong_holds_then = lyaml.unserialize(configtext.dump_json(configtext.load(text)))
    assert kong_holds_then == kong_holds_now.lua()


# --- the witness: PyYAML's YAML 1.1 round trip --------------------------------------------------


def test_pyyaml_cannot_read_what_lyaml_writes(exported: str) -> None:
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load(exported)  # "=" is YAML 1.1's value tag: no constructor


def test_pyyaml_reads_other_values_than_lyaml(lyaml: Lyaml) -> None:
    texts = [t for t in TRICKY if t not in ("=", "<<")]
    exported = lyaml.export({"_format_version": "3.0", "consumers": [{"tags": texts}]})
    read = yaml.safe_load(exported)["consumers"][0]["tags"]
    changed = {text: got for text, got in zip(texts, read, strict=True) if got != text}
    assert changed["2024-01-02"] == datetime.date(2024, 1, 2)
    assert isinstance(changed["2024-01-02T03:04:05Z"], datetime.datetime)
    assert lua_value(configtext.load(exported)["consumers"][0]["tags"]) == lua_value(texts)


def test_pyyaml_writes_yaml_kong_reads_as_other_values(lyaml: Lyaml) -> None:
    """What safe_dump wrote, Kong read with lyaml (not JSON): strings came back as numbers, so
    Kong refused the whole POST ("expected a string")."""
    config = {"_format_version": "3.0", "consumers": [{"username": t} for t in TRICKY]}
    parser, kong_holds = lyaml.unserialize(yaml.safe_dump(config))
    assert parser == "lyaml"
    usernames = [c["username"] for c in to_python(kong_holds)["consumers"]]
    turned = {t for t, got in zip(TRICKY, usernames, strict=True) if got != t}
    assert {"08", "1e3", "1:60", "00:30", "+.5"} <= turned, turned
    # kongsplit's JSON keeps every one of them
    _, kong_holds = lyaml.unserialize(configtext.dump_json(config))
    assert kong_holds == lua_value(config)
