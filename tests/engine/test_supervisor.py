"""The supervisor's pure rules, by values known by construction: the per-plugin
seed, the expected critical path that breaks priority ties, the plugins a failure
affects and a run's final status."""

from __future__ import annotations

import hashlib

from contracts import Plan, PlanStep
from engine._core.supervisor import _affected, critical_paths, plugin_seed, run_status


def _step(pid: str, order: int, **fields: object) -> PlanStep:
    return PlanStep(
        plugin_id=pid,
        version="1",
        lane="decision",
        manifest_lane="decision",
        order=order,
        depth=0,
        priority=0,
        **fields,  # type: ignore[arg-type]
    )


def test_plugin_seed_is_the_documented_hash() -> None:
    for seed, pid in ((0, "a"), (7, "a"), (7, "b"), (2**40, "x.y")):
        digest = hashlib.sha256(f"{seed}\x1f{pid}".encode()).digest()
        assert plugin_seed(seed, pid) == int.from_bytes(digest[:8], byteorder="big")
    assert plugin_seed(1, "a") != plugin_seed(1, "b") != plugin_seed(2, "b")


def test_critical_paths_add_the_longest_chain_of_dependents() -> None:
    # a -> b -> d and a -> c (plan order is topological); e stands alone, f has no
    # expected time, and a dependent outside the plan counts for nothing.
    steps = (
        _step("a", 0, dependents=("b", "c")),
        _step("b", 1, depends_on=("a",), dependents=("d",)),
        _step("c", 2, depends_on=("a",)),
        _step("d", 3, depends_on=("b",), dependents=("gone",)),
        _step("e", 4),
        _step("f", 5),
    )
    plan = Plan(
        mode="two_lane_strict",
        seed=0,
        dataset_schema_hash="h",
        lane_policy_version="1",
        steps=steps,
    )
    expected = {"a": 1.0, "b": 2.0, "c": 10.0, "d": 4.0, "e": 0.5}
    assert critical_paths(plan, expected) == {
        "d": 4.0,
        "c": 10.0,
        "b": 6.0,  # 2 + d
        "a": 11.0,  # 1 + max(b 6, c 10)
        "e": 0.5,
        "f": 0.0,
    }


def test_a_failure_affects_its_dependents_and_downstream_once_each_in_order() -> None:
    step = _step("p", 0, dependents=("b", "a"), downstream=("c", "a"))
    assert _affected(step) == ("a", "b", "c")
    assert _affected(_step("q", 0)) == ()


def test_run_status_strict_fails_on_a_failure_or_a_breach_legacy_never() -> None:
    assert run_status("two_lane_strict", {"ok": 3, "failed": 0}, 0) == "ok"
    assert run_status("two_lane_strict", {"ok": 3}, 0) == "ok"
    assert run_status("two_lane_strict", {"ok": 3, "failed": 1}, 0) == "failed"
    assert run_status("two_lane_strict", {"ok": 3}, 1) == "failed"
    assert run_status("legacy", {"failed": 2}, 3) == "ok"
