from __future__ import annotations

from contracts import Na, Ok

from .conftest import run_chain

ROWS = [
    (1.0, "a"),
    (1.0, "a"),
    (1.0, "a"),
    (2.0, "b"),
    (2.0, "b"),
    (3.0, "c"),
    (None, "d"),
    (None, "d"),
]


def _data(rows):
    return {"value": [r[0] for r in rows], "label": [r[1] for r in rows]}


def test_counts_surplus_rows(tmp_path):
    result = run_chain("duplicate_rows", _data(ROWS), tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.kind == "duplicate_rows" and f.target == "data"
    ev = f.evidence.metrics
    # 8 rows, 4 distinct (NULLs compare equal in DISTINCT): 4 surplus copies
    assert ev["rows"] == 8 and ev["distinct_rows"] == 4 and ev["surplus_rows"] == 4
    assert ev["duplicated_groups"] == 3 and ev["max_copies"] == 3
    assert ev["surplus_share"] == 0.5 and ev["identifier"] is None
    assert f.severity == "high" and f.evidence.rows == 4
    assert "SELECT DISTINCT" in f.recommendation
    assert f.evidence.columns == ("value", "label")


def test_recommends_the_identifier(tmp_path):
    data = {
        "order_id": ["o1", "o1", "o2", "o3"],
        "amount": [5.0, 5.0, 6.0, 7.0],
    }
    result = run_chain("duplicate_rows", data, tmp_path)
    assert isinstance(result, Ok)
    assert result.findings[0].evidence.metrics["surplus_rows"] == 1
    assert "order_id" in result.findings[0].recommendation


def test_clean_data_is_no_significant_effect(tmp_path):
    rows = [(1.0, "a"), (1.0, "b"), (2.0, "a"), (None, "a")]
    result = run_chain("duplicate_rows", _data(rows), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert result.metrics["surplus_rows"] == 0


def test_min_surplus_setting(tmp_path):
    result = run_chain("duplicate_rows", _data(ROWS), tmp_path, min_surplus_rows=5)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_a_column_distinct_in_every_row_settles_it_without_grouping(tmp_path):
    # job_id is distinct and never NULL, so no two rows can be equal: the answer is the
    # grouping pass's (every row distinct), taken from the normalized dataset's counts
    data = {
        "job_id": [f"j{i}" for i in range(6)],
        "value": [1.0, 1.0, 1.0, 2.0, 2.0, None],
        "label": ["a", "a", "a", "b", "b", "c"],
    }
    result = run_chain("duplicate_rows", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert result.metrics == {
        "rows": 6,
        "distinct_rows": 6,
        "surplus_rows": 0,
        "duplicated_groups": 0,
        "max_copies": 1,
    }
    assert "job_id holds a distinct value in every row" in result.explanation
    assert "without a grouping pass" in result.checked[0]


def test_a_column_distinct_but_for_its_nulls_does_not_settle_it(tmp_path):
    # distinct among its non-NULL values, but two rows are NULL there and equal elsewhere
    data = {"code": ["x", "y", None, None], "value": [1.0, 2.0, 3.0, 3.0]}
    result = run_chain("duplicate_rows", data, tmp_path)
    assert isinstance(result, Ok)
    assert result.findings[0].evidence.metrics["surplus_rows"] == 1
