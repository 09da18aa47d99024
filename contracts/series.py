"""Level shifts and trends in a series of period medians, shared by the plugins that
look for them (changepoints and monotonic_trend on an event log's daily waits and run
times, level_shifts on any table's quantity columns), so a shift or a trend is judged by
the same rule everywhere.

* A level shift (:func:`shift_cuts`, :func:`evaluate_cut`): binary segmentation with
  the L2 (Gaussian mean-shift) cost (ruptures Binseg) on the log of the series,
  penalty ``factor * sigma^2 * ln n`` with sigma from the median absolute day-to-day
  move; a cut counts when the median level moves by a large fraction, the points on
  each side sit consistently on their side of the geometric midpoint, a two-sided
  Mann-Whitney U test separates the sides, and the step fits clearly better than a
  straight line (a gradual trend is not a shift).
* A trend (:func:`mann_kendall`): Mann-Kendall as Kendall's tau between the period
  index and the value (scipy.stats.kendalltau; with distinct indexes tau-b is the MK
  statistic), its size as Sen's slope (scipy.stats.theilslopes); a single level shift
  that fits clearly better than a line (:func:`best_step_sse`) makes it a step.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt
import ruptures as rpt  # type: ignore[import-untyped]
from scipy import stats

Floats = npt.NDArray[np.float64]

MR_TO_SIGMA = 0.954
"""Median |x_i - x_(i-1)| of iid normal values, in sigmas."""


class Trend(TypedDict):
    tau: float
    p_value: float
    slope: float
    intercept: float


def sse(y: Floats) -> float:
    """Squared error of ``y`` around its mean (0 when empty)."""
    return float(np.sum((y - y.mean()) ** 2)) if y.size else 0.0


def linear_sse(x: Floats, y: Floats) -> float:
    """Squared error of the least-squares line through (x, y)."""
    xc = x - x.mean()
    denom = float(np.sum(xc * xc))
    if denom <= 0:
        return sse(y)
    slope = float(np.sum(xc * (y - y.mean()))) / denom
    resid = y - y.mean() - slope * xc
    return float(np.sum(resid * resid))


def best_step_sse(y: Floats, min_len: int) -> float | None:
    """Squared error of the best single mean shift of ``y`` (None if too short)."""
    n = y.size
    if n < 2 * min_len:
        return None
    z = y - y.mean()
    cs = np.cumsum(z)
    cs2 = np.cumsum(z * z)
    k = np.arange(min_len, n - min_len + 1)
    left_sum = cs[k - 1]
    right_sum = cs[-1] - left_sum
    cost = (cs2[k - 1] - left_sum**2 / k) + ((cs2[-1] - cs2[k - 1]) - right_sum**2 / (n - k))
    return max(float(np.min(cost)), 0.0)


def binary_segmentation(y: Floats, min_len: int, penalty: float, max_cuts: int) -> list[int]:
    """Cut points of ``y`` (sorted): ruptures' binary segmentation with the L2 cost (a
    Gaussian mean shift), splitting the segment with the largest gain first while the
    gain exceeds ``penalty``, and at most ``max_cuts`` times."""
    if y.size < 2 * min_len or np.ptp(y) == 0:
        return []
    algo = rpt.Binseg(model="l2", min_size=min_len, jump=1).fit(y)
    cuts = algo.predict(pen=penalty)[:-1]  # the last breakpoint is the series' end
    if len(cuts) > max_cuts:
        cuts = algo.predict(n_bkps=max_cuts)[:-1]
    return sorted(int(c) for c in cuts)


def shift_cuts(y: Floats, min_len: int, penalty_factor: float, max_cuts: int) -> list[int]:
    """:func:`binary_segmentation` with the penalty ``penalty_factor * sigma^2 * ln n``,
    sigma estimated robustly from the moves between neighbouring points."""
    if y.size < 2 * min_len:
        return []
    sigma = float(np.median(np.abs(np.diff(y)))) / MR_TO_SIGMA
    penalty = penalty_factor * max(sigma, 1e-6) ** 2 * math.log(y.size)
    return binary_segmentation(y, min_len, penalty, max_cuts)


def evaluate_cut(
    days: list[Any],
    raw: Floats,
    y: Floats,
    x: Floats,
    jobs: Floats,
    lo: int,
    cut: int,
    hi: int,
    settings: dict[str, float],
    floor: float = 1.0,
) -> dict[str, Any]:
    """Everything the gates need about the cut between y[lo:cut] and y[cut:hi]
    (``raw`` the series, ``y`` its log, levels below ``floor`` count as ``floor``);
    ``settings``: min_relative_shift, alpha, min_consistency, max_step_to_line_sse."""
    left, right = raw[lo:cut], raw[cut:hi]
    before = max(float(np.median(left)), floor)
    after = max(float(np.median(right)), floor)
    rel = (after - before) / before
    mid = math.sqrt(before * after)
    if after >= before:
        consistency = min(float(np.mean(left < mid)), float(np.mean(right > mid)))
    else:
        consistency = min(float(np.mean(left > mid)), float(np.mean(right < mid)))
    if np.ptp(raw[lo:hi]) > 0:
        p_value = float(stats.mannwhitneyu(left, right, alternative="two-sided").pvalue)
    else:
        p_value = 1.0
    step = sse(y[lo:cut]) + sse(y[cut:hi])
    line = linear_sse(x[lo:hi], y[lo:hi])
    step_ratio = step / line if line > 0 else 1.0
    passed = (
        abs(rel) >= settings["min_relative_shift"]
        and p_value < settings["alpha"]
        and consistency >= settings["min_consistency"]
        and step_ratio <= settings["max_step_to_line_sse"]
    )
    return {
        "date": days[cut],
        "before": before,
        "after": after,
        "relative_shift": rel,
        "log_ratio": math.log(after / before),
        "consistency": consistency,
        "p_value": p_value,
        "step_to_line_sse": step_ratio,
        "days_before": cut - lo,
        "days_after": hi - cut,
        "jobs_per_day_after": float(np.mean(jobs[cut:hi])),
        "first_day": days[lo],
        "last_day": days[hi - 1],
        "passed": passed,
    }


def mann_kendall(x: Floats, y: Floats) -> Trend:
    """Mann-Kendall (Kendall's tau of ``y`` against ``x``) and Sen's slope; a constant
    series has tau 0, p 1 and slope 0."""
    if np.ptp(y) > 0:
        tau_res = stats.kendalltau(x, y)
        slope, intercept, _, _ = stats.theilslopes(y, x)
        return {
            "tau": float(tau_res.statistic),
            "p_value": float(tau_res.pvalue),
            "slope": float(slope),
            "intercept": float(intercept),
        }
    return {"tau": 0.0, "p_value": 1.0, "slope": 0.0, "intercept": float(y[0])}


def seasonal_strength(seasonal: Floats, resid: Floats) -> float:
    """Seasonal strength (Wang, Smith and Hyndman): 1 - var(R) / var(S + R), floored at 0."""
    total = float(np.var(seasonal + resid))
    return max(0.0, 1.0 - float(np.var(resid)) / total) if total > 0 else 0.0


def dense_daily(days: list[date], values: list[float | None]) -> tuple[date, Floats]:
    """The series on every day from the first to the last, gaps linearly interpolated."""
    first = days[0]
    n = (days[-1] - first).days + 1
    y = np.full(n, np.nan)
    for d, v in zip(days, values, strict=True):
        if v is not None:
            y[(d - first).days] = v
    idx = np.arange(n)
    ok_ = ~np.isnan(y)
    dense: Floats = np.interp(idx, idx[ok_], y[ok_])
    return first, dense


def weekly_rhythm(
    days: list[date], values: list[float | None], min_weeks: int
) -> dict[str, Any] | None:
    """Robust STL (statsmodels, period 7) of one daily series: its weekly strength and
    weekday effect (Monday first, on the series' scale); None when shorter than
    ``min_weeks`` weeks or constant."""
    from statsmodels.tsa.seasonal import STL  # type: ignore[import-untyped]

    if sum(v is not None for v in values) < 7 * min_weeks:
        return None
    first, y = dense_daily(days, values)
    if y.size < 7 * min_weeks or np.ptp(y) == 0:
        return None
    fit = STL(y, period=7, robust=True).fit()
    seasonal = np.asarray(fit.seasonal)
    weekday = (np.arange(y.size) + first.weekday()) % 7
    effect = [float(np.mean(seasonal[weekday == w])) for w in range(7)]
    return {
        "strength": seasonal_strength(seasonal, np.asarray(fit.resid)),
        "weekday_effect": effect,
        "days": int(y.size),
        "first_day": first.isoformat(),
    }
