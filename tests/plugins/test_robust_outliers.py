from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from contracts import Na, Ok

from .conftest import run_chain

rng = np.random.default_rng(42)
CLEAN = np.round(rng.normal(100.0, 10.0, size=400), 2)
DIRTY = np.concatenate([CLEAN, [1000.0] * 8, [-900.0, -800.0]])


def _expected_outliers(values: np.ndarray, threshold: float = 3.5) -> int:
    median = np.median(values)
    scale = stats.median_abs_deviation(values, scale="normal")
    return int(np.sum(np.abs(values - median) / scale > threshold))


def test_planted_outliers_are_counted(tmp_path):
    data = {"amount": DIRTY.tolist(), "label": ["x"] * DIRTY.size}
    result = run_chain("robust_outliers", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.kind == "robust_outliers" and f.target == "amount"
    expected = _expected_outliers(DIRTY)
    assert expected >= 10
    ev = f.evidence.metrics
    assert ev["outliers"] == expected
    assert ev["values"] == DIRTY.size
    assert ev["share"] == pytest.approx(expected / DIRTY.size)
    assert ev["median"] == pytest.approx(np.median(DIRTY))
    assert ev["mad_normal"] == pytest.approx(stats.median_abs_deviation(DIRTY, scale="normal"))
    assert ev["outliers_low"] >= 2 and ev["max_outlier"] == 1000.0
    assert ev["min_outlier"] == -900.0
    assert f.severity == "medium"  # 1% <= share < 5%
    assert f.recommendation and f.evidence.rows == expected
    assert result.metrics["flagged_columns"] == ["amount"]


def test_threshold_setting_changes_the_count(tmp_path):
    data = {"amount": DIRTY.tolist()}
    result = run_chain("robust_outliers", data, tmp_path, threshold=2.0)
    assert isinstance(result, Ok)
    assert result.findings[0].evidence.metrics["outliers"] == _expected_outliers(DIRTY, 2.0)


def test_clean_data_is_no_significant_effect(tmp_path):
    assert _expected_outliers(CLEAN) / CLEAN.size <= 0.005
    result = run_chain("robust_outliers", {"amount": CLEAN.tolist()}, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert any(c.startswith("amount:") for c in result.checked)


def test_zero_mad_column_is_skipped(tmp_path):
    data = {"retries": [0.0] * 30 + [5.0] * 5}
    result = run_chain("robust_outliers", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert result.checked == ("retries: skipped, MAD is 0 (over half the values are equal)",)


def test_no_numeric_columns_is_not_applicable(tmp_path):
    result = run_chain("robust_outliers", {"name": ["a", "b", "c"]}, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"


def test_wide_lognormal_column_is_judged_on_the_log_scale(tmp_path):
    rng = np.random.default_rng(3)
    wide = rng.lognormal(5.0, 1.6, size=5000)  # spans several orders of magnitude
    result = run_chain("robust_outliers", {"amount": wide.tolist()}, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    raw = run_chain("robust_outliers", {"amount": wide.tolist()}, tmp_path / "raw", scale="raw")
    assert isinstance(raw, Ok)  # on the raw scale the ordinary tail looks like outliers


def test_ratio_outliers_in_a_wide_column_are_found(tmp_path):
    rng = np.random.default_rng(4)
    wide = rng.lognormal(5.0, 1.0, size=5000)
    wide[:100] *= 1e6  # 2% off by six orders of magnitude
    result = run_chain("robust_outliers", {"amount": wide.tolist()}, tmp_path)
    assert isinstance(result, Ok)
    (finding,) = result.findings
    assert finding.target == "amount" and finding.evidence.metrics["log_scale"] is True
    assert finding.evidence.metrics["outliers"] >= 100
