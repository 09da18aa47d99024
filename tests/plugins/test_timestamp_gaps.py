from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import numpy as np
import pytest

from contracts import Na, Ok

from .conftest import load_plugin, run_plugin, settings

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


@pytest.mark.parametrize(
    "log",
    [
        {"outage": (16.3, 18.1)},
        {},
        {"closed_weekends": True, "outage": (9.4, 10.2)},
        {"n": 300},  # too few distinct timestamps on the sparse columns
    ],
)
def test_time_coverages_figures_and_the_bucket_pass_give_the_same_result(tmp_path, log):
    # with time_coverage upstream the interval quantiles come from its sort of the
    # column and the gaps from one grouping pass in buckets; without it, from a sort of
    # the plugin's own: the result is the same, figure for figure
    from engine.testing import make_context

    data = _log(**log)
    alone = run_plugin("timestamp_gaps", data, tmp_path / "alone")
    upstream = {"time_coverage": run_plugin("time_coverage", data, tmp_path / "up")}
    ctx = make_context(
        data,
        tmp_path / "chained",
        settings=settings("timestamp_gaps"),
        upstream=upstream,
    )
    with ctx.data:
        chained = load_plugin("timestamp_gaps").run(ctx)
        # the values are read only to be sorted: with upstream, no column is read whole
        sorts = [a.query for a in ctx.data.accesses if a.query.startswith("SELECT epoch_us(")]
    assert chained == alone
    assert sorts == []  # no column sorted again


def test_gaps_over_a_threshold_are_the_gaps_a_sort_finds(tmp_path):
    # the bucket pass against the sorted distinct timestamps' own gaps, on timestamps
    # that repeat and on gaps just over, at and under the threshold
    plugin = load_plugin("timestamp_gaps")
    rng = np.random.default_rng(5)
    secs = np.sort(rng.choice(np.arange(0, 200_000, 7), size=4000))
    secs = np.concatenate([secs, secs[:500], [300_000, 300_000 + 3600, 300_000 + 7201]])
    data = {"t": [T0 + timedelta(seconds=int(v)) for v in secs]}
    from engine.testing import make_context

    ctx = make_context(data, tmp_path)
    epoch_us = int((T0 - datetime(1970, 1, 1)).total_seconds()) * 1_000_000
    u = np.unique(secs).astype(np.int64) * 1_000_000 + epoch_us
    first, last = int(u[0]), int(u[-1])
    for threshold in (3600e6, 3600e6 + 1, 700e6, 50e6):
        expected = sorted(
            (
                {"start_us": int(a), "end_us": int(b), "gap_us": int(b - a)}
                for a, b in itertools.pairwise(u.tolist())
                if b - a > threshold
            ),
            key=lambda g: (-g["gap_us"], g["start_us"]),
        )[:21]
        got = plugin.gaps_over(ctx, "t", "TIMESTAMP", first, last, threshold, 21)
        assert got == expected, threshold
