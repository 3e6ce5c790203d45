"""``python bench/scale_gc.py run ...``: ``kongsplit run`` with its garbage collector's pauses
written down (``bench/scale.py``).

The very daemon (``kongsplit.cli.main``), plus one ``gc.callbacks`` hook that times every
collection and appends the slow ones (generation 2, or over 5 ms) to ``$SCALE_GC_LOG`` as JSON
lines ``{"t": monotonic, "gen": 2, "ms": 81.3, "collected": 12}``. A full collection walks every
object the process holds with the GIL held: nothing else runs meanwhile, ``/healthz`` included,
so these pauses are what a large N adds to every latency figure.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kongsplit.cli import main

SLOW_MS = 5.0


def stall_watch(path: str, threshold: float = 0.05) -> None:
    """A diagnostic (``$SCALE_STALL_LOG``): a thread that, whenever the event loop has not
    ticked for ``threshold`` seconds, writes where the main thread is."""
    import asyncio
    import threading
    import traceback

    beat = [time.monotonic()]
    main_id = threading.main_thread().ident
    out = open(path, "a", buffering=1)  # noqa: SIM115

    async def heartbeat() -> None:
        while True:
            beat[0] = time.monotonic()
            await asyncio.sleep(0.005)

    def watchdog() -> None:
        reported = 0.0
        while True:
            time.sleep(0.01)
            late = time.monotonic() - beat[0]
            if late > threshold and beat[0] != reported:
                frame = sys._current_frames().get(main_id)
                stack = traceback.format_stack(frame, limit=12) if frame is not None else []
                out.write(
                    json.dumps(
                        {
                            "t": time.monotonic(),
                            "late_ms": round(late * 1000),
                            "stack": [ln.strip().splitlines()[0] for ln in stack],
                        }
                    )
                )
                out.write("\n")
                reported = beat[0]

    threading.Thread(target=watchdog, daemon=True).start()
    from kongsplit import app

    serve = app.Daemon.serve

    async def serve_with_heartbeat(self: Any) -> int:
        task = asyncio.create_task(heartbeat())
        try:
            return await serve(self)
        finally:
            task.cancel()

    app.Daemon.serve = serve_with_heartbeat  # type: ignore[method-assign]


def heap_census(path: str) -> None:
    """A diagnostic (``$SCALE_HEAP_LOG``): on SIGUSR2, the live objects by type (count,
    shallow bytes) and the commonest shapes of strings (digits as ``#``) appended to ``path``."""
    import collections
    import signal

    def dump(signum: int, frame: Any) -> None:
        gc.unfreeze()  # frozen objects are not listed by gc.get_objects()
        counts: collections.Counter[str] = collections.Counter()
        sizes: collections.Counter[str] = collections.Counter()
        objs = gc.get_objects() + [o for o in gc.get_referents(*gc.get_objects())]
        seen: set[int] = set()
        for o in objs:
            if id(o) in seen:
                continue
            seen.add(id(o))
            name = type(o).__name__
            counts[name] += 1
            sizes[name] += sys.getsizeof(o)
        import re

        strs = {id(o): o for o in objs if type(o) is str}.values()
        shapes: collections.Counter[str] = collections.Counter()
        for x in strs:
            shape = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<uuid>", re.sub(r"[0-9]+", "#", x))
            shapes[shape[:50]] += 1
        sample = [f"{n} {k!r}" for k, n in shapes.most_common(60)]
        with open(path, "a") as out:
            out.write(
                json.dumps(
                    {
                        "t": time.monotonic(),
                        "total_bytes": sum(sizes.values()),
                        "types": [[k, counts[k], sizes[k]] for k, _ in sizes.most_common(40)],
                        "str_sample": sample,
                    }
                )
                + "\n"
            )
        gc.freeze()

    signal.signal(signal.SIGUSR2, dump)


def install(path: str) -> None:
    out = open(path, "a", buffering=1)  # noqa: SIM115 - open for the life of the process
    started: list[float] = [0.0]

    def hook(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - started[0]) * 1000
        if info["generation"] == 2 or ms >= SLOW_MS:
            line = {
                "t": round(time.monotonic(), 4),
                "gen": info["generation"],
                "ms": round(ms, 2),
                "collected": info["collected"],
            }
            out.write(json.dumps(line) + "\n")

    gc.callbacks.append(hook)


if __name__ == "__main__":
    log = os.environ.get("SCALE_GC_LOG")
    if log:
        install(log)
    if os.environ.get("SCALE_HEAP_LOG"):
        heap_census(os.environ["SCALE_HEAP_LOG"])
    if os.environ.get("SCALE_STALL_LOG"):
        stall_watch(os.environ["SCALE_STALL_LOG"])
    sys.exit(main())
