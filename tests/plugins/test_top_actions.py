"""top_actions: merging, one-unit ranking, notes, and fail-closed upstreams."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts import Evidence, Finding, Impact, Na, Ok, na, ok
from engine import load_plugins

from .conftest import manifest, run_plugin

DATA = {"x": [1.0, 2.0, 3.0]}
PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def _f(pid, kind, target, value=None, unit="hours/month", severity="medium", **metrics):
    return Finding(
        kind=kind,
        title=f"{kind} on {target}",
        target=target,
        severity=severity,
        what="w",
        why="y",
        recommendation=f"fix {target} ({pid})",
        evidence=Evidence(columns=("c",), metrics=metrics, query=f"SELECT '{pid}'"),
        measurement="modeled" if value is not None else "measured",
        impact=Impact(value=value, unit=unit, assumptions=("a",)) if value is not None else None,
    ).stamped(pid)


def _run(tmp_path, upstream):
    return run_plugin("top_actions", DATA, tmp_path, upstream=upstream)


def test_merges_the_same_lever_and_ranks_in_hours_a_month(tmp_path):
    upstream = {
        "queue_bottleneck": ok([_f("queue_bottleneck", "queue_bottleneck", "close", 120.0)]),
        "capacity_whatif": ok([_f("capacity_whatif", "capacity_shortfall", "close", 80.0)]),
        # a one-off total in hours over 60 observed days: 90 h / (60 / 30.4375) months
        "control_chart": ok(
            [
                _f(
                    "control_chart",
                    "control_chart_violation",
                    "billing",
                    90.0,
                    "hours",
                    days_charted=60,
                )
            ]
        ),
        "timestamp_gaps": ok(
            [_f("timestamp_gaps", "timestamp_gap", "queued_at", 5000.0, "events", severity="high")]
        ),
        "tail_latency": ok([_f("tail_latency", "tail_latency_hotspot", "close", 10.0)]),
        "drift": na("NO_SIGNIFICANT_EFFECT", "nothing", checked=["x"]),
    }
    result = _run(tmp_path, upstream)
    assert isinstance(result, Ok)
    got = [
        (
            f.evidence.metrics["action_target"],
            f.evidence.metrics["family"],
            f.evidence.metrics["hours_per_month"],
        )
        for f in result.findings
    ]
    months = 60 / (365.25 / 12)
    assert got == [
        ("close", "queue wait and capacity", 120.0),  # the larger estimate, not 200
        ("billing", "queue wait and capacity", pytest.approx(90.0 / months)),
        ("close", "run time", 10.0),  # same target, another lever: its own action
        ("queued_at", "timestamp_gap", None),  # events: never ranked against hours
    ]
    first = result.findings[0]
    assert first.evidence.metrics["plugins"] == "capacity_whatif,queue_bottleneck"
    assert first.evidence.metrics["kinds"] == "capacity_shortfall,queue_bottleneck"
    assert first.impact is not None and first.impact.unit == "hours/month"
    assert first.recommendation.startswith("fix close (queue_bottleneck)")
    assert "fix close (capacity_whatif)" in first.recommendation
    assert [f.evidence.metrics["rank"] for f in result.findings] == [1, 2, 3, 4]
    last = result.findings[-1]
    assert last.impact is not None and last.impact.unit == "events"
    assert result.metrics["ranked_by_hours"] == 3 and result.metrics["unranked"] == 1


def test_notes_fdr_and_a_refused_queue_model(tmp_path):
    qb = _f("queue_bottleneck", "queue_bottleneck", "close", 50.0)
    upstream = {
        "queue_bottleneck": ok([qb]),
        "fdr_control": ok([_f("fdr_control", "fdr_not_significant", qb.id)]),
        "capacity_whatif": na(
            "NOT_APPLICABLE",
            "no fit",
            checked=["close: the model does not fit"],
            metrics={"verdicts": {"close": "the model does not fit: ..."}},
        ),
    }
    result = _run(tmp_path, upstream)
    assert isinstance(result, Ok)
    (action,) = result.findings
    notes = action.evidence.metrics["notes"]
    assert "not confirmed after FDR" in notes
    assert "does not explain these waits by worker capacity" in notes


def test_nothing_to_rank_is_na(tmp_path):
    result = _run(tmp_path, {"drift": na("NO_SIGNIFICANT_EFFECT", "n", checked=["x"])})
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_max_actions_says_what_it_left_out(tmp_path):
    upstream = {
        "tail_latency": ok(
            [
                _f("tail_latency", "tail_latency_hotspot", t, v)
                for t, v in (("a", 3.0), ("b", 2.0), ("c", 1.0))
            ]
        )
    }
    result = run_plugin("top_actions", DATA, tmp_path, upstream=upstream, max_actions=2)
    assert isinstance(result, Ok)
    assert [f.evidence.metrics["action_target"] for f in result.findings] == ["a", "b"]
    assert "reported the first 2 of 3 actions (max_actions)" in result.metrics["checked"]


def test_depends_on_every_other_decision_plugin():
    """A decision plugin left out of depends_on would have its actions silently dropped;
    listing all of them makes any failure end top_actions UPSTREAM_FAILED instead."""
    decision = sorted(
        s.id
        for s in load_plugins(PLUGINS)
        if s.manifest.lane == "decision" and s.id != "top_actions"
    )
    assert sorted(manifest("top_actions").depends_on) == decision
