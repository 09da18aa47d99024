"""OpenTelemetry for the engine: spans and lane metrics folded from a run's events.

``telemetry`` depends on ``contracts`` only (never on ``engine``): it reads events
and anything shaped like the engine's run state. See ``docs/jaeger.md``.

The names below load their module on first use: every worker process imports
``engine``, which imports ``telemetry.metrics``, and should not pay for the OTLP
exporter, protobuf and rich it never uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .export import (
        EventSubscriber,
        ExportStats,
        LiveTraceExporter,
        export_run,
        export_spans,
        signal_endpoint,
        trace_dict_reference,
        trace_json,
    )
    from .metrics import export_lane_metrics, lane_metrics, load_lane_metrics, metric_problems
    from .progress import LiveProgress, PlainProgress, Progress, QuietProgress, make_progress
    from .records import (
        SERVICE_NAME,
        Trace,
        TraceBuilder,
        span_id_of,
        trace_from_events,
        trace_id_of,
    )
    from .spans import spans_from_events

_MODULES = {
    "export": (
        "EventSubscriber",
        "ExportStats",
        "LiveTraceExporter",
        "export_run",
        "export_spans",
        "signal_endpoint",
        "trace_dict_reference",
        "trace_json",
    ),
    "metrics": ("export_lane_metrics", "lane_metrics", "load_lane_metrics", "metric_problems"),
    "progress": ("LiveProgress", "PlainProgress", "Progress", "QuietProgress", "make_progress"),
    "records": (
        "SERVICE_NAME",
        "Trace",
        "TraceBuilder",
        "span_id_of",
        "trace_from_events",
        "trace_id_of",
    ),
    "spans": ("spans_from_events",),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "SERVICE_NAME",
    "EventSubscriber",
    "ExportStats",
    "LiveProgress",
    "LiveTraceExporter",
    "PlainProgress",
    "Progress",
    "QuietProgress",
    "Trace",
    "TraceBuilder",
    "export_lane_metrics",
    "export_run",
    "export_spans",
    "lane_metrics",
    "load_lane_metrics",
    "make_progress",
    "metric_problems",
    "signal_endpoint",
    "span_id_of",
    "spans_from_events",
    "trace_dict_reference",
    "trace_from_events",
    "trace_id_of",
    "trace_json",
]


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(__all__)
