"""The plan's rules one by one, each against a value known by construction: the
documented sort key, every field of a step, the hash, the refusals and their words."""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec
import pytest

from contracts import canonical_json
from engine import ConfigError, CycleError, build_plan, load_plugins, verify_plan_record
from engine._core.plan import LANE_POLICY_VERSION, find_cycles, tiebreak

from .conftest import MakePlugin


def _tiebreak(seed: int, pid: str) -> str:
    """docs/architecture.md, "The plan": sha256(f"{seed}\\x1f{plugin_id}")."""
    return hashlib.sha256(f"{seed}\x1f{pid}".encode()).hexdigest()


@pytest.fixture
def chain(make_plugin: MakePlugin, plugins_dir: Path) -> Path:
    """root (explanation) -> mid (explanation) -> top (decision); loose (explanation)
    and free (decision) depend on nothing."""
    make_plugin(
        "root",
        lane="explanation",
        downstream=["top"],
        timeout_s=7,
        finding_kinds=["z_kind", "a_kind"],
    )
    make_plugin("mid", lane="explanation", depends_on=["root"], downstream=["top"])
    make_plugin("top", depends_on=["mid", "root"], settings={"k": {"type": "int", "default": 1}})
    make_plugin("loose", lane="explanation")
    make_plugin("free", diagnostic_only=False)
    return plugins_dir


def test_every_field_of_every_step(chain: Path) -> None:
    plan = build_plan(load_plugins(chain), seed=4, timeouts={"mid": 2.5})
    steps = {s.plugin_id: s for s in plan.steps}
    assert {p: (s.priority, s.depth) for p, s in steps.items()} == {
        "root": (0, 0),
        "mid": (0, 1),
        "top": (0, 2),
        "free": (0, 0),
        "loose": (1, 0),
    }
    assert steps["top"].depends_on == ("mid", "root")
    assert steps["root"].dependents == ("mid", "top")
    assert steps["root"].downstream == ("top",)
    assert steps["root"].finding_kinds == ("a_kind", "z_kind")
    assert (steps["root"].timeout_s, steps["mid"].timeout_s, steps["top"].timeout_s) == (
        7,
        2.5,
        300,
    )
    assert steps["top"].settings == {"k": 1}
    assert (steps["top"].lane, steps["top"].manifest_lane, steps["top"].decision_capable) == (
        "decision",
        "decision",
        True,
    )
    assert (steps["root"].lane, steps["root"].decision_capable) == ("explanation", False)
    assert [s.order for s in plan.steps] == list(range(5))
    # The documented key: (priority, depth, seeded hash); root and free tie on the
    # first two, so the hash decides.
    first_two = sorted(["root", "free"], key=lambda p: _tiebreak(4, p))
    assert [s.plugin_id for s in plan.steps] == [*first_two, "mid", "top", "loose"]
    assert tiebreak(4, "root") == _tiebreak(4, "root")
    assert plan.lane_policy_version == LANE_POLICY_VERSION
    assert plan.dataset_schema_hash == hashlib.sha256(b"[]").hexdigest()
    assert (plan.mode, plan.seed) == ("two_lane_strict", 4)


def test_the_plan_hash_is_the_hash_of_the_plan_without_it(chain: Path) -> None:
    schema = (("a", "DOUBLE", "numeric"),)
    plan = build_plan(load_plugins(chain), seed=1, dataset_schema=schema)
    blank = msgspec.structs.replace(plan, plan_hash="")
    assert plan.plan_hash == hashlib.sha256(canonical_json(blank)).hexdigest()
    assert plan.dataset_schema_hash == hashlib.sha256(b'[["a","DOUBLE","numeric"]]').hexdigest()
    record = msgspec.json.encode({"type": "plan_built", "plan": plan})
    assert verify_plan_record(record)
    assert not verify_plan_record(record.replace(b'"seed":1', b'"seed":2'))
    twice = record.replace(b'"mode"', b'"plan_hash":"' + plan.plan_hash.encode() + b'","mode"', 1)
    assert not verify_plan_record(twice)  # the hash field must occur once
    with pytest.raises(ValueError, match="not a plan_built record: 'run_started'"):
        verify_plan_record(msgspec.json.encode({"type": "run_started", "plan": plan}))


def test_legacy_and_lane_overrides(chain: Path) -> None:
    plugins = load_plugins(chain)
    legacy = build_plan(plugins, mode="legacy")
    assert {(s.lane, s.priority) for s in legacy.steps} == {("legacy", 0)}
    assert {s.plugin_id: s.manifest_lane for s in legacy.steps}["top"] == "decision"
    moved = build_plan(plugins, lanes={"top": "explanation"})
    steps = {s.plugin_id: s for s in moved.steps}
    # Nothing is in the decision lane now but free: root, mid and top drop to 1.
    assert {p: s.priority for p, s in steps.items()} == {
        "root": 1,
        "mid": 1,
        "top": 1,
        "loose": 1,
        "free": 0,
    }
    assert (steps["top"].lane, steps["top"].manifest_lane) == ("explanation", "decision")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"mode": "fast"}, "mode: expected one of ['two_lane_strict', 'legacy'], got 'fast'"),
        ({"settings": {"ghost": {}}}, "settings: unknown plugin id(s) ['ghost']"),
        ({"lanes": {"ghost": "decision"}}, "lanes: unknown plugin id(s) ['ghost']"),
        ({"timeouts": {"ghost": 1}}, "timeouts: unknown plugin id(s) ['ghost']"),
        ({"timeouts": {"top": 0}}, "timeouts.top: must be positive, got 0"),
        ({"timeouts": {"top": -1.5}}, "timeouts.top: must be positive, got -1.5"),
        ({"lanes": {"top": "sideways"}}, "lanes.top: expected 'decision' or 'explanation'"),
        (
            {"lanes": {"loose": "decision"}},
            "lanes.loose: cannot move to the decision lane "
            "(the plugin is diagnostic_only or not decision_capable)",
        ),
        ({"select": ["ghost", "top"]}, "--select: unknown plugin id(s) ['ghost']"),
    ],
)
def test_refusals(chain: Path, kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_plan(load_plugins(chain), **kwargs)  # type: ignore[arg-type]
    assert str(info.value) == words


def test_select_takes_the_closure(chain: Path) -> None:
    plan = build_plan(load_plugins(chain), select=["top"])
    assert sorted(s.plugin_id for s in plan.steps) == ["mid", "root", "top"]
    steps = {s.plugin_id: s for s in plan.steps}
    assert steps["root"].downstream == ("top",)  # declared, whether or not selected


def test_cycles_in_edge_order(make_plugin: MakePlugin, plugins_dir: Path) -> None:
    assert find_cycles({"a": ["a"], "b": []}) == [["a"]]
    assert find_cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert find_cycles({"b": ["a", "c"], "a": ["b"], "c": ["b"]}) == [["a", "b", "c"]]
    assert find_cycles({"x": ["y"], "y": ["x", "ghost"]}) == [["x", "y"]]
    assert find_cycles({"a": ["b"], "b": []}) == []
    make_plugin("p", depends_on=["q"])
    make_plugin("q", depends_on=["p"])
    with pytest.raises(CycleError) as info:
        build_plan(load_plugins(plugins_dir))
    assert (info.value.cycles, info.value.cycle) == ((("p", "q"),), ("p", "q"))
    assert str(info.value) == "dependency cycle: p -> q -> p"


def test_a_long_chain_has_its_depths(make_plugin: MakePlugin, plugins_dir: Path) -> None:
    for i in range(30):
        make_plugin(f"c{i:02d}", depends_on=[f"c{i - 1:02d}"] if i else [])
    plan = build_plan(load_plugins(plugins_dir))
    assert [(s.plugin_id, s.depth) for s in plan.steps] == [(f"c{i:02d}", i) for i in range(30)]


def test_what_the_first_rules_left_untested(chain: Path) -> None:
    plugins = load_plugins(chain)
    plan = build_plan(plugins, timeouts={"mid": 0.5}, lanes={"loose": "explanation"})
    steps = {s.plugin_id: s for s in plan.steps}
    assert plan.seed == 0  # the default
    assert steps["mid"].timeout_s == 0.5  # any positive timeout
    assert steps["loose"].lane == "explanation"  # an override to its own lane is fine
    by_id = {p.id: p for p in plugins}
    assert {p: (s.version, s.code_hash) for p, s in steps.items()} == {
        p: ("1.0", by_id[p].code_hash) for p in steps
    }
    # Selecting two plugins whose closures overlap takes both closures whole.
    both = build_plan(plugins, select=["top", "free"])
    assert sorted(s.plugin_id for s in both.steps) == ["free", "mid", "root", "top"]


def test_a_cycle_after_a_finished_component_is_still_found() -> None:
    # c reaches the cycle a <-> b, found first; c <-> d is a cycle of its own.
    deps = {"a": ["b"], "b": ["a"], "c": ["a", "d"], "d": ["c"]}
    assert find_cycles(deps) == [["a", "b"], ["c", "d"]]
