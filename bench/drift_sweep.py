"""Drift sweep at 1,000 managed upstreams, and "nothing is written while nothing changes".

Run: ``python bench/drift_sweep.py [--rollouts 1000] [--rounds 3]``

After the initial sync (Kong holds exactly what every Rollout wants):

- an idle period with the real ``sweeper`` task running (``reconcile.interval`` shortened so
  sweeps happen inside it): requests by method — PATCH/POST/PUT/DELETE must be 0;
- ``resync_all()`` + ``queue.join()`` timed ``--rounds`` times: the drift sweep the daemon runs
  every ``reconcile.interval``. Requests are counted on both sides: the daemon's
  ``kongsplit_kong_requests`` counter and the simulator's own ``/status`` request count.
- the same sweep after someone changed 10 weights behind kongsplit's back: exactly 10 PATCHes.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import common as c

WRITES = ("PATCH", "POST", "PUT", "DELETE")


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {m: after.get(m, 0) - before.get(m, 0) for m in ("GET", *WRITES)}


async def drift_sweep(sim: c.SimProcess, w: c.Wired, n: int, rounds: int, idle: float) -> None:
    c.heading(f"3. drift sweep at {n} managed upstreams, nothing changed")
    # Idle, with the real sweeper ticking.
    r0, s0 = w.requests(), await c.sim_total_requests(sim.url)
    sweeper = asyncio.create_task(w.rec.sweeper(interval=idle / 2.5), name="sweeper")
    await asyncio.sleep(idle)
    sweeper.cancel()
    await asyncio.gather(sweeper, return_exceptions=True)
    await w.rec.queue.join()
    d = delta(w.requests(), r0)
    sim_seen = await c.sim_total_requests(sim.url) - s0 - 1
    c.row(
        f"idle {idle:.1f} s (sweeper every {idle / 2.5:.1f} s): writes",
        str(sum(d[m] for m in WRITES)),
        f"GET {d['GET']}, simulator saw {sim_seen} requests",
    )

    times: list[float] = []
    per_upstream: list[float] = []
    writes: list[int] = []
    for _ in range(rounds):
        r0, s0 = w.requests(), await c.sim_total_requests(sim.url)
        t0 = time.perf_counter()
        w.rec.resync_all()
        await w.rec.queue.join()
        times.append(time.perf_counter() - t0)
        d = delta(w.requests(), r0)
        sim_seen = await c.sim_total_requests(sim.url) - s0 - 1
        if sim_seen != sum(d.values()):
            raise SystemExit(f"daemon counted {d}, simulator saw {sim_seen}")
        per_upstream.append(d["GET"] / n)
        writes.append(sum(d[m] for m in WRITES))
    c.row(
        "resync_all() + queue.join(): median",
        c.ms(c.median(times)),
        " ".join(f"{t * 1000:.0f}" for t in times) + " (target <= 1 s)",
    )
    c.row("GET per upstream per sweep", f"{c.median(per_upstream):.2f}", "(one page each)")
    c.row("writes during the sweeps (PATCH/POST/PUT/DELETE)", str(sum(writes)), "(must be 0)")

    # Drift: 10 weights changed behind kongsplit's back, put back by the next sweep.
    r0 = w.requests()
    changed = await c.drift(sim.url, w, 10)
    t0 = time.perf_counter()
    w.rec.resync_all()
    await w.rec.queue.join()
    took = time.perf_counter() - t0
    d = delta(w.requests(), r0)
    c.row(
        f"sweep after {changed} weights drifted",
        c.ms(took),
        f"kongsplit PATCHed {d['PATCH']} (expected {changed})",
    )


async def main_async(args: argparse.Namespace) -> None:
    c.production_logging()
    async with c.sim_process() as sim, c.wired(sim.url, concurrency=args.concurrency) as w:
        print(f"kong-sim in its own process at {sim.url}; {c.machine()}", flush=True)
        t0 = time.perf_counter()
        c.load(w.rec, args.rollouts)
        await c.initial_sync(w.rec)
        took = time.perf_counter() - t0
        c.row(f"setup: {args.rollouts} Rollouts loaded and synced", f"{took:.2f} s")
        await drift_sweep(sim, w, args.rollouts, args.rounds, args.idle)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rollouts", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--idle", type=float, default=3.0, help="seconds of idle observation")
    p.add_argument("--concurrency", type=int, default=16, help="reconcile.concurrency")
    asyncio.run(main_async(p.parse_args(argv)))


if __name__ == "__main__":
    main()
