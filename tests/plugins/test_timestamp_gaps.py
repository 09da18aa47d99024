from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import numpy as np

from contracts import Na, Ok

from .conftest import run_plugin

T0 = datetime(2024, 4, 1)  # a Monday
DAYS = 35
# arrivals per hour of day: a nightly lull (never zero) and busy office hours
HOURLY = np.array([1, 1, 1, 1, 1, 2, 4, 7, 9, 10, 10, 9, 8, 9, 10, 10, 9, 7, 5, 4, 3, 2, 2, 1.0])


def _log(
    n: int = 6000,
    outage: tuple[float, float] | None = None,
    closed_hours: tuple[int, ...] = (),
    closed_weekends: bool = False,
    seed: int = 21,
):
    """35 days of jobs with hourly and weekday volume patterns.

    ``outage`` (start day, end day) removes every arrival in that window;
    ``closed_hours`` are hours of the day without arrivals, every day;
    ``closed_weekends`` has no arrivals on Saturdays and Sundays.
    """
    rng = np.random.default_rng(seed)
    weights = np.tile(HOURLY, DAYS) * np.repeat(
        [1.0 if d % 7 < 5 else 0.5 for d in range(DAYS)], 24
    )
    hours = np.arange(DAYS * 24)
    weights[np.isin(hours % 24, closed_hours)] = 0
    if closed_weekends:
        weights[(hours // 24) % 7 >= 5] = 0
    hour = rng.choice(hours, size=n, p=weights / weights.sum())
    queued = np.sort(hour * 3600.0 + rng.uniform(0, 3600, size=n))
    if outage is not None:
        queued = queued[(queued < outage[0] * 86400) | (queued >= outage[1] * 86400)]
    wait = rng.lognormal(np.log(120), 0.5, size=queued.size)
    run = rng.lognormal(np.log(600), 0.5, size=queued.size)

    def stamp(v):
        return [T0 + timedelta(seconds=float(s)) for s in v]

    return {
        "job_id": [f"J{i:06d}" for i in range(queued.size)],
        "queued_at": stamp(queued),
        "started_at": stamp(queued + wait),
        "ended_at": stamp(queued + wait + run),
        "amount": rng.lognormal(6, 1, size=queued.size).round(2).tolist(),
    }


def test_planted_outage_is_one_finding_on_the_arrival_column(tmp_path):
    data = _log(outage=(20.4, 22.9))  # Sunday 09:36 to Tuesday 21:36
    result = run_plugin("timestamp_gaps", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.kind == "timestamp_gap" and f.target == "queued_at"
    assert f.evidence.columns == ("queued_at", "started_at", "ended_at")
    ev = f.evidence.metrics
    queued = sorted(data["queued_at"])
    gaps = [(b - a, a, b) for a, b in itertools.pairwise(queued)]
    longest, start, end = max(gaps)
    assert ev["gap_start"] == start.isoformat() and ev["gap_end"] == end.isoformat()
    assert ev["gap_hours"] == longest.total_seconds() / 3600 and ev["gaps"] == 1
    assert ev["gap_hours"] > 6 and ev["gap_hours"] > 24 * ev["p99_interval_s"] / 3600
    assert ev["same_window_other_periods_with_events"] == 1.0
    assert ev["p_value"] < 1e-6
    assert f.measurement == "modeled" and f.impact is not None
    assert f.impact.unit == "events" and f.impact.value > 100
    assert start.isoformat() in f.recommendation


def test_clean_log_with_nightly_and_weekend_lulls_is_no_significant_effect(tmp_path):
    result = run_plugin("timestamp_gaps", _log(), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert [c.split(":")[0] for c in result.checked] == ["queued_at", "started_at", "ended_at"]


def test_weekends_without_any_work_are_not_gaps(tmp_path):
    result = run_plugin("timestamp_gaps", _log(closed_weekends=True), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert any("recurs" in c and "weeks" in c for c in result.checked)


def test_nights_without_any_work_are_not_gaps(tmp_path):
    # closed 22:00-06:00: an 8-hour silence every night, longer than the 6-hour floor and
    # (at this volume) than 24 x the p99 interval, so every night is a candidate gap
    data = _log(n=20000, closed_hours=(22, 23, 0, 1, 2, 3, 4, 5))
    result = run_plugin("timestamp_gaps", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert any("recurs" in c for c in result.checked)


def test_outage_inside_a_closed_weekend_pattern_is_still_found(tmp_path):
    data = _log(closed_weekends=True, outage=(14.0, 16.0))  # Monday-Tuesday of week 3
    result = run_plugin("timestamp_gaps", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.target == "queued_at"
    # the silence runs from the Friday before to Wednesday 00:00: the weekend plus the outage
    assert f.evidence.metrics["gap_start"].startswith("2024-04-12")
    assert f.evidence.metrics["gap_end"].startswith("2024-04-17")


def test_without_timestamps_is_not_applicable(tmp_path):
    data = _log()
    for key in ("queued_at", "started_at", "ended_at"):
        del data[key]
    result = run_plugin("timestamp_gaps", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
