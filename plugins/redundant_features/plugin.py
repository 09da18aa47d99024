"""redundant_features: numeric columns that duplicate an earlier column's information.

Pearson correlations of every pair of numeric (non-identifier) columns are computed
exactly over all rows in one SQL aggregate (pairwise complete). A pair with
``abs(r) > min_abs_r`` is confirmed on a bounded, seeded sample with
scipy.stats.pearsonr (the p-value) and scipy.stats.spearmanr (the rank correlation
must also be high, so one extreme row shared by two unrelated columns does not make
them "redundant"). The later column of the pair, in dataset order, is the one
recommended for removal.

Columns that only encode position or time are skipped: identifier-like and
timestamp-like names (``*_id``, ``*_at``, ``epoch``, ...), and pairs in which both
columns follow row order or the event time almost perfectly (queued/started times
stored as numbers, sequence counters), which are trivially correlated.
"""

from __future__ import annotations

import math
import re

import msgspec
import numpy as np
from scipy import stats

from contracts import Evidence, Finding, HeatMap, na, ok
from contracts.sql import quote_ident as _q
from contracts.sql import timestamp_expr

_ID_WORDS = frozenset({"id", "ids", "uuid", "guid", "pid", "uid", "key", "index", "idx"})
_TIME_WORDS = frozenset({"epoch", "timestamp", "unix", "unixtime", "datetime", "ts"})
_TIME_LAST = frozenset({"at", "date", "ts", "time", "timestamp"})
_TIME_UNITS = frozenset(
    {"s", "sec", "secs", "seconds", "ms", "min", "mins", "minutes", "h", "hours", "duration"}
)


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^0-9A-Za-z]+", spaced.lower()) if w]


def positional_name(name: str) -> bool:
    """Whether the name says the column is an identifier or a point in time."""
    words = _words(name)
    if not words:
        return False
    if words[-1] in _ID_WORDS or any(w in _TIME_WORDS for w in words):
        return True
    # "created_at", "end_time" are points in time; "run_time_s" is a duration
    return words[-1] in _TIME_LAST and not any(w in _TIME_UNITS for w in words)


def _num(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def correlation_heatmap(cols: list[str], pairs: list[tuple[str, str]], row: dict) -> HeatMap:
    """Pearson r over all rows of every compared pair (the SQL aggregate's result)."""
    r = {(a, a): 1.0 for a in cols}
    for i, (a, b) in enumerate(pairs):
        r[(a, b)] = r[(b, a)] = _num(row[f"r{i}"])
    return HeatMap(
        title="Pearson correlation of the numeric columns compared",
        x_labels=tuple(cols),
        y_labels=tuple(cols),
        values=tuple(tuple(r[(a, b)] for b in cols) for a in cols),
        value_label="Pearson r",
        vmin=-1.0,
        vmax=1.0,
        diverging=True,
    )


def run(ctx):
    min_abs_r = float(ctx.settings.get("min_abs_r", 0.95))
    min_abs_rho = float(ctx.settings.get("min_abs_spearman", 0.8))
    min_rows = int(ctx.settings.get("min_rows", 100))
    max_sample = int(ctx.settings.get("max_sample", 50000))
    max_columns = int(ctx.settings.get("max_columns", 60))
    positional_r = float(ctx.settings.get("positional_r", 0.9))
    alpha = float(ctx.settings.get("alpha", 0.001))

    numeric = ctx.data.names("numeric")
    skipped = [n for n in numeric if positional_name(n)]
    skipped += [n for n in numeric if n not in skipped and ctx.data.column(n).distinct_count < 2]
    cols = [n for n in numeric if n not in skipped]
    checked = [f"skipped {n}: identifier/time-like name or constant" for n in skipped]
    if len(cols) > max_columns:
        checked.append(f"only the first {max_columns} of {len(cols)} numeric columns compared")
        cols = cols[:max_columns]
    if len(cols) < 2:
        return na(
            "NOT_APPLICABLE",
            f"Redundancy needs at least two numeric, non-identifier columns; found {len(cols)}.",
            checked=checked or [f"{len(numeric)} numeric columns"],
        )

    x = {n: f"CAST({_q(n)} AS DOUBLE)" for n in cols}
    order = {n: i for i, n in enumerate(ctx.data.names())}
    pairs = [(a, b) for i, a in enumerate(cols) for b in cols[i + 1 :]]
    time_col = next(
        (ctx.data.event_role(r) for r in ("queued", "started") if ctx.data.event_role(r)),
        None,
    ) or next(iter(ctx.data.names("timestamp")), None)
    time_expr = None
    if time_col is not None:
        time_expr = f"epoch({timestamp_expr(time_col, ctx.data.column(time_col).dtype)})"
    select = []
    for i, (a, b) in enumerate(pairs):
        select.append(f"corr({x[a]}, {x[b]}) AS r{i}, regr_count({x[a]}, {x[b]}) AS n{i}")
    for j, n in enumerate(cols):
        select.append(f"corr({x[n]}, CAST(rowid AS DOUBLE)) AS pos{j}")
        if time_expr is not None:
            select.append(f"corr({x[n]}, {time_expr}) AS time{j}")
    query = f"SELECT {', '.join(select)} FROM data"
    row = ctx.data.sql(query).to_pylist()[0]

    positional = set()
    for j, n in enumerate(cols):
        pos = abs(_num(row[f"pos{j}"]) or 0.0)
        tim = abs(_num(row.get(f"time{j}")) or 0.0)
        if max(pos, tim) >= positional_r:
            positional.add(n)

    strong = []
    for i, (a, b) in enumerate(pairs):
        r, n = _num(row[f"r{i}"]), int(row[f"n{i}"] or 0)
        if r is None or n < min_rows or not abs(r) > min_abs_r:
            continue
        if a in positional and b in positional:
            checked.append(f"{a} ~ {b}: r = {r:.4f}, skipped: both follow row order / event time")
            continue
        strong.append((a, b, r, n))
    checked.append(
        f"{len(pairs)} pairs of {len(cols)} numeric columns: {len(strong)} with "
        f"|r| > {min_abs_r:g} over all rows"
    )
    if not strong:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No pair of numeric columns has |Pearson r| > {min_abs_r:g} "
            f"({len(pairs)} pairs of {len(cols)} columns checked over all rows).",
            checked=checked,
        )

    involved = sorted({c for a, b, _, _ in strong for c in (a, b)}, key=order.__getitem__)
    sample_query = (
        f"SELECT {', '.join(f'{x[c]} AS {_q(c)}' for c in involved)} FROM data "
        f"ORDER BY hash(rowid, {int(ctx.seed)}), rowid LIMIT {max_sample}"
    )
    table = ctx.data.sql(sample_query)
    values = {
        c: np.asarray(table.column(c).to_numpy(zero_copy_only=False), dtype=float) for c in involved
    }

    confirmed: dict[str, list[tuple]] = {}
    for a, b, r, n in strong:
        va, vb = values[a], values[b]
        keep = ~(np.isnan(va) | np.isnan(vb))
        va, vb = va[keep], vb[keep]
        if va.size < 3 or np.ptp(va) == 0 or np.ptp(vb) == 0:
            checked.append(f"{a} ~ {b}: r = {r:.4f}, too few varying values in the sample")
            continue
        pr = stats.pearsonr(va, vb)
        rho = float(stats.spearmanr(va, vb).statistic)
        p_value = float(pr.pvalue)
        ok_rank = not math.isnan(rho) and abs(rho) >= min_abs_rho
        checked.append(
            f"{a} ~ {b}: r = {r:.4f} over {n} rows; sample of {va.size}: "
            f"r = {float(pr.statistic):.4f}, Spearman {rho:.3f} (needs |rho| >= "
            f"{min_abs_rho:g}), p = {p_value:.2g}"
        )
        if not (ok_rank and p_value < alpha):
            continue
        later, earlier = (b, a) if order[b] > order[a] else (a, b)
        confirmed.setdefault(later, []).append(
            (earlier, r, n, float(pr.statistic), rho, p_value, int(va.size))
        )

    findings = []
    for target in sorted(confirmed, key=order.__getitem__):
        # the partner to keep is the earliest correlated column in dataset order
        partners = sorted(confirmed[target], key=lambda t: order[t[0]])
        earlier, r, n, r_sample, rho, p_value, n_sample = partners[0]
        others = [p[0] for p in partners[1:]]
        direction = "rises" if r > 0 else "falls"
        findings.append(
            Finding(
                kind="redundant_feature",
                title=f"{target} is redundant with {earlier} (r = {r:.3f})",
                severity="low",
                confidence=max(0.0, min(0.99, abs(r))),
                target=target,
                what=(
                    f"{target} {direction} almost in lockstep with {earlier}: Pearson r = "
                    f"{r:.4f} over {n} rows with both values (R² = {r * r:.3f}); Spearman "
                    f"{rho:.3f} on a sample of {n_sample}"
                    + (f"; it is also redundant with {', '.join(others)}" if others else "")
                    + "."
                ),
                why=(
                    f"With |r| above {min_abs_r:g}, {target} adds almost no information "
                    f"beyond {earlier}; keeping both double-counts one signal, inflates "
                    "variance of model coefficients (collinearity) and clutters reports."
                ),
                recommendation=(
                    f"Drop {target} from feature sets and models and keep {earlier} (the "
                    f"earlier column); if {target} is derived from {earlier} (a unit or "
                    "currency conversion, a copy), document the derivation instead of "
                    "storing both."
                ),
                evidence=Evidence(
                    columns=(earlier, target),
                    metrics={
                        "pearson_r": r,
                        "r_squared": r * r,
                        "pairs": n,
                        "sample_pearson_r": r_sample,
                        "sample_spearman_rho": rho,
                        "sample_size": n_sample,
                        "p_value": p_value,
                        "min_abs_r": min_abs_r,
                        "kept_column": earlier,
                        "also_redundant_with": ", ".join(others),
                    },
                    query=(
                        f"SELECT corr({x[earlier]}, {x[target]}) AS r, "
                        f"regr_count({x[earlier]}, {x[target]}) AS n FROM data"
                    ),
                    rows=n,
                ),
            )
        )
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No pair of numeric columns is redundant: the pairs with |r| > {min_abs_r:g} "
            "over all rows were not confirmed on the sample (rank correlation or test).",
            checked=checked,
        )
    heat = correlation_heatmap(cols, pairs, row)
    findings = [msgspec.structs.replace(f, charts=(heat,)) for f in findings]
    return ok(
        findings=findings,
        metrics={
            "redundant_columns": [f.target for f in findings],
            "columns_compared": cols,
            "pairs_compared": len(pairs),
        },
    )
