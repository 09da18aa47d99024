"""The shipped example dataset: regenerates byte for byte, and every decision plugin
finds what was planted in it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from contracts import Ok

from .conftest import run_plugin

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CSV = EXAMPLES / "ops_events.csv"
ORDER = (
    "column_profile",
    "numeric_summary",
    "process_durations",
    "high_missingness",
    "robust_outliers",
    "queue_bottleneck",
    "duplicate_rows",
)
DEPENDS = {
    "high_missingness": "column_profile",
    "robust_outliers": "numeric_summary",
    "queue_bottleneck": "process_durations",
    "duplicate_rows": "column_profile",
}


def _generator():
    spec = importlib.util.spec_from_file_location(
        "generate_example", EXAMPLES / "generate_example.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generator_reproduces_the_shipped_file(tmp_path):
    out = tmp_path / "ops_events.csv"
    assert _generator().write(out) == 6000
    assert out.read_bytes() == CSV.read_bytes()
    assert CSV.stat().st_size < 1_000_000


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("example")
    out = {}
    for plugin_id in ORDER:
        dep = DEPENDS.get(plugin_id)
        upstream = {dep: out[dep]} if dep else None
        out[plugin_id] = run_plugin(plugin_id, CSV, tmp / plugin_id, upstream=upstream)
    return out


def test_every_plugin_is_ok_on_the_example(results):
    assert all(isinstance(r, Ok) for r in results.values()), {
        k: getattr(v, "reason_code", "ok") for k, v in results.items()
    }


def test_example_findings(results):
    assert [f.target for f in results["high_missingness"].findings] == ["cost_center"]
    assert [f.target for f in results["robust_outliers"].findings] == ["amount"]
    assert [f.target for f in results["queue_bottleneck"].findings] == ["close_gl"]
    (dup,) = results["duplicate_rows"].findings
    assert dup.evidence.metrics["surplus_rows"] == 60
    assert "job_id" in dup.recommendation
    assert len(results["process_durations"].findings) == 8
