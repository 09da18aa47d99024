"""drift: columns whose distribution at the end of the time range differs from the start.

The rows in the first and the last ``window_fraction`` (25%) of the time range are
compared column by column. Numeric columns: a two-sample Kolmogorov-Smirnov test
(scipy.stats.ks_2samp) on bounded, seeded samples of each window, effect size KS D.
Categorical columns: counts per value in each window (SQL), a chi-square test of
independence (scipy.stats.chi2_contingency), effect size the total variation distance
between the two value distributions (the categorical counterpart of KS D: the share of
the mass that moved). Only large effects (``min_effect``, 0.3) with p < alpha count, and
a numeric column must also move its median, mean or IQR by ``min_relative_change``
(20%): KS D is relative to the spread, so a seasonal swing of a few percent in a narrow
distribution would pass D alone.

An annual cycle is not drift: in a time range of at least ``season_span_days`` (half a
year), windows shorter than a year whose starts lie ``season_days`` (45) or more apart in
the calendar compare different seasons (winter against autumn). The last window is then
moved to the first one's calendar dates a whole number of years later; when the range is
shorter than a year plus a window there is no such window and nothing is compared (na
INSUFFICIENT_DATA, saying why).

Columns that encode time or identity are not drift candidates: identifier/time-like
names (``*_id``, ``*_at``, ``year``, ``week``, ...), numeric columns that follow the
time axis almost perfectly (counters, epochs), and categorical columns whose values
follow one another in time (period keys such as "2024-03" or batch labels). Drifted
columns that move together (a derived column drifts with its source) are reported once,
on the earliest of them, with the others listed in the evidence.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import msgspec
import numpy as np
from scipy import stats

from contracts import QUANTITY_SEMANTICS, Evidence, Finding, Ok, na, ok
from contracts.sql import quote_ident as _q
from contracts.sql import seeded_sample, timestamp_expr
from contracts.units import p_text as _p_text

_ID_WORDS = frozenset({"id", "ids", "uuid", "guid", "pid", "uid", "key", "index", "idx"})
_TIME_WORDS = frozenset(
    {
        "epoch",
        "timestamp",
        "unix",
        "unixtime",
        "datetime",
        "ts",
        "date",
        "day",
        "days",
        "week",
        "weeks",
        "weekday",
        "dow",
        "month",
        "months",
        "year",
        "years",
        "quarter",
        "period",
        "hour",
        "hours",
        "minute",
        "yyyymm",
        "yyyymmdd",
        "fiscal",
        "seq",
        "sequence",
    }
)
_TIME_UNITS = frozenset(
    {"s", "sec", "secs", "seconds", "ms", "min", "mins", "minutes", "h", "duration", "elapsed"}
)
_MAX_CATEGORIES = 50


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^0-9A-Za-z]+", spaced.lower()) if w]


def positional_name(name: str) -> bool:
    """Whether the name says the column is an identifier or encodes time itself
    (a duration such as ``run_hours`` or ``wait_days_s`` is not)."""
    words = _words(name)
    if not words:
        return False
    if words[-1] in _ID_WORDS or words[-1] == "at":
        return True
    if any(w in _TIME_UNITS for w in words) or words[-1] in ("hours", "days", "minutes"):
        return False
    return any(w in _TIME_WORDS for w in words) or words[-1] == "time"


def _iso(epoch_s: float) -> str:
    """Seconds since the epoch as an ISO timestamp (UTC, to the second)."""
    return datetime.fromtimestamp(round(epoch_s), tz=UTC).replace(tzinfo=None).isoformat()


def _num(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


WEEK_S = 7 * 86400.0
YEAR_S = 365.25 * 86400.0


def calendar_distance_days(seconds: float) -> float:
    """How far apart two instants ``seconds`` apart lie in the calendar year, in days
    (0 for a whole number of years, at most half a year)."""
    offset = math.fmod(abs(seconds), YEAR_S)
    return min(offset, YEAR_S - offset) / 86400


def weekly_rhythm(ctx) -> bool:
    """Whether ``seasonality`` found a strong weekly rhythm in the hourly job volume."""
    upstream = ctx.upstream.get("seasonality")
    hourly = getattr(upstream, "metrics", {}).get("hourly_volume") or {}
    threshold = getattr(upstream, "metrics", {}).get("strong_threshold")
    return (
        isinstance(upstream, Ok)
        and threshold is not None
        and float(hourly.get("weekly_strength") or 0.0) >= float(threshold)
    )


def time_column(ctx, configured: str) -> str | None:
    if configured:
        ctx.data.column(configured)
        return configured
    for role in ("queued", "started", "ended"):
        col = ctx.data.event_role(role)
        if col is not None:
            return col
    return next(iter(ctx.data.names("timestamp")), None)


def run(ctx):
    fraction = float(ctx.settings.get("window_fraction", 0.25))
    min_effect = float(ctx.settings.get("min_effect", 0.3))
    alpha = float(ctx.settings.get("alpha", 0.001))
    max_sample = int(ctx.settings.get("max_sample", 20000))
    min_window_rows = int(ctx.settings.get("min_window_rows", 200))
    positional_r = float(ctx.settings.get("positional_r", 0.95))
    configured = str(ctx.settings.get("time_column", ""))
    couple_r = float(ctx.settings.get("couple_r", 0.9))
    period_overlap = float(ctx.settings.get("period_overlap", 0.05))
    min_change = float(ctx.settings.get("min_relative_change", 0.2))
    season_days = float(ctx.settings.get("season_days", 45.0))
    season_span = float(ctx.settings.get("season_span_days", 180.0))

    tcol = time_column(ctx, configured)
    if tcol is None:
        return na(
            "NOT_APPLICABLE",
            "Drift over time needs a timestamp column; the dataset has none.",
            checked=["timestamp columns: none"],
        )
    t = timestamp_expr(tcol, ctx.data.column(tcol).dtype)
    numeric = [n for n in ctx.data.names("numeric", semantic=QUANTITY_SEMANTICS) if n != tcol]
    categorical = [
        n for n in ctx.data.names() if ctx.data.column(n).role in ("categorical", "boolean")
    ]
    checked = [
        f"{c.name}: skipped, semantic {c.semantic} (only quantities drift)"
        for c in ctx.data.columns
        if c.role == "numeric" and c.name != tcol and c.name not in numeric
    ]
    checked += [
        f"{n}: skipped, identifier/time-like name"
        for n in numeric + categorical
        if positional_name(n)
    ]
    numeric = [n for n in numeric if not positional_name(n)]
    categorical = [n for n in categorical if not positional_name(n)]
    if not numeric and not categorical:
        return na(
            "NOT_APPLICABLE",
            "There are no numeric or categorical columns (other than identifiers and time "
            "keys) whose distribution could drift.",
            checked=checked or ["numeric and categorical columns: none"],
        )

    x = {n: f"CAST({_q(n)} AS DOUBLE)" for n in numeric}
    corr = "".join(f", corr({x[n]}, epoch({t})) AS c{i}" for i, n in enumerate(numeric))
    span = ctx.data.sql(
        f"SELECT min({t}) AS lo, max({t}) AS hi, epoch(min({t})) AS lo_e, "
        f"epoch(max({t})) AS hi_e{corr} FROM data"
    ).to_pylist()[0]
    if span["lo"] is None or not span["hi_e"] > span["lo_e"]:
        return na(
            "INSUFFICIENT_DATA",
            f"{tcol} has no time range (no values, or all equal), so there is no start and "
            "end to compare.",
            checked=[f"time column {tcol}: range {span['lo']} .. {span['hi']}"],
        )
    for i, n in enumerate(list(numeric)):
        c = _num(span[f"c{i}"])
        if c is not None and abs(c) >= positional_r:
            checked.append(f"{n}: skipped, follows {tcol} (r = {c:.3f}), a counter or clock")
            numeric.remove(n)

    lo_e, hi_e = float(span["lo_e"]), float(span["hi_e"])
    cut = fraction * (hi_e - lo_e)
    weekly = weekly_rhythm(ctx) and hi_e - lo_e >= 2 * WEEK_S
    if weekly:
        # whole weeks in each window: both hold the same mix of weekdays, so a weekly
        # rhythm (busy weekdays, quiet weekends) cannot look like drift
        cut = min(max(1, round(cut / WEEK_S)), int((hi_e - lo_e) // (2 * WEEK_S))) * WEEK_S
        checked.append("seasonality: strong weekly rhythm, windows cut to whole weeks")
    last_lo, last_hi = hi_e - cut, hi_e
    apart = calendar_distance_days(last_lo - lo_e)
    if (
        season_days > 0
        and hi_e - lo_e >= season_span * 86400
        and cut < YEAR_S
        and apart >= season_days
    ):
        # the windows lie in different seasons of the year: an annual cycle (winter
        # against autumn) would look like drift. Compare the first window with the same
        # calendar dates a whole number of years later (52 whole weeks a year when the
        # windows are whole weeks), or nothing when the range holds no such window.
        year = 52 * WEEK_S if weekly else YEAR_S
        years = int((hi_e - lo_e - cut) // year)
        if years < 1:
            reason = (
                f"The first and the last {fraction:.0%} of the time range of {tcol} lie "
                f"{apart:.0f} days apart in the calendar (different seasons, >= "
                f"{season_days:g} days), and the range ({(hi_e - lo_e) / 86400:.0f} days) is "
                "shorter than a year plus a window, so no window with the first one's "
                "calendar dates exists: an annual cycle cannot be told from drift, so no "
                "column is compared."
            )
            checked.append(
                f"windows on {tcol}: first {_iso(lo_e)} .. {_iso(lo_e + cut)}, last "
                f"{_iso(last_lo)} .. {_iso(hi_e)}: {apart:.0f} days apart in the calendar, "
                f"no same-season window; 0 of {len(numeric) + len(categorical)} columns "
                "compared"
            )
            return na(
                "INSUFFICIENT_DATA",
                reason,
                checked=checked,
                metrics={"time_column": tcol, "calendar_distance_days": apart},
            )
        last_lo = lo_e + years * year
        last_hi = last_lo + cut
        checked.append(
            f"seasons: the last {fraction:.0%} of the range lies {apart:.0f} days from the "
            f"first in the calendar (>= {season_days:g}): compared instead with the same "
            f"calendar dates {years} year{'s' if years != 1 else ''} later"
        )
    # the change happened after the first window ends and before the last one starts
    lo = _iso(lo_e + cut)
    hi = _iso(last_lo)
    first = f"epoch({t}) < {lo_e + cut!r}"
    last = f"epoch({t}) >= {last_lo!r}"
    if last_hi < hi_e:
        last = f"({last} AND epoch({t}) < {last_hi!r})"
    checked.append(
        f"windows on {tcol}: first {fraction:.0%} ({_iso(lo_e)} .. {lo}), "
        f"last ({hi} .. {_iso(last_hi)})"
    )

    findings = []
    results: dict[str, dict] = {}

    samples: dict[str, dict[str, np.ndarray]] = {}
    sample_queries = {}
    if numeric:
        for label, cond in (("first", first), ("last", last)):
            rows = ctx.data.sql(f"SELECT count(*) AS n FROM data WHERE {cond}")
            table, q = seeded_sample(
                ctx.data.sql,
                f"SELECT {', '.join(f'{x[n]} AS {_q(n)}' for n in numeric)} FROM data",
                cond,
                key="rowid",
                seed=int(ctx.seed),
                limit=max_sample,
                population=int(rows.column("n")[0].as_py()),
            )
            sample_queries[label] = q
            samples[label] = {
                n: np.asarray(table.column(n).to_numpy(zero_copy_only=False), dtype=float)
                for n in numeric
            }
    for n in numeric:
        a = samples["first"][n]
        b = samples["last"][n]
        a, b = a[~np.isnan(a)], b[~np.isnan(b)]
        if a.size < min_window_rows or b.size < min_window_rows:
            checked.append(
                f"{n}: skipped, {a.size} / {b.size} values in the windows (needs {min_window_rows})"
            )
            continue
        test = stats.ks_2samp(a, b)
        d, p_value = float(test.statistic), float(test.pvalue)
        med_a, med_b = float(np.median(a)), float(np.median(b))
        checked.append(f"{n}: KS D = {d:.3f}, {_p_text(p_value)} (needs D >= {min_effect:g})")
        results[n] = {"effect": d, "p_value": p_value}
        if not (d >= min_effect and p_value < alpha):
            continue
        # KS D is relative to the spread: in a narrow distribution a seasonal swing of a
        # few percent gives a large D, so the location or the spread must also move
        rel = _relative_change(a, b)
        if rel < min_change:
            checked.append(
                f"{n}: median, mean and IQR moved by at most {rel:.0%} (needs "
                f">= {min_change:.0%}), a small shift in a narrow distribution"
            )
            continue
        change = (med_b - med_a) / abs(med_a) if med_a else None
        change_text = f" ({change:+.0%})" if change is not None else ""
        findings.append(
            _finding(
                n,
                tcol,
                "numeric",
                d,
                p_value,
                lo,
                hi,
                fraction,
                min_effect,
                what=(
                    f"The distribution of {n} moved between the first and the last "
                    f"{fraction:.0%} of the time range: median {med_a:.4g} -> {med_b:.4g}"
                    f"{change_text}; KS D = {d:.2f} on samples of {a.size} and {b.size}."
                ),
                metrics={
                    "ks_d": d,
                    "relative_change": rel,
                    "median_first": med_a,
                    "median_last": med_b,
                    "mean_first": float(np.mean(a)),
                    "mean_last": float(np.mean(b)),
                    "sample_first": int(a.size),
                    "sample_last": int(b.size),
                },
                query=sample_queries["first"] + ";\n" + sample_queries["last"],
                rows=int(a.size + b.size),
            )
        )

    for n in categorical:
        v = f"CAST({_q(n)} AS VARCHAR)"
        q = (
            f"SELECT {v} AS value, count(*) FILTER (WHERE {first}) AS first_n, "
            f"count(*) FILTER (WHERE {last}) AS last_n FROM data "
            f"WHERE {_q(n)} IS NOT NULL AND ({first} OR {last}) "
            "GROUP BY value ORDER BY first_n + last_n DESC, value"
        )
        rows = ctx.data.sql(q).to_pylist()
        cats = [(str(r["value"]), int(r["first_n"]), int(r["last_n"])) for r in rows]
        if len(cats) > _MAX_CATEGORIES:
            tail = cats[_MAX_CATEGORIES - 1 :]
            other = ("(other)", sum(c[1] for c in tail), sum(c[2] for c in tail))
            cats = [*cats[: _MAX_CATEGORIES - 1], other]
        labels = [c[0] for c in cats]
        counts = np.array([[c[1], c[2]] for c in cats], dtype=np.int64).reshape(-1, 2)
        n_first, n_last = (float(c) for c in counts.sum(axis=0))
        if n_first < min_window_rows or n_last < min_window_rows or counts.shape[0] < 2:
            checked.append(
                f"{n}: skipped, {int(n_first)} / {int(n_last)} values and "
                f"{counts.shape[0]} categories in the windows"
            )
            continue
        pf, pl = counts[:, 0] / n_first, counts[:, 1] / n_last
        tvd = float(0.5 * np.abs(pf - pl).sum())
        if tvd >= min_effect and is_period_key(ctx, n, t, period_overlap):
            checked.append(
                f"{n}: skipped, its values follow one another in time (a period key such "
                "as a week or batch label)"
            )
            continue
        test = stats.chi2_contingency(counts.T)
        p_value = float(test.pvalue)
        cramer = float(stats.contingency.association(counts.T, method="cramer"))
        checked.append(
            f"{n}: total variation distance {tvd:.3f}, Cramér's V {cramer:.3f}, "
            f"{_p_text(p_value)} (needs distance >= {min_effect:g})"
        )
        results[n] = {"effect": tvd, "p_value": p_value}
        if not (tvd >= min_effect and p_value < alpha):
            continue
        moved = np.argsort(-(pl - pf), kind="stable")
        gain, loss = labels[int(moved[0])], labels[int(moved[-1])]
        findings.append(
            _finding(
                n,
                tcol,
                "categorical",
                tvd,
                p_value,
                lo,
                hi,
                fraction,
                min_effect,
                what=(
                    f"The mix of {n} values moved between the first and the last "
                    f"{fraction:.0%} of the time range: {tvd:.0%} of the mass changed "
                    f"category; {gain!r} went from {pf[moved[0]]:.1%} to {pl[moved[0]]:.1%}, "
                    f"{loss!r} from {pf[moved[-1]]:.1%} to {pl[moved[-1]]:.1%}."
                ),
                metrics={
                    "total_variation_distance": tvd,
                    "cramers_v": cramer,
                    "chi2": float(test.statistic),
                    "categories": int(counts.shape[0]),
                    "rows_first": int(n_first),
                    "rows_last": int(n_last),
                    "largest_gain": gain,
                    "largest_loss": loss,
                },
                query=q,
                rows=int(n_first + n_last),
            )
        )

    findings = merge_coupled(ctx, findings, samples, first, last, couple_r, checked)
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No column drifted by a large effect (>= {min_effect:g}) between the first and "
            f"the last {fraction:.0%} of the time range of {tcol} "
            f"({len(results)} columns compared).",
            checked=checked,
            metrics={"columns": results, "time_column": tcol},
        )
    return ok(
        findings=findings,
        metrics={"columns": results, "time_column": tcol, "drifted": [f.target for f in findings]},
    )


def _finding(
    name, tcol, kind, effect, p_value, lo, hi, fraction, min_effect, *, what, metrics, query, rows
):
    measure = "KS D" if kind == "numeric" else "total variation distance"
    return Finding(
        kind="distribution_drift",
        title=f"{name} drifted over time ({measure} {effect:.2f})",
        severity="high" if effect >= 0.5 else "medium",
        confidence=max(0.0, min(0.99, 1.0 - p_value)),
        target=name,
        what=what,
        why=(
            f"A {measure} of {effect:.2f} means the values of {name} at the end of the data "
            "come from a clearly different distribution than at the start "
            f"({_p_text(p_value)}): baselines, thresholds and models fitted on the whole "
            "period describe neither part well."
        ),
        recommendation=(
            f"Find what changed in {name} between {lo} and {hi} (a new source, unit, "
            "pricing, client or release); re-baseline thresholds and retrain models on the "
            "recent window only, or analyse the two periods separately."
        ),
        evidence=Evidence(
            columns=(name, tcol),
            metrics=metrics
            | {
                "p_value": p_value,
                "min_effect": min_effect,
                "window_fraction": fraction,
                "first_window_end": lo,
                "last_window_start": hi,
            },
            query=query,
            rows=rows,
        ),
    )


def _relative_change(a: np.ndarray, b: np.ndarray) -> float:
    """The largest relative move of the median, the mean or the interquartile range
    between two samples (a move from 0 to anything counts as total)."""
    moves = []
    for stat in (np.median, np.mean, stats.iqr):
        x, y = float(stat(a)), float(stat(b))
        if x != 0:
            moves.append(abs(y - x) / abs(x))
        elif y != 0:
            moves.append(math.inf)
    return max(moves, default=0.0)


def is_period_key(ctx, name: str, t: str, max_overlap: float) -> bool:
    """Whether the values of ``name`` tile the time axis (each value has its own stretch
    of time, as week, month or batch labels do): at least three values whose time
    ranges overlap by at most ``max_overlap`` of the whole span."""
    rows = ctx.data.sql(
        f"SELECT epoch(min({t})) AS lo, epoch(max({t})) AS hi FROM data "
        f"WHERE {_q(name)} IS NOT NULL AND {t} IS NOT NULL "
        f"GROUP BY {_q(name)} ORDER BY lo, hi"
    ).to_pylist()
    if len(rows) < 3:
        return False
    span = float(rows[-1]["hi"]) - float(rows[0]["lo"])
    if not span > 0:
        return False
    overlap = 0.0
    reach = float(rows[0]["hi"])
    for r in rows[1:]:
        overlap += max(0.0, min(reach, float(r["hi"])) - float(r["lo"]))
        reach = max(reach, float(r["hi"]))
    return overlap <= max_overlap * span


def _coupling(ctx, a: Finding, b: Finding, samples, first: str, last: str) -> float | None:
    """How strongly two drifted columns move together: abs(Spearman rho) on the window
    samples (numeric), Cramér's V of their joint counts in the windows (categorical)."""
    na_, nb = a.target, b.target
    if "ks_d" in a.evidence.metrics and "ks_d" in b.evidence.metrics:
        xa = np.concatenate([samples["first"][na_], samples["last"][na_]])
        xb = np.concatenate([samples["first"][nb], samples["last"][nb]])
        keep = ~(np.isnan(xa) | np.isnan(xb))
        xa, xb = xa[keep], xb[keep]
        if xa.size < 3 or np.ptp(xa) == 0 or np.ptp(xb) == 0:
            return None
        rho = float(stats.spearmanr(xa, xb).statistic)
        return None if math.isnan(rho) else abs(rho)
    if "cramers_v" in a.evidence.metrics and "cramers_v" in b.evidence.metrics:
        q = (
            f"SELECT CAST({_q(na_)} AS VARCHAR) AS a, CAST({_q(nb)} AS VARCHAR) AS b, "
            f"count(*) AS n FROM data WHERE {_q(na_)} IS NOT NULL AND {_q(nb)} IS NOT NULL "
            f"AND ({first} OR {last}) GROUP BY ALL ORDER BY a, b"
        )
        rows = ctx.data.sql(q).to_pylist()
        av = sorted({r["a"] for r in rows})
        bv = sorted({r["b"] for r in rows})
        if len(av) < 2 or len(bv) < 2:
            return None
        table = np.zeros((len(av), len(bv)), dtype=np.int64)
        ai, bi = {v: i for i, v in enumerate(av)}, {v: i for i, v in enumerate(bv)}
        for r in rows:
            table[ai[r["a"]], bi[r["b"]]] = int(r["n"])
        return float(stats.contingency.association(table, method="cramer"))
    return None


def merge_coupled(ctx, findings, samples, first, last, couple_r, checked):
    """One finding per group of drifted columns that move together (a column derived
    from another drifts with it): the earliest column in dataset order is the target,
    the others are listed in its evidence."""
    order = {n: i for i, n in enumerate(ctx.data.names())}
    kept: list[Finding] = []
    for f in sorted(findings, key=lambda f: order[f.target]):
        for i, k in enumerate(kept):
            strength = _coupling(ctx, k, f, samples, first, last)
            if strength is not None and strength >= couple_r:
                checked.append(
                    f"{f.target}: drifts together with {k.target} (association "
                    f"{strength:.2f}), reported with it"
                )
                coupled = ", ".join(
                    x for x in (str(k.evidence.metrics.get("coupled_columns", "")), f.target) if x
                )
                cols = (*k.evidence.columns[:-1], f.target, k.evidence.columns[-1])
                kept[i] = msgspec.structs.replace(
                    k,
                    what=k.what + f" {f.target} drifted with it ({f.title.split('(')[-1][:-1]}).",
                    evidence=msgspec.structs.replace(
                        k.evidence,
                        columns=cols,
                        metrics=k.evidence.metrics | {"coupled_columns": coupled},
                    ),
                )
                break
        else:
            kept.append(f)
    return kept
