"""A Kong Admin API simulator that behaves like Kong 3.9 as documented.

``KongSim`` starts one aiohttp server per simulated Kong node. In DB mode (``postgres``,
``control_plane``) all nodes share one ``Store`` (the database) and each node's balancer — what
``/upstreams/{u}/health`` shows — catches up with the database ``propagation_delay`` seconds
after a change made through another node. In DB-less mode (``off``, ``data_plane``) each node
has its own configuration, entity writes answer 405 and ``/config`` replaces it whole.

The behaviour follows Kong's own source as docs/kong.md summarises it (routes, codes and bodies,
node info and status, DB-less, propagation, workspaces/RBAC/TLS). Where Kong's source leaves a
detail open, the choice made here is noted at the code.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import math
import os
import re
import socket
import ssl
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from aiohttp import web

from kongsplit.sim.kongsim import config as kong_config
from kongsplit.sim.kongsim import dialect
from kongsplit.sim.kongsim.faults import CONFIG_LOAD_FAILURES, Faults
from kongsplit.sim.kongsim.schema import (
    TAGS_AND_RE,
    TAGS_OR_RE,
    KongApiError,
    VersionProfile,
    dao_not_found,
    declarative_error,
    deep_copy,
    format_target,
    healthchecks_enabled,
    invalid_offset,
    invalid_options,
    invalid_size,
    is_uuid,
    message_error,
    method_not_allowed,
    new_id,
    not_found,
    operation_unsupported,
    parse_address,
)
from kongsplit.sim.kongsim.store import BalancerState, Entity, Store, Workspace

__all__ = ["MODES", "KongSim", "RequestRecord"]

log = logging.getLogger(__name__)

MODES = ("postgres", "off", "control_plane", "data_plane")
_ROOTS = frozenset({"upstreams", "targets", "status", "config", "kong"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_PAGE_SIZE = 100
_MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class RequestRecord:
    """One request as the simulator saw it, for assertions."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    body: Any
    node: int
    time: float
    workspace: str | None = None


@dataclass
class _Node:
    index: int
    node_id: str
    hostname: str
    store: Store
    url: str = ""
    runner: web.AppRunner | None = None
    total_requests: int = 0
    connections_accepted: int = 0
    config_hash: str = kong_config.EMPTY_HASH
    health_marks: dict[tuple[str, str, str, str], bool] = field(default_factory=dict)
    # A hybrid data plane's Status API (status_listen): read-only upstream routes and /status,
    # its balancer ``lag`` seconds behind the control plane's database (kong/status/init.lua).
    status_api: bool = False
    lag: float = 0.0


_NODE_KEY: web.AppKey[_Node] = web.AppKey("kong_sim_node", _Node)


class _Parsed:
    """A request body decoded by content type: the fields, and whether they are strings
    that must be converted by the schema (form and multipart bodies)."""

    def __init__(
        self, data: dict[str, Any], *, coerce: bool, raw: Any = None, body: bytes = b""
    ) -> None:
        self.data = data
        self.coerce = coerce
        self.raw = raw
        self.body = body  # the bytes as sent (POST /config reads a YAML body raw)


class KongSim:
    """Kong Admin API nodes over real sockets, plus helpers acting on the database directly."""

    def __init__(
        self,
        *,
        mode: str = "postgres",
        version: str = "3.9.3",
        nodes: int = 1,
        data_planes: int = 0,
        propagation_delay: float = 0.0,
        token: str | None = None,
        read_only_tokens: tuple[str, ...] = (),
        workspaces: tuple[str, ...] = ("default",),
        ssl_context: ssl.SSLContext | None = None,
        edition: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if nodes < 1:
            raise ValueError("nodes must be >= 1")
        if data_planes and mode != "control_plane":
            raise ValueError("data_planes go with mode='control_plane' (hybrid)")
        if "default" not in workspaces:
            workspaces = ("default", *workspaces)
        self.mode = mode
        self.version = version
        self.profile = VersionProfile(version)
        self.propagation_delay = propagation_delay
        self.token = token
        # RBAC users whose role may read but not write (Enterprise answers their writes 403).
        self.read_only_tokens = set(read_only_tokens)
        self.workspace_names = tuple(workspaces)
        self.ssl_context = ssl_context
        # Workspaces and RBAC are Enterprise features: an OSS node has no /{workspace} prefix.
        self.edition = edition or (
            "enterprise" if token is not None or len(self.workspace_names) > 1 else "community"
        )
        self.clock = clock
        self.faults = Faults()
        self.requests: list[RequestRecord] = []
        self.on_write: list[Callable[[str, str], None]] = []
        self.urls: list[str] = []
        shared = None if self.db_less else self._new_store()
        self._nodes = [
            _Node(
                index=i,
                node_id=new_id(),
                hostname=f"kong-sim-{i}",
                store=shared if shared is not None else self._new_store(),
            )
            for i in range(nodes)
        ]
        # Hybrid: data planes that take the control plane's pushes and serve only the Status API.
        self._nodes += [
            _Node(
                index=len(self._nodes) + i,
                node_id=new_id(),
                hostname=f"kong-sim-dp-{i}",
                store=self._nodes[0].store,
                status_api=True,
                lag=propagation_delay,
            )
            for i in range(data_planes)
        ]
        # Hosts whose DNS resolution fails: their targets never reach a balancer (DNS_ERROR).
        self.dns_failures: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- properties ------------------------------------------------------------------------------
    @property
    def db_less(self) -> bool:
        return self.mode in ("off", "data_plane")

    @property
    def role(self) -> str:
        return {"postgres": "traditional", "off": "traditional"}.get(self.mode, self.mode)

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def admin_urls(self) -> list[str]:
        """The Admin API nodes (in hybrid mode: the control plane's)."""
        return [n.url for n in self._nodes if not n.status_api]

    @property
    def dp_urls(self) -> list[str]:
        """Hybrid data planes' Status API URLs."""
        return [n.url for n in self._nodes if n.status_api]

    def set_dp_lag(self, index: int, seconds: float) -> None:
        """Make data plane ``index`` see the control plane's changes ``seconds`` late."""
        node = [n for n in self._nodes if n.status_api][index]
        node.lag = seconds
        self.store.history_window = max(self.store.history_window, seconds)

    @property
    def node_ids(self) -> list[str]:
        return [n.node_id for n in self._nodes]

    @property
    def store(self) -> Store:
        """The database (DB mode) or node 0's configuration (DB-less)."""
        return self._nodes[0].store

    def _new_store(self) -> Store:
        store = Store(
            profile=self.profile,
            workspaces=self.workspace_names,
            clock=self.clock,
            history_window=self.propagation_delay,
        )
        store.on_write.append(self._fire_on_write)
        return store

    def _fire_on_write(self, workspace: str, upstream: str) -> None:
        for callback in list(self.on_write):
            callback(workspace, upstream)

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen: node i on ``port + i`` (or a free port each when ``port`` is 0)."""
        scheme = "https" if self.ssl_context is not None else "http"
        try:
            for node in self._nodes:
                app = web.Application(client_max_size=10 * 1024 * 1024)
                app[_NODE_KEY] = node
                app.router.add_route("*", "/{tail:.*}", self._handle)
                runner = web.AppRunner(app, handle_signals=False, access_log=None)
                await runner.setup()
                node.runner = runner
                site = web.TCPSite(
                    runner,
                    host,
                    port + node.index if port else 0,
                    ssl_context=self.ssl_context,
                    reuse_address=True,
                )
                await site.start()
                bound = _bound_port(site)
                shown = f"[{host}]" if ":" in host else host
                node.url = f"{scheme}://{shown}:{bound}"
        except BaseException:
            await self.stop()
            raise
        self.urls = [n.url for n in self._nodes]

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for node in self._nodes:
            if node.runner is not None:
                await node.runner.cleanup()
                node.runner = None

    async def __aenter__(self) -> KongSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- test helpers (act on the database directly, like someone behind kongsplit's back) ------
    def _ws(self, workspace: str, node: int = 0) -> Workspace:
        ws = self._nodes[node].store.workspace(workspace)
        if ws is None:
            raise KeyError(f"no workspace {workspace!r}")
        return ws

    def _helper_stores(self, node: int | None) -> list[_Node]:
        if not self.db_less:
            return [self._nodes[0]]
        return self._nodes if node is None else [self._nodes[node]]

    def upstreams(self, workspace: str = "default", *, node: int = 0) -> list[dict[str, Any]]:
        store = self._nodes[node].store
        return deep_copy(store.list_upstreams(self._ws(workspace, node)))  # type: ignore[no-any-return]

    def targets(
        self, upstream: str, workspace: str = "default", *, node: int = 0
    ) -> list[dict[str, Any]]:
        """All targets of ``upstream`` (name or id), newest first, as the Admin API lists them."""
        store = self._nodes[node].store
        ws = self._ws(workspace, node)
        up = store.find_upstream(ws, upstream)
        if up is None:
            raise KeyError(f"no upstream {upstream!r}")
        return deep_copy(store.targets_newest_first(ws, up["id"]))  # type: ignore[no-any-return]

    def add_upstream(
        self, name: str, workspace: str = "default", *, node: int | None = None, **fields: Any
    ) -> dict[str, Any]:
        created: dict[str, Any] = {}
        for n in self._helper_stores(node):
            ws = self._ws(workspace, n.index)
            created = n.store.insert_upstream(ws, {"name": name, **fields})
            self._after_direct_change(n)
        return deep_copy(created)  # type: ignore[no-any-return]

    def add_target(
        self,
        upstream: str,
        target: str,
        weight: int = 100,
        workspace: str = "default",
        *,
        tags: list[str] | None = None,
        node: int | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        created: dict[str, Any] = {}
        for n in self._helper_stores(node):
            ws = self._ws(workspace, n.index)
            up = n.store.find_upstream(ws, upstream)
            if up is None:
                raise KeyError(f"no upstream {upstream!r}")
            body: dict[str, Any] = {"target": target, "weight": weight, **fields}
            if tags is not None:
                body["tags"] = tags
            if self.db_less and created:
                body["id"] = created["id"]
            created = n.store.insert_target(ws, up, body)
            self._after_direct_change(n)
        return deep_copy(created)  # type: ignore[no-any-return]

    def set_weight(
        self,
        upstream: str,
        target: str,
        weight: int,
        workspace: str = "default",
        *,
        node: int | None = None,
    ) -> None:
        """Change a target's weight (``target`` = id or host:port, normalised here)."""
        for n in self._helper_stores(node):
            ws = self._ws(workspace, n.index)
            up = n.store.find_upstream(ws, upstream)
            if up is None:
                raise KeyError(f"no upstream {upstream!r}")
            key = target if is_uuid(target) else (format_target(target) or target)
            current = n.store.find_target(ws, up, key)
            if current is None:
                raise KeyError(f"no target {target!r} in {upstream!r}")
            n.store.update_target(ws, up, current, {"weight": weight})
            self._after_direct_change(n)

    def delete_target(
        self, upstream: str, target: str, workspace: str = "default", *, node: int | None = None
    ) -> None:
        for n in self._helper_stores(node):
            ws = self._ws(workspace, n.index)
            up = n.store.find_upstream(ws, upstream)
            if up is None:
                raise KeyError(f"no upstream {upstream!r}")
            key = target if is_uuid(target) else (format_target(target) or target)
            current = n.store.find_target(ws, up, key)
            if current is None:
                raise KeyError(f"no target {target!r} in {upstream!r}")
            n.store.delete_target(ws, up, current)
            self._after_direct_change(n)

    def _after_direct_change(self, node: _Node) -> None:
        if self.db_less:
            # A DB-less node's config changed: its hash follows what GET /config would export.
            node.config_hash = kong_config.hash_of_store(node.store)

    def wipe(self) -> None:
        """Restart with an empty database (DB-less: every node empty, hash 32 zeros)."""
        for node in self._nodes:
            node.store.wipe()
            node.health_marks.clear()
            node.config_hash = kong_config.EMPTY_HASH

    def restart_node(self, node: int) -> None:
        """Restart one node: DB-less loses its config (hash zeros); DB mode keeps the data."""
        n = self._nodes[node]
        n.health_marks.clear()
        if self.db_less:
            n.store.wipe()
            n.config_hash = kong_config.EMPTY_HASH

    def external_config_push(
        self, config: dict[str, Any] | str, *, node: int | None = None
    ) -> None:
        """A KIC/CP-like writer replacing the whole DB-less config (all nodes, or one).

        ``config`` is posted as a string: text as given, a mapping as its JSON text. Each node
        reads it as ``POST /config`` does (cjson, then lyaml; a ValueError when Kong would
        answer 400) and records the md5 of that string (kong/db/declarative/init.lua
        ``_M:unserialize``), 32 zeros when it holds no entity."""
        if not self.db_less:
            raise RuntimeError("external_config_push needs a DB-less mode (off/data_plane)")
        text = config if isinstance(config, str) else json.dumps(config)
        try:
            table, new_hash = dialect.unserialize(text)
            loaded = kong_config.validate_config(table)
        except dialect.ParseFailure as e:
            raise ValueError(f"Kong would refuse this config: {e}") from None
        except KongApiError as e:
            raise ValueError(f"Kong would refuse this config: {e.body['message']}") from None
        for n in self._nodes if node is None else [self._nodes[node]]:
            kong_config.load_config(n.store, loaded, self.profile)
            n.config_hash = kong_config.EMPTY_HASH if loaded.empty else new_hash
            n.health_marks.clear()

    def config_hash(self, node: int = 0) -> str:
        return self._nodes[node].config_hash

    # -- HTTP ------------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        node = request.app[_NODE_KEY]
        node.total_requests += 1
        raw_path = request.raw_path.split("?", 1)[0]
        path = unquote(raw_path)
        query = {k: v for k, v in request.query.items()}
        action = self.faults.take(request.method, path, node.index)
        if action.delay:
            # nginx has read the whole request before Kong's Lua handler runs, and Kong does
            # not set lua_check_client_abort (kong/templates/nginx_kong.lua): a slow write is
            # committed even when its client has given up. So the body is read first and the
            # slowness is the handler's.
            if request.method in _BODY_METHODS and request.can_read_body:
                await request.read()
            await asyncio.sleep(action.delay)
        if action.reset:
            self._record(request, node, 0, None, query, path)
            if request.transport is not None:
                request.transport.abort()
            # Nothing reaches the client: aiohttp cannot write to the aborted transport.
            return web.Response(status=500)
        if action.status is not None:
            self._record(request, node, action.status, None, query, path)
            if action.delay_after:
                await asyncio.sleep(action.delay_after)
            return _json(action.status, action.body, dict(action.headers))
        given = request.headers.get("Kong-Admin-Token")
        if self.token is not None and given != self.token and given not in self.read_only_tokens:
            self._record(request, node, 401, None, query, path)
            return _json(401, {"message": "Invalid RBAC credentials"})
        if given in self.read_only_tokens and request.method != "GET":
            # Kong Enterprise's RBAC wording for a role without the permission.
            self._record(request, node, 403, None, query, path)
            verb = {"POST": "create", "DELETE": "delete"}.get(request.method, "update")
            message = f"reader, you do not have permissions to {verb} this resource"
            return _json(403, {"message": message})
        parsed: _Parsed | None = None
        workspace: str | None = None
        try:
            segments, workspace, prefixed = self._split(raw_path)
            if node.status_api:
                handler = self._status_route(segments, request.method, prefixed)
            else:
                handler = self._route(segments, request.method, prefixed)
            if request.method in _BODY_METHODS:
                parsed = await self._parse_body(request, config_route=segments == ["config"])
            ctx = _Ctx(
                sim=self,
                node=node,
                request=request,
                segments=segments,
                workspace=workspace or "default",
                prefixed=prefixed,
                body=parsed or _Parsed({}, coerce=False),
                query=query,
            )
            response: web.StreamResponse = await handler(ctx)
        except KongApiError as err:
            response = _json(err.status, err.body, err.headers)
        except ConnectionError:
            # The client went away before its body arrived (killed, or it timed out during a
            # slow answer): nothing was handled. 499 is nginx's code for it, in the log only.
            self._record(request, node, 499, None, query, path, workspace)
            return web.Response(status=499)
        except Exception:
            # What Kong answers to an unhandled Lua error; logged so a simulator bug is visible.
            log.exception("kong-sim: unexpected error handling %s %s", request.method, path)
            response = _json(500, {"message": "An unexpected error occurred"})
        self._record(
            request, node, response.status, parsed.raw if parsed else None, query, path, workspace
        )
        if action.delay_after:
            await asyncio.sleep(action.delay_after)  # handled (committed), answered late
        if action.reset_after:
            # Handled (a write is committed), but the answer never reaches the client.
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        response.headers["Server"] = f"kong/{self.version}"
        response.headers["X-Kong-Admin-Request-ID"] = new_id().replace("-", "")[:32]
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response

    def _record(
        self,
        request: web.Request,
        node: _Node,
        status: int,
        body: Any,
        query: dict[str, str],
        path: str,
        workspace: str | None = None,
    ) -> None:
        self.requests.append(
            RequestRecord(
                method=request.method,
                path=path,
                query=query,
                status=status,
                body=body,
                node=node.index,
                time=self.clock(),
                workspace=workspace,
            )
        )

    def _split(self, raw_path: str) -> tuple[list[str], str | None, bool]:
        """Path segments (URL-decoded one by one), after any ``/{workspace}`` prefix."""
        trimmed = raw_path.strip("/")
        segments = [unquote(s) for s in trimmed.split("/")] if trimmed else []
        if segments and segments[0] not in _ROOTS:
            if self.edition != "enterprise":
                raise not_found()
            ws = self._nodes[0].store.workspace(segments[0])
            if ws is None:
                raise not_found()
            return segments[1:], ws.name, True
        return segments, None, False

    def _status_route(self, seg: list[str], method: str, prefixed: bool) -> _Handler:
        """A data plane's Status API: /status, and the upstream routes' GET handlers only
        (kong/status/init.lua attaches them when database=off; no ``GET /``, no writes)."""
        if prefixed or not seg or seg[0] not in ("status", "upstreams"):
            raise not_found()
        table = self._routes(seg, prefixed)
        if table is None or "GET" not in table:
            raise not_found()
        if method != "GET":
            raise method_not_allowed()
        return table["GET"]

    def _route(self, seg: list[str], method: str, prefixed: bool) -> _Handler:
        table = self._routes(seg, prefixed)
        if table is None:
            raise not_found()
        if method == "OPTIONS":
            return _options(sorted({"OPTIONS", *table}))
        handler = table.get(method)
        if handler is None:
            raise method_not_allowed()
        return handler

    def _routes(self, seg: list[str], prefixed: bool) -> dict[str, _Handler] | None:
        n = len(seg)
        if n == 0:
            return None if prefixed else {"GET": _root}
        head = seg[0]
        if head == "kong" and n == 1 and prefixed:
            return {"GET": _root}  # EE: GET /{workspace}/kong is the node info
        if prefixed and head in ("status", "config", "kong", "targets"):
            return None
        if head == "status" and n == 1:
            return {"GET": _status}
        if head == "config" and n == 1:
            return {"GET": _get_config, "POST": _post_config}
        if head == "targets":
            # Top-level /targets is registered but disabled: every call answers 404
            # (kong/api/routes/targets.lua).
            if n > 3:
                return None
            return {m: _disabled for m in ("GET", "POST", "PUT", "PATCH", "DELETE")}
        if head != "upstreams":
            return None
        if n == 1:
            return {"GET": _list_upstreams, "POST": _create_upstream}
        if n == 2:
            return {
                "GET": _get_upstream,
                "PUT": _put_upstream,
                "PATCH": _patch_upstream,
                "DELETE": _delete_upstream,
            }
        if n == 3 and seg[2] == "targets":
            return {"GET": _list_targets, "POST": _create_target}
        if n == 3 and seg[2] == "health":
            return {"GET": _upstream_health}
        if n == 4 and seg[2] == "targets" and seg[3] == "all":
            return {"GET": _list_all_targets}
        if n == 4 and seg[2] == "targets":
            return {
                "GET": _get_target,
                "PUT": _put_target,
                "PATCH": _patch_target,
                "DELETE": _delete_target,
            }
        if n in (5, 6) and seg[2] == "targets" and seg[-1] in ("healthy", "unhealthy"):
            if self.role == "control_plane":
                return None  # not registered on control planes (kong/api/routes/upstreams.lua)
            return {self.profile.health_verb: _set_health}
        return None

    async def _parse_body(self, request: web.Request, *, config_route: bool) -> _Parsed:
        """kong/api/api_helpers.lua ``before_filter`` (which content types reach a handler: a
        case-sensitive prefix of the header; a body without a content type is refused 415)
        and ``parse_params`` (the body as parameters; JSON that cannot be parsed, an empty
        body included, is 400)."""
        body = await request.read()
        header = request.headers.get("Content-Type")
        if not config_route and (not body or header is None):
            # Entity routes keep the simulator's older leniency (an empty body, or one without
            # a content type, is no parameters): Kong refuses both as for /config below.
            return _Parsed({}, coerce=False)
        if header is None:
            if body:
                raise message_error(415, "Unsupported Media Type")
            return _Parsed({}, coerce=False)
        if header.startswith("application/json"):
            try:
                data = dialect.cjson_decode(body.decode("utf-8", "surrogateescape"))
            except (ValueError, RecursionError):
                raise message_error(400, "Cannot parse JSON body") from None
            if not isinstance(data, dict):
                # UNCONFIRMED: lapis' json_params with a JSON array or scalar
                raise message_error(400, "Cannot parse JSON body")
            return _Parsed(data, coerce=False, raw=data, body=body)
        if header.startswith("application/x-www-form-urlencoded"):
            try:
                items = parse_qsl(body.decode(), keep_blank_values=True)
            except UnicodeDecodeError:
                items = []
            data = decode_form(items)
            return _Parsed(data, coerce=True, raw=data, body=body)
        if header.startswith("multipart/form-data"):
            items = []
            with contextlib.suppress(ValueError, AssertionError):
                form = await _read_multipart(request, body)
                items = form
            data = decode_form(items)
            return _Parsed(data, coerce=True, raw=data, body=body)
        if config_route and (
            header.startswith("application/yaml") or header.startswith("text/yaml")
        ):
            # Not parsed into parameters: the route reads the raw body.
            return _Parsed({}, coerce=False, raw=body.decode("utf-8", "replace"), body=body)
        raise message_error(415, "Unsupported Media Type")


async def _read_multipart(request: web.Request, body: bytes) -> list[tuple[str, str]]:
    from aiohttp import BodyPartReader, MultipartReader
    from aiohttp.streams import StreamReader

    protocol = request.protocol
    stream = StreamReader(protocol, limit=2**16, loop=asyncio.get_running_loop())
    stream.feed_data(body)
    stream.feed_eof()
    reader = MultipartReader(request.headers, stream)
    items: list[tuple[str, str]] = []
    while True:
        part = await reader.next()
        if part is None:
            break
        if isinstance(part, BodyPartReader) and part.name:
            items.append((part.name, (await part.read(decode=True)).decode("utf-8", "replace")))
    return items


def decode_form(items: list[tuple[str, str]]) -> dict[str, Any]:
    """Form keys to nested args: ``a.b=1`` → ``{"a":{"b":"1"}}``, ``t[]=x`` / repeated → list."""
    out: dict[str, Any] = {}
    for key, value in items:
        m = re.fullmatch(r"(.*?)\[(\d*)\]", key)
        is_array = m is not None
        base = m.group(1) if m else key
        parts = base.split(".")
        cur: dict[str, Any] = out
        for p in parts[:-1]:
            nxt = cur.get(p)
            if not isinstance(nxt, dict):
                nxt = {}
                cur[p] = nxt
            cur = nxt
        leaf = parts[-1]
        if is_array:
            existing = cur.get(leaf)
            if not isinstance(existing, list):
                existing = [] if existing is None else [existing]
                cur[leaf] = existing
            existing.append(value)
        elif leaf in cur:
            existing = cur[leaf]
            cur[leaf] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            cur[leaf] = value
    return out


def _bound_port(site: web.TCPSite) -> int:
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    for sock in sockets:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            return int(sock.getsockname()[1])
    raise RuntimeError("could not determine the bound port")


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    if status == 204 or status == 304:
        return web.Response(status=status, headers=headers)
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":")).encode(),
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


# ---------------------------------------------------------------------------------------------
# Request context and handlers


@dataclass
class _Ctx:
    sim: KongSim
    node: _Node
    request: web.Request
    segments: list[str]
    workspace: str
    prefixed: bool
    body: _Parsed
    query: dict[str, str]

    @property
    def store(self) -> Store:
        return self.node.store

    @property
    def ws(self) -> Workspace:
        ws = self.store.workspace(self.workspace)
        if ws is None:
            raise not_found()
        return ws

    @property
    def prefix(self) -> str:
        return f"/{self.workspace}" if self.prefixed else ""

    def upstream_or_404(self) -> Entity:
        up = self.store.find_upstream(self.ws, self.segments[1])
        if up is None:
            raise not_found()
        return up

    def target_or_404(self, upstream: Entity) -> Entity:
        found = self.store.find_target(self.ws, upstream, self.segments[3])
        if found is None:
            raise not_found()
        return found

    def refuse_write(self, op: str, entity: str, *, by_name: bool = False) -> None:
        """DB-less: the ``off`` strategy refuses every entity write with code 12
        (kong/db/strategies/off/init.lua)."""
        if self.sim.db_less:
            by = " by 'name'" if by_name else ""
            raise operation_unsupported(
                f"cannot {op} '{entity}' entities{by} when not using a database"
            )


_Handler = Callable[[_Ctx], Any]


def _options(methods: list[str]) -> _Handler:
    async def handler(ctx: _Ctx) -> web.Response:
        return web.Response(
            status=204,
            headers={
                "Allow": ", ".join(methods),
                "Access-Control-Allow-Methods": ", ".join(methods),
            },
        )

    return handler


async def _disabled(ctx: _Ctx) -> web.Response:
    raise not_found()


async def _root(ctx: _Ctx) -> web.Response:
    sim, node = ctx.sim, ctx.node
    host = node.url.split("://", 1)[-1] if node.url else "127.0.0.1:8001"
    configuration: dict[str, Any] = {
        "database": "off" if sim.db_less else "postgres",
        "role": sim.role,
        "admin_listen": [host + (" ssl" if sim.ssl_context else "")],
        "status_listen": ["off"],
        "db_update_frequency": 5,
        "db_update_propagation": 0,
        "db_cache_ttl": 0,
        "router_flavor": "traditional_compatible",
        "prefix": "/usr/local/kong",
        "nginx_admin_client_max_body_size": "10m",
        "lmdb_map_size": "2048m",
        "enforce_rbac": "on" if sim.token is not None else "off",
        "rbac_auth_header": "Kong-Admin-Token",
    }
    body = {
        "tagline": "Welcome to kong",
        "version": sim.version,
        "edition": sim.edition,
        "hostname": node.hostname,
        "node_id": node.node_id,
        "timers": {"running": 0, "pending": 7},
        "plugins": {
            "available_on_server": {},
            "enabled_in_cluster": [],
        },
        "lua_version": "LuaJIT 2.1.0-20231117",
        "configuration": configuration,
        "pids": {"master": os.getpid(), "workers": [os.getpid()]},
    }
    return _json(200, body)


# What the simulated node's memory holds, in bytes (shown through kong.node.get_memory_stats).
_LUA_VM_BYTES = 42 * 2**20
_SHM_BYTES: dict[str, tuple[int, int]] = {  # capacity, allocated slabs
    "kong": (5 * 2**20, 40 * 2**10),
    "kong_db_cache": (128 * 2**20, 800 * 2**10),
}


def _bytes_to_str(nbytes: int, unit: str, scale: float | None) -> str | int:
    """kong/tools/string.lua ``bytes_to_str`` (a ValueError carries the Lua error's message),
    through kong/pdk/node.lua ``convert_bytes`` (unit b/B: the number itself)."""
    u = unit.lower()
    if u == "b":
        return nbytes
    if u == "":
        return str(nbytes)
    scale = 2 if scale is None else scale
    if scale < 0:
        raise ValueError("scale must be equal or greater than 0")
    if math.isnan(scale) or math.isinf(scale):
        raise ValueError("invalid option '%.-' to 'format'")  # LuaJIT's %d of NaN/inf
    digits = int(scale)  # LuaJIT's %d truncates
    if digits >= 100:
        raise ValueError(f"invalid option '%.{str(digits)[:3]}' to 'format'")
    power = {"k": 10, "m": 20, "g": 30}.get(u)
    if power is None:
        raise ValueError(f"invalid unit '{unit}' (expected 'k/K', 'm/M', or 'g/G')")
    return f"{nbytes / 2**power:.{digits}f} {u.upper()}iB"


def _lua_tonumber(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        try:
            return float(int(text.strip(), 16))
        except ValueError:
            return None


async def _status(ctx: _Ctx) -> web.Response:
    """kong/api/routes/health.lua: ``unit`` (default m) and ``scale`` checked with
    ``bytes_to_str`` (400 with its message), memory through ``kong.node.get_memory_stats``;
    DB-less nodes and data planes show ``configuration_hash`` instead of ``database``."""
    node = ctx.node
    unit = ctx.query.get("unit", "m")
    scale = _lua_tonumber(ctx.query["scale"]) if "scale" in ctx.query else None
    try:
        _bytes_to_str(0, unit, scale)
    except ValueError as e:
        return _json(400, {"message": str(e)})
    kong_cap, kong_used = _SHM_BYTES["kong"]
    cache_cap, cache_used = _SHM_BYTES["kong_db_cache"]
    body: dict[str, Any] = {
        "database": {"reachable": True},
        "memory": {
            "workers_lua_vms": [
                {
                    "pid": os.getpid(),
                    "http_allocated_gc": _bytes_to_str(_LUA_VM_BYTES, unit, scale),
                }
            ],
            "lua_shared_dicts": {
                "kong": {
                    "capacity": _bytes_to_str(kong_cap, unit, scale),
                    "allocated_slabs": _bytes_to_str(kong_used, unit, scale),
                },
                "kong_db_cache": {
                    "capacity": _bytes_to_str(cache_cap, unit, scale),
                    "allocated_slabs": _bytes_to_str(cache_used, unit, scale),
                },
            },
        },
        "server": {
            "total_requests": node.total_requests,
            "connections_active": 1,
            "connections_accepted": node.total_requests,
            "connections_handled": node.total_requests,
            "connections_reading": 0,
            "connections_writing": 1,
            "connections_waiting": 0,
        },
    }
    if ctx.sim.db_less:
        del body["database"]
        body["configuration_hash"] = node.config_hash
    return _json(200, body)


# -- paging helpers --------------------------------------------------------------------------------


def _size_arg(query: dict[str, str]) -> int | None:
    raw = query.get("size")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise invalid_size("size must be a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise invalid_size("size must be a number")
    return int(value) if value.is_integer() else -1


def _db_size(query: dict[str, str]) -> int:
    size = _size_arg(query)
    if size is None:
        return _PAGE_SIZE
    if not 1 <= size <= _MAX_PAGE_SIZE:
        raise invalid_size(f"size must be an integer between 1 and {_MAX_PAGE_SIZE}")
    return size


def _encode_offset(last_id: str) -> str:
    return base64.b64encode(json.dumps([last_id]).encode()).decode()


def _decode_offset(token: str) -> str:
    try:
        raw = base64.b64decode(token.encode(), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise invalid_offset(token, "bad base64 encoding") from None
    try:
        decoded = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid_offset(token, "bad json encoding") from None
    if not isinstance(decoded, list) or len(decoded) != 1 or not isinstance(decoded[0], str):
        raise invalid_offset(token, "bad json encoding")
    return decoded[0]


def _db_page(
    items: list[Entity],
    query: dict[str, str],
    *,
    next_base: str,
    extra: str = "",
    after: str | None = None,
) -> dict[str, Any]:
    """Page rows ordered by id with an opaque offset token (what Postgres paging does).
    ``after`` given: ``items`` already start after the offset (cut from an index)."""
    size = _db_size(query)
    offset = query.get("offset")
    if offset is not None and after is None:
        after = _decode_offset(offset)
        items = [e for e in items if e["id"] > after]
    page = items[:size]
    body: dict[str, Any] = {"data": page}
    if len(items) > size:
        token = _encode_offset(page[-1]["id"])
        body["offset"] = token
        nxt = f"{next_base}?offset={quote(token, safe='')}{extra}"
        if "size" in query:
            nxt += f"&size={size}"
        body["next"] = nxt
    else:
        body["next"] = None
    return body


def _parse_tags(query: dict[str, str]) -> tuple[list[str], str] | None:
    if "tags" not in query:
        return None
    raw = query["tags"]
    if raw == "":
        raise invalid_options({"tags": "cannot be null"})
    if "," in raw and "/" in raw:
        raise invalid_options({"tags": "invalid filter syntax"})
    if TAGS_AND_RE.match(raw):
        tags, cond = raw.split(","), "and"
    elif TAGS_OR_RE.match(raw):
        tags, cond = raw.split("/"), "or"
    else:
        raise invalid_options({"tags": "invalid filter syntax"})
    if len(tags) > 5:
        raise invalid_options({"tags": "cannot query more than 5 tags"})
    return tags, cond


def _tag_match(entity: Entity, tags: list[str], cond: str) -> bool:
    have = set(entity.get("tags") or [])
    return all(t in have for t in tags) if cond == "and" else any(t in have for t in tags)


# -- upstreams -------------------------------------------------------------------------------------


async def _list_upstreams(ctx: _Ctx) -> web.Response:
    tag_filter = _parse_tags(ctx.query)
    if tag_filter is None:
        # The common case (kongsplit's listing): one page from the id index, not a scan.
        size = _db_size(ctx.query)
        offset = ctx.query.get("offset")
        after = _decode_offset(offset) if offset is not None else None
        page = ctx.store.upstream_page(ctx.ws, after, size + 1)
        return _json(200, _db_page(page, ctx.query, next_base=f"{ctx.prefix}/upstreams", after=""))
    items = ctx.store.list_upstreams(ctx.ws)
    tags, cond = tag_filter
    items = [u for u in items if _tag_match(u, tags, cond)]
    extra = f"&tags={quote(ctx.query['tags'], safe='')}"
    _db_size(ctx.query)
    return _json(200, _db_page(items, ctx.query, next_base=f"{ctx.prefix}/upstreams", extra=extra))


async def _create_upstream(ctx: _Ctx) -> web.Response:
    if ctx.sim.db_less:
        ctx.store.validate_upstream(ctx.body.data, coerce=ctx.body.coerce, base=None)
        ctx.refuse_write("create", "upstreams")
    created = ctx.store.insert_upstream(
        ctx.ws, ctx.body.data, coerce=ctx.body.coerce, node=ctx.node.index
    )
    return _json(201, created)


async def _get_upstream(ctx: _Ctx) -> web.Response:
    return _json(200, ctx.upstream_or_404())


async def _put_upstream(ctx: _Ctx) -> web.Response:
    key = ctx.segments[1]
    data = dict(ctx.body.data)
    current = ctx.store.find_upstream(ctx.ws, key)
    if is_uuid(key):
        data["id"] = key.lower()
        current = ctx.ws.upstreams.get(key.lower())
    else:
        data["name"] = key  # upsert by name: the path's name wins over the body's
    if ctx.sim.db_less:
        ctx.refuse_write("create or update", "upstreams", by_name=not is_uuid(key))
    entity = ctx.store.upsert_upstream(
        ctx.ws, data, current=current, coerce=ctx.body.coerce, node=ctx.node.index
    )
    return _json(200, entity)


async def _patch_upstream(ctx: _Ctx) -> web.Response:
    key = ctx.segments[1]
    current = ctx.store.find_upstream(ctx.ws, key)
    if current is None:
        if is_uuid(key):
            raise dao_not_found({"id": key}, primary=True)
        raise dao_not_found({"name": key}, primary=False)
    if ctx.sim.db_less:
        ctx.store.validate_upstream(ctx.body.data, coerce=ctx.body.coerce, base=current)
        ctx.refuse_write("update", "upstreams", by_name=not is_uuid(key))
    entity = ctx.store.update_upstream(
        ctx.ws, current, ctx.body.data, coerce=ctx.body.coerce, node=ctx.node.index
    )
    return _json(200, entity)


async def _delete_upstream(ctx: _Ctx) -> web.Response:
    key = ctx.segments[1]
    current = ctx.store.find_upstream(ctx.ws, key)
    if current is not None:
        ctx.refuse_write("remove", "upstreams", by_name=not is_uuid(key))
        ctx.store.delete_upstream(ctx.ws, current, node=ctx.node.index)
    return _json(204, None)


# -- targets ---------------------------------------------------------------------------------------


def _nested_page(ctx: _Ctx, items: list[Entity]) -> dict[str, Any]:
    """In-memory pager of GET /upstreams/{u}/targets: decimal offsets, size clamped
    (kong/db/dao/targets.lua page_for_upstream)."""
    size = _size_arg(ctx.query)
    size = _PAGE_SIZE if size is None else min(max(size, 1), _MAX_PAGE_SIZE)
    raw_offset = ctx.query.get("offset")
    offset = 0
    if raw_offset is not None:
        # UNCONFIRMED what Kong answers to a non-numeric offset here; a code-7 error is the
        # closest documented answer.
        if not raw_offset.isascii() or not raw_offset.isdigit():
            raise invalid_offset(raw_offset, "not a number")
        offset = int(raw_offset)
    page = items[offset : offset + size]
    body: dict[str, Any] = {"data": page}
    if offset + size < len(items):
        nxt = str(offset + size)
        body["offset"] = nxt
        u = quote(ctx.segments[1], safe="")
        body["next"] = f"{ctx.prefix}/upstreams/{u}/targets?offset={nxt}"
    else:
        body["next"] = None
    return body


async def _list_targets(ctx: _Ctx) -> web.Response:
    up = ctx.upstream_or_404()
    # Tags are ignored on nested collections (docs/kong.md "Paging and tags").
    return _json(200, _nested_page(ctx, ctx.store.targets_newest_first(ctx.ws, up["id"])))


async def _list_all_targets(ctx: _Ctx) -> web.Response:
    up = ctx.upstream_or_404()
    u = quote(ctx.segments[1], safe="")
    body = _db_page(
        ctx.store.targets_by_id(ctx.ws, up["id"]),
        ctx.query,
        next_base=f"{ctx.prefix}/upstreams/{u}/targets/all",
    )
    return _json(200, body)


async def _create_target(ctx: _Ctx) -> web.Response:
    up = ctx.upstream_or_404()
    data = ctx.body.data
    if ctx.sim.db_less:
        ctx.store.insert_target(ctx.ws, up, data, coerce=ctx.body.coerce, dry_run=True)
        ctx.refuse_write("create", "targets")
    if ctx.sim.profile.post_upserts_targets and isinstance(data.get("target"), str):
        # Kong 2.2-2.8: POST of an existing host:port updated it, with a deprecation header.
        formatted = format_target(data["target"])
        existing = ctx.store.find_target(ctx.ws, up, formatted) if formatted else None
        if existing is not None:
            entity = ctx.store.update_target(
                ctx.ws, up, existing, data, coerce=ctx.body.coerce, node=ctx.node.index
            )
            return _json(200, entity, {"Deprecation": "true"})
    created = ctx.store.insert_target(ctx.ws, up, data, coerce=ctx.body.coerce, node=ctx.node.index)
    return _json(201, created)


async def _get_target(ctx: _Ctx) -> web.Response:
    up = ctx.upstream_or_404()
    return _json(200, ctx.target_or_404(up))


async def _patch_target(ctx: _Ctx) -> web.Response:
    up = ctx.upstream_or_404()
    current = ctx.target_or_404(up)
    if ctx.sim.db_less:
        ctx.store.update_target(
            ctx.ws, up, current, ctx.body.data, coerce=ctx.body.coerce, dry_run=True
        )
        ctx.refuse_write("update", "targets")
    entity = ctx.store.update_target(
        ctx.ws, up, current, ctx.body.data, coerce=ctx.body.coerce, node=ctx.node.index
    )
    return _json(200, entity)


# PUT on a target goes through the same update path as PATCH: 404 when missing, fields not
# sent are kept (Kong/kong#12987, kong/api/routes/upstreams.lua).
_put_target = _patch_target


async def _delete_target(ctx: _Ctx) -> web.Response:
    up = ctx.upstream_or_404()
    current = ctx.target_or_404(up)
    ctx.refuse_write("remove", "targets")
    ctx.store.delete_target(ctx.ws, up, current, node=ctx.node.index)
    return _json(204, None)


# -- health ----------------------------------------------------------------------------------------


def _addresses(target: str) -> tuple[str, int, str, list[str]]:
    """(host, port, dns record type, resolved addresses) for a normalised target."""
    host, _, port_text = target.rpartition(":")
    port = int(port_text)
    addr = parse_address(target)
    if addr is not None and addr.kind == "ipv6":
        return host, port, "AAAA", [host]
    if addr is not None and addr.kind == "ipv4":
        return host, port, "A", [host]
    if host.lower() == "localhost":
        return host, port, "A", ["127.0.0.1"]
    # The simulator has no DNS: a name resolves to one stable address in 198.18.0.0/15.
    h = zlib.crc32(host.lower().encode())
    return host, port, "A", [f"198.{18 + (h >> 16) % 2}.{(h >> 8) & 0xFF}.{h & 0xFF}"]


def _mark(ctx: _Ctx, upstream_id: str, target: str, address: str) -> bool | None:
    marks = ctx.node.health_marks
    found = marks.get((ctx.workspace, upstream_id, target, address))
    if found is None:
        found = marks.get((ctx.workspace, upstream_id, target, ""))
    return found


def _target_status(
    ctx: _Ctx, upstream: Entity, target: str, weight: int, hc_on: bool
) -> tuple[str, dict[str, Any]]:
    host, port, dns, ips = _addresses(target)
    addresses = []
    total = available = 0
    for ip in ips:
        mark = _mark(ctx, upstream["id"], target, f"{ip}:{port}")
        healthy = mark is not False
        if not hc_on or weight == 0:
            health = "HEALTHCHECKS_OFF"
        else:
            health = "HEALTHY" if healthy else "UNHEALTHY"
        addresses.append({"ip": ip, "port": port, "weight": weight, "health": health})
        total += weight
        if healthy:
            available += weight
    if not hc_on or weight == 0:
        overall = "HEALTHCHECKS_OFF"
    else:
        overall = "HEALTHY" if available > 0 else "UNHEALTHY"
    data = {
        "host": host,
        "port": port,
        "dns": dns,
        "nodeWeight": weight,
        "weight": {"total": total, "available": available, "unavailable": total - available},
        "addresses": addresses,
    }
    return overall, data


async def _upstream_health(ctx: _Ctx) -> web.Response:
    up = ctx.upstream_or_404()
    if ctx.sim.role == "control_plane" and not ctx.node.status_api:
        # A control plane builds no balancers: get_upstream_health finds none, so the rows are
        # plain targets without health or data (kong/db/dao/targets.lua
        # page_for_upstream_with_health).
        page = _nested_page(ctx, ctx.store.targets_newest_first(ctx.ws, up["id"]))
        if page.get("next"):
            page["next"] = page["next"].replace("/targets?", "/health?", 1)
        page["node_id"] = ctx.node.node_id
        return _json(200, page)
    if ctx.node.status_api:
        delay = ctx.node.lag
    else:
        delay = 0.0 if ctx.sim.db_less else ctx.sim.propagation_delay
    view: BalancerState | None = ctx.store.balancer_view(
        ctx.ws, up["id"], node=ctx.node.index, delay=delay
    )
    balancer_up = view.upstream if view is not None else None
    hc_on = healthchecks_enabled(balancer_up or up)
    in_balancer = {
        t.target: t
        for t in (view.targets if view and balancer_up else ())
        # A name that does not resolve never reaches the balancer (lua-resty-dns-client does
        # not call back), which is how Kong comes to report it DNS_ERROR.
        if t.target.rpartition(":")[0].lower() not in ctx.sim.dns_failures
    }
    if ctx.query.get("balancer_health") in ("1", "true"):
        hosts = []
        total = available = 0
        for bt in in_balancer.values():
            _, data = _target_status(ctx, up, bt.target, bt.weight, hc_on)
            hosts.append(data)
            total += data["weight"]["total"]
            available += data["weight"]["available"]
        threshold = float((up.get("healthchecks") or {}).get("threshold") or 0)
        healthy = total > 0 and available * 100 >= threshold * total and available > 0
        balancer_health = "HEALTHY" if healthy else "UNHEALTHY"
        body = {
            "data": {
                "id": up["id"],
                "health": balancer_health if hc_on else "HEALTHCHECKS_OFF",
                "balancer_health": balancer_health,
                "details": {
                    "healthy": healthy,
                    "weight": {
                        "total": total,
                        "available": available,
                        "unavailable": total - available,
                    },
                    "hosts": hosts,
                },
            },
            "next": None,
            "node_id": ctx.node.node_id,
        }
        return _json(200, body)
    page = _nested_page(ctx, ctx.store.targets_newest_first(ctx.ws, up["id"]))
    out = []
    for entity in page["data"]:
        item = dict(entity)
        found = in_balancer.get(entity["target"])
        if view is None or balancer_up is None:
            pass  # no balancer for the upstream on this node: plain rows (no health, no data)
        elif found is None:
            # The balancer lacks the target (its DNS failed, or a change made through another
            # node has not reached this one): Kong extrapolates DNS_ERROR and shows no data
            # (kong/db/dao/targets.lua page_for_upstream_with_health).
            item["health"] = "DNS_ERROR"
        else:
            item["health"], item["data"] = _target_status(
                ctx, up, found.target, found.weight, hc_on
            )
        out.append(item)
    page["data"] = out
    if page.get("next"):
        page["next"] = page["next"].replace("/targets?", "/health?", 1)
    page["node_id"] = ctx.node.node_id
    return _json(200, page)


async def _set_health(ctx: _Ctx) -> web.Response:
    up = ctx.upstream_or_404()
    target = ctx.target_or_404(up)
    healthy = ctx.segments[-1] == "healthy"
    address = ""
    if len(ctx.segments) == 6:
        address = ctx.segments[4]
        _, port, _, ips = _addresses(target["target"])
        if address not in {f"{ip}:{port}" for ip in ips}:
            raise message_error(400, f"target not found for {address}")
    # Node-local in DB-less; in DB mode Kong broadcasts it to every node (cluster event).
    nodes = [ctx.node] if ctx.sim.db_less else ctx.sim._nodes
    prefix = (ctx.workspace, up["id"], target["target"])
    for n in nodes:
        if not address:
            # a target-wide mark replaces the per-address ones
            for key in [k for k in n.health_marks if k[:3] == prefix and k[3]]:
                del n.health_marks[key]
        n.health_marks[(*prefix, address)] = healthy
    return _json(204, None)


# -- HTTP handlers -------------------------------------------------------------------------------


def _only_db_less(ctx: _Ctx) -> None:
    if not ctx.sim.db_less:
        raise message_error(
            400,
            "this endpoint is only available when Kong is configured to not use a database",
        )


async def _get_config(ctx: _Ctx) -> web.Response:
    """kong/api/routes/config.lua GET: ``{"config": <the export's text>}``
    (kong/db/declarative/export.lua ``export_from_db`` with its lyaml ``fd_emitter``)."""
    _only_db_less(ctx)
    return _json(200, {"config": kong_config.export_text(ctx.store)})


def _truthy(value: Any) -> bool:
    """kong/api/routes/config.lua ``truthy`` (``flatten_errors``)."""
    if isinstance(value, str):
        return value.lower() in ("true", "1", "on", "yes")
    return value is True or (not isinstance(value, bool) and value == 1)


def _lua_tostring(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


async def _post_config(ctx: _Ctx) -> web.Response:
    """kong/api/routes/config.lua POST, step by step.

    The parameters are the query's then the body's (lapis merges both); ``flatten_errors`` is
    ``truthy``, ``check_hash`` only ``tostring(v) == "1"``; both are removed before the rest is
    read. A truthy ``_format_version`` makes the parameters themselves the configuration (the
    table form); otherwise ``config``, or the raw body, is read by ``dc:unserialize``. The
    configuration is validated whole before anything is loaded, and a load that fails leaves
    the previous configuration and hash in place."""
    _only_db_less(ctx)
    params: dict[str, Any] = dict(ctx.query)
    params.update(ctx.body.data)
    flatten = _truthy(params.pop("flatten_errors", None))
    check_hash = _lua_tostring(params.pop("check_hash", None)) == "1"
    old_hash = ctx.node.config_hash
    new_hash: str | None = None
    # Lua truthiness: a JSON null (cjson.null) is a value; only absence and false are not.
    if "_format_version" in params and params["_format_version"] is not False:
        dc_table: dict[Any, Any] | list[Any] = params
    else:
        config = params.get("config", False)
        if config is False:
            if not ctx.body.body:
                raise message_error(400, "expected a declarative configuration")
            config = ctx.body.body
        try:
            dc_table, new_hash = dialect.unserialize(config)
        except dialect.ParseFailure as e:
            err = {"error": str(e)}
            raise declarative_error(err, dialect.pl_pretty(err)) from None
    if check_hash and new_hash is not None and old_hash == new_hash:
        return _json(304, None)
    loaded = kong_config.validate_config(dc_table, flatten=flatten)
    if new_hash is None:
        new_hash = kong_config.table_hash(dc_table)
    failure = ctx.sim.faults.take_config_load(ctx.node.index)
    if failure is not None:
        status, message = CONFIG_LOAD_FAILURES[failure]
        headers = {"Retry-After": "1"} if status == 429 else None
        return _json(status, {"message": message}, headers)
    kong_config.load_config(ctx.store, loaded, ctx.sim.profile)
    ctx.node.config_hash = kong_config.EMPTY_HASH if loaded.empty else new_hash
    ctx.node.health_marks.clear()
    return _json(201, loaded.response_body(ctx.store))
