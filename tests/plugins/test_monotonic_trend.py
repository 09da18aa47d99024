from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from contracts import Na, Ok
from engine._core.manifests import PluginSpec
from engine._core.preflight import preflight
from engine.testing import make_reader

from .conftest import PLUGINS_DIR, manifest, run_plugin

PID = "monotonic_trend"
T0 = datetime(2024, 1, 1)  # a Monday
# name: (jobs per weekday, median wait s, median run s); processes differ by design
PROCESSES = {
    "billing": (30, 300.0, 600.0),
    "close_gl": (20, 1800.0, 1500.0),
    "etl_load": (40, 120.0, 2400.0),
    "payroll": (15, 600.0, 900.0),
    "reports": (25, 240.0, 300.0),
}


def event_log(days: int = 84, seed: int = 1, run=None, ended: bool = True) -> pa.Table:
    """A realistic log: weekends at 30% volume with shorter waits, Mondays' waits 30%
    longer and runs 10% longer, lognormal waits and runs; ``run(name, day)`` multiplies
    a day's run times."""
    rng = np.random.default_rng(seed)
    names, queued, waits, runs = [], [], [], []
    for name in sorted(PROCESSES):
        per_day, wait_med, run_med = PROCESSES[name]
        for d in range(days):
            weekday = (T0 + timedelta(days=d)).weekday()
            n = int(rng.poisson(per_day * (0.3 if weekday >= 5 else 1.0)))
            season = 1.3 if weekday == 0 else 0.7 if weekday >= 5 else 1.0
            factor = season
            run_factor = (1.1 if weekday == 0 else 1.0) * (run(name, d) if run else 1.0)
            names += [name] * n
            queued += (d * 86400 + rng.integers(6 * 3600, 20 * 3600, n)).tolist()
            waits += np.round(rng.lognormal(np.log(wait_med * factor), 0.6, n)).tolist()
            runs += np.round(rng.lognormal(np.log(run_med * run_factor), 0.5, n) + 1).tolist()
    q = np.array(queued, dtype="int64")
    s = q + np.array(waits, dtype="int64")
    e = s + np.array(runs, dtype="int64")
    base = np.datetime64(T0, "s")
    cols = {
        "process_name": names,
        "queued_at": base + q.astype("timedelta64[s]"),
        "started_at": base + s.astype("timedelta64[s]"),
        "ended_at": base + e.astype("timedelta64[s]"),
    }
    if not ended:
        del cols["ended_at"]
    return pa.table(cols)


def _preflight(data, tmp_path):
    with make_reader(data, tmp_path) as reader:
        info = reader.info
    folder = PLUGINS_DIR / PID
    spec = PluginSpec(
        manifest=manifest(PID),
        directory=folder,
        manifest_path=folder / "plugin.yaml",
        code_hash="test",
    )
    return preflight(spec, info)


def test_planted_trend_is_found(tmp_path):
    data = event_log(run=lambda name, d: 1.0 + 0.8 * d / 83 if name == "etl_load" else 1.0)
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.kind == "trend" and f.target == "etl_load"
    ev = f.evidence.metrics
    assert 0.6 <= ev["relative_change"] <= 1.0
    assert ev["kendall_tau"] > 0.5 and ev["p_value"] < 1e-6
    assert ev["sens_slope_s_per_day"] > 0
    assert ev["step_to_line_sse"] > 0.8
    assert ev["first_day"] == T0.date().isoformat()
    assert f.severity == "medium"
    assert f.measurement == "modeled" and f.impact is not None and f.impact.value > 0
    assert f.evidence.columns == ("process_name", "started_at", "ended_at")
    assert "etl_load" in f.evidence.query


def test_metrics_match_scipy_on_the_evidence_query(tmp_path):
    data = event_log(run=lambda name, d: 1.0 + 0.8 * d / 83 if name == "etl_load" else 1.0)
    result = run_plugin(PID, data, tmp_path / "run")
    assert isinstance(result, Ok)
    f = result.findings[0]
    with make_reader(data, tmp_path / "check") as reader:
        rows = [r for r in reader.sql(f.evidence.query).to_pylist() if r["jobs"] >= 5]
    x = np.array([(r["day"] - rows[0]["day"]).days for r in rows], dtype=float)
    y = np.array([r["median_run_s"] for r in rows])
    tau = stats.kendalltau(x, y)
    slope = stats.theilslopes(y, x)
    assert f.evidence.metrics["kendall_tau"] == pytest.approx(tau.statistic)
    assert f.evidence.metrics["p_value"] == pytest.approx(tau.pvalue)
    assert f.evidence.metrics["sens_slope_s_per_day"] == pytest.approx(slope.slope)


def test_clean_log_with_weekly_seasonality_is_no_significant_effect(tmp_path):
    for seed in (1, 2, 3):
        result = run_plugin(PID, event_log(seed=seed), tmp_path / str(seed))
        assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
        assert len(result.checked) == len(PROCESSES)


def test_small_trend_is_not_reported(tmp_path):
    data = event_log(run=lambda name, d: 1.0 + 0.15 * d / 83 if name == "etl_load" else 1.0)
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_level_shift_is_not_a_trend(tmp_path):
    data = event_log(run=lambda name, d: 2.0 if name == "etl_load" and d >= 42 else 1.0)
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    line = next(c for c in result.checked if c.startswith("etl_load"))
    assert "+" in line and "step/line SSE" in line


def test_downward_trend_is_reported_as_low(tmp_path):
    data = event_log(run=lambda name, d: 1.0 - 0.5 * d / 83 if name == "reports" else 1.0)
    one = run_plugin(PID, data, tmp_path / "1")
    two = run_plugin(PID, data, tmp_path / "2", seed=3)
    assert isinstance(one, Ok)
    (f,) = one.findings
    assert f.target == "reports" and f.evidence.metrics["relative_change"] < -0.3
    assert f.severity == "low"
    assert msgspec.json.encode(one) == msgspec.json.encode(two)


def test_too_few_days_is_insufficient_data(tmp_path):
    result = run_plugin(PID, event_log(days=14), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"
    assert all("needs 21" in c for c in result.checked)


def test_without_end_times_is_not_applicable(tmp_path):
    data = event_log(days=21, ended=False)
    pre = _preflight(data, tmp_path / "pre")
    assert isinstance(pre, Na) and pre.reason_code == "NOT_APPLICABLE"
    result = run_plugin(PID, data, tmp_path / "run")
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    assert _preflight(event_log(days=21), tmp_path / "ok") is None
