"""The plan: deterministic, topological, lane priority, seeded tie-break, cycles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from engine import ConfigError, CycleError, build_plan, load_plugins

from .conftest import MakePlugin


@pytest.fixture
def fleet(make_plugin: MakePlugin, plugins_dir: Path) -> Path:
    make_plugin("profile", lane="explanation", downstream=["missing"])
    make_plugin("summary", lane="explanation", downstream=["outliers"])
    make_plugin("seasonality", lane="explanation", downstream=["outliers"])
    make_plugin("missing", depends_on=["profile"])
    make_plugin("outliers", depends_on=["summary"])
    make_plugin("dups")
    return plugins_dir


def test_topological_with_decision_priority(fleet: Path) -> None:
    plan = build_plan(load_plugins(fleet), seed=1)
    order = [s.plugin_id for s in plan.steps]
    pos = {pid: i for i, pid in enumerate(order)}
    assert pos["profile"] < pos["missing"] and pos["summary"] < pos["outliers"]
    # seasonality is an explanation no decision plugin depends on: served last.
    assert order[-1] == "seasonality"
    steps = {s.plugin_id: s for s in plan.steps}
    assert steps["seasonality"].priority == 1
    first = ("profile", "summary", "missing", "outliers", "dups")
    assert {steps[p].priority for p in first} == {0}
    assert steps["profile"].dependents == ("missing",)


def test_same_inputs_same_bytes_and_seed_changes_ties(fleet: Path) -> None:
    plugins = load_plugins(fleet)
    a = msgspec.json.encode(build_plan(plugins, seed=7))
    b = msgspec.json.encode(build_plan(load_plugins(fleet), seed=7))
    assert a == b
    orders = {
        tuple(s.plugin_id for s in build_plan(plugins, seed=seed).steps) for seed in range(12)
    }
    assert len(orders) > 1, "the seed should change the tie-break between equal steps"


def test_plan_is_identical_across_processes(fleet: Path) -> None:
    script = (
        "import sys, msgspec; from engine import build_plan, load_plugins;"
        "plan = build_plan(load_plugins(sys.argv[1]), seed=3);"
        "sys.stdout.buffer.write(msgspec.json.encode(plan))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script, str(fleet)],
            check=True,
            capture_output=True,
            env={"PYTHONHASHSEED": str(hashseed), "PATH": ""},
        ).stdout
        for hashseed in (0, 1, 2)
    }
    assert len(outputs) == 1


def test_legacy_mode_is_one_lane(fleet: Path) -> None:
    plan = build_plan(load_plugins(fleet), mode="legacy")
    assert {s.lane for s in plan.steps} == {"legacy"}
    assert {s.priority for s in plan.steps} == {0}


def test_cycle_names_every_member(make_plugin: MakePlugin, plugins_dir: Path) -> None:
    make_plugin("a", depends_on=["c"])
    make_plugin("b", depends_on=["a"])
    make_plugin("c", depends_on=["b"])
    make_plugin("x", depends_on=["y"])
    make_plugin("y", depends_on=["x"])
    make_plugin("free")
    with pytest.raises(CycleError) as info:
        build_plan(load_plugins(plugins_dir))
    assert info.value.cycles == (("a", "c", "b"), ("x", "y"))
    assert "a -> c -> b -> a" in str(info.value) and "x -> y -> x" in str(info.value)


def test_select_pulls_in_dependencies(fleet: Path) -> None:
    plan = build_plan(load_plugins(fleet), select=["outliers"])
    assert sorted(s.plugin_id for s in plan.steps) == ["outliers", "summary"]
    with pytest.raises(ConfigError, match="unknown plugin id"):
        build_plan(load_plugins(fleet), select=["nope"])


def test_settings_overrides_are_resolved_and_checked(
    make_plugin: MakePlugin, plugins_dir: Path
) -> None:
    make_plugin("tunable", settings={"threshold": {"type": "float", "default": 0.5, "maximum": 1}})
    plugins = load_plugins(plugins_dir)
    assert build_plan(plugins).steps[0].settings == {"threshold": 0.5}
    plan = build_plan(plugins, settings={"tunable": {"threshold": 0.9}})
    assert plan.steps[0].settings == {"threshold": 0.9}
    assert plan.plan_hash != build_plan(plugins).plan_hash
    with pytest.raises(ConfigError, match="above the maximum"):
        build_plan(plugins, settings={"tunable": {"threshold": 3}})
    with pytest.raises(ConfigError, match="unknown setting"):
        build_plan(plugins, settings={"tunable": {"other": 1}})
