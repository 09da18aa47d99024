"""Showing a run's progress as its events arrive.

Three displays behind one small interface (:class:`Progress`):

- :class:`LiveProgress`: a live ``rich`` panel for a terminal: per lane done/total
  and the plugins running now, failures printed as they happen, elapsed time;
- :class:`PlainProgress`: one line per finished plugin (logs, pipes, CI);
- :class:`QuietProgress`: nothing but the run directory (the caller prints the status).

Every display first prints ``run <run_id>: <run_dir>`` on a line of its own.
:func:`make_progress` picks one: quiet when asked, live when the stream is a
terminal, plain otherwise.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO, Protocol

from attrs import define, field
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from contracts import Failed, Na
from contracts.events import (
    Event,
    PlanBuilt,
    PluginDispatched,
    PluginFinished,
    PluginStarted,
    PreflightFailed,
    RunFinished,
    RunResumed,
)


class Progress(Protocol):
    def start(self, run_id: str, run_dir: Path) -> None: ...
    def on_event(self, event: Event) -> None: ...
    def stop(self) -> None: ...


def run_line(run_id: str, run_dir: Path) -> str:
    return f"run {run_id}: {run_dir}"


def event_line(event: Event) -> str | None:
    """The one-line account of a plugin's end; ``None`` for every other event."""
    if not isinstance(event, PluginFinished | PreflightFailed):
        return None
    result = event.result
    status = result.__struct_config__.tag
    if isinstance(result, Na | Failed):
        detail = f" {result.reason_code}"
    else:
        detail = f" {len(result.findings)} finding(s)"
    took = f" {event.duration_s:.2f}s" if isinstance(event, PluginFinished) and event.ran else ""
    cached = " (cached)" if isinstance(event, PluginFinished) and event.cached else ""
    return f"  {status!s:<6} {event.lane:<11} {event.plugin_id}{detail}{took}{cached}"


class QuietProgress:
    """Prints the run directory only."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    def start(self, run_id: str, run_dir: Path) -> None:
        print(run_line(run_id, run_dir), file=self._stream or sys.stdout, flush=True)

    def on_event(self, event: Event) -> None:
        pass

    def stop(self) -> None:
        pass


class PlainProgress(QuietProgress):
    """One line per plugin that ends, as it ends."""

    def on_event(self, event: Event) -> None:
        line = event_line(event)
        if line:
            print(line, file=self._stream or sys.stdout, flush=True)


@define(kw_only=True)
class LaneProgress:
    total: int = 0
    done: int = 0
    failed: int = 0
    running: list[str] = field(factory=list)


@define(kw_only=True)
class ProgressState:
    """What the live display shows, folded from the events it has seen."""

    lanes: dict[str, LaneProgress] = field(factory=dict)
    lane_of: dict[str, str] = field(factory=dict)
    failures: list[str] = field(factory=list)
    status: str = ""
    known_total: bool = False

    def lane(self, name: str) -> LaneProgress:
        return self.lanes.setdefault(name, LaneProgress())

    def apply(self, event: Event) -> str | None:
        """Fold ``event``; return a failure line to print when a plugin failed."""
        match event:
            case PlanBuilt(plan=plan):
                self.known_total = True
                for step in plan.steps:
                    self.lane_of[step.plugin_id] = step.lane
                    self.lane(step.lane).total += 1
            case RunResumed():
                self.known_total = False  # what finished before is not in this stream
            case PluginDispatched(plugin_id=pid):
                self.lane_of[pid] = event.lane
            case PluginStarted(plugin_id=pid):
                progress = self.lane(self.lane_of.get(pid, "?"))
                if pid not in progress.running:
                    progress.running.append(pid)
            case PluginFinished() | PreflightFailed():
                progress = self.lane(event.lane)
                progress.done += 1
                if event.plugin_id in progress.running:
                    progress.running.remove(event.plugin_id)
                result = event.result
                if isinstance(result, Failed):
                    progress.failed += 1
                    line = (
                        f"FAILED {event.lane} {event.plugin_id} {result.reason_code}: "
                        f"{(result.message.splitlines() or [''])[0]}"
                    )
                    self.failures.append(line)
                    return line
            case RunFinished(status=status):
                self.status = status
            case _:
                pass
        return None


class _View:
    """The live panel; rendered on every refresh so the clock keeps moving."""

    def __init__(self, state: ProgressState, run_id: str, started: float) -> None:
        self.state = state
        self.run_id = run_id
        self.started = started

    def __rich__(self) -> RenderableType:
        state = self.state
        # Rendered by rich's refresh thread while the event loop folds: work on copies.
        lanes = sorted(dict(state.lanes).items())
        elapsed = time.monotonic() - self.started
        done = sum(lane.done for _, lane in lanes)
        total = sum(lane.total for _, lane in lanes)
        failed = sum(lane.failed for _, lane in lanes)
        of = f"/{total}" if state.known_total else ""
        head = Text.assemble(
            (f"run {self.run_id}", "bold"),
            f"  {done}{of} plugins done  ",
            (f"{failed} failed", "bold red" if failed else "green"),
            f"  {elapsed:,.1f}s",
        )
        table = Table(box=None, pad_edge=False, show_edge=False)
        table.add_column("lane", style="cyan")
        table.add_column("done", justify="right")
        table.add_column("failed", justify="right")
        table.add_column("running")
        for name, lane in lanes:
            now = list(lane.running)
            running = ", ".join(now[:4]) + (f" +{len(now) - 4}" if len(now) > 4 else "")
            table.add_row(
                name,
                f"{lane.done}/{lane.total}" if state.known_total else str(lane.done),
                Text(str(lane.failed), style="bold red" if lane.failed else ""),
                running or "-",
            )
        return Group(head, table)


class LiveProgress:
    """A live ``rich`` display for a terminal."""

    def __init__(self, console: Console | None = None, *, refresh_per_second: float = 8) -> None:
        self.console = console or Console()
        self.state = ProgressState()
        self._refresh = refresh_per_second
        self._live: Live | None = None

    def start(self, run_id: str, run_dir: Path) -> None:
        # Plain print (no markup, no wrapping): the first line is parsed by scripts.
        self.console.out(run_line(run_id, run_dir), highlight=False)
        self._live = Live(
            _View(self.state, run_id, time.monotonic()),
            console=self.console,
            refresh_per_second=self._refresh,
            transient=False,
        )
        self._live.start()

    def on_event(self, event: Event) -> None:
        failure = self.state.apply(event)
        if failure is not None:
            # Printed above the live panel, which rich's own thread keeps redrawing.
            self.console.print(Text(failure, style="red"))

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def make_progress(quiet: bool = False, stream: IO[str] | None = None) -> Progress:
    """Quiet when asked; live when ``stream`` (default stdout) is a terminal; else plain."""
    out = stream or sys.stdout
    if quiet:
        return QuietProgress(stream)
    if out.isatty():
        return LiveProgress(Console(file=out))
    return PlainProgress(stream)
