"""The Kong nodes `/verify` reads, discovered from a Service's EndpointSlices (kong.nodesFrom).

In hybrid mode the control plane builds no balancers: what is served is on the data planes, whose
Status API (``status_listen``) answers ``GET /upstreams/{u}/health``. Data plane pods come and go,
so their addresses are read the way Kong Ingress Controller discovers gateways
(internal/adminapi/endpoints.go): the EndpointSlices labelled with the Service's name, ready
endpoints only, terminating ones skipped, one URL per address and port.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Sequence
from typing import Any

from kongsplit.config import NodesFromConfig

logger = logging.getLogger("kongsplit.nodes")

#: The label Kubernetes puts on every EndpointSlice of a Service.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class NodeDiscovery:
    """Keeps the verification nodes equal to the ready endpoints of ``nodes_from.service``."""

    def __init__(
        self, nodes_from: NodesFromConfig, *, on_change: Callable[[Sequence[str]], None]
    ) -> None:
        self.config = nodes_from
        self.on_change = on_change
        self._slices: dict[str, tuple[str, ...]] = {}  # EndpointSlice name → its node URLs
        self.urls: tuple[str, ...] = ()

    @property
    def label_selector(self) -> str:
        return f"{SERVICE_NAME_LABEL}={self.config.service}"

    def on_slice(self, event: str, obj: dict[str, Any]) -> None:
        """A watch event of one EndpointSlice of the Service."""
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        name = meta.get("name") if isinstance(meta, dict) else None
        if not isinstance(name, str):
            return
        labels = meta.get("labels") if isinstance(meta, dict) else None
        mine = isinstance(labels, dict) and labels.get(SERVICE_NAME_LABEL) == self.config.service
        if event == "DELETED" or not mine:  # a server that ignored the selector: not ours
            self._slices.pop(name, None)
        else:
            self._slices[name] = self._urls_of(obj)
        urls = tuple(sorted({u for found in self._slices.values() for u in found}))
        if urls != self.urls:
            self.urls = urls
            logger.info(
                "verification nodes from Service %s/%s: %s",
                self.config.namespace,
                self.config.service,
                ", ".join(urls) or "none ready",
            )
            self.on_change(urls)

    def _urls_of(self, obj: dict[str, Any]) -> tuple[str, ...]:
        port = self._port(obj.get("ports"))
        if port is None:
            return ()
        urls = []
        endpoints = obj.get("endpoints")
        for endpoint in endpoints if isinstance(endpoints, list) else ():
            if not isinstance(endpoint, dict):
                continue
            conditions = endpoint.get("conditions")
            conditions = conditions if isinstance(conditions, dict) else {}
            # Ready is unset (= ready) or true; a terminating pod is on its way out.
            if conditions.get("ready") is False or conditions.get("terminating") is True:
                continue
            addresses = endpoint.get("addresses")
            for address in addresses if isinstance(addresses, list) else ():
                # Only an IP address becomes a URL: anything else in a slice (a name, a path,
                # "user@host") is not a node kongsplit should send requests to.
                try:
                    ip = ipaddress.ip_address(address) if isinstance(address, str) else None
                except ValueError:
                    ip = None
                if ip is None:
                    continue
                host = f"[{ip.compressed}]" if ip.version == 6 else ip.compressed
                urls.append(f"{self.config.scheme}://{host}:{port}")
        return tuple(urls)

    def _port(self, ports: object) -> int | None:
        wanted = self.config.port
        if wanted.isdigit():
            return int(wanted)
        for p in ports if isinstance(ports, list) else ():
            number = p.get("port") if isinstance(p, dict) else None
            if (
                isinstance(p, dict)
                and p.get("name") == wanted
                and isinstance(number, int)
                and not isinstance(number, bool)
                and 1 <= number <= 65535
            ):
                return number
        return None
