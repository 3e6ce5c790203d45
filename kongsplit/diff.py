"""``kongsplit diff``: what ``kongsplit run`` would write to Kong right now, one line a change.

The Rollouts, with their Services and ReplicaSets, come from the cluster (the kubeconfig as
``run`` and ``plan`` find it; ``-n``/``-A``, else the namespaces ``kubernetes.namespaces``
names, as ``run`` watches them) or from files (``-f``, read as ``plan`` reads them). Kong is the
live Admin API, configured as ``run`` and ``inspect`` take it (``--kong-url``, ``--token-file``,
the TLS flags, ``--config``, ``KONGSPLIT_*``). A DB-less ``kong.url`` is compared together with
every other node ``kong.nodes`` (``--node``) lists: each DB-less node holds its own
configuration, edited by its own sidecar. In DB mode and on a hybrid control plane every node
reads one database, so ``kong.url`` alone is compared.

Nothing here decides anything: the objects go into the daemon's own ``Reconciler``, which
reconciles each Rollout once as a freshly started daemon's first sync does — the desired-state
engine (``desired.desired_state``), ownership and consent read from Kong (``_ownership``), holds
— against a dry-run ``KongRouter``. Its ``apply`` reads Kong as a sweep does and plans with
``kong.writes.plan_writes`` (a DB-less node: the same edit of the node's ``/config``,
``kong.declarative.edit_config``) and sends nothing; its client refuses any write besides. The
words are the ones ``run --dry-run`` logs (``kong.writes.changes_of``)::

    ~ upstream checkout.shop.svc: target 10.0.0.2:80 weight 10 → 25
    + upstream web.shop.svc (create)
    + upstream web.shop.svc: target 10.96.0.10:80 weight 100 (create)
    - upstream web.shop.svc: target 10.96.0.9:80 weight 0 (delete: no longer wanted)
    ! Rollout aaa/grab refused: …            kongsplit writes nothing for it
    = Rollout shop/web held: …               kongsplit keeps Kong as it is

then decK's summary line and one line of Rollouts::

    Summary: Created: 3 Updated: 1 Deleted: 1
    Rollouts: 2 with changes, 1 refused, 1 held

``-o json`` gives the same for scripts. Exit codes, decK's: 0 in sync, 1 changes, 2 error
(unreadable input, a cluster or Kong that cannot be read; one line each on stderr, naming the
fix).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client import CollectorRegistry

from kongsplit.annotations import TargetMapping, parse_annotations
from kongsplit.config import (
    ConfigError,
    KongConfig,
    Settings,
    flag_help,
    redact_url,
)
from kongsplit.inspect import kong_settings
from kongsplit.kong.apply import KongRouter
from kongsplit.kong.client import MayWrite, RetryPolicy
from kongsplit.kong.errors import KongError
from kongsplit.kong.records import KongMode, NodeInfo, Target, UpstreamClaim
from kongsplit.kong.targets import DesiredTarget, owner_label
from kongsplit.kong.writes import (
    CREATED,
    DELETED,
    DRIFT_FOREIGN,
    UPDATED,
    WEIGHT_ZERO_UNSAFE,
    ApplyResult,
    Change,
    changes_of,
    upstream_label,
)
from kongsplit.manifests import Located, ManifestError, kind_of, read_objects
from kongsplit.metrics import Metrics
from kongsplit.plan import (
    BOTH_NAMESPACE_FLAGS,
    ClusterUnreadable,
    add_cluster_arguments,
    conflicts_in,
    namespaces_of,
    read_cluster,
)
from kongsplit.reconciler import Reconciler
from kongsplit.rollouts import Rollout, RolloutKey

# diff is interactive: fail fast rather than retrying for half a minute (as inspect does).
_DIFF_RETRY = RetryPolicy(attempts=2, initial_backoff=0.2, max_backoff=1.0, max_elapsed=5.0)

EXIT_IN_SYNC, EXIT_CHANGES, EXIT_ERROR = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        metavar="FILE",
        help="read Rollouts from this file instead of the cluster, with their Services and "
        "ReplicaSets, as `kubectl get rollout,svc,rs -o yaml` prints them (repeatable; '-' = "
        "stdin)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="text (one line a change, then decK's summary line; the default) or json",
    )
    kong = parser.add_argument_group("Kong, as kongsplit run and inspect take it")
    kong.add_argument(
        "--config", metavar="FILE", help="kongsplit config file (else $KONGSPLIT_CONFIG)"
    )
    kong.add_argument("--kong-url", metavar="URL", help=flag_help("kong", "url"))
    kong.add_argument("--token-file", metavar="FILE", help=flag_help("kong", "tokenFile"))
    kong.add_argument("--workspace", metavar="NAME", help="default Kong Enterprise workspace")
    kong.add_argument(
        "--node",
        action="append",
        default=None,
        metavar="URL",
        help="Admin API of another DB-less Kong node to compare (repeatable; sets kong.nodes; "
        "each DB-less node holds its own configuration; not used in DB mode, where every node "
        "reads one database)",
    )
    kong.add_argument("--ca-file", metavar="FILE", help="CA bundle for an HTTPS Admin API")
    kong.add_argument("--cert-file", metavar="FILE", help="client certificate (mTLS)")
    kong.add_argument("--key-file", metavar="FILE", help="client key (mTLS)")
    kong.add_argument(
        "--insecure-skip-verify",
        action="store_true",
        default=None,
        help="do not verify the Admin API's certificate",
    )
    add_cluster_arguments(
        parser.add_argument_group(
            "the cluster (the default input)",
            "The kubeconfig is --kubeconfig, else kubernetes.kubeconfig, $KUBECONFIG, "
            "~/.kube/config (in a pod: its service account); the namespaces -n, else "
            "kubernetes.namespaces (what `kongsplit run` watches), else all.",
        )
    )


# --------------------------------------------------------------------------- the result


@dataclass
class RolloutDiff:
    """What kongsplit would do for one annotated Rollout on one Kong node."""

    key: RolloutKey
    upstream: str | None
    workspace: str | None
    status: str  # changes | in_sync | refused | invalid | held | failed
    reason: str | None = None
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def line(self) -> str | None:
        """The ``!``/``=`` line of a Rollout kongsplit would not write for."""
        if self.status in ("refused", "invalid"):
            return f"! Rollout {self.key} {self.status}: {self.reason}"
        if self.status == "held":
            where = f" {upstream_label(self.upstream, self.workspace)}" if self.upstream else ""
            return f"= Rollout {self.key} held: {self.reason}; kongsplit keeps{where} as it is"
        return None

    def as_json(self) -> dict[str, Any]:
        return {
            "namespace": self.key.namespace,
            "name": self.key.name,
            "upstream": self.upstream,
            "workspace": self.workspace,
            "status": self.status,
            "reason": self.reason,
            "changes": [c.line for c in self.changes],
            "warnings": list(self.warnings),
        }


@dataclass
class NodeDiff:
    """One Kong node compared: its URL (credentials redacted), its mode, every Rollout."""

    url: str
    mode: KongMode | None  # None: the node could not be read (``errors`` says why)
    rollouts: list[RolloutDiff] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out: list[str] = []
        for r in self.rollouts:
            out += [c.line for c in r.changes]
            out += r.warnings
            if r.line is not None:
                out.append(r.line)
        return out


#: How a Rollout compared on several nodes is counted: the first of these it has on any node.
_PRECEDENCE = ("failed", "changes", "refused", "invalid", "held", "in_sync")
_STATUS_WORDS = {"changes": "with changes", "in_sync": "in sync"}


@dataclass
class Report:
    nodes: list[NodeDiff] = field(default_factory=list)

    @property
    def changes(self) -> list[tuple[NodeDiff, RolloutDiff, Change]]:
        return [(n, r, c) for n in self.nodes for r in n.rollouts for c in r.changes]

    @property
    def errors(self) -> list[str]:
        several = len(self.nodes) > 1
        return [f"node {n.url}: {e}" if several else e for n in self.nodes for e in n.errors]

    def counts(self) -> dict[str, int]:
        """decK's three counts over every node."""
        found = {CREATED: 0, UPDATED: 0, DELETED: 0}
        for _, _, c in self.changes:
            found[c.count] += 1
        return found

    def summary(self) -> str:
        """decK's line: ``Summary: Created: 1 Updated: 2 Deleted: 0``."""
        n = self.counts()
        return f"Summary: Created: {n[CREATED]} Updated: {n[UPDATED]} Deleted: {n[DELETED]}"

    def statuses(self) -> dict[RolloutKey, str]:
        """Each Rollout's status, over every node compared (``_PRECEDENCE``)."""
        seen: dict[RolloutKey, set[str]] = {}
        for n in self.nodes:
            for r in n.rollouts:
                seen.setdefault(r.key, set()).add(r.status)
        return {k: next(s for s in _PRECEDENCE if s in found) for k, found in seen.items()}

    def rollouts_line(self) -> str:
        """``Rollouts: 1 with changes, 2 in sync, 1 refused; 1 warning``."""
        statuses = list(self.statuses().values())
        if not statuses:
            return "Rollouts: none annotated with kongsplit.io/upstream"
        parts = [
            f"{statuses.count(s)} {_STATUS_WORDS.get(s, s)}"
            for s in _PRECEDENCE
            if statuses.count(s)
        ]
        warnings = sum(len(r.warnings) for n in self.nodes for r in n.rollouts)
        tail = f"; {_n(warnings, 'warning')}" if warnings else ""
        return "Rollouts: " + ", ".join(parts) + tail

    def lines(self) -> list[str]:
        if len(self.nodes) == 1:
            return self.nodes[0].lines()
        out: list[str] = []
        for n in self.nodes:
            if n.mode is None:
                continue  # said on stderr
            out.append(f"node {n.url} ({n.mode}):")
            out += n.lines() or ["(nothing to write)"]
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "in_sync": not self.changes,
            "summary": self.counts(),
            "changes": [
                {"node": n.url, "rollout": str(r.key), **c.fields()} for n, r, c in self.changes
            ],
            "nodes": [
                {
                    "url": n.url,
                    "mode": None if n.mode is None else str(n.mode),
                    "rollouts": [r.as_json() for r in n.rollouts],
                }
                for n in self.nodes
            ],
            "errors": self.errors,
        }


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


class DiffError(Exception):
    """Nothing could be compared; each line is one thing to tell the user."""

    def __init__(self, *lines: str) -> None:
        super().__init__(lines[0] if lines else "")
        self.lines = lines


# --------------------------------------------------------------------------- the daemon's code


class _Recording:
    """The dry-run ``KongRouter`` behind the reconciler's ``Router`` protocol, keeping what each
    call answered: the applies' results and any Kong error (the reconciler keeps those to
    itself, or turns them into a retry)."""

    def __init__(self, router: KongRouter) -> None:
        self.router = router
        self.results: list[ApplyResult] = []
        self.errors: list[KongError] = []

    def begin(self) -> None:
        self.results.clear()
        self.errors.clear()

    @property
    def mode(self) -> KongMode | None:
        return self.router.mode

    async def ensure_mode(self) -> KongMode:
        return await self.router.ensure_mode()

    async def probe(self) -> NodeInfo:
        return await self.router.probe()

    async def apply(
        self,
        upstream: str,
        desired: Sequence[DesiredTarget],
        *,
        owner_tags: Sequence[str],
        workspace: str | None = None,
        refresh: bool = False,
        may_write: MayWrite | None = None,
        urgent: bool = False,
    ) -> ApplyResult:
        try:
            result = await self.router.apply(
                upstream,
                desired,
                owner_tags=owner_tags,
                workspace=workspace,
                refresh=refresh,
                may_write=may_write,
                urgent=urgent,
            )
        except KongError as e:
            self.errors.append(e)
            raise
        self.results.append(result)
        return result

    async def read(
        self, upstream: str, *, workspace: str | None = None
    ) -> tuple[Target, ...] | None:
        try:
            return await self.router.read(upstream, workspace=workspace)
        except KongError as e:
            self.errors.append(e)
            raise

    async def claim(self, upstream: str, *, workspace: str | None = None) -> UpstreamClaim:
        try:
            return await self.router.claim(upstream, workspace=workspace)
        except KongError as e:
            self.errors.append(e)
            raise

    def forget(self, upstream: str, *, workspace: str | None = None) -> None:
        self.router.forget(upstream, workspace=workspace)

    def reset(self) -> None:
        self.router.reset()


def _warnings(result: ApplyResult) -> list[str]:
    """What the daemon would warn about in this upstream (it writes nothing for it)."""
    label = upstream_label(result.upstream, result.workspace)
    by_target = {t.target: t for t in result.targets}
    out = []
    # By target: Kong lists targets by id, in no order worth showing.
    for d in sorted(result.drift, key=lambda d: d.target or ""):
        if d.kind != DRIFT_FOREIGN or d.corrected or d.target is None:
            continue
        held = by_target.get(d.target)
        owner = owner_label(held.tags if held is not None else ())
        whose = (
            f"belongs to Rollout {owner.removeprefix('kongsplit:')}"
            if owner.startswith("kongsplit:")
            else "is not kongsplit's"
        )
        fix = "" if owner != "foreign" else "; kong.exclusiveUpstreams would zero it"
        out.append(
            f"! {label}: target {d.target} weight {d.observed} {whose} and keeps its weight: "
            f"the split is not exact{fix}"
        )
    if result.algorithm in WEIGHT_ZERO_UNSAFE:
        out.append(
            f"! {label} balances with {result.algorithm}: a target at weight 0 can still "
            "receive requests; set its algorithm to round-robin"
        )
    return out


async def compute(settings: Settings, router: KongRouter, objects: Sequence[Located]) -> NodeDiff:
    """Every annotated Rollout of ``objects`` reconciled once by the daemon's ``Reconciler``
    against ``router`` (a dry run), as a fresh daemon's first sync would."""
    if not router.dry_run:
        raise ValueError("kongsplit diff needs a dry-run KongRouter")
    mode = await router.ensure_mode()  # a data plane or Konnect is refused here, in words
    kong = _Recording(router)
    rec = Reconciler(settings, kong=kong, metrics=Metrics(CollectorRegistry()))
    for located in objects:  # Services and ReplicaSets first, as the watchers list them
        api, kind = kind_of(located.obj)
        if kind == "Service" and api == "v1":
            rec.on_service("ADDED", located.obj)
        elif kind == "ReplicaSet" and api.startswith("apps/"):
            rec.on_replicaset("ADDED", located.obj)
    for located in objects:
        if kind_of(located.obj)[1] == "Rollout":
            rec.on_rollout("ADDED", located.obj)
    node = NodeDiff(router.display_url, mode)
    try:
        for key in sorted(rec.store.rollouts, key=lambda k: (k.namespace, k.name)):
            kong.begin()
            await rec.reconcile(key, refresh=True)
            found = _outcome(rec, kong, key)
            if found is None:
                continue  # not annotated: none of kongsplit's business
            node.rollouts.append(found)
            if found.status == "failed":
                node.errors.append(f"Rollout {key}: {found.reason}")
    finally:
        rec.queue.close()
    return node


def _outcome(rec: Reconciler, kong: _Recording, key: RolloutKey) -> RolloutDiff | None:
    state = rec.states.get(key)
    if state is None:
        return None
    upstream, workspace = state.upstream, state.workspace
    rollout = rec.store.rollouts.get(key)
    if upstream is None and isinstance(rollout, Rollout):  # refused before it was claimed
        mapping = parse_annotations(
            rollout.annotations, key=key, default_workspace=rec.settings.kong.workspace
        )
        if isinstance(mapping, TargetMapping):
            upstream, workspace = mapping.upstream, mapping.workspace
    found = RolloutDiff(key, upstream, workspace, "in_sync")
    if kong.errors:
        found.status, found.reason = "failed", str(kong.errors[0])
    elif state.condition in ("refused", "invalid"):
        # The daemon's own words; "Rollout ns/name: " is said once, by the line itself.
        found.status = state.condition
        found.reason = (state.last_error or "").removeprefix(f"Rollout {key}: ")
    elif kong.results:
        result = kong.results[-1]
        found.upstream, found.workspace = result.upstream, result.workspace
        if result.upstream_missing:
            found.status = "refused"
            found.reason = (
                f"upstream {result.upstream} does not exist in Kong and kong.createUpstreams is off"
            )
        else:
            found.changes = changes_of(result)
            found.warnings = _warnings(result)
            found.status = "changes" if found.changes else "in_sync"
    elif state.hold is not None:
        found.status, found.reason = "held", state.hold
    return found


# --------------------------------------------------------------------------- the command


def _error(message: str) -> None:
    print(f"kongsplit diff: {message}", file=sys.stderr)


async def _read_objects(
    settings: Settings, *, files: Sequence[str], namespaces: Sequence[str]
) -> list[Located]:
    try:
        if files:
            objects = read_objects(files)
        else:
            kube = settings.kubernetes
            objects = await read_cluster(
                kube.kubeconfig, context=kube.context, namespaces=namespaces
            )
    except (ManifestError, ClusterUnreadable) as e:
        raise DiffError(str(e)) from None
    conflicts = conflicts_in(objects)
    if conflicts:
        raise DiffError(*conflicts)  # nothing is compared from input that contradicts itself
    return objects


def _router(kong: KongConfig) -> KongRouter:
    try:
        return KongRouter.from_config(kong, retry=_DIFF_RETRY, dry_run=True)
    except KongError as e:  # unreadable TLS files: said plainly
        raise DiffError(str(e)) from None


async def _node(settings: Settings, router: KongRouter, objects: Sequence[Located]) -> NodeDiff:
    try:
        return await compute(settings, router, objects)
    except KongError as e:  # Kong unreachable, the token refused, a data plane
        raise DiffError(str(e)) from None
    finally:
        await router.close()


async def _diff(settings: Settings, *, files: Sequence[str], namespaces: Sequence[str]) -> Report:
    router = _router(settings.kong)  # the TLS files are read before anything is asked
    try:
        objects = await _read_objects(settings, files=files, namespaces=namespaces)
    except BaseException:
        await router.close()
        raise
    first = await _node(settings, router, objects)
    report = Report([first])
    if first.mode == KongMode.DBLESS:
        # Each DB-less node holds its own configuration (its own sidecar writes it): compare
        # every node kong.nodes lists, each as its sidecar would plan it. One that cannot be
        # read is an error of its own; the others are still shown.
        for url in dict.fromkeys(settings.kong.nodes):
            if url == settings.kong.url:
                continue
            node = replace(settings, kong=replace(settings.kong, url=url))
            try:
                report.nodes.append(await _node(node, _router(node.kong), objects))
            except DiffError as e:
                report.nodes.append(NodeDiff(redact_url(url), None, errors=list(e.lines)))
    return report


def run(args: argparse.Namespace) -> int:
    cli_namespaces = namespaces_of(args.namespaces)
    if cli_namespaces and args.all_namespaces:
        _error(BOTH_NAMESPACE_FLAGS)
        return EXIT_ERROR
    reads_cluster = (
        args.kubeconfig is not None
        or args.context is not None
        or bool(cli_namespaces)
        or args.all_namespaces
    )
    if args.files and reads_cluster:
        _error(
            "compare Rollouts from -f FILE or from the cluster (--kubeconfig, --context, -n, "
            "-A), not both"
        )
        return EXIT_ERROR
    try:
        settings = kong_settings(
            args, kubernetes={"kubeconfig": args.kubeconfig, "context": args.context}
        )
    except ConfigError as e:
        _error(str(e))
        return EXIT_ERROR
    namespaces = (
        [] if args.all_namespaces else cli_namespaces or list(settings.kubernetes.namespaces)
    )
    # The reconciler logs what it finds (for the daemon's log); here the report says it.
    quiet = logging.getLogger("kongsplit")
    if not any(isinstance(h, logging.NullHandler) for h in quiet.handlers):
        quiet.addHandler(logging.NullHandler())
    try:
        report = asyncio.run(_diff(settings, files=args.files or [], namespaces=namespaces))
    except DiffError as e:
        for line in e.lines:
            _error(line)
        return EXIT_ERROR
    code = EXIT_ERROR if report.errors else EXIT_CHANGES if report.changes else EXIT_IN_SYNC
    unicode = _can_print("→")
    try:
        if args.output == "json":
            print(json.dumps(report.as_json(), indent=2, ensure_ascii=not unicode))
        else:
            lines = report.lines()
            for line in lines:
                print(line if unicode else _ascii(line))
            if lines:
                print()
            print(_ascii(report.summary()))
            print(_ascii(report.rollouts_line()))
        sys.stdout.flush()
    except BrokenPipeError:
        # ``kongsplit diff | head``: the exit code still says whether anything would change.
        from kongsplit.cli import stdout_gone

        stdout_gone()
    for error in report.errors:
        _error(error)
    return code


def _can_print(text: str) -> bool:
    """Can stdout's encoding carry ``text`` (a non-UTF-8 locale or PYTHONIOENCODING cannot)?"""
    try:
        text.encode(getattr(sys.stdout, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _ascii(line: str) -> str:
    """A line for a stdout that cannot print Unicode: ``→`` as ``->``, anything else as ``?``."""
    line = line.replace("→", "->")
    return line.encode("ascii", "replace").decode("ascii")
