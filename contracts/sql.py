"""SQL helpers for plugins: quoting and the timestamp rule every plugin shares.

Plugins build DuckDB SQL over the table ``data``; these keep identifiers and
literals safe and make every plugin read timestamps the same way.
"""

from __future__ import annotations


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
