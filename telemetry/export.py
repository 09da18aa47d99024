"""Exporting a run's spans: OTLP over HTTP, OTLP JSON files, and live during a run.

- :func:`export_spans` sends spans to an OTLP/HTTP endpoint (a collector, Jaeger).
- :func:`trace_json` encodes a run's span records as an OTLP JSON
  ``ExportTraceServiceRequest`` (what the exporter's own protobuf encoder and the
  protobuf JSON mapping give, with the OTLP deviations: hex trace and span ids,
  integer enums): the ``trace.json`` that Jaeger's UI loads from a file.
- :class:`LiveTraceExporter` subscribes to a run's events: the event loop only queues
  each event; a background thread folds them and exports the spans they completed (a
  plugin's span and its children when the plugin ends; the lane and run spans when
  the run ends), so the event loop never waits on the fold or the network.

Live and re-exported spans come from the same fold (:mod:`telemetry.records`), so
their trace and span ids are identical.
"""

from __future__ import annotations

import base64
import collections
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import msgspec
from attrs import define, field
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from contracts.events import Event

if TYPE_CHECKING:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

# The OTLP exporter and the protobuf encoders are imported where they are used: a run
# that writes only trace.json (the default) never needs them, and they cost a
# noticeable part of a cached rerun's start-up.

from .protobuf import SpanEncoder
from .records import SCOPE_NAME, Trace, TraceBuilder, TraceSpan, Value
from .spans import readable_spans, spans_from_events

_logger = logging.getLogger(__name__)
_S = TypeVar("_S")

SIGNAL_PATHS = {"traces": "/v1/traces", "metrics": "/v1/metrics"}
DEFAULT_TIMEOUT_S = 10.0
MAX_BATCH = 512
"""Spans per OTLP request: keeps every request far below collectors' size limits."""
LINGER_S = 0.05
"""How often the live exporter collects the events appended and sends the spans they
completed (one request for all of them)."""


class EventSubscriber(Protocol):
    """What the engine calls with every event it appends (``publish``)."""

    def on_event(self, event: Event) -> None: ...


def signal_endpoint(url: str, signal: str = "traces") -> str:
    """The OTLP/HTTP URL of ``signal`` (``traces`` or ``metrics``) for ``url``.

    A URL whose path ends in ``/v1/traces`` or ``/v1/metrics`` names a signal
    endpoint: the path is switched to ``signal``. Any other URL (``http://host:4318``,
    ``http://host/otlp``) is a base, to which ``/v1/<signal>`` is appended.

    Raises:
        ValueError: ``url`` is not an ``http``/``https`` URL with a host.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"OTLP endpoint {url!r}: expected http(s)://host:port[/path]")
    path = parts.path.rstrip("/")
    for known in SIGNAL_PATHS.values():
        if path.endswith(known):
            path = path.removesuffix(known)
            break
    return urlunsplit((parts.scheme, parts.netloc, path + SIGNAL_PATHS[signal], parts.query, ""))


def span_exporter(endpoint: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> OTLPSpanExporter:
    """An OTLP/HTTP span exporter for ``endpoint`` (a base URL or the traces URL)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=signal_endpoint(endpoint, "traces"), timeout=timeout_s)


@define(kw_only=True)
class ExportStats:
    """What an export achieved. ``failed`` counts spans whose request failed."""

    endpoint: str = ""
    exported: int = 0
    failed: int = 0
    requests: int = 0
    errors: list[str] = field(factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.errors


def _send(spans: Sequence[_S], export: Callable[[Sequence[_S]], bool], stats: ExportStats) -> None:
    """``export`` each batch of ``spans`` (True: sent), counted in ``stats``."""
    for start in range(0, len(spans), MAX_BATCH):
        chunk = spans[start : start + MAX_BATCH]
        stats.requests += 1
        try:
            sent = export(chunk)
        except Exception as exc:  # an exporter must not take the run down
            sent = False
            stats.errors.append(f"{type(exc).__name__}: {exc}")
        if sent:
            stats.exported += len(chunk)
        else:
            stats.failed += len(chunk)


def _exporting(exporter: SpanExporter) -> Callable[[Sequence[ReadableSpan]], bool]:
    return lambda spans: exporter.export(spans) is SpanExportResult.SUCCESS


def _posting(exporter: SpanExporter) -> Callable[[bytes], bool] | None:
    """The OTLP/HTTP exporter's own client, to send requests encoded from the span
    records (:mod:`telemetry.protobuf`) with the exporter's endpoint, headers,
    compression, TLS and retries; ``None`` for any other exporter, or an exporter
    without that client (another SDK version), which is given SDK spans instead."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if type(exporter) is not OTLPSpanExporter:
        return None
    post = getattr(getattr(exporter, "_client", None), "export", None)
    if not callable(post):
        return None
    return lambda data: bool(post(data).success)


def export_spans(
    spans: Sequence[ReadableSpan],
    endpoint: str | None = None,
    *,
    exporter: SpanExporter | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ExportStats:
    """Send ``spans`` to an OTLP/HTTP endpoint now (blocking), in batches.

    Args:
        endpoint: base URL (``http://localhost:4318``) or traces URL.
        exporter: use this exporter instead (it is not shut down).
        timeout_s: per request, retries included.
    """
    if exporter is None and endpoint is None:
        raise ValueError("export_spans needs an endpoint or an exporter")
    own = exporter is None
    chosen = (
        exporter if exporter is not None else span_exporter(endpoint or "", timeout_s=timeout_s)
    )
    stats = ExportStats(endpoint=signal_endpoint(endpoint, "traces") if endpoint else "")
    try:
        _send(spans, _exporting(chosen), stats)
    finally:
        if own:
            chosen.shutdown()
    return stats


def export_run(
    events: Iterable[Event], endpoint: str, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> ExportStats:
    """Re-export a past run from its events, with its original times and ids."""
    return export_spans(spans_from_events(events), endpoint, timeout_s=timeout_s)


# -- OTLP JSON -----------------------------------------------------------------------
#
# The reference encoding is the exporter's own: ``encode_spans`` (the protobuf
# ExportTraceServiceRequest) through the protobuf JSON mapping (``MessageToDict``),
# ids turned to hex as OTLP JSON requires. It costs about 0.1 ms a span in pure
# Python, and every run writes trace.json, so :func:`trace_json` encodes the same
# JSON from the span records, as msgspec structs: same fields, same field order (the
# protobuf field numbers), same scalar mapping (int64 as strings, integer enums,
# default values left out). A test holds the two equal, byte for byte.


def _hex(value: str) -> str:
    return base64.b64decode(value).hex()


def _hex_ids(data: dict[str, Any]) -> None:
    """OTLP JSON writes ids as hex, where the protobuf JSON mapping writes base64."""
    for resource in data.get("resourceSpans", ()):
        for scope in resource.get("scopeSpans", ()):
            for span in scope.get("spans", ()):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = _hex(span[key])
                for link in span.get("links", ()):
                    for key in ("traceId", "spanId"):
                        if key in link:
                            link[key] = _hex(link[key])


def trace_dict_reference(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """``spans`` as OTLP JSON, by the exporter's protobuf encoder and ``MessageToDict``."""
    from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    message = encode_spans(spans)
    data: dict[str, Any] = MessageToDict(message, use_integers_for_enums=True)
    _hex_ids(data)
    return data


# The OTLP JSON messages, fields in protobuf field order; a field at its default
# value is left out, as the protobuf JSON mapping leaves it out.


class _String(msgspec.Struct, gc=False):
    stringValue: str


class _Bool(msgspec.Struct, gc=False):
    boolValue: bool


class _Int(msgspec.Struct, gc=False):
    intValue: str  # int64: a string in the JSON mapping


class _Double(msgspec.Struct, gc=False):
    doubleValue: float | str  # NaN and the infinities are strings


class _Values(msgspec.Struct, omit_defaults=True, gc=False):
    values: list[_AnyValue] = []


class _Array(msgspec.Struct, gc=False):
    arrayValue: _Values


_AnyValue = _String | _Bool | _Int | _Double | _Array


class _KeyValue(msgspec.Struct, gc=False):
    key: str
    value: _AnyValue


class _Event(msgspec.Struct, omit_defaults=True, gc=False):
    timeUnixNano: str
    name: str
    attributes: list[_KeyValue] = []


class _Status(msgspec.Struct, omit_defaults=True, gc=False):
    message: str = ""
    code: int = 0


class _Span(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    traceId: str
    spanId: str
    parentSpanId: str = ""
    name: str
    kind: int
    startTimeUnixNano: str
    endTimeUnixNano: str
    attributes: list[_KeyValue] = []
    events: list[_Event] = []
    status: _Status
    flags: int


class _Scope(msgspec.Struct, gc=False):
    name: str


class _Resource(msgspec.Struct, gc=False):
    attributes: list[_KeyValue]


class _ScopeSpans(msgspec.Struct, gc=False):
    scope: _Scope
    spans: list[_Span]


class _ResourceSpans(msgspec.Struct, gc=False):
    resource: _Resource
    scopeSpans: list[_ScopeSpans]


class _Request(msgspec.Struct, omit_defaults=True, gc=False):
    resourceSpans: list[_ResourceSpans] = []


def _value(value: Value) -> _AnyValue:
    if isinstance(value, bool):
        return _Bool(value)
    if isinstance(value, str):
        return _String(value)
    if isinstance(value, int):
        return _Int(str(value))
    if isinstance(value, float):
        if math.isnan(value):
            return _Double("NaN")
        if math.isinf(value):
            return _Double("Infinity" if value > 0 else "-Infinity")
        return _Double(value)
    if isinstance(value, list | tuple):
        return _Array(_Values([_value(v) for v in value]))
    raise TypeError(f"attribute value of type {type(value).__name__}")


class _Attributes:
    """Makes attribute lists; a string, boolean or integer attribute's struct is made
    once per trace and shared (most repeat from span to span: lanes, statuses,
    reasons, counts)."""

    def __init__(self) -> None:
        self._made: dict[tuple[str, type, Value], _KeyValue] = {}

    def __call__(self, attributes: Mapping[str, Value]) -> list[_KeyValue]:
        made = self._made
        out = []
        for key, value in attributes.items():
            if type(value) is list or type(value) is float:  # unhashable; -0.0 == 0.0
                out.append(_KeyValue(key, _value(value)))
                continue
            seen = (key, type(value), value)  # the type too: True == 1
            item = made.get(seen)
            if item is None:
                item = made[seen] = _KeyValue(key, _value(value))
            out.append(item)
        return out


def _span(span: TraceSpan, trace_id: str, attributes: _Attributes) -> _Span:
    return _Span(
        traceId=trace_id,
        spanId=f"{span.span_id:016x}",
        parentSpanId=f"{span.parent:016x}" if span.parent else "",
        name=span.name,
        kind=1,  # SPAN_KIND_INTERNAL
        startTimeUnixNano=str(span.start),
        endTimeUnixNano=str(span.end),
        attributes=attributes(span.attributes),
        events=[
            _Event(str(mark.time), mark.name, attributes(mark.attributes)) for mark in span.marks
        ],
        status=_Status(span.message, span.code),
        flags=0x100,  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK (a parent is never remote)
    )


def trace_json(trace: Trace) -> bytes:
    """``trace.json``: the OTLP JSON ``ExportTraceServiceRequest`` of ``trace``
    (loadable in Jaeger's UI; the same as :func:`trace_dict_reference` of its SDK spans)."""
    request = _Request()
    if trace.spans:
        trace_id = f"{trace.trace_id:032x}"
        attributes = _Attributes()
        spans = [_span(span, trace_id, attributes) for span in trace.spans]
        resource = _Resource(attributes(trace.resource))
        request = _Request([_ResourceSpans(resource, [_ScopeSpans(_Scope(SCOPE_NAME), spans)])])
    # msgspec keeps the field order and indents in C (json.dumps with an indent falls
    # back to pure Python: several times slower on a large trace).
    return msgspec.json.format(msgspec.json.encode(request), indent=2) + b"\n"


# -- live ----------------------------------------------------------------------------


class LiveTraceExporter:
    """Exports a run's spans as they complete, while the run goes on.

    ``on_event`` runs in the caller's thread (the event loop) and only appends the
    event to a queue; every ``linger_s`` (50 ms) a daemon thread folds what was
    queued into spans and sends what completed in one request. :meth:`close`
    flushes what is queued and stops the thread; call it off the event loop (it may
    wait on the network). Without an endpoint or exporter
    there is no thread and ``on_event`` folds in the caller's thread. :meth:`trace`
    gives the whole trace folded (after :meth:`close`, when there is a thread).

    The fold makes compact records (:mod:`telemetry.records`). A batch is encoded
    from them (:mod:`telemetry.protobuf`) and posted by the OTLP exporter's own
    client; any other exporter is given the SDK's spans of the batch.

    Telemetry never fails a run: an error in the fold stops the fold and an export
    error is counted; both are recorded in :attr:`stats`, and the run goes on.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        exporter: SpanExporter | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        linger_s: float = LINGER_S,
    ) -> None:
        self.builder = TraceBuilder()
        self._linger_s = linger_s
        self.stats = ExportStats(endpoint=signal_endpoint(endpoint, "traces") if endpoint else "")
        self._exporter: SpanExporter | None = exporter
        if exporter is None and endpoint is not None:
            self._exporter = span_exporter(endpoint, timeout_s=timeout_s)
        self._pending: collections.deque[Event] = collections.deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._broken = False
        self._gave_up = False
        self._closed = False
        self._sending: Callable[[Sequence[TraceSpan]], bool] | None = None
        if self._exporter is not None:
            self._thread = threading.Thread(
                target=self._work, name="telemetry-span-export", daemon=True
            )
            self._thread.start()

    @property
    def exporting(self) -> bool:
        return self._exporter is not None

    def prime(self, events: Iterable[Event]) -> None:
        """Fold events appended before this exporter was attached (a resumed run's
        earlier part) without exporting them again. Call it before :meth:`on_event`."""
        for event in events:
            self._fold(event)

    def on_event(self, event: Event) -> None:
        """Hand ``event`` to the export thread (or, without one, fold it here)."""
        if self._thread is None:
            self._fold(event)
        elif not self._closed:
            self._pending.append(event)

    def _fold(self, event: Event) -> list[TraceSpan]:
        if self._broken:
            return []
        try:
            return self.builder.add(event)
        except Exception as exc:
            self._broken = True
            self.stats.errors.append(f"span fold stopped at event {event.seq}: {exc!r}")
            _logger.warning("telemetry: %s", self.stats.errors[-1])
            return []

    def trace(self) -> Trace:
        """The whole trace folded so far (see :meth:`TraceBuilder.spans`)."""
        return self.builder.trace()

    def _work(self) -> None:
        exporter = self._exporter
        assert exporter is not None
        while True:
            # Every ``linger_s``, fold what the run appended and send what it completed
            # in one request. Never woken per event: each wake-up would take the
            # interpreter from the event loop (one handoff per event appended).
            stop = self._stop.wait(max(self._linger_s, 0.001))
            batch: list[TraceSpan] = []
            while self._pending:
                batch += self._fold(self._pending.popleft())
            if batch:
                self._export(exporter, batch)
            if stop:
                return

    def _export(self, exporter: SpanExporter, batch: list[TraceSpan]) -> None:
        if self._gave_up:
            self.stats.failed += len(batch)
            return
        failed = self.stats.failed
        _send(batch, self._sender(exporter), self.stats)
        if self.stats.failed > failed:
            # The exporter already retried until its timeout: a collector that is
            # down would make every later batch wait as long again.
            self._gave_up = True
            self.stats.errors.append("an export failed; the run's remaining spans were not sent")

    def _sender(self, exporter: SpanExporter) -> Callable[[Sequence[TraceSpan]], bool]:
        """How a batch of records is sent: encoded here and posted by the exporter's
        client, or turned into SDK spans for the exporter. Made at the first batch:
        no span completes before ``run_started``, which sets the trace id and resource."""
        if self._sending is None:
            trace_id, resource = self.builder.trace_id, self.builder.resource
            post = _posting(exporter)
            if post is not None:
                encoder = SpanEncoder(trace_id, resource)
                self._sending = lambda spans: post(encoder.request(spans))
            else:
                export, sdk_resource = _exporting(exporter), Resource(resource)
                self._sending = lambda spans: export(readable_spans(trace_id, sdk_resource, spans))
        return self._sending

    def close(self, timeout_s: float = 30.0) -> ExportStats:
        """Flush the queue, stop the export thread and shut the exporter down.

        Waits at most ``timeout_s`` for the queue to drain; then pending retries
        are abandoned (the spans stay in the log; ``engine trace`` re-exports them).
        """
        if self._closed:
            return self.stats
        self._closed = True
        thread, exporter = self._thread, self._exporter
        if thread is not None and exporter is not None:
            self._stop.set()
            thread.join(timeout_s)
            if thread.is_alive():
                self.stats.errors.append(f"export did not finish within {timeout_s:g}s")
            exporter.shutdown()  # also aborts a retry back-off still in progress
            thread.join(5.0)
        return self.stats
