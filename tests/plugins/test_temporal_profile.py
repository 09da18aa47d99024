from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from scipy import stats

from contracts import Na, Ok
from engine._core.preflight import unmet
from engine.testing import make_reader

from .conftest import manifest, run_plugin

PLUGIN = "temporal_profile"

# 2024-03-04 is a Monday: five jobs at 14:xx and one at 09:00 on Monday, one at 03:00 on
# Tuesday, two at 14:xx on Saturday 2024-03-09.
QUEUED = [
    datetime(2024, 3, 4, 14, 0),
    datetime(2024, 3, 4, 14, 10),
    datetime(2024, 3, 4, 14, 20),
    datetime(2024, 3, 4, 14, 30),
    datetime(2024, 3, 4, 14, 59),
    datetime(2024, 3, 4, 9, 0),
    datetime(2024, 3, 5, 3, 0),
    datetime(2024, 3, 9, 14, 0),
    datetime(2024, 3, 9, 14, 5),
]
HOSTS = ["h1"] * 5 + ["h2"] * 4


def _data():
    return {"queued_at": QUEUED, "host": HOSTS, "process_name": ["p"] * 9}


def test_hour_and_weekday_profiles(tmp_path):
    result = run_plugin(PLUGIN, _data(), tmp_path)
    assert isinstance(result, Ok)
    [finding] = result.findings
    assert finding.target == "queued_at" and finding.kind == PLUGIN
    m = result.metrics
    assert m["time_column"] == "queued_at" and m["rows"] == 9
    hours = [0] * 24
    hours[14], hours[9], hours[3] = 7, 1, 1
    assert m["hour_of_day"] == hours
    assert m["peak_hour"] == 14 and m["peak_hour_share"] == pytest.approx(7 / 9)
    assert m["peak_to_mean_hour_ratio"] == pytest.approx(7 / (9 / 24))
    assert m["day_of_week"] == [6, 1, 0, 0, 0, 2, 0]
    assert m["days_covered"] == 6 and m["day_of_week_occurrences"] == [1, 1, 1, 1, 1, 1, 0]
    assert m["day_of_week_mean_per_day"] == [6.0, 1.0, 0.0, 0.0, 0.0, 2.0, None]
    assert m["peak_day"] == "Mon" and m["trough_day"] == "Wed"
    assert m["weekend_share"] == pytest.approx(2 / 9)
    assert m["week_hour"][0][14] == 5 and m["week_hour"][5][14] == 2
    expected = stats.chisquare(hours)
    assert m["hour_uniformity"]["p_value"] == pytest.approx(expected.pvalue)
    assert m["hour_uniformity"]["cohens_w"] == pytest.approx(np.sqrt(expected.statistic / 9))
    # Sunday never occurs in the covered dates, so it is left out of the weekday test
    assert m["day_uniformity"]["categories"] == 6


def test_host_profiles(tmp_path):
    result = run_plugin(PLUGIN, _data(), tmp_path)
    hosts = result.metrics["hosts"]
    assert sorted(hosts) == ["h1", "h2"] and result.metrics["hosts_capped"] is False
    assert hosts["h1"]["rows"] == 5 and hosts["h1"]["peak_hour"] == 14
    assert hosts["h2"]["hour_of_day"][3] == 1 and hosts["h2"]["hour_of_day"][14] == 2
    capped = run_plugin(PLUGIN, _data(), tmp_path / "capped", max_hosts=1)
    assert list(capped.metrics["hosts"]) == ["h1"] and capped.metrics["hosts_capped"] is True


def test_start_time_is_used_without_a_queue_time(tmp_path):
    result = run_plugin(PLUGIN, {"started_at": QUEUED, "x": list(range(9))}, tmp_path)
    assert result.metrics["time_column"] == "started_at"
    assert result.metrics["peak_hour"] == 14


def test_without_timestamps_not_applicable(tmp_path):
    data = {"x": [1.0, 2.0], "label": ["a", "b"]}
    result = run_plugin(PLUGIN, data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    with make_reader(data, tmp_path / "pre") as reader:
        assert unmet(manifest(PLUGIN).applies_when.columns[0], reader.info) is not None
