"""Orchestration overhead: the engine's process pool vs a bare ProcessPoolExecutor.

Runs N trivial plugins (each returns ``na`` after a tiny computation) through the
engine, with event logging, lanes and artifacts, and the same plugin body N times
through ``concurrent.futures.ProcessPoolExecutor``, in the same process, both with
warm workers. Prints per-plugin wall time of each, first with the run's
``trace.json`` (a telemetry artifact, see bench_telemetry.py) and then without it,
and as the last line ``overhead_ratio <engine/bare>`` of the orchestration itself
(event log on, trace file off).

    python bench/bench_overhead.py [--plugins 400] [--workers 2] [--repeat 9]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine import Engine

HERE = Path(__file__).resolve().parent


def make_fleet(root: Path, n: int) -> Path:
    plugins = root / "plugins"
    body = (HERE / "trivial_plugin.py").read_text()
    for i in range(n):
        folder = plugins / f"trivial_{i:04d}"
        folder.mkdir(parents=True)
        (folder / "plugin.py").write_text(body)
        (folder / "plugin.yaml").write_text(
            f"id: trivial_{i:04d}\nversion: '1'\nlane: decision\ndecision_capable: true\n"
            "finding_kinds: [none]\n"
        )
    dataset = root / "tiny.csv"
    dataset.write_text("a,b\n1,2\n3,4\n")
    return dataset


def bare_run(pool: concurrent.futures.ProcessPoolExecutor, n: int) -> tuple[float, float]:
    """Wall seconds, and CPU seconds of this (the parent) process."""
    from trivial_plugin import bare_task

    start, cpu = time.perf_counter(), time.process_time()
    futures = [pool.submit(bare_task, i) for i in range(n)]
    for f in futures:
        f.result()
    return time.perf_counter() - start, time.process_time() - cpu


async def interleaved(
    root: Path, dataset: Path, n: int, workers: int, repeat: int, trace_file: bool
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Alternate bare and engine runs so both see the same machine conditions."""
    from trivial_plugin import bare_task

    bare_times: list[tuple[float, float]] = []
    engine_times: list[tuple[float, float]] = []
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        list(pool.map(bare_task, range(workers * 4)))  # warm: workers up, module imported
        # No result cache: this measures running plugins, not reusing results.
        async with Engine(
            plugins_dir=root / "plugins",
            runs_dir=root / "runs",
            workers=workers,
            cache=False,
            trace_file=trace_file,
        ) as eng:
            await eng.run(dataset)  # warm: plugins imported in every worker, data ingested
            for _ in range(repeat):
                bare_times.append(bare_run(pool, n))
                start, cpu = time.perf_counter(), time.process_time()
                result = await eng.run(dataset)
                engine_times.append((time.perf_counter() - start, time.process_time() - cpu))
                assert result.report.summary.na == result.report.summary.plugins == n
    return bare_times, engine_times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--plugins", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="engine-bench-"))
    n = args.plugins
    try:
        dataset = make_fleet(root, n)
        figures = {}
        cpu = {}
        for trace_file in (True, False):
            bare_times, engine_times = anyio.run(
                interleaved,
                root,
                dataset,
                n,
                args.workers,
                args.repeat,
                trace_file,
                backend=args.backend,
            )
            figures[trace_file] = (
                statistics.median(t for t, _ in bare_times) / n * 1e3,
                statistics.median(t for t, _ in engine_times) / n * 1e3,
            )
            cpu[trace_file] = (
                statistics.median(c for _, c in bare_times) / n * 1e3,
                statistics.median(c for _, c in engine_times) / n * 1e3,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"plugins {n}, workers {args.workers}, repeats {args.repeat}, backend {args.backend}")
    bare_ms, traced_ms = figures[True]
    print(f"bare ProcessPoolExecutor: {bare_ms:.3f} ms/plugin")
    print(
        f"engine with trace.json (spans folded, OTLP JSON written): {traced_ms:.3f} ms/plugin, "
        f"ratio {traced_ms / bare_ms:.2f}"
    )
    # CPU of the parent (the orchestrator) per plugin: what the engine itself costs,
    # and less sensitive than wall time to other work on the machine.
    for trace_file, label in ((True, "with trace.json"), (False, "trace file off")):
        bare_cpu, engine_cpu = cpu[trace_file]
        print(
            f"parent CPU per plugin, {label}: engine {engine_cpu:.3f} ms, "
            f"bare pool {bare_cpu:.3f} ms"
        )
    bare_ms, engine_ms = figures[False]
    print(f"bare ProcessPoolExecutor: {bare_ms:.3f} ms/plugin")
    print(f"engine (event log, lanes, report artifacts): {engine_ms:.3f} ms/plugin")
    print(f"overhead_ratio {engine_ms / bare_ms:.2f}")


if __name__ == "__main__":
    main()
