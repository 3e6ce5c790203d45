"""The Kubernetes API client: construction, one JSON request helper, one error hierarchy.

Everything kongsplit sends to Kubernetes goes through :func:`request` (or :func:`open_stream`
for watches), on top of kubernetes-asyncio's ``ApiClient.call_api`` with ``_preload_content``
off: the client still does authentication (bearer tokens, in-cluster token refresh, client
certificates) and TLS, but we read the raw JSON ourselves. So objects reach the rest of the
daemon as the API sent them (camelCase dicts), not as generated model objects, and every
failure surfaces as a :class:`KubeError` that says whether the server answered.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

logger = logging.getLogger(__name__)

# A request (not a watch) that takes longer than this has failed.
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10)
_BODY_LIMIT = 300  # characters of an unparseable error body kept in a message

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


class KubeError(Exception):
    """Base of every failure talking to the Kubernetes API."""


class KubeConfigError(KubeError):
    """No usable client configuration (kubeconfig file, ``KUBECONFIG`` or in-cluster)."""


class KubeUnavailable(KubeError):
    """No answer: connection refused or reset, TLS failure, timeout."""


class KubeApiError(KubeError):
    """The API server answered with an error status (its ``Status`` body, when it sent one)."""

    def __init__(self, status: int, reason: str = "", message: str = "") -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")

    @classmethod
    def from_body(cls, status: int, body: bytes) -> KubeApiError:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("kind") == "Status":
            return cls(status, str(data.get("reason") or ""), str(data.get("message") or ""))
        text = body.decode("utf-8", "replace").strip()
        return cls(status, "", text[:_BODY_LIMIT])

    @property
    def retriable(self) -> bool:
        """Worth trying again later: server-side trouble or throttling, not our mistake."""
        return self.status >= 500 or self.status == 429


async def make_api_client(
    kubeconfig: str | None, *, context: str | None = None
) -> k8s_client.ApiClient:
    """An ``ApiClient`` from an explicit kubeconfig file, else ``$KUBECONFIG``, else in-cluster,
    else ``~/.kube/config``; ``context`` picks a kubeconfig context (default: the current one).

    The caller owns the client and must ``await client.close()`` (it holds an aiohttp session).
    """
    cfg = k8s_client.Configuration()
    source = kubeconfig or os.environ.get("KUBECONFIG") or None
    origin = "--kubeconfig" if kubeconfig else "KUBECONFIG"
    if source is None and (context or not os.environ.get("KUBERNETES_SERVICE_HOST")):
        # A context names a kubeconfig entry, so it never means the in-cluster account.
        default = _home_kubeconfig()
        if default is not None:
            source, origin = default, "the default location"
        elif context:
            raise KubeConfigError(
                f"context {context!r}: no kubeconfig to find it in: pass --kubeconfig or set "
                "KUBECONFIG"
            )
    if source:
        if not _any_exists(source):
            raise KubeConfigError(f"kubeconfig {source!r} (from {origin}): no such file")
        try:
            # persist_config off: never write token refreshes back into the user's file (and
            # the pod's root filesystem is read-only).
            await k8s_config.load_kube_config(
                config_file=source,
                context=context,
                client_configuration=cfg,
                persist_config=False,
            )
        except (k8s_config.ConfigException, OSError, ValueError, KeyError, TypeError) as e:
            if context and f"Expected object with name {context} in" in str(e):
                raise KubeConfigError(
                    f"kubeconfig {source!r} (from {origin}) has no context {context!r}"
                ) from e
            raise KubeConfigError(f"kubeconfig {source!r} (from {origin}): {e}") from e
        logger.debug("kubernetes client from kubeconfig", extra={"kubeconfig": source})
    else:
        try:
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException as e:
            raise KubeConfigError(
                "no Kubernetes configuration: pass --kubeconfig (or kubernetes.kubeconfig), "
                "set KUBECONFIG, create ~/.kube/config, or run in a pod with a service account "
                f"({e})"
            ) from e
        logger.debug("kubernetes client from the in-cluster service account")
    return k8s_client.ApiClient(configuration=cfg)


def _home_kubeconfig() -> str | None:
    """``~/.kube/config`` when it exists (kubectl's default)."""
    path = os.path.expanduser(os.path.join("~", ".kube", "config"))
    return path if os.path.exists(path) else None


def _any_exists(paths: str) -> bool:
    """KUBECONFIG may list several files (``a:b``); kubernetes-asyncio merges those that exist."""
    return any(os.path.exists(os.path.expanduser(p)) for p in paths.split(os.pathsep) if p)


def api_path(
    group: str, version: str, plural: str, namespace: str | None = None, name: str | None = None
) -> str:
    """``/api/v1/...`` for the core group, ``/apis/<group>/<version>/...`` for the others."""
    path = f"/apis/{group}/{version}" if group else f"/api/{version}"
    if namespace:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    if name:
        path += f"/{name}"
    return path


def _query(query: Mapping[str, str | int | bool | None] | None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in (query or {}).items():
        if value is None:
            continue
        out.append((key, ("true" if value else "false") if isinstance(value, bool) else str(value)))
    return out


async def _send(
    api: k8s_client.ApiClient,
    method: str,
    path: str,
    *,
    query: Mapping[str, str | int | bool | None] | None,
    body: Any,
    content_type: str,
    client_timeout: aiohttp.ClientTimeout,
) -> aiohttp.ClientResponse:
    try:
        response: aiohttp.ClientResponse = await api.call_api(
            path,
            method,
            query_params=_query(query),
            header_params={"Content-Type": content_type, "Accept": JSON},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=client_timeout,
        )
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        raise KubeUnavailable(f"{method} {path}: {type(e).__name__}: {e}") from e
    return response


async def request(
    api: k8s_client.ApiClient,
    method: str,
    path: str,
    *,
    query: Mapping[str, str | int | bool | None] | None = None,
    body: Any = None,
    content_type: str = JSON,
    client_timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """One JSON request; the parsed body on 2xx, else :class:`KubeApiError`."""
    response = await _send(
        api,
        method,
        path,
        query=query,
        body=body,
        content_type=content_type,
        client_timeout=client_timeout,
    )
    try:
        async with response:
            data = await response.read()
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        raise KubeUnavailable(f"{method} {path}: {type(e).__name__}: {e}") from e
    if not 200 <= response.status < 300:
        raise KubeApiError.from_body(response.status, data)
    try:
        parsed = json.loads(data) if data else {}
    except ValueError as e:
        raise KubeApiError(response.status, "BadResponse", f"not JSON: {data[:100]!r}") from e
    if not isinstance(parsed, dict):
        raise KubeApiError(response.status, "BadResponse", "expected a JSON object")
    return parsed


async def open_stream(
    api: k8s_client.ApiClient,
    path: str,
    *,
    query: Mapping[str, str | int | bool | None] | None,
    client_timeout: aiohttp.ClientTimeout,
) -> aiohttp.ClientResponse:
    """A GET whose body the caller streams (watches); :class:`KubeApiError` unless 2xx.

    The caller must release the response (``async with``).
    """
    response = await _send(
        api, "GET", path, query=query, body=None, content_type=JSON, client_timeout=client_timeout
    )
    if not 200 <= response.status < 300:
        try:
            async with response:
                data = await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise KubeUnavailable(f"GET {path}: {type(e).__name__}: {e}") from e
        raise KubeApiError.from_body(response.status, data)
    return response


def format_micro_time(when: datetime | None = None) -> str:
    """A Kubernetes ``MicroTime``: RFC 3339, UTC, six fractional digits."""
    when = when or datetime.now(UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_time(when: datetime | None = None) -> str:
    """A Kubernetes ``Time``: RFC 3339, UTC, whole seconds."""
    when = when or datetime.now(UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
