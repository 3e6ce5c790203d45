"""The simulator's DB-less ``/config`` and ``/status`` speak Kong 3.9.3's own dialect.

Real sockets against a running simulator. Where the question is "what would Kong's lyaml or
cjson do", the answer comes from the real libraries: tests/sim/lua/kong_dialect_oracle.lua under
the luajit that `bash .ci/install-tools` puts in .tools/bin (Debian's lyaml 6.2.8, the version
Kong pins, and lua-cjson). Without luajit these tests skip locally and fail under CI=true.

Each test names the Kong source it restates (github.com/Kong/kong at tag 3.9.3, checked out at
/work/src/Kong+kong while this was written).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kongsplit.kong import configtext
from kongsplit.sim import KongSim
from kongsplit.sim.kongsim import config as kong_config
from kongsplit.sim.kongsim import dialect

ROOT = Path(__file__).resolve().parents[2]
ORACLE = ROOT / "tests" / "sim" / "lua" / "kong_dialect_oracle.lua"

# tests/configtext/lyaml_support.py: finding luajit (skip locally, fail in CI) and the oracle's
# tagged values. Loaded by path: tests/configtext is not a package.
_spec = importlib.util.spec_from_file_location(
    "sim_lyaml_support", ROOT / "tests" / "configtext" / "lyaml_support.py"
)
assert _spec is not None and _spec.loader is not None
lyaml_support = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(lyaml_support)

TRICKY = ["007", "12:30", "1e3", "2024-01-02T03:04:05Z", "=", "<<", "yes", "~", "0x1F", ".inf", ""]
UP = "tricky.default.80.svc"


class Oracle:
    """tests/sim/lua/kong_dialect_oracle.lua: Kong's export and reading with the real libraries."""

    def __init__(self, luajit: str) -> None:
        self.luajit = luajit

    def run(self, mode: str, requests: list[Any]) -> list[dict[str, Any]]:
        proc = subprocess.run(
            [self.luajit, str(ORACLE), mode],
            input=json.dumps(requests),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        answers: list[dict[str, Any]] = json.loads(proc.stdout)
        assert len(answers) == len(requests)
        return answers

    def export(self, config: dict[str, Any]) -> str:
        """export.lua's text for ``config``, keys in the dict's order (see the oracle)."""
        entities = [k for k, v in config.items() if isinstance(v, list)]
        (answer,) = self.run(
            "export", [{"config": lyaml_support.to_tagged(config), "entities": entities}]
        )
        assert answer["ok"], answer["error"]
        assert isinstance(answer["value"], str)
        return answer["value"]

    def unserialize(self, texts: list[str]) -> list[tuple[str, Any]]:
        """``_M:unserialize`` of each text: ("ok", Lua value) or ("error", Kong's err)."""
        return [
            ("ok", lyaml_support.from_tagged(a["value"])) if a["ok"] else ("error", a["error"])
            for a in self.run("unserialize", texts)
        ]

    def read(self, text: str) -> Any:
        """What Kong holds after reading ``text`` (as plain Python: numbers are floats)."""
        ((kind, value),) = self.unserialize([text])
        assert kind == "ok", value
        return lyaml_support.to_python(value)


@pytest.fixture(scope="module")
def oracle() -> Oracle:
    found = Oracle(lyaml_support.find_luajit())
    assert found.read('{"k": "v"}') == {"k": "v"}, "luajit cannot run the oracle"
    return found


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def __call__(self, method: str, path: str, **kw: Any) -> tuple[int, Any, Any]:
        async with self.session.request(method, self.base + path, **kw) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text else None), resp.headers


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


SimFactory = Callable[..., Awaitable[KongSim]]


@pytest.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    sims: list[KongSim] = []

    async def make(**kw: Any) -> KongSim:
        sim = KongSim(**kw)
        await sim.start()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        await sim.stop()


@pytest.fixture
async def dbless(make_sim: SimFactory) -> KongSim:
    return await make_sim(mode="off")


@pytest.fixture
def api(dbless: KongSim, session: aiohttp.ClientSession) -> Api:
    return Api(session, dbless.url)


def upstreams_config() -> dict[str, Any]:
    """Upstreams and targets with strings lyaml must quote, a target written without its port,
    a top-level target naming its upstream, numbers and nested records with nulls."""
    tags = [t for t in TRICKY if t]  # a tag is at least one character (typedefs.tag)
    return {
        "_format_version": "3.0",
        "upstreams": [
            {
                "name": UP,
                "tags": tags,
                "hash_on": "cookie",
                "hash_on_cookie": "1e3",
                "slots": 100,
                "healthchecks": {"threshold": 33.5, "active": {"timeout": 1.25}},
                "targets": [
                    {"target": "10.0.0.1:80", "weight": 7, "tags": ["12:30", "0x1F"]},
                    {"target": "10.0.0.3", "weight": 0},
                ],
            },
            {"name": "plain.svc", "id": "6f1f3f5e-0000-4000-8000-000000000001"},
        ],
        "targets": [{"target": "[::1]:8080", "upstream": "plain.svc", "tags": ["~", "yes"]}],
    }


def tricky_config() -> dict[str, Any]:
    """Every tricky string where Kong's schema allows it: tags (not ""), a consumer's username,
    a cookie name, and a plugin's configuration (carried verbatim by the simulator)."""
    config = upstreams_config()
    config["consumers"] = [{"username": t, "tags": [t]} for t in TRICKY if t]
    config["plugins"] = [
        {"name": "request-transformer", "config": {"add": {"headers": TRICKY}}, "tags": ["="]}
    ]
    return config


def strings_of(value: Any) -> list[str]:
    return sorted(kong_config.iter_strings(value))


# ---------------------------------------------------------------------------------------------
# GET /config: kong/api/routes/config.lua GET → kong/db/declarative/export.lua export_from_db


async def test_get_config_is_kongs_export_byte_for_byte(api: Api, oracle: Oracle) -> None:
    """The text is what export.lua's fd_emitter writes with the real lyaml for the rows Kong
    holds: ``_format_version``/``_transform`` first, then upstreams and targets
    (kong/db/schema/topological_sort.lua puts a referenced type first), rows by primary key
    (the off strategy pages LMDB keys in order), every field with its nulls
    (``GLOBAL_QUERY_OPTS = { nulls = true }``), a foreign key as its id, a target as written
    (kong/db/dao/targets.lua normalises only in its select/page functions, not in ``each``)."""
    status, _, _ = await api("POST", "/config", json=upstreams_config())
    assert status == 201
    status, body, _ = await api("GET", "/config")
    assert status == 200 and set(body) == {"config"}

    ups = (await api("GET", "/upstreams"))[1]["data"]
    written = {  # the Admin API's normalised target → the text posted
        "10.0.0.1:80": "10.0.0.1:80",
        "10.0.0.3:8000": "10.0.0.3",
        "[0000:0000:0000:0000:0000:0000:0000:0001]:8080": "[::1]:8080",
    }
    targets = []
    for up in ups:
        for row in (await api("GET", f"/upstreams/{up['id']}/targets/all"))[1]["data"]:
            targets.append({**row, "upstream": up["id"], "target": written[row["target"]]})
    expected = {
        "_format_version": "3.0",
        "_transform": False,
        "upstreams": sorted(ups, key=lambda u: u["id"]),
        "targets": sorted(targets, key=lambda t: t["id"]),
    }
    assert any(v is None for v in expected["upstreams"][0].values())  # nulls are exported
    assert body["config"] == oracle.export(expected)
    # and Kong reads it back as those rows
    assert oracle.read(body["config"])["targets"][0]["upstream"] in {u["id"] for u in ups}


async def test_export_keeps_every_entity_type_in_kongs_order(api: Api, oracle: Oracle) -> None:
    """Entity types in kong/db/schema/topological_sort.lua's order: consumers before plugins
    (plugins reference consumers), upstreams before targets; types the simulator does not model
    are carried verbatim (the documented gap: Kong would export them flat, with their defaults)."""
    config = tricky_config()
    assert (await api("POST", "/config", json=config))[0] == 201
    text = (await api("GET", "/config"))[1]["config"]
    read = oracle.read(text)
    order = [line.rstrip(":") for line in text.splitlines() if line and line[0].isalpha()]
    assert order == ["consumers", "plugins", "upstreams", "targets"]
    assert read["consumers"] == [{"username": t, "tags": [t]} for t in TRICKY if t]
    assert read["plugins"][0]["config"]["add"]["headers"] == TRICKY


# ---------------------------------------------------------------------------------------------
# POST /config reads a string as kong/db/declarative/init.lua _M:unserialize does


@pytest.mark.parametrize("form", ["json-text", "yaml-text", "yaml-body", "table"])
async def test_tricky_strings_survive_post_get_and_kongs_reading(
    api: Api, oracle: Oracle, form: str
) -> None:
    """POST (JSON text, lyaml-written YAML text under ``config``, a raw ``text/yaml`` body, the
    table form) → GET /config → the real lyaml reads every string back unchanged."""
    config = tricky_config()
    yaml_text = oracle.export(config)
    assert oracle.read(yaml_text)["consumers"][0]["username"] == "007"  # lyaml wrote it so
    if form == "json-text":
        status, _, _ = await api("POST", "/config", json={"config": configtext.dump_json(config)})
    elif form == "yaml-text":
        status, _, _ = await api("POST", "/config", json={"config": yaml_text})
    elif form == "yaml-body":
        status, _, _ = await api(
            "POST", "/config", data=yaml_text.encode(), headers={"Content-Type": "text/yaml"}
        )
    else:
        status, _, _ = await api("POST", "/config", json=config)
    assert status == 201
    text = (await api("GET", "/config"))[1]["config"]
    read = oracle.read(text)
    assert strings_of(read["consumers"]) == strings_of(config["consumers"])
    assert read["plugins"][0]["config"]["add"]["headers"] == TRICKY
    up = next(u for u in read["upstreams"] if u["name"] == UP)
    assert up["tags"] == [t for t in TRICKY if t] and up["hash_on_cookie"] == "1e3"
    tags = sorted(tuple(t["tags"] or ()) for t in read["targets"])
    assert tags == [(), ("12:30", "0x1F"), ("~", "yes")]
    # configtext (the daemon's reader) reads the same text as Kong does
    assert lyaml_support.lua_value(configtext.load(text)) == lyaml_support.lua_value(read)


READINGS = [
    pytest.param('{"_format_version":"3.0","a":1,"a":2}', id="json-duplicate-key-last-wins"),
    pytest.param('{"n":12345678901234567890,"m":9007199254740993,"z":-0}', id="json-big-ints"),
    pytest.param('{"f":NaN,"i":Infinity,"j":-Infinity,"e":1e400}', id="json-nan-inf"),
    pytest.param('{"a":[],"o":{},"t":"x\ty"}', id="json-empty-tables-and-raw-tab"),
    pytest.param('{"s":"a\\u0000b"}', id="json-nul-escape-kept"),
    pytest.param('{"s":"\\ud800"}', id="json-lone-surrogate-refused-then-yaml"),
    pytest.param("[1, 2]", id="json-array-is-a-table"),
    pytest.param('"just a string"', id="json-string-not-a-table"),
    pytest.param("bobby tables", id="yaml-scalar"),
    pytest.param("", id="empty"),
    pytest.param("a: [1\n", id="yaml-syntax-error"),
    pytest.param("a: b: c\n", id="yaml-mapping-in-plain"),
    pytest.param("k: v\n  bad: 1\n", id="yaml-bad-indent"),
    pytest.param("- a\nb: c\n", id="yaml-block-end"),
    pytest.param("a: 007\nb: '007'\nc: 1:30\nd: 0x1F\ne: .inf\nf: ~\ng: yes\n", id="yaml-resolver"),
    pytest.param("a: &x {k: [1]}\nb: *x\n<<: *x\n", id="yaml-anchors-merge"),
    pytest.param('a: "x\\0y"\n', id="yaml-nul-cut"),
    pytest.param('{"a": 1} trailing', id="json-trailing-garbage-then-yaml"),
]


@pytest.mark.parametrize("text", READINGS)
def test_reading_a_string_is_kongs(oracle: Oracle, text: str) -> None:
    """kong/db/declarative/init.lua ``_M:unserialize``: cjson.safe, then pcall(lyaml.load);
    the simulator's reading (dialect.unserialize) gives the same Lua value or the same error."""
    ((kind, theirs),) = oracle.unserialize([text])
    try:
        value, digest = dialect.unserialize(text)
    except dialect.ParseFailure as e:
        assert (kind, theirs) == ("error", str(e))
    else:
        assert kind == "ok", theirs
        assert lyaml_support.lua_value(value) == theirs
        assert digest == hashlib.md5(text.encode()).hexdigest()


def test_cjson_reads_what_kongsplit_posts_as_python_does(oracle: Oracle) -> None:
    """configtext.dump_json's output (what the daemon posts): cjson and the simulator agree on
    every value, including doubles past 2**53, -0, NaN/±Infinity and empty containers."""
    config = {
        "_format_version": "3.0",
        "x": [2**60 + 1, -0.0, 0.1, math.inf, -math.inf, math.nan, [], {}, "é\u2028", None],
    }
    text = configtext.dump_json(config)
    (answer,) = oracle.run("cjson", [text])
    assert answer["ok"], answer["error"]
    assert lyaml_support.lua_value(dialect.cjson_decode(text)) == lyaml_support.from_tagged(
        answer["value"]
    )


# ---------------------------------------------------------------------------------------------
# Refusing what Kong's schema refuses: kong/db/schema/others/declarative_config.lua flatten,
# kong/db/schema/init.lua messages, kong/db/errors.lua declarative_config(_flattened)

REFUSED = [
    pytest.param(
        {"upstreams": [{"name": "a.svc", "tags": ["ok", 5]}]},
        {"upstreams": [{"tags": [None, "expected a string"]}]},
        '{upstreams={{tags={[2]="expected a string"}}}}',
        id="upstream-tag-number",
    ),
    pytest.param(
        {"upstreams": [{"name": "a.svc", "targets": [{"target": "10.0.0.1:80"}, {"target": 7}]}]},
        {"upstreams": [{"targets": [None, {"target": "expected a string"}]}]},
        '{upstreams={{targets={[2]={target="expected a string"}}}}}',
        id="target-number",
    ),
    pytest.param(
        {"consumers": [{"username": "ok"}, {"username": 7}]},
        {"consumers": [None, {"username": "expected a string"}]},
        '{consumers={[2]={username="expected a string"}}}',
        id="consumer-username-number",
    ),
    pytest.param(
        {"services": [{"name": "s", "host": "h", "tags": [True], "routes": [{"paths": [1]}]}]},
        {
            "services": [
                {"tags": ["expected a string"], "routes": [{"paths": ["expected a string"]}]}
            ]
        },
        '{services={{routes={{paths={"expected a string"}}},tags={"expected a string"}}}}',
        id="nested-route-paths",
    ),
    pytest.param(
        {"_format_version": 3.0, "bogus": 1, "upstreams": [{"name": "a.svc", "weight": 1}]},
        {
            "_format_version": "expected a string",
            "bogus": "unknown field",
            "upstreams": [{"weight": "unknown field"}],
        },
        '{_format_version="expected a string",bogus="unknown field",'
        'upstreams={{weight="unknown field"}}}',
        id="format-version-number-and-unknown-fields",
    ),
    pytest.param(
        {"targets": [{"target": "10.0.0.9:80", "upstream": "nope.svc"}]},
        None,  # keyed by the target's generated id: checked below
        None,
        id="reference-to-no-upstream",
    ),
]


@pytest.mark.parametrize(("config", "fields", "message"), REFUSED)
async def test_kongs_schema_refuses_and_nothing_changes(
    dbless: KongSim,
    api: Api,
    config: dict[str, Any],
    fields: dict[str, Any] | None,
    message: str | None,
) -> None:
    dbless.external_config_push({"_format_version": "3.0", "upstreams": [{"name": "keep.svc"}]})
    before_hash, before_text = dbless.config_hash(), (await api("GET", "/config"))[1]["config"]
    config = {"_format_version": "3.0", **config}
    for body in ({"config": configtext.dump_json(config)}, config):
        status, err, _ = await api("POST", "/config", json=body)
        assert status == 400, err
        assert set(err) == {"code", "name", "message", "fields"}
        assert (err["code"], err["name"]) == (14, "invalid declarative configuration")
        if fields is None:
            (tid,) = err["fields"]["targets"]
            assert err["fields"] == {
                "targets": {
                    tid: ["invalid reference 'upstream: nope.svc' (no such entry in 'upstreams')"]
                }
            }
            assert tid == kong_config.kong_uuid("targets", "targets:*:nope.svc:10.0.0.9:80")
        else:
            assert err["fields"] == fields
            assert err["message"] == f"declarative config is invalid: {message}"
    assert dbless.config_hash() == before_hash
    assert (await api("GET", "/config"))[1]["config"] == before_text


async def test_flattened_errors_drain_the_fields(api: Api) -> None:
    """kong/db/errors.lua ``declarative_config_flattened``: entity errors move to
    ``flattened_errors`` (entity_name/id/tags only when valid), what belongs to no entity stays
    in ``fields``, and the message is written from what stayed."""
    config = {
        "_format_version": "3.0",
        "abnormal_extra_field": 123,
        "upstreams": [
            {
                "name": "a.svc",
                "id": "6f1f3f5e-0000-4000-8000-000000000002",
                "tags": ["t-1"],
                "host_header": 123,
                "targets": [{"target": "hostname:1.0", "tags": ["t-2"]}],
            }
        ],
    }
    status, err, _ = await api("POST", "/config?flatten_errors=yes", json=config)
    assert status == 400
    assert err["fields"] == {"abnormal_extra_field": "unknown field"}
    assert err["message"] == 'declarative config is invalid: {abnormal_extra_field="unknown field"}'
    by_type = {e["entity_type"]: e for e in err["flattened_errors"]}
    assert by_type["target"] == {
        "entity_tags": ["t-2"],
        "entity_type": "target",
        "entity": {
            "target": "hostname:1.0",
            "tags": ["t-2"],
            "upstream": {"id": "6f1f3f5e-0000-4000-8000-000000000002"},
        },
        "errors": [
            {
                "type": "field",
                "field": "target",
                "message": "Invalid target ('hostname:1.0'); not a valid hostname or ip address",
            }
        ],
    }
    upstream = by_type["upstream"]
    assert upstream["entity_name"] == "a.svc" and "targets" not in upstream["entity"]
    assert upstream["errors"] == [
        {"type": "field", "field": "host_header", "message": "expected a string"}
    ]
    for off in ("off", "0", "false"):
        status, err, _ = await api("POST", f"/config?flatten_errors={off}", json=config)
        assert status == 400 and "flattened_errors" not in err


# ---------------------------------------------------------------------------------------------
# kong/api/routes/config.lua: parameters, forms, hash


async def test_check_hash_only_for_one_and_only_for_strings(api: Api, dbless: KongSim) -> None:
    """``check_hash`` is ``tostring(v) == "1"`` (``true`` is not); the table form has no hash
    before parsing, so it never answers 304 (parse_config_post_opts, POST)."""
    text = configtext.dump_json(upstreams_config())
    assert (await api("POST", "/config", json={"config": text}))[0] == 201
    assert (await api("POST", "/config?check_hash=true", json={"config": text}))[0] == 201
    assert (await api("POST", "/config?check_hash=1", json={"config": text}))[0] == 304
    assert (await api("POST", "/config", json={"config": text, "check_hash": 1}))[0] == 304
    assert (await api("POST", "/config?check_hash=1", json=upstreams_config()))[0] == 201


async def test_the_hash_of_a_string_is_md5_of_its_bytes(api: Api, dbless: KongSim) -> None:
    """kong/db/declarative/init.lua ``_M:unserialize``: ``new_hash = md5(contents)``, the posted
    string (a raw YAML body: its bytes); kong/db/declarative/import.lua ``load_into_cache``
    stores 32 zeros instead when no entity was loaded."""
    text = configtext.dump_json(upstreams_config())
    await api("POST", "/config", json={"config": text})
    assert (await api("GET", "/status"))[1]["configuration_hash"] == dialect.md5(text)
    raw = "_format_version: '3.0'\nupstreams:\n- name: caf\u00e9.svc\n".encode()
    status, _, _ = await api("POST", "/config", data=raw, headers={"Content-Type": "text/yaml"})
    assert status == 400  # "café" is no hostname: refused, the hash stays
    raw = b"_format_version: '3.0'\nupstreams:\n- name: y.svc  # caf\xc3\xa9\n"
    status, _, _ = await api("POST", "/config", data=raw, headers={"Content-Type": "text/yaml"})
    assert status == 201
    assert (await api("GET", "/status"))[1]["configuration_hash"] == hashlib.md5(raw).hexdigest()
    await api("POST", "/config", json={"config": '{"_format_version": "3.0", "upstreams": []}'})
    assert (await api("GET", "/status"))[1]["configuration_hash"] == "0" * 32


async def test_table_form_hash_is_not_the_md5_of_the_body(api: Api) -> None:
    """``parse_table`` hashes ``cjson_encode({entities, meta})`` of the flattened entities, in
    the Lua ``pairs`` order of the process: never the md5 of the text a client sent."""
    body = upstreams_config()
    sent = json.dumps(body)
    status, _, _ = await api(
        "POST", "/config", data=sent, headers={"Content-Type": "application/json"}
    )
    assert status == 201
    got = (await api("GET", "/status"))[1]["configuration_hash"]
    assert got not in (
        dialect.md5(sent),
        configtext.config_hash(configtext.dump_json(body)),
        "0" * 32,
    )
    assert (await api("POST", "/config", json={"_format_version": "3.0"}))[0] == 201
    assert (await api("GET", "/status"))[1]["configuration_hash"] == "0" * 32


async def test_helper_changes_hash_like_a_post_of_the_export(api: Api, dbless: KongSim) -> None:
    """A change behind the API's back stands for another writer's POST of a string; the hash
    is the md5 of that string (``_M:unserialize``), here the text the node now exports, so
    posting it back with ``check_hash=1`` is recognised as the same configuration."""
    dbless.external_config_push(upstreams_config())
    assert dbless.config_hash() == dialect.md5(json.dumps(upstreams_config()))
    dbless.set_weight(UP, "10.0.0.1:80", 55)
    text = (await api("GET", "/config"))[1]["config"]
    assert "weight: 55" in text
    assert (await api("GET", "/status"))[1]["configuration_hash"] == dialect.md5(text)
    assert (await api("POST", "/config?check_hash=1", json={"config": text}))[0] == 304


async def test_config_parameter_forms(api: Api) -> None:
    """hydrate_config_from_request: ``config`` false or absent → the raw body is the config;
    a table, true or null under ``config`` reaches cjson/lyaml as a non-string; "" is read
    (and is no object); no body at all → "expected a declarative configuration"."""
    lyaml_msg = "failed parsing declarative configuration: " + dialect.LYAML_NOT_A_STRING
    for value in ({"_format_version": "3.0"}, True, None, []):
        status, err, _ = await api("POST", "/config", json={"config": value})
        assert (status, err["fields"]) == (400, {"error": lyaml_msg}), value
    status, err, _ = await api("POST", "/config", json={"config": ""})
    assert err["fields"] == {
        "error": "failed parsing declarative configuration: expected an object"
    }
    assert err["message"] == (
        'declarative config is invalid: {error="failed parsing declarative configuration: '
        'expected an object"}'
    )
    status, err, _ = await api("POST", "/config", json={"config": False})
    assert status == 400
    assert err["fields"] == {
        "_format_version": "required field missing",
        "config": "unknown field",
    }
    status, err, _ = await api("POST", "/config", skip_auto_headers=["Content-Type"])
    assert (status, err) == (400, {"message": "expected a declarative configuration"})
    # query parameters are parameters too (lapis merges them): a table form from the query
    bare = {"skip_auto_headers": ["Content-Type"]}
    assert (await api("POST", "/config?_format_version=3.0", **bare))[0] == 201
    status, err, _ = await api("POST", "/config?_format_version=3.0&x=1", **bare)
    assert (status, err["fields"]) == (400, {"x": "unknown field"})


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        pytest.param(
            {"Content-Type": "application/x-yaml"}, b"_format_version: '3.0'", 415, id="x-yaml"
        ),
        pytest.param({"Content-Type": "Application/JSON"}, b"{}", 415, id="case-sensitive"),
        pytest.param({"Content-Type": "application/vnd.kong+json"}, b"{}", 415, id="plus-json"),
        pytest.param({}, b"_format_version: '3.0'", 415, id="no-content-type"),
        pytest.param({"Content-Type": "application/json"}, b"", 400, id="json-empty-body"),
        # what aiohttp sends with an empty POST: a content type, and not one Kong takes
        pytest.param({"Content-Type": "application/octet-stream"}, b"", 415, id="octet-empty"),
        pytest.param(
            {"Content-Type": "text/yaml; charset=utf-8"},
            b"_format_version: '3.0'",
            201,
            id="text-yaml",
        ),
        pytest.param(
            {"Content-Type": "application/yaml"},
            b"_format_version: '3.0'",
            201,
            id="application-yaml",
        ),
    ],
)
async def test_content_types_on_config(
    api: Api, headers: dict[str, str], body: bytes, status: int
) -> None:
    """kong/api/api_helpers.lua ``before_filter`` (case-sensitive prefixes; YAML only for
    /config; a body without a content type is 415) and ``parse_params`` (JSON that does not
    parse, an empty body included: 400 "Cannot parse JSON body")."""
    async with api.session.post(
        api.base + "/config", data=body, headers=headers, skip_auto_headers=["Content-Type"]
    ) as resp:
        assert resp.status == status, await resp.text()
        if status == 400:
            assert await resp.json() == {"message": "Cannot parse JSON body"}


async def test_a_failed_load_keeps_the_previous_config(api: Api, dbless: KongSim) -> None:
    """kong/api/routes/config.lua: after parse_table succeeded, load_into_cache_with_events can
    still fail (busy → 429 + Retry-After, timeout 504, exiting 503, map full 413, else 500);
    kong/db/declarative/import.lua ``load_into_cache`` commits its one transaction only at the
    end, so the node keeps its previous configuration and hash."""
    first = configtext.dump_json(upstreams_config())
    assert (await api("POST", "/config", json={"config": first}))[0] == 201
    before = (await api("GET", "/config"))[1]["config"]
    other = configtext.dump_json({"_format_version": "3.0", "upstreams": [{"name": "new.svc"}]})
    for kind, status in (("map full", 413), ("busy", 429), ("error", 500), ("timeout", 504)):
        dbless.faults.fail_config_load(kind)
        got, body, headers = await api("POST", "/config", json={"config": other})
        assert got == status, body
        if status == 429:
            assert body == {"message": "Currently loading previous configuration"}
            assert headers["Retry-After"]
        assert (await api("GET", "/config"))[1]["config"] == before
        assert (await api("GET", "/status"))[1]["configuration_hash"] == dialect.md5(first)
    assert (await api("POST", "/config", json={"config": other}))[0] == 201
    assert [u["name"] for u in dbless.upstreams()] == ["new.svc"]


async def test_created_body_lists_only_the_types_loaded(api: Api) -> None:
    """POST's 201 body is ``entities`` after ``sanitize_output``: one table per type that has
    entities, none for the others (workspaces removed)."""
    status, body, _ = await api("POST", "/config", json={"_format_version": "3.0"})
    assert (status, body) == (201, {})
    status, body, _ = await api(
        "POST", "/config", json={"_format_version": "3.0", "upstreams": [{"name": "u.svc"}]}
    )
    assert status == 201 and set(body) == {"upstreams"}
    (up,) = body["upstreams"].values()
    # an id Kong would generate: declarative_config.lua generate_uuid("upstreams", name)
    assert up["id"] == kong_config.kong_uuid("upstreams", "u.svc")


# ---------------------------------------------------------------------------------------------
# GET /status: kong/api/routes/health.lua, kong/tools/string.lua bytes_to_str,
# kong/pdk/node.lua get_memory_stats


@pytest.mark.parametrize(
    ("query", "status", "expect"),
    [
        pytest.param("", 200, "42.00 MiB", id="default-m-2"),
        pytest.param("?unit=k&scale=1", 200, "43008.0 KiB", id="k-1"),
        pytest.param("?unit=G&scale=4", 200, "0.0410 GiB", id="G-4"),
        pytest.param("?unit=b", 200, 44040192, id="b-number"),
        pytest.param("?unit=B&scale=-3", 200, 44040192, id="b-ignores-scale"),
        pytest.param("?scale=1.9", 200, "42.0 MiB", id="scale-truncated"),
        pytest.param("?scale=0x2", 200, "42.00 MiB", id="scale-hex-tonumber"),
        pytest.param(
            "?unit=x", 400, "invalid unit 'x' (expected 'k/K', 'm/M', or 'g/G')", id="bad-unit"
        ),
        pytest.param(
            "?scale=-1", 400, "scale must be equal or greater than 0", id="negative-scale"
        ),
        pytest.param("?scale=nan", 400, "invalid option '%.-' to 'format'", id="nan-scale"),
        pytest.param("?scale=100", 400, "invalid option '%.100' to 'format'", id="huge-scale"),
    ],
)
async def test_status_units(
    dbless: KongSim, api: Api, query: str, status: int, expect: Any
) -> None:
    got, body, _ = await api("GET", "/status" + query)
    assert got == status
    if status == 400:
        assert body == {"message": expect}
    else:
        assert body["memory"]["workers_lua_vms"][0]["http_allocated_gc"] == expect
        assert body["configuration_hash"] == "0" * 32 and "database" not in body


ODD_SHAPES: list[Any] = [
    {"upstreams": "x"},
    {"upstreams": {"a": 1}},
    {"upstreams": [1, "x", [], None, {}]},
    {"upstreams": [{"name": "a.svc", "targets": "x"}]},
    {"upstreams": [{"name": "a.svc", "targets": [1, [], {"target": None}]}]},
    {"upstreams": [{"name": "a.svc", "tags": {"k": "v"}, "healthchecks": [1]}]},
    {"upstreams": [{"name": "a.svc"}, {"name": "a.svc"}], "targets": [{"target": 1}]},
    {"upstreams": [{"name": "a.svc", "id": "not-a-uuid"}], "targets": [{"upstream": 5}]},
    {
        "upstreams": [{"name": "a.svc"}],
        "targets": [
            {"target": "10.0.0.1:80", "upstream": "a.svc"},
            {"target": "10.0.0.1:80", "upstream": "a.svc"},
            {"target": "10.0.0.2:80", "upstream": "nope.svc"},
            {"target": "10.0.0.3:80", "upstream": {"id": "6f1f3f5e-0000-4000-8000-00000000000f"}},
        ],
    },
    {"upstreams": [{"name": "a.svc", "targets": [{"target": "10.0.0.1", "upstream": "a.svc"}]}]},
    {"consumers": [{"username": "u", "plugins": [{"name": "p", "consumer": "u"}]}]},
    {"services": [{"routes": "x", "plugins": [1]}], "routes": [{"service": 1.5}]},
    {"_transform": "yes", "_comment": 1, "_ignore": "x", "workspaces": [{"name": 1}]},
    {"certificates": [{"snis": [{"name": 1}, "n"]}], "consumer_groups": [{"anything": 1}]},
]


@pytest.mark.parametrize("shape", ODD_SHAPES)
@pytest.mark.parametrize("flatten", ["0", "1"])
async def test_odd_shapes_are_400_or_201_never_500(
    dbless: KongSim, api: Api, shape: dict[str, Any], flatten: str
) -> None:
    """Whatever the document, the answer is Kong's 400 (or 201), never the simulator's 500,
    and a refused document changes nothing."""
    before = dbless.config_hash()
    config = {"_format_version": "3.0", **shape}
    for body in ({"config": configtext.dump_json(config)}, config):
        status, err, _ = await api("POST", f"/config?flatten_errors={flatten}", json=body)
        assert status in (201, 400), err
        if status == 400:
            assert err["code"] == 14 and err["message"].startswith("declarative config is")
            assert dbless.config_hash() == before
