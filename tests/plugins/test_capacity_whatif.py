"""capacity_whatif on simulated first-come-first-served worker pools, with the model's
figures recomputed here from the data by the textbook formulas."""

from __future__ import annotations

import heapq
import math
from datetime import datetime, timedelta

import numpy as np
import pytest

from contracts import Na, Ok

from .conftest import load_plugin, run_chain, run_plugin

T0 = datetime(2024, 1, 1)  # a Monday
DAYS = 28
PEERS = ("alpha", "bravo", "charlie")


def _serve(arrivals: np.ndarray, runs: np.ndarray, workers: int) -> np.ndarray:
    free = [0.0] * workers
    waits = np.empty(arrivals.size)
    for i, (at, run) in enumerate(zip(arrivals.tolist(), runs.tolist(), strict=True)):
        start = max(at, free[0])
        heapq.heapreplace(free, start + run)
        waits[i] = start - at
    return waits


def _log(queue_workers: int = 3, load: float = 2.4, seed: int = 1, peer_wait: float = 200.0):
    """``pool``: Poisson arrivals at a constant rate, exponential run times (mean 600 s),
    served by ``queue_workers`` workers with offered load ``load``; peers: waits that
    do not depend on any worker count (lognormal), few jobs running at once."""
    rng = np.random.default_rng(seed)
    span = DAYS * 86400
    rows: dict[str, list] = {"process_name": [], "q": [], "w": [], "r": []}
    mean_run = 600.0
    n = rng.poisson(load / mean_run * span)
    arrivals = np.sort(rng.uniform(0, span, n)).round()
    runs = np.maximum(1.0, rng.exponential(mean_run, n).round())
    waits = _serve(arrivals, runs, queue_workers)
    rows["process_name"] += ["pool"] * n
    rows["q"] += arrivals.tolist()
    rows["w"] += waits.tolist()
    rows["r"] += runs.tolist()
    for name in PEERS:
        m = 3000
        rows["process_name"] += [name] * m
        rows["q"] += np.sort(rng.uniform(0, span, m)).round().tolist()
        rows["w"] += rng.lognormal(np.log(peer_wait), 0.6, m).round().tolist()
        rows["r"] += np.maximum(1.0, rng.lognormal(np.log(60.0), 0.5, m).round()).tolist()
    q = np.array(rows["q"])
    s = q + np.array(rows["w"])
    e = s + np.array(rows["r"])
    data = {
        "process_name": rows["process_name"],
        "queued_at": [T0 + timedelta(seconds=float(x)) for x in q],
        "started_at": [T0 + timedelta(seconds=float(x)) for x in s],
        "ended_at": [T0 + timedelta(seconds=float(x)) for x in e],
    }
    return data, arrivals, waits, runs


def _erlang_c(c: int, a: float) -> float:
    """The textbook sum (independent of the plugin's Erlang B recursion)."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


def test_erlang_c_known_values():
    plugin = load_plugin("capacity_whatif")
    # M/M/2 with a = 1: C = (1/2 * 2) / (1 + 1 + 1) = 1/3
    assert plugin.erlang_c(2, np.array([1.0]))[0] == pytest.approx(1 / 3)
    for c, a in ((1, 0.5), (3, 2.4), (10, 8.0), (50, 45.0)):
        assert plugin.erlang_c(c, np.array([a]))[0] == pytest.approx(_erlang_c(c, a))


def test_understaffed_pool_gets_workers_with_the_modeled_saving(tmp_path):
    data, arrivals, waits, runs = _log()
    result = run_plugin("capacity_whatif", data, tmp_path)
    assert isinstance(result, Ok), result
    (f,) = result.findings
    assert f.kind == "capacity_shortfall" and f.target == "pool"
    ev = f.evidence.metrics
    assert ev["workers"] == 3  # the most ever running at once
    assert set(result.metrics["fitted"]) == {"pool"}
    # Recompute the model from the data: arrival rate per hour of a weekday and of a
    # weekend day, run-time SCV, arrival SCV from the dispersion of hourly counts.
    hours = (arrivals // 3600).astype(int)
    n_hours = DAYS * 24
    assert hours.max() < n_hours
    counts = np.bincount(hours, minlength=n_hours).astype(float).reshape(DAYS, 24)
    weekend = np.arange(DAYS) % 7 >= 5  # T0 is a Monday
    groups = [counts[~weekend], counts[weekend]]
    lam = np.concatenate([g.mean(axis=0) for g in groups]) / 3600.0
    jobs_how = np.concatenate([g.sum(axis=0) for g in groups])
    disp = sum(g.var(axis=0, ddof=1).sum() for g in groups) / sum(
        g.mean(axis=0).sum() for g in groups
    )
    mean_s = runs.mean()
    cs2 = runs.var() / mean_s**2
    scv = (disp + cs2) / 2
    assert ev["arrival_scv"] == pytest.approx(disp, rel=1e-6)
    assert ev["run_scv"] == pytest.approx(cs2, rel=1e-6)

    def model(c):
        p = np.array([_erlang_c(c, x * mean_s) if x > 0 else 0.0 for x in lam])
        rate = (c / mean_s - lam) / scv
        return p, rate, float(np.sum(jobs_how * p / rate) / jobs_how.sum())

    def p95(p, rate):
        w = jobs_how / jobs_how.sum()
        ts = np.linspace(0, 20000, 200001)
        tail = (w[:, None] * p[:, None] * np.exp(-rate[:, None] * ts[None, :])).sum(axis=0)
        return float(ts[np.argmax(tail <= 0.05)])

    p3, r3, m3 = model(3)
    assert ev["modeled_wait_mean_s"] == pytest.approx(m3, rel=1e-6)
    assert ev["modeled_wait_p95_s"] == pytest.approx(p95(p3, r3), abs=0.2)
    # the fit: modeled vs observed mean wait within the tolerance
    assert ev["observed_wait_mean_s"] == pytest.approx(waits.mean())
    assert 0.5 <= m3 / waits.mean() <= 2.0
    k = int(ev["added_workers"])
    pk, rk, mk = model(3 + k)
    assert ev["after_wait_p95_s"] == pytest.approx(p95(pk, rk), abs=0.2)
    assert ev["after_wait_p95_s"] <= 0.25 * ev["modeled_wait_p95_s"]
    if k > 1:  # the fewest workers that reach the target
        pk1, rk1, _ = model(3 + k - 1)
        assert p95(pk1, rk1) > 0.25 * ev["modeled_wait_p95_s"]
    span_s = max(max(data["ended_at"]), max(data["started_at"])) - min(data["queued_at"])
    months = span_s.total_seconds() / 86400 / (365.25 / 12)
    saved = waits.sum() / 3600 * (1 - mk / m3) / months
    assert f.impact is not None and f.impact.unit == "hours/month"
    assert f.impact.value == pytest.approx(saved, rel=1e-6)
    assert abs(ev["little_relative_error"]) < 0.1
    assert f"from 3 to {3 + k}" in f.recommendation


def test_waits_not_explained_by_workers_are_refused(tmp_path):
    # every process's waits are independent of how many jobs run: the model cannot fit
    data, *_ = _log(queue_workers=50)  # the pool never queues ...
    rng = np.random.default_rng(5)
    extra = rng.lognormal(np.log(900.0), 0.5, len(data["queued_at"]))  # ... but jobs wait
    pool = [p == "pool" for p in data["process_name"]]
    shift = [
        timedelta(seconds=float(x)) if m else timedelta(0) for x, m in zip(extra, pool, strict=True)
    ]
    data["started_at"] = [s + d for s, d in zip(data["started_at"], shift, strict=True)]
    data["ended_at"] = [e + d for e, d in zip(data["ended_at"], shift, strict=True)]
    result = run_plugin("capacity_whatif", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    verdicts = result.metrics["verdicts"]
    assert sorted(verdicts) == ["alpha", "bravo", "charlie", "pool"]
    assert all(v.startswith("the model does not fit") for v in verdicts.values())


def test_adequately_staffed_pool_is_no_decision(tmp_path):
    data, _, waits, _ = _log(queue_workers=8)
    result = run_plugin("capacity_whatif", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert result.metrics["fitted"] == ["pool"]
    assert waits.mean() < 5.0  # it barely queues


def test_agrees_with_queue_bottleneck(tmp_path):
    """Both speak about the pool; capacity's modeled saving cannot exceed the wait
    queue_bottleneck measured for it, and both ask for capacity."""
    data, *_ = _log(peer_wait=30.0)
    cap = run_chain("capacity_whatif", data, tmp_path / "cap")
    qb = run_chain("queue_bottleneck", data, tmp_path / "qb")
    assert isinstance(cap, Ok) and isinstance(qb, Ok)
    (c,), (q,) = cap.findings, qb.findings
    assert c.target == q.target == "pool"
    months = q.evidence.metrics["span_days"] / (365.25 / 12)
    total_per_month = q.evidence.metrics["total_wait_hours"] / months
    assert 0 < c.impact.value <= total_per_month * 1.01
    assert 0 < q.impact.value <= total_per_month
    assert "worker" in c.recommendation.lower() and "worker" in q.recommendation.lower()


def test_not_an_event_log_is_not_applicable(tmp_path):
    result = run_plugin("capacity_whatif", {"x": [1.0, 2.0]}, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
