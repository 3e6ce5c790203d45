"""The ``kongsplit`` command as a user meets it in the first five minutes: ``--version``,
``run --help`` listing every variable, and every mistake answered with one line and an exit code
(run as real processes, with a fresh HOME and no cluster configured)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kongsplit import cli
from kongsplit.app import settings_from_args
from kongsplit.cli import build_parser
from kongsplit.config import CONFIG_ENV, OTHER_ENV, env_names, keys

ROOT = Path(__file__).resolve().parents[1]


def kongsplit(
    *args: str, home: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m kongsplit ...`` on a laptop with nothing set up: a fresh HOME, no kubeconfig,
    not in a pod, no other KONGSPLIT_* variable than ``env``."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("KONGSPLIT_")
        and k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "POD_NAMESPACE", "POD_NAME")
    }
    return subprocess.run(
        [sys.executable, "-m", "kongsplit", *args],
        cwd=ROOT,
        env={**base, "HOME": str(home), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_flag_prints_the_first_line_of_the_version_command(tmp_path: Path) -> None:
    flag = kongsplit("--version", home=tmp_path)
    command = kongsplit("version", home=tmp_path)
    assert (flag.returncode, command.returncode) == (0, 0)
    assert flag.stdout == command.stdout.splitlines()[0] + "\n"
    assert flag.stdout.startswith("kongsplit ") and flag.stderr == ""


def test_run_help_lists_every_variable_with_key_type_and_default(tmp_path: Path) -> None:
    result = kongsplit("run", "--help", home=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for k in keys():
        at = lines.index(f"  {k.env}")
        assert lines[at + 1] == f"      {k.name}: {k.type}; default: {k.default}"
    for name in [CONFIG_ENV, *OTHER_ENV]:
        assert name in result.stdout
    assert "      kong.onDelete: one of keep, stable; default: keep" in lines
    assert "      server.listen: HOST:PORT; default: 0.0.0.0:9102" in lines
    words = " ".join(result.stdout.split())
    assert "the default 0.0.0.0 listens on all interfaces, on a laptop give 127.0.0.1:9102" in words
    assert len(keys()) == len(env_names())


FLAG_VALUES = {
    "--kong-url": "http://kong:8001",
    "--token-file": "/run/secrets/kong-token",
    "--kubeconfig": "/k",
    "--context": "kind-dev",
    "--namespace": "shop",
    "--listen": "127.0.0.1:1",
    "--log-format": "text",
}


def test_run_flags_are_the_schema_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`kongsplit run` has exactly the flags the docs list, and each sets its key."""
    for name in os.environ:
        if name.upper().startswith("KONGSPLIT_"):
            monkeypatch.delenv(name)
    usage = kongsplit("run", "--help", home=tmp_path).stdout.split("\n\n")[0]
    # --dry-run is not a setting but what the command does (plan and log, write nothing): it has
    # no key, and the README says it beside the table of flags.
    options = set(re.findall(r"\[(--[a-z-]+)", usage)) - {"--config", "--dry-run"}
    assert "--dry-run" in usage and "`--dry-run`" in (ROOT / "README.md").read_text()
    assert options == {k.flag for k in keys() if k.flag} == set(FLAG_VALUES)
    for k in keys():
        if k.flag:
            args = build_parser("run").parse_args(["run", k.flag, FLAG_VALUES[k.flag]])
            settings = settings_from_args(args)
            assert settings.origins == {k.name: f"flag {k.flag}"}


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        pytest.param(
            ["--listen", "foo"],
            {},
            "flag --listen: expected HOST:PORT, got 'foo'",
            id="flag-listen",
        ),
        pytest.param(
            ["--kong-url", "kong:8001"],
            {},
            "flag --kong-url: expected an http:// or https:// URL, got 'kong:8001'",
            id="flag-url",
        ),
        pytest.param(
            ["--namespace", "shop", "--namespace", ""],
            {},
            "flag --namespace: expected a non-empty string, got ''",
            id="flag-empty-namespace",
        ),
        pytest.param(
            ["--log-format", "xml"],
            {},
            "flag --log-format: expected one of json, text, got 'xml'",
            id="flag-log-format",
        ),
        pytest.param(
            [],
            {"KONGSPLIT_RECONCILE_CONCURRENCY": "0"},
            "environment KONGSPLIT_RECONCILE_CONCURRENCY: expected a positive integer, got '0'",
            id="env-concurrency",
        ),
        pytest.param(
            [],
            {"KONGSPLIT_LEADER_ELECTION_LEASE_DURATION_SECONDS": "soon"},
            "environment KONGSPLIT_LEADER_ELECTION_LEASE_DURATION_SECONDS: expected a duration "
            "such as 10, '10s' or '2m', got 'soon'",
            id="env-duration",
        ),
        pytest.param(
            [],
            {"KONGSPLIT_KONG_TOKENFILE": "/t"},
            "environment KONGSPLIT_KONG_TOKENFILE is not a kongsplit setting; did you mean "
            "KONGSPLIT_KONG_TOKEN_FILE?",
            id="env-unknown-variable",
        ),
    ],
)
def test_run_bad_value_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], line: str
) -> None:
    result = kongsplit("run", *args, home=tmp_path, env=env)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"kongsplit run: {line}\n")


def test_run_allows_the_documented_non_settings(tmp_path: Path) -> None:
    """KONGSPLIT_UPDATE_ALERTS and KONGSPLIT_DEMO_LOG_LEVEL are not refused: the run gets as far
    as looking for a cluster (none here)."""
    result = kongsplit("run", home=tmp_path, env=dict.fromkeys(OTHER_ENV, "1"))
    assert result.returncode == 1
    assert result.stderr.startswith("kongsplit run: no kubeconfig found")


def test_run_with_no_cluster_configured_says_what_to_give(tmp_path: Path) -> None:
    result = kongsplit("run", home=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        f"kongsplit run: no kubeconfig found ({tmp_path}/.kube/config does not exist, "
        "$KUBECONFIG is unset) and not running in a pod: give --kubeconfig FILE\n",
    )


def test_run_with_an_unknown_context_names_the_ones_there_are(tmp_path: Path) -> None:
    config = tmp_path / ".kube" / "config"
    config.parent.mkdir()
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: kind-dev\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {}}]\n"
        "contexts: [{name: kind-dev, context: {cluster: c, user: u}},"
        " {name: staging, context: {cluster: c, user: u}}]\n"
    )
    for args, env in ((["--context", "prod"], {}), ([], {"KONGSPLIT_KUBERNETES_CONTEXT": "prod"})):
        result = kongsplit("run", *args, home=tmp_path, env=env)
        assert (result.returncode, result.stdout, result.stderr) == (
            1,
            "",
            f"kongsplit run: kubeconfig {config} has no context 'prod' (its contexts: kind-dev, "
            "staging): give --context one of them\n",
        )


def test_run_with_kubeconfig_env_naming_no_file(tmp_path: Path) -> None:
    missing = f"{tmp_path}/a:{tmp_path}/b"
    result = kongsplit("run", home=tmp_path, env={"KUBECONFIG": missing})
    assert (result.returncode, result.stderr) == (
        1,
        f"kongsplit run: no kubeconfig found: $KUBECONFIG is {missing} and none of these files "
        "exists: fix $KUBECONFIG or give --kubeconfig FILE\n",
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        pytest.param(["bogus"], "invalid choice: 'bogus'", id="unknown-command"),
        pytest.param([], "the following arguments are required: COMMAND", id="no-command"),
        pytest.param(["plan", "--bogus"], "unrecognized arguments: --bogus", id="unknown-flag"),
        pytest.param(["inspect", "--json=x"], "ignored explicit argument 'x'", id="bad-flag-value"),
    ],
)
def test_usage_mistakes_are_one_line_with_where_to_look(
    argv: list[str], says: str, tmp_path: Path
) -> None:
    result = kongsplit(*argv, home=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert says in result.stderr and result.stderr.rstrip().endswith("--help'")
    assert "usage:" not in result.stderr and "Traceback" not in result.stderr


def test_a_closed_pipe_is_not_an_error(tmp_path: Path) -> None:
    """``kongsplit version | head -1``: the reader leaves after one line; no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kongsplit", "version"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does after its line
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(30) == 0
    assert first.startswith(b"kongsplit ") and err == ""


def test_ctrl_c_while_the_parser_loads_is_130_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C in the first few hundred milliseconds lands while the subcommand's modules are
    imported (``build_parser``), before the command runs: still 130 and nothing printed. (No
    process can be timed to land a SIGINT there reliably, hence the stand-in.)"""

    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["diff"]) == 130
    assert capsys.readouterr() == ("", "")
