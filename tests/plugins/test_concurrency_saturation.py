from __future__ import annotations

import heapq
import itertools
from datetime import datetime, timedelta

import numpy as np
import pytest

from contracts import Na, Ok

from .conftest import load_plugin, run_plugin

T0 = datetime(2024, 3, 4)
HOSTS = ("h01", "h02", "h03", "h04", "h05", "h06")
PROCESSES = ("ap_invoice", "bank_recon", "close_gl", "fx_reval")
# arrivals per hour of day: quiet nights, busy office hours
HOURLY = np.array([2, 1, 1, 1, 1, 2, 4, 7, 9, 10, 10, 9, 8, 9, 10, 10, 9, 7, 5, 4, 3, 3, 2, 2.0])


def _log(
    n: int = 4000,
    days: int = 14,
    slots: dict[str, int] | None = None,
    host_weights: dict[str, float] | None = None,
    instant: bool = False,
    seed: int = 3,
):
    """An event log; hosts in ``slots`` run at most that many jobs at once (FIFO),
    the others start every job after its own (process-dependent) wait, or at once when
    ``instant``."""
    rng = np.random.default_rng(seed)
    profile = np.tile(HOURLY, days)
    hour = rng.choice(profile.size, size=n, p=profile / profile.sum())
    queued = np.sort(hour * 3600 + rng.integers(0, 3600, size=n))
    weights = np.array([(host_weights or {}).get(h, 1.0) for h in HOSTS])
    host = np.array(HOSTS)[rng.choice(len(HOSTS), size=n, p=weights / weights.sum())]
    pidx = rng.integers(0, len(PROCESSES), size=n)
    process = np.array(PROCESSES)[pidx]
    base_wait = rng.lognormal(np.log(np.array([120, 200, 300, 90])[pidx]), 0.5)
    run = rng.lognormal(np.log(1200), 0.4, size=n)
    started = queued + (0.0 if instant else base_wait)
    for h, cap in sorted((slots or {}).items()):
        free = [0.0] * cap
        for j in np.flatnonzero(host == h):
            s = max(started[j], heapq.heappop(free))
            started[j] = s
            heapq.heappush(free, s + run[j])
    ended = started + run

    def stamp(v):
        return [T0 + timedelta(seconds=int(s)) for s in v]

    return {
        "job_id": [f"J{i:06d}" for i in range(n)],
        "process_name": process.tolist(),
        "host": host.tolist(),
        "queued_at": stamp(queued),
        "started_at": stamp(started),
        "ended_at": stamp(ended),
    }


def test_planted_saturated_host_is_named(tmp_path):
    result = run_plugin("concurrency_saturation", _log(slots={"h03": 1}), tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.kind == "concurrency_saturation" and f.target == "h03"
    ev = f.evidence.metrics
    assert ev["sustained_max_running"] == 1 and ev["peak_running"] == 1
    assert ev["saturated_share"] >= 0.25
    assert ev["wait_ratio"] >= 2.0
    assert ev["p_value"] < 0.001
    assert "h03" in f.recommendation and "slot" in f.recommendation
    assert f.measurement == "modeled" and f.impact is not None
    assert f.impact.unit == "hours/month" and f.impact.value > 0
    assert set(f.evidence.columns) >= {"host", "queued_at", "started_at", "ended_at"}
    assert "h03" in f.evidence.query


def test_saturation_is_found_when_other_hosts_never_wait(tmp_path):
    # peers' median wait is 0 s, so the wait ratio is unbounded
    result = run_plugin("concurrency_saturation", _log(slots={"h03": 1}, instant=True), tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.target == "h03" and f.evidence.metrics["wait_ratio"] is None
    assert "far longer than" in f.what and f.evidence.metrics["p_value"] < 0.001
    assert f.impact is not None and f.impact.value > 0


def test_clean_log_is_no_significant_effect(tmp_path):
    # no host waits long: saturation (a ceiling *and* long waits) is ruled out before
    # the running-jobs curves are swept
    result = run_plugin("concurrency_saturation", _log(), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert len(result.checked) == len(HOSTS) + 1
    assert result.checked[-1] == "concurrency levels: not swept, since no host's waits qualify"
    hosts = result.metrics["hosts"]
    assert sorted(hosts) == list(HOSTS)
    assert all(0.5 < m["wait_ratio"] < 2.0 and "saturated_share" not in m for m in hosts.values())
    # with the wait bar low enough to pass, the sweep runs and finds no ceiling
    swept = run_plugin("concurrency_saturation", _log(), tmp_path / "swept", min_wait_ratio=0.5)
    assert isinstance(swept, Na) and swept.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert len(swept.checked) == len(HOSTS)
    assert all(m["saturated_share"] < 0.25 for m in swept.metrics["hosts"].values())
    for h, m in swept.metrics["hosts"].items():
        assert m["wait_ratio"] == hosts[h]["wait_ratio"] and m["jobs"] == hosts[h]["jobs"]


def test_a_busy_host_without_a_ceiling_is_not_saturated(tmp_path):
    # h02 takes four times the share of work, but it is never capped, so waits are normal
    data = _log(host_weights={"h02": 4.0})
    result = run_plugin("concurrency_saturation", data, tmp_path, min_wait_ratio=0.5)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    hosts = result.metrics["hosts"]
    assert hosts["h02"]["mean_running"] > 2 * hosts["h01"]["mean_running"]
    assert hosts["h02"]["saturated_share"] < 0.25


def test_a_capped_host_with_spare_slots_is_not_saturated(tmp_path):
    # a ceiling of 6 slots is almost never reached by h03's load, so waits stay normal
    result = run_plugin("concurrency_saturation", _log(slots={"h03": 6}), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


@pytest.mark.parametrize("setting", [{"min_wait_ratio": 50.0}, {"min_saturated_share": 0.99}])
def test_thresholds_are_settings(tmp_path, setting):
    result = run_plugin("concurrency_saturation", _log(slots={"h03": 1}), tmp_path, **setting)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_windowed_sweep_equals_one_pass(tmp_path):
    # the sweep runs in time windows to bound memory; the levels must not depend on it
    data = _log(slots={"h03": 1})
    whole = run_plugin("concurrency_saturation", data, tmp_path / "whole")
    windows = run_plugin("concurrency_saturation", data, tmp_path / "win", max_chunk_events=1000)
    assert isinstance(whole, Ok) and isinstance(windows, Ok)
    assert whole.metrics == windows.metrics
    assert whole.findings == windows.findings


def test_without_hosts_is_not_applicable(tmp_path):
    data = _log()
    del data["host"]
    result = run_plugin("concurrency_saturation", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"


def test_single_host_is_insufficient_data(tmp_path):
    data = _log(n=500)
    data["host"] = ["h01"] * 500
    result = run_plugin("concurrency_saturation", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"


@pytest.mark.parametrize(("windows", "end"), [(1, None), (7, None), (1, 2**61)])
def test_numpy_sweep_equals_the_one_pass_sql(tmp_path, windows, end):
    # the levels are computed in numpy window by window; their definition is the SQL
    # sweep of levels_query (which the evidence shows), run here over the whole range.
    # Whole seconds make starts and ends coincide, so ties are exercised. A window too
    # long to pack (host, time) into one integer (end=2**61 us) takes the lexsort path.
    import duckdb
    import pyarrow as pa

    plugin = load_plugin("concurrency_saturation")
    data = _log(n=3000, slots={"h03": 2})
    con = duckdb.connect()
    con.register("data", pa.table(data))
    started, ended = '"started_at"', '"ended_at"'
    hosts = sorted(set(data["host"]))
    spans = con.sql(plugin.hosts_query("host", started, ended)).fetchall()
    t0, t1 = min(r[2] for r in spans), end or max(r[3] for r in spans) + 1
    expected = {
        (h, int(level)): int(us)
        for h, level, us in con.sql(
            plugin.levels_query("host", started, ended, hosts, t0, t1)
        ).fetchall()
        if us
    }
    edges = np.linspace(t0, t1, windows + 1).astype(np.int64).tolist()
    got: dict[tuple[str, int], int] = {}
    for c0, c1 in itertools.pairwise(edges):
        window = con.sql(plugin.window_query("host", started, ended, c0, c1)).to_arrow_table()
        for key, us in plugin.window_levels(window, hosts, c0, c1).items():
            got[key] = got.get(key, 0) + us
    ties = con.sql("SELECT count(*) FROM data WHERE started_at IN (SELECT ended_at FROM data)")
    assert ties.fetchall()[0][0] > 0
    assert got == expected
    assert max(level for (h, level) in got if h == "h03") == 2
