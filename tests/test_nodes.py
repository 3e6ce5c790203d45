"""NodeDiscovery: the verification nodes from a Service's EndpointSlices, whatever a slice
holds (a watch delivers whatever the API server, or a proxy, sent)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from kongsplit.config import NodesFromConfig
from kongsplit.nodes import SERVICE_NAME_LABEL, NodeDiscovery


def slice_of(**fields: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "dp-abc", "labels": {SERVICE_NAME_LABEL: "dp"}},
        "addressType": "IPv4",
        "ports": [{"name": "status", "port": 8100}],
        **fields,
    }


def discovered(obj: dict[str, Any], port: str = "8100") -> tuple[str, ...]:
    seen: list[Sequence[str]] = []
    nodes = NodeDiscovery(NodesFromConfig(service="dp", port=port), on_change=seen.append)
    nodes.on_slice("ADDED", obj)
    return nodes.urls


def test_ready_addresses_become_urls() -> None:
    obj = slice_of(
        endpoints=[
            {"addresses": ["10.0.0.1", "10.0.0.2"]},
            {"addresses": ["10.0.0.3"], "conditions": {"ready": False}},
            {"addresses": ["fd00::1"]},
        ]
    )
    assert discovered(obj) == (
        "http://10.0.0.1:8100",
        "http://10.0.0.2:8100",
        "http://[fd00::1]:8100",
    )


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"endpoints": 5}, id="endpoints-a-number"),
        pytest.param({"endpoints": {"a": 1}}, id="endpoints-a-map"),
        pytest.param({"endpoints": [{"addresses": 7}]}, id="addresses-a-number"),
        pytest.param({"endpoints": [{"addresses": "10.0.0.1"}]}, id="addresses-a-string"),
        pytest.param({"endpoints": [{"addresses": [None, 3, ["x"]]}]}, id="addresses-not-text"),
        pytest.param({"endpoints": [{"addresses": ["evil.example/x#"]}]}, id="not-an-ip"),
        pytest.param({"endpoints": [{"addresses": ["user@10.0.0.1"]}]}, id="userinfo"),
        pytest.param({"endpoints": [{"conditions": [], "addresses": ["x"]}]}, id="conditions"),
        pytest.param({"ports": "http"}, id="ports-a-string"),
    ],
)
def test_garbage_in_a_slice_gives_no_node_and_no_error(fields: dict[str, Any]) -> None:
    """Before: ``for endpoint in 5`` raised out of the watcher callback (a root task: exit 1),
    and any text in addresses became a URL kongsplit sent requests to."""
    assert discovered(slice_of(**fields), port="status") == ()


def test_a_named_port_must_be_a_port_number() -> None:
    obj = slice_of(
        ports=[{"name": "status", "port": 99999}], endpoints=[{"addresses": ["1.2.3.4"]}]
    )
    assert discovered(obj, port="status") == ()
