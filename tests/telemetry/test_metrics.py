"""Lane metrics: the fold, reading them back, and ``engine stats``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from contracts import DataAccess, Failed, Na, Ok, PlanStep, PluginResult
from contracts.report import LaneMetrics
from engine import fold
from telemetry.metrics import (
    LANE_METRIC_FIELDS,
    export_lane_metrics,
    is_decision,
    lane_metrics,
    load_lane_metrics,
    metric_problems,
)
from tests.engine.conftest import write_plugin

from .conftest import RUN_ID, STEPS, Receiver, synthetic_events
from .test_export import write_fleet


def by_lane() -> dict[str, LaneMetrics]:
    return {m.lane: m for m in lane_metrics(fold(synthetic_events()))}


def test_lane_metrics_of_a_known_log() -> None:
    lanes = by_lane()
    decision, explanation = lanes["decision"], lanes["explanation"]
    # decision lane: decide ok, too_small preflight na, remembered cached na,
    # broken failed, after_broken upstream-failed na.
    assert (decision.plugins, decision.ok, decision.failed, decision.na) == (5, 1, 1, 3)
    assert (decision.ran, decision.cached, decision.preflight_failed) == (2, 1, 1)
    assert decision.upstream_failed == 1
    # Ran (or came from the cache): decide, remembered, broken; decide is actionable.
    assert (decision.actionable_plugins, decision.decision_plugins_ran) == (1, 3)
    assert decision.actionable_yield == pytest.approx(1 / 3)
    # Lookups: remembered (hit), broken, decide.
    assert (decision.cache_hits, decision.cache_lookups) == (1, 3)
    assert decision.cache_hit_rate == pytest.approx(1 / 3)
    # First dispatch (broken, seq 13) to last finish (decide, seq 20).
    assert decision.duration_s == pytest.approx(7.0)
    assert decision.downstream_utilization == 0.0 and decision.explanations_ok == 0

    assert (explanation.plugins, explanation.ok, explanation.rows_read) == (1, 1, 7)
    # explain is ok and consumed by decide, which ran and is ok.
    assert (explanation.explanations_consumed, explanation.explanations_ok) == (1, 1)
    assert explanation.downstream_utilization == 1.0
    # No decision plugin in this lane: the empty ratio is 0.0, never null.
    assert explanation.actionable_yield == 0.0 and explanation.decision_plugins_ran == 0
    for lane in lanes.values():
        assert lane.plugins_without_terminal_state == 0
        assert lane.na_without_reason == 0 and lane.failed_without_reason == 0


def test_unfinished_plugins_are_counted_not_hidden() -> None:
    state = fold(synthetic_events()[:6])
    lanes = {m.lane: m for m in lane_metrics(state)}
    assert lanes["decision"].plugins_without_terminal_state == 4
    assert lanes["explanation"].plugins_without_terminal_state == 1


def test_metric_problems_name_missing_and_null_fields() -> None:
    good = msgspec.to_builtins(lane_metrics(fold(synthetic_events())))
    assert metric_problems("r.json", good) == []
    assert metric_problems("r.json", None) == ["r.json: lane_metrics is missing or empty"]
    assert metric_problems("r.json", []) == ["r.json: lane_metrics is missing or empty"]
    broken = json.loads(json.dumps(good))
    del broken[0]["actionable_yield"]
    broken[1]["cache_hit_rate"] = None
    broken[1]["ok"] = "3"
    assert metric_problems("r.json", broken) == [
        "r.json: lane decision: actionable_yield is missing",
        "r.json: lane explanation: ok is not a number ('3')",
        "r.json: lane explanation: cache_hit_rate is null",
    ]


def _engine(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_stats_cli_on_a_real_run(tmp_path: Path, dataset_csv: Path) -> None:
    plugins = tmp_path / "plugins"
    write_fleet(plugins)
    write_plugin(plugins, "broken", code="def run(ctx):\n    raise ValueError('no')\n")
    run = _engine(
        "run", dataset_csv, "--plugins", plugins, "--run-dir", tmp_path / "runs", "--workers", "2"
    )
    assert run.returncode == 1, run.stderr  # broken failed: the run is failed
    run_dir = Path(run.stdout.splitlines()[0].split(": ", 1)[1])

    table = _engine("stats", run_dir)
    assert table.returncode == 0, table.stdout + table.stderr
    for name in LANE_METRIC_FIELDS[1:]:
        assert name in table.stdout
    assert "decision" in table.stdout and "explanation" in table.stdout

    as_json = _engine("stats", run_dir, "--json")
    assert as_json.returncode == 0, as_json.stdout
    payload = json.loads(as_json.stdout)
    assert payload["problems"] == []
    lanes = {lane["lane"]: lane for lane in payload["lane_metrics"]}
    assert set(lanes) == {"decision", "explanation"}
    for lane in lanes.values():
        assert set(lane) == set(LANE_METRIC_FIELDS)
        assert all(v is not None for v in lane.values())
    assert lanes["decision"]["failed"] == 1
    assert lanes["decision"]["preflight_failed"] == 1
    assert lanes["explanation"]["downstream_utilization"] == 1.0
    manifest = json.loads((run_dir / "run_manifest.json").read_text())
    assert manifest["lane_metrics"] == payload["lane_metrics"]

    # Tampered copies: a metric removed, then a metric nulled.
    for damage in ("remove", "null"):
        copy = tmp_path / f"copy-{damage}"
        shutil.copytree(run_dir, copy)
        name = "report.json" if damage == "remove" else "run_manifest.json"
        data = json.loads((copy / name).read_text())
        if damage == "remove":
            del data["lane_metrics"][0]["cache_hit_rate"]
        else:
            data["lane_metrics"][1]["duration_s"] = None
        (copy / name).write_text(json.dumps(data))
        bad = _engine("stats", copy)
        assert bad.returncode == 1, bad.stdout
        expected = "cache_hit_rate is missing" if damage == "remove" else "duration_s is null"
        assert expected in bad.stdout
        assert _engine("stats", copy, "--json").returncode == 1

    gone = tmp_path / "copy-gone"
    shutil.copytree(run_dir, gone)
    (gone / "report.json").unlink()
    missing = _engine("stats", gone)
    assert missing.returncode == 1 and "report.json: missing" in missing.stdout


def test_load_lane_metrics_reads_a_report_or_says_what_is_wrong(tmp_path: Path) -> None:
    folder = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "v3"
    expected = json.loads((folder / "report.json").read_text())["lane_metrics"]
    for name in ("report.json", "run_manifest.json"):
        metrics, problems = load_lane_metrics(folder / name)
        assert problems == []
        assert [msgspec.to_builtins(m) for m in metrics] == expected
    missing = tmp_path / "none.json"
    assert load_lane_metrics(missing) == ((), [f"{missing}: missing"])
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    metrics, problems = load_lane_metrics(broken)
    assert metrics == () and len(problems) == 1
    assert problems[0].startswith(f"{broken}: unreadable: ")
    not_a_mapping = tmp_path / "list.json"
    not_a_mapping.write_text("[]")
    assert load_lane_metrics(not_a_mapping) == (
        (),
        [f"{not_a_mapping}: lane_metrics is missing or empty"],
    )
    wrong = tmp_path / "wrong.json"
    lanes = [dict(expected[0], lane=7)]  # every figure there, but the lane is no string
    wrong.write_text(json.dumps({"lane_metrics": lanes}))
    assert load_lane_metrics(wrong)[1] == [f"{wrong}: lane_metrics[0].lane is missing or null"]


def test_a_decision_is_a_decision_lane_step_or_a_legacy_one_declared_so() -> None:
    def step(lane: str, manifest_lane: str) -> PlanStep:
        return msgspec.structs.replace(STEPS[0], lane=lane, manifest_lane=manifest_lane)

    assert is_decision(step("decision", "decision"))
    assert is_decision(step("decision", "explanation"))  # moved to the decision lane
    assert not is_decision(step("explanation", "decision"))
    assert is_decision(step("legacy", "decision"))
    assert not is_decision(step("legacy", "explanation"))


def test_every_entry_that_is_no_object_is_named() -> None:
    good = msgspec.to_builtins(by_lane()["decision"])
    assert metric_problems("r.json", [1, good, "x"]) == [
        "r.json: lane_metrics[0] is not an object",
        "r.json: lane_metrics[2] is not an object",
    ]


def test_lane_metrics_go_out_as_one_gauge_per_figure_and_one_point_per_lane(
    receiver: Receiver,
) -> None:
    metrics = lane_metrics(fold(synthetic_events()))
    assert export_lane_metrics(metrics, receiver.url, run_id=RUN_ID)
    [request] = receiver.metric_requests()  # decoded with the official protobuf classes
    [resource] = request.resource_metrics
    assert {a.key: a.value.string_value for a in resource.resource.attributes} == {
        "service.name": "two-lane-engine",
        "service.instance.id": RUN_ID,
    }
    assert [scope.scope.name for scope in resource.scope_metrics] == ["two_lane_engine.telemetry"]
    sent = {m.name: m for scope in resource.scope_metrics for m in scope.metrics}
    figures = [name for name in LANE_METRIC_FIELDS if name != "lane"]
    assert sorted(sent) == sorted(f"engine.lane.{name}" for name in figures)
    for name in figures:
        metric = sent[f"engine.lane.{name}"]
        assert metric.unit == ("s" if name == "duration_s" else "1"), name
        points = {}
        for point in metric.gauge.data_points:
            attrs = {a.key: a.value.string_value for a in point.attributes}
            assert attrs["run.id"] == RUN_ID
            value = point.as_double if point.HasField("as_double") else point.as_int
            points[attrs["lane"]] = value
        assert points == {m.lane: getattr(m, name) for m in metrics}, name
    # No lane: nothing to send, and nothing sent.
    assert export_lane_metrics((), receiver.url, run_id=RUN_ID)
    assert len(receiver.metric_requests()) == 1
    # Nowhere to send them: reported, never raised.
    assert not export_lane_metrics(metrics, "http://127.0.0.1:9", timeout_s=0.5)


def test_an_exporter_that_raises_is_reported_as_a_failed_export(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("exporter bug")

    monkeypatch.setattr(OTLPMetricExporter, "export", explode)
    assert not export_lane_metrics(lane_metrics(fold(synthetic_events())), receiver.url)
    assert receiver.metric_requests() == []


@dataclass(frozen=True)
class Record:
    """A plugin record as the metrics read it (``PluginView``), built by hand."""

    step: PlanStep
    result: PluginResult | None
    ran: bool = False
    preflight: bool = False
    cached: bool = False
    cache: str | None = None
    data_access: tuple[DataAccess, ...] = ()
    dispatched_wall: float | None = None
    finished_wall: float | None = None


@dataclass(frozen=True)
class View:
    plugins: dict[str, Record]


def _record(pid: str, lane: str, order: int, result: PluginResult | None, **fields: Any) -> Record:
    links = {k: fields.pop(k) for k in ("downstream", "dependents") if k in fields}
    step = PlanStep(
        plugin_id=pid,
        version="1",
        lane=lane,  # type: ignore[arg-type]
        manifest_lane="decision" if lane == "decision" else "explanation",
        order=order,
        depth=0,
        priority=0,
        **links,
    )
    return Record(step=step, result=result, **fields)


OK, EMPTY = Ok(), Na(reason_code="NO_SIGNIFICANT_EFFECT", explanation="nothing found")


def test_which_explanations_count_as_consumed() -> None:
    # Only a decision plugin that ran and ended ok or na consumes; through either
    # link (named in ``downstream``, or depending on the explanation).
    records = [
        _record("by_downstream", "explanation", 0, OK, downstream=("decide",)),
        _record("by_dependent", "explanation", 1, OK, dependents=("decide",)),
        _record("by_preflight", "explanation", 2, OK, downstream=("too_small",)),
        _record("by_explanation", "explanation", 3, OK, downstream=("explain_more",)),
        _record("by_failure", "explanation", 4, OK, dependents=("broken",)),
        _record("by_nobody", "explanation", 5, OK, downstream=("absent",)),
        _record("explain_more", "explanation", 6, OK, ran=True),
        _record("decide", "decision", 7, EMPTY, ran=True),
        _record("too_small", "decision", 8, EMPTY, preflight=True),
        _record("broken", "decision", 9, Failed(reason_code="PLUGIN_ERROR"), ran=True),
    ]
    lanes = {m.lane: m for m in lane_metrics(View({r.step.plugin_id: r for r in records}))}
    explanation = lanes["explanation"]
    assert (explanation.explanations_consumed, explanation.explanations_ok) == (2, 7)
    assert explanation.downstream_utilization == pytest.approx(2 / 7)


def test_lane_durations_upstream_failures_and_blank_reasons_by_hand() -> None:
    upstream = Na(reason_code="UPSTREAM_FAILED", explanation="broken failed")
    records = [
        # Dispatched at 1.0, finished 0.12345678 s later: rounded to the microsecond.
        _record("a", "decision", 0, OK, ran=True, dispatched_wall=1.0, finished_wall=1.12345678),
        _record("b", "decision", 1, upstream, finished_wall=1.05),
        _record("c", "decision", 2, EMPTY, preflight=True, finished_wall=1.01),
        _record("d", "decision", 3, EMPTY, cached=True, finished_wall=1.02),
        # Nothing dispatched: measured from the first terminal event to the last.
        _record("e", "explanation", 4, EMPTY, cached=True, finished_wall=10.0),
        _record("f", "explanation", 5, Na(reason_code="X", explanation=" "), finished_wall=10.5),
        # Nothing dispatched or finished: 0.0.
        _record("g", "legacy", 6, None),
    ]
    lanes = {m.lane: m for m in lane_metrics(View({r.step.plugin_id: r for r in records}))}
    assert lanes["decision"].duration_s == 0.123457
    assert lanes["decision"].upstream_failed == 1
    assert lanes["explanation"].duration_s == 0.5
    assert lanes["explanation"].na_without_reason == 1
    assert lanes["legacy"].duration_s == 0.0
    assert lanes["legacy"].plugins_without_terminal_state == 1
