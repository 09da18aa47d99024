"""Recorded logs from earlier versions must keep replaying (docs/schema-evolution.md).

Each folder under tests/fixtures/logs/ holds an ``events.jsonl`` recorded by a
released version and ``expected.json``, what folding it must give. Never edit a
recorded log: add a new folder when the format gains something.

The artifacts folded from a log (the report, ``report.md``, the run manifest, the
timeline, ``report.html``'s charts, ``write_artifacts``) are checked here too, against
values read from the log's own events or worked out by hand from the hand-written
telemetry log (``tests/telemetry/conftest.py``): what the recorded runs never did (a
failed plugin, a legacy run, top actions, a chart) is made by editing a copy of it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from contracts import Evidence, Finding, Impact, Ok
from contracts.charts import Bars, BarSeries, Chart
from contracts.events import (
    EVENT_TYPES,
    Event,
    GateEvaluated,
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
    render_markdown,
    render_report_html,
    to_pretty_json,
    write_artifacts,
)
from engine._core.plan import verify_plan_record
from engine._render.charts import Drawing, draw_here

from ..telemetry.conftest import synthetic_events

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
    temporaries: list[str] = []

    def synced() -> bool:  # every file is on disk beside its final name, none renamed
        temporaries.extend(sorted(p.name for p in run_dir.iterdir()))
        return True

    report = write_artifacts(
        run_dir, state, last_hash, tmp_path / "charts", drawer, synced, lambda: b"trace\n"
    )
    named = [re.sub(r"^\.(.+)\.[a-z0-9_]+\.tmp$", r"\1", name) for name in temporaries]
    assert sorted(named) == sorted(
        [REPORT_NAME, MANIFEST_NAME, MARKDOWN_NAME, HTML_NAME, TRACE_NAME]
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


def as_legacy(events: list[Event]) -> list[Event]:
    """The hand-written log as a legacy run: its start and plan in legacy mode, every
    step on the one legacy lane (the manifest lanes kept)."""
    started, built = events[0], events[1]
    assert isinstance(started, RunStarted) and isinstance(built, PlanBuilt)
    steps = tuple(msgspec.structs.replace(s, lane="legacy") for s in built.plan.steps)
    plan = msgspec.structs.replace(built.plan, mode="legacy", steps=steps)
    return [
        msgspec.structs.replace(started, mode="legacy"),
        msgspec.structs.replace(built, plan=plan),
        *events[2:],
    ]


def test_the_report_counts_and_names_a_failure_strict_and_legacy() -> None:
    """The hand-written telemetry log (none of the recorded runs failed a plugin or
    ran legacy): two ok, ``broken`` failed (ValueError "no", blocking
    ``after_broken``), three na (a preflight, a cached na, the upstream-failed one),
    one finding in each lane."""
    events = synthetic_events()
    report = build_report(fold(events))
    broken = next(p for p in report.plugins if p.id == "broken")
    assert (broken.status, broken.reason_code, broken.explanation) == (
        "failed",
        "PLUGIN_ERROR",
        "no",
    )
    assert (broken.error_type, broken.traceback) == ("ValueError", "tb")
    assert broken.downstream_affected == ("after_broken",)
    summary = report.summary
    assert (summary.ok, summary.failed, summary.na) == (2, 1, 3)
    assert (summary.decisions, summary.explanations) == (1, 1)
    assert summary.failed_plugins == ("broken",)
    assert [(s.lane, s.ok, s.failed, s.na) for s in summary.lanes] == [
        ("decision", 1, 1, 3),
        ("explanation", 1, 0, 0),
    ]
    assert not report.pre_contract and report.orchestrator_mode == "two_lane_strict"
    # Legacy: every step on one lane; the plugins that never ran are "skipped", and
    # the decisions are still the plugins whose manifests say so (explain, given two
    # findings here, stays an explanation). Without a gate record (dropped here) the
    # gates pass.
    two = Ok(findings=(Finding(kind="e", title="profile"), Finding(kind="e", title="shape")))
    legacy_log = [
        msgspec.structs.replace(e, result=two)
        if isinstance(e, PluginFinished) and e.plugin_id == "explain"
        else e
        for e in as_legacy(events)
        if not isinstance(e, GateEvaluated)
    ]
    legacy_log = [msgspec.structs.replace(e, seq=n) for n, e in enumerate(legacy_log)]
    legacy = build_report(fold(legacy_log))
    statuses = {p.id: p.status for p in legacy.plugins}
    assert (legacy.pre_contract, legacy.orchestrator_mode) == (True, "legacy")
    assert statuses == {
        "explain": "ok",
        "decide": "ok",
        "too_small": "skipped",
        "remembered": "na",
        "broken": "failed",
        "after_broken": "skipped",
    }
    assert (legacy.summary.decisions, legacy.summary.explanations) == (1, 2)  # explain: two
    assert (legacy.summary.na, legacy.summary.failed) == (3, 1)
    assert [(s.lane, s.na, s.failed) for s in legacy.summary.lanes] == [("legacy", 3, 1)]
    assert (legacy.summary.gates, legacy.summary.gates_passed) == (None, True)


def test_report_md_opens_with_the_top_actions_or_why_there_are_none() -> None:
    report = build_report(fold(synthetic_events()))
    assert "## Top actions" not in render_markdown(report)  # no top_actions step
    assert "Legacy mode" not in render_markdown(report)
    actions = (
        Finding(
            kind="action",
            title="Cut idle",
            recommendation="scale down",
            impact=Impact(value=38.25, unit="hours/month"),
            evidence=Evidence(metrics={"plugins": "a, b"}),
            plugin_id="top_actions",
        ),
        Finding(kind="action", title="Look", recommendation="check it", plugin_id="top_actions"),
    )
    top = msgspec.structs.replace(report.plugins[0], id="top_actions", findings=actions)
    ranked = msgspec.structs.replace(report, plugins=(top, *report.plugins[1:]))
    md = render_markdown(ranked)
    section = md[md.index("## Top actions") :].split("\n")[:5]
    assert section == [
        "## Top actions",
        "",
        "- **Cut idle** (38.25 hours/month; from a, b): scale down",
        "- **Look** (no modeled impact; from top_actions): check it",
        "",
    ]
    blocked = msgspec.structs.replace(
        top, status="na", reason_code="UPSTREAM_FAILED", explanation="x failed", findings=()
    )
    md = render_markdown(msgspec.structs.replace(report, plugins=(blocked, *report.plugins[1:])))
    assert md[md.index("## Top actions") :].split("\n")[:4] == [
        "## Top actions",
        "",
        "None: top_actions is na `UPSTREAM_FAILED`: x failed",
        "",
    ]
    legacy = render_markdown(msgspec.structs.replace(report, mode="legacy"))
    assert "\n> Legacy mode (pre-contract baseline): failures do not fail the run.\n\n" in legacy


def _section(md: str, title: str) -> list[str]:
    """The lines of ``md`` from heading ``title`` to the next ``## `` heading."""
    lines = md.split("\n")
    start = lines.index(title)
    end = next((n for n in range(start + 1, len(lines)) if lines[n].startswith("## ")), None)
    return lines[start:end]


def test_report_md_of_the_hand_written_log_line_by_line() -> None:
    report = build_report(fold(synthetic_events()))
    md = render_markdown(report)
    assert md.split("\n")[:5] == [
        "# Run `run-telemetry-1`: FAILED",
        "",
        "Mode `two_lane_strict`, seed 3, plan `ph`, dataset `fp`.",
        "6 plugins: 2 ok, 3 na, 1 failed; 1 decision findings, 1 explanation findings.",
        "",
    ]
    assert _section(md, "## Not applicable") == [
        "## Not applicable",
        "",
        "- **too_small** `INSUFFICIENT_DATA`: needs rows",
        "- **remembered** `NO_SIGNIFICANT_EFFECT`: checked it",
        "- **after_broken** `UPSTREAM_FAILED`: broken failed",
        "",
    ]
    assert _section(md, "## Quality gates: passed")[2:4] == [
        "- `analysis_ok_without_findings_count`: 0",
        "- `unexplained_plugin_count`: 0",
    ]
    # Every part of a finding, two ordered by severity, an explanation supporting two.
    plain = Finding(kind="k", title="u", plugin_id="decide", id="f2")
    second = Finding(kind="k", title="v", plugin_id="decide", id="f1")  # same severity: by id
    full = Finding(
        kind="k",
        title="t",
        severity="high",
        what="w",
        why="y",
        recommendation="add a worker",
        impact=Impact(value=2.5, unit="h", description="d", assumptions=("a1",)),
        evidence=Evidence(metrics={"b": 1, "a": 0.5}, query="SELECT 1"),
        plugin_id="decide",
    )
    said = (Finding(kind="e", title="profile", what="x"), Finding(kind="e", title="plain"))
    plugins = {p.id: p for p in report.plugins}
    rich = msgspec.structs.replace(
        report,
        plugins=tuple(
            msgspec.structs.replace(p, findings=(plain, full, second))
            if p.id == "decide"
            else msgspec.structs.replace(p, findings=said, downstream=("decide", "other"))
            if p.id == "explain"
            else p
            for p in plugins.values()
        ),
    )
    md = render_markdown(rich)
    assert _section(md, "## Decisions") == [
        "## Decisions",
        "",
        "### [high] t",
        "",
        "*decide* · `k` · confidence 1.00",
        "",
        "- **What:** w",
        "- **Why:** y",
        "- **Recommendation:** add a worker",
        "- **Impact (measured):** 2.5 h — d",
        "  - assumes: a1",
        "- **Evidence:** a=0.5, b=1",
        "- **Reproduce:** `SELECT 1`",
        "",
        "### [info] v",
        "",
        "*decide* · `k` · confidence 1.00",
        "",
        "",
        "### [info] u",
        "",
        "*decide* · `k` · confidence 1.00",
        "",
        "",
    ]
    assert _section(md, "## Explanations") == [
        "## Explanations",
        "",
        "### explain (supports: decide, other)",
        "",
        "- profile: x",
        "- plain",
        "",
    ]
    # Nothing ok, nothing na, the gates failed.
    bare = msgspec.structs.replace(
        report,
        plugins=(plugins["broken"],),
        summary=msgspec.structs.replace(report.summary, gates_passed=False),
    )
    md = render_markdown(bare)
    assert md.split("\n")[0] == "# Run `run-telemetry-1`: FAILED"
    assert _section(md, "## Decisions") == [
        "## Decisions",
        "",
        "No decision plugin produced a recommendation.",
        "",
    ]
    assert _section(md, "## Explanations") == [
        "## Explanations",
        "",
        "No explanation plugin produced output.",
        "",
    ]
    assert _section(md, "## Not applicable") == ["## Not applicable", "", "None.", ""]
    assert "## Quality gates: FAILED" in md.split("\n")


def test_report_md_of_a_legacy_run_marks_what_never_ran_as_skipped() -> None:
    md = render_markdown(build_report(fold(as_legacy(synthetic_events()))))
    assert "> Legacy mode (pre-contract baseline): failures do not fail the run." in md
    assert _section(md, "## Not applicable") == [
        "## Not applicable",
        "",
        "- **too_small** (skipped) `INSUFFICIENT_DATA`: needs rows",
        "- **remembered** `NO_SIGNIFICANT_EFFECT`: checked it",
        "- **after_broken** (skipped) `UPSTREAM_FAILED`: broken failed",
        "",
    ]
    # On the one legacy lane, every ok plugin's findings are decisions.
    decisions = _section(md, "## Decisions")
    assert "### [info] t" in decisions and "### [info] profile" in decisions


def test_report_html_keeps_drawn_charts_in_its_cache_and_draws_each_once(
    tmp_path: Path,
) -> None:
    state = fold(synthetic_events())
    report = build_report(state)
    chart = Bars(
        title="jobs", y_label="n", categories=("a", "b"), series=(BarSeries("seen", (1.0, 2.0)),)
    )
    charted = msgspec.structs.replace(
        report,
        plugins=tuple(
            msgspec.structs.replace(
                p, findings=tuple(msgspec.structs.replace(f, charts=(chart,)) for f in p.findings)
            )
            if p.id == "decide"
            else p
            for p in report.plugins
        ),
    )
    drawn: list[int] = []

    def drawer(items: Sequence[tuple[Chart, str]]) -> list[Drawing]:
        drawn.append(len(items))
        return draw_here(items)

    cache = tmp_path / "charts"
    first = render_report_html(state, charted, cache, drawer)
    again = render_report_html(state, charted, cache, drawer)
    assert drawn == [1, 0]  # drawn by the drawer given, then served from the cache
    assert len(list(cache.iterdir())) == 1
    assert first == again == render_report_html(state, charted)  # the same bytes
    assert "<svg" in first
