"""seasonality: a planted weekly rhythm in waits comes back as its weekday effect, and
the consumers take it out (a weekly rhythm is never a changepoint)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import pytest

from contracts import Na, Ok

from .conftest import run_chain, run_plugin

T0 = datetime(2024, 1, 1)  # a Monday
FACTORS = (3.0, 2.0, 1.0, 1.0, 1.0, 0.5, 0.5)  # wait factor Monday .. Sunday


def _log(days: int = 84, rhythm: str | None = "rhythm", seed: int = 4, step=None, weekend_jobs=40):
    rng = np.random.default_rng(seed)
    names, q, w, r = [], [], [], []
    for name, wait_med in (("rhythm", 120.0), ("flat", 300.0), ("other", 60.0)):
        for d in range(days):
            n = weekend_jobs if d % 7 >= 5 else 40
            f = FACTORS[d % 7] if name == rhythm else 1.0
            f *= step(name, d) if step else 1.0
            names += [name] * n
            q += (d * 86400 + rng.integers(8 * 3600, 18 * 3600, n)).tolist()
            w += rng.lognormal(np.log(wait_med * f), 0.3, n).round().tolist()
            r += (rng.lognormal(np.log(200.0), 0.4, n).round() + 1).tolist()
    qa = np.array(q, dtype="int64")
    sa = qa + np.array(w, dtype="int64")
    ea = sa + np.array(r, dtype="int64")
    base = np.datetime64(T0, "s")
    return {
        "process_name": names,
        "queued_at": base + qa.astype("timedelta64[s]"),
        "started_at": base + sa.astype("timedelta64[s]"),
        "ended_at": base + ea.astype("timedelta64[s]"),
    }


def test_weekly_rhythm_and_its_weekday_effect(tmp_path):
    data = _log()
    result = run_plugin("seasonality", data, tmp_path)
    assert isinstance(result, Ok)
    procs = result.metrics["processes"]
    rhythm = procs["rhythm"]["daily_wait"]
    assert rhythm["strong"] and rhythm["strength"] > 0.9
    assert not procs["flat"]["daily_wait"]["strong"]
    # the effect is the log of the factors, centred (a median of 40 lognormal waits
    # is close to the median itself)
    logs = np.log(FACTORS)
    expected = logs - logs.mean()
    assert rhythm["weekday_effect"] == pytest.approx(expected.tolist(), abs=0.08)
    targets = {f.target for f in result.findings}
    assert "rhythm:daily_wait" in targets and "flat:daily_wait" not in targets
    hourly = result.metrics["hourly_volume"]
    hours = data["queued_at"].astype("datetime64[h]")
    assert hourly["hours"] == int((hours.max() - hours.min()).astype(int)) + 1
    assert 8 <= hourly["peak_hour"] <= 17


def test_weekly_rhythm_is_not_a_changepoint_or_control_violation(tmp_path):
    data = _log()
    for pid in ("changepoints", "control_chart"):
        result = run_chain(pid, data, tmp_path / pid)
        assert isinstance(result, Na), (pid, result)
    cp = run_chain("changepoints", data, tmp_path / "cp2")
    assert cp.metrics["deseasonalized"] == 1


def test_a_step_under_a_weekly_rhythm_is_still_found(tmp_path):
    data = _log(step=lambda name, d: 2.5 if name == "rhythm" and d >= 42 else 1.0)
    result = run_chain("changepoints", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.target == "rhythm" and f.evidence.metrics["deseasonalized"] is True
    assert f.evidence.metrics["change_date"] == (T0 + timedelta(days=42)).date().isoformat()
    # deseasonalized levels: 120 s before and 300 s after, times the mean weekly factor
    geo = math.exp(np.mean(np.log(FACTORS)))
    assert f.evidence.metrics["before_median_wait_s"] == pytest.approx(120 * geo, rel=0.1)
    assert f.evidence.metrics["after_median_wait_s"] == pytest.approx(300 * geo, rel=0.1)


def test_too_short_is_insufficient(tmp_path):
    result = run_plugin("seasonality", _log(days=10), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"


def test_drift_compares_whole_weeks_under_a_weekly_rhythm(tmp_path):
    data = _log(days=81, weekend_jobs=8)  # 25% of 80 days is 20 days: 3 whole weeks
    result = run_chain("drift", data, tmp_path)
    checked = list(getattr(result, "checked", ())) or result.metrics.get("checked", [])
    assert "seasonality: strong weekly rhythm, windows cut to whole weeks" in checked
    window = next(c for c in checked if c.startswith("windows on"))
    first = data["queued_at"].min()
    assert f".. {(first + np.timedelta64(21, 'D')).astype(datetime).isoformat()})" in window


def test_dates_without_a_time_of_day_have_no_hourly_rhythm(tmp_path):
    data = _log(weekend_jobs=8)
    hours = np.unique(data["queued_at"].astype("datetime64[h]"))
    result = run_plugin("seasonality", data, tmp_path / "times")
    assert result.metrics["hourly_volume"]["hours_with_jobs"] == hours.size
    # the same log with its queue times cut to the day: one hour in 24 has jobs
    dated = data | {"queued_at": data["queued_at"].astype("datetime64[D]")}
    result = run_plugin("seasonality", dated, tmp_path / "dates")
    assert result.metrics["hourly_volume"] is None
    days = np.unique(dated["queued_at"]).size
    span = (days - 1) * 24 + 1
    note = next(c for c in result.checked if c.startswith("hourly volume: not decomposed"))
    assert f"jobs in {days} of {span} hours" in note
    # the daily series per process are still decomposed (days are what they need)
    assert result.metrics["processes"]["rhythm"]["daily_volume"]["days"] == days


def test_at_most_max_processes_are_decomposed_the_most_jobs_first(tmp_path):
    data = _log()
    names = np.array(data["process_name"])
    # "other" keeps every other job: the fewest jobs, though first by name among ties
    keep = (names != "other") | (np.arange(names.size) % 2 == 0)
    data = {k: np.asarray(v)[keep] for k, v in data.items()}
    data["process_name"] = data["process_name"].tolist()
    capped = run_plugin("seasonality", data, tmp_path / "capped", max_processes=2)
    assert isinstance(capped, Ok)
    assert sorted(capped.metrics["processes"]) == ["flat", "rhythm"]
    assert capped.metrics["processes_decomposed"] == 2
    assert capped.metrics["processes_total"] == 3
    assert (
        "decomposed 2 of 3 processes (the most jobs first; max_processes 2)"
        in capped.metrics["checked"]
    )
    whole = run_plugin("seasonality", data, tmp_path / "whole")
    assert isinstance(whole, Ok)
    assert sorted(whole.metrics["processes"]) == ["flat", "other", "rhythm"]
    assert whole.metrics["processes_decomposed"] == whole.metrics["processes_total"] == 3
    assert not any("decomposed" in line for line in whole.metrics["checked"])
