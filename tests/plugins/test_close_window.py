"""close_window: a planted month-end close, its competitor and its confounders, with the
calendar, the contention coefficient and the classification checked against the data."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from contracts import Na, Ok

from .conftest import load_plugin, run_plugin

T0 = datetime(2024, 4, 1)  # a Monday
DAYS = 90
WINDOW = {25, 28, 29, 58, 59, 60, 86, 87, 88}  # last 3 business days of Apr, May, Jun 2024
PER_JOB = 600.0  # s of close wait per competitor job running on its host


def _log(per_job: float = PER_JOB, seed: int = 5, days: int = DAYS, close_factor: float = 4.0):
    """Business days only, 08:00-18:00. 'close' runs close_factor x its jobs in the window,
    on h1/h2 there, as does 'mover' (same jobs every day); 'filler' runs everywhere."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("p", "h", "q", "w", "r")}
    for d in range(days):
        if (d % 7) >= 5:
            continue
        win = d in WINDOW
        for name, n, run in (
            ("close", 20 * (close_factor if win else 1.0), 1200.0),
            ("mover", 30, 1800.0),
            ("filler", 40, 300.0),
        ):
            k = int(n)
            q = d * 86400 + rng.uniform(8 * 3600, 18 * 3600, k)
            if win and name in ("close", "mover"):
                h = rng.choice(["h1", "h2"], k)
            else:
                h = rng.choice(["h1", "h2", "h3", "h4"], k)
            rows["p"] += [name] * k
            rows["h"] += h.tolist()
            rows["q"] += q.tolist()
            rows["w"] += rng.lognormal(np.log(60.0), 0.5, k).tolist()
            rows["r"] += rng.lognormal(np.log(run), 0.3, k).tolist()
    p, h = np.array(rows["p"]), np.array(rows["h"])
    q, w, r = (np.array(rows[k]) for k in ("q", "w", "r"))
    day = (q // 86400).astype(int)
    in_w = np.isin(day, sorted(WINDOW))
    s = q + w
    e = s + r
    mover = (p == "mover") & in_w
    for host in ("h1", "h2"):
        m = mover & (h == host)
        starts, ends = np.sort(s[m]), np.sort(e[m])
        v = np.flatnonzero((p == "close") & in_w & (h == host))
        running = np.searchsorted(starts, q[v], "right") - np.searchsorted(ends, q[v], "right")
        w[v] += per_job * running
    s = q + w
    e = s + r
    ts = [T0 + timedelta(seconds=float(x)) for x in np.round(q)]
    return {
        "process_name": p.tolist(),
        "host": h.tolist(),
        "queued_at": ts,
        "started_at": [T0 + timedelta(seconds=float(x)) for x in np.round(s)],
        "ended_at": [T0 + timedelta(seconds=float(x)) for x in np.round(e)],
    }


def test_calendar_windows_and_complete_month_ends():
    cw = load_plugin("close_window")
    t0 = (T0 - datetime(1970, 1, 1)).total_seconds()
    cal = cw.calendar(t0, t0 + (DAYS - 1) * 86400 + 3600, 3)
    days = [[str(np.datetime64(d, "D")) for d in w["days"]] for w in cal["windows"]]
    # June's window is covered, but its month boundary (July 1) is past the end
    assert days == [
        ["2024-04-26", "2024-04-29", "2024-04-30"],
        ["2024-05-29", "2024-05-30", "2024-05-31"],
    ]
    assert cal["incomplete"] == 1
    assert len(cal["other_days"]) == 65 - 9 - 1  # business days, less windows and day 1


def test_names_the_competitor_with_its_coefficient(tmp_path):
    result = run_plugin("close_window", _log(), tmp_path)
    assert isinstance(result, Ok)
    by_kind = {f.kind: f for f in result.findings}
    assert sorted(by_kind) == ["close_contention", "close_spill"]
    spill, move = by_kind["close_spill"], by_kind["close_contention"]
    assert spill.target == "close" and move.target == "mover"
    m = move.evidence.metrics
    assert m["coef_s_per_job"] == pytest.approx(PER_JOB, rel=0.15)
    assert m["hosts"] == "h1, h2"
    assert m["close_process"] == "close"
    assert "filler" in m["tested"]  # tested, and not named
    assert move.impact is not None and move.impact.unit == "hours/month"
    assert move.impact.value == pytest.approx(m["wait_hours_per_month"])
    assert spill.evidence.metrics["volume_ratio"] == pytest.approx(4.0, rel=0.1)
    assert spill.evidence.metrics["wait_ratio"] > 1.5
    assert result.metrics["month_ends"] == 2


def test_busy_close_without_contention_is_na(tmp_path):
    # the close is busy in the window by design, but nothing slows it down
    result = run_plugin("close_window", _log(per_job=0.0), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"
    assert any("close (close, " in c for c in result.checked)


def test_no_month_end_volume_is_na(tmp_path):
    result = run_plugin("close_window", _log(close_factor=1.0), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NO_SIGNIFICANT_EFFECT"


def test_fewer_than_two_month_ends_is_not_applicable(tmp_path):
    result = run_plugin("close_window", _log(days=45), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    assert "1 complete month end" in result.explanation


def test_missing_queue_times_are_not_applicable(tmp_path):
    data = _log()
    data["queued_at"] = [None] * len(data["process_name"])
    result = run_plugin("close_window", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"


def test_tiny_log_is_na(tmp_path):
    data = {k: v[:5] for k, v in _log().items()}
    result = run_plugin("close_window", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    assert "0 complete month end" in result.explanation
