from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from contracts import Ok

from .conftest import run_plugin

PLUGIN = "missingness_pattern"
T0 = datetime(2024, 5, 1)

DATA = {
    "queued_at": [T0 + timedelta(hours=i) for i in range(10)],
    "x": [None, None, None, None, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
    "y": [None, None, "c", "d", "e", "f", "g", "h", None, "j"],
    "z": [float(i) for i in range(10)],
}


def test_null_fractions_and_co_missing_pairs(tmp_path):
    result = run_plugin(PLUGIN, DATA, tmp_path)
    assert isinstance(result, Ok)
    assert [f.target for f in result.findings] == ["x", "y"]
    assert {f.kind for f in result.findings} == {PLUGIN}
    cols = result.metrics["columns"]
    assert cols["x"]["null_count"] == 4 and cols["x"]["null_fraction"] == pytest.approx(0.4)
    assert cols["y"]["null_count"] == 3 and cols["z"]["null_count"] == 0
    assert result.metrics["columns_with_nulls"] == ["x", "y"]
    [pair] = result.metrics["co_missing"]
    assert (pair["a"], pair["b"]) == ("x", "y")
    assert pair["both_null"] == 2 and pair["either_null"] == 5
    assert pair["jaccard"] == pytest.approx(0.4)
    assert pair["lift"] == pytest.approx(2 / (4 * 3 / 10))
    assert result.metrics["rows_by_missing_count"] == [
        {"missing": 0, "rows": 5},
        {"missing": 1, "rows": 3},
        {"missing": 2, "rows": 2},
    ]
    assert result.metrics["rows_with_any_missing"] == 5
    x = result.findings[0]
    assert x.evidence.metrics["co_missing_partner"] == "y"
    assert x.evidence.columns == ("x", "y")


def test_nulls_over_time(tmp_path):
    result = run_plugin(PLUGIN, DATA, tmp_path, time_buckets=2)
    over = result.metrics["over_time"]
    assert over["time_column"] == "queued_at"
    # 9 hours in two buckets of 4.5 h: rows 0-4 and rows 5-9
    assert over["rows"] == [5, 5]
    assert over["bucket_starts"] == ["2024-05-01T00:00:00", "2024-05-01T04:30:00"]
    assert over["null_fraction"]["x"] == [pytest.approx(0.8), 0.0]
    assert over["null_fraction"]["y"] == [pytest.approx(0.4), pytest.approx(0.2)]
    assert result.metrics["columns"]["x"]["null_fraction_by_time_max"] == pytest.approx(0.8)
    assert result.metrics["columns"]["x"]["null_fraction_by_time_min"] == 0.0


def test_complete_data_has_one_dataset_finding(tmp_path):
    data = {"a": [1.0, 2.0, 3.0], "b": ["p", "q", "r"]}
    result = run_plugin(PLUGIN, data, tmp_path)
    assert isinstance(result, Ok)
    [finding] = result.findings
    assert finding.target == "data" and "None of the 2 columns" in finding.what
    assert result.metrics["co_missing"] == [] and result.metrics["over_time"] is None
    assert result.metrics["rows_with_any_missing"] == 0


def test_without_a_time_column_there_is_no_time_profile(tmp_path):
    data = {k: v for k, v in DATA.items() if k != "queued_at"}
    result = run_plugin(PLUGIN, data, tmp_path)
    assert result.metrics["over_time"] is None
    assert result.metrics["co_missing"][0]["both_null"] == 2
