"""``engine gauntlet``: the release evidence, end to end (small), and failures named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from engine._tools.cli import main
from engine._tools.gauntlet import run_gauntlet
from engine._tools.synth import SCENARIOS

from .conftest import MakePlugin

ROOT = Path(__file__).resolve().parents[2]
MODES = ("two_lane_strict", "legacy")


@pytest.mark.slow
def test_small_gauntlet_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "evidence"
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "gauntlet", "--small", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gauntlet PASSED" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] and summary["failures"] == []
    assert summary["rows"] == 20_000 and summary["small"]
    order = [d["scenario"] for d in summary["datasets"]]
    assert order[0] == "baseline" and sorted(order) == sorted(SCENARIOS)
    assert len(summary["runs"]) == 4 * len(SCENARIOS)
    for run in summary["runs"]:
        name = run["name"]
        assert json.loads((out / "runs" / f"{name}.json").read_text()) == run
        assert run["report_md"] and run["replay"] == "identical"
        if run["mode"] == "two_lane_strict":
            assert run["check_passed"] and run["status"] == "ok", name
            assert run["score"]["recall"] >= 0.95 and run["score"]["precision"] >= 0.95, name
        assert run["cache"] == ("on" if run["attempt"] == 1 else "off")
        if run["attempt"] == 2:
            assert run["cache_hits"] == 0
    assert len(summary["pairs"]) == 2 * len(SCENARIOS)
    assert all(p["deterministic"] for p in summary["pairs"])
    names = {d["name"] for d in summary["diffs"]}
    assert names == {f"{s}__legacy_vs_strict" for s in SCENARIOS} | {
        f"{s}__vs_baseline" for s in SCENARIOS if s != "baseline"
    }
    for name in names:
        assert (out / "diffs" / f"{name}.md").read_text().startswith("# Run diff")
        json.loads((out / "diffs" / f"{name}.json").read_text())
    ops = json.loads((out / "diffs" / "ops_incidents__vs_baseline.json").read_text())
    new = [d for d in ops["actionable"] if d["change"] == "new"]
    # six planted incidents, each found, and merged into (at most) as many top actions
    assert len([d for d in new if d["plugin_id"] != "top_actions"]) == 6
    actions = [d for d in new if d["plugin_id"] == "top_actions"]
    assert 1 <= len(actions) <= 6
    assert ops["counts"]["new"] == len(new)
    assert ops["summary"].startswith(f"Run B has {len(new)} new")
    assert (out / "summary.md").read_text().startswith("# Release gauntlet: PASSED")


def test_failures_are_named_and_fail_the_gauntlet(
    make_plugin: MakePlugin,
    plugins_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_plugin("always")  # one finding on every dataset: a false positive everywhere
    make_plugin("crashy", code="def run(ctx):\n    raise RuntimeError('boom')\n")
    out = tmp_path / "evidence"
    args = ["gauntlet", "--rows", "1500", "--workers", "1", "--plugins", str(plugins_dir)]
    assert main([*args, "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert not summary["passed"]
    failures = summary["failures"]
    assert "baseline__two_lane_strict__1: run status is failed" in failures
    assert "baseline__two_lane_strict__1: precision 0.000 < 0.95" in failures
    assert "ops_incidents__two_lane_strict__2: recall 0.000 < 0.95" in failures
    # Legacy is the pre-contract baseline: its scores and status are reported only.
    assert not any("__legacy__" in f for f in failures)
    assert all(f"FAIL {f}" in printed for f in failures)
    assert all(p["deterministic"] for p in summary["pairs"])
    legacy = json.loads((out / "runs" / "baseline__legacy__1.json").read_text())
    assert legacy["status"] == "ok" and legacy["failed"] == 1
    assert legacy["score"]["precision"] == 0.0


def test_a_nondeterministic_fleet_fails_the_gauntlet(
    make_plugin: MakePlugin, plugins_dir: Path, tmp_path: Path
) -> None:
    make_plugin(
        "dice",
        code="import random\nfrom contracts import na\n"
        "def run(ctx):\n"
        "    return na('NO_SIGNIFICANT_EFFECT', 'rolled', metrics={'draw': random.random()})\n",
    )
    summary = anyio.run(
        lambda: run_gauntlet(tmp_path / "out", rows=1000, workers=1, plugins_dir=plugins_dir)
    )
    assert not summary.passed
    bad = [f for f in summary.failures if "not deterministic" in f]
    assert len(bad) == 2 * len(SCENARIOS)
    assert "run 2 differs at $.plugins[0].metrics.draw: " in bad[0]
