"""The chart specs plugins attach hold the figures they claim, checked against the
data independently (numpy), not against the plugin's own arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from contracts import Ok
from contracts.charts import HeatMap, Histogram, chart_problem

from .conftest import run_chain, run_plugin
from .test_redundant_features import N, _table
from .test_robust_outliers import DIRTY


def test_robust_outliers_histogram_counts_every_value_around_the_bounds(tmp_path):
    result = run_chain("robust_outliers", {"amount": DIRTY.tolist()}, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    (chart,) = f.charts
    assert isinstance(chart, Histogram) and chart_problem(chart) is None
    edges = np.array(chart.edges)
    counts, _ = np.histogram(DIRTY, bins=edges)
    # numpy's last bin is closed on the right, like the SQL's least(..., bins - 1)
    assert list(chart.counts) == counts.tolist()
    assert chart.below == int(np.sum(edges[0] > DIRTY))
    assert chart.above == int(np.sum(edges[-1] < DIRTY))
    assert chart.below + sum(chart.counts) + chart.above == DIRTY.size  # nothing dropped
    ev = f.evidence.metrics
    assert [m.at for m in chart.markers] == [ev["lower_bound"], ev["upper_bound"]]
    assert edges[0] <= ev["lower_bound"] and ev["upper_bound"] <= edges[-1]


def test_redundant_features_heat_map_is_the_pearson_matrix(tmp_path):
    data = _table()
    rng = np.random.default_rng(9)
    data["amount_eur"] = (np.array(data["amount"]) * 0.92 + rng.normal(0, 5, N)).round(2).tolist()
    result = run_plugin("redundant_features", data, tmp_path)
    assert isinstance(result, Ok)
    (chart,) = result.findings[0].charts
    assert isinstance(chart, HeatMap) and chart_problem(chart) is None
    cols = list(chart.x_labels)
    assert cols == list(chart.y_labels) and {"amount", "amount_eur"} <= set(cols)
    expected = np.corrcoef(np.array([data[c] for c in cols], dtype=float))
    assert np.array(chart.values, dtype=float) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_redundant_features_heat_map_of_a_wide_table_shows_the_named_columns(tmp_path):
    # 80 quantity columns (more than a chart's 70 x 70 cells): the heat map keeps the
    # columns the findings name, and only the first finding carries it
    rng = np.random.default_rng(3)
    base = {f"q{i:02d}": rng.normal(100, 10, 500) for i in range(78)}
    data = {k: v.round(3).tolist() for k, v in base.items()}
    data["q00_copy"] = (base["q00"] * 2 + rng.normal(0, 0.1, 500)).round(3).tolist()
    data["q01_copy"] = (base["q01"] - 7 + rng.normal(0, 0.05, 500)).round(3).tolist()
    result = run_plugin("redundant_features", data, tmp_path)
    assert isinstance(result, Ok)
    assert [f.target for f in result.findings] == ["q00_copy", "q01_copy"]
    first, second = result.findings
    assert second.charts == ()
    (chart,) = first.charts
    assert isinstance(chart, HeatMap) and chart_problem(chart) is None
    cols = ["q00", "q01", "q00_copy", "q01_copy"]
    assert list(chart.x_labels) == cols and "4 of the 80 quantity columns" in chart.title
    expected = np.corrcoef(np.array([data[c] for c in cols], dtype=float))
    assert np.array(chart.values, dtype=float) == pytest.approx(expected, rel=1e-9, abs=1e-12)
