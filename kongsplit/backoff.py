"""The one back-off policy of the whole daemon: jittered exponential waits, built on tenacity.

Every retry loop — a Kong request, a Rollout whose write failed, a watch that lost its
connection, the start-up wait for Kong — waits ``Backoff.delay(n)`` before its n-th retry, so
they all spread out the same way: a wait drawn from ``[b/2, b]`` with
``b = min(cap, initial * 2**(n-1))``. Half of it fixed keeps a floor (no hammering); half random
keeps replicas and Rollouts that failed together from retrying in lock-step.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenacity import RetryCallState, wait_exponential, wait_random_exponential
from tenacity.wait import wait_base


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.2  # seconds: the ceiling of the first wait
    cap: float = 30.0  # seconds: no wait is longer

    def wait(self) -> wait_base:
        """The policy as a tenacity wait strategy (for ``AsyncRetrying(wait=...)``)."""
        half_initial, half_cap = self.initial / 2, self.cap / 2
        return wait_exponential(multiplier=half_initial, max=half_cap) + wait_random_exponential(
            multiplier=half_initial, max=half_cap
        )

    def delay(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (1-based) outside a tenacity loop."""
        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = max(1, attempt)
        return float(self.wait()(state))
