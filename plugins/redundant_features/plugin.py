"""redundant_features: columns whose information another column already holds.

Four relationships, each measured in SQL over all rows (a seeded reservoir sample
only screens candidates or confirms a rank correlation), looked for in this order; a
column is recommended for removal once, for the first relationship that names it:

1. ``near_duplicate``: two columns of one family (numbers, text, times), each with
   three or more values and the same most frequent value, that hold the same value
   on at least ``min_agreement`` of the informative rows: rows where either has a
   value, other than those where both sit at that most frequent value (two mostly-zero
   pixel columns agree on their zeros by chance). Over all rows. Two-valued flags are
   left to the correlation.
2. ``function``: one encoding of time that is an exact function of another, a
   coarser one (``hour`` of the HHMM clock ``sched_dep_time``, ``month`` of the
   timestamp ``time_hour``, ``year`` of a decimal-year ``date``): in every group of rows
   sharing a value of the determinant (a timestamp, clock time, calendar part or
   numeric timestamp) the dependent (a calendar part or numeric timestamp) takes one
   value (``min = max``). Screened on the sample, confirmed over all rows. The
   determinant needs ``min_group_rows`` rows per value on average (a near-unique column
   "determines" everything). Functions between other columns (a plane's seat count of
   its model) are attributes, not encodings: the category relation below covers the
   strong ones, and dropping such a column would lose a covariate.
3. ``linear``: two quantity columns with ``abs(Pearson r) > min_abs_r`` over all rows
   (every pair, one SQL aggregate), confirmed on the sample by scipy.stats.pearsonr
   (``p < alpha``) and scipy.stats.spearmanr (``abs(rho) >= min_abs_spearman``, so one
   shared extreme row cannot fake it). Pairs of columns that both follow row order or
   the event time (``positional_r``) are trivially correlated and skipped. In a table
   with a time axis, two persistent series (lag-1 autocorrelation >= ``persistent_r``
   in time order) must also move together step by step (``abs(r)`` of their changes
   >= ``min_abs_r_diff``): levels that share a trend correlate whatever they measure.
   And they must do so in each half of the time range (the changes of the first and of
   the second half of the rows in time order each correlate with the sign of the whole,
   one-sided Student t p < ``half_alpha``): a correlation of changes that one episode
   makes, a shock both series went through (a recession), and that the other half does
   not replicate is a shared cycle, not shared information.
4. ``category``: a quantity column that a categorical column determines: adjusted
   eta² (the share of its variance between the categories) of at least
   ``min_eta_squared``, from one ``GROUP BY`` per categorical column.

Which column to drop: of a function or a category relation, the dependent (it can be
rebuilt from the other); of a near-duplicate or linear pair, the one with more missing
values, or on a tie the later in dataset order. A column is never dropped in favour
of one already recommended for removal, and identifiers, clock times and text are
never targets. Only quantity columns (semantic quantity, count, share) enter the
correlations: a code or a clock time correlates with anything in order.
"""

from __future__ import annotations

import math
from itertools import combinations

import msgspec
import numpy as np
from scipy import stats

from contracts import QUANTITY_SEMANTICS, Evidence, Finding, HeatMap, na, ok
from contracts.charts import MAX_CHART_VALUES
from contracts.sql import quote_ident as _q
from contracts.sql import timestamp_expr

NEVER_DROPPED = frozenset({"identifier", "clock_time"})
TIME_SEMANTICS = frozenset({"clock_time", "calendar_part", "timestamp"})
CHUNK = 400  # aggregates per query: bounds the hash tables DuckDB holds at once
MODE_MAX_DISTINCT = 100_000  # columns with more values are not given a most frequent one
ORDER = ("near_duplicate", "function", "linear", "category")
HEAT_MAX = math.isqrt(MAX_CHART_VALUES)  # columns a heat map can show (a square of cells)


def _num(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _settings(ctx) -> dict:
    s = ctx.settings
    return {
        "min_abs_r": float(s.get("min_abs_r", 0.95)),
        "min_abs_rho": float(s.get("min_abs_spearman", 0.8)),
        "alpha": float(s.get("alpha", 0.001)),
        "min_rows": int(s.get("min_rows", 100)),
        "sample": int(s.get("max_sample", 50000)),
        "max_columns": int(s.get("max_columns", 200)),
        "positional_r": float(s.get("positional_r", 0.9)),
        "min_eta2": float(s.get("min_eta_squared", 0.95)),
        "min_group_rows": int(s.get("min_group_rows", 10)),
        "min_agreement": float(s.get("min_agreement", 0.99)),
        "persistent_r": float(s.get("persistent_r", 0.9)),
        "min_abs_r_diff": float(s.get("min_abs_r_diff", 0.8)),
        "half_alpha": float(s.get("half_alpha", 0.05)),
    }


def _chunks(items: list, size: int = CHUNK):
    for i in range(0, len(items), size):
        yield items[i : i + size]


class _Picker:
    """Chooses the column to drop per relation: each column dropped once, never in
    favour of a dropped one, never an identifier, clock time or text column."""

    def __init__(self, ctx) -> None:
        self.info = {c.name: c for c in ctx.data.columns}
        self.order = {n: i for i, n in enumerate(self.info)}
        self.kept: set[str] = set()
        self.dropped: dict[str, dict] = {}
        self.checked: list[str] = []
        self.pearson: dict[tuple[str, str], float | None] = {}

    def droppable(self, name: str) -> bool:
        c = self.info[name]
        return c.semantic not in NEVER_DROPPED and c.role not in ("identifier", "text")

    def rank(self, name: str) -> tuple[int, int]:
        return self.info[name].null_count, self.order[name]

    def keeper_of_pair(self, a: str, b: str) -> tuple[str, str]:
        """(keep, drop): more missing values is dropped; on a tie the later column."""
        return (a, b) if self.rank(a) < self.rank(b) else (b, a)

    def offer(self, keep: str, drop: str, relation: dict) -> None:
        if not self.droppable(drop):
            if self.droppable(keep) and relation["relation"] in ("near_duplicate", "linear"):
                keep, drop = drop, keep
            else:
                semantic = self.info[drop].semantic
                self.checked.append(
                    f"{keep} ~ {drop}: {relation['relation']}, {drop} kept (semantic "
                    f"{semantic}, never dropped)"
                )
                return
        if drop in self.kept or drop in self.dropped or keep in self.dropped:
            if drop in self.dropped:
                self.dropped[drop].setdefault("also", []).append(keep)
            return
        self.kept.add(keep)
        self.dropped[drop] = relation | {"keep": keep}


def run(ctx):
    cfg = _settings(ctx)
    pick = _Picker(ctx)
    info = pick.info
    varying = [c.name for c in ctx.data.columns if c.distinct_count >= 2]
    quantities = [n for n in ctx.data.names("numeric", semantic=QUANTITY_SEMANTICS) if n in varying]
    total_quantities = len(quantities)
    if len(quantities) > cfg["max_columns"]:
        quantities = quantities[: cfg["max_columns"]]
    numeric = [
        n
        for n in varying
        if info[n].role == "numeric" and info[n].semantic not in (None, "identifier")
    ]
    timestamps = [n for n in varying if info[n].role == "timestamp"]
    categorical = [n for n in varying if info[n].role in ("categorical", "boolean")]
    if ctx.data.rows < 3 or len(varying) < 2:
        return na(
            "NOT_APPLICABLE",
            f"Redundancy needs at least two varying columns; found {len(varying)}.",
            checked=[f"{len(varying)} columns with two or more values"],
        )
    checked = [
        f"correlations: {len(quantities)} of {total_quantities} quantity columns"
        + (
            f" (the first {cfg['max_columns']} in dataset order)"
            if total_quantities > len(quantities)
            else ""
        )
    ]
    measured = {
        "near_duplicate": _near_duplicates(ctx, pick, numeric, timestamps, categorical, cfg),
        "function": _functions(ctx, pick, numeric, timestamps, cfg),
        "linear": _linear(ctx, pick, quantities, cfg),
        "category": _categories(ctx, pick, categorical, quantities, cfg),
    }
    for kind in ORDER:
        checked.append(f"{kind}: {measured[kind]}")
    checked += pick.checked

    findings = [
        _finding(drop, rel, info)
        for drop, rel in sorted(pick.dropped.items(), key=lambda kv: pick.order[kv[0]])
    ]
    heat = correlation_heatmap(quantities, pick.pearson, findings)
    # one heat map per run, on the first finding it shows (a copy on every finding of
    # a wide table would repeat thousands of cells in the report)
    shown = set(heat.x_labels) if heat else set()
    first = next((i for i, f in enumerate(findings) if set(f.evidence.columns) <= shown), None)
    if first is not None:
        findings[first] = msgspec.structs.replace(findings[first], charts=(heat,))
    metrics = {
        "checked": "; ".join(checked[: len(ORDER) + 1]),
        "quantity_columns": total_quantities,
        "quantity_columns_correlated": len(quantities),
        "redundant_columns": [f.target for f in findings],
        "notes": checked[len(ORDER) + 1 :],
    }
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            "No column duplicates another's information (near-duplicates, exact functions, "
            f"|r| > {cfg['min_abs_r']:g} between quantities, categories explaining >= "
            f"{cfg['min_eta2']:.0%} of a quantity's variance): "
            + "; ".join(checked[: len(ORDER) + 1])
            + ".",
            checked=checked,
            metrics=metrics,
        )
    return ok(findings=findings, metrics=metrics)


# ---------------------------------------------------------------- near duplicates


def _near_duplicates(ctx, pick, numeric, timestamps, categorical, cfg) -> str:
    families = [
        [(n, f"CAST({_q(n)} AS DOUBLE)") for n in numeric],
        [(n, timestamp_expr(n, pick.info[n].dtype)) for n in timestamps],
        [(n, f"CAST({_q(n)} AS VARCHAR)") for n in categorical],
    ]
    # Columns with two values (flags) are compared by correlation instead.
    families = [[(n, e) for n, e in fam if pick.info[n].distinct_count >= 3] for fam in families]
    distinct = {n: pick.info[n].distinct_count for fam in families for n, _ in fam}
    # near-duplicates have about as many values as each other
    pairs = [
        (a, b)
        for fam in families
        for a, b in combinations(fam, 2)
        if min(distinct[a[0]], distinct[b[0]]) >= 0.5 * max(distinct[a[0]], distinct[b[0]])
    ]
    if not pairs:
        return "no pair of one family with three or more, and comparably many, values each"
    expr = {n: e for pair in pairs for n, e in pair}
    # The most frequent value matters only where it is frequent; a near-unique column
    # gets none (None), which keeps mode()'s hash tables small.
    moded = [n for n in sorted(expr, key=pick.order.get) if distinct[n] <= MODE_MAX_DISTINCT]
    modes = _modes(ctx, moded, expr)
    # Two columns whose most frequent values differ are not near-duplicates: only the
    # pairs with a common one (or none, near-unique columns) are counted.
    live = [(a, b) for a, b in pairs if _same(modes.get(a[0]), modes.get(b[0]))]
    found = []
    for chunk in _chunks(live, CHUNK // 3):
        select, params = [], []
        for k, ((a, ea), (_, eb)) in enumerate(chunk):
            select.append(
                f"count_if({ea} IS NOT NULL OR {eb} IS NOT NULL) AS i{k}, "
                f"count_if({ea} IS NOT DISTINCT FROM {eb} AND {ea} IS NOT NULL) AS e{k}"
            )
            if (mode := modes.get(a)) is not None:
                # rows where both sit at their common most frequent value agree trivially
                select.append(
                    f"count_if({ea} IS NOT DISTINCT FROM ? AND {eb} IS NOT DISTINCT FROM ?) AS c{k}"
                )
                params += [mode, mode]
        row = ctx.data.sql(f"SELECT {', '.join(select)} FROM data", params or None).to_pylist()[0]
        for k, ((a, _), (b, _)) in enumerate(chunk):
            common = int(row.get(f"c{k}") or 0)
            present, equal = int(row[f"i{k}"]) - common, int(row[f"e{k}"]) - common
            if present < cfg["min_rows"] or equal < cfg["min_agreement"] * present:
                continue
            keep, drop = pick.keeper_of_pair(a, b)
            found.append((keep, drop, {
                "relation": "near_duplicate", "agreement": equal / present, "pairs": present,
                "modal_rows_left_out": common,
            }))  # fmt: skip
    found.sort(key=lambda f: (pick.rank(f[0]), pick.order[f[1]]))
    for keep, drop, relation in found:
        pick.offer(keep, drop, relation)
    return (
        f"{len(pairs)} pairs over all rows, {len(found)} equal on >= "
        f"{cfg['min_agreement']:.0%} of the rows where either has a value off their "
        "common most frequent one"
    )


def _modes(ctx, names: list[str], expr: dict[str, str]) -> dict[str, object]:
    """The most frequent value of each of ``names`` (None for a column of nulls)."""
    out: dict[str, object] = {}
    for chunk in _chunks(names, CHUNK):
        cells = ", ".join(f"mode({expr[n]}) AS m{k}" for k, n in enumerate(chunk))
        row = ctx.data.sql(f"SELECT {cells} FROM data").to_pylist()[0]
        out |= {n: row[f"m{k}"] for k, n in enumerate(chunk)}
    return out


def _same(a: object, b: object) -> bool:
    """SQL's ``IS NOT DISTINCT FROM`` of two fetched values (NaN equals NaN there)."""
    nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return nan or a == b


# ------------------------------------------------------------------ functions


def _violations(ctx, source: str, determinant: str, dependents: list[str]) -> dict[str, int]:
    """Per dependent: the groups of ``determinant`` in which it takes two or more
    values (min != max over its non-null values). Zero everywhere means a function."""
    out: dict[str, int] = {}
    for chunk in _chunks(dependents, CHUNK // 2):
        inner = ", ".join(
            f"min({_q(b)}) IS DISTINCT FROM max({_q(b)}) AS v{k}" for k, b in enumerate(chunk)
        )
        outer = ", ".join(f"count_if(v{k}) AS v{k}" for k in range(len(chunk)))
        row = ctx.data.sql(
            f"{source}, g AS (SELECT {inner} FROM src GROUP BY {_q(determinant)}) "
            f"SELECT {outer} FROM g"
        ).to_pylist()[0]
        out |= {b: int(row[f"v{k}"]) for k, b in enumerate(chunk)}
    return out


def _functions(ctx, pick, numeric, timestamps, cfg) -> str:
    rows = ctx.data.rows
    if rows < cfg["min_rows"]:
        return f"not checked: {rows} rows (< {cfg['min_rows']})"
    limit = rows / cfg["min_group_rows"]
    timelike = [n for n in numeric if pick.info[n].semantic in TIME_SEMANTICS]
    determinants = [n for n in timelike + timestamps if pick.info[n].distinct_count <= limit]
    dependents = [n for n in timelike if pick.info[n].semantic != "clock_time"]
    pairs = {
        a: [
            b
            for b in dependents
            if a != b and pick.info[b].distinct_count <= pick.info[a].distinct_count
        ]
        for a in sorted(determinants, key=pick.order.get)
    }
    pairs = {a: bs for a, bs in pairs.items() if bs}
    if not pairs:
        return (
            f"no time column (timestamp, clock time, calendar part) with at least "
            f"{cfg['min_group_rows']} rows per value that determines another"
        )
    sampled = rows > cfg["sample"]
    seed = int(ctx.seed) % 2_147_483_647
    sample = (
        f"WITH src AS (SELECT * FROM data USING SAMPLE reservoir({cfg['sample']} ROWS) "
        f"REPEATABLE ({seed}))"
    )
    holds = []
    for a, bs in pairs.items():
        # The sample screen is necessary, not sufficient: what holds there is confirmed
        # on all rows.
        found = [
            b
            for b, v in _violations(
                ctx, sample if sampled else "WITH src AS (SELECT * FROM data)", a, bs
            ).items()
            if v == 0
        ]
        if sampled and found:
            found = [
                b
                for b, v in _violations(ctx, "WITH src AS (SELECT * FROM data)", a, found).items()
                if v == 0
            ]
        holds += [(a, b) for b in found]
    # finest determinant first, so a -> b -> c drops b and c in favour of a
    holds.sort(key=lambda p: (-pick.info[p[0]].distinct_count, pick.order[p[0]], pick.order[p[1]]))
    for a, b in holds:
        pick.offer(a, b, {
            "relation": "function", "determinant_values": pick.info[a].distinct_count,
            "dependent_values": pick.info[b].distinct_count,
        })  # fmt: skip
    n_pairs = sum(len(bs) for bs in pairs.values())
    return f"{n_pairs} ordered pairs, {len(holds)} exact functions over all rows" + (
        f" (screened on a {cfg['sample']}-row sample)" if sampled else ""
    )


# --------------------------------------------------------------------- linear


def _linear(ctx, pick, cols, cfg) -> str:
    if len(cols) < 2:
        return f"{len(cols)} quantity column(s), nothing to correlate"
    x = {n: f"CAST({_q(n)} AS DOUBLE)" for n in cols}
    pairs = list(combinations(cols, 2))
    time_col = next(
        (ctx.data.event_role(r) for r in ("queued", "started") if ctx.data.event_role(r)), None
    ) or next(iter(ctx.data.names("timestamp")), None)
    row: dict = {}
    for start in range(0, len(pairs), CHUNK):
        chunk = pairs[start : start + CHUNK]
        select = ", ".join(
            f"corr({x[a]}, {x[b]}) AS r{start + i}, regr_count({x[a]}, {x[b]}) AS n{start + i}"
            for i, (a, b) in enumerate(chunk)
        )
        row |= ctx.data.sql(f"SELECT {select} FROM data").to_pylist()[0]
    pick.pearson = {pair: _num(row[f"r{i}"]) for i, pair in enumerate(pairs)}
    position = [f"corr({x[n]}, CAST(rowid AS DOUBLE)) AS pos{j}" for j, n in enumerate(cols)]
    if time_col is not None:
        t = f"epoch({timestamp_expr(time_col, pick.info[time_col].dtype)})"
        position += [f"corr({x[n]}, {t}) AS time{j}" for j, n in enumerate(cols)]
    prow = ctx.data.sql(f"SELECT {', '.join(position)} FROM data").to_pylist()[0]
    positional = {
        n
        for j, n in enumerate(cols)
        if max(abs(_num(prow[f"pos{j}"]) or 0.0), abs(_num(prow.get(f"time{j}")) or 0.0))
        >= cfg["positional_r"]
    }
    strong, skipped = [], 0
    for i, (a, b) in enumerate(pairs):
        r, n = _num(row[f"r{i}"]), int(row[f"n{i}"] or 0)
        if r is None or n < cfg["min_rows"] or not abs(r) > cfg["min_abs_r"]:
            continue
        if a in positional and b in positional:
            skipped += 1
            pick.checked.append(f"{a} ~ {b}: r = {r:.4f}, skipped: both follow row order / time")
            continue
        strong.append((a, b, r, n))
    trending = _trending_pairs(ctx, pick, strong, x, time_col, cfg) if time_col else {}
    if strong:
        involved = sorted({c for a, b, _, _ in strong for c in (a, b)}, key=pick.order.get)
        table = ctx.data.sql(
            f"SELECT {', '.join(f'{x[c]} AS {_q(c)}' for c in involved)} FROM data "
            f"USING SAMPLE reservoir({cfg['sample']} ROWS) "
            f"REPEATABLE ({int(ctx.seed) % 2_147_483_647})"
        )
        values = {
            c: np.asarray(table.column(c).to_numpy(zero_copy_only=False), float) for c in involved
        }
    confirmed = 0
    # the best-kept column first (fewest missing, earliest), so that of a, b, c all
    # redundant with each other a is kept and b and c are dropped in its favour
    strong.sort(
        key=lambda s: (
            pick.rank(pick.keeper_of_pair(s[0], s[1])[0]),
            pick.order[s[0]],
            pick.order[s[1]],
        )
    )
    for a, b, r, n in strong:
        va, vb = values[a], values[b]
        keep = ~(np.isnan(va) | np.isnan(vb))
        va, vb = va[keep], vb[keep]
        if va.size < 3 or np.ptp(va) == 0 or np.ptp(vb) == 0:
            continue
        diff_r, halves = trending.get((a, b), (None, ()))
        if diff_r is not None and not abs(diff_r) >= cfg["min_abs_r_diff"]:
            pick.checked.append(
                f"{a} ~ {b}: r = {r:.4f} of levels that both trend over {time_col}, but "
                f"r = {diff_r:.3f} of their changes: a shared trend, not redundancy"
            )
            continue
        unreplicated = [
            (i, hr, hp) for i, (hr, hp) in enumerate(halves) if not hp < cfg["half_alpha"]
        ]
        if unreplicated:
            i, hr, hp = unreplicated[0]
            pick.checked.append(
                f"{a} ~ {b}: r = {r:.4f} of levels and r = {diff_r:.3f} of their changes "
                f"over {time_col}, but r = {hr:.3f} of the changes in the "
                f"{('first', 'second')[i]} half of the time range (one-sided p = {hp:.2g}, "
                f"needs < {cfg['half_alpha']:g} in each half): one episode, a shared cycle, "
                "not redundancy"
            )
            continue
        pr = stats.pearsonr(va, vb)
        rho = float(stats.spearmanr(va, vb).statistic)
        if not (abs(rho) >= cfg["min_abs_rho"] and float(pr.pvalue) < cfg["alpha"]):
            pick.checked.append(f"{a} ~ {b}: r = {r:.4f}, not confirmed (Spearman {rho:.3f})")
            continue
        confirmed += 1
        kept, drop = pick.keeper_of_pair(a, b)
        pick.offer(kept, drop, {
            "relation": "linear", "pearson_r": r, "pairs": n,
            "sample_pearson_r": float(pr.statistic), "sample_spearman_rho": rho,
            "sample_size": int(va.size), "p_value": float(pr.pvalue),
            "changes_pearson_r": diff_r,
            "changes_pearson_r_first_half": halves[0][0] if halves else None,
            "changes_pearson_r_second_half": halves[1][0] if halves else None,
        })  # fmt: skip
    return (
        f"{len(pairs)} pairs of {len(cols)} quantity columns over all rows, {len(strong)} with "
        f"|r| > {cfg['min_abs_r']:g}, {confirmed} confirmed"
        + (f", {skipped} skipped as positional" if skipped else "")
    )


def _trending_pairs(ctx, pick, strong, x, time_col, cfg) -> dict:
    """For pairs of persistent series (lag-1 autocorrelation in time order of at least
    ``persistent_r`` for both): the correlation of their changes from one row to the
    next in time order, and per half of the rows in time order that correlation with
    its one-sided p-value in the whole's direction (Student t, n - 2 degrees of
    freedom). Two series that share a trend correlate in level whatever they measure;
    redundant ones also move together step by step, throughout."""
    if not strong:
        return {}
    t = timestamp_expr(time_col, pick.info[time_col].dtype)
    involved = sorted({c for a, b, _, _ in strong for c in (a, b)}, key=pick.order.get)
    lagged = ", ".join(
        f"{x[c]} AS v{i}, {x[c]} - lag({x[c]}) OVER w AS d{i}, lag({x[c]}) OVER w AS l{i}"
        for i, c in enumerate(involved)
    )
    idx = {c: i for i, c in enumerate(involved)}
    parts = [f"corr(v{i}, l{i}) AS a{i}" for i in range(len(involved))]
    for k, (a, b, _, _) in enumerate(strong):
        da, db = f"d{idx[a]}", f"d{idx[b]}"
        parts.append(f"corr({da}, {db}) AS p{k}")
        for h in (0, 1):
            parts.append(f"corr({da}, {db}) FILTER (WHERE late = {h}) AS p{k}h{h}")
            parts.append(f"regr_count({da}, {db}) FILTER (WHERE late = {h}) AS n{k}h{h}")
    row = ctx.data.sql(
        f"SELECT {', '.join(parts)} FROM (SELECT {lagged}, "
        "CAST(2 * row_number() OVER w > count(*) OVER () AS INTEGER) AS late FROM data "
        f"WINDOW w AS (ORDER BY {t}, rowid))"
    ).to_pylist()[0]
    out = {}
    for k, (a, b, _, _) in enumerate(strong):
        persistent = all((_num(row[f"a{idx[c]}"]) or 0.0) >= cfg["persistent_r"] for c in (a, b))
        if persistent:
            whole = _num(row[f"p{k}"]) or 0.0
            halves = tuple(
                _half(_num(row[f"p{k}h{h}"]) or 0.0, int(row[f"n{k}h{h}"] or 0), whole)
                for h in (0, 1)
            )
            out[(a, b)] = (whole, halves)
    return out


def _half(r: float, n: int, whole: float) -> tuple[float, float]:
    """(r, one-sided p of r in the direction of ``whole``) for a correlation of n pairs."""
    if n < 3:
        return r, 1.0
    signed = r if whole >= 0 else -r
    if signed >= 1.0:
        return r, 0.0
    t_stat = signed * math.sqrt((n - 2) / max(1e-300, 1.0 - signed * signed))
    return r, float(stats.t.sf(t_stat, n - 2))


# ------------------------------------------------------------------- category


def _categories(ctx, pick, categorical, cols, cfg) -> str:
    rows = ctx.data.rows
    groups = [c for c in categorical if pick.info[c].distinct_count <= rows / cfg["min_group_rows"]]
    if not groups or not cols:
        return "no categorical column with enough rows per value, or no quantity column"
    x = {n: f"CAST({_q(n)} AS DOUBLE)" for n in cols}
    found = 0
    for g in groups:
        parts = ", ".join(
            f"count({x[n]}) AS n{j}, var_pop({x[n]}) AS v{j}, avg({x[n]}) AS a{j}"
            for j, n in enumerate(cols)
        )
        by = ctx.data.sql(f"SELECT {parts} FROM data GROUP BY {_q(g)}").to_pylist()
        for j, n in enumerate(cols):
            cells = [(int(r[f"n{j}"]), _num(r[f"v{j}"]), _num(r[f"a{j}"])) for r in by]
            cells = [(k, v, a) for k, v, a in cells if k > 0 and v is not None and a is not None]
            total = sum(k for k, _, _ in cells)
            k_groups = len(cells)
            if k_groups < 2 or total < cfg["min_rows"] or total / k_groups < cfg["min_group_rows"]:
                continue
            mean = sum(k * a for k, _, a in cells) / total
            within = sum(k * v for k, v, _ in cells)
            between = sum(k * (a - mean) ** 2 for k, _, a in cells)
            if not within + between > 0:
                continue
            # adjusted eta²: within and total mean squares, so many small groups do not
            # "explain" variance by their number alone
            eta2 = 1 - (within / (total - k_groups)) / ((within + between) / (total - 1))
            if eta2 < cfg["min_eta2"]:
                continue
            found += 1
            pick.offer(g, n, {
                "relation": "category", "eta_squared_adjusted": eta2, "groups": k_groups,
                "pairs": total,
            })  # fmt: skip
    return f"{len(groups)} categorical x {len(cols)} quantity columns, {found} determined"


# -------------------------------------------------------------------- finding


def correlation_heatmap(cols: list[str], pearson: dict, findings: list) -> HeatMap | None:
    """Pearson r over all rows between the quantity columns correlated: all of them
    when a chart holds that many (``HEAT_MAX``), else those the findings name."""
    total = len(cols)
    if total > HEAT_MAX:
        named = {c for f in findings for c in f.evidence.columns}
        cols = [c for c in cols if c in named][:HEAT_MAX]
    if len(cols) < 2 or not pearson:
        return None
    r = {(a, a): 1.0 for a in cols} | pearson | {(b, a): v for (a, b), v in pearson.items()}
    which = (
        f"the {total} quantity columns"
        if len(cols) == total
        else f"{len(cols)} of the {total} quantity columns (those the findings name)"
    )
    return HeatMap(
        title=f"Pearson correlation of {which}",
        x_labels=tuple(cols),
        y_labels=tuple(cols),
        values=tuple(tuple(r[(a, b)] for b in cols) for a in cols),
        value_label="Pearson r",
        vmin=-1.0,
        vmax=1.0,
        diverging=True,
    )


def _finding(target: str, rel: dict, info) -> Finding:
    keep, relation = rel["keep"], rel["relation"]
    also = rel.get("also", [])
    x_keep, x_target = f"CAST({_q(keep)} AS DOUBLE)", f"CAST({_q(target)} AS DOUBLE)"
    if relation == "near_duplicate":
        what = (
            f"{target} holds the same value as {keep} on {rel['agreement']:.2%} of the "
            f"{rel['pairs']} informative rows (either has a value, and not both the most "
            f"frequent one; {rel['modal_rows_left_out']} such rows left out)."
        )
        title = f"{target} duplicates {keep}"
        query = f"SELECT count_if({_q(keep)} IS DISTINCT FROM {_q(target)}) AS differing FROM data"
        confidence = min(0.99, rel["agreement"])
    elif relation == "function":
        what = (
            f"{target} is an exact function of {keep}: each of the {rel['determinant_values']} "
            f"values of {keep} comes with exactly one value of {target} (over all rows), so "
            f"{target} is a coarser encoding of the same information."
        )
        title = f"{target} is a function of {keep}"
        query = (
            f"SELECT count(DISTINCT row({_q(keep)}, {_q(target)})) AS pairs, "
            f"count(DISTINCT row({_q(keep)})) AS values FROM data"
        )
        confidence = 0.99
    elif relation == "linear":
        r = rel["pearson_r"]
        what = (
            f"{target} {'rises' if r > 0 else 'falls'} almost in lockstep with {keep}: Pearson "
            f"r = {r:.4f} over {rel['pairs']} rows with both values (R² = {r * r:.3f}); "
            f"Spearman {rel['sample_spearman_rho']:.3f} on a sample of {rel['sample_size']}."
        )
        title = f"{target} is redundant with {keep} (r = {r:.3f})"
        query = (
            f"SELECT corr({x_keep}, {x_target}) AS r, "
            f"regr_count({x_keep}, {x_target}) AS n FROM data"
        )
        confidence = max(0.0, min(0.99, abs(r)))
    else:
        what = (
            f"{keep} determines {target}: its {rel['groups']} categories explain "
            f"{rel['eta_squared_adjusted']:.1%} of the variance of {target} (adjusted eta², "
            f"{rel['pairs']} rows), so {target} is close to an attribute of {keep}."
        )
        title = f"{target} is determined by {keep}"
        query = (
            f"SELECT {_q(keep)}, count({x_target}) AS n, avg({x_target}) AS mean, "
            f"stddev_pop({x_target}) AS sd FROM data GROUP BY 1 ORDER BY 1"
        )
        confidence = max(0.0, min(0.99, rel["eta_squared_adjusted"]))
    if also:
        what += f" It is also redundant with {', '.join(sorted(set(also)))}."
    rule = (
        "it can be rebuilt from the other"
        if relation in ("function", "category")
        else "it has more missing values"
        if info[target].null_count != info[keep].null_count
        else "it is the later column"
    )
    metrics = {k: v for k, v in rel.items() if k not in ("keep", "also")}
    return Finding(
        kind="redundant_feature",
        title=title,
        severity="low",
        confidence=float(confidence),
        target=target,
        what=what,
        why=(
            f"{target} adds almost no information beyond {keep}; keeping both double-counts "
            "one signal, inflates the variance of model coefficients (collinearity) and "
            "clutters reports."
        ),
        recommendation=(
            f"Drop {target} from feature sets and models and keep {keep} ({target} is the "
            f"one to drop because {rule}); if {target} is derived from {keep}, document the "
            "derivation instead of storing both."
        ),
        evidence=Evidence(
            columns=(keep, target),
            metrics=metrics
            | {"kept_column": keep, "also_redundant_with": ", ".join(sorted(set(also)))},
            query=query,
            rows=rel.get("pairs"),
        ),
    )
