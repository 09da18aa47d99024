"""segment_differences: planted level differences in a table that is not an event log,
the Kruskal-Wallis / Vargha-Delaney figures recomputed here with scipy."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from contracts import Na, Ok

from .conftest import run_plugin

PID = "segment_differences"
REGIONS = ("central", "east", "north", "south", "west")


def _orders(n: int = 4000, factor: float = 3.0, seed: int = 5) -> dict:
    rng = np.random.default_rng(seed)
    region = rng.choice(REGIONS, n)
    price = rng.lognormal(np.log(40.0), 0.5, n) * np.where(region == "east", factor, 1.0)
    discount = rng.beta(5, 20, n) + np.where(region == "west", 0.01, 0.0)  # small effect
    customer = rng.integers(0, 60, n)  # 60 values: never a grouping column
    own = rng.lognormal(0.0, 1.0, 60)[customer]
    return {
        "region": region.tolist(),
        "customer": [f"C{c:04d}" for c in customer],
        "price": np.round(price, 2).tolist(),
        "discount": np.round(discount, 4).tolist(),
        "basket": np.round(20.0 * own * rng.lognormal(0.0, 0.2, n), 2).tolist(),
    }


def test_names_the_level_and_its_effect(tmp_path):
    data = _orders()
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Ok)
    (f,) = result.findings  # the small discount difference and the customers stay quiet
    assert f.kind == "segment_difference" and f.target == "price~region"
    m = f.evidence.metrics
    assert m["level"] == "east" and m["direction"] == "higher"
    region, price = np.array(data["region"]), np.array(data["price"])
    assert m["level_median"] == pytest.approx(float(np.median(price[region == "east"])))
    assert m["ratio_to_rest"] == pytest.approx(3.0, rel=0.15)
    # the whole table is under max_sample: the test statistics are scipy's on all rows
    h = stats.kruskal(*[price[region == r] for r in REGIONS])
    assert m["kruskal_h"] == pytest.approx(float(h.statistic))
    assert m["epsilon_squared"] == pytest.approx(float(h.statistic) / (price.size - 1))
    u = stats.mannwhitneyu(price[region == "east"], price[region != "east"], alternative="greater")
    a = float(u.statistic) / ((region == "east").sum() * (region != "east").sum())
    assert m["single_group_a"] == pytest.approx(a)
    assert 0.71 <= a < 0.98
    assert "checked 3 of 3" in result.metrics["checked"]


def test_small_differences_and_identifiers_are_quiet(tmp_path):
    result = run_plugin(PID, _orders(factor=1.05), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    text = " ".join(result.checked)
    assert "customer: 60 distinct values (needs 2..50)" in text
    assert "discount~region" in text  # tested, and small


def test_a_level_defined_by_the_quantity_is_not_a_finding(tmp_path):
    rng = np.random.default_rng(1)
    wind = rng.uniform(10, 120, 3000)
    status = np.where(wind >= 64, "hurricane", rng.choice(["storm", "depression"], 3000))
    result = run_plugin(PID, {"status": status.tolist(), "wind": wind.tolist()}, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert any("is defined by wind" in c for c in result.checked)


def test_pairs_are_capped_and_said(tmp_path):
    result = run_plugin(PID, _orders(), tmp_path, max_pairs=2)
    assert isinstance(result, Ok)
    assert "checked 2 of 3" in result.metrics["checked"]
    assert [f.target for f in result.findings] == ["price~region"]


def test_event_logs_are_left_to_group_differences(tmp_path):
    t0 = datetime(2024, 1, 1)
    data = {
        "host": ["a", "b"] * 50,
        "started_at": [t0 + timedelta(minutes=i) for i in range(100)],
        "ended_at": [t0 + timedelta(minutes=i, seconds=30) for i in range(100)],
        "amount": [float(i) for i in range(100)],
    }
    result = run_plugin(PID, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    assert "covered by group_differences/changepoints/monotonic_trend" in result.explanation


def test_bad_input_is_na(tmp_path):
    tiny = {"region": ["a", "b", "a", "b"], "price": [1.0, 2.0, 3.0, None]}
    result = run_plugin(PID, tiny, tmp_path / "tiny")
    assert isinstance(result, Na) and result.reason_code == "INSUFFICIENT_DATA"
    flat = {"region": ["a", "b"] * 100, "price": [5.0] * 200}
    result = run_plugin(PID, flat, tmp_path / "flat")
    assert isinstance(result, Na)
