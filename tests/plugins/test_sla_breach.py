"""sla_breach: planted breach shares, the Wilson interval and the modeled saving
recomputed here by hand."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from contracts import Na, Ok

from .conftest import run_plugin

T0 = datetime(2024, 1, 1)
PROCS = {"alpha": 300.0, "bravo": 900.0, "charlie": 120.0, "delta": 2400.0}  # median s


def _log(stalled: str | None = None, share: float = 0.2, seed: int = 3, open_jobs: int = 0):
    rng = np.random.default_rng(seed)
    names, q, t = [], [], []
    for name, med in sorted(PROCS.items()):
        n = 2000
        turn = rng.lognormal(np.log(med), 0.5, n).round()
        if name == stalled:
            hit = rng.random(n) < share
            turn = np.where(hit, turn + 20 * med, turn)
        names += [name] * n
        q += np.sort(rng.uniform(0, 30 * 86400, n)).round().tolist()
        t += turn.tolist()
    ended = [T0 + timedelta(seconds=a + b) for a, b in zip(q, t, strict=True)]
    for _ in range(open_jobs):  # never finished, queued long before the end
        names.append(stalled or "alpha")
        q.append(0.0)
        ended.append(None)
    return (
        {
            "process_name": names,
            "queued_at": [T0 + timedelta(seconds=x) for x in q],
            "ended_at": ended,
        },
        np.array(names),
        np.array(q),
        np.array(t + [math.nan] * open_jobs),
    )


def test_breach_hotspot_with_its_interval_and_saving(tmp_path):
    data, names, q, t = _log(stalled="bravo", open_jobs=5)
    result = run_plugin("sla_breach", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.kind == "sla_breach" and f.target == "bravo"
    ev = f.evidence.metrics
    done = {p: t[(names == p) & ~np.isnan(t)] for p in PROCS}
    limit = {p: 5 * np.median(done[p]) for p in PROCS}  # multiple x own median
    assert ev["threshold_s"] == pytest.approx(limit["bravo"])
    k = int(np.sum(done["bravo"] > limit["bravo"])) + 5  # the open jobs are past it
    n = done["bravo"].size + 5
    assert (ev["breaches"], ev["jobs"], ev["open_breaches"]) == (k, n, 5)
    # Wilson interval by hand
    z = stats.norm.ppf(0.975)
    p_hat = k / n
    centre = (p_hat + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p_hat * (1 - p_hat) / n + z * z / (4 * n * n))
    assert ev["ci_low"] == pytest.approx(centre - half)
    assert ev["ci_high"] == pytest.approx(centre + half)
    peers = [np.mean(done[p] > limit[p]) for p in ("alpha", "charlie", "delta")]
    assert ev["peers_median_share"] == pytest.approx(np.median(peers))
    span_days = (q.max() - q.min()) / 86400
    months = span_days / (365.25 / 12)
    excess = np.sum(done["bravo"][done["bravo"] > limit["bravo"]] - limit["bravo"]) / 3600
    saved = excess / months * (1 - np.median(peers) / p_hat)
    assert f.impact is not None and f.impact.value == pytest.approx(saved, rel=1e-6)
    assert ev["p_value"] < 1e-10


def test_fixed_threshold_setting(tmp_path):
    data, names, _, t = _log()
    result = run_plugin("sla_breach", data, tmp_path, threshold_s=3000.0, min_share=0.05)
    # delta (median 2400 s) breaches a fixed 3000 s on about a third of its jobs
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.target == "delta"
    share = np.mean(t[names == "delta"] > 3000.0)
    assert f.evidence.metrics["breach_share"] == pytest.approx(share)


def test_even_breach_shares_are_na(tmp_path):
    data, *_ = _log()
    result = run_plugin("sla_breach", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert len(result.checked) == 1 + len(PROCS)


def test_a_small_excess_is_not_a_hotspot(tmp_path):
    data, *_ = _log(stalled="bravo", share=0.03)  # 3%: above peers, below min_share
    result = run_plugin("sla_breach", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
