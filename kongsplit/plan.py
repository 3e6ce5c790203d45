"""``kongsplit plan``: what kongsplit would hold in Kong for the Rollouts in some files, or in a
cluster (``--kubeconfig``, ``--context``, ``-n``: Rollouts, Services and ReplicaSets read live).

Manifests not applied yet are planned too: a Service without a clusterIP gets a placeholder
target, ``<clusterIP of ns/name>:port``, marked as such; the weights are exact all the same.

Exit codes: 0 success; 2 unreadable or invalid input (every problem listed, each naming file,
document, object and field; a cluster that cannot be read; the same object given twice with
different content); 1 internal error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import ssl
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from kongsplit.config import redact_url
from kongsplit.desired import Desired, desired_state
from kongsplit.manifests import Located, ManifestError, kind_of, read_objects
from kongsplit.rollouts import (
    ObjectError,
    ReplicaSet,
    Rollout,
    Service,
    parse_replicaset,
    parse_rollout,
    parse_service,
)

if TYPE_CHECKING:
    from kongsplit.kube import KubeApiError

#: What ``plan`` reads from a cluster: (group, version, plural, kind).
CLUSTER_RESOURCES = (
    ("argoproj.io", "v1alpha1", "rollouts", "Rollout"),
    ("", "v1", "services", "Service"),
    ("apps", "v1", "replicasets", "ReplicaSet"),
)

NO_INPUT_HINT = "give Rollout manifests as files, '-' for stdin, or --kubeconfig to read a cluster"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="Rollout manifests (YAML or JSON, multi-document, kind: List such as "
        "`kubectl get rollout,svc,rs -o yaml`; '-' = stdin). Services and ReplicaSets in the "
        "same input are used.",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--cluster-domain",
        default="cluster.local",
        help="cluster DNS domain for dns-mode targets (default cluster.local)",
    )
    parser.add_argument("--workspace", default=None, help="default Kong workspace")
    add_cluster_arguments(
        parser.add_argument_group(
            "reading a cluster instead of files",
            "Any of these reads Rollouts, Services and ReplicaSets live from the cluster; the "
            "kubeconfig is --kubeconfig, else $KUBECONFIG, else ~/.kube/config (in a pod: its "
            "service account).",
        )
    )
    parser.set_defaults(plan_parser=parser)


def add_cluster_arguments(group: argparse._ArgumentGroup) -> None:
    """--kubeconfig, --context, -n and -A, as kubectl has them (``plan`` and ``diff``)."""
    group.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig file")
    group.add_argument("--context", metavar="NAME", help="kubeconfig context (default: current)")
    group.add_argument(
        "-n",
        "--namespace",
        dest="namespaces",
        action="append",
        metavar="NS",
        type=namespace_arg,
        help="only this namespace (repeatable, or comma-separated; default: all namespaces)",
    )
    group.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="every namespace (the default without -n; not with -n)",
    )


@dataclass
class PlanInput:
    rollouts: list[tuple[Located, Rollout]]
    services: dict[str, dict[str, Service]]  # namespace → name → Service
    replicasets: dict[str, list[ReplicaSet]]  # namespace → ReplicaSets
    saw_replicasets: bool
    errors: list[str]
    # (namespace, name) → where the Service came from, so its errors name its own document
    service_sources: dict[tuple[str, str], str] = field(default_factory=dict)
    # The same object given twice with different content: nothing is planned then.
    conflicts: list[str] = field(default_factory=list)


def _identity(located: Located) -> tuple[str, str, str, str] | None:
    """(apiVersion, kind, namespace, name) of an object plan reads; None for other objects and
    for one without a name to go by. The apiVersion keeps a Knative ``Service`` apart."""
    api, kind = kind_of(located.obj)
    if kind not in ("Rollout", "Service", "ReplicaSet"):
        return None
    meta = located.obj.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        return None
    ns = meta.get("namespace")
    return api, kind, ns if isinstance(ns, str) and ns else "default", meta["name"]


def _show(value: object) -> str:
    if isinstance(value, dict):
        return "{…}"
    if isinstance(value, list):
        return "[…]"
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def first_difference(a: object, b: object, path: str = "") -> str | None:
    """Where two decoded objects first differ, e.g. ``spec.clusterIP: '10.0.0.1' vs absent``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            where = f"{path}.{key}" if path else str(key)
            if key not in b:
                return f"{where}: {_show(a[key])} vs absent"
            if key not in a:
                return f"{where}: absent vs {_show(b[key])}"
            found = first_difference(a[key], b[key], where)
            if found is not None:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found is not None:
                return found
        if len(a) != len(b):
            return f"{path or 'the object'}: {len(a)} vs {len(b)} items"
        return None
    if a == b and type(a) is type(b):
        return None
    return f"{path or 'the object'}: {_show(a)} vs {_show(b)}"


def collect_objects(objects: list[Located]) -> PlanInput:
    data = PlanInput([], defaultdict(dict), defaultdict(list), False, [])
    first_seen: dict[tuple[str, str, str, str], Located] = {}
    for located in objects:
        api, kind = kind_of(located.obj)
        identity = _identity(located)
        if identity is not None:
            earlier = first_seen.setdefault(identity, located)
            if earlier is not located:
                difference = first_difference(earlier.obj, located.obj)
                if difference is not None:
                    _, _, ns, name = identity
                    data.conflicts.append(
                        f"{kind} {ns}/{name} is given twice with different content, in "
                        f"{earlier.source} and in {located.source} ({difference}): "
                        f"give each {kind} once"
                    )
                continue  # an identical copy (the same file twice) changes nothing
        parsed: Rollout | Service | ReplicaSet | ObjectError
        if kind == "Rollout":
            parsed = parse_rollout(located.obj)
            if isinstance(parsed, Rollout):
                data.rollouts.append((located, parsed))
        elif kind == "Service" and api == "v1":
            parsed = parse_service(located.obj)
            if isinstance(parsed, Service):
                data.services[parsed.namespace][parsed.name] = parsed
                data.service_sources[parsed.namespace, parsed.name] = located.source
        elif kind == "ReplicaSet" and api.startswith("apps/"):
            data.saw_replicasets = True
            parsed = parse_replicaset(located.obj)
            if isinstance(parsed, ReplicaSet):
                data.replicasets[parsed.namespace].append(parsed)
        else:
            continue  # other kinds (Deployments, ConfigMaps…) may sit in the same file
        if isinstance(parsed, ObjectError):
            data.errors.append(f"{located.source}: {parsed}")
    return data


def conflicts_in(objects: list[Located]) -> list[str]:
    """The objects given twice with different content, one sentence each."""
    return collect_objects(objects).conflicts


def plan_all(
    data: PlanInput, *, cluster_domain: str, workspace: str | None, complete: bool = False
) -> list[tuple[Located, Desired]]:
    """Every Rollout's Desired. ``complete``: the input holds every Service and ReplicaSet of
    its namespaces (read from a cluster), so a missing one is missing, not merely not given."""
    results = []
    for located, rollout in data.rollouts:
        ns = rollout.key.namespace
        services = data.services.get(ns)
        desired = desired_state(
            rollout,
            # Services are "known" per namespace: a file of another namespace's Services must
            # not turn this Rollout's dns-form fallback into "Service not found".
            services=services if services is not None or not complete else {},
            replicasets=data.replicasets.get(ns, []) if data.saw_replicasets or complete else None,
            default_workspace=workspace,
            cluster_domain=cluster_domain,
            # A manifest's Service has no clusterIP until it is applied; a cluster's has one.
            placeholders=not complete,
        )
        error = desired.error
        if error is not None:
            service_source = (
                data.service_sources.get((error.namespace, error.name))
                if error.kind == "Service" and error.namespace and error.name
                else None
            )
            if service_source is not None:
                # A Service's own defect (headless, ExternalName…): point at that Service's
                # document, and say which Rollout could not be planned because of it.
                data.errors.append(
                    f"{service_source}: {error} (needed by Rollout {rollout.key}, {located.source})"
                )
            else:
                data.errors.append(f"{located.source}: {error}")
        results.append((located, desired))
    return results


def as_json(desired: Desired) -> dict[str, Any]:
    """One Rollout in the ``plan --json`` shape the README documents."""
    split, plan = desired.split, desired.plan
    return {
        "namespace": desired.key.namespace,
        "name": desired.key.name,
        "canary_weight": split.canary if split else None,
        "stable_weight": split.stable if split else None,
        "max_weight": split.max if split else None,
        "canary_service": split.canary_service if split else None,
        "stable_service": split.stable_service if split else None,
        "additional": [{"service": d.service, "weight": d.weight} for d in split.additional]
        if split
        else [],
        "upstream": desired.mapping.upstream if desired.mapping else None,
        "workspace": desired.mapping.workspace if desired.mapping else None,
        "targets": [
            {"target": t.target, "weight": t.weight, "role": t.role}
            | ({"address_pending": True} if t.address_pending else {})
            for t in plan.targets
        ]
        if plan
        else [],
        "rule": split.rule if split else None,
        "hold": split.hold if split else None,
        "skipped": desired.skipped,
    }


PENDING_NOTE = (
    "  note: the cluster allocates <clusterIP of …> when the Service is applied; "
    "the weights are exact"
)


def _print_text(
    results: list[tuple[Located, Desired]], out: TextIO, *, empty: str = "no Rollouts in the input"
) -> None:
    if not results:
        print(empty, file=out)
    for _, desired in results:
        split, plan = desired.split, desired.plan
        head = f"{desired.key}"
        if desired.mapping:
            head += f"  → upstream {desired.mapping.upstream}"
            if desired.mapping.workspace:
                head += f" (workspace {desired.mapping.workspace})"
        print(head, file=out)
        if split:
            extra = "".join(f" + {d.service} {d.weight}" for d in split.additional)
            print(
                f"  split: canary {split.canary} / stable {split.stable}{extra} of {split.max}"
                f"  (rule: {split.rule})",
                file=out,
            )
            if split.hold:
                print(f"  hold: {split.hold}", file=out)
        if plan:
            width = max(len(t.target) for t in plan.targets)
            total = sum(t.weight for t in plan.targets) or 1
            print(f"  {'TARGET':<{width}}  WEIGHT   SHARE  ROLE        SERVICE", file=out)
            for t in plan.targets:
                share = f"{100 * t.weight / total:.1f}%"
                print(
                    f"  {t.target:<{width}}  {t.weight:>6}  {share:>6}  {t.role:<10}  {t.service}",
                    file=out,
                )
            if any(t.address_pending for t in plan.targets):
                print(PENDING_NOTE, file=out)
        if desired.skipped:
            print(f"  skipped: {desired.skipped}", file=out)
        print(file=out)


class ClusterUnreadable(Exception):
    """The cluster could not be read; the message is the one line to show."""


async def read_cluster(
    kubeconfig: str | None, *, context: str | None, namespaces: Sequence[str]
) -> list[Located]:
    """Rollouts, Services and ReplicaSets of ``namespaces`` (all when empty), read live."""
    # Imported here: kubernetes-asyncio is heavy and only needed when reading a cluster.
    from kongsplit import kube

    try:
        api = await kube.make_api_client(kubeconfig, context=context)
    except kube.KubeConfigError as e:
        raise ClusterUnreadable(str(e)) from None
    server = redact_url(str(api.configuration.host))
    objects: list[Located] = []
    scopes: list[str | None] = [*namespaces] or [None]  # None: every namespace
    try:
        for group, version, plural, kind in CLUSTER_RESOURCES:
            api_version = f"{group}/{version}" if group else version
            for ns in scopes:
                try:
                    body = await kube.request(api, "GET", kube.api_path(group, version, plural, ns))
                except kube.KubeUnavailable as e:
                    raise ClusterUnreadable(
                        f"cannot reach the Kubernetes API at {server}: {unreachable_reason(e)}; "
                        "check the kubeconfig (--kubeconfig, --context) and that the cluster is up"
                    ) from None
                except kube.KubeApiError as e:
                    raise ClusterUnreadable(refusal(e, server, plural, group, ns)) from None
                items = body.get("items")
                for item in items if isinstance(items, list) else []:
                    if isinstance(item, dict):
                        # The API server leaves apiVersion and kind out of list items.
                        item = {**item, "apiVersion": api_version, "kind": kind}
                        objects.append(Located(item, f"cluster {server}"))
    finally:
        await api.close()
    return objects


def refusal(
    error: KubeApiError, server: str, plural: str, group: str, namespace: str | None
) -> str:
    resource = f"{plural}.{group}" if group else plural
    where = f"in namespace {namespace}" if namespace else "in all namespaces"
    said = f"{error.status} {error.reason}".strip() + (
        f": {error.message}" if error.message else ""
    )
    if error.status == 404 and plural == "rollouts":
        return (
            f"the cluster at {server} has no Rollouts ({resource} not served): install Argo "
            "Rollouts there, or pick the cluster that has it with --context"
        )
    if error.status == 401:
        return (
            f"the Kubernetes API at {server} did not accept the kubeconfig's credentials "
            f"({said}); log in again or pick another --context"
        )
    if error.status == 403:
        return (
            f"the Kubernetes API at {server} does not let this user list {resource} {where} "
            f"({said}); use a context that may, or name allowed namespaces with -n"
        )
    return f"the Kubernetes API at {server} answered listing {resource} {where}: {said}"


def unreachable_reason(error: BaseException) -> str:
    """Why a connection failed, in words (no exception class names)."""
    seen: BaseException | None = error
    for _ in range(10):  # the chain is short; never loop on a cycle
        if seen is None:
            break
        certificate = getattr(seen, "certificate_error", None)
        if isinstance(certificate, ssl.SSLCertVerificationError):
            return f"its TLS certificate is not trusted ({certificate.verify_message})"
        if isinstance(seen, ssl.SSLError):
            inner = getattr(seen, "os_error", None)  # aiohttp wraps the ssl module's error
            if isinstance(inner, ssl.SSLError) and inner is not seen:
                seen = inner
                continue
            reason = str(getattr(seen, "reason", None) or seen)
            if "WRONG_VERSION_NUMBER" in reason.upper():
                return "the TLS handshake failed: the server does not speak TLS (http://, not https://?)"
            return f"the TLS handshake failed ({reason})"
        if isinstance(seen, TimeoutError):
            return "no answer in time"
        os_error = getattr(seen, "os_error", None)
        if isinstance(os_error, OSError) and os_error is not seen:
            seen = os_error
            continue
        if isinstance(seen, OSError) and seen.errno is not None and seen.errno > 0:
            return os.strerror(seen.errno).lower()
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()  # a name that does not resolve (negative errno)
        seen = seen.__cause__ or seen.__context__
    return "the connection failed"


BOTH_NAMESPACE_FLAGS = "give -n NAMESPACE or -A (every namespace), not both"


_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def namespace_arg(value: str) -> str:
    """``-n``: each comma-separated name must be a namespace name (an RFC 1123 label, as the
    API server checks it), so it never reaches a URL path as anything else."""
    for ns in value.split(","):
        ns = ns.strip()
        if ns and not _NAMESPACE.match(ns):
            raise argparse.ArgumentTypeError(
                f"{ns!r} is not a namespace name (lower-case letters, digits and '-', "
                "at most 63, starting and ending with a letter or digit)"
            )
    return value


def namespaces_of(values: Sequence[str] | None) -> list[str]:
    """The namespaces -n gave (repeated or comma-separated)."""
    return [ns.strip() for value in values or [] for ns in value.split(",") if ns.strip()]


def run(args: argparse.Namespace) -> int:
    namespaces = namespaces_of(args.namespaces)
    if namespaces and args.all_namespaces:
        print(f"kongsplit plan: {BOTH_NAMESPACE_FLAGS}", file=sys.stderr)
        return 2
    live = (
        args.kubeconfig is not None
        or args.context is not None
        or bool(namespaces)
        or args.all_namespaces
    )
    if live and args.files:
        print(
            "kongsplit plan: give Rollout files, or --kubeconfig/--context/--namespace to read "
            "a cluster, not both",
            file=sys.stderr,
        )
        return 2
    if not live and not args.files and sys.stdin is not None and sys.stdin.isatty():
        # Nothing given and nobody typing YAML: say what to give rather than wait on stdin.
        parser: argparse.ArgumentParser = args.plan_parser
        parser.print_usage(sys.stderr)
        print(f"kongsplit plan: {NO_INPUT_HINT}", file=sys.stderr)
        return 2
    try:
        if live:
            objects = asyncio.run(
                read_cluster(args.kubeconfig, context=args.context, namespaces=namespaces)
            )
        else:
            objects = read_objects(args.files)
    except (ManifestError, ClusterUnreadable) as e:
        print(f"kongsplit plan: {e}", file=sys.stderr)
        return 2
    data = collect_objects(objects)
    if data.conflicts:
        for conflict in data.conflicts:
            print(f"kongsplit plan: {conflict}", file=sys.stderr)
        return 2  # nothing is planned from input that contradicts itself
    results = plan_all(
        data, cluster_domain=args.cluster_domain, workspace=args.workspace, complete=live
    )
    if args.json:
        json.dump({"rollouts": [as_json(d) for _, d in results]}, sys.stdout, indent=2)
        print()
    else:
        where = f" in namespace{'s' * (len(namespaces) > 1)} {', '.join(namespaces)}"
        empty = f"no Rollouts in the cluster{where if namespaces else ''}"
        _print_text(results, sys.stdout, empty=empty if live else "no Rollouts in the input")
    for error in data.errors:
        print(f"kongsplit plan: {error}", file=sys.stderr)
    return 2 if data.errors else 0
