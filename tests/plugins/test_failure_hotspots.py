from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from contracts import Na, Ok

from .conftest import run_plugin

T0 = datetime(2024, 5, 1)
HOSTS = ("h01", "h02", "h03", "h04", "h05", "h06")
PROCESSES = ("ap_invoice", "bank_recon", "close_gl", "fx_reval")


def _log(
    n: int = 6000,
    host_rate: dict[str, float] | None = None,
    process_rate: dict[str, float] | None = None,
    process_host: dict[str, tuple[str, float]] | None = None,
    seed: int = 11,
):
    """Jobs on six hosts over 30 days; everything fails a little (1-2.5%).

    ``process_host`` sends a share of a process's jobs to one host (the rest are spread
    evenly), so a host can carry a failure-prone process without being faulty itself.
    """
    rng = np.random.default_rng(seed)
    process = np.array(PROCESSES)[rng.integers(0, len(PROCESSES), size=n)]
    host = np.array(HOSTS)[rng.integers(0, len(HOSTS), size=n)]
    for name, (h, share) in sorted((process_host or {}).items()):
        idx = np.flatnonzero(process == name)
        host[idx[rng.random(idx.size) < share]] = h
    base = {"ap_invoice": 0.01, "bank_recon": 0.02, "close_gl": 0.025, "fx_reval": 0.015}
    base |= process_rate or {}
    rate = np.array([base[p] for p in process]) * np.array(
        [(host_rate or {}).get(h, 1.0) for h in host]
    )
    u = rng.random(n)
    status = np.where(u < rate, "failed", np.where(u < rate + 0.03, "retried", "ok"))
    queued = np.sort(rng.integers(0, 30 * 86400, size=n))
    return {
        "job_id": [f"J{i:06d}" for i in range(n)],
        "process_name": process.tolist(),
        "host": host.tolist(),
        "status": status.tolist(),
        "queued_at": [T0 + timedelta(seconds=int(s)) for s in queued],
    }


def test_planted_failure_hotspot_is_named(tmp_path):
    data = _log(host_rate={"h04": 6.0})
    result = run_plugin("failure_hotspots", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.kind == "failure_hotspot" and f.target == "h04"
    ev = f.evidence.metrics
    host, failed = np.array(data["host"]), np.array(data["status"]) == "failed"
    k, n = int(failed[host == "h04"].sum()), int((host == "h04").sum())
    rk, rn = int(failed[host != "h04"].sum()), int((host != "h04").sum())
    assert ev["failure_share"] == pytest.approx(k / n)
    assert ev["rest_failure_share"] == pytest.approx(rk / rn)
    assert ev["ratio"] == pytest.approx((k / n) / (rk / rn)) and ev["ratio"] >= 3
    assert ev["process_adjusted_ratio"] >= 3
    table = [[k, n - k], [rk, rn - rk]]
    assert ev["p_value"] == pytest.approx(stats.chi2_contingency(table).pvalue)
    assert ev["p_value"] < 0.001
    assert f.measurement == "modeled" and f.impact is not None
    assert f.impact.unit == "failed jobs/month" and f.impact.value > 0
    assert "h04" in f.recommendation


def test_clean_log_is_no_significant_effect(tmp_path):
    result = run_plugin("failure_hotspots", _log(), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert len(result.checked) == len(HOSTS)


def test_hosts_that_differ_somewhat_are_not_hotspots(tmp_path):
    data = _log(n=20000, host_rate={"h01": 1.6, "h02": 0.7, "h05": 1.3})
    result = run_plugin("failure_hotspots", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_a_host_running_a_failure_prone_process_is_not_blamed(tmp_path):
    # 80% of flaky fx_reval (15% failures) runs on h02: h02's raw failure share is high,
    # but the same process fails as often on the other hosts
    data = _log(process_rate={"fx_reval": 0.15}, process_host={"fx_reval": ("h02", 0.8)})
    result = run_plugin("failure_hotspots", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    h02 = result.metrics["hosts"]["h02"]
    assert h02["ratio"] >= 3 and h02["process_adjusted_ratio"] < 2
    assert any("process mix" in c for c in result.checked)


def test_without_a_process_column_the_raw_ratio_decides(tmp_path):
    data = _log(host_rate={"h04": 6.0})
    del data["process_name"]
    result = run_plugin("failure_hotspots", data, tmp_path)
    assert isinstance(result, Ok) and [f.target for f in result.findings] == ["h04"]
    assert result.findings[0].evidence.metrics["process_adjusted_ratio"] is None


@pytest.mark.parametrize("drop", ["host", "status"])
def test_without_host_or_status_is_not_applicable(tmp_path, drop):
    data = _log()
    del data[drop]
    result = run_plugin("failure_hotspots", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"


def test_status_without_failures_is_not_applicable(tmp_path):
    data = _log()
    data["status"] = ["done" if s == "failed" else s for s in data["status"]]
    result = run_plugin("failure_hotspots", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
