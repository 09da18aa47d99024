"""The dask executor: its cost per plugin against bare Dask, and the fleet at scale.

1. N trivial plugins (each returns ``na`` after summing 200 integers) through the
   engine on a Dask ``LocalCluster`` (two worker processes, one thread each), vs the
   same plugin body N times through bare ``client.submit`` on the same cluster,
   interleaved run by run so both see the same machine conditions (result cache and
   trace file off: this is the orchestration). Prints the per-plugin wall time of
   each and their ratio, and the CPU time of every process (this one with the
   scheduler, the Dask workers, the job processes) per plugin on each side: on a
   loaded machine the steadier of the two. ``--cluster local`` (the default) is a
   ``LocalCluster`` whose scheduler runs on this process's loop, the one the bare
   side's client uses too; ``--cluster processes`` starts ``dask scheduler`` and two
   ``dask worker`` processes, as a cluster the engine is pointed at, so both clients
   have a loop of their own and talk to a scheduler in another process. The same
   tasks through one ``client.map`` (one graph, as the engine sends the jobs it
   places together) are timed too and printed apart.
2. The whole fleet on a generated log (default 10M rows, ``ops_incidents``): one cold
   run on two Dask workers (a ``LocalCluster`` the engine starts) and one on the
   local process pool (two workers). Prints wall time and the peak memory of the
   whole process tree (engine, Dask workers and their job processes).

The last line is ``dask_overhead_ratio <engine/bare>`` (part 1, from ``run_started``
to ``run_finished``: the report artifacts written after a run are the same for every
executor and are printed apart).

    python bench/bench_dask.py [--plugins 400] [--repeat 5] [--rows 10000000] [--no-fleet]
        [--cluster local|processes]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_fleet import PeakSampler, _tree  # noqa: E402
from bench_overhead import make_fleet  # noqa: E402

from engine import LOG_NAME, Engine, read_log  # noqa: E402
from engine._tools.synth import synthesize  # noqa: E402

ROOT = HERE.parent
DASK = str(Path(sys.executable).with_name("dask"))


def bare_run(client: object, n: int) -> float:
    from trivial_plugin import bare_task

    start = time.perf_counter()
    futures = [client.submit(bare_task, i, pure=False) for i in range(n)]  # type: ignore[attr-defined]
    client.gather(futures)  # type: ignore[attr-defined]
    return time.perf_counter() - start


def bare_map_run(client: object, n: int) -> float:
    """The same tasks as one ``client.map``: one graph, as the engine sends a burst."""
    from trivial_plugin import bare_task

    start = time.perf_counter()
    client.gather(client.map(bare_task, range(n), pure=False))  # type: ignore[attr-defined]
    return time.perf_counter() - start


def tree_cpu_s() -> float:
    """CPU seconds used so far by this process and its live descendants."""
    ticks = 0
    for pid in _tree(os.getpid()):
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def orchestration_s(run_dir: Path) -> float:
    """From ``run_started`` to ``run_finished`` in the log: the run without the report
    artifacts written after it (``report.html`` draws a timeline of every plugin)."""
    events = read_log(run_dir / LOG_NAME)
    return events[-1].wall - events[0].wall


async def engine_runs(
    root: Path, dataset: Path, scheduler: str, client: object, n: int, repeat: int
) -> tuple[list[float], list[float], list[float], list[float], list[float], list[float]]:
    bare: list[float] = []
    engine: list[float] = []
    orchestration: list[float] = []
    bare_cpu: list[float] = []
    bare_map: list[float] = []
    engine_cpu: list[float] = []
    async with Engine(
        plugins_dir=root / "plugins",
        runs_dir=root / "runs",
        executor="dask",
        scheduler=scheduler,
        data_store=root / "store",
        cache=False,
        trace_file=False,
    ) as eng:
        await eng.run(dataset)  # warm: code shipped, job processes up, data fetched
        for _ in range(repeat):
            cpu = tree_cpu_s()
            bare.append(await anyio.to_thread.run_sync(bare_run, client, n))
            bare_cpu.append(tree_cpu_s() - cpu)
            bare_map.append(await anyio.to_thread.run_sync(bare_map_run, client, n))
            cpu = tree_cpu_s()
            start = time.perf_counter()
            result = await eng.run(dataset)
            engine.append(time.perf_counter() - start)
            engine_cpu.append(tree_cpu_s() - cpu)
            orchestration.append(orchestration_s(result.run_dir))
            assert result.report.summary.na == result.report.summary.plugins == n
    return bare, engine, orchestration, bare_cpu, engine_cpu, bare_map


def _started(args: list[str], log: Path, pattern: str) -> tuple[subprocess.Popen[bytes], str]:
    """A ``dask`` command started in a session of its own, and what its log names."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [DASK, *args],
            cwd=log.parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=fh,
            # The bare side's task is the benchmark's own module, imported by name.
            env={**os.environ, "PYTHONPATH": str(HERE)},
            start_new_session=True,
        )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if m := re.search(pattern, log.read_text(errors="replace")):
            return proc, m.group(1)
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"dask {args[0]} did not start:\n{log.read_text(errors='replace')}")


@contextlib.contextmanager
def cluster(kind: str, root: Path) -> Iterator[str]:
    """Two Dask workers of one thread: a ``LocalCluster`` whose scheduler shares this
    process's loop with the bare side's client, or ``dask scheduler`` and two ``dask
    worker`` processes (as on a real cluster: each client has a loop of its own)."""
    if kind == "local":
        from distributed import LocalCluster

        with LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        ) as local:
            yield local.scheduler_address
        return
    procs: list[subprocess.Popen[bytes]] = []
    try:
        scheduler, address = _started(
            ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"],
            root / "scheduler" / "stderr.log",
            r"Scheduler at:\s+(tcp://\S+)",
        )
        procs.append(scheduler)
        for i in range(2):
            folder = root / f"worker-{i}"
            worker, _ = _started(
                [
                    "worker",
                    address,
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--local-directory",
                    str(folder / "local"),
                ],
                folder / "stderr.log",
                r"Registered to:\s+(tcp://\S+)",
            )
            procs.append(worker)
        yield address
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def per_plugin(args: argparse.Namespace) -> float:
    from distributed import Client

    root = Path(tempfile.mkdtemp(prefix="engine-bench-dask-"))
    try:
        dataset = make_fleet(root, args.plugins)
        with cluster(args.cluster, root / "cluster") as address, Client(address) as client:
            client.wait_for_workers(2)
            bare_run(client, 4 * args.plugins)  # warm: workers up, the module imported
            bare, engine, orchestration, bare_cpu, engine_cpu, bare_map = anyio.run(
                engine_runs, root, dataset, address, client, args.plugins, args.repeat
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    n = args.plugins

    def ms(times: list[float]) -> str:
        runs = ", ".join(f"{t / n * 1e3:.2f}" for t in times)
        return f"{statistics.median(times) / n * 1e3:.3f} ms/plugin (runs {runs})"

    print(f"plugins {n}, 2 Dask workers x 1 thread ({args.cluster}), repeats {args.repeat}")
    print(f"bare client.submit + gather: {ms(bare)}")
    print(f"engine on dask, whole run (report artifacts included): {ms(engine)}")
    print(f"engine on dask, run_started..run_finished (event log, lanes): {ms(orchestration)}")
    print(f"whole-run ratio {statistics.median(engine) / statistics.median(bare):.2f}")
    map_ratio = statistics.median(orchestration) / statistics.median(bare_map)
    print(
        f"bare client.map + gather: {ms(bare_map)}; run_started..run_finished ratio {map_ratio:.2f}"
    )
    cpu_ratio = statistics.median(engine_cpu) / statistics.median(bare_cpu)
    print(
        f"CPU of all processes: bare {ms(bare_cpu)}; engine, whole run {ms(engine_cpu)}; "
        f"ratio {cpu_ratio:.2f}"
    )
    return statistics.median(orchestration) / statistics.median(bare)


async def fleet_run(dataset: Path, runs: Path, executor: str) -> tuple[float, str, int]:
    async with Engine(
        plugins_dir=ROOT / "plugins", runs_dir=runs, executor=executor, workers=2, cache=False
    ) as engine:
        start = time.perf_counter()
        result = await engine.run(dataset, seed=1)
        elapsed = time.perf_counter() - start
    return elapsed, result.status, result.report.summary.failed


def fleet(rows: int, scenario: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="engine-bench-dask-fleet-"))
    try:
        dataset = tmp / "events.parquet"
        synthesize(dataset, rows=rows, seed=1, scenario=scenario)
        for executor in ("dask", "process"):
            with PeakSampler() as sampler:
                elapsed, status, failed = anyio.run(
                    fleet_run, dataset, tmp / f"runs-{executor}", executor
                )
            print(
                f"fleet, {rows:,} rows, {executor} (2 workers): {elapsed:.1f} s "
                f"(ingest included), peak memory of all processes: PSS "
                f"{sampler.peak_pss:,.0f} MB (RSS {sampler.peak:,.0f} MB), run {status}, "
                f"failed {failed}"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--plugins", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--scenario", default="ops_incidents")
    parser.add_argument("--no-fleet", action="store_true", help="only the per-plugin part")
    parser.add_argument(
        "--cluster",
        choices=("local", "processes"),
        default="local",
        help="per-plugin part: a LocalCluster in this process, or a scheduler and two "
        "workers started as `dask` processes",
    )
    args = parser.parse_args()
    ratio = per_plugin(args)
    if not args.no_fleet:
        fleet(args.rows, args.scenario)
    print(f"dask_overhead_ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
