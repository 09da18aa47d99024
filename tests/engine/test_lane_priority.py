"""The decision lane is served first at run time, not only in the plan.

Two workers; six independent explanation plugins, each of which cannot finish
before the decision chain d1 -> d2 -> d3 has ended (d3 opens a gate they wait on,
with a long bound so a wrong scheduler fails the test instead of hanging it). A
scheduler that queued explanation jobs ahead of the chain would start four of them
before d3 ran; with the admission rule (beyond the workers' number, only jobs of
the best unfinished priority may be queued) the chain takes one worker and at most
one explanation plugin the other: at most one starts before d3 does. Asserted on
the recorded event order alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.events import PluginDispatched, PluginFinished, PluginStarted
from engine import Engine, RunResult, read_log

from .conftest import MakePlugin

pytestmark = pytest.mark.anyio

WAITS_FOR_GATE = """
import time
from pathlib import Path
from contracts import na

def run(ctx):
    gate = Path(ctx.settings["gate"])
    bound = time.monotonic() + 60
    while not gate.exists() and time.monotonic() < bound:
        time.sleep(0.01)
    said = "explained nothing" if gate.exists() else "gate never opened"
    return na("NO_SIGNIFICANT_EFFECT", said)
"""

CHAIN = """
from pathlib import Path
from contracts import na

def run(ctx):
    if ctx.settings["opens_gate"]:
        Path(ctx.settings["gate"]).write_text("open")
    return na("NO_SIGNIFICANT_EFFECT", "decided nothing")
"""


def fleet(make_plugin: MakePlugin, gate: Path) -> None:
    setting = {"gate": {"type": "str", "default": str(gate)}}
    for i in range(1, 7):
        make_plugin(f"e{i}", lane="explanation", code=WAITS_FOR_GATE, settings=setting)
    for i in range(1, 4):
        make_plugin(
            f"d{i}",
            code=CHAIN,
            depends_on=[f"d{i - 1}"] if i > 1 else [],
            settings={**setting, "opens_gate": {"type": "bool", "default": i == 3}},
        )


async def test_the_decision_chain_ends_before_a_fourth_explanation_starts(
    tmp_path: Path, plugins_dir: Path, make_plugin: MakePlugin, dataset: Path
) -> None:
    gate = tmp_path / "gate"
    fleet(make_plugin, gate)
    async with Engine(
        plugins_dir=plugins_dir, runs_dir=tmp_path / "runs", workers=2, cache=False
    ) as engine:
        result = await engine.run(dataset, mode="two_lane_strict")
    events = read_log(Path(result.run_dir) / "events.jsonl")
    order = [
        (type(e).__name__, e.plugin_id)
        for e in events
        if isinstance(e, PluginStarted | PluginFinished)
    ]
    d3_started = order.index(("PluginStarted", "d3"))
    explanations_started = [
        i for i, (kind, pid) in enumerate(order) if kind == "PluginStarted" and pid[0] == "e"
    ]
    assert len(explanations_started) == 6
    # At most one explanation plugin ran beside the chain (on the other worker). Until d3
    # starts no explanation can end (the gate is shut), so a second one started before
    # it took a worker the chain was ready for. (Counted against d3's start, not its
    # end: once d3 has opened the gate, an explanation may end, and the next start,
    # before d3's own end is recorded.)
    assert sum(i < d3_started for i in explanations_started) <= 1, order
    assert {p.id: p.explanation for p in result.report.plugins if p.id[0] == "e"} == {
        f"e{i}": "explained nothing" for i in range(1, 7)
    }


QUICK = """
from contracts import na

def run(ctx):
    return na("NO_SIGNIFICANT_EFFECT", "quick")
"""


def remember_durations(runs_dir: Path, durations: dict[str, float]) -> None:
    """Results from earlier runs, as the cache holds them (only their run time matters
    here: their keys match nothing, so every plugin runs again)."""
    from contracts import Na
    from engine._core.api import CACHE_DIR
    from engine._core.cache import CachedResult, CacheKey, ResultCache

    store = ResultCache(runs_dir / CACHE_DIR)
    result = Na(reason_code="NO_SIGNIFICANT_EFFECT", explanation="earlier")
    for pid, seconds in durations.items():
        key = CacheKey(plugin_id=pid, parts={"code": "earlier"}, key=f"earlier-{pid}")
        store.put(key, CachedResult(result=result, duration_s=seconds))
    store.close()


async def test_ties_in_priority_go_to_the_longest_expected_chain(
    tmp_path: Path, plugins_dir: Path, make_plugin: MakePlugin, dataset: Path
) -> None:
    # Same lane, same priority, no dependencies between the chains: plan order
    # alone would be fixed by the seeded tie-break. History says "slow" heads the
    # longest chain (3 s + its dependent's 2 s), then "mid" (4 s), then "quick".
    make_plugin("quick", code=QUICK)
    make_plugin("mid", code=QUICK)
    make_plugin("slow", code=QUICK)
    make_plugin("after_slow", code=QUICK, depends_on=["slow"])
    runs = tmp_path / "runs"
    remember_durations(runs, {"quick": 0.1, "mid": 4.0, "slow": 3.0, "after_slow": 2.0})
    async with Engine(plugins_dir=plugins_dir, runs_dir=runs, workers=1) as engine:
        informed = await engine.run(dataset)
    async with Engine(plugins_dir=plugins_dir, runs_dir=tmp_path / "fresh", workers=1) as engine:
        plain = await engine.run(dataset)

    def dispatched(result: RunResult) -> list[str]:
        events = read_log(Path(result.run_dir) / "events.jsonl")
        return [e.plugin_id for e in events if isinstance(e, PluginDispatched)]

    # One worker, one job written ahead: "slow" and "mid" go out; when "slow" ends,
    # "after_slow" (a 2 s chain) is ready and goes before "quick" (0.1 s).
    assert dispatched(informed) == ["slow", "mid", "after_slow", "quick"]
    assert informed.state.plan is not None and plain.state.plan is not None
    # Without history: plan order. The plan itself never depends on history.
    assert dispatched(plain) == [s.plugin_id for s in plain.state.plan.steps]
    assert informed.report.plan_hash == plain.report.plan_hash
