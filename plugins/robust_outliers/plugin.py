"""robust_outliers: a few gross values in a quantity column, told apart from heavy tails.

Per quantity column (semantic quantity, count or share; never an identifier, a clock
time, a calendar part or a numeric timestamp), values are flagged whose modified
z-score |x - median| / (1.4826 MAD) exceeds ``threshold`` (Iglewicz and Hoaglin's
3.5), on the scale the column is judged on (``contracts.robust.judged_scale``: logit
for shares, log for right-skewed or wide non-negative columns, else raw). Columns with fewer than
``min_distinct`` values are discrete scales (ratings, small counts) and not judged.

* More than ``max_share`` of the values flagged (and more than 3): the column has a
  heavy tail or a second mode. That is a property of the distribution, explained in
  the outcome, never an outlier decision ("review 65,000 values" helps no one).
* Otherwise a decision needs at least one *gross* value, beyond ``gross_threshold``:
  twice the usual fence, which no ordinary tail reaches at this share. The decision
  lists the ``listed`` most extreme values with their row numbers and gives the SQL
  that selects every flagged row, most extreme first.
* On the raw scale a skewed bulk has a long side (high when the medcouple MC > 0, low
  when MC < 0; statsmodels' medcouple of a seeded sample): there a gross value must lie
  beyond ``gross_threshold * exp(skew_adjustment * |MC|)``, the widening of Hubert and
  Vandervieren's adjusted boxplot, so a long plausible tail is not called errors (the
  column's verdict is then ``skewed_tail``). The short side keeps ``gross_threshold``;
  the log and logit scales are already the correction of a multiplicative skew.
* A gross value that the rest of its row shares is a large (or small) unit, not an
  error: when every other quantity column strongly associated with the column
  (abs(Spearman rho) >= ``min_associated_rho`` on a seeded sample) is itself beyond its
  own fence (modified z-score > ``threshold`` on its judged scale) on that row, on the
  side the association predicts, the value follows the row's relations: a good
  leverage point in Rousseeuw and van Zomeren's sense (a 5,000 loan on a 6,500
  purchase). An entry, unit or join error breaks them. A decision needs a gross value
  not so explained; a column whose gross values all are is counted as
  ``consistent_extremes`` in the outcome. Without a strongly associated column nothing
  is explained this way.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from statsmodels.stats.stattools import medcouple

from contracts import QUANTITY_SEMANTICS, Evidence, Finding, Ok, na, ok
from contracts.charts import Marker, histogram_from_rows
from contracts.robust import (
    MAD_TO_SIGMA,
    judged_scale,
    median_mad,
    number_expr,
    read_into,
    scaled_expr,
    scaled_values,
    unscaled,
)
from contracts.sql import histogram_sql, seeded_sample
from contracts.sql import quote_ident as _q

UPSTREAM = "numeric_summary"
SMALL_COUNT = 3
"""Up to this many flagged values are never a heavy tail, however short the column."""


def _lit(value: float) -> str:
    """A float as an SQL literal that round-trips exactly."""
    return repr(float(value))


def _num(value):
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _robust(ctx, name: str, scale: dict, buffer) -> tuple[float | None, float | None]:
    """Median and MAD of the column's values (NaN is no value) on its judged scale: in
    numpy, from one read into ``buffer``, when every value is finite there; else in SQL
    (which orders the infinities as numpy's selections need not)."""
    x = number_expr(name)
    column = ctx.data.sql(f"SELECT {x} AS x FROM data WHERE {x} IS NOT NULL").column("x")
    values = scaled_values(read_into(buffer, column.chunks), scale)
    if values.size and np.isfinite(values).all():
        return median_mad(values)
    v = scaled_expr(name, scale)
    r = ctx.data.sql(f"SELECT median({v}) AS m, mad({v}) AS d FROM data").to_pylist()[0]
    return _num(r["m"]), _num(r["d"])


def _medcouple(ctx, name: str, scale: dict, limit: int) -> tuple[float | None, int]:
    """The medcouple (a robust skewness in [-1, 1], statsmodels) of the column on its
    judged scale, on a seeded sample of at most ``limit`` values."""
    v = scaled_expr(name, scale)
    table, _ = seeded_sample(
        ctx.data.sql,
        f"SELECT {v} AS v FROM data",
        f"{_q(name)} IS NOT NULL",
        key="rowid",
        seed=int(ctx.seed),
        limit=int(limit),
        population=ctx.data.rows - ctx.data.column(name).null_count,
    )
    values = np.asarray(table.column("v").to_numpy(zero_copy_only=False), dtype=float)
    values = values[np.isfinite(values)]
    if values.size < 3:
        return None, int(values.size)
    mc = float(medcouple(values))
    return (mc if math.isfinite(mc) else None), int(values.size)


def _associated(ctx, name: str, others: list[str], limit: int, min_rho: float):
    """The quantity columns among ``others`` whose abs(Spearman rho) with ``name`` is at
    least ``min_rho`` on a seeded sample of at most ``limit`` rows (pairwise complete,
    >= 20 pairs), with their rho, in the order of ``others``."""
    if not others:
        return []
    cols = [name, *others]
    table, _ = seeded_sample(
        ctx.data.sql,
        "SELECT "
        + ", ".join(f"CAST({_q(c)} AS DOUBLE) AS c{i}" for i, c in enumerate(cols))
        + " FROM data",
        f"{_q(name)} IS NOT NULL",
        key="rowid",
        seed=int(ctx.seed),
        limit=int(limit),
        population=ctx.data.rows - ctx.data.column(name).null_count,
    )
    values = [
        np.asarray(table.column(f"c{i}").to_numpy(zero_copy_only=False), dtype=float)
        for i in range(len(cols))
    ]
    found = []
    for i, other in enumerate(others, start=1):
        both = np.isfinite(values[0]) & np.isfinite(values[i])
        a, b = values[0][both], values[i][both]
        if a.size < 20 or np.ptp(a) == 0 or np.ptp(b) == 0:
            continue
        rho = float(stats.spearmanr(a, b).statistic)
        if math.isfinite(rho) and abs(rho) >= min_rho:
            found.append((other, rho))
    return found


def _beyond_fence(ctx, robust, summaries: dict, other: str, rho, side: str, threshold, mode):
    """SQL true on rows where ``other`` lies beyond its own fence (modified z-score above
    ``threshold`` on its judged scale) on the side an association of sign ``rho``
    predicts from ``side`` (the SQL sign, +1 or -1, of the judged column's deviation);
    None when ``other`` has no MAD. ``robust`` gives a column's median and MAD."""
    scale_of = judged_scale(summaries[other], ctx.data.column(other).semantic, mode)
    median, mad = robust(other, scale_of)
    if median is None or not (mad or 0.0) > 0:
        return None
    sigma = float(mad) * MAD_TO_SIGMA
    signed = f"({scaled_expr(other, scale_of)} - {_lit(median)}) / {_lit(sigma)}"
    return f"coalesce({signed} * {side} * {1 if rho > 0 else -1} > {_lit(threshold)}, false)"


def outlier_chart(ctx, name: str, summary: dict, lower: float, upper: float, log: bool):
    """The column's histogram around the bounds (one SQL aggregate); what lies beyond
    the plotted range is counted, not dropped."""
    vmin, vmax = _num(summary.get("min")), _num(summary.get("max"))
    if log:
        pad = (upper / lower) ** 0.5
        low, high = max(vmin or lower, lower / pad), min(vmax or upper, upper * pad)
    else:
        pad = (upper - lower) * 0.5
        low, high = max(vmin or lower, lower - pad), min(vmax or upper, upper + pad)
    if not high > low:
        low, high = lower, upper
    rows = ctx.data.sql(histogram_sql(f"CAST({_q(name)} AS DOUBLE)", low, high, 40, log))
    return histogram_from_rows(
        f"Distribution of {name} and the outlier bounds",
        f"{name}{' (log scale)' if log else ''}",
        rows.to_pylist(),
        low,
        high,
        40,
        log=log,
        markers=(Marker(at=lower, label="lower bound"), Marker(at=upper, label="upper bound")),
    )


def run(ctx):
    threshold = float(ctx.settings.get("threshold", 3.5))
    max_share = float(ctx.settings.get("max_share", 0.02))
    gross = float(ctx.settings.get("gross_threshold", 7.0))
    listed = int(ctx.settings.get("listed", 10))
    min_values = int(ctx.settings.get("min_values", 20))
    min_distinct = int(ctx.settings.get("min_distinct", 20))
    mode = str(ctx.settings.get("scale", "auto"))
    skew_adjust = float(ctx.settings.get("skew_adjustment", 3.0))
    mc_sample = int(ctx.settings.get("max_sample", 10000))
    min_rho = float(ctx.settings.get("min_associated_rho", 0.6))
    upstream = ctx.upstream.get(UPSTREAM)
    if not isinstance(upstream, Ok):
        reason = getattr(upstream, "reason_code", "missing")
        code = reason if reason in ("NOT_APPLICABLE", "INSUFFICIENT_DATA") else "UPSTREAM_NA"
        return na(
            code,
            f"{UPSTREAM} produced no summary ({reason}), so there are no medians and MADs "
            "to measure outliers against.",
            checked=[f"upstream {UPSTREAM}: {reason}"],
        )

    summaries = upstream.metrics.get("columns", {})
    quantities = set(ctx.data.names("numeric", semantic=QUANTITY_SEMANTICS))
    candidates = [n for n in sorted(summaries) if n in quantities]
    checked = [
        f"{c.name}: not judged, semantic {c.semantic} ({c.semantic_rule})"
        for c in ctx.data.columns
        if c.role == "numeric" and c.name not in quantities
    ]
    if not candidates:
        return na(
            "NOT_APPLICABLE",
            "There are no quantity columns (semantic quantity, count or share) to check for "
            "outliers.",
            checked=checked or [f"{UPSTREAM}: {len(summaries)} summarized columns"],
        )

    findings = []
    measured = {}
    heavy = []
    buffer = np.empty(ctx.data.rows, dtype=np.float64)  # the values of one column at a time
    robust_of: dict[str, tuple[float | None, float | None]] = {}

    def robust(column: str, scale: dict) -> tuple[float | None, float | None]:
        # a column's scale is a function of its summary: computed once per column
        if column not in robust_of:
            robust_of[column] = _robust(ctx, column, scale, buffer)
        return robust_of[column]

    skewed: list[str] = []
    consistent: list[str] = []
    for name in candidates:
        s = summaries[name]
        count = int(s.get("count") or 0)
        if count < min_values:
            checked.append(f"{name}: skipped, {count} values (< {min_values})")
            continue
        distinct = ctx.data.column(name).distinct_count
        if distinct < min_distinct:
            checked.append(
                f"{name}: skipped, {distinct} distinct values (< {min_distinct}): a discrete "
                "scale, whose extremes are levels rather than outliers"
            )
            continue
        scale_of = judged_scale(s, ctx.data.column(name).semantic, mode)
        median, mad = robust(name, scale_of)
        scale = (mad or 0.0) * MAD_TO_SIGMA
        if median is None or not scale > 0:
            checked.append(f"{name}: skipped, MAD is 0 (over half the values are equal)")
            continue
        z = f"abs({scaled_expr(name, scale_of)} - {_lit(median)}) / {_lit(scale)}"
        x = number_expr(name)
        centre = unscaled(median, scale_of)
        r = ctx.data.sql(
            f"SELECT count({x}) AS n, count(*) FILTER (WHERE isnan({_q(name)}::DOUBLE)) AS nan, "
            f"count(*) FILTER (WHERE {z} > {_lit(threshold)}) AS outliers, "
            f"count(*) FILTER (WHERE {z} > {_lit(gross)}) AS gross, "
            f"count(*) FILTER (WHERE {z} > {_lit(threshold)} AND {x} > {_lit(centre)}) AS high, "
            f"avg({x}) AS mean_all, avg({x}) FILTER (WHERE NOT ({z} > {_lit(threshold)})) "
            "AS mean_inliers FROM data"
        ).to_pylist()[0]
        n, outliers, n_gross = int(r["n"]), int(r["outliers"]), int(r["gross"])
        nan = int(r["nan"])
        share = outliers / n if n else 0.0
        lower = unscaled(median - threshold * scale, scale_of)
        upper = unscaled(median + threshold * scale, scale_of)
        tail = outliers > max(SMALL_COUNT, max_share * n)
        measured[name] = {
            "values": n,
            "outliers": outliers,
            "gross": n_gross,
            "share": share,
            "not_a_number": nan,
            "scale": scale_of["kind"],
            "verdict": "heavy_tail" if tail else "outliers" if n_gross else "clean",
        }
        where = f"{outliers} of {n} values ({share:.2%}) beyond [{lower:.4g}, {upper:.4g}]"
        if nan:
            where += f" ({nan} NaN, no value, not counted)"
        if tail:
            heavy.append(name)
            checked.append(
                f"{name}: {where}: more than {max_share:.0%}, a heavy tail or a second mode "
                "(a property of the distribution), not outliers"
            )
            continue
        checked.append(f"{name}: {where}, {n_gross} beyond a modified z-score of {gross:g}")
        if n_gross == 0:
            continue
        # on the raw scale only: the log and logit scales are already the correction
        # for a multiplicative skew
        mc, mc_size = (
            _medcouple(ctx, name, scale_of, mc_sample)
            if scale_of["kind"] == "raw" and skew_adjust > 0
            else (None, 0)
        )
        if mc is not None and mc != 0:
            # a skewed bulk has a longer tail on one side (Hubert and Vandervieren's
            # adjusted boxplot): there the gross fence is exp(a |MC|) times as far out
            long_side = ">" if mc > 0 else "<"
            fence = gross * math.exp(skew_adjust * abs(mc))
            long = f"({scaled_expr(name, scale_of)} {long_side} {_lit(median)})"
            gross_sql = (
                f"(({z} > {_lit(gross)} AND NOT {long}) OR ({z} > {_lit(fence)} AND {long}))"
            )
            r2 = ctx.data.sql(
                f"SELECT count(*) FILTER (WHERE {gross_sql}) AS gross FROM data"
            ).to_pylist()[0]
            adjusted = int(r2["gross"])
            measured[name] |= {"medcouple": mc, "gross_skew_adjusted": adjusted}
            if adjusted == 0:
                measured[name]["verdict"] = "skewed_tail"
                skewed.append(name)
                checked.append(
                    f"{name}: the bulk is skewed (medcouple {mc:+.3f} on the raw scale, "
                    f"on {mc_size} sampled of {n} values): on its long "
                    f"{'high' if mc > 0 else 'low'} side the gross fence is "
                    f"{gross:g} x exp({skew_adjust:g} x {abs(mc):.3f}) = {fence:.2f}, which no "
                    f"value reaches: a long plausible tail, not errors"
                )
                continue
            n_gross = adjusted
        else:
            gross_sql = f"({z} > {_lit(gross)})"
        associates = _associated(
            ctx, name, [c for c in candidates if c != name], mc_sample, min_rho
        )
        if associates:
            side = f"sign({scaled_expr(name, scale_of)} - {_lit(median)})"
            conds = [
                _beyond_fence(ctx, robust, summaries, other, rho, side, threshold, mode)
                for other, rho in associates
            ]
            with_rho = ", ".join(f"{o} (rho {rho:+.2f})" for o, rho in associates)
            fenceless = [o for (o, _), c in zip(associates, conds, strict=True) if c is None]
            if fenceless:  # a column without a MAD has no fence a row could be beyond
                unexplained = n_gross
            else:
                unexplained = int(
                    ctx.data.sql(
                        f"SELECT count(*) FILTER (WHERE {gross_sql} AND NOT "
                        f"({' AND '.join(str(c) for c in conds)})) AS u FROM data"
                    ).to_pylist()[0]["u"]
                )
            measured[name] |= {
                "associated": [o for o, _ in associates],
                "gross_unexplained": unexplained,
            }
            if unexplained == 0:
                measured[name]["verdict"] = "consistent_extremes"
                consistent.append(name)
                checked.append(
                    f"{name}: each of its {n_gross} gross values lies on a row where every "
                    f"strongly associated column, {with_rho}, is beyond its own fence "
                    f"(modified z-score > {threshold:g}) on the side the association "
                    "predicts: large units whose row follows the relations, not errors"
                )
                continue
            checked.append(
                f"{name}: {unexplained} of its {n_gross} gross values on rows where a "
                f"strongly associated column ({with_rho}) is "
                + (
                    f"without a fence (MAD 0: {', '.join(fenceless)})"
                    if fenceless
                    else "within its fence: not explained by the row"
                )
            )
        query = (
            f"SELECT rowid AS row, {_q(name)}, {z} AS modified_z FROM data "
            f"WHERE {z} > {_lit(threshold)} ORDER BY modified_z DESC, rowid"
        )
        top = ctx.data.sql(f"{query} LIMIT {listed}").to_pylist()
        # A log axis only where the judged scale is a plain log and the bounds are positive.
        log_axis = scale_of["kind"] == "log" and scale_of["shift"] == 0 and lower > 0
        chart = outlier_chart(ctx, name, s, lower, upper, log_axis)
        findings.append(
            _finding(name, r, top, query, n, outliers, n_gross, share, centre, mad, scale,
                     scale_of["kind"],
                     threshold, gross, max_share, lower, upper, chart)
        )  # fmt: skip

    metrics = {
        "columns": measured,
        "heavy_tailed_columns": heavy,
        "skewed_tail_columns": skewed,
        "consistent_extremes_columns": consistent,
        "max_share": max_share,
    }
    if not findings:
        tails = (
            f"; {len(heavy)} with a heavy tail or second mode ({', '.join(heavy)})" if heavy else ""
        )
        if skewed:
            tails += (
                f"; {len(skewed)} with values beyond {gross:g} only on the long side of a "
                f"skewed bulk, inside its skew-adjusted fence (a plausible tail: "
                f"{', '.join(skewed)})"
            )
        if consistent:
            tails += (
                f"; {len(consistent)} whose gross values sit on rows that are as extreme in "
                f"every strongly associated column (large units, not errors: "
                f"{', '.join(consistent)})"
            )
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No quantity column has a few gross outliers: checked {len(measured)} of "
            f"{len(candidates)} quantity columns{tails}. A decision needs at most "
            f"{max_share:.0%} of values beyond a modified z-score of {threshold:g}, one of "
            f"them beyond {gross:g}.",
            checked=checked,
            metrics=metrics,
        )
    return ok(
        findings=findings, metrics=metrics | {"flagged_columns": [f.target for f in findings]}
    )


def _finding(name, r, top, query, n, outliers, n_gross, share, centre, mad, scale, kind,
             threshold, gross, max_share, lower, upper, chart):  # fmt: skip
    high, nan = int(r["high"]), int(r["nan"])
    mean_all, mean_in = _num(r["mean_all"]), _num(r["mean_inliers"])
    shown = ", ".join(f"{row[name]:.6g} (row {row['row']})" for row in top)
    shift = (
        f" They move the mean from {mean_in:.4g} (without them) to {mean_all:.4g}."
        if mean_all is not None and mean_in is not None
        else ""
    )
    return Finding(
        kind="robust_outliers",
        title=f"{outliers} outlier{'s' if outliers != 1 else ''} in {name}",
        severity="medium" if n_gross >= 1 and share < 0.005 else "low",
        confidence=0.9,
        target=name,
        what=(
            f"{outliers} of {n} values of {name} ({share:.2%}; {high} high, {outliers - high} "
            f"low) lie outside [{lower:.4g}, {upper:.4g}] around the median {centre:.4g} "
            f"(modified z-score above {threshold:g}"
            f"{f' on the {kind} scale' if kind != 'raw' else ''}); "
            f"{n_gross} are beyond {gross:g}. Most extreme: {shown}.{shift}"
            + (f" {nan} NaN are not values and are not counted." if nan else "")
        ),
        why=(
            f"So few values (at most {max_share:.0%}) so far from the bulk are not a tail of "
            "the distribution: they are typically entry, unit or join errors, and they "
            "distort means, sums and model fits."
        ),
        recommendation=(
            f"Check the {min(outliers, len(top))} most extreme values of {name} listed above "
            "(the query selects all flagged rows, most extreme first): correct or remove "
            "errors; keep genuine ones and report medians."
        ),
        evidence=Evidence(
            columns=(name,),
            metrics={
                "values": n,
                "outliers": outliers,
                "gross_outliers": n_gross,
                "not_a_number": nan,
                "outliers_high": high,
                "outliers_low": outliers - high,
                "share": share,
                "median": centre,
                "mad": mad,
                "mad_normal": scale,
                "scale": kind,
                "threshold": threshold,
                "gross_threshold": gross,
                "lower_bound": lower,
                "upper_bound": upper,
                "most_extreme": shown,
                "mean_all": mean_all,
                "mean_inliers": mean_in,
            },
            query=query,
            rows=outliers,
        ),
        charts=(chart,),
    )
