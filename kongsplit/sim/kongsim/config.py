"""DB-less declarative configuration: ``GET /config``, ``POST /config`` and the config hash.

Restates docs/kong.md "DB-less" (kong/db/declarative/export.lua, kong/api/routes/config.lua): a flat
YAML export with IDs and foreign keys as IDs; full
replacement on POST in its three body forms; ``?check_hash=1`` (304 only for string forms,
because the hash is the MD5 of that string); code-14 errors, optionally flattened; the empty
configuration reports 32 zeros. Entity types other than upstreams/targets are carried through
opaquely so that a GET → edit → POST cycle does not lose a KIC-written config's services.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import yaml

from kongsplit.sim.kongsim.schema import (
    TARGET_FIELDS,
    UPSTREAM_FIELDS,
    VersionProfile,
    apply_upstream_shorthands,
    declarative_error,
    format_target,
    is_uuid,
    lua_repr,
    upstream_entity_checks,
    validate_fields,
)
from kongsplit.sim.kongsim.store import Entity, Store

EMPTY_HASH = "0" * 32
FORMAT_VERSIONS = ("1.1", "2.1", "3.0")
_META_KEYS = frozenset({"_format_version", "_transform", "_comment", "_workspace", "_info"})
# Entity types the simulator does not model but keeps verbatim across a load/export cycle.
_OPAQUE_ENTITIES = frozenset(
    {
        "services",
        "routes",
        "plugins",
        "consumers",
        "consumer_groups",
        "certificates",
        "ca_certificates",
        "snis",
        "vaults",
        "keys",
        "key_sets",
        "filter_chains",
        "acls",
        "keyauth_credentials",
        "basicauth_credentials",
        "hmacauth_credentials",
        "jwt_secrets",
        "oauth2_credentials",
        "mtls_auth_credentials",
        "parameters",
    }
)
_ID_NAMESPACE = uuid.UUID("fd02801f-0957-4a15-a9e1-ba8c5d8d4a22")  # the simulator's own


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def table_hash(config: Any) -> str:
    return md5(json.dumps(config, sort_keys=True, separators=(",", ":"), default=str))


class Loaded:
    """A validated declarative config, ready to replace a node's store."""

    def __init__(self) -> None:
        self.upstreams: list[Entity] = []
        self.targets: list[Entity] = []
        self.extra: dict[str, Any] = {}

    @property
    def empty(self) -> bool:
        return not self.upstreams and not self.targets and not any(self.extra.values())


def parse_config_text(text: str) -> Loaded:
    """Parse a YAML/JSON string; raise KongApiError (400) when it is not a valid config."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise declarative_error({"error": str(err)}, f"failed parsing: {err}") from None
    if not isinstance(data, dict):
        raise declarative_error({"error": "expected an object"}, "expected an object")
    return validate_config(data)


def validate_config(
    data: dict[str, Any], *, flatten: bool = False, workspace: str = "default"
) -> Loaded:
    """Check a parsed declarative config (nested or flat) and build the entities."""
    errors: dict[str, Any] = {}
    flat_errors: list[dict[str, Any]] = []
    loaded = Loaded()
    fv = data.get("_format_version")
    if fv is None:
        errors["_format_version"] = "required field missing"
    elif not isinstance(fv, str) or fv not in FORMAT_VERSIONS:
        errors["_format_version"] = "expected one of: " + ", ".join(FORMAT_VERSIONS)
    if "_transform" in data and not isinstance(data["_transform"], bool):
        errors["_transform"] = "expected a boolean"
    for key, value in data.items():
        if key in _META_KEYS or key in ("upstreams", "targets"):
            continue
        if key in _OPAQUE_ENTITIES:
            if value is not None and not isinstance(value, list):
                errors[key] = "expected an array"
            else:
                loaded.extra[key] = value or []
            continue
        errors[key] = "unknown field"

    names: dict[str, str] = {}
    up_errors: list[Any] = []
    raw_targets: list[tuple[dict[str, Any], str | None, int, str]] = []  # (raw, parent id, i)
    for i, raw in enumerate(_as_list(data.get("upstreams"), "upstreams", errors)):
        if not isinstance(raw, dict):
            up_errors.append("expected a record")
            continue
        raw = dict(raw)
        nested = raw.pop("targets", None)
        if raw.get("id") is None and isinstance(raw.get("name"), str):
            raw["id"] = str(uuid.uuid5(_ID_NAMESPACE, f"{workspace}:upstreams:{raw['name']}"))
        apply_upstream_shorthands(raw)
        entity, errs = validate_fields(UPSTREAM_FIELDS, raw, coerce=False, partial=False)
        if not errs:
            checks = upstream_entity_checks(entity)
            if checks:
                errs["@entity"] = checks
        if not errs and entity["id"] in {u["id"] for u in loaded.upstreams}:
            errs["@entity"] = [_dup_message("upstreams", entity["id"])]
        if not errs and entity["name"] in names:
            errs["@entity"] = [
                f"uniqueness violation: 'upstreams' entity with name set to "
                f"'{entity['name']}' already declared"
            ]
        up_errors.append(errs or None)
        if errs:
            flat_errors.append(_flat("upstream", raw, errs))
            continue
        loaded.upstreams.append(entity)
        names[entity["name"]] = entity["id"]
        if isinstance(nested, list):
            for j, t in enumerate(nested):
                raw_targets.append((t, entity["id"], j, f"upstreams.{i}"))
        elif nested is not None:
            errs = {"targets": "expected an array"}
            up_errors[-1] = errs
            flat_errors.append(_flat("upstream", raw, errs))
    if any(e is not None for e in up_errors):
        errors["upstreams"] = up_errors
    for j, t in enumerate(_as_list(data.get("targets"), "targets", errors)):
        raw_targets.append((t, None, j, "targets"))

    ids = {u["id"]: u for u in loaded.upstreams}
    seen_ids: set[str] = set()
    seen_keys: set[tuple[str, str]] = set()
    target_errors: list[Any] = []
    for raw, parent, _, _where in raw_targets:
        if not isinstance(raw, dict):
            target_errors.append("expected a record")
            continue
        raw = dict(raw)
        terrs: dict[str, Any] = {}
        up_ref = raw.get("upstream") if parent is None else {"id": parent}
        up_id = _resolve_upstream(up_ref, ids, names)
        if up_id is None:
            terrs["upstream"] = (
                "required field missing" if up_ref is None else "could not find the entity"
            )
        written = raw.get("target")
        if isinstance(written, str):
            formatted = format_target(written)
            if formatted is None:
                terrs["target"] = "Invalid target; not a valid hostname or ip address"
            else:
                raw["target"] = formatted
        if up_id is not None:
            raw["upstream"] = {"id": up_id}
            if raw.get("id") is None and isinstance(written, str):
                raw["id"] = str(uuid.uuid5(_ID_NAMESPACE, f"{workspace}:targets:{up_id}:{written}"))
        tentity: Entity = {}
        if not terrs:
            tentity, terrs = validate_fields(TARGET_FIELDS, raw, coerce=False, partial=False)
        if not terrs and tentity["id"] in seen_ids:
            terrs["@entity"] = [_dup_message("targets", tentity["id"])]
        if not terrs and (tentity["upstream"]["id"], tentity["target"]) in seen_keys:
            terrs["@entity"] = [
                "uniqueness violation: 'targets' entity with cache_key set to "
                f"'{lua_repr({'target': tentity['target'], 'upstream': tentity['upstream']})}' "
                "already declared"
            ]
        target_errors.append(terrs or None)
        if terrs:
            flat_errors.append(_flat("target", raw, terrs))
            continue
        seen_ids.add(tentity["id"])
        seen_keys.add((tentity["upstream"]["id"], tentity["target"]))
        loaded.targets.append(tentity)
    if any(e is not None for e in target_errors):
        errors["targets"] = target_errors
    if errors or flat_errors:
        err = declarative_error(errors, lua_repr(errors))
        if flatten:
            err.body["flattened_errors"] = flat_errors
        raise err
    return loaded


def _as_list(value: Any, key: str, errors: dict[str, Any]) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, dict) and not value:
        return []
    if not isinstance(value, list):
        errors[key] = "expected an array"
        return []
    return value


def _resolve_upstream(ref: Any, ids: dict[str, Entity], names: dict[str, str]) -> str | None:
    if isinstance(ref, dict):
        ref = ref.get("id")
    if not isinstance(ref, str):
        return None
    if is_uuid(ref) and ref.lower() in ids:
        return ref.lower()
    return names.get(ref)


def _dup_message(entity: str, pk: str) -> str:
    return (
        f"uniqueness violation: '{entity}' entity with primary key set to '{pk}' already declared"
    )


def _flat(entity_type: str, raw: dict[str, Any], errs: dict[str, Any]) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for key, msg in errs.items():
        if key == "@entity":
            items.extend({"type": "entity", "message": m} for m in msg)
        else:
            text = msg if isinstance(msg, str) else lua_repr(msg)
            items.append({"type": "field", "field": key, "message": text})
    return {
        "entity_type": entity_type,
        "entity_id": raw.get("id"),
        "entity_name": raw.get("name"),
        "entity_tags": raw.get("tags"),
        "entity": raw,
        "errors": items,
    }


def load_config(store: Store, loaded: Loaded, profile: VersionProfile) -> None:
    """Replace everything in the store's default workspace with ``loaded``."""
    ws = store.workspaces["default"]
    previous = {u["id"]: u["name"] for u in ws.upstreams.values()}
    store.wipe()
    now = store.wall_clock()
    for entity in loaded.upstreams:
        e = dict(entity)
        if not isinstance(e.get("created_at"), int):
            e["created_at"] = int(now)
        if profile.has_updated_at and not isinstance(e.get("updated_at"), int):
            e["updated_at"] = int(now)
        e = {k: e.get(k) for k in UPSTREAM_FIELDS if k != "updated_at" or profile.has_updated_at}
        ws.upstreams[e["id"]] = e
        ws.upstream_ids_by_name[e["name"]] = e["id"]
        ws.targets_by_upstream[e["id"]] = {}
    for entity in loaded.targets:
        e = dict(entity)
        if not isinstance(e.get("created_at"), int | float):
            e["created_at"] = round(now, 3)
        if profile.has_updated_at and not isinstance(e.get("updated_at"), int | float):
            e["updated_at"] = round(now, 3)
        e = {k: e.get(k) for k in TARGET_FIELDS if k != "updated_at" or profile.has_updated_at}
        ws.targets[e["id"]] = e
        ws.targets_by_upstream[e["upstream"]["id"]][e["target"]] = e["id"]
    store.declarative_extra = dict(loaded.extra)
    for uid in sorted(set(previous) | set(ws.upstreams)):
        store.commit_upstream(ws, uid, node=None, name=previous.get(uid))


def export_config(store: Store) -> dict[str, Any]:
    """The flat export: ``_format_version``, ``_transform: false``, IDs, FKs as IDs, no nulls."""
    ws = store.workspaces["default"]
    out: dict[str, Any] = {"_format_version": "3.0", "_transform": False}
    ups = [_strip_nulls(u) for u in store.list_upstreams(ws)]
    tgs = []
    for up in store.list_upstreams(ws):
        for t in store.targets_by_id(ws, up["id"]):
            row = _strip_nulls(t)
            row["upstream"] = t["upstream"]["id"]
            tgs.append(row)
    for key, value in sorted(store.declarative_extra.items()):
        if value:
            out[key] = value
    if ups:
        out["upstreams"] = ups
    if tgs:
        out["targets"] = tgs
    return out


def _strip_nulls(entity: Entity) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in entity.items():
        if v is None:
            continue
        out[k] = _strip_nulls(v) if isinstance(v, dict) else v
    return out


def dump_yaml(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def hash_of_store(store: Store) -> str:
    """Hash of a config changed behind the API's back (test helpers): MD5 of its export."""
    exported = export_config(store)
    if len(exported) == 2:
        return EMPTY_HASH
    return md5(dump_yaml(exported))
