"""``kongsplit completion bash|zsh|fish`` loaded into the real shells, and what ``kongsplit
__complete`` answers (from the parsers, the kubeconfig and a live cluster)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kongsplit import completion
from kongsplit.cli import COMMANDS
from kongsplit.sim import objects
from kongsplit.sim.kubesim import KubeSim

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # where pip put the kongsplit console script


def shell(name: str) -> str:
    """The shell, or skip (locally) / fail (CI=true) when it is missing."""
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing: .ci/install-tools installs it")
        pytest.skip(f"{name} is not installed (.ci/install-tools installs it)")
    return found


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",)}
    if not (BIN / "kongsplit").exists():
        pytest.fail(f"{BIN / 'kongsplit'} is missing: pip install the package")
    return {**base, "PATH": f"{BIN}{os.pathsep}{base['PATH']}", **extra}


def script(name: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "kongsplit", "completion", name],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert result.stderr == ""
    return result.stdout


def words(found: list[tuple[str, str]] | str) -> list[str]:
    assert not isinstance(found, str), found
    return [w for w, _ in found]


# --------------------------------------------------------------------------- what comes next


def test_subcommands_flags_and_choices() -> None:
    assert words(completion.complete([""])) == list(COMMANDS)
    assert words(completion.complete(["ins"])) == ["inspect"]
    assert words(completion.complete(["--v"])) == ["--version"]
    assert words(completion.complete(["get", ""])) == ["rollout", "rollouts", "ro"]
    assert words(completion.complete(["get", "rollouts", "--wa"])) == ["--watch"]
    assert words(completion.complete(["get", "rollouts", "-o", ""])) == ["text", "json"]
    assert words(completion.complete(["completion", ""])) == ["bash", "zsh", "fish"]
    assert "--all-namespaces" in words(completion.complete(["inspect", "--"]))
    # A flag's value is not a positional: `-n shop` leaves `rollout` as the first word.
    assert words(completion.complete(["get", "-n", "shop", ""])) == ["rollout", "rollouts", "ro"]
    assert completion.complete(["get", "--kubeconfig", ""]) == completion.FILES
    assert completion.complete(["plan", ""]) == completion.FILES
    assert completion.complete(["nonsense", ""]) == []
    descriptions = dict(completion.complete([""]))  # type: ignore[arg-type]
    assert descriptions["get"] == COMMANDS["get"][1]


def kubeconfig(path: Path, server: str, *, contexts: tuple[str, ...] = ("sim",)) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "sim", "cluster": {"server": server}}],
                "users": [{"name": "sim", "user": {}}],
                "contexts": [
                    {"name": c, "context": {"cluster": "sim", "user": "sim", "namespace": "shop"}}
                    for c in contexts
                ],
                "current-context": contexts[0],
            }
        )
    )
    return path


async def test_rollout_names_and_contexts_are_read_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with KubeSim() as kube:
        for name in ("checkout", "cart"):
            kube.apply(objects.rollout(name))
        kube.apply(objects.rollout("elsewhere", "other"))
        config = kubeconfig(tmp_path / "kc", kube.url, contexts=("sim", "prod-eu"))
        monkeypatch.setenv("KUBECONFIG", str(config))
        found = await asyncio.to_thread(completion.complete, ["get", "rollout", ""])
        assert words(found) == ["cart", "checkout"]  # the context's namespace, shop
        found = await asyncio.to_thread(completion.complete, ["get", "ro", "-n", "other", "e"])
        assert words(found) == ["elsewhere"]
        found = await asyncio.to_thread(completion.complete, ["get", "rollout", "--context", "p"])
        assert words(found) == ["prod-eu"]
        # -n: the namespaces that hold Rollouts (read cluster-wide), for get and inspect alike.
        found = await asyncio.to_thread(completion.complete, ["get", "rollouts", "-n", ""])
        assert words(found) == ["other", "shop"]
        found = await asyncio.to_thread(completion.complete, ["inspect", "--namespace", "o"])
        assert words(found) == ["other"]
    # The cluster gone: nothing to offer, quickly, and no error on the terminal.
    found = await asyncio.to_thread(completion.complete, ["get", "rollout", ""])
    assert found == []
    assert await asyncio.to_thread(completion.complete, ["get", "rollouts", "-n", ""]) == []


# --------------------------------------------------------------------------- the real shells


def test_bash_accepts_the_script_and_completes(tmp_path: Path) -> None:
    bash = shell("bash")
    path = tmp_path / "kongsplit.bash"
    path.write_text(script("bash"))
    check = subprocess.run([bash, "-n", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr

    def complete(line: str) -> list[str]:
        typed = line.split(" ")
        program = f"""
            source {path}
            complete -p kongsplit
            COMP_WORDS=({" ".join(repr(w) if w else "''" for w in typed)})
            COMP_CWORD={len(typed) - 1}
            COMP_LINE={line!r}
            COMP_POINT=${{#COMP_LINE}}
            _kongsplit
            printf '%s\\n' "${{COMPREPLY[@]}}"
            compgen -W "$(printf '%s ' "${{COMPREPLY[@]}}")" -- "${{COMP_WORDS[COMP_CWORD]}}" \
                | sort | tr '\\n' ' '
        """
        result = subprocess.run(
            [bash, "--norc", "-c", program], capture_output=True, text=True, env=env(), timeout=60
        )
        assert result.returncode == 0 and result.stderr == "", result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == "complete -F _kongsplit kongsplit"
        replies, again = lines[1:-1], lines[-1].split()
        assert sorted(replies) == again  # compgen agrees with what was offered
        return replies

    assert complete("kongsplit g") == ["get"]
    assert complete("kongsplit get ") == ["rollout", "rollouts", "ro"]
    assert complete("kongsplit get rollouts --all") == ["--all-namespaces"]
    assert complete("kongsplit completion z") == ["zsh"]
    (tmp_path / "kc-a").write_text("")
    assert complete(f"kongsplit get rollouts --kubeconfig {tmp_path}/kc-") == [f"{tmp_path}/kc-a"]


def test_bash_completes_a_context_name_holding_colons(tmp_path: Path) -> None:
    """EKS names contexts ``arn:aws:eks:REGION:ACCOUNT:cluster/NAME``; bash splits the word at
    every ':' (COMP_WORDBREAKS), so COMP_WORDS holds pieces. The script reads the line as typed
    and answers with what follows the last ':', the part bash replaces."""
    bash = shell("bash")
    path = tmp_path / "kongsplit.bash"
    path.write_text(script("bash"))
    arn = "arn:aws:eks:us-east-1:123:cluster/prod"
    config = kubeconfig(tmp_path / "kc", "http://127.0.0.1:9", contexts=(arn, "dev"))
    line = "kongsplit get rollout --context arn:aws:e"
    pieces = ["kongsplit", "get", "rollout", "--context", "arn", ":", "aws", ":", "e"]
    program = f"""
        source {path}
        COMP_WORDS=({" ".join(repr(w) for w in pieces)})
        COMP_CWORD={len(pieces) - 1}
        COMP_LINE={line!r}
        COMP_POINT=${{#COMP_LINE}}
        _kongsplit
        printf '%s\\n' "${{COMPREPLY[@]}}"
    """
    result = subprocess.run(
        [bash, "--norc", "-c", program],
        capture_output=True,
        text=True,
        env=env(KUBECONFIG=str(config)),
        timeout=60,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.splitlines() == ["eks:us-east-1:123:cluster/prod"]


def test_zsh_accepts_the_script_and_completes(tmp_path: Path) -> None:
    """zsh's completion widgets only run inside an interactive line editor: the script is loaded
    for real (syntax and compdef after compinit), and ``_kongsplit`` runs with zsh's own
    ``words``/``CURRENT`` and ``_describe``/``_files`` standing in as recorders."""
    zsh = shell("zsh")
    path = tmp_path / "_kongsplit"
    path.write_text(script("zsh"))
    check = subprocess.run([zsh, "-n", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    registered = subprocess.run(
        [
            zsh,
            "-f",
            "-c",
            f"autoload -U compinit && compinit -u -D && source {path} "
            "&& print -r -- ${_comps[kongsplit]}",
        ],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert registered.stdout.strip() == "_kongsplit", registered.stderr

    def complete(*typed: str) -> list[str]:
        program = f"""
            source {path}
            _describe() {{ print -rl -- "${{(@P)${{@[-1]}}}}" }}
            _files() {{ print -r -- FILES }}
            words=({" ".join(repr(w) for w in typed)})
            CURRENT={len(typed)}
            _kongsplit
        """
        result = subprocess.run(
            [zsh, "-f", "-c", program], capture_output=True, text=True, env=env(), timeout=60
        )
        assert result.returncode == 0 and result.stderr == "", result.stderr
        return result.stdout.splitlines()

    assert complete("kongsplit", "in") == [f"inspect:{COMMANDS['inspect'][1]}"]
    assert complete("kongsplit", "get", "") == ["rollout", "rollouts", "ro"]
    assert complete("kongsplit", "get", "rollouts", "--kubeconfig", "") == ["FILES"]


def test_fish_accepts_the_script_and_completes(tmp_path: Path) -> None:
    fish = shell("fish")
    path = tmp_path / "kongsplit.fish"
    path.write_text(script("fish"))
    check = subprocess.run([fish, "--no-execute", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr

    def complete(line: str) -> list[str]:
        result = subprocess.run(
            [fish, "--no-config", "-c", f"source {path}; complete -C {line!r}"],
            capture_output=True,
            text=True,
            env=env(HOME=str(tmp_path)),
            timeout=60,
        )
        assert result.returncode == 0 and result.stderr == "", result.stderr
        return result.stdout.splitlines()

    assert complete("kongsplit ge") == [f"get\t{COMMANDS['get'][1]}"]
    assert complete("kongsplit get ") == ["ro", "rollout", "rollouts"]  # fish sorts them
    assert complete("kongsplit get rollouts -o j") == ["json"]


def test_kubectl_completes_the_plugin() -> None:
    """kubectl 1.26+ asks ``kubectl_complete-kongsplit`` (installed with the package)."""
    kubectl = shutil.which(
        "kubectl", path=f"{ROOT / '.tools' / 'bin'}{os.pathsep}{os.environ['PATH']}"
    )
    if kubectl is None:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl is missing: run .ci/install-tools")
        pytest.skip("kubectl is not installed (.ci/install-tools puts it in .tools/bin)")
    result = subprocess.run(
        [kubectl, "__complete", "kongsplit", "get", "rollouts", "-o", ""],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["text", "json", ":4"]
