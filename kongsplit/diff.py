"""``kongsplit diff``: what ``kongsplit run`` would write to Kong right now, one line a change.

The Rollouts, with their Services and ReplicaSets, come from the cluster (the kubeconfig as
``run`` and ``plan`` find it; ``-n``/``-A``, else the namespaces ``kubernetes.namespaces``
names) or from files (``-f``, read as ``plan`` reads them). Kong is the live Admin API,
configured as ``run`` is (``--kong-url``, ``--token-file``, ``--config``, ``KONGSPLIT_*``).

Nothing here decides anything: the objects go into the daemon's own ``Reconciler``, which
reconciles each Rollout once as a freshly started daemon's first sync does — the desired-state
engine (``desired.desired_state``), ownership and consent read from Kong (``_ownership``), holds
— against a dry-run ``KongRouter``. Its ``apply`` reads Kong as a sweep does and plans with
``kong.writes.plan_writes`` (a DB-less node: the same edit of the node's ``/config``, read with
``kong.configtext``) and sends nothing; its client refuses any write besides. The words are the
ones ``run --dry-run`` logs (``kong.writes.change_line``)::

    ~ upstream checkout.shop.svc: target 10.0.0.2:80 weight 10 → 25
    + upstream web.shop.svc (create)
    + upstream web.shop.svc: target 10.96.0.10:80 weight 100 (create)
    - upstream web.shop.svc: target 10.96.0.9:80 weight 0 (delete: no longer wanted)
    ! Rollout aaa/grab refused: …            kongsplit writes nothing for it
    = Rollout shop/web held: …               kongsplit keeps Kong as it is

then a summary line (``3 changes in 2 upstreams; 1 Rollout refused``). ``-o json`` gives the
same for scripts.

Exit codes, decK's: 0 in sync, 1 changes, 2 error (unreadable input, a cluster or Kong that
cannot be read; one line each on stderr, naming the fix).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from kongsplit.annotations import TargetMapping, parse_annotations
from kongsplit.config import ConfigError, Settings, flag_help, load_settings
from kongsplit.kong.apply import KongRouter
from kongsplit.kong.client import MayWrite, RetryPolicy
from kongsplit.kong.errors import KongError
from kongsplit.kong.records import KongMode, NodeInfo, Target, UpstreamClaim
from kongsplit.kong.targets import DesiredTarget, owner_label
from kongsplit.kong.writes import (
    DRIFT_FOREIGN,
    WEIGHT_ZERO_UNSAFE,
    ApplyResult,
    WriteKind,
    change_line,
    upstream_create_line,
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
        help="text (one line a change, then a summary; the default) or json",
    )
    kong = parser.add_argument_group("Kong, as kongsplit run takes it")
    kong.add_argument(
        "--config", metavar="FILE", help="kongsplit config file (else $KONGSPLIT_CONFIG)"
    )
    kong.add_argument("--kong-url", metavar="URL", help=flag_help("kong", "url"))
    kong.add_argument("--token-file", metavar="FILE", help=flag_help("kong", "tokenFile"))
    add_cluster_arguments(
        parser.add_argument_group(
            "the cluster (the default input)",
            "The kubeconfig is --kubeconfig, else kubernetes.kubeconfig, $KUBECONFIG, "
            "~/.kube/config (in a pod: its service account); the namespaces -n, else "
            "kubernetes.namespaces, else all.",
        )
    )


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class Change:
    """One write ``kongsplit run`` would make (or the upstream it would create)."""

    rollout: RolloutKey
    action: str  # "create_upstream" or a WriteKind: create, update, adopt, zero_foreign, delete
    upstream: str
    workspace: str | None
    target: str | None
    old_weight: int | None
    new_weight: int | None
    line: str

    def as_json(self) -> dict[str, Any]:
        return {
            "rollout": str(self.rollout),
            "action": self.action,
            "upstream": self.upstream,
            "workspace": self.workspace,
            "target": self.target,
            "old_weight": self.old_weight,
            "new_weight": self.new_weight,
            "line": self.line,
        }


@dataclass
class RolloutDiff:
    """What kongsplit would do for one annotated Rollout."""

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
class Report:
    kong_url: str
    kong_mode: KongMode
    rollouts: list[RolloutDiff] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def changes(self) -> list[Change]:
        return [c for r in self.rollouts for c in r.changes]

    def count(self, status: str) -> int:
        return sum(1 for r in self.rollouts if r.status == status)

    def summary(self) -> str:
        changes = self.changes
        upstreams = {(c.workspace or "", c.upstream) for c in changes}
        parts = [
            f"{_n(len(changes), 'change')} in {_n(len(upstreams), 'upstream')}"
            if changes
            else "no changes"
            if self.rollouts
            else "no changes: no Rollout annotated with kongsplit.io/upstream"
        ]
        in_sync = self.count("in_sync")
        if in_sync and not changes:
            parts[0] += f" ({_n(in_sync, 'Rollout')} in sync)"
        for status in ("refused", "invalid", "held", "failed"):
            if self.count(status):
                parts.append(f"{_n(self.count(status), 'Rollout')} {status}")
        warnings = sum(len(r.warnings) for r in self.rollouts)
        if warnings:
            parts.append(_n(warnings, "warning"))
        return "; ".join(parts)

    def lines(self) -> list[str]:
        out: list[str] = []
        for r in self.rollouts:
            out += [c.line for c in r.changes]
            out += r.warnings
            if r.line is not None:
                out.append(r.line)
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "kong": {"url": self.kong_url, "mode": str(self.kong_mode)},
            "in_sync": not self.changes,
            "summary": self.summary(),
            "changes": [c.as_json() for c in self.changes],
            "rollouts": [r.as_json() for r in self.rollouts],
            "errors": list(self.errors),
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


def _changes(key: RolloutKey, result: ApplyResult) -> list[Change]:
    up, ws = result.upstream, result.workspace
    found = []
    if result.upstream_planned:
        line = upstream_create_line(up, workspace=ws)
        found.append(Change(key, "create_upstream", up, ws, None, None, None, line))
    for w in result.planned:
        new = None if w.kind == WriteKind.DELETE else w.weight
        line = change_line(up, w, workspace=ws)
        found.append(Change(key, str(w.kind), up, ws, w.target, w.old_weight, new, line))
    return found


def _warnings(result: ApplyResult) -> list[str]:
    """What the daemon would warn about in this upstream (it writes nothing for it)."""
    label = upstream_label(result.upstream, result.workspace)
    by_target = {t.target: t for t in result.targets}
    out = []
    for d in result.drift:
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


async def compute(settings: Settings, router: KongRouter, objects: Sequence[Located]) -> Report:
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
    report = Report(router.display_url, mode)
    try:
        for key in sorted(rec.store.rollouts, key=lambda k: (k.namespace, k.name)):
            kong.begin()
            await rec.reconcile(key, refresh=True)
            found = _outcome(rec, kong, key)
            if found is None:
                continue  # not annotated: none of kongsplit's business
            report.rollouts.append(found)
            if found.status == "failed":
                report.errors.append(f"Rollout {key}: {found.reason}")
    finally:
        rec.queue.close()
    return report


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
            found.changes = _changes(key, result)
            found.warnings = _warnings(result)
            found.status = "changes" if found.changes else "in_sync"
    elif state.hold is not None:
        found.status, found.reason = "held", state.hold
    return found


# --------------------------------------------------------------------------- the command


def _error(message: str) -> None:
    print(f"kongsplit diff: {message}", file=sys.stderr)


async def _diff(settings: Settings, *, files: Sequence[str], namespaces: Sequence[str]) -> Report:
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
    try:
        router = KongRouter.from_config(settings.kong, retry=_DIFF_RETRY, dry_run=True)
    except KongError as e:  # unreadable TLS files: said plainly
        raise DiffError(str(e)) from None
    try:
        return await compute(settings, router, objects)
    except KongError as e:  # Kong unreachable, the token refused, a data plane
        raise DiffError(str(e)) from None
    finally:
        await router.close()


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
        settings = load_settings(
            args.config,
            flags={
                "kong": {"url": args.kong_url, "tokenFile": args.token_file},
                "kubernetes": {"kubeconfig": args.kubeconfig, "context": args.context},
            },
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
    if args.output == "json":
        print(json.dumps(report.as_json(), indent=2, ensure_ascii=False))
    else:
        lines = report.lines()
        for line in lines:
            print(line)
        if lines:
            print()
        print(report.summary())
    for error in report.errors:
        _error(error)
    if report.errors:
        return EXIT_ERROR
    return EXIT_CHANGES if report.changes else EXIT_IN_SYNC
