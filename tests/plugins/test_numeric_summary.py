from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from contracts import Na, Ok

from .conftest import run_plugin

X = [1.0, 2.0, 3.0, 4.0, 100.0]


def test_summary_matches_numpy_and_scipy(tmp_path):
    data = {
        "x": X,
        "y": [1.0, None, 3.0, None, 5.0],
        "label": ["a", "b", "c", "d", "e"],
        "row_id": [1, 2, 3, 4, 5],
    }
    result = run_plugin("numeric_summary", data, tmp_path)
    assert isinstance(result, Ok)
    # label is categorical and row_id an identifier: neither is summarized
    assert [f.target for f in result.findings] == ["x", "y"]
    assert {f.kind for f in result.findings} == {"numeric_summary"}
    x = result.metrics["columns"]["x"]
    arr = np.array(X)
    assert x["count"] == 5
    assert x["mean"] == pytest.approx(22.0)
    assert x["std"] == pytest.approx(np.std(arr, ddof=1))
    assert x["min"] == 1.0 and x["max"] == 100.0
    for label, q in (("p01", 1), ("p25", 25), ("p50", 50), ("p75", 75), ("p99", 99)):
        assert x[label] == pytest.approx(np.percentile(arr, q)), label
    assert x["p50"] == 3.0
    assert x["mad"] == pytest.approx(stats.median_abs_deviation(arr)) == 1.0
    assert x["mad_normal"] == pytest.approx(stats.median_abs_deviation(arr, scale="normal"))
    y = result.metrics["columns"]["y"]
    assert y["count"] == 3 and y["mean"] == pytest.approx(3.0) and y["p50"] == 3.0
    assert result.findings[0].evidence.metrics["p50"] == 3.0


def test_odd_and_even_mad_match_scipy(tmp_path):
    rng = np.random.default_rng(7)
    values = np.round(rng.normal(10, 3, size=101), 3)
    result = run_plugin("numeric_summary", {"v": values.tolist()}, tmp_path / "odd")
    assert result.metrics["columns"]["v"]["mad"] == pytest.approx(
        stats.median_abs_deviation(values)
    )
    even = values[:100]
    result = run_plugin("numeric_summary", {"v": even.tolist()}, tmp_path / "even")
    assert result.metrics["columns"]["v"]["mad"] == pytest.approx(stats.median_abs_deviation(even))


def test_no_numeric_columns_is_not_applicable(tmp_path):
    result = run_plugin("numeric_summary", {"name": ["a", "b"], "kind": ["x", "y"]}, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"


@pytest.mark.parametrize("poison", [None, float("nan"), float("inf")])
def test_figures_are_those_of_the_evidence_query(tmp_path, poison):
    # numpy computes the order statistics of a finite column; a column holding NaN or
    # infinity is summarized in SQL. Either way the figures are the evidence query's.
    from engine.testing import make_reader

    rng = np.random.default_rng(11)
    values = np.round(rng.lognormal(3, 1, size=5001), 2).tolist()  # ties, odd count
    values[17] = None
    if poison is not None:
        values[42] = poison
    data = {"amount": values}
    result = run_plugin("numeric_summary", data, tmp_path / "plugin")
    assert isinstance(result, Ok)
    (f,) = result.findings
    with make_reader(data, tmp_path / "sql") as reader:
        row = reader.sql(f.evidence.query).to_pylist()[0]
    m = result.metrics["columns"]["amount"]
    expected = dict(zip(("p01", "p25", "p50", "p75", "p99"), row["quantiles"], strict=True))
    expected |= {k: row[k] for k in ("min", "max", "mad")}
    for key, want in expected.items():
        got = m[key]
        if want is None or math.isnan(want):
            assert got is None, key
        else:
            assert got == pytest.approx(want, rel=1e-12, abs=0), key
    assert m["count"] == row["count"] == 5000
