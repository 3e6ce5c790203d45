"""Single-change latency and a 1,000-change burst against a bare aiohttp baseline (bench/README.md).

Run: ``python bench/apply_latency.py [--rollouts 1000] [--changes 1000] [--rounds 3]``

Setup: the Kong simulator in its own process on 127.0.0.1; a real ``Reconciler`` with
``reconcile.concurrency`` workers and a real ``KongRouter``; ``--rollouts`` managed Rollouts
(each with two Services and two ReplicaSets) delivered as the watchers would, then the
initial sync (which creates the upstreams and targets and warms the target-id cache).

A change moves ``status.currentStepIndex`` between ``setWeight: 10`` and ``setWeight: 25``;
Kong then takes two PATCHes (canary up then stable down, or the reverse order when lowering),
which the write plan must run one after the other so the upstream never drops weight.

1. Single change, one at a time: the time from ``on_rollout`` to the arrival of the last
   PATCH answer in the daemon's process (our wall clock, the figure quoted), next to the
   reconciler's own ``kongsplit_apply_latency_seconds`` (exact observations, and the
   ``histogram_quantile`` estimate a dashboard would show).
2. Burst: every Rollout moves at once; time until the queue is idle and every PATCH is
   acknowledged, against a bare aiohttp loop sending the same PATCHes (same count, same
   in-flight limit) to the same server in the same run, interleaved round by round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import quote

import aiohttp
import common as c

from kongsplit.rollouts import RolloutKey


async def setup(w: c.Wired, n: int) -> dict[int, int]:
    t0 = time.perf_counter()
    c.load(w.rec, n, index=0)
    loaded = time.perf_counter() - t0
    await c.initial_sync(w.rec)
    synced = time.perf_counter() - t0 - loaded
    c.row(f"setup: {n} Rollouts delivered to the caches", c.ms(loaded))
    c.row("setup: initial sync (creates upstreams+targets)", f"{synced:.2f} s")
    bad = [k for k, s in w.rec.states.items() if s.applied is None or s.last_error]
    if bad:
        raise SystemExit(f"initial sync left {len(bad)} Rollouts unapplied, e.g. {bad[0]}")
    return dict.fromkeys(range(n), 0)


def check_applied(w: c.Wired, index: dict[int, int]) -> None:
    for i, idx in index.items():
        st = w.rec.states[RolloutKey(c.NAMESPACE, f"app{i}")]
        applied = st.applied.targets if st.applied is not None else ()
        canary = sum(t.weight for t in applied if t.role == "canary")
        if canary != c.expected_canary(idx) or st.last_error:
            raise SystemExit(f"app{i}: applied {st.applied} ({st.last_error}), wanted step {idx}")


async def single(w: c.Wired, index: dict[int, int], changes: int, warmup: int = 50) -> None:
    n = len(index)
    wall: list[float] = []
    idle: list[float] = []
    before_obs = len(w.observed_latency)
    patches0 = w.requests().get("PATCH", 0)
    hist0 = c.histogram_buckets(w.metrics)
    for k in range(warmup + changes):
        if k == warmup:
            before_obs = len(w.observed_latency)
            patches0 = w.requests().get("PATCH", 0)
            hist0 = c.histogram_buckets(w.metrics)
        i = k % n
        index[i] = c.FLIP[index[i]]
        up = c.upstream_of(i)
        obj = c.rollout(i, index[i])
        t0 = time.perf_counter()
        w.rec.on_rollout("MODIFIED", obj)
        await w.rec.queue.join()
        t1 = time.perf_counter()
        ack = w.patch_acked.get(up, 0.0)
        if ack < t0:
            raise SystemExit(f"change {k} of app{i}: no PATCH answer seen")
        if k >= warmup:
            wall.append(ack - t0)
            idle.append(t1 - t0)
        await asyncio.sleep(0.001)  # changes arrive one at a time, not back to back
    observed = w.observed_latency[before_obs:]
    patches = w.requests().get("PATCH", 0) - patches0
    hist1 = c.histogram_buckets(w.metrics)
    check_applied(w, index)
    c.heading(f"1. single change -> PATCH acknowledged ({changes} changes, one at a time)")
    c.row("PATCHes per change", f"{patches / changes:.2f}")
    c.row(
        "wall clock on_rollout -> last PATCH answer: median",
        c.ms(c.median(wall)),
        "(quoted; target <= 5 ms)",
    )
    c.row(
        "wall clock on_rollout -> last PATCH answer: p99",
        c.ms(c.pct(wall, 0.99)),
        "(quoted; target <= 50 ms)",
    )
    c.row("wall clock: max", c.ms(max(wall)))
    c.row("on_rollout -> queue idle again: median", c.ms(c.median(idle)))
    base = await single_baseline(w, changes)
    c.row("baseline: bare aiohttp, 2 sequential PATCHes: median", c.ms(c.median(base)))
    c.row("baseline: p99", c.ms(c.pct(base, 0.99)))
    c.row("ratio kongsplit / baseline (median)", f"{c.median(wall) / c.median(base):.2f}x")
    c.row(
        "apply_latency_seconds observations: median",
        c.ms(c.median(observed)),
        f"({len(observed)} observed)",
    )
    c.row("apply_latency_seconds observations: p99", c.ms(c.pct(observed, 0.99)))
    c.row(
        "apply_latency_seconds histogram_quantile(0.5)",
        c.ms(c.histogram_quantile(hist1, hist0, 0.5)),
        "(bucket estimate)",
    )
    c.row(
        "apply_latency_seconds histogram_quantile(0.99)",
        c.ms(c.histogram_quantile(hist1, hist0, 0.99)),
        "(bucket estimate)",
    )


async def single_baseline(w: c.Wired, changes: int) -> list[float]:
    """What one change costs with nothing but aiohttp: its two PATCHes, one after the other."""
    reqs = baseline_requests(w)
    url = w.kong.url
    out: list[float] = []
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        for k in range(changes + 50):
            t0 = time.perf_counter()
            for path, body in reqs[(2 * k) % len(reqs) : (2 * k) % len(reqs) + 2]:
                async with session.patch(url + path, data=body, headers=headers) as r:
                    await r.read()
            if k >= 50:
                out.append(time.perf_counter() - t0)
            await asyncio.sleep(0.001)
    return out


async def burst_kongsplit(w: c.Wired, index: dict[int, int]) -> tuple[float, float, int]:
    patches0 = w.requests().get("PATCH", 0)
    objs = []
    for i in index:
        index[i] = c.FLIP[index[i]]
        objs.append(c.rollout(i, index[i]))
    t0 = time.perf_counter()
    for obj in objs:  # a watch stream delivering 1,000 events back to back
        w.rec.on_rollout("MODIFIED", obj)
    await w.rec.queue.join()
    done = time.perf_counter() - t0
    last_ack = max(w.patch_acked[c.upstream_of(i)] for i in index) - t0
    check_applied(w, index)
    return done, last_ack, w.requests().get("PATCH", 0) - patches0


def baseline_requests(w: c.Wired) -> list[tuple[str, bytes]]:
    """The PATCHes of one burst, to the same targets, writing the weight each already has."""
    out = []
    for i in range(len(w.rec.states)):
        up = c.upstream_of(i)
        targets = w.kong.dbmode.cache.get(None, up)
        assert targets is not None
        for t in targets.values():
            path = f"/upstreams/{quote(up, safe='')}/targets/{quote(t.id, safe='')}"
            out.append((path, json.dumps({"weight": t.weight}).encode()))
    return out


async def burst_baseline(
    session: aiohttp.ClientSession, url: str, reqs: list[tuple[str, bytes]], limit: int
) -> float:
    sem = asyncio.Semaphore(limit)
    headers = {"Content-Type": "application/json"}

    async def one(path: str, body: bytes) -> None:
        async with sem, session.patch(url + path, data=body, headers=headers) as r:
            await r.read()
            if r.status != 200:
                raise SystemExit(f"baseline PATCH {path}: {r.status}")

    t0 = time.perf_counter()
    await asyncio.gather(*(one(p, b) for p, b in reqs))
    return time.perf_counter() - t0


async def burst_baseline_json(
    session: aiohttp.ClientSession, url: str, reqs: list[tuple[str, bytes]], limit: int
) -> float:
    """The same loop as a client would write it: encode the body, decode Kong's answer."""
    sem = asyncio.Semaphore(limit)
    bodies = [(path, json.loads(body)) for path, body in reqs]

    async def one(path: str, body: dict[str, int]) -> None:
        async with sem, session.patch(url + path, json=body) as r:
            if r.status != 200:
                raise SystemExit(f"baseline PATCH {path}: {r.status}")
            await r.json()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(p, b) for p, b in bodies))
    return time.perf_counter() - t0


async def burst(w: c.Wired, url: str, index: dict[int, int], rounds: int) -> None:
    limit = w.rec.settings.reconcile.concurrency
    reqs = baseline_requests(w)
    kong_t: list[float] = []
    ack_t: list[float] = []
    base_t: list[float] = []
    json_t: list[float] = []
    patches: list[int] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        await burst_baseline(session, url, reqs, limit)  # warm the baseline's connections too
        for _ in range(rounds):
            base_t.append(await burst_baseline(session, url, reqs, limit))
            json_t.append(await burst_baseline_json(session, url, reqs, limit))
            done, last, n_patch = await burst_kongsplit(w, index)
            kong_t.append(done)
            ack_t.append(last)
            patches.append(n_patch)
    n = len(index)
    c.heading(f"2. burst: {n} Rollouts change at once ({rounds} rounds, interleaved)")
    c.row("PATCHes per burst (kongsplit / baseline)", f"{patches[0]} / {len(reqs)}")
    c.row("in-flight limit (reconcile.concurrency)", str(limit))
    c.row(
        "baseline: bare aiohttp loop, median",
        c.ms(c.median(base_t)),
        " ".join(f"{x * 1000:.0f}" for x in base_t),
    )
    c.row(
        "baseline with JSON encode/decode, median",
        c.ms(c.median(json_t)),
        " ".join(f"{x * 1000:.0f}" for x in json_t),
    )
    c.row(
        "kongsplit: on_rollout x N -> queue idle, median",
        c.ms(c.median(kong_t)),
        " ".join(f"{x * 1000:.0f}" for x in kong_t),
    )
    c.row("kongsplit: -> last PATCH answer, median", c.ms(c.median(ack_t)))
    ratios = [k / b for k, b in zip(kong_t, base_t, strict=True)]
    c.row(
        "ratio kongsplit / baseline (median of rounds)",
        f"{c.median(ratios):.2f}x",
        "(target <= 1.5x; pre-encoded bodies, answers unread)",
    )
    json_ratios = [k / b for k, b in zip(kong_t, json_t, strict=True)]
    c.row(
        "ratio kongsplit / baseline with JSON",
        f"{c.median(json_ratios):.2f}x",
        "(target <= 1.5x; json= bodies, answers decoded)",
    )
    c.row(
        "throughput kongsplit / baseline",
        f"{patches[0] / c.median(kong_t):.0f} / {len(reqs) / c.median(base_t):.0f}",
        "PATCH/s",
    )


async def main_async(args: argparse.Namespace) -> None:
    c.production_logging()
    async with c.sim_process() as sim, c.wired(sim.url, concurrency=args.concurrency) as w:
        print(f"kong-sim in its own process at {sim.url}; {c.machine()}", flush=True)
        index = await setup(w, args.rollouts)
        await single(w, index, args.changes)
        await burst(w, sim.url, index, args.rounds)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rollouts", type=int, default=1000)
    p.add_argument("--changes", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=16, help="reconcile.concurrency")
    args = p.parse_args(argv)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
