from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
import numpy as np
import pyarrow as pa

from contracts import Na, Ok
from engine._core.manifests import PluginSpec
from engine._core.preflight import preflight
from engine.testing import make_reader

from .conftest import PLUGINS_DIR, load_plugin, manifest, run_plugin

PID = "control_chart"
T0 = datetime(2024, 1, 1)  # a Monday
# name: (jobs per weekday, median wait s, median run s); processes differ by design
PROCESSES = {
    "billing": (30, 300.0, 600.0),
    "close_gl": (20, 1800.0, 1500.0),
    "etl_load": (40, 120.0, 2400.0),
    "payroll": (15, 600.0, 900.0),
    "reports": (25, 240.0, 300.0),
}


def event_log(days: int = 84, seed: int = 1, wait=None, weekend_wait: float = 0.7) -> pa.Table:
    """A realistic log: weekends at 30% volume (waits x ``weekend_wait``), Mondays' waits
    30% longer, lognormal waits and runs; ``wait(name, day)`` multiplies a day's waits."""
    rng = np.random.default_rng(seed)
    names, queued, waits, runs = [], [], [], []
    for name in sorted(PROCESSES):
        per_day, wait_med, run_med = PROCESSES[name]
        for d in range(days):
            weekday = (T0 + timedelta(days=d)).weekday()
            n = int(rng.poisson(per_day * (0.3 if weekday >= 5 else 1.0)))
            season = 1.3 if weekday == 0 else weekend_wait if weekday >= 5 else 1.0
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


def _day(d: int) -> str:
    return (T0 + timedelta(days=d)).date().isoformat()


def test_planted_excursion_is_found(tmp_path):
    # Tuesday to Friday of the seventh week
    data = event_log(wait=lambda name, d: 4.0 if name == "billing" and 43 <= d < 47 else 1.0)
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.kind == "control_chart_violation" and f.target == "billing"
    ev = f.evidence.metrics
    assert ev["violations"] == 4 and ev["longest_run"] == 4
    assert ev["first_violation"] == _day(43) and ev["last_violation"] == _day(46)
    assert ev["longest_run_start"] == _day(43)
    assert all(_day(d) in str(ev["violation_days"]) for d in range(43, 47))
    assert ev["worst_ratio_to_centre"] > 2.5
    assert 0 < ev["p_value"] < 1e-3
    assert f.measurement == "modeled" and f.impact is not None and f.impact.value > 0
    assert "alert" in f.recommendation and "billing" in f.evidence.query


def test_gradual_growth_of_waits_is_not_out_of_control(tmp_path):
    # waits double over the twelve weeks (growing load): the centre follows the drift
    data = event_log(wait=lambda name, d: 1.0 + d / 83 if name == "billing" else 1.0)
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_clean_log_with_weekly_seasonality_is_no_significant_effect(tmp_path):
    for seed in (1, 2, 3):
        result = run_plugin(PID, event_log(seed=seed), tmp_path / str(seed))
        assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
        assert len(result.checked) == len(PROCESSES)


def test_weekend_backlogs_are_seasonal_not_violations(tmp_path):
    # waits on weekends are 2.5x as long (reduced weekend capacity): every weekend
    result = run_plugin(PID, event_log(weekend_wait=2.5), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_sustained_shift_is_left_to_changepoints(tmp_path):
    data = event_log(wait=lambda name, d: 2.5 if name == "billing" and d >= 49 else 1.0)
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_excursion_after_a_shift_is_charted_against_the_new_level(tmp_path):
    def wait(name, d):
        if name != "billing":
            return 1.0
        level = 2.5 if d >= 35 else 1.0
        return level * (4.0 if 60 <= d < 63 else 1.0)

    result = run_plugin(PID, event_log(wait=wait), tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.target == "billing"
    ev = f.evidence.metrics
    assert ev["longest_run"] == 3 and ev["longest_run_start"] == _day(60)
    assert ev["violations"] <= 4  # at most the step's edge day besides the excursion


def test_small_excursion_is_not_a_violation(tmp_path):
    data = event_log(wait=lambda name, d: 1.3 if name == "billing" and 43 <= d < 47 else 1.0)
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_low_excursions_only_with_both_sides(tmp_path):
    data = event_log(wait=lambda name, d: 0.2 if name == "reports" and 43 <= d < 47 else 1.0)
    result = run_plugin(PID, data, tmp_path / "upper")
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    result = run_plugin(PID, data, tmp_path / "both", sides="both")
    assert isinstance(result, Ok)
    assert [f.target for f in result.findings] == ["reports"]


def test_result_is_deterministic(tmp_path):
    data = event_log(wait=lambda name, d: 4.0 if name == "payroll" and 22 <= d < 25 else 1.0)
    one = run_plugin(PID, data, tmp_path / "1")
    two = run_plugin(PID, data, tmp_path / "2", seed=5)
    assert isinstance(one, Ok) and [f.target for f in one.findings] == ["payroll"]
    assert msgspec.json.encode(one) == msgspec.json.encode(two)


def test_too_few_days_is_insufficient_data(tmp_path):
    result = run_plugin(PID, event_log(days=14), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"
    assert all("needs 21" in c for c in result.checked)


def test_not_an_event_log_is_not_applicable(tmp_path):
    data = {"x": [1.0, 2.0, 3.0], "name": ["a", "b", "c"]}
    pre = _preflight(data, tmp_path / "pre")
    assert isinstance(pre, Na) and pre.reason_code == "NOT_APPLICABLE"
    result = run_plugin(PID, data, tmp_path / "run")
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"


def test_longest_run():
    plugin = load_plugin(PID)
    flags = np.array([0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1], dtype=bool)
    assert plugin.longest_run(flags) == (3, 4)
    assert plugin.longest_run(np.zeros(5, dtype=bool)) == (0, 0)


def test_a_queue_that_mostly_does_not_wait_is_not_charted(tmp_path):
    """A pool with spare workers most days: the daily median wait is 0 s (floored to 1 s)
    with a few busy days; its zero moving range would flag every busy day."""
    data = event_log().to_pydict()
    rng = np.random.default_rng(8)
    days = sorted({q.date() for q in data["queued_at"]})
    busy = set(days[10::17])
    for i, (p, q) in enumerate(zip(data["process_name"], data["queued_at"], strict=True)):
        if p == "billing":
            wait = float(rng.exponential(600.0)) if q.date() in busy else 0.0
            run = data["ended_at"][i] - data["started_at"][i]
            data["started_at"][i] = q + timedelta(seconds=round(wait))
            data["ended_at"][i] = data["started_at"][i] + run
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    line = next(c for c in result.checked if c.startswith("billing:"))
    assert "not charted" in line and "under 1 s" in line
    # without the rule (any floor share allowed) the busy days are flagged
    flagged = run_plugin(PID, data, tmp_path / "no_rule", max_floor_share=1.0)
    assert isinstance(flagged, Ok) and [f.target for f in flagged.findings] == ["billing"]
