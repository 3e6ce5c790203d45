"""The ``kongsplit`` command line: one subcommand per module, dispatched lazily.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; this file only wires them, so a command's options sit next to its code.
Exit codes: 0 success, 1 internal error, 2 bad input or usage (``diff``: 0 in sync, 1 changes,
2 error, decK's convention).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from kongsplit.version import package_version

# subcommand → (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("kongsplit.app", "run the daemon: watch Rollouts, keep Kong's target weights in step"),
    "plan": ("kongsplit.plan", "offline: show what kongsplit would hold in Kong for Rollout files"),
    "diff": (
        "kongsplit.diff",
        "what `kongsplit run` would write to Kong right now, one line a change",
    ),
    "inspect": ("kongsplit.inspect", "read a live Kong Admin API the way kongsplit sees it"),
    "get": (
        "kongsplit.get",
        "a Rollout as Argo's plugin shows it, with kongsplit's split and what Kong serves",
    ),
    "demo": ("kongsplit.demo", "the real daemon against built-in Kubernetes and Kong simulators"),
    "sim-kong": ("kongsplit.sim.kongsim.cli", "run the Kong Admin API simulator on its own"),
    "completion": ("kongsplit.completion", "print a bash, zsh or fish completion script"),
    "version": ("kongsplit.version", "print version, Python and dependency versions"),
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name][0])


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake said in one line naming the fix (not the whole usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}; see '{self.prog} --help'\n")


def build_parser(only: str | None = None, *, prog: str = "kongsplit") -> argparse.ArgumentParser:
    """The full parser; with ``only``, just that subcommand's module is imported (fast start)."""
    parser = _Parser(
        prog=prog,
        description="Split traffic between stable and canary behind Kong, as Argo Rollouts says.",
    )
    # The first line of `kongsplit version`.
    parser.add_argument("--version", action="version", version=f"kongsplit {package_version()}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or name == only:
            _module(name).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str = "kongsplit") -> int:
    try:
        return _main(argv, prog=prog)
    except KeyboardInterrupt:  # at any moment, even while the parser's modules load
        return 130
    except BrokenPipeError:
        # The reader went away (``kongsplit version | head -1``): not an error of ours.
        stdout_gone()
        return 0


def stdout_gone() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _main(argv: Sequence[str] | None, *, prog: str) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["__complete"]:  # what the completion scripts ask (kongsplit.completion)
        from kongsplit.completion import complete_main

        return complete_main(argv[1:])
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(chosen if chosen in COMMANDS else None, prog=prog)
    args = parser.parse_args(argv)
    code: int = _module(args.command).run(args)
    sys.stdout.flush()
    return code


def kubectl_main() -> int:
    """``kubectl-kongsplit``: the same command as a kubectl plugin (``kubectl kongsplit ...``)."""
    return main(prog="kubectl kongsplit")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
