"""Fixtures for telemetry tests: an in-process OTLP/HTTP receiver."""

from __future__ import annotations

import gzip
import http.server
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from contracts import DataAccess, DatasetInfo, Failed, Finding, Na, Ok, Plan, PlanStep
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
    RunStarted,
)
from contracts.report import QualityGates


class Receiver:
    """Accepts OTLP/HTTP protobuf POSTs on ``/v1/traces`` and ``/v1/metrics`` and
    keeps every payload, decoded with the official protobuf classes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posts: list[tuple[str, bytes]] = []
        self.refuse: set[str] = set()  # paths answered 400 Bad Request (not retried)
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                refused = 400 if self.path in receiver.refuse else None
                if self.path not in ("/v1/traces", "/v1/metrics"):
                    refused = 404
                if refused is not None:
                    self.send_response(refused)
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.posts.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        host, port = self.server.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def trace_requests(self) -> list[ExportTraceServiceRequest]:
        with self.lock:
            bodies = [body for path, body in self.posts if path == "/v1/traces"]
        return [ExportTraceServiceRequest.FromString(body) for body in bodies]

    def metric_requests(self) -> list[ExportMetricsServiceRequest]:
        with self.lock:
            bodies = [body for path, body in self.posts if path == "/v1/metrics"]
        return [ExportMetricsServiceRequest.FromString(body) for body in bodies]

    def spans(self) -> list[Span]:
        return [
            span
            for request in self.trace_requests()
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]

    def clear(self) -> None:
        with self.lock:
            self.posts.clear()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        server.thread.join(5)


# -- a hand-written run log ------------------------------------------------------------

RUN_ID = "run-telemetry-1"
T0 = 1_700_000_000.0


def _step(pid: str, lane: str, order: int, **fields: object) -> PlanStep:
    return PlanStep(
        plugin_id=pid,
        version="1.0",
        lane=lane,  # type: ignore[arg-type]
        manifest_lane=lane,  # type: ignore[arg-type]
        order=order,
        depth=0,
        priority=0,
        **fields,  # type: ignore[arg-type]
    )


STEPS = (
    _step("explain", "explanation", 0, downstream=("decide",), dependents=("decide",)),
    _step("decide", "decision", 1, depends_on=("explain",), decision_capable=True),
    _step("too_small", "decision", 2, decision_capable=True),
    _step("remembered", "decision", 3, decision_capable=True),
    _step("broken", "decision", 4, dependents=("after_broken",), decision_capable=True),
    _step("after_broken", "decision", 5, depends_on=("broken",), decision_capable=True),
)

FINDING = Finding(kind="k", title="t", target="x", recommendation="add a worker")


def synthetic_events(run_id: str = RUN_ID) -> list[Event]:
    """A finished run touching every kind of plugin ending: ok with child spans, a
    preflight na, a cache hit, a failure and the plugin it blocked (upstream failed).
    Wall times are T0 + seq (so each event's time is known from its position)."""
    specs: list[tuple[type[Event], dict[str, object]]] = [
        (
            RunStarted,
            dict(
                run_id=run_id,
                mode="two_lane_strict",
                seed=3,
                engine_version="0.1.0",
                contracts_version="1",
                dataset=DatasetInfo(source="d.csv", fingerprint="fp", rows=10, columns=()),
                plugins_dir="plugins",
                executor="inline",
                workers=1,
            ),
        ),
        (
            PlanBuilt,
            dict(
                plan=Plan(
                    mode="two_lane_strict",
                    seed=3,
                    dataset_schema_hash="h",
                    lane_policy_version="1",
                    steps=STEPS,
                    plan_hash="ph",
                )
            ),
        ),
        (
            PreflightFailed,
            dict(
                plugin_id="too_small",
                lane="decision",
                result=Na(reason_code="INSUFFICIENT_DATA", explanation="needs rows"),
            ),
        ),
        (CacheMiss, dict(plugin_id="explain", key="k1", reason="absent")),
        (PluginDispatched, dict(plugin_id="explain", lane="explanation")),
        (PluginStarted, dict(plugin_id="explain", worker=0, pid=101)),
        (DataAccessed, dict(plugin_id="explain", access=DataAccess(kind="sql", rows=7))),
        (
            PluginSpan,
            dict(
                plugin_id="explain",
                span=SpanRecord(
                    index=0, parent=-1, name="outer", start_wall=T0 + 5.2, end_wall=T0 + 5.8
                ),
            ),
        ),
        (
            PluginSpan,
            dict(
                plugin_id="explain",
                span=SpanRecord(
                    index=1,
                    parent=0,
                    name="inner",
                    start_wall=T0 + 5.3,
                    end_wall=T0 + 5.4,
                    attributes={"table": "data"},
                ),
            ),
        ),
        (
            PluginFinished,
            dict(
                plugin_id="explain",
                lane="explanation",
                result=Ok(findings=(Finding(kind="e", title="profile"),)),
                duration_s=0.7,
            ),
        ),
        (CacheHit, dict(plugin_id="remembered", key="k2")),
        (
            PluginFinished,
            dict(
                plugin_id="remembered",
                lane="decision",
                result=Na(reason_code="NO_SIGNIFICANT_EFFECT", explanation="checked it"),
                duration_s=0.25,
                cached=True,
            ),
        ),
        (CacheMiss, dict(plugin_id="broken", key="k3", reason="code_changed")),
        (PluginDispatched, dict(plugin_id="broken", lane="decision")),
        (PluginStarted, dict(plugin_id="broken", worker=0, pid=101)),
        (
            PluginFinished,
            dict(
                plugin_id="broken",
                lane="decision",
                result=Failed(
                    reason_code="PLUGIN_ERROR",
                    error_type="ValueError",
                    message="no",
                    traceback="tb",
                ),
                duration_s=0.1,
                downstream_affected=("after_broken",),
            ),
        ),
        (
            PluginFinished,
            dict(
                plugin_id="after_broken",
                lane="decision",
                result=Na(
                    reason_code="UPSTREAM_FAILED", explanation="broken failed", checked=("broken",)
                ),
                ran=False,
            ),
        ),
        (CacheMiss, dict(plugin_id="decide", key="k4", reason="absent")),
        (PluginDispatched, dict(plugin_id="decide", lane="decision")),
        (PluginStarted, dict(plugin_id="decide", worker=0, pid=101)),
        (
            PluginFinished,
            dict(plugin_id="decide", lane="decision", result=Ok(findings=(FINDING,)), duration_s=1),
        ),
        (GateEvaluated, dict(gates=QualityGates(), passed=True)),
        (RunFinished, dict(status="failed", counts={"ok": 2, "failed": 1, "na": 3})),
    ]
    return [
        cls(seq=seq, prev=f"p{seq}", wall=T0 + seq, mono=float(seq), **fields)  # type: ignore[arg-type]
        for seq, (cls, fields) in enumerate(specs)
    ]


@pytest.fixture
def dataset_csv(tmp_path: Path) -> Path:
    """A small ops-style CSV (40 rows, 4 processes)."""
    path = tmp_path / "events.csv"
    lines = ["job_id,process,amount,queued_at,started_at"]
    for i in range(40):
        lines.append(
            f"j{i},p{i % 4},{(i * 7) % 13 + 0.5},2024-01-01 00:{i:02d}:00,2024-01-01 01:{i:02d}:00"
        )
    path.write_text("\n".join(lines) + "\n")
    return path
