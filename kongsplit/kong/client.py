"""``KongAdmin``: kongsplit's one connection to a Kong Admin API — transport and entities.

It owns one aiohttp ``ClientSession`` for its whole life, one retry policy (the project's
jittered exponential back-off, ``kongsplit.backoff``, on connection errors, timeouts, 5xx and 429
— honouring ``Retry-After`` — bounded in attempts and total time; other 4xx are never retried),
the admin token (a value or a file re-read when it changes, never logged), TLS (CA file, client
certificate, insecureSkipVerify), workspaces, paging, and metrics for every request. It reads
and writes single entities; *how* a desired state is applied (entity writes in plan order, or a
DB-less ``/config`` edit) lives in ``kong.dbmode`` and ``kong.dbless``, chosen by ``kong.apply``.

Every write takes ``may_write``: asked before each attempt, retries included, so a replica that
lost its leader Lease mid-apply stops writing at once instead of finishing a plan (or a retry
budget) on top of the new leader's weights.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import math
import os
import re
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
)
from yarl import URL

from kongsplit.backoff import Backoff
from kongsplit.config import TOKEN_FIX, KongConfig, TLSConfig, redact_url, token_from_text
from kongsplit.kong import configtext
from kongsplit.kong.errors import (
    KongAuthError,
    KongClientError,
    KongConflict,
    KongError,
    KongModeError,
    KongNotFound,
    KongNotLeader,
    KongResponseError,
    KongUnavailable,
    cut,
    error_detail,
    status_hint,
    transport_failure,
)
from kongsplit.kong.records import (
    KongMode,
    NodeInfo,
    NodeStatus,
    Target,
    TargetHealth,
    Upstream,
    parse_mode,
)
from kongsplit.kong.targets import MANAGED_TAG
from kongsplit.metrics import Metrics
from kongsplit.version import package_version

log = logging.getLogger(__name__)

TOKEN_HEADER = "Kong-Admin-Token"
PAGE_SIZE = 1000  # Kong's maximum page size
#: Bounds on what Kong (or whatever answers at its URL) can make kongsplit hold: the pages of one
#: collection (100,000 entities), the bytes of one answer, and of a DB-less ``GET /config``
#: (``kong.maxConfigMiB``). Beyond them the read fails with an error naming the URL.
MAX_PAGES = 100
MAX_BODY_BYTES = 8 << 20
#: A URL made only of these characters is already encoded (kongsplit quotes every path segment
#: it builds): it is handed to aiohttp as is, not parsed and re-encoded on every request.
_ENCODED_URL = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")

#: Asked before each write attempt: how many seconds this writer may still write (``math.inf``
#: for no limit; ``True`` counts as no limit, ``False`` and anything at or below
#: ``FENCE_MARGIN`` stop the write with ``KongNotLeader``). A leader passes what is left of its
#: Lease, so an attempt is cut short before the Lease runs out: a deposed leader's write cannot
#: land after a new leader's first one.
MayWrite = Callable[[], "bool | float"]
#: A write attempt must end this long before the writer's time is up.
FENCE_MARGIN = 0.5


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry a request Kong did not answer usefully (5xx, 429, no answer).

    Back-off before retry *n* (1-based) is the project's one policy (``kongsplit.backoff``):
    drawn from ``[b/2, b]`` with ``b = min(max_backoff, initial_backoff * 2**(n-1))``; a
    ``Retry-After`` header raises the
    wait to what Kong asked for (capped at ``max_retry_after``). No retry starts once
    ``max_elapsed`` seconds would be exceeded.
    """

    # Short on purpose: a request holds one of the daemon's workers while it retries. Longer
    # trouble is the reconciler's: it re-queues the Rollout with its own back-off (honouring a
    # longer Retry-After) and the worker moves on to other Rollouts.
    attempts: int = 3
    initial_backoff: float = 0.1
    max_backoff: float = 1.0
    max_elapsed: float = 3.0
    max_retry_after: float = 3.0

    def backoff(self, retry_number: int, retry_after: float | None = None) -> float:
        wait = Backoff(self.initial_backoff, self.max_backoff).delay(retry_number)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait


#: Writes that must land now (an abort): retried in tens of milliseconds, not seconds.
#: A ``Retry-After`` is honoured only up to a quarter second: an abort ends canary traffic now.
URGENT_RETRY = RetryPolicy(
    attempts=10, initial_backoff=0.02, max_backoff=0.25, max_elapsed=10.0, max_retry_after=0.25
)


class TokenSource:
    """The admin token, from a value or a file; the file is re-read when its mtime changes.

    Its repr never shows the token.
    """

    def __init__(self, value: str | None = None, file: str | None = None) -> None:
        self._value = value or None
        self._file = file or None
        self._stamp: tuple[int, int] | None = None
        self._from_file: str | None = None

    def __repr__(self) -> str:
        if self._file:
            return f"TokenSource(file={self._file!r})"
        return f"TokenSource({'value=******' if self._value else 'none'})"

    @property
    def configured(self) -> bool:
        """A token (value or file) was given at all."""
        return bool(self._value or self._file)

    def current(self) -> str | None:
        if self._file is None:
            return self._value
        try:
            st = os.stat(self._file)
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                with open(self._file, encoding="utf-8") as f:
                    text = f.read()
                # kongsplit.config.token_from_text: whitespace inside is an error naming the file
                # and the fix (it used to reach aiohttp and crash the request, every time).
                try:
                    self._from_file = token_from_text(
                        text, f"the Kong admin token file {self._file}"
                    )
                except ValueError as e:
                    raise KongError(str(e)) from None
                self._stamp = stamp
                log.debug("read the Kong admin token file", extra={"path": self._file})
        except UnicodeDecodeError:
            raise KongError(
                f"the Kong admin token file {self._file} is not text (UTF-8); {TOKEN_FIX}"
            ) from None
        except OSError as e:
            reason = e.strerror or type(e).__name__
            raise KongError(
                f"cannot read the Kong admin token file {self._file}: {reason}"
            ) from None
        return self._from_file


def build_ssl_context(tls: TLSConfig) -> ssl.SSLContext | bool:
    """The client TLS context for ``tls`` (True = the system defaults)."""
    if not (tls.ca_file or tls.cert_file or tls.insecure_skip_verify):
        return True
    try:
        ctx = ssl.create_default_context(cafile=tls.ca_file)
    except (OSError, ssl.SSLError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise KongError(f"kong.tls.caFile {tls.ca_file}: cannot load it: {reason}") from e
    if tls.cert_file:
        try:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise KongError(
                f"kong.tls.certFile {tls.cert_file} / keyFile {tls.key_file}: cannot load the "
                f"client certificate: {reason}"
            ) from e
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass(frozen=True)
class _Where:
    """What a request is about, for error messages."""

    upstream: str | None = None
    target: str | None = None

    def about(self, method: str, path: str) -> dict[str, Any]:
        """The keyword arguments every KongError takes to say what it was about."""
        return {"method": method, "path": path, "upstream": self.upstream, "target": self.target}


class KongAdmin:
    """A client for one Kong Admin API (plus other nodes' URLs for ``health`` and ``status``)."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_file: str | None = None,
        workspace: str | None = None,
        tls: TLSConfig | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        metrics: Metrics | None = None,
        connection_limit: int = 100,
        max_config_bytes: int = 64 << 20,
        read_only: bool = False,
    ) -> None:
        self.url = url.rstrip("/")
        # A dry run's client: every request other than a GET is refused here, before it is
        # sent, whatever asked for it (the last guard of ``run --dry-run`` and ``diff``).
        self.read_only = read_only
        self.workspace = workspace or None
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.metrics = metrics
        self.mode: KongMode | None = None
        self.mode_known = asyncio.Event()  # set once ``detect_mode`` has read the node's mode
        self.node: NodeInfo | None = None
        self._token = TokenSource(token, token_file)
        self._ssl = build_ssl_context(tls or TLSConfig())
        self._connection_limit = connection_limit
        self._session: aiohttp.ClientSession | None = None
        self.max_config_bytes = max_config_bytes
        self._answered = False  # Kong has answered at least once (so the URL's scheme is right)
        self._request_counters: dict[tuple[str, str], Any] = {}
        # Upstreams a write was sent to and never answered (timeout, connection lost): Kong may
        # still carry it out later, after newer writes (see ``take_unsettled``).
        self._unsettled: set[str] = set()

    @classmethod
    def from_config(
        cls,
        kong: KongConfig,
        *,
        metrics: Metrics | None = None,
        retry: RetryPolicy | None = None,
        read_only: bool = False,
    ) -> KongAdmin:
        return cls(
            kong.url,
            token=kong.token,
            token_file=kong.token_file,
            workspace=kong.workspace,
            tls=kong.tls,
            timeout=kong.timeout_seconds,
            retry=retry,
            metrics=metrics,
            max_config_bytes=kong.max_config_mib << 20,
            read_only=read_only,
        )

    def __repr__(self) -> str:
        return (
            f"KongAdmin(url={self.display_url!r}, workspace={self.workspace!r}, "
            f"token={self._token!r})"
        )

    @property
    def display_url(self) -> str:
        """The URL without any user:password in it, for logs, errors and ``/state``."""
        return redact_url(self.url)

    async def __aenter__(self) -> KongAdmin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def take_unsettled(self, upstream: str) -> bool:
        """Was a write to ``upstream`` sent and never answered since the last call? Kong may
        still carry such a request out (a slow node, a lost answer), even after the retry and
        newer writes landed: the caller looks at the upstream again a little later."""
        if upstream in self._unsettled:
            self._unsettled.discard(upstream)
            return True
        return False

    def _session_get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._connection_limit),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": f"kongsplit/{package_version()}"},
            )
            # aiohttp silently re-sends an idempotent request once when a kept-alive connection
            # drops; that would double the attempts and hide them from the metrics. One retry
            # policy (ours) is enough. Private attribute: absent on other versions, harmless.
            if hasattr(self._session, "_retry_connection"):
                setattr(self._session, "_retry_connection", False)  # noqa: B010
        return self._session

    # --- transport ------------------------------------------------------------------------------

    def _path(self, path: str, workspace: str | None) -> str:
        """Prefix an entity path with the workspace (none for ``default``: OSS has no prefix)."""
        ws = workspace if workspace is not None else self.workspace
        return f"/{quote(ws, safe='')}{path}" if ws and ws != "default" else path

    def _observe(self, method: str, code: str, started: float) -> None:
        if self.metrics is None:
            return
        counter = self._request_counters.get((method, code))
        if counter is None:  # label lookups take a lock; each (method, code) child is kept
            counter = self.metrics.kong_requests.labels(method=method, code=code)
            self._request_counters[(method, code)] = counter
        counter.inc()
        self.metrics.kong_request_duration.observe(time.perf_counter() - started)
        self.metrics.kong_up.set(0 if code == "0" else 1)

    def _observe_auth(self, status: int) -> None:
        if self.metrics is None:
            return
        if status in (401, 403):
            self.metrics.kong_auth_ok.set(0)
        elif 200 <= status < 400:
            self.metrics.kong_auth_ok.set(1)

    @staticmethod
    def _describe(method: str, path: str, where: _Where) -> str:
        pairs = (("upstream", where.upstream), ("target", where.target))
        about = [f"{k} {v}" for k, v in pairs if v]
        return f"{method} {path}" + (f" ({', '.join(about)})" if about else "")

    async def _attempt(
        self,
        method: str,
        url: str,
        path: str,
        *,
        params: Mapping[str, str] | None,
        body: Any,
        where: _Where,
        allow_304: bool,
        may_write: MayWrite | None,
    ) -> tuple[int, Any]:
        timeout: aiohttp.ClientTimeout | None = None
        if method != "GET" and self.read_only:
            raise KongError(
                f"internal: {self._describe(method, path, where)} not sent: this client is "
                "read-only (a dry run writes nothing to Kong)",
                **where.about(method, path),
            )
        if method != "GET" and may_write is not None:
            budget = budget_of(may_write())
            if budget <= FENCE_MARGIN:
                raise KongNotLeader(
                    f"{self._describe(method, path, where)}: not sent, this replica may no "
                    "longer write (leadership lost or the write was superseded)",
                    **where.about(method, path),
                )
            if budget - FENCE_MARGIN < self.timeout:
                timeout = aiohttp.ClientTimeout(total=budget - FENCE_MARGIN)
        headers = {}
        token = self._token.current()
        if token:
            headers[TOKEN_HEADER] = token
        what = _Described(method, path, where)
        started = time.perf_counter()
        try:
            extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
            async with self._session_get().request(
                method,
                URL(url, encoded=True) if _ENCODED_URL.fullmatch(url) else url,
                params=params,
                json=body,
                headers=headers,
                allow_redirects=False,  # the token goes to the configured origin only
                **extra,
            ) as resp:
                status = resp.status
                raw = await self._read_body(resp, what, url, path, where)
                retry_after = _retry_after(resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self._observe(method, "0", started)
            if method != "GET" and where.upstream:
                self._unsettled.add(where.upstream)
            raise KongUnavailable(
                f"{what}: "
                + transport_failure(
                    e,
                    url=redact_url(url),
                    timeout=timeout.total if timeout and timeout.total else self.timeout,
                    answered=self._answered,
                ),
                **where.about(method, path),
            ) from e
        self._observe(method, str(status), started)
        self._observe_auth(status)
        self._answered = True
        log.debug("kong %s %s -> %d", method, path, status)

        if status == 204 or (status == 304 and allow_304):
            return status, None
        text = raw.decode("utf-8", errors="replace")
        if 200 <= status < 300:
            try:
                return status, json.loads(text)
            except ValueError as e:
                raise KongResponseError(
                    f"{what}: Kong answered {status} with a body that is not JSON: {cut(text)!r}",
                    **where.about(method, path),
                ) from e
        detail, code, name, kong_message = error_detail(text)
        message = f"{what}: Kong answered {status}{detail}"
        hint = status_hint(
            method,
            path,
            status,
            kong_message or text,
            origin=redact_url(url[: -len(path)]),
            token_configured=self._token.configured,
            workspace=self.workspace,
        )
        if hint:
            message = f"{what}: {hint} (Kong answered {status}{detail})"
        if status == 429 or status >= 500:
            raise KongUnavailable(
                message,
                status=status,
                retry_after=retry_after,
                **where.about(method, path),
            )
        if 400 <= status < 500:
            cls = {
                404: KongNotFound,
                409: KongConflict,
                401: KongAuthError,
                403: KongAuthError,
            }.get(status, KongClientError)
            raise cls(
                message,
                status=status,
                code=code,
                name=name,
                kong_message=kong_message,
                **where.about(method, path),
            )
        raise KongResponseError(
            f"{what}: unexpected answer {status}{detail}",
            **where.about(method, path),
        )

    async def _read_body(
        self, resp: aiohttp.ClientResponse, what: object, url: str, path: str, where: _Where
    ) -> bytes:
        """The answer's body, at most ``MAX_BODY_BYTES`` (``max_config_bytes`` for ``/config``):
        a larger one (announced or sent; decompressed bytes count) fails the request."""
        limit = self.max_config_bytes if path == "/config" else MAX_BODY_BYTES
        if (
            resp.content_length is not None
            and resp.content_length <= min(limit, 1 << 16)
            and not resp.headers.get("Content-Encoding")
        ):
            return await resp.read()  # small and announced (every entity answer): one read
        if resp.content_length is None or resp.content_length <= limit:
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > limit:
                    break
                chunks.append(chunk)
            else:
                return b"".join(chunks)
        fix = (
            "raise kong.maxConfigMiB if the node's configuration really is that large"
            if path == "/config"
            else f"is {redact_url(url[: -len(path)])} Kong's Admin API?"
        )
        raise KongResponseError(
            f"{what}: Kong's answer is larger than {_size(limit)}; kongsplit reads no more "
            f"than that ({fix})",
            **where.about(resp.method, path),
        )

    async def _request(
        self,
        method: str,
        path: str,
        *,
        base: str | None = None,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        where: _Where = _Where(),
        allow_304: bool = False,
        may_write: MayWrite | None = None,
        retry: RetryPolicy | None = None,
    ) -> tuple[int, Any]:
        """One logical request, retried per the policy; returns (status, parsed JSON or None).

        ``may_write`` is asked before every attempt of a write (see the module docstring);
        ``retry`` overrides the client's policy for this request (``URGENT_RETRY``).
        """
        url = (base.rstrip("/") if base else self.url) + path
        policy = retry or self.retry
        started = time.monotonic()

        # The first attempt runs outside tenacity: it is the hot path (a weight change is one
        # PATCH) and nearly always succeeds; the retry machinery is only built when it fails.
        async def attempt() -> tuple[int, Any]:
            return await self._attempt(
                method,
                url,
                path,
                params=params,
                body=body,
                where=where,
                allow_304=allow_304,
                may_write=may_write,
            )

        try:
            return await attempt()
        except KongUnavailable as e:
            first_wait = policy.backoff(1, e.retry_after)
            budget = policy.max_elapsed - (time.monotonic() - started)
            if policy.attempts <= 1 or not _retryable(e) or first_wait > budget:
                raise
            log.debug("retrying %s %s in %.2fs: %s", method, path, first_wait, e)
            await asyncio.sleep(first_wait)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts - 1)
            | stop_before_delay(max(0.0, policy.max_elapsed - (time.monotonic() - started))),
            wait=_wait_for(policy, retries_before=1),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        attempts = 1
        try:
            async for each in retrying:
                with each:
                    attempts += 1
                    return await attempt()
        except KongUnavailable as e:
            elapsed = time.monotonic() - started
            raise KongUnavailable(
                f"{e} (gave up after {attempts} attempts in {elapsed:.1f}s)",
                status=e.status,
                retry_after=e.retry_after,
                method=e.method,
                path=e.path,
                upstream=e.upstream,
                target=e.target,
            ) from e
        raise AssertionError("unreachable: tenacity neither returned nor raised")

    def _shape_error(
        self, method: str, path: str, where: _Where, body: Any, err: Exception
    ) -> KongResponseError:
        what = self._describe(method, path, where)
        return KongResponseError(
            f"{what}: unexpected response shape ({err}): {cut(json.dumps(body, default=str))}",
            **where.about(method, path),
        )

    async def _paged(
        self,
        path: str,
        *,
        base: str | None = None,
        where: _Where = _Where(),
        retry: RetryPolicy | None = None,
    ) -> list[Any]:
        """Every item of a collection, following pages of 1,000.

        Kong's ``next`` for nested collections drops ``size``, so the next URL is built from
        ``offset`` rather than followed as given.
        """
        items: list[Any] = []
        offset: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            params = {"size": str(PAGE_SIZE)}
            if offset is not None:
                params["offset"] = offset
            _, body = await self._request(
                "GET", path, base=base, params=params, where=where, retry=retry
            )
            try:
                if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                    raise TypeError("no data list")
                if len(body["data"]) > PAGE_SIZE:
                    raise TypeError(f"{len(body['data'])} items in a page of {PAGE_SIZE}")
                items.extend(body["data"])
                nxt = body.get("next")
                if nxt is None:
                    return items
                offset = body.get("offset")
                if offset is None and isinstance(nxt, str):
                    offset = parse_qs(urlsplit(nxt).query).get("offset", [None])[0]
                if not isinstance(offset, str) or offset in seen:
                    raise TypeError("next page without a new offset")
            except TypeError as e:
                raise self._shape_error("GET", path, where, body, e) from e
            seen.add(offset)
        raise KongResponseError(
            f"GET {path} at {self.display_url}: more than {MAX_PAGES * PAGE_SIZE:,} entities "
            f"({MAX_PAGES} pages of {PAGE_SIZE}); kongsplit reads no further. Is this URL Kong's "
            "Admin API?",
            method="GET",
            path=path,
        )

    # --- node ----------------------------------------------------------------------------------

    async def node_info(self, node_url: str | None = None) -> NodeInfo:
        """``GET /``: version, edition and the deployment mode."""
        _, body = await self._request("GET", "/", base=node_url)
        try:
            conf = body["configuration"]
            database = conf.get("database")
            role = conf.get("role") or "traditional"
            if not isinstance(database, str) or not isinstance(role, str):
                raise TypeError("configuration.database/role are not strings")
            return NodeInfo(
                version=str(body.get("version", "")),
                edition=str(body.get("edition") or "community"),
                node_id=str(body.get("node_id", "")),
                hostname=str(body.get("hostname", "")),
                database=database,
                role=role,
                mode=parse_mode(database, role),
            )
        except (TypeError, KeyError, AttributeError) as e:
            raise self._shape_error("GET", "/", _Where(), body, e) from e

    async def detect_mode(self) -> KongMode:
        """Read ``GET /`` and remember the mode; refuse one kongsplit cannot write to."""
        host = urlsplit(self.url).hostname or ""
        if host.endswith(".api.konghq.com"):
            raise KongModeError(
                f"{self.display_url} is Konnect's API: kongsplit writes the Kong Admin API of a "
                "self-managed Kong (DB mode, DB-less or a hybrid control plane)"
            )
        info = await self.node_info()
        if info.mode == KongMode.DATA_PLANE:
            raise KongModeError(
                f"Kong at {self.display_url} is a hybrid data plane (role=data_plane): its "
                "configuration belongs to the control plane and is overwritten on the next "
                "push; point kongsplit at the control plane's Admin API instead"
            )
        self.node, self.mode = info, info.mode
        self.mode_known.set()
        return info.mode

    async def ensure_mode(self) -> KongMode:
        return self.mode if self.mode is not None else await self.detect_mode()

    async def status(self, node_url: str | None = None) -> NodeStatus:
        """``GET /status``; ``configuration_hash`` is set on DB-less nodes and data planes."""
        _, body = await self._request("GET", "/status", base=node_url)
        if not isinstance(body, dict):
            raise self._shape_error("GET", "/status", _Where(), body, TypeError("not an object"))
        chash = body.get("configuration_hash")
        db = body.get("database")
        reachable = db.get("reachable") if isinstance(db, dict) else None
        return NodeStatus(
            configuration_hash=chash if isinstance(chash, str) else None,
            database_reachable=reachable if isinstance(reachable, bool) else None,
        )

    # --- entities ------------------------------------------------------------------------------

    async def list_upstreams(self, *, workspace: str | None = None) -> list[Upstream]:
        path = self._path("/upstreams", workspace)
        items = await self._paged(path)
        try:
            return [Upstream.from_json(u) for u in items]
        except (TypeError, KeyError) as e:
            raise self._shape_error("GET", path, _Where(), items[:3], e) from e

    async def get_upstream(self, name: str, *, workspace: str | None = None) -> Upstream | None:
        path = self._path(f"/upstreams/{quote(name, safe='')}", workspace)
        where = _Where(upstream=name)
        try:
            _, body = await self._request("GET", path, where=where)
        except KongNotFound:
            return None
        try:
            return Upstream.from_json(body)
        except (TypeError, KeyError) as e:
            raise self._shape_error("GET", path, where, body, e) from e

    async def create_upstream(
        self,
        name: str,
        *,
        tags: Sequence[str] = (MANAGED_TAG,),
        workspace: str | None = None,
        may_write: MayWrite | None = None,
    ) -> Upstream:
        """POST a tagged upstream; if one by that name appeared meanwhile (409), return it."""
        path = self._path("/upstreams", workspace)
        where = _Where(upstream=name)
        try:
            _, body = await self._request(
                "POST",
                path,
                body={"name": name, "tags": list(tags)},
                where=where,
                may_write=may_write,
            )
        except KongConflict:
            existing = await self.get_upstream(name, workspace=workspace)
            if existing is None:
                raise
            return existing
        try:
            return Upstream.from_json(body)
        except (TypeError, KeyError) as e:
            raise self._shape_error("POST", path, where, body, e) from e

    def _targets_path(self, upstream: str, workspace: str | None, rest: str = "") -> str:
        return self._path(f"/upstreams/{quote(upstream, safe='')}/targets{rest}", workspace)

    async def list_targets(
        self, upstream: str, *, workspace: str | None = None, retry: RetryPolicy | None = None
    ) -> list[Target]:
        """Every target of ``upstream`` (pages of 1,000); KongNotFound when it does not exist."""
        path = self._targets_path(upstream, workspace)
        where = _Where(upstream=upstream)
        items = await self._paged(path, where=where, retry=retry)
        try:
            return [Target.from_json(t) for t in items]
        except (TypeError, KeyError) as e:
            raise self._shape_error("GET", path, where, items[:3], e) from e

    async def _target_call(
        self,
        method: str,
        path: str,
        body: Any,
        where: _Where,
        may_write: MayWrite | None,
        retry: RetryPolicy | None = None,
    ) -> Target:
        _, answer = await self._request(
            method, path, body=body, where=where, may_write=may_write, retry=retry
        )
        try:
            return Target.from_json(answer)
        except (TypeError, KeyError) as e:
            raise self._shape_error(method, path, where, answer, e) from e

    async def create_target(
        self,
        upstream: str,
        target: str,
        weight: int,
        *,
        tags: Sequence[str] = (),
        workspace: str | None = None,
        may_write: MayWrite | None = None,
        retry: RetryPolicy | None = None,
    ) -> Target:
        body = {"target": target, "weight": weight, "tags": list(tags)}
        path = self._targets_path(upstream, workspace)
        where = _Where(upstream, target)
        return await self._target_call("POST", path, body, where, may_write, retry)

    async def update_target(
        self,
        upstream: str,
        target_id: str,
        *,
        weight: int | None = None,
        tags: Sequence[str] | None = None,
        workspace: str | None = None,
        target: str | None = None,
        may_write: MayWrite | None = None,
        retry: RetryPolicy | None = None,
    ) -> Target:
        """PATCH a target by id (PUT on a target is not an upsert in Kong 3.x)."""
        body: dict[str, Any] = {}
        if weight is not None:
            body["weight"] = weight
        if tags is not None:
            body["tags"] = list(tags)
        path = self._targets_path(upstream, workspace, f"/{quote(target_id, safe='')}")
        where = _Where(upstream, target or target_id)
        return await self._target_call("PATCH", path, body, where, may_write, retry)

    async def delete_target(
        self,
        upstream: str,
        target_id: str,
        *,
        workspace: str | None = None,
        target: str | None = None,
        may_write: MayWrite | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """DELETE a target by id; already gone (404) counts as done."""
        path = self._targets_path(upstream, workspace, f"/{quote(target_id, safe='')}")
        with contextlib.suppress(KongNotFound):
            await self._request(
                "DELETE",
                path,
                where=_Where(upstream, target or target_id),
                may_write=may_write,
                retry=retry,
            )

    async def health(
        self, upstream: str, *, node_url: str | None = None, workspace: str | None = None
    ) -> list[TargetHealth]:
        """``GET /upstreams/{u}/health`` on one node: what its balancer really serves."""
        path = self._path(f"/upstreams/{quote(upstream, safe='')}/health", workspace)
        where = _Where(upstream=upstream)
        items = await self._paged(path, base=node_url, where=where)
        out = []
        try:
            for item in items:
                raw_data = item.get("data")
                health = item.get("health")
                row_weight = item.get("weight")
                data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
                raw_weights = data.get("weight")
                weights: dict[str, Any] = raw_weights if isinstance(raw_weights, dict) else {}
                addresses = data.get("addresses")
                out.append(
                    TargetHealth(
                        target=str(item["target"]),
                        health=health if isinstance(health, str) else None,
                        node_weight=_int_or_none(data.get("nodeWeight")),
                        weight=_int_or_none(row_weight),
                        addresses=len(addresses) if isinstance(addresses, list) else 0,
                        total_weight=_int_or_none(weights.get("total")),
                        available_weight=_int_or_none(weights.get("available")),
                        balanced="health" in item or "data" in item,
                    )
                )
        except (TypeError, KeyError, AttributeError) as e:
            raise self._shape_error("GET", path, where, items[:3], e) from e
        return out

    async def get_config(self) -> dict[str, Any]:
        """DB-less ``GET /config``: the node's whole declarative config, read as Kong's lyaml
        reads it (``configtext.load``, in a worker thread: a large config never stalls the
        loop)."""
        _, body = await self._request("GET", "/config")
        try:
            text = body["config"]
            if not isinstance(text, str):
                raise TypeError("config is not a string")
            config = await configtext.load_async(text)
            if not isinstance(config, dict):
                raise TypeError("config is not a mapping")
            return config
        except (TypeError, KeyError, configtext.KongYAMLError) as e:
            raise self._shape_error("GET", "/config", _Where(), body, e) from e

    async def post_config(self, text: str, *, may_write: MayWrite | None = None) -> bool:
        """DB-less ``POST /config?check_hash=1`` with ``text`` (JSON from
        ``configtext.dump_json``: cjson, Kong's first try, keeps every value's type) as the
        ``config`` string; Kong's hash of it is ``configtext.config_hash(text)``. False when Kong
        said 304 (that config is already loaded)."""
        status, _ = await self._request(
            "POST",
            "/config",
            params={"check_hash": "1"},
            body={"config": text},
            allow_304=True,
            may_write=may_write,
        )
        return status != 304


class _Described:
    """``METHOD /path (upstream u, target t)`` for messages, formatted only when one is."""

    __slots__ = ("method", "path", "where")

    def __init__(self, method: str, path: str, where: _Where) -> None:
        self.method, self.path, self.where = method, path, where

    def __str__(self) -> str:
        return KongAdmin._describe(self.method, self.path, self.where)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def budget_of(answer: bool | float) -> float:
    """A ``MayWrite`` answer in seconds."""
    if answer is True:
        return math.inf
    if answer is False:
        return 0.0
    return float(answer)


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _retryable(exc: BaseException) -> bool:
    # A certificate Kong or we reject will not get better by asking again.
    return isinstance(exc, KongUnavailable) and not isinstance(
        exc.__cause__, aiohttp.ClientSSLError
    )


def _wait_for(policy: RetryPolicy, *, retries_before: int = 0) -> Any:
    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = exc.retry_after if isinstance(exc, KongUnavailable) else None
        return policy.backoff(state.attempt_number + retries_before, retry_after)

    return wait


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
