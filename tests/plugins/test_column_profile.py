from __future__ import annotations

from types import SimpleNamespace

from contracts import Na, Ok

from .conftest import load_plugin, run_plugin

DATA = {
    "b": ["x", "x", None, None],
    "a": [1.0, 2.0, None, 4.0],
    "c": ["p", "q", "r", "s"],
}


def test_profiles_every_column_sorted(tmp_path):
    result = run_plugin("column_profile", DATA, tmp_path)
    assert isinstance(result, Ok)
    assert [f.target for f in result.findings] == ["a", "b", "c"]
    assert {f.kind for f in result.findings} == {"column_profile"}
    cols = result.metrics["columns"]
    assert result.metrics["rows"] == 4
    assert cols["a"] == {
        "dtype": "DOUBLE",
        "role": "numeric",
        "null_count": 1,
        "null_fraction": 0.25,
        "distinct_count": 3,
    }
    assert cols["b"]["null_count"] == 2 and cols["b"]["null_fraction"] == 0.5
    assert cols["b"]["distinct_count"] == 1
    assert cols["c"]["null_fraction"] == 0.0 and cols["c"]["distinct_count"] == 4
    assert result.metrics["identifier_columns"] == []
    a = result.findings[0]
    assert a.evidence.metrics["null_fraction"] == 0.25
    assert '"a"' in a.evidence.query


def test_names_identifier_columns(tmp_path):
    result = run_plugin(
        "column_profile", {"job_id": ["j1", "j2", "j3"], "v": [1.0, 2, 3]}, tmp_path
    )
    assert isinstance(result, Ok)
    assert result.metrics["identifier_columns"] == ["job_id"]
    assert result.metrics["columns"]["job_id"]["role"] == "identifier"


def test_no_columns_is_not_applicable():
    ctx = SimpleNamespace(data=SimpleNamespace(columns=()), settings={})
    result = load_plugin("column_profile").run(ctx)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"


def test_each_findings_query_reproduces_its_counts(tmp_path):
    # the counts come from the dataset's description (taken when it was normalized);
    # the query every finding shows must give the same numbers when run on the data
    import duckdb
    import pyarrow as pa

    data = DATA | {"d": [0.0, -0.0, float("nan"), None]}
    result = run_plugin("column_profile", data, tmp_path)
    assert isinstance(result, Ok)
    con = duckdb.connect()
    con.register("data", pa.table(data))
    for f in result.findings:
        ((n, nn, nd),) = con.sql(f.evidence.query).fetchall()
        m = f.evidence.metrics
        assert (m["rows"], m["null_count"], m["distinct_count"]) == (n, n - nn, nd), f.target
