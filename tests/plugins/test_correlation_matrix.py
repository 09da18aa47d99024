from __future__ import annotations

import msgspec
import numpy as np
import pytest
from scipy import stats

from contracts import Na, Ok
from engine._core.preflight import unmet
from engine.testing import make_reader

from .conftest import manifest, run_plugin

PLUGIN = "correlation_matrix"


def _data(n: int = 200) -> dict[str, list]:
    rng = np.random.default_rng(3)
    a = np.linspace(1.0, 20.0, n)
    return {
        "a": a.tolist(),
        "b": (2 * a + 1).tolist(),  # exactly linear in a
        "c": (a**3).tolist(),  # monotone but not linear
        "noise": rng.normal(size=n).tolist(),
        "flat": [5.0] * n,
    }


def _pair(result, a: str, b: str) -> dict:
    return next(p for p in result.metrics["pairs"] if (p["a"], p["b"]) == (a, b))


def test_known_correlations(tmp_path):
    data = _data()
    result = run_plugin(PLUGIN, data, tmp_path)
    assert isinstance(result, Ok)
    assert result.metrics["columns"] == ["a", "b", "c", "noise", "flat"]
    assert result.metrics["sample_rows"] == 200
    ab = _pair(result, "a", "b")
    assert ab["pearson"] == pytest.approx(1.0) and ab["spearman"] == pytest.approx(1.0)
    ac = _pair(result, "a", "c")
    assert ac["spearman"] == pytest.approx(1.0)
    assert ac["pearson"] == pytest.approx(stats.pearsonr(data["a"], data["c"]).statistic)
    assert ac["pearson"] < 0.95
    an = _pair(result, "a", "noise")
    expected = stats.spearmanr(data["a"], data["noise"])
    assert an["spearman"] == pytest.approx(expected.statistic)
    assert an["spearman_p_value"] == pytest.approx(expected.pvalue)
    flat = _pair(result, "a", "flat")
    assert flat["pearson"] is None and "constant" in flat["undefined_reason"]
    # pairs are (earlier, later) in dataset order
    order = result.metrics["columns"]
    assert all(order.index(p["a"]) < order.index(p["b"]) for p in result.metrics["pairs"])
    assert len(result.metrics["pairs"]) == 10
    strong = [(p["a"], p["b"]) for p in result.metrics["strong_pairs"]]
    assert set(strong) == {("a", "b"), ("a", "c"), ("b", "c")}


def test_findings_name_the_strongest_partner(tmp_path):
    result = run_plugin(PLUGIN, _data(), tmp_path)
    by_target = {f.target: f for f in result.findings}
    assert sorted(by_target) == ["a", "b", "c", "flat", "noise"]
    assert by_target["a"].evidence.metrics["partner"] == "b"
    assert by_target["a"].evidence.columns == ("a", "b")
    assert by_target["flat"].evidence.metrics["pairs_defined"] == 0


def test_pairwise_complete_rows(tmp_path):
    data = {
        "x": [1.0, 2.0, None, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0],
        "y": [2.0, 4.0, 6.0, None, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0, 22.0, 25.0],
    }
    result = run_plugin(PLUGIN, data, tmp_path)
    xy = _pair(result, "x", "y")
    assert xy["n"] == 10
    keep = [i for i in range(12) if data["x"][i] is not None and data["y"][i] is not None]
    x = [data["x"][i] for i in keep]
    y = [data["y"][i] for i in keep]
    assert xy["pearson"] == pytest.approx(stats.pearsonr(x, y).statistic)


def test_sample_is_deterministic(tmp_path):
    data = _data(n=2000)
    first = run_plugin(PLUGIN, data, tmp_path / "a", sample_size=300, seed=4)
    again = run_plugin(PLUGIN, data, tmp_path / "b", sample_size=300, seed=4)
    assert first.metrics["sample_rows"] == 300
    assert msgspec.json.encode(first) == msgspec.json.encode(again)
    assert _pair(first, "a", "b")["pearson"] == pytest.approx(1.0)


def test_all_constant_is_insufficient(tmp_path):
    result = run_plugin(PLUGIN, {"p": [1.0] * 20, "q": [2.0] * 20}, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"


def test_one_numeric_column_not_applicable(tmp_path):
    data = {"x": [1.0, 2.0, 3.0], "label": ["a", "b", "a"]}
    result = run_plugin(PLUGIN, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    with make_reader(data, tmp_path / "pre") as reader:
        assert unmet(manifest(PLUGIN).applies_when.columns[0], reader.info) is not None
