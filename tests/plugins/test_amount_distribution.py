from __future__ import annotations

import math

import numpy as np
import pytest

from contracts import Na, Ok
from engine._core.preflight import unmet
from engine.testing import make_reader

from .conftest import manifest, run_plugin

PLUGIN = "amount_distribution"

# first significant digits: 1, 1, 3, 7, 1, 2, 3, -, 9, 9 (0 has none)
AMOUNTS = [1.5, 12.0, 0.3, 0.7, 1000.0, 250.0, -3.2, 0.0, 99.99, 0.0999]


def _data():
    return {
        "invoiceTotal": AMOUNTS,
        "cpu_s": [float(i) for i in range(10)],
        "label": ["x"] * 10,
    }


def test_first_digits_and_magnitudes(tmp_path):
    result = run_plugin(PLUGIN, _data(), tmp_path, bins_per_decade=1)
    assert isinstance(result, Ok)
    [finding] = result.findings
    assert finding.target == "invoiceTotal" and finding.kind == PLUGIN
    assert result.metrics["amount_columns"] == ["invoiceTotal"]
    c = result.metrics["columns"]["invoiceTotal"]
    assert c["first_digit_counts"] == [3, 1, 2, 0, 0, 0, 1, 0, 2]
    assert c["digit_values"] == 9 and c["first_digit_shares"][0] == pytest.approx(3 / 9)
    assert c["zero_count"] == 1 and c["negative_count"] == 1 and c["nonzero_count"] == 9
    assert c["whole_number_share"] == pytest.approx(4 / 10)  # 12, 1000, 250, 0
    assert c["log10_bin_starts"] == [-2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    assert c["log10_bin_counts"] == [1, 2, 2, 2, 1, 1]
    assert c["abs_min"] == 0.0999 and c["abs_max"] == 1000.0
    assert c["orders_of_magnitude"] == pytest.approx(math.log10(1000 / 0.0999))
    nonzero = np.abs([a for a in AMOUNTS if a != 0])
    assert c["abs_p50"] == pytest.approx(np.percentile(nonzero, 50))
    assert finding.evidence.metrics["first_digit_1"] == 3


def test_benford_shares(tmp_path):
    result = run_plugin(PLUGIN, _data(), tmp_path)
    expected = result.metrics["benford_expected_shares"]
    assert sum(expected) == pytest.approx(1.0)
    assert expected[0] == pytest.approx(math.log10(2))


def test_benford_like_amounts_follow_the_law(tmp_path):
    rng = np.random.default_rng(2)
    amounts = np.round(10 ** rng.uniform(0, 5, size=5000), 2)
    result = run_plugin(PLUGIN, {"amount": amounts.tolist()}, tmp_path)
    shares = result.metrics["columns"]["amount"]["first_digit_shares"]
    expected = result.metrics["benford_expected_shares"]
    assert max(abs(s - e) for s, e in zip(shares, expected, strict=True)) < 0.02


def test_every_numeric_column_with_star(tmp_path):
    result = run_plugin(PLUGIN, _data(), tmp_path, name_words="*")
    assert [f.target for f in result.findings] == ["cpu_s", "invoiceTotal"]


def test_no_amount_like_column_not_applicable(tmp_path):
    data = {"cpu_s": [1.0, 2.0], "label": ["a", "b"]}
    result = run_plugin(PLUGIN, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    assert result.checked == ("numeric column cpu_s: not amount-like",)


def test_without_numeric_columns_preflight_ends_it(tmp_path):
    data = {"label": ["a", "b"]}
    with make_reader(data, tmp_path) as reader:
        assert unmet(manifest(PLUGIN).applies_when.columns[0], reader.info) is not None
    result = run_plugin(PLUGIN, data, tmp_path / "run")
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
