"""configtext's own promises that need no Lua: the JSON it posts, the hash, the worker threads.

What lyaml reads or writes is never asserted here: the tests beside this one ask the real lyaml.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from typing import Any

import pytest

from kongsplit.kong import configtext


def _config(services: int) -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "_transform": False,
        "services": [
            {
                "id": f"svc-{n}",
                "name": f"0{n}",
                "port": 8080,
                "tags": ["12:30", "é", None, True, 1.5, [], {}],
            }
            for n in range(services)
        ],
        "targets": [],
        "meta": {"nested": {"x": [1, 2.5, math.inf, -math.inf]}},
    }


def test_dump_json_is_compact_json_of_the_same_values() -> None:
    config = _config(50)
    text = configtext.dump_json(config)
    assert text == json.dumps(config, ensure_ascii=False, separators=(",", ":"))
    assert json.loads(text) == config
    assert configtext.dump_json([1, "a"]) == '[1,"a"]'


@pytest.mark.parametrize(
    ("config", "where"),
    [
        ({"services": [{"headers": {1: ["x"]}}]}, "$.services[0].headers: key 1"),
        ({"a": {None: 1}}, "$.a: key None"),
        ({"a": {True: 1}}, "$.a: key True"),
        ({"a": {"b": b"bytes"}}, "$.a.b: a bytes"),
        ({"a": {1.5, 2.5}}, "$.a: a set"),
    ],
)
def test_dump_json_refuses_what_json_would_change(config: Any, where: str) -> None:
    assert any(p.startswith(where) for p in configtext.json_problems(config)), where
    with pytest.raises(configtext.KongYAMLError, match="cannot post this configuration unchanged"):
        configtext.dump_json(config)


def test_dump_json_refuses_a_cycle_not_a_shared_value() -> None:
    config: dict[str, Any] = {"a": []}
    config["a"].append(config)
    with pytest.raises(configtext.KongYAMLError, match=r"\$\.a\[0\]: contains itself"):
        configtext.dump_json(config)
    shared = configtext.load("a: &x {k: [1]}\nb: *x\nc: [*x, *x]\n")  # YAML aliases
    assert shared["a"] is shared["b"]
    assert configtext.json_problems(shared) == []
    assert json.loads(configtext.dump_json(shared)) == shared


def test_config_hash_is_md5_of_the_utf8_text() -> None:
    text = configtext.dump_json({"consumers": [{"username": "ünï 名前"}]})
    assert configtext.config_hash(text) == hashlib.md5(text.encode("utf-8")).hexdigest()
    assert configtext.config_hash(text) != configtext.config_hash(text + " ")


def test_load_errors_are_configtext_errors() -> None:
    with pytest.raises(configtext.KongYAMLError, match="not valid YAML"):
        configtext.load("a: [1\n")
    with pytest.raises(configtext.KongYAMLError):  # libyaml's nesting limit, or Python's
        configtext.load("[" * 5000 + "]" * 5000)


def test_dump_lyaml_refuses_what_lua_has_no_value_for() -> None:
    with pytest.raises(configtext.KongYAMLError, match="cannot dump a bytes"):
        configtext.dump_lyaml({"a": b"x"})


async def _ticks_during(work: Any) -> tuple[Any, int]:
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            await asyncio.sleep(0)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        result = await work
    finally:
        stop.set()
        await task
    return result, ticks


async def test_the_async_forms_leave_the_loop_running() -> None:
    config = _config(4000)
    text = configtext.dump_lyaml(config)
    started = time.perf_counter()
    loaded, ticks = await _ticks_during(configtext.load_async(text))
    took = time.perf_counter() - started
    assert configtext.load(text) == loaded
    assert ticks > 10, (ticks, took)  # the loop kept turning while a worker thread parsed
    posted, ticks = await _ticks_during(configtext.dump_json_async(loaded))
    assert posted == configtext.dump_json(loaded)
    assert ticks > 0
