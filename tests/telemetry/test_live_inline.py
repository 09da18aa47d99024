"""The engine's live OTLP export on the inline executor (plugins in-process, a run in
a fraction of a second): what a run sends, what a resumed run sends (only what ended
after the resume, in the same trace as the part before), and a refused export,
counted and reported while the run goes on."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.events import PluginFinished, RunResumed
from engine import Engine, read_log
from engine._core.api import RunResult
from telemetry.records import trace_from_events

from .conftest import Receiver
from .test_export import attrs, run_tree, value, write_fleet

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the engine's paths, not the backend's


def engine(tmp_path: Path, receiver: Receiver) -> Engine:
    return Engine(
        plugins_dir=tmp_path / "plugins",
        runs_dir=tmp_path / "runs",
        executor="inline",
        cache=False,
        otlp_endpoint=receiver.url,
    )


def trace_ids(result: RunResult) -> dict[bytes, str]:
    """The run's spans by id, as folded from its whole log (what trace.json holds)."""
    trace = trace_from_events(read_log(result.run_dir / "events.jsonl"))
    return {s.span_id.to_bytes(8, "big"): s.name for s in trace.spans}


def lane_points(receiver: Receiver) -> list[tuple[str, str, str]]:
    """(metric, lane, run id) of every point received."""
    return sorted(
        (metric.name, value(a["lane"]), value(a["run.id"]))
        for request in receiver.metric_requests()
        for resource in request.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.gauge.data_points
        for a in [{kv.key: kv.value for kv in point.attributes}]
    )


async def test_a_run_and_its_resume_export_live(
    tmp_path: Path, receiver: Receiver, dataset_csv: Path
) -> None:
    write_fleet(tmp_path / "plugins")
    async with engine(tmp_path, receiver) as eng:
        first = await eng.run(dataset_csv, run_id="live1")
    stats = first.telemetry
    assert stats is not None and stats.ok and stats.errors == []
    assert stats.endpoint == f"{receiver.url}/v1/traces"
    spans = receiver.spans()
    tree = run_tree(spans, first)
    folded = trace_ids(first)
    assert {s.span_id: s.name for s in spans} == folded  # each span once, as folded
    assert stats.exported == len(folded) and stats.failed == 0
    assert attrs(tree["quiet"])["plugin.reason_code"] == "NO_SIGNIFICANT_EFFECT"
    # The lane metrics, one point per lane and figure, named by the run.
    points = lane_points(receiver)
    assert {(lane, run) for _, lane, run in points} == {
        ("decision", "live1"),
        ("explanation", "live1"),
    }
    assert ("engine.lane.actionable_yield", "decision", "live1") in points

    # As if the engine died right after explain ended; resumed with the export on.
    log = first.run_dir / "events.jsonl"
    events = read_log(log)
    cut = next(
        i
        for i, e in enumerate(events)
        if isinstance(e, PluginFinished) and e.plugin_id == "explain"
    )
    log.write_bytes(b"".join(log.read_bytes().splitlines(keepends=True)[: cut + 1]))
    receiver.clear()
    async with engine(tmp_path, receiver) as eng:
        resumed = await eng.resume(first.run_dir)
    assert resumed.telemetry is not None and resumed.telemetry.ok
    resumed_at = next(e for e in read_log(log) if isinstance(e, RunResumed))
    again = {s.span_id: s for s in receiver.spans()}
    # Only what ended after the resume is sent: the pending plugins, the lanes and the
    # run; explain (ended before) is not sent again. The ids are the whole trace's.
    names = sorted(s.name for s in again.values())
    assert names == sorted(["run", "lane decision", "lane explanation", *resumed_at.pending])
    assert "explain" not in resumed_at.pending
    whole = trace_ids(resumed)
    assert {i: s.name for i, s in again.items()} == {i: whole[i] for i in again}
    # The run span starts when the run started, not when it was resumed: the part
    # before the resume was folded first.
    run_span = next(s for s in again.values() if s.name == "run")
    assert run_span.start_time_unix_nano == tree["run"].start_time_unix_nano
    assert {run for _, _, run in lane_points(receiver)} == {"live1"}


async def test_a_refused_export_is_reported_and_the_run_goes_on(
    tmp_path: Path, receiver: Receiver, dataset_csv: Path
) -> None:
    write_fleet(tmp_path / "plugins")
    receiver.refuse = {"/v1/traces"}
    async with engine(tmp_path, receiver) as eng:
        refused = await eng.run(dataset_csv, run_id="spans_refused")
        assert refused.ok and (refused.run_dir / "trace.json").is_file()
        stats = refused.telemetry
        assert stats is not None and not stats.ok
        assert stats.exported == 0 and stats.failed == len(trace_ids(refused))
        # No lane metrics after a failed span export: said so, and none sent.
        assert stats.errors[-1] == "lane metrics not sent (the span export failed)"
        assert receiver.posts == []

        receiver.refuse = {"/v1/metrics"}
        metrics_refused = await eng.run(dataset_csv, run_id="metrics_refused")
    stats = metrics_refused.telemetry
    assert metrics_refused.ok and stats is not None
    assert (stats.failed, stats.errors) == (0, ["lane metrics export failed"])
    assert stats.exported == len(trace_ids(metrics_refused)) == len(receiver.spans())
    assert receiver.metric_requests() == []
