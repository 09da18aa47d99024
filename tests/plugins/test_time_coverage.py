from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from contracts import Na, Ok
from engine._core.preflight import unmet
from engine.testing import make_reader

from .conftest import load_plugin, manifest, run_plugin

PLUGIN = "time_coverage"
T0 = datetime(2024, 3, 1, 10, 0, 0)

# day 1: every minute for 4 minutes, a 2 h gap, then two more (one a duplicate);
# day 2: nothing; day 3: one event.
OFFSETS = [0, 60, 120, 180, 7380, 7440, 7440, 2 * 86400]
STAMPS = [T0 + timedelta(seconds=s) for s in OFFSETS]


def test_span_intervals_and_gaps(tmp_path):
    result = run_plugin(PLUGIN, {"event_time": STAMPS, "v": list(range(8))}, tmp_path)
    assert isinstance(result, Ok)
    [finding] = result.findings
    assert finding.target == "event_time" and finding.kind == PLUGIN
    c = result.metrics["columns"]["event_time"]
    assert c["rows"] == 8 and c["null_count"] == 0
    assert c["first"] == "2024-03-01T10:00:00" and c["last"] == "2024-03-03T10:00:00"
    assert c["span_days"] == pytest.approx(2.0) and c["span_seconds"] == 172800.0
    assert c["q25_time"] == "2024-03-01T22:00:00" and c["q75_time"] == "2024-03-02T22:00:00"
    # intervals: 60, 60, 60, 7200, 60, 0, 165360
    assert c["intervals"] == 7 and c["zero_intervals"] == 1
    assert c["median_interval_s"] == 60.0
    gaps = c["largest_gaps"]
    assert [g["seconds"] for g in gaps] == [165360.0, 7200.0, 60.0, 60.0, 60.0]
    assert gaps[1] == {
        "end": "2024-03-01T12:03:00",
        "seconds": 7200.0,
        "start": "2024-03-01T10:03:00",
    }
    assert c["max_gap_s"] == 165360.0
    assert c["days_spanned"] == 3 and c["days_with_rows"] == 2 and c["days_without_rows"] == 1
    assert c["daily_counts"] == {"bucket_days": 1, "counts": [7, 0, 1], "start": "2024-03-01"}
    assert c["rows_per_day_median"] == 1.0


def test_long_spans_use_wider_buckets(tmp_path):
    result = run_plugin(PLUGIN, {"event_time": STAMPS}, tmp_path, max_days=2)
    daily = result.metrics["columns"]["event_time"]["daily_counts"]
    assert daily == {"bucket_days": 2, "counts": [7, 1], "start": "2024-03-01"}


def test_zoned_timestamps_are_read_in_utc(tmp_path):
    stamps = pa.array(
        [datetime(2024, 1, 1, 23, 30, tzinfo=UTC), datetime(2024, 1, 2, 0, 30, tzinfo=UTC)],
        pa.timestamp("us", tz="America/New_York"),
    )
    result = run_plugin(PLUGIN, pa.table({"ts": stamps}), tmp_path)
    c = result.metrics["columns"]["ts"]
    assert c["first"] == "2024-01-01T23:30:00" and c["median_interval_s"] == 3600.0
    assert c["daily_counts"]["counts"] == [1, 1]


def test_several_columns_and_nulls(tmp_path):
    data = {"a_time": STAMPS, "b_time": [None, *STAMPS[1:]]}
    result = run_plugin(PLUGIN, data, tmp_path)
    assert [f.target for f in result.findings] == ["a_time", "b_time"]
    assert result.metrics["columns"]["b_time"]["null_count"] == 1


def test_without_timestamps_not_applicable(tmp_path):
    data = {"x": [1.0, 2.0], "label": ["a", "b"]}
    result = run_plugin(PLUGIN, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    with make_reader(data, tmp_path / "pre") as reader:
        assert unmet(manifest(PLUGIN).applies_when.columns[0], reader.info) is not None


def test_the_figures_are_those_of_the_sql_in_the_evidence(tmp_path):
    # computed in numpy from one read of the values; the finding's evidence is the SQL
    # that computes them: the same figures (quantiles to the last bits of interpolation)
    rng = np.random.default_rng(3)
    secs = rng.integers(0, 40 * 86400, size=3000)
    secs[:400] = secs[400:800]  # repeated instants: zero intervals
    stamps = [T0 + timedelta(seconds=int(s), microseconds=int(s) % 7) for s in secs]
    stamps[5] = None
    result = run_plugin(PLUGIN, {"t": stamps}, tmp_path / "run")
    c = result.metrics["columns"]["t"]
    plugin = load_plugin(PLUGIN)
    ts = plugin._ts("t", "TIMESTAMP")
    with make_reader({"t": stamps}, tmp_path / "sql") as reader:
        r = reader.sql(plugin.intervals_query(ts, 5)).to_pylist()[0]
        days = reader.sql(plugin.daily_query(ts)).to_pylist()
    assert c["rows"] == r["n"] == 2999 and c["intervals"] == r["intervals"]
    assert c["zero_intervals"] == r["zero_intervals"] > 0
    assert c["distinct_timestamps"] == r["distinct_intervals"] + 1
    assert [c["median_interval_s"], c["p90_interval_s"], c["p99_interval_s"]] == pytest.approx(
        [v / 1e6 for v in r["q"]], rel=1e-12
    )
    assert [c["distinct_interval_p50_us"], c["distinct_interval_p99_us"]] == pytest.approx(
        r["distinct_q"], rel=1e-12
    )
    assert c["mean_interval_s"] == pytest.approx(r["mean_dt"] / 1e6, rel=1e-12)
    expected_gaps = sorted(zip(r["gap_us"], r["gap_end_us"], strict=True), key=lambda g: -g[0])
    assert [g["seconds"] for g in c["largest_gaps"]] == [g / 1e6 for g, _ in expected_gaps]
    first = days[0]["day"]
    dense = [0] * ((days[-1]["day"] - first).days + 1)
    for d in days:
        dense[(d["day"] - first).days] = d["n"]
    assert c["daily_counts"] == {"bucket_days": 1, "counts": dense, "start": first.isoformat()}


def test_equal_largest_intervals_go_to_the_earliest_first(monkeypatch):
    from contracts import intervals as helper

    # intervals 10, 10, 10, 5 (three equal largest): the earliest two are listed
    u = np.array([35, 0, 10, 20, 30], dtype=np.int64)
    r = helper.intervals(u, 2)
    assert r is not None and r["gaps"] == [(10, 10), (10, 20)]
    assert u.tolist() == [0, 10, 20, 30, 35]  # sorted in place
    assert r["per_day"].tolist() == [5] and r["q"] == [10.0, 10.0, 10.0]
    single = helper.intervals(np.array([7], dtype=np.int64), 5)
    assert single is not None and single["gaps"] == [] and single["q"] is None
    assert helper.intervals(np.array([], dtype=np.int64), 5) is None
    # picked a chunk at a time, with ties across chunks: the same as all at once
    rng = np.random.default_rng(2)
    values = np.cumsum(rng.integers(0, 6, size=500)).astype(np.int64)
    whole = helper.intervals(values.copy(), 7)
    frozen = values.copy()
    frozen.flags.writeable = False  # as a column read from SQL: sorted, used as it is
    monkeypatch.setattr(helper, "CHUNK", 16)
    chunked = helper.intervals(frozen, 7)
    assert whole is not None and chunked is not None
    assert chunked["gaps"] == whole["gaps"] and len({g for g, _ in whole["gaps"]}) < 7
    for (gap, end), (next_gap, next_end) in zip(whole["gaps"], whole["gaps"][1:], strict=False):
        assert gap > next_gap or (gap == next_gap and end < next_end)
