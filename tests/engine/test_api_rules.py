"""The engine API's rules that need no run: run ids, the timeout check, planning
without a run and the background close of a run's log."""

from __future__ import annotations

import os
import re
from pathlib import Path

import anyio
import pytest

from contracts import Plan, PlanStep
from contracts.events import Event
from engine import ConfigError, EngineError, build_plan, ingest, load_plugins, prepare_plan
from engine._core.api import (
    RunHandle,
    _BackgroundClose,
    check_run_id,
    check_timeouts,
    new_run_id,
)
from engine._core.eventlog import EventLog

from ..telemetry.conftest import synthetic_events
from .conftest import write_plugin


def test_new_run_ids_are_utc_stamps_with_a_random_tail_and_valid() -> None:
    first, second = new_run_id(), new_run_id()
    for run_id in (first, second):
        assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", run_id), run_id
        assert check_run_id(run_id) == run_id
    assert first != second


def test_a_refused_run_id_says_what_is_allowed() -> None:
    assert check_run_id("A.b_c-1") == "A.b_c-1"
    with pytest.raises(ConfigError) as info:
        check_run_id("a/b")
    assert str(info.value) == (
        "run id 'a/b': use letters, digits, '.', '_' or '-' (no path separators)"
    )


def _plan(*timeouts: float) -> Plan:
    steps = tuple(
        PlanStep(
            plugin_id=f"p{i}",
            version="1",
            lane="decision",
            manifest_lane="decision",
            order=i,
            depth=0,
            priority=0,
            timeout_s=t,
        )
        for i, t in enumerate(timeouts)
    )
    return Plan(
        mode="two_lane_strict",
        seed=0,
        dataset_schema_hash="h",
        lane_policy_version="1",
        steps=steps,
    )


def test_a_timeout_must_be_below_the_stall_timeout() -> None:
    check_timeouts(_plan(59.5, 1.0), 60.0)
    with pytest.raises(ConfigError) as info:
        check_timeouts(_plan(1.0, 60.0, 90.5), 60.0)
    assert str(info.value) == (
        "timeouts: p1 (60s), p2 (90.5s) not below stall_timeout_s (60s); "
        "lower the plugin timeouts or raise stall_timeout_s"
    )


def test_prepare_plan_passes_every_choice_to_the_plan(tmp_path: Path) -> None:
    for pid in ("a", "b", "c"):
        write_plugin(tmp_path, pid, settings={"k": {"type": "int", "default": 1}})
    plan = prepare_plan(
        tmp_path,
        seed=9,
        select=["a", "b"],
        settings={"a": {"k": 2}},
        lanes={"b": "explanation"},
        timeouts={"a": 7.0},
    )
    assert (plan.mode, plan.seed) == ("two_lane_strict", 9)
    steps = {s.plugin_id: s for s in plan.steps}
    assert sorted(steps) == ["a", "b"]
    assert (steps["a"].settings, steps["b"].settings) == ({"k": 2}, {"k": 1})
    assert (steps["a"].lane, steps["b"].lane) == ("decision", "explanation")
    assert (steps["a"].timeout_s, steps["b"].timeout_s) == (7.0, 300.0)
    legacy = prepare_plan(tmp_path, mode="legacy")
    assert (legacy.mode, legacy.seed) == ("legacy", 0)
    assert [s.lane for s in legacy.steps] == ["legacy"] * 3


def test_a_plan_for_a_dataset_carries_its_schema(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "a")
    csv = tmp_path / "d.csv"
    csv.write_text("x,y\n1,a\n2,b\n")
    info = ingest(csv, tmp_path / "cache")
    with_schema = prepare_plan(plugins, info).dataset_schema_hash
    expected = build_plan(load_plugins(plugins), dataset_schema=info.schema_view())
    assert with_schema == expected.dataset_schema_hash
    assert with_schema != prepare_plan(plugins).dataset_schema_hash


def test_a_run_handle_streams_its_events_and_has_no_result_before_the_end() -> None:
    events = synthetic_events()[:2]

    async def stream() -> list[Event]:
        send, receive = anyio.create_memory_object_stream[Event](len(events))
        with send, receive:
            handle = RunHandle("r1", Path("runs/r1"), receive)
            assert (handle.run_id, handle.run_dir) == ("r1", Path("runs/r1"))
            with pytest.raises(EngineError) as info:
                _ = handle.result
            assert str(info.value) == "run r1 has not finished"
            for event in events:
                send.send_nowait(event)
            send.close()
            return [event async for event in handle]

    assert anyio.run(stream) == events


def test_the_background_close_syncs_the_log_or_keeps_its_error(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    closing = _BackgroundClose(log)
    assert closing.synced() is True
    closing.raise_error()  # nothing to raise
    # A log on a pipe cannot be synced (fsync: EINVAL): the close fails, and says so.
    read_end, write_end = os.pipe()
    try:
        failing = _BackgroundClose(EventLog(tmp_path / "unused", fd=write_end))
        assert failing.synced() is False
        with pytest.raises(OSError):
            failing.raise_error()
    finally:
        os.close(read_end)
