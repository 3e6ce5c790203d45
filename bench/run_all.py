"""Every benchmark, each in its own process (so memory figures are not inflated by the others).

Run: ``python bench/run_all.py`` (about a minute on 2 cores; all traffic on 127.0.0.1).
Options after ``--`` are not supported: run a file alone to change its sizes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ("apply_latency.py", "drift_sweep.py", "memory.py", "dbless_config.py")


def main() -> int:
    started = time.perf_counter()
    failed = []
    for name in BENCHES:
        print(f"\n### {name}", flush=True)
        code = subprocess.run([sys.executable, str(HERE / name)], timeout=170).returncode
        if code != 0:
            failed.append(name)
    print(f"\nall benchmarks: {time.perf_counter() - started:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
