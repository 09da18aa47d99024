from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from contracts import Na, Ok
from engine._core.preflight import unmet
from engine.testing import make_reader

from .conftest import manifest, run_plugin

PLUGIN = "concurrency_profile"
T0 = datetime(2024, 4, 1, 12, 0, 0)


def _t(seconds):
    return None if seconds is None else T0 + timedelta(seconds=seconds)


# host h1 runs [0,10), [2,8), [4,6): three at once over [4,6); h2 runs [20,30).
# One job never ends and one ends before it starts: both are left out.
JOBS = [
    ("h1", 0, 0, 10),
    ("h1", 0, 2, 8),
    ("h1", 1, 4, 6),
    ("h2", 15, 20, 30),
    ("h2", 16, 21, None),
    ("h1", 17, 25, 22),
]


def _log(jobs=JOBS):
    return {
        "host": [j[0] for j in jobs],
        "queued_at": [_t(j[1]) for j in jobs],
        "started_at": [_t(j[2]) for j in jobs],
        "ended_at": [_t(j[3]) for j in jobs],
    }


def test_known_peak_of_three(tmp_path):
    result = run_plugin(PLUGIN, _log(), tmp_path)
    assert isinstance(result, Ok)
    m = result.metrics
    assert m["jobs"] == 4 and m["jobs_without_end"] == 1 and m["jobs_ending_before_start"] == 1
    assert m["resolution_s"] == 1 and m["grid_instants"] == 30
    o = m["overall"]
    assert o["peak"] == 3 and o["peak_first_at"] == "2024-04-01T12:00:04"
    # levels per second: 1,1,2,2,3,3,2,2,1,1, ten zeros, ten ones
    assert o["share_at_peak"] == pytest.approx(2 / 30)
    assert o["busy_share"] == pytest.approx(20 / 30)
    assert o["mean"] == pytest.approx(28 / 30) and o["mean_running_exact"] == pytest.approx(28 / 30)
    assert o["level_shares"] == pytest.approx([10 / 30, 14 / 30, 4 / 30, 2 / 30])
    assert o["p50"] == 1 and o["p95"] == 3
    h1, h2 = m["hosts"]["h1"], m["hosts"]["h2"]
    assert h1["peak"] == 3 and h1["jobs"] == 3 and h2["peak"] == 1 and h2["jobs"] == 1
    assert h1["share_at_peak"] == pytest.approx(2 / 30)
    assert h1["wait_p50_s"] == 2.0 and h2["wait_p50_s"] == 5.0
    assert m["daily_peak"] == {"days_capped": False, "peaks": [3], "start": "2024-04-01"}
    assert [f.target for f in result.findings] == ["data", "h1", "h2"]
    assert {f.kind for f in result.findings} == {PLUGIN}


def test_grid_levels_are_exact_at_every_instant(tmp_path):
    rng = np.random.default_rng(8)
    n = 400
    start = rng.integers(0, 50_000, size=n)
    end = start + rng.integers(0, 3_000, size=n)
    jobs = [
        ("h1" if i % 3 else "h2", int(s), int(s), int(e))
        for i, (s, e) in enumerate(zip(start, end, strict=True))
    ]
    result = run_plugin(PLUGIN, _log(jobs), tmp_path, grid_points=500)
    m = result.metrics
    w = m["resolution_s"]
    assert w > 1 and m["grid_instants"] <= 500
    t0 = int(start.min())
    instants = t0 + np.arange(m["grid_instants"]) * w
    running = ((start[None, :] <= instants[:, None]) & (end[None, :] > instants[:, None])).sum(1)
    assert m["overall"]["peak"] == running.max()
    assert m["overall"]["mean"] == pytest.approx(running.mean())
    assert m["overall"]["p95"] == int(np.percentile(running, 95, method="inverted_cdf"))
    mask = np.array([i % 3 == 0 for i in range(n)])  # h2
    h2 = (start[mask][None, :] <= instants[:, None]) & (end[mask][None, :] > instants[:, None])
    assert m["hosts"]["h2"]["peak"] == h2.sum(1).max()


def test_without_hosts_only_the_overall_profile(tmp_path):
    data = _log()
    del data["host"]
    result = run_plugin(PLUGIN, data, tmp_path)
    assert result.metrics["hosts"] == {} and result.metrics["overall"]["peak"] == 3
    assert [f.target for f in result.findings] == ["data"]


def test_nothing_running_is_insufficient(tmp_path):
    result = run_plugin(PLUGIN, _log([("h1", 0, 10, 5), ("h1", 0, 20, None)]), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"


def test_without_end_times_not_applicable(tmp_path):
    data = _log()
    del data["ended_at"]
    result = run_plugin(PLUGIN, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    with make_reader(data, tmp_path / "pre") as reader:
        reasons = [unmet(r, reader.info) for r in manifest(PLUGIN).applies_when.columns]
    assert reasons[0] is None and "ended" in str(reasons[1])
