"""Recorded logs from earlier versions must keep replaying (docs/schema-evolution.md).

Each folder under tests/fixtures/logs/ holds an ``events.jsonl`` recorded by a
released version and ``expected.json``, what folding it must give. Never edit a
recorded log: add a new folder when the format gains something.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from contracts import Ok
from contracts.charts import Chart
from contracts.events import (
    EVENT_TYPES,
    PlanBuilt,
    PluginFinished,
    PluginStarted,
    PreflightFailed,
    RunFinished,
    RunStarted,
    event_tag,
)
from engine import (
    HTML_NAME,
    MANIFEST_NAME,
    MARKDOWN_NAME,
    REPORT_NAME,
    TRACE_NAME,
    EngineInternalError,
    fold,
    read_log,
)
from engine._core.artifacts import (
    build_report,
    build_run_manifest,
    build_timeline,
    to_pretty_json,
    write_artifacts,
)
from engine._core.plan import verify_plan_record
from engine._render.charts import Drawing, draw_here

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "logs"
VERSIONS = sorted(p.name for p in FIXTURES.iterdir() if (p / "events.jsonl").is_file())


def test_there_is_a_fixture() -> None:
    assert "v1" in VERSIONS


@pytest.mark.parametrize("version", VERSIONS)
def test_recorded_log_replays(version: str) -> None:
    folder = FIXTURES / version
    events = read_log(folder / "events.jsonl")  # verifies the hash chain
    state = fold(events)
    report = build_report(state)
    expected = json.loads((folder / "expected.json").read_text())
    assert report.status == expected["status"]
    assert report.plan_hash == expected["plan_hash"]
    plan_record = next(
        line
        for line in (folder / "events.jsonl").read_bytes().splitlines()
        if b'"type":"plan_built"' in line
    )
    assert state.plan is not None and verify_plan_record(plan_record)
    got = {p.id: [p.status, p.reason_code, [f.id for f in p.findings]] for p in report.plugins}
    assert got == expected["plugins"]


def test_a_tampered_plan_fails_the_recorded_hash_check() -> None:
    line = next(
        line
        for line in (FIXTURES / "v1" / "events.jsonl").read_bytes().splitlines()
        if b'"type":"plan_built"' in line
    )
    assert verify_plan_record(line)
    assert not verify_plan_record(line.replace(b'"timeout_s":300.0', b'"timeout_s":301.0', 1))


def test_v1_fixture_covers_every_v1_event_type() -> None:
    lines = (FIXTURES / "v1" / "events.jsonl").read_text().splitlines()
    tags = {json.loads(line)["type"] for line in lines}
    assert tags == {event_tag(cls) for cls in EVENT_TYPES[:8]}


def test_the_run_manifest_is_what_the_run_recorded() -> None:
    """The run manifest's settings and overrides are the run's own (the recorded runs
    used the defaults, so a manifest that left them out would still match them)."""
    events = read_log(FIXTURES / VERSIONS[-1] / "events.jsonl")
    started = msgspec.structs.replace(
        events[0],
        mode="legacy",
        settings={"decider": {"k": 1}},
        lanes={"decider": "explanation"},
        timeouts={"decider": 9.0},
        large_dataset_rows=500,
    )
    state = fold([started, *events[1:]])
    manifest = build_run_manifest(state, build_report(state), "h")
    assert (manifest.mode, manifest.orchestrator_mode, manifest.pre_contract) == (
        "legacy",
        "legacy",
        True,
    )
    assert manifest.settings == {"decider": {"k": 1}}
    assert manifest.lane_overrides == {"decider": "explanation"}
    assert manifest.timeout_overrides == {"decider": 9.0}
    assert manifest.large_dataset_rows == 500
    # Without a finish or without a plan there is no manifest.
    unfinished = fold(events[:-1])
    unplanned = fold([events[0], msgspec.structs.replace(events[-1], seq=1)])
    for state in (unfinished, unplanned):
        with pytest.raises(EngineInternalError) as info:
            build_run_manifest(state, build_report(fold(events)), "h")
        assert str(info.value) == "run manifest requested for an unfinished run"


def test_artifact_json_has_sorted_keys_two_space_indents_and_a_final_newline() -> None:
    assert to_pretty_json({"b": {"d": 1, "c": [2]}, "a": None}) == (
        b'{\n  "a": null,\n  "b": {\n    "c": [\n      2\n    ],\n    "d": 1\n  }\n}\n'
    )


def test_write_artifacts_with_a_chart_cache_a_drawer_a_trace_and_the_log_sync(
    tmp_path: Path,
) -> None:
    """What a run passes beyond what a replay does (which uses the defaults): the
    committed artifacts come out byte for byte all the same."""
    folder = FIXTURES / VERSIONS[-1]
    state = fold(read_log(folder / "events.jsonl"))
    last_hash = json.loads((folder / "run_manifest.json").read_text())["last_event_hash"]
    drawn: list[int] = []

    def drawer(items: Sequence[tuple[Chart, str]]) -> list[Drawing]:
        drawn.append(len(items))
        return draw_here(items)

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / f".{MARKDOWN_NAME}.x1.tmp").write_bytes(b"torn")  # left by a kill
    report = write_artifacts(
        run_dir, state, last_hash, tmp_path / "charts", drawer, lambda: True, lambda: b"trace\n"
    )
    assert report == build_report(state)
    for name in (REPORT_NAME, MANIFEST_NAME, MARKDOWN_NAME, HTML_NAME):
        assert (run_dir / name).read_bytes() == (folder / name).read_bytes(), name
    assert (run_dir / TRACE_NAME).read_bytes() == b"trace\n"
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == sorted([REPORT_NAME, MANIFEST_NAME, MARKDOWN_NAME, HTML_NAME, TRACE_NAME])
    assert drawn == [0]  # the drawer given is asked (the recorded run has no chart)
    # The log's final sync failed: nothing appears.
    unsynced = tmp_path / "unsynced"
    unsynced.mkdir()
    write_artifacts(unsynced, state, last_hash, log_synced=lambda: False)
    assert list(unsynced.iterdir()) == []


def test_the_timeline_of_a_recorded_log_read_from_its_events() -> None:
    events = read_log(FIXTURES / VERSIONS[-1] / "events.jsonl")
    started, finished = events[0], events[-1]
    assert isinstance(started, RunStarted) and isinstance(finished, RunFinished)
    plan = next(e.plan for e in events if isinstance(e, PlanBuilt))
    ends = {e.plugin_id: e for e in events if isinstance(e, PluginFinished | PreflightFailed)}
    timeline = build_timeline(fold(events))
    assert (timeline.run_id, timeline.status, timeline.mode, timeline.seed) == (
        started.run_id,
        finished.status,
        started.mode,
        started.seed,
    )
    assert timeline.elapsed_s == round(finished.wall - started.wall, 6)
    order = sorted(plan.steps, key=lambda s: s.order)
    assert [(e.plugin_id, e.order) for e in timeline.entries] == [
        (s.plugin_id, s.order) for s in order
    ]
    for entry in timeline.entries:
        end = ends[entry.plugin_id]
        result = end.result
        assert entry.status == result.__struct_config__.tag, entry.plugin_id
        assert entry.findings == (len(result.findings) if isinstance(result, Ok) else 0)
        assert entry.finished_s == round(end.wall - started.wall, 6)
    # Before the end: the run is running and an unended plugin shows its phase.
    first_start = next(n for n, e in enumerate(events) if isinstance(e, PluginStarted))
    running = build_timeline(fold(events[: first_start + 1]))
    assert running.status == "running"
    statuses = {e.plugin_id: e.status for e in running.entries}
    assert statuses[events[first_start].plugin_id] == "running"
    with pytest.raises(EngineInternalError) as info:
        build_timeline(fold([]))
    assert str(info.value) == "timeline requested before run_started"
