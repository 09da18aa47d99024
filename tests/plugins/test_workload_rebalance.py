"""workload_rebalance: a planted process x host failure cell is named with its rate ratio;
a host that fails for every process, or only by its process mix, is not."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from contracts import Na, Ok

from .conftest import run_plugin

T0 = datetime(2024, 1, 1)
RATES = {"alpha": 0.02, "bravo": 0.05, "charlie": 0.01}
HOSTS = ("h1", "h2", "h3", "h4")


def _log(
    cell: tuple[str, str, float] | None = None,
    host_factor: tuple[str, float] | None = None,
    mix: tuple[str, str, float] | None = None,
    n: int = 8000,
    seed: int = 11,
):
    """n jobs per process spread over the hosts (or mostly on one, ``mix``), each failing
    at its process's rate x the host's factor x the cell's factor."""
    rng = np.random.default_rng(seed)
    procs, hosts, status = [], [], []
    for name, rate in sorted(RATES.items()):
        if mix and mix[0] == name:
            h = np.where(rng.random(n) < mix[2], mix[1], rng.choice(HOSTS, n))
        else:
            h = rng.choice(HOSTS, n)
        p = np.full(n, rate)
        if host_factor:
            p = np.where(h == host_factor[0], p * host_factor[1], p)
        if cell and cell[0] == name:
            p = np.where(h == cell[1], p * cell[2], p)
        failed = rng.random(n) < p
        procs += [name] * n
        hosts += h.tolist()
        status += np.where(failed, "failed", "ok").tolist()
    q = np.sort(rng.uniform(0, 60 * 86400, len(procs)))
    users = rng.choice(["a.adams", "b.baker", "c.carter"], len(procs), p=[0.6, 0.3, 0.1])
    return {
        "user": users.tolist(),
        "process_name": procs,
        "host": hosts,
        "status": status,
        "queued_at": [T0 + timedelta(seconds=float(x)) for x in q],
    }


def test_moves_the_process_off_the_bad_pairing(tmp_path):
    data = _log(cell=("alpha", "h3", 8.0))
    result = run_plugin("workload_rebalance", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.kind == "host_rebalance" and f.target == "alpha"
    m = f.evidence.metrics
    assert m["from_host"] == "h3" and m["to_host"] != "h3"
    # recomputed from the rows: the cell's rate over alpha's rate on its other hosts
    p, h, s = (np.array(data[k]) for k in ("process_name", "host", "status"))
    here = (p == "alpha") & (h == "h3")
    elsewhere = (p == "alpha") & (h != "h3")
    ratio = np.mean(s[here] == "failed") / np.mean(s[elsewhere] == "failed")
    assert m["interaction_rate_ratio"] == pytest.approx(ratio, rel=0.25)
    assert m["interaction_rate_ratio"] == pytest.approx(8.0, rel=0.35)
    assert m["failed"] == int(np.sum(s[here] == "failed"))
    months = (
        (max(data["queued_at"]) - min(data["queued_at"])).total_seconds() / 86400 / (365.25 / 12)
    )
    avoided = (m["failure_rate"] - m["predicted_rate_to_host"]) * m["jobs"] / months
    assert m["failures_avoided_per_month"] == pytest.approx(avoided)
    assert f.impact is not None and f.impact.unit == "failed jobs/month"
    # attribution: who submitted the failing pairing's jobs (recomputed from the rows)
    u = np.array(data["user"])[here & (s == "failed")]
    names, counts = np.unique(u, return_counts=True)
    assert m["users_in_cell"] == len(np.unique(np.array(data["user"])[here]))
    assert m["top_user"] == names[np.argmax(counts)] == "a.adams"
    assert m["top_user_failure_share"] == pytest.approx(counts.max() / counts.sum())


def test_a_host_bad_for_every_process_is_not_a_move(tmp_path):
    # failure_hotspots' case: the host effect absorbs it, no pairing stands out
    result = run_plugin("workload_rebalance", _log(host_factor=("h2", 6.0)), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert any("h2 " in c for c in result.checked)


def test_a_host_bad_only_by_its_mix_is_not_blamed(tmp_path):
    # bravo fails most and runs mostly on h4: h4 fails more, but only by its mix
    result = run_plugin("workload_rebalance", _log(mix=("bravo", "h4", 0.8)), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_no_failure_status_is_not_applicable(tmp_path):
    data = _log()
    data["status"] = ["ok"] * len(data["status"])
    result = run_plugin("workload_rebalance", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"


def test_one_host_is_insufficient(tmp_path):
    data = _log()
    data["host"] = ["h1"] * len(data["host"])
    result = run_plugin("workload_rebalance", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"
