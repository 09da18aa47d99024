from __future__ import annotations

import pytest

from contracts import Na, Ok
from engine._core.preflight import unmet
from engine.testing import make_reader

from .conftest import manifest, run_plugin

PLUGIN = "status_mix"


def _data():
    return {
        "process_name": ["a", "a", "a", "a", "b", "b", "b", "b"],
        "host": ["h1", "h1", "h2", "h2", "h1", "h2", "h2", "h2"],
        "status": ["ok", "ok", "failed", "retried", "ok", "Error", "Error", "ok"],
        "retry_count": [0, 0, 1, 2, 0, 3, 0, 0],
    }


def test_overall_and_per_process_mix(tmp_path):
    result = run_plugin(PLUGIN, _data(), tmp_path)
    assert isinstance(result, Ok)
    assert [f.target for f in result.findings] == ["status", "a", "b"]
    assert {f.kind for f in result.findings} == {PLUGIN}
    m = result.metrics
    assert [v["value"] for v in m["status_values"]] == ["ok", "Error", "failed", "retried"]
    assert m["failure_values"] == ["Error", "failed"] and m["retried_values"] == ["retried"]
    o = m["overall"]
    assert o["jobs"] == 8 and o["failed"] == 3 and o["failure_share"] == pytest.approx(3 / 8)
    assert o["retried_share"] == pytest.approx(1 / 8)
    assert o["status_counts"] == {"Error": 2, "failed": 1, "ok": 4, "retried": 1}
    a, b = m["processes"]["a"], m["processes"]["b"]
    assert a["failure_share"] == 0.25 and a["retried_share"] == 0.25
    assert b["failure_share"] == 0.5 and b["retried"] == 0
    assert a["retry_mean"] == pytest.approx(0.75) and b["retry_mean"] == pytest.approx(0.75)
    h1, h2 = m["hosts"]["h1"], m["hosts"]["h2"]
    assert h1["jobs"] == 3 and h1["failed"] == 0
    assert h2["jobs"] == 5 and h2["failure_share"] == pytest.approx(3 / 5)


def test_retry_count_distribution(tmp_path):
    result = run_plugin(PLUGIN, _data(), tmp_path, max_retry_value=2)
    r = result.metrics["retry"]
    assert r["column"] == "retry_count" and r["values"] == [0, 1, 2]
    assert r["counts"] == [5, 1, 2]  # 2 and 3 pooled in the last bin
    assert r["mean"] == pytest.approx(6 / 8) and r["max"] == 3.0
    assert r["positive_share"] == pytest.approx(3 / 8)


def test_settings_pool_and_classify_statuses(tmp_path):
    result = run_plugin(
        PLUGIN, _data(), tmp_path, max_statuses=2, failure_pattern="^failed$", max_groups=1
    )
    m = result.metrics
    assert m["overall"]["status_counts"] == {"(other)": 2, "Error": 2, "ok": 4}
    assert m["failure_values"] == ["failed"] and m["overall"]["failed"] == 1
    assert m["status_values_capped"] is True
    assert list(m["processes"]) == ["a"] and m["processes_capped"] is True
    assert list(m["hosts"]) == ["h2"] and m["hosts_capped"] is True


def test_without_retry_column(tmp_path):
    data = _data()
    del data["retry_count"]
    result = run_plugin(PLUGIN, data, tmp_path)
    assert result.metrics["retry"] is None
    assert "retry_mean" not in result.metrics["processes"]["a"]


def test_without_status_not_applicable(tmp_path):
    data = {"process_name": ["a", "b"], "x": [1.0, 2.0]}
    result = run_plugin(PLUGIN, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    with make_reader(data, tmp_path / "pre") as reader:
        assert unmet(manifest(PLUGIN).applies_when.columns[0], reader.info) is not None
