"""Every way a Kong Admin API setup goes wrong, as the user reads it: one line naming the URL
and the fix, no library class names. Each case runs against a real server on a real socket
(the Kong simulator, a TLS server with a trustme certificate, Kong's proxy answer, a silent
listener); the expected hints are pinned so a refactor cannot lose them."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from prometheus_client import CollectorRegistry

from kongsplit.config import TLSConfig
from kongsplit.kong import errors
from kongsplit.kong.client import KongAdmin, RetryPolicy
from kongsplit.kong.errors import (
    KongAuthError,
    KongClientError,
    KongConflict,
    KongError,
    KongNotFound,
    KongNotLeader,
    KongNotReady,
    KongResponseError,
    KongUnavailable,
    for_upstream,
)
from kongsplit.metrics import ERROR_REASONS, Metrics
from kongsplit.sim.kongsim import KongSim

ONCE = RetryPolicy(attempts=1)
#: Names of library exception classes that must never reach a user.
LIBRARY_NAMES = re.compile(r"Client\w*Error|SSL\w*Error|OSError|TimeoutError|aiohttp|Errno")


@dataclass
class Case:
    url: str
    admin: dict[str, Any] = field(default_factory=dict)
    write: bool = False


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _tls(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    return ctx


@asynccontextmanager
async def scenario(name: str, ca: trustme.CA, tmp: Path) -> AsyncIterator[Case]:
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    if name == "refused":
        yield Case(f"http://127.0.0.1:{_closed_port()}")
    elif name == "unknown-host":
        yield Case("http://kong-admin.invalid:8001")
    elif name == "timeout":
        writers: list[asyncio.StreamWriter] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            await reader.read(65536)  # read the request, never answer

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield Case(f"http://127.0.0.1:{port}", {"timeout": 0.3})
        finally:
            for writer in writers:
                writer.close()
            server.close()
            await server.wait_closed()
    elif name in ("untrusted-certificate", "http-to-https-port"):
        async with KongSim(ssl_context=_tls(ca, "127.0.0.1")) as sim:
            url = sim.url if name == "untrusted-certificate" else sim.url.replace("https", "http")
            yield Case(url)
    elif name == "certificate-for-another-host":
        async with KongSim(ssl_context=_tls(ca, "kong.example")) as sim:
            yield Case(sim.url, {"tls": TLSConfig(ca_file=str(ca_file))})
    elif name == "https-to-http-port":
        async with KongSim() as sim:
            yield Case(sim.url.replace("http://", "https://"))
    elif name == "proxy-port":
        # What Kong's proxy listener (8000) answers for a path no Route matches.
        app = web.Application()

        async def no_route(_: web.Request) -> web.Response:
            return web.json_response({"message": "no Route matched with those values"}, status=404)

        app.router.add_get("/", no_route)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            yield Case(f"http://127.0.0.1:{port}")
        finally:
            await runner.cleanup()
    elif name in ("token-missing", "token-wrong", "token-read-only"):
        async with KongSim(token="right", read_only_tokens=("reader",)) as sim:
            token = {"token-missing": None, "token-wrong": "wrong", "token-read-only": "reader"}
            yield Case(sim.url, {"token": token[name]}, write=name == "token-read-only")
    else:  # pragma: no cover - a typo in the table
        raise AssertionError(name)


#: case → the fix hint the message must carry (besides naming the URL).
HINTS = {
    "refused": "is Kong's Admin API listening there? (check kong.url / --kong-url",
    "unknown-host": "cannot resolve the host 'kong-admin.invalid' of kong.url",
    "timeout": "within 0.3s; is the Admin API overloaded or firewalled? (raise kong.timeoutSeconds",
    "untrusted-certificate": "is not trusted (unable to get local issuer certificate); set "
    "kong.tls.caFile to the CA that signed it",
    "certificate-for-another-host": "use the name on the certificate in kong.url",
    "http-to-https-port": "use https:// in kong.url",
    "https-to-http-port": "does not speak TLS: use http:// in kong.url (--kong-url)",
    "proxy-port": "is Kong's proxy; point kong.url (--kong-url) at the Admin API, usually port "
    "8001 (http) or 8444 (https)",
    "token-missing": "requires an admin token (RBAC); give it in a file with kong.tokenFile "
    "(--token-file, KONGSPLIT_KONG_TOKEN_FILE)",
    "token-wrong": "refused the admin token; put a valid one in the file kong.tokenFile names",
    "token-read-only": "the admin token may not POST /upstreams on Kong at http://127.0.0.1:",
}


async def _attempt(case: Case, metrics: Metrics) -> str:
    kwargs = {"retry": ONCE, "metrics": metrics, **case.admin}
    async with KongAdmin(case.url, **kwargs) as admin:
        action: Callable[[], Awaitable[Any]] = (
            (lambda: admin.create_upstream("web.shop.svc")) if case.write else admin.node_info
        )
        with pytest.raises(KongError) as caught:
            await action()
    return str(caught.value)


@pytest.mark.parametrize("name", list(HINTS))
async def test_each_setup_error_names_the_url_and_the_fix(
    name: str, ca: trustme.CA, tmp_path: Path
) -> None:
    metrics = Metrics(CollectorRegistry())
    async with scenario(name, ca, tmp_path) as case:
        message = await _attempt(case, metrics)
    origin = re.match(r"^(https?://[^/]+)", case.url)
    assert origin is not None
    assert HINTS[name] in message, message
    assert origin.group(1).split("://")[1] in message, message  # the URL (host:port) is named
    assert "\n" not in message and not LIBRARY_NAMES.search(message), message
    auth_ok = metrics.registry.get_sample_value("kongsplit_kong_auth_ok")
    assert auth_ok == (0 if name.startswith("token-") else 1)


async def test_a_dropped_connection_after_answers_is_not_blamed_on_the_scheme() -> None:
    async with KongSim() as sim, KongAdmin(sim.url, retry=ONCE) as admin:
        await admin.node_info()
        sim.faults.reset_next(1, path_prefix="/status")
        with pytest.raises(KongError) as caught:
            await admin.status()
    assert "closed the connection without answering" in str(caught.value)
    assert "https://" not in str(caught.value)


def test_inspect_prints_the_token_hint_in_one_line() -> None:
    """What a person at a terminal sees: ``kongsplit inspect`` against a Kong that wants a token."""

    async def main() -> tuple[int, str, str]:
        async with KongSim(token="right") as sim:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "kongsplit",
                "inspect",
                "--kong-url",
                sim.url,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            return proc.returncode or 0, out.decode(), err.decode()

    code, out, err = asyncio.run(main())
    assert code == 1 and out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("kongsplit inspect: GET /: Kong at http://127.0.0.1:")
    assert "requires an admin token (RBAC); give it in a file with kong.tokenFile" in err


# --------------------------------------------------------------------------- metric reasons

#: Each error class and the ``kongsplit_reconcile_errors_total{reason}`` it is counted under:
#: a 4xx is the request's fault, 401/403 the token's, anything else means Kong is not usable.
REASONS = {
    "KongError": "kong_unavailable",
    "KongClientError": "kong_client_error",
    "KongAuthError": "kong_auth",
    "KongNotFound": "kong_client_error",
    "KongConflict": "kong_client_error",
    "KongUnavailable": "kong_unavailable",
    "KongModeError": "kong_client_error",
    "KongResponseError": "kong_unavailable",
    "KongNotLeader": "kong_unavailable",  # never counted: the write was not sent
    "KongNotReady": "kong_unavailable",  # a DB-less node with no configuration yet
}


def _error_classes() -> dict[str, type[KongError]]:
    return {
        name: cls
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, KongError)
    }


def test_every_error_class_has_a_reason_row() -> None:
    assert set(_error_classes()) == set(REASONS)


@pytest.mark.parametrize(("name", "reason"), [pytest.param(n, r, id=n) for n, r in REASONS.items()])
def test_each_error_is_counted_under_a_declared_reason(name: str, reason: str) -> None:
    """The reasons are a fixed set (created at start, listed in the runbook's
    KongsplitReconcileErrors table): an error may not invent a new one."""
    assert _error_classes()[name].reason == reason
    assert reason in ERROR_REASONS


@pytest.mark.parametrize(
    "error",
    [
        KongError("GET /config: broken", upstream=None),
        KongClientError("POST /config: Kong answered 400", status=400, code=14, name="x"),
        KongAuthError("POST /config: Kong answered 401", status=401),
        KongNotFound("GET /upstreams/u: Kong answered 404", status=404),
        KongConflict("POST /upstreams: Kong answered 409", status=409),
        KongUnavailable("POST /config: Kong answered 503", status=503, retry_after=1.0),
        KongResponseError("GET /config: not JSON", method="GET", path="/config"),
        KongNotReady("Kong has no configuration loaded yet"),
        KongNotLeader("not the leader"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_for_upstream_keeps_the_class_and_fields_and_names_the_upstream(error: KongError) -> None:
    """Every waiter of a DB-less batch gets the failure with its own upstream named; the classes
    with keyword-only fields once made this raise TypeError and stop the flusher."""
    mine = for_upstream(error, "web.shop.svc")
    assert type(mine) is type(error) and mine is not error
    assert str(mine) == f"{error} (upstream web.shop.svc)" and mine.upstream == "web.shop.svc"
    assert {k: v for k, v in vars(mine).items() if k != "upstream"} == {
        k: v for k, v in vars(error).items() if k != "upstream"
    }
    assert error.upstream is None  # the original is untouched
