"""A run's trace folded from its events into compact span records.

A run becomes one trace: a span for the run, one per lane under it, one per plugin
of the plan under its lane, and under each plugin the child spans it opened with
``ctx.span`` in its worker (nested as the plugin nested them). Every plugin gets a
span, however it ended (``na``, preflight-failed, upstream-failed, from the cache),
so the whole plan is visible.

The fold is pure: no clock, no randomness, no I/O. Timestamps are the events' wall
times, and trace and span ids are hashes of the run id (and lane, plugin id, child
index), so the spans folded live while a run appends its events and the spans
rebuilt later from its ``events.jsonl`` are the same, id for id.

The records are msgspec structs and this module imports nothing of OpenTelemetry:
``trace.json`` is encoded from them directly (:func:`telemetry.export.trace_json`),
and :mod:`telemetry.spans` turns them into the SDK's spans where an SDK exporter
needs those.

:class:`TraceBuilder` is the incremental fold (``add(event)`` returns the spans that
event completed: a plugin's span and its children when the plugin ends, the lane
and run spans when the run ends); :func:`trace_from_events` folds a whole log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import msgspec
from attrs import define, field

from contracts import Failed, Na, Ok, PlanStep, PluginResult
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

SERVICE_NAME = "two-lane-engine"
SCOPE_NAME = "two_lane_engine.telemetry"
RUN_SPAN = "run"

# OTLP status codes (StatusCode in the SDK, Status.code in the protobuf).
UNSET, OK, ERROR = 0, 1, 2

Value = str | bool | int | float | list[str]
Attrs = dict[str, Value]


# -- ids ---------------------------------------------------------------------------


def _digest(*parts: str) -> bytes:
    # \x1f cannot occur in a run id, lane or plugin id, so the parts cannot run together.
    return hashlib.sha256("\x1f".join(parts).encode()).digest()


def trace_id_of(run_id: str) -> int:
    """The run's 128-bit trace id: the first 16 bytes of ``sha256("trace", run_id)``."""
    return int.from_bytes(_digest("trace", run_id)[:16], "big") or 1


def span_id_of(
    run_id: str,
    lane: str | None = None,
    plugin_id: str | None = None,
    child: int | None = None,
) -> int:
    """A 64-bit span id: the first 8 bytes of the SHA-256 of the tagged parts.

    ``span_id_of(run)`` is the run span, ``span_id_of(run, lane)`` a lane span,
    ``span_id_of(run, lane, plugin)`` a plugin span and
    ``span_id_of(run, lane, plugin, index)`` the plugin's child span ``index``.
    """
    parts = "span\x1f" + run_id
    if lane is not None:
        parts += "\x1flane\x1f" + lane
    if plugin_id is not None:
        parts += "\x1fplugin\x1f" + plugin_id
    if child is not None:
        parts += f"\x1fchild\x1f{child}"
    return int.from_bytes(hashlib.sha256(parts.encode()).digest()[:8], "big") or 1


def nanos(wall: float) -> int:
    """Wall-clock seconds (as events carry them) in integer nanoseconds."""
    return round(wall * 1_000_000_000)


# -- the records -------------------------------------------------------------------


class SpanMark(msgspec.Struct, frozen=True, gc=False):
    """A span event: ``time`` in Unix nanoseconds."""

    name: str
    time: int
    attributes: Attrs


class TraceSpan(msgspec.Struct, frozen=True, gc=False):
    """One span: ids as integers (``parent`` 0 for the root), times in Unix
    nanoseconds, ``code`` an OTLP status code (``message`` only with ``ERROR``)."""

    name: str
    span_id: int
    parent: int
    start: int
    end: int
    attributes: Attrs
    marks: tuple[SpanMark, ...] = ()
    code: int = UNSET
    message: str = ""


class Trace(msgspec.Struct, frozen=True, gc=False):
    """A run's spans and the resource they belong to (the same for every span)."""

    trace_id: int
    resource: dict[str, str]
    spans: list[TraceSpan]


# -- the fold ----------------------------------------------------------------------


@define(kw_only=True)
class _Plugin:
    """What the events say about one plugin, as far as its span needs."""

    step: PlanStep
    first_wall: float | None = None
    phase: str = "pending"
    marks: list[tuple[str, float, Attrs]] = field(factory=list)
    cache: str | None = None  # "hit", or the miss reason; None when not looked up
    rows_read: int = 0
    attempts: int = 0
    worker: int | None = None
    pid: int | None = None
    children: list[SpanRecord] = field(factory=list)
    terminal: PluginFinished | PreflightFailed | None = None

    def mark(self, name: str, wall: float, attrs: Attrs | None = None) -> None:
        if self.first_wall is None:
            self.first_wall = wall
        self.marks.append((name, wall, attrs or {}))


class TraceBuilder:
    """The incremental fold of a run's events into span records.

    Feed every event of the run, in order, to :meth:`add`; it returns the spans the
    event completed. :meth:`spans` returns the whole trace so far (with spans for
    whatever has not finished yet when ``unfinished`` is true).
    """

    def __init__(self) -> None:
        self._started: RunStarted | None = None
        self._trace_id = trace_id_of("")
        self._plugins: dict[str, _Plugin] = {}
        self._order: list[str] = []
        self._run_marks: list[tuple[str, float, Attrs]] = []
        self._finished: RunFinished | None = None
        self._gates: GateEvaluated | None = None
        self._last_wall = 0.0
        self._resource = {"service.name": SERVICE_NAME}
        self._done: dict[str, list[TraceSpan]] = {}
        self._closing: list[TraceSpan] = []
        self._lane_ids: dict[str, int] = {}

    @property
    def run_id(self) -> str:
        return self._started.run_id if self._started else ""

    @property
    def trace_id(self) -> int:
        return self._trace_id

    @property
    def resource(self) -> dict[str, str]:
        """The resource attributes of every span (``service.*``)."""
        return self._resource

    @property
    def finished(self) -> bool:
        return self._finished is not None

    def add(self, event: Event) -> list[TraceSpan]:
        """Fold one event; return the spans it completed (often none)."""
        self._last_wall = event.wall
        match event:
            case RunStarted():
                self._started = event
                self._trace_id = trace_id_of(event.run_id)
                self._resource = {
                    "service.name": SERVICE_NAME,
                    "service.version": event.engine_version,
                    "service.instance.id": event.run_id,
                }
                self._run_marks.append(
                    ("run_started", event.wall, {"mode": event.mode, "seed": event.seed})
                )
            case PlanBuilt(plan=plan):
                self._plugins = {s.plugin_id: _Plugin(step=s) for s in plan.steps}
                self._order = [s.plugin_id for s in sorted(plan.steps, key=lambda s: s.order)]
                self._run_marks.append(
                    (
                        "plan_built",
                        event.wall,
                        {"plan.hash": plan.plan_hash, "steps": len(plan.steps)},
                    )
                )
            case CacheHit(plugin_id=pid):
                record = self._plugins[pid]
                record.cache = "hit"
                record.mark("cache_hit", event.wall)
            case CacheMiss(plugin_id=pid):
                record = self._plugins[pid]
                record.cache = event.reason
                record.mark("cache_miss", event.wall, {"reason": event.reason})
            case PluginDispatched(plugin_id=pid):
                record = self._plugins[pid]
                record.phase = "dispatched"
                record.attempts += 1
                record.mark("dispatched", event.wall)
            case PluginStarted(plugin_id=pid):
                record = self._plugins[pid]
                record.phase = "running"
                record.worker, record.pid = event.worker, event.pid
                record.mark("started", event.wall)
            case DataAccessed(plugin_id=pid):
                record = self._plugins[pid]
                record.rows_read += event.access.rows
            case PluginSpan(plugin_id=pid):
                self._plugins[pid].children.append(event.span)
            case PreflightFailed(plugin_id=pid) | PluginFinished(plugin_id=pid):
                record = self._plugins[pid]
                record.phase = "done"
                record.terminal = event
                name = "finished" if isinstance(event, PluginFinished) else "preflight_failed"
                record.mark(name, event.wall, _result_attrs(event))
                return self._plugin_done(pid)
            case RunResumed():
                self._run_marks.append(("run_resumed", event.wall, {"pending": len(event.pending)}))
                for record in self._plugins.values():
                    if record.phase in ("dispatched", "running"):
                        # Interrupted: it runs again; spans of the lost attempt are dropped,
                        # as the run state drops them.
                        record.mark("interrupted", event.wall)
                        record.phase = "pending"
                        record.worker = record.pid = None
                        record.rows_read = 0
                        record.children.clear()
            case StallDetected():
                self._run_marks.append(
                    ("stall_detected", event.wall, {"plugins": list(event.plugins)})
                )
                for pid in event.plugins:
                    self._plugins[pid].mark("stalled", event.wall, {"idle_s": event.idle_s})
            case GateEvaluated():
                self._gates = event
                self._run_marks.append(
                    (
                        "gate_evaluated",
                        event.wall,
                        {"passed": event.passed, "enforced": event.enforced},
                    )
                )
            case RunFinished():
                self._finished = event
                self._run_marks.append(("run_finished", event.wall, {"status": event.status}))
                self._closing = [*self._lane_spans(), self._run_span()]
                return list(self._closing)
            case _:
                # An event type this fold does not know says nothing about spans.
                pass
        return []

    def spans(self, *, unfinished: bool = True) -> list[TraceSpan]:
        """The whole trace: the run span, the lane spans, then each plugin's span
        followed by its children, in plan order.

        Args:
            unfinished: also build spans for plugins, lanes and the run that have
                not ended (they end at the last event's time, status ``unfinished``).
        """
        if self._started is None:
            return []
        plugin_spans: list[TraceSpan] = []
        for pid in self._order:
            done = self._done.get(pid)
            if done is not None:
                plugin_spans += done
            elif unfinished:
                plugin_spans += self._build_plugin(pid)
        if self._finished is not None:
            head = [self._closing[-1], *self._closing[:-1]]
        elif unfinished:
            head = [self._run_span(), *self._lane_spans()]
        else:
            head = []
        return head + plugin_spans

    def trace(self, *, unfinished: bool = True) -> Trace:
        """:meth:`spans` with the trace id and resource they belong to."""
        return Trace(self._trace_id, self._resource, self.spans(unfinished=unfinished))

    # -- span construction ---------------------------------------------------------

    def _plugin_done(self, pid: str) -> list[TraceSpan]:
        spans = self._build_plugin(pid)
        self._done[pid] = spans
        return spans

    def _bounds(self, record: _Plugin) -> tuple[float, float]:
        start = record.first_wall if record.first_wall is not None else self._last_wall
        if record.terminal is not None:
            return start, record.terminal.wall
        return start, self._last_wall

    def _build_plugin(self, pid: str) -> list[TraceSpan]:
        record = self._plugins[pid]
        step = record.step
        run_id = self.run_id
        own = span_id_of(run_id, step.lane, pid)
        start, end = self._bounds(record)
        marks = list(record.marks)
        terminal = record.terminal
        code, message = UNSET, ""
        if terminal is not None:
            result = terminal.result
            if isinstance(result, Failed):
                code, message = ERROR, f"{result.reason_code}: {result.message}"
                marks.append(
                    (
                        "exception",
                        terminal.wall,
                        {
                            "exception.type": result.error_type or result.reason_code,
                            "exception.message": result.message,
                            "exception.stacktrace": result.traceback,
                        },
                    )
                )
            else:
                code = OK
        spans = [
            _span(
                pid,
                own,
                self._lane_id(step.lane),
                start,
                end,
                _plugin_attrs(record),
                marks,
                code,
                message,
            )
        ]
        if not record.children:
            return spans
        known = {c.index for c in record.children}
        for child in sorted(record.children, key=lambda c: c.index):
            parent = (
                span_id_of(run_id, step.lane, pid, child.parent)
                if child.parent >= 0 and child.parent in known
                else own
            )
            child_attrs: Attrs = {"plugin.id": pid, "span.index": child.index}
            child_attrs.update(child.attributes)
            spans.append(
                _span(
                    child.name,
                    span_id_of(run_id, step.lane, pid, child.index),
                    parent,
                    child.start_wall,
                    child.end_wall,
                    child_attrs,
                )
            )
        return spans

    def _lane_id(self, lane: str) -> int:
        span_id = self._lane_ids.get(lane)
        if span_id is None:
            span_id = self._lane_ids[lane] = span_id_of(self.run_id, lane)
        return span_id

    def _lane_spans(self) -> list[TraceSpan]:
        lanes: dict[str, list[_Plugin]] = {}
        for pid in self._order:
            record = self._plugins[pid]
            lanes.setdefault(record.step.lane, []).append(record)
        out = []
        run_id = self.run_id
        for lane in sorted(lanes):
            members = lanes[lane]
            bounds = [self._bounds(r) for r in members]
            start = min(b[0] for b in bounds)
            end = max(b[1] for b in bounds)
            counts = _status_counts(members)
            attrs: Attrs = {
                "lane": lane,
                "lane.plugins": len(members),
                "lane.ok": counts["ok"],
                "lane.failed": counts["failed"],
                "lane.na": counts["na"],
                "lane.unfinished": counts["unfinished"],
            }
            if counts["failed"]:
                code, message = ERROR, f"{counts['failed']} plugin(s) failed"
            else:
                code, message = (UNSET if counts["unfinished"] else OK), ""
            out.append(
                _span(
                    f"lane {lane}",
                    self._lane_id(lane),
                    span_id_of(run_id),
                    start,
                    end,
                    attrs,
                    (),
                    code,
                    message,
                )
            )
        return out

    def _run_span(self) -> TraceSpan:
        started = self._started
        assert started is not None
        finished = self._finished
        counts = _status_counts(self._plugins[p] for p in self._order)
        attrs: Attrs = {
            "run.id": started.run_id,
            "run.mode": started.mode,
            "run.seed": started.seed,
            "run.status": finished.status if finished else "unfinished",
            "run.executor": started.executor,
            "run.workers": started.workers,
            "dataset.source": started.dataset.source,
            "dataset.fingerprint": started.dataset.fingerprint,
            "dataset.rows": started.dataset.rows,
            "run.plugins": len(self._order),
            "run.ok": counts["ok"],
            "run.failed": counts["failed"],
            "run.na": counts["na"],
        }
        if self._gates is not None:
            attrs["run.gates_passed"] = self._gates.passed
        code, message = UNSET, ""
        if finished is not None:
            code, message = (OK, "") if finished.status == "ok" else (ERROR, "run failed")
        end = finished.wall if finished else self._last_wall
        return _span(
            RUN_SPAN,
            span_id_of(started.run_id),
            0,
            started.wall,
            end,
            attrs,
            self._run_marks,
            code,
            message,
        )


def _span(
    name: str,
    span_id: int,
    parent: int,
    start: float,
    end: float,
    attributes: Attrs,
    marks: Iterable[tuple[str, float, Attrs]] = (),
    code: int = UNSET,
    message: str = "",
) -> TraceSpan:
    return TraceSpan(
        name,
        span_id,
        parent,
        nanos(start),
        nanos(max(end, start)),
        attributes,
        tuple([SpanMark(n, nanos(w), a) for n, w, a in marks]),
        code,
        message,
    )


def _result_attrs(event: PluginFinished | PreflightFailed) -> Attrs:
    result = event.result
    attrs: Attrs = {"status": _tag(result)}
    if isinstance(result, Na | Failed):
        attrs["reason_code"] = result.reason_code
    return attrs


_TAGS: dict[type, str] = {kind: str(kind.__struct_config__.tag) for kind in (Ok, Na, Failed)}


def _tag(result: PluginResult) -> str:
    return _TAGS[type(result)]


def _status_of(record: _Plugin) -> str:
    return "unfinished" if record.terminal is None else _tag(record.terminal.result)


def _status_counts(records: Iterable[_Plugin]) -> dict[str, int]:
    counts = {"ok": 0, "failed": 0, "na": 0, "unfinished": 0}
    for record in records:
        counts[_status_of(record)] += 1
    return counts


def _plugin_attrs(record: _Plugin) -> Attrs:
    # Kept to what a trace viewer needs: every key/value costs in each export and in
    # trace.json, written at the end of every run (the log has the rest).
    step = record.step
    terminal = record.terminal
    result = terminal.result if terminal is not None else None
    attrs: Attrs = {
        "plugin.id": step.plugin_id,
        "plugin.version": step.version,
        "plugin.lane": step.lane,
        "plugin.status": _status_of(record),
        "plugin.cache_hit": record.cache == "hit",
        "plugin.cache_reason": record.cache or "not_looked_up",
        "plugin.rows_read": record.rows_read,
        "plugin.findings": len(result.findings) if isinstance(result, Ok) else 0,
    }
    if step.lane != step.manifest_lane:
        attrs["plugin.manifest_lane"] = step.manifest_lane
    if isinstance(result, Na | Failed):
        attrs["plugin.reason_code"] = result.reason_code
    if isinstance(result, Na):
        attrs["plugin.explanation"] = result.explanation
    if isinstance(terminal, PreflightFailed):
        attrs.update({"plugin.preflight": True, "plugin.ran": False, "plugin.cached": False})
    elif isinstance(terminal, PluginFinished):
        attrs.update(
            {
                "plugin.preflight": False,
                "plugin.ran": terminal.ran,
                "plugin.cached": terminal.cached,
                "plugin.duration_s": terminal.duration_s,
            }
        )
    if record.attempts > 1:
        attrs["plugin.attempts"] = record.attempts
    if terminal is not None and terminal.downstream_affected:
        attrs["plugin.downstream_affected"] = list(terminal.downstream_affected)
    if step.depends_on:
        attrs["plugin.depends_on"] = list(step.depends_on)
    if step.downstream:
        attrs["plugin.downstream"] = list(step.downstream)
    if record.worker is not None and record.pid is not None:
        attrs["plugin.worker"] = record.worker
        attrs["plugin.pid"] = record.pid
    return attrs


def trace_from_events(events: Iterable[Event], *, unfinished: bool = True) -> Trace:
    """The trace of the run whose events these are (see :meth:`TraceBuilder.spans`)."""
    builder = TraceBuilder()
    for event in events:
        builder.add(event)
    return builder.trace(unfinished=unfinished)
