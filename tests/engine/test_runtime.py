"""Real runs through the real process pool: failure handling, fold == live state."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import msgspec
import pytest

from contracts import Failed
from contracts.events import (
    PluginDispatched,
    PluginFinished,
    PluginStarted,
    PreflightFailed,
    RunFinished,
    RunStarted,
)
from contracts.schema import load as load_schema
from engine import Engine, RunResult, fold, read_log

from .conftest import MakePlugin

pytestmark = pytest.mark.anyio

RAISES = """
def run(ctx):
    raise RuntimeError("boom in " + ctx.plugin_id)
"""
GARBAGE = """
def run(ctx):
    return {"status": "ok", "findings": "not a list"}
"""
BAD_TYPES = """
from contracts import Finding, ok
def run(ctx):
    return ok(findings=["just a string"])
"""
UNKNOWN_CODE = """
from contracts import na
def run(ctx):
    return na("MADE_UP_CODE", "because")
"""
NA_CLEAN = """
from contracts import na
def run(ctx):
    return na("NO_SIGNIFICANT_EFFECT", "checked every column, nothing stands out", checked=["all"])
"""
USES_UPSTREAM = """
from contracts import Finding, ok
def run(ctx):
    up = ctx.upstream["base"]
    return ok(findings=[Finding(kind="uses_upstream_kind", title="saw " + str(up.metrics["rows"]),
                                target="t", recommendation="r")])
"""
HELPER_IMPORT = """
from contracts import Finding, ok
from .helpers import LABEL
def run(ctx):
    return ok(findings=[Finding(kind="helped_kind", title=LABEL, target=LABEL, recommendation="r")],
              metrics={"seed": ctx.seed, "setting": ctx.settings["k"]})
"""


async def _run(plugins_dir: Path, dataset: Path, tmp_path: Path, **kw: object) -> RunResult:
    async with Engine(plugins_dir=plugins_dir, runs_dir=tmp_path / "runs", workers=2) as engine:
        return await engine.run(dataset, **kw)  # type: ignore[arg-type]


def _statuses(result: RunResult) -> dict[str, tuple[str, str | None]]:
    return {p.id: (p.status, p.reason_code) for p in result.report.plugins}


async def test_failing_plugin_does_not_stop_the_run(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("base", lane="explanation", downstream=["dependent"], code=RAISES)
    make_plugin("dependent", depends_on=["base"])
    make_plugin("grandchild", depends_on=["dependent"])
    make_plugin("independent")
    result = await _run(plugins_dir, dataset, tmp_path)
    assert result.status == "failed"
    statuses = _statuses(result)
    assert statuses["base"] == ("failed", "PLUGIN_ERROR")
    assert statuses["dependent"] == ("na", "UPSTREAM_FAILED")
    assert statuses["grandchild"] == ("na", "UPSTREAM_FAILED")
    assert statuses["independent"] == ("ok", None)
    by_id = {p.id: p for p in result.report.plugins}
    assert "'base'" in by_id["grandchild"].explanation  # names the failed root
    assert "RuntimeError: boom in base" in by_id["base"].traceback
    assert by_id["base"].downstream_affected == ("dependent",)
    assert result.report.summary.failed_plugins == ("base",)
    # No plugin state other than ok / failed / na exists.
    assert {p.status for p in result.report.plugins} <= {"ok", "failed", "na"}


async def test_invalid_results_are_failed(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("garbage", code=GARBAGE)
    make_plugin("bad_types", code=BAD_TYPES)
    make_plugin("unknown_code", code=UNKNOWN_CODE)
    make_plugin("clean", code=NA_CLEAN)
    result = await _run(plugins_dir, dataset, tmp_path)
    statuses = _statuses(result)
    assert statuses["garbage"] == ("failed", "INVALID_RESULT")
    assert statuses["bad_types"] == ("failed", "INVALID_RESULT")
    assert statuses["unknown_code"] == ("failed", "UNKNOWN_REASON_CODE")
    assert statuses["clean"] == ("na", "NO_SIGNIFICANT_EFFECT")
    assert result.status == "failed"


async def test_upstream_results_settings_seed_and_helpers_reach_the_plugin(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("base", lane="explanation", downstream=["uses_upstream"])
    make_plugin(
        "uses_upstream",
        depends_on=["base"],
        code=USES_UPSTREAM,
        finding_kinds=["uses_upstream_kind"],
    )
    make_plugin(
        "helped",
        code=HELPER_IMPORT,
        files={"helpers.py": "LABEL = 'from-helper'\n"},
        finding_kinds=["helped_kind"],
        settings={"k": {"type": "int", "default": 4}},
    )
    result = await _run(plugins_dir, dataset, tmp_path, seed=5)
    assert result.ok, result.report
    by_id = {p.id: p for p in result.report.plugins}
    assert by_id["uses_upstream"].findings[0].title == "saw 40"
    helped = by_id["helped"]
    assert helped.findings[0].title == "from-helper"
    assert helped.metrics["setting"] == 4
    # docs/architecture.md, "Determinism": the first 8 bytes, big-endian, of
    # sha256(f"{seed}\x1f{plugin_id}").
    digest = hashlib.sha256(b"5\x1fhelped").digest()
    assert helped.metrics["seed"] == int.from_bytes(digest[:8], "big")
    assert by_id["base"].metrics == {"rows": 40}
    finding = helped.findings[0]
    # docs/contracts.md: the first 16 hex digits of sha256(plugin id, kind, target).
    expected_id = hashlib.sha256(b"helped\x1fhelped_kind\x1ffrom-helper").hexdigest()[:16]
    assert (finding.plugin_id, finding.id) == ("helped", expected_id)


async def test_log_fold_equals_live_state_and_artifacts_validate(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("base", lane="explanation", downstream=["dependent"])
    make_plugin("dependent", depends_on=["base"])
    make_plugin("broken", code=RAISES)
    make_plugin("needs_col", requires={"columns": [{"name": "no_such_column"}]})
    make_plugin("needs_ts", applies_when={"columns": [{"event_role": "ended"}]})
    result = await _run(plugins_dir, dataset, tmp_path)
    events = read_log(result.run_dir / "events.jsonl")
    replayed = fold(events)
    live = result.state
    assert replayed.events == live.events == len(events)
    for pid, record in live.plugins.items():
        other = replayed.plugins[pid]
        assert (other.phase, other.result, other.ran, other.data_access) == (
            record.phase,
            record.result,
            record.ran,
            record.data_access,
        )
    assert replayed.finished == live.finished
    # Every plugin ends in exactly one terminal event.
    terminal = [e.plugin_id for e in events if isinstance(e, PluginFinished | PreflightFailed)]
    assert sorted(terminal) == sorted(live.plugins)
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    statuses = _statuses(result)
    assert statuses["needs_col"] == ("failed", "PREFLIGHT_MISSING_COLUMN")
    assert statuses["needs_ts"] == ("na", "NOT_APPLICABLE")
    assert not any(
        isinstance(e, PluginDispatched) and e.plugin_id in {"needs_col", "needs_ts"} for e in events
    ), "preflight-ended plugins are never started"
    started = [e for e in events if isinstance(e, PluginStarted)]
    assert {e.plugin_id for e in started} == {"base", "dependent", "broken"}
    # Artifacts: all four exist and the JSON ones validate against the generated schemas.
    for name in ("events.jsonl", "report.json", "run_manifest.json", "report.md"):
        assert (result.run_dir / name).is_file()
    report = json.loads((result.run_dir / "report.json").read_text())
    jsonschema.validate(report, load_schema("report.schema.json"))
    manifest = json.loads((result.run_dir / "run_manifest.json").read_text())
    jsonschema.validate(manifest, load_schema("run_manifest.schema.json"))
    assert manifest["plan_hash"] == report["plan_hash"] == live.plan.plan_hash  # type: ignore[union-attr]
    assert manifest["events"] == len(events)
    assert {p["id"]: p["status"] for p in report["plugins"]} == {
        k: v[0] for k, v in statuses.items()
    }
    assert {p.preflight for p in result.report.plugins if p.id in {"needs_col", "needs_ts"}} == {
        True
    }
    md = (result.run_dir / "report.md").read_text()
    assert md.index("## Decisions") < md.index("## Explanations") < md.index("## Failures")
    assert "PREFLIGHT_MISSING_COLUMN" in md


async def test_results_are_the_same_on_every_run(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("base", lane="explanation", downstream=["dependent"])
    make_plugin("dependent", depends_on=["base"])
    make_plugin("broken", code=RAISES)
    async with Engine(
        plugins_dir=plugins_dir, runs_dir=tmp_path / "runs", workers=2, cache=False
    ) as engine:
        first = await engine.run(dataset, seed=9)
        second = await engine.run(dataset, seed=9)

    def projection(r: RunResult) -> list[object]:
        return [
            (p.id, p.status, p.reason_code, [f.id for f in p.findings], p.metrics)
            for p in r.report.plugins
        ]

    assert first.report.plan_hash == second.report.plan_hash
    assert projection(first) == projection(second)

    # Every result except the traceback (which names temp paths) is identical.
    def results(r: RunResult) -> list[object]:
        out: list[object] = []
        for record in r.state.ordered():
            result = record.result
            out.append(
                msgspec.structs.replace(result, traceback="")
                if isinstance(result, Failed)
                else result
            )
        return out

    assert results(first) == results(second)
    outcomes = {
        r.step.plugin_id: (type(r.result).__name__, getattr(r.result, "reason_code", None))
        for r in first.state.ordered()
    }
    assert outcomes == {
        "base": ("Ok", None),
        "dependent": ("Ok", None),
        "broken": ("Failed", "PLUGIN_ERROR"),
    }


SPANS = """
from contracts import Finding, ok
def run(ctx):
    with ctx.span("load", rows=ctx.data.rows):
        with ctx.span("parse"):
            pass
    with ctx.span("score", method="mad"):
        pass
    return ok(findings=[Finding(kind="spanned_kind", title="t", target="t", recommendation="r")])
"""


async def test_plugin_child_spans_are_logged(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    from contracts.events import PluginSpan

    make_plugin("spanned", code=SPANS, finding_kinds=["spanned_kind"])
    result = await _run(plugins_dir, dataset, tmp_path)
    spans = [e.span for e in read_log(result.run_dir / "events.jsonl") if isinstance(e, PluginSpan)]
    assert [(s.index, s.parent, s.name) for s in spans] == [
        (0, -1, "load"),
        (1, 0, "parse"),
        (2, -1, "score"),
    ]
    assert spans[0].attributes == {"rows": 40} and spans[2].attributes == {"method": "mad"}
    assert all(s.end_wall >= s.start_wall for s in spans)
    assert result.state.plugins["spanned"].spans == spans
