"""``kongsplit get rollout NAME`` and ``kongsplit get rollouts``: a Rollout as Argo's plugin
shows it (``kubectl argo rollouts get rollout``), with what kongsplit computes for it and what
every Kong node serves. ``--watch`` redraws in place on every change.

What one view holds, and where each part comes from:

- Argo's status, message, step and set weight, the ReplicaSets with ready/desired pods: the
  Rollout and its ReplicaSets, read as the plugin reads them (``argoview``).
- The split kongsplit computes: the same engine as the daemon and ``plan``
  (``desired.desired_state``) on the Rollout, its ReplicaSets and Services; or why nothing is
  written (held, invalid, not annotated).
- Kong: each target's weight in the Admin API, and per node (``kong.nodes``/``--node``, else the
  Admin API URL) the weight its balancer serves and its health, from
  ``/upstreams/{u}/health`` as ``/verify`` reads it. On DB-less nodes that answer also carries
  the target's weight in that node's own loaded configuration, so drift is judged per node; a
  hybrid control plane builds no balancers, so its data planes must be listed to show what is
  served.
- Drift: a target whose weight in Kong differs from the desired one (a wanted target missing, or
  one not wanted carrying weight).
- Last applied: the newest ``KongWeightsApplied`` Event on the Rollout (no port-forward needed;
  Events expire after an hour by default); with ``--state-url`` the running daemon's ``/state``
  instead (the time Kong acknowledged the write, the daemon's own state and last error).

``-o json`` prints ``{"rollouts": [view, ...]}`` (one compact line per change with ``--watch``);
the view's keys are documented in docs/operations.md. Exit codes: 0 shown (and ``--watch`` ended
by Ctrl-C); 1 Kubernetes or Kong could not be read, or no such Rollout; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

import aiohttp

from kongsplit import argoview
from kongsplit.config import ConfigError, Settings, redact_url
from kongsplit.desired import Desired, desired_state
from kongsplit.inspect import add_kong_arguments, add_kube_arguments, kong_settings, namespaces_of
from kongsplit.kong.client import KongAdmin, RetryPolicy
from kongsplit.kong.errors import KongError, KongNotFound
from kongsplit.kong.records import KongMode, Target, TargetHealth
from kongsplit.kong.targets import owner_label
from kongsplit.plan import BOTH_NAMESPACE_FLAGS, refusal, unreachable_reason
from kongsplit.rollouts import (
    ObjectError,
    ReplicaSet,
    Service,
    parse_replicaset,
    parse_rollout,
    parse_service,
)

if TYPE_CHECKING:  # kubernetes-asyncio is heavy: imported when used (completion stays quick)
    from kongsplit import kube
    from kongsplit.watcher import Resource

#: The Event reason kongsplit posts on a Rollout for every apply Kong acknowledged
#: (``events.REASON_APPLIED``; kept here so that ``get`` loads no Kubernetes client to parse).
REASON_APPLIED = "KongWeightsApplied"
#: What ``get`` accepts as its first word (``ro`` as Argo's plugin allows).
KINDS = ("rollout", "rollouts", "ro")
#: Interactive: a Kong that does not answer is shown within seconds, not retried for long.
_KONG_RETRY = RetryPolicy(attempts=2, initial_backoff=0.2, max_backoff=1.0, max_elapsed=5.0)
_STATE_TIMEOUT = aiohttp.ClientTimeout(total=5)
_MIN_REDRAW = 0.2  # seconds between two redraws (Argo's plugin: 200 ms, against flicker)

Key = tuple[str, str]  # (namespace, name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "kind",
        choices=KINDS,
        metavar="rollout|rollouts",
        help="'rollout NAME' for one Rollout, 'rollouts' to list them",
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="the Rollout's name")
    parser.add_argument(
        "-w", "--watch", action="store_true", help="redraw on every change until Ctrl-C"
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="text (default) or json for scripts",
    )
    parser.add_argument(
        "--no-color", action="store_true", help="no colours (also when $NO_COLOR is set)"
    )
    parser.add_argument(
        "--state-url",
        metavar="URL",
        help="the running daemon's HTTP address (e.g. http://localhost:9102 after kubectl "
        "port-forward): its /state gives the last apply time, its state and last error",
    )
    parser.add_argument(
        "--interval",
        type=_seconds,
        default=2.0,
        metavar="SECONDS",
        help="with --watch: how often Kong is read (default 2)",
    )
    kubernetes = parser.add_argument_group("Kubernetes (as kubectl finds it)")
    add_kube_arguments(kubernetes, default_all=False)
    kong = parser.add_argument_group("Kong (as inspect takes it)")
    add_kong_arguments(kong)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"give between 0.1 and 3600 seconds, not {text}")
    return value


class GetError(Exception):
    """What stops ``get``: the message is the one line the user reads."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _error(message: str) -> None:
    print(f"kongsplit get: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- what is known


@dataclass
class NodeRead:
    node: str  # the URL as shown (no credentials)
    rows: dict[str, TargetHealth] | None  # target → its row; None when the node did not answer
    error: str | None = None


@dataclass
class UpstreamRead:
    targets: list[Target] | None  # None: no such upstream in Kong
    nodes: list[NodeRead] = field(default_factory=list)
    error: str | None = None


@dataclass
class KongRead:
    url: str
    version: str | None = None
    edition: str | None = None
    mode: str | None = None
    nodes: list[str] = field(default_factory=list)
    error: str | None = None
    note: str | None = None
    upstreams: dict[tuple[str, str], UpstreamRead] = field(default_factory=dict)


@dataclass
class Applied:
    time: str  # RFC 3339
    source: str  # "event" or "state"
    message: str | None = None


@dataclass
class Snapshot:
    """Everything one frame is drawn from."""

    rollouts: dict[Key, dict[str, Any]] = field(default_factory=dict)
    replicasets: dict[Key, dict[str, Any]] = field(default_factory=dict)
    services: dict[Key, dict[str, Any]] = field(default_factory=dict)
    kong: KongRead | None = None
    applied: dict[Key, Applied] = field(default_factory=dict)
    daemon: dict[Key, dict[str, Any]] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # source → one line


def _key(obj: Mapping[str, Any]) -> Key | None:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str):
        return None
    ns = meta.get("namespace")
    return (ns if isinstance(ns, str) and ns else "default", meta["name"])


# --------------------------------------------------------------------------- the view


def _services_by_ns(snapshot: Snapshot) -> dict[str, dict[str, Service | ObjectError]]:
    out: dict[str, dict[str, Service | ObjectError]] = {}
    for (ns, name), obj in snapshot.services.items():
        out.setdefault(ns, {})[name] = parse_service(obj)
    return out


def _replicasets_by_ns(snapshot: Snapshot) -> dict[str, list[ReplicaSet]]:
    out: dict[str, list[ReplicaSet]] = {}
    for (ns, _), obj in snapshot.replicasets.items():
        rs = parse_replicaset(obj)
        if isinstance(rs, ReplicaSet):
            out.setdefault(ns, []).append(rs)
    return out


@dataclass(frozen=True)
class Context:
    """What a view is computed with: the settings that shape the desired state."""

    workspace: str | None
    cluster_domain: str


def desired_of(
    obj: Mapping[str, Any],
    *,
    services: Mapping[str, Service | ObjectError],
    replicasets: Sequence[ReplicaSet],
    context: Context,
) -> tuple[Desired | None, str | None]:
    """The Rollout's Desired, or (None, why) when it cannot be read at all."""
    parsed = parse_rollout(obj)
    if isinstance(parsed, ObjectError):
        return None, str(parsed)
    return (
        desired_state(
            parsed,
            services=services,
            replicasets=replicasets,
            default_workspace=context.workspace,
            cluster_domain=context.cluster_domain,
        ),
        None,
    )


def build_views(snapshot: Snapshot, keys: Iterable[Key], context: Context) -> list[dict[str, Any]]:
    """The ``-o json`` view of each Rollout in ``keys`` (those still known)."""
    services = _services_by_ns(snapshot)
    replicasets = _replicasets_by_ns(snapshot)
    rs_raw: dict[str, list[dict[str, Any]]] = {}
    for (ns, _), obj in snapshot.replicasets.items():
        rs_raw.setdefault(ns, []).append(obj)
    views = []
    for key in keys:
        found = snapshot.rollouts.get(key)
        if found is None:
            continue
        obj = found
        desired, unreadable = desired_of(
            obj,
            services=services.get(key[0], {}),
            replicasets=replicasets.get(key[0], []),
            context=context,
        )
        views.append(_view(snapshot, key, obj, desired, unreadable, rs_raw.get(key[0], [])))
    return views


def _view(
    snapshot: Snapshot,
    key: Key,
    obj: Mapping[str, Any],
    desired: Desired | None,
    unreadable: str | None,
    replicasets: list[dict[str, Any]],
) -> dict[str, Any]:
    phase, message = argoview.rollout_phase(obj)
    step = argoview.step_of(obj)
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    view: dict[str, Any] = {
        "namespace": key[0],
        "name": key[1],
        "created": meta.get("creationTimestamp")
        if isinstance(meta.get("creationTimestamp"), str)
        else None,
        "status": phase,
        "message": message,
        "strategy": argoview.strategy(obj),
        "step": step.text,
        "step_index": step.index,
        "step_count": step.count,
        "current_step": step.current,
        "set_weight": argoview.current_set_weight(obj),
        "replicas": argoview.replica_counts(obj),
        "replicasets": [
            {
                "name": rs.name,
                "revision": rs.revision,
                "role": rs.role,
                "status": rs.status,
                "desired": rs.desired,
                "current": rs.current,
                "ready": rs.ready,
                "available": rs.available,
                "created": rs.created,
            }
            for rs in argoview.replicaset_infos(obj, replicasets)
        ],
    }
    view["kongsplit"] = _kongsplit_part(desired, unreadable, snapshot.daemon.get(key))
    kong_part = _kong_part(snapshot.kong, desired)
    view["kong"] = kong_part
    in_sync = kong_part["in_sync"] if kong_part is not None else None
    view["drift"] = None if in_sync is None else not in_sync
    applied = snapshot.applied.get(key)
    view["last_applied"] = (
        None
        if applied is None
        else {"time": applied.time, "source": applied.source, "message": applied.message}
    )
    return view


def _kongsplit_part(
    desired: Desired | None, unreadable: str | None, daemon: Mapping[str, Any] | None
) -> dict[str, Any]:
    part: dict[str, Any] = {
        "upstream": None,
        "workspace": None,
        "state": "invalid",
        "reason": unreadable,
        "rule": None,
        "hold": None,
        "split": None,
        "desired": None,
        "daemon_state": None,
        "daemon_error": None,
    }
    if desired is not None:
        split, plan = desired.split, desired.plan
        if desired.mapping is not None:
            part["upstream"] = desired.mapping.upstream
            part["workspace"] = desired.mapping.workspace
        if split is not None:
            part["rule"] = split.rule
            part["hold"] = split.hold
            part["split"] = {"canary": split.canary, "stable": split.stable, "max": split.max}
        if plan is not None:
            part["desired"] = [
                {"target": t.target, "role": t.role, "service": t.service, "weight": t.weight}
                for t in plan.targets
            ]
        if desired.error is not None:
            part["state"], part["reason"] = "invalid", str(desired.error)
        elif desired.mapping is None:
            part["state"], part["reason"] = "unmanaged", desired.skipped
        elif plan is None:
            part["state"], part["reason"] = "invalid", desired.skipped  # as the daemon reports it
        elif desired.hold:
            part["state"], part["reason"] = "held", desired.hold
        else:
            part["state"], part["reason"] = "managed", None
    if daemon is not None:
        part["daemon_state"] = daemon.get("state")
        part["daemon_error"] = daemon.get("last_error")
    return part


def _kong_part(kong: KongRead | None, desired: Desired | None) -> dict[str, Any] | None:
    plan = desired.plan if desired is not None else None
    if kong is None or plan is None:
        return None
    part: dict[str, Any] = {
        "url": kong.url,
        "version": kong.version,
        "edition": kong.edition,
        "mode": kong.mode,
        "nodes": list(kong.nodes),
        "error": kong.error,
        "note": kong.note,
        "upstream_found": None,
        "targets": [],
        "in_sync": None,
        "serving": None,
    }
    if kong.error is not None:
        return part
    read = kong.upstreams.get((plan.workspace or "", plan.upstream))
    if read is None:
        part["error"] = "not read yet"
        return part
    if read.error is not None:
        part["error"] = read.error
        return part
    wanted = {t.target: t for t in plan.targets}
    if read.targets is None:
        part["upstream_found"] = False
        part["in_sync"] = not any(t.weight for t in plan.targets)
        part["targets"] = [
            _target_row(t.target, wanted[t.target], None, read.nodes, kong.mode)
            for t in plan.targets
        ]
        return part
    part["upstream_found"] = True
    present = {t.target: t for t in read.targets}
    rows = [
        _target_row(name, wanted[name], present.get(name), read.nodes, kong.mode) for name in wanted
    ]
    rows += [
        _target_row(t.target, None, t, read.nodes, kong.mode)
        for t in sorted(read.targets, key=lambda t: t.target)
        if t.target not in wanted
    ]
    part["targets"] = rows
    part["in_sync"] = not any(r["drift"] for r in rows)
    if read.nodes and kong.note is None:
        # Every node answered and its balancer serves every desired weight (/verify's test of
        # the weight; health is shown beside it).
        part["serving"] = all(
            n["error"] is None and (n["served"] or 0) == (r["desired"] or 0)
            for r in rows
            for n in r["nodes"]
        )
    return part


def _target_row(
    name: str,
    wanted: Any,
    target: Target | None,
    nodes: Sequence[NodeRead],
    mode: str | None,
) -> dict[str, Any]:
    desired_weight: int | None = wanted.weight if wanted is not None else None
    weight = target.weight if target is not None else None
    want = desired_weight or 0
    drift = (weight or 0) != want or (target is None and want > 0)
    node_rows = []
    for n in nodes:
        row = n.rows.get(name) if n.rows is not None else None
        config_weight = row.weight if row is not None else None
        if mode == str(KongMode.DBLESS) and n.rows is not None and (config_weight or 0) != want:
            drift = True  # each DB-less node holds its own configuration
        node_rows.append(
            {
                "node": n.node,
                "served": row.node_weight if row is not None else None,
                "health": row.health if row is not None else None,
                "weight": config_weight,
                "error": n.error,
            }
        )
    return {
        "target": name,
        "role": wanted.role if wanted is not None else None,
        "service": wanted.service if wanted is not None else None,
        "owner": owner_label(target.tags) if target is not None else None,
        "desired": desired_weight,
        "weight": weight,
        "drift": drift,
        "nodes": node_rows,
    }


# --------------------------------------------------------------------------- reading


def wanted_upstreams(
    snapshot: Snapshot, keys: Iterable[Key], context: Context
) -> set[tuple[str, str]]:
    """(workspace or '', upstream) of every Rollout in ``keys`` that has a desired plan."""
    services = _services_by_ns(snapshot)
    replicasets = _replicasets_by_ns(snapshot)
    out = set()
    for key in keys:
        obj = snapshot.rollouts.get(key)
        if obj is None:
            continue
        desired, _ = desired_of(
            obj,
            services=services.get(key[0], {}),
            replicasets=replicasets.get(key[0], []),
            context=context,
        )
        if desired is not None and desired.plan is not None:
            out.add((desired.plan.workspace or "", desired.plan.upstream))
    return out


async def read_kong(
    admin: KongAdmin, nodes: Sequence[str], upstreams: Iterable[tuple[str, str]]
) -> KongRead:
    """What Kong holds and serves for ``upstreams``; never raises a KongError."""
    read = KongRead(url=admin.display_url, nodes=[redact_url(n) for n in nodes])
    try:
        mode = await admin.detect_mode()
    except KongError as e:
        read.error = str(e)
        return read
    info = admin.node
    assert info is not None
    read.version, read.edition, read.mode = info.version, info.edition, str(mode)
    configured = [n for n in nodes if n.rstrip("/") != admin.url]
    ask_nodes: Sequence[str] = nodes
    if mode == KongMode.CONTROL_PLANE and not configured:
        read.note = (
            f"Kong at {admin.display_url} is a hybrid control plane: it builds no balancers, so "
            "what is served is on the data planes; list their Status API URLs with --node (or "
            "kong.nodes in --config)"
        )
        ask_nodes = ()

    async def one(ws: str, upstream: str) -> tuple[tuple[str, str], UpstreamRead]:
        workspace = ws or None
        try:
            targets: list[Target] | None = await admin.list_targets(upstream, workspace=workspace)
        except KongNotFound:
            targets = None
        except KongError as e:
            return (ws, upstream), UpstreamRead(None, error=str(e))
        node_reads = await asyncio.gather(
            *(_node(admin, upstream, workspace, n) for n in ask_nodes)
        )
        return (ws, upstream), UpstreamRead(targets, list(node_reads))

    for key, value in await asyncio.gather(*(one(ws, u) for ws, u in sorted(upstreams))):
        read.upstreams[key] = value
    return read


async def _node(admin: KongAdmin, upstream: str, workspace: str | None, node: str) -> NodeRead:
    shown = redact_url(node)
    try:
        rows = await admin.health(upstream, node_url=node, workspace=workspace)
    except KongNotFound:
        return NodeRead(shown, {}, None)  # the upstream has not reached this node yet
    except KongError as e:
        return NodeRead(shown, None, str(e))
    return NodeRead(shown, {r.target: r for r in rows})


class Cluster:
    """Reads from one Kubernetes API server, with the words ``plan`` uses for its refusals."""

    def __init__(self, api: Any, namespace: str | None) -> None:
        self.api = api
        self.namespace = namespace  # None: every namespace
        self.server = redact_url(str(api.configuration.host))
        self.events_readable = True

    async def list(self, resource: Resource) -> list[dict[str, Any]]:
        from kongsplit import kube

        try:
            body = await kube.request(self.api, "GET", resource.path(self.namespace))
        except kube.KubeUnavailable as e:
            raise GetError(
                f"cannot reach the Kubernetes API at {self.server}: {unreachable_reason(e)}; "
                "check the kubeconfig (--kubeconfig, --context) and that the cluster is up"
            ) from None
        except kube.KubeApiError as e:
            raise GetError(
                refusal(e, self.server, resource.plural, resource.group, self.namespace)
            ) from None
        items = body.get("items")
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    async def fill(self, snapshot: Snapshot) -> None:
        """One list of Rollouts, ReplicaSets and Services into ``snapshot``."""
        from kongsplit.watcher import REPLICASETS, ROLLOUTS, SERVICES

        for resource, store in (
            (ROLLOUTS, snapshot.rollouts),
            (REPLICASETS, snapshot.replicasets),
            (SERVICES, snapshot.services),
        ):
            store.clear()
            for item in await self.list(resource):
                key = _key(item)
                if key is not None:
                    store[key] = item

    async def applied(self) -> tuple[dict[Key, Applied], str | None]:
        """The newest KongWeightsApplied Event of each Rollout, or why Events cannot be read."""
        from kongsplit import kube

        if not self.events_readable:
            return {}, None
        path = kube.api_path("", "v1", "events", self.namespace)
        try:
            body = await kube.request(
                self.api,
                "GET",
                path,
                query={"fieldSelector": f"reason={REASON_APPLIED},involvedObject.kind=Rollout"},
            )
        except kube.KubeApiError as e:
            if e.status in (401, 403, 404):
                self.events_readable = False  # it will not get better while we run
            return {}, f"Events cannot be read ({e.status} {e.reason}): last applied unknown"
        except kube.KubeUnavailable as e:
            return {}, f"Events cannot be read ({unreachable_reason(e)})"
        return applied_from_events(body.get("items")), None


def applied_from_events(items: object) -> dict[Key, Applied]:
    """The newest ``KongWeightsApplied`` Event per Rollout (the API server may ignore the field
    selector, as the simulators do: every Event is checked here)."""
    out: dict[Key, Applied] = {}
    for event in items if isinstance(items, list) else []:
        if not isinstance(event, Mapping) or event.get("reason") != REASON_APPLIED:
            continue
        involved = event.get("involvedObject")
        if not isinstance(involved, Mapping) or involved.get("kind") != "Rollout":
            continue
        name, ns = involved.get("name"), involved.get("namespace")
        if not isinstance(name, str) or not isinstance(ns, str):
            continue
        series = event.get("series")
        meta = event.get("metadata")
        # When it last happened: lastTimestamp (core/v1, what kongsplit writes), the series'
        # last observation or eventTime (events.k8s.io); else when it was first recorded.
        last = [
            event.get("lastTimestamp"),
            series.get("lastObservedTime") if isinstance(series, Mapping) else None,
            event.get("eventTime"),
        ]
        first = [
            event.get("firstTimestamp"),
            meta.get("creationTimestamp") if isinstance(meta, Mapping) else None,
        ]
        stamps = [s for s in last if isinstance(s, str) and s] or [
            s for s in first if isinstance(s, str) and s
        ]
        stamp = max(stamps, key=_instant, default=None)
        if stamp is None:
            continue
        known = out.get((ns, name))
        if known is None or _instant(stamp) > _instant(known.time):
            message = event.get("message")
            out[ns, name] = Applied(
                _normal(stamp), "event", message if isinstance(message, str) else None
            )
    return out


def _instant(stamp: str) -> datetime:
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _normal(stamp: str) -> str:
    """Any RFC 3339 time → ``YYYY-MM-DDTHH:MM:SSZ`` (UTC, whole seconds)."""
    when = _instant(stamp)
    if when.year == 1:
        return stamp
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def read_state(url: str) -> tuple[dict[Key, dict[str, Any]], str | None]:
    """The daemon's ``/state``: its entry per Rollout, or why it could not be read."""
    from kongsplit import kube

    shown = redact_url(url)
    endpoint = url.rstrip("/") + "/state"
    try:
        async with (
            aiohttp.ClientSession(timeout=_STATE_TIMEOUT) as session,
            session.get(endpoint, allow_redirects=False) as response,
        ):
            if response.status != 200:
                return {}, f"kongsplit at {shown} answered /state with {response.status}"
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
        reason = kube.no_answer(e) if not isinstance(e, ValueError) else "not JSON"
        return {}, (
            f"cannot read kongsplit's /state at {shown} ({reason}): is the daemon's port "
            "forwarded there (kubectl -n kongsplit port-forward deploy/kongsplit 9102)?"
        )
    out: dict[Key, dict[str, Any]] = {}
    rollouts = body.get("rollouts") if isinstance(body, dict) else None
    for entry in rollouts if isinstance(rollouts, list) else []:
        if isinstance(entry, dict):
            ns, name = entry.get("namespace"), entry.get("name")
            if isinstance(ns, str) and isinstance(name, str):
                out[ns, name] = entry
    return out, None


def applied_from_state(daemon: Mapping[Key, Mapping[str, Any]]) -> dict[Key, Applied]:
    out = {}
    for key, entry in daemon.items():
        stamp = entry.get("last_apply")
        if isinstance(stamp, int | float) and not isinstance(stamp, bool):
            when = datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            out[key] = Applied(when, "state")
    return out


# --------------------------------------------------------------------------- drawing


_ICONS = {
    "Healthy": "✔",
    "Progressing": "◌",
    "Paused": "॥",
    "Degraded": "✖",
    "Error": "⚠",
    "InvalidSpec": "⚠",
    "Unknown": "?",
    "ScaledDown": "•",
    "ReplicaFailure": "✖",
}
_COLORS = {
    "Healthy": 32,
    "Progressing": 94,
    "Degraded": 31,
    "Error": 31,
    "InvalidSpec": 31,
    "ReplicaFailure": 31,
    "Unknown": 33,
    "stable": 32,
    "canary": 33,
    "DRIFT": 31,
    "!": 31,
    "in sync": 32,
}


@dataclass(frozen=True)
class Style:
    color: bool = False
    unicode: bool = True

    def paint(self, text: str, key: str) -> str:
        code = _COLORS.get(key)
        if not self.color or code is None or not text:
            return text
        return f"\x1b[{code}m{text}\x1b[0m"

    def status(self, status: str) -> str:
        """``✔ Healthy`` (plain ``Healthy`` without unicode), painted."""
        icon = _ICONS.get(status, " ") if self.unicode else ""
        return f"{icon} {status}" if icon else status

    @property
    def tree(self) -> tuple[str, str, str, str]:
        """(branch, last branch, pipe, blank) of the tree."""
        return ("├──", "└──", "│  ", "   ") if self.unicode else ("|--", "`--", "|  ", "   ")

    def icon(self, which: str) -> str:
        if not self.unicode:
            return ""
        return {"rollout": "⟳ ", "revision": "# ", "replicaset": "⧉ "}[which]


def style_for(stream: TextIO, *, no_color: bool) -> Style:
    tty = stream.isatty()
    color = tty and not no_color and not os.environ.get("NO_COLOR")
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "✔◌॥✖⚠•⟳⧉├└│".encode(encoding)
        unicode = True
    except (UnicodeEncodeError, LookupError):
        unicode = False
    return Style(color=color, unicode=unicode)


Cell = tuple[str, str | None]  # (text, colour key)


def table(
    rows: Sequence[Sequence[str | Cell]],
    style: Style,
    *,
    right: frozenset[int] = frozenset(),
    indent: str = "",
) -> list[str]:
    """Columns two spaces apart, padded on the plain text, painted after padding."""
    cells = [[c if isinstance(c, tuple) else (c, None) for c in row] for row in rows]
    widths: dict[int, int] = {}
    for row in cells:
        for i, (text, _) in enumerate(row):
            widths[i] = max(widths.get(i, 0), len(text))
    lines = []
    for row in cells:
        parts = []
        for i, (text, key) in enumerate(row):
            padded = text.rjust(widths[i]) if i in right else text.ljust(widths[i])
            if key is not None:
                padded = padded.replace(text, style.paint(text, key), 1)
            parts.append(padded)
        lines.append((indent + "  ".join(parts)).rstrip())
    return lines


def _ago(stamp: str | None, now: datetime) -> str:
    return argoview.age(stamp, now) if stamp else "-"


def _split_text(view: Mapping[str, Any]) -> str:
    split = view["kongsplit"]["split"]
    if split is None or view["kongsplit"]["upstream"] is None:
        return "-"
    return f"{split['canary']}/{split['stable']}"


def _kong_text(view: Mapping[str, Any]) -> str:
    kong = view["kong"]
    if kong is None:
        return "-"
    if kong["error"]:
        return "?"
    by_role: dict[str, int] = {}
    for t in kong["targets"]:
        if t["role"] in ("canary", "stable") and t["weight"] is not None:
            by_role[t["role"]] = t["weight"]
    if not by_role:
        return "-" if kong["upstream_found"] is not False else "missing"
    return f"{by_role.get('canary', '-')}/{by_role.get('stable', '-')}"


def _state_cell(view: Mapping[str, Any]) -> Cell:
    ks = view["kongsplit"]
    state = ks["daemon_state"] or ks["state"]
    if state in ("invalid", "refused", "failing"):
        return state, "!"
    return state, None


def _drift_cell(view: Mapping[str, Any]) -> Cell:
    if view["drift"] is None:
        return "-", None
    return ("DRIFT", "DRIFT") if view["drift"] else ("in sync", "in sync")


def render_list(
    views: Sequence[Mapping[str, Any]], style: Style, *, all_namespaces: bool, now: datetime
) -> list[str]:
    """``get rollouts``: one line per Rollout, as the plugin's ``list rollouts`` (plus Kong)."""
    header: list[str | Cell] = ["NAMESPACE"] if all_namespaces else []
    header += [
        "NAME",
        "STATUS",
        "STEP",
        "SET-WEIGHT",
        "READY",
        "UPSTREAM",
        "SPLIT",
        "KONG",
        "KONGSPLIT",
        "DRIFT",
        "LAST-APPLIED",
    ]
    rows: list[list[str | Cell]] = [header]
    for v in views:
        row: list[str | Cell] = [v["namespace"]] if all_namespaces else []
        applied = v["last_applied"]
        row += [
            v["name"],
            (v["status"], v["status"]),
            v["step"],
            "-" if v["set_weight"] is None else str(v["set_weight"]),
            f"{v['replicas']['ready']}/{v['replicas']['current']}",
            v["kongsplit"]["upstream"] or "-",
            _split_text(v),
            _kong_text(v),
            _state_cell(v),
            _drift_cell(v),
            _ago(applied["time"], now) if applied else "-",
        ]
        rows.append(row)
    return table(rows, style)


def render_rollout(view: Mapping[str, Any], style: Style, *, now: datetime) -> list[str]:
    """``get rollout NAME``: the plugin's summary and tree, then kongsplit and Kong."""
    out: list[str] = []

    def field_(label: str, value: str) -> None:
        out.append(f"{label:<16}{value}".rstrip())

    field_("Name:", view["name"])
    field_("Namespace:", view["namespace"])
    field_("Status:", style.paint(style.status(view["status"]), view["status"]))
    if view["message"]:
        field_("Message:", view["message"])
    field_("Strategy:", view["strategy"])
    if view["strategy"] == "Canary":
        step = view["step"]
        if view["current_step"] and step != "-":
            step += f" ({view['current_step']})"
        field_("  Step:", step)
        field_("  SetWeight:", "-" if view["set_weight"] is None else str(view["set_weight"]))
    out.append("Replicas:")
    for name in ("desired", "current", "updated", "ready", "available"):
        field_(f"  {name.capitalize()}:", str(view["replicas"][name]))
    out += _kongsplit_lines(view, style, now)
    out.append("")
    out += _tree(view, style, now)
    kong_lines = _kong_lines(view, style)
    if kong_lines:
        out.append("")
        out += kong_lines
    return out


def _kongsplit_lines(view: Mapping[str, Any], style: Style, now: datetime) -> list[str]:
    ks = view["kongsplit"]
    out = []
    upstream = ks["upstream"]
    out.append(
        f"{'Kong upstream:':<16}"
        + (
            upstream + (f" (workspace {ks['workspace']})" if ks["workspace"] else "")
            if upstream
            else "-"
        )
    )
    state_text, key = _state_cell(view)
    split = ks["split"]
    line = state_text
    if split is not None and ks["state"] != "unmanaged":
        line += (
            f", canary {split['canary']} / stable {split['stable']} of {split['max']}"
            f" (rule: {ks['rule']})"
        )
    out.append(f"{'  kongsplit:':<16}{style.paint(line, key) if key else line}")
    if ks["reason"]:
        label = {"held": "  Held:", "managed": "  Note:"}.get(ks["state"], "  Reason:")
        out.append(f"{label:<16}{ks['reason']}")
    if ks["daemon_error"]:
        out.append(f"{'  Last error:':<16}{ks['daemon_error']}")
    drift, drift_key = _drift_cell(view)
    kong = view["kong"]
    if kong is not None:
        if kong["error"]:
            text, drift_key = f"cannot tell: {kong['error']}", "!"
        elif kong["upstream_found"] is False:
            text = f"{drift} (upstream {upstream} does not exist in Kong)"
        elif drift == "DRIFT" and ks["state"] == "held":
            text = "DRIFT (expected while held: kongsplit keeps the weights it applied)"
        else:
            text = drift
        out.append(f"{'  In Kong:':<16}{style.paint(text, drift_key) if drift_key else text}")
    applied = view["last_applied"]
    if applied is not None:
        source = f"Event {REASON_APPLIED}" if applied["source"] == "event" else "kongsplit /state"
        out.append(
            f"{'  Last applied:':<16}{applied['time']} ({_ago(applied['time'], now)} ago, {source})"
        )
    elif upstream:
        out.append(f"{'  Last applied:':<16}unknown (no {REASON_APPLIED} Event)")
    return out


def _tree(view: Mapping[str, Any], style: Style, now: datetime) -> list[str]:
    branch, last, pipe, blank = style.tree
    rollout_info = ""
    if view["set_weight"] is not None and view["strategy"] == "Canary":
        rollout_info = f"setWeight {view['set_weight']}"
        if view["step"] != "-":
            rollout_info += f", step {view['step']}"
    rows: list[list[str | Cell]] = [["NAME", "KIND", "STATUS", "AGE", "INFO"]]
    rows.append(
        [
            style.icon("rollout") + view["name"],
            "Rollout",
            (style.status(view["status"]), view["status"]),
            _ago(view["created"], now),
            rollout_info,
        ]
    )
    revisions = sorted({rs["revision"] for rs in view["replicasets"]}, reverse=True)
    for i, revision in enumerate(revisions):
        rev_last = i == len(revisions) - 1
        rows.append(
            [
                (last if rev_last else branch) + style.icon("revision") + f"revision:{revision}",
                "",
                "",
                "",
                "",
            ]
        )
        children = [rs for rs in view["replicasets"] if rs["revision"] == revision]
        for j, rs in enumerate(children):
            prefix = (blank if rev_last else pipe) + (last if j == len(children) - 1 else branch)
            tags = [rs["role"]] if rs["role"] else []
            tags.append(f"ready:{rs['ready']}/{rs['desired']}")
            rows.append(
                [
                    prefix + style.icon("replicaset") + rs["name"],
                    "ReplicaSet",
                    (style.status(rs["status"]), rs["status"]),
                    _ago(rs["created"], now),
                    (",".join(tags), rs["role"]),
                ]
            )
    return table(rows, style)


def _kong_lines(view: Mapping[str, Any], style: Style) -> list[str]:
    kong = view["kong"]
    if kong is None:
        return []
    head = f"Kong {kong['url']}"
    if kong["mode"]:
        head += f" ({kong['version']} {kong['edition']}, mode {kong['mode']})"
    out = [head]
    if kong["error"]:
        out.append(style.paint(f"  ! {kong['error']}", "!"))
        return out
    nodes: list[str] = kong["nodes"] if not kong["note"] else []
    header: list[str | Cell] = ["TARGET", "ROLE", "SERVICE", "DESIRED", "KONG", "DRIFT"]
    header += [f"NODE{i}" if len(nodes) > 1 else "SERVED" for i in range(1, len(nodes) + 1)]
    rows: list[list[str | Cell]] = [header]
    mismatch = False
    for t in kong["targets"]:
        role = t["role"] or t["owner"] or "-"
        row: list[str | Cell] = [
            t["target"],
            (role, t["role"]),
            t["service"] or "-",
            "-" if t["desired"] is None else str(t["desired"]),
            "-" if t["weight"] is None else str(t["weight"]),
            ("*", "DRIFT") if t["drift"] else "",
        ]
        for n in t["nodes"][: len(nodes)]:
            if n["error"]:
                row.append(("?", "!"))
                continue
            served = "-" if n["served"] is None else str(n["served"])
            off = (n["served"] or 0) != (t["desired"] or 0)
            mismatch |= off
            mark = ("≠" if style.unicode else "!") if off else ""
            cell = f"{served}{mark} {n['health'] or '-'}"
            row.append((cell, "!" if off else None))
        rows.append(row)
    out += table(rows, style, right=frozenset({3, 4}), indent="  ")
    if kong["upstream_found"] is False:
        out.append(
            "  ! the upstream does not exist in Kong (kongsplit creates it when "
            "kong.createUpstreams is on)"
        )
    if mismatch:
        out.append(
            "  ≠ this node serves another weight (not caught up yet, or drifted)"
            if style.unicode
            else "  ! this node serves another weight (not caught up yet, or drifted)"
        )
    if len(nodes) > 1:
        out.append("  nodes: " + "  ".join(f"[{i}] {n}" for i, n in enumerate(nodes, 1)))
    errors = {n["node"]: n["error"] for t in kong["targets"] for n in t["nodes"] if n["error"]}
    out += [style.paint(f"  ! node {node}: {err}", "!") for node, err in errors.items()]
    if kong["note"]:
        out.append(f"  note: {kong['note']}")
    return out


# --------------------------------------------------------------------------- running


class Session:
    """One run of ``get``: the clients, what is known, and how to draw it."""

    def __init__(
        self,
        args: argparse.Namespace,
        settings: Settings,
        source: kube.KubeSource,
        namespace: str | None,
    ) -> None:
        self.args = args
        self.settings = settings
        self.source = source
        self.namespace = namespace
        self.name: str | None = args.name
        self.snapshot = Snapshot()
        self.context = Context(settings.kong.workspace, settings.kubernetes.cluster_domain)
        self.admin = KongAdmin.from_config(settings.kong, retry=_KONG_RETRY)
        self.nodes = settings.kong.verify_nodes
        self.cluster: Cluster | None = None

    def keys(self) -> list[Key]:
        if self.name is not None:
            assert self.namespace is not None
            return [(self.namespace, self.name)]
        return sorted(self.snapshot.rollouts)

    async def open(self) -> None:
        from kongsplit import kube

        try:
            api = await kube.client_for(self.source)
        except kube.KubeConfigError as e:
            raise GetError(str(e)) from None
        self.cluster = Cluster(api, self.namespace)

    async def close(self) -> None:
        await self.admin.close()
        if self.cluster is not None:
            await self.cluster.api.close()

    async def read_kubernetes(self) -> None:
        assert self.cluster is not None
        await self.cluster.fill(self.snapshot)
        if self.name is not None and self.keys()[0] not in self.snapshot.rollouts:
            raise GetError(self.not_found())

    def not_found(self) -> str:
        assert self.namespace is not None
        there = sorted(name for ns, name in self.snapshot.rollouts if ns == self.namespace)
        listed = f"Rollouts there: {', '.join(there[:10])}" + ("…" if len(there) > 10 else "")
        return (
            f"Rollout {self.name} not found in namespace {self.namespace} "
            f"({listed if there else 'it has no Rollouts'}); check the name, or give "
            "-n NAMESPACE (kongsplit get rollouts -A lists every Rollout)"
        )

    async def read_rest(self) -> None:
        """Kong, the Events and the daemon's /state: what changes without a Kubernetes event."""
        assert self.cluster is not None
        snap = self.snapshot
        upstreams = wanted_upstreams(snap, self.keys(), self.context)
        kong, (applied, events_problem) = await asyncio.gather(
            read_kong(self.admin, self.nodes, upstreams), self.cluster.applied()
        )
        snap.kong = kong
        snap.applied = applied
        self._problem("events", events_problem)
        if self.args.state_url:
            daemon, problem = await read_state(self.args.state_url)
            self._problem("state", problem)
            if problem is None:
                snap.daemon = daemon
                snap.applied = {**applied, **applied_from_state(daemon)}

    def _problem(self, source: str, problem: str | None) -> None:
        if problem is None:
            self.snapshot.problems.pop(source, None)
        else:
            self.snapshot.problems[source] = problem

    def views(self) -> list[dict[str, Any]]:
        return build_views(self.snapshot, self.keys(), self.context)

    def frame(self, style: Style, now: datetime) -> list[str]:
        views = self.views()
        if self.name is not None:
            if not views:
                lines = [f"Rollout {self.namespace}/{self.name} is gone (deleted)"]
            else:
                lines = render_rollout(views[0], style, now=now)
        elif views:
            lines = render_list(views, style, all_namespaces=self.namespace is None, now=now)
        else:
            where = f"namespace {self.namespace}" if self.namespace else "any namespace"
            lines = [f"No Rollouts in {where}."]
        problems = list(self.snapshot.problems.values())
        if problems:
            lines.append("")
            lines += [style.paint(f"! {p}", "!") for p in problems]
        return lines

    def json_text(self, *, compact: bool) -> str:
        body: dict[str, Any] = {"rollouts": self.views()}
        if self.snapshot.problems:
            body["problems"] = list(self.snapshot.problems.values())
        return json.dumps(body, separators=(",", ":")) if compact else json.dumps(body, indent=2)


def run(args: argparse.Namespace) -> int:
    from kongsplit import kube

    namespaces = namespaces_of(args)
    single = args.name is not None
    problem = None
    if args.kind in ("rollout", "ro") and not single:
        problem = (
            "give the Rollout's name (kongsplit get rollout NAME), or list them with "
            "kongsplit get rollouts"
        )
    elif len(namespaces) > 1:
        problem = "give one namespace with -n, or -A for every namespace"
    elif args.all_namespaces and namespaces:
        problem = BOTH_NAMESPACE_FLAGS
    elif args.all_namespaces and single:
        problem = "a Rollout is named within one namespace: give -n NAMESPACE instead of -A"
    if problem is not None:
        _error(problem)
        return 2
    try:
        settings = kong_settings(args)
    except ConfigError as e:
        _error(str(e))
        return 2
    try:
        source = kube.resolve_source(args.kubeconfig, context=args.context)
    except kube.KubeConfigError as e:
        _error(str(e))
        return 1
    namespace = None if args.all_namespaces else (namespaces[0] if namespaces else source.namespace)
    try:
        return asyncio.run(_main(args, settings, source, namespace))
    except GetError as e:
        _error(str(e))
        return e.code
    except KeyboardInterrupt:
        if args.watch:
            return 0  # Ctrl-C before the first frame: the same wish as after it
        raise


async def _main(
    args: argparse.Namespace, settings: Settings, source: kube.KubeSource, namespace: str | None
) -> int:
    session = Session(args, settings, source, namespace)
    try:
        await session.open()
        await session.read_kubernetes()
        await session.read_rest()
        if args.watch:
            return await Watch(session, sys.stdout).run()
        out = sys.stdout
        if args.output == "json":
            print(session.json_text(compact=False), file=out)
        else:
            style = style_for(out, no_color=args.no_color)
            print("\n".join(session.frame(style, datetime.now(UTC))), file=out)
        kong = session.snapshot.kong
        if kong is not None and kong.error is not None and _kong_needed(session):
            _error(kong.error)
            return 1
        return 0
    finally:
        await session.close()


def _kong_needed(session: Session) -> bool:
    """Kong matters when a shown Rollout has a split to compare with it."""
    return bool(wanted_upstreams(session.snapshot, session.keys(), session.context))


class _Problems(logging.Handler):
    """Warnings of the watchers (which retry on their own) shown in the frame, not on stderr."""

    def __init__(self, on_problem: Callable[[str | None], None]) -> None:
        super().__init__(logging.DEBUG)
        self.on_problem = on_problem

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("kongsplit.watcher"):
            return  # Kong's trouble is shown from the Kong read itself
        if record.levelno >= logging.WARNING:
            stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
            self.on_problem(f"Kubernetes watch ({stamp}): {record.getMessage()}")
        elif record.getMessage() in ("listed", "watch expired; resuming"):
            self.on_problem(None)


class Watch:
    """``--watch``: Kubernetes watches, Kong read every ``--interval``, the frame redrawn."""

    def __init__(self, session: Session, out: TextIO) -> None:
        self.session = session
        self.out = out
        self.tty = out.isatty()
        self.style = style_for(out, no_color=session.args.no_color)
        self.changed = asyncio.Event()
        self.poke = asyncio.Event()
        self.stop = asyncio.Event()
        self.redraw = False  # set on SIGWINCH: draw the next frame even if its text is the same
        # What the watches deliver; published into the session's snapshot by ``_poll``.
        self.live = Snapshot(
            rollouts=dict(session.snapshot.rollouts),
            replicasets=dict(session.snapshot.replicasets),
            services=dict(session.snapshot.services),
        )

    def _on(self, store: dict[Key, dict[str, Any]]) -> Callable[[str, dict[str, Any]], None]:
        from kongsplit.watcher import DELETED

        def handle(event_type: str, obj: dict[str, Any]) -> None:
            key = _key(obj)
            if key is None:
                return
            if event_type == DELETED:
                store.pop(key, None)
            else:
                store[key] = obj
            self.poke.set()

        return handle

    async def _poll(self) -> None:
        """Publish what the watches delivered together with a Kong read made after it, so a
        frame never compares a new desired split with an older reading of Kong."""
        interval = float(self.session.args.interval)
        snap = self.session.snapshot
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.poke.wait(), timeout=interval)
            if self.poke.is_set():
                # Let the daemon write Kong first (and a burst of changes end): one read after.
                await asyncio.sleep(0.3)
                self.poke.clear()
            for published, live in (
                (snap.rollouts, self.live.rollouts),
                (snap.replicasets, self.live.replicasets),
                (snap.services, self.live.services),
            ):
                published.clear()
                published.update(live)
            await self.session.read_rest()
            self.changed.set()

    async def run(self) -> int:
        from kongsplit.watcher import REPLICASETS, ROLLOUTS, SERVICES, Watcher

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        if self.tty:
            loop.add_signal_handler(signal.SIGWINCH, self._resized)
        cluster = self.session.cluster
        assert cluster is not None
        snap = self.live
        scope = [self.session.namespace] if self.session.namespace else []
        logger = logging.getLogger("kongsplit")
        handler = _Problems(lambda p: self.session._problem("kubernetes", p))
        saved = (logger.propagate, logger.level)
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        watchers = [
            Watcher(cluster.api, resource, namespaces=scope, on_event=self._on(store))
            for resource, store in (
                (ROLLOUTS, snap.rollouts),
                (REPLICASETS, snap.replicasets),
                (SERVICES, snap.services),
            )
        ]
        tasks = [
            asyncio.create_task(w.run(), name=f"get-watch:{w.resource.plural}") for w in watchers
        ]
        tasks.append(asyncio.create_task(self._poll(), name="get-poll"))
        if self.tty and self.session.args.output == "text":
            self.out.write("\x1b[?25l\x1b[?7l\x1b[2J\x1b[H")
        try:
            await self._draw_loop(tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGWINCH):
                loop.remove_signal_handler(sig)
            logger.removeHandler(handler)
            logger.propagate, _ = saved
            logger.setLevel(saved[1])
            if self.tty and self.session.args.output == "text":
                self.out.write("\x1b[?7h\x1b[?25h\n")
            self.out.flush()
        return 0

    def _resized(self) -> None:
        """SIGWINCH: the next frame is drawn whole, cut to the new size."""
        self.redraw = True
        self.changed.set()

    async def _draw_loop(self, tasks: list[asyncio.Task[None]]) -> None:
        """Draw when what is shown changed. On a terminal the frame is redrawn whenever its text
        differs (the ages tick, as in Argo's plugin); piped, a frame is printed only when the
        view itself changed (its JSON), not because a second passed."""
        last: str | None = None
        ticking = self.tty and self.session.args.output == "text"
        while not self.stop.is_set():
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            state = self._render() if ticking else self.session.json_text(compact=True)
            if state != last or self.redraw:
                self.redraw = False
                self._draw(state if ticking or self.session.args.output == "json" else None)
                last = state
            waiters = [
                asyncio.ensure_future(self.stop.wait()),
                asyncio.ensure_future(self.changed.wait()),
            ]
            await asyncio.wait(
                waiters, timeout=1.0 if ticking else None, return_when=asyncio.FIRST_COMPLETED
            )
            for w in waiters:
                w.cancel()
            self.changed.clear()
            if not self.stop.is_set():
                await asyncio.sleep(_MIN_REDRAW)

    def _render(self) -> str:
        if self.session.args.output == "json":
            return self.session.json_text(compact=True)
        return "\n".join(self.session.frame(self.style, datetime.now(UTC)))

    def _draw(self, text: str | None) -> None:
        if text is None:
            text = self._render()
        if self.session.args.output == "json":
            self.out.write(text + "\n")
        elif self.tty:
            rows = shutil.get_terminal_size((100, 40)).lines
            lines = text.split("\n")[: max(rows - 1, 1)]
            self.out.write("\x1b[H" + "".join(f"{line}\x1b[K\n" for line in lines) + "\x1b[J")
        else:
            self.out.write(text + "\n\n")
        self.out.flush()
