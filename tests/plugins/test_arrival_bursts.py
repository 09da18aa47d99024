"""arrival_bursts: planted bursts found with their size, share and wait cost recomputed
here; a strong weekly rhythm and a cron-like even schedule do not fire; bad input is na."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from contracts import Na, Ok

from .conftest import run_plugin

T0 = datetime(2024, 1, 1)  # a Monday
DAYS = 21


def _rhythm_arrivals(rng, per_hour_busy: float) -> np.ndarray:
    """Poisson arrivals (s after T0) at a strong weekly rhythm: busy weekday office
    hours, a tenth of it at night and at weekends."""
    out = []
    for h in range(DAYS * 24):
        busy = (h // 24) % 7 < 5 and 8 <= h % 24 < 18
        n = rng.poisson(per_hour_busy if busy else per_hour_busy / 10)
        out.append(h * 3600 + rng.uniform(0, 3600, n))
    return np.sort(np.concatenate(out)).round()


def _log(bursts: int = 40, burst_size: int = 25, burst_wait: float = 600.0, seed: int = 5):
    rng = np.random.default_rng(seed)
    names: list[str] = []
    queued: list[float] = []
    waits: list[float] = []
    # steady: Poisson at a strong weekly rhythm (x10 office hours): must not fire
    q = _rhythm_arrivals(rng, 20.0)
    names += ["steady"] * q.size
    queued += q.tolist()
    waits += rng.lognormal(np.log(60), 0.8, q.size).round().tolist()
    # cron: one job every 10 minutes on the dot: under-dispersed, must not fire
    q = np.arange(0, DAYS * 86400, 600, dtype=np.float64)
    names += ["cron"] * q.size
    queued += q.tolist()
    waits += rng.lognormal(np.log(60), 0.8, q.size).round().tolist()
    # bursty: Poisson background plus bursts of burst_size jobs within one minute
    q = _rhythm_arrivals(rng, 5.0)
    w = rng.lognormal(np.log(60), 0.8, q.size).round()
    starts = np.sort(rng.choice(DAYS * 24 * 60 - 1, size=bursts, replace=False)) * 60
    bq = (starts[:, None] + np.sort(rng.uniform(0, 59, (bursts, burst_size)), axis=1)).round()
    bw = rng.lognormal(np.log(60), 0.8, bq.shape).round() + np.linspace(0, burst_wait, burst_size)
    names += ["bursty"] * (q.size + bq.size)
    queued += q.tolist() + bq.ravel().tolist()
    waits += w.tolist() + bw.ravel().tolist()
    data = {
        "process_name": names,
        "queued_at": [T0 + timedelta(seconds=x) for x in queued],
        "started_at": [T0 + timedelta(seconds=x + y) for x, y in zip(queued, waits, strict=True)],
    }
    return data, np.asarray(names), np.asarray(queued), np.asarray(waits)


def test_bursts_are_found_with_size_share_and_wait_cost(tmp_path):
    data, names, queued, _ = _log()
    result = run_plugin("arrival_bursts", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings  # neither the rhythm nor the cron fires
    assert f.kind == "arrival_burst" and f.target == "bursty"
    ev = f.evidence.metrics
    # the dispersion statistic recomputed: per hour, 60 * sum(c^2) / n - n
    mine = queued[names == "bursty"]
    minute = (mine // 60).astype(np.int64)
    hours = {}
    for m, c in zip(*np.unique(minute, return_counts=True), strict=True):
        n, s2 = hours.get(m // 60, (0, 0))
        hours[m // 60] = (n + c, s2 + c * c)
    stat = sum(60.0 * s2 / n - n for n, s2 in hours.values())
    df = 59.0 * len(hours)
    assert ev["dispersion_index"] == pytest.approx(stat / df)
    assert ev["p_value"] == pytest.approx(float(stats.chi2.sf(stat, df)))
    # every planted burst found (a burst over a minute boundary is one burst)
    assert ev["bursts"] == 40
    assert 40 * 25 <= ev["burst_jobs"] <= 40 * 25 + 10
    assert ev["share_in_bursts"] == pytest.approx(ev["burst_jobs"] / int(np.sum(names == "bursty")))
    assert ev["largest_burst"] >= 25
    # the wait cost: extra mean wait x burst jobs a month
    assert 200 < ev["excess_wait_s"] < 400  # planted: 0..600 s, mean 300
    months = ((queued.max() - queued.min()) / 86400) / (365.25 / 12)
    per_month = ev["excess_wait_s"] * ev["burst_jobs"] / 3600 / months
    assert ev["wait_hours_per_month"] == pytest.approx(per_month, rel=0.02)
    assert f.impact is not None and f.impact.unit == "hours/month"
    assert f.impact.value == pytest.approx(ev["wait_hours_per_month"])
    checked = " ".join(result.metrics["checked"])
    assert "cron: 3024 jobs, dispersion index 0." in checked  # under-dispersed


def test_rhythm_and_cron_alone_do_not_fire(tmp_path):
    data, _, _, _ = _log(bursts=0)
    result = run_plugin("arrival_bursts", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert any(c.startswith("steady:") for c in result.checked)


def test_bursts_that_cost_no_wait_are_not_a_decision(tmp_path):
    data, _, _, _ = _log(burst_wait=0.0)
    result = run_plugin("arrival_bursts", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert any("bursty: 40 bursts" in c for c in result.checked)


def test_the_thresholds_are_settings(tmp_path):
    data, _, _, _ = _log()
    result = run_plugin("arrival_bursts", data, tmp_path, min_share=0.9)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_hour_resolution_timestamps_are_not_applicable(tmp_path):
    data, _, _, _ = _log()
    data["queued_at"] = [t.replace(minute=0, second=0) for t in data["queued_at"]]
    data["started_at"] = [t + timedelta(hours=1) for t in data["queued_at"]]
    result = run_plugin("arrival_bursts", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"


def test_short_span_and_empty_input_are_na(tmp_path):
    data, _, queued, _ = _log()
    keep = [i for i, x in enumerate(queued.tolist()) if x < 5 * 86400]
    short = {k: [v[i] for i in keep] for k, v in data.items()}
    result = run_plugin("arrival_bursts", short, tmp_path / "short")
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"
    few = {k: v[:150] for k, v in data.items()}
    few["process_name"] = [None] * 150
    result = run_plugin("arrival_bursts", few, tmp_path / "nulls")
    assert isinstance(result, Na) and result.reason_code in ("INSUFFICIENT_DATA", "NOT_APPLICABLE")
