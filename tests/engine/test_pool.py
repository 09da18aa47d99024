"""The process pool under the faults machines really have: each test reproduces a
break of the earlier pool (the issue it came from is named) with real workers."""

from __future__ import annotations

import math
import multiprocessing
import select
import sys
from pathlib import Path

import anyio
import pytest

from contracts.events import PluginStarted, RunFinished
from engine import Engine, ProcessPool, read_log
from engine._executors.base import Completion, JobDone, JobStarted
from engine._worker.job import Job

from .conftest import MakePlugin

pytestmark = pytest.mark.anyio

GATED = """
import time
from pathlib import Path
from contracts import ok
def run(ctx):
    gate = Path(ctx.settings["gate"])
    for _ in range(60_000):
        if gate.exists():
            break
        time.sleep(0.001)
    else:
        raise TimeoutError("the test never opened the gate")
    return ok(metrics={"waited": True})
"""


def gate_setting(path: Path) -> dict[str, dict[str, str]]:
    return {"gate": {"type": "str", "default": str(path)}}


def outcome(result: object, pid: str) -> tuple[str, str | None]:
    report = next(p for p in result.report.plugins if p.id == pid)  # type: ignore[attr-defined]
    return report.status, report.reason_code


async def test_a_verdict_wins_over_a_result_that_arrives_during_the_kill(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    """Watchdog race: the job's result is already in the pipe when its timeout verdict
    is given. The verdict must stand and the worker must be replaced, so the next
    job runs (before, the result was taken as ok and the dead worker kept)."""
    gate = tmp_path / "gate"
    make_plugin("gated", code=GATED, settings=gate_setting(gate))
    async with Engine(plugins_dir=plugins_dir, runs_dir=tmp_path / "warm", workers=1) as engine:
        info = await anyio.to_thread.run_sync(engine.ingest, dataset)
        pool = engine.executor
        assert isinstance(pool, ProcessPool)
        job = Job(
            run_id="race",
            plugin_id="gated",
            plugin_dir=str(plugins_dir / "gated"),
            entrypoint="plugin:run",
            code_hash="h",
            settings={"gate": str(gate)},
            seed=0,
            dataset=info,
        )
        got: list[Completion] = []
        started, done = anyio.Event(), anyio.Event()

        def reply(completion: Completion) -> None:
            got.append(completion)
            (started if isinstance(completion, JobStarted) else done).set()

        pool.submit(job, timeout_s=30, memory_mb=None, priority=0, reply=reply)
        await started.wait()
        slot = pool._slots[0]
        assert slot.sock is not None
        gate.touch()
        # Without yielding to the loop: wait until the result is in the pipe, then
        # give the verdict the watchdog would give at its deadline.
        assert select.select([slot.sock], [], [], 30)[0]
        pool._check(now=math.inf)
        await done.wait()
        final = got[-1]
        assert isinstance(final, JobDone)
        assert final.output.result.reason_code == "TIMEOUT"  # type: ignore[union-attr]
        # The next job runs on a fresh worker.
        result = await engine.run(dataset, select=["gated"])
    assert outcome(result, "gated") == ("ok", None)
    assert pool.replacements >= 1


HOARDS = """
import os
from contracts import ok
KEPT = []
def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
def run(ctx):
    before = rss_mb()
    block = bytearray(200 * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    KEPT.append(block)  # kept by the worker after the job
    return ok(metrics={"before_mb": before, "after_mb": rss_mb()})
"""
SMALL = "from contracts import ok\ndef run(ctx):\n    return ok(metrics={'x': 1})\n"


async def test_the_memory_cap_is_charged_to_the_job_not_to_what_ran_before(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    """Memory kept by an earlier job must not make a small job end RESOURCE_LIMIT:
    whether a plugin breaks the cap may not depend on what ran before it."""
    make_plugin("hoards", code=HOARDS, timeout_s=60)
    make_plugin("small", code=SMALL, depends_on=["hoards"])
    async with Engine(
        plugins_dir=plugins_dir,
        runs_dir=tmp_path / "r",
        workers=1,
        memory_limit_mb=250,
        cache=False,
    ) as engine:
        result = await engine.run(dataset)
        alone = await engine.run(dataset, select=["small"])
    assert outcome(result, "hoards") == ("ok", None)
    assert outcome(result, "small") == ("ok", None)
    assert outcome(alone, "small") == ("ok", None)
    # Measured, not assumed: what the worker held when hoards began, plus the 200 MB
    # it added, is above the cap, so charging a job its worker's whole memory would
    # have failed hoards; and the worker that kept it all was recycled (above the
    # cap after a job), so small ran on a fresh one.
    hoards = next(p for p in result.report.plugins if p.id == "hoards").metrics
    assert hoards["before_mb"] + 200 > 250
    assert hoards["after_mb"] - hoards["before_mb"] >= 200
    started = {
        e.plugin_id: e.pid
        for e in read_log(result.run_dir / "events.jsonl")
        if isinstance(e, PluginStarted)
    }
    assert started["hoards"] != started["small"]


async def test_the_run_finishes_when_no_worker_can_be_started_again(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    """A respawn that fails mid-run must not escape as an engine error with no
    run_finished: the plugins left end EXECUTOR_UNAVAILABLE and the run ends failed."""
    make_plugin("warm")
    make_plugin("dies", code="import os\ndef run(ctx):\n    os._exit(9)\n")
    make_plugin("later", depends_on=["warm"])
    make_plugin("alone")
    spawn = multiprocessing.get_context("spawn")
    async with Engine(plugins_dir=plugins_dir, runs_dir=tmp_path / "r", workers=1) as engine:
        first = await engine.run(dataset, select=["warm"])  # one worker is up
        assert first.ok
        spawn.set_executable(str(tmp_path / "no-such-python"))
        try:
            result = await engine.run(dataset, select=["dies", "later", "alone"])
        finally:
            spawn.set_executable(sys.executable)
    events = read_log(result.run_dir / "events.jsonl")
    assert isinstance(events[-1], RunFinished) and result.status == "failed"
    reasons = {p.id: (p.status, p.reason_code) for p in result.report.plugins}
    assert reasons["dies"] == ("failed", "WORKER_CRASHED")
    unavailable = [pid for pid, r in reasons.items() if r == ("failed", "EXECUTOR_UNAVAILABLE")]
    assert unavailable and set(unavailable) <= {"warm", "later", "alone"}
    explanation = next(p for p in result.report.plugins if p.id == unavailable[0]).explanation
    assert explanation.startswith("no worker could be started: worker 0 failed to start: it ended")


async def test_runs_sharing_an_engine_do_not_touch_each_others_jobs(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    """Two runs with a plugin of the same id: cancelling one run while both plugins
    run must leave the other's job alone (before, stops were keyed by plugin id)."""
    gate = tmp_path / "gate"
    make_plugin("gated", code=GATED, settings=gate_setting(gate))
    async with Engine(
        plugins_dir=plugins_dir, runs_dir=tmp_path / "r", workers=2, cache=False
    ) as engine:
        both_running = anyio.Event()
        running: set[str] = set()
        results = {}

        async def follow(run_id: str, scope: anyio.CancelScope | None = None) -> None:
            async with engine.open_run(dataset, run_id=run_id) as handle:
                async for event in handle:
                    if isinstance(event, PluginStarted):
                        running.add(run_id)
                        if len(running) == 2:
                            both_running.set()
            results[run_id] = handle.result

        async with anyio.create_task_group() as tg:
            doomed = anyio.CancelScope()

            async def doomed_run() -> None:
                with doomed:
                    await follow("a")

            tg.start_soon(doomed_run)
            tg.start_soon(follow, "b")
            await both_running.wait()
            doomed.cancel()
            await anyio.sleep(0)
            gate.touch()
    assert "a" not in results
    assert outcome(results["b"], "gated") == ("ok", None)
    log_a = read_log(tmp_path / "r" / "a" / "events.jsonl")
    assert not isinstance(log_a[-1], RunFinished), [type(e).__name__ for e in log_a]


ENVIRONMENT = """
import os
from contracts import Finding, ok
def run(ctx):
    names = ("PYTHONHASHSEED", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    return ok(findings=[Finding(kind="env_kind", title="t", target="x", recommendation="r")],
              metrics={n: os.environ.get(n, "") for n in names})
"""


async def test_workers_hash_strings_alike_and_use_one_math_thread(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    import os

    make_plugin("env", code=ENVIRONMENT, finding_kinds=["env_kind"])
    before = dict(os.environ)
    async with Engine(plugins_dir=plugins_dir, runs_dir=tmp_path / "r", workers=1) as engine:
        result = await engine.run(dataset)
    assert result.report.plugins[0].metrics == {
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    assert dict(os.environ) == before  # set only for the moment of the spawn


SPIKES = """
from contracts import ok
def run(ctx):
    spike = bytearray(400 * 1024 * 1024)
    spike[::4096] = b"x" * len(spike[::4096])
    del spike  # gone before any watchdog look: the high-water mark still tells
    return ok(metrics={"spiked": True})
"""


async def test_a_brief_spike_above_the_cap_is_caught(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("spikes", code=SPIKES)
    async with Engine(
        plugins_dir=plugins_dir, runs_dir=tmp_path / "r", workers=1, memory_limit_mb=250
    ) as engine:
        result = await engine.run(dataset)
    spikes = result.report.plugins[0]
    assert (spikes.status, spikes.reason_code) == ("failed", "RESOURCE_LIMIT")
    assert "above the 250 MB cap" in spikes.explanation


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_worker_outlives_the_thread_that_started_it(
    make_plugin: MakePlugin,
    plugins_dir: Path,
    dataset: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Workers ask for PR_SET_PDEATHSIG, which the kernel sends when the *thread*
    that forked them ends. Started from the async backend's worker threads (which
    end after 10 s idle), every worker of a long run was SIGKILLed mid-job
    (WORKER_CRASHED). Here, once the worker is up, the test waits until every idle
    thread of the backend has ended (within its 10 s idle timeout): the worker must
    still be the one that ran the first job."""
    import threading

    from trio._core import _thread_cache

    make_plugin("first", code=SMALL)
    make_plugin("second", code=SMALL)
    async with Engine(
        plugins_dir=plugins_dir, runs_dir=tmp_path / "r", workers=1, cache=False
    ) as engine:
        one = await engine.run(dataset, select=["first"])
        monkeypatch.setattr(_thread_cache, "IDLE_TIMEOUT", 0.01)  # no new idle waits
        backend_threads = [t for t in threading.enumerate() if t.name.startswith("Trio thread")]
        assert backend_threads  # the worker was started through one of them
        for thread in backend_threads:
            thread.join(30)
            assert not thread.is_alive()
        two = await engine.run(dataset, select=["second"])
        pool = engine.executor
        assert isinstance(pool, ProcessPool)
        assert pool.replacements == 0
    pids = [
        e.pid
        for run in (one, two)
        for e in read_log(run.run_dir / "events.jsonl")
        if isinstance(e, PluginStarted)
    ]
    assert len(pids) == 2 and pids[0] == pids[1]
    assert outcome(two, "second") == ("ok", None)


def test_the_peak_is_read_only_when_a_job_could_have_broken_its_cap() -> None:
    from engine._worker.run import MAX_TOUCH_BYTES_PER_S, peak_needed

    cap = 4096 * 1_000_000
    shortest = cap / MAX_TOUCH_BYTES_PER_S  # 4.096 ms
    assert not peak_needed(10.0, 0)  # no cap: nothing to judge
    assert not peak_needed(shortest * 0.99, cap)
    assert peak_needed(shortest, cap)
    assert peak_needed(0.5, cap)
    assert peak_needed(1e-6, 1_000_000)  # a 1 MB cap: 1 us is enough
    assert not peak_needed(0.5e-6, 1_000_000)
