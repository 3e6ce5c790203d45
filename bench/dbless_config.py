"""5. A 5 MB DB-less config: parse, edit, serialise, hash, and the event loop's longest stall.

Run: ``python bench/dbless_config.py [--services 10000] [--upstreams 1000] [--rounds 5]``

The config has the shape of Kong's ``GET /config`` export (lyaml's own text, written by
``configtext.export_lyaml``): ``--services`` services, as many routes, ``--upstreams`` upstreams
with two targets each. Each round, while a ticker task sleeps 1 ms at a time and records how late
it wakes (the loop's stall):

- parse: ``await configtext.load_async(text)`` (a worker thread);
- edit: ``declarative.edit_config`` on one upstream (weights changed, a target added), on the loop;
- serialise: ``await configtext.dump_json_async(config)``;
- hash: ``configtext.config_hash(posted)`` on the loop (hashlib releases the GIL).

Shown beside them: the same parse called on the loop directly (the stall a synchronous call would
cause), PyYAML's C loader (``yaml.CSafeLoader``) on the same text, and with ``--pure-python``
PyYAML's ``yaml.safe_load``, which kongsplit used before (pure Python; tens of seconds at 5 MB).
Target: the loop never stalls more than 100 ms.

What is left of the stall in the worker thread is CPython's generation-2 garbage collection: a
parse leaves ~65,000 new containers, the next full collection walks every tracked object of the
process with the GIL held, whichever thread triggers it. ``--gc-freeze`` calls ``gc.freeze()``
after each parse (the config's dicts and lists are acyclic, so refcounting still frees them) to
show that part alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import common as c
import yaml

from kongsplit.kong import configtext
from kongsplit.kong.apply import KongRouter
from kongsplit.kong.client import KongAdmin
from kongsplit.kong.declarative import edit_config
from kongsplit.kong.targets import DesiredTarget, owner_tags_for

T = TypeVar("T")
_NS = uuid.UUID("5f0c7d1e-2b3a-4c5d-8e9f-0a1b2c3d4e5f")


def build_config(services: int, upstreams: int) -> dict[str, Any]:
    """Kong 3.9's export shape: ids, foreign keys as ids, unset fields as null."""

    def uid(kind: str, n: int) -> str:
        return str(uuid.uuid5(_NS, f"{kind}:{n}"))

    svc = [
        {
            "id": uid("service", n),
            "name": f"svc-{n}",
            "host": f"app{n}.shop.svc",
            "port": 8080,
            "protocol": "http",
            "path": None,
            "retries": 5,
            "connect_timeout": 60000,
            "enabled": True,
            "tags": ["shop", f"team-{n % 20:02d}"],
        }
        for n in range(services)
    ]
    routes = [
        {
            "id": uid("route", n),
            "name": f"route-{n}",
            "service": uid("service", n),
            "protocols": ["http", "https"],
            "paths": [f"/app{n}"],
            "strip_path": True,
            "tags": ["shop"],
        }
        for n in range(services)
    ]
    ups = [
        {"id": uid("upstream", n), "name": f"app{n}.shop.svc", "algorithm": "round-robin"}
        for n in range(upstreams)
    ]
    targets = [
        {
            "id": uid("target", 2 * n + canary),
            "target": f"10.{n // 250}.{n % 250}.{10 + canary}:8080",
            "weight": 10 if canary else 90,
            "upstream": uid("upstream", n),
            "tags": ["managed-by-kongsplit"],
            "created_at": 1712345678.123,
        }
        for n in range(upstreams)
        for canary in (0, 1)
    ]
    return {
        "_format_version": "3.0",
        "_transform": False,
        "services": svc,
        "routes": routes,
        "upstreams": ups,
        "targets": targets,
    }


class Ticker:
    """Sleeps 1 ms at a time; the worst lateness while ``measure`` runs is the loop's stall."""

    def __init__(self) -> None:
        self.worst = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            due = loop.time() + 0.001
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, loop.time() - due)

    async def measure(self, work: Callable[[], Awaitable[T]]) -> tuple[T, float, float]:
        """(result, seconds, worst stall) of ``work()`` with the ticker running beside it."""
        self.worst = 0.0
        stop = asyncio.Event()
        ticker = asyncio.create_task(self.run(stop))
        await asyncio.sleep(0.005)  # the ticker is running
        self.worst = 0.0
        t0 = time.perf_counter()
        result = await work()
        took = time.perf_counter() - t0
        stop.set()
        await ticker
        return result, took, self.worst


def edit_one(config: dict[str, Any], n: int) -> None:
    """kongsplit's DB-less write for one Rollout: weights moved, one target added."""
    upstream = f"app{n}.shop.svc"
    desired = [
        DesiredTarget(f"10.{n // 250}.{n % 250}.10:8080", 75, "stable"),
        DesiredTarget(f"10.{n // 250}.{n % 250}.11:8080", 20, "canary"),
        DesiredTarget(f"10.{n // 250}.{n % 250}.12:8080", 5, "canary"),
    ]
    edit = edit_config(
        config,
        upstream,
        desired,
        owner_tags=owner_tags_for("shop", f"app{n}"),
        create_upstream=False,
        exclusive=False,
    )
    if {t.target: t.weight for t in edit.targets.values()} != {d.target: d.weight for d in desired}:
        raise SystemExit(f"edit of {upstream} did not apply")


async def main_async(args: argparse.Namespace) -> None:
    print(c.machine() + (", gc.freeze() after each parse" if args.gc_freeze else ""), flush=True)
    config = build_config(args.services, args.upstreams)
    t0 = time.perf_counter()
    text = configtext.export_lyaml(config)
    c.row(
        "config (lyaml export text)",
        f"{len(text.encode()) / 1e6:.2f} MB",
        f"{args.services} services and routes, {args.upstreams} upstreams, "
        f"{2 * args.upstreams} targets; written in {time.perf_counter() - t0:.1f} s",
    )
    if args.gc_freeze:
        gc.freeze()
    ticker = Ticker()
    rows: dict[str, list[tuple[float, float]]] = {
        k: [] for k in ("parse", "edit", "serialise", "hash", "parse on the loop")
    }
    posted_size = 0
    for r in range(args.rounds):
        loaded, took, stall = await ticker.measure(lambda: configtext.load_async(text))
        rows["parse"].append((took, stall))
        if args.gc_freeze:
            gc.freeze()
        if r == 0 and loaded != config:
            raise SystemExit("the parsed config differs from the one written")

        async def edit(cfg: dict[str, Any] = loaded, n: int = r) -> None:
            edit_one(cfg, n)

        _, took, stall = await ticker.measure(edit)
        rows["edit"].append((took, stall))
        posted, took, stall = await ticker.measure(
            lambda cfg=loaded: configtext.dump_json_async(cfg)
        )
        rows["serialise"].append((took, stall))
        posted_size = len(posted.encode())

        async def digest(p: str = posted) -> str:
            return configtext.config_hash(p)

        _, took, stall = await ticker.measure(digest)
        rows["hash"].append((took, stall))

        async def on_the_loop() -> Any:
            return configtext.load(text)

        _, took, stall = await ticker.measure(on_the_loop)
        rows["parse on the loop"].append((took, stall))

    c.heading(f"5. DB-less config, {args.rounds} rounds (stall: how late a 1 ms ticker woke)")
    c.row("", "median time", "loop stall: median / worst round")
    for name, values in rows.items():
        times = [t for t, _ in values]
        stalls = [s for _, s in values]
        note = f"stall {c.ms(c.median(stalls))} / {c.ms(max(stalls))}"
        if name == "serialise":
            note += f"; {posted_size / 1e6:.2f} MB of JSON"
        if name == "parse on the loop":
            note += " (why the worker thread)"
        c.row(name, c.ms(c.median(times)), note)
    total_stall = max(s for name in ("parse", "edit", "serialise", "hash") for _, s in rows[name])
    c.row(
        "worst stall, parse + edit + serialise + hash",
        c.ms(total_stall),
        "target <= 100 ms: " + ("met" if total_stall <= 0.1 else "MISSED"),
    )

    if not args.no_daemon:
        await daemon_path(args, config)

    t0 = time.perf_counter()
    yaml.load(text, Loader=yaml.CSafeLoader)
    c.row("PyYAML CSafeLoader, same text (once)", c.ms(time.perf_counter() - t0))
    if args.pure_python:
        t0 = time.perf_counter()
        yaml.safe_load(text)
        c.row("PyYAML safe_load (pure Python), once", c.ms(time.perf_counter() - t0))


async def daemon_path(args: argparse.Namespace, config: dict[str, Any]) -> None:
    """The same config behind a DB-less Kong (the simulator, in its own process), edited the way
    the daemon edits it: ``KongRouter.apply`` through the DB-less flusher, ``gc`` policy and
    all. The first apply reads the node's config (GET /config, parse in a worker thread); the
    next ones start from the config kongsplit posted, while the node's hash says it is still
    the one loaded."""
    async with c.sim_process(mode="off") as sim:
        async with aiohttp.ClientSession() as http:
            posted = configtext.dump_json(config)
            async with http.post(f"{sim.url}/config", json={"config": posted}) as resp:
                if resp.status != 201:
                    raise SystemExit(f"the simulator refused the config: {resp.status}")
        router = KongRouter(KongAdmin(sim.url, timeout=60.0))
        flusher = asyncio.create_task(router.dbless.run())
        ticker = Ticker()
        rows: list[tuple[str, float, float]] = []
        try:
            for r in range(args.rounds + 1):
                n = r % args.upstreams
                desired = [
                    DesiredTarget(f"10.{n // 250}.{n % 250}.10:8080", 80 - r, "stable"),
                    DesiredTarget(f"10.{n // 250}.{n % 250}.11:8080", 20 + r, "canary"),
                ]

                async def apply(i: int = n, d: Any = desired) -> Any:
                    return await router.apply(
                        f"app{i}.shop.svc", d, owner_tags=owner_tags_for("shop", f"app{i}")
                    )

                result, took, stall = await ticker.measure(apply)
                if not result.config_posted:
                    raise SystemExit("the apply posted nothing")
                rows.append(("first apply (GET /config)" if r == 0 else "apply", took, stall))
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await router.close()
    c.heading("5b. The daemon's path: KongRouter.apply on a DB-less node holding that config")
    first = rows[0]
    c.row(first[0], c.ms(first[1]), f"stall {c.ms(first[2])}")
    rest = rows[1:]
    c.row(
        f"apply, {len(rest)} more (no GET: the node still holds kongsplit's post)",
        c.ms(c.median([t for _, t, _ in rest])),
        f"stall median {c.ms(c.median([s for _, _, s in rest]))} / worst "
        f"{c.ms(max(s for _, _, s in rest))}",
    )
    worst = max(s for _, _, s in rows)
    c.row(
        "worst stall, any apply",
        c.ms(worst),
        "target <= 100 ms: " + ("met" if worst <= 0.1 else "MISSED"),
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--services", type=int, default=10000)
    p.add_argument("--upstreams", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--pure-python", action="store_true", help="also time yaml.safe_load (slow: ~1 min)"
    )
    p.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after each parse")
    p.add_argument(
        "--no-daemon", action="store_true", help="skip the daemon's path against the simulator"
    )
    asyncio.run(main_async(p.parse_args(argv)))


if __name__ == "__main__":
    main()
