"""SQL helpers for plugins: quoting and the timestamp rule every plugin shares.

Plugins build DuckDB SQL over the table ``data``; these keep identifiers and
literals safe and make every plugin read timestamps the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (column names may hold spaces or quotes)."""
    return '"' + name.replace('"', '""') + '"'


def string_literal(value: str) -> str:
    """``value`` as an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def timestamp_expr(name: str, dtype: str) -> str:
    """Column ``name`` (of DuckDB type ``dtype``) as a timestamp expression.

    Zoned timestamps are used as they are (a cast would shift them into the session
    time zone); anything else (TIMESTAMP, DATE, ISO strings) goes through TRY_CAST,
    so unparseable values become NULL rather than errors.
    """
    kind = dtype.upper()
    if "TIMESTAMP" in kind and ("TZ" in kind or "TIME ZONE" in kind):
        return quote_ident(name)
    return f"TRY_CAST({quote_ident(name)} AS TIMESTAMP)"


def top_groups(distinct: int, cap: int, source: str = "ev", key: str = "p") -> tuple[str, str]:
    """The common table expression and join that keep the ``cap`` groups of ``key``
    with the most rows of ``source`` (on a tie, the first by ``key``), as
    ``(", top AS (...)", " JOIN top USING (key)")`` to append to a ``WITH`` list and to
    ``FROM source``.

    With no more than ``cap`` groups in all (``distinct``, the column's exact count from
    the dataset description) every group is kept and nothing needs ranking: both parts
    are empty, which spares the query a grouping pass and a join.
    """
    if distinct <= cap:
        return "", ""
    return (
        f", top AS (SELECT {key}, count(*) AS n FROM {source} GROUP BY {key} "
        f"ORDER BY n DESC, {key} LIMIT {int(cap)})",
        f" JOIN top USING ({key})",
    )


def histogram_sql(expr: str, low: float, high: float, bins: int, log: bool = False) -> str:
    """Counts of the numeric ``expr`` over ``data`` in ``bins`` equal bins from ``low``
    to ``high`` (equal in ``ln`` when ``log``): one row ``(bin, n)`` per non-empty
    bin, ``bin`` -1 for values below ``low`` and ``bins`` for values above ``high``.
    Feed the rows to :func:`contracts.charts.histogram_from_rows`."""
    value = f"ln({expr})" if log else expr
    lo, hi = (math.log(low), math.log(high)) if log else (low, high)
    width = (hi - lo) / bins
    positive = f" AND {expr} > 0" if log else ""
    return (
        f"SELECT CASE WHEN v < {lo!r} THEN -1 WHEN v > {hi!r} THEN {bins} "
        f"ELSE least(CAST(floor((v - {lo!r}) / {width!r}) AS BIGINT), {bins - 1}) END AS bin, "
        f"count(*) AS n FROM (SELECT {value} AS v FROM data WHERE {expr} IS NOT NULL"
        f"{positive}) GROUP BY bin ORDER BY bin"
    )


def seeded_sample(
    sql: Callable[[str], Any],
    select: str,
    where: str,
    *,
    key: str,
    seed: int,
    limit: int,
    population: int,
) -> tuple[Any, str]:
    """The seeded sample ``{select} WHERE {where} ORDER BY hash({key}, {seed}), {key}
    LIMIT {limit}``: the ``limit`` rows of smallest hash (ties by ``key``), run with
    ``sql`` (a plugin's ``ctx.data.sql``). Returns the result and that query.

    Ordering every row by its hash is slow on a large table (the sort carries whole
    rows). When ``population`` (the rows ``where`` selects, or an estimate) is more
    than twice ``limit``, the rows are first narrowed to those whose hash lies below
    a threshold that about ``2 * limit`` of them pass. If at least ``limit`` rows pass,
    they hold the ``limit`` smallest hashes, so the result is exactly the full query's;
    otherwise (the estimate was too high) the full query runs. ``select`` ends with its
    ``FROM`` clause; ``key`` is a column (or ``rowid``) it can order by.
    """
    order = f"ORDER BY hash({key}, {seed}), {key} LIMIT {limit}"
    full = f"{select} WHERE {where} {order}"
    if population > 2 * limit:
        threshold = (2**64 * 2 * limit) // population
        narrowed = sql(
            f"{select} WHERE ({where}) AND hash({key}, {seed}) < {threshold}::UBIGINT {order}"
        )
        if narrowed.num_rows == limit:
            return narrowed, full
    return sql(full), full
