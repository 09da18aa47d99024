"""distribution_shape: skewness, kurtosis and a normality test per numeric column.

Skewness and excess kurtosis come from SQL aggregates over every value (centred on the
mean first, so that a large offset cannot cancel the higher moments away). Everything
else comes from one read of the column's finite values in numpy: the mean, the quantiles
that choose the judged scale, the median and MAD on it and the share beyond the robust
fences (one selection each, where SQL sorted three times), and the sample on which the
D'Agostino-Pearson test runs, bounded and drawn with the plugin's seed (without
replacement, from the values in row order). A finding's evidence is the SQL that
computes the same figures.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from contracts import QUANTITY_SEMANTICS, Evidence, Finding, na, ok
from contracts.robust import MAD_TO_SIGMA, judged_scale, median_mad, scaled_expr, scaled_values
from contracts.sql import quote_ident as _q

# scipy.stats.kurtosistest (inside normaltest) needs at least 20 values.
MIN_SAMPLE = 20


def _num(value):
    """A finite float, or None (SQL NULL, NaN, infinity) so metrics stay JSON-clean."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _finite(column: str) -> str:
    x = f"CAST({_q(column)} AS DOUBLE)"
    return f"(SELECT {x} AS x FROM data WHERE isfinite({x}))"


def moments_query(column: str, mean: float) -> str:
    """Moments of the values centred on ``mean`` (given as an exact literal)."""
    m = f"CAST('{mean!r}' AS DOUBLE)"
    return (
        "SELECT count(x) AS n, stddev_samp(x) AS std, min(x) AS min, max(x) AS max, "
        f"skewness(x - {m}) AS skewness, kurtosis(x - {m}) AS excess_kurtosis "
        f"FROM {_finite(column)}"
    )


def values_query(column: str) -> str:
    """The column's finite values, in row order (every figure is computed from them)."""
    return f"SELECT x FROM {_finite(column)}"


def tail_query(column: str, scale, fence: float) -> str:
    """The SQL of :func:`_tail`'s figures (a finding's evidence)."""
    x = f"CAST({_q(column)} AS DOUBLE)"
    v = scaled_expr(column, scale)
    return (
        f"WITH r AS (SELECT median({v}) AS m, mad({v}) AS d FROM data WHERE isfinite({x})) "
        f"SELECT count(*) FILTER (WHERE abs({v} - r.m) / (r.d * {MAD_TO_SIGMA!r}) > "
        f"{float(fence)!r}) AS k, count({x}) AS n, any_value(r.d) AS d FROM data, r "
        f"WHERE isfinite({x})"
    )


def _sample(values: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``size`` of ``values``, drawn without replacement by ``rng``; sorted."""
    if values.size <= size:
        return np.sort(values)
    picked = rng.choice(values.size, size=size, replace=False)
    return np.sort(values[picked])


def _sample_shape(values: np.ndarray) -> dict[str, object]:
    """scipy's skew, kurtosis and normaltest on the sample (None where undefined)."""
    out: dict[str, object] = {
        "sample_excess_kurtosis": None,
        "sample_skewness": None,
        "normaltest_p_value": None,
        "normaltest_statistic": None,
    }
    if values.size < MIN_SAMPLE or not np.ptp(values) > 0:
        return out
    # Shape statistics are shift-invariant; centring on the median keeps scipy's
    # moment arithmetic away from catastrophic cancellation on large offsets.
    centred = values - np.median(values)
    test = stats.normaltest(centred)
    out["sample_skewness"] = _num(stats.skew(centred, bias=False))
    out["sample_excess_kurtosis"] = _num(stats.kurtosis(centred, bias=False))
    out["normaltest_statistic"] = _num(test.statistic)
    out["normaltest_p_value"] = _num(test.pvalue)
    return out


def _shape(skew, kurt, distinct: int, skew_thr: float, kurt_thr: float) -> tuple[str, bool]:
    if distinct <= 1 or skew is None:
        return ("constant" if distinct <= 1 else "undetermined"), False
    if skew > skew_thr:
        label = "right-skewed"
    elif skew < -skew_thr:
        label = "left-skewed"
    else:
        label = "symmetric"
    return label, bool(kurt is not None and kurt > kurt_thr)


def _tail(values: np.ndarray, semantic, fence: float) -> dict[str, object]:
    """Share of ``values`` beyond the robust fences (modified z-score > ``fence``) on the
    scale robust_outliers judges the column on (``contracts.robust``), so a column it
    calls heavy-tailed is described here. ``values`` is reordered and overwritten: each
    figure is a selection in place (no column-sized copy: at 10M rows, allocating them
    cost more than the selections)."""
    n = values.size
    low, high = float(values.min()), float(values.max())
    p01, p50, p99 = np.quantile(values, [0.01, 0.5, 0.99], overwrite_input=True)
    quantiles = {"min": low, "max": high, "p01": p01, "p50": p50, "p99": p99}
    scale = judged_scale(quantiles, semantic)
    # the median absolute deviation (SQL's mad()); ``values`` then holds the absolute
    # deviations, and counting is indifferent to their order
    d = median_mad(scaled_values(values, scale))[1]
    deviation = values
    share = None
    if d > 0:
        share = int(np.count_nonzero(deviation > float(fence) * d * MAD_TO_SIGMA)) / n
    return {"beyond_fence_share": share, "tail_scale": scale["kind"], "scale": scale}


def bimodality_coefficient(skew, kurt, n: int):
    """Sarle's bimodality coefficient (skew² + 1) / (excess kurtosis + 3 (n-1)² /
    ((n-2)(n-3))); above 5/9 (a uniform distribution's value) suggests two modes."""
    if skew is None or kurt is None or n < 4:
        return None
    denominator = kurt + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3))
    return _num((skew * skew + 1) / denominator) if denominator > 0 else None


def _p_text(p) -> str:
    if p is None:
        return "n/a"
    return "p < 1e-300" if p < 1e-300 else f"p = {p:.2g}"


def run(ctx):
    sample_size = int(ctx.settings.get("sample_size", 5000))
    max_columns = int(ctx.settings.get("max_columns", 50))
    skew_thr = float(ctx.settings.get("skew_threshold", 1.0))
    kurt_thr = float(ctx.settings.get("kurtosis_threshold", 3.0))
    alpha = float(ctx.settings.get("alpha", 0.05))
    fence = float(ctx.settings.get("fence", 3.5))
    tail_share = float(ctx.settings.get("tail_share", 0.02))

    numeric = ctx.data.names(role="numeric", semantic=QUANTITY_SEMANTICS)
    if not numeric:
        return na(
            "NOT_APPLICABLE",
            "The dataset has no quantity columns (semantic quantity, count or share) whose "
            "shape could be described.",
            checked=["no numeric column has semantic quantity, count or share"],
        )
    described = numeric[:max_columns]
    skipped = numeric[max_columns:]

    per_column: dict[str, dict[str, object]] = {}
    findings = []
    for name in sorted(described):
        info = ctx.data.column(name)
        values = np.array(ctx.data.sql(values_query(name)).column("x").to_numpy(), float)
        n = int(values.size)
        non_finite = ctx.data.rows - int(info.null_count) - n
        if n == 0:
            per_column[name] = {
                "count": 0,
                "non_finite_count": non_finite,
                "shape": "empty",
            }
            continue
        mean = float(values.mean())
        query = moments_query(name, mean)
        sample = _sample(values, sample_size, ctx.rng())
        distinct = int(info.distinct_count)
        tail = _tail(values, info.semantic, fence)  # overwrites ``values``
        del values
        row = ctx.data.sql(query).to_pylist()[0]  # one pass over the column, in SQL
        skew = _num(row["skewness"])
        kurt = _num(row["excess_kurtosis"])
        label, heavy = _shape(skew, kurt, distinct, skew_thr, kurt_thr)
        query += ";\n" + tail_query(name, tail.pop("scale"), fence)
        beyond = tail["beyond_fence_share"]
        wide_tail = beyond is not None and beyond > tail_share
        bc = bimodality_coefficient(skew, kurt, n)
        two_modes = bc is not None and bc > 5 / 9 and distinct > 2
        m: dict[str, object] = {
            "count": n,
            "distinct_count": distinct,
            "excess_kurtosis": kurt,
            "heavy_tailed": heavy,
            "tail_beyond_fences": wide_tail,
            "bimodality_coefficient": bc,
            "possibly_bimodal": two_modes,
            "max": _num(row["max"]),
            "mean": _num(mean),
            "min": _num(row["min"]),
            "non_finite_count": non_finite,
            "sample_size": int(sample.size),
            "shape": label,
            "skewness": skew,
            "std": _num(row["std"]),
        }
        m |= _sample_shape(sample) | tail
        p = m["normaltest_p_value"]
        m["normal_rejected"] = None if p is None else bool(p < alpha)
        per_column[name] = dict(sorted(m.items()))

        if skew is None:
            what = (
                f"{name}: {n} values, {distinct} distinct; skewness and kurtosis are "
                "undefined (fewer than 3 values or no spread)."
            )
        else:
            tail_text = ", heavy-tailed" if heavy else ""
            on_scale = "" if tail["tail_scale"] == "raw" else f" on the {tail['tail_scale']} scale"
            if wide_tail:
                tail_text += (
                    f"; {beyond:.1%} of values lie beyond the robust fences (modified z > "
                    f"{fence:g}{on_scale}): "
                    "a heavy tail" + (" or a second mode" if two_modes else "") + ", not outliers"
                )
            elif two_modes:
                tail_text += f"; bimodality coefficient {bc:.2f} (> 5/9): possibly two modes"
            normal = (
                f"; normality {'rejected' if m['normal_rejected'] else 'not rejected'} "
                f"on a {sample.size}-value sample (D'Agostino-Pearson, {_p_text(p)})"
                if p is not None
                else ""
            )
            kurt_text = "undefined" if kurt is None else f"{kurt:.3g}"
            what = (
                f"{name}: {label} (skewness {skew:.3g}, excess kurtosis {kurt_text} "
                f"over {n} values){tail_text}{normal}."
            )
        findings.append(
            Finding(
                kind="distribution_shape",
                title=f"Shape of {name}: {label}"
                + (", heavy tail" if wide_tail else ", possibly bimodal" if two_modes else ""),
                severity="info",
                confidence=1.0,
                target=name,
                what=what,
                why="Skewed or heavy-tailed columns need rank-based tests and robust "
                "summaries; a shape that changes over time is a first sign of drift.",
                evidence=Evidence(
                    columns=(name,),
                    metrics={
                        k: v
                        for k, v in per_column[name].items()
                        if v is None or isinstance(v, int | float | str | bool)
                    },
                    query=query,
                    rows=n,
                ),
            )
        )

    if not findings:
        return na(
            "INSUFFICIENT_DATA",
            "No numeric column has a finite value, so no shape can be described.",
            checked=[f"{c}: no finite values" for c in sorted(per_column)],
            metrics={"columns": per_column},
        )
    metrics = {
        "alpha": alpha,
        "columns": per_column,
        "checked": f"{len(described)} of {len(numeric)} quantity columns"
        + (f" (the first {max_columns} in dataset order)" if skipped else ""),
        "columns_capped": bool(skipped),
        "columns_skipped": sorted(skipped),
        "fence": fence,
        "heavy_tail_columns": sorted(
            c for c, v in per_column.items() if v.get("tail_beyond_fences")
        ),
        "kurtosis_threshold": kurt_thr,
        "tail_share": tail_share,
        "sample_size": sample_size,
        "skew_threshold": skew_thr,
    }
    return ok(findings=findings, metrics=metrics)
