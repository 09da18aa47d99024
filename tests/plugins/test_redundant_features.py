from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from contracts import Na, Ok

from .conftest import run_plugin

T0 = datetime(2024, 1, 1)
N = 2000


def _table(seed: int = 2):
    """Realistic numeric columns: related (r around 0.6-0.8) but not redundant, plus
    identifiers and times that correlate trivially."""
    rng = np.random.default_rng(seed)
    queued = np.sort(rng.integers(0, 60 * 86400, size=N))
    wait = rng.lognormal(5, 0.6, size=N)
    amount = rng.lognormal(7, 0.8, size=N)
    return {
        "job_number": np.arange(1, N + 1).tolist(),
        "queued_at": [T0 + timedelta(seconds=int(s)) for s in queued],
        "queued_epoch": (1_704_067_200 + queued).tolist(),
        "started_epoch": (1_704_067_200 + queued + wait.astype(int)).tolist(),
        "amount": amount.round(2).tolist(),
        "fee": (amount * 0.02 + rng.normal(0, 12, N)).round(2).tolist(),
        "wait_s": wait.round(1).tolist(),
        "run_s": (wait * 1.5 + rng.lognormal(5, 0.8, N)).round(1).tolist(),
        "retry_count": rng.integers(0, 3, size=N).tolist(),
    }


def test_planted_redundant_column_is_the_later_one(tmp_path):
    data = _table()
    rng = np.random.default_rng(9)
    amount = np.array(data["amount"])
    data["amount_eur"] = (amount * 0.92 + rng.normal(0, 5, N)).round(2).tolist()
    result = run_plugin("redundant_features", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.kind == "redundant_feature" and f.target == "amount_eur"
    assert f.evidence.columns == ("amount", "amount_eur")
    ev = f.evidence.metrics
    r = np.corrcoef(amount, np.array(data["amount_eur"]))[0, 1]
    assert ev["pearson_r"] == pytest.approx(r, rel=1e-9)
    assert ev["pairs"] == N and ev["kept_column"] == "amount"
    assert ev["p_value"] < 0.001 and ev["sample_spearman_rho"] > 0.95
    assert "Drop amount_eur" in f.recommendation


def test_the_later_column_is_targeted_whatever_the_sign(tmp_path):
    data = _table()
    wait = np.array(data["wait_s"])
    # an earlier column that is the negative of a later one: "margin" precedes "wait_s"
    data = {"margin": (1000 - wait).tolist()} | data
    result = run_plugin("redundant_features", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.target == "wait_s" and f.evidence.columns == ("margin", "wait_s")
    assert f.evidence.metrics["pearson_r"] == pytest.approx(-1.0)


def test_each_later_copy_is_one_finding(tmp_path):
    data = _table()
    amount = np.array(data["amount"])
    data["amount_cents"] = (amount * 100).round().tolist()
    data["amount_k"] = (amount / 1000).tolist()
    result = run_plugin("redundant_features", data, tmp_path)
    assert isinstance(result, Ok)
    assert [f.target for f in result.findings] == ["amount_cents", "amount_k"]
    assert all(f.evidence.columns[0] == "amount" for f in result.findings)


def test_clean_table_is_no_significant_effect(tmp_path):
    result = run_plugin("redundant_features", _table(), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    # epoch and id-like columns are not even compared
    assert any("queued_epoch" in c and "skipped" in c for c in result.checked)
    assert not any("job_number ~" in c for c in result.checked)


def test_columns_that_only_follow_row_order_are_skipped(tmp_path):
    data = _table()
    data["seq"] = np.arange(N).tolist()
    data["batch_counter"] = (np.arange(N) // 10).tolist()
    result = run_plugin("redundant_features", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert any("seq ~ batch_counter" in c and "row order" in c for c in result.checked)


def test_one_shared_extreme_row_is_not_redundancy(tmp_path):
    rng = np.random.default_rng(4)
    x, y = rng.normal(0, 1, N), rng.normal(0, 1, N)
    x[17], y[17] = 1e4, 1e4  # Pearson r near 1, ranks unrelated
    data = {"x": x.tolist(), "y": y.tolist()}
    result = run_plugin("redundant_features", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert any("x ~ y" in c and "Spearman" in c for c in result.checked)


def test_constant_columns_do_not_warn(tmp_path):
    data = {"a": [1.0] * 200, "b": [2.0] * 200, "c": list(range(200))}
    result = run_plugin("redundant_features", data, tmp_path)
    assert isinstance(result, Na)


def test_one_numeric_column_is_not_applicable(tmp_path):
    data = {"amount": [1.0, 2.0, 3.5, 4.0], "label": ["a", "b", "a", "b"]}
    result = run_plugin("redundant_features", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"


def test_a_bounded_sample_when_max_sample_is_set(tmp_path):
    data = _table()
    data["amount_eur"] = (np.array(data["amount"]) * 0.92).tolist()
    one = run_plugin("redundant_features", data, tmp_path / "1", max_sample=300)
    assert isinstance(one, Ok) and one.findings[0].evidence.metrics["sample_size"] == 300
