"""Watchdogs: a hung, crashing, memory-hungry or stalled plugin ends failed with
the right reason, its worker is replaced, and the run goes on to the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.events import PluginStarted, RunFinished, StallDetected
from engine import ConfigError, Engine, RunResult, read_log
from engine._executors.base import JobStarted, Reply, Ticket
from engine._worker.job import Job

from .conftest import MakePlugin

pytestmark = pytest.mark.anyio

HANGS = "import time\ndef run(ctx):\n    time.sleep(60)\n"
EXITS = "import os\ndef run(ctx):\n    os._exit(3)\n"
SEGFAULTS = "import ctypes\ndef run(ctx):\n    ctypes.string_at(0)\n"
HOGS = """
import time
def run(ctx):
    hog = bytearray(400 * 1024 * 1024)
    for i in range(0, len(hog), 4096):
        hog[i] = 1
    time.sleep(30)
"""


def _outcome(result: RunResult, pid: str) -> tuple[str, str | None]:
    report = next(p for p in result.report.plugins if p.id == pid)
    return report.status, report.reason_code


async def test_timeout_crash_and_segfault(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("hangs", code=HANGS, timeout_s=1)
    make_plugin("exits", code=EXITS)
    make_plugin("segfaults", code=SEGFAULTS)
    make_plugin("fine")
    make_plugin("after", depends_on=["hangs"])
    async with Engine(plugins_dir=plugins_dir, runs_dir=tmp_path / "r", workers=2) as engine:
        result = await engine.run(dataset)
        assert _outcome(result, "hangs") == ("failed", "TIMEOUT")
        assert _outcome(result, "exits") == ("failed", "WORKER_CRASHED")
        assert _outcome(result, "segfaults") == ("failed", "WORKER_CRASHED")
        assert _outcome(result, "fine") == ("ok", None)
        assert _outcome(result, "after") == ("na", "UPSTREAM_FAILED")
        assert result.status == "failed"
        crashed = next(p for p in result.report.plugins if p.id == "exits")
        assert "exit code 3" in crashed.explanation
        segfault = next(p for p in result.report.plugins if p.id == "segfaults")
        assert "killed by signal SIGSEGV" in segfault.explanation
        # The pool was repaired: the same engine runs again.
        again = await engine.run(dataset, select=["fine"])
        assert again.ok


async def test_memory_cap(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("hogs", code=HOGS, timeout_s=60)
    make_plugin("fine")
    async with Engine(
        plugins_dir=plugins_dir, runs_dir=tmp_path / "r", workers=1, memory_limit_mb=250
    ) as engine:
        result = await engine.run(dataset)
    assert _outcome(result, "hogs") == ("failed", "RESOURCE_LIMIT")
    assert _outcome(result, "fine") == ("ok", None)
    hogs = next(p for p in result.report.plugins if p.id == "hogs")
    assert "above the 250 MB cap" in hogs.explanation


class MuteExecutor:
    """A broken executor (as a remote one might be): it starts the first job it is
    given and then never reports anything again; the rest it never starts."""

    name = "mute"
    capacity = 2
    pipeline = 1

    def __init__(self) -> None:
        self.cancelled: list[tuple[str, str]] = []
        self._seq = 0

    async def __aenter__(self) -> MuteExecutor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def submit(
        self, job: Job, *, timeout_s: float, memory_mb: int | None, priority: int, reply: Reply
    ) -> Ticket:
        ticket = Ticket(self._seq, job.run_id, job.plugin_id)
        if self._seq == 0:
            reply(JobStarted(ticket, 0, 1, "mute/0"))
        self._seq += 1
        return ticket

    def cancel(self, ticket: Ticket, reason: str, message: str) -> None:
        self.cancelled.append((ticket.plugin_id, reason))


async def test_stall_guard_ends_every_outstanding_job(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("first", timeout_s=0.4)
    make_plugin("second", timeout_s=0.4)
    make_plugin("after", depends_on=["first"], timeout_s=0.4)
    executor = MuteExecutor()
    async with Engine(
        plugins_dir=plugins_dir, runs_dir=tmp_path / "r", executor=executor, stall_timeout_s=0.5
    ) as engine:
        result = await engine.run(dataset)
    events = read_log(result.run_dir / "events.jsonl")
    stalls = [e for e in events if isinstance(e, StallDetected)]
    # One stall, naming the running job and the one never started; both end.
    assert len(stalls) == 1
    assert set(stalls[0].plugins) == {"first", "second"}
    phases = {e.plugin_id: type(e).__name__ for e in events if isinstance(e, PluginStarted)}
    assert len(phases) == 1  # exactly one of them had started
    assert _outcome(result, "first") == ("failed", "STALLED")
    assert _outcome(result, "second") == ("failed", "STALLED")
    assert _outcome(result, "after") == ("na", "UPSTREAM_FAILED")
    assert isinstance(events[-1], RunFinished) and result.status == "failed"
    assert sorted(executor.cancelled) == [("first", "STALLED"), ("second", "STALLED")]


async def test_a_timeout_not_below_the_stall_timeout_is_refused(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("slowpoke", timeout_s=120)
    make_plugin("fine", timeout_s=5)
    async with Engine(
        plugins_dir=plugins_dir, runs_dir=tmp_path / "r", executor="inline", stall_timeout_s=60
    ) as engine:
        with pytest.raises(ConfigError, match=r"slowpoke \(120s\) not below stall_timeout_s"):
            await engine.run(dataset)
    assert not (tmp_path / "r").exists() or not any(
        p.name not in {"_datasets", "_cache"} for p in (tmp_path / "r").iterdir()
    )
