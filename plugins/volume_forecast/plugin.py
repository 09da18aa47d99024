"""volume_forecast: next week's daily volume and peak hour per process (ETS, statsmodels).

An additive ETS model with a trend and a weekly season per process, backtested
on the last ``backtest_days`` days first (the share of held-out days inside the
prediction interval is the evidence that the intervals can be trusted). The peak hour
comes from the last four weeks' hour-of-day profile of each weekday.
"""

from __future__ import annotations

import warnings
from datetime import date, timedelta

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

from contracts import Evidence, Finding, Impact, na, ok
from contracts.sql import quote_ident as _q
from contracts.sql import timestamp_expr, top_groups

PROFILE_DAYS = 28


def _settings(ctx) -> dict[str, float]:
    s = ctx.settings
    return {
        "horizon_days": int(s.get("horizon_days", 7)),
        "backtest_days": int(s.get("backtest_days", 14)),
        "interval": float(s.get("interval", 0.8)),
        "coverage_alpha": float(s.get("coverage_alpha", 0.001)),
        "min_growth": float(s.get("min_growth", 0.1)),
        "min_weeks": int(s.get("min_weeks", 6)),
        "min_jobs_per_day": float(s.get("min_jobs_per_day", 5.0)),
        "max_processes": int(s.get("max_processes", 200)),
    }


def forecast(
    y: np.ndarray, horizon: int, interval: float, start: np.ndarray | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Mean and prediction interval of the next ``horizon`` values of ``y``, and the
    fitted parameters; ``start``: where the optimizer starts (statsmodels' own
    heuristic when ``None``)."""
    series = pd.Series(y, dtype=float)
    with warnings.catch_warnings():  # optimizer convergence chatter
        warnings.simplefilter("ignore")
        fit = ETSModel(
            series,
            error="add",
            trend="add",
            damped_trend=False,
            seasonal="add",
            seasonal_periods=7,
        ).fit(disp=False, start_params=start)
        frame = fit.get_prediction(start=y.size, end=y.size + horizon - 1).summary_frame(
            alpha=1.0 - interval
        )
    return frame, np.asarray(fit.params, dtype=float)


def backtest(y: np.ndarray, days: int, interval: float) -> tuple[dict[str, float], np.ndarray]:
    """Fit on all but the last ``days``; coverage and error on those days, and the
    fitted parameters (the whole series' fit starts from them: the same model on
    ``days`` more values, so it converges in fewer steps)."""
    frame, params = forecast(y[:-days], days, interval)
    actual = y[-days:]
    lo, hi = frame["pi_lower"].to_numpy(), frame["pi_upper"].to_numpy()
    inside = (actual >= lo) & (actual <= hi)
    mean = frame["mean"].to_numpy()
    return {
        "coverage": float(np.mean(inside)),
        # how likely this few days inside are if the interval had its nominal coverage
        "coverage_p": float(stats.binom.cdf(int(inside.sum()), days, interval)),
        "mape": float(np.mean(np.abs(mean - actual) / np.maximum(actual, 1.0))),
    }, params


def queries(ctx, roles, max_processes: int) -> tuple[str, str, str]:
    dtypes = {c.name: c.dtype for c in ctx.data.columns}
    tcol = roles["queued"] or roles["started"] or next(iter(ctx.data.names("timestamp")))
    t = timestamp_expr(tcol, dtypes.get(tcol, ""))
    p = _q(roles["process"])
    ev = (
        f"SELECT CAST({p} AS VARCHAR) AS p, {t} AS t FROM data "
        f"WHERE {p} IS NOT NULL AND {t} IS NOT NULL"
    )
    top, join = top_groups(ctx.data.column(roles["process"]).distinct_count, max_processes)
    daily = (
        f"WITH ev AS ({ev}){top} SELECT ev.p, CAST(t AS DATE) AS day, count(*) AS jobs "
        f"FROM ev{join} GROUP BY 1, 2 ORDER BY 1, 2"
    )
    hourly = (
        # the jobs scanned again, not materialized (a copy would spill in a worker)
        f"WITH ev AS NOT MATERIALIZED ({ev}){top}, last AS (SELECT max(t) AS t1 FROM ev) "
        "SELECT ev.p, isodow(t) - 1 AS weekday, hour(t) AS hour, count(*) AS jobs "
        f"FROM ev{join}, last WHERE t > t1 - INTERVAL {PROFILE_DAYS} DAY "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
    span = (
        f"WITH ev AS ({ev}) SELECT min(t) AS t0, max(t) AS t1, count(DISTINCT p) AS processes "
        "FROM ev"
    )
    return daily, hourly, span


def peak_profile(rows: list[dict]) -> dict[int, tuple[int, float]]:
    """Per weekday: the busiest hour and its share of the day's jobs."""
    counts = np.zeros((7, 24))
    for r in rows:
        counts[int(r["weekday"]), int(r["hour"])] += float(r["jobs"])
    out = {}
    for w in range(7):
        total = counts[w].sum()
        h = int(np.argmax(counts[w]))
        out[w] = (h, float(counts[w, h] / total) if total > 0 else 0.0)
    return out


def run(ctx):
    cfg = _settings(ctx)
    roles = {r: ctx.data.event_role(r) for r in ("process", "queued", "started")}
    daily_q, hourly_q, span_q = queries(ctx, roles, int(cfg["max_processes"]))
    span = ctx.data.sql(span_q).to_pylist()[0]
    if span["t0"] is None:
        return na("INSUFFICIENT_DATA", "No job has a time.", checked=["no timestamps"])
    first_day: date = span["t0"].date()
    last_day: date = span["t1"].date()
    checked = []
    if span["t1"].hour < 23:  # a partial last day would look like a drop in volume
        checked.append(f"last day {last_day} ends at {span['t1']:%H:%M}: left out as partial")
        last_day -= timedelta(days=1)
    n_days = (last_day - first_day).days + 1
    series: dict[str, np.ndarray] = {}
    for r in ctx.data.sql(daily_q).to_pylist():
        i = (r["day"] - first_day).days
        if 0 <= i < n_days:
            series.setdefault(r["p"], np.zeros(max(n_days, 0)))[i] = float(r["jobs"])
    if int(span["processes"]) > len(series):
        checked.append(
            f"forecast at most {int(cfg['max_processes'])} of {int(span['processes'])} "
            "processes (the most jobs first)"
        )
    profiles: dict[str, list[dict]] = {}
    for r in ctx.data.sql(hourly_q).to_pylist():
        profiles.setdefault(r["p"], []).append(r)
    need = 7 * int(cfg["min_weeks"])
    if n_days < need:
        return na(
            "INSUFFICIENT_DATA",
            f"The log covers {n_days} full days; a weekly forecast with a backtest needs {need}.",
            checked=checked or [f"{n_days} days"],
        )
    findings = []
    forecasts: dict[str, object] = {}
    h = int(cfg["horizon_days"])
    for name in sorted(series):
        y = series[name]
        if float(np.mean(y)) < cfg["min_jobs_per_day"]:
            checked.append(
                f"{name}: {np.mean(y):.1f} jobs a day (needs {cfg['min_jobs_per_day']:g})"
            )
            continue
        bt, params = backtest(y, int(cfg["backtest_days"]), cfg["interval"])
        frame, _ = forecast(y, h, cfg["interval"], start=params)
        mean = frame["mean"].to_numpy()
        lo, hi = frame["pi_lower"].to_numpy(), frame["pi_upper"].to_numpy()
        prof = peak_profile(profiles.get(name, []))
        dates = [last_day + timedelta(days=i + 1) for i in range(h)]
        share = np.array([prof[d.weekday()][1] for d in dates])
        best = int(np.argmax(mean * share))  # the busiest hour of the period
        peak_day = int(np.argmax(mean))
        weeks = y[y.size % 7 :].reshape(-1, 7)
        weekly_peak = float(np.median(weeks.max(axis=1)))
        bar = (1.0 + cfg["min_growth"]) * weekly_peak
        forecasts[name] = {
            "next_days": [float(v) for v in mean],
            "peak_per_hour": float(mean[best] * share[best]),
            "peak_date": dates[best].isoformat(),
            "coverage": bt["coverage"],
        }
        checked.append(
            f"{name}: busiest forecast day {dates[peak_day]} {mean[peak_day]:.0f} jobs "
            f"({cfg['interval']:.0%} PI {lo[peak_day]:.0f}-{hi[peak_day]:.0f}) vs median weekly "
            f"peak {weekly_peak:.0f} (needs >= {bar:.0f}, lower bound >= {weekly_peak:.0f}); "
            "backtest coverage "
            f"{bt['coverage']:.0%} over {int(cfg['backtest_days'])} days (binomial p = "
            f"{bt['coverage_p']:.2g} against {cfg['interval']:.0%}, needs >= "
            f"{cfg['coverage_alpha']:g})"
        )
        trusted = bt["coverage_p"] >= cfg["coverage_alpha"]
        if mean[peak_day] >= bar and lo[peak_day] >= weekly_peak and trusted:
            findings.append(
                _finding(
                    roles,
                    daily_q,
                    name,
                    y,
                    dates,
                    mean,
                    lo,
                    hi,
                    share,
                    prof,
                    best,
                    peak_day,
                    weekly_peak,
                    bt,
                    cfg,
                )
            )
    metrics = {"forecasts": forecasts, "last_day": last_day.isoformat(), "horizon_days": h}
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            "No process's forecast peak for the next period is clearly above its usual "
            "weekly peak.",
            checked=checked or ["no process has enough volume"],
            metrics=metrics,
        )
    return ok(findings=findings, metrics=metrics | {"flagged": [f.target for f in findings]})


def _finding(
    roles, query, name, y, dates, mean, lo, hi, share, prof, best, peak_day, weekly_peak, bt, cfg
) -> Finding:
    peak_h = float(mean[best] * share[best])
    peak_hi = float(hi[best] * share[best])
    hour = prof[dates[best].weekday()][0]
    when = dates[best].isoformat()
    past_peak_h = weekly_peak * float(max(s for _, s in prof.values()))
    metrics = {
        "peak_date": when,
        "peak_hour": hour,
        "peak_jobs_per_hour": peak_h,
        "peak_jobs_per_hour_upper": peak_hi,
        "peak_day": dates[peak_day].isoformat(),
        "peak_day_jobs": float(mean[peak_day]),
        "peak_day_lower": float(lo[peak_day]),
        "peak_day_upper": float(hi[peak_day]),
        "median_weekly_peak_jobs": weekly_peak,
        "growth_vs_weekly_peak": float(mean[peak_day] / weekly_peak) - 1.0 if weekly_peak else None,
        "backtest_coverage": bt["coverage"],
        "backtest_coverage_p": bt["coverage_p"],
        "backtest_mape": bt["mape"],
        "backtest_days": int(cfg["backtest_days"]),
        "interval": cfg["interval"],
        "last_week_jobs": float(np.sum(y[-7:])),
        "next_period_jobs": float(np.sum(mean)),
    }
    cols = tuple(c for c in (roles["process"], roles["queued"] or roles["started"]) if c)
    return Finding(
        kind="volume_peak",
        title=f"Pre-provision {name} for a peak of {peak_h:.0f} jobs/h on {when}",
        severity="medium",
        confidence=max(0.0, min(0.99, bt["coverage"])),
        target=name,
        what=(
            f"{name}'s daily volume is forecast at {mean[peak_day]:.0f} jobs on "
            f"{dates[peak_day]} ({cfg['interval']:.0%} interval {lo[peak_day]:.0f}-"
            f"{hi[peak_day]:.0f}); the median week so far peaked at {weekly_peak:.0f}. Its "
            f"busiest hour, {hour:02d}:00 UTC on {when}, is forecast at {peak_h:.0f} jobs/h "
            f"(up to {peak_hi:.0f})."
        ),
        why=(
            "The forecast is well above the usual weekly peak and even the interval's lower "
            "bound reaches it, so the capacity "
            "sized for past weeks will be short; the model's intervals held "
            f"{bt['coverage']:.0%} of the last {int(cfg['backtest_days'])} days in a backtest."
        ),
        recommendation=(
            f"Pre-provision {name} for a peak of {peak_hi:.0f} jobs/h at {hour:02d}:00 UTC on "
            f"{when} (the interval's upper bound; {peak_h:.0f} expected)."
        ),
        evidence=Evidence(columns=cols, metrics=metrics, query=query, rows=int(y.size)),
        measurement="modeled",
        impact=Impact(
            value=peak_h - past_peak_h,
            unit="jobs/hour",
            description="jobs per hour above the usual weekly peak hour, at the forecast peak",
            assumptions=(
                "additive ETS with a trend and a weekly season fits the daily volume "
                f"(backtest coverage {bt['coverage']:.0%})",
                "the hour-of-day profile of the last four weeks holds for the next period",
            ),
        ),
    )
