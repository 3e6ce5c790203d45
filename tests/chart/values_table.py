"""The chart README's values tables, written by npm's @bitnami/readme-generator-for-helm.

values.yaml documents its keys helm-docs style: a ``# --`` comment right above a key (continued on
the next ``#`` lines) describes it, and a commented key whose default is a structure (resources,
securityContext, networkPolicy.from) documents the whole block. The generator reads its own
``## @param <full.key.path> <description>`` comments instead, so this module translates one
style into the other, in a temporary copy of values.yaml, and runs the real generator there:

- a commented key with a scalar, empty or list-of-scalars default: ``@param key description``
  (the generator reads the default from the YAML);
- a commented key with a non-empty structure: ``@extra key description`` (a row without a
  value), then an ``@param`` without description for each leaf inside it that has no comment of
  its own, so every default still appears, in the row below its block's description;
- ``## @section Title`` lines in values.yaml start a table of their own (keys before the first
  one go to a section "General").

The generator itself checks that every key of values.yaml has a row and every row a key
("Missing metadata for key …"), so a key added without a ``# --`` comment fails the run.

    python tests/chart/values_table.py          # rewrite charts/kongsplit/README.md's tables
    python tests/chart/values_table.py --check  # exit 1, with a diff, when they are stale

``tests/chart/test_values_table.py`` runs the check (it fails when the README is stale).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kongsplit"
GENERATOR = "readme-generator"
DEFAULT_SECTION = "General"

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w.-]*|\"[^\"]+\"|'[^']+'):(?:\s+.*)?$")
_SECTION = re.compile(r"^\s*##\s*@section\s+(?P<title>\S.*)$")


def _escape(text: str) -> str:
    """A description as one table cell: no pipes that would split it, no leading modifier."""
    text = text.replace("|", "\\|")
    return "\\" + text if text.startswith("[") else text


def _leaves(value: Any, path: str) -> list[str]:
    """Paths of the leaves under ``value`` as the generator names them (``a.b``, ``a[0].b``);
    an empty structure and a list of scalars are leaves."""
    if isinstance(value, dict) and value:
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{path}.{k}")]
    if isinstance(value, list) and value and not all(_is_scalar(v) for v in value):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{path}[{i}]")]
    return [path]


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def bitnami_values(text: str) -> str:
    """values.yaml with the generator's ``## @param``/``@extra``/``@section`` comments added
    before each key, translated from its ``# --`` comments (see the module docstring)."""
    data = yaml.safe_load(text) or {}
    out: list[str] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented) of the enclosing keys
    doc: list[str] | None = None
    skip_deeper_than: int | None = None  # inside a list value: its lines are not keys
    section_seen = False
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip(" "))
        if skip_deeper_than is not None:
            if not stripped or indent > skip_deeper_than:
                out.append(line)
                continue
            skip_deeper_than = None
        if _SECTION.match(line):
            section_seen = True
            doc = None
            out.append(f"## @section {_SECTION.match(line)['title'].strip()}")  # type: ignore[index]
            continue
        if stripped.startswith("# --"):
            doc = [stripped[4:].strip()]
            out.append(line)
            continue
        if stripped.startswith("#"):
            if doc is not None:
                doc.append(stripped[1:].strip())
            out.append(line)
            continue
        m = _KEY.match(line)
        if not stripped or not m:
            doc = None
            out.append(line)
            continue
        key = m["key"].strip("\"'")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        names = [k for _, k, _ in stack] + [key]
        value: Any = data
        for name in names:
            value = value[name]
        path = ".".join(names)
        documented = doc is not None
        inherited = any(d for _, _, d in stack)
        description = _escape(" ".join(w for w in (doc or []) if w))
        doc = None
        tags: list[str] = []
        if isinstance(value, dict) and value:
            # Its children are keys of their own, described (or not) on their own lines.
            if documented:
                tags.append(f"@extra {path} {description}")
        elif isinstance(value, list) and not all(_is_scalar(v) for v in value):
            # A list of mappings: its lines are the value, so every leaf is listed here.
            if documented:
                tags.append(f"@extra {path} {description}")
            if documented or inherited:
                tags += [f"@param {leaf}" for leaf in _leaves(value, path)]
        elif documented:
            tags.append(f"@param {path} {description}")
        elif inherited:
            tags.append(f"@param {path}")
        if tags and not section_seen:
            out.append(f"## @section {DEFAULT_SECTION}")
            section_seen = True
        out += [f"{' ' * indent}## {t}".rstrip() for t in tags]
        out.append(line)
        stack.append((indent, key, documented))
        if isinstance(value, list) and value:
            skip_deeper_than = indent
    return "\n".join(out) + "\n"


def find_generator() -> str | None:
    local = ROOT / ".tools" / "bin" / GENERATOR
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(GENERATOR)


def render_readme(readme: str, values: str, generator: str) -> str:
    """``readme`` with its ``## Parameters`` section rewritten by the generator from ``values``
    (both as text; the work happens in a temporary directory)."""
    with tempfile.TemporaryDirectory(prefix="kongsplit-values-table-") as tmp:
        values_path = Path(tmp) / "values.yaml"
        readme_path = Path(tmp) / "README.md"
        values_path.write_text(bitnami_values(values), encoding="utf-8")
        readme_path.write_text(readme, encoding="utf-8")
        proc = subprocess.run(
            [generator, "--values", str(values_path), "--readme", str(readme_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{GENERATOR} failed:\n{proc.stdout}{proc.stderr}")
        return readme_path.read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="only report a stale README")
    args = parser.parse_args(argv)
    generator = find_generator()
    if generator is None:
        print(f"{GENERATOR} not found: run `bash .ci/install-tools`", file=sys.stderr)
        return 2
    readme_path = CHART / "README.md"
    current = readme_path.read_text(encoding="utf-8")
    wanted = render_readme(current, (CHART / "values.yaml").read_text(encoding="utf-8"), generator)
    if wanted == current:
        return 0
    if args.check:
        sys.stdout.writelines(
            difflib.unified_diff(
                current.splitlines(keepends=True),
                wanted.splitlines(keepends=True),
                "charts/kongsplit/README.md",
                "generated from values.yaml",
            )
        )
        print("stale: run `python tests/chart/values_table.py`", file=sys.stderr)
        return 1
    readme_path.write_text(wanted, encoding="utf-8")
    print(f"updated {readme_path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
