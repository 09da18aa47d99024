"""robust_outliers: modified z-score outliers per numeric column (median and MAD)."""

from __future__ import annotations

import math

from contracts import Evidence, Finding, Ok, na, ok
from contracts.charts import Marker, histogram_from_rows
from contracts.sql import histogram_sql
from contracts.sql import quote_ident as _q

UPSTREAM = "numeric_summary"


def _lit(value: float) -> str:
    """A float as an SQL literal that round-trips exactly."""
    return repr(float(value))


def _num(value):
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


MAD_TO_SIGMA = 1.482602218505602  # 1 / Phi^-1(0.75): MAD of a normal sample -> sigma


def outlier_condition(
    column: str, median: float, scale: float, threshold: float, log: bool = False
) -> str:
    x = f"CAST({_q(column)} AS DOUBLE)"
    value = f"ln({x})" if log else x
    return f"abs({value} - {_lit(median)}) / {_lit(scale)} > {_lit(threshold)}"


def wide_positive(summary: dict) -> bool:
    """Strictly positive and spanning two orders of magnitude or more (p99/p01 >= 100):
    such columns are judged on the log scale, where a multiplicative (lognormal) tail
    is ordinary and only values far off in ratio terms stand out."""
    low, p01, p99 = _num(summary.get("min")), _num(summary.get("p01")), _num(summary.get("p99"))
    return bool(low is not None and low > 0 and p01 and p99 and p99 / p01 >= 100)


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
    min_share = float(ctx.settings.get("min_share", 0.01))
    min_values = int(ctx.settings.get("min_values", 20))
    mode = str(ctx.settings.get("scale", "auto"))
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

    roles = {c.name: c.role for c in ctx.data.columns}
    summaries = upstream.metrics.get("columns", {})
    candidates = [n for n in sorted(summaries) if roles.get(n, "numeric") != "identifier"]
    if not candidates:
        return na(
            "NOT_APPLICABLE",
            "There are no numeric, non-identifier columns to check for outliers.",
            checked=[f"{UPSTREAM}: {len(summaries)} summarized columns"],
        )

    findings = []
    checked = []
    measured = {}
    for name in candidates:
        s = summaries[name]
        count = int(s.get("count") or 0)
        median = _num(s.get("p50"))
        mad = _num(s.get("mad"))
        scale = _num(s.get("mad_normal"))
        if count < min_values or median is None or scale is None:
            checked.append(f"{name}: skipped, {count} values (< {min_values})")
            continue
        log = mode == "log" or (mode == "auto" and wide_positive(s))
        if log:
            x = f"CAST({_q(name)} AS DOUBLE)"
            stats = ctx.data.sql(
                f"SELECT median(ln({x})) AS m, mad(ln({x})) AS d, min({x}) AS lo FROM data "
                f"WHERE {x} IS NOT NULL"
            ).to_pylist()[0]
            if not (_num(stats["lo"]) or 0) > 0:
                checked.append(f"{name}: log scale needs positive values; skipped")
                continue
            median = float(stats["m"])
            mad = _num(stats["d"])
            scale = (mad or 0.0) * MAD_TO_SIGMA
        if not scale > 0:
            checked.append(f"{name}: skipped, MAD is 0 (over half the values are equal)")
            continue
        cond = outlier_condition(name, median, scale, threshold, log)
        x = f"CAST({_q(name)} AS DOUBLE)"
        query = (
            f"SELECT count({x}) AS n, count(*) FILTER (WHERE {cond}) AS outliers, "
            f"count(*) FILTER (WHERE {cond} AND {x} > {_lit(math.exp(median) if log else median)}) "
            "AS high, "
            f"avg({x}) AS mean_all, avg({x}) FILTER (WHERE NOT ({cond})) AS mean_inliers, "
            f"min({x}) FILTER (WHERE {cond}) AS min_outlier, "
            f"max({x}) FILTER (WHERE {cond}) AS max_outlier FROM data"
        )
        r = ctx.data.sql(query).to_pylist()[0]
        n = int(r["n"])
        outliers = int(r["outliers"])
        share = outliers / n if n else 0.0
        lower = median - threshold * scale
        upper = median + threshold * scale
        if log:
            lower, upper = math.exp(lower), math.exp(upper)
        measured[name] = {
            "values": n,
            "outliers": outliers,
            "share": share,
            "scale": "log" if log else "raw",
        }
        checked.append(
            f"{name}: {outliers} of {n} values ({share:.2%}) beyond [{lower:.4g}, {upper:.4g}]"
        )
        if not share > min_share:
            continue
        centre = math.exp(median) if log else median
        high = int(r["high"])
        mean_all = _num(r["mean_all"])
        mean_in = _num(r["mean_inliers"])
        severity = "high" if share >= 0.05 else "medium" if share >= 0.01 else "low"
        shift = (
            f" They move the mean from {mean_in:.4g} (without them) to {mean_all:.4g}."
            if mean_all is not None and mean_in is not None
            else ""
        )
        chart = outlier_chart(ctx, name, s, lower, upper, log)
        findings.append(
            Finding(
                kind="robust_outliers",
                title=f"{outliers} outliers in {name} ({share:.1%})",
                severity=severity,
                confidence=0.9 if outliers >= 10 else 0.7,
                target=name,
                what=(
                    f"{outliers} of {n} values of {name} ({share:.2%}; {high} high, "
                    f"{outliers - high} low) have a modified z-score above {threshold:g}"
                    f"{' on the log scale' if log else ''}, i.e. lie outside "
                    f"[{lower:.4g}, {upper:.4g}] around the median {centre:.4g}.{shift}"
                ),
                why=(
                    "The modified z-score uses the median and MAD, which the outliers "
                    f"themselves cannot distort; a share above {min_share:.1%} is more than "
                    "a heavy tail alone explains and skews means, sums and model fits."
                ),
                recommendation=(
                    f"Review the {outliers} extreme values of {name} (query in the evidence): "
                    "correct or remove data-entry errors, and report medians or winsorize "
                    "at p01/p99 where they are genuine."
                ),
                evidence=Evidence(
                    columns=(name,),
                    metrics={
                        "values": n,
                        "outliers": outliers,
                        "outliers_high": high,
                        "outliers_low": outliers - high,
                        "share": share,
                        "median": centre,
                        "mad": mad,
                        "mad_normal": scale,
                        "log_scale": log,
                        "threshold": threshold,
                        "lower_bound": lower,
                        "upper_bound": upper,
                        "min_outlier": _num(r["min_outlier"]),
                        "max_outlier": _num(r["max_outlier"]),
                        "mean_all": mean_all,
                        "mean_inliers": mean_in,
                    },
                    query=f"SELECT * FROM data WHERE {cond} ORDER BY {x} DESC",
                    rows=outliers,
                ),
                charts=(chart,),
            )
        )

    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No numeric column has more than {min_share:.1%} of its values with a modified "
            f"z-score above {threshold:g} ({len(candidates)} columns checked).",
            checked=checked,
            metrics={"columns": measured},
        )
    return ok(
        findings=findings,
        metrics={"columns": measured, "flagged_columns": [f.target for f in findings]},
    )
