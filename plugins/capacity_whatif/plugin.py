"""capacity_whatif: how many workers a process needs, from a fitted G/G/c queueing model.

Per process, one SQL aggregate each gives the arrivals per hour (so the arrival rate of
every hour of a weekday and of a weekend day, and the arrival variability from the counts
across weeks), the run times (mean, squared coefficient of variation), the observed
waits, and -- on a grid of ``grid_s`` seconds, exact from grouped counts of queue, start
and end steps -- the jobs running and in the system at every instant. The worker count
``c`` is the most jobs of the process ever running at once.

The model: for each hour of a weekday and of a weekend day, Erlang C gives the
probability that a job waits with ``c`` workers and offered load ``a = lambda * E[S]``;
the Allen-Cunneen approximation scales the M/M/c wait by ``(ca^2 + cs^2) / 2``, and the
wait beyond zero is taken as exponential with that mean. Jobs are weighted by the hour
they arrive in.

The model is only used where it fits: Little's law must hold between the grid's mean
number of jobs in the system and ``lambda * W``; no hour may be overloaded
(``a >= c``); and the modeled mean and p95 wait must both be within ``fit_tolerance``
of the observed ones. Waits that the worker count does not explain (jobs held for other
reasons, a dispatcher's delay, a queue with more workers than ever ran at once) fail
the last check, and the process is refused with the figures.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
from scipy import optimize

from contracts import Evidence, Finding, Impact, na, ok
from contracts.sql import quote_ident as _q
from contracts.sql import timestamp_expr
from contracts.units import DAYS_PER_MONTH

BUCKETS = 48  # hours of the day, weekdays and weekends apart
US = 1_000_000


def erlang_c(c: int, a: np.ndarray) -> np.ndarray:
    """Probability of waiting in M/M/c with offered loads ``a`` (< c), from the Erlang B
    recursion B(k) = a B(k-1) / (k + a B(k-1)), which is stable for large c."""
    a = np.asarray(a, dtype=float)
    b = np.ones_like(a)
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return c * b / (c - a * (1.0 - b))


def wait_model(c: int, lam: np.ndarray, weights: np.ndarray, mean_s: float, scv: float):
    """(probability of waiting, rate of the exponential wait) per hour bucket, and
    the job-weighted mean wait, for ``c`` workers; None when an hour is overloaded."""
    a = lam * mean_s
    if np.any(a[weights > 0] >= c):
        return None
    p_wait = np.where(a > 0, erlang_c(c, np.minimum(a, c - 1e-9)), 0.0)
    # M/M/c: the wait of a waiting job is exponential with rate c mu - lambda; G/G/c
    # (Allen-Cunneen): its mean is scaled by (ca^2 + cs^2) / 2.
    rate = (c / mean_s - lam) / (scv / 1.0)
    mean = float(np.sum(weights * p_wait / rate) / np.sum(weights))
    return p_wait, rate, mean


def wait_quantile(p_wait: np.ndarray, rate: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The q-quantile of the job-weighted mixture of the hours' wait distributions."""
    w = weights / np.sum(weights)

    def tail(t: float) -> float:
        return float(np.sum(w * p_wait * np.exp(-rate * t))) - (1.0 - q)

    if tail(0.0) <= 0:
        return 0.0
    hi = 1.0
    while tail(hi) > 0:
        hi *= 2.0
    return float(optimize.brentq(tail, 0.0, hi, xtol=1e-6, rtol=1e-10))


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / US, tz=UTC).replace(tzinfo=None).isoformat()


def _queries(ctx, roles: dict[str, str], grid_us: int) -> dict[str, str]:
    dtypes = {c.name: c.dtype for c in ctx.data.columns}
    ts = {r: f"epoch_us({timestamp_expr(roles[r], dtypes.get(roles[r], ''))})" for r in roles}
    p = f"CAST({_q(roles['process'])} AS VARCHAR)"
    ev = (
        f"SELECT {p} AS p, {ts['queued']} AS q, {ts['started']} AS s, {ts['ended']} AS e "
        f"FROM data WHERE {_q(roles['process'])} IS NOT NULL"
    )
    span = (
        f"WITH ev AS ({ev}) SELECT min(q) AS t0, max(q) AS q1, "
        "greatest(max(q), max(s), max(e)) AS t1 FROM ev WHERE q IS NOT NULL"
    )
    hourly = (
        f"WITH ev AS ({ev}) SELECT p, q // 3600000000 AS hour, count(*) AS n "
        "FROM ev WHERE q IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2"
    )
    return {"ev": ev, "span": span, "hourly": hourly, "grid_us": str(grid_us)}


def _jobs_query(ev: str, t1: int) -> str:
    """Per process: jobs, run-time moments, observed waits and time in system (jobs not
    yet ended count up to the end of the log ``t1``)."""
    return (
        f"WITH ev AS ({ev}) SELECT p, count(*) AS jobs, "
        "count(*) FILTER (WHERE e >= s) AS runs, "
        "avg((e - s) / 1e6) FILTER (WHERE e >= s) AS run_mean_s, "
        "var_pop((e - s) / 1e6) FILTER (WHERE e >= s) AS run_var_s2, "
        "count(*) FILTER (WHERE s >= q) AS waits, "
        "avg((s - q) / 1e6) FILTER (WHERE s >= q) AS wait_mean_s, "
        "quantile_cont((s - q) / 1e6, 0.95) FILTER (WHERE s >= q) AS wait_p95_s, "
        "sum((s - q) / 1e6) FILTER (WHERE s >= q) AS wait_total_s, "
        f"avg((coalesce(e, {t1}) - q) / 1e6) FILTER (WHERE coalesce(e, {t1}) >= q) "
        "AS system_mean_s "
        "FROM ev WHERE q IS NOT NULL GROUP BY 1 ORDER BY 1"
    )


def _grid_query(ev: str, t0: int, grid_us: int) -> str:
    """Per process and level of running jobs: grid steps at that level, and the sum of
    jobs in the system over those steps. A time x counts from grid step
    ceil((x - t0) / grid); the level is constant between steps with an event."""
    step = f"+ {grid_us - 1}) // {grid_us}"
    return (
        f"WITH ev AS ({ev}), d AS (SELECT p, k, sum(ds) AS ds, sum(dr) AS dr FROM ("
        f"SELECT p, (q - {t0} {step} AS k, 1 AS ds, 0 AS dr FROM ev WHERE q IS NOT NULL "
        f"UNION ALL SELECT p, (s - {t0} {step}, 0, 1 FROM ev "
        "WHERE q IS NOT NULL AND s IS NOT NULL "
        f"UNION ALL SELECT p, (e - {t0} {step}, -1, -1 FROM ev "
        "WHERE q IS NOT NULL AND s IS NOT NULL AND e IS NOT NULL) GROUP BY 1, 2), "
        "lv AS (SELECT p, k, sum(ds) OVER w AS sys, sum(dr) OVER w AS running, "
        "lead(k) OVER (PARTITION BY p ORDER BY k) - k AS len FROM d "
        "WINDOW w AS (PARTITION BY p ORDER BY k ROWS UNBOUNDED PRECEDING)) "
        "SELECT p, CAST(running AS BIGINT) AS running, CAST(sum(len) AS BIGINT) AS steps, "
        "CAST(sum(sys * len) AS DOUBLE) AS sys_steps FROM lv WHERE len IS NOT NULL "
        "GROUP BY 1, 2 ORDER BY 1, 2"
    )


def _bucket(hour_index: np.ndarray) -> np.ndarray:
    """Hour of the day, on weekdays (0-23) or at weekends (24-47), of hours since the
    epoch (a Thursday): each bucket pools five (or two) days a week, so its arrival
    rate is estimated from many hours even in a log of a few weeks."""
    day = (hour_index // 24 + 3) % 7  # 0 = Monday
    return (day >= 5) * 24 + hour_index % 24


def arrival_profile(hours: np.ndarray, counts: np.ndarray, h0: int, h1: int):
    """Arrival rate (per second) of each bucket (:func:`_bucket`), jobs per bucket, and
    the arrivals' squared coefficient of variation estimated by the dispersion of the
    hourly counts within the buckets (1 for Poisson arrivals)."""
    n_hours = h1 - h0 + 1
    series = np.zeros(n_hours)
    series[hours - h0] = counts
    how = _bucket(np.arange(h0, h1 + 1))
    occurrences = np.bincount(how, minlength=BUCKETS).astype(float)
    jobs = np.bincount(how, weights=series, minlength=BUCKETS)
    lam = np.where(occurrences > 0, jobs / np.maximum(occurrences, 1) / 3600.0, 0.0)
    # within each bucket, the variance of counts over the mean (pooled)
    sq = np.bincount(how, weights=series**2, minlength=BUCKETS)
    ok_h = occurrences >= 2
    mean_h = jobs[ok_h] / occurrences[ok_h]
    var_h = (sq[ok_h] - occurrences[ok_h] * mean_h**2) / (occurrences[ok_h] - 1)
    dispersion = float(np.sum(var_h) / np.sum(mean_h)) if np.sum(mean_h) > 0 else 1.0
    return lam, jobs, dispersion


def analyse(name, job, levels, lam, jobs_how, ca2, t0, t1, cfg) -> dict[str, object]:
    """Fit, check and what-if of one process; ``verdict`` says whether it fits."""
    out: dict[str, object] = {"process": name, "jobs": int(job["jobs"])}
    running = np.array([lv[0] for lv in levels], dtype=np.int64)
    steps = np.array([lv[1] for lv in levels], dtype=float)
    sys_steps = np.array([lv[2] for lv in levels], dtype=float)
    mean_s = float(job["run_mean_s"] or 0.0)
    if int(job["jobs"]) < cfg["min_jobs"] or not running.size or mean_s <= 0:
        out["verdict"] = f"fewer than {cfg['min_jobs']} jobs with run times"
        return out
    c = int(running.max())
    cs2 = float(job["run_var_s2"] or 0.0) / mean_s**2
    scv = (ca2 + cs2) / 2.0
    total_steps = float(steps.sum())
    span_s = (t1 - t0) / US
    l_obs = float(sys_steps.sum()) / total_steps
    lam_all = int(job["jobs"]) / span_s
    w_obs = float(job["system_mean_s"] or 0.0)
    little = l_obs / (lam_all * w_obs) - 1.0 if lam_all * w_obs > 0 else math.inf
    wait_mean = float(job["wait_mean_s"] or 0.0)
    wait_p95 = float(job["wait_p95_s"] or 0.0)
    out |= {
        "workers": c,
        "share_of_time_at_workers": float(steps[running == c].sum() / total_steps),
        "mean_running": float(np.sum(running * steps) / total_steps),
        "mean_in_system": l_obs,
        "little_lambda_w": lam_all * w_obs,
        "little_relative_error": None if math.isinf(little) else little,
        "run_mean_s": mean_s,
        "run_scv": cs2,
        "arrival_scv": ca2,
        "peak_arrivals_per_hour": float(lam.max() * 3600.0),
        "peak_utilization": float(lam.max() * mean_s / c),
        "observed_wait_mean_s": wait_mean,
        "observed_wait_p95_s": wait_p95,
        "wait_total_hours": float(job["wait_total_s"] or 0.0) / 3600.0,
    }
    if not abs(little) <= cfg["little_tolerance"]:
        out["verdict"] = (
            f"Little's law does not hold: {l_obs:.2f} jobs in the system on average vs "
            f"lambda W = {lam_all * w_obs:.2f} (off by {little:+.0%}, allowed "
            f"{cfg['little_tolerance']:.0%}); the log is not a stationary record of its queue"
        )
        return out
    model = wait_model(c, lam, jobs_how, mean_s, scv)
    if model is None:
        out["verdict"] = (
            f"overloaded: the busiest hour's offered load {lam.max() * mean_s:.2f} is at or "
            f"above the {c} workers ever seen running, so no steady state exists"
        )
        return out
    p_wait, rate, mod_mean = model
    mod_p95 = wait_quantile(p_wait, rate, jobs_how, 0.95)
    out |= {"modeled_wait_mean_s": mod_mean, "modeled_wait_p95_s": mod_p95}
    tol = cfg["fit_tolerance"]

    def within(model_v: float, obs_v: float) -> bool:
        floor = 1.0  # waits under a second are the clock's resolution
        m, o = max(model_v, floor), max(obs_v, floor)
        return 1.0 / tol <= m / o <= tol

    if not (within(mod_mean, wait_mean) and within(mod_p95, wait_p95)):
        out["verdict"] = (
            f"the model does not fit: modeled mean/p95 wait {mod_mean:.0f}/{mod_p95:.0f} s "
            f"vs observed {wait_mean:.0f}/{wait_p95:.0f} s (allowed factor {tol:g}); the "
            f"waits are not explained by {c} workers"
        )
        return out
    out["verdict"] = "fits"
    months = span_s / 86400.0 / DAYS_PER_MONTH
    plans = []
    for k in range(1, int(cfg["max_added_workers"]) + 1):
        p_k, r_k, m_k = wait_model(c + k, lam, jobs_how, mean_s, scv)  # fewer waits: stable
        p95_k = wait_quantile(p_k, r_k, jobs_how, 0.95)
        # the model's relative cut, applied to the observed total wait
        saved = float(job["wait_total_s"] or 0.0) / 3600.0 * (1.0 - m_k / mod_mean)
        plans.append({"added": k, "p95_s": p95_k, "mean_s": m_k, "saved_h_month": saved / months})
        if p95_k <= cfg["target_p95_fraction"] * mod_p95:
            break
    out["plans"] = plans
    out["months"] = months
    return out


def _settings(ctx) -> dict[str, float]:
    s = ctx.settings
    return {
        "grid_s": int(s.get("grid_s", 60)),
        "min_jobs": int(s.get("min_jobs", 200)),
        "little_tolerance": float(s.get("little_tolerance", 0.1)),
        "fit_tolerance": float(s.get("fit_tolerance", 2.0)),
        "max_added_workers": int(s.get("max_added_workers", 5)),
        "target_p95_fraction": float(s.get("target_p95_fraction", 0.25)),
        "min_saved_hours_per_month": float(s.get("min_saved_hours_per_month", 10.0)),
        "min_p95_reduction": float(s.get("min_p95_reduction", 0.5)),
    }


def model_processes(ctx, roles: dict[str, str], cfg) -> tuple[list[dict], dict[str, str]]:
    """Every process's fit (see :func:`analyse`) and the queries behind it."""
    grid_us = int(cfg["grid_s"]) * US
    qs = _queries(ctx, roles, grid_us)
    span = ctx.data.sql(qs["span"]).to_pylist()[0]
    if span["t0"] is None or span["t1"] is None or span["t1"] <= span["t0"]:
        return [], qs
    t0, t1 = int(span["t0"]), int(span["t1"])
    qs["jobs"] = _jobs_query(qs["ev"], t1)
    qs["grid"] = _grid_query(qs["ev"], t0, grid_us)
    jobs = {r["p"]: r for r in ctx.data.sql(qs["jobs"]).to_pylist()}
    hourly = ctx.data.sql(qs["hourly"])
    levels: dict[str, list[tuple[int, int, float]]] = {}
    for r in ctx.data.sql(qs["grid"]).to_pylist():
        levels.setdefault(r["p"], []).append((r["running"], r["steps"], r["sys_steps"]))
    hp = np.asarray(hourly.column("p").to_pylist(), dtype=object)
    hh = np.asarray(hourly.column("hour").to_numpy(), dtype=np.int64)
    hn = np.asarray(hourly.column("n").to_numpy(), dtype=float)
    # arrival rates over the hours in which jobs arrive (not the drain after the last)
    h0, h1 = t0 // (3600 * US), int(span["q1"]) // (3600 * US)
    fits = []
    for name in sorted(jobs):
        sel = hp == name
        lam, jobs_how, ca2 = arrival_profile(hh[sel], hn[sel], h0, h1)
        fits.append(
            analyse(name, jobs[name], levels.get(name, []), lam, jobs_how, ca2, t0, t1, cfg)
        )
    return fits, qs


def run(ctx):
    cfg = _settings(ctx)
    roles = {r: ctx.data.event_role(r) for r in ("process", "queued", "started", "ended")}
    missing = sorted(r for r, col in roles.items() if col is None)
    if missing:
        return na(
            "NOT_APPLICABLE",
            "A queueing model needs queue, start and end times per process; no column was "
            f"recognized for: {', '.join(missing)}.",
            checked=[f"event role {r}: {roles[r] or 'not found'}" for r in sorted(roles)],
        )
    fits, qs = model_processes(ctx, roles, cfg)
    checked = [f"{f['process']}: {f['verdict']}" for f in fits]
    fitted = [f for f in fits if f["verdict"] == "fits"]
    summary = {
        "processes": len(fits),
        "fitted": [f["process"] for f in fitted],
        "verdicts": {f["process"]: f["verdict"] for f in fits},
    }
    if not fitted:
        return na(
            "NOT_APPLICABLE",
            "The queueing model fits no process, so no what-if is trustworthy: "
            + ("; ".join(checked) if checked else "the log has no queue times"),
            checked=checked or ["no process has queue times"],
            metrics=summary,
        )
    findings = []
    for f in fitted:
        plan = f["plans"][-1]
        cut = 1.0 - plan["p95_s"] / f["modeled_wait_p95_s"] if f["modeled_wait_p95_s"] else 0.0
        worth = (
            plan["saved_h_month"] >= cfg["min_saved_hours_per_month"]
            and cut >= cfg["min_p95_reduction"]
        )
        checked.append(
            f"{f['process']}: +{plan['added']} worker(s) -> modeled p95 wait "
            f"{f['modeled_wait_p95_s']:.0f} -> {plan['p95_s']:.0f} s ({cut:.0%} cut), "
            f"{plan['saved_h_month']:.1f} h/month saved (needs >= "
            f"{cfg['min_saved_hours_per_month']:g} h/month and a "
            f"{cfg['min_p95_reduction']:.0%} cut)"
        )
        if worth:
            findings.append(_finding(ctx, roles, f, plan, cut, qs))
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"The model fits {len(fitted)} process(es), but adding workers to none of them "
            "saves enough wait to be worth it.",
            checked=checked,
            metrics=summary,
        )
    return ok(findings=findings, metrics=summary | {"flagged": [x.target for x in findings]})


def _finding(ctx, roles, f, plan, cut, qs) -> Finding:
    name, c, k = f["process"], int(f["workers"]), int(plan["added"])
    a_p95, b_p95 = float(f["modeled_wait_p95_s"]), float(plan["p95_s"])
    saved = float(plan["saved_h_month"])
    metrics = {
        key: f[key]
        for key in (
            "workers",
            "jobs",
            "share_of_time_at_workers",
            "mean_running",
            "mean_in_system",
            "little_lambda_w",
            "little_relative_error",
            "run_mean_s",
            "run_scv",
            "arrival_scv",
            "peak_arrivals_per_hour",
            "peak_utilization",
            "observed_wait_mean_s",
            "observed_wait_p95_s",
            "modeled_wait_mean_s",
            "modeled_wait_p95_s",
            "wait_total_hours",
        )
    } | {
        "added_workers": k,
        "after_wait_p95_s": b_p95,
        "after_wait_mean_s": float(plan["mean_s"]),
        "p95_reduction": cut,
        "saved_hours_per_month": saved,
        "observed_months": float(f["months"]),
    }
    return Finding(
        kind="capacity_shortfall",
        title=f"+{k} worker{'s' if k > 1 else ''} on {name} cut p95 wait from "
        f"{a_p95 / 60:.1f} to {b_p95 / 60:.1f} min",
        severity="high" if saved >= 100 else "medium",
        confidence=0.9,
        target=name,
        what=(
            f"{name} runs on {c} workers (the most ever running at once; all {c} busy "
            f"{f['share_of_time_at_workers']:.0%} of the time) at up to "
            f"{f['peak_utilization']:.0%} utilization in the busiest hour. A G/G/c model of "
            f"it reproduces the observed waits (mean {f['observed_wait_mean_s']:.0f} s, p95 "
            f"{f['observed_wait_p95_s']:.0f} s; modeled {f['modeled_wait_mean_s']:.0f} s and "
            f"{a_p95:.0f} s) and Little's law holds."
        ),
        why=(
            f"Its jobs wait because all {c} workers are busy, not for any other reason: the "
            f"model says {k} more worker{'s' if k > 1 else ''} would cut the p95 wait from "
            f"{a_p95 / 60:.1f} to {b_p95 / 60:.1f} min ({cut:.0%})."
        ),
        recommendation=(
            f"Add {k} worker{'s' if k > 1 else ''} to {name} (from {c} to {c + k}), at least "
            "during the busiest hours of the week."
        ),
        evidence=Evidence(
            columns=tuple(roles[r] for r in ("process", "queued", "started", "ended")),
            metrics=metrics,
            query=qs["grid"],
            rows=int(f["jobs"]),
        ),
        measurement="modeled",
        impact=Impact(
            value=saved,
            unit="hours/month",
            description=f"queue wait saved a month by {k} more worker(s) on {name} (modeled)",
            assumptions=(
                "arrivals per hour of weekdays and weekends, run times and their "
                "variability stay as observed; jobs are served first come, first served",
                f"today's worker count is the most jobs ever running at once ({c})",
                "G/G/c with the Allen-Cunneen correction, hour by hour in steady state; the "
                "model's relative cut in mean wait is applied to the observed total wait",
                f"the observed {f['months']:.1f} months are representative; a month is "
                f"{DAYS_PER_MONTH:.2f} days",
            ),
        ),
    )
