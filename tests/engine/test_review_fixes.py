"""Regression tests for problems found in review of the runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import ConfigError, Engine, RunResult, build_plan, load_plugins

from .conftest import MakePlugin

pytestmark = pytest.mark.anyio

FAKES_UPSTREAM = """
from contracts import na
def run(ctx):
    return na("UPSTREAM_FAILED", "pretending", checked=["somebody"])
"""
BIG_OUT = """
from contracts import Finding, ok
def run(ctx):
    return ok(findings=[Finding(kind="{pid}_kind", title="t", target="t")],
              metrics={{"blob": "x" * 3_000_000}})
"""
BIG_IN = """
from contracts import Finding, ok
def run(ctx):
    size = len(ctx.upstream["big"].metrics["blob"])
    return ok(findings=[Finding(kind="reader_kind", title=str(size), target="t",
                                recommendation="r")], metrics={"blob": "y" * 3_000_000})
"""
SET_ORDER = """
from contracts import Finding, ok
def run(ctx):
    names = {f"name-{i}" for i in range(40)}
    return ok(findings=[Finding(kind="ordered_kind", title="t", target="t", recommendation="r")],
              metrics={"order": list(names)})
"""


def _by_id(result: RunResult, pid: str):  # type: ignore[no-untyped-def]
    return next(p for p in result.report.plugins if p.id == pid)


async def test_a_plugin_cannot_claim_upstream_failed(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("liar", lane="explanation", downstream=["child"], code=FAKES_UPSTREAM)
    make_plugin("child", depends_on=["liar"])
    async with Engine(plugins_dir=plugins_dir, runs_dir=tmp_path / "r", workers=1) as engine:
        result = await engine.run(dataset)
    liar = _by_id(result, "liar")
    assert (liar.status, liar.reason_code) == ("failed", "INVALID_RESULT")
    assert "reserved for the engine" in liar.explanation
    child = _by_id(result, "child")
    assert child.reason_code == "UPSTREAM_FAILED" and "'liar'" in child.explanation


async def test_large_jobs_and_outputs_cross_without_deadlock(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin(
        "big",
        lane="explanation",
        downstream=["reader"],
        code=BIG_OUT.format(pid="big"),
        diagnostic_only=True,
    )
    for i in range(4):
        make_plugin(
            f"reader_{i}",
            depends_on=["big"],
            code=BIG_IN,
            finding_kinds=["reader_kind"],
            timeout_s=60,
        )
    make_plugin("reader", depends_on=["big"], code=BIG_IN, finding_kinds=["reader_kind"])
    async with Engine(
        plugins_dir=plugins_dir, runs_dir=tmp_path / "r", workers=1, cache=False
    ) as engine:
        result = await engine.run(dataset)
    assert result.report.summary.failed == 0, result.report.summary
    assert _by_id(result, "reader_3").findings[0].title == "3000000"


async def test_set_order_is_the_same_in_fresh_workers(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("ordered", code=SET_ORDER, finding_kinds=["ordered_kind"])
    orders = []
    for attempt in range(2):  # two engines: two sets of freshly spawned workers
        async with Engine(
            plugins_dir=plugins_dir, runs_dir=tmp_path / str(attempt), workers=1, cache=False
        ) as engine:
            result = await engine.run(dataset)
        orders.append(_by_id(result, "ordered").metrics["order"])
    assert orders[0] == orders[1]


async def test_selecting_an_explanation_plugin_alone_keeps_its_mapping(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("explainer", lane="explanation", downstream=["decider"], diagnostic_only=True)
    make_plugin("decider", depends_on=["explainer"])
    async with Engine(plugins_dir=plugins_dir, runs_dir=tmp_path / "r", workers=1) as engine:
        result = await engine.run(dataset, select=["explainer"])
    assert result.ok and result.report.summary.gates_passed
    assert _by_id(result, "explainer").downstream == ("decider",)


def test_timeout_overrides_must_be_positive(make_plugin: MakePlugin, plugins_dir: Path) -> None:
    make_plugin("only")
    with pytest.raises(ConfigError, match=r"timeouts\.only: must be positive"):
        build_plan(load_plugins(plugins_dir), timeouts={"only": 0})
