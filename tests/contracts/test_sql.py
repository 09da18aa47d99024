"""The SQL helpers plugins share: quoting that DuckDB accepts, one timestamp rule."""

from __future__ import annotations

import duckdb
import pytest

from contracts.sql import quote_ident, seeded_sample, string_literal, timestamp_expr, top_groups


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


@pytest.mark.parametrize(
    ("population", "queries"),
    [
        (None, ["narrowed"]),  # the exact count: narrowed, and enough rows pass
        (40_000, ["narrowed", "full"]),  # far too high: too few pass, then the full query
        (1_400, ["full"]),  # at most twice the limit: the full query at once
    ],
)
def test_seeded_sample_is_the_full_query_whichever_way_it_runs(population, queries):
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE data AS SELECT i, i % 7 AS g, 'r' || i AS label FROM range(20000) t(i)"
    )
    where = "g <> 3"
    rows = con.sql(f"SELECT count(*) FROM data WHERE {where}").fetchall()[0][0]
    ran: list[str] = []

    def sql(query: str):
        ran.append(query)
        return con.sql(query).to_arrow_table()

    select = "SELECT i, label FROM data"
    table, query = seeded_sample(
        sql, select, where, key="i", seed=11, limit=700, population=population or rows
    )
    full = f"{select} WHERE {where} ORDER BY hash(i, 11), i LIMIT 700"
    assert query == full
    expected = con.sql(full).to_arrow_table()
    assert table.equals(expected) and table.num_rows == 700
    assert ["full" if q == full else "narrowed" for q in ran] == queries


def test_seeded_sample_of_fewer_rows_than_the_limit_is_all_of_them():
    con = duckdb.connect()
    con.execute("CREATE TABLE data AS SELECT i FROM range(50) t(i)")
    table, _ = seeded_sample(
        lambda q: con.sql(q).to_arrow_table(),
        "SELECT i FROM data",
        "TRUE",
        key="i",
        seed=0,
        limit=100,
        population=10_000,  # an estimate far too high: narrowed first, then all rows
    )
    assert sorted(table.column("i").to_pylist()) == list(range(50))


def _grouped(con: duckdb.DuckDBPyConnection, distinct: int, cap: int) -> list[tuple]:
    top, join = top_groups(distinct, cap)
    return con.execute(
        f"WITH ev AS (SELECT g AS p, v FROM t){top} "
        f"SELECT p, count(*), sum(v) FROM ev{join} GROUP BY p ORDER BY p"
    ).fetchall()


def test_top_groups_keep_the_most_rows_first_and_every_group_under_the_cap() -> None:
    con = duckdb.connect()
    # c: 4 rows, a and b: 3 each (a tie, broken by name), d: 1
    rows = ["c"] * 4 + ["b"] * 3 + ["a"] * 3 + ["d"]
    values = ", ".join(f"('{g}', {v})" for v, g in enumerate(rows))
    con.execute(f"CREATE TABLE t AS SELECT * FROM (VALUES {values}) AS t(g, v)")
    everything = [("a", 3, 24), ("b", 3, 15), ("c", 4, 6), ("d", 1, 10)]
    assert top_groups(4, 4) == ("", "")  # nothing to rank: no pass, no join
    assert _grouped(con, 4, 4) == everything
    assert _grouped(con, 4, 2) == [("a", 3, 24), ("c", 4, 6)]
    assert _grouped(con, 4, 3) == everything[:3]
    # ranked, but the cap reaching every group: the same rows as the plain query
    top, join = top_groups(5, 4)
    assert top.startswith(", top AS (") and join == " JOIN top USING (p)"
    assert _grouped(con, 5, 4) == everything
