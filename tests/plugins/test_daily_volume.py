from __future__ import annotations

from datetime import datetime, timedelta

from contracts import Na, Ok
from engine._core.preflight import unmet
from engine.testing import make_reader

from .conftest import manifest, run_plugin

PLUGIN = "daily_volume"
D1 = datetime(2024, 2, 5, 9, 0, 0)

# (process, day offset, wait s, run s)
EVENTS = [
    ("a", 0, 10, 100),
    ("a", 0, 20, 200),
    ("a", 0, 30, 300),
    ("a", 0, -5, 50),  # starts before its queue time: counted, left out of the median wait
    ("b", 1, 100, 10),
    ("b", 1, 200, 20),
    ("a", 2, 5, 40),
]


def _log(events=EVENTS):
    queued = [D1 + timedelta(days=e[1], minutes=i) for i, e in enumerate(events)]
    started = [q + timedelta(seconds=e[2]) for q, e in zip(queued, events, strict=True)]
    return {
        "process_name": [e[0] for e in events],
        "queued_at": queued,
        "started_at": started,
        "ended_at": [s + timedelta(seconds=e[3]) for s, e in zip(started, events, strict=True)],
    }


def test_daily_series(tmp_path):
    result = run_plugin(PLUGIN, _log(), tmp_path)
    assert isinstance(result, Ok)
    assert [f.target for f in result.findings] == ["a", "b"]
    assert {f.kind for f in result.findings} == {PLUGIN}
    m = result.metrics
    assert m["day_column"] == "queued_at" and m["series"] == [
        "jobs",
        "median_wait_s",
        "median_run_s",
    ]
    assert m["overall"] == {"days": ["2024-02-05", "2024-02-06", "2024-02-07"], "jobs": [4, 2, 1]}
    a = m["processes"]["a"]
    assert a["days"] == ["2024-02-05", "2024-02-07"]
    assert a["jobs"] == [4, 1]
    assert a["median_wait_s"] == [20.0, 5.0]
    assert a["median_run_s"] == [150.0, 40.0]  # runs 50, 100, 200, 300
    assert a["total_jobs"] == 5 and a["active_days"] == 2
    b = m["processes"]["b"]
    assert b["days"] == ["2024-02-06"] and b["median_wait_s"] == [150.0]
    assert m["days_capped"] is False and m["processes_capped"] is False
    assert result.findings[0].evidence.metrics["median_wait_s_max"] == 20.0


def test_caps(tmp_path):
    result = run_plugin(PLUGIN, _log(), tmp_path, max_days=2, max_processes=1)
    m = result.metrics
    assert m["days_capped"] is True and m["days_dropped"] == 1
    assert m["overall"]["days"] == ["2024-02-06", "2024-02-07"]
    # within the kept days a and b have one and two jobs: b is the busiest
    assert list(m["processes"]) == ["b"] and m["processes_capped"] is True


def test_start_time_without_queue_time(tmp_path):
    data = _log()
    del data["queued_at"]
    result = run_plugin(PLUGIN, data, tmp_path)
    assert result.metrics["day_role"] == "started"
    assert result.metrics["series"] == ["jobs", "median_run_s"]
    assert "median_wait_s" not in result.metrics["processes"]["a"]


def test_without_process_not_applicable(tmp_path):
    data = _log()
    del data["process_name"]
    result = run_plugin(PLUGIN, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    with make_reader(data, tmp_path / "pre") as reader:
        assert unmet(manifest(PLUGIN).applies_when.columns[0], reader.info) is not None
