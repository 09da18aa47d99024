"""OTLP export: live from a real run (process pool) to an in-process receiver,
re-export from the event log with the same ids, the live exporter's threading."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from contracts.events import PreflightFailed
from engine import ConfigError, Engine, read_log
from engine._core.api import RunResult
from telemetry.export import (
    LiveTraceExporter,
    export_spans,
    signal_endpoint,
    trace_dict_reference,
    trace_json,
)
from telemetry.records import span_id_of, trace_from_events, trace_id_of
from telemetry.spans import spans_from_events
from tests.engine.conftest import write_plugin

from .conftest import Receiver, synthetic_events

pytestmark = pytest.mark.anyio

WITH_CHILD_SPANS = """
from contracts import Finding, ok

def run(ctx):
    with ctx.span("prepare", stage=1):
        with ctx.span("query"):
            table = ctx.data.sql(
                "SELECT process, count(*) AS n FROM data GROUP BY process ORDER BY process"
            )
    return ok(findings=[Finding(kind="explain_kind", title="profile", target="all",
                                what=f"{table.num_rows} groups")])
"""

NOTHING_FOUND = """
from contracts import na

def run(ctx):
    return na("NO_SIGNIFICANT_EFFECT", "checked the mean of every group; nothing stands out")
"""


def write_fleet(root: Path) -> None:
    write_plugin(root, "explain", lane="explanation", code=WITH_CHILD_SPANS, downstream=["decide"])
    write_plugin(root, "decide", depends_on=["explain"])
    write_plugin(root, "quiet", code=NOTHING_FOUND)
    write_plugin(root, "too_small", applies_when={"min_rows": 1000})


def value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def attrs(span: Span) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in span.attributes}


def run_tree(spans: Sequence[Span], result: RunResult) -> dict[str, Span]:
    """Check run -> lanes -> every plugin of the plan; return the run's spans by name."""
    trace = trace_id_of(result.run_id).to_bytes(16, "big")
    mine = [s for s in spans if s.trace_id == trace]
    assert len({s.span_id for s in mine}) == len(mine), "a span was exported twice"
    roots = [s for s in mine if not s.parent_span_id]
    assert [r.name for r in roots] == ["run"]
    run = roots[0]
    assert run.span_id == span_id_of(result.run_id).to_bytes(8, "big")
    lanes = {s.span_id: s for s in mine if s.parent_span_id == run.span_id}
    assert sorted(s.name for s in lanes.values()) == ["lane decision", "lane explanation"]
    plugins = {s.name: s for s in mine if s.parent_span_id in lanes}
    assert set(plugins) == set(result.state.plugins)
    for pid, span in plugins.items():
        lane = result.state.plugins[pid].step.lane
        assert lanes[span.parent_span_id].name == f"lane {lane}"
        assert attrs(span)["plugin.id"] == pid
        assert attrs(span)["plugin.lane"] == lane
    named = {s.name: s for s in mine}
    assert len(named) == len(mine)
    return named


async def test_live_export_of_real_runs(
    tmp_path: Path, receiver: Receiver, dataset_csv: Path
) -> None:
    plugins = tmp_path / "plugins"
    write_fleet(plugins)
    async with Engine(
        plugins_dir=plugins, runs_dir=tmp_path / "runs", workers=2, otlp_endpoint=receiver.url
    ) as engine:
        first = await engine.run(dataset_csv)
        second = await engine.run(dataset_csv)
    assert first.ok and second.ok
    assert first.telemetry is not None and first.telemetry.ok, first.telemetry
    spans = receiver.spans()

    one = run_tree(spans, first)
    assert attrs(one["run"])["run.status"] == "ok"
    assert attrs(one["quiet"])["plugin.status"] == "na"
    assert attrs(one["quiet"])["plugin.reason_code"] == "NO_SIGNIFICANT_EFFECT"
    assert attrs(one["too_small"])["plugin.preflight"] is True
    assert attrs(one["too_small"])["plugin.reason_code"] == "INSUFFICIENT_DATA"
    assert attrs(one["explain"])["plugin.rows_read"] == 4
    assert attrs(one["explain"])["plugin.cache_hit"] is False
    assert attrs(one["explain"])["plugin.cache_reason"] == "absent"
    assert attrs(one["decide"])["plugin.findings"] == 1
    # ctx.span in the worker process: nested under the plugin's span, as opened.
    prepare, query = one["prepare"], one["query"]
    assert prepare.parent_span_id == one["explain"].span_id
    assert query.parent_span_id == prepare.span_id
    assert attrs(prepare)["stage"] == 1
    assert one["explain"].start_time_unix_nano <= prepare.start_time_unix_nano
    assert prepare.end_time_unix_nano <= one["explain"].end_time_unix_nano
    events = [e.name for e in one["explain"].events]
    assert events == ["cache_miss", "dispatched", "started", "finished"]

    two = run_tree(spans, second)
    for pid in ("explain", "decide", "quiet"):
        assert attrs(two[pid])["plugin.cache_hit"] is True
        assert attrs(two[pid])["plugin.cached"] is True
    assert attrs(two["too_small"])["plugin.preflight"] is True

    # Lane metrics went out as OTLP metrics too.
    names = {
        metric.name
        for request in receiver.metric_requests()
        for resource in request.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert {"engine.lane.actionable_yield", "engine.lane.cache_hit_rate"} <= names

    # Re-export from the log (the `engine trace` path): the same trace, span for span.
    receiver.clear()
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "engine", "trace", str(first.run_dir)),
            *("--otlp-endpoint", receiver.url, "--out", str(tmp_path / "again.json")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{trace_id_of(first.run_id):032x}" in proc.stdout
    live = {s.span_id: s for s in spans if s.trace_id == one["run"].trace_id}
    again = {s.span_id: s for s in receiver.spans()}
    assert again.keys() == live.keys()
    for span_id, span in live.items():
        assert again[span_id].SerializeToString(deterministic=True) == span.SerializeToString(
            deterministic=True
        )
    # And the file written at the end of the run is byte-identical to the re-export's.
    assert (first.run_dir / "trace.json").read_bytes() == (tmp_path / "again.json").read_bytes()
    listed = json.loads((first.run_dir / "trace.json").read_text())
    hex_ids = {s["spanId"] for s in listed["resourceSpans"][0]["scopeSpans"][0]["spans"]}
    assert hex_ids == {span_id.hex() for span_id in live}


BROKEN = """
def run(ctx):
    raise RuntimeError("broken on purpose")
"""


async def test_every_run_writes_trace_json(tmp_path: Path, dataset_csv: Path) -> None:
    plugins = tmp_path / "plugins"
    write_fleet(plugins)
    write_plugin(plugins, "broken", lane="explanation", code=BROKEN, downstream=["after_broken"])
    write_plugin(plugins, "after_broken", depends_on=["broken"])
    async with Engine(plugins_dir=plugins, runs_dir=tmp_path / "runs", workers=2) as engine:
        first = await engine.run(dataset_csv)
        second = await engine.run(dataset_csv)  # served from the cache
    for result in (first, second):
        assert result.telemetry is None
        written = (result.run_dir / "trace.json").read_bytes()
        data = json.loads(written)
        spans = data["resourceSpans"][0]["scopeSpans"][0]["spans"]
        assert {s["traceId"] for s in spans} == {f"{trace_id_of(result.run_id):032x}"}
        assert {s["name"] for s in spans} >= {"run", "explain", "broken", "too_small"}
        # The exporter's own protobuf encoding, through the protobuf JSON mapping, is
        # the same, byte for byte.
        reference = trace_dict_reference(
            spans_from_events(read_log(result.run_dir / "events.jsonl"))
        )
        assert written == msgspec.json.format(msgspec.json.encode(reference), indent=2) + b"\n"
    named = {s.name for s in spans_from_events(read_log(first.run_dir / "events.jsonl"))}
    assert {"prepare", "query"} <= named  # the child spans (a cached run has none)
    statuses = {p.id: (p.status, p.reason_code) for p in first.report.plugins}
    assert statuses["broken"][0] == "failed"
    assert statuses["after_broken"] == ("na", "UPSTREAM_FAILED")
    assert second.state.plugins["quiet"].cached


def test_the_otlp_exporter_is_handed_requests_encoded_from_the_records(
    receiver: Receiver,
) -> None:
    # The live export's fast path: the exporter's own client posts what
    # telemetry.protobuf encoded (another SDK version without it would get SDK spans).
    from telemetry.export import _posting, span_exporter

    exporter = span_exporter(receiver.url)
    try:
        assert _posting(exporter) is not None
    finally:
        exporter.shutdown()
    assert _posting(GatedExporter()) is None
    live = LiveTraceExporter(receiver.url)
    for event in synthetic_events():
        live.on_event(event)
    stats = live.close()
    assert stats.ok and stats.exported == len(spans_from_events(synthetic_events()))
    # What arrived, decoded with the official definitions, is what the SDK's own
    # encoder makes of the same spans.
    [expected] = encode_spans(spans_from_events(synthetic_events())).resource_spans
    received = receiver.spans()
    assert len(received) == len(expected.scope_spans[0].spans)
    assert sorted(s.SerializeToString() for s in received) == sorted(
        s.SerializeToString() for s in expected.scope_spans[0].spans
    )


def test_a_bad_endpoint_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="otlp_endpoint"):
        Engine(runs_dir=tmp_path, otlp_endpoint="localhost:4318")


@pytest.mark.parametrize(
    ("url", "signal", "expected"),
    [
        ("http://localhost:4318", "traces", "http://localhost:4318/v1/traces"),
        ("http://localhost:4318/", "metrics", "http://localhost:4318/v1/metrics"),
        ("http://h:4318/v1/traces", "traces", "http://h:4318/v1/traces"),
        ("http://h:4318/v1/traces", "metrics", "http://h:4318/v1/metrics"),
        ("https://h/otlp", "traces", "https://h/otlp/v1/traces"),
    ],
)
def test_signal_endpoint(url: str, signal: str, expected: str) -> None:
    assert signal_endpoint(url, signal) == expected


class GatedExporter(SpanExporter):
    """Blocks every export until released: shows who waits on the network."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.batches: list[list[str]] = []
        self.shut = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(30)
        self.batches.append([s.name for s in spans])
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.shut = True


def test_live_exporter_never_blocks_the_caller() -> None:
    exporter = GatedExporter()
    live = LiveTraceExporter(exporter=exporter)
    events = synthetic_events()
    for event in events:
        live.on_event(event)  # would hang here if the export ran in this thread
    assert exporter.batches == []
    exporter.release.set()
    stats = live.close()
    assert stats.ok and exporter.shut
    exported = [name for batch in exporter.batches for name in batch]
    assert sorted(exported) == sorted(s.name for s in spans_from_events(events))
    assert stats.exported == len(exported)


def test_export_to_nowhere_is_reported_not_raised(tmp_path: Path) -> None:
    import socket

    spans = spans_from_events(synthetic_events())
    # A port held by a socket that never listens: every connection is refused, and
    # no other process can take the port while the test runs.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        stats = export_spans(spans, f"http://127.0.0.1:{port}", timeout_s=0.5)
    assert not stats.ok and stats.failed == len(spans) and stats.exported == 0


def test_cli_run_exports_live_and_trace_refuses_a_broken_log(
    tmp_path: Path, receiver: Receiver, dataset_csv: Path
) -> None:
    plugins = tmp_path / "plugins"
    write_fleet(plugins)
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "engine", "run", str(dataset_csv), "--plugins", str(plugins)),
            *("--run-dir", str(tmp_path / "runs"), "--workers", "1"),
            *("--otlp-endpoint", f"{receiver.url}/v1/traces"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "trace.json" in proc.stdout
    run_dir = Path(proc.stdout.splitlines()[0].split(": ", 1)[1])
    names = {s.name for s in receiver.spans()}
    assert {"run", "lane decision", "explain", "prepare", "query", "too_small"} <= names

    log = run_dir / "events.jsonl"
    lines = log.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b'"seq":3', b'"seq":33')
    log.write_bytes(b"\n".join(lines))
    broken = subprocess.run(
        [sys.executable, "-m", "engine", "trace", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert broken.returncode == 2 and "events.jsonl" in broken.stderr


async def test_resuming_a_finished_run_rewrites_the_same_trace(
    tmp_path: Path, dataset_csv: Path
) -> None:
    plugins = tmp_path / "plugins"
    write_fleet(plugins)
    async with Engine(
        plugins_dir=plugins, runs_dir=tmp_path / "runs", executor="inline", cache=False
    ) as engine:
        result = await engine.run(dataset_csv)
        written = (result.run_dir / "trace.json").read_bytes()
        (result.run_dir / "trace.json").unlink()
        # Nothing is left to run: the trace comes from the events of the first process.
        await engine.resume(result.run_dir)
    assert (result.run_dir / "trace.json").read_bytes() == written
    assert written == trace_json(trace_from_events(read_log(result.run_dir / "events.jsonl")))


class DownExporter(SpanExporter):
    """A collector that is down: every export fails (after the exporter's retries).
    The first export waits for ``release`` so that more batches queue up behind it."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        self.entered.set()
        self.release.wait(30)
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass


def test_a_dead_collector_costs_one_timeout_not_one_per_batch() -> None:
    exporter = DownExporter()
    live = LiveTraceExporter(exporter=exporter, linger_s=0.0)
    events = synthetic_events()
    first_end = next(i for i, e in enumerate(events) if isinstance(e, PreflightFailed))
    for event in events[: first_end + 1]:
        live.on_event(event)
    assert exporter.entered.wait(30)  # the first batch is being sent ...
    for event in events[first_end + 1 :]:
        live.on_event(event)  # ... while the others queue behind it
    exporter.release.set()
    stats = live.close()
    assert exporter.calls == 1
    assert stats.exported == 0 and stats.failed == len(spans_from_events(events))
    assert not stats.ok and "not sent" in stats.errors[0]


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_the_recorded_fixtures_trace_json_byte_for_byte(version: str) -> None:
    """Each recorded log's ``trace.json`` was written once, by the fold that built
    OpenTelemetry SDK spans before the compact records replaced it, and committed:
    the records and their encoder must give those bytes (ids, names, times in
    nanoseconds, marks and their attributes, parents, statuses). A deliberate change
    of the trace's format rewrites them with ``python -m engine trace
    tests/fixtures/logs/<version>`` (the log itself is never re-recorded)."""
    folder = FIXTURES / version
    built = trace_json(trace_from_events(read_log(folder / "events.jsonl")))
    assert built == (folder / "trace.json").read_bytes()


def test_varints_are_the_protobuf_librarys_at_every_length_edge() -> None:
    from google.protobuf.internal.encoder import _VarintBytes

    from telemetry.protobuf import _varint

    for value in (0, 1, 127, 128, 129, 16_383, 16_384, 2**21 - 1, 2**21, 2**63 - 1, 2**64 - 1):
        assert _varint(value) == _VarintBytes(value), value
