from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from contracts import Na, Ok

from .conftest import run_plugin

PROCESSES = ("ap_invoice", "ar_receipt", "bank_recon", "close_gl", "fx_reval", "tax_report")


def _log(
    retried: dict[str, float] | None = None,
    retries_per_retried: dict[str, tuple[int, int]] | None = None,
    per_process: int = 800,
    seed: int = 5,
):
    """Jobs with a status (ok / failed / retried) and a retry count; every process is
    retried a little (2-4%) and fails a little (1%)."""
    rng = np.random.default_rng(seed)
    base = dict(zip(PROCESSES, (0.02, 0.03, 0.04, 0.025, 0.035, 0.03), strict=True))
    process, status, count = [], [], []
    for name in PROCESSES:
        share = (retried or {}).get(name, base[name])
        lo, hi = (retries_per_retried or {}).get(name, (1, 3))
        u = rng.random(per_process)
        st = np.where(u < 0.01, "failed", np.where(u < 0.01 + share, "retried", "ok"))
        rc = np.where(st == "retried", rng.integers(lo, hi + 1, size=per_process), 0)
        process += [name] * per_process
        status += st.tolist()
        count += rc.tolist()
    order = rng.permutation(len(process))
    return {
        "job_id": [f"J{i:06d}" for i in range(len(process))],
        "process_name": [process[i] for i in order],
        "status": [status[i] for i in order],
        "retry_count": [int(count[i]) for i in order],
        "amount": rng.lognormal(5, 1, size=len(process)).round(2).tolist(),
    }


def test_planted_retry_hotspot_is_named(tmp_path):
    data = _log(retried={"fx_reval": 0.2})
    result = run_plugin("retry_hotspots", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.kind == "retry_hotspot" and f.target == "fx_reval"
    ev = f.evidence.metrics
    # by hand: retried share of fx_reval vs the pooled rest, and the 2x2 chi-square
    proc = np.array(data["process_name"])
    retried = (np.array(data["status"]) == "retried") | (np.array(data["retry_count"]) > 0)
    k, n = int(retried[proc == "fx_reval"].sum()), int((proc == "fx_reval").sum())
    rk, rn = int(retried[proc != "fx_reval"].sum()), int((proc != "fx_reval").sum())
    assert ev["retried_share"] == pytest.approx(k / n)
    assert ev["rest_share"] == pytest.approx(rk / rn)
    assert ev["share_ratio"] >= 3.0
    expected_p = stats.chi2_contingency([[k, n - k], [rk, rn - rk]]).pvalue
    assert ev["measure"] == "share"
    assert ev["p_value"] == pytest.approx(expected_p) and ev["p_value"] < 0.001
    assert f.measurement == "modeled" and f.impact is not None and f.impact.value > 0
    assert f.evidence.columns == ("process_name", "status", "retry_count")
    assert "fx_reval" in f.recommendation


def test_clean_log_is_no_significant_effect(tmp_path):
    result = run_plugin("retry_hotspots", _log(), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert len([c for c in result.checked if "retried" in c]) == len(PROCESSES)


def test_modest_differences_are_not_hotspots(tmp_path):
    # twice the others' retry share: real, significant on this much data, but below 3x
    data = _log(retried={"close_gl": 0.06}, per_process=3000)
    result = run_plugin("retry_hotspots", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_many_retries_per_job_is_a_hotspot_by_mean_count(tmp_path):
    # bank_recon is retried as often as the others, but each retried job retries 10-14 times
    data = _log(retries_per_retried={"bank_recon": (10, 14)})
    result = run_plugin("retry_hotspots", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.target == "bank_recon" and f.evidence.metrics["measure"] == "mean"
    assert f.evidence.metrics["mean_ratio"] >= 3.0
    assert f.evidence.metrics["p_value"] < 0.001


def test_a_retry_limit_column_is_not_a_retry_count(tmp_path):
    data = _log(retried={"fx_reval": 0.2})
    del data["retry_count"]
    data["max_retries"] = [3] * len(data["status"])
    result = run_plugin("retry_hotspots", data, tmp_path)
    assert isinstance(result, Ok) and [f.target for f in result.findings] == ["fx_reval"]
    assert result.metrics["retry_column"] is None


def test_attempts_count_from_one(tmp_path):
    data = _log(retries_per_retried={"bank_recon": (10, 14)})
    data["attempts"] = [c + 1 for c in data.pop("retry_count")]
    result = run_plugin("retry_hotspots", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.target == "bank_recon" and f.evidence.columns[-1] == "attempts"
    assert f.evidence.metrics["measure"] == "mean"


def test_status_alone_is_enough(tmp_path):
    data = _log(retried={"ap_invoice": 0.25})
    del data["retry_count"]
    result = run_plugin("retry_hotspots", data, tmp_path)
    assert isinstance(result, Ok)
    assert [f.target for f in result.findings] == ["ap_invoice"]
    assert result.findings[0].evidence.columns == ("process_name", "status")


def test_without_a_process_is_not_applicable(tmp_path):
    data = _log()
    del data["process_name"]
    result = run_plugin("retry_hotspots", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"


def test_without_any_retry_signal_is_not_applicable(tmp_path):
    data = _log()
    del data["retry_count"]
    data["status"] = ["ok" if s == "retried" else s for s in data["status"]]
    result = run_plugin("retry_hotspots", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
