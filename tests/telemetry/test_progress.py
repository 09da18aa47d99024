"""Progress displays: plain lines, quiet, and the live rich panel."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import msgspec
from rich.console import Console

from contracts import Failed
from contracts.events import PluginFinished, PluginStarted, RunResumed
from telemetry.progress import (
    LiveProgress,
    PlainProgress,
    ProgressState,
    QuietProgress,
    event_line,
    make_progress,
)

from .conftest import RUN_ID, synthetic_events
from .test_export import write_fleet


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_make_progress_picks_by_terminal_and_quiet() -> None:
    assert isinstance(make_progress(quiet=True, stream=FakeTty()), QuietProgress)
    assert isinstance(make_progress(stream=FakeTty()), LiveProgress)
    assert type(make_progress(stream=io.StringIO())) is PlainProgress


def test_plain_progress_prints_one_line_per_plugin_end() -> None:
    out = io.StringIO()
    progress = PlainProgress(out)
    progress.start(RUN_ID, Path("runs") / RUN_ID)
    events = synthetic_events()
    for event in events:
        progress.on_event(event)
    progress.stop()
    lines = out.getvalue().splitlines()
    assert lines[0] == f"run {RUN_ID}: {Path('runs') / RUN_ID}"
    assert lines[1:] == [line for line in map(event_line, events) if line]
    assert len(lines) == 1 + 6
    assert any("PLUGIN_ERROR" in line for line in lines)
    assert any("(cached)" in line and "remembered" in line for line in lines)


def test_quiet_progress_prints_the_run_directory_only() -> None:
    out = io.StringIO()
    progress = QuietProgress(out)
    progress.start(RUN_ID, Path("r"))
    for event in synthetic_events():
        progress.on_event(event)
    assert out.getvalue() == f"run {RUN_ID}: r\n"


def test_progress_state_counts_lanes_running_and_failures() -> None:
    state = ProgressState()
    events = synthetic_events()
    for event in events[:6]:
        state.apply(event)
    assert state.lanes["explanation"].running == ["explain"]
    assert (state.lanes["decision"].done, state.lanes["decision"].total) == (1, 5)
    failures = [line for line in map(state.apply, events[6:]) if line]
    assert failures == ["FAILED decision broken PLUGIN_ERROR: no"]
    assert state.lanes["explanation"].running == []
    assert state.status == "failed"
    assert sum(lane.done for lane in state.lanes.values()) == 6


def test_live_progress_renders_lanes_and_failures() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    progress = LiveProgress(console, refresh_per_second=50)
    progress.start(RUN_ID, Path("r"))
    for event in synthetic_events():
        progress.on_event(event)
    progress.stop()
    text = out.getvalue()
    assert text.startswith(f"run {RUN_ID}: r\n")
    assert "FAILED decision broken PLUGIN_ERROR: no" in text
    assert "explanation" in text and "5/5" in text and "6/6 plugins done" in text


def test_run_quiet_prints_only_the_directory_and_status(tmp_path: Path, dataset_csv: Path) -> None:
    plugins = tmp_path / "plugins"
    write_fleet(plugins)
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "engine", "run", str(dataset_csv), "--plugins", str(plugins)),
            *("--run-dir", str(tmp_path / "runs"), "--workers", "1", "--quiet"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    first, last = proc.stdout.splitlines()
    run_id = first.split()[1].rstrip(":")
    assert first == f"run {run_id}: {tmp_path / 'runs' / run_id}"
    assert last == f"run {run_id} OK"


def test_each_plugin_end_is_one_line_of_status_lane_id_detail_time_and_cache() -> None:
    lines = [line for line in map(event_line, synthetic_events()) if line]
    assert lines == [
        "  na     decision    too_small INSUFFICIENT_DATA",  # a preflight: no time
        "  ok     explanation explain 1 finding(s) 0.70s",
        "  na     decision    remembered NO_SIGNIFICANT_EFFECT 0.25s (cached)",
        "  failed decision    broken PLUGIN_ERROR 0.10s",
        "  na     decision    after_broken UPSTREAM_FAILED",  # resolved without running
        "  ok     decision    decide 1 finding(s) 1.00s",
    ]


def test_progress_state_after_a_resume_and_for_plugins_it_was_not_told_of() -> None:
    events = synthetic_events()
    state = ProgressState()
    state.apply(events[1])  # the plan: every lane's total is known
    assert state.known_total
    started = next(e for e in events if isinstance(e, PluginStarted))
    state.apply(started)  # not dispatched in this stream: its lane is the plan's
    assert state.lanes["explanation"].running == ["explain"]
    state.apply(RunResumed(seq=0, prev="", wall=0.0, mono=0.0, pending=()))
    assert not state.known_total
    stranger = msgspec.structs.replace(started, plugin_id="stranger")
    state.apply(stranger)
    assert state.lanes["?"].running == ["stranger"]
    broken = next(e for e in events if isinstance(e, PluginFinished) and e.plugin_id == "broken")
    assert isinstance(broken.result, Failed)
    for message in ("first\nsecond", ""):
        failed = msgspec.structs.replace(
            broken, result=msgspec.structs.replace(broken.result, message=message)
        )
        state.apply(failed)
    assert state.failures == [
        "FAILED decision broken PLUGIN_ERROR: first",
        "FAILED decision broken PLUGIN_ERROR: ",
    ]
    assert state.lanes["decision"].failed == 2
