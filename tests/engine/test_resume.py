"""Resume after SIGKILL: nothing finished is lost, the final report equals an
uninterrupted run's (timings aside), and the resumed part is visible in the log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from contracts.events import RunFinished, RunResumed
from engine import ConfigError, Engine, RunResult, read_log

from .conftest import MakePlugin

SLOW = """
import time
from contracts import Finding, ok
def run(ctx):
    time.sleep(0.2)
    up = sorted(ctx.upstream)
    return ok(findings=[Finding(kind="{pid}_kind", title="{pid} saw " + ",".join(up),
                                target="t", recommendation="r")],
              metrics={{"rows": ctx.data.rows, "seed": ctx.seed}})
"""

RUNNER = """
import sys, anyio
from engine import Engine
async def main():
    async with Engine(plugins_dir=sys.argv[1], runs_dir=sys.argv[2], workers=1,
                      cache=False) as engine:
        await engine.run(sys.argv[3], seed=3, run_id="victim")
anyio.run(main)
"""


def _fleet(make_plugin: MakePlugin) -> None:
    for i in range(3):
        make_plugin(
            f"exp_{i}",
            lane="explanation",
            downstream=[f"dec_{i}"],
            code=SLOW.format(pid=f"exp_{i}"),
        )
        make_plugin(f"dec_{i}", depends_on=[f"exp_{i}"], code=SLOW.format(pid=f"dec_{i}"))
    make_plugin("final", depends_on=["dec_0", "dec_1", "dec_2"], code=SLOW.format(pid="final"))


def _projection(result: RunResult) -> list[object]:
    return [
        (p.id, p.status, p.reason_code, [(f.id, f.title) for f in p.findings], p.metrics)
        for p in result.report.plugins
    ]


async def _reference(plugins: Path, dataset: Path, runs: Path) -> RunResult:
    async with Engine(plugins_dir=plugins, runs_dir=runs, workers=1, cache=False) as engine:
        return await engine.run(dataset, seed=3)


async def _resume(plugins: Path, runs: Path, run_dir: Path) -> RunResult:
    async with Engine(plugins_dir=plugins, runs_dir=runs, workers=2, cache=False) as engine:
        return await engine.resume(run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [1, 6, 14, 21])
def test_resume_after_sigkill_equals_an_uninterrupted_run(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path, kill_after: int
) -> None:
    _fleet(make_plugin)
    reference = anyio.run(_reference, plugins_dir, dataset, tmp_path / "ref")
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(plugins_dir), str(runs), str(dataset)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = runs / "victim" / "events.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if log.is_file() and log.read_bytes().count(b"\n") >= kill_after:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = read_log(log)
    assert not isinstance(before[-1], RunFinished), "killed too late to test resume"
    with log.open("ab") as fh:  # as if the kill tore the record being written
        fh.write(b'{"type":"plugin_fin')

    resumed = anyio.run(_resume, plugins_dir, runs, runs / "victim")
    assert resumed.status == reference.status == "ok"
    assert _projection(resumed) == _projection(reference)
    after = read_log(log)  # the whole chain verifies, across the interruption
    assert after[: len(before)] == before
    assert sum(isinstance(e, RunResumed) for e in after) == 1
    resumed_at = next(e for e in after if isinstance(e, RunResumed))
    finished_before = {
        r.step.plugin_id
        for r in resumed.state.plugins.values()
        if r.finished_wall is not None and r.finished_wall < resumed_at.wall
    }
    assert set(resumed_at.pending) == set(resumed.state.plugins) - finished_before
    assert (runs / "victim" / "report.json").is_file()


@pytest.mark.anyio
async def test_resume_refuses_when_plugins_changed(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("only")
    runs = tmp_path / "runs"
    async with Engine(plugins_dir=plugins_dir, runs_dir=runs, workers=1) as engine:
        done = await engine.run(dataset, run_id="r1")
        log = done.run_dir / "events.jsonl"
        lines = log.read_bytes().splitlines(keepends=True)
        log.write_bytes(b"".join(lines[:4]))  # cut back to an unfinished run
        make_plugin("only", code="def run(ctx):\n    return None\n")  # edit the plugin
        with pytest.raises(ConfigError, match="changed since the run started"):
            await engine.resume(done.run_dir)


@pytest.mark.anyio
async def test_resuming_a_finished_run_rewrites_its_artifacts(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("only")
    async with Engine(plugins_dir=plugins_dir, runs_dir=tmp_path / "r", workers=1) as engine:
        done = await engine.run(dataset)
        (done.run_dir / "report.json").unlink()  # killed while writing artifacts
        again = await engine.resume(done.run_dir)
    assert (done.run_dir / "report.json").is_file()
    assert _projection(again) == _projection(done)
    assert not any(isinstance(e, RunResumed) for e in read_log(done.run_dir / "events.jsonl"))
