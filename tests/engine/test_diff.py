"""``engine diff``: actionable, status and explanation deltas between two real runs."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from contracts import Evidence, Finding, Impact, PluginReport, Report
from contracts.plan import Mode
from contracts.report import Summary
from engine import Engine
from engine._tools.cli import main
from engine._tools.diff import diff_reports, diff_runs, render_markdown

from .conftest import MakePlugin

FINDINGS = """
from contracts import Evidence, Finding, Impact, ok

SPECS = {specs!r}

def run(ctx):
    return ok(findings=[
        Finding(kind="flag_kind", title=f"{{target}} needs attention", target=target,
                severity=severity, confidence=confidence, recommendation="act",
                evidence=Evidence(metrics={{"ratio": ratio}}, query="SELECT 1"),
                measurement="modeled",
                impact=Impact(value=hours, unit="hours/month", assumptions=("one more worker",)))
        for target, severity, confidence, ratio, hours in SPECS
    ])
"""

BASE = [("alpha", "high", 0.9, 2.0, 10.0), ("beta", "medium", 0.7, 3.0, 5.0)]


@pytest.fixture
def anyio_backend() -> str:
    """One backend: ``diff`` reads two finished runs (synchronous code); the runs are
    only its input, and the runtime tests run the engine on both backends."""
    return "asyncio"


async def _run(
    plugins: Path, dataset: Path, runs: Path, run_id: str, mode: Mode = "two_lane_strict"
) -> Path:
    async with Engine(plugins_dir=plugins, runs_dir=runs, workers=1, cache=False) as engine:
        return (await engine.run(dataset, run_id=run_id, mode=mode)).run_dir


def _fleet(make_plugin: MakePlugin, specs: list[tuple[str, str, float, float, float]]) -> None:
    make_plugin("explainer", lane="explanation", downstream=["flag"])
    make_plugin(
        "flag",
        depends_on=["explainer"],
        finding_kinds=["flag_kind"],
        code=FINDINGS.format(specs=specs),
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("b_specs", "change", "target"),
    [
        ([*BASE, ("gamma", "critical", 0.95, 9.0, 40.0)], "new", "gamma"),
        (BASE[:1], "gone", "beta"),
        ([BASE[0], ("beta", "medium", 0.7, 3.5, 5.0)], "changed", "beta"),
    ],
)
async def test_runs_differing_in_exactly_one_finding(
    make_plugin: MakePlugin,
    plugins_dir: Path,
    dataset: Path,
    tmp_path: Path,
    b_specs: list[tuple[str, str, float, float, float]],
    change: str,
    target: str,
) -> None:
    runs = tmp_path / "runs"
    _fleet(make_plugin, BASE)
    run_a = await _run(plugins_dir, dataset, runs, "a")
    _fleet(make_plugin, b_specs)
    run_b = await _run(plugins_dir, dataset, runs, "b")

    diff = diff_runs(run_a, run_b)
    assert [(d.change, d.target) for d in diff.actionable] == [(change, target)]
    (delta,) = diff.actionable
    assert delta.plugin_id == "flag" and delta.kind == "flag_kind"
    assert delta.evidence_flag == "reproducible"
    assert diff.status == () and diff.explanations == ()
    assert diff.counts[change] == 1
    if change == "changed":
        assert delta.changes == {"evidence.metrics.ratio": [3.0, 3.5]}
        assert "1 recommendation changed in strength" in diff.summary
    elif change == "new":
        assert delta.modeled_impact == 40.0 and delta.confidence_flag == "high"
        assert diff.summary.startswith(
            "Run B has 1 new recommendation, the largest: \u201cgamma needs attention\u201d "
            "(flag, modeled impact 40 hours/month)."
        )
    else:
        assert "1 recommendation of run A is gone" in diff.summary

    same = diff_runs(run_a, run_a)
    assert same.actionable == () and same.status == ()
    assert same.summary == "Runs A and B agree on every recommendation and every plugin status."


@pytest.mark.anyio
async def test_legacy_vs_strict_on_the_same_data_shows_status_deltas(
    make_plugin: MakePlugin,
    plugins_dir: Path,
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _fleet(make_plugin, BASE)
    make_plugin("needs_region", applies_when={"columns": [{"name": "region"}]})
    make_plugin("after", depends_on=["crashy"])
    make_plugin("crashy", code="def run(ctx):\n    raise RuntimeError('boom')\n")
    runs = tmp_path / "runs"
    legacy = await _run(plugins_dir, dataset, runs, "legacy", mode="legacy")
    strict = await _run(plugins_dir, dataset, runs, "strict")

    diff = diff_runs(legacy, strict, label_a="legacy", label_b="strict")
    assert diff.run_a.pre_contract and not diff.run_b.pre_contract
    assert (diff.run_a.status, diff.run_b.status) == ("ok", "failed")
    deltas = {s.plugin_id: s for s in diff.status}
    assert set(deltas) == {"needs_region", "after"}
    assert (deltas["needs_region"].status_a, deltas["needs_region"].status_b) == ("skipped", "na")
    assert deltas["needs_region"].reason_b == "NOT_APPLICABLE"
    assert deltas["needs_region"].lane == "decision"
    assert "legacy reports a plugin that never ran as skipped" in deltas["after"].note
    assert diff.actionable == ()
    assert any("legacy (pre-contract)" in n for n in diff.notes)
    assert "The run status went from ok to failed." in diff.summary
    assert "2 plugins changed status: needs_region (skipped \u2192 na)" in diff.summary

    out_dir = tmp_path / "out"
    assert main(["diff", str(legacy), str(strict), "--out-dir", str(out_dir)]) == 0
    md = capsys.readouterr().out
    assert md.startswith("# Run diff: A ")
    assert md.splitlines()[2].startswith("**Summary.** Run B has no new recommendations.")
    assert "| needs_region | decision | skipped `NOT_APPLICABLE` | na `NOT_APPLICABLE` |" in md
    assert (out_dir / "diff.md").read_text() == md
    written = json.loads((out_dir / "diff.json").read_text())
    assert written["counts"]["status"] == 2

    assert main(["diff", str(legacy), str(strict), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == written
    assert main(["diff", str(legacy), str(tmp_path / "nope")]) == 2


def _report(run_id: str, fingerprint: str, *plugins: PluginReport) -> Report:
    decisions = sum(len(p.findings) for p in plugins if p.lane == "decision")
    return Report(
        run_id=run_id,
        status="ok",
        mode="two_lane_strict",
        seed=0,
        plan_hash="p" * 64,
        dataset_fingerprint=fingerprint,
        plugins=plugins,
        summary=Summary(
            plugins=len(plugins),
            ok=len(plugins),
            failed=0,
            na=0,
            decisions=decisions,
            explanations=0,
            findings=decisions,
            duration_s=1.0,
        ),
    )


def _finding(
    pid: str, target: str, hours: float | None, confidence: float, unit: str = "h"
) -> Finding:
    return Finding(
        kind="k",
        title=f"{target} finding",
        target=target,
        confidence=confidence,
        measurement="modeled" if hours is not None else "measured",
        impact=Impact(value=hours, unit=unit) if hours is not None else None,
        evidence=Evidence(metrics={"x": 1.0}) if hours else Evidence(),
    ).stamped(pid)


def test_ranking_by_modeled_impact_then_confidence_between_datasets() -> None:
    baseline = _report(
        "base", "f" * 64, PluginReport(id="d", version="1", lane="decision", status="na")
    )
    findings = (
        _finding("d", "measured_sure", None, 0.99),  # measured: impact 0
        _finding("d", "small", 3.0, 0.9),
        _finding("d", "large", 30.0, 0.4),
        _finding("d", "measured_unsure", None, 0.3),
    )
    scenario = _report(
        "scenario",
        "e" * 64,
        PluginReport(id="d", version="1", lane="decision", status="ok", findings=findings),
    )
    diff = diff_reports(baseline, scenario)
    assert [d.target for d in diff.actionable] == [
        "large",
        "small",
        "measured_sure",
        "measured_unsure",
    ]
    assert [d.confidence_flag for d in diff.actionable] == ["low", "high", "high", "low"]
    assert [d.evidence_flag for d in diff.actionable] == ["metrics", "metrics", "none", "none"]
    assert diff.summary.startswith("Run B has 4 new recommendations, the largest: \u201clarge")
    assert any("different datasets" in n for n in diff.notes)
    md = render_markdown(diff)
    assert md.index("large finding") < md.index("small finding") < md.index("measured_sure")
    # The JSON form round-trips.
    assert msgspec.json.decode(msgspec.json.encode(diff), type=type(diff)) == diff


def test_impacts_of_different_units_are_never_ranked_against_each_other() -> None:
    baseline = _report(
        "base", "f" * 64, PluginReport(id="d", version="1", lane="decision", status="na")
    )
    findings = (
        _finding("d", "gap", 3284.0, 0.9, unit="events"),
        _finding("d", "rows", 9000.0, 0.9, unit="rows"),
        _finding("d", "queue", 2856.0, 0.9, unit="hours/month"),
        _finding("d", "timeouts", 12.0, 0.9, unit="hours/month"),
        _finding("d", "gap2", 10.0, 0.9, unit="events"),
        _finding("d", "measured", None, 0.99),
    )
    scenario = _report(
        "scenario",
        "e" * 64,
        PluginReport(id="d", version="1", lane="decision", status="ok", findings=findings),
    )
    diff = diff_reports(baseline, scenario)
    # hours a month first (by size), then each other unit by itself, then no impact
    assert [d.target for d in diff.actionable] == [
        "queue",
        "timeouts",
        "gap",
        "gap2",
        "rows",
        "measured",
    ]
    assert "“queue finding”" in diff.summary
