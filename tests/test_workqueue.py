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
