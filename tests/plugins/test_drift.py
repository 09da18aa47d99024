from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
import numpy as np
import pytest
from scipy import stats

from contracts import Na, Ok

from .conftest import run_plugin

T0 = datetime(2024, 1, 1)
DAYS = 60
N = 4000


def _log(
    amount_factor_after: float | None = None,
    channel_after: tuple[float, float, float] | None = None,
    seed: int = 8,
):
    """60 days of orders with slow wobbles in amounts and load, and weekday volumes.

    ``amount_factor_after`` multiplies amounts from day 40 on; ``channel_after`` replaces
    the channel mix (web, store, phone) from day 40 on.
    """
    rng = np.random.default_rng(seed)
    day_weight = np.array([1.0 if d % 7 < 5 else 0.4 for d in range(DAYS)])
    day = rng.choice(DAYS, size=N, p=day_weight / day_weight.sum())
    seconds = np.sort(day * 86400 + rng.integers(0, 86400, size=N))
    day = seconds // 86400
    wobble = 1 + 0.1 * np.sin(2 * np.pi * day / 30)
    amount = rng.lognormal(np.log(900), 0.6, size=N) * wobble
    late = day >= 40
    if amount_factor_after is not None:
        amount = np.where(late, amount * amount_factor_after, amount)
    mix = np.array([0.6, 0.3, 0.1])
    channel = np.array(["web", "store", "phone"])[rng.choice(3, size=N, p=mix)]
    if channel_after is not None:
        later = np.array(["web", "store", "phone"])[rng.choice(3, size=N, p=channel_after)]
        channel = np.where(late, later, channel)
    return {
        "order_id": [f"O{i:06d}" for i in range(N)],
        "created_at": [T0 + timedelta(seconds=int(s)) for s in seconds],
        "amount": amount.round(2).tolist(),
        "tax": (amount * 0.2).round(2).tolist(),
        "items": rng.integers(1, 6, size=N).tolist(),
        # a narrow gauge with a slow two-month swing of +-8%: KS D is large between the
        # first and last quarter, but the level barely moves
        "load_pct": (60 * (1 + 0.08 * np.sin(2 * np.pi * day / 60)) + rng.normal(0, 1, N))
        .round(2)
        .tolist(),
        "channel": channel.tolist(),
        "region": np.array(["north", "south", "east", "west"])[rng.integers(0, 4, N)].tolist(),
        # a counter and a period key: both follow time by construction, never "drift"
        "line_no": np.arange(N).tolist(),
        "batch": [f"B{int(d) // 7:02d}" for d in day],
    }


def test_planted_numeric_drift_is_named_once(tmp_path):
    data = _log(amount_factor_after=3.0)
    result = run_plugin("drift", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings  # tax is derived from amount: reported with it, not apart
    assert f.kind == "distribution_drift" and f.target == "amount"
    assert f.evidence.columns == ("amount", "tax", "created_at")
    ev = f.evidence.metrics
    assert ev["ks_d"] >= 0.3 and ev["p_value"] < 0.001
    assert ev["median_last"] > 2 * ev["median_first"]
    assert ev["coupled_columns"] == "tax"
    # all rows fit the sample: D is exactly scipy's on the first vs last 25% of the range
    t = np.array([(c - T0).total_seconds() for c in data["created_at"]])
    cut = 0.25 * (t.max() - t.min())
    amount = np.array(data["amount"])
    d = stats.ks_2samp(amount[t < t.min() + cut], amount[t >= t.max() - cut]).statistic
    assert ev["ks_d"] == pytest.approx(d)
    assert "amount" in f.recommendation


def test_planted_categorical_drift_is_named(tmp_path):
    data = _log(channel_after=(0.2, 0.3, 0.5))
    result = run_plugin("drift", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.target == "channel"
    ev = f.evidence.metrics
    assert ev["total_variation_distance"] >= 0.3 and ev["p_value"] < 0.001
    assert ev["largest_gain"] == "phone" and ev["largest_loss"] == "web"


def test_clean_data_with_seasonal_wobble_is_no_significant_effect(tmp_path):
    result = run_plugin("drift", _log(), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    checked = "\n".join(result.checked)
    assert "line_no: skipped" in checked and "batch: skipped" in checked
    assert "order_id" not in checked  # identifiers are not candidates at all
    assert set(result.metrics["columns"]) == {
        "amount",
        "tax",
        "items",
        "load_pct",
        "channel",
        "region",
    }
    assert result.metrics["columns"]["load_pct"]["effect"] >= 0.3
    assert "load_pct: median, mean and IQR moved by at most" in checked


def test_small_shifts_are_not_drift(tmp_path):
    data = _log(amount_factor_after=1.15)  # +15%: significant here, but D is small
    result = run_plugin("drift", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert result.metrics["columns"]["amount"]["effect"] < 0.3


def test_deterministic_and_sampled(tmp_path):
    data = _log(amount_factor_after=3.0)
    one = run_plugin("drift", data, tmp_path / "1", max_sample=300)
    two = run_plugin("drift", data, tmp_path / "2", max_sample=300)
    assert msgspec.json.encode(one) == msgspec.json.encode(two)
    assert isinstance(one, Ok)
    ev = one.findings[0].evidence.metrics
    assert ev["sample_first"] == 300 and ev["sample_last"] == 300


def test_without_a_timestamp_is_not_applicable(tmp_path):
    data = _log()
    del data["created_at"]
    result = run_plugin("drift", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"


# ------------------------------------------------------------------ seasons of the year

YEAR_DAYS = 365.25


def _weather(days: int, *, shift_from_day: float | None = None, seed: int = 5):
    """Six readings a day of a temperature with an annual cycle (coldest in mid-January,
    +-12 degrees around 13); ``shift_from_day`` adds 15 degrees from that day on."""
    rng = np.random.default_rng(seed)
    hours = np.arange(0, days * 24, 4, dtype=float)
    day = hours / 24
    temp = 13 - 12 * np.cos(2 * np.pi * (day - 15) / YEAR_DAYS) + rng.normal(0, 3, day.size)
    if shift_from_day is not None:
        temp = np.where(day >= shift_from_day, temp + 15, temp)
    return {
        "observed": [datetime(2013, 1, 1) + timedelta(hours=float(h)) for h in hours],
        "temp": temp.round(2).tolist(),
    }


def test_one_year_of_an_annual_cycle_is_not_drift(tmp_path):
    data = _weather(365)
    # without the rule: winter (first quarter) against autumn (last quarter) "drifts"
    off = run_plugin("drift", data, tmp_path / "off", season_days=0.0)
    assert isinstance(off, Ok) and [f.target for f in off.findings] == ["temp"]
    result = run_plugin("drift", data, tmp_path / "on")
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"
    # the first window starts on Jan 1, the last on Oct 1.75: 273.75 days apart,
    # 91.5 days in the calendar (>= 91)
    assert result.metrics["calendar_distance_days"] == pytest.approx(
        YEAR_DAYS - 0.75 * (364 + 20 / 24), abs=1e-6
    )
    assert "an annual cycle cannot be told from drift" in result.explanation
    assert "0 of 1 columns compared" in "\n".join(result.checked)


def test_a_longer_log_compares_the_same_calendar_dates_a_year_apart(tmp_path):
    # 600 days: the last quarter starts 450 days after the first, 85 days away in the
    # calendar (spring into summer against winter into spring); compared instead with
    # the first quarter's calendar dates one year on, the annual cycle alone is no drift
    data = _weather(600)
    off = run_plugin("drift", data, tmp_path / "off", season_days=0.0)
    assert isinstance(off, Ok) and [f.target for f in off.findings] == ["temp"]
    result = run_plugin("drift", data, tmp_path / "on")
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    checked = "\n".join(result.checked)
    assert "compared instead with the same calendar dates 1 year later" in checked
    # the same cycle with a +15 degree step in the second year is drift, measured on
    # exactly those windows
    shifted = _weather(600, shift_from_day=300)
    found = run_plugin("drift", shifted, tmp_path / "step")
    assert isinstance(found, Ok) and [f.target for f in found.findings] == ["temp"]
    t = np.array([(c - datetime(2013, 1, 1)).total_seconds() for c in shifted["observed"]])
    cut = 0.25 * (t.max() - t.min())
    year = YEAR_DAYS * 86400
    temp = np.array(shifted["temp"])
    d = stats.ks_2samp(temp[t < cut], temp[(t >= year) & (t < year + cut)]).statistic
    ev = found.findings[0].evidence.metrics
    assert ev["ks_d"] == pytest.approx(d)
    assert ev["last_window_start"] == "2014-01-01T06:00:00"


def test_a_log_shorter_than_half_a_year_keeps_its_windows(tmp_path):
    # 150 days (< season_span_days): too little of a year for the season rule, the
    # first and last quarter are compared as they are (January against May)
    result = run_plugin("drift", _weather(150), tmp_path)
    assert isinstance(result, Ok) and [f.target for f in result.findings] == ["temp"]
    shorter = run_plugin("drift", _weather(150), tmp_path / "s", season_span_days=100.0)
    assert isinstance(shorter, Na) and shorter.reason_code == "INSUFFICIENT_DATA"
