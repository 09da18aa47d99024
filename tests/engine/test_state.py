"""The reducer refuses transitions the engine can never produce, and events cannot
be changed after they are made."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from contracts import DatasetInfo, Na, Ok, Plan, PlanStep, ok
from contracts.dataset import DataAccess, SpanRecord
from contracts.events import (
    CacheHit,
    CacheMiss,
    DataAccessed,
    Event,
    GateEvaluated,
    PlanBuilt,
    PluginDispatched,
    PluginFinished,
    PluginSpan,
    PluginStarted,
    PreflightFailed,
    RunFinished,
    RunResumed,
    RunStarted,
    StallDetected,
)
from contracts.report import QualityGates
from engine import EngineInternalError, NondeterminismError, RunState, apply, fold

STEP = PlanStep(
    plugin_id="p",
    version="1",
    lane="decision",
    manifest_lane="decision",
    order=0,
    depth=0,
    priority=0,
    code_hash="c",
)
DATASET = DatasetInfo(source="d.csv", fingerprint="f", rows=1, columns=())
NA = Na(reason_code="NO_SIGNIFICANT_EFFECT", explanation="x")


HEAD: list[tuple[type[Event], dict[str, Any]]] = [
    (
        RunStarted,
        {
            "run_id": "r",
            "mode": "two_lane_strict",
            "seed": 0,
            "engine_version": "0",
            "contracts_version": "1",
            "dataset": DATASET,
            "plugins_dir": "plugins",
            "executor": "inline",
            "workers": 1,
        },
    ),
    (
        PlanBuilt,
        {
            "plan": Plan(
                mode="two_lane_strict",
                seed=0,
                dataset_schema_hash="s",
                lane_policy_version="1",
                steps=(STEP,),
            )
        },
    ),
]


def chain(*specs: tuple[type[Event], dict[str, Any]]) -> list[Event]:
    """run_started and plan_built (of the one-step plan), then ``specs``."""
    return _bare(*HEAD, *specs)


def _bare(*specs: tuple[type[Event], dict[str, Any]]) -> list[Event]:
    return [
        cls(seq=i, prev="", wall=float(i), mono=float(i), **fields)
        for i, (cls, fields) in enumerate(specs)
    ]


DISPATCHED = (PluginDispatched, {"plugin_id": "p", "lane": "decision"})
STARTED = (PluginStarted, {"plugin_id": "p", "worker": 0, "pid": 1})
FINISHED = (PluginFinished, {"plugin_id": "p", "lane": "decision", "result": NA})
ACCESS = (DataAccessed, {"plugin_id": "p", "access": DataAccess(kind="sql")})
SPAN = (
    PluginSpan,
    {"plugin_id": "p", "span": SpanRecord(index=0, parent=-1, name="s", start_wall=0, end_wall=1)},
)


CACHE_MISS = (CacheMiss, {"plugin_id": "p", "key": "k", "reason": "absent"})
PREFLIGHT = (PreflightFailed, {"plugin_id": "p", "lane": "decision", "result": NA})
FINISHED_NOT_RAN = (
    PluginFinished,
    {"plugin_id": "p", "lane": "decision", "result": NA, "ran": False},
)
GATES = (GateEvaluated, {"gates": QualityGates()})


def test_what_the_fold_records_for_a_plugin_that_ran() -> None:
    result = Ok(metrics={"n": 1})
    finished = (
        PluginFinished,
        {**FINISHED[1], "result": result, "duration_s": 2.5, "downstream_affected": ("q",)},
    )
    state = fold(
        chain(
            CACHE_MISS,
            DISPATCHED,
            STARTED,
            ACCESS,
            SPAN,
            finished,
            GATES,
            (RunFinished, {"status": "ok"}),
        )
    )
    record = state.plugins["p"]
    assert (record.phase, record.result, record.duration_s, record.ran, record.cached) == (
        "done",
        result,
        2.5,
        True,
        False,
    )
    assert (record.worker, record.pid, record.cache) == (0, 1, "absent")
    assert (record.dispatched_wall, record.started_wall, record.finished_wall) == (3.0, 4.0, 7.0)
    assert record.downstream_affected == ("q",) and not record.preflight
    assert record.data_access == [DataAccess(kind="sql")] and len(record.spans) == 1
    assert (state.done, state.outstanding(), state.events, state.last_wall) == (1, 0, 10, 9.0)
    assert state.status_counts() == {"ok": 1, "failed": 0, "na": 0}
    assert state.run_id == "r" and state.gates is not None and state.finished is not None


def test_a_preflight_end_and_a_resume() -> None:
    state = fold(chain(PREFLIGHT))
    record = state.plugins["p"]
    assert (record.phase, record.preflight, record.ran, record.finished_wall) == (
        "done",
        True,
        False,
        2.0,
    )
    assert state.status_counts() == {"ok": 0, "failed": 0, "na": 1}
    resumed = fold(chain(DISPATCHED, STARTED, ACCESS, SPAN, (RunResumed, {"pending": ("p",)})))
    record = resumed.plugins["p"]
    assert (record.phase, record.worker, record.pid, record.data_access, record.spans) == (
        "pending",
        None,
        None,
        [],
        [],
    )
    assert resumed.resumes == 1
    again = fold(chain(DISPATCHED, STARTED, (RunResumed, {}), DISPATCHED, STARTED, FINISHED))
    assert again.plugins["p"].phase == "done" and again.done == 1
    stalled = fold(chain(DISPATCHED, (StallDetected, {"plugins": ("p",), "idle_s": 1.0})))
    assert stalled.stalls == 1 and stalled.plugins["p"].phase == "dispatched"


def test_resume_before_the_plan_and_an_unknown_event_raise() -> None:
    with pytest.raises(NondeterminismError, match="event 1: run_resumed before the plan"):
        fold(_bare(HEAD[0], (RunResumed, {})))
    with pytest.raises(NondeterminismError, match="event 0: plan_built out of place"):
        fold(_bare(HEAD[1]))

    class Stranger:
        seq = 0
        wall = 0.0

    with pytest.raises(EngineInternalError, match="no reducer branch for Stranger"):
        apply(RunState(), Stranger())  # type: ignore[arg-type]


def test_every_transition_the_engine_makes_folds() -> None:
    for path in (
        [DISPATCHED, STARTED, ACCESS, SPAN, FINISHED],  # ran
        [DISPATCHED, FINISHED],  # ended before it began (stalled, no worker)
        [
            (CacheHit, {"plugin_id": "p", "key": "k"}),
            (*FINISHED[:1], {**FINISHED[1], "cached": True}),
        ],
        [(*FINISHED[:1], {**FINISHED[1], "ran": False})],  # upstream failed
        [(PreflightFailed, {"plugin_id": "p", "lane": "decision", "result": NA})],
        [DISPATCHED, STARTED, (StallDetected, {"plugins": ("p",), "idle_s": 1.0}), FINISHED],
    ):
        state = fold(chain(*path))
        assert state.plugins["p"].phase == "done"


@pytest.mark.parametrize(
    ("events", "words"),
    [
        ([STARTED], "PluginStarted for plugin 'p' while it is pending (expected dispatched)"),
        ([DISPATCHED, DISPATCHED], "PluginDispatched for plugin 'p' while it is dispatched"),
        ([DISPATCHED, ACCESS], "DataAccessed for plugin 'p' while it is dispatched"),
        ([DISPATCHED, STARTED, SPAN, STARTED], "PluginStarted for plugin 'p' while it is running"),
        (
            [FINISHED],
            "PluginFinished for plugin 'p' while it is pending (expected dispatched or running)",
        ),
        (
            [DISPATCHED, (*FINISHED[:1], {**FINISHED[1], "cached": True})],
            "event 3: PluginFinished for plugin 'p' while it is dispatched (expected pending)",
        ),
        ([(*FINISHED[:1], {**FINISHED[1], "cached": True})], "without a cache_hit"),
        ([DISPATCHED, (*FINISHED[:1], {**FINISHED[1], "ran": False})], "while it is dispatched"),
        ([DISPATCHED, STARTED, FINISHED, FINISHED], "already finished"),
        ([(StallDetected, {"plugins": ("p",), "idle_s": 1.0})], "StallDetected for plugin 'p'"),
        ([DISPATCHED, (CacheHit, {"plugin_id": "p", "key": "k"})], "CacheHit for plugin 'p'"),
        ([(PluginDispatched, {"plugin_id": "nope", "lane": "decision"})], "not in the plan"),
        ([(RunFinished, {"status": "ok"})], "run_finished with 1 plugins unfinished"),
        ([CACHE_MISS, DISPATCHED, CACHE_MISS], "CacheMiss for plugin 'p' while it is dispatched"),
        ([DISPATCHED, PREFLIGHT], "PreflightFailed for plugin 'p' while it is dispatched"),
        ([DISPATCHED, SPAN], "PluginSpan for plugin 'p' while it is dispatched"),
        ([FINISHED_NOT_RAN, GATES, GATES], "event 4: gate_evaluated out of place"),
        ([GATES], "event 2: gate_evaluated out of place"),
        ([(RunStarted, HEAD[0][1])], "event 2: second run_started"),
        ([(PlanBuilt, HEAD[1][1])], "event 2: plan_built out of place"),
    ],
)
def test_impossible_transitions_raise(
    events: list[tuple[type[Event], dict[str, Any]]], words: str
) -> None:
    with pytest.raises(NondeterminismError, match=words.replace("(", r"\(").replace(")", r"\)")):
        fold(chain(*events))


def test_out_of_sequence_and_after_the_end() -> None:
    events = chain(DISPATCHED)
    with pytest.raises(NondeterminismError, match="event 2 applied after 3 events"):
        fold([*events, events[-1]])
    done = chain(DISPATCHED, STARTED, FINISHED, (RunFinished, {"status": "ok"}))
    extra = RunFinished(seq=len(done), prev="", wall=0, mono=0, status="ok")
    with pytest.raises(NondeterminismError, match="after run_finished"):
        fold([*done, extra])


def test_events_are_deep_immutable_and_share_nothing_with_the_engine() -> None:
    lanes = {"p": "explanation"}
    settings = {"p": {"threshold": [1, 2]}}
    started = chain()[0]
    event = type(started)(
        **{
            **{f: getattr(started, f) for f in started.__struct_fields__},
            "lanes": lanes,
            "settings": settings,
        }
    )
    lanes["q"] = "decision"  # the engine changing its own dict later ...
    settings["p"]["threshold"].append(3)
    assert event.lanes == {"p": "explanation"}  # ... does not reach the event
    assert event.settings == {"p": {"threshold": [1, 2]}}
    with pytest.raises(TypeError, match="cannot be changed"):
        event.lanes["x"] = "y"  # type: ignore[index]
    with pytest.raises(TypeError, match="cannot be changed"):
        event.settings["p"]["threshold"].append(4)
    finished = PluginFinished(
        seq=0,
        prev="",
        wall=0,
        mono=0,
        plugin_id="p",
        lane="decision",
        result=ok(metrics={"xs": [1]}),
    )
    with pytest.raises(TypeError):
        finished.result.metrics["xs"].append(2)  # type: ignore[union-attr]
    with pytest.raises(TypeError):
        event.dataset.event_roles["case"] = "x"


STEP_Q = msgspec.structs.replace(STEP, plugin_id="q", order=1)


def _two(*specs: tuple[type[Event], dict[str, Any]]) -> list[Event]:
    """A chain over a plan of two plugins, p and q."""
    plan = Plan(
        mode="two_lane_strict",
        seed=0,
        dataset_schema_hash="s",
        lane_policy_version="1",
        steps=(STEP, STEP_Q),
    )
    return _bare(HEAD[0], (PlanBuilt, {"plan": plan}), *specs)


def _for(spec: tuple[type[Event], dict[str, Any]], pid: str) -> tuple[type[Event], dict[str, Any]]:
    return spec[0], {**spec[1], "plugin_id": pid}


def test_counts_over_two_plugins_add_up() -> None:
    ok_result = Ok(metrics={"n": 1})
    finished = {**FINISHED[1], "result": ok_result}
    state = fold(
        _two(
            (PreflightFailed, {**PREFLIGHT[1], "downstream_affected": ("q",)}),
            _for(DISPATCHED, "q"),
            _for(STARTED, "q"),
            _for(SPAN, "q"),
            _for(SPAN, "q"),
            (PluginFinished, {**finished, "plugin_id": "q"}),
        )
    )
    assert state.plugins["p"].step == STEP and state.plugins["q"].step == STEP_Q
    assert state.plugins["p"].downstream_affected == ("q",)
    assert state.done == 2 and state.outstanding() == 0
    assert state.status_counts() == {"ok": 1, "failed": 0, "na": 1}
    assert state.plugins["q"].spans == [SPAN[1]["span"], SPAN[1]["span"]]
    both_preflight = fold(_two(PREFLIGHT, _for(PREFLIGHT, "q")))
    assert both_preflight.done == 2 and both_preflight.outstanding() == 0
    both_ran = fold(
        _two(
            DISPATCHED,
            _for(DISPATCHED, "q"),
            (PluginFinished, finished),
            (PluginFinished, {**finished, "plugin_id": "q"}),
        )
    )
    assert both_ran.done == 2 and both_ran.status_counts()["ok"] == 2


def test_a_resume_puts_back_dispatched_and_running_plugins_each_time() -> None:
    state = fold(
        _two(
            DISPATCHED,
            _for(DISPATCHED, "q"),
            _for(STARTED, "q"),
            (StallDetected, {"plugins": ("p", "q"), "idle_s": 1.0}),
            (StallDetected, {"plugins": ("p",), "idle_s": 1.0}),
            (RunResumed, {}),
            DISPATCHED,
            (RunResumed, {}),
        )
    )
    assert (state.plugins["p"].phase, state.plugins["q"].phase) == ("pending", "pending")
    assert (state.resumes, state.stalls) == (2, 2)
