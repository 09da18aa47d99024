from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
import numpy as np
import pyarrow as pa

from contracts import Na, Ok
from engine._core.manifests import PluginSpec
from engine._core.preflight import preflight
from engine.testing import make_reader

from .conftest import PLUGINS_DIR, manifest, run_plugin

PID = "constant_columns"
N = 200


def _base(seed: int = 1) -> dict[str, list]:
    """A realistic table: ids, categories (one of them rare), amounts, a sparse flag,
    timestamps and counts that are mostly zero."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2024, 1, 1)
    return {
        "job_id": [f"J{i:05d}" for i in range(N)],
        "process_name": rng.choice(["billing", "close_gl", "reports"], N).tolist(),
        "status": ["failed" if i == 17 else "ok" for i in range(N)],  # 0.5% failures
        "amount": np.round(rng.lognormal(6, 1, N), 2).tolist(),
        "retry_count": [1 if i % 40 == 0 else 0 for i in range(N)],
        "error_code": ["E42" if i % 5 == 0 else None for i in range(N)],  # a presence flag
        "queued_at": [t0 + timedelta(minutes=7 * i) for i in range(N)],
    }


def _preflight(data, tmp_path):
    with make_reader(data, tmp_path) as reader:
        info = reader.info
    folder = PLUGINS_DIR / PID
    spec = PluginSpec(
        manifest=manifest(PID),
        directory=folder,
        manifest_path=folder / "plugin.yaml",
        code_hash="test",
    )
    return preflight(spec, info)


def test_planted_constant_columns_are_found(tmp_path):
    data = _base() | {
        "region": ["EU"] * N,
        "is_active": [True] * N,
        "currency": ["USD"] * (N - 10) + [None] * 10,  # constant with a few gaps
    }
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Ok)
    assert [f.target for f in result.findings] == ["region", "is_active", "currency"]
    region, active, currency = result.findings
    assert {f.kind for f in result.findings} == {"constant_column"}
    assert region.evidence.metrics["value"] == "EU"
    assert region.evidence.metrics["top_share"] == 1.0
    assert active.evidence.metrics["value"] == "true"
    assert currency.evidence.metrics["null_count"] == 10
    assert currency.evidence.metrics["non_null"] == N - 10
    assert region.recommendation.startswith("Drop region")
    # the query reproduces the figures
    with make_reader(data, tmp_path / "check") as reader:
        row = reader.sql(currency.evidence.query).to_pylist()[0]
    assert row == {"n": N, "non_null": N - 10, "distinct_values": 1, "value": "USD"}
    assert result.metrics["flagged_columns"] == ["region", "is_active", "currency"]


def test_clean_table_is_no_significant_effect(tmp_path):
    result = run_plugin(PID, _base(), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert len(result.checked) == len(_base())
    assert any(
        c.startswith("error_code: 1 distinct value(s) but 80% missing") for c in result.checked
    )


def test_empty_column_is_left_to_high_missingness(tmp_path):
    data = _base() | {"notes": pa.nulls(N, pa.float64())}
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert "notes: no values at all (left to high_missingness)" in result.checked


def test_quasi_constant_is_opt_in(tmp_path):
    data = _base()
    result = run_plugin(PID, data, tmp_path / "strict")
    assert isinstance(result, Na)
    result = run_plugin(PID, data, tmp_path / "quasi", min_top_share=0.99)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.target == "status" and f.evidence.metrics["top_share"] == (N - 1) / N
    assert f.evidence.metrics["value"] == "ok"


def test_too_few_values_is_not_called_constant(tmp_path):
    result = run_plugin(PID, {"a": ["x"] * 5, "b": [1, 2, 3, 4, 5]}, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert "a: 5 non-null values (needs 20)" in result.checked


def test_single_row_is_insufficient_data(tmp_path):
    pre = _preflight({"a": ["x"]}, tmp_path)
    assert isinstance(pre, Na) and pre.reason_code == "INSUFFICIENT_DATA"


def test_result_is_deterministic(tmp_path):
    data = _base() | {"region": ["EU"] * N}
    one = run_plugin(PID, data, tmp_path / "1")
    two = run_plugin(PID, data, tmp_path / "2", seed=3)
    assert msgspec.json.encode(one) == msgspec.json.encode(two)
