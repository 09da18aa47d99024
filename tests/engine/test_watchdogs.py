"""Watchdogs: a hung, crashing, memory-hungry or stalled plugin ends failed with
the right reason, its worker is replaced, and the run goes on to the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.events import StallDetected
from engine import Engine, RunResult, read_log

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


async def test_stall_detector(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("hangs", code=HANGS, timeout_s=120)
    make_plugin("fine")
    async with Engine(
        plugins_dir=plugins_dir, runs_dir=tmp_path / "r", workers=2, stall_timeout_s=1.0
    ) as engine:
        result = await engine.run(dataset)
    assert _outcome(result, "hangs") == ("failed", "STALLED")
    assert _outcome(result, "fine") == ("ok", None)
    stalls = [e for e in read_log(result.run_dir / "events.jsonl") if isinstance(e, StallDetected)]
    assert len(stalls) == 1 and stalls[0].plugins == ("hangs",)
    assert result.state.stalls == 1
