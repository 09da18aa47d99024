"""close_window: contention in the month-end close window.

The window is the last ``window_days`` business days (Mon-Fri, from the calendar, no
holiday data) of every month; a month end is complete when the log covers the whole
window and goes on past the month boundary. Per process, jobs per business day in the
window vs the other business days (statsmodels ``test_poisson_2indep``) say which
processes are the close (``window_ratio`` times their usual volume) and which have no
month-end volume of their own (within ``flat_ratio``). A close *spills* when its window
waits are far longer than on its other business days (median ratio, Mann-Whitney U and
Vargha-Delaney A on seeded samples). For a spilling close, the mean wait of its jobs
queued in each time bin on each host in the window is regressed (WLS, weights = jobs,
HC1 errors, host dummies) on the mean number of jobs of every other process running on
that host in that bin; a process without month-end volume whose load explains enough of
the close's wait is named: move it out of the window. All sums in SQL (DuckDB).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from statsmodels.regression.linear_model import WLS
from statsmodels.stats.rates import test_poisson_2indep

from contracts import Evidence, Finding, Impact, na, ok
from contracts.sql import quote_ident as _q
from contracts.sql import timestamp_expr
from contracts.units import p_text as _p_text

DAY_S = 86400


def _settings(ctx) -> dict:
    s = ctx.settings
    return {
        "window_days": int(s.get("window_days", 3)),
        "min_month_ends": int(s.get("min_month_ends", 2)),
        "window_ratio": float(s.get("window_ratio", 2.0)),
        "flat_ratio": float(s.get("flat_ratio", 1.25)),
        "min_wait_ratio": float(s.get("min_wait_ratio", 1.5)),
        "min_a": float(s.get("min_a", 0.6)),
        "alpha": float(s.get("alpha", 0.001)),
        "min_jobs": int(s.get("min_jobs", 100)),
        "bin_minutes": int(s.get("bin_minutes", 10)),
        "min_hours": float(s.get("min_hours", 2.0)),
        "min_share": float(s.get("min_share", 0.2)),
        "sample_size": int(s.get("sample_size", 5000)),
        "max_hosts": int(s.get("max_hosts", 50)),
    }


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _day(d: int) -> str:
    return str(np.datetime64(int(d), "D"))


def calendar(first_s: float, last_s: float, window_days: int) -> dict:
    """The close windows between two instants (epoch seconds).

    Days are UTC calendar days (day numbers since 1970-01-01). A day is covered when
    it lies strictly between the first and the last observed day (both may be partial).
    Returns the complete windows (every window day covered and the month boundary
    before the last instant), the covered business days outside every month's window,
    and the number of months whose window was only partly covered or whose boundary
    lies past the end."""
    first_day, last_day = math.floor(first_s / DAY_S), math.floor(last_s / DAY_S)
    days = np.arange(first_day + 1, last_day, dtype=np.int64)  # wholly covered
    if days.size == 0:
        return {"windows": [], "other_days": [], "incomplete": 0}
    dd = days.astype("datetime64[D]")
    business = days[np.is_busday(dd)]
    months = np.unique(dd.astype("datetime64[M]"))
    windows, in_any_window, incomplete = [], set(), 0
    for m in months:
        month = np.arange(np.datetime64(m, "D"), np.datetime64(m + 1, "D"))
        last = month[np.is_busday(month)][-window_days:].astype(np.int64)
        boundary = int(np.datetime64(m + 1, "D").astype(np.int64))
        in_any_window.update(int(d) for d in last)
        if last.size and last[0] > first_day and boundary * DAY_S <= last_s:
            windows.append(
                {
                    "month": str(m),
                    "days": [int(d) for d in last],
                    "start_s": int(last[0]) * DAY_S,
                    "boundary_s": boundary * DAY_S,
                }
            )
        elif last.size and last[-1] > first_day and last[0] < last_day:
            incomplete += 1
    other = [int(d) for d in business if int(d) not in in_any_window]
    return {"windows": windows, "other_days": other, "incomplete": incomplete}


def _cal_cte(cal: dict) -> str:
    """``cal(day, win, boundary_s)``: window days (win = the window's index) and the other
    business days (win = -1)."""
    rows = [
        f"({d}, {i}, {w['boundary_s']})" for i, w in enumerate(cal["windows"]) for d in w["days"]
    ]
    rows += [f"({d}, -1, NULL)" for d in cal["other_days"]]
    return "cal(day, win, boundary_s) AS (SELECT * FROM (VALUES " + ", ".join(rows) + "))"


def _events(ctx, roles: dict[str, str]) -> str:
    dtypes = {c.name: c.dtype for c in ctx.data.columns}
    t = {
        r: timestamp_expr(roles[r], dtypes.get(roles[r], ""))
        for r in ("queued", "started", "ended")
    }
    return (
        f"ev AS (SELECT CAST({_q(roles['process'])} AS VARCHAR) AS p, "
        f"CAST({_q(roles['host'])} AS VARCHAR) AS h, epoch({t['queued']}) AS q, "
        f"epoch({t['started']}) AS s, epoch({t['ended']}) AS e FROM data "
        f"WHERE {_q(roles['process'])} IS NOT NULL AND {t['queued']} IS NOT NULL)"
    )


def run(ctx):
    cfg = _settings(ctx)
    roles = {r: ctx.data.event_role(r) for r in ("process", "host", "queued", "started", "ended")}
    missing = sorted(r for r, c in roles.items() if c is None)
    if missing:
        return na(
            "NOT_APPLICABLE",
            "The close window needs process, host, queued, started and ended columns; none "
            "was recognized for " + ", ".join(missing) + ".",
            checked=[f"event role {r}: {c or 'not found'}" for r, c in sorted(roles.items())],
        )
    ev = _events(ctx, roles)
    bounds = ctx.data.sql(f"WITH {ev} SELECT min(q) AS t0, max(q) AS t1, count(*) AS n FROM ev")
    b = bounds.to_pylist()[0]
    if b["t0"] is None:
        return na("INSUFFICIENT_DATA", "No job has a queue time.", checked=["0 queued jobs"])
    cal = calendar(float(b["t0"]), float(b["t1"]), cfg["window_days"])
    n_windows = len(cal["windows"])
    span = f"{_day(math.floor(b['t0'] / DAY_S))} to {_day(math.floor(b['t1'] / DAY_S))}"
    checked = [
        f"log from {span}: {n_windows} complete month end(s) (last {cfg['window_days']} "
        f"business days covered and the boundary inside the log: "
        + (", ".join(w["month"] for w in cal["windows"]) or "none")
        + f"), {cal['incomplete']} partly covered, {len(cal['other_days'])} other business days"
    ]
    if n_windows < cfg["min_month_ends"] or not cal["other_days"]:
        return na(
            "NOT_APPLICABLE",
            f"The log holds {n_windows} complete month end(s); the close window needs at "
            f"least {cfg['min_month_ends']} (and business days outside it) to be told apart "
            "from the rest of the month.",
            checked=checked,
        )
    ctes = f"WITH {ev}, {_cal_cte(cal)}, "
    days_w = n_windows * cfg["window_days"]
    days_o = len(cal["other_days"])
    vol_q = (
        ctes + "j AS (SELECT ev.*, cal.win, cal.boundary_s FROM ev JOIN cal "
        f"ON cal.day = CAST(floor(ev.q / {DAY_S}) AS BIGINT)) "
        "SELECT p, CAST(count(*) FILTER (WHERE win >= 0) AS BIGINT) AS n_w, "
        "CAST(count(*) FILTER (WHERE win < 0) AS BIGINT) AS n_o, "
        "median(s - q) FILTER (WHERE win >= 0 AND s >= q) AS wait_w, "
        "median(s - q) FILTER (WHERE win < 0 AND s >= q) AS wait_o, "
        "coalesce(sum(s - q) FILTER (WHERE win >= 0 AND s >= q), 0) AS sum_w, "
        "avg(s - q) FILTER (WHERE win < 0 AND s >= q) AS mean_o, "
        "CAST(count(*) FILTER (WHERE win >= 0 AND s >= q) AS BIGINT) AS waited_w, "
        "CAST(count(*) FILTER (WHERE win >= 0 AND e >= boundary_s) AS BIGINT) AS past_end "
        "FROM j GROUP BY p ORDER BY p"
    )
    procs = ctx.data.sql(vol_q).to_pylist()
    classes: dict[str, dict] = {}
    for r in procs:
        n_w, n_o = int(r["n_w"]), int(r["n_o"])
        if n_w + n_o < cfg["min_jobs"] or n_o == 0:
            continue
        test = test_poisson_2indep(n_w, days_w, n_o, days_o, method="score", compare="ratio")
        ratio = (n_w / days_w) / (n_o / days_o)
        p_vol = float(test.pvalue)
        kind = (
            "close"
            if ratio >= cfg["window_ratio"] and p_vol < cfg["alpha"]
            else "flat"
            if 1.0 / cfg["flat_ratio"] <= ratio <= cfg["flat_ratio"]
            else "other"
        )
        classes[r["p"]] = r | {"ratio": ratio, "p_volume": p_vol, "class": kind}
    checked.append(
        f"{len(classes)} of {len(procs)} processes with >= {cfg['min_jobs']} business-day jobs "
        "classified: "
        + "; ".join(
            f"{p} {c['ratio']:.2f}x jobs/day in the window ({c['class']})"
            for p, c in sorted(classes.items())
        )
    )
    closes = sorted(p for p, c in classes.items() if c["class"] == "close")
    if not closes:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No process runs >= {cfg['window_ratio']:g}x its jobs per business day in the "
            "close window, so there is no month-end close to contend with.",
            checked=checked,
        )
    findings: list[Finding] = []
    spilled = []
    for name in closes:
        c = classes[name]
        spill = _spill(ctx, ctes, name, c, cfg, checked)
        if spill is None:
            continue
        spilled.append(name)
        findings.append(_spill_finding(name, c, spill, n_windows, vol_q, roles, cfg))
        findings += _contention(ctx, ctes, name, cal, classes, n_windows, roles, cfg, checked)
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            "The month-end close processes ("
            + ", ".join(closes)
            + ") wait in the window about as long as on other business days: no spill, so "
            "nothing competes with them.",
            checked=checked,
        )
    metrics = {
        "month_ends": n_windows,
        "window_days": cfg["window_days"],
        "close_processes": closes,
        "spilled": spilled,
        "checked": checked,
    }
    return ok(findings=findings, metrics=metrics)


def _spill(ctx, ctes: str, name: str, c: dict, cfg: dict, checked: list[str]) -> dict | None:
    """The close's window waits vs its other business days': None unless they spill."""
    if c["wait_w"] is None or c["wait_o"] is None:
        checked.append(f"{name}: no measured wait in the window or outside it")
        return None
    k = cfg["sample_size"]
    lit = "'" + name.replace("'", "''") + "'"
    sample_q = (
        ctes + "j AS (SELECT (cal.win >= 0) AS in_w, ev.s - ev.q AS w, "
        f"hash(ev.p, ev.h, ev.q, ev.s, {int(ctx.seed)}) AS hk FROM ev JOIN cal "
        f"ON cal.day = CAST(floor(ev.q / {DAY_S}) AS BIGINT) "
        f"WHERE ev.p = {lit} AND ev.s >= ev.q) "
        "SELECT in_w, w FROM j "
        f"QUALIFY row_number() OVER (PARTITION BY in_w ORDER BY hk, w) <= {k} "
        "ORDER BY in_w, w"
    )
    rows = ctx.data.sql(sample_q).to_pylist()
    w_in = np.array([r["w"] for r in rows if r["in_w"]], dtype=float)
    w_out = np.array([r["w"] for r in rows if not r["in_w"]], dtype=float)
    if w_in.size < 10 or w_out.size < 10:
        checked.append(f"{name}: too few waits to compare ({w_in.size} in, {w_out.size} out)")
        return None
    mw = stats.mannwhitneyu(w_in, w_out, alternative="greater")
    a = float(mw.statistic) / (w_in.size * w_out.size)
    wait_w, wait_o = float(c["wait_w"]), float(c["wait_o"])
    ratio = wait_w / wait_o if wait_o > 0 else (math.inf if wait_w > 0 else 1.0)
    p = float(mw.pvalue)
    checked.append(
        f"{name} (close, {c['ratio']:.1f}x jobs/day in the window): median wait {wait_w:.0f} s "
        f"in the window vs {wait_o:.0f} s ({ratio:.2f}x, needs >= {cfg['min_wait_ratio']:g}), "
        f"A = {a:.2f} (needs >= {cfg['min_a']:g}), Mann-Whitney {_p_text(p)} on "
        f"{w_in.size}/{w_out.size} sampled waits"
    )
    if not (ratio >= cfg["min_wait_ratio"] and a >= cfg["min_a"] and p < cfg["alpha"]):
        return None
    excess = max(0.0, float(c["sum_w"]) - int(c["waited_w"]) * float(c["mean_o"] or 0.0))
    return {
        "wait_ratio": None if math.isinf(ratio) else ratio,
        "a": a,
        "p_value": p,
        "excess_h": excess / 3600.0,
        "sampled": [int(w_in.size), int(w_out.size)],
    }


def _spill_finding(name, c, spill, n_windows, query, roles, cfg) -> Finding:
    per_month = spill["excess_h"] / n_windows
    metrics = {
        "window_jobs": int(c["n_w"]),
        "other_jobs": int(c["n_o"]),
        "volume_ratio": float(c["ratio"]),
        "p_volume": float(c["p_volume"]),
        "median_wait_window_s": float(c["wait_w"]),
        "median_wait_other_s": float(c["wait_o"]),
        "wait_ratio": spill["wait_ratio"],
        "vargha_delaney_a": spill["a"],
        "p_value": spill["p_value"],
        "ended_past_month_end": int(c["past_end"]),
        "excess_wait_hours_per_month": per_month,
        "month_ends": n_windows,
    }
    return Finding(
        kind="close_spill",
        measurement="modeled",
        title=f"{name}'s month-end close waits {spill['wait_ratio'] or 0:.1f}x longer in the "
        "close window",
        severity="high" if per_month >= 10 else "medium",
        confidence=max(0.0, min(0.99, 1.0 - spill["p_value"])),
        target=name,
        what=f"{name} runs {c['ratio']:.1f}x its jobs per business day in the last "
        f"{cfg['window_days']} business days of the month; there its median queue wait is "
        f"{float(c['wait_w']):.0f} s against {float(c['wait_o']):.0f} s on other business days "
        f"(A = {spill['a']:.2f}), and {int(c['past_end'])} of its window jobs ended after the "
        f"month boundary, over {n_windows} month ends.",
        why="The close's work piles up in the window: it waits for capacity it shares, so "
        "it finishes late or spills into the next month.",
        recommendation=f"Free capacity for {name} in the close window: move the competing "
        "jobs named in the close_contention findings out of it, or start the close earlier.",
        evidence=Evidence(
            columns=(roles["process"], roles["host"], roles["queued"], roles["started"]),
            metrics=metrics,
            query=query,
            rows=int(c["n_w"]),
        ),
        impact=Impact(
            value=per_month,
            unit="hours/month",
            description="the close's excess queue wait in the window a month",
            assumptions=(
                "excess = the close's total window wait minus its window jobs at its mean "
                "wait on other business days, divided by the complete month ends",
            ),
        ),
    )


def _contention(ctx, ctes, name, cal, classes, n_windows, roles, cfg, checked) -> list[Finding]:
    """The processes without month-end volume whose running load on the close's hosts in
    the window explains the close's wait there (WLS on host x time bins)."""
    bin_s = 60 * cfg["bin_minutes"]
    candidates = sorted(p for p, k in classes.items() if k["class"] == "flat")
    lit = "'" + name.replace("'", "''") + "'"
    resp_q = (
        ctes + "j AS (SELECT ev.h, CAST(floor(ev.q / " + str(bin_s) + ") AS BIGINT) AS b, "
        "ev.s - ev.q AS w FROM ev JOIN cal ON cal.day = CAST(floor(ev.q / "
        f"{DAY_S}) AS BIGINT) WHERE cal.win >= 0 AND ev.p = {lit} AND ev.s >= ev.q "
        "AND ev.h IS NOT NULL) "
        "SELECT h, b, CAST(count(*) AS BIGINT) AS n, sum(w) AS sw FROM j "
        "GROUP BY h, b ORDER BY h, b"
    )
    resp = ctx.data.sql(resp_q).to_pylist()
    host_n: dict[str, int] = {}
    for r in resp:
        host_n[r["h"]] = host_n.get(r["h"], 0) + int(r["n"])
    hosts = sorted(host_n, key=lambda h: (-host_n[h], h))[: cfg["max_hosts"]]
    if len(host_n) > len(hosts):
        checked.append(
            f"{name}: regression on {len(hosts)} of {len(host_n)} hosts (those with the most "
            "window jobs of the close)"
        )
    hosts = sorted(hosts)
    if not hosts or not candidates:
        checked.append(f"{name}: no host or no candidate without month-end volume to test")
        return []
    host_list = ", ".join("'" + h.replace("'", "''") + "'" for h in hosts)
    win_rows = ", ".join(f"({w['start_s']}, {w['boundary_s']})" for w in cal["windows"])
    load_q = (
        ctes + f"wi(ws, we) AS (SELECT * FROM (VALUES {win_rows})), "
        "r AS (SELECT ev.p, ev.h, greatest(ev.s, wi.ws) AS s, least(ev.e, wi.we) AS e "
        f"FROM ev JOIN wi ON ev.s < wi.we AND ev.e > wi.ws WHERE ev.h IN ({host_list}) "
        "AND ev.e > ev.s), "
        f"rb AS (SELECT p, h, s, e, unnest(generate_series(CAST(floor(s / {bin_s}) AS BIGINT), "
        f"CAST(floor((e - 1e-9) / {bin_s}) AS BIGINT))) AS b FROM r) "
        f"SELECT h, b, p, sum(least(e, (b + 1) * {bin_s}) - greatest(s, b * {bin_s})) / {bin_s} "
        "AS load FROM rb GROUP BY h, b, p ORDER BY h, b, p"
    )
    loads = ctx.data.sql(load_q).to_pylist()
    resp = [r for r in resp if r["h"] in set(hosts)]
    index = {(r["h"], int(r["b"])): i for i, r in enumerate(resp)}
    cols = [*candidates, "(close itself)", "(all others)"]
    col_of = {p: i for i, p in enumerate(candidates)}
    x = np.zeros((len(resp), len(cols)))
    for r in loads:
        i = index.get((r["h"], int(r["b"])))
        if i is None:
            continue
        j = col_of.get(r["p"], len(cols) - 2 if r["p"] == name else len(cols) - 1)
        x[i, j] += float(r["load"])
    n = np.array([float(r["n"]) for r in resp])
    y = np.array([float(r["sw"]) / float(r["n"]) for r in resp])
    keep = [j for j in range(len(cols)) if float(np.ptp(x[:, j])) > 0]
    tested = [cols[j] for j in keep if j < len(candidates)]
    if len(resp) < len(keep) + len(hosts) + 10 or not tested:
        checked.append(
            f"{name}: {len(resp)} host x {cfg['bin_minutes']}-min bins with close jobs, "
            f"too few for {len(keep)} loads and {len(hosts)} hosts, or no candidate load varies"
        )
        return []
    dummies = np.array([[1.0 if r["h"] == h else 0.0 for h in hosts[1:]] for r in resp])
    design = np.column_stack(
        [np.ones(len(resp)), x[:, keep]] + ([dummies] if len(hosts) > 1 else [])
    )
    fit = WLS(y, design, weights=n).fit(cov_type="HC1")
    params, bse = np.asarray(fit.params), np.asarray(fit.bse)
    alpha = cfg["alpha"] / len(tested)
    total_wait = float(np.sum(y * n))
    out = []
    for k, j in enumerate(keep):
        if j >= len(candidates):
            continue
        mover = cols[j]
        beta, se = float(params[1 + k]), float(bse[1 + k])
        z = beta / se if se > 0 else 0.0
        p = float(stats.norm.sf(z))
        attributable = max(0.0, beta) * float(np.sum(n * x[:, j]))
        per_month = attributable / 3600.0 / n_windows
        share = attributable / total_wait if total_wait > 0 else 0.0
        text = (
            f"{name} <- {mover}: {beta:+.0f} s wait per concurrent job (z = {z:.1f}, "
            f"one-sided {_p_text(p)}, needs < {alpha:.2g}), {per_month:.1f} h/month "
            f"(needs >= {cfg['min_hours']:g}), {share:.0%} of the close's window wait "
            f"(needs >= {cfg['min_share']:.0%})"
        )
        checked.append(text)
        if not (
            beta > 0 and p < alpha and per_month >= cfg["min_hours"] and share >= cfg["min_share"]
        ):
            continue
        on_host = {h: 0.0 for h in hosts}
        for i, r in enumerate(resp):
            on_host[r["h"]] += float(x[i, j])
        total_load = sum(on_host.values())
        busy = [h for h in hosts if on_host[h] >= 0.1 * total_load]
        metrics = {
            "close_process": name,
            "hosts": ", ".join(busy),
            "coef_s_per_job": beta,
            "se": se,
            "z": z,
            "p_value": p,
            "wait_hours_per_month": per_month,
            "share_of_close_wait": share,
            "bins": len(resp),
            "r_squared": _num(float(fit.rsquared)),
            "tested": ", ".join(tested),
            "month_ends": n_windows,
            "volume_ratio": float(classes[mover]["ratio"]),
        }
        out.append(
            Finding(
                kind="close_contention",
                measurement="modeled",
                title=f"Move {mover} out of the month-end close window",
                severity="high" if per_month >= 10 else "medium",
                confidence=max(0.0, min(0.99, 1.0 - p)),
                target=mover,
                what=f"{mover} has no month-end volume of its own, yet in the close window it "
                f"runs on {', '.join(busy)} while {name} queues there: every {mover} job "
                f"running adds {beta:.0f} s to a {name} job's wait, {per_month:.1f} hours a "
                f"month ({share:.0%} of the close's wait in the window).",
                why="Jobs that can run any day compete for the close's capacity on the same "
                "hosts exactly when the close needs it.",
                recommendation=f"Schedule {mover}'s jobs outside the last {cfg['window_days']} "
                f"business days of the month (or off {', '.join(busy)} during them).",
                evidence=Evidence(
                    columns=(roles["process"], roles["host"], roles["started"], roles["ended"]),
                    metrics=metrics,
                    query=load_q,
                    rows=len(resp),
                ),
                impact=Impact(
                    value=per_month,
                    unit="hours/month",
                    description=f"{name}'s wait in the close window removed a month if "
                    f"{mover} ran outside it",
                    assumptions=(
                        f"WLS of the close's mean wait per host x {cfg['bin_minutes']}-min bin "
                        "on concurrent running jobs per process, host dummies, HC1 errors",
                        "removing the competitor's load removes its coefficient x its load",
                    ),
                ),
            )
        )
    return out
