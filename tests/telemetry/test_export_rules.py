"""The export's own rules, without a run: batches and their counts, which exporter
and endpoint are used, the live exporter without a thread, a broken fold, a close
that times out, and the OTLP JSON reference's id mapping."""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from telemetry.export import (
    MAX_BATCH,
    ExportStats,
    LiveTraceExporter,
    _hex_ids,
    _posting,
    _send,
    export_run,
    export_spans,
    signal_endpoint,
    span_exporter,
)
from telemetry.records import trace_from_events
from telemetry.spans import spans_from_events

from .conftest import Receiver, synthetic_events


class Keeping(SpanExporter):
    """Keeps every span it is given; counts its shutdowns."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []
        self.shutdowns = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += spans
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.shutdowns += 1


def test_batches_are_counted_sent_failed_or_raised() -> None:
    spans = list(range(2 * MAX_BATCH + 3))
    answers: list[bool | Exception] = [True, False, ValueError("boom")]
    chunks: list[list[int]] = []

    def export(chunk: Sequence[int]) -> bool:
        chunks.append(list(chunk))
        answer = answers[len(chunks) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    stats = ExportStats()
    _send(spans, export, stats)
    assert [len(chunk) for chunk in chunks] == [MAX_BATCH, MAX_BATCH, 3]
    assert [span for chunk in chunks for span in chunk] == spans
    assert (stats.requests, stats.exported, stats.failed) == (3, MAX_BATCH, MAX_BATCH + 3)
    assert stats.errors == ["ValueError: boom"]
    assert not stats.ok
    _send(spans[:1], lambda chunk: True, stats)  # counts add up over calls
    assert (stats.requests, stats.exported, stats.failed) == (4, MAX_BATCH + 1, MAX_BATCH + 3)


def test_export_spans_uses_the_exporter_given_and_leaves_it_open() -> None:
    spans = spans_from_events(synthetic_events())
    with pytest.raises(ValueError, match=r"^export_spans needs an endpoint or an exporter$"):
        export_spans(spans)
    kept = Keeping()
    stats = export_spans(spans, exporter=kept)
    assert stats == ExportStats(endpoint="", exported=len(spans), requests=1)
    assert [s.name for s in kept.spans] == [s.name for s in spans]
    assert kept.shutdowns == 0  # not its own: not shut down
    # With an endpoint too, the exporter given is used; the endpoint is reported.
    stats = export_spans(spans, "http://h:1", exporter=kept)
    assert stats.endpoint == "http://h:1/v1/traces" and stats.exported == len(spans)
    assert len(kept.spans) == 2 * len(spans)


def test_export_run_sends_the_spans_of_the_events(receiver: Receiver) -> None:
    events = synthetic_events()
    stats = export_run(events, receiver.url)
    expected = spans_from_events(events)
    assert stats.ok and stats.exported == len(expected) and stats.requests == 1
    assert stats.endpoint == f"{receiver.url}/v1/traces"
    assert sorted(s.name for s in receiver.spans()) == sorted(s.name for s in expected)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h:4318", "http://h:4318/v1/traces"),  # the default signal
        ("http://h/collectorX/", "http://h/collectorX/v1/traces"),
        ("http://h/base/v1/metrics", "http://h/base/v1/traces"),
    ],
)
def test_signal_endpoint_keeps_the_base_path(url: str, expected: str) -> None:
    assert signal_endpoint(url) == expected


@pytest.mark.parametrize("url", ["ftp://h:4318", "http:///v1/traces", "h:4318"])
def test_signal_endpoint_refuses_what_is_no_http_url_with_a_host(url: str) -> None:
    message = f"OTLP endpoint {url!r}: expected http(s)://host:port[/path]"
    with pytest.raises(ValueError) as raised:
        signal_endpoint(url)
    assert str(raised.value) == message


def test_an_otlp_exporter_without_its_client_gets_sdk_spans() -> None:
    for client in (None, object()):  # no client, or a client that cannot export
        exporter = span_exporter("http://h:1")
        real = exporter._client
        try:
            if client is None:
                del exporter._client
            else:
                exporter._client = client
            assert _posting(exporter) is None
        finally:
            exporter._client = real
            exporter.shutdown()


def test_without_an_exporter_the_caller_folds_and_close_does_nothing() -> None:
    events = synthetic_events()
    live = LiveTraceExporter()
    assert not live.exporting and live.stats.endpoint == ""
    live.prime(events[:5])  # a resumed run's earlier part
    for event in events[5:]:
        live.on_event(event)
    assert live.trace() == trace_from_events(events)
    assert live.close() == ExportStats()


def test_an_exporter_given_with_an_endpoint_is_the_one_used() -> None:
    kept = Keeping()
    before = set(threading.enumerate())
    live = LiveTraceExporter("http://h:1", exporter=kept, linger_s=0.0)
    [thread] = set(threading.enumerate()) - before
    assert thread.daemon  # never holds the interpreter's exit
    assert live.stats.endpoint == "http://h:1/v1/traces"
    events = synthetic_events()
    for event in events:
        live.on_event(event)
    stats = live.close()
    assert stats.ok and stats.exported == len(spans_from_events(events))
    assert sorted(s.name for s in kept.spans) == sorted(s.name for s in spans_from_events(events))
    # Any other exporter is given SDK spans with the run's resource.
    assert {dict(s.resource.attributes)["service.name"] for s in kept.spans} == {"two-lane-engine"}
    assert live.close() is stats and kept.shutdowns == 1  # closed once
    live.on_event(events[0])  # after close: dropped, not queued
    assert kept.shutdowns == 1


def test_a_broken_fold_stops_the_fold_and_says_where(caplog: pytest.LogCaptureFixture) -> None:
    events = synthetic_events()
    live = LiveTraceExporter()
    calls = []

    def add(event: object) -> list[object]:
        calls.append(event)
        raise RuntimeError("bad")

    live.builder.add = add  # type: ignore[method-assign, assignment]
    with caplog.at_level(logging.WARNING, logger="telemetry.export"):
        for event in events[3:6]:
            live.on_event(event)
    assert calls == [events[3]]  # stopped at the first error
    error = f"span fold stopped at event {events[3].seq}: RuntimeError('bad')"
    assert live.stats.errors == [error]
    assert [r.getMessage() for r in caplog.records] == [f"telemetry: {error}"]


class Stuck(SpanExporter):
    """An export that hangs until the exporter is shut down."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.released.wait(30)
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.released.set()


def test_a_close_that_times_out_says_so_and_shuts_the_exporter_down() -> None:
    stuck = Stuck()
    live = LiveTraceExporter(exporter=stuck, linger_s=0.0)
    for event in synthetic_events():
        live.on_event(event)
    assert stuck.entered.wait(30)
    stats = live.close(timeout_s=0.01)
    assert stats.errors[0] == "export did not finish within 0.01s"
    assert stuck.released.is_set()


def test_a_failed_batch_gives_up_with_these_words() -> None:
    stuck = Stuck()
    stuck.released.set()  # every export fails at once
    live = LiveTraceExporter(exporter=stuck, linger_s=0.0)
    for event in synthetic_events():
        live.on_event(event)
    stats = live.close()
    assert stats.errors == ["an export failed; the run's remaining spans were not sent"]


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def test_the_reference_turns_span_and_link_ids_to_hex() -> None:
    trace, span, parent = "0a" * 16, "0b" * 8, "0c" * 8
    data = {
        "resourceSpans": [
            {},  # no scopes
            {
                "scopeSpans": [
                    {},  # no spans
                    {
                        "spans": [
                            {"traceId": _b64(trace), "spanId": _b64(span), "name": "root"},
                            {
                                "parentSpanId": _b64(parent),
                                "links": [
                                    {"traceId": _b64(trace), "spanId": _b64(span)},
                                    {"spanId": _b64(parent)},
                                ],
                            },
                        ]
                    },
                ]
            },
        ]
    }
    _hex_ids(data)
    assert data["resourceSpans"][1]["scopeSpans"][1]["spans"] == [
        {"traceId": trace, "spanId": span, "name": "root"},
        {
            "parentSpanId": parent,
            "links": [{"traceId": trace, "spanId": span}, {"spanId": parent}],
        },
    ]
