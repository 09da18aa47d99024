"""volume_forecast: a growing process gets a pre-provisioning decision with its peak
hour; stationary volume does not; the backtest coverage is evidence."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pytest

from contracts import Na, Ok

from .conftest import load_plugin, run_plugin

T0 = datetime(2024, 1, 1)  # a Monday
DAYS = 70
PEAK_HOUR = 10


def _log(growth: float = 1.0, seed: int = 6):
    """Jobs per day: weekdays 100, weekends 30 (x a linear growth for ``grower``); each
    job queued at 10:00-10:59 with probability 0.4, else spread over 06:00-20:00."""
    rng = np.random.default_rng(seed)
    names, q = [], []
    for name in ("grower", "steady", "other"):
        for d in range(DAYS):
            base = 30 if d % 7 >= 5 else 100
            g = 1.0 + (growth - 1.0) * d / (DAYS - 1) if name == "grower" else 1.0
            n = int(rng.poisson(base * g))
            in_peak = rng.random(n) < 0.4
            sec = np.where(
                in_peak,
                rng.integers(PEAK_HOUR * 3600, (PEAK_HOUR + 1) * 3600, n),
                rng.integers(6 * 3600, 20 * 3600, n),
            )
            names += [name] * n
            q += (d * 86400 + sec).tolist()
    # one job late on the last day, so the last day counts as complete
    names.append("other")
    q.append((DAYS - 1) * 86400 + 23 * 3600 + 30 * 60)
    base = np.datetime64(T0, "s")
    return {"process_name": names, "queued_at": base + np.array(q).astype("timedelta64[s]")}


def test_growth_is_a_pre_provisioning_decision(tmp_path):
    result = run_plugin("volume_forecast", _log(growth=3.0), tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.kind == "volume_peak" and f.target == "grower"
    ev = f.evidence.metrics
    assert ev["peak_hour"] == PEAK_HOUR
    last = date(2024, 1, 1) + timedelta(days=DAYS - 1)
    assert date.fromisoformat(ev["peak_date"]) > last
    assert date.fromisoformat(ev["peak_date"]).weekday() < 5
    # by construction the next weekday peak is about 100 x 3 jobs, 40%+ of them in the
    # peak hour (its share of the day also holds the spread jobs that fall into it)
    share = 0.4 + 0.6 / 14
    assert ev["peak_day_jobs"] == pytest.approx(300, rel=0.15)
    assert ev["peak_jobs_per_hour"] == pytest.approx(300 * share, rel=0.2)
    assert ev["peak_day_lower"] >= ev["median_weekly_peak_jobs"]
    assert 0.0 <= ev["backtest_coverage"] <= 1.0 and ev["backtest_coverage_p"] >= 0.001
    assert f"{PEAK_HOUR:02d}:00" in f.recommendation
    assert f.impact is not None and f.impact.unit == "jobs/hour"


def test_stationary_volume_is_na_with_forecasts_in_metrics(tmp_path):
    result = run_plugin("volume_forecast", _log(), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    forecasts = result.metrics["forecasts"]
    assert sorted(forecasts) == ["grower", "other", "steady"]
    for f in forecasts.values():
        assert len(f["next_days"]) == 7
        # next Monday .. Sunday: about 100 on weekdays, 30 at weekends
        assert f["next_days"][0] == pytest.approx(100, rel=0.2)
        assert f["next_days"][5] == pytest.approx(30, rel=0.4)


def test_backtest_coverage_counts_held_out_days(tmp_path):
    plugin = load_plugin("volume_forecast")
    rng = np.random.default_rng(1)
    y = np.tile([100, 100, 100, 100, 100, 30, 30], 10) + rng.normal(0, 3, 70)
    bt, _ = plugin.backtest(y, 14, 0.8)
    frame, _ = plugin.forecast(y[:-14], 14, 0.8)
    inside = (y[-14:] >= frame["pi_lower"].to_numpy()) & (y[-14:] <= frame["pi_upper"].to_numpy())
    assert bt["coverage"] == pytest.approx(inside.mean())
    assert bt["coverage"] >= 0.5


def test_too_short_is_insufficient(tmp_path):
    data = _log()
    keep = data["queued_at"] < np.datetime64(T0 + timedelta(days=20), "s")
    short = {k: np.asarray(v)[keep] for k, v in data.items()}
    result = run_plugin("volume_forecast", short, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"
