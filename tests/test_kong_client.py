"""``KongAdmin``: transport, retries, errors, token, TLS, modes, paging, workspaces.

Behaviour runs over real sockets against the Kong simulator (``kongsplit.sim.kongsim``);
aioresponses is only used for bodies the simulator cannot produce (HTML error pages, non-JSON
200s, JSON of the wrong shape).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import os
import re
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from aioresponses import aioresponses
from prometheus_client import CollectorRegistry

from kongsplit.config import TLSConfig
from kongsplit.kong.client import KongAdmin, RetryPolicy, TokenSource
from kongsplit.kong.errors import (
    KongClientError,
    KongConflict,
    KongError,
    KongModeError,
    KongNotFound,
    KongNotLeader,
    KongResponseError,
    KongUnavailable,
)
from kongsplit.kong.records import EMPTY_CONFIG_HASH, KongMode
from kongsplit.kong.targets import MANAGED_TAG
from kongsplit.metrics import Metrics
from kongsplit.sim.kongsim import KongSim

FAST = RetryPolicy(attempts=3, initial_backoff=0.001, max_backoff=0.005, max_elapsed=5.0)
FAKE = "http://kong.invalid:8001"
SECRET = "s3cr3t-admin-token"


def _sample(metrics: Metrics, method: str, code: str) -> float:
    value = metrics.registry.get_sample_value(
        "kongsplit_kong_requests_total", {"method": method, "code": code}
    )
    return value or 0.0


# --- canned odd responses (aioresponses) ------------------------------------------------------


async def test_html_502_page_is_unavailable_after_retries() -> None:
    metrics = Metrics(CollectorRegistry())
    html = "<html><head><title>502 Bad Gateway</title></head><body>" + "x" * 2000 + "</body></html>"
    async with KongAdmin(FAKE, retry=FAST, metrics=metrics, token=SECRET) as admin:
        with aioresponses() as mock:
            mock.get(
                re.compile(r".*/upstreams/u/targets.*"),
                status=502,
                body=html,
                content_type="text/html",
                repeat=True,
            )
            with pytest.raises(KongUnavailable) as err:
                await admin.list_targets("u")
    message = str(err.value)
    assert "GET /upstreams/u/targets (upstream u): Kong answered 502" in message
    assert "gave up after 3 attempts" in message
    assert len(message) < 600  # the body is cut short
    assert SECRET not in message and SECRET not in repr(admin)
    assert err.value.status == 502
    assert _sample(metrics, "GET", "502") == 3


async def test_non_json_200_is_a_response_error() -> None:
    async with KongAdmin(FAKE, retry=FAST) as admin:
        with aioresponses() as mock:
            mock.get(FAKE + "/", status=200, body="<html>hello</html>", content_type="text/html")
            with pytest.raises(KongResponseError, match=r"GET /: Kong answered 200 with a body"):
                await admin.node_info()


@pytest.mark.parametrize(
    ("url", "payload", "call"),
    [
        pytest.param("/", {"version": "3.9.3"}, "node_info", id="root-without-configuration"),
        pytest.param(
            "/upstreams/u/targets?size=1000",
            {"data": {"x": 1}},
            "targets",
            id="targets-data-not-a-list",
        ),
        pytest.param(
            "/upstreams/u/targets?size=1000",
            {"data": [{"id": "a"}], "next": None},
            "targets",
            id="target-without-fields",
        ),
        pytest.param(
            "/upstreams/u/targets?size=1000",
            {"data": [], "next": "/x"},
            "targets",
            id="next-without-offset",
        ),
        pytest.param("/config", {"config": 42}, "config", id="config-not-a-string"),
        pytest.param("/config", {"config": "a: [unclosed"}, "config", id="config-bad-yaml"),
    ],
)
async def test_json_of_the_wrong_shape_is_a_response_error(
    url: str, payload: dict[str, object], call: str
) -> None:
    async with KongAdmin(FAKE, retry=FAST) as admin:
        with aioresponses() as mock:
            mock.get(FAKE + url, payload=payload)
            with pytest.raises(KongResponseError, match="unexpected response shape"):
                if call == "node_info":
                    await admin.node_info()
                elif call == "targets":
                    await admin.list_targets("u")
                else:
                    await admin.get_config()


async def test_client_error_carries_kong_fields_and_is_not_retried() -> None:
    metrics = Metrics(CollectorRegistry())
    body = {
        "code": 2,
        "name": "schema violation",
        "message": "schema violation (weight: value should be between 0 and 65535)",
    }
    async with KongAdmin(FAKE, retry=FAST, metrics=metrics) as admin:
        with aioresponses() as mock:
            mock.patch(FAKE + "/upstreams/u/targets/abc", status=400, payload=body, repeat=True)
            with pytest.raises(KongClientError) as err:
                await admin.update_target("u", "abc", weight=70000, target="10.0.0.1:80")
    e = err.value
    assert (e.status, e.code, e.name) == (400, 2, "schema violation")
    assert e.kong_message == body["message"]
    assert str(e) == (
        "PATCH /upstreams/u/targets/abc (upstream u, target 10.0.0.1:80): Kong answered 400 "
        "schema violation: 'schema violation (weight: value should be between 0 and 65535)'"
    )
    assert _sample(metrics, "PATCH", "400") == 1


def test_token_source_never_shows_the_token() -> None:
    assert SECRET not in repr(TokenSource(SECRET))
    assert TokenSource(SECRET).current() == SECRET


async def test_unreadable_token_file_names_the_file() -> None:
    async with KongAdmin(FAKE, retry=FAST, token_file="/nonexistent/token") as admin:
        with pytest.raises(KongError, match="cannot read the Kong admin token file /nonexistent/"):
            await admin.node_info()


@pytest.mark.parametrize(
    ("content", "token", "problem"),
    [
        pytest.param(b"s3cret\n", "s3cret", None, id="trailing-newline-stripped"),
        pytest.param(b"  s3cret\r\n\n", "s3cret", None, id="surrounding-whitespace"),
        pytest.param(b"\n", None, None, id="empty-is-no-token"),
        pytest.param(b"s3c ret\n", None, "a space inside it (line 1, character 4", id="space"),
        pytest.param(b"s3c\nret\n", None, "a line break inside it (line 1", id="newline"),
        pytest.param(b"s3c\tret", None, "whitespace inside it", id="tab"),
        pytest.param(b"s3c\x00ret", None, "a control character inside it", id="nul"),
        pytest.param("s3crét".encode(), None, "not ASCII inside it", id="non-ascii"),
        pytest.param(b"\xff\xfe", None, "is not text (UTF-8)", id="binary"),
    ],
)
def test_a_token_file_is_one_token(
    tmp_path: Path, content: bytes, token: str | None, problem: str | None
) -> None:
    """Whitespace around the token goes; inside it, it would have gone into the header (a
    space: a token Kong refuses; a newline: aiohttp's ValueError, uncaught, on every request).
    The error names the file and the fix, never the token."""
    path = tmp_path / "token"
    path.write_bytes(content)
    source = TokenSource(file=str(path))
    if problem is None:
        assert source.current() == token
        return
    with pytest.raises(KongError) as info:
        source.current()
    message = str(info.value)
    assert message.startswith(f"the Kong admin token file {path}")
    assert problem in message
    assert "write the token alone, on one line" in message and "\n" not in message
    assert "s3c" not in message and "ret" not in message.replace("secret", "")


# --- over real sockets against the simulator ----------------------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[KongSim]:
    async with KongSim() as s:
        yield s


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
async def admin(sim: KongSim, metrics: Metrics) -> AsyncIterator[KongAdmin]:
    async with KongAdmin(sim.url, retry=FAST, metrics=metrics, timeout=2.0) as a:
        yield a


def _count(sim: KongSim, method: str, path: str) -> int:
    return sum(1 for r in sim.requests if r.method == method and r.path == path)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        pytest.param("postgres", KongMode.DB, id="db"),
        pytest.param("off", KongMode.DBLESS, id="dbless"),
        pytest.param("control_plane", KongMode.CONTROL_PLANE, id="control-plane"),
    ],
)
async def test_mode_detection(mode: str, expected: KongMode) -> None:
    async with KongSim(mode=mode) as s, KongAdmin(s.url, retry=FAST) as admin:
        assert await admin.detect_mode() == expected
        assert admin.node is not None and admin.node.version == "3.9.3"


async def test_data_plane_is_refused() -> None:
    async with KongSim(mode="data_plane") as s, KongAdmin(s.url, retry=FAST) as admin:
        with pytest.raises(KongModeError, match=r"hybrid data plane.*control plane"):
            await admin.detect_mode()
        assert admin.mode is None


async def test_konnect_is_refused_by_its_host_without_a_request() -> None:
    url = "https://eu.api.konghq.com/v2/control-planes/cp-1/core-entities"
    with aioresponses() as mocked:  # no URL registered: any request would be recorded and fail
        async with KongAdmin(url, retry=FAST) as admin:
            with pytest.raises(KongModeError, match=r"is Konnect's API: .*self-managed Kong"):
                await admin.detect_mode()
            assert admin.mode is None
        assert not mocked.requests


async def test_status_configuration_hash() -> None:
    async with KongSim(mode="off") as s, KongAdmin(s.url, retry=FAST) as admin:
        status = await admin.status()
        assert status.configuration_hash == EMPTY_CONFIG_HASH and status.empty
    async with KongSim() as s, KongAdmin(s.url, retry=FAST) as admin:
        status = await admin.status()
        assert status.configuration_hash is None and status.database_reachable is True


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param("503", id="503"),
        pytest.param("500", id="500"),
        pytest.param("reset", id="connection-reset"),
        pytest.param("timeout", id="timeout"),
    ],
)
async def test_retried_then_succeeds(sim: KongSim, metrics: Metrics, fault: str) -> None:
    # POST: aiohttp itself re-sends an *idempotent* request once when a kept-alive connection
    # drops, which would hide one reset from the count; it never does that for a POST.
    async with KongAdmin(sim.url, retry=FAST, metrics=metrics, timeout=0.3) as admin:
        if fault == "reset":
            sim.faults.reset_next(2, path_prefix="/upstreams")
        elif fault == "timeout":
            sim.faults.delay(1.0, n=2, path_prefix="/upstreams")
        else:
            sim.faults.fail_next(2, int(fault), path_prefix="/upstreams")
        upstream = await admin.create_upstream("u.svc")
        await asyncio.sleep(0)
    assert upstream.name == "u.svc"
    if fault == "timeout":
        # The slow requests were still served after the client gave up: the retry met a 409
        # and read the upstream the first attempt had created.
        assert _sample(metrics, "POST", "0") == 2
        assert [u["name"] for u in sim.upstreams()] == ["u.svc"]
        return
    assert _count(sim, "POST", "/upstreams") == 3  # two failures, one success
    code = "0" if fault == "reset" else fault
    assert _sample(metrics, "POST", code) == 2
    assert _sample(metrics, "POST", "201") == 1
    assert metrics.registry.get_sample_value("kongsplit_kong_up") == 1


async def test_idempotent_get_retried_on_reset(sim: KongSim, metrics: Metrics) -> None:
    sim.add_upstream("u.svc")
    sim.faults.reset_next(2, path_prefix="/upstreams/u.svc")
    async with KongAdmin(sim.url, retry=FAST, metrics=metrics) as admin:
        assert await admin.get_upstream("u.svc") is not None
    # Only our policy retries (aiohttp's own silent re-send is off): 2 resets, 1 success.
    assert [r.status for r in sim.requests] == [0, 0, 200]
    assert _sample(metrics, "GET", "0") == 2


async def test_429_honours_retry_after(sim: KongSim, admin: KongAdmin) -> None:
    sim.faults.rate_limit_next(1, retry_after=0.3, path_prefix="/status")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await admin.status()
    assert loop.time() - started >= 0.29
    assert [r.status for r in sim.requests if r.path == "/status"] == [429, 200]


async def test_gives_up_after_the_policy_attempts(sim: KongSim, metrics: Metrics) -> None:
    sim.faults.reset_next(10, path_prefix="/status")
    async with KongAdmin(sim.url, retry=FAST, metrics=metrics) as admin:
        with pytest.raises(
            KongUnavailable, match=r"closed the connection without answering.*gave up after 3"
        ):
            await admin.status()
    assert _count(sim, "GET", "/status") == 3
    assert metrics.registry.get_sample_value("kongsplit_kong_up") == 0
    assert metrics.registry.get_sample_value("kongsplit_kong_request_duration_seconds_count") == 3


async def test_total_time_bounds_retries(sim: KongSim) -> None:
    policy = RetryPolicy(attempts=50, initial_backoff=0.05, max_backoff=0.05, max_elapsed=0.3)
    sim.faults.fail_next(100, 503, path_prefix="/status")
    async with KongAdmin(sim.url, retry=policy) as admin:
        with pytest.raises(KongUnavailable, match="503"):
            await admin.status()
    assert 3 <= _count(sim, "GET", "/status") < 12


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        pytest.param(400, KongClientError, id="400"),
        pytest.param(401, KongClientError, id="401"),
        pytest.param(403, KongClientError, id="403"),
        pytest.param(404, KongNotFound, id="404"),
        pytest.param(409, KongConflict, id="409"),
    ],
)
async def test_client_errors_are_not_retried(
    sim: KongSim, admin: KongAdmin, status: int, exc: type[KongClientError]
) -> None:
    sim.add_upstream("u.svc")
    sim.faults.fail_next(1, status, path_prefix="/upstreams/u.svc/targets")
    with pytest.raises(exc) as err:
        await admin.list_targets("u.svc")
    assert err.value.status == status
    assert _count(sim, "GET", "/upstreams/u.svc/targets") == 1


async def test_real_404_and_409_bodies(sim: KongSim, admin: KongAdmin) -> None:
    assert await admin.get_upstream("nope.svc") is None
    with pytest.raises(KongNotFound, match=r"upstream nope.svc"):
        await admin.list_targets("nope.svc")
    await admin.create_upstream("u.svc")
    await admin.create_target("u.svc", "10.0.0.1:80", 10)
    with pytest.raises(KongConflict) as err:
        await admin.create_target("u.svc", "10.0.0.1:80", 20)
    assert err.value.code == 5 and err.value.name == "unique constraint violation"
    assert "target 10.0.0.1:80" in str(err.value)
    assert "UNIQUE violation" in str(err.value)


async def test_create_upstream_is_tagged_and_409_returns_existing(
    sim: KongSim, admin: KongAdmin
) -> None:
    created = await admin.create_upstream("u.svc")
    assert created.tags == (MANAGED_TAG,)
    again = await admin.create_upstream("u.svc")
    assert again.id == created.id
    assert [r.status for r in sim.requests if r.method == "POST"] == [201, 409]


async def test_pagination_past_1000_targets(sim: KongSim, admin: KongAdmin) -> None:
    sim.add_upstream("big.svc")
    for i in range(1500):
        sim.add_target("big.svc", f"10.1.{i // 250}.{i % 250}:80", weight=1)
    targets = await admin.list_targets("big.svc")
    assert len(targets) == 1500
    assert len({t.target for t in targets}) == 1500
    pages = [r for r in sim.requests if r.path == "/upstreams/big.svc/targets"]
    assert [r.query for r in pages] == [{"size": "1000"}, {"size": "1000", "offset": "1000"}]
    health = await admin.health("big.svc")
    assert len(health) == 1500 and all(h.node_weight == 1 for h in health)


async def test_workspace_prefix() -> None:
    async with (
        KongSim(workspaces=("default", "team-a")) as s,
        KongAdmin(s.url, retry=FAST, workspace="team-a") as admin,
    ):
        await admin.create_upstream("u.svc")
        await admin.create_target("u.svc", "10.0.0.1:80", 5)
        assert [u["name"] for u in s.upstreams("team-a")] == ["u.svc"]
        assert s.upstreams("default") == []
        paths = {r.path for r in s.requests}
        assert paths == {"/team-a/upstreams", "/team-a/upstreams/u.svc/targets"}
        # An explicit workspace wins; "default" means no prefix.
        assert await admin.get_upstream("u.svc", workspace="default") is None
        assert [t.target for t in await admin.list_targets("u.svc")] == ["10.0.0.1:80"]


async def test_workspace_names_are_percent_encoded_in_paths() -> None:
    """Kong's workspace rule takes any non-ASCII character (validate_utf8_name in
    kong/db/schema/typedefs.lua): the client puts it in the path percent-encoded, one segment."""
    async with (
        KongSim(workspaces=("default", "équipe")) as s,
        KongAdmin(s.url, retry=FAST, workspace="équipe") as admin,
    ):
        await admin.create_upstream("u.svc")
        assert [u["name"] for u in s.upstreams("équipe")] == ["u.svc"]
        assert s.upstreams("default") == []


async def test_token_value_and_401(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with KongSim(token=SECRET) as s:
        async with KongAdmin(s.url, retry=FAST, token=SECRET) as admin:
            await admin.list_upstreams()
            assert SECRET not in repr(admin)
        async with KongAdmin(s.url, retry=FAST, token="wrong") as admin:
            with pytest.raises(KongClientError) as err:
                await admin.list_upstreams()
        assert err.value.status == 401 and "Invalid RBAC credentials" in str(err.value)
        assert [r.status for r in s.requests] == [200, 401]  # not retried
    assert SECRET not in caplog.text and "wrong" not in str(err.value)


async def test_token_file_rotation(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    async with (
        KongSim(token="first-token") as s,
        KongAdmin(s.url, retry=FAST, token_file=str(token_file)) as admin,
    ):
        await admin.status()
        s.token = "second-token"  # the RBAC token is rotated …
        with pytest.raises(KongClientError, match="401"):
            await admin.status()
        token_file.write_text("second-token\n")  # … and the mounted Secret follows
        os.utime(token_file, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
        await admin.status()
    assert [r.status for r in s.requests] == [200, 401, 200]
    assert "first-token" not in caplog.text and "second-token" not in caplog.text


# --- TLS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_ctx(ca: trustme.CA, *, require_client_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    if require_client_cert:
        ca.configure_trust(ctx)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def test_https_with_ca_file(ca: trustme.CA, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with KongSim(ssl_context=_server_ctx(ca, require_client_cert=False)) as s:
        assert s.url.startswith("https://")
        async with KongAdmin(s.url, retry=FAST, tls=TLSConfig(ca_file=str(ca_file))) as admin:
            assert await admin.detect_mode() == KongMode.DB
        # Without the CA the certificate is refused, and that is not retried.
        async with KongAdmin(s.url, retry=FAST) as admin:
            with pytest.raises(KongUnavailable, match=r"(?i)certificate"):
                await admin.detect_mode()
        async with KongAdmin(s.url, retry=FAST, tls=TLSConfig(insecure_skip_verify=True)) as admin:
            assert await admin.detect_mode() == KongMode.DB
    assert len(s.requests) == 2


async def test_mtls_client_certificate(ca: trustme.CA, tmp_path: Path) -> None:
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "c.pem", tmp_path / "c.key"
    ca.cert_pem.write_to_path(str(ca_file))
    client = ca.issue_cert("kongsplit@example.test")
    client.cert_chain_pems[0].write_to_path(str(cert_file))
    client.private_key_pem.write_to_path(str(key_file))
    async with KongSim(ssl_context=_server_ctx(ca, require_client_cert=True)) as s:
        tls = TLSConfig(ca_file=str(ca_file), cert_file=str(cert_file), key_file=str(key_file))
        async with KongAdmin(s.url, retry=FAST, tls=tls) as admin:
            assert await admin.detect_mode() == KongMode.DB
        async with KongAdmin(s.url, retry=FAST, tls=TLSConfig(ca_file=str(ca_file))) as admin:
            with pytest.raises(KongUnavailable):
                await admin.detect_mode()
    assert len(s.requests) == 1


def test_bad_tls_files_are_a_kong_error(tmp_path: Path) -> None:
    with pytest.raises(KongError, match=r"kong\.tls\.caFile .*missing\.pem: cannot load it"):
        KongAdmin("https://kong:8444", tls=TLSConfig(ca_file=str(tmp_path / "missing.pem")))
    bad = tmp_path / "not-a-cert.pem"
    bad.write_text("garbage")
    with pytest.raises(KongError, match=r"kong\.tls\.certFile .*not-a-cert\.pem"):
        KongAdmin("https://kong:8444", tls=TLSConfig(cert_file=str(bad), key_file=str(bad)))


async def test_health_per_node() -> None:
    async with KongSim(nodes=2) as s, KongAdmin(s.url, retry=FAST) as admin:
        await admin.create_upstream("u.svc")
        await admin.create_target("u.svc", "10.0.0.1:80", 30)
        for url in s.urls:
            [h] = await admin.health("u.svc", node_url=url)
            assert (h.target, h.node_weight) == ("10.0.0.1:80", 30)
        assert {r.node for r in s.requests if r.path.endswith("/health")} == {0, 1}


def test_backoff_is_jittered_exponential_and_honours_retry_after() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=1.0, max_retry_after=5.0)
    for n, ceiling in ((1, 0.1), (2, 0.2), (3, 0.4), (6, 1.0)):
        waits = {policy.backoff(n) for _ in range(50)}
        assert all(ceiling / 2 <= w <= ceiling for w in waits) and len(waits) > 1
    assert policy.backoff(1, retry_after=2.0) == 2.0
    assert policy.backoff(1, retry_after=60.0) == 5.0  # capped


# --- fencing: a writer's time is up before anyone else may write ----------------------------------


async def test_no_write_is_sent_when_the_writers_time_is_up(sim: KongSim) -> None:
    up = sim.add_upstream("f.svc")
    target = sim.add_target("f.svc", "10.0.0.1:80", 10)
    async with KongAdmin(sim.url, retry=FAST) as admin:
        with pytest.raises(KongNotLeader, match="may no longer write"):
            await admin.update_target("f.svc", target["id"], weight=20, may_write=lambda: 0.4)
        assert not [r for r in sim.requests if r.method == "PATCH"]
        await admin.update_target("f.svc", target["id"], weight=20, may_write=lambda: 5.0)
    assert up["name"] == "f.svc" and sim.targets("f.svc")[0]["weight"] == 20


async def test_a_write_attempt_ends_before_the_writers_time_is_up(sim: KongSim) -> None:
    """A leader with 0.8 s of Lease left: its PATCH gives up after 0.3 s (0.5 s margin), never
    waits out the 10 s request timeout while a new leader takes over."""
    sim.add_upstream("f.svc")
    target = sim.add_target("f.svc", "10.0.0.1:80", 10)
    sim.faults.delay(2.0, n=1, method="PATCH")
    loop = asyncio.get_running_loop()
    async with KongAdmin(sim.url, retry=RetryPolicy(attempts=1), timeout=10.0) as admin:
        started = loop.time()
        with pytest.raises(KongUnavailable, match=r"within 0\.3s"):
            await admin.update_target("f.svc", target["id"], weight=20, may_write=lambda: 0.8)
        assert loop.time() - started < 0.6


async def test_no_redirect_is_followed_with_the_token() -> None:
    """A 307 to another origin must not receive the admin token."""
    seen: list[str | None] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Kong-Admin-Token"))
        return web.json_response({"id": "x", "target": "t:1", "weight": 1})

    other = web.Application()
    other.router.add_route("*", "/{tail:.*}", elsewhere)
    other_runner = web.AppRunner(other)
    await other_runner.setup()
    other_site = web.TCPSite(other_runner, "127.0.0.1", 0)
    await other_site.start()
    other_port = other_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{other_port}{request.path}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with KongAdmin(f"http://127.0.0.1:{port}", retry=FAST, token=SECRET) as admin:
            with pytest.raises(KongError):
                await admin.update_target("u.svc", "tid", weight=1)
            with pytest.raises(KongError):
                await admin.node_info()
    finally:
        await runner.cleanup()
        await other_runner.cleanup()
    assert seen == []


# --- bounds: what a server at Kong's URL can make kongsplit hold -------------------------------


@contextlib.asynccontextmanager
async def _serving(handler: Any) -> AsyncIterator[str]:
    """A plain HTTP server on 127.0.0.1 answering every request with ``handler``."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "chunked"])
async def test_a_huge_answer_is_refused_not_held(announced: bool) -> None:
    """100 MiB answered to a targets read: kongsplit stops at 8 MiB (MAX_BODY_BYTES) and says
    which URL sent it; the server never gets to send the rest."""
    sent = 0
    chunk = b" " * (1 << 20)

    async def huge(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        if announced:
            resp.content_length = 100 << 20
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(100):
                await resp.write(chunk)
                sent += len(chunk)
        return resp

    async with _serving(huge) as url, KongAdmin(url, retry=FAST) as admin:
        with pytest.raises(KongResponseError) as err:
            await admin.list_targets("web.shop.svc")
    assert str(err.value).startswith("GET /upstreams/web.shop.svc/targets")
    assert "larger than 8 MiB" in str(err.value) and url in str(err.value)
    assert sent < 50 << 20, f"the server sent {sent >> 20} MiB: the client kept reading"


async def test_a_compressed_bomb_counts_its_unpacked_size() -> None:
    """A gzip body of 100 KiB that unpacks to 64 MiB is refused at 8 MiB of unpacked bytes."""
    packed = gzip.compress(b"[" + b" " * (64 << 20) + b"]", compresslevel=9)
    assert len(packed) < 1 << 20

    async def bomb(request: web.Request) -> web.Response:
        return web.Response(
            body=packed,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    async with _serving(bomb) as url, KongAdmin(url, retry=FAST) as admin:
        with pytest.raises(KongResponseError, match="larger than 8 MiB"):
            await admin.list_targets("web.shop.svc")


async def test_endless_pages_stop_at_the_bound_with_the_url() -> None:
    """A server whose every page has a next one: 100 pages (100,000 entities), then an error,
    not memory without end."""
    pages = 0

    async def endless(request: web.Request) -> web.Response:
        nonlocal pages
        pages += 1
        data = [
            {"id": f"{pages}-{n}", "target": f"10.0.{n // 250}.{n % 250}:80", "weight": 1}
            for n in range(1000)
        ]
        return web.json_response(
            {"data": data, "offset": f"o{pages}", "next": f"{request.path}?offset=o{pages}"}
        )

    async with _serving(endless) as url, KongAdmin(url, retry=FAST) as admin:
        with pytest.raises(KongResponseError) as err:
            await admin.list_targets("web.shop.svc")
    assert pages == 100
    assert "more than 100,000 entities" in str(err.value) and url in str(err.value)


async def test_a_page_larger_than_asked_is_a_shape_error() -> None:
    async def oversized(request: web.Request) -> web.Response:
        assert request.query["size"] == "1000"
        data = [{"id": str(n), "target": f"10.0.0.{n % 250}:{n}", "weight": 1} for n in range(5000)]
        return web.json_response({"data": data, "next": None})

    async with _serving(oversized) as url, KongAdmin(url, retry=FAST) as admin:
        with pytest.raises(KongResponseError, match="5000 items in a page of 1000"):
            await admin.list_targets("web.shop.svc")


async def test_a_config_over_max_config_mib_names_the_setting() -> None:
    async with KongSim(mode="off") as s:
        s.external_config_push(
            {
                "_format_version": "3.0",
                "services": [
                    {"name": f"svc-{n}", "host": f"app{n}.svc", "port": 80} for n in range(5000)
                ],
            }
        )
        async with KongAdmin(s.url, retry=FAST, max_config_bytes=64 << 10) as admin:
            with pytest.raises(KongResponseError) as err:
                await admin.get_config()
        async with KongAdmin(s.url, retry=FAST) as admin:
            assert len((await admin.get_config())["services"]) == 5000  # witness: it is valid
    assert "larger than 64 KiB" in str(err.value)
    assert "raise kong.maxConfigMiB" in str(err.value)
