"""Fault injection for the Kong simulator: errors, 429s, slow answers and dropped connections.

Tests arm a rule (``faults.fail_next(2, 503, method="PATCH")``); the next matching requests
consume it. Rules are checked in the order they were armed; a request takes at most one
status/reset rule but every matching delay rule.

A delay or a reset happens before the request is handled by default: the write never reaches
the database (reset) or reaches it late (delay). With ``after=True`` the request is handled
first: the write is committed and then the answer comes late (delay) or never (reset), as when
Kong's database answered but the connection or the node in front of it did not. Every arming
method returns its rule, which :meth:`Faults.remove` takes back (a slow window that ends);
:attr:`Faults.counts` says how many requests each kind of fault hit.
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
    after: bool = False  # delay/reset: after the request was handled (the write committed)

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
    delay_after: float = 0.0  # seconds to hold the answer once the request was handled
    reset_after: bool = False  # handle the request, then close the connection unanswered


class Faults:
    """Switchable misbehaviour; all methods return immediately."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        # requests hit, by kind: "status:503", "status:429", "reset", "reset_after", "delay",
        # "delay_after"
        self.counts: dict[str, int] = {}
        # POST /config: loads that fail after the configuration was validated (node, kind)
        self.config_load_failures: list[tuple[int | None, str]] = []

    def _arm(self, rule: FaultRule) -> FaultRule:
        self.rules.append(rule)
        return rule

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        *,
        method: str | None = None,
        path_prefix: str | None = None,
        node: int | None = None,
        message: str | None = None,
    ) -> FaultRule:
        """The next ``n`` matching requests answer ``status`` with Kong's default body."""
        return self._arm(
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
    ) -> FaultRule:
        """The next ``n`` matching requests answer 429 with a ``Retry-After`` header."""
        return self._arm(
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
        after: bool = False,
    ) -> FaultRule:
        """Answer matching requests ``seconds`` late (``n`` requests, or until removed or
        cleared); handled late, or with ``after`` handled at once and answered late."""
        return self._arm(
            FaultRule(
                "delay",
                n,
                seconds=seconds,
                method=method,
                path_prefix=path_prefix,
                node=node,
                after=after,
            )
        )

    def reset_next(
        self,
        n: int = 1,
        *,
        method: str | None = None,
        path_prefix: str | None = None,
        node: int | None = None,
        after: bool = False,
    ) -> FaultRule:
        """Close the connection of the next ``n`` matching requests without answering; with
        ``after``, once the request was handled (a write is committed, its answer lost)."""
        return self._arm(
            FaultRule("reset", n, method=method, path_prefix=path_prefix, node=node, after=after)
        )

    def remove(self, rule: FaultRule) -> None:
        """Disarm one rule (no-op when it was used up or cleared already)."""
        self.rules = [r for r in self.rules if r is not rule]

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

    def _count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def take(self, method: str, path: str, node: int) -> FaultAction:
        """Consume the rules that apply to this request and say what to do."""
        delay = delay_after = 0.0
        chosen: FaultRule | None = None
        for rule in self.rules:
            if not rule.matches(method, path, node):
                continue
            if rule.kind == "delay":
                if rule.after:
                    delay_after += rule.seconds
                else:
                    delay += rule.seconds
                if rule.remaining is not None:
                    rule.remaining -= 1
            elif chosen is None:
                chosen = rule
                if rule.remaining is not None:
                    rule.remaining -= 1
        self.rules = [r for r in self.rules if r.remaining is None or r.remaining > 0]
        if delay:
            self._count("delay")
        if delay_after:
            self._count("delay_after")
        if chosen is None:
            return FaultAction(delay=delay, delay_after=delay_after)
        if chosen.kind == "reset":
            self._count("reset_after" if chosen.after else "reset")
            if chosen.after:
                return FaultAction(delay=delay, delay_after=delay_after, reset_after=True)
            return FaultAction(delay=delay, reset=True)
        self._count(f"status:{chosen.status}")
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
            delay=delay,
            status=chosen.status,
            body={"message": message},
            headers=headers,
            delay_after=delay_after,
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
