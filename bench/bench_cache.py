"""Cached rerun vs cold run of the whole fleet on a synthetic event log.

The cold run starts from an empty runs directory (no normalized dataset, no
cached results); the rerun uses the same directory, so the dataset is not
normalized again and every plugin result comes from the cache. Both run inside
one started engine (worker start-up excluded from both). Prints both wall times
and, as the last line, ``cached_rerun_ratio <rerun/cold>`` (target: < 0.10).

    python bench/bench_cache.py [--rows 200000] [--scenario ops_incidents] [--workers 2]
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--scenario", default="ops_incidents")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="engine-bench-cache-"))
    try:
        dataset = tmp / "events.parquet"
        synthesize(dataset, rows=args.rows, seed=1, scenario=args.scenario)
        cold_s, warm_s, hits, plugins = anyio.run(measure, dataset, tmp / "runs", args.workers)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"rows {args.rows}, scenario {args.scenario}, workers {args.workers}, plugins {plugins}")
    print(f"cold run (ingest + every plugin): {cold_s:.3f} s")
    print(f"cached rerun ({hits}/{plugins} results from the cache): {warm_s:.3f} s")
    print(f"cached_rerun_ratio {warm_s / cold_s:.3f}")


if __name__ == "__main__":
    main()
