"""``KongAdmin``: kongsplit's only way to talk to the Kong Admin API.

It owns one aiohttp ``ClientSession`` for its whole life, one retry policy (tenacity, jittered
exponential back-off on connection errors, timeouts, 5xx and 429 — honouring ``Retry-After`` —
bounded in attempts and total time; other 4xx are never retried), the admin token (a value or
a file re-read when it changes, never logged), TLS (CA file, client certificate,
insecureSkipVerify), workspaces, metrics for every request, and the per-upstream cache of
target ids that makes a weight change one PATCH.

The write plan itself is pure and lives in ``kong_plan.py``; ``KongAdmin.apply`` runs it
against Kong: DB mode and hybrid control planes by entity writes, DB-less nodes by
``GET /config`` → edit → ``POST /config?check_hash=1``.

Target cache (the design the daemon relies on): ``KongAdmin.cache`` maps
``(workspace, upstream)`` to the targets last read or written there, keyed by target string.
``apply`` plans from the cache when it holds the upstream (no read on the hot path), updates it
from every write's answer, and drops and re-reads it when a write answers 404 or 409 (someone
else changed Kong). ``apply(..., refresh=True)`` — what a drift sweep does — and
``read_targets`` always read Kong (one GET per page of 1,000) and refill the cache. The daemon
calls ``cache.clear()`` after a Kong reconnect, and ``cache.forget(...)`` when it stops
managing an upstream. Applies to the same upstream are serialised by a per-upstream lock so
two plans never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import email.utils
import errno
import json
import logging
import os
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import yaml
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
)

from kongsplit.backoff import Backoff
from kongsplit.config import KongConfig, TLSConfig, redact_url
from kongsplit.kong_plan import (
    DRIFT_MISSING,
    ApplyResult,
    ConfigEdit,
    DesiredTarget,
    Drift,
    Plan,
    Write,
    WriteKind,
    apply_write,
    edit_config,
    foreign_targets,
    plan_writes,
)
from kongsplit.kong_types import (
    EMPTY_CONFIG_HASH,
    KongClientError,
    KongConflict,
    KongError,
    KongMode,
    KongModeError,
    KongNotFound,
    KongNotLeader,
    KongNotReady,
    KongResponseError,
    KongUnavailable,
    NodeInfo,
    NodeStatus,
    Target,
    TargetHealth,
    Upstream,
    cut,
    parse_mode,
)
from kongsplit.kongtarget import MANAGED_TAG, normalize_target, owner_tags_for
from kongsplit.metrics import Metrics, package_version

__all__ = [
    "EMPTY_CONFIG_HASH",
    "MANAGED_TAG",
    "ApplyResult",
    "DesiredTarget",
    "Drift",
    "KongAdmin",
    "KongClientError",
    "KongConflict",
    "KongError",
    "KongMode",
    "KongModeError",
    "KongNotFound",
    "KongNotLeader",
    "KongNotReady",
    "KongResponseError",
    "KongUnavailable",
    "NodeInfo",
    "NodeStatus",
    "RetryPolicy",
    "Target",
    "TargetCache",
    "TargetHealth",
    "TokenSource",
    "Upstream",
    "Write",
    "WriteKind",
    "normalize_target",
    "owner_tags_for",
]

log = logging.getLogger(__name__)

TOKEN_HEADER = "Kong-Admin-Token"
PAGE_SIZE = 1000  # Kong's maximum page size
DBLESS_COALESCE_SECONDS = 0.1  # at most one POST /config per node per this window

# Set by ``apply(may_write=...)``: asked before every write attempt, retries included, so a
# replica that lost its leader Lease mid-apply stops writing at once instead of finishing a
# plan (or a 30-second retry budget) on top of the new leader's weights.
_MAY_WRITE: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar(
    "kongsplit_may_write", default=None
)
_MAX_PAGES = 10_000  # a guard against a server whose offsets never end


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry a request Kong did not answer usefully (5xx, 429, no answer).

    Back-off before retry *n* (1-based) is the project's one policy (``kongsplit.backoff``):
    drawn from ``[b/2, b]`` with ``b = min(max_backoff, initial_backoff * 2**(n-1))``; a
    ``Retry-After`` header raises the
    wait to what Kong asked for (capped at ``max_retry_after``). No retry starts once
    ``max_elapsed`` seconds would be exceeded.
    """

    attempts: int = 5
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    max_elapsed: float = 30.0
    max_retry_after: float = 30.0

    def backoff(self, retry_number: int, retry_after: float | None = None) -> float:
        wait = Backoff(self.initial_backoff, self.max_backoff).delay(retry_number)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait


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
                    self._from_file = f.read().strip() or None
                self._stamp = stamp
                log.debug("read the Kong admin token file", extra={"path": self._file})
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


@dataclass
class _CacheEntry:
    upstream_id: str | None
    targets: dict[str, Target] = field(default_factory=dict)


class TargetCache:
    """Per ``(workspace, upstream)``: the targets last seen in Kong, by target string."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _CacheEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, workspace: str | None, upstream: str) -> dict[str, Target] | None:
        entry = self._entries.get((workspace or "", upstream))
        return None if entry is None else entry.targets

    def put(
        self, workspace: str | None, upstream: str, targets: Iterable[Target]
    ) -> dict[str, Target]:
        entry = _CacheEntry(None, {t.target: t for t in targets})
        self._entries[(workspace or "", upstream)] = entry
        return entry.targets

    def forget(self, workspace: str | None, upstream: str) -> None:
        self._entries.pop((workspace or "", upstream), None)

    def clear(self) -> None:
        self._entries.clear()


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
        create_upstreams: bool = True,
        exclusive_upstreams: bool = False,
        connection_limit: int = 100,
    ) -> None:
        self.url = url.rstrip("/")
        self.workspace = workspace or None
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.metrics = metrics
        self.create_upstreams = create_upstreams
        self.exclusive_upstreams = exclusive_upstreams
        self.cache = TargetCache()
        self.mode: KongMode | None = None
        self.node: NodeInfo | None = None
        self._token = TokenSource(token, token_file)
        self._ssl = build_ssl_context(tls or TLSConfig())
        self._connection_limit = connection_limit
        self._session: aiohttp.ClientSession | None = None
        self._answered = False  # Kong has answered at least once (so the URL's scheme is right)
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._request_counters: dict[tuple[str, str], Any] = {}
        # DB-less: edits wait here and are flushed together, one GET/POST /config per window.
        self._dbless_pending: dict[str, _PendingEdit] = {}
        self._dbless_flusher: asyncio.Task[None] | None = None
        self._dbless_last_post = -DBLESS_COALESCE_SECONDS
        self.own_config_hashes: deque[str] = deque(maxlen=32)  # DB-less: what our POSTs loaded

    @classmethod
    def from_config(
        cls, kong: KongConfig, *, metrics: Metrics | None = None, retry: RetryPolicy | None = None
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
            create_upstreams=kong.create_upstreams,
            exclusive_upstreams=kong.exclusive_upstreams,
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
        flusher, self._dbless_flusher = self._dbless_flusher, None
        if flusher is not None and not flusher.done():
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        for edit in self._dbless_pending.values():
            edit.fail(KongUnavailable("the Kong client was closed", method="POST", path="/config"))
        self._dbless_pending.clear()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

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

    def _status_hint(
        self, method: str, path: str, status: int, answer: str, *, base: str
    ) -> str | None:
        """What the user should do about an answer that says the setup is wrong (one clause)."""
        where = redact_url(base)
        if status == 401:
            if self._token.configured:
                return (
                    f"Kong at {where} refused the admin token; put a valid one in the file "
                    "kong.tokenFile names (--token-file, KONGSPLIT_KONG_TOKEN_FILE)"
                )
            return (
                f"Kong at {where} requires an admin token (RBAC); give it in a file with "
                "kong.tokenFile (--token-file, KONGSPLIT_KONG_TOKEN_FILE)"
            )
        if status == 403:
            ws = f" in workspace {self.workspace}" if self.workspace else ""
            return (
                f"the admin token may not {method} {path}{ws} on Kong at {where}; grant its RBAC "
                "role read and write on upstreams and targets (or use a token that has them)"
            )
        if status == 404 and path == "/":
            what = "Kong's proxy" if "no Route matched" in answer else "not a Kong Admin API"
            return (
                f"{where} is {what}; point kong.url (--kong-url) at the Admin API, usually "
                "port 8001 (http) or 8444 (https)"
            )
        if status == 400 and "plain HTTP request was sent to HTTPS port" in answer:
            return f"{where} speaks HTTPS: use https:// in kong.url (--kong-url)"
        return None

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
    ) -> tuple[int, Any]:
        if method != "GET":
            may_write = _MAY_WRITE.get()
            if may_write is not None and not may_write():
                raise KongNotLeader(
                    f"{self._describe(method, path, where)}: not sent, this replica is no "
                    "longer allowed to write (leadership lost)",
                    **where.about(method, path),
                )
        headers = {}
        token = self._token.current()
        if token:
            headers[TOKEN_HEADER] = token
        what = self._describe(method, path, where)
        started = time.perf_counter()
        try:
            async with self._session_get().request(
                method, url, params=params, json=body, headers=headers
            ) as resp:
                status = resp.status
                raw = await resp.read()
                retry_after = _retry_after(resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self._observe(method, "0", started)
            raise KongUnavailable(
                f"{what}: "
                + transport_failure(
                    e, url=redact_url(url), timeout=self.timeout, answered=self._answered
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
        detail, code, name, kong_message = _error_detail(text)
        message = f"{what}: Kong answered {status}{detail}"
        hint = self._status_hint(method, path, status, kong_message or text, base=url[: -len(path)])
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
            cls = {404: KongNotFound, 409: KongConflict}.get(status, KongClientError)
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
    ) -> tuple[int, Any]:
        """One logical request, retried per the policy; returns (status, parsed JSON or None)."""
        url = (base.rstrip("/") if base else self.url) + path
        policy = self.retry
        started = time.monotonic()

        # The first attempt runs outside tenacity: it is the hot path (a weight change is one
        # PATCH) and nearly always succeeds; the retry machinery is only built when it fails.
        async def attempt() -> tuple[int, Any]:
            return await self._attempt(
                method, url, path, params=params, body=body, where=where, allow_304=allow_304
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
            async for retry in retrying:
                with retry:
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
        self, path: str, *, base: str | None = None, where: _Where = _Where()
    ) -> list[Any]:
        """Every item of a collection, following pages of 1,000.

        Kong's ``next`` for nested collections drops ``size``, so the next URL is built from
        ``offset`` rather than followed as given.
        """
        items: list[Any] = []
        offset: str | None = None
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            params = {"size": str(PAGE_SIZE)}
            if offset is not None:
                params["offset"] = offset
            _, body = await self._request("GET", path, base=base, params=params, where=where)
            try:
                if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                    raise TypeError("no data list")
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
            f"GET {path}: more than {_MAX_PAGES} pages", method="GET", path=path
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
        self, name: str, *, tags: Sequence[str] = (MANAGED_TAG,), workspace: str | None = None
    ) -> Upstream:
        """POST a tagged upstream; if one by that name appeared meanwhile (409), return it."""
        path = self._path("/upstreams", workspace)
        where = _Where(upstream=name)
        try:
            _, body = await self._request(
                "POST", path, body={"name": name, "tags": list(tags)}, where=where
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

    async def list_targets(self, upstream: str, *, workspace: str | None = None) -> list[Target]:
        """Every target of ``upstream`` (pages of 1,000); KongNotFound when it does not exist."""
        path = self._targets_path(upstream, workspace)
        where = _Where(upstream=upstream)
        items = await self._paged(path, where=where)
        try:
            return [Target.from_json(t) for t in items]
        except (TypeError, KeyError) as e:
            raise self._shape_error("GET", path, where, items[:3], e) from e

    async def read_targets(
        self, upstream: str, *, workspace: str | None = None
    ) -> tuple[Target, ...] | None:
        """Fresh targets of ``upstream`` (None when the upstream is missing); refills the cache."""
        ws = workspace if workspace is not None else self.workspace
        try:
            targets = await self.list_targets(upstream, workspace=ws)
        except KongNotFound:
            self.cache.forget(ws, upstream)
            return None
        self.cache.put(ws, upstream, targets)
        return tuple(targets)

    async def _target_call(self, method: str, path: str, body: Any, where: _Where) -> Target:
        _, answer = await self._request(method, path, body=body, where=where)
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
    ) -> Target:
        body = {"target": target, "weight": weight, "tags": list(tags)}
        path = self._targets_path(upstream, workspace)
        return await self._target_call("POST", path, body, _Where(upstream, target))

    async def update_target(
        self,
        upstream: str,
        target_id: str,
        *,
        weight: int | None = None,
        tags: Sequence[str] | None = None,
        workspace: str | None = None,
        target: str | None = None,
    ) -> Target:
        """PATCH a target by id (PUT on a target is not an upsert in Kong 3.x)."""
        body: dict[str, Any] = {}
        if weight is not None:
            body["weight"] = weight
        if tags is not None:
            body["tags"] = list(tags)
        path = self._targets_path(upstream, workspace, f"/{quote(target_id, safe='')}")
        return await self._target_call("PATCH", path, body, _Where(upstream, target or target_id))

    async def delete_target(
        self,
        upstream: str,
        target_id: str,
        *,
        workspace: str | None = None,
        target: str | None = None,
    ) -> None:
        """DELETE a target by id; already gone (404) counts as done."""
        path = self._targets_path(upstream, workspace, f"/{quote(target_id, safe='')}")
        with contextlib.suppress(KongNotFound):
            await self._request("DELETE", path, where=_Where(upstream, target or target_id))

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
                data = item.get("data") or {}
                node_weight = data.get("nodeWeight")
                weight = item.get("weight")
                out.append(
                    TargetHealth(
                        target=str(item["target"]),
                        health=item.get("health") if isinstance(item.get("health"), str) else None,
                        node_weight=node_weight if isinstance(node_weight, int) else None,
                        weight=weight if isinstance(weight, int) else None,
                    )
                )
        except (TypeError, KeyError, AttributeError) as e:
            raise self._shape_error("GET", path, where, items[:3], e) from e
        return out

    async def get_config(self) -> dict[str, Any]:
        """DB-less ``GET /config``: the node's whole declarative config, parsed."""
        _, body = await self._request("GET", "/config")
        try:
            text = body["config"]
            if not isinstance(text, str):
                raise TypeError("config is not a string")
            config = yaml.safe_load(text)
            if not isinstance(config, dict):
                raise TypeError("config is not a mapping")
            return config
        except (TypeError, KeyError, yaml.YAMLError) as e:
            raise self._shape_error("GET", "/config", _Where(), body, e) from e

    async def post_config(
        self, config: Mapping[str, Any] | str, *, where: _Where = _Where()
    ) -> bool:
        """DB-less ``POST /config?check_hash=1`` in string form; False when Kong said 304 (same)."""
        text = config if isinstance(config, str) else yaml.safe_dump(dict(config), sort_keys=False)
        status, _ = await self._request(
            "POST",
            "/config",
            params={"check_hash": "1"},
            body={"config": text},
            where=where,
            allow_304=True,
        )
        return status != 304

    # --- apply ---------------------------------------------------------------------------------

    def forget_upstream(self, upstream: str, *, workspace: str | None = None) -> None:
        """Drop what is cached for an upstream no longer managed (ids, its idle lock)."""
        ws = workspace if workspace is not None else self.workspace
        self.cache.forget(ws, upstream)
        lock = self._locks.get((ws or "", upstream))
        if lock is not None and not lock.locked():
            del self._locks[(ws or "", upstream)]

    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def apply(
        self,
        upstream: str,
        desired: Sequence[DesiredTarget],
        *,
        owner_tags: Sequence[str],
        workspace: str | None = None,
        create_upstream: bool | None = None,
        exclusive: bool | None = None,
        refresh: bool = False,
        may_write: Callable[[], bool] | None = None,
    ) -> ApplyResult:
        """Make ``upstream`` hold ``desired`` (README "What it does", docs/weights.md "Write
        order"), in an order that never zeroes it.

        ``owner_tags`` are the tags of this Rollout's targets (``owner_tags_for(ns, name)``).
        ``create_upstream``/``exclusive`` default to the client's settings. ``refresh`` re-reads
        Kong instead of trusting the cache (drift sweeps). DB-less nodes are edited through
        ``/config``. ``may_write`` is asked before every write attempt (``KongNotLeader`` when
        it says no). Raises KongError subclasses; never writes when nothing differs.
        """
        ws = workspace if workspace is not None else self.workspace
        create = self.create_upstreams if create_upstream is None else create_upstream
        excl = self.exclusive_upstreams if exclusive is None else exclusive
        mode = await self.ensure_mode()
        guard = _MAY_WRITE.set(may_write)
        try:
            async with self._lock((ws or "", upstream)):
                if mode == KongMode.DBLESS:
                    return await self._apply_dbless(upstream, desired, owner_tags, create, excl)
                return await self._apply_db(
                    upstream, desired, owner_tags, ws, create, excl, refresh, mode
                )
        finally:
            _MAY_WRITE.reset(guard)

    async def _apply_db(
        self,
        upstream: str,
        desired: Sequence[DesiredTarget],
        owner_tags: Sequence[str],
        ws: str | None,
        create: bool,
        exclusive: bool,
        refresh: bool,
        mode: KongMode,
    ) -> ApplyResult:
        done: list[Write] = []
        drift: tuple[Drift, ...] | None = None
        upstream_created = False
        targets: dict[str, Target] | None = None
        passes = 3  # a stale cache costs one re-read; a racing writer one more
        for n in range(passes):
            targets = None if (refresh or n > 0) else self.cache.get(ws, upstream)
            if targets is None:
                read = await self.read_targets(upstream, workspace=ws)
                if read is None:
                    if not create:
                        missing = Drift(DRIFT_MISSING, None, None, None, corrected=False)
                        return ApplyResult(
                            upstream, ws, mode, drift=(missing,), upstream_missing=True
                        )
                    await self.create_upstream(upstream, workspace=ws)
                    upstream_created = True
                    read = ()
                targets = self.cache.put(ws, upstream, read)
            plan = plan_writes(
                targets.values(), desired, owner_tags=owner_tags, exclusive=exclusive
            )
            if drift is None:
                drift = plan.drift
                if upstream_created:
                    drift = (Drift(DRIFT_MISSING, None, None, None), *drift)
            try:
                await self._run_plan(upstream, ws, plan, targets, done)
                break
            except (KongNotFound, KongConflict) as e:
                # Someone else changed the upstream since we last read it: re-read and re-plan.
                self.cache.forget(ws, upstream)
                if n == passes - 1:
                    raise
                log.info(
                    "Kong changed under a write; re-reading the upstream",
                    extra={"upstream": upstream, "status": getattr(e, "status", None)},
                )
        # The dict the writes updated, not a cache lookup: the cache may be cleared meanwhile.
        final = targets or {}
        return ApplyResult(
            upstream,
            ws,
            mode,
            writes=tuple(done),
            targets=tuple(final.values()),
            foreign=foreign_targets(final.values(), owner_tags),
            drift=drift or (),
            upstream_created=upstream_created,
        )

    async def _run_plan(
        self,
        upstream: str,
        ws: str | None,
        plan: Plan,
        targets: dict[str, Target],
        done: list[Write],
    ) -> None:
        # Raises, then lowers; within a phase writes are independent and run concurrently.
        for phase in (plan.raises, plan.lowers):
            if not phase:
                continue
            results: list[Target | BaseException | None]
            if len(phase) == 1:  # the common case: no task to spawn for a single write
                try:
                    results = [await self._write(upstream, ws, phase[0])]
                except KongError as e:
                    results = [e]
            else:
                results = await asyncio.gather(
                    *(self._write(upstream, ws, w) for w in phase), return_exceptions=True
                )
            failure: BaseException | None = None
            for write, result in zip(phase, results, strict=True):
                if isinstance(result, BaseException):
                    failure = failure or result
                    continue
                apply_write(targets, write, result)
                done.append(write)
            if failure is not None:
                raise failure

    async def _write(self, upstream: str, ws: str | None, w: Write) -> Target | None:
        if w.kind == WriteKind.CREATE:
            assert w.weight is not None
            return await self.create_target(
                upstream, w.target, w.weight, tags=w.tags or (), workspace=ws
            )
        assert w.target_id is not None
        if w.kind == WriteKind.DELETE:
            await self.delete_target(upstream, w.target_id, workspace=ws, target=w.target)
            return None
        return await self.update_target(
            upstream, w.target_id, weight=w.weight, tags=w.tags, workspace=ws, target=w.target
        )

    async def _apply_dbless(
        self,
        upstream: str,
        desired: Sequence[DesiredTarget],
        owner_tags: Sequence[str],
        create: bool,
        exclusive: bool,
    ) -> ApplyResult:
        """Queue this upstream's edit for the next ``/config`` round trip and wait for it.

        DB-less Kong takes only whole configurations, so two upstreams edited by separate
        GET → edit → POST rounds would overwrite each other. Every pending edit is applied to
        one GET of the config and sent in one POST, at most once per
        ``DBLESS_COALESCE_SECONDS`` per node (docs/sidecar.md): an abort waits no longer than that.
        """
        loop = asyncio.get_running_loop()
        edit = _PendingEdit(
            tuple(desired), tuple(owner_tags), create, exclusive, loop.create_future()
        )
        previous = self._dbless_pending.get(upstream)
        if previous is not None:  # a newer desired state for the same upstream wins
            edit.waiters.extend(previous.waiters)
        self._dbless_pending[upstream] = edit
        if self._dbless_flusher is None or self._dbless_flusher.done():
            self._dbless_flusher = asyncio.create_task(
                self._flush_dbless(), name="kong-dbless-flush"
            )
        return await asyncio.shield(edit.future)

    async def _flush_dbless(self) -> None:
        while self._dbless_pending:
            wait = self._dbless_last_post + DBLESS_COALESCE_SECONDS - time.monotonic()
            await asyncio.sleep(max(wait, 0.0))
            batch, self._dbless_pending = self._dbless_pending, {}
            try:
                results = await self._post_batch(batch)
            except KongError as e:
                # One round trip served every upstream of the batch: each waiter is told the
                # failure with its own upstream named, never the batch's first one.
                for upstream, edit in batch.items():
                    edit.fail(_for_upstream(e, upstream))
            except Exception as e:  # a bug: every waiter learns of it, the flusher survives
                for edit in batch.values():
                    edit.fail(e)
            else:
                for upstream, edit in batch.items():
                    if upstream in results:  # the others were failed individually
                        edit.resolve(results[upstream])
            finally:
                self._dbless_last_post = time.monotonic()

    async def _post_batch(self, batch: dict[str, _PendingEdit]) -> dict[str, ApplyResult]:
        # Never edit a node that has not loaded its owner's config yet: posting onto the empty
        # hash would make kongsplit's few targets the node's whole configuration.
        status = await self.status()
        if status.configuration_hash == EMPTY_CONFIG_HASH:
            raise KongNotReady(
                f"Kong at {self.display_url} has no configuration loaded yet "
                "(configuration_hash is empty); not editing it until its owner "
                "(declarative_config or Kong Ingress Controller) loads one"
            )
        base = await self.get_config()
        # Each upstream's edit is checked on its own: one malformed entry in Kong's config (or
        # one bad desired state) fails only that upstream's waiters, never the whole batch —
        # an abort must not wait behind someone else's garbage. Edits change the config in
        # place, so a failure restarts from a fresh copy without the failing upstream.
        while True:
            config = copy.deepcopy(base)
            edits: dict[str, ConfigEdit] = {}
            failed: str | None = None
            for upstream, pending in batch.items():
                try:
                    edits[upstream] = edit_config(
                        config,
                        upstream,
                        pending.desired,
                        owner_tags=pending.owner_tags,
                        create_upstream=pending.create,
                        exclusive=pending.exclusive,
                    )
                except (TypeError, KeyError, ValueError) as e:
                    pending.fail(
                        KongResponseError(
                            f"GET /config (upstream {upstream}): the declarative config has an "
                            f"unexpected shape ({e})",
                            method="GET",
                            path="/config",
                            upstream=upstream,
                        )
                    )
                    failed = upstream
                    break
            if failed is None:
                break
            batch = {u: p for u, p in batch.items() if u != failed}
            if not batch:
                return {}
        changed = any(e.plan.writes or e.upstream_created for e in edits.values())
        posted = False
        if changed:
            posted = await self.post_config(config)
            if posted:
                # Remember the hash this POST produced, so a watcher of /status can tell our
                # writes from another writer's (one read per POST, not one per upstream).
                with contextlib.suppress(KongError):
                    own = (await self.status()).configuration_hash
                    if own:
                        self.own_config_hashes.append(own)
        results: dict[str, ApplyResult] = {}
        for upstream, edit in edits.items():
            targets = tuple(edit.targets.values())
            pending = batch[upstream]
            if edit.upstream_missing:
                results[upstream] = ApplyResult(
                    upstream, None, KongMode.DBLESS, drift=edit.plan.drift, upstream_missing=True
                )
                continue
            wrote = bool(edit.plan.writes or edit.upstream_created)
            results[upstream] = ApplyResult(
                upstream,
                None,
                KongMode.DBLESS,
                writes=edit.plan.writes if wrote else (),
                targets=targets,
                foreign=foreign_targets(targets, pending.owner_tags),
                drift=edit.plan.drift,
                upstream_created=edit.upstream_created,
                config_posted=posted and wrote,
            )
        return results


@dataclass
class _PendingEdit:
    """One upstream's edit waiting for the next DB-less ``/config`` round trip."""

    desired: tuple[DesiredTarget, ...]
    owner_tags: tuple[str, ...]
    create: bool
    exclusive: bool
    future: asyncio.Future[ApplyResult]
    waiters: list[asyncio.Future[ApplyResult]] = field(default_factory=list)

    def resolve(self, result: ApplyResult) -> None:
        for fut in (self.future, *self.waiters):
            if not fut.done():
                fut.set_result(result)

    def fail(self, error: BaseException) -> None:
        for fut in (self.future, *self.waiters):
            if not fut.done():
                fut.set_exception(error)


# --- helpers --------------------------------------------------------------------------------------


def transport_failure(
    error: BaseException, *, url: str, timeout: float, answered: bool = False
) -> str:
    """Why a request got no answer, in the user's words, with the likely fix (one clause).

    ``url`` is the request URL with any credentials already removed; ``answered`` says that
    this Kong has answered before (so a dropped connection is not a wrong scheme).
    """
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    host = parts.hostname or ""
    if isinstance(error, TimeoutError):
        return (
            f"no answer from Kong at {origin} within {timeout:g}s; is the Admin API overloaded or "
            "firewalled? (raise kong.timeoutSeconds if it is only slow)"
        )
    ssl_error = _ssl_cause(error)
    if ssl_error is not None:
        text = str(getattr(ssl_error, "reason", None) or ssl_error)
        if "WRONG_VERSION_NUMBER" in text.upper() or "wrong version number" in text:
            return f"{origin} does not speak TLS: use http:// in kong.url (--kong-url)"
        if isinstance(ssl_error, ssl.SSLCertVerificationError):
            detail = getattr(ssl_error, "verify_message", None) or "certificate not trusted"
            if "hostname" in str(detail).lower() or "IP address mismatch" in str(detail):
                return (
                    f"Kong's certificate at {origin} is not for {host} ({detail}); use the name "
                    "on the certificate in kong.url"
                )
            return (
                f"Kong's certificate at {origin} is not trusted ({detail}); set kong.tls.caFile "
                "to the CA that signed it"
            )
        return f"the TLS handshake with {origin} failed ({cut(text, 120)}); check kong.tls.*"
    os_error = getattr(error, "os_error", None) or (error if isinstance(error, OSError) else None)
    errno_ = getattr(os_error, "errno", None)
    if isinstance(error, aiohttp.ClientConnectorDNSError) or errno_ in _DNS_ERRNOS:
        return f"cannot resolve the host {host!r} of kong.url ({origin}); check the name"
    if errno_ == errno.ECONNREFUSED:
        return (
            f"connection refused by {parts.netloc}; is Kong's Admin API listening there? "
            "(check kong.url / --kong-url and Kong's admin_listen)"
        )
    if isinstance(error, aiohttp.ServerDisconnectedError):
        if parts.scheme == "http" and not answered:
            return (
                f"Kong at {origin} closed the connection without answering; if that port is "
                "Kong's HTTPS Admin API (8444 by default), use https:// in kong.url"
            )
        return f"Kong at {origin} closed the connection without answering"
    if isinstance(error, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return f"Kong at {origin} sent an answer that was cut short or malformed"
    reason = getattr(os_error, "strerror", None) or "connection failed"
    return f"cannot reach Kong at {origin} ({reason}); check kong.url (--kong-url)"


_DNS_ERRNOS = {socket.EAI_NONAME, socket.EAI_AGAIN, getattr(socket, "EAI_NODATA", -5)}


def _ssl_cause(error: BaseException) -> ssl.SSLError | None:
    """The ssl error behind an aiohttp connection error, if there is one."""
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            return None
        # aiohttp's certificate error is itself an ssl error, but the verification message
        # lives on the one it wraps.
        inner = getattr(seen, "certificate_error", None)
        if isinstance(inner, ssl.SSLError):
            return inner
        if isinstance(seen, ssl.SSLError):
            return seen
        nxt = getattr(seen, "os_error", None)
        seen = nxt if isinstance(nxt, BaseException) else seen.__cause__ or seen.__context__
    return None


def _for_upstream(error: KongError, upstream: str) -> KongError:
    """``error`` as the waiter for ``upstream`` sees it: the same class, its upstream named."""
    mine = copy.copy(error)
    mine.args = (f"{error} (upstream {upstream})",)
    mine.upstream = upstream
    mine.__cause__ = error
    return mine


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


def _error_detail(text: str) -> tuple[str, int | None, str | None, str | None]:
    """(`` <name>: "<message>"`` for messages, code, name, message) from an error body."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        code = body.get("code") if isinstance(body.get("code"), int) else None
        name = body.get("name") if isinstance(body.get("name"), str) else None
        message = body["message"]
        label = f" {name}" if name else ""
        return f"{label}: {cut(message)!r}", code, name, message
    return (f": {cut(text)!r}" if text.strip() else ""), None, None, None
