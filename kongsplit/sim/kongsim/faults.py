"""Fault injection for the Kong simulator: errors, 429s, slow answers and dropped connections.

Tests arm a rule (``faults.fail_next(2, 503, method="PATCH")``); the next matching requests
consume it. Rules are checked in the order they were armed; a request takes at most one
status/reset rule but every matching delay rule.
"""

from __future__ import annotations

from dataclasses import dataclass

# Kong's default bodies for bare exits (kong/tools/http.lua get_default_exit_body, restated)
DEFAULT_EXIT_MESSAGES: dict[int, str] = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    413: "Request size limit exceeded",
    415: "Unsupported Media Type",
    429: "API rate limit exceeded",
    500: "An unexpected error occurred",
    502: "An invalid response was received from the upstream server",
    503: "The upstream server is currently unavailable",
    504: "The upstream server is timing out",
}


@dataclass
class FaultRule:
    kind: str  # "status" | "reset" | "delay"
    remaining: int | None  # None = until cleared
    status: int = 503
    retry_after: float | None = None
    seconds: float = 0.0
    method: str | None = None
    path_prefix: str | None = None
    node: int | None = None
    message: str | None = None

    def matches(self, method: str, path: str, node: int) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path_prefix is not None and not path.startswith(self.path_prefix):
            return False
        return self.node is None or self.node == node


@dataclass(frozen=True)
class FaultAction:
    """What the server should do with one request (decided once, at its start)."""

    delay: float = 0.0
    status: int | None = None
    body: dict[str, str] | None = None
    headers: tuple[tuple[str, str], ...] = ()
    reset: bool = False


class Faults:
    """Switchable misbehaviour; all methods return immediately."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        # POST /config: loads that fail after the configuration was validated (node, kind)
        self.config_load_failures: list[tuple[int | None, str]] = []

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        *,
        method: str | None = None,
        path_prefix: str | None = None,
        node: int | None = None,
        message: str | None = None,
    ) -> None:
        """The next ``n`` matching requests answer ``status`` with Kong's default body."""
        self.rules.append(
            FaultRule(
                "status",
                n,
                status=status,
                method=method,
                path_prefix=path_prefix,
                node=node,
                message=message,
            )
        )

    def rate_limit_next(
        self,
        n: int = 1,
        retry_after: float = 1.0,
        *,
        method: str | None = None,
        path_prefix: str | None = None,
        node: int | None = None,
    ) -> None:
        """The next ``n`` matching requests answer 429 with a ``Retry-After`` header."""
        self.rules.append(
            FaultRule(
                "status",
                n,
                status=429,
                retry_after=retry_after,
                method=method,
                path_prefix=path_prefix,
                node=node,
            )
        )

    def delay(
        self,
        seconds: float,
        *,
        n: int | None = None,
        method: str | None = None,
        path_prefix: str | None = None,
        node: int | None = None,
    ) -> None:
        """Answer matching requests ``seconds`` late (``n`` requests, or until cleared)."""
        self.rules.append(
            FaultRule(
                "delay", n, seconds=seconds, method=method, path_prefix=path_prefix, node=node
            )
        )

    def reset_next(
        self,
        n: int = 1,
        *,
        method: str | None = None,
        path_prefix: str | None = None,
        node: int | None = None,
    ) -> None:
        """Close the connection of the next ``n`` matching requests without answering."""
        self.rules.append(FaultRule("reset", n, method=method, path_prefix=path_prefix, node=node))

    def fail_config_load(self, kind: str = "error", *, n: int = 1, node: int | None = None) -> None:
        """The next ``n`` valid ``POST /config`` (on ``node``, or any) fail while loading:
        ``kind`` is one of :data:`CONFIG_LOAD_FAILURES` (``busy`` answers 429 with
        ``Retry-After``, ``map full`` 413, ...). Nothing of the new configuration is kept."""
        if kind not in CONFIG_LOAD_FAILURES:
            raise ValueError(f"kind must be one of {', '.join(CONFIG_LOAD_FAILURES)}")
        self.config_load_failures.extend([(node, kind)] * n)

    def take_config_load(self, node: int) -> str | None:
        """The load failure armed for this node's next valid POST /config, if any."""
        for n, (where, kind) in enumerate(self.config_load_failures):
            if where is None or where == node:
                del self.config_load_failures[n]
                return kind
        return None

    def clear(self) -> None:
        self.rules.clear()
        self.config_load_failures.clear()

    def take(self, method: str, path: str, node: int) -> FaultAction:
        """Consume the rules that apply to this request and say what to do."""
        delay = 0.0
        chosen: FaultRule | None = None
        for rule in self.rules:
            if not rule.matches(method, path, node):
                continue
            if rule.kind == "delay":
                delay += rule.seconds
                if rule.remaining is not None:
                    rule.remaining -= 1
            elif chosen is None:
                chosen = rule
                if rule.remaining is not None:
                    rule.remaining -= 1
        self.rules = [r for r in self.rules if r.remaining is None or r.remaining > 0]
        if chosen is None:
            return FaultAction(delay=delay)
        if chosen.kind == "reset":
            return FaultAction(delay=delay, reset=True)
        headers: tuple[tuple[str, str], ...] = ()
        message = chosen.message or DEFAULT_EXIT_MESSAGES.get(
            chosen.status, "An unexpected error occurred"
        )
        if chosen.status == 429:
            if chosen.message is None and path.rstrip("/").endswith("/config"):
                message = "Currently loading previous configuration"
            ra = chosen.retry_after if chosen.retry_after is not None else 1.0
            headers = (("Retry-After", _fmt_seconds(ra)),)
        return FaultAction(
            delay=delay, status=chosen.status, body={"message": message}, headers=headers
        )


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# kong/api/routes/config.lua: what POST /config answers when loading a *valid* configuration
# fails (declarative.load_into_cache_with_events); the node keeps its previous configuration.
CONFIG_LOAD_FAILURES: dict[str, tuple[int, str]] = {
    "busy": (429, "Currently loading previous configuration"),
    "timeout": (504, "Timed out while loading configuration"),
    "exiting": (503, "Kong currently exiting"),
    "map full": (
        413,
        'Configuration does not fit in LMDB database, consider raising the "lmdb_map_size" '
        "config for Kong",
    ),
    "error": (500, "An unexpected error occurred"),
}
