"""A per-key coalescing work queue: at most one entry per Rollout, one worker per key.

The newest state wins (a key queued twice is one entry), an abort jumps the line, a key put
while a worker holds it is queued again once that worker is done, and back-off re-queues are
timers that a newer change does not wait for. The queue can never hold more entries than there
are Rollouts.

Three lanes, served in order: aborts, then changes (and retries), then the drift sweep's
checks (``put_sweep``). A sweep of 20,000 upstreams therefore never stands between a Rollout's
change and Kong: the change is served by the next free worker, the sweep goes on behind it. A
change of a key waiting only for a drift check leaves the sweep lane and is served as a change
(from what is known of Kong; that key's check waits for the next sweep), and a check of a key
already queued adds nothing, so a sweep that meets a burst of changes adds no reads to it. At
most ``sweep_limit`` checks are in the workers' hands at once: the sweep is CPU-bound, and with
every worker on it a change arriving meanwhile waited for a loop crowded with its requests
(apply p99 435 ms at 10,000 Rollouts; bench/scale.py).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from kongsplit.rollouts import RolloutKey


@dataclass
class _Flags:
    refresh: bool = False  # re-read Kong instead of trusting the cache (drift sweep)
    urgent: bool = False
    changed: bool = False  # an object changed (not only a sweep or a retry)
    sweep: bool = False  # only a drift check asked for it: waiting in the sweep lane


class KeyQueue:
    """A per-key coalescing queue: at most one entry per Rollout, one worker per key."""

    def __init__(self, *, sweep_limit: int = 4) -> None:
        self.sweep_limit = max(1, sweep_limit)
        self._sweeping: set[RolloutKey] = set()  # checks taken from the sweep lane, in flight
        self._urgent: deque[RolloutKey] = deque()
        self._normal: deque[RolloutKey] = deque()
        self._sweep: deque[RolloutKey] = deque()
        self._in_sweep: set[RolloutKey] = set()  # keys with an entry in ``_sweep`` (live or not)
        self._queued: dict[RolloutKey, _Flags] = {}
        self._active: set[RolloutKey] = set()
        self._again: dict[RolloutKey, _Flags] = {}  # re-queued while a worker held the key
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._no_active = asyncio.Event()
        self._no_active.set()
        self._timers: dict[RolloutKey, asyncio.TimerHandle] = {}
        self._timer_args: dict[RolloutKey, tuple[float, bool, bool]] = {}  # due, refresh, urgent

    def __len__(self) -> int:
        return len(self._queued)

    def put(
        self, key: RolloutKey, *, refresh: bool = False, urgent: bool = False, changed: bool = True
    ) -> None:
        """Queue ``key``. ``changed`` is False for sweeps and retries: nothing new to write."""
        if key in self._active:
            flags = self._again.get(key)
            if flags is None:
                flags = self._again[key] = _Flags()
            elif flags.sweep:
                flags.sweep = flags.refresh = False  # a change, not a drift check (as below)
            flags.refresh |= refresh
            flags.urgent |= urgent
            flags.changed |= changed
            return
        queued = self._queued.get(key)
        if queued is None:
            self._queued[key] = _Flags(refresh, urgent)
            (self._urgent if urgent else self._normal).append(key)
        else:
            if queued.sweep:
                # It waited only for a drift check: now it is a change, served as one (its
                # stale entry in the sweep lane is skipped when popped).
                queued.sweep = False
                queued.refresh = refresh
                if not urgent:
                    self._normal.append(key)
            else:
                queued.refresh |= refresh
            if urgent and not queued.urgent:
                queued.urgent = True
                self._urgent.append(key)  # the stale normal entry is skipped when popped
        self._idle.clear()
        self._wakeup.set()

    def put_sweep(self, key: RolloutKey) -> None:
        """A drift check (re-read Kong, put back what differs), behind every change. A key
        already queued, or held by a worker, is left as it is: it runs anyway."""
        if key in self._active:
            if key not in self._again:
                self._again[key] = _Flags(refresh=True, sweep=True)
            return
        if key in self._queued:
            return
        self._queued[key] = _Flags(refresh=True, sweep=True)
        if key not in self._in_sweep:  # else its stale entry there serves again: no duplicate
            self._in_sweep.add(key)
            self._sweep.append(key)
        self._idle.clear()
        self._wakeup.set()

    def put_later(
        self, key: RolloutKey, delay: float, *, refresh: bool = False, urgent: bool = False
    ) -> None:
        """Re-queue after a back-off; a newer put in the meantime is not delayed by this.
        ``urgent`` (an abort's retry) jumps the line again when it fires. One timer per key:
        the sooner of the two wins (a later back-off never postpones an abort's retry), with
        both requests' flags."""
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
            old_due, old_refresh, old_urgent = self._timer_args.pop(key)
            due = min(due, old_due)
            refresh, urgent = refresh or old_refresh, urgent or old_urgent
        self._timers[key] = loop.call_at(due, self._fire, key, refresh, urgent)
        self._timer_args[key] = (due, refresh, urgent)
        self._idle.clear()

    def _fire(self, key: RolloutKey, refresh: bool, urgent: bool) -> None:
        self._timers.pop(key, None)
        self._timer_args.pop(key, None)
        self.put(key, refresh=refresh, urgent=urgent, changed=False)

    def superseded(self, key: RolloutKey) -> bool:
        """A worker holds ``key`` and a newer change of its objects is waiting: what the
        worker is writing may already be stale."""
        flags = self._again.get(key)
        return flags is not None and flags.changed

    async def get(self, *, urgent_only: bool = False) -> tuple[RolloutKey, _Flags]:
        """The next key: urgent ones first. ``urgent_only`` waits for an urgent one (the abort
        worker, which no amount of slow ordinary work can keep busy)."""
        while True:
            lanes: tuple[deque[RolloutKey], ...] = (self._urgent,)
            if not urgent_only:
                lanes = (self._urgent, self._normal)
                if len(self._sweeping) < self.sweep_limit:
                    lanes += (self._sweep,)
            for lane in lanes:
                while lane:
                    key = lane.popleft()
                    flags = self._queued.get(key)
                    if lane is self._sweep:
                        self._in_sweep.discard(key)
                        if flags is not None and not flags.sweep:
                            continue  # a change took it out of the sweep lane
                    elif flags is None or flags.sweep or (lane is self._normal and flags.urgent):
                        continue  # already taken from another lane
                    if flags is None:
                        continue
                    del self._queued[key]
                    if lane is self._sweep:
                        self._sweeping.add(key)
                    self._active.add(key)
                    self._no_active.clear()
                    return key, flags
            self._wakeup.clear()
            await self._wakeup.wait()

    def done(self, key: RolloutKey) -> None:
        self._active.discard(key)
        if key in self._sweeping:
            self._sweeping.discard(key)
            if self._sweep:
                self._wakeup.set()  # a check may go now
        if not self._active:
            self._no_active.set()
        again = self._again.pop(key, None)
        if again is not None and again.sweep:
            self.put_sweep(key)
        elif again is not None:
            self.put(key, refresh=again.refresh, urgent=again.urgent)
        else:
            self._idle_if_empty()

    def forget(self, key: RolloutKey) -> None:
        self._timer_args.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
            self._idle_if_empty()

    def _idle_if_empty(self) -> None:
        if not self._queued and not self._active and not self._timers:
            self._idle.set()

    async def join(self) -> None:
        """Wait until nothing is queued, in flight or waiting on a back-off timer."""
        await self._idle.wait()

    async def drained(self) -> None:
        """Wait until no key is in a worker's hands (in-flight writes finished)."""
        await self._no_active.wait()

    @property
    def active(self) -> int:
        return len(self._active)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._timer_args.clear()
        self._idle_if_empty()
