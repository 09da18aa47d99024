"""rework_loops: a planted loop found with its Wilson interval, p-value and saving
recomputed by hand; a rare normal loop, duplicated rows and single-step logs are not
decisions."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from contracts import Na, Ok

from .conftest import manifest, run_plugin

T0 = datetime(2024, 1, 1)
RUN_S, WAIT_S = 60, 30


def _log(n_cases: int, loops: dict[str, int], seed: int = 1, copies: int = 0) -> dict:
    """Cases A -> B -> C -> D opened over 60 days; ``loops[X]`` cases (the first ones)
    repeat X once right after it; the first ``copies`` cases' rows appear twice."""
    rng = np.random.default_rng(seed)
    opened = np.sort(rng.uniform(0, 60 * 86400, n_cases)).round()
    out: dict[str, list] = {k: [] for k in ("case_id", "process_name", "queued_at")}
    out |= {"started_at": [], "ended_at": []}
    for i, t0 in enumerate(opened.tolist()):
        acts: list[str] = []
        for a in "ABCD":
            acts += [a, a] if i < loops.get(a, 0) else [a]
        rows = []
        t = t0
        for a in acts:
            rows.append((f"c{i:04d}", a, t, t + WAIT_S, t + WAIT_S + RUN_S))
            t += WAIT_S + RUN_S + 120
        rows += rows[: len(rows) if i < copies else 0]
        for c, a, q, s, e in rows:
            out["case_id"].append(c)
            out["process_name"].append(a)
            out["queued_at"].append(T0 + timedelta(seconds=q))
            out["started_at"].append(T0 + timedelta(seconds=s))
            out["ended_at"].append(T0 + timedelta(seconds=e))
    return out


def test_planted_loop_with_interval_test_and_saving(tmp_path):
    data = _log(1000, {"B": 150, "C": 10})
    result = run_plugin("rework_loops", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert (f.kind, f.target) == ("rework_loop", "B")
    ev = f.evidence.metrics
    assert (ev["cases"], ev["loop_cases"], ev["repeats"]) == (1000, 150, 150)
    assert ev["loop_share"] == 0.15
    low, high = proportion_confint(150, 1000, alpha=0.05, method="wilson")
    assert (ev["ci_low"], ev["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert ev["peers_median_share"] == 0.0  # A 0, C 1%, D 0
    assert ev["peers_pooled_share"] == pytest.approx(10 / 3000)
    p = stats.binomtest(150, 1000, 10 / 3000, alternative="greater").pvalue
    assert ev["p_value"] == pytest.approx(p, rel=1e-9)
    # each repeat is one step of wait + run; over the span of the log
    q = np.asarray([x.timestamp() for x in data["queued_at"]])
    e = np.asarray([x.timestamp() for x in data["ended_at"]])
    months = (e.max() - q.min()) / 86400 / (365.25 / 12)
    hours = 150 * (WAIT_S + RUN_S) / 3600 / months
    assert ev["repeat_hours_per_month"] == pytest.approx(hours)
    assert f.impact is not None and f.impact.value == pytest.approx(hours)
    assert f.impact.unit == "hours/month"


def test_rare_normal_loop_is_no_decision(tmp_path):
    result = run_plugin("rework_loops", _log(1000, {"C": 20}), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert any(line.startswith("C: repeated in 20 of 1000") for line in result.checked)


def test_loop_shared_by_every_activity_is_no_decision(tmp_path):
    # every activity repeated in 10% of the cases: common, but none stands out
    result = run_plugin("rework_loops", _log(1000, dict.fromkeys("ABCD", 100)), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_duplicated_rows_are_not_loops(tmp_path):
    result = run_plugin("rework_loops", _log(1000, {}, copies=300), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert any(line.startswith("B: repeated in 0 of 1000") for line in result.checked)


def test_single_step_cases_are_not_applicable(tmp_path):
    data = _log(300, {})
    data["case_id"] = [f"j{i}" for i in range(len(data["case_id"]))]  # one id per row
    result = run_plugin("rework_loops", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    assert "cases with >= 2 steps: at most 0 of 1200" in result.explanation


def test_too_few_activities(tmp_path):
    data = _log(300, {"A": 100})
    keep = [i for i, a in enumerate(data["process_name"]) if a == "A"]
    data = {k: [v[i] for i in keep] for k, v in data.items()}
    result = run_plugin("rework_loops", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"


def test_declares_the_case_role():
    roles = {c.event_role for c in manifest("rework_loops").applies_when.columns}
    assert {"case", "process"} <= roles
