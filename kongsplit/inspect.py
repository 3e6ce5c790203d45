"""``kongsplit inspect``: read a live Kong Admin API the way kongsplit sees it.

Per upstream: every target with its weight, its share of the upstream's total weight, its role
in its Rollout (``stable``, ``canary``, ``experiment``; ``-`` when no Rollout is read), its owner
(from tags: ``kongsplit:<namespace>/<name>``, ``kongsplit``, ``foreign``) and, per Kong node,
the health and ``nodeWeight`` its balancer reports (``/upstreams/{u}/health``). When desired
weights are known (a ``DesiredProvider``, or the Rollouts read from Kubernetes with
``--kubeconfig``, ``--context``, ``-n`` or ``-A``), each target also shows the desired weight
and a drift marker.

``--json`` prints one object with this stable shape (keys are never removed; new keys may be
added)::

    {"kong": {"url", "version", "edition", "mode", "workspace"},
     "nodes": [url, ...],
     "upstreams": [
       {"name", "id", "tags": [..], "algorithm": str, "managed": bool, "owners": [owner, ..],
        "total_weight": int, "in_sync": bool | null,
        "errors": [str, ..],
        "targets": [
          {"target", "id", "weight": int, "share": float | null (percent, 1 decimal),
           "owner", "tags": [..], "desired_weight": int | null, "drift": bool | null,
           "role": "stable" | "canary" | "experiment" | null,
           "nodes": [{"node": url, "health": str | null, "node_weight": int | null,
                      "error": str | null}]}]}]}

``in_sync``/``desired_weight``/``drift``/``role`` are null when no desired weights are known
for the upstream. Exit codes: 0 shown, 1 Kong or Kubernetes unreachable/refusing/unknown
upstream, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kongsplit.config import ConfigError, Settings, load_settings, redact_url
from kongsplit.kong.client import KongAdmin, RetryPolicy
from kongsplit.kong.errors import KongError
from kongsplit.kong.records import Target, TargetHealth, Upstream
from kongsplit.kong.targets import MANAGED_TAG, DesiredTarget, owner_label
from kongsplit.kong.writes import WEIGHT_ZERO_UNSAFE

#: upstream name → {target string: desired weight}, or None when nothing is known for it.
DesiredProvider = Callable[[str], Mapping[str, int] | None]
#: upstream name → {target string: role (stable, canary, experiment)}, or None.
RoleProvider = Callable[[str], Mapping[str, str] | None]

# inspect is interactive: fail fast rather than retrying for half a minute.
_INSPECT_RETRY = RetryPolicy(attempts=2, initial_backoff=0.2, max_backoff=1.0, max_elapsed=5.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_kong_arguments(parser)
    parser.add_argument("--upstream", help="show only this upstream")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    cluster = parser.add_argument_group(
        "comparing with the Rollouts",
        "Any of these reads the annotated Rollouts (and their Services and ReplicaSets) from "
        "Kubernetes and marks each target whose weight differs from what its Rollout wants. The "
        "kubeconfig is --kubeconfig, else $KUBECONFIG (several files merged), else "
        "~/.kube/config; Rollouts of every namespace are read unless -n names some.",
    )
    add_kube_arguments(cluster, default_all=True)


def add_kong_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The Kong settings every operator command takes, as ``inspect`` always has."""
    parser.add_argument("--kong-url", help="Kong Admin API URL (default: config / env / :8001)")
    parser.add_argument("--token-file", help="file holding the Kong-Admin-Token")
    parser.add_argument("--workspace", help="Kong Enterprise workspace")
    parser.add_argument(
        "--node",
        action="append",
        default=None,
        metavar="URL",
        help="Kong node Admin/Status API to read /health from (repeatable; default the Kong URL; "
        "a hybrid control plane needs its data planes here, or kong.nodes)",
    )
    parser.add_argument("--config", help="kongsplit config file (kong.* keys are used)")
    parser.add_argument("--ca-file", help="CA bundle for an HTTPS Admin API")
    parser.add_argument("--cert-file", help="client certificate (mTLS)")
    parser.add_argument("--key-file", help="client key (mTLS)")
    parser.add_argument(
        "--insecure-skip-verify",
        action="store_true",
        default=None,
        help="do not verify the Admin API's certificate",
    )


def _namespace_arg(value: str) -> str:
    from kongsplit.plan import namespace_arg  # plan loads the engine: only when -n is given

    return namespace_arg(value)


def add_kube_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, default_all: bool
) -> None:
    """kubectl's conventions: --kubeconfig, --context, -n/--namespace, -A/--all-namespaces."""
    parser.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster)",
    )
    parser.add_argument(
        "--context", metavar="NAME", help="kubeconfig context (default: its current-context)"
    )
    parser.add_argument(
        "-n",
        "--namespace",
        dest="namespaces",
        action="append",
        metavar="NS",
        type=_namespace_arg,
        help=(
            "only this namespace (repeatable, or comma-separated; default: all namespaces)"
            if default_all
            else "the namespace (default: the context's namespace, else default)"
        ),
    )
    parser.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="every namespace" + (" (the default; reads the cluster)" if default_all else ""),
    )


def kong_settings(args: argparse.Namespace, **sections: dict[str, Any]) -> Settings:
    """Settings from ``--config``/``$KONGSPLIT_CONFIG``, ``KONGSPLIT_*`` and the Kong flags
    (plus ``sections`` of other flags, e.g. ``kubernetes={...}``)."""
    return load_settings(
        args.config,
        flags={
            **sections,
            "kong": {
                "url": args.kong_url,
                "tokenFile": args.token_file,
                "workspace": args.workspace,
                "nodes": args.node,
            },
            "kong.tls": {
                "caFile": args.ca_file,
                "certFile": args.cert_file,
                "keyFile": args.key_file,
                "insecureSkipVerify": args.insecure_skip_verify,
            },
        },
    )


def namespaces_of(args: argparse.Namespace) -> list[str]:
    """``-n a -n b,c`` → [a, b, c]."""
    values: Sequence[str] = args.namespaces or ()
    return [ns.strip() for value in values for ns in value.split(",") if ns.strip()]


def _error(message: str) -> None:
    print(f"kongsplit inspect: {message}", file=sys.stderr)


def run(args: argparse.Namespace, *, desired: DesiredProvider | None = None) -> int:
    namespaces = namespaces_of(args)
    if args.all_namespaces and namespaces:
        from kongsplit.plan import BOTH_NAMESPACE_FLAGS

        _error(BOTH_NAMESPACE_FLAGS)
        return 2
    try:
        settings = kong_settings(args)
    except ConfigError as e:
        _error(str(e))
        return 2
    kong = settings.kong
    try:
        admin = KongAdmin.from_config(kong, retry=_INSPECT_RETRY)
    except KongError as e:
        _error(str(e))
        return 1
    read_kube = bool(args.kubeconfig or args.context or namespaces or args.all_namespaces)
    try:
        report = asyncio.run(
            _collect(
                admin,
                upstream=args.upstream,
                nodes=kong.verify_nodes,
                desired=desired,
                cluster=_Cluster(args.kubeconfig, args.context, namespaces) if read_kube else None,
                cluster_domain=settings.kubernetes.cluster_domain,
            )
        )
    except Exception as e:  # one line on stderr, never a traceback
        from kongsplit.plan import ClusterUnreadable

        if not isinstance(e, KongError | ClusterUnreadable):
            raise
        _error(str(e))
        return 1
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=False))
    else:
        print(render_table(report), end="")
        if desired is None and not read_kube and _managed(report):
            print(ROLES_HINT)
    return 0


#: Said under the table when kongsplit's targets are shown without their Rollouts.
ROLES_HINT = (
    "\nROLE, DESIRED and DRIFT come from the Rollouts: add -A (or -n NAMESPACE, --context, "
    "--kubeconfig) to read them from Kubernetes"
)


def _managed(report: Mapping[str, Any]) -> bool:
    return any(u["owners"] for u in report["upstreams"])


@dataclass(frozen=True)
class _Cluster:
    kubeconfig: str | None
    context: str | None
    namespaces: list[str]


async def _collect(
    admin: KongAdmin,
    *,
    upstream: str | None,
    nodes: Sequence[str],
    desired: DesiredProvider | None,
    cluster: _Cluster | None,
    cluster_domain: str,
) -> dict[str, Any]:
    roles: RoleProvider | None = None
    async with admin:
        if desired is None and cluster is not None:
            wanted = await desired_from_kubernetes(
                cluster.kubeconfig,
                context=cluster.context,
                namespaces=cluster.namespaces,
                workspace=admin.workspace,
                cluster_domain=cluster_domain,
            )

            def weights(name: str) -> dict[str, int] | None:
                found = wanted.get(name)
                return None if found is None else {t: d.weight for t, d in found.items()}

            def role_of(name: str) -> dict[str, str] | None:
                found = wanted.get(name)
                return None if found is None else {t: d.role for t, d in found.items()}

            desired, roles = weights, role_of
        return await collect_report(
            admin, upstream=upstream, nodes=nodes, desired=desired, roles=roles
        )


async def desired_from_kubernetes(
    kubeconfig: str | None,
    *,
    context: str | None = None,
    namespaces: Sequence[str] = (),
    workspace: str | None,
    cluster_domain: str = "cluster.local",
) -> dict[str, dict[str, DesiredTarget]]:
    """upstream → {target: its DesiredTarget} for every annotated Rollout in ``workspace``, read
    once from ``namespaces`` (all when empty) with ``plan``'s reader (its one-line errors).

    Uses the same engine as the daemon and ``kongsplit plan`` (``desired.desired_state``).
    Rollouts that are invalid, skipped or in another workspace are left out (no drift marker).
    """
    from kongsplit import plan

    objects = await plan.read_cluster(kubeconfig, context=context, namespaces=namespaces)
    data = plan.collect_objects(objects)
    out: dict[str, dict[str, DesiredTarget]] = {}
    for _, result in plan.plan_all(
        data, cluster_domain=cluster_domain, workspace=workspace, complete=True
    ):
        desired_plan = result.plan
        if desired_plan is None:
            continue
        if (desired_plan.workspace or "default") != (workspace or "default"):
            continue
        out.setdefault(desired_plan.upstream, {}).update(
            {t.target: t for t in desired_plan.targets}
        )
    return out


async def collect_report(
    admin: KongAdmin,
    *,
    upstream: str | None = None,
    nodes: Sequence[str] = (),
    desired: DesiredProvider | None = None,
    roles: RoleProvider | None = None,
) -> dict[str, Any]:
    """The inspect report (the ``--json`` shape) read from ``admin``."""
    await admin.detect_mode()  # refuses a data plane with a clear message
    info = admin.node
    assert info is not None
    node_urls = list(nodes) or [admin.url]
    if upstream is not None:
        one = await admin.get_upstream(upstream)
        if one is None:
            raise KongError(
                f"upstream {upstream} not found at {admin.display_url}", upstream=upstream
            )
        upstreams = [one]
    else:
        upstreams = sorted(await admin.list_upstreams(), key=lambda u: u.name)
    entries = await asyncio.gather(
        *(_upstream_entry(admin, u, node_urls, desired, roles) for u in upstreams)
    )
    return {
        "kong": {
            "url": admin.display_url,
            "version": info.version,
            "edition": info.edition,
            "mode": str(info.mode),
            "workspace": admin.workspace,
        },
        "nodes": [redact_url(n) for n in node_urls],
        "upstreams": list(entries),
    }


async def _node_health(
    admin: KongAdmin, upstream: str, node: str
) -> tuple[dict[str, TargetHealth], str | None]:
    try:
        items = await admin.health(upstream, node_url=node)
    except KongError as e:
        return {}, str(e)
    return {h.target: h for h in items}, None


async def _upstream_entry(
    admin: KongAdmin,
    upstream: Upstream,
    nodes: Sequence[str],
    desired: DesiredProvider | None,
    roles: RoleProvider | None = None,
) -> dict[str, Any]:
    targets: list[Target] = sorted(await admin.list_targets(upstream.name), key=lambda t: t.target)
    health = await asyncio.gather(*(_node_health(admin, upstream.name, n) for n in nodes))
    total = sum(t.weight for t in targets)
    want = desired(upstream.name) if desired is not None else None
    role_of = (roles(upstream.name) if roles is not None else None) or {}
    rows: list[dict[str, Any]] = []
    in_sync: bool | None = None if want is None else True
    for t in targets:
        desired_weight = None if want is None else want.get(t.target)
        drift: bool | None = None
        if want is not None:
            # A target the Rollout does not want should carry no weight.
            drift = t.weight != (desired_weight if desired_weight is not None else 0)
            in_sync = in_sync and not drift
        rows.append(
            {
                "target": t.target,
                "id": t.id,
                "weight": t.weight,
                "share": round(100.0 * t.weight / total, 1) if total else None,
                "owner": owner_label(t.tags),
                "tags": list(t.tags),
                "desired_weight": desired_weight,
                "drift": drift,
                "role": role_of.get(t.target),
                "nodes": [
                    {
                        "node": redact_url(node),
                        "health": h.health if (h := by_target.get(t.target)) else None,
                        "node_weight": h.node_weight if h else None,
                        "error": err,
                    }
                    for node, (by_target, err) in zip(nodes, health, strict=True)
                ],
            }
        )
    present = {t.target for t in targets}
    if want is not None and any(w > 0 and name not in present for name, w in want.items()):
        in_sync = False  # a wanted target is missing altogether
    owners = sorted({str(r["owner"]) for r in rows if r["owner"] != "foreign"})
    return {
        "name": upstream.name,
        "id": upstream.id,
        "tags": list(upstream.tags),
        "algorithm": upstream.algorithm or "round-robin",
        "managed": MANAGED_TAG in upstream.tags or bool(owners),
        "owners": owners,
        "total_weight": total,
        "in_sync": in_sync,
        "errors": [
            f"node {redact_url(n)}: {err}" for n, (_, err) in zip(nodes, health, strict=True) if err
        ],
        "targets": rows,
    }


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = []
    for row in (header, *rows):
        cells = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  " + "  ".join(cells).rstrip())
    return lines


def render_table(report: Mapping[str, Any]) -> str:
    """The readable form of a report."""
    kong = report["kong"]
    nodes: list[str] = report["nodes"]
    out = [
        f"Kong {kong['url']}: {kong['version']} {kong['edition']}, mode {kong['mode']}"
        + (f", workspace {kong['workspace']}" if kong.get("workspace") else "")
    ]
    if len(nodes) > 1 or nodes != [kong["url"]]:
        out.append("nodes: " + "  ".join(f"[{i}] {n}" for i, n in enumerate(nodes, 1)))
    if not report["upstreams"]:
        out.append("no upstreams")
    for u in report["upstreams"]:
        facts = [", ".join(u["owners"]) if u["owners"] else "not managed by kongsplit"]
        facts.append(f"total weight {u['total_weight']}")
        if u["in_sync"] is not None:
            facts.append("in sync" if u["in_sync"] else "DRIFT")
        out.append("")
        out.append(f"upstream {u['name']}  ({'; '.join(facts)})")
        if u["algorithm"] in WEIGHT_ZERO_UNSAFE:
            out.append(
                f"  ! algorithm {u['algorithm']}: a target at weight 0 can still receive "
                "requests; set the upstream's algorithm to round-robin for exact splits"
            )
        with_desired = u["in_sync"] is not None
        header = ["TARGET", "WEIGHT", "SHARE", "ROLE", "OWNER"]
        if with_desired:
            header += ["DESIRED", "DRIFT"]
        header += [
            f"NODE{i} HEALTH/WEIGHT" if len(nodes) > 1 else "HEALTH/NODE WEIGHT"
            for i in range(1, len(nodes) + 1)
        ]
        rows = []
        for t in u["targets"]:
            row = [
                t["target"],
                str(t["weight"]),
                f"{t['share']:.1f}%" if t["share"] is not None else "-",
                t.get("role") or "-",
                t["owner"],
            ]
            if with_desired:
                row += [
                    "-" if t["desired_weight"] is None else str(t["desired_weight"]),
                    "*" if t["drift"] else "",
                ]
            for n in t["nodes"]:
                if n["error"]:
                    row.append("?")
                else:
                    weight = "-" if n["node_weight"] is None else str(n["node_weight"])
                    row.append(f"{n['health'] or '-'} / {weight}")
            rows.append(row)
        if rows:
            out += _table(header, rows, right={1, 2, 5} if with_desired else {1, 2})
        else:
            out.append("  (no targets)")
        out += [f"  ! {e}" for e in u["errors"]]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kongsplit.inspect``: the subcommand on its own."""
    parser = argparse.ArgumentParser(prog="kongsplit inspect")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
