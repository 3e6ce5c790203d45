"""Reading Kubernetes manifests from files for the offline commands (``plan``, ``demo`` fixtures).

YAML or JSON, several documents per file, ``kind: List`` flattened, ``-`` for stdin. Every
object keeps where it came from (file and document number) so errors can name it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kongsplit.config import yaml_problem


class ManifestError(ValueError):
    """Input that cannot be read as Kubernetes objects; the message names file and document."""


@dataclass(frozen=True)
class Located:
    obj: dict[str, Any]
    source: str  # "rollout.yaml, document 2" / "rollout.yaml, document 2, items[3]"


def _documents(text: str, source: str) -> Iterator[tuple[int, object]]:
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            pass  # YAML is a superset of most JSON; let the YAML parser explain the error
        except RecursionError:
            raise ManifestError(f"{source}, document 1: nested too deeply") from None
        else:
            yield 1, doc
            return
    # Count documents as they come, so a syntax error names the document it sits in.
    number = 0
    try:
        for doc in yaml.safe_load_all(text):
            number += 1
            yield number, doc
    except yaml.YAMLError as e:
        raise ManifestError(
            f"{source}, document {number + 1}: not valid YAML or JSON at {yaml_problem(e)}"
        ) from None
    except RecursionError:
        raise ManifestError(f"{source}, document {number + 1}: nested too deeply") from None


def read_objects(paths: Sequence[str]) -> list[Located]:
    """All objects of all files, in order. ``-`` reads stdin. Empty documents are skipped."""
    objects: list[Located] = []
    for path in paths or ["-"]:
        if path == "-":
            source, text = "<stdin>", sys.stdin.read()
        else:
            source = path
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                reason = getattr(e, "strerror", None) or str(e)
                raise ManifestError(f"{source}: cannot read: {reason}") from None
        for number, doc in _documents(text, source):
            where = f"{source}, document {number}"
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise ManifestError(
                    f"{where}: expected a Kubernetes object (a mapping), got {type(doc).__name__}"
                )
            if doc.get("kind") == "List" or (
                isinstance(doc.get("kind"), str) and doc["kind"].endswith("List") and "items" in doc
            ):
                items = doc.get("items")
                if not isinstance(items, list):
                    raise ManifestError(f"{where}: field items: a List needs a list of items")
                for j, item in enumerate(items):
                    if not isinstance(item, dict):
                        raise ManifestError(f"{where}: field items[{j}]: expected a mapping")
                    objects.append(Located(item, f"{where}, items[{j}]"))
            else:
                objects.append(Located(doc, where))
    return objects


def kind_of(obj: dict[str, Any]) -> tuple[str, str]:
    """(apiVersion, kind) as strings ('' when absent or not a string)."""
    api = obj.get("apiVersion")
    kind = obj.get("kind")
    return (api if isinstance(api, str) else "", kind if isinstance(kind, str) else "")
