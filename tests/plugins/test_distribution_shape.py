from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
from scipy import stats

from contracts import Na, Ok
from engine._core.preflight import unmet
from engine.testing import make_reader

from .conftest import manifest, run_plugin

PLUGIN = "distribution_shape"


def _data(n: int = 400, seed: int = 5) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    right = rng.lognormal(0.0, 1.0, size=n)
    return {
        "right": right.tolist(),
        "left": (-right).tolist(),
        "sym": rng.normal(10.0, 2.0, size=n).tolist(),
        "label": [f"g{i % 3}" for i in range(n)],
    }


def test_skew_sign_and_moments_match_scipy(tmp_path):
    data = _data()
    result = run_plugin(PLUGIN, data, tmp_path)
    assert isinstance(result, Ok)
    assert [f.target for f in result.findings] == ["left", "right", "sym"]
    assert {f.kind for f in result.findings} == {PLUGIN}
    cols = result.metrics["columns"]
    for name in ("right", "left", "sym"):
        x = np.asarray(data[name])
        c = cols[name]
        assert c["count"] == x.size
        assert c["skewness"] == pytest.approx(stats.skew(x, bias=False), rel=1e-9)
        assert c["excess_kurtosis"] == pytest.approx(stats.kurtosis(x, bias=False), rel=1e-9)
        assert c["mean"] == pytest.approx(x.mean()) and c["std"] == pytest.approx(x.std(ddof=1))
        # the sample holds every value here, so the test is the full-data test
        assert c["sample_size"] == x.size
        test = stats.normaltest(x)
        assert c["normaltest_p_value"] == pytest.approx(test.pvalue, rel=1e-6, abs=1e-300)
        assert c["normaltest_statistic"] == pytest.approx(test.statistic, rel=1e-9)
    assert cols["right"]["skewness"] > 1 and cols["right"]["shape"] == "right-skewed"
    assert cols["left"]["skewness"] < -1 and cols["left"]["shape"] == "left-skewed"
    assert cols["sym"]["shape"] == "symmetric" and not cols["sym"]["heavy_tailed"]
    assert cols["right"]["normal_rejected"] is True
    assert "label" not in cols


def test_large_offset_loses_no_precision(tmp_path):
    rng = np.random.default_rng(1)
    noise = rng.exponential(1.0, size=500)
    result = run_plugin(PLUGIN, {"big": (1e9 + noise).tolist()}, tmp_path)
    c = result.metrics["columns"]["big"]
    assert c["skewness"] == pytest.approx(stats.skew(noise, bias=False), rel=1e-4)
    assert c["excess_kurtosis"] == pytest.approx(stats.kurtosis(noise, bias=False), rel=1e-4)


def test_constant_nulls_and_infinities(tmp_path):
    data = {
        "flat": [3.0] * 30,
        "holes": [1.0, None, 2.0, math.inf, 4.0, -math.inf] * 5,
        "x": list(range(30)),
    }
    result = run_plugin(PLUGIN, data, tmp_path)
    assert isinstance(result, Ok)
    flat = result.metrics["columns"]["flat"]
    assert flat["shape"] == "constant" and flat["skewness"] is None
    assert flat["normaltest_p_value"] is None and flat["sample_size"] == 30
    holes = result.metrics["columns"]["holes"]
    assert holes["count"] == 15 and holes["non_finite_count"] == 10
    assert holes["skewness"] == pytest.approx(stats.skew([1.0, 2.0, 4.0] * 5, bias=False))


def test_sample_is_bounded_and_deterministic(tmp_path):
    data = _data(n=3000)
    first = run_plugin(PLUGIN, data, tmp_path / "a", sample_size=200, seed=11)
    again = run_plugin(PLUGIN, data, tmp_path / "b", sample_size=200, seed=11)
    assert msgspec.json.encode(first) == msgspec.json.encode(again)
    c = first.metrics["columns"]["right"]
    assert c["sample_size"] == 200 and c["count"] == 3000
    assert c["sample_skewness"] > 0


def test_column_cap_is_reported(tmp_path):
    result = run_plugin(PLUGIN, _data(), tmp_path, max_columns=1)
    assert [f.target for f in result.findings] == ["right"]
    assert result.metrics["columns_capped"] is True
    assert result.metrics["columns_skipped"] == ["left", "sym"]


def test_without_numeric_columns_not_applicable(tmp_path):
    data = {"label": ["a", "b", "c"], "kind": ["x", "y", "x"]}
    result = run_plugin(PLUGIN, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    with make_reader(data, tmp_path / "pre") as reader:
        assert [unmet(r, reader.info) for r in manifest(PLUGIN).applies_when.columns] != [None]


def test_the_figures_are_those_of_the_sql_in_the_evidence(tmp_path):
    # computed in numpy from one read of the finite values; a finding's evidence is the
    # SQL that computes them: the same figures, on the raw, log and logit scales
    rng = np.random.default_rng(8)
    n = 2000
    data = {
        "amount": np.round(rng.lognormal(3.0, 1.5, size=n), 2).tolist(),
        "level": rng.standard_t(3, size=n).tolist(),
        "done_share": rng.beta(8, 2, size=n).tolist(),
    }
    data["level"][7] = math.inf
    result = run_plugin(PLUGIN, data, tmp_path / "run")
    with make_reader(data, tmp_path / "sql") as reader:
        for finding in result.findings:
            c = result.metrics["columns"][finding.target]
            queries = finding.evidence.query.split(";\n")
            moments, tail = (reader.sql(q).to_pylist()[0] for q in queries)
            assert c["count"] == moments["n"] == tail["n"]
            for key in ("std", "min", "max", "skewness", "excess_kurtosis"):
                assert c[key] == pytest.approx(moments[key], rel=1e-9), key
            assert c["beyond_fence_share"] == tail["k"] / tail["n"]
    assert result.metrics["columns"]["level"]["beyond_fence_share"] > 0  # t(3): heavy tails
    scales = {name: c["tail_scale"] for name, c in result.metrics["columns"].items()}
    assert scales == {"amount": "log", "done_share": "logit", "level": "raw"}
