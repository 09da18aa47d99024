"""Progress displays: plain lines, quiet, and the live rich panel."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest
from rich.console import Console

import telemetry.progress as progress_module
from contracts import Failed
from contracts.events import PluginDispatched, PluginFinished, PluginStarted, RunResumed
from telemetry.progress import (
    LaneProgress,
    LiveProgress,
    PlainProgress,
    ProgressState,
    QuietProgress,
    _View,
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


class Flushes(io.StringIO):
    """A stream that records what it held at every flush."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[str] = []

    def flush(self) -> None:
        self.flushed.append(self.getvalue())


def test_every_display_writes_to_the_stream_it_was_given_and_flushes_each_line() -> None:
    run_dir = Path("r")
    for quiet in (True, False):
        out = Flushes()
        progress = make_progress(quiet=quiet, stream=out)
        progress.start(RUN_ID, run_dir)
        for event in synthetic_events():
            progress.on_event(event)
        progress.stop()
        lines = out.getvalue().splitlines(keepends=True)
        assert len(lines) == (1 if quiet else 7)
        # Each line is flushed as it is printed: a pipe sees it at once.
        assert out.flushed == ["".join(lines[: n + 1]) for n in range(len(lines))]
    tty = FakeTty()
    live = make_progress(stream=tty)
    assert isinstance(live, LiveProgress) and live.console.file is tty


def _view_state() -> ProgressState:
    state = ProgressState()
    for event in synthetic_events():
        state.apply(event)
    state.lanes["explanation"].running = ["a", "b", "c", "d", "e"]
    state.lanes["extra"] = LaneProgress(total=2, running=["w", "x", "y", "z"])
    return state


def _console(colour: bool) -> Console:
    return Console(
        file=io.StringIO(),
        width=70,
        force_terminal=True,
        color_system="standard" if colour else None,
        legacy_windows=False,
    )


def test_the_live_panel_shows_the_head_and_one_row_per_lane(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress_module, "time", SimpleNamespace(monotonic=lambda: 2234.5))
    state = _view_state()
    view = _View(state, "RID", 1000.0)
    console = _console(colour=False)
    console.print(view)
    assert isinstance(console.file, io.StringIO)
    # Lanes sorted by name; at most four running plugins named, then how many more.
    assert console.file.getvalue().splitlines() == [
        "run RID  6/8 plugins done  1 failed  1,234.5s",
        "lane         done  failed  running      ",
        "decision      5/5       1  -            ",
        "explanation   1/1       0  a, b, c, d +1",
        "extra         0/2       0  w, x, y, z   ",
    ]
    state.known_total = False  # after a resume: no totals
    console = _console(colour=False)
    console.print(view)
    assert isinstance(console.file, io.StringIO)
    assert console.file.getvalue().splitlines() == [
        "run RID  6 plugins done  1 failed  1,234.5s",
        "lane         done  failed  running      ",
        "decision        5       1  -            ",
        "explanation     1       0  a, b, c, d +1",
        "extra           0       0  w, x, y, z   ",
    ]


def test_the_live_panel_styles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "time", SimpleNamespace(monotonic=lambda: 1.0))
    state = _view_state()
    view = _View(state, "RID", 0.0)
    console = _console(colour=True)
    styled = [(s.text.strip(), str(s.style)) for s in console.render(view) if s.text.strip()]
    assert styled == [
        ("run RID", "bold"),
        ("6/8 plugins done", "none"),
        ("1 failed", "bold red"),
        ("1.0s", "none"),
        *[(name, "bold") for name in ("lane", "done", "failed", "running")],
        *[("decision", "cyan"), ("5/5", "None"), ("1", "bold red"), ("-", "None")],
        *[("explanation", "cyan"), ("1/1", "None"), ("0", "None"), ("a, b, c, d +1", "None")],
        *[("extra", "cyan"), ("0/2", "None"), ("0", "None"), ("w, x, y, z", "None")],
    ]
    state.lanes["decision"].failed = 0
    styled = [(s.text.strip(), str(s.style)) for s in console.render(view) if s.text.strip()]
    assert styled[2] == ("0 failed", "green")
    assert styled[10] == ("0", "None")


def test_live_progress_prints_the_run_line_plain_failures_in_red_and_keeps_its_panel() -> None:
    out = io.StringIO()
    console = Console(file=out, width=70, force_terminal=True, color_system="standard")
    progress = LiveProgress(console, refresh_per_second=50)
    progress.stop()  # before start: nothing to stop
    progress.start(RUN_ID, Path("runs") / "run-2026")
    for event in synthetic_events():
        progress.on_event(event)
    progress.stop()
    progress.stop()  # twice: the second does nothing
    text = out.getvalue()
    # Not highlighted (no colour on the date's digits): scripts parse this line.
    assert text.startswith(f"run {RUN_ID}: {Path('runs') / 'run-2026'}\n")
    assert "\x1b[31mFAILED decision broken PLUGIN_ERROR: no\x1b[0m\n" in text
    assert f"\x1b[1mrun {RUN_ID}\x1b[0m  6/6 plugins done" in text
    # The last panel stays on the screen (not erased at stop): it ends the output,
    # followed only by the cursor shown again.
    assert text.endswith(
        "\x1b[36mexplanation\x1b[0m\x1b[36m \x1b[0m  1/1       0  -      \n\x1b[?25h"
    )


def test_a_resumed_stream_takes_each_plugins_lane_from_its_dispatch() -> None:
    # A resumed run's stream has no plan (it is in the log already): a plugin run
    # again is placed by its dispatch, not under "?".
    events = synthetic_events()
    dispatched = next(e for e in events if isinstance(e, PluginDispatched))
    started = next(e for e in events if isinstance(e, PluginStarted))
    assert (dispatched.plugin_id, dispatched.lane) == ("explain", "explanation")
    state = ProgressState()
    state.apply(RunResumed(seq=0, prev="", wall=0.0, mono=0.0, pending=("explain",)))
    state.apply(dispatched)
    state.apply(started)
    assert list(state.lanes) == ["explanation"]
    assert state.lanes["explanation"].running == ["explain"]
