from __future__ import annotations

import msgspec
import numpy as np
import pytest
from scipy import stats

from contracts import Na, Ok
from engine._core.manifests import PluginSpec
from engine._core.preflight import preflight
from engine.testing import make_reader

from .conftest import PLUGINS_DIR, load_plugin, manifest, run_plugin

PID = "benford_amounts"
BENFORD = np.log10(1 + 1 / np.arange(1, 10))


def _first_digits(values: np.ndarray) -> np.ndarray:
    text = np.char.mod("%e", values)
    return np.array([int(t[0]) for t in text])


def _preflight(data, tmp_path):
    with make_reader(data, tmp_path) as reader:
        info = reader.info
    folder = PLUGINS_DIR / PID
    spec = PluginSpec(
        manifest=manifest(PID),
        directory=folder,
        manifest_path=folder / "plugin.yaml",
        code_hash="test",
    )
    return preflight(spec, info)


def _realistic(n: int = 5000, seed: int = 3) -> np.ndarray:
    """Lognormal invoice amounts spanning several orders of magnitude (cents)."""
    return np.round(np.random.default_rng(seed).lognormal(np.log(800), 1.3, n), 2)


def _fabricated(n: int = 5000, seed: int = 3) -> np.ndarray:
    """Realistic amounts where 20% were keyed in just under a 5,000 approval limit."""
    rng = np.random.default_rng(seed)
    amounts = _realistic(n, seed)
    fake = rng.random(n) < 0.2
    return np.where(fake, np.round(rng.uniform(4500, 4999.99, n), 2), amounts)


def test_planted_violation_is_found(tmp_path):
    amounts = _fabricated()
    data = {"invoice_amount": amounts.tolist(), "duration_s": _realistic(seed=4).tolist()}
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.kind == "benford_violation" and f.target == "invoice_amount"
    ev = f.evidence.metrics
    counts = np.bincount(_first_digits(amounts), minlength=10)[1:]
    observed = counts / counts.sum()
    assert ev["values"] == amounts.size
    assert ev["mad"] == pytest.approx(np.mean(np.abs(observed - BENFORD)))
    chi = stats.chisquare(counts, BENFORD * counts.sum())
    assert ev["chi_square"] == pytest.approx(chi.statistic)
    assert ev["p_value"] == pytest.approx(chi.pvalue, abs=1e-300)
    assert ev["most_over_represented_digit"] == 4
    assert ev["observed_share_4"] == pytest.approx(observed[3])
    assert f.measurement == "modeled" and f.impact is not None
    assert f.impact.unit == "rows"
    expected_excess = np.sum(np.maximum(counts - BENFORD * counts.sum(), 0))
    assert f.impact.value == pytest.approx(expected_excess)
    assert "starts with 4" in f.recommendation
    assert result.metrics["columns_tested"] == 1  # duration_s is not an amount


def test_realistic_amounts_conform(tmp_path):
    for seed in (1, 2, 3):
        data = {"amount": _realistic(seed=seed).tolist()}
        result = run_plugin(PID, data, tmp_path / str(seed))
        assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
        assert result.checked[0].startswith("amount: MAD")


def test_exact_benford_with_powers_of_ten_conforms(tmp_path):
    # 10**U(0, 5) is exactly Benford; exact powers of ten start with 1
    rng = np.random.default_rng(0)
    values = np.concatenate([10 ** rng.uniform(0, 5, 4000), [1.0, 10.0, 100.0, 1000.0, 0.001]])
    result = run_plugin(PID, {"payment": values.tolist()}, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    with make_reader({"payment": [1.0, 10.0, 100.0, 1000.0, 0.001, 999.9999, 9.5]}, tmp_path) as r:
        rows = r.sql(load_plugin(PID).digits_query("payment")).to_pylist()
    assert {row["digit"]: row["n"] for row in rows} == {1: 5, 9: 2}


def test_narrow_amounts_with_outliers_are_not_applicable(tmp_path):
    # like examples/ops_events.csv: tight lognormal amounts plus 1% extreme outliers
    rng = np.random.default_rng(1)
    amounts = rng.lognormal(np.log(1200), 0.2, 5000)
    amounts[:35] *= rng.uniform(20, 50, 35)
    amounts[35:50] *= -4
    result = run_plugin(PID, {"amount": amounts.tolist()}, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    assert "too narrow" in result.checked[0]


def test_too_few_values_is_insufficient_data(tmp_path):
    result = run_plugin(PID, {"amount": _fabricated(n=500).tolist()}, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"


def test_no_amount_column_is_not_applicable(tmp_path):
    data = {"duration_s": _fabricated().tolist()}
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    # every numeric column when asked to
    result = run_plugin(PID, data, tmp_path / "all", amount_words="*")
    assert isinstance(result, Ok) and result.findings[0].target == "duration_s"


def test_no_numeric_column_fails_preflight_as_not_applicable(tmp_path):
    pre = _preflight({"name": ["a", "b", "c"]}, tmp_path)
    assert isinstance(pre, Na) and pre.reason_code == "NOT_APPLICABLE"


def test_result_is_deterministic(tmp_path):
    data = {"totalAmount": _fabricated(seed=9).tolist()}
    one = run_plugin(PID, data, tmp_path / "1")
    two = run_plugin(PID, data, tmp_path / "2", seed=4)
    assert isinstance(one, Ok) and one.findings[0].target == "totalAmount"
    assert msgspec.json.encode(one) == msgspec.json.encode(two)


def test_amount_like_names():
    plugin = load_plugin(PID)
    words = frozenset({"amount", "price", "fee"})
    assert plugin.is_amount_like("invoice_amount", words)
    assert plugin.is_amount_like("totalAmount", words)
    assert plugin.is_amount_like("Fees", words)
    assert not plugin.is_amount_like("amounted", words)
    assert not plugin.is_amount_like("retry_count", words)


def test_same_amounts_in_another_currency_are_reported_once(tmp_path):
    amounts = _fabricated()
    data = {"amount": amounts.tolist(), "amount_eur": np.round(amounts * 0.92, 2).tolist()}
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings
    assert f.target == "amount" and f.evidence.columns == ("amount", "amount_eur")
    assert "amount_eur" in f.what
    (note,) = result.metrics["same_amounts"]
    assert note.startswith("amount_eur: same amounts as amount")
