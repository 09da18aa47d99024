"""What a resume continues with: the run as its log recorded it (mode, seed, selection,
settings, lanes, timeouts, limits, cache), never the resuming engine's own settings;
and the refusals, each naming what changed, after which the log is free again.

Runs on the inline executor (plugins in-process): each run takes a fraction of a
second. The resumed runs' plugins report what they were given, so the recorded
settings are seen where they act, not only in the rebuilt spec."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from contracts import Ok
from contracts.events import Event, PluginFinished, RunResumed, RunStarted
from contracts.plan import Mode
from engine import ConfigError, Engine, RunResult, read_log
from engine._core.cache import RunCache
from engine._core.eventlog import EventLog
from engine._core.supervisor import plugin_seed

from .conftest import MakePlugin

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the rules here are the engine's, not the backend's


GIVEN = """
from contracts import Finding, ok
def run(ctx):
    return ok(findings=[Finding(kind="{pid}_kind", title="{pid}", target="t", what="w",
                                why="y", recommendation="r")],
              metrics={{"settings": dict(ctx.settings), "seed": ctx.seed,
                        "upstream": sorted(ctx.upstream)}})
"""

# What the run is started with: nothing left at its default.
STARTED: dict[str, Any] = {
    "settings": {"b": {"k": 1}},
    "large_dataset_rows": 7,
    "lanes": {"b": "explanation"},
    "timeouts": {"a": 30.0},
    "stall_timeout_s": 600.0,
    "memory_limit_mb": 256,
}
# The resuming engine's own, all different.
OTHER: dict[str, Any] = {
    "settings": {"b": {"k": 2}},
    "large_dataset_rows": 5,
    "lanes": {},
    "timeouts": {"a": 40.0},
    "stall_timeout_s": 500.0,
    "memory_limit_mb": 999,
    "mode": "legacy",
}


K = {"k": {"type": "int", "default": 0}}


def make_b(make_plugin: MakePlugin, **fields: Any) -> None:
    make_plugin("b", depends_on=["a"], settings=K, code=GIVEN.format(pid="b"), **fields)


def fleet(make_plugin: MakePlugin) -> None:
    make_plugin("a", lane="explanation", downstream=["b"], code=GIVEN.format(pid="a"))
    make_b(make_plugin)
    make_plugin("c", code=GIVEN.format(pid="c"))  # not selected


def engine(plugins_dir: Path, runs: Path, **kwargs: Any) -> Engine:
    return Engine(plugins_dir=plugins_dir, runs_dir=runs, executor="inline", **kwargs)


def cut_after(log: Path, pid: str) -> list[Event]:
    """The log cut right after ``pid``'s end, as if the engine died there."""
    events = read_log(log)
    end = next(
        i for i, e in enumerate(events) if isinstance(e, PluginFinished) and e.plugin_id == pid
    )
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[: end + 1]))
    return events[: end + 1]


def rewrite(log: Path, events: list[Event], **started: Any) -> None:
    """The log written again from ``events``, its ``run_started`` record changed (as an
    older engine, which recorded fewer fields, would have written it)."""
    log.unlink()
    new = EventLog(log)
    for e in events:
        if isinstance(e, RunStarted):
            e = msgspec.structs.replace(e, **started)
        fields = msgspec.structs.asdict(e)
        for chain in ("seq", "prev", "wall", "mono"):
            del fields[chain]
        new.append(type(e), **fields)
    new.close()


async def cut_run(
    make_plugin: MakePlugin,
    plugins_dir: Path,
    runs: Path,
    dataset: Path,
    mode: Mode = "two_lane_strict",
) -> tuple[RunResult, Path, list[Event]]:
    """The fleet run whole with the ``STARTED`` settings, then its log cut after a's
    end: the run, its log and the events kept."""
    fleet(make_plugin)
    async with engine(plugins_dir, runs, **STARTED) as eng:
        whole = await eng.run(dataset, seed=9, select=["b", "a"], mode=mode, run_id="r1")
    log = whole.run_dir / "events.jsonl"
    return whole, log, cut_after(log, "a")


async def test_a_resume_continues_the_run_as_it_was_started(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    whole, log, kept = await cut_run(make_plugin, plugins_dir, runs, dataset)
    async with engine(plugins_dir, runs, **OTHER) as other:
        spec, state = other._resume_spec(whole.run_dir, read_log(log))
        assert (spec.run_id, spec.run_dir, spec.mode, spec.seed) == (
            "r1",
            whole.run_dir,
            "two_lane_strict",
            9,
        )
        assert spec.plugins_dir == str(plugins_dir) and sorted(spec.plugins) == ["a", "b", "c"]
        assert spec.select == ("a", "b")
        assert spec.settings == {"b": {"k": 1}} and spec.large_dataset_rows == 7
        assert spec.lanes == {"b": "explanation"} and spec.timeouts == {"a": 30.0}
        assert (spec.stall_timeout_s, spec.worker_memory_mb) == (600.0, 256)
        assert isinstance(spec.cache, RunCache)  # recorded on, and this engine keeps one
        assert spec.dataset == whole.state.started.dataset  # type: ignore[union-attr]
        assert spec.plan == whole.state.plan and state.plan == whole.state.plan
        assert [p.step.plugin_id for p in state.plugins.values() if p.finished_wall] == ["a"]
        resumed = await other.resume(whole.run_dir)
    again = read_log(log)
    assert again[: len(kept)] == kept
    first = again[len(kept)]
    assert isinstance(first, RunResumed) and first.pending == ("b",)
    b = next(e for e in again if isinstance(e, PluginFinished) and e.plugin_id == "b")
    assert isinstance(b.result, Ok) and b.lane == "explanation"  # the recorded lane
    assert b.result.metrics == {
        "settings": {"k": 1},
        "seed": plugin_seed(9, "b"),
        "upstream": ["a"],
    }
    assert [(p.id, p.status) for p in resumed.report.plugins] == [("a", "ok"), ("b", "ok")]
    assert resumed.report.plugins == whole.report.plugins


async def test_the_recorded_cache_setting_holds_and_an_older_log_takes_the_engines(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    whole, log, events = await cut_run(make_plugin, plugins_dir, runs, dataset, mode="legacy")
    async with engine(plugins_dir, runs, cache=False) as uncached:  # in strict mode
        spec, _ = uncached._resume_spec(whole.run_dir, events)
        assert spec.mode == "legacy" and spec.plan == whole.state.plan
        assert spec.cache is None  # this engine keeps no cache
    rewrite(log, events, cache=False)
    async with engine(plugins_dir, runs, **OTHER) as other:
        spec, _ = other._resume_spec(whole.run_dir, read_log(log))
        assert spec.cache is None  # the run was started without one
        assert (spec.stall_timeout_s, spec.worker_memory_mb) == (600.0, 256)
        # Recorded without limits or cache (an older engine): this engine's apply.
        rewrite(log, events, cache=None, stall_timeout_s=None, worker_memory_mb=None)
        spec, _ = other._resume_spec(whole.run_dir, read_log(log))
        assert (spec.stall_timeout_s, spec.worker_memory_mb) == (500.0, 999)
        assert isinstance(spec.cache, RunCache)
        # `None` recorded beside a stall timeout is a value: no memory cap.
        rewrite(log, events, worker_memory_mb=None)
        spec, _ = other._resume_spec(whole.run_dir, read_log(log))
        assert (spec.stall_timeout_s, spec.worker_memory_mb) == (600.0, None)
    # The older log with an engine whose stall timeout is not above b's plugin
    # timeout (the default): refused, as a new run would be.
    rewrite(log, events, stall_timeout_s=None)
    async with engine(plugins_dir, runs, stall_timeout_s=300.0) as short:
        with pytest.raises(ConfigError) as refused:
            await short.resume(whole.run_dir)
    assert str(refused.value) == (
        "timeouts: b (300s) not below stall_timeout_s (300s); "
        "lower the plugin timeouts or raise stall_timeout_s"
    )


async def test_refusals_name_what_changed_and_free_the_log(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    whole, _, _ = await cut_run(make_plugin, plugins_dir, runs, dataset)
    recorded = whole.state.plan
    assert recorded is not None
    async with engine(plugins_dir, runs) as eng:
        # A plugin's manifest changed: another plan.
        make_b(make_plugin, version="2.0")
        with pytest.raises(ConfigError) as refused:
            await eng.resume(whole.run_dir)
        message = str(refused.value)
        prefix = (
            f"{whole.run_dir}: plugins or settings changed since the run started "
            f"(plan {recorded.plan_hash[:12]} is now "
        )
        assert message.startswith(prefix)
        now = message[len(prefix) :]
        assert re.fullmatch(r"[0-9a-f]{12}\); start a new run", now)
        assert not recorded.plan_hash.startswith(now[:12])
        make_b(make_plugin)  # as it was

        # The normalized dataset is gone and its source changed: not the same data.
        db = Path(whole.state.started.dataset.db_path)  # type: ignore[union-attr]
        db.unlink()
        source = dataset.read_text()
        dataset.write_text(source.replace("j39,", "j99,"))
        with pytest.raises(ConfigError) as refused:
            await eng.resume(whole.run_dir)
        assert str(refused.value) == (
            f"{dataset}: the dataset changed since the run started; start a new run"
        )
        # The same source: normalized again, and the run continues. Each refusal closed
        # the log (it is locked while open): this engine reopens it.
        dataset.write_text(source)
        resumed = await eng.resume(whole.run_dir)
        assert db.is_file()
    assert resumed.report.plugins == whole.report.plugins
    assert resumed.state.started.dataset.fingerprint == whole.state.started.dataset.fingerprint  # type: ignore[union-attr]

    # A log with no run_started record: nothing to continue.
    empty = runs / "empty"
    empty.mkdir()
    (empty / "events.jsonl").write_bytes(b"")
    async with engine(plugins_dir, runs) as eng:
        with pytest.raises(ConfigError) as refused:
            await eng.resume(empty)
    assert str(refused.value) == (
        f"{empty / 'events.jsonl'}: the log has no run_started record; start a new run"
    )
