"""The Kubernetes API client: construction, one JSON request helper, one error hierarchy.

Everything kongsplit sends to Kubernetes goes through :func:`request` (or :func:`open_stream`
for watches), on top of kubernetes-asyncio's ``ApiClient.call_api`` with ``_preload_content``
off: the client still does authentication (bearer tokens, in-cluster token refresh, client
certificates) and TLS, but we read the raw JSON ourselves. So objects reach the rest of the
daemon as the API sent them (camelCase dicts), not as generated model objects, and every
failure surfaces as a :class:`KubeError` that says whether the server answered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import yaml
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from kongsplit.config import yaml_problem

logger = logging.getLogger(__name__)

# A request (not a watch) that takes longer than this has failed.
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10)
_BODY_LIMIT = 300  # characters of an unparseable error body kept in a message

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"

_WS = re.compile(r"[ \t\n\r]*")
#: json's own string scanner (C): a JSON string body at an index → (text, index after it).
_scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def loads_nested(data: bytes | str) -> Any:
    """JSON → Python without recursion: the same values ``json.loads`` gives, for any depth.

    ``json.loads`` recurses once per nesting level and raises ``RecursionError`` past about a
    thousand; the API server stores deeper objects (a custom resource's free-form fields), so a
    watch or list of one would otherwise fail every time. Only used when ``json.loads`` gave up
    (see :func:`decode`): this loop is pure Python. Raises ``ValueError`` on anything that is
    not JSON.
    """
    text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    stack: list[dict[str, Any] | list[Any]] = []  # the open containers
    keys: list[str] = []  # the key each open object's next value goes under
    idx = _ws(text, 0)
    value: Any
    while True:
        # One value starts at idx: a scalar is read whole, a container is opened.
        ch = text[idx : idx + 1]
        if ch in ("{", "["):
            idx = _ws(text, idx + 1)
            closer = "}" if ch == "{" else "]"
            if text.startswith(closer, idx):
                value, idx = ({} if ch == "{" else []), idx + 1
            elif ch == "[":
                stack.append([])
                continue
            else:
                stack.append({})
                key, idx = _key_at(text, idx)
                keys.append(key)
                continue
        elif ch == '"':
            value, idx = _scanstring(text, idx + 1)
        elif text.startswith("null", idx):
            value, idx = None, idx + 4
        elif text.startswith("true", idx):
            value, idx = True, idx + 4
        elif text.startswith("false", idx):
            value, idx = False, idx + 5
        else:
            m = _NUMBER.match(text, idx)
            if m is None:
                raise ValueError(f"not JSON at character {idx}")
            value = float(m.group(0)) if m.group(1) or m.group(2) else int(m.group(0))
            idx = m.end()
        # A value is complete: add it to its container; close the containers that end here.
        while True:
            idx = _ws(text, idx)
            if not stack:
                if idx != len(text):
                    raise ValueError(f"extra data at character {idx}")
                return value
            top = stack[-1]
            if isinstance(top, dict):
                top[keys[-1]] = value
            else:
                top.append(value)
            ch = text[idx : idx + 1]
            if ch == ",":
                idx = _ws(text, idx + 1)
                if isinstance(top, dict):
                    keys[-1], idx = _key_at(text, idx)
                break  # the next value of this container
            if ch != ("}" if isinstance(top, dict) else "]"):
                raise ValueError(f"not JSON at character {idx}")
            idx += 1
            value = stack.pop()
            if isinstance(value, dict):
                keys.pop()


def _ws(text: str, idx: int) -> int:
    """Where the JSON whitespace starting at ``idx`` ends."""
    m = _WS.match(text, idx)
    return m.end() if m is not None else idx


def _key_at(text: str, idx: int) -> tuple[str, int]:
    """An object's ``"key":`` at idx → (key, where its value starts)."""
    if not text.startswith('"', idx):
        raise ValueError(f"not JSON at character {idx}: expected a key")
    key, idx = _scanstring(text, idx + 1)
    idx = _ws(text, idx)
    if not text.startswith(":", idx):
        raise ValueError(f"not JSON at character {idx}: expected ':'")
    return key, _ws(text, idx + 1)


async def decode(data: bytes) -> Any:
    """JSON from the API server, however deeply nested (:func:`loads_nested` off the event loop
    when ``json.loads`` runs out of recursion). Raises ``ValueError`` if it is not JSON."""
    try:
        return json.loads(data)
    except RecursionError:
        return await asyncio.to_thread(loads_nested, data)


def no_answer(error: BaseException) -> str:
    """Why a request got no answer, in words (never a library's class name)."""
    if isinstance(error, TimeoutError):
        return "no answer in time"
    if isinstance(error, aiohttp.ClientConnectorError):
        reason = error.os_error.strerror or "connection failed"
        return f"cannot connect to {error.host}:{error.port} ({reason})"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(error, aiohttp.ClientPayloadError):
        return "the answer was cut short"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = " ".join(str(error).split())
    return text or "connection failed"


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
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict) and data.get("kind") == "Status":
            return cls(status, str(data.get("reason") or ""), str(data.get("message") or ""))
        text = body.decode("utf-8", "replace").strip()
        return cls(status, "", text[:_BODY_LIMIT])

    @property
    def retriable(self) -> bool:
        """Worth trying again later: server-side trouble or throttling, not our mistake."""
        return self.status >= 500 or self.status == 429


@dataclass(frozen=True)
class KubeSource:
    """Where the client's configuration comes from, found the way kubectl finds it."""

    files: tuple[str, ...]  # kubeconfig files, merged in order; empty: the pod's service account
    context: str | None  # the context used (always set with files)
    origin: str  # what named the files: --kubeconfig, $KUBECONFIG, ~/.kube/config, in-cluster
    #: The namespace a command without ``-n`` uses, as kubectl picks it: the context's
    #: ``namespace``, in a pod the service account's namespace, else ``default``.
    namespace: str = "default"

    def describe(self) -> str:
        if not self.files:
            return "the pod's service account"
        return f"kubeconfig {_shown(self.files)} (context {self.context})"


def _shown(files: tuple[str, ...] | list[str]) -> str:
    return os.pathsep.join(files)


def resolve_source(
    kubeconfig: str | None,
    *,
    context: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> KubeSource:
    """``kubeconfig`` (``--kubeconfig``), else ``$KUBECONFIG`` (a list of files, merged), else
    ``~/.kube/config`` when it exists, else the pod's service account; ``context`` overrides the
    kubeconfig's current-context. Every dead end is a :class:`KubeConfigError` of one line that
    names the file or context and what to give instead.
    """
    env = os.environ if environ is None else environ
    home_config = os.path.join(os.path.expanduser("~"), ".kube", "config")
    if kubeconfig:
        files = _existing(kubeconfig)
        if not files:
            raise KubeConfigError(
                f"kubeconfig {kubeconfig} does not exist (given by --kubeconfig or "
                "kubernetes.kubeconfig): give the path of an existing file"
            )
        origin = "--kubeconfig"
    elif env.get("KUBECONFIG"):
        files = _existing(env["KUBECONFIG"])
        if not files:
            several = os.pathsep in env["KUBECONFIG"].strip(os.pathsep)
            raise KubeConfigError(
                f"no kubeconfig found: $KUBECONFIG is {env['KUBECONFIG']} and "
                + ("none of these files exists" if several else "that file does not exist")
                + ": fix $KUBECONFIG or give --kubeconfig FILE"
            )
        origin = "$KUBECONFIG"
    elif os.path.exists(home_config):
        files, origin = [home_config], "~/.kube/config"
    elif env.get("KUBERNETES_SERVICE_HOST"):
        if context:
            raise KubeConfigError(
                f"--context {context} needs a kubeconfig, and there is none ({home_config} does "
                "not exist, $KUBECONFIG is unset): give --kubeconfig FILE, or leave --context out "
                "to use the pod's service account"
            )
        return KubeSource((), None, "in-cluster", _pod_namespace())
    else:
        raise KubeConfigError(
            f"no kubeconfig found ({home_config} does not exist, $KUBECONFIG is unset) and not "
            "running in a pod: give --kubeconfig FILE"
        )
    names, current, namespaces = _contexts(files)
    shown = _shown(files)
    listed = f"its contexts: {', '.join(names)}" if names else "it has no contexts"
    if context:
        if context not in names:
            raise KubeConfigError(
                f"kubeconfig {shown} has no context {context!r} ({listed}): "
                "give --context one of them"
            )
        return KubeSource(tuple(files), context, origin, namespaces.get(context) or "default")
    if not current:
        raise KubeConfigError(
            f"kubeconfig {shown} names no current-context ({listed}): give --context NAME"
        )
    if current not in names:
        raise KubeConfigError(
            f"kubeconfig {shown}: its current-context {current!r} is not one of its contexts "
            f"({listed}): give --context NAME, or fix it with kubectl config use-context"
        )
    return KubeSource(tuple(files), current, origin, namespaces.get(current) or "default")


#: Where a pod's service account token sits, with the pod's namespace beside it.
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _pod_namespace() -> str:
    """The pod's own namespace (kubectl's default in a pod), else ``default``."""
    try:
        with open(os.path.join(SERVICE_ACCOUNT_DIR, "namespace"), encoding="utf-8") as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


def _existing(paths: str) -> list[str]:
    """The files of a kubeconfig list (``a:b``, as ``KUBECONFIG`` allows) that exist."""
    expanded = (os.path.expanduser(p) for p in paths.split(os.pathsep) if p)
    return [p for p in expanded if os.path.exists(p)]


def context_names(files: Sequence[str]) -> list[str]:
    """Every context named across the kubeconfig ``files`` (for completion)."""
    return _contexts(list(files))[0]


def _contexts(files: list[str]) -> tuple[list[str], str | None, dict[str, str]]:
    """Context names across ``files``, the current-context and each context's namespace (the
    first file naming one wins, as in kubectl)."""
    names: list[str] = []
    current: str | None = None
    namespaces: dict[str, str] = {}
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        except OSError as e:
            raise KubeConfigError(f"kubeconfig {path}: cannot read it: {e.strerror or e}") from e
        except yaml.YAMLError as e:
            raise KubeConfigError(f"kubeconfig {path}: not valid YAML at {yaml_problem(e)}") from e
        if data is None:
            continue
        if not isinstance(data, dict):
            raise KubeConfigError(f"kubeconfig {path}: expected a mapping, not a kubeconfig")
        for item in data.get("contexts") or []:
            if isinstance(item, dict) and item.get("name") and item["name"] not in names:
                names.append(str(item["name"]))
                body = item.get("context")
                ns = body.get("namespace") if isinstance(body, dict) else None
                if isinstance(ns, str) and ns:
                    namespaces[str(item["name"])] = ns
        if not current and data.get("current-context"):
            current = str(data["current-context"])
    return names, current, namespaces


async def make_api_client(
    kubeconfig: str | None, *, context: str | None = None
) -> k8s_client.ApiClient:
    """An ``ApiClient`` from :func:`resolve_source` (``--kubeconfig``, ``$KUBECONFIG``,
    ``~/.kube/config``, in-cluster), with ``context`` instead of the current-context if given.

    The caller owns the client and must ``await client.close()`` (it holds an aiohttp session).
    """
    return await client_for(resolve_source(kubeconfig, context=context))


async def client_for(source: KubeSource) -> k8s_client.ApiClient:
    """An ``ApiClient`` for a resolved source; the caller must ``await client.close()``."""
    cfg = k8s_client.Configuration()
    if source.files:
        held = _HeldLogs()
        _LOADER_LOG.addFilter(held)
        try:
            # persist_config off: never write token refreshes back into the user's file (and
            # the pod's root filesystem is read-only).
            await k8s_config.load_kube_config(
                config_file=_shown(source.files),
                context=source.context,
                client_configuration=cfg,
                persist_config=False,
            )
        except _LOADER_ERRORS as e:
            # The loader logs the error it then raises: the one line below says it instead.
            raise KubeConfigError(
                f"{source.describe()}: cannot use it: {_plain(e)}: fix the kubeconfig "
                "(kubectl config view shows it)"
            ) from e
        finally:
            _LOADER_LOG.removeFilter(held)
        held.release()  # loaded: what it logged on the way (an exec plugin's odd output) stands
        logger.debug(
            "kubernetes client from kubeconfig",
            extra={"kubeconfig": _shown(source.files), "context": source.context},
        )
    else:
        try:
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException as e:
            raise KubeConfigError(
                "running in a pod ($KUBERNETES_SERVICE_HOST is set) but its service account "
                f"cannot be used ({_plain(e)}): mount its token (automountServiceAccountToken) "
                "or give --kubeconfig FILE"
            ) from e
        logger.debug("kubernetes client from the in-cluster service account")
    _drop_url_credentials(cfg)
    return k8s_client.ApiClient(configuration=cfg)


def _drop_url_credentials(cfg: k8s_client.Configuration) -> None:
    """A server URL with ``user:password@`` and a token too: the token is what kubectl sends
    (Go's HTTP client uses a URL's userinfo only when no Authorization header is set), and
    aiohttp refuses both at once; so the URL's credentials go."""
    parts = urlsplit(str(cfg.host or ""))
    if "@" in parts.netloc and cfg.api_key.get("BearerToken"):
        cfg.host = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


#: kubernetes-asyncio's kubeconfig loader, which logs an error before raising it.
_LOADER_LOG = logging.getLogger("kubernetes_asyncio.config.kube_config")


class _HeldLogs(logging.Filter):
    """Holds the loader's records back while it runs: dropped when it raises (the error is
    said once, as a KubeConfigError), handled as usual when it succeeds."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False

    def release(self) -> None:
        for record in self.records:
            _LOADER_LOG.handle(record)
        self.records.clear()


# What kubernetes-asyncio's kubeconfig loader raises on a file it cannot use (it asserts, too).
_LOADER_ERRORS = (
    k8s_config.ConfigException,
    OSError,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    AssertionError,
)


def _plain(error: BaseException) -> str:
    """A loader error in words: never its class name, never a bare ``'key'``."""
    if isinstance(error, KeyError):
        return f"it lacks {error}"
    text = " ".join(str(error).split()).rstrip(".")
    return text or "it is incomplete"


def api_path(
    group: str, version: str, plural: str, namespace: str | None = None, name: str | None = None
) -> str:
    """``/api/v1/...`` for the core group, ``/apis/<group>/<version>/...`` for the others."""
    path = f"/apis/{group}/{version}" if group else f"/api/{version}"
    if namespace:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{plural}"
    if name:
        path += f"/{quote(name, safe='')}"
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
        raise KubeUnavailable(f"{method} {path}: {no_answer(e)}") from e
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
        raise KubeUnavailable(f"{method} {path}: {no_answer(e)}") from e
    if not 200 <= response.status < 300:
        raise KubeApiError.from_body(response.status, data)
    try:
        parsed = await decode(data) if data else {}
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
            raise KubeUnavailable(f"GET {path}: {no_answer(e)}") from e
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
