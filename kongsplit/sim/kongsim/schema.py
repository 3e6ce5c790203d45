"""Entity schemas, validation and error bodies of the Kong Admin API simulator.

Restates the documented behaviour of Kong 3.9's upstream and target entities
(kong/db/schema/entities/upstreams.lua and targets.lua, kong/db/errors.lua): field defaults, the
validation
messages clients see, target normalisation, and the DAO error objects with their codes.
Nothing here does I/O.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

JSON = Any

# ---------------------------------------------------------------------------------------------
# Errors (kong/db/errors.lua, kong/api/endpoints.lua ERRORS_HTTP_CODES)


class KongApiError(Exception):
    """An Admin API error answer: HTTP status plus the exact JSON body Kong would send."""

    def __init__(
        self, status: int, body: dict[str, JSON], headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def message_error(status: int, message: str) -> KongApiError:
    """A non-DAO error: just ``{"message": ...}``."""
    return KongApiError(status, {"message": message})


def not_found() -> KongApiError:
    return message_error(404, "Not found")


def method_not_allowed() -> KongApiError:
    return message_error(405, "Method not allowed")


def lua_repr(value: JSON) -> str:
    """Render a value the way Kong's error messages print Lua tables: ``{a="x",b={id="y"}}``."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={lua_repr(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, list):
        return "{" + ",".join(lua_repr(v) for v in value) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value is None:
        return "null"
    return str(value)


def _flatten_messages(errors: Mapping[str, JSON]) -> list[str]:
    parts: list[str] = []
    entity = errors.get("@entity")
    if isinstance(entity, list):
        parts.extend(str(e) for e in entity if e is not None)
    for key in sorted(k for k in errors if k != "@entity"):
        val = errors[key]
        parts.append(f"{key}: {val if isinstance(val, str) else lua_repr(val)}")
    return parts


def schema_violation(errors: Mapping[str, JSON]) -> KongApiError:
    """Code 2: ``schema violation (f: m)`` or ``N schema violations (a: x; b: y)``."""
    parts = _flatten_messages(errors)
    if len(parts) == 1:
        message = f"schema violation ({parts[0]})"
    else:
        message = f"{len(parts)} schema violations ({'; '.join(parts)})"
    return KongApiError(
        400, {"code": 2, "name": "schema violation", "message": message, "fields": dict(errors)}
    )


def unique_violation(fields: dict[str, JSON]) -> KongApiError:
    """Code 5, HTTP 409: a second entity with the same unique key / cache key."""
    return KongApiError(
        409,
        {
            "code": 5,
            "name": "unique constraint violation",
            "message": f"UNIQUE violation detected on '{lua_repr(fields)}'",
            "fields": fields,
        },
    )


def dao_not_found(key: dict[str, JSON], *, primary: bool) -> KongApiError:
    """Code 6 as the generic update endpoint reports it (the full error object)."""
    what = f"primary key '{lua_repr(key)}'" if primary else f"'{lua_repr(key)}'"
    return KongApiError(
        404,
        {
            "code": 6,
            "name": "not found",
            "message": f"could not find the entity with {what}",
            "fields": key,
        },
    )


def invalid_offset(offset: str, reason: str) -> KongApiError:
    return KongApiError(
        400,
        {
            "code": 7,
            "name": "invalid offset",
            "message": f"'{offset}' is not a valid offset: {reason}",
        },
    )


def invalid_size(message: str) -> KongApiError:
    return KongApiError(400, {"code": 9, "name": "invalid size", "message": message})


def invalid_options(options: dict[str, str]) -> KongApiError:
    parts = [f"{k}: {options[k]}" for k in sorted(options)]
    noun = "option" if len(parts) == 1 else "options"
    return KongApiError(
        400,
        {
            "code": 11,
            "name": "invalid options",
            "message": f"invalid {noun} ({'; '.join(parts)})",
            "options": options,
        },
    )


def operation_unsupported(message: str) -> KongApiError:
    """Code 12, HTTP 405 — what the ``off`` strategy answers to any entity write
    (kong/db/strategies/off/init.lua)."""
    return KongApiError(405, {"code": 12, "name": "operation unsupported", "message": message})


def declarative_error(fields: dict[str, JSON], message: str) -> KongApiError:
    return KongApiError(
        400,
        {
            "code": 14,
            "name": "invalid declarative configuration",
            "message": f"declarative config is invalid: {message}",
            "fields": fields,
        },
    )


# ---------------------------------------------------------------------------------------------
# Addresses: hostnames, IPs, ports (kong/tools/ip.lua, docs/kong.md "Target strings")

DEFAULT_TARGET_PORT = 8000
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9\-._]+$")
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def is_uuid(value: str) -> bool:
    return bool(_UUID_RE.match(value))


@dataclass(frozen=True)
class Address:
    """A parsed ``host[:port]``: kind is ``name``, ``ipv4`` or ``ipv6``; host is normalised."""

    kind: str
    host: str
    port: int | None


def _parse_port(text: str) -> int | None:
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        return None
    port = int(text)
    return port if port <= 65535 else None


def _normalize_ipv4(text: str) -> str | None:
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() and p for p in parts):
        return None
    nums = [int(p) for p in parts]
    if any(n > 255 for n in nums):
        return None
    return ".".join(str(n) for n in nums)


def _normalize_ipv6(text: str) -> str | None:
    """Expand to 8 zero-padded lower-case groups, as Kong prints IPv6 targets."""
    if not text or not re.fullmatch(r"[0-9A-Fa-f:]+", text):
        return None
    if text.count("::") > 1:
        return None
    if "::" in text:
        head, tail = text.split("::")
        left = head.split(":") if head else []
        right = tail.split(":") if tail else []
        missing = 8 - len(left) - len(right)
        if missing < 1:
            return None
        groups = [*left, *(["0"] * missing), *right]
    else:
        groups = text.split(":")
    if len(groups) != 8 or any(not g or len(g) > 4 for g in groups):
        return None
    return ":".join(g.lower().rjust(4, "0") for g in groups)


def parse_address(text: str) -> Address | None:
    """Kong's ``normalize_ip``: classify and normalise ``host[:port]``; None when invalid."""
    if not isinstance(text, str) or not text:
        return None
    colons = text.count(":")
    if text.startswith("["):
        # bracketed IPv6, optional port
        m = re.fullmatch(r"\[([^\]]*)\](?::(.*))?", text)
        if not m:
            return None
        host6 = _normalize_ipv6(m.group(1))
        if host6 is None:
            return None
        port = None
        if m.group(2) is not None:
            port = _parse_port(m.group(2))
            if port is None:
                return None
        return Address("ipv6", host6, port)
    if colons > 1:
        host6 = _normalize_ipv6(text)
        return Address("ipv6", host6, None) if host6 else None
    host, port_text = text, None
    if colons == 1:
        host, port_text = text.split(":", 1)
    port = None
    if port_text is not None:
        port = _parse_port(port_text)
        if port is None:
            return None
    if re.fullmatch(r"[\d.]+", host):
        host4 = _normalize_ipv4(host)
        return Address("ipv4", host4, port) if host4 else None
    if not _HOSTNAME_RE.fullmatch(host):  # Lua's "$" is the very end: no trailing newline
        return None
    labels = host.split(".")
    # check_hostname: no label ends in "-", no empty label but a last one ("name." is an FQDN).
    if any(label.endswith("-") for label in labels) or "" in labels[:-1]:
        return None
    return Address("name", host, port)


def format_target(text: str) -> str | None:
    """Normalise a target string for storage: default port 8000, IPs re-printed
    (kong/db/dao/targets.lua format_target)."""
    addr = parse_address(text)
    if addr is None:
        return None
    port = DEFAULT_TARGET_PORT if addr.port is None else addr.port
    host = f"[{addr.host}]" if addr.kind == "ipv6" else addr.host
    return f"{host}:{port}"


def validate_upstream_name(name: str) -> str | None:
    """Return an error message, or None when the name is a valid upstream name."""
    addr = parse_address(name)
    if addr is None:
        return f"Invalid name ('{name}'); must be a valid hostname"
    if addr.kind != "name":
        return f"Invalid name ('{name}'); no ip addresses allowed"
    if addr.port is not None:
        return f"Invalid name ('{name}'); no port allowed"
    return None


# ---------------------------------------------------------------------------------------------
# Tags (kong/db/schema/typedefs.lua tags, kong/api/endpoints.lua)

_TAG_CHAR = r"[\x21-\x2B\x2D\x2E\x30-\x7E\u0080-\U0010FFFF]"
TAGS_AND_RE = re.compile(rf"^{_TAG_CHAR}+(?:,{_TAG_CHAR}+)*$")
TAGS_OR_RE = re.compile(rf"^{_TAG_CHAR}+(?:/{_TAG_CHAR}+)+$")
_TAG_RE = re.compile(rf"^{_TAG_CHAR}+$")


def _check_tag(value: str) -> str | None:
    if _TAG_RE.match(value):
        return None
    return (
        f"invalid tag '{value}': expected printable ascii (except `,` and `/`) "
        "or valid utf-8 sequences"
    )


# ---------------------------------------------------------------------------------------------
# A small schema language: just enough of Kong's to produce its validation answers

_UNSET: Any = object()


@dataclass(frozen=True)
class F:
    """One field: type is string/integer/number/boolean/array/set/record/map/foreign."""

    type: str
    default: Any = _UNSET
    required: bool = False
    one_of: tuple[str, ...] | None = None
    between: tuple[float, float] | None = None
    elements: F | None = None
    fields: Mapping[str, F] | None = None
    check: Callable[[Any], str | None] | None = None
    len_min: int = 1


def _default_of(spec: F) -> Any:
    if spec.type == "record" and spec.fields is not None and spec.default is _UNSET:
        return {k: _default_of(v) for k, v in spec.fields.items()}
    if spec.default is _UNSET:
        return None
    if isinstance(spec.default, list | dict):
        return _deep_copy(spec.default)
    return spec.default


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


deep_copy = _deep_copy


def _coerce_scalar(spec: F, value: Any) -> Any:
    """Form/multipart values arrive as strings: convert them by the field's type."""
    if not isinstance(value, str):
        return value
    if spec.type in ("integer", "number"):
        try:
            num = float(value) if spec.type == "number" or "." in value else int(value)
        except ValueError:
            return value
        return num
    if spec.type == "boolean":
        if value in ("true", "false"):
            return value == "true"
        return value
    if spec.type in ("array", "set"):
        return [value]
    return value


def _validate_value(spec: F, value: Any, *, coerce: bool) -> tuple[Any, Any]:
    """Return (clean value, error) where error is None, a message, or a nested structure."""
    if coerce:
        value = _coerce_scalar(spec, value)
    t = spec.type
    if t == "string":
        if not isinstance(value, str):
            return None, "expected a string"
        if len(value) < spec.len_min:
            return None, f"length must be at least {spec.len_min}"
    elif t == "integer":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, "expected an integer"
        if isinstance(value, float):
            if not math.isfinite(value) or not value.is_integer():
                return None, "expected an integer"
            value = int(value)
    elif t == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, "expected a number"
        if isinstance(value, float) and not math.isfinite(value):
            return None, "expected a number"
    elif t == "boolean":
        if not isinstance(value, bool):
            return None, "expected a boolean"
    elif t in ("array", "set"):
        if isinstance(value, dict) and not value:
            value = []  # an empty JSON object is an empty Lua table, i.e. an empty array
        if not isinstance(value, list):
            return None, "expected a set" if t == "set" else "expected an array"
        assert spec.elements is not None
        out: list[Any] = []
        errs: list[Any] = []
        for item in value:
            clean, err = _validate_value(spec.elements, item, coerce=coerce)
            out.append(clean)
            errs.append(err)
        if any(e is not None for e in errs):
            return None, errs
        if t == "set":
            out = list(dict.fromkeys(out)) if all(isinstance(o, str | int) for o in out) else out
        value = out
    elif t == "map":
        if not isinstance(value, dict):
            return None, "expected a map"
        if spec.elements is not None:
            mout: dict[str, Any] = {}
            merrs: dict[str, Any] = {}
            for k, v in value.items():
                clean, err = _validate_value(spec.elements, v, coerce=coerce)
                if err is not None:
                    merrs[k] = err
                mout[k] = clean
            if merrs:
                return None, merrs
            value = mout
    elif t == "foreign":
        if not isinstance(value, dict):
            return None, "expected a record"
        unknown = {k: "unknown field" for k in value if k != "id"}
        if unknown:
            return None, unknown
        fid = value.get("id")
        if fid is None:
            return None, {"id": "required field missing"}
        if not isinstance(fid, str) or not is_uuid(fid):
            return None, {"id": "expected a valid UUID"}
        value = {"id": fid.lower()}
    elif t == "record":
        if not isinstance(value, dict):
            return None, "expected a record"
        assert spec.fields is not None
        clean_rec, rec_errs = validate_fields(spec.fields, value, coerce=coerce, partial=False)
        if rec_errs:
            return None, rec_errs
        value = clean_rec
    if spec.one_of is not None and value not in spec.one_of:
        return None, f"expected one of: {', '.join(spec.one_of)}"
    if spec.between is not None:
        lo, hi = spec.between
        if not lo <= value <= hi:
            return None, f"value should be between {_num(lo)} and {_num(hi)}"
    if spec.check is not None:
        msg = spec.check(value)
        if msg is not None:
            return None, msg
    return value, None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def validate_fields(
    schema: Mapping[str, F],
    data: Mapping[str, Any],
    *,
    coerce: bool,
    partial: bool,
    base: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate ``data`` against ``schema``.

    ``partial`` (PATCH): only the given fields are validated and merged onto ``base``
    (records are merged field by field, like Kong's update). Otherwise absent or null fields
    take their defaults and required fields must be present. Returns (entity, errors).
    """
    errors: dict[str, Any] = {}
    out: dict[str, Any] = dict(_deep_copy(base)) if base is not None else {}
    for key, value in data.items():
        if key not in schema:
            errors[key] = "unknown field"
            continue
        spec = schema[key]
        if value is None:
            if spec.required:
                errors[key] = "required field missing"
            else:
                out[key] = _default_of(spec) if not partial else _null_update(spec)
            continue
        if partial and spec.type == "record" and isinstance(value, dict) and spec.fields:
            current = out.get(key) if isinstance(out.get(key), dict) else _default_of(spec)
            clean, sub_errs = validate_fields(
                spec.fields, value, coerce=coerce, partial=True, base=current
            )
            if sub_errs:
                errors[key] = sub_errs
            else:
                out[key] = clean
            continue
        clean, err = _validate_value(spec, value, coerce=coerce)
        if err is not None:
            errors[key] = err
        else:
            out[key] = clean
    if not partial:
        for key, spec in schema.items():
            if key in data and data[key] is not None:
                continue
            if key in errors:
                continue
            if spec.required:
                errors[key] = "required field missing"
            elif key not in out:
                out[key] = _default_of(spec)
    return out, errors


def _null_update(spec: F) -> Any:
    return _default_of(spec) if spec.default is not _UNSET else None


# ---------------------------------------------------------------------------------------------
# Upstream and target schemas (kong/db/schema/entities/{upstreams,targets}.lua, restated)

ALGORITHMS = ("consistent-hashing", "least-connections", "round-robin", "latency")
HASH_ON = ("none", "consumer", "ip", "header", "cookie", "path", "query_arg", "uri_capture")
HC_TYPES = ("tcp", "http", "https", "grpc", "grpcs")


def _check_name(value: Any) -> str | None:
    return validate_upstream_name(str(value))


def _check_host_header(value: Any) -> str | None:
    addr = parse_address(value)
    if addr is None or addr.kind != "name":
        return f"invalid value: {value}"
    return None


def _check_header_name(value: Any) -> str | None:
    if re.fullmatch(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+", value):
        return None
    return f"bad header name '{value}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"


_UINT8 = (0, 255)
_PASSIVE_HEALTHY_STATUSES = [200, 201, 202, 203, 204, 205, 206, 207, 208, 226, *range(300, 309)]
_STATUS = F("integer", between=(100, 999))


def _hc_healthy(*, active: bool) -> dict[str, F]:
    fields: dict[str, F] = {
        "http_statuses": F(
            "array",
            elements=_STATUS,
            default=[200, 302] if active else _PASSIVE_HEALTHY_STATUSES,
        ),
        "successes": F("integer", between=_UINT8, default=0),
    }
    if active:
        fields["interval"] = F("number", between=(0, 65535), default=0)
    return fields


def _hc_unhealthy(*, active: bool) -> dict[str, F]:
    fields: dict[str, F] = {
        "http_statuses": F(
            "array",
            elements=_STATUS,
            default=[429, 404, 500, 501, 502, 503, 504, 505] if active else [429, 500, 503],
        ),
        "tcp_failures": F("integer", between=_UINT8, default=0),
        "timeouts": F("integer", between=_UINT8, default=0),
        "http_failures": F("integer", between=_UINT8, default=0),
    }
    if active:
        fields["interval"] = F("number", between=(0, 65535), default=0)
    return fields


HEALTHCHECKS_FIELDS: dict[str, F] = {
    "active": F(
        "record",
        fields={
            "type": F("string", one_of=HC_TYPES, default="http"),
            "timeout": F("number", between=(0, 65535), default=1),
            "concurrency": F("integer", between=(1, 2**31 - 1), default=10),
            "http_path": F("string", default="/"),
            "https_sni": F("string"),
            "https_verify_certificate": F("boolean", default=True),
            "headers": F("map", elements=F("array", elements=F("string"))),
            "healthy": F("record", fields=_hc_healthy(active=True)),
            "unhealthy": F("record", fields=_hc_unhealthy(active=True)),
        },
    ),
    "passive": F(
        "record",
        fields={
            "type": F("string", one_of=HC_TYPES, default="http"),
            "healthy": F("record", fields=_hc_healthy(active=False)),
            "unhealthy": F("record", fields=_hc_unhealthy(active=False)),
        },
    ),
    "threshold": F("number", between=(0, 100), default=0),
}

TAGS = F("set", elements=F("string", check=_check_tag))

UPSTREAM_FIELDS: dict[str, F] = {
    "id": F("string", check=lambda v: None if is_uuid(v) else "expected a valid UUID"),
    "created_at": F("integer"),
    "updated_at": F("integer"),
    "name": F("string", required=True, check=_check_name),
    "algorithm": F("string", one_of=ALGORITHMS, default="round-robin"),
    "hash_on": F("string", one_of=HASH_ON, default="none"),
    "hash_fallback": F("string", one_of=HASH_ON, default="none"),
    "hash_on_header": F("string", check=_check_header_name),
    "hash_fallback_header": F("string", check=_check_header_name),
    "hash_on_cookie": F("string"),
    "hash_on_cookie_path": F("string", default="/"),
    "hash_on_query_arg": F("string"),
    "hash_fallback_query_arg": F("string"),
    "hash_on_uri_capture": F("string"),
    "hash_fallback_uri_capture": F("string"),
    "slots": F("integer", between=(10, 2**16), default=10000),
    "healthchecks": F("record", fields=HEALTHCHECKS_FIELDS),
    "tags": TAGS,
    "host_header": F("string", check=_check_host_header),
    "client_certificate": F("foreign"),
    "use_srv_name": F("boolean", default=False),
}

TARGET_FIELDS: dict[str, F] = {
    "id": F("string", check=lambda v: None if is_uuid(v) else "expected a valid UUID"),
    "created_at": F("number"),
    "updated_at": F("number"),
    "upstream": F("foreign", required=True),
    "target": F("string", required=True),
    "weight": F("integer", between=(0, 65535), default=100),
    "tags": TAGS,
}

UPSTREAM_ORDER = tuple(UPSTREAM_FIELDS)
TARGET_ORDER = tuple(TARGET_FIELDS)


def upstream_entity_checks(entity: Mapping[str, Any]) -> list[str]:
    """The conditional checks between hash fields (the subset clients meet in practice)."""
    errs: list[str] = []
    hash_on, fallback = entity.get("hash_on"), entity.get("hash_fallback")
    for which, needed in (
        ("header", "hash_on_header"),
        ("cookie", "hash_on_cookie"),
        ("query_arg", "hash_on_query_arg"),
        ("uri_capture", "hash_on_uri_capture"),
    ):
        if hash_on == which and entity.get(needed) is None:
            errs.append("failed conditional validation given value of field 'hash_on'")
    for which, needed in (
        ("header", "hash_fallback_header"),
        ("query_arg", "hash_fallback_query_arg"),
        ("uri_capture", "hash_fallback_uri_capture"),
    ):
        if fallback == which and entity.get(needed) is None:
            errs.append("failed conditional validation given value of field 'hash_fallback'")
    if hash_on == "none" and fallback not in (None, "none"):
        errs.append("failed conditional validation given value of field 'hash_on'")
    if hash_on == "cookie" and fallback not in (None, "none"):
        errs.append("failed conditional validation given value of field 'hash_on'")
    return errs


def apply_upstream_shorthands(data: dict[str, Any]) -> None:
    """``algorithm``/``hash_on`` imply each other (upstreams.lua shorthand_fields)."""
    algo = data.get("algorithm")
    if algo in ("least-connections", "latency") and "hash_on" not in data:
        data["hash_on"] = "none"
    hash_on = data.get("hash_on")
    if isinstance(hash_on, str) and hash_on != "none" and "algorithm" not in data:
        data["algorithm"] = "consistent-hashing"
    if hash_on == "none" and "algorithm" not in data:
        data["algorithm"] = "round-robin"


def healthchecks_enabled(upstream: Mapping[str, Any]) -> bool:
    """Whether the upstream's health checker is active (any interval or threshold set)."""
    hc = upstream.get("healthchecks") or {}
    active = hc.get("active") or {}
    passive = hc.get("passive") or {}

    def nz(rec: Any, *keys: str) -> bool:
        return isinstance(rec, dict) and any((rec.get(k) or 0) > 0 for k in keys)

    return (
        nz(active.get("healthy"), "interval")
        or nz(active.get("unhealthy"), "interval")
        or nz(passive.get("healthy"), "successes")
        or nz(passive.get("unhealthy"), "http_failures", "tcp_failures", "timeouts")
    )


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class VersionProfile:
    """What changes with the Kong version being simulated."""

    version: str
    parts: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        nums = re.findall(r"\d+", self.version)
        self.parts = tuple(int(n) for n in nums[:3]) or (3, 9, 3)

    @property
    def has_updated_at(self) -> bool:
        return self.parts >= (3, 3)

    @property
    def post_upserts_targets(self) -> bool:
        """2.2 to 2.8: POST of an existing host:port updated it (200 + ``Deprecation: true``)."""
        return self.parts < (3, 0)

    @property
    def health_verb(self) -> str:
        return "POST" if self.parts < (3, 0) else "PUT"
