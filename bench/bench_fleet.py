"""The whole fleet on generated event logs of 1M and 10M rows.

For each size: generate the log (``engine synth``, not timed), then one cold run
(normalize into DuckDB + every plugin, result cache off) inside a started engine.
Prints wall time, rows per second, and the peak memory of the whole process tree
(engine + workers), sampled every 50 ms from /proc: PSS (shared pages split
between the processes that map them: the honest total) and RSS.

Then the run's profile, from its event log: the time before ``run_started``
(normalizing the file into DuckDB, and the plan) against the plugins' time, and each
plugin's duration, longest first. And the floor: one ``SUMMARIZE`` of the normalized
table (every column read once, with DuckDB's own threads), so that the ratio of the
fleet's wall time to one scan is visible; the last line prints it for the last size.

    python bench/bench_fleet.py [--rows 1000000 10000000] [--scenario ops_incidents]
                                [--data FILE]   # an existing log instead of synth
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import anyio
import duckdb

from engine import DATA_CACHE, Engine, RunResult
from engine._tools.synth import synthesize

ROOT = Path(__file__).resolve().parent.parent


def _tree(root_pid: int) -> list[int]:
    """``root_pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _memory_mb(pids: list[int]) -> tuple[float, float]:
    """(RSS, PSS) summed over ``pids``, in MB. RSS counts shared library pages once
    per process; PSS splits shared pages between the processes that map them, so
    its sum is the memory the tree really uses."""
    rss = pss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
                for line in fh:
                    if line.startswith(b"Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith(b"Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            continue
    return rss / 1e3, pss / 1e3


class PeakSampler:
    def __init__(self) -> None:
        self.peak = 0.0
        self.peak_pss = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            rss, pss = _memory_mb(_tree(os.getpid()))
            self.peak = max(self.peak, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self._stop.wait(0.05)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def run_fleet(dataset: Path, runs: Path, workers: int) -> tuple[float, float, RunResult]:
    """Seconds of the whole run, seconds before its ``run_started`` event, the result."""
    async with Engine(
        plugins_dir=ROOT / "plugins", runs_dir=runs, workers=workers, cache=False
    ) as engine:
        wall0 = time.time()
        start = time.perf_counter()
        result = await engine.run(dataset, seed=1)
        elapsed = time.perf_counter() - start
    with (result.run_dir / "events.jsonl").open("rb") as fh:
        first = json.loads(fh.readline())
    return elapsed, first["wall"] - wall0, result


def summarize_floor(runs: Path, result: RunResult) -> tuple[float, int]:
    """Seconds of one ``SUMMARIZE`` of the run's normalized table, and its rows."""
    db = runs / DATA_CACHE / f"{result.report.dataset_fingerprint}.duckdb"
    con = duckdb.connect(str(db), read_only=True)
    try:
        start = time.perf_counter()
        con.sql("SUMMARIZE data").fetchall()
        elapsed = time.perf_counter() - start
        ((rows,),) = con.sql("SELECT count(*) FROM data").fetchall()
        return elapsed, int(rows)
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--scenario", default="ops_incidents")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", type=Path, help="run on this file (--rows is ignored)")
    args = parser.parse_args()
    sizes: list[int | None] = [None] if args.data else list(args.rows)
    ratio = 0.0
    for rows in sizes:
        tmp = Path(tempfile.mkdtemp(prefix="engine-bench-fleet-"))
        try:
            dataset = args.data or tmp / "events.parquet"
            if rows is not None:
                synthesize(dataset, rows=rows, seed=1, scenario=args.scenario)
            with PeakSampler() as sampler:
                elapsed, before, result = anyio.run(run_fleet, dataset, tmp / "runs", args.workers)
            floor, n = summarize_floor(tmp / "runs", result)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        plugins = sorted(result.report.plugins, key=lambda p: (-p.duration_s, p.id))
        busy = sum(p.duration_s for p in plugins)
        ratio = elapsed / floor
        print(
            f"rows {n}: {elapsed:.1f} s, {n / elapsed:,.0f} rows/s, "
            f"peak memory of all processes: PSS {sampler.peak_pss:,.0f} MB "
            f"(RSS {sampler.peak:,.0f} MB), run {result.status}, "
            f"failed {result.report.summary.failed}"
        )
        print(
            f"  before run_started (normalize + plan): {before:.1f} s; plugins: "
            f"{busy:.1f} plugin-seconds on {args.workers} workers ({busy / args.workers:.1f} s "
            f"if perfectly shared), the run after run_started {elapsed - before:.1f} s"
        )
        print(f"  floor: one SUMMARIZE of the normalized table {floor:.2f} s")
        print(f"  {'plugin':<26} {'seconds':>8}  status")
        for p in plugins:
            print(f"  {p.id:<26} {p.duration_s:8.2f}  {p.status}")
    print(f"fleet_over_scan_ratio {ratio:.1f}")


if __name__ == "__main__":
    main()
