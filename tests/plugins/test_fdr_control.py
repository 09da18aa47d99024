from __future__ import annotations

import msgspec
import pytest

from contracts import Evidence, Finding, Na, Ok, na, ok

from .conftest import manifest, run_plugin

DATA = {"x": [1.0, 2.0, 3.0]}


def _finding(plugin_id: str, kind: str, target: str, p_value: float | None) -> Finding:
    metrics = {} if p_value is None else {"p_value": p_value}
    return Finding(
        kind=kind,
        title=f"{kind} on {target}",
        target=target,
        recommendation="act",
        evidence=Evidence(columns=(target,), metrics=metrics, query=f"SELECT 1 -- {target}"),
    ).stamped(plugin_id)


def _upstream():
    """Four p-values (0.001, 0.04, 0.03, 0.2) spread over three plugins, plus a finding
    without a p-value and an na upstream.

    Benjamini-Hochberg by hand, m = 4, alpha = 0.05: sorted p = 0.001, 0.03, 0.04, 0.2
    against k/m * alpha = 0.0125, 0.025, 0.0375, 0.05. The largest k with p_(k) <= its
    bound is k = 1, so only p = 0.001 survives. Adjusted (q) values: 0.004, then
    min(0.06, 0.0533) = 0.0533 for both 0.03 and 0.04, and 0.2.
    """
    drift = [
        _finding("drift", "distribution_drift", "amount", 0.001),
        _finding("drift", "distribution_drift", "fee", 0.04),
    ]
    retry = [
        _finding("retry_hotspots", "retry_hotspot", "close_gl", 0.03),
        _finding("retry_hotspots", "retry_hotspot", "fx_reval", None),
    ]
    queue = [_finding("queue_bottleneck", "queue_bottleneck", "close_gl", 0.2)]
    return {
        "drift": ok(drift),
        "retry_hotspots": ok(retry),
        "queue_bottleneck": ok(queue),
        "changepoints": na("NOT_APPLICABLE", "no daily data", checked=["daily volume"]),
    }, {f.target + "/" + f.plugin_id: f for f in (*drift, *retry, *queue)}


def test_findings_that_do_not_survive_bh_are_named(tmp_path):
    upstream, by_key = _upstream()
    result = run_plugin("fdr_control", DATA, tmp_path, upstream=upstream)
    assert isinstance(result, Ok)
    expected = {
        by_key["fee/drift"].id: (0.04, 0.04 * 4 / 3),
        by_key["close_gl/retry_hotspots"].id: (0.03, 0.04 * 4 / 3),
        by_key["close_gl/queue_bottleneck"].id: (0.2, 0.2),
    }
    # in a stable order: by upstream plugin id, then kind and target
    assert [f.target for f in result.findings] == [
        by_key["fee/drift"].id,
        by_key["close_gl/queue_bottleneck"].id,
        by_key["close_gl/retry_hotspots"].id,
    ]
    for f in result.findings:
        p, q = expected[f.target]
        assert f.kind == "fdr_not_significant"
        assert f.evidence.metrics["p_value"] == p
        assert f.evidence.metrics["q_value"] == pytest.approx(q)
        assert f.evidence.metrics["tests"] == 4
        assert "unconfirmed" in f.recommendation
    assert result.metrics["tests"] == 4 and result.metrics["survivors"] == 1
    assert by_key["amount/drift"].id not in {f.target for f in result.findings}


def test_alpha_is_a_setting(tmp_path):
    # at alpha = 0.1 the bounds are 0.025, 0.05, 0.075, 0.1: k = 3 survive, 0.2 does not
    upstream, by_key = _upstream()
    result = run_plugin("fdr_control", DATA, tmp_path, upstream=upstream, alpha=0.1)
    assert isinstance(result, Ok)
    assert [f.target for f in result.findings] == [by_key["close_gl/queue_bottleneck"].id]


def test_all_surviving_is_no_significant_effect(tmp_path):
    upstream = {
        "drift": ok([_finding("drift", "distribution_drift", "amount", 1e-12)]),
        "failure_hotspots": ok([_finding("failure_hotspots", "failure_hotspot", "h04", 0.0)]),
    }
    result = run_plugin("fdr_control", DATA, tmp_path, upstream=upstream)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert "2" in result.explanation and result.metrics["tests"] == 2


@pytest.mark.parametrize(
    "upstream",
    [
        {},
        {"drift": na("NO_SIGNIFICANT_EFFECT", "nothing drifted", checked=["amount"])},
        {"retry_hotspots": ok([_finding("retry_hotspots", "retry_hotspot", "x", None)])},
    ],
)
def test_nothing_to_correct_is_no_significant_effect(tmp_path, upstream):
    result = run_plugin("fdr_control", DATA, tmp_path, upstream=upstream)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_deterministic_and_reads_no_data(tmp_path):
    from engine.testing import make_context

    from .conftest import load_plugin, roundtrip, settings

    upstream, _ = _upstream()
    ctx = make_context(
        DATA,
        tmp_path,
        plugin_id="fdr_control",
        settings=settings("fdr_control"),
        upstream={k: roundtrip(v) for k, v in upstream.items()},
    )
    one = load_plugin("fdr_control").run(ctx)
    assert ctx.data.accesses == []
    ctx.data.close()
    two = run_plugin("fdr_control", DATA, tmp_path / "2", upstream=dict(reversed(upstream.items())))
    assert msgspec.json.encode(one) == msgspec.json.encode(two)


def test_depends_on_the_catalog_decision_plugins():
    assert manifest("fdr_control").depends_on == (
        "benford_amounts",
        "changepoints",
        "monotonic_trend",
        "group_differences",
        "drift",
        "retry_hotspots",
        "failure_hotspots",
        "queue_bottleneck",
        "sla_breach",
        "close_window",
        "workload_rebalance",
        "arrival_bursts",
        "job_anomalies",
        "rework_loops",
        "handoff_gaps",
        "segment_differences",
        "level_shifts",
    )
