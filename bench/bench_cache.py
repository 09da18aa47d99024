"""Cached rerun vs cold run of the whole fleet on a synthetic event log.

The cold run starts from an empty runs directory (no normalized dataset, no
cached results); the rerun uses the same directory, so the dataset is not
normalized again and every plugin result comes from the cache. Both run inside
one started engine (worker start-up excluded from both). Prints both wall times
and ``cached_rerun_ratio <rerun/cold>`` (target: < 0.10).

Then the same from the command line, as a user meets it: a fully cached
``python -m engine run`` of a CSV (``--csv-rows``, 336k by default) in a new process
each time, against bare ``python -c "import engine"``; the medians of ``--repeat``
runs of each, wall and CPU (user + system) time, alternated so both see the same
machine. Last line: ``cli_rerun_minus_import_s <wall difference>`` (target: <= 0.25).

    python bench/bench_cache.py [--rows 200000] [--scenario ops_incidents] [--workers 2]
                                [--csv-rows 336000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from engine import Engine
from engine._tools.synth import synthesize

ROOT = Path(__file__).resolve().parent.parent


async def measure(dataset: Path, runs: Path, workers: int) -> tuple[float, float, int, int]:
    async with Engine(plugins_dir=ROOT / "plugins", runs_dir=runs, workers=workers) as engine:
        start = time.perf_counter()
        cold = await engine.run(dataset, seed=1)
        cold_s = time.perf_counter() - start
        start = time.perf_counter()
        warm = await engine.run(dataset, seed=1)
        warm_s = time.perf_counter() - start
    hits = sum(r.cached for r in warm.state.plugins.values())
    assert [p.findings for p in warm.report.plugins] == [p.findings for p in cold.report.plugins]
    return cold_s, warm_s, hits, len(warm.state.plugins)


def timed(command: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system, of the child) seconds of one command."""
    before = os.times()
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = os.times()
    return wall, (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )


def cli_rerun(tmp: Path, rows: int, repeat: int) -> tuple[tuple[float, float], tuple[float, float]]:
    data, runs = tmp / "events.csv", tmp / "cli-runs"
    synthesize(data, rows=rows, seed=1, scenario="ops_incidents")
    run = [sys.executable, "-m", "engine", "run", str(data), "--run-dir", str(runs), "--quiet"]
    subprocess.run(run, check=True, stdout=subprocess.DEVNULL)  # cold: fills the cache
    bare = [sys.executable, "-c", "import engine"]
    reruns, imports = [], []
    for _ in range(repeat):
        reruns.append(timed(run))
        imports.append(timed(bare))

    def median(xs: list[tuple[float, float]]) -> tuple[float, float]:
        return statistics.median(w for w, _ in xs), statistics.median(c for _, c in xs)

    return median(reruns), median(imports)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--scenario", default="ops_incidents")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--csv-rows", type=int, default=336_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="engine-bench-cache-"))
    try:
        dataset = tmp / "events.parquet"
        synthesize(dataset, rows=args.rows, seed=1, scenario=args.scenario)
        cold_s, warm_s, hits, plugins = anyio.run(measure, dataset, tmp / "runs", args.workers)
        (rerun_s, rerun_cpu), (import_s, import_cpu) = cli_rerun(tmp, args.csv_rows, args.repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"rows {args.rows}, scenario {args.scenario}, workers {args.workers}, plugins {plugins}")
    print(f"cold run (ingest + every plugin): {cold_s:.3f} s")
    print(f"cached rerun ({hits}/{plugins} results from the cache): {warm_s:.3f} s")
    print(f"cached_rerun_ratio {warm_s / cold_s:.3f}")
    print(
        f"CLI, {args.csv_rows} CSV rows: cached rerun {rerun_s:.3f} s wall, {rerun_cpu:.3f} s CPU; "
        f"python -c 'import engine' {import_s:.3f} s wall, {import_cpu:.3f} s CPU"
    )
    print(f"cli_rerun_minus_import_s {rerun_s - import_s:.3f}")


if __name__ == "__main__":
    main()
