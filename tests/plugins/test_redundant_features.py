from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from contracts import Na, Ok

from .conftest import load_plugin, run_plugin

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
    # epochs (semantic timestamp) and the row number (identifier) are not correlated
    assert result.checked[0] == "correlations: 5 of 5 quantity columns"
    assert result.metrics["quantity_columns"] == 5
    assert "10 pairs of 5 quantity columns over all rows" in result.explanation


def test_columns_that_only_follow_row_order_are_skipped(tmp_path):
    data = _table()
    g = np.random.default_rng(8)
    data["level_a"] = (np.arange(N) * 2.5 + g.normal(0, 1, N)).tolist()
    data["level_b"] = (np.arange(N) * 0.7 + g.normal(0, 1, N)).tolist()
    result = run_plugin("redundant_features", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert any("level_a ~ level_b" in c and "row order" in c for c in result.checked)


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


def test_one_column_is_not_applicable(tmp_path):
    result = run_plugin("redundant_features", {"amount": [1.0, 2.0, 3.5, 4.0]}, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"


def _hhmm(minutes: np.ndarray) -> np.ndarray:
    return 100 * (minutes // 60) + minutes % 60


def test_a_coarser_encoding_of_a_clock_is_a_function_of_it(tmp_path):
    g = np.random.default_rng(11)
    minutes = g.integers(20, 92, size=N) * 15  # departures 05:00..22:45 every 15 min, HHMM
    data = {
        "sched_dep_time": _hhmm(minutes).tolist(),
        "hour": (minutes // 60).tolist(),
        "minute": (minutes % 60).tolist(),
        "delay": g.normal(10, 5, N).tolist(),
    }
    result = run_plugin("redundant_features", data, tmp_path)
    assert isinstance(result, Ok)
    by_target = {f.target: f for f in result.findings}
    assert set(by_target) == {"hour", "minute"}  # the clock itself is never dropped
    f = by_target["hour"]
    assert f.evidence.columns == ("sched_dep_time", "hour")
    assert f.evidence.metrics["relation"] == "function"
    assert f.evidence.metrics["dependent_values"] == len(set((minutes // 60).tolist()))
    assert "exact function of sched_dep_time" in f.what and "Drop hour" in f.recommendation
    # one changed value breaks the function: nothing is claimed
    data["hour"][0] = (data["hour"][0] + 1) % 24
    again = run_plugin("redundant_features", data, tmp_path / "broken")
    assert {f.target for f in again.findings} == {"minute"}


def test_a_category_that_determines_a_quantity(tmp_path):
    g = np.random.default_rng(12)
    dest = g.choice(["BOS", "LAX", "ORD", "HNL"], size=N)
    miles = {"BOS": 187.0, "LAX": 2475.0, "ORD": 719.0, "HNL": 4983.0}
    distance = np.array([miles[d] for d in dest]) + g.normal(0, 10, N)
    data = {
        "dest": dest.tolist(),
        "distance": distance.tolist(),
        "delay": g.normal(0, 9, N).tolist(),
    }
    result = run_plugin("redundant_features", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.target == "distance" and f.evidence.columns == ("dest", "distance")
    # adjusted eta², computed independently: within / total mean squares
    groups = [distance[dest == d] for d in sorted(miles)]
    within = sum(((x - x.mean()) ** 2).sum() for x in groups)
    total = ((distance - distance.mean()) ** 2).sum()
    eta2 = 1 - (within / (N - 4)) / (total / (N - 1))
    assert f.evidence.metrics["eta_squared_adjusted"] == pytest.approx(eta2, rel=1e-9)


def test_near_duplicate_text_columns_keep_the_more_complete_one(tmp_path):
    g = np.random.default_rng(13)
    city = g.choice(["Oslo", "Bergen", "Tromsø", "Bodø", "Molde"], size=N).tolist()
    copy = list(city)
    copy[5] = "Oslo " if copy[5] != "Oslo " else "x"  # one typo: 99.95% agreement
    with_gaps = [None if i % 500 == 0 else c for i, c in enumerate(city)]
    data = {"town": with_gaps, "city": copy, "x": g.normal(0, 1, N).tolist()}
    result = run_plugin("redundant_features", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    # town is earlier but has 4 missing values: town is dropped, city kept
    assert f.target == "town" and f.evidence.columns == ("city", "town")
    # rows where both hold the common most frequent value agree trivially: left out
    mode = Counter(city).most_common(1)[0][0]
    pairs = [(a, b) for a, b in zip(with_gaps, copy, strict=True) if not a == b == mode]
    equal = sum(1 for a, b in pairs if a == b)
    assert f.evidence.metrics["agreement"] == pytest.approx(equal / len(pairs))
    assert f.evidence.metrics["modal_rows_left_out"] == N - len(pairs)
    assert "more missing values" in f.recommendation


def test_mostly_zero_columns_are_not_near_duplicates(tmp_path):
    g = np.random.default_rng(16)
    a = np.where(g.random(N) < 0.003, g.integers(1, 16, N), 0)  # like edge pixels of digits
    b = np.where(g.random(N) < 0.003, g.integers(1, 16, N), 0)
    assert np.mean(a == b) > 0.99  # agree on the zeros only
    result = run_plugin("redundant_features", {"a": a.tolist(), "b": b.tolist()}, tmp_path)
    assert isinstance(result, Na)


def test_a_shared_trend_is_not_redundancy(tmp_path):
    g = np.random.default_rng(14)
    days = [T0 + timedelta(days=i) for i in range(400)]
    trend = np.arange(400) * 1.0
    a = trend + np.cumsum(g.normal(0, 1, 400))  # a random walk on a trend
    b = 0.5 * trend + np.cumsum(g.normal(0, 1, 400))  # another one, independent steps
    c = 2 * a + g.normal(0, 0.5, 400)  # moves with a step by step
    data = {"day": days, "a": a.tolist(), "b": b.tolist(), "c": c.tolist()}
    result = run_plugin("redundant_features", data, tmp_path, positional_r=1.0)
    assert isinstance(result, Ok)
    assert [f.target for f in result.findings] == ["c"]
    assert abs(np.corrcoef(a, b)[0, 1]) > 0.95
    da, db = np.diff(a), np.diff(b)
    assert any(
        "a ~ b" in line and f"r = {np.corrcoef(da, db)[0, 1]:.3f} of their changes" in line
        for line in result.metrics["notes"]
    )


def test_every_pair_is_correlated_however_many_columns(tmp_path):
    g = np.random.default_rng(15)
    data = {f"q{i:02d}": g.normal(0, 1, 300).tolist() for i in range(70)}
    data["q69"] = (np.array(data["q68"]) * 3 + g.normal(0, 0.01, 300)).tolist()
    result = run_plugin("redundant_features", data, tmp_path)
    assert isinstance(result, Ok)
    assert [f.target for f in result.findings] == ["q69"]
    assert result.metrics["quantity_columns_correlated"] == 70
    assert "2415 pairs of 70 quantity columns" in result.metrics["checked"]
    capped = run_plugin("redundant_features", data, tmp_path / "capped", max_columns=60)
    assert isinstance(capped, Na)
    assert (
        capped.checked[0]
        == "correlations: 60 of 70 quantity columns (the first 60 in dataset order)"
    )


def test_near_unique_columns_are_compared_without_a_mode(tmp_path, monkeypatch):
    module = load_plugin("redundant_features")
    monkeypatch.setattr(module, "MODE_MAX_DISTINCT", 10)  # as if 10M distinct values
    g = np.random.default_rng(17)
    x = g.normal(100, 20, N)
    copy = x.copy()
    copy[:3] += 1.0  # 3 of 2000 rows differ: 99.85% agreement
    result = run_plugin("redundant_features", {"x": x.tolist(), "x2": copy.tolist()}, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.evidence.metrics["relation"] == "near_duplicate"
    assert f.evidence.metrics["agreement"] == pytest.approx((N - 3) / N)
    assert f.evidence.metrics["modal_rows_left_out"] == 0


def test_a_bounded_sample_when_max_sample_is_set(tmp_path):
    data = _table()
    data["amount_eur"] = (np.array(data["amount"]) * 0.92).tolist()
    one = run_plugin("redundant_features", data, tmp_path / "1", max_sample=300)
    assert isinstance(one, Ok) and one.findings[0].evidence.metrics["sample_size"] == 300


def test_a_correlation_of_changes_one_episode_makes_is_not_redundancy(tmp_path):
    g = np.random.default_rng(23)
    n = 400
    days = [T0 + timedelta(days=i) for i in range(n)]
    trend = np.arange(n) * 1.0
    shock = np.where(np.arange(n) < n // 2, g.normal(0, 3, n), 0.0)  # a shared recession
    a = trend + np.cumsum(shock + g.normal(0, 1, n))
    b = 0.5 * trend + np.cumsum(shock + g.normal(0, 1, n))  # shares only the shock
    c = 2 * a + g.normal(0, 0.5, n)  # moves with a step by step, throughout
    data = {"day": days, "a": a.tolist(), "b": b.tolist(), "c": c.tolist()}
    da, db = np.diff(a), np.diff(b)
    # levels and changes correlate as the whole-range rules require...
    assert abs(np.corrcoef(a, b)[0, 1]) > 0.95 and np.corrcoef(da, db)[0, 1] >= 0.8
    # ...but the second half's changes (rows 201..400 in time order) do not
    late = stats.pearsonr(da[n // 2 - 1 :], db[n // 2 - 1 :], alternative="greater")
    early = stats.pearsonr(da[: n // 2 - 1], db[: n // 2 - 1], alternative="greater")
    assert early.pvalue < 0.05 <= late.pvalue
    result = run_plugin("redundant_features", data, tmp_path, positional_r=1.0)
    assert isinstance(result, Ok)
    assert [f.target for f in result.findings] == ["c"]
    note = next(line for line in result.metrics["notes"] if line.startswith("a ~ b"))
    assert f"r = {late.statistic:.3f} of the changes in the second half" in note
    assert f"one-sided p = {late.pvalue:.2g}" in note
    (f,) = result.findings
    m = f.evidence.metrics
    dc = np.diff(c)
    assert m["changes_pearson_r_second_half"] == pytest.approx(
        np.corrcoef(da[n // 2 - 1 :], dc[n // 2 - 1 :])[0, 1]
    )
    # with the halves not required to replicate, b is redundant as well
    lax = run_plugin("redundant_features", data, tmp_path / "lax", positional_r=1.0, half_alpha=1.0)
    assert isinstance(lax, Ok) and [f.target for f in lax.findings] == ["b", "c"]


def test_the_common_most_frequent_value_of_times_and_of_nan_is_left_out(tmp_path):
    # A sentinel time (a default stamp) and NaN are values like any other: rows where
    # both columns hold that common most frequent value agree trivially.
    g = np.random.default_rng(18)
    sentinel = datetime(1970, 1, 1)
    stamps = [T0 + timedelta(minutes=int(m)) for m in g.integers(0, 10**6, N)]
    opened = [sentinel if i % 3 == 0 else s for i, s in enumerate(stamps)]
    logged = list(opened)
    logged[7] = logged[7] + timedelta(seconds=1)  # one disagreement
    score = np.where(np.arange(N) % 2 == 0, np.nan, g.normal(0, 1, N).round(3))
    rescored = score.copy()
    rescored[1] += 1.0
    data = {
        "opened": opened,
        "logged": logged,
        "score": score.tolist(),
        "rescored": rescored.tolist(),
    }
    result = run_plugin("redundant_features", data, tmp_path)
    assert isinstance(result, Ok)
    by_target = {f.target: f.evidence.metrics for f in result.findings}
    assert set(by_target) == {"logged", "rescored"}
    times, scores = by_target["logged"], by_target["rescored"]
    assert times["relation"] == scores["relation"] == "near_duplicate"
    modal_times = sum(1 for a in opened if a == sentinel)
    assert times["modal_rows_left_out"] == modal_times
    assert times["agreement"] == pytest.approx((N - modal_times - 1) / (N - modal_times))
    assert scores["modal_rows_left_out"] == N // 2
    assert scores["agreement"] == pytest.approx((N // 2 - 1) / (N // 2))
