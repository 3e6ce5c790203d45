"""Schemathesis: the simulator against Kong's published OSS 3.9 Admin API spec, corrected.

The spec is read from ../shared/reference (beside the repository) and patched with
tests/data/kong-openapi-patch.yaml, whose every edit cites the reference section that shows
the published spec wrong. Only the operations kongsplit touches are exercised (root, status,
upstreams, targets, health), with a bounded number of examples so the run stays short.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from kongsplit.sim import KongSim  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT.parent / "shared" / "reference" / "kong-admin-oss-3.9-openapi.yaml"
PATCH = ROOT / "tests" / "data" / "kong-openapi-patch.yaml"
# Operations kongsplit uses: node info, status, upstreams, targets and health.
PATH_REGEX = r"^/(status)?$|^/upstreams"
MAX_EXAMPLES = 15


def _pointer(path: str) -> list[str]:
    assert path.startswith("/"), path
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for p in parts:
        doc = doc[int(p)] if isinstance(doc, list) else doc[p]
    return doc


def apply_patch(spec: dict[str, Any], edits: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply the add/replace/remove/move edits of the patch file to a copy of the spec."""
    doc = copy.deepcopy(spec)
    for edit in edits:
        op, parts = edit["op"], _pointer(edit["path"])
        parent = _walk(doc, parts[:-1])
        key = parts[-1]
        if op == "move":
            src = _pointer(edit["from"])
            src_parent = _walk(doc, src[:-1])
            parent[key] = src_parent.pop(src[-1])
        elif op == "remove":
            del parent[key]
        elif op == "replace":
            assert key in parent, edit["path"]
            parent[key] = copy.deepcopy(edit["value"])
        elif op == "add":
            parent[key] = copy.deepcopy(edit["value"])
        else:  # pragma: no cover - a typo in the data file
            raise ValueError(f"unknown op {op!r}")
    return doc


def load_schema() -> Any:
    if not SPEC.exists():
        pytest.skip(f"published spec not found at {SPEC}", allow_module_level=True)
    spec = yaml.safe_load(SPEC.read_text())
    edits = yaml.safe_load(PATCH.read_text())
    patched = apply_patch(spec, edits)
    config = schemathesis.Config.from_dict(
        {
            "generation": {"mode": "positive", "max-examples": MAX_EXAMPLES},
        }
    )
    return schemathesis.openapi.from_dict(patched, config=config).include(path_regex=PATH_REGEX)


schema = load_schema()


class _SimThread:
    """A KongSim in its own thread and event loop: schemathesis calls it synchronously."""

    def __init__(self) -> None:
        self.sim = KongSim()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="kong-sim", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.sim.start())
        self.seed()
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.sim.stop())
        self.loop.close()

    def seed(self) -> None:
        # Names from the spec's examples, so example-driven cases meet existing entities.
        for name in ("my-upstream", "api.example.internal"):
            self.sim.add_upstream(name)
            self.sim.add_target(name, "example.com:8000")
            self.sim.add_target(name, "203.0.113.42", weight=0)

    def start(self) -> None:
        self.thread.start()
        assert self.ready.wait(10), "simulator did not start"

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def kong_url() -> Iterator[str]:
    runner = _SimThread()
    runner.start()
    try:
        yield runner.sim.url
    finally:
        runner.stop()
        import collections, os
        if os.environ.get("SIMSTATS"):
            c = collections.Counter((r.method, "/".join(r.path.split("/")[:2] + [x for x in r.path.split("/")[3:] if x in ("targets","health","all","healthy","unhealthy")]), r.status) for r in runner.sim.requests)
            for k, v in sorted(c.items()): print(k, v)


def test_patch_applies_cleanly() -> None:
    """Every edit in the data file applies, and says why (a reference section or the NOTE)."""
    spec = yaml.safe_load(SPEC.read_text())
    edits = yaml.safe_load(PATCH.read_text())
    assert all(e.get("why") for e in edits)
    patched = apply_patch(spec, edits)
    post = patched["paths"]["/upstreams"]["post"]["responses"]
    assert "201" in post and "200" not in post and "409" in post
    assert "/upstreams/{upstream_id_or_name}/health" in patched["paths"]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_simulator_conforms(case: Any, kong_url: str) -> None:
    if case.path_parameters and case.path_parameters.get("target_id_or_target") == "all":
        # Kong routes GET .../targets/all to the listing, not to a target called "all".
        return
    case.call_and_validate(
        base_url=kong_url,
        checks=[not_a_server_error, response_schema_conformance, status_code_conformance],
    )
