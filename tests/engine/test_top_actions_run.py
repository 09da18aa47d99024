"""The recommendation layer in real runs of the bundled fleet: report.md opens with the
ranked actions, and a failed decision plugin fails top_actions closed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine import Engine
from engine._tools.synth import synthesize

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    """One backend: these tests are about what top_actions makes of a real run (the
    report's ranked actions, failing closed), which no backend changes;
    tests/engine/test_determinism.py runs the bundled fleet on asyncio and trio and
    asserts the one projection."""
    return "asyncio"


@pytest.fixture(scope="module")
def capacity_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "cap.parquet"
    synthesize(out, rows=20_000, seed=7, scenario="ops_capacity")
    return out


async def _run(plugins: Path, data: Path, runs: Path) -> Path:
    async with Engine(plugins_dir=plugins, runs_dir=runs, workers=2, cache=False) as engine:
        result = await engine.run(data, seed=7, run_id="r")
    return result.run_dir


def _plugin(run_dir: Path, pid: str) -> dict:
    report = json.loads((run_dir / "report.json").read_text())
    return next(p for p in report["plugins"] if p["id"] == pid)


@pytest.mark.slow
@pytest.mark.anyio
async def test_report_opens_with_the_ranked_actions(capacity_data: Path, tmp_path: Path) -> None:
    run_dir = await _run(ROOT / "plugins", capacity_data, tmp_path / "runs")
    top = _plugin(run_dir, "top_actions")
    assert top["status"] == "ok"
    hours = [f["evidence"]["metrics"]["hours_per_month"] for f in top["findings"]]
    ranked = [h for h in hours if h is not None]
    assert ranked == sorted(ranked, reverse=True) and hours[: len(ranked)] == ranked
    md = (run_dir / "report.md").read_text()
    assert md.index("## Top actions") < md.index("## Decisions")
    section = md[md.index("## Top actions") : md.index("## Decisions")]
    assert section.count("\n- **#") == len(top["findings"])
    assert "#1:" in section and "hours/month" in section
    # the actions are not repeated among the decisions
    decisions = md[md.index("## Decisions") : md.index("## Explanations")]
    assert "top_action" not in decisions


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_failed_decision_plugin_fails_top_actions_closed(
    capacity_data: Path, tmp_path: Path
) -> None:
    plugins = tmp_path / "plugins"
    shutil.copytree(ROOT / "plugins", plugins, ignore=shutil.ignore_patterns("__pycache__"))
    (plugins / "sla_breach" / "plugin.py").write_text(
        "def run(ctx):\n    raise RuntimeError('broken on purpose')\n"
    )
    run_dir = await _run(plugins, capacity_data, tmp_path / "runs")
    assert _plugin(run_dir, "sla_breach")["status"] == "failed"
    top = _plugin(run_dir, "top_actions")
    assert top["status"] == "na" and top["reason_code"] == "UPSTREAM_FAILED"
    assert "sla_breach" in top["explanation"]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["status"] == "failed"
    md = (run_dir / "report.md").read_text()
    section = md[md.index("## Top actions") : md.index("## Decisions")]
    assert "None: top_actions is na `UPSTREAM_FAILED`" in section
    # the other decisions are still reported
    assert _plugin(run_dir, "capacity_whatif")["status"] == "ok"
