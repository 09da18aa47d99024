"""The run state and the one reducer that builds it.

``apply(state, event)`` is the only code that changes a :class:`RunState`. The
supervisor applies every event it appends, and replay applies every event it
reads, through this same function, so a live run and a replayed log cannot
disagree. No clock, randomness or I/O here: those values travel in events.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from attrs import define, field

from contracts import DataAccess, Plan, PlanStep, PluginResult
from contracts.dataset import SpanRecord
from contracts.events import (
    CacheHit,
    CacheMiss,
    DataAccessed,
    Event,
    GateEvaluated,
    PlanBuilt,
    PluginDispatched,
    PluginFinished,
    PluginSpan,
    PluginStarted,
    PreflightFailed,
    RunFinished,
    RunResumed,
    RunStarted,
    StallDetected,
)

from ..errors import EngineInternalError, NondeterminismError

Phase = Literal["pending", "dispatched", "running", "done"]


@define(kw_only=True)
class PluginRecord:
    """What the log says about one plugin of the plan."""

    step: PlanStep
    phase: Phase = "pending"
    result: PluginResult | None = None
    duration_s: float = 0.0
    ran: bool = False
    preflight: bool = False
    downstream_affected: tuple[str, ...] = ()
    worker: int | None = None
    pid: int | None = None
    data_access: list[DataAccess] = field(factory=list)
    spans: list[SpanRecord] = field(factory=list)
    cache: str | None = None  # "hit" or the miss reason; None when not looked up
    cached: bool = False
    dispatched_wall: float | None = None
    started_wall: float | None = None
    finished_wall: float | None = None


@define(kw_only=True)
class RunState:
    """The fold of a run's events."""

    started: RunStarted | None = None
    plan: Plan | None = None
    plugins: dict[str, PluginRecord] = field(factory=dict)
    gates: GateEvaluated | None = None
    finished: RunFinished | None = None
    done: int = 0
    resumes: int = 0
    stalls: int = 0
    events: int = 0
    last_wall: float = 0.0

    @property
    def run_id(self) -> str:
        return self.started.run_id if self.started else ""

    def ordered(self) -> list[PluginRecord]:
        """Plugin records in plan order."""
        return sorted(self.plugins.values(), key=lambda r: r.step.order)

    def outstanding(self) -> int:
        return len(self.plugins) - self.done

    def status_counts(self) -> dict[str, int]:
        """Plugins by result status (ok / failed / na)."""
        counts = {"ok": 0, "failed": 0, "na": 0}
        for record in self.plugins.values():
            if record.result is not None:
                counts[record.result.__struct_config__.tag] += 1  # type: ignore[index]
        return counts


def _record(state: RunState, event: Event, plugin_id: str, *phases: Phase) -> PluginRecord:
    """The plugin's record, which must be in one of ``phases``: any other transition
    cannot come from the engine, so the log (or the code folding it) is wrong."""
    record = state.plugins.get(plugin_id)
    if record is None:
        raise NondeterminismError(f"event {event.seq}: plugin {plugin_id!r} is not in the plan")
    if record.phase == "done":
        raise NondeterminismError(f"event {event.seq}: plugin {plugin_id!r} already finished")
    if record.phase not in phases:
        raise NondeterminismError(
            f"event {event.seq}: {type(event).__name__} for plugin {plugin_id!r} while it is "
            f"{record.phase} (expected {' or '.join(phases)})"
        )
    return record


def apply(state: RunState, event: Event) -> RunState:
    """Fold one event into ``state`` and return it."""
    if event.seq != state.events:
        raise NondeterminismError(f"event {event.seq} applied after {state.events} events")
    if state.finished is not None:
        raise NondeterminismError(f"event {event.seq} after run_finished")
    match event:
        case RunStarted():
            if state.started is not None:
                raise NondeterminismError(f"event {event.seq}: second run_started")
            state.started = event
        case PlanBuilt(plan=plan):
            if state.started is None or state.plan is not None:
                raise NondeterminismError(f"event {event.seq}: plan_built out of place")
            state.plan = plan
            state.plugins = {s.plugin_id: PluginRecord(step=s) for s in plan.steps}
        case PluginDispatched(plugin_id=pid):
            record = _record(state, event, pid, "pending")
            record.phase = "dispatched"
            record.dispatched_wall = event.wall
        case PluginStarted(plugin_id=pid):
            record = _record(state, event, pid, "dispatched")
            record.phase = "running"
            record.worker = event.worker
            record.pid = event.pid
            record.started_wall = event.wall
        case CacheHit(plugin_id=pid):
            _record(state, event, pid, "pending").cache = "hit"
        case CacheMiss(plugin_id=pid):
            _record(state, event, pid, "pending").cache = event.reason
        case DataAccessed(plugin_id=pid):
            _record(state, event, pid, "running").data_access.append(event.access)
        case PluginSpan(plugin_id=pid):
            _record(state, event, pid, "running").spans.append(event.span)
        case PreflightFailed(plugin_id=pid):
            record = _record(state, event, pid, "pending")
            record.phase = "done"
            record.result = event.result
            record.preflight = True
            record.ran = False
            state.done += 1
            record.downstream_affected = event.downstream_affected
            record.finished_wall = event.wall
        case PluginFinished(plugin_id=pid):
            if event.cached:
                record = _record(state, event, pid, "pending")
                if record.cache != "hit":
                    raise NondeterminismError(
                        f"event {event.seq}: cached result for {pid!r} without a cache_hit"
                    )
            elif not event.ran:
                record = _record(state, event, pid, "pending")
            else:  # a job ends once dispatched, whether or not it began
                record = _record(state, event, pid, "dispatched", "running")
            record.phase = "done"
            record.result = event.result
            record.duration_s = event.duration_s
            record.ran = event.ran
            record.cached = event.cached
            record.downstream_affected = event.downstream_affected
            state.done += 1
            record.finished_wall = event.wall
        case RunResumed():
            if state.plan is None:
                raise NondeterminismError(f"event {event.seq}: run_resumed before the plan")
            state.resumes += 1
            for record in state.plugins.values():
                if record.phase in ("dispatched", "running"):
                    # Interrupted: it will be dispatched again.
                    record.phase = "pending"
                    record.worker = record.pid = None
                    record.data_access.clear()
                    record.spans.clear()
        case StallDetected():
            for pid in event.plugins:
                _record(state, event, pid, "dispatched", "running")
            state.stalls += 1
        case GateEvaluated():
            if state.outstanding() or state.gates is not None:
                raise NondeterminismError(f"event {event.seq}: gate_evaluated out of place")
            state.gates = event
        case RunFinished():
            if state.outstanding():
                raise NondeterminismError(
                    f"event {event.seq}: run_finished with {state.outstanding()} plugins unfinished"
                )
            state.finished = event
        case _:
            raise EngineInternalError(f"no reducer branch for {type(event).__name__}")
    state.events += 1
    state.last_wall = event.wall
    return state


def fold(events: Iterable[Event]) -> RunState:
    state = RunState()
    for event in events:
        state = apply(state, event)
    return state
