"""robust_outliers: a few gross values are a decision; a heavy tail never is; codes and
clock times are never judged. Expected counts are computed here with numpy/scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.stattools import medcouple

from contracts import Na, Ok

from .conftest import run_chain

rng = np.random.default_rng(42)
CLEAN = np.round(rng.normal(100.0, 10.0, size=2000), 2)
# four gross errors (a misplaced decimal point, a sign error) in 2004 values
DIRTY = np.concatenate([CLEAN, [1000.0, 1000.0, 995.0, -900.0]])


def _modified_z(values: np.ndarray) -> np.ndarray:
    median = np.median(values)
    return np.abs(values - median) / stats.median_abs_deviation(values, scale="normal")


def test_a_few_gross_values_are_a_decision_listing_the_extremes(tmp_path):
    data = {"amount": DIRTY.tolist(), "label": ["x"] * DIRTY.size}
    result = run_chain("robust_outliers", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.kind == "robust_outliers" and f.target == "amount"
    z = _modified_z(DIRTY)
    ev = f.evidence.metrics
    assert ev["outliers"] == int(np.sum(z > 3.5)) and ev["gross_outliers"] == 4
    assert ev["values"] == DIRTY.size and ev["scale"] == "raw"
    assert ev["share"] == pytest.approx(np.sum(z > 3.5) / DIRTY.size)
    assert ev["median"] == pytest.approx(np.median(DIRTY))
    assert ev["mad_normal"] == pytest.approx(stats.median_abs_deviation(DIRTY, scale="normal"))
    # the most extreme first, with their row numbers (rowid counts from 0)
    assert ev["most_extreme"].startswith(
        "-900 (row 2003), 1000 (row 2000), 1000 (row 2001), 995 (row 2002)"
    )
    assert "ORDER BY modified_z DESC" in f.evidence.query
    assert f.evidence.rows == ev["outliers"]
    assert result.metrics["flagged_columns"] == ["amount"]


def test_a_heavy_tail_is_explained_not_decided(tmp_path):
    t = np.random.default_rng(7).standard_t(2, size=5000) * 10 + 100  # tails, no errors
    share = float(np.mean(_modified_z(t) > 3.5))
    assert share > 0.02
    result = run_chain("robust_outliers", {"delay": t.tolist()}, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert result.metrics["heavy_tailed_columns"] == ["delay"]
    assert result.metrics["columns"]["delay"]["verdict"] == "heavy_tail"
    assert result.metrics["columns"]["delay"]["share"] == pytest.approx(share)
    assert "heavy tail or a second mode" in " ".join(result.checked)


def test_no_gross_value_is_no_decision(tmp_path):
    assert not np.any(_modified_z(CLEAN) > 7)
    result = run_chain("robust_outliers", {"amount": CLEAN.tolist()}, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert result.metrics["columns"]["amount"]["verdict"] == "clean"


def test_threshold_setting_changes_the_count(tmp_path):
    result = run_chain("robust_outliers", {"amount": DIRTY.tolist()}, tmp_path, threshold=3.0)
    assert isinstance(result, Ok)
    assert result.findings[0].evidence.metrics["outliers"] == int(np.sum(_modified_z(DIRTY) > 3))


def test_identifiers_and_clock_times_are_never_judged(tmp_path):
    n = 2000
    minutes = (np.arange(n) * 7) % 1440
    data = {
        "rownames": list(range(1, n + 1)),
        "flight": [int(v) for v in np.where(np.arange(n) < 5, 8500, (np.arange(n) % 300) + 1)],
        "dep_time": (100 * (minutes // 60) + minutes % 60).tolist(),
        "price": CLEAN[:n].tolist(),
    }
    result = run_chain("robust_outliers", data, tmp_path)
    assert isinstance(result, Na)
    assert set(result.metrics["columns"]) == {"price"}
    skipped = [c for c in result.checked if "not judged" in c]
    assert [c.split(":")[0] for c in skipped] == ["rownames", "flight", "dep_time"]


def test_zero_mad_column_is_skipped(tmp_path):
    data = {"retries": [0.0] * 30 + [float(v) for v in range(5, 30)]}
    result = run_chain("robust_outliers", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert "retries: skipped, MAD is 0" in result.checked[-1]


def test_a_discrete_scale_is_not_judged(tmp_path):
    data = {"rating": [float(i % 5) for i in range(400)] + [40.0]}
    result = run_chain("robust_outliers", data, tmp_path)
    assert isinstance(result, Na)
    assert "6 distinct values (< 20)" in result.checked[-1]


def test_no_numeric_columns_is_not_applicable(tmp_path):
    result = run_chain("robust_outliers", {"name": ["a", "b", "c"]}, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"


def test_a_skewed_positive_column_is_judged_on_the_log_scale(tmp_path):
    wide = np.random.default_rng(3).lognormal(5.0, 1.0, size=5000)
    result = run_chain("robust_outliers", {"amount": wide.tolist()}, tmp_path)
    assert isinstance(result, Na) and result.metrics["columns"]["amount"]["scale"] == "log"
    logs = np.log(wide)
    expected = np.abs(logs - np.median(logs)) / stats.median_abs_deviation(logs, scale="normal")
    assert result.metrics["columns"]["amount"]["outliers"] == int(np.sum(expected > 3.5))
    raw = run_chain("robust_outliers", {"amount": wide.tolist()}, tmp_path / "raw", scale="raw")
    assert raw.metrics["columns"]["amount"]["verdict"] == "heavy_tail"  # the ordinary tail


def test_ratio_outliers_in_a_skewed_column_are_found(tmp_path):
    wide = np.random.default_rng(4).lognormal(5.0, 1.0, size=5000)
    wide[:10] *= 1e6  # ten values off by six orders of magnitude
    result = run_chain("robust_outliers", {"amount": wide.tolist()}, tmp_path)
    assert isinstance(result, Ok)
    (finding,) = result.findings
    assert finding.evidence.metrics["scale"] == "log"
    assert finding.evidence.metrics["gross_outliers"] == 10


def test_shares_are_judged_on_the_logit_scale(tmp_path):
    g = np.random.default_rng(5)
    share = np.clip(g.beta(2, 14, size=3000) * 100, 0.1, 99.9)  # a poverty rate in percent
    share[:3] = [48.0, 47.0, 46.0]  # real extremes of a bounded share
    data = {"perc_poverty": share.tolist()}
    result = run_chain("robust_outliers", data, tmp_path)
    col = result.metrics["columns"]["perc_poverty"]
    assert col["scale"] == "logit"
    p = np.clip(share / 100, 0.001, 0.999)
    logit = np.log(p / (1 - p))
    z = np.abs(logit - np.median(logit)) / stats.median_abs_deviation(logit, scale="normal")
    assert col["gross"] == int(np.sum(z > 7)) == 0
    assert isinstance(result, Na)


# a right-skewed bulk judged on the raw scale ((p99 - p50) < 2 (p50 - p01), p99/p01 < 100):
# gamma(6) amounts, medcouple about 0.13
SKEWED = np.round(np.random.default_rng(3).gamma(6.0, 200.0, size=3000), 0)


def _with(values: list[float]) -> np.ndarray:
    return np.concatenate([SKEWED, values])


def _fence_and_z(x: np.ndarray) -> tuple[float, float, np.ndarray]:
    mc = float(medcouple(x))
    z = (x - np.median(x)) / stats.median_abs_deviation(x, scale="normal")
    return mc, 7.0 * float(np.exp(3.0 * mc)), z


def test_a_long_plausible_tail_of_a_skewed_bulk_is_not_outliers(tmp_path):
    # two large but plausible amounts 8.5 and 9 robust sigmas above the median: gross
    # by the symmetric rule, inside the skew-adjusted fence of the long side
    base = SKEWED
    m, s = np.median(base), stats.median_abs_deviation(base, scale="normal")
    x = _with([round(m + 8.5 * s), round(m + 9.0 * s)])
    mc, fence, z = _fence_and_z(x)
    assert 0.1 < mc < 0.2 and int(np.sum(z > 7)) == 2 and z.max() < fence
    data = {"amount": x.tolist()}
    before = run_chain("robust_outliers", data, tmp_path / "off", skew_adjustment=0.0)
    assert isinstance(before, Ok) and before.findings[0].evidence.metrics["gross_outliers"] == 2
    result = run_chain("robust_outliers", data, tmp_path / "on")
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    col = result.metrics["columns"]["amount"]
    assert col["scale"] == "raw" and col["verdict"] == "skewed_tail"
    assert col["gross"] == 2 and col["gross_skew_adjusted"] == 0
    assert col["medcouple"] == pytest.approx(mc)
    assert "a long plausible tail, not errors" in "\n".join(result.checked)
    assert result.metrics["skewed_tail_columns"] == ["amount"]
    assert "skewed bulk, inside its skew-adjusted fence" in result.explanation


def test_a_gross_error_in_a_skewed_bulk_is_still_found(tmp_path):
    base = SKEWED
    m, s = np.median(base), stats.median_abs_deviation(base, scale="normal")
    # the plausible tail value stays out, a tenfold entry error and a sign error are in
    x = _with([round(m + 8.5 * s), round(10 * m), -round(3 * m)])
    _, fence, z = _fence_and_z(x)
    assert int(np.sum(z > fence)) == 1 and int(np.sum(z < -7)) == 1
    result = run_chain("robust_outliers", {"amount": x.tolist()}, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    # the short (low) side keeps the fence of 7, the long side's is exp(3 MC) wider
    assert f.evidence.metrics["gross_outliers"] == 2
    assert result.metrics["columns"]["amount"]["gross"] == 3


def _loans(extra: list[tuple[float, float]]) -> dict[str, list[float]]:
    """Loans at 70% of the price of what they buy (Spearman rho about 0.96), and
    ``extra`` (price, amount) rows."""
    g = np.random.default_rng(21)
    price = np.round(g.normal(1000.0, 100.0, 2000), 0)
    amount = np.round(0.7 * price + g.normal(0.0, 20.0, 2000), 0)
    price = np.concatenate([price, [p for p, _ in extra]])
    amount = np.concatenate([amount, [a for _, a in extra]])
    return {"price": price.tolist(), "amount": amount.tolist()}


def test_gross_values_the_whole_row_shares_are_large_units_not_errors(tmp_path):
    # two purchases three times the usual price, financed at the usual 70%: gross in
    # both columns, and each column's only strongly associated column is as far out
    data = _loans([(3000.0, 2100.0), (3100.0, 2150.0)])
    price, amount = np.array(data["price"]), np.array(data["amount"])
    assert abs(stats.spearmanr(price, amount).statistic) >= 0.6
    for x in (price, amount):
        z = _modified_z(x)
        assert int(np.sum(z > 7)) == 2 and np.all(z[-2:] > 7)
    result = run_chain("robust_outliers", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    for name in ("amount", "price"):
        col = result.metrics["columns"][name]
        assert col["verdict"] == "consistent_extremes" and col["gross_unexplained"] == 0
    assert result.metrics["consistent_extremes_columns"] == ["amount", "price"]
    assert "large units whose row follows the relations" in "\n".join(result.checked)
    # with the association not counted as strong, the same values are a decision
    strict = run_chain("robust_outliers", data, tmp_path / "strict", min_associated_rho=0.99)
    assert isinstance(strict, Ok) and [f.target for f in strict.findings] == ["amount", "price"]


def test_a_gross_value_its_row_does_not_share_is_still_an_error(tmp_path):
    # the large purchases again, and a loan of 2,100 on an ordinary price: an entry error
    data = _loans([(3000.0, 2100.0), (3100.0, 2150.0), (1000.0, 2100.0)])
    price, amount = np.array(data["price"]), np.array(data["amount"])
    z_price = _modified_z(price)
    assert z_price[-1] < 3.5 and int(np.sum(_modified_z(amount) > 7)) == 3
    result = run_chain("robust_outliers", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.target == "amount" and f.evidence.metrics["gross_outliers"] == 3
    assert result.metrics["columns"]["amount"]["gross_unexplained"] == 1
    assert result.metrics["columns"]["price"]["verdict"] == "consistent_extremes"


def test_an_associated_column_without_a_fence_explains_nothing(tmp_path):
    # the large purchases, and a surcharge paid only above the 60th price percentile
    # (0 on most rows: MAD 0, no fence a row could be beyond)
    data = _loans([(3000.0, 2100.0), (3100.0, 2150.0)])
    price, amount = np.array(data["price"]), np.array(data["amount"])
    surcharge = np.where(price > np.quantile(price, 0.6), np.round(0.1 * price, 0), 0.0)
    assert np.median(np.abs(surcharge - np.median(surcharge))) == 0
    assert abs(stats.spearmanr(amount, surcharge).statistic) >= 0.6
    data["surcharge"] = surcharge.tolist()
    result = run_chain("robust_outliers", data, tmp_path)
    assert isinstance(result, Ok)
    assert [f.target for f in result.findings] == ["amount", "price"]
    col = result.metrics["columns"]["amount"]
    assert col["associated"] == ["price", "surcharge"] and col["gross_unexplained"] == 2
    # without the surcharge the same rows are explained
    del data["surcharge"]
    assert isinstance(run_chain("robust_outliers", data, tmp_path / "without"), Na)


def test_nan_is_no_value_and_an_infinity_is_a_gross_one(tmp_path):
    # NaN sorts above every number in DuckDB: read as a value it would move the median
    # and pass every fence. It is missing: the figures are those of the numbers alone,
    # and the NaN are counted apart. An infinity is a value, beyond every fence.
    values = np.concatenate([DIRTY, [np.nan, np.nan, np.nan]])
    result = run_chain("robust_outliers", {"amount": values.tolist()}, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    ev = f.evidence.metrics
    z = _modified_z(DIRTY)
    assert ev["median"] == pytest.approx(np.median(DIRTY))
    assert ev["mad_normal"] == pytest.approx(stats.median_abs_deviation(DIRTY, scale="normal"))
    assert ev["values"] == DIRTY.size and ev["not_a_number"] == 3
    assert ev["outliers"] == int(np.sum(z > 3.5)) and ev["gross_outliers"] == 4
    assert "nan" not in ev["most_extreme"].lower()
    assert "3 NaN are not values and are not counted." in f.what
    assert result.metrics["columns"]["amount"]["not_a_number"] == 3
    # a clean column's NaN are named where it is checked
    clean = np.concatenate([CLEAN, [np.nan, np.nan, np.nan]])
    na = run_chain("robust_outliers", {"amount": clean.tolist()}, tmp_path / "clean")
    assert isinstance(na, Na)
    (line,) = [c for c in na.checked if c.startswith("amount")]
    assert f"of {CLEAN.size} values" in line and "(3 NaN, no value, not counted)" in line

    with_inf = np.concatenate([DIRTY, [np.inf]])
    result = run_chain("robust_outliers", {"amount": with_inf.tolist()}, tmp_path / "inf")
    assert isinstance(result, Ok)
    (f,) = result.findings
    ev = f.evidence.metrics
    assert ev["median"] == pytest.approx(np.median(with_inf))  # from SQL: not all finite
    assert ev["gross_outliers"] == 5 and ev["not_a_number"] == 0
    assert ev["most_extreme"].startswith("inf (row 2004), -900 (row 2003)")


def test_nan_in_an_associated_column_explains_nothing(tmp_path):
    # a NaN price is beyond no fence: the gross loan on its row stays unexplained
    data = _loans([(3000.0, 2100.0), (3100.0, 2150.0)])
    explained = run_chain("robust_outliers", data, tmp_path / "numbers")
    assert isinstance(explained, Na)
    price = np.array(data["price"])
    price[np.argsort(-np.array(data["amount"]))[:2]] = np.nan
    data["price"] = price.tolist()
    result = run_chain("robust_outliers", data, tmp_path / "nan")
    assert isinstance(result, Ok)
    assert [f.target for f in result.findings] == ["amount"]
    assert result.metrics["columns"]["amount"]["gross_unexplained"] == 2
