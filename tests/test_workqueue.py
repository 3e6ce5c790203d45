"""``KeyQueue``: one entry per Rollout, aborts first, one worker per key, back-off timers that a
newer change does not wait for, and the two ways to wait for it (``join``, ``drained``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from kongsplit.rollouts import RolloutKey
from kongsplit.workqueue import KeyQueue

A, B, C = (RolloutKey("shop", n) for n in "abc")
#: Long enough never to fire during a test: a pending back-off timer.
LATER = 60.0


@pytest.fixture()
async def queue() -> AsyncIterator[KeyQueue]:
    q = KeyQueue()
    try:
        yield q
    finally:
        q.close()


async def take(q: KeyQueue) -> tuple[RolloutKey, bool, bool]:
    """The next key and its flags (refresh, urgent); fails instead of waiting forever."""
    key, flags = await asyncio.wait_for(q.get(), 1)
    return key, flags.refresh, flags.urgent


async def nothing_ready(q: KeyQueue) -> bool:
    """True when ``get`` has nothing to hand out now. ``get`` returns without suspending when
    a key is queued, so one turn of the loop is enough to tell."""
    getter = asyncio.ensure_future(q.get())
    await asyncio.sleep(0)
    ready = getter.done()
    getter.cancel()
    await asyncio.gather(getter, return_exceptions=True)
    return not ready


# --------------------------------------------------------------------------- serving order

Put = tuple[RolloutKey, bool, bool]  # key, refresh, urgent


@pytest.mark.parametrize(
    ("puts", "served"),
    [
        pytest.param(
            [(A, False, False), (B, False, False), (C, False, False)],
            [(A, False, False), (B, False, False), (C, False, False)],
            id="first-in-first-out",
        ),
        pytest.param(
            [(A, False, False), (B, False, False), (A, True, False)],
            [(A, True, False), (B, False, False)],
            id="a-key-put-twice-is-one-entry-flags-merged",
        ),
        pytest.param(
            [(A, False, False), (B, False, False), (C, False, True)],
            [(C, False, True), (A, False, False), (B, False, False)],
            id="an-abort-jumps-the-line",
        ),
        pytest.param(
            [(A, False, False), (B, False, False), (B, False, True)],
            [(B, False, True), (A, False, False)],
            id="made-urgent-while-queued-served-once",
        ),
        pytest.param(
            [(A, False, True), (B, False, True), (A, True, False)],
            [(A, True, True), (B, False, True)],
            id="urgent-lane-first-in-first-out",
        ),
    ],
)
async def test_serving_order(queue: KeyQueue, puts: list[Put], served: list[Put]) -> None:
    for key, refresh, urgent in puts:
        queue.put(key, refresh=refresh, urgent=urgent)
    assert len(queue) == len(served)
    got = [await take(queue) for _ in served]
    assert got == served
    assert await nothing_ready(queue)


async def test_key_queue_coalesces_and_serves_aborts_first(queue: KeyQueue) -> None:
    """The whole life of three keys, one of them put again while a worker holds it."""
    q = queue
    q.put(A)
    q.put(B)
    q.put(A, refresh=True)  # coalesced with the queued entry
    q.put(C, urgent=True)
    assert len(q) == 3
    first, _ = await q.get()
    assert first == C
    second, flags = await q.get()
    assert second == A and flags.refresh
    q.put(A)  # while a worker holds it: queued again after done(), not twice in flight
    assert len(q) == 1
    third, _ = await q.get()
    assert third == B
    q.done(B)
    q.done(A)
    again, _ = await q.get()
    assert again == A
    q.done(A)
    q.done(C)
    await asyncio.wait_for(q.join(), 1)


# --------------------------------------------------------------------------- the sweep lane

# ("sweep", key): a drift check (put_sweep); ("put", key, refresh, urgent): a change or retry.
Op = tuple[object, ...]


@pytest.mark.parametrize(
    ("ops", "served"),
    [
        pytest.param(
            [("sweep", A), ("sweep", B), ("put", C, False, False)],
            [(C, False, False), (A, True, False), (B, True, False)],
            id="a-change-is-served-before-the-sweep",
        ),
        pytest.param(
            [("sweep", A), ("sweep", B), ("put", B, False, False)],
            [(B, False, False), (A, True, False)],
            id="a-change-of-a-swept-key-leaves-the-sweep-lane-without-its-read",
        ),
        pytest.param(
            [("sweep", A), ("put", A, True, False)],
            [(A, True, False)],
            id="a-retry-of-a-swept-key-keeps-its-own-read",
        ),
        pytest.param(
            [("put", A, False, False), ("sweep", A), ("sweep", B)],
            [(A, False, False), (B, True, False)],
            id="a-check-of-a-queued-change-adds-no-read",
        ),
        pytest.param(
            [("sweep", A), ("put", A, False, True)],
            [(A, False, True)],
            id="an-abort-of-a-swept-key-jumps-the-line",
        ),
        pytest.param(
            [("sweep", A), ("sweep", A), ("sweep", B)],
            [(A, True, False), (B, True, False)],
            id="two-sweeps-one-entry",
        ),
    ],
)
async def test_sweep_lane_order(queue: KeyQueue, ops: list[Op], served: list[Put]) -> None:
    for op in ops:
        if op[0] == "sweep":
            queue.put_sweep(op[1])  # type: ignore[arg-type]
        else:
            _, key, refresh, urgent = op
            queue.put(key, refresh=refresh, urgent=urgent)  # type: ignore[arg-type]
    got = [await take(queue) for _ in served]
    assert got == served
    assert await nothing_ready(queue)


async def test_a_sweep_of_a_held_key_runs_after_it_as_a_sweep(queue: KeyQueue) -> None:
    queue.put(A)
    await take(queue)
    queue.put_sweep(A)  # while a worker holds it
    queue.put(B)
    queue.done(A)
    assert [await take(queue), await take(queue)] == [(B, False, False), (A, True, False)]


async def test_a_change_during_a_sweep_of_a_held_key_is_a_change(queue: KeyQueue) -> None:
    queue.put(A)
    await take(queue)
    queue.put_sweep(A)
    queue.put(A)  # a change arrives too: served as a change, ahead of other checks
    queue.put_sweep(B)
    queue.done(A)
    assert [await take(queue), await take(queue)] == [(A, False, False), (B, True, False)]


async def test_at_most_sweep_limit_checks_in_flight() -> None:
    q = KeyQueue(sweep_limit=2)
    try:
        for key in (A, B, C):
            q.put_sweep(key)
        first, second = await take(q), await take(q)
        assert await nothing_ready(q)  # the third check waits for one of the two
        q.put(RolloutKey("shop", "d"))  # a change is not held back by the limit
        assert await take(q) == (RolloutKey("shop", "d"), False, False)
        q.done(first[0])
        assert await take(q) == (C, True, False)
        assert second == (B, True, False)
    finally:
        q.close()


async def test_the_sweep_lane_never_holds_a_key_twice(queue: KeyQueue) -> None:
    """A key taken out of the sweep lane by changes, sweep after sweep, leaves one stale entry
    there at most (the queue is bounded by the number of Rollouts, whatever the churn)."""
    for _ in range(50):
        queue.put_sweep(A)
        queue.put(A)  # a change: served ahead of the sweep
        assert await take(queue) == (A, False, False)
        queue.done(A)
    assert len(queue._sweep) <= 1
    queue.put_sweep(A)
    assert await take(queue) == (A, True, False)
    queue.done(A)
    assert len(queue._sweep) == 0
    await asyncio.wait_for(queue.join(), 1)


# --------------------------------------------------------------------------- one worker per key


@pytest.mark.parametrize(
    ("again", "flags"),
    [
        pytest.param([(False, False)], (False, False), id="plain"),
        pytest.param([(True, False), (False, False)], (True, False), id="refresh-kept"),
        pytest.param([(False, False), (False, True)], (False, True), id="urgent-kept"),
    ],
)
async def test_a_key_put_while_held_comes_back_once_after_done(
    queue: KeyQueue, again: list[tuple[bool, bool]], flags: tuple[bool, bool]
) -> None:
    q = queue
    q.put(A)
    await take(q)
    for refresh, urgent in again:
        q.put(A, refresh=refresh, urgent=urgent)
    assert len(q) == 0 and q.active == 1
    assert await nothing_ready(q)  # never twice in flight
    q.done(A)
    assert await take(q) == (A, *flags)
    q.done(A)
    assert await nothing_ready(q)


async def test_get_waits_for_a_put(queue: KeyQueue) -> None:
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.put(B)
    key, _ = await asyncio.wait_for(getter, 1)
    assert key == B


# --------------------------------------------------------------------------- back-off timers


async def test_put_later_puts_the_key_back_with_its_flags(queue: KeyQueue) -> None:
    queue.put_later(A, 0.01, refresh=True)
    assert len(queue) == 0
    assert await take(queue) == (A, True, False)


async def test_a_newer_put_does_not_wait_for_a_back_off(queue: KeyQueue) -> None:
    queue.put_later(A, LATER, refresh=True)
    queue.put(A)
    assert await take(queue) == (A, False, False)


async def test_of_two_back_offs_for_a_key_the_sooner_wins_with_both_flags(
    queue: KeyQueue,
) -> None:
    queue.put_later(A, LATER)
    queue.put_later(A, 0.01, refresh=True)
    assert await take(queue) == (A, True, False)
    queue.done(A)
    # The 60 s timer was cancelled: with the key done, the queue is idle at once.
    await asyncio.wait_for(queue.join(), 1)


async def test_a_later_back_off_never_postpones_an_aborts_retry(queue: KeyQueue) -> None:
    """An abort's write fails (retry in tens of ms), then the late-write check asks for a look
    in 1 s: the retry must not wait that second (the chaos run saw aborts take exactly 1 s)."""
    queue.put_later(A, 0.01, urgent=True)
    queue.put_later(A, LATER, refresh=True)
    assert await take(queue) == (A, True, True)
    queue.done(A)
    await asyncio.wait_for(queue.join(), 1)  # one timer per key: nothing left behind


async def past(queue: KeyQueue, delay: float) -> None:
    """Witness that the loop's clock is past ``delay`` from now: a timer set for then (on C)
    has fired, so every timer due earlier has had its turn (timers fire in deadline order)."""
    queue.put_later(C, delay)
    assert await take(queue) == (C, False, False)
    queue.done(C)


async def test_forget_cancels_a_back_off(queue: KeyQueue) -> None:
    queue.put_later(A, 0.02)
    queue.forget(A)
    await asyncio.wait_for(queue.join(), 1)  # no timer left to wait for
    await past(queue, 0.04)
    assert len(queue) == 0 and await nothing_ready(queue)  # A's timer did not fire


async def test_close_cancels_every_back_off(queue: KeyQueue) -> None:
    queue.put_later(A, 0.02)
    queue.put_later(B, 0.02)
    queue.close()
    await asyncio.wait_for(queue.join(), 1)  # no timer left to wait for
    await past(queue, 0.04)
    assert len(queue) == 0 and await nothing_ready(queue)


# --------------------------------------------------------------------------- waiting for it


async def test_join_waits_for_queued_in_flight_and_timers(queue: KeyQueue) -> None:
    q = queue
    await asyncio.wait_for(q.join(), 1)  # a new queue is idle
    q.put(A)
    q.put_later(B, LATER)
    joined = asyncio.ensure_future(q.join())
    await take(q)
    await asyncio.sleep(0)
    assert not joined.done()  # A in flight, B's timer pending
    q.done(A)
    await asyncio.sleep(0)
    assert not joined.done()  # B's timer still pending
    q.forget(B)
    q.put(C)  # a put clears idle again...
    await take(q)
    q.done(C)  # ...and the last done sets it
    await asyncio.wait_for(joined, 1)


async def test_drained_waits_only_for_keys_in_flight(queue: KeyQueue) -> None:
    q = queue
    q.put(A)
    q.put(B)
    await take(q)
    drained = asyncio.ensure_future(q.drained())
    await asyncio.sleep(0)
    assert not drained.done()
    q.done(A)
    await asyncio.wait_for(drained, 1)  # B is still queued: drained is about writes in flight
    assert len(q) == 1 and q.active == 0
