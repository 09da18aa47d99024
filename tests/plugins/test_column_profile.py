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
