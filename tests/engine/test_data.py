"""Ingestion (CSV/Parquet -> DuckDB) and the recorded reader behind ``ctx.data``.

Everything here uses real files: CSV/Parquet written to ``tmp_path`` and real DuckDB
databases on disk.
"""

from __future__ import annotations

import gzip
import hashlib
import multiprocessing
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts import DataAccess, DatasetInfo
from contracts.manifest import EventRole
from engine._data import ingest as data_mod
from engine._data.ingest import (
    INGEST_VERSION,
    fingerprint_file,
    infer_role,
    ingest,
)
from engine._worker.reader import DataReader
from engine.errors import DatasetError
from engine.testing import make_context, make_reader

# ----------------------------------------------------------------------------- data


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    lines = [",".join(header)] + [",".join("" if v is None else str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def known_table(n: int = 200) -> pa.Table:
    """One column per role, with exactly known statistics."""
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    return pa.table(
        {
            "id": list(range(n)),
            "ts": pa.array(
                [1_700_000_000_000_000 + i * 60_000_000 for i in range(n)], pa.timestamp("us")
            ),
            "flag": [i % 2 == 0 for i in range(n)],
            "amount": [None if i % 10 == 0 else i * 0.5 for i in range(n)],
            "count": [i % 7 for i in range(n)],
            "region": [["north", "south", "east"][i % 3] for i in range(n)],
            "code": [f"C{i:05d}X" for i in range(n)],
            "comment": [
                f"{words[i % 8]} said {i} things about {words[(i * 3) % 8]}" for i in range(n)
            ],
            "label": [f"L{i % 120}" for i in range(n)],
            "userId": [f"u{i % 9}" for i in range(n)],
        }
    )


def ops_log(path: Path, n: int = 60) -> Path:
    rows = []
    for i in range(n):
        rows.append(
            [
                f"job-{i // 2}",
                ["build", "test", "deploy"][i % 3],
                ["ok", "failed"][i % 2],
                f"2024-01-01 00:{i:02d}:00",
                f"2024-01-01 01:{i:02d}:00",
                f"2024-01-01 02:{i:02d}:30",
                ["ann", "bob"][i % 2],
                ["h1", "h2", "h3"][i % 3],
                i * 1.5,
            ]
        )
    header = [
        "job_id",
        "process_name",
        "status",
        "queued_at",
        "started_at",
        "ended_at",
        "user",
        "host",
        "cpu_seconds",
    ]
    return write_csv(path, header, rows)


def final_files(cache_dir: Path) -> list[str]:
    """Every entry of the cache dir (final names and leftovers alike), apart from the
    fingerprint memo folder ``stat``, which may hold only finished ``.json`` records."""
    if not cache_dir.exists():
        return []
    memo = cache_dir / "stat"
    if memo.exists():
        assert all(p.suffix == ".json" and not p.name.startswith(".") for p in memo.iterdir())
    return sorted(p.name for p in cache_dir.iterdir() if p != memo)


# ------------------------------------------------------------------------ ingestion


def test_types_roles_and_stats_of_known_table(tmp_path: Path) -> None:
    src = tmp_path / "known.parquet"
    pq.write_table(known_table(), src)
    info = ingest(src, tmp_path / "cache")

    by_name = {c.name: c for c in info.columns}
    assert [c.name for c in info.columns] == known_table().column_names
    assert info.rows == 200
    assert {n: (c.dtype, c.role) for n, c in by_name.items()} == {
        "id": ("BIGINT", "identifier"),
        "ts": ("TIMESTAMP", "timestamp"),
        "flag": ("BOOLEAN", "boolean"),
        "amount": ("DOUBLE", "numeric"),
        "count": ("BIGINT", "numeric"),
        "region": ("VARCHAR", "categorical"),
        "code": ("VARCHAR", "identifier"),
        "comment": ("VARCHAR", "text"),
        "label": ("VARCHAR", "text"),
        "userId": ("VARCHAR", "identifier"),
    }
    assert by_name["amount"].null_count == 20
    assert by_name["amount"].distinct_count == 180
    assert by_name["region"].distinct_count == 3
    assert by_name["id"].distinct_count == 200
    assert by_name["flag"].distinct_count == 2
    assert info.source == str(src)
    assert Path(info.db_path).is_absolute()
    assert Path(info.db_path) == (tmp_path / "cache" / f"{info.fingerprint}.duckdb").absolute()


def test_csv_type_detection_includes_timestamps_and_dates(tmp_path: Path) -> None:
    src = write_csv(
        tmp_path / "t.csv",
        ["n", "x", "when", "day", "flag", "name"],
        [
            [1, 1.5, "2024-01-01 10:00:00", "2024-01-01", "true", "a"],
            [2, 2.5, "2024-01-02 11:30:00", "2024-01-02", "false", "b"],
            [3, "", "2024-01-03 12:45:10", "2024-01-03", "true", "a"],
        ],
    )
    info = ingest(src, tmp_path / "cache")
    assert [(c.name, c.dtype, c.role) for c in info.columns] == [
        ("n", "BIGINT", "numeric"),
        ("x", "DOUBLE", "numeric"),
        ("when", "TIMESTAMP", "timestamp"),
        ("day", "DATE", "timestamp"),
        ("flag", "BOOLEAN", "boolean"),
        ("name", "VARCHAR", "categorical"),
    ]
    assert info.columns[1].null_count == 1


@pytest.mark.parametrize(
    ("name", "dtype", "stats", "role"),
    [
        ("id", "INTEGER", (10, 10, 10), "identifier"),
        ("job_id", "BIGINT", (10, 10, 10), "identifier"),
        ("job_id", "BIGINT", (10, 10, 3), "numeric"),  # repeated ids: not unique enough
        ("paid", "BIGINT", (10, 10, 10), "numeric"),  # ends in "id" but is a word
        ("valid", "VARCHAR", (1000, 1000, 2), "categorical"),
        ("amount", "DOUBLE", (10, 10, 10), "numeric"),
        ("price", "DECIMAL(10,2)", (10, 10, 10), "numeric"),
        ("when", "TIMESTAMP WITH TIME ZONE", (10, 10, 10), "timestamp"),
        ("day", "DATE", (10, 10, 10), "timestamp"),
        ("ok", "BOOLEAN", (10, 10, 2), "boolean"),
        ("u", "UUID", (10, 10, 10), "identifier"),
        ("span", "INTERVAL", (10, 10, 10), "text"),
        ("host_id", "VARCHAR", (1000, 1000, 3), "identifier"),  # by name alone
        ("city", "VARCHAR", (3, 3, 3), "categorical"),  # small table: unique but few
        ("city", "VARCHAR", (1000, 1000, 50), "categorical"),
        ("sku", "VARCHAR", (1000, 1000, 990), "identifier"),
        ("note", "VARCHAR", (1000, 1000, 990), "text"),  # unique but with spaces
        ("label", "VARCHAR", (1000, 1000, 400), "text"),
    ],
)
def test_infer_role_rules(name: str, dtype: str, stats: tuple[int, int, int], role: str) -> None:
    rows, non_null, distinct = stats
    whitespace = non_null if name == "note" else 0
    assert (
        infer_role(
            name, dtype, rows=rows, non_null=non_null, distinct=distinct, whitespace=whitespace
        )
        == role
    )


def test_infer_role_counts_whitespace_only_when_the_role_depends_on_it() -> None:
    # counting values with whitespace is a scan of the column at ingest: it is asked
    # for only for a unique string column whose name does not say identifier
    calls: list[str] = []

    def count(n: int, name: str) -> Callable[[], int]:
        return lambda: calls.append(name) or n

    def role(name: str, distinct: int, spaced: int) -> str:
        return infer_role(
            name,
            "VARCHAR",
            rows=1000,
            non_null=1000,
            distinct=distinct,
            whitespace=count(spaced, name),
        )

    assert role("city", 50, 1000) == "categorical"
    assert role("label", 400, 0) == "text"
    assert role("order_id", 1000, 1000) == "identifier"
    assert calls == []
    assert role("note", 1000, 990) == "text"
    assert role("sku", 1000, 0) == "identifier"
    assert calls == ["note", "sku"]


def test_event_roles_on_ops_log(tmp_path: Path) -> None:
    info = ingest(ops_log(tmp_path / "ops.csv"), tmp_path / "cache")
    assert list(info.event_roles) == list(get_args(EventRole))  # declared order
    assert info.event_roles == {
        "case": "job_id",
        "process": "process_name",
        "status": "status",
        "queued": "queued_at",
        "started": "started_at",
        "ended": "ended_at",
        "user": "user",
        "host": "host",
    }
    roles = {c.name: c.role for c in info.columns}
    assert roles["job_id"] == "identifier"
    assert roles["cpu_seconds"] == "numeric"


def test_event_roles_only_include_found_and_match_name_variants(tmp_path: Path) -> None:
    src = write_csv(
        tmp_path / "e.csv",
        ["CaseID", "Activity", "startTime", "finishTime", "paid"],
        [
            [
                f"c{i}",
                ["a", "b"][i % 2],
                f"2024-01-01 00:00:{i:02d}",
                f"2024-01-01 00:01:{i:02d}",
                i,
            ]
            for i in range(10)
        ],
    )
    info = ingest(src, tmp_path / "cache")
    assert info.event_roles == {
        "case": "CaseID",
        "process": "Activity",
        "started": "startTime",
        "ended": "finishTime",
    }


def test_fingerprint_stable_and_content_sensitive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = write_csv(tmp_path / "a.csv", ["x"], [[1], [2]])
    b = write_csv(tmp_path / "b.csv", ["x"], [[1], [2]])
    c = write_csv(tmp_path / "c.csv", ["x"], [[1], [3]])
    fa = fingerprint_file(a)
    assert fa == fingerprint_file(b) == _documented_fingerprint(a.read_bytes())
    assert fingerprint_file(c) != fa
    monkeypatch.setattr(data_mod, "INGEST_VERSION", INGEST_VERSION + "-next")
    assert fingerprint_file(a) != fa


def test_fingerprint_streams_large_files(tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    content = b"x\n" + b"1\n" * (3 << 20)  # 6 MiB: several 1 MiB chunks
    big.write_bytes(content)
    assert fingerprint_file(big) == _documented_fingerprint(content)
    # One byte changed in the last chunk changes it.
    edited = content[:-2] + b"2\n"
    big.write_bytes(edited)
    assert fingerprint_file(big) == _documented_fingerprint(edited)
    assert _documented_fingerprint(edited) != _documented_fingerprint(content)


def _documented_fingerprint(content: bytes) -> str:
    """docs/architecture.md: SHA-256 of the file's bytes followed by the ingest version."""
    return hashlib.sha256(
        content + b"\x00engine-ingest-version:" + INGEST_VERSION.encode()
    ).hexdigest()


def test_second_ingest_reuses_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = ops_log(tmp_path / "ops.csv")
    cache = tmp_path / "cache"
    first = ingest(src, cache)
    db = Path(first.db_path)
    mtime = db.stat().st_mtime_ns
    assert final_files(cache) == sorted([db.name, f"{first.fingerprint}.json"])

    def no_build(*args: object, **kwargs: object) -> DatasetInfo:
        raise AssertionError("database was rebuilt")

    monkeypatch.setattr(data_mod, "_build", no_build)
    copy = tmp_path / "renamed.csv"
    copy.write_bytes(src.read_bytes())
    second = ingest(copy, cache)
    assert db.stat().st_mtime_ns == mtime
    assert second.source == str(copy)
    assert second.fingerprint == first.fingerprint
    assert second.columns == first.columns
    assert second.event_roles == first.event_roles
    assert second.db_path == first.db_path


def test_broken_sidecar_is_rebuilt(tmp_path: Path) -> None:
    src = ops_log(tmp_path / "ops.csv")
    cache = tmp_path / "cache"
    first = ingest(src, cache)
    (cache / f"{first.fingerprint}.json").write_text("{not json")
    again = ingest(src, cache)
    assert again == first
    assert final_files(cache) == sorted(
        [f"{first.fingerprint}.duckdb", f"{first.fingerprint}.json"]
    )


def test_csv_gz_and_parquet_give_same_schema(tmp_path: Path) -> None:
    src = ops_log(tmp_path / "ops.csv")
    gz = tmp_path / "ops.csv.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    pqt = tmp_path / "ops.pq"
    with DataReader(ingest(src, tmp_path / "c1")) as reader:
        pq.write_table(reader.sql("SELECT * FROM data"), pqt)
        plain = reader.info
    from_gz = ingest(gz, tmp_path / "c2")
    from_pq = ingest(pqt, tmp_path / "c3")
    assert from_gz.schema_view() == plain.schema_view() == from_pq.schema_view()
    assert from_gz.rows == from_pq.rows == plain.rows == 60


def test_row_order_preserved_on_large_csv(tmp_path: Path) -> None:
    n = 250_000  # several row groups and CSV buffers: parallel reads must keep order
    src = tmp_path / "seq.csv"
    src.write_text("seq,val\n" + "".join(f"{i},{(i * 7919) % 1000}\n" for i in range(n)))
    with DataReader(ingest(src, tmp_path / "cache")) as reader:
        assert reader.load_all(["seq"]).column(0).to_pylist() == list(range(n))
        total = 0
        for batch in reader.batches(["seq"], rows=100_000):
            assert batch.column(0).to_pylist() == list(range(total, total + batch.num_rows))
            total += batch.num_rows
        assert total == n
        assert reader.load(["seq"], 5).column(0).to_pylist() == [0, 1, 2, 3, 4]


def test_glob_characters_in_file_name_are_literal(tmp_path: Path) -> None:
    write_csv(tmp_path / "data1.csv", ["a"], [[1], [2], [3]])  # a glob would also match it
    odd = write_csv(tmp_path / "data[1]*.csv", ["a"], [[7]])
    info = ingest(odd, tmp_path / "cache")
    assert info.rows == 1
    assert info.source == str(odd)
    with DataReader(info) as reader:
        assert reader.load_all(["a"]).column(0).to_pylist() == [7]
    assert final_files(tmp_path / "cache") == sorted(
        [f"{info.fingerprint}.duckdb", f"{info.fingerprint}.json"]
    )


def test_csv_types_detected_beyond_the_sample(tmp_path: Path) -> None:
    n = 30_000  # more than DuckDB's default sniffing sample
    src = tmp_path / "late.csv"
    src.write_text("k\n" + "".join(f"{i}\n" for i in range(n)) + "not-a-number\n")
    info = ingest(src, tmp_path / "cache")
    assert info.rows == n + 1
    assert info.columns[0].dtype == "VARCHAR"


# ------------------------------------------------------------------------- errors


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, expected message fragment)."""
    empty = tmp / "empty.csv"
    empty.write_bytes(b"")
    header_only = tmp / "header.csv"
    header_only.write_text("a,b\n")
    dup = tmp / "dup.csv"
    dup.write_text("a,b,a\n1,2,3\n")
    dup_case = tmp / "dupcase.csv"
    dup_case.write_text("Name,name\nx,y\n")
    blank = tmp / "blank.csv"
    blank.write_text("a,,b\n1,2,3\n")
    garbage = tmp / "garbage.csv"
    garbage.write_bytes(b"\xff\xfe\x00\x81col\x00\n\x80\x81\x82,\xc3\x28\n" * 4)
    bad_parquet = tmp / "bad.parquet"
    bad_parquet.write_bytes(b"PAR1 this is not really parquet PAR1")
    empty_gz = tmp / "empty.csv.gz"
    empty_gz.write_bytes(gzip.compress(b""))
    txt = tmp / "data.txt"
    txt.write_text("a,b\n1,2\n")
    dup_parquet = tmp / "dup.parquet"
    pq.write_table(pa.table([pa.array([1]), pa.array([2])], names=["a", "a"]), dup_parquet)
    return {
        "missing": (tmp / "nope.csv", "not found"),
        "unsupported": (txt, "unsupported file type"),
        "empty": (empty, "empty file"),
        "empty_gz": (empty_gz, "empty file"),
        "header_only": (header_only, "no rows"),
        "duplicate": (dup, "duplicate column name"),
        "duplicate_case": (dup_case, "duplicate column name"),
        "duplicate_parquet": (dup_parquet, "duplicate column name"),
        "blank": (blank, "blank column name"),
        "garbage": (garbage, "cannot parse CSV"),
        "bad_parquet": (bad_parquet, "cannot parse Parquet"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "unsupported",
        "empty",
        "empty_gz",
        "header_only",
        "duplicate",
        "duplicate_case",
        "duplicate_parquet",
        "blank",
        "garbage",
        "bad_parquet",
    ],
)
def test_dataset_errors_are_path_qualified_and_leave_nothing(tmp_path: Path, case: str) -> None:
    path, fragment = _bad_files(tmp_path)[case]
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError) as err:
        ingest(path, cache)
    assert str(err.value).startswith(f"{path}: ")
    assert err.value.path == str(path)
    assert fragment in str(err.value)
    assert len(str(err.value)) < 500
    assert final_files(cache) == []


def test_directory_is_not_a_dataset(tmp_path: Path) -> None:
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    with pytest.raises(DatasetError, match="not a file"):
        ingest(folder, tmp_path / "cache")


# ------------------------------------------------------------------------- reader


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[DataReader]:
    table = pa.table(
        {
            "n": list(range(10)),
            "x": [i / 4 for i in range(10)],
            'odd name "q"': [f"v{i}" for i in range(10)],
        }
    )
    with make_reader(table, tmp_path) as r:
        yield r


def test_reader_metadata(reader: DataReader) -> None:
    assert reader.rows == 10
    assert [c.name for c in reader.columns] == ["n", "x", 'odd name "q"']
    assert reader.names() == ["n", "x", 'odd name "q"']
    assert reader.names("numeric") == ["n", "x"]
    assert reader.names("timestamp") == []
    assert reader.column("x").dtype == "DOUBLE"
    assert reader.event_role("case") is None
    assert reader.info.rows == 10
    with pytest.raises(KeyError, match=r"unknown column 'nope'.*'n', 'x'"):
        reader.column("nope")
    with pytest.raises(ValueError, match="unknown column role"):
        reader.names("numbers")
    with pytest.raises(ValueError, match="unknown event role"):
        reader.event_role("owner")
    assert reader.accesses == []


def test_sql_returns_rows_and_is_recorded(reader: DataReader) -> None:
    table = reader.sql("SELECT n, x FROM data WHERE n >= ?", [7])
    assert table.to_pydict() == {"n": [7, 8, 9], "x": [1.75, 2.0, 2.25]}
    assert reader.sql("SELECT sum(x) AS s FROM data").to_pylist() == [{"s": 11.25}]
    assert reader.accesses == [
        DataAccess(kind="sql", rows=3, query="SELECT n, x FROM data WHERE n >= ?"),
        DataAccess(kind="sql", rows=1, query="SELECT sum(x) AS s FROM data"),
    ]


def test_load_and_load_all_in_row_order(reader: DataReader) -> None:
    odd = 'odd name "q"'
    assert reader.load(["n", odd], 3).to_pydict() == {"n": [0, 1, 2], odd: ["v0", "v1", "v2"]}
    assert reader.load(["n"], 0).num_rows == 0
    assert reader.load(["n"], 100).num_rows == 10
    assert reader.load_all([odd]).column(0).to_pylist() == [f"v{i}" for i in range(10)]
    assert reader.accesses == [
        DataAccess(kind="load", columns=("n", odd), rows=3, limit=3),
        DataAccess(kind="load", columns=("n",), rows=0, limit=0),
        DataAccess(kind="load", columns=("n",), rows=10, limit=100),
        DataAccess(kind="load_all", columns=(odd,), rows=10),
    ]


def test_batches_stream_in_order_and_record_total(reader: DataReader) -> None:
    batches = list(reader.batches(["n"], rows=4))
    assert [b.num_rows for b in batches] == [4, 4, 2]
    assert [v for b in batches for v in b.column(0).to_pylist()] == list(range(10))
    assert reader.accesses == [DataAccess(kind="batches", columns=("n",), rows=10, limit=4)]


def test_batches_stopped_early_still_recorded(reader: DataReader) -> None:
    for batch in reader.batches(["x"], rows=3):
        assert batch.num_rows == 3
        break
    assert reader.accesses == [DataAccess(kind="batches", columns=("x",), rows=3, limit=3)]

    stream = reader.batches(["n"], rows=2)
    next(stream)
    next(stream)
    stream.close()  # type: ignore[attr-defined]
    assert reader.accesses[-1] == DataAccess(kind="batches", columns=("n",), rows=4, limit=2)
    assert len(reader.accesses) == 2


def test_open_streams_recorded_on_close(tmp_path: Path) -> None:
    r = make_reader({"a": [1, 2, 3]}, tmp_path)
    kept = r.batches(["a"], rows=1)
    next(kept)
    untouched = r.batches(["a"])
    r.close()
    assert r.accesses == [
        DataAccess(kind="batches", columns=("a",), rows=1, limit=1),
        DataAccess(kind="batches", columns=("a",), rows=0, limit=65536),
    ]
    assert list(kept) == [] and list(untouched) == []
    assert len(r.accesses) == 2


def test_sql_can_interleave_with_an_open_stream(reader: DataReader) -> None:
    seen = []
    for batch in reader.batches(["n"], rows=5):
        total = reader.sql("SELECT count(*) AS c FROM data").column(0)[0].as_py()
        seen.append((batch.num_rows, total))
    assert seen == [(5, 10), (5, 10)]
    assert [a.kind for a in reader.accesses] == ["sql", "sql", "batches"]


def test_unknown_columns_and_bad_arguments(reader: DataReader) -> None:
    with pytest.raises(KeyError, match=r"unknown column 'nope'; available columns: 'n', 'x'"):
        reader.batches(["n", "nope"])
    with pytest.raises(KeyError, match="'missing'"):
        reader.load(["missing"], 3)
    with pytest.raises(KeyError, match="'N'"):
        reader.load_all(["N"])
    with pytest.raises(ValueError, match="at least one column"):
        reader.load_all([])
    with pytest.raises(ValueError, match="max_rows"):
        reader.load(["n"], -1)
    with pytest.raises(ValueError, match="batch size"):
        reader.batches(["n"], rows=0)
    with pytest.raises(TypeError, match="not a string"):
        reader.load_all("n")
    assert reader.accesses == []


def test_reader_is_locked_down(reader: DataReader, tmp_path: Path) -> None:
    import duckdb

    assert reader.sql("SELECT current_setting('threads') AS t").to_pylist() == [{"t": 1}]
    with pytest.raises(duckdb.Error):
        reader.sql("SET threads = 4")
    outside = write_csv(tmp_path / "outside.csv", ["a"], [[1]])
    with pytest.raises(duckdb.Error):
        reader.sql(f"SELECT * FROM read_csv('{outside}')")
    with pytest.raises(duckdb.Error):
        reader.sql("DELETE FROM data")


def test_reader_reopens_lazily_and_missing_db_is_dataset_error(tmp_path: Path) -> None:
    r = make_reader({"a": [1, 2]}, tmp_path)
    r.close()
    assert r.load_all(["a"]).num_rows == 2  # reopened on demand
    r.close()
    gone = DataReader(DatasetInfo(source="x.csv", fingerprint="f", rows=1, columns=()))
    with pytest.raises(DatasetError, match="normalized database not found"):
        gone.sql("SELECT 1")


def test_a_reader_that_never_spills_leaves_no_folder(tmp_path: Path) -> None:
    # DuckDB's spill folder is named, not created: DuckDB makes it when a query first
    # spills. A job process killed mid-plugin (a timeout, a memory cap) runs no clean-up,
    # so a folder made up front was left behind by every such kill.
    r = make_reader({"a": list(range(1000))}, tmp_path)
    assert r.sql("SELECT sum(a) AS s FROM data").column("s")[0].as_py() == 499500
    assert r._spill is not None
    (spill,) = r._spill.peek()[2][:1]  # the folder its clean-up would remove
    assert Path(spill).name.startswith("engine-duckdb-")
    assert not Path(spill).exists()
    r.close()


def test_make_context(tmp_path: Path) -> None:
    ctx = make_context(
        {"job_id": ["a", "b"], "v": [1.0, 2.0]},
        tmp_path,
        plugin_id="p1",
        settings={"k": 3},
        seed=7,
    )
    assert ctx.plugin_id == "p1"
    assert ctx.run_id == "test-run"
    assert ctx.settings == {"k": 3}
    assert ctx.seed == 7
    assert ctx.upstream == {}
    assert ctx.artifacts_dir == tmp_path / "artifacts" / "p1"
    assert ctx.data.rows == 2
    assert ctx.data.event_role("case") == "job_id"
    assert ctx.data.load_all(["v"]).column(0).to_pylist() == [1.0, 2.0]
    ctx.data.close()
    from_csv = make_context(ops_log(tmp_path / "ops.csv"), tmp_path)
    assert from_csv.data.rows == 60
    from_csv.data.close()


# ------------------------------------------------------------------ multi-process

_BARRIER: Any = None


def _init_worker(barrier: Any) -> None:
    global _BARRIER
    _BARRIER = barrier


def _read_in_worker(info_json: bytes) -> tuple[int, float, int]:
    """Open the database, wait until every worker has it open, then read it."""
    import msgspec

    info = msgspec.json.decode(info_json, type=DatasetInfo)
    with DataReader(info) as reader:
        count = reader.sql("SELECT count(*) AS c FROM data").column(0)[0].as_py()
        _BARRIER.wait(timeout=60)
        total = reader.sql("SELECT sum(cpu_seconds) AS s FROM data").column(0)[0].as_py()
        streamed = sum(b.num_rows for b in reader.batches(["job_id"], rows=7))
    return int(count), float(total), streamed


def test_two_processes_read_the_same_database(tmp_path: Path) -> None:
    import msgspec

    info = ingest(ops_log(tmp_path / "ops.csv"), tmp_path / "cache")
    payload = msgspec.json.encode(info)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    with DataReader(info) as here:  # the parent holds it open too
        assert here.rows == 60
        here.sql("SELECT 1")
        with ctx.Pool(2, initializer=_init_worker, initargs=(barrier,)) as pool:
            results = pool.map(_read_in_worker, [payload, payload])
    expected = sum(i * 1.5 for i in range(60))
    assert results == [(60, expected, 60), (60, expected, 60)]


def _init_racer(barrier: Any) -> None:
    """Both builders meet before their first rename: each has built its own files
    and neither has found the other's, so the two renames really race."""
    real = os.replace

    def replace(src: Any, dst: Any) -> None:
        if barrier is not None and str(dst).endswith(".duckdb"):
            barrier.wait(timeout=60)
        real(src, dst)

    data_mod.os.replace = replace  # type: ignore[attr-defined]


def test_racing_builds_both_leave_valid_file(tmp_path: Path) -> None:
    src = ops_log(tmp_path / "ops.csv")
    cache = tmp_path / "cache"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    with ctx.Pool(2, initializer=_init_racer, initargs=(barrier,)) as pool:
        infos = pool.starmap(ingest, [(src, cache), (src, cache)])
    assert barrier.n_waiting == 0 and not barrier.broken  # both arrived: both built
    assert infos[0] == infos[1]
    assert final_files(cache) == sorted(
        [f"{infos[0].fingerprint}.duckdb", f"{infos[0].fingerprint}.json"]
    )
    with DataReader(infos[0]) as reader:
        assert reader.sql("SELECT count(*) AS c FROM data").column(0)[0].as_py() == 60
    assert os.path.getsize(infos[0].db_path) > 0


def test_all_null_text_column_is_ingested(tmp_path: Path) -> None:
    path = tmp_path / "nulls.parquet"
    pq.write_table(
        pa.table({"a": [1, 2, 3], "note": pa.array([None, None, None], type=pa.string())}), path
    )
    info = ingest(path, tmp_path / "cache")
    note = next(c for c in info.columns if c.name == "note")
    assert (note.null_count, note.distinct_count) == (3, 0)
