"""A realistic DB-less configuration, shaped like Kong 3.9's ``GET /config`` export.

Flat entity lists, foreign keys as ids, ``~`` for unset fields, and user data that YAML dialects
disagree on: zero-padded keys and usernames, ``HH:MM`` header values, exponent forms, timestamps,
yes/no/on/off in several cases, ``=`` and ``<<``, white space at either end, unicode, ``#`` and
``: ``, quotes, newlines (PEM certificates), ``{vault://...}`` references.
"""

from __future__ import annotations

import uuid
from typing import Any

_NS = uuid.UUID("0b4c5a3e-9d1f-4f7e-8a21-3c5d7e9f1a2b")

MANAGED_UPSTREAM = "checkout.shop.svc"

#: Strings Kong holds as strings which YAML 1.1 (PyYAML) or lyaml would read as something else
#: if written without quotes.
TRICKY = [
    "0755", "08", "0x1F", "0X1E", "0b101", "0o17", "1_000", "1e3", "1E-3", "+.5", ".inf", "-.Inf",
    ".nan", "12:30", "1:60", "00:30", "12:30:45.5", "2024-01-02", "2024-01-02T03:04:05Z",
    "2024-01-02 03:04:05 +01:00", "yes", "No", "ON", "off", "y", "N", "true", "False", "~", "null",
    "NULL", "=", "<<", "", " padded ", "\ttab", "trailing ", "#hash", "a #b", "key: value",
    "'single'", '"double"', "ünïcödé 名前 🚀", "multi\nline\n", "- dash", "[x]", "{y}", "*alias",
    "&anchor", "!tag", "%percent", "@at", "`tick",
]  # fmt: skip


def _id(kind: str, n: int | str) -> str:
    return str(uuid.uuid5(_NS, f"{kind}:{n}"))


def realistic_config() -> dict[str, Any]:
    """One of each thing a real node holds, with :data:`TRICKY` spread over the user's fields."""
    svc, other_svc = _id("service", 1), _id("service", 2)
    upstream, other_upstream = _id("upstream", 1), _id("upstream", 2)
    cert = _id("certificate", 1)
    pem = (
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUe0755+0x1F/12:30==\n"
        "-----END CERTIFICATE-----\n"
    )
    services = [
        {
            "id": sid,
            "name": name,
            "host": host,
            "port": port,
            "protocol": "http",
            "path": path,
            "retries": 5,
            "connect_timeout": 60000,
            "write_timeout": 60000,
            "read_timeout": 60000,
            "enabled": True,
            "tls_verify": None,
            "tls_verify_depth": None,
            "client_certificate": None,
            "ca_certificates": None,
            "tags": tags,
            "created_at": 1712345678,
            "updated_at": 1712345679,
        }
        for sid, name, host, port, path, tags in (
            (svc, "checkout", MANAGED_UPSTREAM, 80, None, ["team:payments", "2024-01-02", "yes"]),
            (other_svc, "0755", "other.shop.svc", 8080, "/v1:30", ["0x1F", "=", "<<", "12:30"]),
        )
    ]
    routes = [
        {
            "id": _id("route", 1),
            "name": "checkout-api",
            "service": svc,
            "protocols": ["http", "https"],
            "methods": ["GET", "POST"],
            "hosts": ["shop.example.com", "1e3.example.com"],
            "paths": ["/api/v1", "~/items/(?<id>\\d+)$", "/12:30"],
            "headers": {"x-version": ["0755", "1.10", "yes"], "x-when": ["12:30"]},
            "strip_path": True,
            "preserve_host": False,
            "regex_priority": 0,
            "https_redirect_status_code": 426,
            "path_handling": "v0",
            "request_buffering": True,
            "response_buffering": True,
            "snis": None,
            "sources": None,
            "destinations": None,
            "tags": ["on", "OFF", "~"],
            "created_at": 1712345678,
            "updated_at": 1712345678,
        }
    ]
    plugins = [
        {
            "id": _id("plugin", "rate-limiting"),
            "name": "rate-limiting",
            "service": svc,
            "route": None,
            "consumer": None,
            "enabled": True,
            "protocols": ["grpc", "grpcs", "http", "https"],
            "config": {
                "minute": 100,
                "hour": None,
                "policy": "local",
                "fault_tolerant": True,
                "hide_client_headers": False,
                "limit_by": "consumer",
                "header_name": None,
                "error_code": 429,
                "error_message": "API rate limit exceeded: retry at 12:30",
                "sync_rate": -1,
                "redis": {"host": None, "port": 6379, "timeout": 2000, "database": 0},
            },
            "tags": ["0o17"],
            "created_at": 1712345678,
            "updated_at": 1712345678,
        },
        {
            "id": _id("plugin", "request-transformer"),
            "name": "request-transformer",
            "service": None,
            "route": _id("route", 1),
            "consumer": None,
            "enabled": True,
            "protocols": ["http", "https"],
            "config": {
                "http_method": None,
                "add": {
                    "headers": ["x-api-version:2024-01-02", "x-time:12:30", "x-flag:yes"],
                    "querystring": ["v:1e3", "n:0755"],
                    "body": [],
                },
                "remove": {"headers": ["x-debug"], "querystring": [], "body": []},
                "replace": {"uri": None, "headers": [], "querystring": [], "body": []},
            },
            "tags": [],
            "created_at": 1712345678,
            "updated_at": 1712345678,
        },
        {
            "id": _id("plugin", "cors"),
            "name": "cors",
            "service": None,
            "route": None,
            "consumer": None,
            "enabled": False,
            "protocols": ["http", "https"],
            "config": {
                "origins": ["*", "https://0755.example.com"],
                "methods": ["GET", "OPTIONS"],
                "max_age": 3600,
                "credentials": False,
                "preflight_continue": False,
                "headers": None,
            },
            "tags": None,
            "created_at": 1712345678,
            "updated_at": 1712345678,
        },
        {
            "id": _id("plugin", "key-auth"),
            "name": "key-auth",
            "service": svc,
            "route": None,
            "consumer": None,
            "enabled": True,
            "protocols": ["http", "https"],
            "config": {
                "key_names": ["apikey", "x-api-key"],
                "hide_credentials": True,
                "key_in_header": True,
                "key_in_query": True,
                "key_in_body": False,
                "anonymous": None,
                "run_on_preflight": True,
            },
            "tags": [],
            "created_at": 1712345678,
            "updated_at": 1712345678,
        },
    ]
    consumers = []
    credentials = []
    for n, text in enumerate(TRICKY):
        cid = _id("consumer", n)
        consumers.append(
            {
                "id": cid,
                "username": text if text else None,
                "custom_id": f"{text}-{n}" if n % 2 else text or "empty",
                "tags": [text, TRICKY[(n + 7) % len(TRICKY)]],
                "created_at": 1712345678 + n,
                "updated_at": 1712345678 + n,
            }
        )
        credentials.append(
            {
                "id": _id("keyauth", n),
                "consumer": cid,
                "key": text if text else f"{{vault://env/api-key-{n}}}",
                "ttl": None,
                "tags": None if n % 3 else [text],
                "created_at": 1712345678 + n,
            }
        )
    certificates = [
        {
            "id": cert,
            "cert": pem,
            "key": "{vault://hcv/kong/tls-key}",
            "cert_alt": None,
            "key_alt": None,
            "tags": ["2024-01-02T03:04:05Z"],
            "created_at": 1712345678,
            "updated_at": 1712345678,
        }
    ]
    snis = [
        {
            "id": _id("sni", 1),
            "name": "shop.example.com",
            "certificate": cert,
            "tags": None,
            "created_at": 1712345678,
            "updated_at": 1712345678,
        }
    ]
    vaults = [
        {
            "id": _id("vault", 1),
            "name": "env",
            "prefix": "my-env",
            "description": "0755 = secrets: yes",
            "config": {"prefix": "KONG_", "base64_decode": False},
            "tags": ["NULL"],
            "created_at": 1712345678,
            "updated_at": 1712345678,
        }
    ]
    healthchecks = {
        "threshold": 0,
        "active": {
            "type": "http",
            "timeout": 1,
            "concurrency": 10,
            "http_path": "/healthz",
            "https_verify_certificate": True,
            "https_sni": None,
            "headers": None,
            "healthy": {"interval": 0, "http_statuses": [200, 302], "successes": 0},
            "unhealthy": {
                "interval": 0,
                "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505],
                "tcp_failures": 0,
                "timeouts": 0,
                "http_failures": 0,
            },
        },
        "passive": {
            "type": "http",
            "healthy": {"http_statuses": [200, 201, 202], "successes": 0},
            "unhealthy": {"http_statuses": [429, 500, 503], "tcp_failures": 0, "timeouts": 0},
        },
    }
    upstreams = [
        {
            "id": uid,
            "name": name,
            "algorithm": "round-robin",
            "slots": 10000,
            "hash_on": "none",
            "hash_fallback": "none",
            "hash_on_header": None,
            "hash_on_cookie_path": "/",
            "hash_on_query_arg": None,
            "host_header": None,
            "client_certificate": None,
            "use_srv_name": False,
            "healthchecks": healthchecks,
            "tags": tags,
            "created_at": 1712345678,
            "updated_at": 1712345678,
        }
        for uid, name, tags in (
            (upstream, MANAGED_UPSTREAM, ["yes", "2024-01-02"]),
            (other_upstream, "other.shop.svc", ["0755"]),
        )
    ]
    targets = [
        {
            "id": _id("target", n),
            "target": target,
            "weight": weight,
            "upstream": uid,
            "tags": tags,
            "created_at": 1712345678.123 + n,
            "updated_at": 1712345678.456 + n,
        }
        for n, (target, weight, uid, tags) in enumerate(
            (
                ("10.96.0.10:80", 90, upstream, ["stable", "12:30"]),
                ("10.96.0.11:80", 10, upstream, None),
                ("other.shop.svc:8080", 100, other_upstream, ["0755", "=", "<<", "1e3"]),
            )
        )
    ]
    return {
        "_format_version": "3.0",
        "_transform": False,
        "services": services,
        "routes": routes,
        "vaults": vaults,
        "certificates": certificates,
        "snis": snis,
        "consumers": consumers,
        "keyauth_credentials": credentials,
        "plugins": plugins,
        "upstreams": upstreams,
        "targets": targets,
    }
