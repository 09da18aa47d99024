"""The fingerprint cache: every miss reason, upstream invalidation, no stale hits."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

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
    lanes = kw.pop("lanes", None)
    async with Engine(
        plugins_dir=plugins,
        runs_dir=runs,
        workers=2,
        cache=cache,
        settings=settings,  # type: ignore[arg-type]
        lanes=lanes,  # type: ignore[arg-type]
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

    # A lane override is part of the policy component.
    moved_lane = await _run(fleet, runs, dataset, lanes={"consumer": "explanation"})
    assert _cache_events(moved_lane)["consumer"] == "policy_changed"
    assert _cache_events(moved_lane)["tuned"] == "hit"

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


MEETS = """
import time
from pathlib import Path
from contracts import Finding, ok
def run(ctx):
    # A barrier across the two runs: each says it is here and waits for the other,
    # so the two engines (two SQLite connections) are mid-run at the same time.
    here = Path(ctx.settings["dir"])
    (here / ctx.run_id).touch()
    deadline = time.monotonic() + 60
    while len(list(here.iterdir())) < 2:
        if time.monotonic() > deadline:
            raise TimeoutError("the other run never arrived")
        time.sleep(0.005)
    return ok(findings=[Finding(kind="meets_kind", title="met", target="t", recommendation="r")])
"""


async def test_concurrent_runs_share_the_cache(
    fleet: Path, make_plugin: MakePlugin, dataset: Path, tmp_path: Path
) -> None:
    import anyio

    meeting = tmp_path / "meeting"
    meeting.mkdir()
    make_plugin("meets", code=MEETS, settings={"dir": {"type": "str", "default": str(meeting)}})
    runs = tmp_path / "runs"
    results: dict[int, RunResult] = {}

    async def one(seed: int) -> None:
        results[seed] = await _run(fleet, runs, dataset, seed=seed, run_id=f"seed-{seed}")

    async with anyio.create_task_group() as tg:  # two engines, two SQLite connections
        for seed in (1, 2):
            tg.start_soon(one, seed)
    assert sorted(p.name for p in meeting.iterdir()) == ["seed-1", "seed-2"]
    for result in results.values():
        assert _cache_events(result) == {
            "tuned": "absent",
            "consumer": "absent",
            "broken": "absent",
            "meets": "absent",
        }
    # Both engines' results were stored, each under its own seed.
    for seed in (1, 2):
        warm = await _run(fleet, runs, dataset, seed=seed)
        assert _cache_events(warm) == {
            "tuned": "hit",
            "consumer": "hit",
            "broken": "absent",
            "meets": "hit",
        }


async def test_engine_code_and_library_versions_are_in_the_key(
    fleet: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A result computed by other engine code or other library versions is never a
    hit: each shows as its own miss reason."""
    from engine._core import cache

    runs = tmp_path / "runs"
    await _run(fleet, runs, dataset)
    real = cache.environment()
    monkeypatch.setattr(cache, "environment", lambda: {**real, "numpy": "0.0.1"})
    numpy_moved = await _run(fleet, runs, dataset)
    assert _cache_events(numpy_moved)["tuned"] == "environment_changed"
    monkeypatch.setattr(cache, "environment", lambda: real)
    monkeypatch.setattr(cache, "engine_code_hash", lambda: "other engine code")
    engine_moved = await _run(fleet, runs, dataset)
    assert _cache_events(engine_moved)["tuned"] == "engine_changed"


def test_the_engine_code_hash_covers_every_worker_source(tmp_path: Path) -> None:
    import shutil

    from engine._core.cache import WORKER_DIR, engine_code_hash

    copy = tmp_path / "worker"
    shutil.copytree(WORKER_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert engine_code_hash(copy) == engine_code_hash(WORKER_DIR)
    reader = copy / "reader.py"
    reader.write_bytes(reader.read_bytes() + b"\n")
    assert engine_code_hash.__wrapped__(copy) != engine_code_hash(WORKER_DIR)  # not the memo


def test_the_schema_and_every_component_name_their_miss(tmp_path: Path) -> None:
    import msgspec

    from contracts import ColumnInfo, DatasetInfo, PlanStep
    from engine._core.cache import COMPONENTS, ResultCache, RunCache, make_key

    step = PlanStep(
        plugin_id="p",
        version="1",
        lane="decision",
        manifest_lane="decision",
        order=0,
        depth=0,
        priority=0,
        code_hash="c",
    )
    column = ColumnInfo(name="x", dtype="DOUBLE", role="numeric")
    info = DatasetInfo(source="d.csv", fingerprint="f", rows=3, columns=(column,))
    key = make_key(step, mode="two_lane_strict", dataset=info, seed=1, upstream_keys=[])
    store = ResultCache(tmp_path / "cache")
    from contracts import ok

    RunCache(store, ["p"]).store(key, ok(metrics={"a": 1}), (), 0.1)
    store.flush()
    same_bytes_other_roles = msgspec.structs.replace(
        info, columns=(msgspec.structs.replace(column, role="identifier"),)
    )
    schema_key = make_key(
        step, mode="two_lane_strict", dataset=same_bytes_other_roles, seed=1, upstream_keys=[]
    )
    run = RunCache(store, ["p"])
    assert run.lookup(key)[1] == "hit"
    assert run.lookup(schema_key) == (None, "schema_changed")
    # Every component is a reason of its own.
    for name, reason in COMPONENTS:
        parts = {**key.parts, name: key.parts[name] + "x"}
        changed = type(key)(plugin_id="p", parts=parts, key=key.key + name)
        assert run.lookup(changed) == (None, reason)
    store.close()


def test_the_key_and_its_policy_component_follow_their_definitions() -> None:
    """The policy component is ``lane-policy version:mode:step lane``, so a lane
    override (the step's lane) changes the key and is named ``policy_changed``; the key
    is the SHA-256 of the canonical JSON of the plugin id and every component."""
    import hashlib
    import json

    import msgspec

    from contracts import ColumnInfo, DatasetInfo, PlanStep, stable_hash
    from engine._core.cache import environment, make_key
    from engine._core.plan import LANE_POLICY_VERSION

    step = PlanStep(
        plugin_id="p",
        version="1",
        lane="decision",
        manifest_lane="decision",
        order=0,
        depth=0,
        priority=0,
        code_hash="c",
        settings={"k": 2},
    )
    info = DatasetInfo(
        source="d.csv",
        fingerprint="f",
        rows=3,
        columns=(ColumnInfo(name="x", dtype="DOUBLE", role="numeric"),),
    )

    def key(s: PlanStep, mode: str = "two_lane_strict", up: tuple[str, ...] = ("a", "b")) -> Any:
        return make_key(s, mode=mode, dataset=info, seed=7, upstream_keys=up)

    base = key(step)
    assert base.parts["policy"] == f"{LANE_POLICY_VERSION}:two_lane_strict:decision"
    assert (base.parts["code"], base.parts["dataset"], base.parts["seed"]) == ("c", "f", "7")
    assert base.parts["settings"] == hashlib.sha256(b'{"k":2}').hexdigest()
    assert base.parts["environment"] == stable_hash(environment())
    assert base.parts["upstream"] == hashlib.sha256(b'["a","b"]').hexdigest()
    canonical = json.dumps({"plugin_id": "p", **base.parts}, sort_keys=True, separators=(",", ":"))
    assert base.key == hashlib.sha256(canonical.encode()).hexdigest()
    moved = key(msgspec.structs.replace(step, lane="explanation"))
    assert moved.parts["policy"] == f"{LANE_POLICY_VERSION}:two_lane_strict:explanation"
    assert moved.key != base.key and moved.differing(base) == ["policy_changed"]
    assert key(step, mode="legacy").differing(base) == ["policy_changed"]
    assert key(step, up=("b", "a")).key == base.key  # upstream order does not matter
    assert key(step, up=("a",)).differing(base) == ["upstream_changed"]


def _unit_key(plugin_id: str = "p", **changed: str) -> Any:
    from engine._core.cache import COMPONENTS, CacheKey

    parts = {name: f"{name}-0" for name, _ in COMPONENTS}
    parts.update(changed)
    return CacheKey(plugin_id=plugin_id, parts=parts, key=f"{plugin_id}:{sorted(parts.items())}")


def test_the_store_keeps_what_is_flushed_and_prunes_the_oldest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    from contracts import DataAccess, ok
    from engine._core import cache
    from engine._core.cache import CachedResult, ResultCache, RunCache

    # Each flush is stamped one second after the one before: "newest" is by that.
    clock = iter(range(1000, 2000))
    monkeypatch.setattr(cache, "time", types.SimpleNamespace(time=lambda: float(next(clock))))

    store = ResultCache(tmp_path / "runs" / "not yet" / "cache")  # its parents are made
    assert (tmp_path / "runs" / "not yet" / "cache" / ".cache.lock").is_file()
    store.close()
    store = ResultCache(tmp_path / "cache")
    assert store.stats() == {"entries": 0, "plugins": 0, "payload_bytes": 0}
    run = RunCache(store, ["p", "q"])
    assert run.lookup(_unit_key()) == (None, "absent")
    run.store(_unit_key(), ok(metrics={"a": 1}), (DataAccess(kind="sql", rows=3),), 0.25)
    assert store.stats()["entries"] == 0  # nothing written before the flush
    run.flush()
    RunCache(store, ["p"]).store(_unit_key(code="code-1"), ok(metrics={"a": 2}), (), 0.5)
    store.flush()
    store.put(_unit_key("q"), CachedResult(result=ok()))
    store.close()  # flushes what is pending

    store = ResultCache(tmp_path / "cache")
    stats = store.stats()
    assert (stats["entries"], stats["plugins"]) == (3, 2) and stats["payload_bytes"] > 0
    preloaded = store.preload(["q", "p", "p"])
    assert sorted(preloaded) == ["p", "q"]
    assert [k.plugin_id for k, _ in preloaded["p"]] == ["p", "p"]
    # 501 plugins are read in two queries: every entry once, the 501st too
    many = store.preload([f"a{i:03d}" for i in range(499)] + ["q", "p"])
    assert (len(many), len(many["p"]), len(many["q"]), many["a000"]) == (501, 2, 1, [])
    assert [k.parts["code"] for k, _ in preloaded["p"]] == ["code-1", "code-0"]  # newest first
    run = RunCache(store, ["p", "q", "r"])
    # each plugin's newest result's run time; r has none
    assert run.expected_durations() == {"p": 0.5, "q": 0.0}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # the preparing thread's use
        assert pool.submit(store.stats).result()["entries"] == 3
    cached, why = run.lookup(_unit_key())
    assert why == "hit" and cached is not None
    assert (cached.result, cached.accesses, cached.duration_s) == (
        ok(metrics={"a": 1}),
        (DataAccess(kind="sql", rows=3),),
        0.25,
    )
    assert store.prune(keep_per_plugin=2) == 0  # p has two entries, q one
    assert store.prune() == 1  # by default, each plugin keeps its newest entry
    assert store.stats()["entries"] == 2
    assert RunCache(store, ["p"]).lookup(_unit_key())[1] == "code_changed"  # the older went
    store.close()


def test_a_miss_is_named_by_the_closest_entry() -> None:
    from engine._core.cache import RunCache

    run = RunCache.__new__(RunCache)
    # Two stored entries: one differs in settings and seed, one only in the dataset.
    run._entries = {
        "p": [
            (_unit_key(settings="s-1", seed="seed-1"), b""),
            (_unit_key(dataset="d-1"), b""),
        ]
    }
    assert run.lookup(_unit_key())[1] == "dataset_changed"
    # the fewest components, not the first reason: upstream alone beats code and seed
    run._entries = {
        "p": [
            (_unit_key(code="c-1", seed="seed-1"), b""),
            (_unit_key(upstream="u-1"), b""),
        ]
    }
    assert run.lookup(_unit_key())[1] == "upstream_changed"
    # Same components but another key (an older key formula): named by upstream.
    run._entries = {"p": [(_unit_key(), b"")]}
    other = _unit_key()
    object.__setattr__(other, "key", "another")
    assert run.lookup(other) == (None, "upstream_changed")
    assert run.lookup(_unit_key("nobody")) == (None, "absent")


def test_what_is_cached_and_the_schema_hash() -> None:
    import msgspec

    from contracts import ColumnInfo, DatasetInfo, Failed, Na, ok
    from engine._core.cache import cacheable, environment, schema_hash

    assert cacheable(ok(), ran=True) and cacheable(Na(reason_code="X", explanation="x"), ran=True)
    assert not cacheable(Failed(reason_code="PLUGIN_ERROR"), ran=True)
    assert not cacheable(ok(), ran=False)
    info = DatasetInfo(
        source="a.csv",
        fingerprint="f",
        rows=3,
        columns=(ColumnInfo(name="x", dtype="DOUBLE", role="numeric", null_count=1),),
        event_roles={"case": "x"},
    )
    elsewhere = msgspec.structs.replace(info, source="b.csv", rows=9, db_path="/x")
    assert schema_hash(info) == schema_hash(elsewhere)  # not the counts, not the paths
    assert schema_hash(info) != schema_hash(msgspec.structs.replace(info, event_roles={}))
    # Its definition: the stable hash of the schema view and the event-log roles.
    from contracts import stable_hash

    assert schema_hash(info) == stable_hash(
        {"columns": info.schema_view(), "event_roles": {"case": "x"}}
    )
    found = environment()
    assert found["python"].split()[0] in {"CPython", "PyPy"}
    assert set(found) >= {"python", "machine", "numpy", "duckdb", "lifelines"}
    assert found["lifelines"] in {"absent"} or found["lifelines"][0].isdigit()


def test_a_run_cache_computes_the_per_process_key_parts_before_the_loop_needs_them(
    tmp_path: Path,
) -> None:
    """The worker sources' hash and the libraries' versions take tens of milliseconds
    the first time; a run's cache is built in the preparing thread and computes them
    there, so the first key the supervisor makes on the event loop finds them done."""
    from engine._core.cache import ResultCache, RunCache, engine_code_hash, environment

    engine_code_hash.cache_clear()
    environment.cache_clear()
    store = ResultCache(tmp_path / "cache")
    try:
        RunCache(store, ["p"])
        assert engine_code_hash.cache_info().currsize == 1
        assert environment.cache_info().currsize == 1
    finally:
        store.close()
