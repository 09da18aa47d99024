"""Decision lane first, measured: when does the decision chain end?

Two workers; six independent explanation plugins of 1 s each and a decision chain
d1 -> d2 -> d3 of 0.1 s each (sleeps: the figures are about scheduling, not CPU).
In ``two_lane_strict`` the chain must be done within 0.5 s and the whole run within
1.05x of its lower bound; ``legacy`` (no lane priority) is shown beside it. The
bound: jobs are indivisible, so one worker runs at least three explanation plugins
and, whichever way the work is split, some worker also runs the chain or a fourth
one: 3 x 1 s + 3 x 0.1 s = 3.3 s (work / workers alone would say 3.15 s). Times
are from the run's event log, relative to ``run_started``.

    python bench/bench_lane_priority.py [--repeat 3]

Last line: ``strict_chain_done_s <s> makespan_ratio <run / lower bound>``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import textwrap
from pathlib import Path

import anyio
import yaml

from contracts.events import PluginFinished, RunFinished
from engine import Engine, read_log

SLEEPS = """
import time
from contracts import na

def run(ctx):
    time.sleep(ctx.settings["seconds"])
    return na("NO_SIGNIFICANT_EFFECT", "slept")
"""
EXPLANATIONS, EXPLANATION_S, CHAIN, CHAIN_S, WORKERS = 6, 1.0, 3, 0.1, 2
LOWER_BOUND_S = (EXPLANATIONS // WORKERS) * EXPLANATION_S + CHAIN * CHAIN_S  # see above


def make_fleet(root: Path) -> None:
    def plugin(pid: str, lane: str, seconds: float, depends_on: list[str]) -> None:
        folder = root / pid
        folder.mkdir(parents=True)
        manifest = {
            "id": pid,
            "version": "1",
            "lane": lane,
            "finding_kinds": ["none"],
            "depends_on": depends_on,
            "settings": {"seconds": {"type": "float", "default": seconds}},
        }
        if lane == "decision":
            manifest["decision_capable"] = True
        (folder / "plugin.yaml").write_text(yaml.safe_dump(manifest))
        (folder / "plugin.py").write_text(textwrap.dedent(SLEEPS))

    for i in range(1, EXPLANATIONS + 1):
        plugin(f"e{i}", "explanation", EXPLANATION_S, [])
    for i in range(1, CHAIN + 1):
        plugin(f"d{i}", "decision", CHAIN_S, [f"d{i - 1}"] if i > 1 else [])


async def measure(root: Path, mode: str, repeat: int) -> tuple[float, float]:
    dataset = root / "tiny.csv"
    chain, runs = [], []
    async with Engine(
        plugins_dir=root / "plugins", runs_dir=root / "runs", workers=WORKERS, cache=False
    ) as engine:
        await engine.run(dataset, mode=mode)  # warm: workers up, plugins imported
        for _ in range(repeat):
            result = await engine.run(dataset, mode=mode)
            events = read_log(Path(result.run_dir) / "events.jsonl")
            start = events[0].mono
            done = {e.plugin_id: e.mono - start for e in events if isinstance(e, PluginFinished)}
            chain.append(done[f"d{CHAIN}"])
            runs.append(next(e.mono for e in events if isinstance(e, RunFinished)) - start)
    return statistics.median(chain), statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="engine-bench-lanes-"))
    try:
        make_fleet(root / "plugins")
        (root / "tiny.csv").write_text("a,b\n1,2\n3,4\n")
        figures = {mode: anyio.run(measure, root, mode, args.repeat)
                   for mode in ("legacy", "two_lane_strict")}  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"{WORKERS} workers, {EXPLANATIONS} explanation plugins of {EXPLANATION_S:g} s, a "
        f"decision chain of {CHAIN} x {CHAIN_S:g} s; lower bound {LOWER_BOUND_S:.2f} s"
    )
    for mode, (chain_s, run_s) in figures.items():
        print(f"{mode}: decision chain done at {chain_s:.3f} s, run {run_s:.3f} s "
              f"({run_s / LOWER_BOUND_S:.3f}x the lower bound)")  # fmt: skip
    chain_s, run_s = figures["two_lane_strict"]
    print(f"strict_chain_done_s {chain_s:.3f} makespan_ratio {run_s / LOWER_BOUND_S:.3f}")


if __name__ == "__main__":
    main()
