"""Exporting a run's spans: OTLP over HTTP, OTLP JSON files, and live during a run.

- :func:`export_spans` sends spans to an OTLP/HTTP endpoint (a collector, Jaeger).
- :func:`trace_json` encodes spans as an OTLP JSON ``ExportTraceServiceRequest``
  (what the exporter's own protobuf encoder and the protobuf JSON mapping give,
  with the OTLP deviations: hex trace and span ids, integer enums): the
  ``trace.json`` that Jaeger's UI loads from a file.
- :class:`LiveTraceExporter` subscribes to a run's events: it folds each event as it
  is appended and hands the spans an event completed (a plugin's span and its
  children when the plugin ends; the lane and run spans when the run ends) to a
  background thread that exports them, so the event loop never waits on the network.

Live and re-exported spans come from the same fold (:mod:`telemetry.spans`), so
their trace and span ids are identical.
"""

from __future__ import annotations

import base64
import logging
import math
import queue
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import msgspec
from attrs import define, field
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind

from contracts.events import Event

if TYPE_CHECKING:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

# The OTLP exporter and the protobuf encoders are imported where they are used: a run
# that writes only trace.json (the default) never needs them, and they cost a
# noticeable part of a cached rerun's start-up.

from .spans import TraceBuilder, spans_from_events

_logger = logging.getLogger(__name__)

SIGNAL_PATHS = {"traces": "/v1/traces", "metrics": "/v1/metrics"}
DEFAULT_TIMEOUT_S = 10.0
MAX_BATCH = 512
"""Spans per OTLP request: keeps every request far below collectors' size limits."""
LINGER_S = 0.05
"""How long the live exporter waits for more spans to send in the same request."""


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


def _send(exporter: SpanExporter, spans: Sequence[ReadableSpan], stats: ExportStats) -> None:
    for start in range(0, len(spans), MAX_BATCH):
        chunk = spans[start : start + MAX_BATCH]
        stats.requests += 1
        try:
            result = exporter.export(chunk)
        except Exception as exc:  # an exporter must not take the run down
            result = SpanExportResult.FAILURE
            stats.errors.append(f"{type(exc).__name__}: {exc}")
        if result is SpanExportResult.SUCCESS:
            stats.exported += len(chunk)
        else:
            stats.failed += len(chunk)


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
        _send(chosen, spans, stats)
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
# Python, and every run writes trace.json, so :func:`trace_dict` builds the same
# JSON directly from the spans (about ten times faster): same fields, same field
# order (the protobuf field numbers), same scalar mapping (int64 as strings,
# integer enums, default values left out). A test holds the two equal, byte for
# byte; a value the fast path does not know sends the trace down the reference path.


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


class _Unsupported(Exception):
    """A value the direct encoder does not map; the reference path handles it."""


_KINDS = {
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}


def _value(value: object) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        if math.isnan(value):
            return {"doubleValue": "NaN"}
        if math.isinf(value):
            return {"doubleValue": "Infinity" if value > 0 else "-Infinity"}
        return {"doubleValue": value}
    if isinstance(value, list | tuple):
        values = [_value(v) for v in value]
        return {"arrayValue": {"values": values} if values else {}}
    raise _Unsupported(type(value).__name__)


def _attributes(attributes: Mapping[str, object]) -> list[dict[str, Any]]:
    return [{"key": key, "value": _value(value)} for key, value in attributes.items()]


def _span_dict(span: ReadableSpan) -> dict[str, Any]:
    context, parent = span.context, span.parent
    if context is None or span.links or len(context.trace_state):
        raise _Unsupported("span without context, with links or trace state")
    out: dict[str, Any] = {
        "traceId": f"{context.trace_id:032x}",
        "spanId": f"{context.span_id:016x}",
    }
    if parent is not None:
        out["parentSpanId"] = f"{parent.span_id:016x}"
    out["name"] = span.name
    out["kind"] = _KINDS[span.kind]
    out["startTimeUnixNano"] = str(span.start_time or 0)
    out["endTimeUnixNano"] = str(span.end_time or 0)
    if span.attributes:
        out["attributes"] = _attributes(span.attributes)
    if span.events:
        events = []
        for event in span.events:
            item: dict[str, Any] = {"timeUnixNano": str(event.timestamp), "name": event.name}
            if event.attributes:
                item["attributes"] = _attributes(event.attributes)
            events.append(item)
        out["events"] = events
    status: dict[str, Any] = {}  # Status: message is field 2, code field 3
    if span.status.description:
        status["message"] = span.status.description
    if span.status.status_code.value:
        status["code"] = span.status.status_code.value
    out["status"] = status
    # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK, plus IS_REMOTE for a remote parent.
    out["flags"] = 0x100 | (0x200 if parent is not None and parent.is_remote else 0)
    return out


def _scope_dict(scope: InstrumentationScope | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if scope is not None:
        if scope.name:
            out["name"] = scope.name
        if scope.version:
            out["version"] = scope.version
        if scope.attributes:
            out["attributes"] = _attributes(scope.attributes)
    return out


def _trace_dict_direct(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    # Grouped by resource, then scope, in first-seen order, as encode_spans does.
    groups: dict[Resource, dict[InstrumentationScope | None, list[dict[str, Any]]]] = {}
    for span in spans:
        scopes = groups.setdefault(span.resource, {})
        scopes.setdefault(span.instrumentation_scope or None, []).append(_span_dict(span))
    resource_spans = []
    for resource, scopes in groups.items():
        listed = []
        for scope, items in scopes.items():
            entry: dict[str, Any] = {"scope": _scope_dict(scope), "spans": items}
            if scope is not None and scope.schema_url:
                entry["schemaUrl"] = scope.schema_url
            listed.append(entry)
        block: dict[str, Any] = {"resource": {}}
        if resource.attributes:
            block["resource"]["attributes"] = _attributes(resource.attributes)
        block["scopeSpans"] = listed
        if resource.schema_url:
            block["schemaUrl"] = resource.schema_url
        resource_spans.append(block)
    return {"resourceSpans": resource_spans} if resource_spans else {}


def trace_dict(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """``spans`` as the OTLP JSON object of an ``ExportTraceServiceRequest``
    (identical to :func:`trace_dict_reference`, faster)."""
    try:
        return _trace_dict_direct(spans)
    except _Unsupported:
        return trace_dict_reference(spans)


def trace_json(spans: Sequence[ReadableSpan]) -> bytes:
    """``trace.json``: the OTLP JSON of ``spans`` (loadable in Jaeger's UI)."""
    # msgspec keeps the field order and indents in C (json.dumps with an indent falls
    # back to pure Python: several times slower on a large trace).
    return msgspec.json.format(msgspec.json.encode(trace_dict(spans)), indent=2) + b"\n"


# -- live ----------------------------------------------------------------------------

_DUE: Any = object()  # the export thread's linger ran out


class LiveTraceExporter:
    """Exports a run's spans as they complete, while the run goes on.

    ``on_event`` runs in the caller's thread (the event loop) and only enqueues the
    event; a daemon thread folds the events into spans and does the HTTP, sending
    what completed within ``linger_s`` (50 ms) of the first waiting span in one
    request. :meth:`close` flushes what is queued and stops the thread; call it off
    the event loop (it may wait on the network). Without an endpoint or exporter
    there is no thread and ``on_event`` folds in the caller's thread. :meth:`spans`
    gives the whole trace folded (after :meth:`close`, when there is a thread).

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
        self._queue: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._broken = False
        self._gave_up = False
        self._closed = False
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
            self._queue.put(event)

    def _fold(self, event: Event) -> list[ReadableSpan]:
        if self._broken:
            return []
        try:
            return self.builder.add(event)
        except Exception as exc:
            self._broken = True
            self.stats.errors.append(f"span fold stopped at event {event.seq}: {exc!r}")
            _logger.warning("telemetry: %s", self.stats.errors[-1])
            return []

    def spans(self) -> list[ReadableSpan]:
        """The whole trace folded so far (see :meth:`TraceBuilder.spans`)."""
        return self.builder.spans()

    def _work(self) -> None:
        exporter = self._exporter
        assert exporter is not None
        batch: list[ReadableSpan] = []
        deadline = math.inf
        while True:
            # Like the SDK's BatchSpanProcessor: gather what completes within a short
            # delay into one request (one plugin per request would cost a round trip
            # each), but never hold spans back longer than ``linger_s``.
            wait = None if not batch else max(deadline - time.monotonic(), 0.0)
            try:
                event: Event | None = self._queue.get(timeout=wait)
            except queue.Empty:
                event = _DUE
            stop = event is None
            if event is not None and event is not _DUE:
                completed = self._fold(event)
                if completed and not batch:
                    deadline = time.monotonic() + self._linger_s
                batch += completed
            due = stop or event is _DUE or time.monotonic() >= deadline
            if batch and (due or len(batch) >= MAX_BATCH):
                self._export(exporter, batch)
                batch = []
            if stop:
                return

    def _export(self, exporter: SpanExporter, batch: list[ReadableSpan]) -> None:
        if self._gave_up:
            self.stats.failed += len(batch)
            return
        failed = self.stats.failed
        _send(exporter, batch, self.stats)
        if self.stats.failed > failed:
            # The exporter already retried until its timeout: a collector that is
            # down would make every later batch wait as long again.
            self._gave_up = True
            self.stats.errors.append("an export failed; the run's remaining spans were not sent")

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
            self._queue.put(None)
            thread.join(timeout_s)
            if thread.is_alive():
                self.stats.errors.append(f"export did not finish within {timeout_s:g}s")
            exporter.shutdown()  # also aborts a retry back-off still in progress
            thread.join(5.0)
        return self.stats
