"""Finding the Kubernetes client configuration the way kubectl does (``kongsplit.kube``):
``--kubeconfig``, else ``$KUBECONFIG`` (a list of files), else ``~/.kube/config``, else the pod's
service account; ``--context`` instead of the current-context. Real clients against KubeSim over
real sockets, with a temporary HOME and environment; every dead end is one line with the fix.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio.config import incluster_config

from kongsplit import kube
from kongsplit.sim.kubesim import KubeSim

DEAD = "http://127.0.0.1:9"  # nothing listens on the discard port: a request there fails


@pytest.fixture()
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim() as s:
        yield s


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME, no $KUBECONFIG, not in a pod."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(name, raising=False)
    return home


def kubeconfig(path: Path, servers: dict[str, str], current: str | None) -> Path:
    """A kubeconfig with one context (and cluster) per ``servers`` entry."""
    config: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": url}} for n, url in servers.items()],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": n, "context": {"cluster": n, "user": "u"}} for n in servers],
    }
    if current:
        config["current-context"] = current
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


async def reaches(sim: KubeSim, kubeconfig_arg: str | None, context: str | None = None) -> bool:
    """Whether a client built from these arguments talks to ``sim`` (it counts the request)."""
    api = await kube.make_api_client(kubeconfig_arg, context=context)
    try:
        before = len(sim.requests)
        await kube.request(api, "GET", "/api/v1/services")
        return len(sim.requests) > before
    except kube.KubeUnavailable:
        return False
    finally:
        await api.close()


# --------------------------------------------------------------------------- where it is found


async def test_home_kube_config_when_nothing_else_is_given(sim: KubeSim, home: Path) -> None:
    kubeconfig(home / ".kube" / "config", {"sim": sim.url}, "sim")
    assert kube.resolve_source(None) == kube.KubeSource(
        (str(home / ".kube" / "config"),), "sim", "~/.kube/config"
    )
    assert await reaches(sim, None)


async def test_kubeconfig_env_beats_home(
    sim: KubeSim, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig(home / ".kube" / "config", {"dead": DEAD}, "dead")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "env", {"sim": sim.url}, "sim")))
    assert kube.resolve_source(None).origin == "$KUBECONFIG"
    assert await reaches(sim, None)


async def test_kubeconfig_flag_beats_env_and_home(
    sim: KubeSim, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig(home / ".kube" / "config", {"dead": DEAD}, "dead")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "env", {"dead": DEAD}, "dead")))
    flag = kubeconfig(tmp_path / "flag", {"sim": sim.url}, "sim")
    assert kube.resolve_source(str(flag)).origin == "--kubeconfig"
    assert await reaches(sim, str(flag))


async def test_context_picks_another_than_the_current_one(
    sim: KubeSim, home: Path, tmp_path: Path
) -> None:
    path = kubeconfig(tmp_path / "config", {"dead": DEAD, "sim": sim.url}, "dead")
    assert not await reaches(sim, str(path))
    assert await reaches(sim, str(path), context="sim")
    assert kube.resolve_source(str(path), context="sim").describe() == (
        f"kubeconfig {path} (context sim)"
    )


async def test_kubeconfig_list_is_merged_and_the_first_current_context_wins(
    sim: KubeSim, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kubectl's rule; kubernetes-asyncio alone would take the last file's current-context.
    first = kubeconfig(tmp_path / "a", {"sim": sim.url}, "sim")
    second = kubeconfig(tmp_path / "b", {"dead": DEAD}, "dead")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{first}:{second}")
    source = kube.resolve_source(None)
    assert (source.files, source.context) == ((str(first), str(second)), "sim")
    assert await reaches(sim, None)
    # ... and a context from the second file is found too.
    assert kube.resolve_source(None, context="dead").context == "dead"
    assert not await reaches(sim, None, context="dead")


def test_the_default_namespace_is_the_contexts(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kubectl's rule for a command without -n: the context's namespace (the first file naming
    the context wins), else ``default``; in a pod, the service account's namespace."""
    first = tmp_path / "a"
    first.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: team\n"
        "contexts: [{name: team, context: {cluster: c, user: u, namespace: shop}},"
        " {name: bare, context: {cluster: c, user: u}}]\n"
    )
    second = tmp_path / "b"
    second.write_text(
        "apiVersion: v1\nkind: Config\n"
        "contexts: [{name: team, context: {cluster: c, user: u, namespace: ignored}},"
        " {name: other, context: {cluster: c, user: u, namespace: cart}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", f"{first}:{second}")
    assert kube.resolve_source(None).namespace == "shop"
    assert kube.resolve_source(None, context="other").namespace == "cart"
    assert kube.resolve_source(None, context="bare").namespace == "default"
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "namespace").write_text("kongsplit\n")
    monkeypatch.setattr(kube, "SERVICE_ACCOUNT_DIR", str(account))
    assert kube.resolve_source(None).namespace == "kongsplit"


def test_in_a_pod_without_kubeconfig_uses_the_service_account(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    source = kube.resolve_source(None)
    assert source == kube.KubeSource((), None, "in-cluster")
    assert source.describe() == "the pod's service account"


# --------------------------------------------------------------------------- dead ends


async def test_no_kubeconfig_and_not_in_a_pod(home: Path) -> None:
    with pytest.raises(kube.KubeConfigError) as info:
        await kube.make_api_client(None)
    assert str(info.value) == (
        f"no kubeconfig found ({home}/.kube/config does not exist, $KUBECONFIG is unset) and "
        "not running in a pod: give --kubeconfig FILE"
    )


def test_missing_kubeconfig_file(home: Path, tmp_path: Path) -> None:
    with pytest.raises(kube.KubeConfigError) as info:
        kube.resolve_source(str(tmp_path / "nope"))
    assert str(info.value) == (
        f"kubeconfig {tmp_path / 'nope'} does not exist (given by --kubeconfig or "
        "kubernetes.kubeconfig): give the path of an existing file"
    )


@pytest.mark.parametrize(
    ("value", "says"),
    [
        pytest.param("{t}/a", "that file does not exist", id="one-file"),
        pytest.param("{t}/a:{t}/b", "none of these files exists", id="list"),
    ],
)
def test_kubeconfig_env_naming_no_existing_file(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    # ~/.kube/config exists, but kubectl would not fall back to it either.
    kubeconfig(home / ".kube" / "config", {"dead": DEAD}, "dead")
    monkeypatch.setenv("KUBECONFIG", value.format(t=tmp_path))
    with pytest.raises(kube.KubeConfigError) as info:
        kube.resolve_source(None)
    assert str(info.value) == (
        f"no kubeconfig found: $KUBECONFIG is {value.format(t=tmp_path)} and {says}: "
        "fix $KUBECONFIG or give --kubeconfig FILE"
    )


def test_unknown_context(home: Path) -> None:
    path = kubeconfig(home / ".kube" / "config", {"kind-a": DEAD, "kind-b": DEAD}, "kind-a")
    with pytest.raises(kube.KubeConfigError) as info:
        kube.resolve_source(None, context="prod")
    assert str(info.value) == (
        f"kubeconfig {path} has no context 'prod' (its contexts: kind-a, kind-b): "
        "give --context one of them"
    )


def test_no_current_context(home: Path, tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", {"kind-a": DEAD}, None)
    with pytest.raises(kube.KubeConfigError) as info:
        kube.resolve_source(str(path))
    assert str(info.value) == (
        f"kubeconfig {path} names no current-context (its contexts: kind-a): give --context NAME"
    )


def test_current_context_that_does_not_exist(home: Path, tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", {}, "gone")
    with pytest.raises(kube.KubeConfigError) as info:
        kube.resolve_source(str(path))
    assert str(info.value) == (
        f"kubeconfig {path}: its current-context 'gone' is not one of its contexts (it has no "
        "contexts): give --context NAME, or fix it with kubectl config use-context"
    )


def test_context_in_a_pod_without_kubeconfig(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    with pytest.raises(kube.KubeConfigError) as info:
        kube.resolve_source(None, context="prod")
    assert str(info.value) == (
        f"--context prod needs a kubeconfig, and there is none ({home}/.kube/config does not "
        "exist, $KUBECONFIG is unset): give --kubeconfig FILE, or leave --context out to use "
        "the pod's service account"
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        pytest.param("clusters: [\n", "not valid YAML at line 2, column 1: ", id="not-yaml"),
        pytest.param("- a\n", "expected a mapping, not a kubeconfig", id="a-list"),
    ],
)
def test_kubeconfig_that_is_no_kubeconfig(home: Path, tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "config"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(kube.KubeConfigError) as info:
        kube.resolve_source(str(path))
    assert str(info.value).startswith(f"kubeconfig {path}: {says}")
    assert "\n" not in str(info.value)


async def test_context_whose_cluster_is_missing(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(
        json.dumps(
            {
                "current-context": "c",
                "contexts": [{"name": "c", "context": {"cluster": "gone", "user": "u"}}],
                "clusters": [],
                "users": [{"name": "u", "user": {}}],
            }
        ),
        encoding="utf-8",
    )
    with pytest.raises(kube.KubeConfigError) as info:
        await kube.make_api_client(str(path))
    message = str(info.value)
    assert message.startswith(f"kubeconfig {path} (context c): cannot use it: ")
    assert "gone" in message and message.endswith(
        ": fix the kubeconfig (kubectl config view shows it)"
    )
    assert "Exception" not in message and "\n" not in message


async def test_an_exec_plugin_that_cannot_run_is_said_once(
    home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """kubernetes-asyncio logs the plugin's failure before raising it: that record is held
    back, so an operator command prints one line (the KubeConfigError), not two."""
    path = tmp_path / "config"
    path.write_text(
        json.dumps(
            {
                "current-context": "c",
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "clusters": [{"name": "c", "cluster": {"server": DEAD}}],
                "users": [
                    {
                        "name": "u",
                        "user": {
                            "exec": {
                                "apiVersion": "client.authentication.k8s.io/v1",
                                "command": str(tmp_path / "no-such-plugin"),
                            }
                        },
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    with pytest.raises(kube.KubeConfigError) as info:
        await kube.make_api_client(str(path))
    assert str(info.value).startswith(f"kubeconfig {path} (context c): cannot use it: ")
    assert "no-such-plugin" in str(info.value)
    assert [r for r in caplog.records if r.name.startswith("kubernetes_asyncio")] == []
    assert kube._LOADER_LOG.filters == []  # the hold ends with the load


async def test_in_a_pod_without_a_service_account_token(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "no-token"))
    with pytest.raises(kube.KubeConfigError) as info:
        await kube.make_api_client(None)
    assert str(info.value) == (
        "running in a pod ($KUBERNETES_SERVICE_HOST is set) but its service account cannot be "
        "used (Service token file does not exist): mount its token "
        "(automountServiceAccountToken) or give --kubeconfig FILE"
    )


async def test_a_server_url_with_credentials_and_a_token_sends_the_token(
    sim: KubeSim, home: Path, tmp_path: Path
) -> None:
    """``server: http://admin:pw@host`` and a user token: kubectl sends the token (Go uses a
    URL's userinfo only without an Authorization header); aiohttp refused both at once and
    every command died with a traceback."""
    host = sim.url.removeprefix("http://")
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://admin:hunter2@{host}"}}],
                "users": [{"name": "u", "user": {"token": "t0ken"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        ),
        encoding="utf-8",
    )
    assert await reaches(sim, str(path))  # before: ValueError from aiohttp, uncaught
