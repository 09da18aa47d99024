"""job_anomalies: a process holding jobs odd in several features at once is found; a
heavy but stable tail, one-feature stalls and censored jobs do not fire; the triage list,
its SQL and the per-process normal scores are checked; bad input is na."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from contracts import Na, Ok

from .conftest import load_plugin, run_plugin

T0 = datetime(2024, 1, 1)
# process: (median wait s, median run s, run log sigma); slow by design differs a lot
PROCS = {
    "fast": (30.0, 60.0, 0.5),
    "slow": (900.0, 7200.0, 0.5),
    "heavy": (60.0, 150.0, 1.5),  # a heavy but stable run-time tail
    "stall": (90.0, 200.0, 0.6),  # 15% of jobs stall 1-2 h in the queue (one feature)
    "odd": (120.0, 600.0, 0.6),
}


def _log(odd_share: float = 0.05, n: int = 2500, seed: int = 11, censored: int = 0):
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("job_id", "process_name", "queued_at")}
    rows |= {"started_at": [], "ended_at": [], "amount": [], "retry_count": []}
    i = 0
    for name, (wait_med, run_med, run_sigma) in sorted(PROCS.items()):
        q = np.sort(rng.uniform(0, 30 * 86400, n)).round()
        wait = wait_med * np.exp(0.8 * rng.standard_normal(n))
        run = run_med * np.exp(run_sigma * rng.standard_normal(n))
        amount = 850 * np.exp(1.7 * rng.standard_normal(n))
        retries = np.where(rng.random(n) < 0.04, rng.geometric(0.55, n), 0)
        if name == "stall":
            wait = np.where(rng.random(n) < 0.15, wait + rng.uniform(3600, 7200, n), wait)
        if name == "odd":  # each value alone within its normal range
            hit = rng.random(n) < odd_share
            z = rng.uniform(2.0, 2.6, (3, n))
            wait = np.where(hit, wait_med * np.exp(0.8 * z[0]), wait)
            run = np.where(hit, run_med * np.exp(run_sigma * z[1]), run)
            sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
            amount = np.where(hit, 850 * np.exp(sign * 1.7 * z[2]), amount)
            retries = np.where(hit, rng.integers(2, 4, n), retries)
        for j in range(n):
            rows["job_id"].append(f"J{i:06d}")
            rows["process_name"].append(name)
            rows["queued_at"].append(T0 + timedelta(seconds=float(q[j])))
            rows["started_at"].append(T0 + timedelta(seconds=float(q[j] + round(wait[j]))))
            rows["ended_at"].append(
                T0 + timedelta(seconds=float(q[j] + round(wait[j]) + round(run[j])))
            )
            rows["amount"].append(round(float(amount[j]), 2))
            rows["retry_count"].append(int(retries[j]))
            i += 1
    for j in range(censored):  # still running at the end: no end time, extreme values
        rows["job_id"].append(f"J{i:06d}")
        rows["process_name"].append("fast")
        rows["queued_at"].append(T0 + timedelta(days=29, seconds=j))
        rows["started_at"].append(T0 + timedelta(days=29, hours=5, seconds=j))
        rows["ended_at"].append(None)
        rows["amount"].append(9.9e6)
        rows["retry_count"].append(9)
        i += 1
    return rows


def test_the_jointly_odd_process_is_found(tmp_path):
    data = _log(censored=300)
    result = run_plugin("job_anomalies", data, tmp_path, seed=3)
    assert isinstance(result, Ok)
    (f,) = result.findings  # not heavy (tail), not stall (one feature), not the censored
    assert f.kind == "job_anomaly" and f.target == "odd"
    ev = f.evidence.metrics
    assert ev["ratio"] >= 3.0 and ev["anomalous_jobs"] >= 20
    assert ev["joint_share"] >= 0.5
    assert ev["mean_z_retry_count"] > 1.5 and ev["mean_z_wait"] > 1.0
    assert ev["p_value"] == pytest.approx(
        float(
            stats.binomtest(
                ev["anomalous_jobs"],
                ev["sampled_jobs"],
                ev["others_anomalous_share"],
                alternative="greater",
            ).pvalue
        )
    )
    m = result.metrics
    assert m["finished_jobs"] == 5 * 2500  # the censored jobs are left out
    assert m["sampled"] == 5 * 2500
    assert m["anomalous"] == pytest.approx(0.005 * m["sampled"], abs=2)  # contamination 0.005
    triage = m["triage"]
    assert len(triage) == 20
    scores = [r["score"] for r in triage]
    assert scores == sorted(scores, reverse=True)
    assert all(r["process"] != "fast" or r["amount"] < 9e6 for r in triage)
    ids = [r["case_id"] for r in triage]
    assert m["triage_query"] == (
        'SELECT * FROM data WHERE CAST("job_id" AS VARCHAR) IN ('
        + ", ".join(f"'{i}'" for i in ids)
        + ")"
    )
    assert f.evidence.query.startswith('SELECT * FROM data WHERE CAST("job_id" AS VARCHAR) IN (')


def test_same_seed_same_result_and_no_plant_no_decision(tmp_path):
    data = _log()
    a = run_plugin("job_anomalies", data, tmp_path / "a", seed=3)
    b = run_plugin("job_anomalies", data, tmp_path / "b", seed=3)
    assert a == b
    clean = run_plugin("job_anomalies", _log(odd_share=0.0), tmp_path / "c", seed=3)
    assert isinstance(clean, Na) and clean.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert len(clean.metrics["triage"]) == 20  # the triage list still comes with the na
    assert any(c.startswith("stall:") for c in clean.checked)
    assert any(c.startswith("heavy:") for c in clean.checked)


def test_bounded_sample_says_checked_k_of_n(tmp_path):
    result = run_plugin("job_anomalies", _log(), tmp_path, seed=3, max_sample=4000)
    text = " ".join(result.metrics["checked"] if isinstance(result, Ok) else result.checked)
    assert "checked 4000 of 12500 finished jobs" in text


def test_normal_scores_are_per_process_mid_ranks():
    mod = load_plugin("job_anomalies")
    values = np.array([1.0, 5.0, 5.0, 100.0, 3.0, 3.0, 3.0, np.nan])
    groups = np.array(["a", "a", "a", "a", "b", "b", "b", "b"], dtype=object)
    z = mod.normal_scores(values, groups)
    a = stats.norm.ppf((np.array([1.0, 2.5, 2.5, 4.0]) - 0.5) / 4)
    assert z[:4] == pytest.approx(a)
    assert z[4:7] == pytest.approx([0.0, 0.0, 0.0])  # constant within its process
    assert z[7] == 0.0  # null


def test_bad_settings_and_tiny_input_are_na(tmp_path):
    data = _log(n=30)
    result = run_plugin("job_anomalies", data, tmp_path / "tiny")
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"
    result = run_plugin("job_anomalies", _log(n=200), tmp_path / "bad", contamination="lots")
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    one = {k: v[:150] for k, v in _log(n=150).items()}  # one process only
    result = run_plugin("job_anomalies", one, tmp_path / "one")
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"


def test_nulls_infinities_and_constant_columns_do_not_break_it(tmp_path):
    data = _log(n=400)
    data["amount"] = [None if i % 7 == 0 else v for i, v in enumerate(data["amount"])]
    data["amount"][1] = float("inf")
    data["retry_count"] = [0] * len(data["retry_count"])  # constant
    result = run_plugin("job_anomalies", data, tmp_path, top_n=5)
    metrics = result.metrics
    assert len(metrics["triage"]) == 5
    assert all(r["z_retry_count"] == 0.0 for r in metrics["triage"])
