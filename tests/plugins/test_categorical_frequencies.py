from __future__ import annotations

import math

import pytest
from scipy import stats

from contracts import Na, Ok
from engine._core.preflight import unmet
from engine.testing import make_reader

from .conftest import manifest, run_plugin

PLUGIN = "categorical_frequencies"

DATA = {
    "status": ["ok"] * 6 + ["failed"] * 3 + ["retried"] + [None, None],
    "region": ["eu"] * 12,
    "tier": ["b", "a", "b", "a", "c", "c", "d", "d", "a", "b", "c", "d"],
    "flag": [True, False] * 6,
    "value": [float(i) for i in range(12)],
}


def test_top_values_mode_and_entropy(tmp_path):
    result = run_plugin(PLUGIN, DATA, tmp_path)
    assert isinstance(result, Ok)
    assert [f.target for f in result.findings] == ["flag", "region", "status", "tier"]
    assert {f.kind for f in result.findings} == {PLUGIN}
    status = result.metrics["columns"]["status"]
    assert status["non_null"] == 10 and status["null_count"] == 2
    assert status["distinct_count"] == 3
    assert [t["value"] for t in status["top"]] == ["ok", "failed", "retried"]
    assert [t["count"] for t in status["top"]] == [6, 3, 1]
    assert status["top"][0]["share"] == pytest.approx(0.6)
    assert status["mode"] == "ok" and status["mode_share"] == pytest.approx(0.6)
    h = stats.entropy([6, 3, 1], base=2)
    assert status["entropy_bits"] == pytest.approx(h)
    assert status["normalized_entropy"] == pytest.approx(h / math.log2(3))
    assert status["constant"] is False and status["other_count"] == 0
    assert "value" not in result.metrics["columns"]


def test_constant_column_and_ties(tmp_path):
    result = run_plugin(PLUGIN, DATA, tmp_path)
    region = result.metrics["columns"]["region"]
    assert region["constant"] is True and region["distinct_count"] == 1
    assert region["entropy_bits"] == 0.0 and region["normalized_entropy"] is None
    assert region["mode_share"] == 1.0
    tier = result.metrics["columns"]["tier"]
    # four values with three rows each: ties ordered by value, entropy is the maximum
    assert [t["value"] for t in tier["top"]] == ["a", "b", "c", "d"]
    assert tier["normalized_entropy"] == pytest.approx(1.0)
    flag = result.metrics["columns"]["flag"]
    assert flag["role"] == "boolean" and [t["value"] for t in flag["top"]] == ["false", "true"]


def test_top_k_truncates(tmp_path):
    result = run_plugin(PLUGIN, DATA, tmp_path, top_k=2)
    status = result.metrics["columns"]["status"]
    assert [t["value"] for t in status["top"]] == ["ok", "failed"]
    assert status["top_truncated"] is True and status["other_count"] == 1
    assert status["top_k_share"] == pytest.approx(0.9)
    # entropy still covers every value, not only the listed ones
    assert status["entropy_bits"] == pytest.approx(stats.entropy([6, 3, 1], base=2))


def test_without_categorical_columns_not_applicable(tmp_path):
    data = {"x": [1.0, 2.0, 3.0], "y": [0.5, 0.1, 0.2]}
    result = run_plugin(PLUGIN, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    with make_reader(data, tmp_path / "pre") as reader:
        assert unmet(manifest(PLUGIN).applies_when.columns[0], reader.info) is not None
