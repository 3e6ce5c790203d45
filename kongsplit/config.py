"""Settings: the config file (docs/configuration.md), ``KONGSPLIT_*`` env vars and CLI flags.

One schema describes every key once (its YAML name, env name, type and check), so the file,
the environment and the flags cannot drift apart. Precedence: flags > env > file > defaults.
Every error names where the bad value came from (file and key, or env var) and what was wrong.
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration value is missing, malformed or out of range; the message names it."""


@dataclass(frozen=True)
class TLSConfig:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class KongConfig:
    url: str = "http://localhost:8001"
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None
    workspace: str | None = None
    tls: TLSConfig = field(default_factory=TLSConfig)
    nodes: tuple[str, ...] = ()
    create_upstreams: bool = True
    exclusive_upstreams: bool = False
    on_delete: str = "keep"
    timeout_seconds: float = 10.0
    config_poll_interval: float = 2.0

    @property
    def verify_nodes(self) -> tuple[str, ...]:
        """Kong nodes whose ``/health`` proves a weight is served (the write URL when unset)."""
        return self.nodes or (self.url,)


@dataclass(frozen=True)
class KubernetesConfig:
    kubeconfig: str | None = None
    namespaces: tuple[str, ...] = ()
    cluster_domain: str = "cluster.local"


@dataclass(frozen=True)
class ReconcileConfig:
    interval: float = 10.0
    concurrency: int = 16


def _default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def _default_lease_namespace() -> str:
    return os.environ.get("POD_NAMESPACE", "default")


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


def _parse_str_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list | tuple):
        items = [_parse_str(v) for v in value]
    else:
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(v for v in items if v)


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
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    return text.rstrip("/")


def _parse_url_list(value: Any) -> tuple[str, ...]:
    return tuple(_parse_url(v) for v in _parse_str_list(value))


def _one_of(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _parse_str(value).lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return text

    return parse


def redact_url(url: str) -> str:
    """``https://user:secret@kong:8444`` → ``https://***@kong:8444``: URLs are logged and served."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@", r"\1***@", url)


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


# The schema: YAML section → {yaml key: (dataclass field, parser)}. Env names derive from it.
_Parser = Callable[[Any], Any]
_SECTIONS: dict[str, tuple[str, dict[str, tuple[str, _Parser]]]] = {
    "kong": (
        "kong",
        {
            "url": ("url", _parse_url),
            "token": ("token", _parse_opt_str),
            "tokenFile": ("token_file", _parse_opt_str),
            "workspace": ("workspace", _parse_opt_str),
            "nodes": ("nodes", _parse_url_list),
            "createUpstreams": ("create_upstreams", _parse_bool),
            "exclusiveUpstreams": ("exclusive_upstreams", _parse_bool),
            "onDelete": ("on_delete", _one_of("keep", "stable")),
            "timeoutSeconds": ("timeout_seconds", parse_duration),
            "configPollInterval": ("config_poll_interval", parse_duration),
        },
    ),
    "kubernetes": (
        "kubernetes",
        {
            "kubeconfig": ("kubeconfig", _parse_opt_str),
            "namespaces": ("namespaces", _parse_str_list),
            "clusterDomain": ("cluster_domain", _parse_str),
        },
    ),
    "reconcile": (
        "reconcile",
        {
            "interval": ("interval", parse_duration),
            "concurrency": ("concurrency", _parse_positive_int),
        },
    ),
    "leaderElection": (
        "leader_election",
        {
            "enabled": ("enabled", _parse_bool),
            "leaseName": ("lease_name", _parse_str),
            "leaseNamespace": ("lease_namespace", _parse_str),
            "leaseDurationSeconds": ("lease_duration_seconds", parse_duration),
            "identity": ("identity", _parse_str),
        },
    ),
    "server": ("server", {"listen": ("listen", _parse_listen)}),
    "log": (
        "log",
        {
            "format": ("format", _one_of("json", "text")),
            "level": ("level", _one_of("debug", "info", "warning", "error")),
        },
    ),
}
_TLS_KEYS: dict[str, tuple[str, _Parser]] = {
    "caFile": ("ca_file", _parse_opt_str),
    "certFile": ("cert_file", _parse_opt_str),
    "keyFile": ("key_file", _parse_opt_str),
    "insecureSkipVerify": ("insecure_skip_verify", _parse_bool),
}


def _env_name(*parts: str) -> str:
    """``("leaderElection", "leaseName")`` → ``KONGSPLIT_LEADER_ELECTION_LEASE_NAME``."""
    words = [re.sub(r"(?<!^)(?=[A-Z])", "_", p).upper() for p in parts]
    return "KONGSPLIT_" + "_".join(words)


def env_names() -> list[str]:
    """Every ``KONGSPLIT_*`` variable the settings read (for docs and tests)."""
    names = [_env_name(s, k) for s, (_, keys) in _SECTIONS.items() for k in keys]
    names += [_env_name("kong", "tls", k) for k in _TLS_KEYS]
    return names


Raw = dict[str, dict[str, Any]]


def _read_file(path: str) -> Raw:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"config file {path}: cannot read it: {e.strerror or e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path}: not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path}: expected a mapping at the top, got {type(data).__name__}"
        )
    raw: Raw = {}
    for section, body in data.items():
        if section not in _SECTIONS:
            raise ConfigError(
                f"config file {path}: unknown key {section!r} (known: {', '.join(_SECTIONS)})"
            )
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(f"config file {path}: {section}: expected a mapping")
        keys = _SECTIONS[section][1]
        for key, value in body.items():
            if section == "kong" and key == "tls":
                if value is None:
                    continue
                if not isinstance(value, dict):
                    raise ConfigError(f"config file {path}: kong.tls: expected a mapping")
                for tkey in value:
                    if tkey not in _TLS_KEYS:
                        raise ConfigError(
                            f"config file {path}: unknown key 'kong.tls.{tkey}' "
                            f"(known: {', '.join(_TLS_KEYS)})"
                        )
                raw.setdefault("kong.tls", {}).update(
                    {k: (f"config file {path}: kong.tls.{k}", v) for k, v in value.items()}
                )
                continue
            if key not in keys:
                raise ConfigError(
                    f"config file {path}: unknown key '{section}.{key}' "
                    f"(known: {', '.join([*keys, 'tls'] if section == 'kong' else keys)})"
                )
            raw.setdefault(section, {})[key] = (f"config file {path}: {section}.{key}", value)
    return raw


def _read_env(env: Mapping[str, str]) -> Raw:
    raw: Raw = {}
    for section, (_, keys) in _SECTIONS.items():
        for key in keys:
            name = _env_name(section, key)
            if name in env:
                raw.setdefault(section, {})[key] = (f"environment {name}", env[name])
    for key in _TLS_KEYS:
        name = _env_name("kong", "tls", key)
        if name in env:
            raw.setdefault("kong.tls", {})[key] = (f"environment {name}", env[name])
    return raw


def _apply(settings: Settings, raw: Raw) -> Settings:
    for section, values in raw.items():
        if section == "kong.tls":
            tls = settings.kong.tls
            changes = {}
            for key, (where, value) in values.items():
                attr, parse = _TLS_KEYS[key]
                changes[attr] = _checked(parse, value, where)
            settings = replace(settings, kong=replace(settings.kong, tls=replace(tls, **changes)))
            continue
        attr_name, keys = _SECTIONS[section]
        current = getattr(settings, attr_name)
        changes = {}
        for key, (where, value) in values.items():
            attr, parse = keys[key]
            changes[attr] = _checked(parse, value, where)
        settings = replace(settings, **{attr_name: replace(current, **changes)})
    return settings


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
    The config file path itself may come from ``KONGSPLIT_CONFIG``.
    """
    env = os.environ if env is None else env
    settings = Settings()
    path = path or env.get("KONGSPLIT_CONFIG") or None
    if path:
        settings = _apply_layer(settings, _read_file(path))
    settings = _apply_layer(settings, _read_env(env))
    if flags:
        raw: Raw = {}
        for section, values in flags.items():
            for key, value in values.items():
                if value is not None:
                    raw.setdefault(section, {})[key] = (f"flag for {section}.{key}", value)
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
    if "token" in kong and "tokenFile" not in kong and settings.kong.token:
        settings = replace(settings, kong=replace(settings.kong, token_file=None))
    elif "tokenFile" in kong and "token" not in kong and settings.kong.token_file:
        settings = replace(settings, kong=replace(settings.kong, token=None))
    return settings


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
