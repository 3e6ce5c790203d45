"""``kongsplit sim-kong``: run the Kong Admin API simulator on its own until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from kongsplit.config import ConfigError, parse_listen
from kongsplit.sim.kongsim import MODES, KongSim

DEMO_UPSTREAM = "demo.default.80.svc"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        default="127.0.0.1:8001",
        metavar="HOST:PORT",
        help="address of node 0; node i listens on PORT+i (default 127.0.0.1:8001)",
    )
    parser.add_argument("--mode", choices=MODES, default="postgres", help="Kong deployment mode")
    parser.add_argument("--nodes", type=int, default=1, help="number of Kong nodes (default 1)")
    parser.add_argument(
        "--propagation-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds until other nodes' balancers see a change (db_update_frequency)",
    )
    parser.add_argument("--version", dest="kong_version", default="3.9.3", help="Kong version")
    parser.add_argument("--token", default=None, help="require this Kong-Admin-Token (RBAC)")
    parser.add_argument(
        "--workspace",
        action="append",
        default=[],
        metavar="W",
        help="an extra Enterprise workspace (repeatable)",
    )
    parser.add_argument(
        "--seed-demo",
        action="store_true",
        help=f"create upstream {DEMO_UPSTREAM} with a stable (100) and a canary (0) target",
    )


def seed_demo(sim: KongSim) -> None:
    if sim.db_less:
        sim.external_config_push(
            {
                "_format_version": "3.0",
                "upstreams": [
                    {
                        "name": DEMO_UPSTREAM,
                        "targets": [
                            {"target": "10.96.0.10:80", "weight": 100},
                            {"target": "10.96.0.11:80", "weight": 0},
                        ],
                    }
                ],
            }
        )
        return
    sim.add_upstream(DEMO_UPSTREAM)
    sim.add_target(DEMO_UPSTREAM, "10.96.0.10:80", 100)
    sim.add_target(DEMO_UPSTREAM, "10.96.0.11:80", 0)


async def serve(args: argparse.Namespace) -> int:
    host, port = parse_listen(args.listen, "--listen")
    host = host.strip("[]")
    workspaces = ("default", *[w for w in args.workspace if w != "default"])
    sim = KongSim(
        mode=args.mode,
        version=args.kong_version,
        nodes=args.nodes,
        propagation_delay=args.propagation_delay,
        token=args.token,
        workspaces=workspaces,
    )
    if args.seed_demo:
        seed_demo(sim)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await sim.start(host, port)
        for i, url in enumerate(sim.urls):
            print(f"kong-sim node {i} ({args.mode}): {url}", flush=True)
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await sim.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        print("sim-kong: --nodes must be >= 1", file=sys.stderr)
        return 2
    try:
        return asyncio.run(serve(args))
    except ConfigError as err:
        print(f"sim-kong: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"sim-kong: cannot listen: {err}", file=sys.stderr)
        return 1
