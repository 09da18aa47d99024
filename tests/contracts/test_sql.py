"""The SQL helpers plugins share: quoting that DuckDB accepts, one timestamp rule."""

from __future__ import annotations

import duckdb

from contracts.sql import quote_ident, string_literal, timestamp_expr


def test_quoting_round_trips_through_duckdb() -> None:
    con = duckdb.connect()
    name = 'odd "name" with spaces'
    value = "it's"
    con.execute(f"CREATE TABLE data ({quote_ident(name)} VARCHAR)")
    con.execute(f"INSERT INTO data VALUES ({string_literal(value)})")
    assert con.execute(f"SELECT {quote_ident(name)} FROM data").fetchone() == (value,)


def test_timestamp_rule() -> None:
    assert timestamp_expr("t", "TIMESTAMP WITH TIME ZONE") == '"t"'
    assert timestamp_expr("t", "TIMESTAMPTZ") == '"t"'
    assert timestamp_expr("t", "VARCHAR") == 'TRY_CAST("t" AS TIMESTAMP)'
    con = duckdb.connect()
    expr = timestamp_expr("t", "VARCHAR")
    row = con.execute(f"SELECT {expr} FROM (SELECT 'not a time' AS t)").fetchone()
    assert row == (None,)
