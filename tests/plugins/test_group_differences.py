from __future__ import annotations

import sys
from datetime import datetime

import msgspec
import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from contracts import Na, Ok
from engine._core.manifests import PluginSpec
from engine._core.preflight import preflight
from engine.testing import make_reader

from .conftest import PLUGINS_DIR, manifest, run_plugin

PID = "group_differences"
T0 = datetime(2024, 1, 1)
# name: (module, jobs, median wait s, median run s): processes differ by design
PROCESSES = {
    "billing": ("AR", 500, 300.0, 600.0),
    "close_gl": ("GL", 300, 1800.0, 1500.0),
    "etl_load": ("DW", 600, 120.0, 2400.0),
    "payroll": ("HR", 250, 600.0, 900.0),
    "reports": ("BI", 400, 240.0, 300.0),
}
HOSTS = ("h1", "h2", "h3", "h4")


def event_log(seed: int = 1, host_run=None, pinned: bool = False, groups: bool = True):
    """Jobs over 28 days; hosts at random (or ``pinned``: each process mostly on its own
    host), failed jobs stop early (status is an outcome), and ``host_run`` maps a host
    to a factor on its run times."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in ("process_name", "module", "host", "status")}
    queued, waits, runs = [], [], []
    for i, name in enumerate(sorted(PROCESSES)):
        module, n, wait_med, run_med = PROCESSES[name]
        if pinned:
            own = HOSTS[i % len(HOSTS)]
            host = np.where(rng.random(n) < 0.9, own, rng.choice(HOSTS, n))
        else:
            host = rng.choice(HOSTS, n)
        status = rng.choice(["ok", "failed"], n, p=[0.85, 0.15])
        run = rng.lognormal(np.log(run_med), 0.5, n)
        run = np.where(status == "failed", run * 0.05, run)
        for h, factor in (host_run or {}).items():
            run = np.where(host == h, run * factor, run)
        cols["process_name"] += [name] * n
        cols["module"] += [module] * n
        cols["host"] += host.tolist()
        cols["status"] += status.tolist()
        queued += rng.integers(0, 28 * 86400, n).tolist()
        waits += np.round(rng.lognormal(np.log(wait_med), 0.6, n)).tolist()
        runs += np.round(run + 1).tolist()
    q = np.array(queued, dtype="int64")
    s = q + np.array(waits, dtype="int64")
    e = s + np.array(runs, dtype="int64")
    base = np.datetime64(T0, "s")
    table = {
        "process_name": cols["process_name"],
        "queued_at": base + q.astype("timedelta64[s]"),
        "started_at": base + s.astype("timedelta64[s]"),
        "ended_at": base + e.astype("timedelta64[s]"),
    }
    if groups:
        table |= {"module": cols["module"], "host": cols["host"], "status": cols["status"]}
    return pa.table(table)


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


def test_planted_slow_host_is_found(tmp_path):
    result = run_plugin(PID, event_log(host_run={"h3": 4.0}), tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.kind == "group_difference" and f.target == "run_s~host"
    ev = f.evidence.metrics
    assert ev["worst_group"] == "h3"
    assert ev["epsilon_squared"] >= 0.26 and ev["p_value"] < 1e-3
    assert 3.0 <= ev["worst_ratio_to_process_median"] / ev["rest_ratio_to_process_median"] <= 5.5
    assert f.evidence.columns == ("host", "process_name", "started_at", "ended_at")
    assert f.measurement == "modeled" and f.impact is not None and f.impact.value > 0
    assert "h3" in f.recommendation
    checked = result.metrics["group_columns"]
    assert checked == ["module", "host"]


def test_effect_size_matches_scipy_on_all_rows(tmp_path):
    data = event_log(host_run={"h3": 4.0})
    result = run_plugin(PID, data, tmp_path, max_sample=100_000)
    assert isinstance(result, Ok)
    ev = result.findings[0].evidence.metrics
    run_s = (data.column("ended_at").to_numpy() - data.column("started_at").to_numpy()).astype(
        "timedelta64[us]"
    ).astype("int64") / 1e6
    names = np.array(data.column("process_name").to_pylist())
    hosts = np.array(data.column("host").to_pylist())
    pct = np.empty(run_s.size)
    for p in PROCESSES:
        sel = names == p
        pct[sel] = (stats.rankdata(run_s[sel]) - 0.5) / sel.sum()
    h, p_value = stats.kruskal(*[pct[hosts == h] for h in HOSTS])
    assert ev["sampled_events"] == run_s.size
    assert ev["kruskal_h"] == pytest.approx(h)
    assert ev["epsilon_squared"] == pytest.approx(h / (run_s.size - 1))
    assert ev["p_value"] == pytest.approx(p_value, abs=1e-300)


def test_clean_log_is_no_significant_effect(tmp_path):
    for seed in (1, 2, 3):
        result = run_plugin(PID, event_log(seed=seed), tmp_path / str(seed))
        assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    checked = result.checked
    # the module is the process under another name; the status is an outcome
    assert any(c.startswith("run_s~module: skipped") for c in checked)
    assert "status: not a group (the status column)" in checked
    assert "process_name: not a group (the process column)" in checked
    assert any(c.startswith("run_s~host: epsilon^2") for c in checked)


def test_hosts_tied_to_processes_are_not_a_difference(tmp_path):
    # each process runs mostly on its own host and processes differ by design
    result = run_plugin(PID, event_log(pinned=True), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_sample_is_bounded_and_deterministic(tmp_path):
    data = event_log(host_run={"h3": 4.0})
    one = run_plugin(PID, data, tmp_path / "1", max_sample=800)
    two = run_plugin(PID, data, tmp_path / "2", max_sample=800)
    assert msgspec.json.encode(one) == msgspec.json.encode(two)
    assert isinstance(one, Ok)
    (f,) = one.findings
    assert f.target == "run_s~host" and f.evidence.metrics["sampled_events"] <= 800
    assert "LIMIT 800" in f.evidence.query
    other = run_plugin(PID, data, tmp_path / "3", max_sample=800, seed=7)
    assert isinstance(other, Ok) and [g.target for g in other.findings] == ["run_s~host"]


def test_moderate_effect_is_not_reported(tmp_path):
    result = run_plugin(PID, event_log(host_run={"h3": 1.3}), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_without_a_grouping_column_is_not_applicable(tmp_path):
    result = run_plugin(PID, event_log(groups=False), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"


def test_not_an_event_log_is_not_applicable(tmp_path):
    data = {"x": [1.0, 2.0, 3.0], "name": ["a", "b", "a"]}
    pre = _preflight(data, tmp_path / "pre")
    assert isinstance(pre, Na) and pre.reason_code == "NOT_APPLICABLE"
    result = run_plugin(PID, data, tmp_path / "run")
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    assert _preflight(event_log(), tmp_path / "ok") is None


MANY_HOSTS = tuple(f"h{i}" for i in range(1, 13))


def test_one_slow_host_among_many_is_found(tmp_path, monkeypatch):
    # With 12 groups one deviant cannot reach epsilon^2 >= 0.26 (its ceiling is
    # 3p(1-p) = 0.23); the slowest group is judged alone (Vargha-Delaney A).
    monkeypatch.setattr(sys.modules[__name__], "HOSTS", MANY_HOSTS)
    result = run_plugin(PID, event_log(seed=4, host_run={"h3": 3.0}), tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.target == "run_s~host" and f.evidence.metrics["worst_group"] == "h3"
    assert f.evidence.metrics["epsilon_squared"] < 0.26
    assert f.evidence.metrics["single_group_a"] >= 0.71


def test_moderate_slow_host_among_many_is_not_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "HOSTS", MANY_HOSTS)
    result = run_plugin(PID, event_log(seed=4, host_run={"h3": 1.3}), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
