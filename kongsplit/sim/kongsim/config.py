"""DB-less declarative configuration: ``GET /config``, ``POST /config`` and the config hash.

Restates Kong 3.9.3 (docs/kong.md "DB-less" and "Simulator fidelity"):

- Reading: :mod:`kongsplit.sim.kongsim.dialect` (cjson, then lyaml, the md5 of the string).
- Checking (:func:`validate_config`), in Kong's order (kong/db/schema/others/
  declarative_config.lua ``flatten``): first the schema of the whole document — every entity's
  fields by type, so a number where a string belongs is refused in *any* entity, not only in
  upstreams and targets — then the IDs Kong generates, uniqueness and references
  (``generate_ids``, ``populate_references``, ``validate_references``). Errors are Kong's nested
  error table (entity lists as Lua arrays with holes), its message ``pl.pretty``-printed
  (kong/db/errors.lua ``declarative_config``), and with ``flatten_errors`` the entity errors move
  to ``flattened_errors`` (kong/db/errors.lua ``declarative_config_flattened``).
- Loading (:func:`load_config`) happens only after the whole config is valid, and replaces the
  node's configuration at once (kong/db/declarative/import.lua ``load_into_cache``: one LMDB
  transaction, committed at its end); the hash is 32 zeros when no entity was loaded.
- Export (:func:`export_text`): kong/db/declarative/export.lua ``export_from_db`` — every field,
  nulls included (``GLOBAL_QUERY_OPTS = { nulls = true }``), foreign keys as their id, entity
  types in the schemas' topological order, rows by primary key (the LMDB keys' order), written
  by lyaml one entity at a time (``configtext.export_lyaml``).

Entity types other than upstreams and targets are type-checked but carried verbatim (the
simulator does not model services, routes, ...), so a GET → edit → POST cycle keeps them.
"""

from __future__ import annotations

import copy
import math
import uuid
from collections.abc import Iterator
from typing import Any

from kongsplit.kong import configtext
from kongsplit.sim.kongsim.dialect import is_table, md5, pl_pretty
from kongsplit.sim.kongsim.schema import (
    TARGET_FIELDS,
    UPSTREAM_FIELDS,
    KongApiError,
    VersionProfile,
    apply_upstream_shorthands,
    format_target,
    is_uuid,
    lua_repr,
    upstream_entity_checks,
    validate_fields,
)
from kongsplit.sim.kongsim.store import Entity, Store

__all__ = [
    "EMPTY_HASH",
    "Loaded",
    "export_config",
    "export_text",
    "hash_of_store",
    "load_config",
    "md5",
    "table_hash",
    "validate_config",
]

EMPTY_HASH = "0" * 32  # kong/constants.lua DECLARATIVE_EMPTY_CONFIG_HASH
FORMAT_VERSIONS = ("1.1", "2.1", "3.0")
# declarative_config.lua build_fields / add_extra_attributes: the only top-level "_" fields.
_META = {"_format_version": "string", "_transform": "boolean", "_comment": "string"}
_IGNORE = "_ignore"

# --- the entity schemas, by field type (kong/db/schema/entities/*.lua, bundled plugins' daos.lua)
# Types: string, uuid, integer, number, boolean, strings (array of strings), stringset, tags,
# record (any table), map, foreign (a name/id string or an {id=...} record), records (array of
# tables), array (array of anything).
_TS = {"created_at": "integer", "updated_at": "integer"}
_ENTITY_FIELDS: dict[str, dict[str, str]] = {
    "workspaces": {
        "id": "uuid",
        "name": "string",
        "comment": "string",
        "meta": "record",
        "config": "record",
        **_TS,
    },
    "consumers": {"id": "uuid", "username": "string", "custom_id": "string", "tags": "tags", **_TS},
    "certificates": {
        "id": "uuid",
        "cert": "string",
        "key": "string",
        "cert_alt": "string",
        "key_alt": "string",
        "tags": "tags",
        "snis": "array",  # names (a transient field) or nested sni entities
        **_TS,
    },
    "ca_certificates": {
        "id": "uuid",
        "cert": "string",
        "cert_digest": "string",
        "tags": "tags",
        **_TS,
    },
    "services": {
        "id": "uuid",
        "name": "string",
        "retries": "integer",
        "protocol": "string",
        "host": "string",
        "port": "integer",
        "path": "string",
        "connect_timeout": "integer",
        "write_timeout": "integer",
        "read_timeout": "integer",
        "tags": "tags",
        "client_certificate": "foreign",
        "tls_verify": "boolean",
        "tls_verify_depth": "integer",
        "ca_certificates": "strings",
        "enabled": "boolean",
        "url": "string",  # shorthand field
        **_TS,
    },
    "routes": {
        "id": "uuid",
        "name": "string",
        "protocols": "stringset",
        "methods": "stringset",
        "hosts": "strings",
        "paths": "strings",
        "headers": "map",
        "https_redirect_status_code": "integer",
        "regex_priority": "integer",
        "strip_path": "boolean",
        "path_handling": "string",
        "preserve_host": "boolean",
        "request_buffering": "boolean",
        "response_buffering": "boolean",
        "snis": "stringset",
        "sources": "records",
        "destinations": "records",
        "tags": "tags",
        "service": "foreign",
        "expression": "string",  # the expressions flavour's fields
        "priority": "integer",
        **_TS,
    },
    "snis": {"id": "uuid", "name": "string", "tags": "tags", "certificate": "foreign", **_TS},
    "plugins": {
        "id": "uuid",
        "name": "string",
        "instance_name": "string",
        "route": "foreign",
        "service": "foreign",
        "consumer": "foreign",
        "config": "record",
        "protocols": "stringset",
        "enabled": "boolean",
        "tags": "tags",
        **_TS,
    },
    "parameters": {"key": "string", "value": "string", "created_at": "integer"},
    "vaults": {
        "id": "uuid",
        "prefix": "string",
        "name": "string",
        "description": "string",
        "config": "record",
        "tags": "tags",
        **_TS,
    },
    "key_sets": {"id": "uuid", "name": "string", "tags": "tags", **_TS},
    "keys": {
        "id": "uuid",
        "set": "foreign",
        "name": "string",
        "kid": "string",
        "jwk": "string",
        "pem": "record",
        "tags": "tags",
        **_TS,
    },
    "filter_chains": {
        "id": "uuid",
        "name": "string",
        "enabled": "boolean",
        "route": "foreign",
        "service": "foreign",
        "filters": "records",
        "tags": "tags",
        **_TS,
    },
    "acls": {
        "id": "uuid",
        "consumer": "foreign",
        "group": "string",
        "tags": "tags",
        "created_at": "integer",
    },
    "keyauth_credentials": {
        "id": "uuid",
        "consumer": "foreign",
        "key": "string",
        "ttl": "integer",
        "tags": "tags",
        "created_at": "integer",
    },
    "basicauth_credentials": {
        "id": "uuid",
        "consumer": "foreign",
        "username": "string",
        "password": "string",
        "tags": "tags",
        "created_at": "integer",
    },
    "hmacauth_credentials": {
        "id": "uuid",
        "consumer": "foreign",
        "username": "string",
        "secret": "string",
        "tags": "tags",
        "created_at": "integer",
    },
    "jwt_secrets": {
        "id": "uuid",
        "consumer": "foreign",
        "key": "string",
        "secret": "string",
        "rsa_public_key": "string",
        "algorithm": "string",
        "tags": "tags",
        "created_at": "integer",
    },
    "oauth2_credentials": {
        "id": "uuid",
        "consumer": "foreign",
        "name": "string",
        "client_id": "string",
        "client_secret": "string",
        "hash_secret": "boolean",
        "redirect_uris": "strings",
        "client_type": "string",
        "tags": "tags",
        "created_at": "integer",
    },
}
# The foreign keys (child entity, field) → parent entity; the declarative schema nests each
# child under its parent (declarative_config.lua nest_foreign_relationships).
_FOREIGN: dict[str, dict[str, str]] = {
    "services": {"client_certificate": "certificates"},
    "routes": {"service": "services"},
    "snis": {"certificate": "certificates"},
    "upstreams": {"client_certificate": "certificates"},
    "targets": {"upstream": "upstreams"},
    "plugins": {"route": "routes", "service": "services", "consumer": "consumers"},
    "keys": {"set": "key_sets"},
    "filter_chains": {"route": "routes", "service": "services"},
    **{
        cred: {"consumer": "consumers"}
        for cred in (
            "acls",
            "keyauth_credentials",
            "basicauth_credentials",
            "hmacauth_credentials",
            "jwt_secrets",
            "oauth2_credentials",
        )
    },
}
_CHILDREN: dict[str, dict[str, str]] = {}  # parent → {child entity: its foreign field}
for _child, _fks in _FOREIGN.items():
    for _field, _parent in _fks.items():
        _CHILDREN.setdefault(_parent, {})[_child] = _field
# Enterprise-only entity types the simulator accepts unchecked (an Enterprise node knows them).
_UNCHECKED = frozenset({"consumer_groups", "mtls_auth_credentials"})
_KNOWN = frozenset({*_ENTITY_FIELDS, "upstreams", "targets", *_UNCHECKED})


def _export_order() -> list[str]:
    """kong/db/schema/topological_sort.lua over Kong's schemas: core first, alphabetical, then a
    depth-first sort putting every entity before those with a foreign key to it."""
    core = [
        "workspaces",
        "consumers",
        "certificates",
        "services",
        "routes",
        "snis",
        "upstreams",
        "targets",
        "plugins",
        "ca_certificates",
        "parameters",
        "vaults",
        "key_sets",
        "keys",
        "filter_chains",
    ]
    names = core + sorted(n for n in _KNOWN if n not in core)
    score = {n: (2 if n == "workspaces" else 1 if n in core else 0) for n in names}
    items = sorted(names, key=lambda n: (score[n], [-ord(c) for c in n] + [1]))
    pointing: dict[str, list[str]] = {}
    for source in items:
        for parent in _FOREIGN.get(source, {}).values():
            pointing.setdefault(parent, []).append(source)
    ordered: list[str] = []
    visited: set[str] = set()

    def visit(name: str) -> None:
        if name in visited:
            return
        visited.add(name)
        for child in pointing.get(name, []):
            visit(child)
        ordered.insert(0, name)

    for name in items:
        visit(name)
    return ordered


EXPORT_ORDER = _export_order()

# --- IDs (declarative_config.lua generate_ids / generate_uuid, resty.jit-uuid's v5) -------------
_KONG_NS = uuid.UUID("fd02801f-0957-4a15-a55a-c8d9606f30b5")


def kong_uuid(entity: str, key: str) -> str:
    """``generate_uuid(entity, key)``: v5 of ``key`` in the namespace v5(Kong's, entity)."""
    return str(uuid.uuid5(uuid.uuid5(_KONG_NS, entity), key))


def md5_hash(text: str | bytes) -> str:
    return md5(text)


def table_hash(config: Any) -> str:
    """The hash of a config posted as a table (the JSON body itself): kong/db/declarative/
    init.lua ``parse_table`` takes ``md5(cjson_encode({entities, meta}))`` of the *flattened*
    entities. cjson writes a Lua table's keys in ``pairs`` order, which LuaJIT varies from one
    process to the next, so no client can predict it; the simulator uses the MD5 of a canonical
    JSON of the same pair, which, like Kong's, is never the MD5 of the posted text."""
    return md5(configtext.dump_json(["kong-sim table form", _canonical(config)]))


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


class Loaded:
    """A validated declarative config, ready to replace a node's store."""

    def __init__(self) -> None:
        self.upstreams: list[Entity] = []
        self.targets: list[Entity] = []
        self.target_text: dict[str, str] = {}  # target id → the text as posted
        self.extra: dict[str, Any] = {}

    @property
    def empty(self) -> bool:
        """import.lua ``config_is_empty``: no entity at all (only the default workspace)."""
        return not self.upstreams and not self.targets and not any(self.extra.values())

    def response_body(self, store: Store) -> dict[str, Any]:
        """POST /config's 201 body: the flattened entities by id, per type present
        (kong/api/routes/config.lua, ``sanitize_output`` drops workspaces)."""
        ws = store.workspaces["default"]
        body: dict[str, Any] = {}
        if self.upstreams:
            body["upstreams"] = {u["id"]: ws.upstreams[u["id"]] for u in self.upstreams}
        if self.targets:
            body["targets"] = {t["id"]: ws.targets[t["id"]] for t in self.targets}
        for key, rows in self.extra.items():
            if rows:
                body[key] = {
                    str(r.get("id") or i): r for i, r in enumerate(rows, 1) if isinstance(r, dict)
                }
        return body


# --- phase 1: the schema of the whole document ----------------------------------------------------
def _type_error(kind: str, value: Any) -> Any:
    """The error of one value against a field type (kong/db/schema/init.lua messages)."""
    if kind in ("string", "uuid"):
        if not isinstance(value, str):
            return "expected a string"
        if kind == "uuid" and not is_uuid(value):
            return "expected a valid UUID"
        return None
    if kind == "integer":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value != math.floor(value):
            return "expected an integer"
        return None
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "expected a number"
        return None
    if kind == "boolean":
        return None if isinstance(value, bool) else "expected a boolean"
    if kind in ("record", "map"):
        if isinstance(value, dict) or value == []:
            return None
        return f"expected a {kind}"
    if kind == "foreign":
        if isinstance(value, str | dict):
            return None
        return "expected a record"
    # arrays and sets: a Lua sequence (an empty table is one)
    what = "expected a set" if kind in ("stringset", "tags") else "expected an array"
    if value == {}:
        return None
    if not isinstance(value, list):
        return what
    if kind in ("strings", "stringset", "tags"):
        return _holes([None if isinstance(v, str) else "expected a string" for v in value])
    if kind == "records":
        return _holes([None if isinstance(v, dict) else "expected a record" for v in value])
    return None


def _holes(errors: list[Any]) -> list[Any] | None:
    """A Lua array of errors: trailing holes dropped (cjson writes up to the last index)."""
    while errors and errors[-1] is None:
        errors.pop()
    return errors or None


def _check_typed(entity: str, raw: dict[str, Any], parent_fk: str | None) -> dict[str, Any]:
    """Field types of an entity the simulator carries verbatim, with its nested children."""
    errs: dict[str, Any] = {}
    fields = _ENTITY_FIELDS.get(entity, {})
    children = _CHILDREN.get(entity, {})
    for key, value in raw.items():
        if key in children and key not in fields:
            sub = _check_children(key, value, _CHILDREN[entity][key])
            if sub is not None:
                errs[key] = sub
            continue
        if key == _IGNORE:
            continue
        kind = fields.get(key)
        if kind is None:
            errs[key] = "unknown field"
        elif key == parent_fk and value is not None:
            errs[key] = "value must be null"
        elif value is not None:
            err = _type_error(kind, value)
            if err is not None:
                errs[key] = err
    return errs


def _check_children(entity: str, value: Any, parent_fk: str | None) -> Any:
    """A list of ``entity`` records nested in a parent (or at the top when parent_fk is None)."""
    if value is None or value == {}:
        return None
    if not isinstance(value, list):
        return "expected an array"
    errors: list[Any] = []
    for raw in value:
        if not isinstance(raw, dict):
            errors.append("expected a record")
        elif entity in _UNCHECKED:
            errors.append(None)
        else:
            errors.append(_check_typed(entity, raw, parent_fk) or None)
    return _holes(errors)


# --- upstreams and targets ---------------------------------------------------------------------
class _Target:
    def __init__(self, raw: dict[str, Any], parent: dict[str, Any] | None, where: tuple[Any, ...]):
        self.raw = raw
        self.parent = parent  # the upstream it is nested in (its raw dict), if any
        self.where = where  # the path of its error in the error table


def _check_upstream(raw: dict[str, Any]) -> tuple[Entity, dict[str, Any]]:
    data = {k: v for k, v in raw.items() if k not in ("targets", _IGNORE)}
    apply_upstream_shorthands(data)
    entity, errs = validate_fields(UPSTREAM_FIELDS, data, coerce=False, partial=False)
    errs = _lua_errors(errs)
    if not errs:
        checks = upstream_entity_checks(entity)
        if checks:
            errs["@entity"] = checks
    return entity, errs


def _check_target(raw: dict[str, Any], nested: bool) -> tuple[Entity, dict[str, Any]]:
    data = {k: v for k, v in raw.items() if k != _IGNORE}
    errs: dict[str, Any] = {}
    ref = data.pop("upstream", None)
    if nested and ref is not None:
        errs["upstream"] = "value must be null"
    elif not nested and ref is None:
        errs["upstream"] = "required field missing"
    elif not nested and not isinstance(ref, str | dict):
        errs["upstream"] = "expected a record"
    data["upstream"] = {"id": str(uuid.UUID(int=0))}  # checked by reference later
    written = data.get("target")
    if isinstance(written, str):
        formatted = format_target(written)
        if formatted is None:
            # kong/db/schema/entities/targets.lua validate_target
            errs["target"] = f"Invalid target ('{written}'); not a valid hostname or ip address"
        else:
            data["target"] = formatted
    entity, field_errs = validate_fields(TARGET_FIELDS, data, coerce=False, partial=False)
    for key, err in _lua_errors(field_errs).items():
        errs.setdefault(key, err)
    return entity, errs


def _lua_errors(errs: Any) -> Any:
    """schema.py's error lists hold a None for every valid item: make them Lua arrays."""
    if isinstance(errs, dict):
        return {k: _lua_errors(v) for k, v in errs.items()}
    if isinstance(errs, list):
        return _holes([_lua_errors(v) for v in errs])
    return errs


def _set(errors: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    """errors[path] = value, creating Lua tables (lists for integer keys) on the way."""
    node: Any = errors
    for n, key in enumerate(path):
        last = n == len(path) - 1
        if isinstance(node, list) and not isinstance(key, int):
            # a Lua table with integer and other keys: cjson writes it as an object
            raise AssertionError("mixed error table: convert it first")  # pragma: no cover
        if not isinstance(node, list | dict):
            return  # an error already stands for the whole entity (Kong overwrites likewise)
        if isinstance(node, list):
            index = key - 1
            while len(node) <= index:
                node.append(None)
            if last:
                node[index] = value
                return
            if node[index] is None:
                node[index] = [] if isinstance(path[n + 1], int) else {}
            node = node[index]
        else:
            if last:
                node[key] = value
                return
            if node.get(key) is None:
                node[key] = [] if isinstance(path[n + 1], int) else {}
            node = node[key]


def validate_config(
    data: dict[Any, Any] | list[Any], *, flatten: bool = False, workspace: str = "default"
) -> Loaded:
    """Check a parsed declarative config and build the entities; raise Kong's code-14 400."""
    del workspace  # the declarative config has the default workspace only ("*" in its keys)
    data = copy.deepcopy(data)  # Kong writes generated ids into its input; keep the caller's
    table: dict[Any, Any] = (
        data if isinstance(data, dict) else {n: v for n, v in enumerate(data, 1)}
    )
    errors: dict[Any, Any] = {}
    fv = table.get("_format_version")
    if fv is None:
        errors["_format_version"] = "required field missing"
    elif not isinstance(fv, str):
        errors["_format_version"] = "expected a string"
    elif fv not in FORMAT_VERSIONS:
        errors["_format_version"] = "expected one of: " + ", ".join(FORMAT_VERSIONS)
    for key, value in table.items():
        if key == "_format_version" or value is None:
            continue
        if key in _META:
            err = _type_error(_META[key], value)
            if err is not None:
                errors[key] = err
        elif key == _IGNORE:
            err = _type_error("array", value)
            if err is not None:
                errors[key] = err
        elif key in ("upstreams", "targets"):
            if not isinstance(value, list) and value != {}:
                errors[key] = "expected an array"
        elif isinstance(key, str) and key in _KNOWN:
            err = _check_children(key, value, None)
            if err is not None:
                errors[key] = err
        else:
            errors[key] = "unknown field"

    loaded = Loaded()
    got = table.get("upstreams")
    raw_upstreams: list[Any] = got if isinstance(got, list) else []
    got = table.get("targets")
    raw_targets: list[Any] = got if isinstance(got, list) else []
    upstreams: list[tuple[dict[str, Any], Entity]] = []
    targets: list[tuple[_Target, Entity]] = []
    for i, raw in enumerate(raw_upstreams, 1):
        if not isinstance(raw, dict):
            _set(errors, ("upstreams", i), "expected a record")
            continue
        entity, errs = _check_upstream(raw)
        nested = raw.get("targets")
        if nested is not None and not isinstance(nested, list) and nested != {}:
            errs["targets"] = "expected an array"
        elif isinstance(nested, list):
            for j, t in enumerate(nested, 1):
                if not isinstance(t, dict):
                    _set(errs, ("targets", j), "expected a record")
                    continue
                tentity, terrs = _check_target(t, nested=True)
                if terrs:
                    _set(errs, ("targets", j), terrs)
                targets.append((_Target(t, raw, ("upstreams", i, "targets", j)), tentity))
        if errs:
            _set(errors, ("upstreams", i), errs)
        upstreams.append((raw, entity))
    for j, raw in enumerate(raw_targets, 1):
        if not isinstance(raw, dict):
            _set(errors, ("targets", j), "expected a record")
            continue
        tentity, terrs = _check_target(raw, nested=False)
        if terrs:
            _set(errors, ("targets", j), terrs)
        targets.append((_Target(raw, None, ("targets", j)), tentity))
    if errors:
        raise _declarative_error(errors, table, flatten)

    # --- phase 2: IDs, uniqueness, references (generate_ids, populate_references) -------------
    ids: dict[int, str] = {}  # id(raw upstream) → its id
    names: dict[str, str] = {}
    by_id: dict[str, Entity] = {}
    for raw, entity in upstreams:
        if raw.get("id") is None:
            # upstreams have no cache_key; their endpoint key (name) is unique
            entity["id"] = kong_uuid("upstreams", entity["name"])
            raw["id"] = entity["id"]
        ids[id(raw)] = entity["id"]
    target_ids: set[str] = set()
    # populate_references: an upstream's nested targets first, then the upstream itself
    for i, (raw, entity) in enumerate(upstreams, 1):
        for t, tentity in targets:
            if t.parent is raw:
                _target_identity(t, tentity, ids[id(raw)], target_ids, errors)
        if entity["name"] in names:
            _set(errors, ("upstreams", i), _unique_msg("upstreams", "name", entity["name"]))
        elif entity["id"] in by_id:
            _set(errors, ("upstreams", i), _unique_msg("upstreams", "primary key", entity["id"]))
        else:
            names[entity["name"]] = entity["id"]
            by_id[entity["id"]] = entity
            loaded.upstreams.append(entity)
    for t, tentity in targets:
        if t.parent is None:
            _target_identity(t, tentity, None, target_ids, errors)
    # validate_references: a top-level target's upstream, by name or id
    seen: set[tuple[str, str]] = set()
    for t, tentity in targets:
        if not tentity["id"]:
            continue  # a duplicate primary key, reported
        if t.parent is not None:
            up_id: str | None = ids[id(t.parent)]
        else:
            ref = t.raw.get("upstream")
            key = ref.get("id", ref) if isinstance(ref, dict) else ref
            up_id = names.get(key) if isinstance(key, str) else None
            if up_id is None and isinstance(key, str) and key.lower() in by_id:
                up_id = key.lower()
            if up_id is None:
                shown = ref if isinstance(ref, str) else configtext.dump_json(ref)
                msg = f"invalid reference 'upstream: {shown}' (no such entry in 'upstreams')"
                at = tentity["id"]
                section = errors.get("targets")
                if isinstance(section, list):  # index-keyed errors too: one mixed Lua table
                    section = {n: v for n, v in enumerate(section, 1) if v is not None}
                section = section if isinstance(section, dict) else {}
                section[at] = [*(section.get(at) or []), msg]
                errors["targets"] = section
                continue
        assert up_id is not None
        tentity["upstream"] = {"id": up_id}
        if (up_id, tentity["target"]) in seen:
            # Kong accepts two spellings of one address (the simulator keys targets by it)
            value = lua_repr({"target": tentity["target"], "upstream": {"id": up_id}})
            _set(
                errors,
                t.where,
                "uniqueness violation: 'targets' entity with cache_key set to "
                f"'{value}' already declared",
            )
            continue
        seen.add((up_id, tentity["target"]))
        if isinstance(t.raw.get("target"), str):
            loaded.target_text[tentity["id"]] = t.raw["target"]
        loaded.targets.append(tentity)
    if errors:
        raise _declarative_error(errors, table, flatten)
    for key, value in table.items():
        if isinstance(key, str) and key in _KNOWN and key not in ("upstreams", "targets"):
            loaded.extra[key] = value if isinstance(value, list) else []
    return loaded


def _target_identity(
    t: _Target, entity: Entity, parent_id: str | None, seen: set[str], errors: dict[str, Any]
) -> None:
    """A target's id (given, or generated from its cache key) and the primary-key check."""
    if t.raw.get("id") is None:
        # build_cache_key: {"targets", "*", upstream, target}; a nested target's upstream is
        # its parent's id, a top-level one's the string written (a record adds nothing)
        parts = ["targets", "*"]
        ref = parent_id if parent_id is not None else t.raw.get("upstream")
        if isinstance(ref, str):
            parts.append(ref)
        parts.append(t.raw["target"])
        entity["id"] = kong_uuid("targets", ":".join(parts))
        t.raw["id"] = entity["id"]
    if entity["id"] in seen:
        _set(errors, t.where, _unique_msg("targets", "primary key", entity["id"]))
        entity["id"] = ""  # not loaded
    seen.add(entity["id"])


def _unique_msg(entity: str, key: str, value: str) -> str:
    return f"uniqueness violation: '{entity}' entity with {key} set to '{value}' already declared"


# --- the error answer --------------------------------------------------------------------------
def _declarative_error(errors: dict[Any, Any], table: dict[Any, Any], flatten: bool) -> Exception:
    """kong/db/errors.lua ``declarative_config`` (and ``declarative_config_flattened``, which
    drains the entity errors into ``flattened_errors`` *before* the message is written)."""
    flattened: list[dict[str, Any]] = []
    if flatten:
        flattened = _flatten(errors, table)
    body: dict[str, Any] = {
        "code": 14,
        "name": "invalid declarative configuration",
        "message": f"declarative config is invalid: {pl_pretty(errors)}",
        "fields": _json_keys(errors),
    }
    if flatten:
        body["flattened_errors"] = flattened
    return KongApiError(400, body)


def _json_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_keys(v) for v in value]
    return value


def _drain_keys(table: dict[Any, Any] | list[Any]) -> list[Any]:
    """errors.lua ``drain``: the keys sorted, then taken from the end (so in reverse)."""
    if isinstance(table, list):
        return [n for n in range(len(table), 0, -1) if table[n - 1] is not None]
    return sorted(table, key=lambda k: (isinstance(k, str), k), reverse=True)


def _get(table: Any, key: Any) -> Any:
    if isinstance(table, list):
        return table[key - 1] if isinstance(key, int) and 0 < key <= len(table) else None
    return table.get(key) if isinstance(table, dict) else None


def _flatten(errors: dict[Any, Any], table: dict[Any, Any]) -> list[dict[str, Any]]:
    """errors.lua ``flatten_errors``: each entity section's errors become entries, removed
    from ``errors``; what cannot be tied to an entity stays."""
    flattened: list[dict[str, Any]] = []
    for section in _drain_keys(errors):
        section_errors = errors.pop(section)
        entities = table.get(section)
        if not isinstance(section_errors, dict | list) or not isinstance(entities, list):
            errors[section] = section_errors
            continue
        kept: dict[Any, Any] = {}
        for i in _drain_keys(section_errors):
            entity = _get(entities, i) if isinstance(i, int) else None
            err = _get(section_errors, i)
            if isinstance(entity, dict):
                _add_entity_errors(section, dict(entity), err, flattened)
            else:
                kept[i] = err
        if kept:
            errors[section] = kept
    return flattened


def _add_entity_errors(
    entity_type: str, entity: dict[str, Any], err_t: Any, flattened: list[dict[str, Any]]
) -> None:
    if isinstance(err_t, str):
        err_t = {"@entity": err_t}
    elif not isinstance(err_t, dict) or not err_t:
        return
    err_t = dict(err_t)
    eid = entity.get("id")
    pk = {"id": eid} if isinstance(eid, str) and is_uuid(eid) else None
    for child, fk in _CHILDREN.get(entity_type, {}).items():
        value = entity.get(child)
        if not isinstance(value, list):
            continue
        del entity[child]
        child_errs = err_t.pop(child, None)
        if child_errs is None:
            continue
        for n, item in enumerate(value, 1):
            if not isinstance(item, dict):
                continue
            item = dict(item)
            if item.get(fk) is None and pk is not None:
                item[fk] = pk
            _add_entity_errors(child, item, _get(child_errs, n), flattened)
    if not err_t:
        return
    entry_errors = _categorize(err_t, "")
    name = entity.get("name")
    tags = entity.get("tags")
    out: dict[str, Any] = {}
    if isinstance(name, str) and name:
        out["entity_name"] = name
    if pk is not None:
        out["entity_id"] = pk["id"]
    if isinstance(tags, list) and all(isinstance(t, str) for t in tags):
        out["entity_tags"] = tags if tags else {}
    out["entity_type"] = entity_type[:-1] if entity_type.endswith("s") else entity_type
    out["entity"] = entity
    out["errors"] = entry_errors
    flattened.append(out)


def _categorize(errs: Any, ns: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key in _drain_keys(errs):
        err = _get(errs, key)
        if key == "@entity":
            for message in err if isinstance(err, list) else [err]:
                if message is not None:
                    out.append({"type": "entity", "message": message})
        elif isinstance(err, str):
            field = f"{ns}.{key}" if ns else str(key)
            out.append({"type": "field", "field": field, "message": err})
        elif isinstance(err, dict | list):
            out.extend(_categorize(err, f"{ns}.{key}" if ns else str(key)))
    return out


# --- loading and exporting ----------------------------------------------------------------------
def load_config(store: Store, loaded: Loaded, profile: VersionProfile) -> None:
    """Replace everything in the store's default workspace with ``loaded`` (all or nothing)."""
    ws = store.workspaces["default"]
    previous = {u["id"]: u["name"] for u in ws.upstreams.values()}
    now = store.wall_clock()
    upstreams: list[Entity] = []
    for entity in loaded.upstreams:
        e = dict(entity)
        if not isinstance(e.get("created_at"), int):
            e["created_at"] = int(now)
        if profile.has_updated_at and not isinstance(e.get("updated_at"), int):
            e["updated_at"] = int(now)
        upstreams.append(
            {k: e.get(k) for k in UPSTREAM_FIELDS if k != "updated_at" or profile.has_updated_at}
        )
    targets: list[Entity] = []
    for entity in loaded.targets:
        e = dict(entity)
        if not isinstance(e.get("created_at"), int | float):
            e["created_at"] = round(now, 3)
        if profile.has_updated_at and not isinstance(e.get("updated_at"), int | float):
            e["updated_at"] = round(now, 3)
        targets.append(
            {k: e.get(k) for k in TARGET_FIELDS if k != "updated_at" or profile.has_updated_at}
        )
    # Everything is built: now the swap, which cannot fail half-way.
    store.wipe()  # also drops the sorted id index: rebuilt on the next listing
    for e in upstreams:
        ws.upstreams[e["id"]] = e
        ws.upstream_ids_by_name[e["name"]] = e["id"]
        ws.targets_by_upstream[e["id"]] = {}
    for e in targets:
        ws.targets[e["id"]] = e
        ws.targets_by_upstream[e["upstream"]["id"]][e["target"]] = e["id"]
    store.declarative_extra = dict(loaded.extra)
    store.declarative_target_text = dict(loaded.target_text)
    for uid in sorted(set(previous) | set(ws.upstreams)):
        store.commit_upstream(ws, uid, node=None, name=previous.get(uid))


def export_config(store: Store) -> dict[str, Any]:
    """The export's table (export.lua ``export_from_db_impl``): ``_format_version`` "3.0",
    ``_transform`` false, then each entity type in :data:`EXPORT_ORDER`, rows by id, every
    field with its nulls, a foreign key as its id."""
    ws = store.workspaces["default"]
    out: dict[str, Any] = {"_format_version": "3.0", "_transform": False}
    sections: dict[str, list[Any]] = {k: list(v) for k, v in store.declarative_extra.items() if v}
    sections["upstreams"] = [dict(u) for u in store.list_upstreams(ws)]
    rows = []
    for t in sorted(ws.targets.values(), key=lambda e: str(e["id"])):
        row = dict(t)
        row["upstream"] = t["upstream"]["id"]
        row["target"] = store.declarative_target_text.get(t["id"], t["target"])
        rows.append(row)
    sections["targets"] = rows
    for name in EXPORT_ORDER:
        if sections.get(name):
            out[name] = sections.pop(name)
    for name in sorted(sections):  # types the order does not know (Enterprise's)
        if sections[name]:
            out[name] = sections[name]
    return out


def export_text(store: Store) -> str:
    """``GET /config``'s text: lyaml's dump of :func:`export_config`, one entity at a time."""
    return configtext.export_lyaml(export_config(store))


def hash_of_store(store: Store) -> str:
    """The hash after a helper changed a DB-less config behind the API's back.

    Such a change stands for another writer's ``POST /config``, and Kong's hash for a posted
    string is the md5 of that string (kong/db/declarative/init.lua ``_M:unserialize``). The
    simulator takes the text the node would now export: posting it back is then the same
    configuration, with the same hash (``check_hash=1`` answers 304). No entity: 32 zeros
    (kong/db/declarative/import.lua ``load_into_cache``)."""
    ws = store.workspaces["default"]
    if not ws.upstreams and not ws.targets and not any(store.declarative_extra.values()):
        return EMPTY_HASH
    return md5(export_text(store))


def iter_strings(value: Any) -> Iterator[str]:
    """Every string in a config (keys and values), for tests and diagnostics."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from iter_strings(k)
            yield from iter_strings(v)
    elif is_table(value):
        for v in value:
            yield from iter_strings(v)
