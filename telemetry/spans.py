"""A run's trace as OpenTelemetry SDK spans, for the SDK's exporters.

The fold itself is :mod:`telemetry.records` (compact records, no SDK objects);
:func:`readable_spans` turns its records into the SDK's ``ReadableSpan`` objects,
which the OTLP/HTTP exporter (and its protobuf encoder, the reference encoding of
``trace.json``) take.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event as SpanEvent
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from contracts.events import Event

from .records import SCOPE_NAME, Trace, TraceSpan, trace_from_events

SCOPE = InstrumentationScope(SCOPE_NAME)
_CODES = {code.value: code for code in StatusCode}


def _context(trace_id: int, span_id: int) -> SpanContext:
    return SpanContext(
        trace_id=trace_id,
        span_id=span_id,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


def readable_spans(
    trace_id: int, resource: Resource, spans: Sequence[TraceSpan]
) -> list[ReadableSpan]:
    """The SDK's spans of ``spans`` (records of the trace ``trace_id``)."""
    return [
        ReadableSpan(
            name=span.name,
            context=_context(trace_id, span.span_id),
            parent=_context(trace_id, span.parent) if span.parent else None,
            resource=resource,
            attributes=span.attributes,
            events=[SpanEvent(m.name, m.attributes, timestamp=m.time) for m in span.marks],
            kind=SpanKind.INTERNAL,
            status=Status(_CODES[span.code], span.message or None),
            start_time=span.start,
            end_time=span.end,
            instrumentation_scope=SCOPE,
        )
        for span in spans
    ]


def trace_spans(trace: Trace) -> list[ReadableSpan]:
    """Every span of ``trace`` as the SDK's spans."""
    return readable_spans(trace.trace_id, Resource(trace.resource), trace.spans)


def spans_from_events(events: Iterable[Event], *, unfinished: bool = True) -> list[ReadableSpan]:
    """Every span of the run whose events these are, as the SDK's spans (see
    :meth:`telemetry.records.TraceBuilder.spans`)."""
    return trace_spans(trace_from_events(events, unfinished=unfinished))


def span_tree(spans: Iterable[ReadableSpan]) -> Mapping[int | None, list[ReadableSpan]]:
    """Spans grouped by parent span id (``None`` for the root), for inspection."""
    tree: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        tree.setdefault(parent, []).append(span)
    return tree
