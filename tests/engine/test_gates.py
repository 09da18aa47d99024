"""Quality gates: every breach is counted, named and fails a strict run; legacy is
the permissive baseline that completes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import pytest

from contracts.events import GateEvaluated, RunFinished
from contracts.report import QualityGates
from contracts.schema import load as load_schema
from engine import Engine, RunResult, read_log

from .conftest import MakePlugin

pytestmark = pytest.mark.anyio

OK_EMPTY = "from contracts import ok\ndef run(ctx):\n    return ok(metrics={'checked': 3})\n"
BLANK_KIND = """
from contracts import Finding, ok
def run(ctx):
    return ok(findings=[Finding(kind="  ", title="t", target="x", recommendation="r")])
"""
UNDECLARED = """
from contracts import Finding, ok
def run(ctx):
    return ok(findings=[Finding(kind="surprise", title="t", target="x", recommendation="r")])
"""
UNKNOWN_CODE = "from contracts import na\ndef run(ctx):\n    return na('NOT_A_CODE', 'why')\n"
QUIET_NA = """
from contracts import na
def run(ctx):
    return na("NO_SIGNIFICANT_EFFECT", "checked a and b", checked=["a", "b"])
"""
BLANK_NA = (
    "from contracts import na\ndef run(ctx):\n    return na('NO_SIGNIFICANT_EFFECT', '   ')\n"
)

EXPECTED = {
    "ok_empty": "analysis_ok_without_findings_count",
    "blank_kind": "blank_kind_findings_count",
    "undeclared": "undeclared_finding_kind_count",
    "unknown_code": "unexplained_plugin_count",
    "blank_na": "na_without_explanation_count",
    "orphan_explainer": "nondecision_missing_downstream_count",
}


@pytest.fixture
def anyio_backend() -> str:
    """One backend: the gates are evaluated from the plugins' results after they
    settle (synchronous code); the runtime tests run the engine on both backends."""
    return "asyncio"


@pytest.fixture
def bad_fleet(make_plugin: MakePlugin, plugins_dir: Path) -> Path:
    make_plugin("ok_empty", code=OK_EMPTY)
    make_plugin("blank_kind", code=BLANK_KIND)
    make_plugin("undeclared", code=UNDECLARED)
    make_plugin("unknown_code", code=UNKNOWN_CODE)
    make_plugin("blank_na", code=BLANK_NA)
    make_plugin("orphan_explainer", lane="explanation")
    make_plugin("good")
    make_plugin("needs_ts", applies_when={"columns": [{"event_role": "ended"}]})
    make_plugin("needs_col", requires={"columns": [{"name": "cost_center"}]})
    return plugins_dir


async def _run(plugins: Path, dataset: Path, tmp_path: Path, mode: str) -> RunResult:
    async with Engine(plugins_dir=plugins, runs_dir=tmp_path / mode, workers=2) as engine:
        return await engine.run(dataset, mode=mode)  # type: ignore[arg-type]


async def test_each_breach_is_named_and_fails_strict(
    bad_fleet: Path, dataset: Path, tmp_path: Path
) -> None:
    result = await _run(bad_fleet, dataset, tmp_path, "two_lane_strict")
    assert result.status == "failed"
    summary = result.report.summary
    assert summary.gates is not None and not summary.gates_passed
    named = {(o.plugin_id, o.gate) for o in summary.offenders}
    assert named == set(EXPECTED.items())
    for gate in set(EXPECTED.values()):
        assert getattr(summary.gates, gate) == 1, gate
    assert summary.gates.skipped_count == 0
    # Only these failed as plugins; the rest fail the run through the gates.
    assert set(summary.failed_plugins) == {"needs_col", "unknown_code"}
    needs_col = next(p for p in result.report.plugins if p.id == "needs_col")
    assert needs_col.reason_code == "PREFLIGHT_MISSING_COLUMN" and not needs_col.ran
    assert "'cost_center'" in needs_col.explanation
    events = read_log(result.run_dir / "events.jsonl")
    assert isinstance(events[-2], GateEvaluated) and isinstance(events[-1], RunFinished)
    manifest = json.loads((result.run_dir / "run_manifest.json").read_text())
    jsonschema.validate(manifest, load_schema("run_manifest.schema.json"))
    assert (
        manifest["gates"]
        == json.loads((result.run_dir / "report.json").read_text())["summary"]["gates"]
    )
    assert manifest["orchestrator_mode"] == "two_lane_strict" and not manifest["pre_contract"]
    md = (result.run_dir / "report.md").read_text()
    assert "Quality gates: FAILED" in md and "orphan_explainer" in md
    # What the log recorded is what the fleet was built to break, once each.
    recorded = events[-2]
    assert recorded.gates == QualityGates(
        analysis_ok_without_findings_count=1,
        unexplained_plugin_count=1,
        blank_kind_findings_count=1,
        na_without_explanation_count=1,
        nondecision_missing_downstream_count=1,
        undeclared_finding_kind_count=1,
    )
    assert not recorded.passed and recorded.enforced
    blank_id = hashlib.sha256(b"blank_kind\x1f  \x1fx").hexdigest()[:16]
    details = {
        "ok_empty": "decision plugin returned ok without findings (should be na with a reason)",
        "blank_kind": f"finding {blank_id} has a blank kind",
        "undeclared": "finding kind 'surprise' is not declared in finding_kinds "
        "['undeclared_kind']",
        "unknown_code": "na reason code 'NOT_A_CODE' is not a registered na code",
        "blank_na": "na NO_SIGNIFICANT_EFFECT has no explanation",
        "orphan_explainer": "explanation plugin maps to no decision plugin (downstream is empty)",
    }
    order = [r.step.plugin_id for r in result.state.ordered()]
    assert [(o.plugin_id, o.gate, o.detail) for o in recorded.offenders] == sorted(
        ((pid, EXPECTED[pid], details[pid]) for pid in EXPECTED), key=lambda t: order.index(t[0])
    )


async def test_legacy_is_the_permissive_pre_contract_baseline(
    bad_fleet: Path, dataset: Path, tmp_path: Path
) -> None:
    result = await _run(bad_fleet, dataset, tmp_path, "legacy")
    assert result.status == "ok"
    report = json.loads((result.run_dir / "report.json").read_text())
    jsonschema.validate(report, load_schema("report.schema.json"))
    assert report["orchestrator_mode"] == "legacy" and report["pre_contract"] is True
    statuses = {p["id"]: p["status"] for p in report["plugins"]}
    assert statuses["needs_ts"] == "skipped"  # legacy reports never-run plugins as skipped
    assert statuses["needs_col"] == "failed"  # and a failure does not fail a legacy run
    assert {p["lane"] for p in report["plugins"]} == {"legacy"}
    assert report["summary"]["gates"]["skipped_count"] == 1
    assert not report["summary"]["gates_passed"]
    assert "pre-contract" in (result.run_dir / "report.md").read_text()


async def test_clean_fleet_passes_every_gate(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("explainer", lane="explanation", downstream=["decider"])
    make_plugin("decider", depends_on=["explainer"])
    make_plugin(
        "quiet",
        code=QUIET_NA,
    )
    result = await _run(plugins_dir, dataset, tmp_path, "two_lane_strict")
    assert result.ok
    gates = result.report.summary.gates
    assert gates is not None and gates.total() == 0 and result.report.summary.gates_passed


LOADS_ALL = """
from contracts import Finding, ok
def run(ctx):
    table = ctx.data.load_all(["amount"])
    return ok(findings=[Finding(kind="{pid}_kind", title=str(table.num_rows), target="t",
                                recommendation="r")])
"""
SNEAKY = """
from contracts import Finding, ok
def run(ctx):
    ctx.data.sql("SELECT count(*) FROM data")
    try:
        ctx.data.load_all(["amount"])
    except PermissionError:
        pass  # swallowing the refusal must not hide the breach
    return ok(findings=[Finding(kind="sneaky_kind", title="t", target="t", recommendation="r")])
"""


async def test_data_access_contract(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("unbounded_ok", code=LOADS_ALL.format(pid="unbounded_ok"), data_access="unbounded")
    make_plugin("declared_sql", code=LOADS_ALL.format(pid="declared_sql"), data_access="sql")
    make_plugin("sneaky", code=SNEAKY, data_access="sql")
    make_plugin("bounded_ok", data_access="bounded")
    # Small dataset (40 rows): unbounded loads are allowed when declared.
    async with Engine(plugins_dir=plugins_dir, runs_dir=tmp_path / "a", workers=2) as engine:
        small = await engine.run(dataset)
    by_id = {p.id: p for p in small.report.plugins}
    assert by_id["unbounded_ok"].status == "ok"
    assert (by_id["declared_sql"].status, by_id["declared_sql"].reason_code) == (
        "failed",
        "DATA_ACCESS_VIOLATION",
    )
    assert (
        "load_all() is outside the declared data_access 'sql'" in by_id["declared_sql"].explanation
    )
    sneaky = by_id["sneaky"]
    assert (sneaky.status, sneaky.reason_code) == ("failed", "DATA_ACCESS_VIOLATION")
    assert "sql() -> 1 rows" in sneaky.explanation  # the evidence: calls made and rows
    # Above the large-dataset threshold an unbounded-only plugin never starts.
    async with Engine(
        plugins_dir=plugins_dir, runs_dir=tmp_path / "b", workers=2, large_dataset_rows=10
    ) as engine:
        large = await engine.run(dataset)
    by_id = {p.id: p for p in large.report.plugins}
    assert (by_id["unbounded_ok"].status, by_id["unbounded_ok"].reason_code) == (
        "failed",
        "LARGE_DATASET_UNBOUNDED",
    )
    assert by_id["unbounded_ok"].preflight and not by_id["unbounded_ok"].ran
    assert by_id["bounded_ok"].status == "ok"
    assert large.status == "failed"
