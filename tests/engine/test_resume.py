"""Resume after SIGKILL: nothing finished is lost, the final report equals an
uninterrupted run's (timings aside), and the resumed part is visible in the log."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from contracts.events import (
    CacheMiss,
    PluginFinished,
    RunFinished,
    RunResumed,
    RunStarted,
    StallDetected,
)
from engine import ConfigError, Engine, RunResult, read_log
from engine._core.eventlog import EventLog

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

KILLS_THE_ENGINE = """
import os, signal, time
from pathlib import Path
from contracts import Finding, ok
def run(ctx):
    # The kill point is an event, not a moment: the engine dies while this plugin
    # runs, once (the marker keeps the resumed run, and the reference, alive).
    marker = Path(ctx.settings["marker"])
    if not marker.exists():
        marker.touch()
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(60)  # this worker dies with its parent
    up = sorted(ctx.upstream)
    return ok(findings=[Finding(kind="{pid}_kind", title="{pid} saw " + ",".join(up),
                                target="t", recommendation="r")],
              metrics={{"rows": ctx.data.rows, "seed": ctx.seed}})
"""


def _fleet(make_plugin: MakePlugin, killer: str = "", marker: Path | None = None) -> None:
    def code(pid: str) -> dict[str, object]:
        if pid != killer:
            return {"code": SLOW.format(pid=pid)}
        return {
            "code": KILLS_THE_ENGINE.format(pid=pid),
            "settings": {"marker": {"type": "str", "default": str(marker)}},
        }

    for i in range(3):
        make_plugin(
            f"exp_{i}",
            lane="explanation",
            downstream=[f"dec_{i}"],
            **code(f"exp_{i}"),
        )
        make_plugin(f"dec_{i}", depends_on=[f"exp_{i}"], **code(f"dec_{i}"))
    make_plugin("final", depends_on=["dec_0", "dec_1", "dec_2"], **code("final"))


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


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("killer", ["exp_0", "dec_1", "final"])
def test_resume_after_sigkill_equals_an_uninterrupted_run(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path, killer: str
) -> None:
    marker = tmp_path / "killed-once"
    _fleet(make_plugin, killer, marker)
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(plugins_dir), str(runs), str(dataset)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert proc.wait(timeout=120) == -signal.SIGKILL
    assert marker.exists()
    log = runs / "victim" / "events.jsonl"
    before = read_log(log)
    assert not isinstance(before[-1], RunFinished)
    # Killed while the chosen plugin ran (whether the engine had logged its start
    # yet depends on the pipe, so only its end is certain to be missing).
    assert killer not in {e.plugin_id for e in before if isinstance(e, PluginFinished)}
    with log.open("ab") as fh:  # as if the kill tore the record being written
        fh.write(b'{"type":"plugin_fin')

    resumed = anyio.run(_resume, plugins_dir, runs, runs / "victim")
    reference = anyio.run(_reference, plugins_dir, dataset, tmp_path / "ref")
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
    assert killer in resumed_at.pending
    assert (runs / "victim" / "report.json").is_file()
    assert _children_of(proc.pid) == []  # its workers died with it


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


@pytest.mark.anyio
async def test_a_run_directory_has_one_writer(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("only")
    async with Engine(plugins_dir=plugins_dir, runs_dir=tmp_path / "r", workers=1) as engine:
        done = await engine.run(dataset)
        log = done.run_dir / "events.jsonl"
        lines = log.read_bytes().splitlines(keepends=True)
        log.write_bytes(b"".join(lines[:4]))  # unfinished
        holder, _ = EventLog.reopen(log)  # another engine resuming it
        try:
            with pytest.raises(ConfigError, match="in use by another engine"):
                await engine.resume(done.run_dir)
        finally:
            holder.close()
        again = await engine.resume(done.run_dir)  # once released, it resumes
    assert again.ok
    events = read_log(log)
    assert [e.seq for e in events] == list(range(len(events)))


HOGS_AFTER = """
from contracts import ok
def run(ctx):
    hog = bytearray(400 * 1024 * 1024)
    for i in range(0, len(hog), 4096):
        hog[i] = 1
    return ok(metrics={"hogged": True})
"""


@pytest.mark.anyio
async def test_a_resume_uses_the_limits_the_run_recorded(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("first", timeout_s=30)
    make_plugin("hogs", code=HOGS_AFTER, depends_on=["first"], timeout_s=30)
    async with Engine(
        plugins_dir=plugins_dir,
        runs_dir=tmp_path / "r",
        workers=1,
        memory_limit_mb=250,
        stall_timeout_s=77,
        cache=False,
    ) as engine:
        done = await engine.run(dataset)
    assert done.report.plugins[1].reason_code == "RESOURCE_LIMIT"
    log = done.run_dir / "events.jsonl"
    events = read_log(log)
    started = events[0]
    assert isinstance(started, RunStarted)
    assert (started.worker_memory_mb, started.stall_timeout_s, started.cache) == (250, 77, False)
    cut = next(e.seq for e in events if isinstance(e, PluginFinished))  # first finished
    log.write_bytes(b"".join(log.read_bytes().splitlines(keepends=True)[:cut]))
    async with Engine(
        plugins_dir=plugins_dir, runs_dir=tmp_path / "r", workers=1, memory_limit_mb=None
    ) as engine:
        resumed = await engine.resume(done.run_dir)
    # The recorded cap, not this engine's "no cap", decides the outcome.
    assert {p.id: p.reason_code for p in resumed.report.plugins} == {
        "first": None,
        "hogs": "RESOURCE_LIMIT",
    }
    assert not any(isinstance(e, CacheMiss) for e in read_log(log))  # cache stayed off


def test_the_log_is_synced_after_settling_records(tmp_path: Path) -> None:
    from contracts import Na

    log = EventLog(tmp_path / "events.jsonl")
    log.append(StallDetected, plugins=(), idle_s=1.0)  # settles nothing
    log.close()
    assert log.syncs == 0
    log, events = EventLog.reopen(tmp_path / "events.jsonl")
    assert len(events) == 1
    result = Na(reason_code="NO_SIGNIFICANT_EFFECT", explanation="x")
    log.append(PluginFinished, plugin_id="p", lane="decision", result=result)
    log.close()  # stops the syncer after it served the pending request
    assert log.syncs == 1


WAITS_FOR_THE_TEST = """
import time
from pathlib import Path
from contracts import Finding, ok
def run(ctx):
    here = Path(ctx.settings["dir"])
    if not (here / "interrupted").exists():
        (here / "running").touch()  # the test interrupts the engine now
        time.sleep(120)  # stopped with its worker when the engine leaves
    return ok(findings=[Finding(kind="waits_kind", title="t", target="x", recommendation="r")])
"""


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(path: Path, proc: subprocess.Popen[bytes]) -> None:
    """Until ``path`` exists (the plugin says it runs), or the process ended."""
    import time

    deadline = time.monotonic() + 120
    while not path.exists():
        assert proc.poll() is None, "the engine ended before the plugin ran"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


@pytest.mark.slow
def test_ctrl_c_exits_130_keeps_the_log_and_resume_finishes(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    here = tmp_path / "signals"
    here.mkdir()
    make_plugin("before")
    make_plugin(
        "waits",
        code=WAITS_FOR_THE_TEST,
        depends_on=["before"],
        settings={"dir": {"type": "str", "default": str(here)}},
    )
    runs = tmp_path / "runs"
    engine = [sys.executable, "-m", "engine"]
    proc = subprocess.Popen(
        [
            *engine,
            "run",
            str(dataset),
            "--plugins",
            str(plugins_dir),
            "--run-dir",
            str(runs),
            "--run-id",
            "stopped",
            "--workers",
            "1",
            "--no-cache",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # Ctrl-C as a terminal delivers it: a test runner started in the background by
        # a shell without job control ignores SIGINT, and its children inherit that.
        preexec_fn=_default_sigint,
    )
    _wait_for(here / "running", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "interrupted: the run's event log is kept, unfinished" in err.decode()
    log = runs / "stopped" / "events.jsonl"
    events = read_log(log)  # whole records only, and the chain verifies
    assert not isinstance(events[-1], RunFinished)
    assert [e.plugin_id for e in events if isinstance(e, PluginFinished)] == ["before"]
    assert not (runs / "stopped" / "report.json").exists()
    (here / "interrupted").touch()
    resumed = subprocess.run(
        [*engine, "resume", str(runs / "stopped")], capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    after = read_log(log)
    assert after[: len(events)] == events
    assert isinstance(after[-1], RunFinished) and after[-1].status == "ok"
    assert [e.plugin_id for e in after if isinstance(e, PluginFinished)] == ["before", "waits"]


KILLED_WHILE_WRITING = """
import os, signal, sys
from pathlib import Path
import anyio
from engine import Engine
import engine._core.artifacts as artifacts

target, how = sys.argv[4], sys.argv[5]
real_fdopen, real_replace = os.fdopen, os.replace

class HalfThenDie:
    # The file object of the temporary file: half the bytes, then SIGKILL.
    def __init__(self, fh):
        self.fh = fh
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self.fh.__exit__(*exc)
    def write(self, data):
        self.fh.write(data[: len(data) // 2])
        self.fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    def __getattr__(self, name):
        return getattr(self.fh, name)

def fdopen(fd, mode="r", *args, **kwargs):
    fh = real_fdopen(fd, mode, *args, **kwargs)
    name = os.readlink(f"/proc/self/fd/{fd}")
    if how == "half" and Path(name).name.startswith(f".{target}."):
        return HalfThenDie(fh)
    return fh

def replace(src, dst, *args, **kwargs):
    if how == "before-rename" and Path(dst).name == target:
        os.kill(os.getpid(), signal.SIGKILL)  # the whole temporary file is written
    return real_replace(src, dst, *args, **kwargs)

artifacts.os.fdopen = fdopen
artifacts.os.replace = replace

async def main():
    async with Engine(plugins_dir=sys.argv[1], runs_dir=sys.argv[2], workers=1,
                      cache=False) as engine:
        await engine.run(sys.argv[3], seed=3, run_id="victim")
anyio.run(main)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("target", "how"), [("report.json", "half"), ("report.md", "before-rename")]
)
def test_an_artifact_is_whole_or_absent_after_a_kill_while_writing_it(
    make_plugin: MakePlugin,
    plugins_dir: Path,
    dataset: Path,
    tmp_path: Path,
    target: str,
    how: str,
) -> None:
    from engine._tools.replay import replay

    make_plugin("only")
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED_WHILE_WRITING,
            str(plugins_dir),
            str(runs),
            str(dataset),
            target,
            how,
        ],
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    run_dir = runs / "victim"
    assert isinstance(read_log(run_dir / "events.jsonl")[-1], RunFinished)  # the log is whole
    assert not (run_dir / target).exists()  # never half a file under its final name
    leftovers = sorted(p.name for p in run_dir.glob(f".{target}.*.tmp"))
    assert len(leftovers) == 1
    if target == "report.md":  # written in order: what came before is whole
        assert json.loads((run_dir / "report.json").read_text())["status"] == "ok"
    assert not (run_dir / "report.html").exists()

    async def resume() -> RunResult:
        async with Engine(plugins_dir=plugins_dir, runs_dir=runs, workers=1, cache=False) as e:
            return await e.resume(run_dir)

    resumed = anyio.run(resume)
    assert resumed.ok
    result = replay(run_dir)  # every artifact now the fold of the log, byte for byte
    assert result.ok and result.identical == [
        "report.json",
        "run_manifest.json",
        "report.md",
        "report.html",
    ]
    assert list(run_dir.glob(".*.tmp")) == []  # the torn temporary file is gone


def test_report_files_appear_together_and_only_after_the_log_is_synced(tmp_path: Path) -> None:
    from engine._core.artifacts import AtomicFiles

    with AtomicFiles() as files:
        files.add(tmp_path / "a.json", b"a")
        files.add(tmp_path / "b.md", b"b")
        files.commit(lambda: False)  # the log's final sync failed: nothing is published
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # temporaries removed too
    seen: list[list[str]] = []
    with AtomicFiles() as files:
        files.add(tmp_path / "a.json", b"a")
        files.add(tmp_path / "b.md", b"b")

        def ready() -> bool:  # both written and synced, none renamed yet
            seen.append(sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")))
            return True

        files.commit(ready)
    assert seen == [[]]
    assert (tmp_path / "a.json").read_bytes() == b"a" and (tmp_path / "b.md").read_bytes() == b"b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.md"]
