"""runtime_survival: a planted timeout, censoring at the end of the log, and the
recommended timeouts checked against the distributions the data was drawn from."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from contracts import Na, Ok

from .conftest import run_plugin

T0 = datetime(2024, 1, 1)
SIGMA = 0.6
MEDIANS = {"alpha": 300.0, "bravo": 1200.0, "charlie": 60.0}


def _log(timeout: tuple[str, float] | None = None, n: int = 4000, seed: int = 2, running: int = 0):
    rng = np.random.default_rng(seed)
    names, start, run, status = [], [], [], []
    for name, med in sorted(MEDIANS.items()):
        r = rng.lognormal(np.log(med), SIGMA, n).round() + 1
        st = np.array(["ok"] * n, dtype=object)
        if timeout and name == timeout[0]:
            st = np.where(r > timeout[1], "killed", st)
            r = np.minimum(r, timeout[1])
        names += [name] * n
        start += np.sort(rng.uniform(0, 20 * 86400, n)).round().tolist()
        run += r.tolist()
        status += st.tolist()
    end: list[datetime | None] = [
        T0 + timedelta(seconds=s + r) for s, r in zip(start, run, strict=True)
    ]
    last = max(e for e in end if e is not None)
    for i in range(running):  # started an hour before the end, still running
        names.append("alpha")
        start.append((last - T0).total_seconds() - 3600 + i)
        end.append(None)
        status.append("running")
    return {
        "process_name": names,
        "started_at": [T0 + timedelta(seconds=s) for s in start],
        "ended_at": end,
        "status": status,
    }


def test_timeout_that_cuts_off_work(tmp_path):
    share = 0.05
    limit = float(round(MEDIANS["bravo"] * math.exp(SIGMA * stats.norm.ppf(1 - share))))
    data = _log(timeout=("bravo", limit))
    result = run_plugin("runtime_survival", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.kind == "timeout_cutoff" and f.target == "bravo"
    ev = f.evidence.metrics
    killed = sum(s == "killed" for s in data["status"])
    assert ev["observed_timeout_s"] == pytest.approx(limit)
    assert ev["killed"] == ev["killed_at_timeout"] == killed
    assert ev["cut_share"] == pytest.approx(killed / 4000)
    assert 0.035 < ev["cut_share"] < 0.065
    # the curve stops at the timeout, so the p99.5 comes from the censored lognormal
    # fit; it must land near the true p99.5 of the distribution the data came from
    true_q = MEDIANS["bravo"] * math.exp(SIGMA * stats.norm.ppf(0.995)) + 1
    assert ev["method"].startswith("censored lognormal")
    assert ev["recommended_timeout_s"] == pytest.approx(true_q, rel=0.1)
    assert ev["recommended_timeout_s"] % 60 == 0
    starts = [s for s in data["started_at"]]
    months = (max(starts) - min(starts)).total_seconds() / 86400 / (365.25 / 12)
    assert f.impact is not None
    assert f.impact.value == pytest.approx(killed * limit / 3600 / months, rel=1e-6)
    assert f"from {limit:.0f} s" in f.recommendation


def test_uncensored_quantile_is_the_empirical_one(tmp_path):
    data = _log()
    result = run_plugin("runtime_survival", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    runs = {
        name: np.array(
            [
                (e - s).total_seconds()
                for p, s, e in zip(
                    data["process_name"], data["started_at"], data["ended_at"], strict=True
                )
                if p == name
            ]
        )
        for name in MEDIANS
    }
    for name, r in runs.items():
        # Kaplan-Meier without censoring: the smallest run with at most 0.5% longer
        expected = float(np.sort(r)[math.ceil(0.995 * r.size) - 1])
        assert result.metrics["recommended_timeouts_s"][name] == pytest.approx(expected)


def test_jobs_running_at_the_end_are_censored_not_dropped(tmp_path):
    result = run_plugin("runtime_survival", _log(running=30), tmp_path)
    assert isinstance(result, Na)
    line = next(c for c in result.checked if c.startswith("alpha:"))
    assert "30 still running" in line


def test_a_heavy_stable_tail_is_not_a_timeout(tmp_path):
    data = _log()
    rng = np.random.default_rng(9)
    # alpha: a heavy tail (sigma 1.4), nothing killed
    heavy = rng.lognormal(np.log(300.0), 1.4, 4000).round() + 1
    idx = [i for i, p in enumerate(data["process_name"]) if p == "alpha"]
    for i, r in zip(idx, heavy, strict=True):
        data["ended_at"][i] = data["started_at"][i] + timedelta(seconds=float(r))
    result = run_plugin("runtime_survival", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert result.metrics["recommended_timeouts_s"]["alpha"] > 10 * 300.0
