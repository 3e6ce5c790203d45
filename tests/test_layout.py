"""The layout docs/architecture.md describes: which modules may do I/O, and what importing the
package costs. Checked in fresh interpreters so nothing a test imported earlier hides a leak."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kongsplit"

#: The modules that may import aiohttp or kubernetes-asyncio (the I/O edge).
IO_MODULES = {
    "app",
    "demo",
    "diff",
    "events",
    "get",
    "inspect",
    "kube",
    "leader",
    "plan",
    "server",
    "watcher",
}
#: Pure modules: importing one must load no HTTP, Kubernetes or Prometheus library.
PURE = [
    "kongsplit",
    "kongsplit.annotations",
    "kongsplit.argoview",
    "kongsplit.backoff",
    "kongsplit.desired",
    "kongsplit.heap",
    "kongsplit.kong.configtext",
    "kongsplit.kong.declarative",
    "kongsplit.kong.names",
    "kongsplit.kong.records",
    "kongsplit.kong.targets",
    "kongsplit.kong.writes",
    "kongsplit.rollouts",
    "kongsplit.weights",
]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_only_the_io_edge_imports_http_and_kubernetes_libraries() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ("kong", "sim"):
            continue  # Kong's package and the simulators talk HTTP by design
        if rel.stem in IO_MODULES:
            continue
        bad = _imports(path) & {"aiohttp", "kubernetes_asyncio"}
        if bad:
            offenders.append(f"{rel}: {sorted(bad)}")
    assert not offenders, offenders


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_load_no_io_library(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "print(' '.join(sorted(m for m in ('aiohttp', 'kubernetes_asyncio', 'prometheus_client')"
        " if m in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"importing {module} loads {result.stdout.strip()}"
