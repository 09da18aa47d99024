"""``engine score``: hand-made reports and truth files with known recall and precision."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from contracts import Evidence, Finding, Plan, PluginReport, Report
from contracts.events import PlanBuilt
from contracts.plan import PlanStep, StepLane
from contracts.report import Summary
from engine._tools.cli import main
from engine._tools.score import ScoreInputError, score_run

from .conftest import MakePlugin

TRUTH: dict[str, Any] = {
    "scenario": "ops_incidents",
    "seed": 3,
    "rows": 1000,
    "planted": [
        {
            "id": "queue_bottleneck",
            "description": "close waits",
            "kinds": ["queue_bottleneck"],
            "target": "gl_close",
        },
        {
            "id": "data_outage",
            "description": "36 h without events",
            "kinds": ["timestamp_gap"],
            "target": "queued_at",
            "alt_targets": ["started_at", "ended_at"],
        },
        {
            "id": "redundant_column",
            "description": "amount_eur copies amount",
            "kinds": ["redundant_feature"],
            "target": "amount_eur",
        },
        {
            "id": "run_trend",
            "description": "run time doubles",
            "kinds": ["trend"],
            "target": "inv_valuation",
        },
    ],
    "expected_clean": ["robust_outliers"],
}


def _finding(kind: str, target: str, *columns: str) -> Finding:
    return Finding(
        kind=kind, title=f"{kind} on {target}", target=target, evidence=Evidence(columns=columns)
    )


def _plugin(pid: str, lane: StepLane, *findings: Finding, **kw: Any) -> PluginReport:
    stamped = tuple(f.stamped(pid) for f in findings)
    status = "ok" if findings else "na"
    return PluginReport(id=pid, version="1", lane=lane, status=status, findings=stamped, **kw)


def _write_run(
    root: Path, plugins: list[PluginReport], *, mode: str = "two_lane_strict", decisions: int
) -> Path:
    run = root / "run"
    run.mkdir()
    total = sum(len(p.findings) for p in plugins)
    report = Report(
        run_id="r1",
        status="ok",
        mode=mode,  # type: ignore[arg-type]
        seed=0,
        plan_hash="h",
        dataset_fingerprint="f",
        plugins=tuple(plugins),
        summary=Summary(
            plugins=len(plugins),
            ok=sum(p.status == "ok" for p in plugins),
            failed=0,
            na=sum(p.status == "na" for p in plugins),
            decisions=decisions,
            explanations=total - decisions,
            findings=total,
            duration_s=0.0,
        ),
    )
    (run / "report.json").write_bytes(msgspec.json.encode(report))
    return run


def _write_truth(root: Path, truth: dict[str, Any] | None = None) -> Path:
    path = root / "truth.json"
    path.write_text(json.dumps(TRUTH if truth is None else truth))
    return path


@pytest.fixture
def strict_run(tmp_path: Path) -> Path:
    plugins = [
        _plugin(
            "process_durations",
            "explanation",
            _finding("queue_bottleneck", "gl_close"),  # explanation lane: never scored
            downstream=("queue_bottleneck",),
        ),
        _plugin("queue_bottleneck", "decision", _finding("queue_bottleneck", "gl_close")),
        # matched through an alternative target, and a second finding of the same plant
        _plugin(
            "timestamp_gaps",
            "decision",
            _finding("timestamp_gap", "started_at", "started_at"),
            _finding("timestamp_gap", "ended_at", "ended_at"),
        ),
        # matched through evidence.columns (target is the other column of the pair)
        _plugin(
            "redundant_features",
            "decision",
            _finding("redundant_feature", "amount", "amount", "amount_eur"),
        ),
        # false positives: right kind wrong target, and a kind nothing planted accepts
        _plugin(
            "robust_outliers",
            "decision",
            _finding("robust_outliers", "amount", "amount"),
        ),
        _plugin("monotonic_trend", "decision", _finding("trend", "ap_invoice", "process_name")),
        _plugin("changepoints", "decision"),
    ]
    return _write_run(tmp_path, plugins, decisions=6)


def test_known_recall_and_precision(strict_run: Path, tmp_path: Path) -> None:
    score = score_run(strict_run, _write_truth(tmp_path))
    assert [m.planted.id for m in score.matched] == [
        "queue_bottleneck",
        "data_outage",
        "redundant_column",
    ]
    assert len(score.matched[1].findings) == 2
    assert [m.id for m in score.missed] == ["run_trend"]
    assert [(f.plugin_id, f.target) for f in score.false_positives] == [
        ("robust_outliers", "amount"),
        ("monotonic_trend", "ap_invoice"),
    ]
    assert score.decision_findings == 6 and score.matched_findings == 4
    assert score.recall == 0.75
    assert score.precision == pytest.approx(4 / 6)
    assert score.decision_plugins["changepoints"] == "na"
    assert "process_durations" not in score.decision_plugins
    assert score.notes == ()


def test_cli_text_ends_with_the_score_line(
    strict_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["score", str(strict_run), str(_write_truth(tmp_path))]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "recall 0.750 precision 0.667"
    text = "\n".join(out)
    assert "- run_trend [trend] inv_valuation" in text
    assert "! robust_outliers: robust_outliers -> amount  'robust_outliers on amount'" in text
    assert "timestamp_gaps: timestamp_gap -> ended_at" in text


def test_cli_json_prints_only_json(
    strict_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["score", str(strict_run), str(_write_truth(tmp_path)), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["recall"] == 0.75
    assert data["precision"] == pytest.approx(0.6667, abs=1e-4)
    assert [m["id"] for m in data["missed"]] == ["run_trend"]
    assert len(data["false_positives"]) == 2
    assert data["matched"][0]["findings"][0]["plugin_id"] == "queue_bottleneck"


def _legacy_plugins() -> list[PluginReport]:
    return [
        _plugin(
            "process_durations",
            "legacy",
            _finding("process_durations", "gl_close"),
            downstream=("queue_bottleneck",),
        ),
        _plugin("queue_bottleneck", "legacy", _finding("queue_bottleneck", "gl_close")),
        _plugin("robust_outliers", "legacy", _finding("robust_outliers", "amount")),
    ]


def _step(pid: str, manifest_lane: str, order: int) -> PlanStep:
    return PlanStep(
        plugin_id=pid,
        version="1",
        lane="legacy",
        manifest_lane=manifest_lane,  # type: ignore[arg-type]
        order=order,
        depth=0,
        priority=0,
    )


def test_legacy_lane_uses_the_plan_in_the_event_log(tmp_path: Path) -> None:
    run = _write_run(tmp_path, _legacy_plugins(), mode="legacy", decisions=2)
    plan = Plan(
        mode="legacy",
        seed=0,
        dataset_schema_hash="s",
        lane_policy_version="1",
        steps=(
            _step("process_durations", "explanation", 0),
            _step("queue_bottleneck", "decision", 1),
            _step("robust_outliers", "decision", 2),
        ),
    )
    event = PlanBuilt(seq=1, prev="0" * 64, wall=0.0, mono=0.0, plan=plan)
    lines = [b'{"type":"run_started","seq":0}', msgspec.json.encode(event)]
    (run / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    score = score_run(run, _write_truth(tmp_path))
    assert list(score.decision_plugins) == ["queue_bottleneck", "robust_outliers"]
    assert (score.decision_findings, score.matched_findings) == (2, 1)
    assert score.recall == 0.25 and score.precision == 0.5
    assert score.notes == ()


def test_legacy_lane_without_a_log_falls_back_to_downstream(tmp_path: Path) -> None:
    run = _write_run(tmp_path, _legacy_plugins(), mode="legacy", decisions=2)
    score = score_run(run, _write_truth(tmp_path))
    assert list(score.decision_plugins) == ["queue_bottleneck", "robust_outliers"]
    assert score.precision == 0.5
    assert len(score.notes) == 1 and "events.jsonl: no plan found" in score.notes[0]


def test_no_findings_and_nothing_planted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _write_run(tmp_path, [_plugin("queue_bottleneck", "decision")], decisions=0)
    clean = dict(TRUTH, scenario="baseline", planted=[])
    assert main(["score", str(run), str(_write_truth(tmp_path, clean))]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "recall 1.000 precision 1.000"

    (tmp_path / "truth.json").unlink()
    assert main(["score", str(run), str(_write_truth(tmp_path))]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "recall 0.000 precision 1.000"


def test_report_json_path_is_accepted_and_summary_is_checked(tmp_path: Path) -> None:
    plugins = [_plugin("queue_bottleneck", "decision", _finding("queue_bottleneck", "gl_close"))]
    run = _write_run(tmp_path, plugins, decisions=5)
    score = score_run(run / "report.json", _write_truth(tmp_path))
    assert score.recall == 0.25 and score.precision == 1.0
    assert "summary counts 5 decision finding(s), the scorer found 1" in score.notes[0]


def _score_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", "score", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_unreadable_inputs_exit_2_naming_the_path(strict_run: Path, tmp_path: Path) -> None:
    truth = _write_truth(tmp_path)
    missing_run = _score_cli(tmp_path / "nope", truth)
    assert missing_run.returncode == 2
    assert f"{tmp_path / 'nope'}: no such run directory" in missing_run.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    no_report = _score_cli(empty, truth)
    assert no_report.returncode == 2
    assert f"{empty / 'report.json'}: no such file" in no_report.stderr

    missing_truth = _score_cli(strict_run, tmp_path / "none.json")
    assert missing_truth.returncode == 2
    assert f"{tmp_path / 'none.json'}: no such file" in missing_truth.stderr

    bad_truth = tmp_path / "bad.json"
    bad_truth.write_text('{"scenario": "x", "seed": 1, "rows": 2, "planted": [{"id": 3}]}')
    result = _score_cli(strict_run, bad_truth)
    assert result.returncode == 2
    assert f"{bad_truth}: not a valid truth file" in result.stderr
    assert "$.planted[0]" in result.stderr
    assert result.stdout == ""

    (strict_run / "report.json").write_text("{not json")
    broken = _score_cli(strict_run, truth)
    assert broken.returncode == 2
    assert f"{strict_run / 'report.json'}: not a valid report" in broken.stderr

    assert _score_cli(strict_run).returncode == 2  # usage


def test_truth_validation(tmp_path: Path) -> None:
    run = _write_run(tmp_path, [], decisions=0)
    twice = dict(TRUTH, planted=[TRUTH["planted"][0], TRUTH["planted"][0]])
    with pytest.raises(ScoreInputError, match="planted ids are not unique: queue_bottleneck"):
        score_run(run, _write_truth(tmp_path, twice))
    (tmp_path / "truth.json").unlink()
    blank = dict(TRUTH, planted=[dict(TRUTH["planted"][0], kinds=[])])
    with pytest.raises(ScoreInputError, match=r"\$\.planted\[0\]: needs non-empty kinds"):
        score_run(run, _write_truth(tmp_path, blank))


PROBE = """
from contracts import Evidence, Finding, ok

def run(ctx):
    rows = ctx.data.sql(
        "SELECT process_name, sum(date_diff('second', queued_at, started_at)) AS w "
        "FROM data GROUP BY 1 ORDER BY w DESC, process_name LIMIT 2"
    ).to_pylist()
    return ok(findings=[
        Finding(kind="queue_bottleneck", title=r["process_name"], target=r["process_name"],
                evidence=Evidence(columns=("process_name", "queued_at", "started_at")))
        for r in rows
    ])
"""


def test_scores_a_real_run_of_synth_data(
    make_plugin: MakePlugin, plugins_dir: Path, tmp_path: Path
) -> None:
    """End to end: synth data, a run of a probe plugin over it, then the score."""
    data = tmp_path / "ops.parquet"
    args = ["--rows", "20000", "--seed", "2", "--scenario", "ops_incidents", "--out", str(data)]
    assert main(["synth", *args]) == 0
    make_plugin("probe", code=PROBE, finding_kinds=["queue_bottleneck"])
    runs = tmp_path / "runs"
    run_args = ["--plugins", str(plugins_dir), "--run-dir", str(runs), "--run-id", "r"]
    assert main(["run", str(data), *run_args, "--executor", "inline", "--quiet"]) == 0
    score = score_run(runs / "r", tmp_path / "ops.truth.json")
    assert [m.planted.id for m in score.matched] == ["queue_bottleneck"]
    assert score.matched[0].findings[0].target == "gl_period_close"
    assert [f.target for f in score.false_positives] == ["ap_invoice_post"]
    assert (score.recall, score.precision) == (1 / 6, 0.5)


def _action(target: str, kinds: str) -> Finding:
    return Finding(
        kind="top_action",
        title=f"act on {target}",
        target=f"family:{target}",
        evidence=Evidence(metrics={"action_target": target, "kinds": kinds}),
    ).stamped("top_actions")


def test_top_actions_match_through_the_kinds_they_merge(tmp_path: Path) -> None:
    plugins = [
        _plugin("queue_bottleneck", "decision", _finding("queue_bottleneck", "gl_close")),
        _plugin(
            "top_actions",
            "decision",
            _action("gl_close", "capacity_shortfall,queue_bottleneck"),  # matches
            _action("gl_close", "tail_latency_hotspot"),  # right target, wrong kind
            _action("billing", "queue_bottleneck"),  # right kind, wrong target
        ),
    ]
    run = _write_run(tmp_path, plugins, decisions=4)
    score = score_run(run, _write_truth(tmp_path))
    assert score.decision_findings == 4 and score.matched_findings == 2
    assert score.precision == 0.5
    assert sorted(f.action_target for f in score.false_positives) == ["billing", "gl_close"]
    (hit,) = [m for m in score.matched if m.planted.id == "queue_bottleneck"]
    assert sorted(f.plugin_id for f in hit.findings) == ["queue_bottleneck", "top_actions"]
