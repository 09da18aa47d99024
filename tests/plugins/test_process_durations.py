from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from contracts import Na, Ok

from .conftest import run_plugin

T0 = datetime(2024, 3, 1, 8, 0, 0)


def _log(events):
    """events: (process, queued offset s, wait s, run s)."""
    return {
        "process_name": [e[0] for e in events],
        "queued_at": [T0 + timedelta(seconds=e[1]) for e in events],
        "started_at": [T0 + timedelta(seconds=e[1] + e[2]) for e in events],
        "ended_at": [T0 + timedelta(seconds=e[1] + e[2] + e[3]) for e in events],
    }


EVENTS = [
    ("a", 0, 60, 30),
    ("a", 100, 120, 30),
    ("b", 200, 10, 5),
    ("b", 300, 20, 15),
    ("b", 86400, 30, 25),
    ("b", 400, -50, 10),  # started before queued: counted, left out of the stats
]


def test_waits_and_runs_per_process(tmp_path):
    result = run_plugin("process_durations", _log(EVENTS), tmp_path)
    assert isinstance(result, Ok)
    assert [f.target for f in result.findings] == ["a", "b"]
    assert {f.kind for f in result.findings} == {"process_durations"}
    a = result.metrics["processes"]["a"]
    assert a["events"] == 2 and a["wait_count"] == 2
    assert a["wait_p50_s"] == 90.0
    assert a["wait_p95_s"] == pytest.approx(np.percentile([60, 120], 95)) == 117.0
    assert a["total_wait_hours"] == pytest.approx(180 / 3600)
    assert a["run_p50_s"] == 30.0 and a["run_count"] == 2
    b = result.metrics["processes"]["b"]
    assert b["events"] == 4 and b["wait_count"] == 3 and b["negative_wait_count"] == 1
    assert b["wait_p50_s"] == 20.0
    assert b["wait_p95_s"] == pytest.approx(np.percentile([10, 20, 30], 95))
    assert b["wait_p99_s"] == pytest.approx(np.percentile([10, 20, 30], 99))
    assert b["run_count"] == 4 and b["run_p50_s"] == pytest.approx(12.5)
    assert result.metrics["total_wait_hours"] == pytest.approx(240 / 3600)
    assert result.metrics["span_days"] == pytest.approx(1.0)
    assert result.metrics["roles"] == {
        "ended": "ended_at",
        "process": "process_name",
        "queued": "queued_at",
        "started": "started_at",
    }
    assert result.findings[0].evidence.metrics["wait_share"] == pytest.approx(0.75)


def test_without_ended_column_reports_waits_only(tmp_path):
    data = _log(EVENTS)
    del data["ended_at"]
    result = run_plugin("process_durations", data, tmp_path)
    assert isinstance(result, Ok)
    a = result.metrics["processes"]["a"]
    assert a["wait_p50_s"] == 90.0 and a["run_count"] == 0 and a["run_p50_s"] is None


def test_not_an_event_log_is_not_applicable(tmp_path):
    result = run_plugin("process_durations", {"x": [1.0, 2.0], "y": ["a", "b"]}, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    assert any("process" in c for c in result.checked)


def test_no_measurable_wait_is_insufficient_data(tmp_path):
    events = [("a", 0, -10, 5), ("b", 10, -20, 5)]
    result = run_plugin("process_durations", _log(events), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"
