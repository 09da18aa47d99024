from __future__ import annotations

import pytest

from contracts import Na, Ok, na

from .conftest import run_plugin


def run_chain(plugin_id, data, tmp_path, **overrides):
    """column_profile, then the plugin: missingness_pattern is optional context and is
    left out here (the decision must not need it)."""
    profile = run_plugin("column_profile", data, tmp_path / "up_column_profile")
    return run_plugin(
        plugin_id, data, tmp_path / plugin_id, upstream={"column_profile": profile}, **overrides
    )


N = 10
DATA = {
    # 5 of 10 missing: impute (numeric -> median)
    "a": [1.0, 2.0, 3.0, 4.0, 5.0, None, None, None, None, None],
    # 7 of 10 missing: drop
    "b": ["x", "y", "x", None, None, None, None, None, None, None],
    # 2 of 10 missing: exactly at the default threshold, not flagged (strictly above)
    "c": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, None, None],
    "d": [float(i) for i in range(N)],
}


def test_flags_columns_above_threshold(tmp_path):
    result = run_chain("high_missingness", DATA, tmp_path)
    assert isinstance(result, Ok)
    assert [f.target for f in result.findings] == ["a", "b"]
    assert {f.kind for f in result.findings} == {"high_missingness"}
    a, b = result.findings
    assert a.evidence.metrics["null_fraction"] == 0.5
    assert a.evidence.metrics["action"] == "impute" and "median" in a.recommendation
    assert a.severity == "medium"
    assert b.evidence.metrics["null_fraction"] == 0.7
    assert b.evidence.metrics["action"] == "drop" and b.recommendation.startswith("Drop")
    assert b.severity == "high"
    for f, nulls in ((a, 5), (b, 7)):
        assert f.measurement == "modeled"
        assert f.impact is not None and f.impact.value == nulls and f.impact.unit == "rows"
        assert f.evidence.rows == nulls
    assert result.metrics["flagged_columns"] == ["a", "b"]
    assert result.metrics["columns_checked"] == 4


def test_threshold_setting(tmp_path):
    result = run_chain("high_missingness", DATA, tmp_path, threshold=0.6)
    assert isinstance(result, Ok)
    assert [f.target for f in result.findings] == ["b"]
    result = run_chain("high_missingness", DATA, tmp_path / "low", threshold=0.1)
    assert [f.target for f in result.findings] == ["a", "b", "c"]


def test_clean_data_is_no_significant_effect(tmp_path):
    clean = {"a": [1.0, 2.0, 3.0, None, 5.0], "b": ["x", "y", "z", "x", "y"]}
    result = run_chain("high_missingness", clean, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert result.checked == ("a: 20.0% missing", "b: 0.0% missing")


def test_without_a_profile(tmp_path):
    result = run_plugin("high_missingness", DATA, tmp_path / "none")
    assert isinstance(result, Na) and result.reason_code == "UPSTREAM_NA"
    upstream = {"column_profile": na("INSUFFICIENT_DATA", "no rows", checked=["rows"])}
    result = run_plugin("high_missingness", DATA, tmp_path / "na", upstream=upstream)
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"


@pytest.mark.parametrize("fraction_missing", [0.0, 0.2])
def test_never_ok_without_findings(tmp_path, fraction_missing):
    n_missing = int(fraction_missing * 10)
    data = {"v": [1.0] * (10 - n_missing) + [None] * n_missing}
    result = run_chain("high_missingness", data, tmp_path)
    assert isinstance(result, Na)


def test_missingness_pattern_is_optional(tmp_path):
    profile = run_plugin("column_profile", DATA, tmp_path / "profile")
    base = run_plugin(
        "high_missingness", DATA, tmp_path / "base", upstream={"column_profile": profile}
    )
    pattern_na = na("NOT_APPLICABLE", "no time column", checked=["timestamp columns"])
    with_na = run_plugin(
        "high_missingness",
        DATA,
        tmp_path / "with_na",
        upstream={"column_profile": profile, "missingness_pattern": pattern_na},
    )
    assert isinstance(base, Ok) and with_na == base
