"""kongsplit.backoff: the one back-off policy every retry loop of the daemon uses."""

from __future__ import annotations

import pytest
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from kongsplit.backoff import Backoff


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8, 20, 200])
def test_delay_is_jittered_exponential_and_capped(attempt: int) -> None:
    policy = Backoff(initial=0.2, cap=5.0)
    ceiling = min(5.0, 0.2 * 2 ** (attempt - 1))
    delays = [policy.delay(attempt) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1  # jittered: replicas failing together do not retry together


def test_attempt_zero_counts_as_the_first() -> None:
    assert 0.05 <= Backoff(initial=0.1, cap=1.0).delay(0) <= 0.1


async def test_the_same_policy_drives_tenacity() -> None:
    waits: list[float] = []
    calls = 0

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    retrying = AsyncRetrying(
        wait=Backoff(initial=0.2, cap=1.0).wait(),
        stop=stop_after_attempt(5),
        retry=retry_if_exception_type(OSError),
        sleep=sleep,
        reraise=True,
    )
    with pytest.raises(OSError):
        async for attempt in retrying:
            with attempt:
                calls += 1
                raise OSError("down")
    assert calls == 5
    for n, wait in enumerate(waits, 1):
        ceiling = min(1.0, 0.2 * 2 ** (n - 1))
        assert ceiling / 2 <= wait <= ceiling
