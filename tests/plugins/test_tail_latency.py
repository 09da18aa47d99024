from __future__ import annotations

from datetime import datetime

import msgspec
import numpy as np
import pyarrow as pa
import pytest

from contracts import Na, Ok
from engine._core.manifests import PluginSpec
from engine._core.preflight import preflight
from engine.testing import make_reader

from .conftest import PLUGINS_DIR, manifest, run_plugin

PID = "tail_latency"
T0 = datetime(2024, 1, 1)
# name: (jobs, median run s, log-sd of run): processes differ by design, tails included
PROCESSES = {
    "billing": (900, 600.0, 0.5),
    "close_gl": (600, 1500.0, 0.7),
    "etl_load": (1200, 2400.0, 0.4),
    "payroll": (500, 900.0, 0.6),
    "reports": (800, 300.0, 0.8),
}


def event_log(seed: int = 1, tail=None, slow=None, ended: bool = True) -> pa.Table:
    """Jobs over 28 days with lognormal runs. ``tail = (name, share, factor)`` makes a
    share of that process's runs ``factor`` times longer; ``slow = (name, factor)`` makes
    all of them longer."""
    rng = np.random.default_rng(seed)
    names, starts, runs = [], [], []
    for name in sorted(PROCESSES):
        n, median, sigma = PROCESSES[name]
        run = rng.lognormal(np.log(median), sigma, n)
        if tail and tail[0] == name:
            run = np.where(rng.random(n) < tail[1], run * tail[2], run)
        if slow and slow[0] == name:
            run = run * slow[1]
        names += [name] * n
        starts += rng.integers(0, 28 * 86400, n).tolist()
        runs += np.round(run + 1).tolist()
    s = np.array(starts, dtype="int64")
    e = s + np.array(runs, dtype="int64")
    base = np.datetime64(T0, "s")
    cols = {
        "process_name": names,
        "queued_at": base + (s - 60).astype("timedelta64[s]"),
        "started_at": base + s.astype("timedelta64[s]"),
        "ended_at": base + e.astype("timedelta64[s]"),
    }
    if not ended:
        del cols["ended_at"]
    return pa.table(cols)


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


def test_planted_tail_is_found(tmp_path):
    data = event_log(tail=("payroll", 0.04, 30.0))
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.kind == "tail_latency_hotspot" and f.target == "payroll"
    ev = f.evidence.metrics
    runs = data.column("ended_at").to_numpy() - data.column("started_at").to_numpy()
    run_s = runs.astype("timedelta64[us]").astype("int64") / 1e6
    names = np.array(data.column("process_name").to_pylist())
    mine = run_s[names == "payroll"]
    assert ev["p50_run_s"] == pytest.approx(np.percentile(mine, 50))
    assert ev["p99_run_s"] == pytest.approx(np.percentile(mine, 99))
    ratios = {
        p: np.percentile(run_s[names == p], 99) / np.percentile(run_s[names == p], 50)
        for p in PROCESSES
    }
    peer_ratio = np.median([ratios[p] for p in PROCESSES if p != "payroll"])
    assert ev["peers_median_ratio"] == pytest.approx(peer_ratio)
    assert ev["ratio_factor"] > 3
    cap = ev["cap_s"]
    assert cap == pytest.approx(np.percentile(mine, 50) * peer_ratio)
    assert ev["runs_over_cap"] == int(np.sum(mine > cap))
    assert ev["excess_run_hours"] == pytest.approx(np.sum(np.maximum(mine - cap, 0)) / 3600)
    assert ev["p_value"] < 1e-3
    assert f.measurement == "modeled" and f.impact is not None and f.impact.value > 0
    assert "timeout" in f.recommendation


def test_clean_log_with_differing_durations_is_no_significant_effect(tmp_path):
    for seed in (1, 2, 3):
        result = run_plugin(PID, event_log(seed=seed), tmp_path / str(seed))
        assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
        assert len(result.checked) == len(PROCESSES)


def test_uniformly_slow_process_is_not_a_tail(tmp_path):
    # five times slower on every run: a long process, not a long tail
    result = run_plugin(PID, event_log(slow=("payroll", 5.0)), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_result_is_deterministic(tmp_path):
    data = event_log(tail=("billing", 0.03, 40.0))
    one = run_plugin(PID, data, tmp_path / "1")
    two = run_plugin(PID, data, tmp_path / "2", seed=11)
    assert isinstance(one, Ok) and [f.target for f in one.findings] == ["billing"]
    assert msgspec.json.encode(one) == msgspec.json.encode(two)


def test_binomial_gate(tmp_path):
    data = event_log(tail=("payroll", 0.04, 30.0))
    result = run_plugin(PID, data, tmp_path, alpha=0.0)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert any("runs over" in c for c in result.checked)


def test_too_few_processes_is_insufficient_data(tmp_path):
    result = run_plugin(PID, event_log(), tmp_path, min_runs=1000)
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"


def test_without_end_times_is_not_applicable(tmp_path):
    data = event_log(ended=False)
    pre = _preflight(data, tmp_path / "pre")
    assert isinstance(pre, Na) and pre.reason_code == "NOT_APPLICABLE"
    result = run_plugin(PID, data, tmp_path / "run")
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    assert _preflight(event_log(), tmp_path / "ok") is None
