"""The bundled fleet as a whole: sizes per lane and consistent downstream mapping."""

from __future__ import annotations

from pathlib import Path

from engine import build_plan, load_plugins
from engine._tools.matrix import UNCLASSIFIED, actionability_class

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def test_fleet_size_and_lanes() -> None:
    specs = load_plugins(PLUGINS)
    lanes = [s.manifest.lane for s in specs]
    assert lanes.count("explanation") >= 14
    assert lanes.count("decision") >= 18
    assert all(actionability_class(s) != UNCLASSIFIED for s in specs)


def test_downstream_is_exactly_the_consumers() -> None:
    specs = {s.id: s for s in load_plugins(PLUGINS)}
    for pid, spec in sorted(specs.items()):
        if spec.manifest.lane != "explanation":
            continue
        consumers = sorted(
            other
            for other, o in specs.items()
            if pid in o.manifest.depends_on and o.manifest.lane == "decision"
        )
        assert consumers, f"{pid} feeds no decision plugin"
        assert sorted(spec.manifest.downstream) == consumers, pid


def test_fleet_plans_in_both_modes() -> None:
    specs = load_plugins(PLUGINS)
    for mode in ("two_lane_strict", "legacy"):
        plan = build_plan(specs, mode=mode, seed=1)
        assert len(plan.steps) == len(specs)
