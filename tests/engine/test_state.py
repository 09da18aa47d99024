"""The reducer refuses transitions the engine can never produce, and events cannot
be changed after they are made."""

from __future__ import annotations

from typing import Any

import pytest

from contracts import DatasetInfo, Na, Plan, PlanStep, ok
from contracts.dataset import DataAccess, SpanRecord
from contracts.events import (
    CacheHit,
    DataAccessed,
    Event,
    PlanBuilt,
    PluginDispatched,
    PluginFinished,
    PluginSpan,
    PluginStarted,
    PreflightFailed,
    RunFinished,
    RunStarted,
    StallDetected,
)
from engine import NondeterminismError, fold

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


def chain(*specs: tuple[type[Event], dict[str, Any]]) -> list[Event]:
    head: list[tuple[type[Event], dict[str, Any]]] = [
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
    return [
        cls(seq=i, prev="", wall=float(i), mono=float(i), **fields)
        for i, (cls, fields) in enumerate(head + list(specs))
    ]


DISPATCHED = (PluginDispatched, {"plugin_id": "p", "lane": "decision"})
STARTED = (PluginStarted, {"plugin_id": "p", "worker": 0, "pid": 1})
FINISHED = (PluginFinished, {"plugin_id": "p", "lane": "decision", "result": NA})
ACCESS = (DataAccessed, {"plugin_id": "p", "access": DataAccess(kind="sql")})
SPAN = (
    PluginSpan,
    {"plugin_id": "p", "span": SpanRecord(index=0, parent=-1, name="s", start_wall=0, end_wall=1)},
)


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
        ([FINISHED], "PluginFinished for plugin 'p' while it is pending"),
        ([(*FINISHED[:1], {**FINISHED[1], "cached": True})], "without a cache_hit"),
        ([DISPATCHED, (*FINISHED[:1], {**FINISHED[1], "ran": False})], "while it is dispatched"),
        ([DISPATCHED, STARTED, FINISHED, FINISHED], "already finished"),
        ([(StallDetected, {"plugins": ("p",), "idle_s": 1.0})], "StallDetected for plugin 'p'"),
        ([DISPATCHED, (CacheHit, {"plugin_id": "p", "key": "k"})], "CacheHit for plugin 'p'"),
        ([(PluginDispatched, {"plugin_id": "nope", "lane": "decision"})], "not in the plan"),
        ([(RunFinished, {"status": "ok"})], "run_finished with 1 plugins unfinished"),
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
