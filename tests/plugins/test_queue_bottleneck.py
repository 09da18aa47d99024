from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
import numpy as np
import pytest

from contracts import Na, Ok

from .conftest import run_chain

T0 = datetime(2024, 3, 1)
PEERS = ("alpha", "bravo", "charlie", "delta")


def _log(median_wait: dict[str, float], per_process: dict[str, int], seed: int = 1):
    """An event log over 10 days; waits are whole seconds, lognormal around the median."""
    rng = np.random.default_rng(seed)
    process, queued, wait = [], [], []
    for name in sorted(median_wait):
        n = per_process[name]
        process += [name] * n
        queued += np.sort(rng.integers(0, 10 * 86400, size=n)).tolist()
        wait += np.round(rng.lognormal(np.log(median_wait[name]), 0.5, size=n)).tolist()
    data = {
        "process_name": process,
        "queued_at": [T0 + timedelta(seconds=int(q)) for q in queued],
        "started_at": [
            T0 + timedelta(seconds=int(q + w)) for q, w in zip(queued, wait, strict=True)
        ],
    }
    return data, np.array(process), np.array(wait, dtype=float), np.array(queued, dtype=float)


def _planted():
    medians = dict.fromkeys(PEERS, 300.0) | {"slow": 3000.0}
    counts = dict.fromkeys(PEERS, 60) | {"slow": 40}
    return _log(medians, counts)


def test_planted_bottleneck_is_named(tmp_path):
    data, process, wait, queued = _planted()
    result = run_chain("queue_bottleneck", data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.kind == "queue_bottleneck" and f.target == "slow"
    assert "add a worker" in f.recommendation.lower()
    ev = f.evidence.metrics
    # by hand: shares, p95s (linear interpolation = quantile_cont), peers' median p95
    slow = wait[process == "slow"]
    p95 = {p: np.percentile(wait[process == p], 95) for p in (*PEERS, "slow")}
    peer_p95 = float(np.median([p95[p] for p in PEERS]))
    assert ev["wait_share"] == pytest.approx(slow.sum() / wait.sum())
    assert ev["p95_wait_s"] == pytest.approx(p95["slow"])
    assert ev["peers_median_p95_wait_s"] == pytest.approx(peer_p95)
    assert ev["p95_ratio"] == pytest.approx(p95["slow"] / peer_p95)
    assert ev["p_value"] < 0.01
    assert ev["sample_target"] == 40 and ev["sample_rest"] == 240
    # modeled impact: its waits scaled so its p95 meets the peers' median p95, per month
    span_days = (queued.max() - queued.min()) / 86400
    saved = slow.sum() / 3600 * (1 - peer_p95 / p95["slow"])
    expected = saved / (span_days / (365.25 / 12))
    assert f.measurement == "modeled" and f.impact is not None
    assert f.impact.unit == "hours/month"
    assert f.impact.value == pytest.approx(expected)
    assert len(f.impact.assumptions) >= 2


def test_result_is_deterministic_and_sampling_is_bounded(tmp_path):
    data, *_ = _planted()
    one = run_chain("queue_bottleneck", data, tmp_path / "1", max_sample=25)
    two = run_chain("queue_bottleneck", data, tmp_path / "2", max_sample=25)
    assert msgspec.json.encode(one) == msgspec.json.encode(two)
    assert isinstance(one, Ok)
    ev = one.findings[0].evidence.metrics
    assert ev["sample_target"] == 25 and ev["sample_rest"] == 25


def test_similar_queues_are_no_significant_effect(tmp_path):
    medians = dict.fromkeys((*PEERS, "echo"), 300.0)
    counts = dict.fromkeys((*PEERS, "echo"), 60)
    data, *_ = _log(medians, counts)
    result = run_chain("queue_bottleneck", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert any("largest wait share" in c for c in result.checked)


def test_busy_but_not_slow_is_no_significant_effect(tmp_path):
    # "busy" holds most of the wait only because it has most of the events
    medians = dict.fromkeys((*PEERS, "busy"), 300.0)
    counts = dict.fromkeys(PEERS, 30) | {"busy": 400}
    data, *_ = _log(medians, counts)
    result = run_chain("queue_bottleneck", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert result.metrics["process"] == "busy" and result.metrics["wait_share"] > 0.25
    assert result.metrics["p95_ratio"] < 2.0


def test_rank_test_gate(tmp_path):
    data, *_ = _planted()
    result = run_chain("queue_bottleneck", data, tmp_path, alpha=0.0)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert any("Mann-Whitney" in c for c in result.checked)


def test_single_process_is_insufficient_data(tmp_path):
    data, *_ = _log({"only": 300.0}, {"only": 50})
    result = run_chain("queue_bottleneck", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"


def test_not_an_event_log_is_not_applicable(tmp_path):
    result = run_chain("queue_bottleneck", {"x": [1.0, 2.0, 3.0]}, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
