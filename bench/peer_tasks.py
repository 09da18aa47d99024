"""The task bodies bench_peers.py runs: as engine plugins (``run``) and as the bare
pool's and Dask's functions (``task``), the same code on every side."""

from __future__ import annotations

import time
from typing import Any

from contracts import na

# W3's unit of CPU work: pure-Python integer arithmetic, about 20 ms on the
# reference machine (the 40 CPU tasks took 0.475 s on two workers).
CPU_LOOPS = 250_000


def task(kind: str, seconds: float = 0.0, *upstream: Any) -> int:
    """``noop``: nothing; ``sleep``: ``seconds`` asleep; ``cpu``: CPU_LOOPS of work.
    ``upstream`` (the results of the task's dependencies) is only waited for."""
    if kind == "sleep":
        time.sleep(seconds)
        return 0
    if kind == "cpu":
        total = 0
        for i in range(CPU_LOOPS):
            total += i * i % 7
        return total
    return sum(range(200))


def run(ctx: Any) -> Any:
    done = task(ctx.settings["kind"], ctx.settings["seconds"])
    return na("NO_SIGNIFICANT_EFFECT", f"peer benchmark task (checked {done})")
