"""The pure fold of events into spans: ids, parents, times, attributes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import msgspec
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

import telemetry
from contracts import DataAccess
from contracts.events import DataAccessed, Event, PluginFinished, RunResumed, StallDetected
from engine import fold, read_log
from telemetry.export import trace_dict_reference, trace_json
from telemetry.protobuf import SpanEncoder
from telemetry.records import (
    ERROR,
    OK,
    UNSET,
    SpanMark,
    Trace,
    TraceBuilder,
    TraceSpan,
    nanos,
    span_id_of,
    trace_from_events,
    trace_id_of,
)
from telemetry.spans import span_tree, spans_from_events, trace_spans

from .conftest import RUN_ID, STEPS, T0, synthetic_events

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


def documented_trace_id(run_id: str) -> int:
    """telemetry/spans.py: the first 16 bytes of sha256("trace" \x1f run_id)."""
    return int.from_bytes(hashlib.sha256(f"trace\x1f{run_id}".encode()).digest()[:16], "big")


def documented_span_id(
    run_id: str, lane: str | None = None, plugin: str | None = None, child: int | None = None
) -> int:
    """The first 8 bytes of sha256 over "span", the run id and each tagged part."""
    parts = ["span", run_id]
    for tag, value in (("lane", lane), ("plugin", plugin), ("child", child)):
        if value is not None:
            parts += [tag, str(value)]
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")


def test_ids_follow_their_documented_formulas() -> None:
    assert trace_id_of(RUN_ID) == documented_trace_id(RUN_ID)
    for parts in ((), ("decision",), ("decision", "p"), ("explanation", "p", 0), ("x", "y", 3)):
        assert span_id_of(RUN_ID, *parts) == documented_span_id(RUN_ID, *parts)  # type: ignore[arg-type]


def by_name(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    named = {s.name: s for s in spans}
    assert len(named) == len(spans), "span names are unique in this log"
    return named


def encoded(spans: list[ReadableSpan]) -> dict[int, bytes]:
    """Every span's protobuf bytes, by span id (order-independent comparison)."""
    return {s.context.span_id: _one(s) for s in spans}


def _one(span: ReadableSpan) -> bytes:
    [message] = encode_spans([span]).resource_spans[0].scope_spans[0].spans
    return message.SerializeToString(deterministic=True)


def test_public_names_resolve() -> None:
    assert sorted(telemetry.__all__) == sorted(dir(telemetry))
    import importlib

    from telemetry import _HOME

    for name in telemetry.__all__:
        # Each name is the object of the module the lazy loader says it lives in.
        module = importlib.import_module(f"telemetry.{_HOME[name]}")
        assert getattr(telemetry, name) is getattr(module, name)
    assert sorted(_HOME) == sorted(telemetry.__all__)


def test_every_plugin_has_a_span_under_its_lane_under_the_run() -> None:
    spans = by_name(spans_from_events(synthetic_events()))
    trace = documented_trace_id(RUN_ID)
    assert {s.context.trace_id for s in spans.values()} == {trace}
    run = spans["run"]
    assert run.parent is None
    assert run.context.span_id == documented_span_id(RUN_ID)
    for lane in ("decision", "explanation"):
        span = spans[f"lane {lane}"]
        assert span.context.span_id == documented_span_id(RUN_ID, lane)
        assert span.parent is not None and span.parent.span_id == run.context.span_id
    for step in STEPS:
        span = spans[step.plugin_id]
        assert span.context.span_id == documented_span_id(RUN_ID, step.lane, step.plugin_id)
        assert span.parent is not None and span.parent.span_id == documented_span_id(
            RUN_ID, step.lane
        )
        assert span.attributes is not None
        assert span.attributes["plugin.id"] == step.plugin_id
        assert span.attributes["plugin.lane"] == step.lane
    assert len(spans) == 1 + 2 + len(STEPS) + 2  # run, lanes, plugins, two child spans


def test_child_spans_nest_as_the_plugin_opened_them() -> None:
    spans = by_name(spans_from_events(synthetic_events()))
    outer, inner = spans["outer"], spans["inner"]
    assert outer.parent is not None and inner.parent is not None
    assert outer.parent.span_id == spans["explain"].context.span_id
    assert inner.parent.span_id == outer.context.span_id
    assert inner.context.span_id == documented_span_id(RUN_ID, "explanation", "explain", 1)
    assert inner.attributes is not None and inner.attributes["table"] == "data"
    assert (inner.start_time, inner.end_time) == (nanos(T0 + 5.3), nanos(T0 + 5.4))


def test_times_are_the_events_wall_times() -> None:
    events = synthetic_events()
    spans = by_name(spans_from_events(events))
    run = spans["run"]
    assert (run.start_time, run.end_time) == (nanos(events[0].wall), nanos(events[-1].wall))
    explain = spans["explain"]
    # From the cache lookup (seq 3) to the finish (seq 9).
    assert (explain.start_time, explain.end_time) == (nanos(T0 + 3), nanos(T0 + 9))
    assert [(e.name, e.timestamp) for e in explain.events] == [
        ("cache_miss", nanos(T0 + 3)),
        ("dispatched", nanos(T0 + 4)),
        ("started", nanos(T0 + 5)),
        ("finished", nanos(T0 + 9)),
    ]
    lane = spans["lane explanation"]
    assert (lane.start_time, lane.end_time) == (explain.start_time, explain.end_time)


def test_na_preflight_cached_and_upstream_failed_plugins_are_visible() -> None:
    spans = by_name(spans_from_events(synthetic_events()))
    attrs = {pid: dict(spans[pid].attributes or {}) for pid in (s.plugin_id for s in STEPS)}
    assert attrs["too_small"]["plugin.status"] == "na"
    assert attrs["too_small"]["plugin.preflight"] is True
    assert attrs["too_small"]["plugin.reason_code"] == "INSUFFICIENT_DATA"
    assert [e.name for e in spans["too_small"].events] == ["preflight_failed"]
    assert attrs["remembered"]["plugin.cache_hit"] is True
    assert attrs["remembered"]["plugin.cached"] is True
    assert attrs["remembered"]["plugin.cache_reason"] == "hit"
    assert attrs["broken"]["plugin.cache_hit"] is False
    assert attrs["broken"]["plugin.cache_reason"] == "code_changed"
    assert spans["broken"].status.status_code is StatusCode.ERROR
    assert "exception" in [e.name for e in spans["broken"].events]
    assert attrs["after_broken"]["plugin.reason_code"] == "UPSTREAM_FAILED"
    assert attrs["after_broken"]["plugin.ran"] is False
    assert attrs["explain"]["plugin.rows_read"] == 7
    assert attrs["explain"]["plugin.findings"] == 1
    assert attrs["decide"]["plugin.version"] == "1.0"
    assert spans["run"].status.status_code is StatusCode.ERROR
    assert spans["lane decision"].status.status_code is StatusCode.ERROR
    assert spans["lane explanation"].status.status_code is StatusCode.OK


def test_ids_are_deterministic_and_unique() -> None:
    first = spans_from_events(synthetic_events())
    again = spans_from_events(synthetic_events())
    assert encoded(first) == encoded(again)
    assert len(encoded(first)) == len(first)  # no two spans share an id
    other = spans_from_events(synthetic_events("another-run"))
    assert not {s.context.span_id for s in first} & {s.context.span_id for s in other}
    assert documented_trace_id(RUN_ID) != documented_trace_id("another-run")
    assert documented_span_id(RUN_ID, "decision", "x", 0) != documented_span_id(
        RUN_ID, "decision", "x"
    )


def test_incremental_fold_completes_spans_as_plugins_end() -> None:
    builder = TraceBuilder()
    emitted: list[TraceSpan] = []
    for event in synthetic_events():
        completed = builder.add(event)
        if isinstance(event, PluginFinished) and event.plugin_id == "explain":
            assert [s.name for s in completed] == ["explain", "outer", "inner"]
        emitted += completed
    assert [s.name for s in completed] == ["lane decision", "lane explanation", "run"]
    # What was handed out live is exactly the whole trace.
    assert sorted(emitted, key=lambda s: s.span_id) == sorted(
        builder.spans(), key=lambda s: s.span_id
    )


def test_an_unfinished_log_still_shows_the_whole_plan() -> None:
    events = synthetic_events()[:6]  # explain has started; nothing has finished
    spans = by_name(spans_from_events(events))
    assert {s.plugin_id for s in STEPS} <= set(spans)
    assert spans["run"].attributes is not None
    assert spans["run"].attributes["run.status"] == "unfinished"
    assert spans["explain"].attributes is not None
    assert spans["explain"].attributes["plugin.status"] == "unfinished"
    assert spans["explain"].end_time == nanos(events[-1].wall)
    # Without the unfinished ones: only what has ended (the preflight at seq 2).
    assert [s.name for s in spans_from_events(events, unfinished=False)] == ["too_small"]


def test_a_resumed_plugin_keeps_one_span_with_both_attempts() -> None:
    events = synthetic_events()
    # explain was running, one child span recorded, when the process died (after seq 7).
    before = events[:8]
    resumed = RunResumed(seq=0, prev="", wall=T0 + 100, mono=0.0, pending=("explain",))
    # Then explain runs again (dispatch .. finish, without the lost "outer") and the run ends.
    again = [e for e in events[4:] if e.seq != 7]
    log = [
        msgspec.structs.replace(e, seq=seq, wall=e.wall if seq < 8 else e.wall + 100)
        for seq, e in enumerate([*before, resumed, *again])
    ]
    assert fold(log).finished is not None  # a log the engine's reducer accepts
    spans = spans_from_events(log)
    named = [s.name for s in spans]
    assert named.count("explain") == 1
    explain = next(s for s in spans if s.name == "explain")
    marks = [e.name for e in explain.events]
    assert marks.count("dispatched") == 2 and "interrupted" in marks
    # The lost attempt's child span is dropped; the new one's parent (index 0) never
    # arrived, so it hangs under the plugin's span.
    assert named.count("outer") == 0 and named.count("inner") == 1
    inner = next(s for s in spans if s.name == "inner")
    assert inner.parent is not None and inner.parent.span_id == explain.context.span_id


def renumbered(events: list[Event]) -> list[Event]:
    """The events as one log: seq by position, wall times T0 + seq."""
    return [msgspec.structs.replace(e, seq=seq, wall=T0 + seq) for seq, e in enumerate(events)]


def span_named(trace: Trace, name: str) -> TraceSpan:
    return next(s for s in trace.spans if s.name == name)


def test_a_stall_and_every_read_are_on_the_spans() -> None:
    events = synthetic_events()
    # explain reads twice (7 rows, then 5) and stalls (seq 8) before it finishes.
    again = DataAccessed(
        seq=0, prev="", wall=0.0, mono=0.0, plugin_id="explain", access=DataAccess("sql", rows=5)
    )
    stall = StallDetected(seq=0, prev="", wall=0.0, mono=0.0, plugins=("explain",), idle_s=30.0)
    trace = trace_from_events(renumbered([*events[:7], again, stall, *events[7:]]))
    explain = span_named(trace, "explain")
    assert explain.attributes["plugin.rows_read"] == 12
    assert [m.name for m in explain.marks] == [
        "cache_miss",
        "dispatched",
        "started",
        "stalled",
        "finished",
    ]
    assert explain.marks[3] == SpanMark("stalled", nanos(T0 + 8), {"idle_s": 30.0})
    run = span_named(trace, "run")
    assert [m.name for m in run.marks] == [
        "run_started",
        "plan_built",
        "stall_detected",
        "gate_evaluated",
        "run_finished",
    ]
    assert run.marks[2] == SpanMark("stall_detected", nanos(T0 + 8), {"plugins": ["explain"]})


def test_a_resume_interrupts_what_was_dispatched_or_running() -> None:
    events = synthetic_events()
    resumed = RunResumed(seq=0, prev="", wall=0.0, mono=0.0, pending=("explain",))
    # Dispatched only (seq 4), then the resume (seq 5), and nothing more yet.
    dispatched = span_named(trace_from_events(renumbered([*events[:5], resumed])), "explain")
    assert [m.name for m in dispatched.marks][-2:] == ["dispatched", "interrupted"]
    # Running, 7 rows read and one child span recorded (seq 7), then the resume: the
    # lost attempt's worker, reads and child span are gone from the unfinished span.
    trace = trace_from_events(renumbered([*events[:8], resumed]))
    running = span_named(trace, "explain")
    assert [m.name for m in running.marks][-2:] == ["started", "interrupted"]
    assert running.marks[-1].time == nanos(T0 + 8)
    assert running.attributes["plugin.status"] == "unfinished"
    assert running.attributes["plugin.rows_read"] == 0
    assert "plugin.worker" not in running.attributes
    assert "plugin.pid" not in running.attributes
    assert "outer" not in [s.name for s in trace.spans]


def test_the_whole_trace_includes_the_unfinished_spans_by_default() -> None:
    events = synthetic_events()[:6]
    builder = TraceBuilder()
    for event in events:
        builder.add(event)
    whole = trace_from_events(events, unfinished=True)
    assert len(whole.spans) == 3 + len(STEPS)  # run, two lanes, every plugin
    assert trace_from_events(events) == whole
    assert builder.trace() == whole
    assert builder.spans() == whole.spans


def test_status_codes_of_an_ok_run_and_of_unfinished_lanes() -> None:
    events = synthetic_events()
    ok_run = [*events[:-1], msgspec.structs.replace(events[-1], status="ok")]
    run = span_named(trace_from_events(ok_run), "run")
    assert (run.code, run.message) == (OK, "")
    failed = span_named(trace_from_events(events), "run")
    assert (failed.code, failed.message) == (ERROR, "run failed")
    # explain has started, too_small ended na: neither lane has failed or finished.
    unfinished = trace_from_events(events[:6])
    for name in ("run", "lane decision", "lane explanation"):
        span = span_named(unfinished, name)
        assert (span.code, span.message) == (UNSET, ""), name


def test_a_step_off_its_manifest_lane_says_which_lane_it_declared() -> None:
    events = synthetic_events()
    plan = events[1].plan  # type: ignore[attr-defined]
    steps = tuple(
        msgspec.structs.replace(s, manifest_lane="decision") if s.plugin_id == "explain" else s
        for s in plan.steps
    )
    built = msgspec.structs.replace(events[1], plan=msgspec.structs.replace(plan, steps=steps))
    trace = trace_from_events([events[0], built, *events[2:]])
    assert span_named(trace, "explain").attributes["plugin.manifest_lane"] == "decision"
    assert [s.name for s in trace.spans if "plugin.manifest_lane" in s.attributes] == ["explain"]


def reference_protobuf(trace: Trace) -> bytes:
    """The request as the exporter's own encoder serializes it."""
    return encode_spans(trace_spans(trace)).SerializeToString()


def protobuf(trace: Trace) -> bytes:
    return SpanEncoder(trace.trace_id, trace.resource).request(trace.spans)


def reference_json(trace: Trace) -> bytes:
    """trace.json as the exporter's protobuf encoder and the protobuf JSON mapping make it."""
    data = trace_dict_reference(trace_spans(trace))
    return msgspec.json.format(msgspec.json.encode(data), indent=2) + b"\n"


def test_trace_json_is_otlp_json_with_hex_ids() -> None:
    trace = trace_from_events(synthetic_events())
    data = json.loads(trace_json(trace))
    assert trace_json(trace) == reference_json(trace)
    resource = data["resourceSpans"][0]
    assert {"key": "service.name", "value": {"stringValue": "two-lane-engine"}} in resource[
        "resource"
    ]["attributes"]
    listed = resource["scopeSpans"][0]["spans"]
    assert len(listed) == len(trace.spans)
    assert {s["traceId"] for s in listed} == {f"{documented_trace_id(RUN_ID):032x}"}
    ids = {s["name"]: s for s in listed}
    assert (
        ids["explain"]["spanId"] == f"{documented_span_id(RUN_ID, 'explanation', 'explain'):016x}"
    )
    assert ids["explain"]["parentSpanId"] == f"{documented_span_id(RUN_ID, 'explanation'):016x}"
    assert ids["explain"]["kind"] == 1  # SPAN_KIND_INTERNAL, as an integer (OTLP JSON)
    assert trace_json(trace) == trace_json(trace_from_events(synthetic_events()))


def test_encoders_map_every_value_as_the_sdk_encoder_does() -> None:
    trace = trace_from_events(synthetic_events())
    odd = TraceSpan(
        name="odd \u2603",
        span_id=7,
        parent=trace.spans[0].span_id,
        start=1,
        end=2,
        attributes={
            "nan": float("nan"),
            "inf": float("inf"),
            "ninf": float("-inf"),
            "one": 1.0,
            "neg": -(2**40),
            "empty": "",
            "no": False,
            "none": [],
            "list": ["a", "b"],
            "zero": -0.0,
            "flag": 1,
        },
        marks=(SpanMark("bare", 5, {}),),
        code=ERROR,
        message="why",
    )
    # The same keys with values equal to the odd span's, of other types or signs.
    bare = TraceSpan(
        name="bare", span_id=8, parent=0, start=3, end=3, attributes={"zero": 0.0, "flag": True}
    )
    for spans in (trace.spans, [*trace.spans, odd], [odd, bare], []):
        case = Trace(trace.trace_id, trace.resource, spans)
        assert trace_json(case) == reference_json(case)
        assert protobuf(case) == reference_protobuf(case)


LOGS: list[tuple[str, list[Event]]] = [
    ("synthetic", synthetic_events()),
    *((p.parent.name, read_log(p)) for p in sorted(FIXTURES.glob("*/events.jsonl"))),
]


@pytest.mark.parametrize(("name", "events"), LOGS, ids=[name for name, _ in LOGS])
def test_encodings_of_every_prefix_of_real_logs_are_the_reference(
    name: str, events: list[Event]
) -> None:
    # Recorded runs (failed, na, cached, preflight-failed and upstream-failed plugins,
    # child spans, a resume after an interruption), whole and cut after every event
    # (unfinished runs, as a crash leaves them).
    for end in range(len(events) + 1):
        trace = trace_from_events(events[:end])
        assert trace_json(trace) == reference_json(trace), f"{name} cut at {end}"
        assert protobuf(trace) == reference_protobuf(trace), f"{name} cut at {end}"


def test_span_tree_groups_spans_by_parent() -> None:
    spans = spans_from_events(synthetic_events())
    tree = span_tree(spans)
    named = {parent: [s.name for s in children] for parent, children in tree.items()}
    assert named == {
        None: ["run"],
        span_id_of(RUN_ID): ["lane decision", "lane explanation"],
        span_id_of(RUN_ID, "explanation"): ["explain"],
        span_id_of(RUN_ID, "decision"): [s.plugin_id for s in STEPS if s.lane == "decision"],
        span_id_of(RUN_ID, "explanation", "explain"): ["outer"],
        span_id_of(RUN_ID, "explanation", "explain", 0): ["inner"],
    }
    assert sum(len(children) for children in tree.values()) == len(spans)
