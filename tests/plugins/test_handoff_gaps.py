"""handoff_gaps: a planted slow hand-off found with its medians, test and saving
recomputed by hand; gaps slow for every transition, short gaps and single-step logs are
not decisions."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from contracts import Na, Ok

from .conftest import run_plugin

T0 = datetime(2024, 1, 1)


def _log(n_cases: int, slow: dict[str, float], seed: int = 2, scale: float = 1.0):
    """Cases A -> B -> C -> D; the gap before X is lognormal around ``slow[X]`` seconds
    (else 300 s), times ``scale``. Returns the data and the gaps by transition."""
    rng = np.random.default_rng(seed)
    opened = np.sort(rng.uniform(0, 60 * 86400, n_cases)).round()
    out: dict[str, list] = {k: [] for k in ("case_id", "process_name", "queued_at")}
    out |= {"started_at": [], "ended_at": []}
    gaps: dict[str, list[float]] = {"A->B": [], "B->C": [], "C->D": []}
    for i, t in enumerate(opened.tolist()):
        prev = None
        for a in "ABCD":
            wait = float(rng.integers(5, 60))
            if prev is not None:
                gap = round(slow.get(a, 300.0) * scale * float(np.exp(0.5 * rng.standard_normal())))
                t += gap
                gaps[f"{prev}->{a}"].append(gap + wait)  # end of prev to start of a
            out["case_id"].append(f"c{i:04d}")
            out["process_name"].append(a)
            out["queued_at"].append(T0 + timedelta(seconds=t))
            out["started_at"].append(T0 + timedelta(seconds=t + wait))
            t += wait + 120
            out["ended_at"].append(T0 + timedelta(seconds=t))
            prev = a
    return out, {k: np.asarray(v) for k, v in gaps.items()}


def test_planted_slow_handoff(tmp_path):
    data, gaps = _log(600, {"C": 6 * 3600})
    result = run_plugin("handoff_gaps", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert (f.kind, f.target) == ("handoff_gap", "B->C")
    ev = f.evidence.metrics
    assert ev["transitions"] == 600
    assert ev["median_gap_s"] == pytest.approx(np.median(gaps["B->C"]))
    assert ev["p90_gap_s"] == pytest.approx(np.quantile(gaps["B->C"], 0.9))
    peer = float(np.median([np.median(gaps["A->B"]), np.median(gaps["C->D"])]))
    assert ev["peers_median_gap_s"] == pytest.approx(peer)
    assert ev["p_value"] < 1e-100 and ev["vargha_delaney_a"] > 0.99
    assert (ev["sample_transition"], ev["sample_others"]) == (600, 1200)  # all, under the cap
    q = np.asarray([x.timestamp() for x in data["queued_at"]])
    e = np.asarray([x.timestamp() for x in data["ended_at"]])
    months = (e.max() - q.min()) / 86400 / (365.25 / 12)
    excess = np.clip(gaps["B->C"] - peer, 0, None).sum() / 3600 / months
    assert f.impact is not None and f.impact.value == pytest.approx(excess)
    assert f.impact.unit == "hours/month"


def test_sample_is_bounded_and_seeded(tmp_path):
    data, _ = _log(600, {"C": 6 * 3600})
    a = run_plugin("handoff_gaps", data, tmp_path / "a", sample=100, seed=5)
    b = run_plugin("handoff_gaps", data, tmp_path / "b", sample=100, seed=5)
    assert isinstance(a, Ok) and isinstance(b, Ok)
    ev = a.findings[0].evidence.metrics
    assert ev["sample_transition"] <= 100 and ev["sample_others"] <= 100
    assert ev == b.findings[0].evidence.metrics
    # the saving is estimated from the sample: near the exact one of all 600 gaps
    exact = run_plugin("handoff_gaps", data, tmp_path / "c", seed=5).findings[0].impact
    estimate = a.findings[0].impact
    assert exact is not None and estimate is not None
    assert estimate.value == pytest.approx(exact.value, rel=0.25)


def test_every_handoff_slow_is_no_decision(tmp_path):
    # all transitions 3x slower (a weekend crew): none stands out
    data, _ = _log(600, {}, scale=3.0)
    result = run_plugin("handoff_gaps", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_a_long_gap_under_the_hour_bar_is_no_decision(tmp_path):
    data, _ = _log(600, {"C": 1800.0})  # 6x the others, but half an hour
    result = run_plugin("handoff_gaps", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    result = run_plugin("handoff_gaps", data, tmp_path / "low", min_gap_hours=0.25)
    assert isinstance(result, Ok) and result.findings[0].target == "B->C"


def test_single_step_cases_are_not_applicable(tmp_path):
    data, _ = _log(200, {})
    data["case_id"] = [f"j{i}" for i in range(len(data["case_id"]))]
    result = run_plugin("handoff_gaps", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    assert "cases with >= 2 steps: at most 0 of 800" in result.explanation


def test_too_few_transitions(tmp_path):
    data, _ = _log(50, {"C": 6 * 3600})  # 50 of each: under min_transitions
    result = run_plugin("handoff_gaps", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"
