from __future__ import annotations

from datetime import date, datetime, timedelta

import msgspec
import numpy as np
import pyarrow as pa
import pytest

from contracts import Na, Ok
from contracts.series import binary_segmentation
from engine._core.manifests import PluginSpec
from engine._core.preflight import preflight
from engine.testing import make_reader

from .conftest import PLUGINS_DIR, manifest, run_plugin

PID = "changepoints"
T0 = datetime(2024, 1, 1)  # a Monday
# name: (jobs per weekday, median wait s, median run s); processes differ by design
PROCESSES = {
    "billing": (30, 300.0, 600.0),
    "close_gl": (20, 1800.0, 1500.0),
    "etl_load": (40, 120.0, 2400.0),
    "payroll": (15, 600.0, 900.0),
    "reports": (25, 240.0, 300.0),
}


def event_log(days: int = 84, seed: int = 1, wait=None) -> pa.Table:
    """A realistic log: weekends at 30% volume with shorter waits, Mondays' waits 30%
    longer, lognormal waits and runs; ``wait(name, day)`` multiplies a day's waits."""
    rng = np.random.default_rng(seed)
    names, queued, waits, runs = [], [], [], []
    for name in sorted(PROCESSES):
        per_day, wait_med, run_med = PROCESSES[name]
        for d in range(days):
            weekday = (T0 + timedelta(days=d)).weekday()
            n = int(rng.poisson(per_day * (0.3 if weekday >= 5 else 1.0)))
            season = 1.3 if weekday == 0 else 0.7 if weekday >= 5 else 1.0
            factor = season * (wait(name, d) if wait else 1.0)
            names += [name] * n
            queued += (d * 86400 + rng.integers(6 * 3600, 20 * 3600, n)).tolist()
            waits += np.round(rng.lognormal(np.log(wait_med * factor), 0.6, n)).tolist()
            runs += np.round(rng.lognormal(np.log(run_med), 0.5, n) + 1).tolist()
    q = np.array(queued, dtype="int64")
    s = q + np.array(waits, dtype="int64")
    e = s + np.array(runs, dtype="int64")
    base = np.datetime64(T0, "s")
    return pa.table(
        {
            "process_name": names,
            "queued_at": base + q.astype("timedelta64[s]"),
            "started_at": base + s.astype("timedelta64[s]"),
            "ended_at": base + e.astype("timedelta64[s]"),
        }
    )


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


def test_planted_step_is_found_with_its_date_and_levels(tmp_path):
    data = event_log(wait=lambda name, d: 2.5 if name == "billing" and d >= 49 else 1.0)
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.kind == "changepoint" and f.target == "billing"
    ev = f.evidence.metrics
    assert ev["change_date"] == (T0 + timedelta(days=49)).date().isoformat()
    assert ev["days_before"] >= 7 and ev["days_after"] >= 7
    assert 2.0 <= ev["ratio"] <= 3.2
    assert ev["p_value"] < 1e-6
    assert 250 <= ev["before_median_wait_s"] <= 350
    assert f.severity == "high"  # +150%
    assert f.measurement == "modeled" and f.impact is not None
    assert f.impact.unit == "hours/month" and f.impact.value > 0
    assert "billing" in f.evidence.query and f.evidence.columns == (
        "process_name",
        "queued_at",
        "started_at",
    )
    assert result.metrics["flagged_processes"] == ["billing"]


def test_evidence_query_reproduces_the_levels(tmp_path):
    data = event_log(wait=lambda name, d: 2.5 if name == "billing" and d >= 49 else 1.0)
    result = run_plugin(PID, data, tmp_path / "run")
    assert isinstance(result, Ok)
    f = result.findings[0]
    with make_reader(data, tmp_path / "check") as reader:
        rows = reader.sql(f.evidence.query).to_pylist()
    change = date.fromisoformat(str(f.evidence.metrics["change_date"]))
    before = [r["median_wait_s"] for r in rows if r["day"] < change and r["jobs"] >= 5]
    after = [r["median_wait_s"] for r in rows if r["day"] >= change and r["jobs"] >= 5]
    assert f.evidence.metrics["before_median_wait_s"] == pytest.approx(np.median(before))
    assert f.evidence.metrics["after_median_wait_s"] == pytest.approx(np.median(after))


def test_clean_log_with_weekly_seasonality_is_no_significant_effect(tmp_path):
    for seed in (1, 2, 3):
        result = run_plugin(PID, event_log(seed=seed), tmp_path / str(seed))
        assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
        assert len(result.checked) == len(PROCESSES)


def test_gradual_trend_is_not_a_changepoint(tmp_path):
    data = event_log(wait=lambda name, d: 1.0 + 2.0 * d / 83 if name == "billing" else 1.0)
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_short_spike_is_not_a_changepoint(tmp_path):
    data = event_log(wait=lambda name, d: 5.0 if name == "billing" and 40 <= d < 43 else 1.0)
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_small_shift_is_not_reported(tmp_path):
    data = event_log(wait=lambda name, d: 1.3 if name == "billing" and d >= 42 else 1.0)
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_result_is_deterministic(tmp_path):
    data = event_log(wait=lambda name, d: 0.3 if name == "payroll" and d >= 30 else 1.0)
    one = run_plugin(PID, data, tmp_path / "1")
    two = run_plugin(PID, data, tmp_path / "2", seed=99)
    assert msgspec.json.encode(one) == msgspec.json.encode(two)
    assert isinstance(one, Ok)
    (f,) = one.findings
    assert f.target == "payroll" and f.evidence.metrics["relative_shift"] < -0.5
    assert f.severity == "low"


def test_too_few_days_is_insufficient_data(tmp_path):
    result = run_plugin(PID, event_log(days=10), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"
    assert all("needs 14" in c for c in result.checked)


def test_not_an_event_log_is_not_applicable(tmp_path):
    data = {"x": [1.0, 2.0, 3.0], "name": ["a", "b", "c"]}
    pre = _preflight(data, tmp_path / "pre")
    assert isinstance(pre, Na) and pre.reason_code == "NOT_APPLICABLE"
    result = run_plugin(PID, data, tmp_path / "run")
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    assert _preflight(event_log(days=14), tmp_path / "ok") is None


def test_binary_segmentation_finds_both_edges():
    y = np.concatenate([np.zeros(30), np.ones(12), np.zeros(30)])
    y = y + np.random.default_rng(0).normal(0, 0.05, y.size)
    assert binary_segmentation(y, 7, 0.1, 5) == [30, 42]
    assert binary_segmentation(np.zeros(20), 7, 0.1, 5) == []
