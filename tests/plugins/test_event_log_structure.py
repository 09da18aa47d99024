from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from contracts import Na, Ok

from .conftest import run_plugin

PLUGIN = "event_log_structure"
T0 = datetime(2024, 6, 3, 8, 0, 0)


def _t(seconds):
    return None if seconds is None else T0 + timedelta(seconds=seconds)


def _data():
    return {
        "case_id": ["c1", "c1", "c2", "c3", "c4"],
        "process_name": ["a", "a", "b", "b", "b"],
        "status": ["ok", "failed", "ok", "retried", "ok"],
        "queued_at": [_t(s) for s in (0, 10, 20, 30, 40)],
        "started_at": [_t(s) for s in (5, 5, 25, 35, None)],  # row 1 starts before its queue
        "ended_at": [_t(s) for s in (15, 20, 24, 50, None)],  # row 2 ends before it starts
        "retry_count": [0, 1, 0, 2, 0],
        "user": ["u1", "u2", "u1", "u2", "u1"],
        "host": ["h1", "h2", "h1", "h2", "h1"],
    }


def test_roles_cases_processes_and_statuses(tmp_path):
    result = run_plugin(PLUGIN, _data(), tmp_path)
    assert isinstance(result, Ok)
    m = result.metrics
    assert m["roles"] == {
        "case": "case_id",
        "ended": "ended_at",
        "host": "host",
        "process": "process_name",
        "queued": "queued_at",
        "started": "started_at",
        "status": "status",
        "user": "user",
    }
    assert [f.target for f in result.findings] == [
        "case_id",
        "process_name",
        "status",
        "queued_at",
        "started_at",
        "ended_at",
        "user",
        "host",
    ]
    assert {f.kind for f in result.findings} == {PLUGIN}
    assert m["cases"]["cases"] == 4 and m["cases"]["multi_event_cases"] == 1
    assert m["cases"]["events_per_case"] == [{"cases": 3, "events": 1}, {"cases": 1, "events": 2}]
    assert m["cases"]["events_per_case_mean"] == pytest.approx(1.25)
    assert m["process_count"] == 2 and m["processes"]["b"]["events"] == 3
    assert [v["value"] for v in m["status_values"]] == ["ok", "failed", "retried"]
    assert m["failure_status_values"] == ["failed"] and m["retried_status_values"] == ["retried"]
    assert m["user_count"] == 2 and m["host_count"] == 2
    assert m["retry_column"] == "retry_count"
    assert m["retry"]["mean"] == pytest.approx(0.6) and m["retry"]["positive_share"] == 0.4


def test_ordering_sanity(tmp_path):
    result = run_plugin(PLUGIN, _data(), tmp_path)
    assert result.metrics["ordering"] == {
        "end_before_queue": 0,
        "end_before_start": 1,
        "ended_not_started": 0,
        "queued_not_started": 1,
        "start_before_queue": 1,
        "started_not_ended": 0,
    }
    a, b = result.metrics["processes"]["a"], result.metrics["processes"]["b"]
    assert a["start_before_queue"] == 1 and a["end_before_start"] == 0
    assert b["end_before_start"] == 1 and b["queued_not_started"] == 1
    started = next(f for f in result.findings if f.target == "started_at")
    assert started.evidence.metrics["start_before_queue"] == 1
    assert started.evidence.metrics["values"] == 4
    assert "ordering issues" in started.what


def test_partial_event_log(tmp_path):
    data = {"process": ["x", "y", "x"], "amount": [1.0, 2.0, 3.0]}
    result = run_plugin(PLUGIN, data, tmp_path)
    assert isinstance(result, Ok)
    assert [f.target for f in result.findings] == ["process"]
    assert "ordering" not in result.metrics and result.metrics["retry_column"] is None


def test_not_an_event_log_is_not_applicable(tmp_path):
    result = run_plugin(PLUGIN, {"x": [1.0, 2.0], "colour": ["red", "blue"]}, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    assert len(result.checked) == 8
