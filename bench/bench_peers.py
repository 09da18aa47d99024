"""The engine beside its floor and a peer: the same three workloads through the
engine (its default process pool, with ``trace.json`` as by default and without),
through bare ``asyncio`` + ``ProcessPoolExecutor(2)`` (spawn), and through Dask
distributed on a ``LocalCluster`` of two worker processes of one thread each.

- W1: 500 independent no-op tasks (per-task cost);
- W2: a 60-task DAG, 6 layers of 10 tasks that each sleep 50 ms, every task of a
  layer depending on every task of the layer before (lower bound 6 x 5 x 50 ms = 1.5 s
  on two workers);
- W3: 40 CPU tasks (``peer_tasks.CPU_LOOPS`` of integer arithmetic each).

Each side is warmed first (workers up, code imported) and runs each workload
``--repeat`` times, interleaved workload by workload; the medians are printed with
their ratio to the bare pool, and W2's to its lower bound. Result cache off: this
measures running tasks. Ray and Prefect are not installed for it (the issue keeps
their earlier figures as the record).

    python bench/bench_peers.py [--repeat 3] [--no-dask]

Last line: ``peers_w1_ratio <engine default / bare> w2_bound_ratio <engine / 1.5 s>
w3_ratio <engine / bare>``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peer_tasks import task  # noqa: E402

from engine import Engine  # noqa: E402
from engine._worker.run import WORKER_NICENESS  # noqa: E402

WORKERS = 2
W1_TASKS = 500
W2_LAYERS, W2_WIDTH, W2_SLEEP_S = 6, 10, 0.05
W2_BOUND_S = W2_LAYERS * (W2_WIDTH // WORKERS) * W2_SLEEP_S
W3_TASKS = 40

# A workload: (task id, kind, seconds, dependency ids), in dependency order.
Spec = list[tuple[str, str, float, list[str]]]


def workloads() -> dict[str, Spec]:
    w2: Spec = []
    for layer in range(W2_LAYERS):
        before = [f"w2_{layer - 1}_{j}" for j in range(W2_WIDTH)] if layer else []
        w2 += [(f"w2_{layer}_{j}", "sleep", W2_SLEEP_S, before) for j in range(W2_WIDTH)]
    return {
        "W1": [(f"w1_{i:03d}", "noop", 0.0, []) for i in range(W1_TASKS)],
        "W2": w2,
        "W3": [(f"w3_{i:02d}", "cpu", 0.0, []) for i in range(W3_TASKS)],
    }


def make_fleets(root: Path, specs: dict[str, Spec]) -> None:
    body = (HERE / "peer_tasks.py").read_text()
    for name, spec in specs.items():
        for pid, kind, seconds, deps in spec:
            folder = root / name / pid
            folder.mkdir(parents=True)
            (folder / "plugin.py").write_text(body)
            manifest = {
                "id": pid,
                "version": "1",
                "lane": "decision",
                "decision_capable": True,
                "finding_kinds": ["none"],
                "depends_on": deps,
                "settings": {
                    "kind": {"type": "str", "default": kind},
                    "seconds": {"type": "float", "default": seconds},
                },
            }
            (folder / "plugin.yaml").write_text(yaml.safe_dump(manifest))
    (root / "tiny.csv").write_text("a,b\n1,2\n3,4\n")


async def bare_makespan(pool: concurrent.futures.Executor, spec: Spec) -> float:
    """The workload on the bare pool: each task submitted once its dependencies are done."""
    loop = asyncio.get_running_loop()
    futures: dict[str, asyncio.Future[int]] = {}

    async def one(kind: str, seconds: float, deps: list[str]) -> int:
        upstream = [await futures[d] for d in deps]
        return await loop.run_in_executor(pool, task, kind, seconds, *upstream)

    start = time.perf_counter()
    for pid, kind, seconds, deps in spec:
        futures[pid] = asyncio.ensure_future(one(kind, seconds, deps))
    await asyncio.gather(*futures.values())
    return time.perf_counter() - start


def dask_makespan(client: Any, spec: Spec, run: int) -> float:
    """The workload on Dask: dependencies passed as futures, so the scheduler orders them
    (keys unique to the run: Dask keeps a finished key's result while a future holds it)."""
    start = time.perf_counter()
    futures: dict[str, Any] = {}
    for pid, kind, seconds, deps in spec:
        upstream = [futures[d] for d in deps]
        futures[pid] = client.submit(task, kind, seconds, *upstream, key=f"{pid}-{run}", pure=False)
    client.gather(list(futures.values()))
    return time.perf_counter() - start


def bare_side(specs: dict[str, Spec], repeat: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in specs}
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        WORKERS, mp_context=ctx, initializer=os.nice, initargs=(WORKER_NICENESS,)
    ) as pool:
        for name, spec in specs.items():
            asyncio.run(bare_makespan(pool, spec))  # warm
            for _ in range(repeat):
                times[name].append(asyncio.run(bare_makespan(pool, spec)))
    return times


def engine_side(
    root: Path, specs: dict[str, Spec], repeat: int, trace_file: bool
) -> dict[str, list[float]]:
    async def go() -> dict[str, list[float]]:
        times: dict[str, list[float]] = {name: [] for name in specs}
        for name, spec in specs.items():
            async with Engine(
                plugins_dir=root / name,
                runs_dir=root / "runs",
                workers=WORKERS,
                cache=False,
                trace_file=trace_file,
            ) as engine:
                await engine.run(root / "tiny.csv")  # warm: workers up, plugins imported
                for _ in range(repeat):
                    start = time.perf_counter()
                    result = await engine.run(root / "tiny.csv")
                    times[name].append(time.perf_counter() - start)
                    assert result.report.summary.na == len(spec), result.report.summary
        return times

    return anyio.run(go)


def dask_side(specs: dict[str, Spec], repeat: int) -> dict[str, list[float]]:
    from distributed import Client, LocalCluster

    times: dict[str, list[float]] = {name: [] for name in specs}
    with (
        LocalCluster(
            n_workers=WORKERS,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        for name, spec in specs.items():
            dask_makespan(client, spec, 0)  # warm
            for run in range(1, repeat + 1):
                times[name].append(dask_makespan(client, spec, run))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-dask", action="store_true", help="leave Dask out")
    args = parser.parse_args()
    specs = workloads()
    root = Path(tempfile.mkdtemp(prefix="engine-bench-peers-"))
    sides: dict[str, Callable[[], dict[str, list[float]]]] = {
        "bare pool": lambda: bare_side(specs, args.repeat),
        "engine, trace file off": lambda: engine_side(root, specs, args.repeat, False),
        "engine, default": lambda: engine_side(root, specs, args.repeat, True),
    }
    if not args.no_dask:
        sides["dask LocalCluster"] = lambda: dask_side(specs, args.repeat)
    try:
        make_fleets(root, specs)
        medians = {
            side: {n: statistics.median(t) for n, t in run().items()} for side, run in sides.items()
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    bare = medians["bare pool"]
    print(f"{WORKERS} workers, repeats {args.repeat}; W2 lower bound {W2_BOUND_S:.2f} s")
    for side, figures in medians.items():
        w1, w2, w3 = figures["W1"], figures["W2"], figures["W3"]
        print(
            f"{side:24} W1 {w1 / W1_TASKS * 1e6:7.0f} us/task ({w1 / bare['W1']:.2f}x)  "
            f"W2 {w2:.3f} s ({w2 / W2_BOUND_S:.3f}x bound)  "
            f"W3 {w3:.3f} s ({w3 / bare['W3']:.2f}x)"
        )
    default = medians["engine, default"]
    print(
        f"peers_w1_ratio {default['W1'] / bare['W1']:.2f} "
        f"w2_bound_ratio {default['W2'] / W2_BOUND_S:.3f} "
        f"w3_ratio {default['W3'] / bare['W3']:.2f}"
    )


if __name__ == "__main__":
    main()
