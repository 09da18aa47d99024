"""level_shifts: a planted jump, a planted trend and a weekly rhythm in an orders
table; the Sen line and the levels recomputed here."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from contracts import Na, Ok

from .conftest import run_plugin

PID = "level_shifts"
T0 = datetime(2024, 4, 1)  # a Monday
DAYS = 84


def _orders(per_day: int = 40, seed: int = 2) -> dict:
    rng = np.random.default_rng(seed)
    n = DAYS * per_day
    day = np.repeat(np.arange(DAYS), per_day)
    when = [
        T0 + timedelta(days=int(d), seconds=int(s))
        for d, s in zip(day, rng.integers(0, 86400, n), strict=True)
    ]
    weekly = np.where(day % 7 >= 5, 2.0, 1.0)
    return {
        "order_date": when,
        "shipping": (8.0 * np.where(day >= 50, 1.8, 1.0) * rng.lognormal(0, 0.3, n)).tolist(),
        "handling": (20.0 * (1 + day / DAYS) * rng.lognormal(0, 0.3, n)).tolist(),
        "basket": (30.0 * weekly * rng.lognormal(0, 0.3, n)).tolist(),  # weekly rhythm only
        "price": (40.0 * rng.lognormal(0, 0.5, n)).tolist(),
    }


def test_finds_the_jump_and_the_trend_not_the_rhythm(tmp_path):
    data = _orders()
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Ok)
    got = {f.target: f for f in result.findings}
    assert sorted(got) == ["handling", "shipping"]
    shift = got["shipping"]
    assert shift.kind == "level_shift"
    m = shift.evidence.metrics
    assert m["change_date"] == (T0 + timedelta(days=50)).date().isoformat()
    day = np.array([(t - T0).days for t in data["order_date"]])
    ship = np.array(data["shipping"])
    before = np.median([np.median(ship[day == d]) for d in range(50)])
    after = np.median([np.median(ship[day == d]) for d in range(50, DAYS)])
    assert m["before_median"] == pytest.approx(before, rel=1e-6)
    assert m["after_median"] == pytest.approx(after, rel=1e-6)
    assert m["relative_shift"] == pytest.approx(0.8, abs=0.15)
    trend = got["handling"]
    assert trend.kind == "quantity_trend"
    t = trend.evidence.metrics
    hand = np.array(data["handling"])
    medians = np.array([np.median(hand[day == d]) for d in range(DAYS)])
    slope, intercept, _, _ = stats.theilslopes(medians, np.arange(DAYS, dtype=float))
    assert t["sens_slope_per_day"] == pytest.approx(slope)
    assert t["relative_change"] == pytest.approx(slope * (DAYS - 1) / intercept)
    assert t["relative_change"] == pytest.approx(1.0, abs=0.2)
    assert "checked 4 of 4 quantity columns" in result.metrics["checked"]


def test_weekly_rhythm_is_divided_out(tmp_path):
    data = _orders()
    data = {"order_date": data["order_date"], "basket": data["basket"]}
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert any("(divided out)" in c for c in result.checked)


def test_sparse_tables_use_a_longer_period(tmp_path):
    rng = np.random.default_rng(4)
    when = [T0 + timedelta(days=int(d)) for d in np.sort(rng.integers(0, 3 * 365, 2000))]
    result = run_plugin(
        PID, {"order_date": when, "price": rng.lognormal(3, 0.3, 2000).tolist()}, tmp_path
    )
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert result.metrics["period"] == "week"


def test_event_logs_are_left_to_changepoints(tmp_path):
    data = _orders()
    data["started_at"] = data.pop("order_date")
    data["ended_at"] = [t + timedelta(seconds=5) for t in data["started_at"]]
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    assert "covered by group_differences/changepoints/monotonic_trend" in result.explanation


def test_bad_input_is_na(tmp_path):
    few = {"order_date": [T0 + timedelta(days=i) for i in range(10)], "price": [1.0] * 10}
    result = run_plugin(PID, few, tmp_path / "few")
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"
    data = _orders(per_day=10)
    signed = {"order_date": data["order_date"], "delta": [v - 40.0 for v in data["price"]]}
    result = run_plugin(PID, signed, tmp_path / "signed")
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"
    assert any("no relative level" in c for c in result.checked)
