"""Resident memory with 5,000 Rollouts (+ 10,000 Services and 10,000 ReplicaSets) loaded.

Run: ``python bench/memory.py [--rollouts 5000]`` (its own process, so the figures are its own).

Figures, in order:
- RSS at baseline: interpreter, kongsplit, aiohttp, prometheus_client imported; a Reconciler
  built; the Kong simulator started (in another process, not counted);
- RSS after the objects were delivered to the caches (``on_service`` / ``on_replicaset`` /
  ``on_rollout``), the raw watch objects dropped as the watcher drops them;
- RSS after the initial sync against Kong (per-Rollout state, Kong target cache, metrics
  series), and the process's peak (``ru_maxrss``) — the design's ≤ 100 MiB is about this;
- tracemalloc: the bytes a second, fresh ``Store`` holds for the same objects (the caches
  alone), measured last so tracing does not inflate the RSS figures above.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import tracemalloc

import common as c

from kongsplit.store import Store


def load_store(store: Store, n: int) -> None:
    for i in range(n):
        for svc in c.services(i):
            store.set_service(svc)
        for rs in c.replicasets(i):
            store.set_replicaset(rs)
    for i in range(n):
        store.set_rollout(c.rollout(i, 0))


async def main_async(args: argparse.Namespace) -> None:
    n = args.rollouts
    c.production_logging()
    async with c.sim_process() as sim, c.wired(sim.url) as w:
        print(f"kong-sim in its own process at {sim.url}; {c.machine()}", flush=True)
        c.heading(f"4. memory with {n} Rollouts, {2 * n} Services, {2 * n} ReplicaSets")
        gc.collect()
        base = c.rss_mib()
        c.row("RSS baseline (imports, Reconciler, no objects)", f"{base:.1f} MiB")
        c.load(w.rec, n)
        gc.collect()
        loaded = c.rss_mib()
        c.row("RSS after loading the caches", f"{loaded:.1f} MiB", f"(+{loaded - base:.1f})")
        t0 = time.perf_counter()
        await c.initial_sync(w.rec)
        took = time.perf_counter() - t0
        applied = sum(1 for s in w.rec.states.values() if s.applied is not None)
        gc.collect()
        synced = c.rss_mib()
        c.row(
            f"RSS after initial sync ({applied} upstreams, {took:.1f} s)",
            f"{synced:.1f} MiB",
            f"(+{synced - base:.1f} over baseline)",
        )
        c.row(
            "peak RSS of the process (ru_maxrss)",
            f"{c.max_rss_mib():.1f} MiB",
            "(target <= 100 MiB)",
        )
        c.row("per Rollout (synced - baseline) / N", f"{(synced - base) * 1024 / n:.1f} KiB")
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    store = Store()
    load_store(store, n)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    c.row(
        "tracemalloc: one Store holding the same objects",
        f"{held / 2**20:.1f} MiB",
        f"({held / n / 1024:.1f} KiB per Rollout with its 2 Services + 2 ReplicaSets)",
    )
    del store


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rollouts", type=int, default=5000)
    asyncio.run(main_async(p.parse_args(argv)))


if __name__ == "__main__":
    main()
