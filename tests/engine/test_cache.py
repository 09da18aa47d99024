"""The fingerprint cache: every miss reason, upstream invalidation, no stale hits."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.events import CacheHit, CacheMiss
from engine import Engine, RunResult, read_log

from .conftest import MakePlugin

pytestmark = pytest.mark.anyio

TUNED = """
from contracts import Finding, ok
from .helpers import FACTOR
def run(ctx):
    value = FACTOR * ctx.settings["k"] * ctx.data.rows
    return ok(findings=[Finding(kind="tuned_kind", title=f"value {value}", target="t",
                                recommendation="r")], metrics={"value": value})
"""


async def _run(plugins: Path, runs: Path, dataset: Path, **kw: object) -> RunResult:
    cache = bool(kw.pop("cache", True))
    settings = kw.pop("settings", None)
    async with Engine(
        plugins_dir=plugins,
        runs_dir=runs,
        workers=2,
        cache=cache,
        settings=settings,  # type: ignore[arg-type]
    ) as engine:
        return await engine.run(dataset, **kw)  # type: ignore[arg-type]


def _cache_events(result: RunResult) -> dict[str, str]:
    out = {}
    for event in read_log(result.run_dir / "events.jsonl"):
        if isinstance(event, CacheHit):
            out[event.plugin_id] = "hit"
        elif isinstance(event, CacheMiss):
            out[event.plugin_id] = event.reason
    return out


@pytest.fixture
def fleet(make_plugin: MakePlugin, plugins_dir: Path) -> Path:
    make_plugin(
        "tuned",
        lane="explanation",
        downstream=["consumer"],
        code=TUNED,
        files={"helpers.py": "FACTOR = 2\n"},
        settings={"k": {"type": "int", "default": 3}},
        finding_kinds=["tuned_kind"],
    )
    make_plugin("consumer", depends_on=["tuned"])
    make_plugin("broken", code="def run(ctx):\n    raise RuntimeError('x')\n")
    return plugins_dir


async def test_every_miss_reason_and_no_stale_hit(
    fleet: Path, dataset: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    cold = await _run(fleet, runs, dataset)
    assert _cache_events(cold) == {"tuned": "absent", "consumer": "absent", "broken": "absent"}

    warm = await _run(fleet, runs, dataset)
    # Failed results are never cached: the failing plugin runs again.
    assert _cache_events(warm) == {"tuned": "hit", "consumer": "hit", "broken": "absent"}
    assert [(p.id, p.status, p.findings, p.metrics) for p in warm.report.plugins] == [
        (p.id, p.status, p.findings, p.metrics) for p in cold.report.plugins
    ]
    assert warm.state.plugins["tuned"].cached

    # A change in a helper file (not plugin.py) invalidates the plugin and everything downstream.
    (fleet / "tuned" / "helpers.py").write_text("FACTOR = 5\n")
    changed = await _run(fleet, runs, dataset)
    assert _cache_events(changed)["tuned"] == "code_changed"
    assert _cache_events(changed)["consumer"] == "upstream_changed"
    tuned = next(p for p in changed.report.plugins if p.id == "tuned")
    assert tuned.metrics["value"] == 5 * 3 * 40  # the new code really ran

    settings = await _run(fleet, runs, dataset, settings={"tuned": {"k": 4}})
    assert _cache_events(settings)["tuned"] == "settings_changed"

    seeded = await _run(fleet, runs, dataset, seed=99)
    assert _cache_events(seeded)["tuned"] == "seed_changed"

    legacy = await _run(fleet, runs, dataset, mode="legacy")
    assert _cache_events(legacy)["tuned"] == "policy_changed"

    other = tmp_path / "other.csv"
    other.write_text(dataset.read_text() + "jx,p9,1.0,2024-01-02 00:00:00,2024-01-02 01:00:00\n")
    moved = await _run(fleet, runs, other)
    assert _cache_events(moved)["tuned"] == "dataset_changed"
    tuned = next(p for p in moved.report.plugins if p.id == "tuned")
    assert tuned.metrics["value"] == 5 * 3 * 41


async def test_no_cache_runs_everything(fleet: Path, dataset: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    await _run(fleet, runs, dataset)
    again = await _run(fleet, runs, dataset, cache=False)
    assert _cache_events(again) == {}
    assert not any(r.cached for r in again.state.plugins.values())


async def test_concurrent_runs_share_the_cache(fleet: Path, dataset: Path, tmp_path: Path) -> None:
    import anyio

    runs = tmp_path / "runs"
    results: list[RunResult] = []

    async def one(seed: int) -> None:
        results.append(await _run(fleet, runs, dataset, seed=seed))

    async with anyio.create_task_group() as tg:  # two engines, two SQLite connections
        for seed in (1, 2):
            tg.start_soon(one, seed)
    assert len(results) == 2
    warm = [await _run(fleet, runs, dataset, seed=seed) for seed in (1, 2)]
    for result in warm:
        assert _cache_events(result)["tuned"] == "hit"
