"""Settings: the config file (docs/configuration.md), ``KONGSPLIT_*`` env vars and CLI flags.

One schema describes every key once (its YAML name, env name, type, check, default, flag and
one-line meaning), so the file, the environment, the flags, ``kongsplit run --help`` and
docs/configuration.md (generated: ``python -m kongsplit.config > docs/configuration.md``) cannot
drift apart. Precedence: flags > env > file > defaults. Every error names where the bad value
came from (file and key, env var, or flag) and what was wrong; an unknown key or ``KONGSPLIT_*``
variable names the closest known one.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import os
import re
import socket
import textwrap
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from kongsplit.kong.names import workspace_name_problem


class ConfigError(ValueError):
    """A configuration value is missing, malformed or out of range; the message names it."""


@dataclass(frozen=True)
class TLSConfig:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class AllowedUpstreams:
    """Upstreams kongsplit did not create that Rollouts of ``namespace`` may drive (consent
    given in config, beside the ``managed-by-kongsplit`` tag on the upstream itself)."""

    namespace: str  # "*" for every namespace
    upstreams: tuple[str, ...]  # glob patterns of upstream names

    def allows(self, namespace: str, upstream: str) -> bool:
        return (self.namespace in ("*", namespace)) and any(
            fnmatch.fnmatchcase(upstream, pattern) for pattern in self.upstreams
        )


@dataclass(frozen=True)
class NodesFromConfig:
    """Kong nodes to verify on, discovered from a Service's EndpointSlices (hybrid data planes'
    Status API). Off while ``service`` is unset."""

    namespace: str | None = None  # unset: the namespace kongsplit runs in
    service: str | None = None
    port: str = "8100"  # a port number, or the name of the Service's port
    scheme: str = "http"


@dataclass(frozen=True)
class KongConfig:
    url: str = "http://localhost:8001"
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None
    workspace: str | None = None
    tls: TLSConfig = field(default_factory=TLSConfig)
    nodes: tuple[str, ...] = ()
    nodes_from: NodesFromConfig = field(default_factory=NodesFromConfig)
    create_upstreams: bool = True
    exclusive_upstreams: bool = False
    allow_upstreams: tuple[AllowedUpstreams, ...] = ()
    on_delete: str = "keep"
    timeout_seconds: float = 10.0
    config_poll_interval: float = 2.0
    max_config_mib: int = 64

    @property
    def verify_nodes(self) -> tuple[str, ...]:
        """Kong nodes whose ``/health`` proves a weight is served (the write URL when unset)."""
        return self.nodes or (self.url,)


@dataclass(frozen=True)
class KubernetesConfig:
    kubeconfig: str | None = None
    context: str | None = None
    namespaces: tuple[str, ...] = ()
    cluster_domain: str = "cluster.local"


@dataclass(frozen=True)
class ReconcileConfig:
    interval: float = 10.0
    concurrency: int = 16


def _default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def _default_lease_namespace() -> str:
    return os.environ.get("POD_NAMESPACE") or "default"


@dataclass(frozen=True)
class LeaderElectionConfig:
    enabled: bool = True
    lease_name: str = "kongsplit"
    lease_namespace: str = field(default_factory=_default_lease_namespace)
    lease_duration_seconds: float = 15.0
    identity: str = field(default_factory=_default_identity)


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "0.0.0.0:9102"

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_listen(self.listen, "server.listen")


@dataclass(frozen=True)
class LogConfig:
    format: str = "json"
    level: str = "info"


@dataclass(frozen=True)
class Settings:
    kong: KongConfig = field(default_factory=KongConfig)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    reconcile: ReconcileConfig = field(default_factory=ReconcileConfig)
    leader_election: LeaderElectionConfig = field(default_factory=LeaderElectionConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    log: LogConfig = field(default_factory=LogConfig)
    #: Where each key set by the file, the environment or a flag came from (``"kong.url"`` →
    #: ``"environment KONGSPLIT_KONG_URL"``); keys left at their defaults are absent.
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def is_set(self, key: str) -> bool:
        """Whether ``key`` (``"leaderElection.leaseNamespace"``) was set, not defaulted."""
        return key in self.origins


# --- value parsers: each takes the raw value and returns the typed one or raises ValueError ---

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string with a unit: ``10``, ``"10s"``, ``"2m"``, ``"500ms"``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 10, '10s' or '2m', got a boolean")
    try:
        if isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
            seconds = float(m.group(1)) * _UNITS[m.group(2)]
        else:
            raise ValueError(f"expected a duration such as 10, '10s' or '2m', got {value!r}")
    except OverflowError:
        seconds = math.inf  # an integer too large for a float: refused just below
    # YAML reads ".nan" and ".inf" as floats; neither is a duration a timer can wait.
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a duration must be a positive, finite number of seconds, got {value!r}")
    return seconds


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _parse_str(value: Any) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected a non-empty string, got {value!r}")


def _parse_opt_str(value: Any) -> str | None:
    return None if value is None or value == "" else _parse_str(value)


#: The fix every token error names (the token itself is never shown).
TOKEN_FIX = (
    "write the token alone, on one line (printf '%s' \"$TOKEN\" > FILE, or kubectl create "
    'secret generic NAME --from-literal=token="$TOKEN")'
)


def token_from_text(text: str, where: str) -> str | None:
    """The Kong admin token in ``text`` (a token file's content, or the ``kong.token`` value).

    Whitespace around it is dropped (the newline an editor or ``echo`` leaves); whitespace or
    any character that is not printable ASCII *inside* it would go to Kong as part of the header
    (or break it), so it is an error naming ``where`` and the fix, never the token. None when
    ``text`` holds nothing.
    """
    token = text.strip()
    if not token:
        return None
    for index, char in enumerate(token):
        if "!" <= char <= "~":
            continue
        if char in "\r\n":
            what = "a line break"
        elif char.isspace():
            what = "a space" if char == " " else "whitespace"
        elif char.isprintable():
            what = "a character that is not ASCII"
        else:
            what = "a control character"
        line = token.count("\n", 0, index) + 1
        raise ValueError(
            f"{where}: the token has {what} inside it (line {line}, character {index + 1} of "
            f"{len(token)}); {TOKEN_FIX}"
        )
    return token


def _parse_token(value: Any) -> str | None:
    text = _parse_opt_str(value)
    return None if text is None else token_from_text(text, "the Kong admin token")


def _parse_workspace(value: Any) -> str | None:
    """A Kong workspace name as Kong checks it (``kong.names``), or None for unset."""
    text = _parse_opt_str(value)
    if text is None:
        return None
    problem = workspace_name_problem(text)
    if problem is not None:
        shown = repr(text) if len(text) <= 64 else f"{text[:64]!r}..."
        raise ValueError(f"not a valid Kong workspace name: {problem}, got {shown}")
    return text


def _parse_str_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list | tuple):
        items = [_parse_str(v) for v in value]
    else:
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(v for v in items if v)


def _parse_port(value: Any) -> str:
    """A port number (1..65535) or a port name (a DNS label), kept as text."""
    text = _parse_str(value).strip()
    if text.isascii() and text.isdigit():
        if not 1 <= int(text) <= 65535:
            raise ValueError(f"expected a port number 1..65535 or a port name, got {value!r}")
        return str(int(text))
    if not re.match(r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$", text):
        raise ValueError(f"expected a port number 1..65535 or a port name, got {value!r}")
    return text


def _parse_allow_upstreams(value: Any) -> tuple[AllowedUpstreams, ...]:
    """``[{namespace, upstreams: [glob]}]``; in the environment the same as JSON or YAML."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else []
        except yaml.YAMLError:
            raise ValueError("expected a list of {namespace, upstreams} (JSON or YAML)") from None
    if not isinstance(value, list):
        raise ValueError(f"expected a list of {{namespace, upstreams}}, got {value!r}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) - {"namespace", "upstreams"}:
            raise ValueError(f"item {i}: expected {{namespace, upstreams: [glob]}}, got {item!r}")
        namespace = item.get("namespace")
        patterns = item.get("upstreams")
        if not isinstance(namespace, str) or not namespace:
            raise ValueError(f"item {i}: namespace must be a namespace name or '*'")
        if not isinstance(patterns, list) or not patterns:
            raise ValueError(f"item {i}: upstreams must be a list of upstream name patterns")
        if not all(isinstance(p, str) and p for p in patterns):
            raise ValueError(f"item {i}: upstreams must be a list of upstream name patterns")
        out.append(AllowedUpstreams(namespace, tuple(patterns)))
    return tuple(out)


def _parse_positive_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a positive integer, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a positive integer, got {value!r}") from None
    if number != value and not isinstance(value, str):
        raise ValueError(f"expected a positive integer, got {value!r}")
    if number < 1:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return number


def _parse_url(value: Any) -> str:
    text = _parse_str(value)
    if not re.match(r"^https?://[^/\s]+", text):
        raise ValueError(f"expected an http:// or https:// URL, got {redact_url(text)!r}")
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 - raises on a port that is no number or out of range
    except ValueError as e:
        raise ValueError(f"not a valid URL ({e}): {redact_url(text)!r}") from None
    if not parts.hostname:
        raise ValueError(f"expected a host in the URL, got {redact_url(text)!r}")
    return text.rstrip("/")


def _parse_url_list(value: Any) -> tuple[str, ...]:
    return tuple(_parse_url(v) for v in _parse_str_list(value))


def redact_url(url: str) -> str:
    """``https://user:secret@kong:8444`` → ``https://***@kong:8444``: URLs are logged and served.

    Everything up to the *last* ``@`` goes, so a password holding ``@``, ``/`` or ``:`` written
    unencoded (``https://u:p@ss/w@kong``) leaves nothing behind; a URL whose path holds an
    ``@`` loses more than its userinfo, never less. A value without a scheme (a flag given as
    ``user:pw@kong:8001``) is redacted the same way.
    """
    scheme = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", url)
    prefix = scheme.group(0) if scheme else ""
    rest = url[len(prefix) :]
    at = rest.rfind("@")
    return url if at == -1 else f"{prefix}***@{rest[at + 1 :]}"


def parse_listen(value: str, where: str = "listen") -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9102`` for IPv6) → (host, port)."""
    m = re.match(r"^(\[[0-9a-fA-F:.]+\]|[^:\[\]]+):(\d{1,5})$", value.strip())
    if not m or not 0 <= int(m.group(2)) <= 65535:
        raise ConfigError(f"{where}: expected HOST:PORT, got {value!r}")
    return m.group(1).strip("[]"), int(m.group(2))


def _parse_listen(value: Any) -> str:
    text = _parse_str(value)
    try:
        parse_listen(text)
    except ConfigError:
        raise ValueError(f"expected HOST:PORT, got {text!r}") from None
    return text


# --- the schema: one entry per key; the file, env names, flags, help and docs derive from it ---

_Parser = Callable[[Any], Any]


class _OneOf:
    """A parser accepting one of a few words (case-insensitive); the docs list them."""

    def __init__(self, *choices: str) -> None:
        self.choices = choices

    def __call__(self, value: Any) -> str:
        text = _parse_str(value).lower()
        if text not in self.choices:
            raise ValueError(f"expected one of {', '.join(self.choices)}, got {value!r}")
        return text


#: How each parser's values are described in `kongsplit run --help` and docs/configuration.md.
_KINDS: dict[_Parser, str] = {
    _parse_url: "URL",
    _parse_url_list: "URL list",
    _parse_str: "string",
    _parse_opt_str: "string",
    _parse_workspace: "string",
    _parse_token: "string",
    _parse_str_list: "string list",
    _parse_bool: "bool",
    parse_duration: "duration",
    _parse_positive_int: "positive integer",
    _parse_listen: "HOST:PORT",
    _parse_port: "port number or name",
    _parse_allow_upstreams: "list of {namespace, upstreams: [glob]}",
}
#: What the kinds accept, said once.
KIND_NOTES = (
    "duration: seconds as a number, or with a unit: 500ms, 10s, 2m, 1h",
    "bool: true/false, yes/no, on/off, 1/0",
    "lists: a YAML list in the file, comma-separated in the environment, the flag repeated",
)


@dataclass(frozen=True)
class Key:
    """One config key: its dataclass field, parser and the text every doc of it shows."""

    attr: str
    parse: _Parser
    help: str
    kind: str = ""  # shown type; else derived from the parser
    default: str = ""  # shown default; else derived from the dataclass default
    flag: str = ""  # the `kongsplit run` flag that sets it, if any

    @property
    def type_text(self) -> str:
        if self.kind:
            return self.kind
        if isinstance(self.parse, _OneOf):
            return "one of " + ", ".join(self.parse.choices)
        return _KINDS[self.parse]


_PATH = "file path"

# YAML section → (Settings field, {yaml key: Key}). Env names derive from it; kong.tls is below.
_SECTIONS: dict[str, tuple[str, dict[str, Key]]] = {
    "kong": (
        "kong",
        {
            "url": Key(
                "url", _parse_url, "Kong Admin API URL kongsplit writes through", flag="--kong-url"
            ),
            "token": Key(
                "token",
                _parse_token,
                "Kong Admin API token (Kong-Admin-Token, Enterprise RBAC); prefer tokenFile",
            ),
            "tokenFile": Key(
                "token_file",
                _parse_opt_str,
                "file holding the Admin API token; re-read when it changes, never logged",
                kind=_PATH,
                flag="--token-file",
            ),
            "workspace": Key(
                "workspace",
                _parse_workspace,
                "Kong Enterprise workspace of the upstreams (unset: the default workspace)",
            ),
            "nodes": Key(
                "nodes",
                _parse_url_list,
                "Admin API URL of every Kong node whose /health proves a weight is served "
                "(/verify)",
                default="kong.url alone",
            ),
            "createUpstreams": Key(
                "create_upstreams",
                _parse_bool,
                "create a missing upstream (tagged) instead of reporting it",
            ),
            "exclusiveUpstreams": Key(
                "exclusive_upstreams",
                _parse_bool,
                "zero the weight of targets kongsplit did not create in the upstreams it manages",
            ),
            "allowUpstreams": Key(
                "allow_upstreams",
                _parse_allow_upstreams,
                "upstreams kongsplit did not create that a namespace's Rollouts may drive "
                "(besides those tagged managed-by-kongsplit); namespace '*' for all",
                default="none",
            ),
            "onDelete": Key(
                "on_delete",
                _OneOf("keep", "stable"),
                "when a Rollout is deleted or un-annotated: keep Kong as it is, or move all "
                "weight back to stable",
            ),
            "timeoutSeconds": Key(
                "timeout_seconds", parse_duration, "timeout of one Admin API request"
            ),
            "configPollInterval": Key(
                "config_poll_interval",
                parse_duration,
                "DB-less Kong: how often /status is polled for a foreign config write or a restart",
            ),
            "maxConfigMiB": Key(
                "max_config_mib",
                _parse_positive_int,
                "DB-less Kong: the largest GET /config answer read, in MiB (parsed, a config "
                "takes about 10 times its size in memory); every other answer is capped at 8 MiB",
            ),
        },
    ),
    "kubernetes": (
        "kubernetes",
        {
            "kubeconfig": Key(
                "kubeconfig",
                _parse_opt_str,
                "kubeconfig file of the cluster whose Rollouts are watched",
                kind=_PATH,
                default="$KUBECONFIG, else ~/.kube/config, else the pod's service account",
                flag="--kubeconfig",
            ),
            "context": Key(
                "context",
                _parse_opt_str,
                "kubeconfig context to use",
                default="the kubeconfig's current-context",
                flag="--context",
            ),
            "namespaces": Key(
                "namespaces",
                _parse_str_list,
                "namespaces whose Rollouts are watched",
                default="all namespaces",
                flag="--namespace",
            ),
            "clusterDomain": Key(
                "cluster_domain",
                _parse_str,
                "cluster DNS domain, for kongsplit.io/target-mode: dns targets",
            ),
        },
    ),
    "reconcile": (
        "reconcile",
        {
            "interval": Key(
                "interval", parse_duration, "drift sweep period: Kong is re-read this often"
            ),
            "concurrency": Key(
                "concurrency", _parse_positive_int, "Rollouts reconciled in parallel"
            ),
        },
    ),
    "leaderElection": (
        "leader_election",
        {
            "enabled": Key(
                "enabled",
                _parse_bool,
                "Lease leader election, so one replica writes to Kong (off: this one always "
                "writes)",
            ),
            "leaseName": Key("lease_name", _parse_str, "name of the Lease"),
            "leaseNamespace": Key(
                "lease_namespace",
                _parse_str,
                "namespace of the Lease; outside a pod set it to the in-cluster kongsplit's "
                "(the chart's release namespace) so both contend for one Lease",
                default="$POD_NAMESPACE, else default",
            ),
            "leaseDurationSeconds": Key(
                "lease_duration_seconds",
                parse_duration,
                "how long a dead leader blocks a takeover (at least 2s)",
            ),
            "identity": Key(
                "identity",
                _parse_str,
                "this replica's name in the Lease",
                default="$POD_NAME, else HOSTNAME-PID",
            ),
        },
    ),
    "server": (
        "server",
        {
            "listen": Key(
                "listen",
                _parse_listen,
                "address of /healthz, /readyz, /metrics, /state and /verify; the default 0.0.0.0 "
                "listens on all interfaces, on a laptop give 127.0.0.1:9102",
                flag="--listen",
            )
        },
    ),
    "log": (
        "log",
        {
            "format": Key(
                "format",
                _OneOf("json", "text"),
                "json: one JSON object a line; text: for people",
                flag="--log-format",
            ),
            "level": Key("level", _OneOf("debug", "info", "warning", "error"), "log level"),
        },
    ),
}
_TLS_KEYS: dict[str, Key] = {
    "caFile": Key(
        "ca_file",
        _parse_opt_str,
        "CA bundle that signed the Admin API's certificate (unset: the system trust store)",
        kind=_PATH,
    ),
    "certFile": Key(
        "cert_file", _parse_opt_str, "client certificate for mutual TLS (with keyFile)", kind=_PATH
    ),
    "keyFile": Key(
        "key_file", _parse_opt_str, "client key for mutual TLS (with certFile)", kind=_PATH
    ),
    "insecureSkipVerify": Key(
        "insecure_skip_verify", _parse_bool, "do not verify the Admin API's certificate (tests)"
    ),
}

_NODES_FROM_KEYS: dict[str, Key] = {
    "namespace": Key(
        "namespace",
        _parse_opt_str,
        "namespace of that Service",
        default="the namespace kongsplit runs in",
    ),
    "service": Key(
        "service",
        _parse_opt_str,
        "Service whose EndpointSlices list the Kong nodes to verify on (hybrid: the data "
        "planes' Status API); unset: kong.nodes alone",
    ),
    "port": Key("port", _parse_port, "the nodes' port: a number, or the Service port's name"),
    "scheme": Key("scheme", _OneOf("http", "https"), "scheme of the nodes' URLs"),
}

#: Sub-sections of a section: dotted name → (section, Settings field of it, keys).
_SUBSECTIONS: dict[str, tuple[str, str, dict[str, Key]]] = {
    "kong.tls": ("kong", "tls", _TLS_KEYS),
    "kong.nodesFrom": ("kong", "nodes_from", _NODES_FROM_KEYS),
}

#: The config file's path; the one ``KONGSPLIT_*`` variable that is not a key of the file.
CONFIG_ENV = "KONGSPLIT_CONFIG"
#: ``KONGSPLIT_*`` variables that are not settings but are legitimately set around kongsplit.
#: Any other unknown ``KONGSPLIT_*`` variable is an error, so a typo cannot go unnoticed.
OTHER_ENV: dict[str, str] = {
    "KONGSPLIT_UPDATE_ALERTS": "tests: 1 rewrites deploy/prometheus/kongsplit-alerts.yaml "
    "from the chart (tests/chart/test_alerts.py)",
    "KONGSPLIT_DEMO_LOG_LEVEL": "kongsplit demo: level of the daemon log it writes (default info)",
}
#: Kubernetes gives every pod "service link" variables for each Service in its namespace
#: (``enableServiceLinks`` is on by default): a Service named ``kongsplit`` or ``kongsplit-*``,
#: the chart's own among them, yields ``KONGSPLIT_SERVICE_HOST``, ``KONGSPLIT_PORT_9102_TCP``...
#: They are not settings either.
SERVICE_LINK_ENV = re.compile(
    r"^KONGSPLIT(?:_[A-Z0-9_]+)?_(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?"
    r"|PORT(?:_\d+_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)?)$"
)
SERVICE_LINK_TEXT = (
    "Kubernetes service links of a Service named kongsplit or kongsplit-* in the pod's "
    "namespace (the chart's own is one): KONGSPLIT_SERVICE_HOST, KONGSPLIT_SERVICE_PORT, "
    "KONGSPLIT_PORT, KONGSPLIT_PORT_9102_TCP..., and the same after KONGSPLIT_<NAME>_"
)


def _env_name(*parts: str) -> str:
    """``("leaderElection", "leaseName")`` → ``KONGSPLIT_LEADER_ELECTION_LEASE_NAME``."""
    words = [re.sub(r"(?<!^)(?=[A-Z])", "_", p).upper() for p in parts]
    return "KONGSPLIT_" + "_".join(words)


@dataclass(frozen=True)
class KeyInfo:
    """One key as the docs show it: ``kong.tls.caFile``, its variable, flag, type, default."""

    name: str
    env: str
    flag: str
    type: str
    default: str
    help: str
    default_is_value: bool  # the default is a value (`10s`), not a description of one


def keys() -> list[KeyInfo]:
    """Every config key in file order (``kong.tls.*`` after ``kong.*``), for help and docs."""
    defaults = Settings()
    out: list[KeyInfo] = []

    def add(section: str, key: str, spec: Key, current: Any) -> None:
        default = spec.default or _show_default(getattr(current, spec.attr), spec.parse)
        env = _env_name(*section.split("."), key)
        is_value = not spec.default and default != "unset"
        out.append(
            KeyInfo(
                f"{section}.{key}", env, spec.flag, spec.type_text, default, spec.help, is_value
            )
        )

    for section, (attr, section_keys) in _SECTIONS.items():
        current = getattr(defaults, attr)
        for key, spec in section_keys.items():
            add(section, key, spec, current)
        for sub, (parent, sub_attr, sub_keys) in _SUBSECTIONS.items():
            if parent == section:
                for key, spec in sub_keys.items():
                    add(sub, key, spec, getattr(current, sub_attr))
    return out


def _show_default(value: Any, parse: _Parser) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if parse is parse_duration:
        return f"{value:g}s"
    return str(value)


def env_names() -> list[str]:
    """Every ``KONGSPLIT_*`` variable the settings read (for docs and tests)."""
    names = [_env_name(s, k) for s, (_, keys) in _SECTIONS.items() for k in keys]
    names += [_env_name(*sub.split("."), k) for sub, (_, _, ks) in _SUBSECTIONS.items() for k in ks]
    return names


def _closest(name: str, candidates: Iterable[str], sep: str) -> str | None:
    """The known name a mistyped one most likely meant: the one whose last part is the same
    (a key in the wrong section, or with its section left out), else the most similar."""
    lowered = {c.lower(): c for c in candidates}
    if name.lower() in lowered:
        return lowered[name.lower()]
    tail = name.lower().rsplit(sep, 1)[-1]
    same_tail = [c for low, c in lowered.items() if low.rsplit(sep, 1)[-1] == tail]
    if len(same_tail) == 1:
        return same_tail[0]
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def check_env(env: Mapping[str, str]) -> None:
    """Refuse a ``KONGSPLIT_*`` variable that is no setting (a typo would be silently ignored)."""
    known = [*env_names(), CONFIG_ENV]
    for name in sorted(env):
        if not name.upper().startswith("KONGSPLIT_") or name in known or name in OTHER_ENV:
            continue
        if SERVICE_LINK_ENV.match(name):
            continue
        prefix = len("KONGSPLIT_")
        bare = [k[prefix:] for k in known]
        hint = _closest(name[prefix:], bare, "_")
        raise ConfigError(
            f"environment {name} is not a kongsplit setting; "
            + (
                f"did you mean KONGSPLIT_{hint}?"
                if hint
                else "`kongsplit run --help` lists every KONGSPLIT_* variable"
            )
        )


def _dotted_keys() -> list[str]:
    names = [f"{s}.{k}" for s, (_, keys) in _SECTIONS.items() for k in keys]
    return names + [f"{sub}.{k}" for sub, (_, _, ks) in _SUBSECTIONS.items() for k in ks]


def _unknown_key(path: str, dotted: str, known: Iterable[str]) -> ConfigError:
    hint = _closest(dotted, [*_SECTIONS, *_dotted_keys()], ".")
    return ConfigError(
        f"config file {path}: unknown key {dotted!r}"
        + (f"; did you mean {hint!r}?" if hint else "")
        + f" (known: {', '.join(known)})"
    )


Raw = dict[str, dict[str, Any]]


def _read_file(path: str) -> Raw:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"config file {path}: cannot read it: {e.strerror or e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path}: not valid YAML at {yaml_problem(e)}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path}: expected a mapping at the top, got {type(data).__name__}"
        )
    raw: Raw = {}
    for section, body in data.items():
        if section not in _SECTIONS:
            raise _unknown_key(path, str(section), _SECTIONS)
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(f"config file {path}: {section}: expected a mapping")
        keys = _SECTIONS[section][1]
        subs = {
            d.split(".", 1)[1]: d for d, (parent, _, _) in _SUBSECTIONS.items() if parent == section
        }
        for key, value in body.items():
            if key in subs:
                sub = subs[key]
                if value is None:
                    continue
                if not isinstance(value, dict):
                    raise ConfigError(f"config file {path}: {sub}: expected a mapping")
                sub_keys = _SUBSECTIONS[sub][2]
                for skey in value:
                    if skey not in sub_keys:
                        raise _unknown_key(path, f"{sub}.{skey}", sub_keys)
                raw.setdefault(sub, {}).update(
                    {k: (f"config file {path}: {sub}.{k}", v) for k, v in value.items()}
                )
                continue
            if key not in keys:
                raise _unknown_key(path, f"{section}.{key}", [*keys, *subs])
            raw.setdefault(section, {})[key] = (f"config file {path}: {section}.{key}", value)
    return raw


def yaml_problem(error: Exception) -> str:
    """A YAML error in the user's words, on one line: where and what (PyYAML's own message
    spans several lines and names its internal stream, "<unicode string>")."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None)
    if not problem:
        return " ".join(str(error).split())
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context = getattr(error, "context", None)
    return where + (f"{problem} ({context})" if context else str(problem))


def _read_env(env: Mapping[str, str]) -> Raw:
    raw: Raw = {}
    for section, (_, keys) in _SECTIONS.items():
        for key in keys:
            name = _env_name(section, key)
            if name in env:
                raw.setdefault(section, {})[key] = (f"environment {name}", env[name])
    for sub, (_, _, sub_keys) in _SUBSECTIONS.items():
        for key in sub_keys:
            name = _env_name(*sub.split("."), key)
            if name in env:
                raw.setdefault(sub, {})[key] = (f"environment {name}", env[name])
    return raw


def _spec(section: str, key: str) -> Key:
    if section in _SUBSECTIONS:
        return _SUBSECTIONS[section][2][key]
    return _SECTIONS[section][1][key]


def _apply(settings: Settings, raw: Raw) -> Settings:
    origins = dict(settings.origins)
    for section, values in raw.items():
        changes = {}
        for key, (where, value) in values.items():
            spec = _spec(section, key)
            changes[spec.attr] = _checked(spec.parse, value, where)
            origins[f"{section}.{key}"] = where
        if section in _SUBSECTIONS:
            parent, sub_attr, _ = _SUBSECTIONS[section]
            parent_attr = _SECTIONS[parent][0]
            holder = getattr(settings, parent_attr)
            inner = replace(getattr(holder, sub_attr), **changes)
            settings = replace(settings, **{parent_attr: replace(holder, **{sub_attr: inner})})
            continue
        attr_name = _SECTIONS[section][0]
        current = getattr(settings, attr_name)
        settings = replace(settings, **{attr_name: replace(current, **changes)})
    return replace(settings, origins=origins)


def _checked(parse: _Parser, value: Any, where: str) -> Any:
    try:
        return parse(value)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


def load_settings(
    path: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Defaults, then the YAML file, then ``KONGSPLIT_*`` env, then flags (``{section: {key: v}}``).

    ``flags`` uses the YAML names (``{"kong": {"url": ...}}``); a flag left at None is unset.
    The config file path itself may come from ``KONGSPLIT_CONFIG``. A ``KONGSPLIT_*`` variable
    that is no setting (nor in :data:`OTHER_ENV`) is an error, as an unknown file key is.
    """
    env = os.environ if env is None else env
    check_env(env)
    settings = Settings()
    path = path or env.get(CONFIG_ENV) or None
    if path:
        settings = _apply_layer(settings, _read_file(path))
    settings = _apply_layer(settings, _read_env(env))
    if flags:
        raw: Raw = {}
        for section, values in flags.items():
            for key, value in values.items():
                if value is not None:
                    flag = _spec(section, key).flag
                    where = f"flag {flag}" if flag else f"flag for {section}.{key}"
                    raw.setdefault(section, {})[key] = (where, value)
        settings = _apply_layer(settings, raw)
    _check_whole(settings)
    return settings


def _apply_layer(settings: Settings, raw: Raw) -> Settings:
    """Apply one layer (file, env or flags) on top of the lower ones.

    ``token`` and ``tokenFile`` are one choice: a layer that sets only one of them replaces
    the other from a lower layer (``--token-file`` over a file's ``token``), as precedence
    promises. Both set in the same layer stays an error (``_check_whole``).
    """
    kong = raw.get("kong", {})
    settings = _apply(settings, raw)
    origins = dict(settings.origins)
    if "token" in kong and "tokenFile" not in kong and settings.kong.token:
        origins.pop("kong.tokenFile", None)
        settings = replace(settings, kong=replace(settings.kong, token_file=None))
    elif "tokenFile" in kong and "token" not in kong and settings.kong.token_file:
        origins.pop("kong.token", None)
        settings = replace(settings, kong=replace(settings.kong, token=None))
    return replace(settings, origins=origins)


def _check_whole(settings: Settings) -> None:
    """Checks that span keys."""
    kong = settings.kong
    if kong.token and kong.token_file:
        raise ConfigError("kong.token and kong.tokenFile are both set: choose one")
    if bool(kong.tls.cert_file) != bool(kong.tls.key_file):
        raise ConfigError("kong.tls.certFile and kong.tls.keyFile go together: set both or neither")
    if settings.leader_election.lease_duration_seconds < 2:
        raise ConfigError("leaderElection.leaseDurationSeconds: must be at least 2 seconds")


def section_fields(section: str) -> list[str]:
    """The YAML keys of one section (for help texts and tests)."""
    return list(_SECTIONS[section][1])


# --- the generated documentation: `kongsplit run --help` and docs/configuration.md ---


def flag_help(section: str, key: str) -> str:
    """The help of the `kongsplit run` flag that sets ``section.key``."""
    info = next(k for k in keys() if k.name == f"{section}.{key}")
    return f"{info.help} (default {info.default}; {info.env})"


def env_help() -> str:
    """The epilog of `kongsplit run --help`: every variable, its key, type and default."""
    lines = [
        "environment (flags win over the environment, the environment over the config file):",
        f"  {CONFIG_ENV}",
        "      the config file (YAML), as --config",
    ]
    for k in keys():
        lines.append(f"  {k.env}")
        lines.append(f"      {k.name}: {k.type}; default: {k.default}")
    lines += ["", *KIND_NOTES, ""]
    lines.append(
        "other KONGSPLIT_* variables allowed (not settings): "
        + ", ".join(OTHER_ENV)
        + ", and Kubernetes service links (KONGSPLIT_SERVICE_HOST, KONGSPLIT_PORT...); any "
        "other is an error"
    )
    lines.append("every key, with what it means: docs/configuration.md")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _wrap(text: str, first: str = "", rest: str = "") -> list[str]:
    return textwrap.wrap(text, 100, initial_indent=first, subsequent_indent=rest)


def markdown_reference() -> str:
    """docs/configuration.md, generated from the schema above (``python -m kongsplit.config``)."""
    out = [
        "# Configuration",
        "",
        "<!-- Generated from the schema in kongsplit/config.py by",
        "     `python -m kongsplit.config > docs/configuration.md`: edit the schema, not this file",
        "     (tests/test_config.py fails when the two differ). -->",
        "",
        "`kongsplit run` takes each setting from the first of these that sets it:",
        "",
        "1. a command-line flag (`kongsplit run --help`);",
        "2. a `KONGSPLIT_<SECTION>_<KEY>` environment variable;",
        f"3. the YAML config file: `--config FILE`, else `${CONFIG_ENV}`;",
        "4. the default.",
        "",
        *_wrap(
            "An unknown key in the file and an unknown `KONGSPLIT_*` variable are errors that name "
            "the closest known one; a bad value is an error that names where it came from (file "
            'and key, variable, or flag). The README\'s "Run it" has an example file.'
        ),
        "",
        "Types:",
        "",
        *(line for note in KIND_NOTES for line in _wrap(note, "- ", "  ")),
    ]
    by_section: dict[str, list[KeyInfo]] = {}
    for k in keys():
        by_section.setdefault(k.name.rsplit(".", 1)[0], []).append(k)
    for section, infos in by_section.items():
        out += [
            "",
            f"## `{section}`",
            "",
            "| Key | Environment variable | Flag | Type | Default | Meaning |",
            "|---|---|---|---|---|---|",
        ]
        for k in infos:
            flag = f"`{k.flag}`" if k.flag else ""
            default = f"`{k.default}`" if k.default_is_value else _cell(k.default)
            out.append(
                f"| `{k.name}` | `{k.env}` | {flag} | {_cell(k.type)} | {default}"
                f" | {_cell(k.help)} |"
            )
    out += [
        "",
        "## Other `KONGSPLIT_*` variables",
        "",
        "| Variable | Meaning |",
        "|---|---|",
        f"| `{CONFIG_ENV}` | the config file, as `--config` |",
        *(f"| `{name}` | {_cell(text)} |" for name, text in OTHER_ENV.items()),
        "| `KONGSPLIT[_<NAME>]_SERVICE_HOST`, `…_SERVICE_PORT[_<PORT>]`, `…_PORT[_…]` | "
        + _cell(SERVICE_LINK_TEXT)
        + " |",
        "",
        *_wrap(
            "All but the first are allowed although they are not settings; any other `KONGSPLIT_*` "
            "variable makes `kongsplit run` exit 2 with one line naming it and the closest known "
            "one (a typo would otherwise be ignored silently)."
        ),
        "",
        "## Running it outside the cluster",
        "",
        *_wrap(
            "**Kubernetes client**, found as kubectl finds it: `--kubeconfig FILE` "
            "(`kubernetes.kubeconfig`), else `$KUBECONFIG` (a colon-separated list of files is "
            "merged; the first file that names a current-context wins), else `~/.kube/config` "
            "when it exists, else the pod's service account. `--context NAME` "
            "(`kubernetes.context`) picks another context than the current one. A missing file, "
            "an unknown context, or no configuration at all outside a pod stops `kongsplit run` "
            "with exit 1 and one line that says what to give.",
            "- ",
            "  ",
        ),
        *_wrap(
            "**Listen address**: the default `0.0.0.0:9102` listens on all interfaces, as a pod "
            "needs; on a laptop give `--listen 127.0.0.1:9102`.",
            "- ",
            "  ",
        ),
        *_wrap(
            "**Leader election**: the Lease is `leaderElection.leaseNamespace`/"
            "`leaderElection.leaseName`. In a pod the namespace defaults to the pod's "
            "(`$POD_NAMESPACE`, which the chart sets to the release namespace); outside a pod it "
            "is `default`, and kongsplit logs a warning at start. To contend with an in-cluster "
            "kongsplit for one Lease, instead of writing to Kong beside it, set "
            "`leaderElection.leaseNamespace` (`KONGSPLIT_LEADER_ELECTION_LEASE_NAMESPACE`) to its "
            "release namespace. The start-up log line names the Lease and this process's "
            "identity.",
            "- ",
            "  ",
        ),
    ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # python -m kongsplit.config > docs/configuration.md
    print(markdown_reference(), end="")
