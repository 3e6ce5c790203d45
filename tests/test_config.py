"""kongsplit.config: the YAML file, ``KONGSPLIT_*`` env and flags → Settings
(docs/configuration.md)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from kongsplit.config import (
    CONFIG_ENV,
    OTHER_ENV,
    ConfigError,
    KongConfig,
    Settings,
    TLSConfig,
    env_help,
    env_names,
    keys,
    load_settings,
    markdown_reference,
    parse_duration,
    parse_listen,
    redact_url,
    section_fields,
)

ROOT = Path(__file__).resolve().parents[1]

#: Every key of the config file as docs/configuration.md lists it.
DOCUMENTED_KEYS = {
    "kong": [
        "url",
        "token",
        "tokenFile",
        "workspace",
        "nodes",
        "createUpstreams",
        "exclusiveUpstreams",
        "allowUpstreams",
        "onDelete",
        "timeoutSeconds",
        "configPollInterval",
        "maxConfigMiB",
    ],
    "kubernetes": ["kubeconfig", "context", "namespaces", "clusterDomain"],
    "reconcile": ["interval", "concurrency"],
    "leaderElection": [
        "enabled",
        "leaseName",
        "leaseNamespace",
        "leaseDurationSeconds",
        "identity",
    ],
    "server": ["listen"],
    "log": ["format", "level"],
}
#: The sub-sections: kong.tls and kong.nodesFrom.
DOCUMENTED_SUBKEYS = {
    "kong.tls": ["caFile", "certFile", "keyFile", "insecureSkipVerify"],
    "kong.nodesFrom": ["namespace", "service", "port", "scheme"],
}
SUBKEY_COUNT = sum(map(len, DOCUMENTED_SUBKEYS.values()))


def write(tmp_path: Path, text: str, name: str = "kongsplit.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def dig(settings: Settings, attr: str) -> Any:
    value: Any = settings
    for part in attr.split("."):
        value = getattr(value, part)
    return value


# --------------------------------------------------------------------------- the schema


@pytest.mark.parametrize("section", [pytest.param(s, id=s) for s in DOCUMENTED_KEYS])
def test_sections_hold_exactly_the_design_keys(section: str) -> None:
    assert section_fields(section) == DOCUMENTED_KEYS[section]


def test_env_names_follow_the_design() -> None:
    names = env_names()
    for name in [
        "KONGSPLIT_KONG_URL",
        "KONGSPLIT_KONG_TOKEN_FILE",
        "KONGSPLIT_KONG_TLS_CA_FILE",
        "KONGSPLIT_KONG_TLS_INSECURE_SKIP_VERIFY",
        "KONGSPLIT_KUBERNETES_CLUSTER_DOMAIN",
        "KONGSPLIT_LEADER_ELECTION_LEASE_DURATION_SECONDS",
        "KONGSPLIT_SERVER_LISTEN",
        "KONGSPLIT_LOG_FORMAT",
    ]:
        assert name in names
    assert len(names) == len(set(names)) == sum(map(len, DOCUMENTED_KEYS.values())) + SUBKEY_COUNT


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "kongsplit-0")
    monkeypatch.setenv("POD_NAMESPACE", "kong")
    s = load_settings(None, env={})
    assert s.kong == KongConfig()
    assert s.kong.url == "http://localhost:8001"
    assert s.kong.verify_nodes == ("http://localhost:8001",)
    assert (s.kong.create_upstreams, s.kong.exclusive_upstreams, s.kong.on_delete) == (
        True,
        False,
        "keep",
    )
    assert (s.kong.timeout_seconds, s.kong.config_poll_interval) == (10.0, 2.0)
    assert s.kubernetes.cluster_domain == "cluster.local"
    assert s.kubernetes.namespaces == ()
    assert (s.reconcile.interval, s.reconcile.concurrency) == (10.0, 16)
    assert s.leader_election.identity == "kongsplit-0"
    assert s.leader_election.lease_namespace == "kong"
    assert s.server.listen == "0.0.0.0:9102"
    assert s.server.host_port == ("0.0.0.0", 9102)
    assert (s.log.format, s.log.level) == ("json", "info")


def test_identity_defaults_to_hostname_and_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_NAME", raising=False)
    identity = load_settings(None, env={}).leader_election.identity
    assert identity.endswith(f"-{__import__('os').getpid()}")


FULL_FILE = """
kong:
  url: https://kong-admin.kong:8444/
  tokenFile: /var/run/secrets/kong/token
  workspace: team-a
  tls:
    caFile: /etc/kong/ca.pem
    certFile: /etc/kong/tls.crt
    keyFile: /etc/kong/tls.key
    insecureSkipVerify: false
  nodes: [http://kong-0:8001, http://kong-1:8001]
  createUpstreams: false
  exclusiveUpstreams: true
  onDelete: stable
  timeoutSeconds: 5
  configPollInterval: 500ms
kubernetes:
  kubeconfig: /home/me/.kube/config
  context: kind-dev
  namespaces: [shop, payments]
  clusterDomain: corp.example
reconcile:
  interval: 2m
  concurrency: 4
leaderElection:
  enabled: false
  leaseName: ks
  leaseNamespace: kong
  leaseDurationSeconds: 30s
  identity: me
server:
  listen: "[::1]:9200"
log:
  format: text
  level: debug
"""


@pytest.mark.parametrize(
    ("attr", "expected"),
    [
        pytest.param("kong.url", "https://kong-admin.kong:8444", id="url-trailing-slash-cut"),
        pytest.param("kong.token_file", "/var/run/secrets/kong/token", id="tokenFile"),
        pytest.param("kong.workspace", "team-a", id="workspace"),
        pytest.param(
            "kong.tls",
            TLSConfig("/etc/kong/ca.pem", "/etc/kong/tls.crt", "/etc/kong/tls.key", False),
            id="tls",
        ),
        pytest.param("kong.nodes", ("http://kong-0:8001", "http://kong-1:8001"), id="nodes"),
        pytest.param(
            "kong.verify_nodes", ("http://kong-0:8001", "http://kong-1:8001"), id="verify-nodes"
        ),
        pytest.param("kong.create_upstreams", False, id="createUpstreams"),
        pytest.param("kong.exclusive_upstreams", True, id="exclusiveUpstreams"),
        pytest.param("kong.on_delete", "stable", id="onDelete"),
        pytest.param("kong.timeout_seconds", 5.0, id="timeoutSeconds"),
        pytest.param("kong.config_poll_interval", 0.5, id="configPollInterval"),
        pytest.param("kubernetes.kubeconfig", "/home/me/.kube/config", id="kubeconfig"),
        pytest.param("kubernetes.context", "kind-dev", id="context"),
        pytest.param("kubernetes.namespaces", ("shop", "payments"), id="namespaces"),
        pytest.param("kubernetes.cluster_domain", "corp.example", id="clusterDomain"),
        pytest.param("reconcile.interval", 120.0, id="interval"),
        pytest.param("reconcile.concurrency", 4, id="concurrency"),
        pytest.param("leader_election.enabled", False, id="le-enabled"),
        pytest.param("leader_election.lease_name", "ks", id="leaseName"),
        pytest.param("leader_election.lease_namespace", "kong", id="leaseNamespace"),
        pytest.param("leader_election.lease_duration_seconds", 30.0, id="leaseDurationSeconds"),
        pytest.param("leader_election.identity", "me", id="identity"),
        pytest.param("server.listen", "[::1]:9200", id="listen"),
        pytest.param("server.host_port", ("::1", 9200), id="listen-ipv6-host-port"),
        pytest.param("log.format", "text", id="log-format"),
        pytest.param("log.level", "debug", id="log-level"),
    ],
)
def test_file_sets_every_key(tmp_path: Path, attr: str, expected: Any) -> None:
    settings = load_settings(write(tmp_path, FULL_FILE), env={})
    assert dig(settings, attr) == expected


@pytest.mark.parametrize(
    ("text"),
    [
        pytest.param("", id="empty-file"),
        pytest.param("# only a comment\n", id="comment-only"),
        pytest.param("kong:\nlog:\n", id="empty-sections"),
        pytest.param("kong: {tls: null}\n", id="empty-tls"),
    ],
)
def test_empty_file_or_sections_give_defaults(tmp_path: Path, text: str) -> None:
    assert load_settings(write(tmp_path, text), env={}).kong == KongConfig()


@pytest.mark.parametrize(
    ("env", "attr", "expected"),
    [
        pytest.param(
            {"KONGSPLIT_KONG_URL": "http://kong:8001"}, "kong.url", "http://kong:8001", id="url"
        ),
        pytest.param({"KONGSPLIT_KONG_TOKEN_FILE": "/t"}, "kong.token_file", "/t", id="tokenFile"),
        pytest.param({"KONGSPLIT_KONG_TOKEN": "s3cret"}, "kong.token", "s3cret", id="token"),
        pytest.param(
            {"KONGSPLIT_KONG_NODES": "http://a:8001, http://b:8001,"},
            "kong.nodes",
            ("http://a:8001", "http://b:8001"),
            id="nodes-comma-list",
        ),
        pytest.param(
            {"KONGSPLIT_KONG_CREATE_UPSTREAMS": "no"}, "kong.create_upstreams", False, id="bool-no"
        ),
        pytest.param(
            {"KONGSPLIT_KONG_EXCLUSIVE_UPSTREAMS": "1"},
            "kong.exclusive_upstreams",
            True,
            id="bool-1",
        ),
        pytest.param(
            {"KONGSPLIT_KONG_ON_DELETE": "Stable"}, "kong.on_delete", "stable", id="onDelete-case"
        ),
        pytest.param(
            {"KONGSPLIT_KONG_TLS_INSECURE_SKIP_VERIFY": "true"},
            "kong.tls.insecure_skip_verify",
            True,
            id="tls-insecure",
        ),
        pytest.param({"KONGSPLIT_KONG_TLS_CA_FILE": "/ca"}, "kong.tls.ca_file", "/ca", id="tls-ca"),
        pytest.param(
            {"KONGSPLIT_KUBERNETES_NAMESPACES": "a,b"},
            "kubernetes.namespaces",
            ("a", "b"),
            id="namespaces",
        ),
        pytest.param(
            {"KONGSPLIT_KUBERNETES_CLUSTER_DOMAIN": "k8s.lan"},
            "kubernetes.cluster_domain",
            "k8s.lan",
            id="clusterDomain",
        ),
        pytest.param(
            {"KONGSPLIT_RECONCILE_INTERVAL": "30"},
            "reconcile.interval",
            30.0,
            id="interval-plain-number",
        ),
        pytest.param(
            {"KONGSPLIT_RECONCILE_CONCURRENCY": " 8 "}, "reconcile.concurrency", 8, id="concurrency"
        ),
        pytest.param(
            {"KONGSPLIT_LEADER_ELECTION_ENABLED": "off"},
            "leader_election.enabled",
            False,
            id="le-off",
        ),
        pytest.param(
            {"KONGSPLIT_LEADER_ELECTION_LEASE_DURATION_SECONDS": "1m"},
            "leader_election.lease_duration_seconds",
            60.0,
            id="lease-duration",
        ),
        pytest.param(
            {"KONGSPLIT_SERVER_LISTEN": "127.0.0.1:9999"},
            "server.host_port",
            ("127.0.0.1", 9999),
            id="listen",
        ),
        pytest.param({"KONGSPLIT_LOG_LEVEL": "WARNING"}, "log.level", "warning", id="log-level"),
        pytest.param(
            {"KONGSPLIT_KONG_WORKSPACE": ""}, "kong.workspace", None, id="empty-optional-is-unset"
        ),
        pytest.param(
            {"PATH": "/bin", "KONGSPLIT_UPDATE_ALERTS": "1", "KONGSPLIT_DEMO_LOG_LEVEL": "debug"},
            "kong.url",
            "http://localhost:8001",
            id="other-vars-and-allowed-non-settings-ignored",
        ),
        pytest.param(
            {"KONGSPLIT_KUBERNETES_CONTEXT": "kind-dev"},
            "kubernetes.context",
            "kind-dev",
            id="context",
        ),
    ],
)
def test_env_sets_keys(env: dict[str, str], attr: str, expected: Any) -> None:
    assert dig(load_settings(None, env=env), attr) == expected


def test_config_path_from_env(tmp_path: Path) -> None:
    path = write(tmp_path, "kong: {url: 'http://from-file:8001'}\n")
    settings = load_settings(None, env={"KONGSPLIT_CONFIG": path})
    assert settings.kong.url == "http://from-file:8001"


# --------------------------------------------------------------------------- precedence


@pytest.mark.parametrize(
    ("file_value", "env_value", "flag_value", "expected"),
    [
        pytest.param("http://file:1", None, None, "http://file:1", id="file-only"),
        pytest.param("http://file:1", "http://env:2", None, "http://env:2", id="env-beats-file"),
        pytest.param(
            "http://file:1", "http://env:2", "http://flag:3", "http://flag:3", id="flag-beats-env"
        ),
        pytest.param(
            None, "http://env:2", "http://flag:3", "http://flag:3", id="flag-beats-env-no-file"
        ),
        pytest.param("http://file:1", None, "http://flag:3", "http://flag:3", id="flag-beats-file"),
        pytest.param(None, None, None, "http://localhost:8001", id="default"),
    ],
)
def test_precedence_flags_env_file(
    tmp_path: Path,
    file_value: str | None,
    env_value: str | None,
    flag_value: str | None,
    expected: str,
) -> None:
    path = write(tmp_path, f"kong: {{url: '{file_value}'}}\n") if file_value else None
    env = {"KONGSPLIT_KONG_URL": env_value} if env_value else {}
    settings = load_settings(path, env=env, flags={"kong": {"url": flag_value}})
    assert settings.kong.url == expected


def test_precedence_is_per_key(tmp_path: Path) -> None:
    path = write(tmp_path, "reconcile: {interval: 5s, concurrency: 2}\nlog: {level: debug}\n")
    settings = load_settings(
        path,
        env={"KONGSPLIT_RECONCILE_INTERVAL": "7"},
        flags={"reconcile": {"concurrency": 9}, "log": {"level": None}},
    )
    assert (settings.reconcile.interval, settings.reconcile.concurrency) == (7.0, 9)
    assert settings.log.level == "debug"  # a flag left at None does not override


def test_tls_flags_beat_env_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "kong: {tls: {caFile: /file-ca, insecureSkipVerify: true}}\n")
    settings = load_settings(
        path,
        env={"KONGSPLIT_KONG_TLS_CA_FILE": "/env-ca"},
        flags={"kong.tls": {"caFile": "/flag-ca", "insecureSkipVerify": None}},
    )
    assert settings.kong.tls == TLSConfig(ca_file="/flag-ca", insecure_skip_verify=True)


@pytest.mark.parametrize(
    ("file_text", "env", "flags", "token", "token_file"),
    [
        pytest.param(
            "kong: {token: t}\n",
            {"KONGSPLIT_KONG_TOKEN_FILE": "/env"},
            None,
            None,
            "/env",
            id="env-tokenFile-replaces-file-token",
        ),
        pytest.param(
            "kong: {tokenFile: /file}\n",
            {"KONGSPLIT_KONG_TOKEN": "t"},
            None,
            "t",
            None,
            id="env-token-replaces-file-tokenFile",
        ),
        pytest.param(
            "kong: {token: t}\n",
            {},
            {"kong": {"tokenFile": "/flag"}},
            None,
            "/flag",
            id="flag-tokenFile-replaces-file-token",
        ),
        pytest.param(
            "kong: {tokenFile: /file}\n",
            {},
            {"kong": {"tokenFile": None}},
            None,
            "/file",
            id="unset-flag-keeps-file",
        ),
    ],
)
def test_token_and_token_file_follow_precedence(
    tmp_path: Path,
    file_text: str,
    env: dict[str, str],
    flags: dict[str, dict[str, Any]] | None,
    token: str | None,
    token_file: str | None,
) -> None:
    settings = load_settings(write(tmp_path, file_text), env=env, flags=flags)
    assert (settings.kong.token, settings.kong.token_file) == (token, token_file)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "words"),
    [
        pytest.param(
            "kongg: {}\n", ["unknown key 'kongg'", "known: kong, kubernetes"], id="unknown-section"
        ),
        pytest.param(
            "kong: {urll: x}\n", ["unknown key 'kong.urll'", "url", "tls"], id="unknown-kong-key"
        ),
        pytest.param(
            "reconcile: {intervall: 5}\n",
            ["unknown key 'reconcile.intervall'"],
            id="unknown-reconcile-key",
        ),
        pytest.param(
            "kong: {tls: {caFil: x}}\n",
            ["unknown key 'kong.tls.caFil'", "caFile"],
            id="unknown-tls-key",
        ),
        pytest.param(
            "leader_election: {enabled: true}\n",
            ["unknown key 'leader_election'"],
            id="snake-case-section",
        ),
        pytest.param(
            "kong: {token_file: /t}\n", ["unknown key 'kong.token_file'"], id="snake-case-key"
        ),
        pytest.param("kong: [url]\n", ["kong: expected a mapping"], id="section-list"),
        pytest.param("kong: {tls: yes}\n", ["kong.tls: expected a mapping"], id="tls-scalar"),
        pytest.param("- kong\n", ["expected a mapping at the top, got list"], id="top-list"),
        pytest.param("kong: {url: [\n", ["not valid YAML"], id="not-yaml"),
        pytest.param(
            "kong: {url: ftp://x}\n", ["kong.url", "http:// or https://"], id="url-scheme"
        ),
        pytest.param("kong: {url: 8001}\n", ["kong.url", "'8001'"], id="url-number"),
        pytest.param("kong: {nodes: [http://a, b]}\n", ["kong.nodes", "'b'"], id="nodes-bad"),
        pytest.param(
            "kong: {onDelete: delete}\n",
            ["kong.onDelete", "keep, stable", "'delete'"],
            id="onDelete",
        ),
        pytest.param(
            "kong: {createUpstreams: maybe}\n", ["kong.createUpstreams", "'maybe'"], id="bool"
        ),
        pytest.param(
            "kong: {timeoutSeconds: ten}\n", ["kong.timeoutSeconds", "'ten'"], id="duration-word"
        ),
        pytest.param(
            "reconcile: {interval: 0}\n", ["reconcile.interval", "positive"], id="duration-zero"
        ),
        pytest.param(
            "reconcile: {interval: .nan}\n", ["reconcile.interval", "finite"], id="duration-nan"
        ),
        pytest.param(
            "reconcile: {interval: .inf}\n", ["reconcile.interval", "finite"], id="duration-inf"
        ),
        pytest.param(
            "reconcile: {concurrency: 0}\n",
            ["reconcile.concurrency", "positive"],
            id="concurrency-zero",
        ),
        pytest.param(
            "reconcile: {concurrency: 1.5}\n",
            ["reconcile.concurrency", "1.5"],
            id="concurrency-fraction",
        ),
        pytest.param(
            "reconcile: {concurrency: true}\n",
            ["reconcile.concurrency", "True"],
            id="concurrency-bool",
        ),
        pytest.param(
            "kubernetes: {namespaces: {a: 1}}\n",
            ["kubernetes.namespaces", "list"],
            id="namespaces-map",
        ),
        pytest.param(
            "kubernetes: {clusterDomain: ''}\n",
            ["kubernetes.clusterDomain", "non-empty"],
            id="domain-empty",
        ),
        pytest.param(
            "server: {listen: 9102}\n", ["server.listen", "HOST:PORT"], id="listen-no-host"
        ),
        pytest.param(
            "server: {listen: 'h:70000'}\n", ["server.listen", "'h:70000'"], id="listen-port-range"
        ),
        pytest.param("log: {format: xml}\n", ["log.format", "json, text"], id="log-format"),
        pytest.param(
            "leaderElection: {leaseDurationSeconds: 1}\n",
            ["leaderElection.leaseDurationSeconds", "at least 2"],
            id="lease-too-short",
        ),
        pytest.param(
            "kong: {token: t, tokenFile: /t}\n",
            ["kong.token", "kong.tokenFile"],
            id="token-and-tokenFile-same-layer",
        ),
        pytest.param(
            "kong: {tls: {certFile: /c}}\n",
            ["certFile", "keyFile", "together"],
            id="cert-without-key",
        ),
    ],
)
def test_file_errors_name_file_and_key(tmp_path: Path, text: str, words: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    for word in words:
        assert word in message
    if "together" not in message and "choose one" not in message and "at least" not in message:
        assert message.startswith(f"config file {path}: ")


@pytest.mark.parametrize(
    ("env", "words"),
    [
        pytest.param(
            {"KONGSPLIT_KONG_URL": "kong:8001"},
            ["environment KONGSPLIT_KONG_URL", "'kong:8001'"],
            id="url",
        ),
        pytest.param(
            {"KONGSPLIT_KONG_URL": ""},
            ["environment KONGSPLIT_KONG_URL", "non-empty"],
            id="url-empty",
        ),
        pytest.param(
            {"KONGSPLIT_RECONCILE_INTERVAL": "10x"},
            ["environment KONGSPLIT_RECONCILE_INTERVAL", "'10x'"],
            id="duration",
        ),
        pytest.param(
            {"KONGSPLIT_RECONCILE_CONCURRENCY": "lots"},
            ["environment KONGSPLIT_RECONCILE_CONCURRENCY", "'lots'"],
            id="int",
        ),
        pytest.param(
            {"KONGSPLIT_KONG_TLS_INSECURE_SKIP_VERIFY": "sure"},
            ["environment KONGSPLIT_KONG_TLS_INSECURE_SKIP_VERIFY", "'sure'"],
            id="tls-bool",
        ),
        pytest.param(
            {"KONGSPLIT_LOG_FORMAT": "yaml"}, ["environment KONGSPLIT_LOG_FORMAT"], id="log-format"
        ),
        # Kong's workspace rules (kong/db/schema/typedefs.lua validate_utf8_name), and no dot
        # segment: /../upstreams is the default workspace's /upstreams once a URL is normalised.
        pytest.param(
            {"KONGSPLIT_KONG_WORKSPACE": ".."},
            ["environment KONGSPLIT_KONG_WORKSPACE", "path segment", "'..'"],
            id="workspace-dot-dot",
        ),
        pytest.param(
            {"KONGSPLIT_KONG_WORKSPACE": "team/a"},
            ["environment KONGSPLIT_KONG_WORKSPACE", "not a valid Kong workspace name"],
            id="workspace-slash",
        ),
    ],
)
def test_env_errors_name_the_variable(env: dict[str, str], words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env=env)
    for word in words:
        assert word in str(info.value)


def test_flag_errors_name_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"^flag --kong-url: .*'not-a-url'"):
        load_settings(None, env={}, flags={"kong": {"url": "not-a-url"}})


@pytest.mark.parametrize(
    ("make_path", "words"),
    [
        pytest.param(lambda p: str(p / "missing.yaml"), "cannot read it", id="missing"),
        pytest.param(lambda p: str(p), "cannot read it", id="directory"),
    ],
)
def test_unreadable_file(tmp_path: Path, make_path: Any, words: str) -> None:
    path = make_path(tmp_path)
    with pytest.raises(ConfigError, match=rf"^config file {path}: {words}"):
        load_settings(path, env={})


# --------------------------------------------------------------------------- value parsers


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param(10, 10.0, id="int"),
        pytest.param(2.5, 2.5, id="float"),
        pytest.param("10", 10.0, id="string-number"),
        pytest.param("10s", 10.0, id="seconds"),
        pytest.param(" 10 s ", 10.0, id="spaces"),
        pytest.param("2m", 120.0, id="minutes"),
        pytest.param("1.5m", 90.0, id="fractional-minutes"),
        pytest.param("500ms", 0.5, id="milliseconds"),
        pytest.param("1h", 3600.0, id="hours"),
    ],
)
def test_parse_duration(value: Any, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(0, id="zero"),
        pytest.param("0s", id="zero-string"),
        pytest.param(-1, id="negative"),
        pytest.param("-5s", id="negative-string"),
        pytest.param(True, id="bool"),
        pytest.param("ten", id="word"),
        pytest.param("10x", id="unknown-unit"),
        pytest.param("10S", id="unit-case"),
        pytest.param("1d", id="days"),
        pytest.param("", id="empty"),
        pytest.param(None, id="null"),
        pytest.param([10], id="list"),
        pytest.param(math.nan, id="nan"),
        pytest.param(math.inf, id="inf"),
        pytest.param(10**400, id="int-too-big-for-float"),
        pytest.param("9" * 400 + "h", id="string-overflowing-to-inf"),
    ],
)
def test_parse_duration_refuses(value: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("0.0.0.0:9102", ("0.0.0.0", 9102), id="ipv4"),
        pytest.param("localhost:80", ("localhost", 80), id="name"),
        pytest.param("[::]:9102", ("::", 9102), id="ipv6"),
        pytest.param(" host:1 ", ("host", 1), id="spaces"),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("9102", id="no-host"),
        pytest.param("host:", id="no-port"),
        pytest.param("::1:9102", id="ipv6-unbracketed"),
        pytest.param("host:65536", id="port-range"),
        pytest.param("host:http", id="port-name"),
    ],
)
def test_parse_listen_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^server\.listen: expected HOST:PORT"):
        parse_listen(text, "server.listen")


def test_settings_are_frozen() -> None:
    settings = load_settings(None, env={})
    with pytest.raises(AttributeError):
        settings.kong.url = "http://other"  # type: ignore[misc]


def test_token_not_in_repr() -> None:
    settings = load_settings(None, env={"KONGSPLIT_KONG_TOKEN": "s3cret-token"})
    assert "s3cret-token" not in repr(settings)


def test_empty_pod_namespace_falls_back_to_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "")
    assert load_settings(None, env={}).leader_election.lease_namespace == "default"


# --------------------------------------------------------------------------- where values came from


def test_origins_name_the_layer_that_set_each_key(tmp_path: Path) -> None:
    path = write(tmp_path, "kong: {url: 'http://file:1', workspace: w}\n")
    settings = load_settings(
        path,
        env={"KONGSPLIT_KONG_URL": "http://env:2", "KONGSPLIT_LOG_LEVEL": "debug"},
        flags={"server": {"listen": "127.0.0.1:1"}, "log": {"format": None}},
    )
    assert dict(settings.origins) == {
        "kong.url": "environment KONGSPLIT_KONG_URL",
        "kong.workspace": f"config file {path}: kong.workspace",
        "log.level": "environment KONGSPLIT_LOG_LEVEL",
        "server.listen": "flag --listen",
    }
    assert settings.is_set("kong.workspace")
    assert not settings.is_set("leaderElection.leaseNamespace")
    assert not load_settings(None, env={}).origins


def test_token_replaced_by_token_file_leaves_no_origin(tmp_path: Path) -> None:
    path = write(tmp_path, "kong: {token: t}\n")
    settings = load_settings(path, env={"KONGSPLIT_KONG_TOKEN_FILE": "/t"})
    assert settings.is_set("kong.tokenFile") and not settings.is_set("kong.token")


# --------------------------------------------------------------------------- unknown names


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param(
            "KONGSPLIT_KONG_TOKENFILE",
            "environment KONGSPLIT_KONG_TOKENFILE is not a kongsplit setting; "
            "did you mean KONGSPLIT_KONG_TOKEN_FILE?",
            id="typo",
        ),
        pytest.param(
            "KONGSPLIT_KUBECONFIG",
            "environment KONGSPLIT_KUBECONFIG is not a kongsplit setting; "
            "did you mean KONGSPLIT_KUBERNETES_KUBECONFIG?",
            id="section-left-out",
        ),
        pytest.param(
            "KONGSPLIT_LISTEN",
            "environment KONGSPLIT_LISTEN is not a kongsplit setting; "
            "did you mean KONGSPLIT_SERVER_LISTEN?",
            id="section-left-out-2",
        ),
        pytest.param(
            "kongsplit_kong_url",
            "environment kongsplit_kong_url is not a kongsplit setting; "
            "did you mean KONGSPLIT_KONG_URL?",
            id="lower-case",
        ),
        pytest.param(
            "KONGSPLIT_LEADER_ELECTION_NAMESPACE",
            "environment KONGSPLIT_LEADER_ELECTION_NAMESPACE is not a kongsplit setting; "
            "did you mean KONGSPLIT_LEADER_ELECTION_LEASE_NAMESPACE?",
            id="word-left-out",
        ),
        pytest.param(
            "KONGSPLIT_BOGUS",
            "environment KONGSPLIT_BOGUS is not a kongsplit setting; "
            "`kongsplit run --help` lists every KONGSPLIT_* variable",
            id="nothing-close",
        ),
    ],
)
def test_unknown_env_variable_is_an_error_naming_the_closest(name: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={"KONGSPLIT_KONG_URL": "http://kong:8001", name: "x"})
    assert str(info.value) == message


@pytest.mark.parametrize(
    "name",
    [
        "KONGSPLIT_SERVICE_HOST",
        "KONGSPLIT_SERVICE_PORT",
        "KONGSPLIT_SERVICE_PORT_HTTP_METRICS",
        "KONGSPLIT_PORT",
        "KONGSPLIT_PORT_9102_TCP",
        "KONGSPLIT_PORT_9102_TCP_PROTO",
        "KONGSPLIT_PORT_9102_TCP_PORT",
        "KONGSPLIT_PORT_9102_TCP_ADDR",
        "KONGSPLIT_CANARY_SERVICE_HOST",
        "KONGSPLIT_CANARY_PORT_9102_UDP_ADDR",
    ],
)
def test_kubernetes_service_links_are_not_refused(name: str) -> None:
    """A Service named kongsplit (the chart's) puts these into every pod of its namespace."""
    assert load_settings(None, env={name: "10.96.0.42"}).kong == KongConfig()


@pytest.mark.parametrize(
    "name", ["KONGSPLIT_SERVICE_HOSTNAME", "KONGSPLIT_PORT_HTTP", "KONGSPLIT_SERVICE"]
)
def test_names_only_like_service_links_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=f"^environment {name} is not a kongsplit setting"):
        load_settings(None, env={name: "x"})


def test_every_known_and_allowed_variable_is_accepted() -> None:
    """Each variable set to its documented default (or empty where that means unset) loads,
    beside the config path and the allowed non-settings: none is refused as unknown."""
    env = {k.env: k.default if k.default_is_value else "" for k in keys()}
    env |= {"KONGSPLIT_LEADER_ELECTION_LEASE_NAMESPACE": "ns"}
    env |= {"KONGSPLIT_LEADER_ELECTION_IDENTITY": "me", CONFIG_ENV: ""}
    env |= dict.fromkeys(OTHER_ENV, "1")
    settings = load_settings(None, env=env)
    assert (settings.kong, settings.kubernetes) == (Settings().kong, Settings().kubernetes)
    assert (settings.reconcile, settings.server, settings.log) == (
        Settings().reconcile,
        Settings().server,
        Settings().log,
    )
    assert settings.leader_election.lease_namespace == "ns"


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        pytest.param("kong: {urll: x}\n", "'kong.url'", id="typo"),
        pytest.param("kong: {token_file: /t}\n", "'kong.tokenFile'", id="snake-case-key"),
        pytest.param("leader_election: {enabled: true}\n", "'leaderElection'", id="snake-section"),
        pytest.param("kongg: {}\n", "'kong'", id="section-typo"),
        pytest.param("url: http://kong:8001\n", "'kong.url'", id="key-without-its-section"),
        pytest.param("kong: {namespaces: [a]}\n", "'kubernetes.namespaces'", id="wrong-section"),
        pytest.param("kong: {tls: {caFil: x}}\n", "'kong.tls.caFile'", id="tls-typo"),
    ],
)
def test_unknown_file_key_suggests_the_closest(tmp_path: Path, text: str, suggestion: str) -> None:
    with pytest.raises(ConfigError, match=f"; did you mean {suggestion}\\? \\(known: "):
        load_settings(write(tmp_path, text), env={})


def test_unknown_file_key_with_nothing_close(tmp_path: Path) -> None:
    path = write(tmp_path, "zzzzzz: 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert str(info.value) == (
        f"config file {path}: unknown key 'zzzzzz' "
        "(known: kong, kubernetes, reconcile, leaderElection, server, log)"
    )


def test_yaml_errors_are_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "kong:\n  url: [\n")
    with pytest.raises(ConfigError, match="not valid YAML at line 3, column 1: ") as info:
        load_settings(path, env={})
    assert "\n" not in str(info.value)
    assert "<unicode string>" not in str(info.value)  # PyYAML's own stream name, not the user's


# --------------------------------------------------------------------------- generated docs


def test_every_key_is_documented_with_type_default_and_meaning() -> None:
    infos = keys()
    assert sorted(k.env for k in infos) == sorted(env_names())
    assert len(infos) == sum(map(len, DOCUMENTED_KEYS.values())) + SUBKEY_COUNT
    for k in infos:
        assert k.type and k.default and k.help, k
        assert "\n" not in k.help
    assert {k.name: k.default for k in infos}["server.listen"] == "0.0.0.0:9102"
    assert {k.name: k.flag for k in infos if k.flag} == {
        "kong.url": "--kong-url",
        "kong.tokenFile": "--token-file",
        "kubernetes.kubeconfig": "--kubeconfig",
        "kubernetes.context": "--context",
        "kubernetes.namespaces": "--namespace",
        "server.listen": "--listen",
        "log.format": "--log-format",
    }


def test_docs_configuration_md_is_current() -> None:
    path = ROOT / "docs" / "configuration.md"
    assert path.read_text(encoding="utf-8") == markdown_reference(), (
        "docs/configuration.md is not what the schema in kongsplit/config.py says: regenerate "
        "it with `python -m kongsplit.config > docs/configuration.md`"
    )


def test_docs_and_help_name_every_variable() -> None:
    doc, help_text = markdown_reference(), env_help()
    for name in [*env_names(), CONFIG_ENV, *OTHER_ENV]:
        assert f"`{name}`" in doc
        assert name in help_text
    for section, names in DOCUMENTED_KEYS.items():
        for key in names:
            assert f"| `{section}.{key}` |" in doc
    assert "`0.0.0.0:9102` listens on all interfaces" in doc
    assert "`--listen 127.0.0.1:9102`" in doc


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param("https://admin:s3cret@kong:8444", "https://***@kong:8444", id="userinfo"),
        pytest.param("http://kong:8001/", "http://kong:8001/", id="none"),
        pytest.param("https://admin:s3c@ret@kong:8444", "https://***@kong:8444", id="at-in-pw"),
        pytest.param("https://admin:s3c/ret@kong:8444", "https://***@kong:8444", id="slash-in-pw"),
        pytest.param("https://admin:s3c:r/e?t#@kong", "https://***@kong", id="every-delimiter"),
        pytest.param("admin:s3cret@kong:8001", "***@kong:8001", id="no-scheme"),
        pytest.param("https://s3cret@kong", "https://***@kong", id="user-only"),
    ],
)
def test_urls_are_redacted_for_logs(url: str, shown: str) -> None:
    """Userinfo goes entirely, however it is written (an '@' or '/' in a password used to
    leave part of it behind: https://***@ret@kong:8444, or all of it)."""
    assert redact_url(url) == shown
    assert "s3c" not in redact_url(url)


@pytest.mark.parametrize(
    ("env", "where"),
    [
        pytest.param(
            {"KONGSPLIT_KONG_TOKEN": "s3c ret"}, "environment KONGSPLIT_KONG_TOKEN", id="space"
        ),
        pytest.param(
            {"KONGSPLIT_KONG_TOKEN": "s3c\nret\n"}, "environment KONGSPLIT_KONG_TOKEN", id="newline"
        ),
    ],
)
def test_a_token_value_with_whitespace_inside_is_refused(env: dict[str, str], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env=env)
    message = str(info.value)
    assert message.startswith(f"{where}: the Kong admin token: the token has ")
    assert "write the token alone, on one line" in message
    assert "s3c" not in message and "\n" not in message


def test_a_token_value_loses_the_newline_around_it() -> None:
    assert load_settings(None, env={"KONGSPLIT_KONG_TOKEN": "s3cret\n"}).kong.token == "s3cret"


def test_a_bad_url_error_shows_no_credentials() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={"KONGSPLIT_KONG_URL": "admin:s3cret@kong:8001"})
    assert "s3cret" not in str(info.value) and "'***@kong:8001'" in str(info.value)
