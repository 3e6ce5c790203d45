"""Short garbage-collector pauses at any number of Rollouts: what is long-lived is frozen.

CPython's cyclic collector walks every object of the generation it collects with the GIL held,
so a full (generation-2) collection stops the event loop — ``/healthz``, the watches, the
workers — for as long as the walk takes. The daemon's heap is mostly long-lived: the modules it
imported (about 80,000 objects), then per Rollout its parsed objects, Services, ReplicaSets,
state and Kong's targets (about 40 objects). A full walk at 20,000 Rollouts took 150-450 ms on
the 2-core benchmark machine (bench/README.md, "Scale"), and it happens again and again while
the caches fill and during bursts.

``gc.freeze()`` moves every object alive now into a permanent generation that no collection
walks; reference counting still frees them when they are dropped (a replaced Rollout, a
forgotten upstream). What freezing can cost is an object that later dies *inside a reference
cycle*: only the cyclic collector frees those, and it no longer sees them. The daemon makes very
few (the benchmark's full collections found 0-30 such objects each), and ``HeapKeeper`` bounds
even those:

- ``settle()`` after start-up and after each full sync: young garbage collected (cheap), the
  rest frozen;
- ``run()``: every ``interval`` (a second in the daemon), when the oldest generation holds
  more than ``freeze_above`` objects again (Rollouts changed since: new objects), the same;
  and every ``thaw_every`` seconds a full collection of everything (the one long pause, once
  an hour by default), then everything alive frozen again, so nothing that died in a cycle is
  kept longer than that.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Protocol

logger = logging.getLogger(__name__)

#: Objects in the oldest generation above which the next tick freezes them: a full collection
#: of this many takes ~10-20 ms on a loaded 2-core machine.
FREEZE_ABOVE = 50_000
#: How often everything is thawed and collected once (the one full walk of the whole heap).
THAW_EVERY = 3600.0


class Collector(Protocol):
    """The part of the ``gc`` module used here (tests pass a fake)."""

    def collect(self, generation: int = 2) -> int: ...

    def freeze(self) -> None: ...

    def unfreeze(self) -> None: ...

    def get_objects(self, generation: int | None = None) -> list[object]: ...

    def isenabled(self) -> bool: ...


class HeapKeeper:
    """Freezes the long-lived heap (``settle``), keeps it frozen as it grows and thaws it for
    one full collection every ``thaw_every`` seconds (``run``)."""

    def __init__(
        self,
        *,
        freeze_above: int = FREEZE_ABOVE,
        thaw_every: float = THAW_EVERY,
        collector: Collector = gc,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.freeze_above = freeze_above
        self.thaw_every = thaw_every
        self.gc = collector
        self.clock = clock
        self.thawed_at = clock()
        self.freezes = 0
        self.thaws = 0

    def settle(self) -> None:
        """Collect the young generations (cheap: what was allocated lately), then freeze every
        object alive. Garbage that has already reached the oldest generation is frozen with the
        rest until the next thaw: the daemon makes almost none."""
        if not self.gc.isenabled():
            return  # someone manages the collector themselves (a profiler, a test): leave it
        self.gc.collect(1)
        self.gc.freeze()
        self.freezes += 1

    def tick(self) -> None:
        """One check: thaw and collect everything when it is time, else freeze when the
        oldest generation grew past ``freeze_above``."""
        if not self.gc.isenabled():
            return
        now = self.clock()
        if now - self.thawed_at >= self.thaw_every:
            started = time.perf_counter()
            self.gc.unfreeze()
            self.gc.collect()
            self.gc.freeze()
            self.thawed_at = now
            self.thaws += 1
            logger.debug(
                "full garbage collection of the whole heap",
                extra={"ms": round((time.perf_counter() - started) * 1000, 1)},
            )
            return
        if len(self.gc.get_objects(2)) > self.freeze_above:
            self.settle()

    async def run(self, interval: float) -> None:
        """Forever: ``tick`` every ``interval`` seconds (a root task of the daemon)."""
        while True:
            await asyncio.sleep(interval)
            self.tick()
