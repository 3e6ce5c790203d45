"""Conformance of the Kong Admin API simulator with Kong 3.9's documented behaviour.

Every case cites the Kong source file it checks (docs/kong.md names them; github.com/Kong/kong
at tag 3.9.3). All traffic goes over real sockets with an aiohttp ClientSession.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from kongsplit.kong import configtext
from kongsplit.sim import KongSim
from kongsplit.sim.kongsim.schema import ALGORITHMS, format_target

UP = "demo.default.80.svc"
STABLE = "10.0.0.1:80"
CANARY = "10.0.0.2:80"


class FakeClock:
    """Monotonic time the test moves by hand, so propagation is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Api:
    """A thin client for one simulator node: returns (status, parsed body, headers)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def __call__(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kw: Any
    ) -> tuple[int, Any, Any]:
        async with self.session.request(method, self.base + path, headers=headers, **kw) as resp:
            text = await resp.text()
            body = json.loads(text) if text else None
            return resp.status, body, resp.headers


SimFactory = Callable[..., Awaitable[KongSim]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


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
async def sim(make_sim: SimFactory) -> KongSim:
    """DB mode, seeded: upstream UP with STABLE (100) and CANARY (0)."""
    s = await make_sim()
    s.add_upstream(UP)
    s.add_target(UP, STABLE, 100)
    s.add_target(UP, CANARY, 0)
    return s


@pytest.fixture
def api(sim: KongSim, session: aiohttp.ClientSession) -> Api:
    return Api(session, sim.url)


# ---------------------------------------------------------------------------------------------
# kong/api/routes/upstreams.lua route table: every route, its success code and its notable errors

ROUTES = [
    pytest.param("GET", "/upstreams", None, 200, None, id="list-upstreams"),
    pytest.param("POST", "/upstreams", {"name": "new.svc"}, 201, None, id="create-upstream-201"),
    pytest.param("POST", "/upstreams", {"name": UP}, 409, {"code": 5}, id="dup-upstream-409"),
    pytest.param("GET", f"/upstreams/{UP}", None, 200, {"name": UP}, id="get-upstream"),
    pytest.param(
        "GET", "/upstreams/nope.svc", None, 404, {"message": "Not found"}, id="get-missing-upstream"
    ),
    pytest.param("PUT", "/upstreams/new.svc", {}, 200, {"name": "new.svc"}, id="put-creates-200"),
    pytest.param("PUT", f"/upstreams/{UP}", {"slots": 100}, 200, {"slots": 100}, id="put-replaces"),
    pytest.param(
        "PATCH", f"/upstreams/{UP}", {"slots": 20}, 200, {"slots": 20}, id="patch-upstream"
    ),
    pytest.param(
        "PATCH",
        "/upstreams/nope.svc",
        {"slots": 20},
        404,
        {"code": 6, "name": "not found"},
        id="patch-missing-upstream-dao-404",
    ),
    pytest.param("DELETE", f"/upstreams/{UP}", None, 204, None, id="delete-upstream"),
    pytest.param(
        "DELETE", "/upstreams/nope.svc", None, 204, None, id="delete-missing-upstream-204"
    ),
    pytest.param("GET", f"/upstreams/{UP}/targets", None, 200, None, id="list-targets"),
    pytest.param(
        "GET",
        "/upstreams/nope.svc/targets",
        None,
        404,
        {"message": "Not found"},
        id="list-targets-missing-upstream",
    ),
    pytest.param(
        "POST",
        f"/upstreams/{UP}/targets",
        {"target": "10.0.0.3:80"},
        201,
        {"weight": 100},
        id="create-target-201",
    ),
    pytest.param(
        "POST",
        f"/upstreams/{UP}/targets",
        {"target": STABLE},
        409,
        {"code": 5, "name": "unique constraint violation"},
        id="dup-target-409",
    ),
    pytest.param(
        "POST",
        "/upstreams/nope.svc/targets",
        {"target": "10.0.0.3:80"},
        404,
        {"message": "Not found"},
        id="create-target-missing-upstream",
    ),
    pytest.param("GET", f"/upstreams/{UP}/targets/all", None, 200, None, id="targets-all"),
    pytest.param(
        "GET", f"/upstreams/{UP}/targets/{STABLE}", None, 200, {"target": STABLE}, id="get-target"
    ),
    pytest.param(
        "GET",
        f"/upstreams/{UP}/targets/{CANARY}",
        None,
        200,
        {"weight": 0},
        id="get-weight-0-target",
    ),
    pytest.param(
        "GET",
        f"/upstreams/{UP}/targets/10.9.9.9:80",
        None,
        404,
        {"message": "Not found"},
        id="get-missing-target",
    ),
    pytest.param(
        "PUT",
        f"/upstreams/{UP}/targets/{STABLE}",
        {"weight": 5},
        200,
        {"weight": 5},
        id="put-target-updates",
    ),
    pytest.param(
        "PUT",
        f"/upstreams/{UP}/targets/10.9.9.9:80",
        {"weight": 5},
        404,
        {"message": "Not found"},
        id="put-target-not-upsert-404",
    ),
    pytest.param(
        "PATCH",
        f"/upstreams/{UP}/targets/{STABLE}",
        {"weight": 7},
        200,
        {"weight": 7},
        id="patch-target",
    ),
    pytest.param(
        "PATCH",
        f"/upstreams/{UP}/targets/10.9.9.9:80",
        {"weight": 7},
        404,
        {"message": "Not found"},
        id="patch-missing-target-404",
    ),
    pytest.param(
        "DELETE", f"/upstreams/{UP}/targets/{STABLE}", None, 204, None, id="delete-target"
    ),
    pytest.param(
        "DELETE",
        f"/upstreams/{UP}/targets/10.9.9.9:80",
        None,
        404,
        {"message": "Not found"},
        id="delete-missing-target-404",
    ),
    pytest.param("GET", f"/upstreams/{UP}/health", None, 200, None, id="health"),
    pytest.param("GET", "/upstreams/nope.svc/health", None, 404, None, id="health-missing"),
    pytest.param(
        "PUT", f"/upstreams/{UP}/targets/{STABLE}/unhealthy", None, 204, None, id="mark-unhealthy"
    ),
    pytest.param(
        "PUT", f"/upstreams/{UP}/targets/{STABLE}/healthy", None, 204, None, id="mark-healthy"
    ),
    pytest.param(
        "PUT",
        f"/upstreams/{UP}/targets/{STABLE}/10.0.0.1:80/unhealthy",
        None,
        204,
        None,
        id="mark-address-unhealthy",
    ),
    pytest.param(
        "PUT",
        f"/upstreams/{UP}/targets/10.9.9.9:80/healthy",
        None,
        404,
        None,
        id="mark-missing-target",
    ),
    pytest.param(
        "POST",
        f"/upstreams/{UP}/targets/{STABLE}/healthy",
        None,
        405,
        None,
        id="health-verb-is-put-in-3x",
    ),
    pytest.param("GET", "/targets", None, 404, {"message": "Not found"}, id="top-targets-404"),
    pytest.param(
        "GET", "/targets/10.0.0.1:80", None, 404, {"message": "Not found"}, id="top-target-404"
    ),
    pytest.param(
        "GET",
        "/targets/x/upstream",
        None,
        404,
        {"message": "Not found"},
        id="top-target-upstream-404",
    ),
    pytest.param("POST", "/targets", {"target": "a:1"}, 404, None, id="top-targets-post-404"),
    pytest.param("GET", "/upstreams/", None, 200, None, id="trailing-slash-collection"),
    pytest.param("GET", f"/upstreams/{UP}/", None, 200, None, id="trailing-slash-entity"),
    pytest.param("GET", f"/upstreams/{UP}/targets/", None, 200, None, id="trailing-slash-nested"),
    pytest.param(
        "DELETE", "/upstreams", None, 405, {"message": "Method not allowed"}, id="405-collection"
    ),
    pytest.param(
        "POST", f"/upstreams/{UP}", {}, 405, {"message": "Method not allowed"}, id="405-entity"
    ),
    pytest.param(
        "PATCH",
        f"/upstreams/{UP}/targets",
        {},
        405,
        {"message": "Method not allowed"},
        id="405-nested",
    ),
    pytest.param(
        "DELETE", "/status", None, 405, {"message": "Method not allowed"}, id="405-status"
    ),
    pytest.param("GET", "/nothing-here", None, 404, {"message": "Not found"}, id="unknown-path"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "subset"), ROUTES)
async def test_route_table(
    api: Api, method: str, path: str, body: Any, status: int, subset: dict[str, Any] | None
) -> None:
    got, payload, _ = await api(method, path, json=body)
    assert got == status, payload
    if subset is not None:
        assert {k: payload[k] for k in subset} == subset
    if status == 204:
        assert payload is None


async def test_duplicate_target_body_is_code_5(api: Api, sim: KongSim) -> None:
    """kong/db/dao/targets.lua (unique cache_key): 409 with the cache-key message and fields."""
    up_id = sim.upstreams()[0]["id"]
    status, body, _ = await api("POST", f"/upstreams/{UP}/targets", json={"target": "10.0.0.1:80"})
    assert status == 409
    assert body == {
        "code": 5,
        "name": "unique constraint violation",
        "message": (
            f'UNIQUE violation detected on \'{{target="10.0.0.1:80",upstream={{id="{up_id}"}}}}\''
        ),
        "fields": {"target": "10.0.0.1:80", "upstream": {"id": up_id}},
    }


async def test_put_target_keeps_unsent_fields(api: Api) -> None:
    """kong/api/routes/upstreams.lua: PUT on a target is the update path, so fields not sent are
    kept."""
    await api("PATCH", f"/upstreams/{UP}/targets/{STABLE}", json={"tags": ["keep"]})
    status, body, _ = await api("PUT", f"/upstreams/{UP}/targets/{STABLE}", json={"weight": 3})
    assert status == 200
    assert body["tags"] == ["keep"]
    assert body["weight"] == 3


async def test_delete_upstream_cascades_targets(api: Api, sim: KongSim) -> None:
    """kong/db/schema/entities/upstreams.lua, targets.lua: targets are cascade-deleted with their
    upstream."""
    await api("DELETE", f"/upstreams/{UP}")
    assert sim.upstreams() == []
    await api("POST", "/upstreams", json={"name": UP})
    status, body, _ = await api("GET", f"/upstreams/{UP}/targets")
    assert (status, body) == (200, {"data": [], "next": None})


async def test_nested_post_path_upstream_wins(api: Api, sim: KongSim) -> None:
    """kong/db/schema/entities/upstreams.lua, targets.lua: the path's upstream overrides any
    ``upstream`` in the body."""
    other = sim.add_upstream("other.svc")
    status, body, _ = await api(
        "POST",
        f"/upstreams/{UP}/targets",
        json={"target": "10.0.0.5:80", "upstream": {"id": other["id"]}},
    )
    assert status == 201
    assert body["upstream"]["id"] != other["id"]
    assert sim.targets("other.svc") == []


# ---------------------------------------------------------------------------------------------
# kong/db/dao/targets.lua format_target, kong/tools/ip.lua: target normalisation on write, exact
# match on lookup


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        pytest.param("konghq.test", "konghq.test:8000", id="default-port"),
        pytest.param("10.20.30.40", "10.20.30.40:8000", id="ipv4-default-port"),
        pytest.param("010.001.2.3:80", "10.1.2.3:80", id="ipv4-leading-zeros"),
        pytest.param(
            "[::1]:80", "[0000:0000:0000:0000:0000:0000:0000:0001]:80", id="ipv6-bracketed"
        ),
        pytest.param("::1", "[0000:0000:0000:0000:0000:0000:0000:0001]:8000", id="ipv6-bare"),
        pytest.param(
            "[FE80::AB:1]:443", "[fe80:0000:0000:0000:0000:0000:00ab:0001]:443", id="ipv6-lower"
        ),
        pytest.param("My-Host.Example:81", "My-Host.Example:81", id="hostname-case-kept"),
        pytest.param("svc_x.ns.svc:65535", "svc_x.ns.svc:65535", id="underscore-max-port"),
    ],
)
async def test_target_normalisation(api: Api, given: str, stored: str) -> None:
    status, body, _ = await api("POST", f"/upstreams/{UP}/targets", json={"target": given})
    assert status == 201, body
    assert body["target"] == stored
    assert format_target(given) == stored
    status, _, _ = await api("GET", f"/upstreams/{UP}/targets/{stored}")
    assert status == 200


@pytest.mark.parametrize(
    "given",
    [
        pytest.param("10.0.0.1:70000", id="port-too-big"),
        pytest.param("300.1.1.1:80", id="bad-octet"),
        pytest.param("bad host:80", id="space"),
        pytest.param("host-.example:80", id="label-ends-dash"),
        pytest.param("::1:80:zz", id="bad-ipv6"),
        pytest.param("[::1]:", id="empty-port"),
        pytest.param("host:port", id="non-numeric-port"),
    ],
)
async def test_invalid_target_rejected(api: Api, given: str) -> None:
    status, body, _ = await api("POST", f"/upstreams/{UP}/targets", json={"target": given})
    assert status == 400
    assert body["fields"] == {"target": "Invalid target; not a valid hostname or ip address"}
    assert body["message"] == (
        "schema violation (target: Invalid target; not a valid hostname or ip address)"
    )


async def test_invalid_target_on_patch_names_the_value(api: Api) -> None:
    status, body, _ = await api(
        "PATCH", f"/upstreams/{UP}/targets/{STABLE}", json={"target": "bad host"}
    )
    assert status == 400
    assert body["fields"]["target"] == (
        "Invalid target ('bad host'); not a valid hostname or ip address"
    )


@pytest.mark.parametrize(
    "path_key",
    [
        pytest.param("10.0.0.1", id="missing-port"),
        pytest.param("10.0.0.01:80", id="unnormalised-ipv4"),
        pytest.param("[::1]:80", id="short-ipv6"),
    ],
)
async def test_lookup_is_exact_string_match(api: Api, path_key: str) -> None:
    await api("POST", f"/upstreams/{UP}/targets", json={"target": "[::1]:80"})
    status, _, _ = await api("GET", f"/upstreams/{UP}/targets/{path_key}")
    assert status == 404


async def test_lookup_by_uuid_checks_upstream(api: Api, sim: KongSim) -> None:
    sim.add_upstream("other.svc")
    foreign = sim.add_target("other.svc", "10.1.1.1:80")
    mine = sim.targets(UP)[0]
    assert (await api("GET", f"/upstreams/{UP}/targets/{mine['id']}"))[0] == 200
    for method in ("GET", "PATCH", "DELETE"):
        status, body, _ = await api(
            method, f"/upstreams/{UP}/targets/{foreign['id']}", json={"weight": 1}
        )
        assert (status, body) == (404, {"message": "Not found"}), method


async def test_upstream_addressable_by_id(api: Api, sim: KongSim) -> None:
    up_id = sim.upstreams()[0]["id"]
    status, body, _ = await api("GET", f"/upstreams/{up_id}/targets")
    assert status == 200 and len(body["data"]) == 2


# ---------------------------------------------------------------------------------------------
# kong/api/endpoints.lua, kong/db/dao/targets.lua page_for_upstream: listings


async def test_empty_collection_exact(make_sim: SimFactory, session: aiohttp.ClientSession) -> None:
    sim = await make_sim()
    async with session.get(sim.url + "/upstreams") as resp:
        assert await resp.text() == '{"data":[],"next":null}'
    sim.add_upstream(UP)
    async with session.get(sim.url + f"/upstreams/{UP}/targets") as resp:
        assert await resp.text() == '{"data":[],"next":null}'


async def test_nested_listing_newest_first_with_weight_0(api: Api, sim: KongSim) -> None:
    status, body, _ = await api("GET", f"/upstreams/{UP}/targets")
    assert status == 200
    assert [t["target"] for t in body["data"]] == [
        t["target"]
        for t in sorted(sim.targets(UP), key=lambda t: (t["created_at"], t["id"]), reverse=True)
    ]
    assert {t["weight"] for t in body["data"]} == {0, 100}
    assert "offset" not in body and body["next"] is None


async def test_nested_listing_paging(api: Api, sim: KongSim) -> None:
    for i in range(3, 8):
        sim.add_target(UP, f"10.0.0.{i}:80")
    expected = [t["id"] for t in sim.targets(UP)]  # 7 targets, newest first
    status, body, _ = await api("GET", f"/upstreams/{UP}/targets?size=3&tags=ignored")
    assert status == 200
    assert body["offset"] == "3"
    assert body["next"] == f"/upstreams/{UP}/targets?offset=3"  # no size carried over
    seen = [t["id"] for t in body["data"]]
    status, body, _ = await api("GET", f"/upstreams/{UP}/targets?size=3&offset=3")
    seen += [t["id"] for t in body["data"]]
    status, body, _ = await api("GET", f"/upstreams/{UP}/targets?size=3&offset=6")
    seen += [t["id"] for t in body["data"]]
    assert body["next"] is None and "offset" not in body
    assert seen == expected


async def test_nested_listing_size_clamped(api: Api) -> None:
    status, body, _ = await api("GET", f"/upstreams/{UP}/targets?size=5000")
    assert status == 200 and len(body["data"]) == 2


async def test_nested_listing_ignores_tags(api: Api, sim: KongSim) -> None:
    sim.add_target(UP, "10.0.0.9:80", tags=["x"])
    status, body, _ = await api("GET", f"/upstreams/{UP}/targets?tags=x")
    assert status == 200 and len(body["data"]) == 3


async def test_upstream_paging_opaque_offsets(api: Api, sim: KongSim) -> None:
    for i in range(4):
        sim.add_upstream(f"u{i}.svc")
    names: list[str] = []
    path = "/upstreams?size=2"
    pages = 0
    while path:
        status, body, _ = await api("GET", path)
        assert status == 200
        names += [u["name"] for u in body["data"]]
        pages += 1
        if body["next"] is not None:
            assert isinstance(body["offset"], str)
            assert "size=2" in body["next"]
        path = body["next"]
    assert pages == 3
    assert sorted(names) == sorted([UP, *(f"u{i}.svc" for i in range(4))])


@pytest.mark.parametrize(
    ("query", "body"),
    [
        pytest.param(
            "size=abc",
            {"code": 9, "name": "invalid size", "message": "size must be a number"},
            id="size-nan",
        ),
        pytest.param(
            "size=0",
            {
                "code": 9,
                "name": "invalid size",
                "message": "size must be an integer between 1 and 1000",
            },
            id="size-0",
        ),
        pytest.param(
            "size=1001",
            {
                "code": 9,
                "name": "invalid size",
                "message": "size must be an integer between 1 and 1000",
            },
            id="size-1001",
        ),
        pytest.param(
            "offset=x",
            {
                "code": 7,
                "name": "invalid offset",
                "message": "'x' is not a valid offset: bad base64 encoding",
            },
            id="bad-offset",
        ),
        pytest.param(
            "tags=a,b/c",
            {
                "code": 11,
                "name": "invalid options",
                "message": "invalid option (tags: invalid filter syntax)",
                "options": {"tags": "invalid filter syntax"},
            },
            id="tags-mixed",
        ),
        pytest.param(
            "tags=",
            {
                "code": 11,
                "name": "invalid options",
                "message": "invalid option (tags: cannot be null)",
                "options": {"tags": "cannot be null"},
            },
            id="tags-empty",
        ),
    ],
)
async def test_upstream_listing_errors(api: Api, query: str, body: dict[str, Any]) -> None:
    status, got, _ = await api("GET", f"/upstreams?{query}")
    assert (status, got) == (400, body)


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        pytest.param("a", {"ab.svc", "a.svc"}, id="single"),
        pytest.param("a,b", {"ab.svc"}, id="and"),
        pytest.param("a/b", {"ab.svc", "a.svc", "b.svc"}, id="or"),
        pytest.param("zzz", set(), id="none"),
    ],
)
async def test_upstream_tag_filter(api: Api, sim: KongSim, tags: str, expected: set[str]) -> None:
    sim.add_upstream("ab.svc", tags=["a", "b"])
    sim.add_upstream("a.svc", tags=["a"])
    sim.add_upstream("b.svc", tags=["b"])
    status, body, _ = await api("GET", f"/upstreams?tags={tags}")
    assert status == 200
    assert {u["name"] for u in body["data"]} == expected


async def test_upstream_tag_filter_next_carries_tags(api: Api, sim: KongSim) -> None:
    sim.add_upstream("t1.svc", tags=["t"])
    sim.add_upstream("t2.svc", tags=["t"])
    status, body, _ = await api("GET", "/upstreams?tags=t&size=1")
    assert status == 200 and "&tags=t" in body["next"]


# ---------------------------------------------------------------------------------------------
# kong/db/errors.lua, kong/api/endpoints.lua: error objects and schema messages

SCHEMA_ERRORS = [
    pytest.param(
        "POST",
        f"/upstreams/{UP}/targets",
        {"target": "10.0.0.9:80", "weight": 65536},
        {"weight": "value should be between 0 and 65535"},
        id="weight-too-big",
    ),
    pytest.param(
        "POST",
        f"/upstreams/{UP}/targets",
        {"target": "10.0.0.9:80", "weight": -1},
        {"weight": "value should be between 0 and 65535"},
        id="weight-negative",
    ),
    pytest.param(
        "POST",
        f"/upstreams/{UP}/targets",
        {"weight": 1},
        {"target": "required field missing"},
        id="target-missing",
    ),
    pytest.param(
        "POST",
        f"/upstreams/{UP}/targets",
        {"target": "10.0.0.9:80", "failover": True},
        {"failover": "unknown field"},
        id="enterprise-field-unknown",
    ),
    pytest.param(
        "POST",
        f"/upstreams/{UP}/targets",
        {"target": "10.0.0.9:80", "weight": "10"},
        {"weight": "expected an integer"},
        id="weight-string-in-json",
    ),
    pytest.param(
        "POST",
        "/upstreams",
        {"name": "10.1.2.3"},
        {"name": "Invalid name ('10.1.2.3'); no ip addresses allowed"},
        id="name-ip",
    ),
    pytest.param(
        "POST",
        "/upstreams",
        {"name": "host.svc:80"},
        {"name": "Invalid name ('host.svc:80'); no port allowed"},
        id="name-port",
    ),
    pytest.param(
        "POST",
        "/upstreams",
        {"name": "bad name"},
        {"name": "Invalid name ('bad name'); must be a valid hostname"},
        id="name-invalid",
    ),
    # check_hostname (kong/tools/ip.lua): an empty label is refused unless it is the last one,
    # and Lua's "$" is the very end of the string (no trailing newline slips through).
    pytest.param(
        "POST",
        "/upstreams",
        {"name": "a..b"},
        {"name": "Invalid name ('a..b'); must be a valid hostname"},
        id="name-empty-label",
    ),
    pytest.param(
        "POST",
        "/upstreams",
        {"name": "host.svc\n"},
        {"name": "Invalid name ('host.svc\n'); must be a valid hostname"},
        id="name-trailing-newline",
    ),
    pytest.param("POST", "/upstreams", {}, {"name": "required field missing"}, id="name-missing"),
    pytest.param(
        "POST",
        "/upstreams",
        {"name": "x.svc", "algorithm": "random"},
        {"algorithm": "expected one of: " + ", ".join(ALGORITHMS)},
        id="algorithm-enum",
    ),
    pytest.param(
        "POST",
        "/upstreams",
        {"name": "x.svc", "slots": 5},
        {"slots": "value should be between 10 and 65536"},
        id="slots-range",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "fields"), SCHEMA_ERRORS)
async def test_schema_violations(
    api: Api, method: str, path: str, body: dict[str, Any], fields: dict[str, Any]
) -> None:
    status, got, _ = await api(method, path, json=body)
    assert status == 400
    assert got["code"] == 2 and got["name"] == "schema violation"
    assert got["fields"] == fields
    ((key, msg),) = fields.items()
    assert got["message"] == f"schema violation ({key}: {msg})"


async def test_multiple_schema_violations_message(api: Api) -> None:
    status, got, _ = await api("POST", f"/upstreams/{UP}/targets", json={"weight": 70000, "foo": 1})
    assert status == 400
    assert got["message"] == (
        "3 schema violations (foo: unknown field; target: required field missing; "
        "weight: value should be between 0 and 65535)"
    )


async def test_upstream_defaults_and_nulls(api: Api) -> None:
    """kong/db/schema/entities/upstreams.lua, targets.lua: every field present, unset optionals
    null, Kong's defaults."""
    status, body, _ = await api("POST", "/upstreams", json={"name": "d.svc"})
    assert status == 201
    assert body["algorithm"] == "round-robin"
    assert body["hash_on"] == body["hash_fallback"] == "none"
    assert body["hash_on_cookie_path"] == "/"
    assert body["slots"] == 10000
    assert body["use_srv_name"] is False
    for key in ("tags", "hash_on_header", "host_header", "client_certificate"):
        assert key in body and body[key] is None
    hc = body["healthchecks"]
    assert hc["threshold"] == 0
    assert hc["active"]["healthy"]["http_statuses"] == [200, 302]
    assert hc["passive"]["unhealthy"]["http_statuses"] == [429, 500, 503]


async def test_upstream_shorthands(api: Api) -> None:
    status, body, _ = await api("POST", "/upstreams", json={"name": "h.svc", "hash_on": "ip"})
    assert status == 201 and body["algorithm"] == "consistent-hashing"


async def test_patch_upstream_rename_conflict(api: Api, sim: KongSim) -> None:
    sim.add_upstream("taken.svc")
    status, body, _ = await api("PATCH", f"/upstreams/{UP}", json={"name": "taken.svc"})
    assert status == 409 and body["code"] == 5


async def test_patch_target_to_existing_target_conflicts(api: Api) -> None:
    status, body, _ = await api(
        "PATCH", f"/upstreams/{UP}/targets/{STABLE}", json={"target": CANARY}
    )
    assert status == 409 and body["code"] == 5


# ---------------------------------------------------------------------------------------------
# kong/api/api_helpers.lua: content types


async def test_form_urlencoded_body(api: Api) -> None:
    status, body, _ = await api(
        "POST", f"/upstreams/{UP}/targets", data={"target": "10.0.0.7:80", "weight": "42"}
    )
    assert status == 201 and body["weight"] == 42


async def test_form_nested_and_arrays(api: Api) -> None:
    status, body, _ = await api(
        "POST",
        "/upstreams",
        data=[
            ("name", "f.svc"),
            ("tags[]", "a"),
            ("tags[]", "b"),
            ("healthchecks.active.healthy.interval", "5"),
        ],
    )
    assert status == 201, body
    assert body["tags"] == ["a", "b"]
    assert body["healthchecks"]["active"]["healthy"]["interval"] == 5


async def test_multipart_body(api: Api) -> None:
    form = aiohttp.FormData()
    form.add_field("target", "10.0.0.8:80")
    form.add_field("weight", "9")
    form.add_field("dummy", b"x", filename="x.bin")  # forces multipart/form-data
    status, body, _ = await api("POST", f"/upstreams/{UP}/targets", data=form)
    assert status == 400 and body["fields"] == {"dummy": "unknown field"}
    form = aiohttp.FormData()
    form.add_field("target", "10.0.0.8:80")
    form.add_field("weight", "9", content_type="text/plain")
    status, body, _ = await api("POST", f"/upstreams/{UP}/targets", data=form)
    assert status == 201, body
    assert body["weight"] == 9


@pytest.mark.parametrize(
    ("ctype", "raw", "status", "body"),
    [
        pytest.param("text/plain", b"weight=1", 415, None, id="415-text"),
        pytest.param("application/xml", b"<x/>", 415, None, id="415-xml"),
        pytest.param(
            "application/json",
            b"{nope",
            400,
            {"message": "Cannot parse JSON body"},
            id="bad-json",
        ),
        pytest.param(
            "application/json; charset=utf-8", b'{"weight": 3}', 200, None, id="json-charset"
        ),
    ],
)
async def test_content_types(
    api: Api, ctype: str, raw: bytes, status: int, body: dict[str, Any] | None
) -> None:
    got, payload, _ = await api(
        "PATCH", f"/upstreams/{UP}/targets/{STABLE}", data=raw, headers={"Content-Type": ctype}
    )
    assert got == status
    if body is not None:
        assert payload == body


# ---------------------------------------------------------------------------------------------
# kong/db/schema/typedefs.lua auto_timestamp: timestamps per version


async def test_timestamps_3_9(api: Api) -> None:
    _, up, _ = await api("GET", f"/upstreams/{UP}")
    assert isinstance(up["created_at"], int) and isinstance(up["updated_at"], int)
    _, tgt, _ = await api("GET", f"/upstreams/{UP}/targets/{STABLE}")
    assert isinstance(tgt["created_at"], float) and isinstance(tgt["updated_at"], float)
    assert round(tgt["created_at"], 3) == tgt["created_at"]
    assert list(tgt) == ["id", "created_at", "updated_at", "upstream", "target", "weight", "tags"]


async def test_no_updated_at_before_3_3(
    make_sim: SimFactory, session: aiohttp.ClientSession
) -> None:
    sim = await make_sim(version="3.2.2")
    api = Api(session, sim.url)
    _, up, _ = await api("POST", "/upstreams", json={"name": UP})
    _, tgt, _ = await api("POST", f"/upstreams/{UP}/targets", json={"target": STABLE})
    assert "updated_at" not in up and "updated_at" not in tgt


async def test_kong_2_8_profile(make_sim: SimFactory, session: aiohttp.ClientSession) -> None:
    """kong 2.8 kong/api/routes/upstreams.lua update_existent_target (2.2-2.8): POST of an existing
    host:port updates it, 200 + Deprecation: true;
    health routes use POST."""
    sim = await make_sim(version="2.8.5")
    api = Api(session, sim.url)
    await api("POST", "/upstreams", json={"name": UP})
    assert (await api("POST", f"/upstreams/{UP}/targets", json={"target": STABLE}))[0] == 201
    status, body, headers = await api(
        "POST", f"/upstreams/{UP}/targets", json={"target": STABLE, "weight": 7}
    )
    assert (status, body["weight"], headers.get("Deprecation")) == (200, 7, "true")
    assert (await api("POST", f"/upstreams/{UP}/targets/{STABLE}/unhealthy"))[0] == 204
    assert (await api("PUT", f"/upstreams/{UP}/targets/{STABLE}/unhealthy"))[0] == 405


# ---------------------------------------------------------------------------------------------
# kong/api/routes/kong.lua, health.lua: GET / and /status per mode


@pytest.mark.parametrize(
    ("mode", "database", "role"),
    [
        pytest.param("postgres", "postgres", "traditional", id="postgres"),
        pytest.param("off", "off", "traditional", id="dbless"),
        pytest.param("control_plane", "postgres", "control_plane", id="cp"),
        pytest.param("data_plane", "off", "data_plane", id="dp"),
    ],
)
async def test_node_info_and_status(
    make_sim: SimFactory, session: aiohttp.ClientSession, mode: str, database: str, role: str
) -> None:
    sim = await make_sim(mode=mode, nodes=2)
    infos = []
    for url in sim.urls:
        api = Api(session, url)
        status, info, headers = await api("GET", "/")
        assert status == 200
        assert info["configuration"]["database"] == database
        assert info["configuration"]["role"] == role
        assert info["version"] == "3.9.3" and info["tagline"] == "Welcome to kong"
        assert info["edition"] == "community"
        assert headers["Server"] == "kong/3.9.3"
        infos.append(info)
        status, st, _ = await api("GET", "/status")
        assert status == 200
        if database == "off":
            assert "database" not in st
            assert st["configuration_hash"] == "0" * 32
        else:
            assert st["database"] == {"reachable": True} and "configuration_hash" not in st
        assert set(st["server"]) >= {"total_requests", "connections_active"}
    assert len({i["node_id"] for i in infos}) == 2
    assert len({i["hostname"] for i in infos}) == 2
    assert sim.node_ids == [i["node_id"] for i in infos]


# ---------------------------------------------------------------------------------------------
# kong/api/routes/upstreams.lua /health, kong/cluster_events/init.lua: /health per node with
# propagation delay


async def test_health_shape(api: Api, sim: KongSim) -> None:
    status, body, _ = await api("GET", f"/upstreams/{UP}/health")
    assert status == 200
    assert body["node_id"] == sim.node_ids[0] and body["next"] is None
    by_target = {t["target"]: t for t in body["data"]}
    stable = by_target[STABLE]
    assert stable["health"] == "HEALTHCHECKS_OFF"  # health checks are off by default
    assert stable["data"] == {
        "host": "10.0.0.1",
        "port": 80,
        "dns": "A",
        "nodeWeight": 100,
        "weight": {"total": 100, "available": 100, "unavailable": 0},
        "addresses": [{"ip": "10.0.0.1", "port": 80, "weight": 100, "health": "HEALTHCHECKS_OFF"}],
    }
    assert by_target[CANARY]["data"]["nodeWeight"] == 0
    assert by_target[CANARY]["health"] == "HEALTHCHECKS_OFF"


async def test_health_with_healthchecks_on(api: Api) -> None:
    await api(
        "PATCH",
        f"/upstreams/{UP}",
        json={"healthchecks": {"passive": {"unhealthy": {"http_failures": 3}}}},
    )
    _, body, _ = await api("GET", f"/upstreams/{UP}/health")
    by_target = {t["target"]: t for t in body["data"]}
    assert by_target[STABLE]["health"] == "HEALTHY"
    assert by_target[CANARY]["health"] == "HEALTHCHECKS_OFF"  # weight 0
    assert (await api("PUT", f"/upstreams/{UP}/targets/{STABLE}/unhealthy"))[0] == 204
    _, body, _ = await api("GET", f"/upstreams/{UP}/health")
    stable = {t["target"]: t for t in body["data"]}[STABLE]
    assert stable["health"] == "UNHEALTHY"
    assert stable["data"]["weight"] == {"total": 100, "available": 0, "unavailable": 100}
    _, bal, _ = await api("GET", f"/upstreams/{UP}/health?balancer_health=1")
    assert bal["data"]["balancer_health"] == "UNHEALTHY"
    assert bal["data"]["details"]["healthy"] is False


async def test_weight_0_to_positive_is_healthy_again(api: Api) -> None:
    await api(
        "PATCH",
        f"/upstreams/{UP}",
        json={"healthchecks": {"active": {"healthy": {"interval": 5}}}},
    )
    await api("PATCH", f"/upstreams/{UP}/targets/{CANARY}", json={"weight": 10})
    _, body, _ = await api("GET", f"/upstreams/{UP}/health")
    assert {t["target"]: t["health"] for t in body["data"]}[CANARY] == "HEALTHY"


async def test_propagation_delay_per_node(
    make_sim: SimFactory, session: aiohttp.ClientSession
) -> None:
    clock = FakeClock()
    sim = await make_sim(nodes=3, propagation_delay=5.0, clock=clock)
    n0, n1, n2 = (Api(session, u) for u in sim.urls)
    await n1("POST", "/upstreams", json={"name": UP})
    await n1("POST", f"/upstreams/{UP}/targets", json={"target": STABLE, "weight": 100})
    clock.now += 6

    async def node_weight(api: Api) -> int | None:
        _, body, _ = await api("GET", f"/upstreams/{UP}/health")
        (t,) = body["data"]
        return t.get("data", {}).get("nodeWeight")

    assert [await node_weight(a) for a in (n0, n1, n2)] == [100, 100, 100]
    status, _, _ = await n0("PATCH", f"/upstreams/{UP}/targets/{STABLE}", json={"weight": 30})
    assert status == 200
    # The writing node sees its change at once; the others after the delay.
    assert [await node_weight(a) for a in (n0, n1, n2)] == [30, 100, 100]
    # The entity itself is in the shared database: every node lists weight 30.
    _, listing, _ = await n2("GET", f"/upstreams/{UP}/targets")
    assert listing["data"][0]["weight"] == 30
    clock.now += 4.9
    assert await node_weight(n2) == 100
    clock.now += 0.2
    assert [await node_weight(a) for a in (n0, n1, n2)] == [30, 30, 30]


async def test_new_target_not_yet_in_remote_balancer(
    make_sim: SimFactory, session: aiohttp.ClientSession
) -> None:
    clock = FakeClock()
    sim = await make_sim(nodes=2, propagation_delay=5.0, clock=clock)
    sim.add_upstream(UP)
    clock.now += 10
    n0, n1 = (Api(session, u) for u in sim.urls)
    await n0("POST", f"/upstreams/{UP}/targets", json={"target": STABLE})
    _, body, _ = await n1("GET", f"/upstreams/{UP}/health")
    (t,) = body["data"]
    # The balancer lacks the target: Kong extrapolates DNS_ERROR and shows no data
    # (kong/db/dao/targets.lua page_for_upstream_with_health).
    assert t["health"] == "DNS_ERROR" and "data" not in t
    clock.now += 5
    _, body, _ = await n1("GET", f"/upstreams/{UP}/health")
    assert body["data"][0]["data"]["nodeWeight"] == 100


async def test_hostname_target_health_address(api: Api) -> None:
    await api("POST", f"/upstreams/{UP}/targets", json={"target": "localhost:9000", "weight": 5})
    _, body, _ = await api("GET", f"/upstreams/{UP}/health")
    t = {x["target"]: x for x in body["data"]}["localhost:9000"]
    assert t["data"]["addresses"][0]["ip"] == "127.0.0.1"


# ---------------------------------------------------------------------------------------------
# kong/api/routes/config.lua, kong/db/declarative: DB-less


@pytest.fixture
async def dbless(make_sim: SimFactory) -> KongSim:
    s = await make_sim(mode="off", nodes=2)
    s.external_config_push(
        {
            "_format_version": "3.0",
            "upstreams": [
                {"name": UP, "targets": [{"target": STABLE, "weight": 100}, {"target": CANARY}]}
            ],
        }
    )
    return s


DBLESS_WRITES = [
    pytest.param(
        "POST",
        "/upstreams",
        {"name": "x.svc"},
        405,
        "cannot create 'upstreams' entities when not using a database",
        id="post-upstream",
    ),
    pytest.param(
        "PUT",
        f"/upstreams/{UP}",
        {},
        405,
        "cannot create or update 'upstreams' entities by 'name' when not using a database",
        id="put-upstream",
    ),
    pytest.param(
        "PATCH",
        f"/upstreams/{UP}",
        {"slots": 20},
        405,
        "cannot update 'upstreams' entities by 'name' when not using a database",
        id="patch-upstream",
    ),
    pytest.param("PATCH", "/upstreams/nope.svc", {"slots": 20}, 404, None, id="patch-missing-404"),
    pytest.param(
        "DELETE",
        f"/upstreams/{UP}",
        None,
        405,
        "cannot remove 'upstreams' entities by 'name' when not using a database",
        id="delete-upstream",
    ),
    pytest.param("DELETE", "/upstreams/nope.svc", None, 204, None, id="delete-missing-204"),
    pytest.param(
        "POST",
        f"/upstreams/{UP}/targets",
        {"target": "10.0.0.3:80"},
        405,
        "cannot create 'targets' entities when not using a database",
        id="post-target",
    ),
    pytest.param(
        "PATCH",
        f"/upstreams/{UP}/targets/{STABLE}",
        {"weight": 1},
        405,
        "cannot update 'targets' entities when not using a database",
        id="patch-target",
    ),
    pytest.param(
        "PUT",
        f"/upstreams/{UP}/targets/{STABLE}",
        {"weight": 1},
        405,
        "cannot update 'targets' entities when not using a database",
        id="put-target",
    ),
    pytest.param(
        "DELETE",
        f"/upstreams/{UP}/targets/{STABLE}",
        None,
        405,
        "cannot remove 'targets' entities when not using a database",
        id="delete-target",
    ),
    pytest.param(
        "PATCH",
        f"/upstreams/{UP}/targets/10.9.9.9:80",
        {"weight": 1},
        404,
        None,
        id="patch-missing-target-404",
    ),
    pytest.param(
        "DELETE",
        f"/upstreams/{UP}/targets/10.9.9.9:80",
        None,
        404,
        None,
        id="delete-missing-target-404",
    ),
    pytest.param(
        "PUT",
        f"/upstreams/{UP}/targets/{STABLE}/unhealthy",
        None,
        204,
        None,
        id="health-mark-allowed",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), DBLESS_WRITES)
async def test_dbless_writes(
    dbless: KongSim,
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any,
    status: int,
    message: str | None,
) -> None:
    got, payload, _ = await Api(session, dbless.url)(method, path, json=body)
    assert got == status, payload
    if message is not None:
        assert payload == {"code": 12, "name": "operation unsupported", "message": message}


async def test_dbless_reads_normalised(dbless: KongSim, session: aiohttp.ClientSession) -> None:
    api = Api(session, dbless.url)
    status, body, _ = await api("GET", f"/upstreams/{UP}/targets")
    assert status == 200
    assert {t["target"]: t["weight"] for t in body["data"]} == {STABLE: 100, CANARY: 100}


async def test_get_config_export(dbless: KongSim, session: aiohttp.ClientSession) -> None:
    status, body, _ = await Api(session, dbless.url)("GET", "/config")
    assert status == 200 and set(body) == {"config"}
    config = configtext.load(body["config"])
    assert config["_format_version"] == "3.0" and config["_transform"] is False
    (up,) = config["upstreams"]
    # flat, and every field with its null (kong/db/declarative/export.lua GLOBAL_QUERY_OPTS)
    assert up["name"] == UP and "targets" not in up and up["tags"] is None
    assert {t["upstream"] for t in config["targets"]} == {up["id"]}  # foreign key as id
    assert all("id" in t for t in config["targets"])


async def test_config_only_in_dbless(api: Api) -> None:
    for method in ("GET", "POST"):
        status, body, _ = await api(method, "/config", json={"config": "x"})
        assert (status, body) == (
            400,
            {
                "message": "this endpoint is only available when Kong is configured "
                "to not use a database"
            },
        )


async def test_post_config_string_form_and_check_hash(
    dbless: KongSim, session: aiohttp.ClientSession
) -> None:
    api = Api(session, dbless.url)
    _, body, _ = await api("GET", "/config")
    config = configtext.load(body["config"])
    for t in config["targets"]:
        t["weight"] = 50
    text = configtext.dump_json(config)
    status, loaded, _ = await api("POST", "/config?check_hash=1", json={"config": text})
    assert status == 201
    assert set(loaded) >= {"upstreams", "targets"}
    assert all(t["weight"] == 50 for t in loaded["targets"].values())
    _, st, _ = await api("GET", "/status")
    assert st["configuration_hash"] == hashlib.md5(text.encode()).hexdigest()
    # IDs survive the round trip
    assert {t["id"] for t in config["targets"]} == set(loaded["targets"])
    status, _, _ = await api("POST", "/config?check_hash=1", json={"config": text})
    assert status == 304
    # node 1 was not touched: each DB-less node has its own config
    _, st1, _ = await Api(session, dbless.urls[1])("GET", "/status")
    assert st1["configuration_hash"] != st["configuration_hash"]


async def test_post_config_raw_yaml_and_table_forms(
    dbless: KongSim, session: aiohttp.ClientSession
) -> None:
    api = Api(session, dbless.url)
    text = '_format_version: "3.0"\nupstreams:\n- name: y.svc\n  targets:\n  - target: 10.1.1.1\n'
    status, body, _ = await api(
        "POST", "/config", data=text.encode(), headers={"Content-Type": "text/yaml"}
    )
    assert status == 201
    (t,) = body["targets"].values()
    assert t["target"] == "10.1.1.1:8000"
    # the table form: full replacement, and check_hash never short-cuts it
    table = {"_format_version": "3.0", "upstreams": [{"name": "z.svc"}]}
    for _ in range(2):
        status, body, _ = await api("POST", "/config?check_hash=1", json=table)
        assert status == 201
    assert [u["name"] for u in dbless.upstreams()] == ["z.svc"]


@pytest.mark.parametrize(
    ("payload", "status", "check"),
    [
        pytest.param(
            {},
            400,
            {"code": 14, "fields": {"_format_version": "required field missing"}},
            id="empty-object",  # no config: the raw body "{}" is the config (routes/config.lua)
        ),
        pytest.param(
            {"_format_version": "3.0", "upstreams": [{"name": "10.0.0.1"}]},
            400,
            {"code": 14, "name": "invalid declarative configuration"},
            id="bad-name",
        ),
        pytest.param(
            {"_format_version": "3.0", "bogus": []},
            400,
            {"code": 14, "fields": {"bogus": "unknown field"}},
            id="unknown-key",
        ),
        pytest.param(
            {"upstreams": []},
            400,
            {"code": 14, "fields": {"_format_version": "required field missing"}},
            id="no-format-version-table",
        ),
    ],
)
async def test_post_config_errors(
    dbless: KongSim,
    session: aiohttp.ClientSession,
    payload: dict[str, Any],
    status: int,
    check: dict[str, Any],
) -> None:
    if payload and "_format_version" not in payload:
        payload = {"config": json.dumps(payload)}
    got, body, _ = await Api(session, dbless.url)("POST", "/config", json=payload)
    assert got == status
    assert {k: body[k] for k in check} == check
    if got == 400 and "code" in body:
        assert body["message"].startswith("declarative config is invalid: ")


async def test_post_config_flatten_errors(dbless: KongSim, session: aiohttp.ClientSession) -> None:
    payload = {
        "_format_version": "3.0",
        "upstreams": [{"name": UP, "targets": [{"target": STABLE}, {"target": STABLE}]}],
    }
    status, body, _ = await Api(session, dbless.url)(
        "POST", "/config?flatten_errors=1", json=payload
    )
    assert status == 400 and body["code"] == 14
    (err,) = body["flattened_errors"]
    assert err["entity_type"] == "target"
    assert err["errors"][0]["type"] == "entity"
    assert (
        "uniqueness violation: 'targets' entity with primary key set to"
        in (err["errors"][0]["message"])
    )


async def test_dbless_hash_zeros_after_wipe_and_empty_config(
    dbless: KongSim, session: aiohttp.ClientSession
) -> None:
    api = Api(session, dbless.url)
    assert (await api("GET", "/status"))[1]["configuration_hash"] != "0" * 32
    dbless.wipe()
    assert (await api("GET", "/status"))[1]["configuration_hash"] == "0" * 32
    assert dbless.upstreams() == []
    status, _, _ = await api("POST", "/config", json={"config": '_format_version: "3.0"\n'})
    assert status == 201
    assert (await api("GET", "/status"))[1]["configuration_hash"] == "0" * 32


async def test_dbless_external_push_and_restart(
    dbless: KongSim, session: aiohttp.ClientSession
) -> None:
    before = dbless.config_hash(0)
    dbless.external_config_push(
        {"_format_version": "3.0", "upstreams": [{"name": UP, "targets": [{"target": STABLE}]}]},
        node=0,
    )
    assert dbless.config_hash(0) != before and dbless.config_hash(1) == before
    assert len(dbless.targets(UP, node=0)) == 1 and len(dbless.targets(UP, node=1)) == 2
    dbless.restart_node(1)
    assert dbless.config_hash(1) == "0" * 32


async def test_dbless_health_marks_are_node_local(
    dbless: KongSim, session: aiohttp.ClientSession
) -> None:
    n0, n1 = (Api(session, u) for u in dbless.urls)
    push = {
        "_format_version": "3.0",
        "upstreams": [
            {
                "name": UP,
                "healthchecks": {"passive": {"unhealthy": {"tcp_failures": 2}}},
                "targets": [{"target": STABLE}],
            }
        ],
    }
    dbless.external_config_push(push)
    assert (await n0("PUT", f"/upstreams/{UP}/targets/{STABLE}/unhealthy"))[0] == 204
    assert (await n0("GET", f"/upstreams/{UP}/health"))[1]["data"][0]["health"] == "UNHEALTHY"
    assert (await n1("GET", f"/upstreams/{UP}/health"))[1]["data"][0]["health"] == "HEALTHY"


async def test_control_plane_has_no_health_mark_routes(
    make_sim: SimFactory, session: aiohttp.ClientSession
) -> None:
    sim = await make_sim(mode="control_plane")
    sim.add_upstream(UP)
    sim.add_target(UP, STABLE)
    api = Api(session, sim.url)
    assert (await api("PUT", f"/upstreams/{UP}/targets/{STABLE}/healthy"))[0] == 404
    assert (await api("PATCH", f"/upstreams/{UP}/targets/{STABLE}", json={"weight": 1}))[0] == 200


async def test_data_plane_is_read_only(
    make_sim: SimFactory, session: aiohttp.ClientSession
) -> None:
    sim = await make_sim(mode="data_plane")
    sim.external_config_push(
        {"_format_version": "3.0", "upstreams": [{"name": UP, "targets": [{"target": STABLE}]}]}
    )
    api = Api(session, sim.url)
    status, body, _ = await api("PATCH", f"/upstreams/{UP}/targets/{STABLE}", json={"weight": 1})
    assert status == 405 and body["code"] == 12
    assert (await api("GET", f"/upstreams/{UP}/health"))[0] == 200


# ---------------------------------------------------------------------------------------------
# Enterprise: RBAC, workspaces, TLS


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({}, 401, id="missing"),
        pytest.param({"Kong-Admin-Token": "wrong"}, 401, id="wrong"),
        pytest.param({"Kong-Admin-Token": "s3cret"}, 200, id="right"),
    ],
)
async def test_rbac_token(
    make_sim: SimFactory, session: aiohttp.ClientSession, headers: dict[str, str], status: int
) -> None:
    sim = await make_sim(token="s3cret")
    for path in ("/", "/upstreams", "/status"):
        got, body, _ = await Api(session, sim.url)("GET", path, headers=headers)
        assert got == status
        if status == 401:
            assert body == {"message": "Invalid RBAC credentials"}


async def test_workspaces(make_sim: SimFactory, session: aiohttp.ClientSession) -> None:
    sim = await make_sim(workspaces=("default", "team-a"))
    api = Api(session, sim.url)
    assert (await api("POST", "/team-a/upstreams", json={"name": UP}))[0] == 201
    assert (await api("POST", f"/team-a/upstreams/{UP}/targets", json={"target": STABLE}))[0] == 201
    assert (await api("GET", f"/upstreams/{UP}"))[0] == 404  # default workspace is separate
    assert (await api("GET", f"/default/upstreams/{UP}"))[0] == 404
    assert [t["target"] for t in sim.targets(UP, "team-a")] == [STABLE]
    status, body, _ = await api("GET", "/nope/upstreams")
    assert (status, body) == (404, {"message": "Not found"})
    status, body, _ = await api("GET", "/team-a/kong")
    assert status == 200 and body["edition"] == "enterprise"
    for i in range(3):
        sim.add_target(UP, f"10.0.1.{i}:80", workspace="team-a")
    _, page, _ = await api("GET", f"/team-a/upstreams/{UP}/targets?size=2")
    assert page["next"] == f"/team-a/upstreams/{UP}/targets?offset=2"


async def test_oss_has_no_workspace_prefix(api: Api) -> None:
    assert (await api("GET", "/default/upstreams"))[0] == 404


async def test_tls_and_mtls(make_sim: SimFactory) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED  # mTLS
    sim = await make_sim(ssl_context=server_ctx)
    assert sim.url.startswith("https://127.0.0.1:")

    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientError):
            async with s.get(sim.url + "/status", ssl=client_ctx) as resp:
                await resp.read()
    ca.issue_cert("kongsplit").configure_cert(client_ctx)
    async with aiohttp.ClientSession() as s, s.get(sim.url + "/", ssl=client_ctx) as resp:
        assert resp.status == 200
        body = await resp.json()
        assert body["configuration"]["admin_listen"][0].endswith(" ssl")


# ---------------------------------------------------------------------------------------------
# simulator-only: fault injection, and the test-side hooks


async def test_fail_next_filters(api: Api, sim: KongSim) -> None:
    sim.faults.fail_next(2, 503, method="PATCH", path_prefix="/upstreams/")
    assert (await api("GET", "/status"))[0] == 200
    for _ in range(2):
        status, body, _ = await api(
            "PATCH", f"/upstreams/{UP}/targets/{STABLE}", json={"weight": 1}
        )
        assert (status, body) == (503, {"message": "The upstream server is currently unavailable"})
    assert (await api("PATCH", f"/upstreams/{UP}/targets/{STABLE}", json={"weight": 1}))[0] == 200


@pytest.mark.parametrize(
    ("status", "message"),
    [
        pytest.param(500, "An unexpected error occurred", id="500"),
        pytest.param(502, "An invalid response was received from the upstream server", id="502"),
        pytest.param(504, "The upstream server is timing out", id="504"),
    ],
)
async def test_fail_next_bodies(api: Api, sim: KongSim, status: int, message: str) -> None:
    sim.faults.fail_next(1, status)
    got, body, _ = await api("GET", "/upstreams")
    assert (got, body) == (status, {"message": message})
    assert (await api("GET", "/upstreams"))[0] == 200


async def test_rate_limit(dbless: KongSim, session: aiohttp.ClientSession) -> None:
    dbless.faults.rate_limit_next(1, retry_after=2, path_prefix="/config")
    status, body, headers = await Api(session, dbless.url)(
        "POST", "/config", json={"config": '_format_version: "3.0"\n'}
    )
    assert status == 429 and headers["Retry-After"] == "2"
    assert body == {"message": "Currently loading previous configuration"}


async def test_delay_and_reset(api: Api, sim: KongSim) -> None:
    sim.faults.delay(0.2, n=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await api("GET", "/status"))[0] == 200
    assert loop.time() - started >= 0.2
    sim.faults.reset_next(1, method="PATCH")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api("PATCH", f"/upstreams/{UP}/targets/{STABLE}", json={"weight": 1})
    assert (await api("GET", "/status"))[0] == 200
    sim.faults.fail_next(5)
    sim.faults.clear()
    assert (await api("GET", "/status"))[0] == 200


async def test_delay_after_commits_first(api: Api, sim: KongSim) -> None:
    """A slow answer of a write that already landed: the database changes at once."""
    committed: list[float] = []
    loop = asyncio.get_running_loop()
    sim.store.on_commit.append(lambda ws, up, node: committed.append(loop.time()))
    rule = sim.faults.delay(0.3, method="PATCH", after=True)
    started = loop.time()
    status, _, _ = await api("PATCH", f"/upstreams/{UP}/targets/{STABLE}", json={"weight": 3})
    assert status == 200 and loop.time() - started >= 0.3
    assert committed and committed[0] - started < 0.25
    sim.faults.remove(rule)
    started = loop.time()
    assert (await api("PATCH", f"/upstreams/{UP}/targets/{STABLE}", json={"weight": 4}))[0] == 200
    assert loop.time() - started < 0.3
    assert sim.faults.counts == {"delay_after": 1}


async def test_delay_before_commits_late(api: Api, sim: KongSim) -> None:
    committed: list[float] = []
    loop = asyncio.get_running_loop()
    sim.store.on_commit.append(lambda ws, up, node: committed.append(loop.time()))
    sim.faults.delay(0.3, n=1, method="PATCH")
    started = loop.time()
    assert (await api("PATCH", f"/upstreams/{UP}/targets/{STABLE}", json={"weight": 3}))[0] == 200
    assert committed[0] - started >= 0.3


async def test_reset_after_commits_and_loses_the_answer(api: Api, sim: KongSim) -> None:
    sim.faults.reset_next(1, method="PATCH", after=True)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api("PATCH", f"/upstreams/{UP}/targets/{STABLE}", json={"weight": 5})
    assert {t["target"]: t["weight"] for t in sim.targets(UP)}[STABLE] == 5
    sim.faults.reset_next(1, method="PATCH")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api("PATCH", f"/upstreams/{UP}/targets/{STABLE}", json={"weight": 6})
    assert {t["target"]: t["weight"] for t in sim.targets(UP)}[STABLE] == 5
    sim.faults.fail_next(1, 502)
    sim.faults.rate_limit_next(1)
    assert (await api("GET", "/status"))[0] == 502
    assert (await api("GET", "/status"))[0] == 429
    assert sim.faults.counts == {"reset_after": 1, "reset": 1, "status:502": 1, "status:429": 1}


async def test_on_commit_names_the_node(
    make_sim: SimFactory, session: aiohttp.ClientSession
) -> None:
    sim = await make_sim(nodes=2)
    seen: list[tuple[str, str, int | None]] = []
    sim.store.on_commit.append(lambda ws, up, node: seen.append((ws, up, node)))
    sim.add_upstream("u")
    async with session.post(f"{sim.urls[1]}/upstreams/u/targets", json={"target": "10.0.0.9:80"}):
        pass
    assert seen == [("default", "u", None), ("default", "u", 1)]


async def test_client_gone_before_its_body_is_not_an_error(
    sim: KongSim, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = sim.url.removeprefix("http://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"PATCH /upstreams/{UP}/targets/{STABLE} HTTP/1.1\r\nHost: kong\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode()
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    async with asyncio.timeout(3):
        while not sim.requests:
            await asyncio.sleep(0.01)
    assert sim.requests[-1].status == 499
    assert {t["target"]: t["weight"] for t in sim.targets(UP)}[STABLE] == 100
    assert "unexpected error" not in caplog.text


async def test_requests_and_on_write(api: Api, sim: KongSim) -> None:
    seen: list[tuple[str, str]] = []
    totals: list[int] = []

    def check(ws: str, upstream: str) -> None:
        seen.append((ws, upstream))
        totals.append(sum(t["weight"] for t in sim.targets(upstream)))

    sim.on_write.append(check)
    sim.requests.clear()
    await api("PATCH", f"/upstreams/{UP}/targets/{CANARY}", json={"weight": 10})
    await api("GET", f"/upstreams/{UP}/targets")
    assert seen == [("default", UP)]
    assert totals == [110]
    rec = sim.requests[0]
    assert (rec.method, rec.path, rec.status, rec.body, rec.node) == (
        "PATCH",
        f"/upstreams/{UP}/targets/{CANARY}",
        200,
        {"weight": 10},
        0,
    )
    assert sim.requests[1].method == "GET"


async def test_test_helpers(sim: KongSim) -> None:
    sim.set_weight(UP, "10.0.0.1:80", 7)
    assert {t["target"]: t["weight"] for t in sim.targets(UP)} == {STABLE: 7, CANARY: 0}
    sim.delete_target(UP, CANARY)
    assert [t["target"] for t in sim.targets(UP)] == [STABLE]
    sim.wipe()
    assert sim.upstreams() == []


async def test_many_patches_are_fast(api: Api, sim: KongSim) -> None:
    loop = asyncio.get_running_loop()
    target = sim.targets(UP)[0]["id"]
    started = loop.time()
    for i in range(300):
        status, _, _ = await api("PATCH", f"/upstreams/{UP}/targets/{target}", json={"weight": i})
        assert status == 200
    assert loop.time() - started < 10


# ---------------------------------------------------------------------------------------------
# CLI


async def test_cli_serves_until_sigterm() -> None:
    code = (
        "import sys; from kongsplit.sim.kongsim import cli as kong_cli; import argparse;"
        "p = argparse.ArgumentParser(); kong_cli.add_arguments(p);"
        "sys.exit(kong_cli.run(p.parse_args(sys.argv[1:])))"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        "--listen",
        "127.0.0.1:0",
        "--nodes",
        "2",
        "--seed-demo",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        lines = [await asyncio.wait_for(proc.stdout.readline(), 20) for _ in range(2)]
        urls = [line.decode().rsplit(" ", 1)[-1].strip() for line in lines]
        assert all(u.startswith("http://127.0.0.1:") for u in urls)
        async with (
            aiohttp.ClientSession() as s,
            s.get(urls[1] + "/upstreams/demo.default.80.svc/targets") as resp,
        ):
            assert resp.status == 200
            assert len((await resp.json())["data"]) == 2
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# ---------------------------------------------------------------------------------------------
# kong/db/dao/targets.lua page_for_upstream_with_health, kong/status/init.lua: what /health shows
# on a control plane, on a hybrid data plane's Status API, and for a name that does not resolve


async def test_control_plane_health_rows_carry_no_balancer_data(
    make_sim: SimFactory, session: aiohttp.ClientSession
) -> None:
    sim = await make_sim(mode="control_plane")
    cp = Api(session, sim.url)
    await cp("POST", "/upstreams", json={"name": UP})
    await cp("POST", f"/upstreams/{UP}/targets", json={"target": STABLE, "weight": 100})
    status, body, _ = await cp("GET", f"/upstreams/{UP}/health")
    assert status == 200
    (row,) = body["data"]
    assert row["target"] == STABLE and row["weight"] == 100
    assert "health" not in row and "data" not in row  # a CP builds no balancers


async def test_data_planes_serve_the_status_api_only(
    make_sim: SimFactory, session: aiohttp.ClientSession
) -> None:
    sim = await make_sim(mode="control_plane", data_planes=2)
    assert len(sim.admin_urls) == 1 and len(sim.dp_urls) == 2
    cp = Api(session, sim.url)
    dp = Api(session, sim.dp_urls[0])
    await cp("POST", "/upstreams", json={"name": UP})
    await cp("POST", f"/upstreams/{UP}/targets", json={"target": STABLE, "weight": 30})
    status, body, _ = await dp("GET", f"/upstreams/{UP}/health")
    assert status == 200 and body["data"][0]["data"]["nodeWeight"] == 30
    assert (await dp("GET", "/status"))[0] == 200
    # No Admin API there: no `GET /`, no writes.
    assert (await dp("GET", "/"))[0] == 404
    assert (await dp("POST", "/upstreams", json={"name": "x.svc"}))[0] == 405


async def test_a_lagging_data_plane_shows_the_old_weight(
    make_sim: SimFactory, session: aiohttp.ClientSession
) -> None:
    clock = FakeClock()
    sim = await make_sim(mode="control_plane", data_planes=2, clock=clock)
    cp = Api(session, sim.url)
    await cp("POST", "/upstreams", json={"name": UP})
    _, target, _ = await cp("POST", f"/upstreams/{UP}/targets", json={"target": STABLE})
    clock.now += 10  # every data plane has the target at weight 100
    sim.set_dp_lag(1, 5.0)
    await cp("PATCH", f"/upstreams/{UP}/targets/{target['id']}", json={"weight": 7})
    weights = []
    for url in sim.dp_urls:
        _, body, _ = await Api(session, url)("GET", f"/upstreams/{UP}/health")
        weights.append(body["data"][0]["data"]["nodeWeight"])
    assert weights == [7, 100]
    clock.now += 5
    _, body, _ = await Api(session, sim.dp_urls[1])("GET", f"/upstreams/{UP}/health")
    assert body["data"][0]["data"]["nodeWeight"] == 7


async def test_a_name_that_does_not_resolve_is_dns_error(api: Api, sim: KongSim) -> None:
    await api("POST", f"/upstreams/{UP}/targets", json={"target": "gone.example:80", "weight": 5})
    sim.dns_failures.add("gone.example")
    _, body, _ = await api("GET", f"/upstreams/{UP}/health")
    row = {x["target"]: x for x in body["data"]}["gone.example:80"]
    assert row["health"] == "DNS_ERROR" and "data" not in row


async def test_a_slow_write_is_committed_after_its_client_left(
    sim: KongSim, session: aiohttp.ClientSession
) -> None:
    """nginx reads the request before Kong's handler runs, and Kong does not set
    lua_check_client_abort (kong/templates/nginx_kong.lua): a write is committed even when the
    client gave up waiting — the late write kongsplit must be ready for."""
    target = sim.add_target(UP, "10.0.0.9:80", 10)

    def weight() -> int:
        return next(int(t["weight"]) for t in sim.targets(UP) if t["target"] == "10.0.0.9:80")

    sim.faults.delay(0.5, n=1, method="PATCH")
    url = f"{sim.url}/upstreams/{UP}/targets/{target['id']}"
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.1):
            await session.patch(url, json={"weight": 25})
    assert weight() == 10
    for _ in range(100):
        if weight() == 25:
            break
        await asyncio.sleep(0.02)
    assert weight() == 25
