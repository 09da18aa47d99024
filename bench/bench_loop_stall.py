"""Does the engine block its host's event loop? A heartbeat beside a first run.

An async service embeds the engine; while a run goes on, the service's own tasks
must keep running. A heartbeat task wakes every 5 ms beside the first run (empty
runs directory, cache on: ingest, every plugin, the cache written, the artifacts
and trace written) of the whole fleet on a synthetic event log, and records how
late each wake-up was. The same heartbeat alone (no run) is the baseline, measured
in the same process just before.

    python bench/bench_loop_stall.py [--rows 200000] [--workers 2] [--backend asyncio|trio]

Prints the lateness percentiles of both and, as the last line,
``worst_stall_ms <worst lateness during the run>`` (target: <= 20).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import anyio

from engine import Engine
from engine._tools.synth import synthesize

ROOT = Path(__file__).resolve().parent.parent
PERIOD_S = 0.005


async def heartbeat(late: list[float], stop: anyio.Event) -> None:
    wake = anyio.current_time()
    while not stop.is_set():
        wake += PERIOD_S
        await anyio.sleep_until(wake)
        now = anyio.current_time()
        late.append(now - wake)
        if now - wake > PERIOD_S:  # do not count one stall as many missed beats
            wake = now


async def measure(
    dataset: Path, runs: Path, workers: int
) -> tuple[list[float], list[float], float]:
    idle: list[float] = []
    busy: list[float] = []
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat, idle, stop)
        await anyio.sleep(1.0)
        stop.set()
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat, busy, stop)
        start = time.perf_counter()
        async with Engine(plugins_dir=ROOT / "plugins", runs_dir=runs, workers=workers) as engine:
            result = await engine.run(dataset, seed=1)
        wall = time.perf_counter() - start
        stop.set()
    assert result.report.summary.plugins > 0
    return idle, busy, wall


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return f"p50 {at(0.5):.2f} ms, p99 {at(0.99):.2f} ms, worst {ordered[-1] * 1000:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="engine-bench-stall-"))
    try:
        dataset = tmp / "events.parquet"
        synthesize(dataset, rows=args.rows, seed=1, scenario="ops_incidents")
        idle, busy, wall = anyio.run(
            measure, dataset, tmp / "runs", args.workers, backend=args.backend
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"rows {args.rows}, workers {args.workers}, backend {args.backend}")
    print(f"heartbeat alone ({len(idle)} beats): {percentiles(idle)}")
    print(f"heartbeat beside a first run of {wall:.2f} s ({len(busy)} beats): {percentiles(busy)}")
    print(f"worst_stall_ms {max(busy) * 1000:.1f}")


if __name__ == "__main__":
    main()
