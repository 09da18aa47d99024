"""report.html: its size and how long it takes to render, for the bundled example
and for a synthetic 1M-row run.

Each dataset is run once through the engine (result cache off, so every plugin
runs and every chart is drawn), then the folded log is rendered again in this
process: the first rendering cold (nothing drawn yet in this process, matplotlib
imported on the way), then ``--repeat`` warm ones (median printed). No chart cache
is used, so every rendering draws every chart. ``python -m engine report RUN_DIR``
renders with the same function.

    python bench/bench_report.py [--rows 1000000] [--repeat 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import anyio

from engine import HTML_NAME, LOG_NAME, Engine, fold, read_log, render_report_html
from engine._tools.synth import synthesize

ROOT = Path(__file__).resolve().parent.parent


async def run_once(dataset: Path, runs: Path, workers: int) -> Path:
    async with Engine(
        plugins_dir=ROOT / "plugins", runs_dir=runs, workers=workers, cache=False
    ) as engine:
        result = await engine.run(dataset, seed=1)
    return result.run_dir


def measure(label: str, run_dir: Path, repeat: int) -> None:
    state = fold(read_log(run_dir / LOG_NAME))
    start = time.perf_counter()
    first = render_report_html(state)
    cold = time.perf_counter() - start
    warm = []
    for _ in range(repeat):
        start = time.perf_counter()
        again = render_report_html(state)
        warm.append(time.perf_counter() - start)
        assert again == first, "report.html is not a pure function of the log"
    stored = (run_dir / HTML_NAME).read_bytes()
    assert stored == first.encode(), "the run's report.html differs from its re-rendering"
    charts = first.count('<figure class="chart')
    print(
        f"{label}: {len(state.plugins)} plugins, report.html {len(stored) / 1024:.0f} KB, "
        f"{charts} figures (timeline included); rendering cold {cold:.3f} s, "
        f"warm median {statistics.median(warm):.3f} s (min {min(warm):.3f}, n={repeat})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="engine-bench-report-"))
    try:
        example = anyio.run(
            run_once, ROOT / "examples" / "ops_events.csv", root / "runs", args.workers
        )
        measure("bundled example (examples/ops_events.csv)", example, args.repeat)
        dataset = root / "ops_incidents.parquet"
        synthesize(dataset, rows=args.rows, seed=1, scenario="ops_incidents")
        big = anyio.run(run_once, dataset, root / "runs", args.workers)
        measure(f"synthetic ops_incidents, {args.rows:,} rows", big, args.repeat)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
