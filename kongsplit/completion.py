"""``kongsplit completion bash|zsh|fish``: shell completion, kubectl's way.

Each script is a few lines that ask the program itself what may come next (``kongsplit
__complete WORD...``, as kubectl and every cobra program do with ``__complete``), so the
subcommands, flags and choices always match the installed version. Most answers come from the
command's own parser; a few are read live, each in at most two seconds and silently skipped when
unreadable: the Rollout names after ``get rollout`` (from the cluster, namespace from ``-n`` or
the context), the namespaces holding Rollouts after ``-n``, contexts after ``--context`` (from
the kubeconfig).

``kubectl kongsplit`` completes too: kubectl (1.26+) runs ``kubectl_complete-kongsplit`` with the
words after ``kubectl kongsplit`` and reads the same lines followed by cobra's ``:<directive>``.

Output of ``__complete``: one candidate per line, ``word<TAB>description`` where there is one;
the single line ``__files__`` asks the shell to complete file names.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

FILES = "__files__"
SHELLS = ("bash", "zsh", "fish")
_LIVE_TIMEOUT = 2.0

BASH = r"""# kongsplit completion for bash. Load it with:  source <(kongsplit completion bash)
# or install it:  kongsplit completion bash > /etc/bash_completion.d/kongsplit
_kongsplit() {
    # The words as the user typed them, split at blanks only: COMP_WORDS also splits at ':'
    # and '=' (COMP_WORDBREAKS), which cuts an EKS context name (arn:aws:eks:...) apart.
    local typed="${COMP_LINE:0:COMP_POINT}" line out cur prefix
    local -a args=() words=()
    read -ra args <<< "$typed"
    [[ "$typed" == *[[:blank:]] || ${#args[@]} -eq 0 ]] && args+=("")
    cur="${args[${#args[@]}-1]}"
    out=$("${COMP_WORDS[0]}" __complete "${args[@]:1}" 2>/dev/null) || return 0
    if [[ "$out" == "__files__" ]]; then
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        return 0
    fi
    while IFS= read -r line; do
        [[ -n "$line" ]] && words+=("${line%%$'\t'*}")
    done <<< "$out"
    local IFS=$'\n'
    mapfile -t COMPREPLY < <(compgen -W "${words[*]}" -- "$cur")
    # bash replaces only what follows the last ':' or '=' of the word: answer with that part.
    if [[ "$cur" == *[:=]* ]]; then
        prefix="${cur%"${cur##*[:=]}"}"
        COMPREPLY=("${COMPREPLY[@]#"$prefix"}")
    fi
}
complete -F _kongsplit kongsplit
"""

ZSH = r"""#compdef kongsplit
# kongsplit completion for zsh. Load it with:  source <(kongsplit completion zsh)
# (after compinit), or save it as _kongsplit in a directory of your $fpath.
_kongsplit() {
    local out line word
    local -a described
    out=$("${words[1]}" __complete "${(@)words[2,CURRENT]}" 2>/dev/null) || return 1
    if [[ "$out" == "__files__" ]]; then
        _files
        return
    fi
    for line in "${(@f)out}"; do
        [[ -z "$line" ]] && continue
        word="${line%%$'\t'*}"
        word="${word//:/\\:}"
        if [[ "$line" == *$'\t'* ]]; then
            described+=("${word}:${line#*$'\t'}")
        else
            described+=("${word}")
        fi
    done
    _describe -t values 'kongsplit' described
}
if (( $+functions[compdef] )); then
    compdef _kongsplit kongsplit
fi
"""

FISH = r"""# kongsplit completion for fish. Load it with:  kongsplit completion fish | source
# or install it:  kongsplit completion fish > ~/.config/fish/completions/kongsplit.fish
function __kongsplit_complete
    set -l words (commandline -opc) (commandline -ct)
    set -l out ($words[1] __complete $words[2..-1] 2>/dev/null)
    if test "$out" = "__files__"
        __fish_complete_path (commandline -ct)
        return
    end
    printf '%s\n' $out
end
complete -c kongsplit -f -a '(__kongsplit_complete)'
"""

SCRIPTS = {"bash": BASH, "zsh": ZSH, "fish": FISH}

#: Flags whose value is a file name.
_FILE_FLAGS = {
    "--kubeconfig",
    "--config",
    "--token-file",
    "--ca-file",
    "--cert-file",
    "--key-file",
    "--log-file",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", choices=SHELLS, help="the shell to print the script for")


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(SCRIPTS[args.shell])
    return 0


# --------------------------------------------------------------------------- what comes next

Candidate = tuple[str, str]  # (word, description)


def _subparser(command: str) -> argparse.ArgumentParser | None:
    from kongsplit.cli import build_parser

    parser = build_parser(command)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found = action.choices.get(command)
            return found if isinstance(found, argparse.ArgumentParser) else None
    return None


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def complete(words: Sequence[str]) -> list[Candidate] | str:
    """Candidates for the last of ``words`` (the words after the program name; the last one is
    being typed, possibly empty), or :data:`FILES`."""
    from kongsplit.cli import COMMANDS

    words = list(words) or [""]
    cur, before = words[-1], words[:-1]
    command = next((w for w in before if not w.startswith("-")), None)
    if command is None:
        if cur.startswith("-"):
            return _matching([("--help", "show help"), ("--version", "print the version")], cur)
        return _matching([(name, help_text) for name, (_, help_text) in COMMANDS.items()], cur)
    if command not in COMMANDS:
        return []
    parser = _subparser(command)
    if parser is None:
        return []
    options: dict[str, argparse.Action] = {}
    positionals: list[argparse.Action] = []
    for action in parser._actions:
        if action.option_strings:
            for flag in action.option_strings:
                options[flag] = action
        else:
            positionals.append(action)
    # Where are we: a flag's value, or which positional?
    after = before[before.index(command) + 1 :]
    given: list[str] = []
    expecting: argparse.Action | None = None
    expecting_flag = ""
    for word in after:
        if expecting is not None:
            expecting = None
            continue
        if word.startswith("-") and word != "-":
            flagged = options.get(word.split("=", 1)[0])
            if flagged is not None and _takes_value(flagged) and "=" not in word:
                expecting, expecting_flag = flagged, word
            continue
        given.append(word)
    if expecting is not None:
        return _value(command, expecting_flag, expecting, cur, after)
    if cur.startswith("-"):
        flags = [
            (flag, action.help or "")
            for flag, action in options.items()
            if action.help != argparse.SUPPRESS
        ]
        return _matching(flags, cur)
    return _positional(command, positionals, given, cur, after)


def _matching(candidates: Sequence[Candidate], cur: str) -> list[Candidate]:
    return [(w, " ".join(d.split())) for w, d in candidates if w.startswith(cur)]


def _value(
    command: str, flag: str, action: argparse.Action, cur: str, words: Sequence[str]
) -> list[Candidate] | str:
    if action.choices:
        return _matching([(str(c), "") for c in action.choices], cur)
    if flag in _FILE_FLAGS:
        return FILES
    if flag == "--context":
        return _matching([(c, "") for c in _contexts(words)], cur)
    if flag in ("-n", "--namespace"):
        return _matching([(ns, "") for ns in _rollout_namespaces(words)], cur)
    del command
    return []


def _positional(
    command: str,
    positionals: Sequence[argparse.Action],
    given: Sequence[str],
    cur: str,
    words: Sequence[str],
) -> list[Candidate] | str:
    if command == "get" and len(given) == 1 and given[0] in ("rollout", "rollouts", "ro"):
        return _matching([(name, "Rollout") for name in _rollout_names(words)], cur)
    index = len(given)
    if index < len(positionals):
        action = positionals[index]
        if action.choices:
            return _matching([(str(c), "") for c in action.choices], cur)
        if command == "plan":
            return FILES
    return []


# --------------------------------------------------------------------------- read live


def _flag(words: Sequence[str], *names: str) -> str | None:
    found = None
    for i, word in enumerate(words):
        for name in names:
            if word == name and i + 1 < len(words):
                found = words[i + 1]
            elif word.startswith(name + "=") and name.startswith("--"):
                found = word.split("=", 1)[1]
    return found


def _contexts(words: Sequence[str]) -> list[str]:
    from kongsplit import kube

    try:
        source = kube.resolve_source(_flag(words, "--kubeconfig"))
        return kube.context_names(source.files)
    except kube.KubeError:
        return []


def _rollout_names(words: Sequence[str]) -> list[str]:
    """The Rollouts of the namespace the command line names (else the context's)."""
    return sorted({name for _, name in _rollouts(words, every_namespace=False)})


def _rollout_namespaces(words: Sequence[str]) -> list[str]:
    """The namespaces that hold Rollouts (read cluster-wide: the permission ``get -A`` needs,
    not the one to list namespaces)."""
    return sorted({ns for ns, _ in _rollouts(words, every_namespace=True)})


def _rollouts(words: Sequence[str], *, every_namespace: bool) -> list[tuple[str, str]]:
    """(namespace, name) of the Rollouts the command line's cluster holds, read within
    :data:`_LIVE_TIMEOUT`; nothing when they cannot be read."""
    from kongsplit import kube
    from kongsplit.watcher import ROLLOUTS

    async def read() -> list[tuple[str, str]]:
        source = kube.resolve_source(
            _flag(words, "--kubeconfig"), context=_flag(words, "--context")
        )
        namespace = None
        if not every_namespace:
            namespace = (_flag(words, "-n", "--namespace") or source.namespace).split(",")[0]
        api = await kube.client_for(source)
        try:
            body = await kube.request(api, "GET", ROLLOUTS.path(namespace))
        finally:
            await api.close()
        items = body.get("items")
        found = []
        for item in items if isinstance(items, list) else []:
            meta = item.get("metadata") if isinstance(item, dict) else None
            if isinstance(meta, dict) and isinstance(meta.get("name"), str):
                ns = meta.get("namespace")
                found.append((ns if isinstance(ns, str) and ns else "default", meta["name"]))
        return found

    async def bounded() -> list[tuple[str, str]]:
        return await asyncio.wait_for(read(), _LIVE_TIMEOUT)

    try:
        return asyncio.run(bounded())
    except (kube.KubeError, TimeoutError, OSError, ValueError):
        return []


# --------------------------------------------------------------------------- entry points


def complete_main(words: Sequence[str]) -> int:
    """``kongsplit __complete WORD...``: the lines the scripts read."""
    found = complete(words)
    if isinstance(found, str):
        print(found)
        return 0
    for word, description in found:
        print(f"{word}\t{description}" if description else word)
    return 0


def kubectl_complete_main() -> int:
    """``kubectl_complete-kongsplit``: kubectl's plugin completion (cobra's ``__complete``
    format: candidates, then ``:4`` for no file completion or ``:0`` to let the shell complete
    file names)."""
    found = complete(sys.argv[1:])
    if isinstance(found, str):
        print(":0")
        return 0
    for word, description in found:
        print(f"{word}\t{description}" if description else word)
    print(":4")
    return 0
