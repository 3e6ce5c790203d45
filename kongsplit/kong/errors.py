"""The Kong client's error tree, and the words a user reads when Kong cannot be used.

``KongError`` is the root. Client errors (4xx) are not retried; ``KongUnavailable`` (no answer,
5xx, 429) is, by the one back-off policy. Every error carries the metric ``reason`` it is
counted under (``kongsplit_reconcile_errors_total{reason}``), so no caller maps errors to reasons
by reading their text. Messages never contain the admin token, and say what to do: see
``transport_failure`` and ``status_hint``.
"""

from __future__ import annotations

import errno
import json
import socket
import ssl
from urllib.parse import urlsplit

import aiohttp

#: Response bodies quoted in error messages are cut to this many characters.
BODY_LIMIT = 300


def cut(text: str, limit: int = BODY_LIMIT) -> str:
    """``text`` on one line, at most ``limit`` characters (bodies in messages stay small)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class KongError(Exception):
    """Anything that went wrong talking to Kong. Messages never contain the admin token."""

    #: The ``reason`` label this error is counted under in ``kongsplit_reconcile_errors_total``.
    reason = "kong_unavailable"

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
        upstream: str | None = None,
        target: str | None = None,
    ) -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        self.upstream = upstream
        self.target = target


class KongClientError(KongError):
    """Kong answered 4xx: the request itself is wrong, so it is not retried."""

    reason = "kong_client_error"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: int | None = None,
        name: str | None = None,
        kong_message: str | None = None,
        **about: str | None,  # method, path, upstream, target: as KongError
    ) -> None:
        super().__init__(message, **about)
        self.status = status
        self.code = code  # Kong's DAO error code (5 unique violation, 6 not found, 12 unsupported…)
        self.name = name
        self.kong_message = kong_message


class KongAuthError(KongClientError):
    """401/403: Kong refuses the admin token, or its RBAC role lacks the permission."""

    reason = "kong_auth"


class KongNotFound(KongClientError):
    """404: the upstream or target (or route) does not exist."""


class KongConflict(KongClientError):
    """409: a unique constraint (an upstream name, a target host:port) is already taken."""


class KongUnavailable(KongError):
    """No usable answer after the retries: 5xx, 429, connection error or timeout."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        **about: str | None,  # method, path, upstream, target: as KongError
    ) -> None:
        super().__init__(message, **about)
        self.status = status  # None when Kong did not answer at all
        self.retry_after = retry_after


class KongModeError(KongError):
    """The node runs in a mode kongsplit cannot write to (a hybrid data plane, Konnect)."""

    reason = "kong_client_error"


class KongResponseError(KongError):
    """Kong answered 2xx with a body kongsplit cannot use (not JSON, wrong shape)."""


class KongNotLeader(KongError):
    """A write was not sent: this replica may no longer write (it lost its leader Lease)."""


class KongNotReady(KongError):
    """A DB-less node reports the empty config hash: nothing to edit until its owner loads one."""

    reason = "kong_unavailable"  # Kong not usable yet (metrics.ERROR_REASONS, the runbook)


# --- what the user reads ------------------------------------------------------------------


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


def for_upstream(error: KongError, upstream: str) -> KongError:
    """``error`` as the waiter for ``upstream`` sees it: the same class, its upstream named."""
    # Not copy.copy: it rebuilds the exception from its args, and the classes with keyword-only
    # fields (status, code…) cannot be rebuilt so.
    mine = type(error).__new__(type(error))
    mine.__dict__.update(error.__dict__)
    mine.args = (f"{error} (upstream {upstream})",)
    mine.upstream = upstream
    mine.__cause__ = error
    return mine


def error_detail(text: str) -> tuple[str, int | None, str | None, str | None]:
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


def status_hint(
    method: str,
    path: str,
    status: int,
    answer: str,
    *,
    origin: str,
    token_configured: bool,
    workspace: str | None,
) -> str | None:
    """What the user should do about an answer that says the setup is wrong (one clause).

    ``origin`` is the Admin API's URL without credentials; ``answer`` Kong's message or body.
    """
    where = origin
    if status == 401:
        if token_configured:
            return (
                f"Kong at {where} refused the admin token; put a valid one in the file "
                "kong.tokenFile names (--token-file, KONGSPLIT_KONG_TOKEN_FILE)"
            )
        return (
            f"Kong at {where} requires an admin token (RBAC); give it in a file with "
            "kong.tokenFile (--token-file, KONGSPLIT_KONG_TOKEN_FILE)"
        )
    if status == 403:
        ws = f" in workspace {workspace}" if workspace else ""
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
