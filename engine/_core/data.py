"""Dataset ingestion (CSV/Parquet -> DuckDB) and recorded read access (``ctx.data``).

Ingestion
=========
:func:`ingest` normalizes a CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``,
``.pq``) file into a DuckDB database ``<cache_dir>/<fingerprint>.duckdb`` holding one
table, ``data``, with typed columns in file order and rows in file order. The
computed :class:`~contracts.DatasetInfo` is stored next to it as
``<fingerprint>.json``. Both are built once per fingerprint (file bytes +
:data:`INGEST_VERSION`) and reused afterwards without touching the data. Both are
written to temporary names in ``cache_dir`` and moved into place with
:func:`os.replace`, so a crash never leaves a half-built file under a final name and
two processes racing to build the same fingerprint both end with a valid file (the
second replace swaps in an identical database; readers holding the old file keep a
valid inode).

CSV rules: the first line is always the header (``header=true``, ``skip=0``; the
sniffer is not allowed to guess that leading lines are junk and drop them), the
dialect and column types are auto-detected by DuckDB (timestamps included) from its
default sample, and if that fails (for example a value late in the file does not fit
the sampled type) detection is repeated over the whole file. Column names are the
header cells with surrounding whitespace removed; blank names and names that collide
case-insensitively (DuckDB identifiers are case-insensitive, so ``A`` and ``a``
could never both be queried) are errors rather than being silently renamed. DuckDB
expands ``* ? [ {`` in file names as globs, so such a source is read through a
plainly named symlink.

All statistics are computed in SQL, one column at a time (exact
``count(DISTINCT ...)``, which is deterministic and bounded by one hash table at a
time), so a 10-million-row file never enters Python.

Column roles
============
Deterministic, from the DuckDB type, the column name and the statistics
(``ratio = distinct_count / non-null count``):

* ``DATE``, ``TIMESTAMP*`` -> ``timestamp``.
* ``BOOLEAN`` -> ``boolean``.
* Integer types -> ``identifier`` if the name looks like an id (see below) *and*
  ``ratio > 0.95`` (:data:`ID_RATIO`); otherwise ``numeric``.
* ``FLOAT``, ``DOUBLE``, ``DECIMAL`` -> ``numeric``.
* ``UUID`` -> ``identifier``; ``ENUM`` -> ``categorical``.
* ``VARCHAR``, in this order:

  1. the name looks like an id -> ``identifier``;
  2. ``distinct_count <= max(50, 5% of rows)`` (:data:`CATEGORICAL_MAX`,
     :data:`CATEGORICAL_FRACTION`) -> ``categorical``;
  3. ``ratio > 0.95`` and fewer than 5% of values contain whitespace
     (:data:`ID_WHITESPACE_FRACTION`) -> ``identifier`` (codes, hashes, keys);
  4. otherwise -> ``text`` (free text, or high-cardinality labels).

  Low cardinality is checked before uniqueness on purpose: in a small table every
  label is unique, and ``["north", "south"]`` should read as categorical.
* Anything else (``TIME``, ``INTERVAL``, ``BLOB``, nested types) -> ``text``: the
  roles that plugins compute on (``numeric``, ``timestamp``) must not receive them.

A name *looks like an id* when, split into lower-case words (on non-alphanumerics
and camelCase), its last word is ``id``, ``ids``, ``uuid``, ``guid``, ``pid`` or
``uid`` (``id``, ``job_id``, ``jobId``, ``Job ID``), or the whole name is a common
noun glued to ``id`` (``jobid``, ``userid``, ...; see :data:`_COMPACT_ID`). Plain
words that merely end in "id" (``paid``, ``valid``) do not.

Event roles
===========
``event_roles`` maps an :data:`~contracts.manifest.EventRole` to one column. Roles
are assigned in the order ``case, process, status, user, host, queued, started,
ended``; a column serves at most one role. For the name-based roles, candidate names
are tried in preference order (for each name, columns in dataset order); names are
compared after normalization (lower case, words joined by ``_``) and also with the
separators removed, so ``caseId``, ``case id`` and ``caseid`` all match ``case_id``:

* ``case``: identifier/categorical/text or integer column named ``case_id``,
  ``case``, ``job_id``, ``trace_id``, ``run_id``, ``execution_id``, ``request_id``,
  ``task_id``, ``session_id``, ``id``.
* ``process``: categorical/text column named ``process_name``, ``process``,
  ``activity``, ``activity_name``, ``task_name``, ``task``, ``job_name``,
  ``job_type``, ``step_name``, ``step``, ``operation``, ``event_name``, ``event``,
  ``action``.
* ``status``: categorical/text column named ``status``, ``state``, ``outcome``,
  ``result``, ``job_status``, ``job_state``, ``final_status``, ``final_state``,
  ``exit_status``, ``task_status``.
* ``user``: categorical/identifier/text column named ``user``, ``user_name``,
  ``user_id``, ``owner``, ``submitter``, ``submitted_by``, ``requester``,
  ``requested_by``, ``account``, ``login``, ``actor``, ``resource``.
* ``host``: categorical/identifier/text column named ``host``, ``host_name``,
  ``host_id``, ``server``, ``server_name``, ``server_id``, ``node``, ``node_name``,
  ``node_id``, ``machine``, ``machine_name``, ``worker``, ``instance``.
* ``queued`` / ``started`` / ``ended``: the first ``timestamp`` column (dataset
  order) having a word that starts with ``queue``/``enqueue``/``submit``/``creat``/
  ``arriv``; ``start``/``begin``; ``end``/``finish``/``complet``/``stop``/``done``/
  ``close`` respectively.

Reading
=======
:class:`DataReader` is ``ctx.data``. It opens the database read-only (many worker
processes may do so at once) with ``threads=1`` (single-threaded aggregation makes
floating-point sums bit-identical between runs), ``preserve_insertion_order=true``
(DuckDB then returns rows of any query without ``ORDER BY`` in table order, which is
why plain scans need no sort), external file access disabled (plugins read through
``ctx.data``, never by opening files) and the configuration locked so a query cannot
change any of this. Every call is appended to :attr:`DataReader.accesses`. Unknown
column names raise :class:`UnknownColumnError` (a ``KeyError`` listing the available
columns); names are always quoted, so spaces and quotes in them are safe.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, get_args

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from contracts import ColumnInfo, DataAccess, DatasetInfo
from contracts.dataset import AccessKind
from contracts.manifest import ColumnRole, DataAccessMode, EventRole
from contracts.sql import quote_ident

from .errors import DatasetError

__all__ = [
    "CATEGORICAL_FRACTION",
    "CATEGORICAL_MAX",
    "ID_RATIO",
    "ID_WHITESPACE_FRACTION",
    "INGEST_VERSION",
    "DataReader",
    "UnknownColumnError",
    "fingerprint_file",
    "infer_event_roles",
    "infer_role",
    "ingest",
    "quote_ident",
]

INGEST_VERSION: Final = "1"
"""Part of every fingerprint: bump when ingestion (types, roles, stats) changes meaning."""

ID_RATIO: Final = 0.95
"""Distinct/non-null ratio above which a column can be an identifier."""

CATEGORICAL_MAX: Final = 50
"""A string column with at most this many distinct values is always categorical."""

CATEGORICAL_FRACTION: Final = 0.05
"""... or with at most this fraction of the row count as distinct values."""

ID_WHITESPACE_FRACTION: Final = 0.05
"""Identifiers (by uniqueness) must have fewer than this fraction of values with whitespace."""

READER_MEMORY_LIMIT: Final = "512MB"
"""Per-reader DuckDB memory limit; larger work spills to a private temp directory.
With two workers and the 1 GB ingest limit this keeps a 10M-row run of the whole
fleet under 2 GiB for all processes (see docs/benchmarks.md)."""
INGEST_MEMORY_LIMIT: Final = "1GB"
"""DuckDB memory limit while normalizing a dataset (spills beyond it)."""

_CHUNK = 1 << 20
_MAX_ERROR_CHARS = 300
_CSV_SUFFIXES = (".csv", ".csv.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")

_INTEGER_TYPES = frozenset(
    {
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "UHUGEINT",
    }
)
_FLOAT_TYPES = frozenset({"FLOAT", "DOUBLE", "REAL"})
_ID_WORDS = frozenset({"id", "ids", "uuid", "guid", "pid", "uid"})
_COMPACT_ID = re.compile(
    r"^(job|user|case|session|trace|run|request|task|order|customer|account|transaction"
    r"|event|process|host|node|item|product|device|record|client|member|object|entity)id$"
)

_COLUMN_ROLES: Final = frozenset(get_args(ColumnRole))
_EVENT_ROLES: Final = frozenset(get_args(EventRole))

_STRINGY: Final = frozenset({"categorical", "text", "identifier"})
_NAMED_EVENT_ROLES: Final[tuple[tuple[str, frozenset[str], bool, tuple[str, ...]], ...]] = (
    # (role, accepted column roles, also accept integer dtypes, names in preference order)
    (
        "case",
        _STRINGY,
        True,
        (
            "case_id",
            "case",
            "job_id",
            "trace_id",
            "run_id",
            "execution_id",
            "request_id",
            "task_id",
            "session_id",
            "id",
        ),
    ),
    (
        "process",
        frozenset({"categorical", "text"}),
        False,
        (
            "process_name",
            "process",
            "activity",
            "activity_name",
            "task_name",
            "task",
            "job_name",
            "job_type",
            "step_name",
            "step",
            "operation",
            "event_name",
            "event",
            "action",
        ),
    ),
    (
        "status",
        frozenset({"categorical", "text"}),
        False,
        (
            "status",
            "state",
            "outcome",
            "result",
            "job_status",
            "job_state",
            "final_status",
            "final_state",
            "exit_status",
            "task_status",
        ),
    ),
    (
        "user",
        _STRINGY,
        False,
        (
            "user",
            "user_name",
            "user_id",
            "owner",
            "submitter",
            "submitted_by",
            "requester",
            "requested_by",
            "account",
            "login",
            "actor",
            "resource",
        ),
    ),
    (
        "host",
        _STRINGY,
        False,
        (
            "host",
            "host_name",
            "host_id",
            "server",
            "server_name",
            "server_id",
            "node",
            "node_name",
            "node_id",
            "machine",
            "machine_name",
            "worker",
            "instance",
        ),
    ),
)
_TIME_EVENT_ROLES: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("queued", ("queue", "enqueue", "submit", "creat", "arriv")),
    ("started", ("start", "begin")),
    ("ended", ("end", "finish", "complet", "stop", "done", "close")),
)


# --------------------------------------------------------------------------- helpers


def _words(name: str) -> list[str]:
    """Lower-case words of a column name: split on non-alphanumerics and camelCase."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return [w for w in re.split(r"[^0-9A-Za-z]+", spaced.lower()) if w]


def _looks_like_id(name: str) -> bool:
    words = _words(name)
    if not words:
        return False
    return words[-1] in _ID_WORDS or (len(words) == 1 and bool(_COMPACT_ID.match(words[0])))


def _short_error(exc: BaseException) -> str:
    """The informative part of a DuckDB/Arrow error: no hints, one line, bounded."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    kept = [ln for ln in lines if not ln.lower().startswith(("possible solution", "file:"))]
    text = " - ".join(kept[:2]) or type(exc).__name__
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS - 3] + "..."
    return text


def _kind_of(path: Path) -> str | None:
    lower = path.name.lower()
    if lower.endswith(_CSV_SUFFIXES):
        return "csv"
    if lower.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    return None


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# ----------------------------------------------------------------------- inference


def infer_role(
    name: str,
    dtype: str,
    *,
    rows: int,
    non_null: int,
    distinct: int,
    whitespace: int = 0,
) -> ColumnRole:
    """The role of one column (rules in the module docstring).

    Args:
        name: the column name.
        dtype: the DuckDB type as reported by ``DESCRIBE`` (e.g. ``"BIGINT"``).
        rows: rows in the table.
        non_null: non-null values in the column.
        distinct: distinct non-null values in the column.
        whitespace: values containing whitespace (string columns only).

    Returns:
        One of the :data:`~contracts.manifest.ColumnRole` values.
    """
    upper = dtype.upper()
    ratio = distinct / non_null if non_null else 0.0
    if upper == "DATE" or upper.startswith("TIMESTAMP"):
        return "timestamp"
    if upper == "BOOLEAN":
        return "boolean"
    if upper in _INTEGER_TYPES:
        return "identifier" if _looks_like_id(name) and ratio > ID_RATIO else "numeric"
    if upper in _FLOAT_TYPES or upper.startswith("DECIMAL"):
        return "numeric"
    if upper == "UUID":
        return "identifier"
    if upper.startswith("ENUM"):
        return "categorical"
    if upper.startswith("VARCHAR"):
        if _looks_like_id(name):
            return "identifier"
        if distinct <= max(CATEGORICAL_MAX, CATEGORICAL_FRACTION * rows):
            return "categorical"
        if ratio > ID_RATIO and whitespace < ID_WHITESPACE_FRACTION * non_null:
            return "identifier"
        return "text"
    return "text"


def infer_event_roles(columns: Sequence[ColumnInfo]) -> dict[str, str]:
    """Map event roles to columns (rules in the module docstring); only roles found.

    Args:
        columns: the dataset's columns, in dataset order, with roles already set.

    Returns:
        ``{event_role: column_name}``, in :data:`~contracts.manifest.EventRole` order.
    """
    used: set[str] = set()
    found: dict[str, str] = {}
    normalized = [("_".join(_words(c.name)), "".join(_words(c.name))) for c in columns]
    for role, accepted, integers_ok, names in _NAMED_EVENT_ROLES:
        match = _first_named(columns, normalized, used, accepted, integers_ok, names)
        if match is not None:
            found[role] = match
            used.add(match)
    for role, stems in _TIME_EVENT_ROLES:
        for col in columns:
            if col.name in used or col.role != "timestamp":
                continue
            if any(w.startswith(stems) for w in _words(col.name)):
                found[role] = col.name
                used.add(col.name)
                break
    # Report in the order the roles are declared (EventRole), whatever the search order.
    return {role: found[role] for role in get_args(EventRole) if role in found}


def _first_named(
    columns: Sequence[ColumnInfo],
    normalized: Sequence[tuple[str, str]],
    used: set[str],
    accepted: frozenset[str],
    integers_ok: bool,
    names: Sequence[str],
) -> str | None:
    for wanted in names:
        compact = wanted.replace("_", "")
        for col, (snake, squashed) in zip(columns, normalized, strict=True):
            if col.name in used or (wanted not in (snake, squashed) and compact != squashed):
                continue
            if col.role in accepted or (integers_ok and col.dtype.upper() in _INTEGER_TYPES):
                return col.name
    return None


# ------------------------------------------------------------------------ ingestion


def fingerprint_file(path: Path) -> str:
    """The content fingerprint of a data file.

    Args:
        path: the file.

    Returns:
        Hex sha256 over the file's bytes (streamed in 1 MiB chunks) followed by the
        ingest version, so that a change in ingestion invalidates every cache.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    digest.update(b"\x00engine-ingest-version:" + INGEST_VERSION.encode())
    return digest.hexdigest()


def ingest(source: str | Path, cache_dir: Path) -> DatasetInfo:
    """Normalize a CSV/Parquet file into ``<cache_dir>/<fingerprint>.duckdb``.

    Reuses the database and its stored :class:`DatasetInfo` when this fingerprint was
    ingested before (nothing is recomputed). See the module docstring for the rules.

    Args:
        source: the data file (``.csv``, ``.csv.gz``, ``.parquet``, ``.pq``).
        cache_dir: where normalized databases live; created if missing.

    Returns:
        The dataset's info; ``source`` is ``source`` as given and ``db_path`` the
        absolute path of the database.

    Raises:
        DatasetError: the file is missing, of an unsupported type, empty, has no
            rows or columns, has blank or duplicate column names, or cannot be
            parsed. The message starts with the source path, and nothing is left
            under a final name in ``cache_dir``.
    """
    label = str(source)
    path = Path(source)
    if not path.is_file():
        raise DatasetError(label, "file not found" if not path.exists() else "not a file")
    kind = _kind_of(path)
    if kind is None:
        raise DatasetError(label, "unsupported file type; expected .csv, .csv.gz, .parquet or .pq")
    if path.stat().st_size == 0:
        raise DatasetError(label, "empty file")
    try:
        fingerprint = fingerprint_file(path)
    except OSError as exc:
        raise DatasetError(label, f"cannot read file: {exc.strerror or exc}") from exc

    cache_dir = Path(cache_dir).absolute()
    cache_dir.mkdir(parents=True, exist_ok=True)
    db_path = cache_dir / f"{fingerprint}.duckdb"
    info_path = cache_dir / f"{fingerprint}.json"

    stored = _load_info(db_path, info_path)
    if stored is None:
        stored = _build(label, path, kind, fingerprint, db_path, info_path)
    return msgspec.structs.replace(stored, source=label, db_path=str(db_path))


def _load_info(db_path: Path, info_path: Path) -> DatasetInfo | None:
    """The stored info when both files exist and the sidecar decodes; else ``None``."""
    if not db_path.is_file():
        return None
    try:
        return msgspec.json.decode(info_path.read_bytes(), type=DatasetInfo)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def _build(
    label: str, path: Path, kind: str, fingerprint: str, db_path: Path, info_path: Path
) -> DatasetInfo:
    """Build the database and sidecar under temporary names, then move them in place."""
    token = f"{os.getpid()}-{uuid.uuid4().hex}"
    cache_dir = db_path.parent
    tmp_db = cache_dir / f".{fingerprint}.{token}.tmp.duckdb"
    tmp_info = cache_dir / f".{fingerprint}.{token}.tmp.json"
    spill = cache_dir / f".{fingerprint}.{token}.spill"
    leftovers = [tmp_db, Path(f"{tmp_db}.wal"), tmp_info, spill]
    try:
        con = duckdb.connect(
            str(tmp_db),
            config={
                "preserve_insertion_order": True,
                "temp_directory": str(spill),
                # Bounded so normalizing a 10M-row file stays well inside the memory
                # budget of a run; DuckDB spills to temp_directory beyond it.
                "memory_limit": INGEST_MEMORY_LIMIT,
            },
        )
        try:
            con.execute("SET enable_progress_bar = false")  # never draw on a terminal
            path = _plain_path(path, spill)
            if kind == "csv":
                header = _csv_header(con, label, path)
            else:
                header = _parquet_header(label, path)
            _check_names(label, header)
            _load_table(con, label, path, kind)
            info = _describe(con, label, fingerprint, header)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp_db, db_path)
        tmp_info.write_bytes(msgspec.json.encode(info))
        os.replace(tmp_info, info_path)
        return info
    finally:
        for leftover in leftovers:
            _remove(leftover)


def _plain_path(path: Path, scratch: Path) -> Path:
    """A path DuckDB reads literally: its readers expand ``* ? [ {`` as globs.

    A source whose name contains one is reached through a symlink with a plain name
    in the build's scratch directory (removed with it).
    """
    absolute = path.absolute()
    if not any(ch in str(absolute) for ch in "*?[{"):
        return absolute
    scratch.mkdir(parents=True, exist_ok=True)
    suffix = ".csv.gz" if path.name.lower().endswith(".gz") else path.suffix
    link = scratch / f"source{suffix}"
    try:
        link.symlink_to(absolute)
    except OSError:
        return absolute  # no symlinks here: let DuckDB try the name as given
    return link


def _csv_header(con: duckdb.DuckDBPyConnection, label: str, path: Path) -> list[str]:
    """The raw header cells, read with DuckDB's own dialect detection."""
    try:
        rel = con.sql(
            "SELECT * FROM read_csv(?, header=false, skip=0, all_varchar=true) LIMIT 1",
            params=[str(path)],
        )
        rows = rel.fetchall() if rel is not None else []
    except duckdb.Error as exc:
        raise DatasetError(label, f"cannot parse CSV: {_short_error(exc)}") from exc
    if not rows:
        raise DatasetError(label, "empty file (no header line)")
    return ["" if cell is None else str(cell).strip() for cell in rows[0]]


def _parquet_header(label: str, path: Path) -> list[str]:
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(label, f"cannot parse Parquet: {_short_error(exc)}") from exc
    return [str(name) for name in schema.names]


def _check_names(label: str, names: Sequence[str]) -> None:
    if not names:
        raise DatasetError(label, "no columns")
    blank = [i + 1 for i, name in enumerate(names) if not name.strip()]
    if blank:
        where = ", ".join(str(i) for i in blank)
        raise DatasetError(label, f"blank column name at position(s) {where}")
    seen: dict[str, str] = {}
    duplicates: list[str] = []
    for name in names:
        key = name.casefold()
        if key in seen:
            duplicates.append(name if seen[key] == name else f"{seen[key]}/{name}")
        else:
            seen[key] = name
    if duplicates:
        listed = ", ".join(repr(d) for d in duplicates)
        raise DatasetError(
            label, f"duplicate column name(s) (compared case-insensitively): {listed}"
        )


def _load_table(con: duckdb.DuckDBPyConnection, label: str, path: Path, kind: str) -> None:
    """``CREATE TABLE data`` from the file, in file order."""
    if kind == "parquet":
        attempts = ["SELECT * FROM read_parquet(?)"]
        what = "Parquet"
    else:
        attempts = [
            "SELECT * FROM read_csv(?, header=true, skip=0)",
            # Types sampled from the head of the file did not fit: detect over all of it.
            "SELECT * FROM read_csv(?, header=true, skip=0, sample_size=-1)",
        ]
        what = "CSV"
    error: duckdb.Error | None = None
    for select in attempts:
        try:
            con.execute("DROP TABLE IF EXISTS data")
            con.execute(f"CREATE TABLE data AS {select}", [str(path)])
            return
        except duckdb.Error as exc:
            error = exc
    assert error is not None
    raise DatasetError(label, f"cannot parse {what}: {_short_error(error)}") from error


def _describe(
    con: duckdb.DuckDBPyConnection, label: str, fingerprint: str, header: Sequence[str]
) -> DatasetInfo:
    """Types, counts and roles, all computed in SQL."""
    described = con.execute("DESCRIBE data").fetchall()
    names = [str(row[0]) for row in described]
    if names != list(header):
        raise DatasetError(
            label, f"column names changed while parsing: {list(header)!r} -> {names!r}"
        )
    count = con.execute("SELECT count(*) FROM data").fetchone()
    rows = int(count[0]) if count else 0
    if rows == 0:
        raise DatasetError(label, "no rows (only a header or schema)")
    columns: list[ColumnInfo] = []
    for name, dtype in ((str(r[0]), str(r[1])) for r in described):
        col = quote_ident(name)
        is_string = dtype.upper().startswith("VARCHAR")
        ws = f"count_if(regexp_matches({col}, '\\s'))" if is_string else "0"
        stats = con.execute(f"SELECT count({col}), count(DISTINCT {col}), {ws} FROM data")
        # count_if over an all-null column is NULL, not 0.
        non_null, distinct, whitespace = (int(v or 0) for v in (stats.fetchone() or (0, 0, 0)))
        role = infer_role(
            name, dtype, rows=rows, non_null=non_null, distinct=distinct, whitespace=whitespace
        )
        columns.append(
            ColumnInfo(
                name=name,
                dtype=dtype,
                role=role,
                null_count=rows - non_null,
                distinct_count=distinct,
            )
        )
    return DatasetInfo(
        source=label,
        fingerprint=fingerprint,
        rows=rows,
        columns=tuple(columns),
        event_roles=infer_event_roles(columns),
    )


# -------------------------------------------------------------------------- reading


ALLOWED_CALLS: dict[str, frozenset[str]] = {
    "sql": frozenset({"sql"}),
    "batched": frozenset({"sql", "batches"}),
    "bounded": frozenset({"sql", "batches", "load"}),
    "unbounded": frozenset({"sql", "batches", "load", "load_all"}),
}
"""Which ``ctx.data`` calls each declared ``data_access`` mode allows."""


class DataAccessViolation(PermissionError):
    """A plugin called ``ctx.data`` outside its declared ``data_access``."""


class UnknownColumnError(KeyError):
    """A column name that is not in the dataset; the message lists the available ones.

    A :class:`KeyError` (so ``except KeyError`` works) whose ``str()`` is the plain
    message rather than ``KeyError``'s quoted repr.
    """

    def __init__(self, name: str, available: Sequence[str]) -> None:
        listed = ", ".join(repr(a) for a in available)
        super().__init__(f"unknown column {name!r}; available columns: {listed}")
        self.name = name

    def __str__(self) -> str:
        return str(self.args[0])


class DataReader:
    """Recorded, read-only access to a normalized dataset: ``ctx.data``.

    Opens the DuckDB file lazily (so it can be created in one process and used in
    another) with the deterministic settings described in the module docstring.
    Every ``sql``/``batches``/``load``/``load_all`` call appends a
    :class:`~contracts.DataAccess` to :attr:`accesses`.

    Attributes:
        accesses: every recorded call, in call order. A ``batches`` stream is
            recorded when it is exhausted, closed, garbage-collected, or when the
            reader is closed, whichever comes first, with the rows it yielded.
    """

    def __init__(self, info: DatasetInfo, *, declared: DataAccessMode | None = None) -> None:
        """Wrap ``info``; nothing is opened until the first query.

        Args:
            info: the normalized dataset.
            declared: the plugin manifest's ``data_access``. A call outside it is
                refused with :class:`DataAccessViolation` before any data is read,
                and remembered in :attr:`violations` (so catching it hides nothing).
                ``None`` allows every call (tests, tools).
        """
        self._info = info
        self._allowed = ALLOWED_CALLS[declared] if declared is not None else None
        self.declared = declared
        self.violations: list[str] = []
        self._by_name = {c.name: c for c in info.columns}
        self._con: duckdb.DuckDBPyConnection | None = None
        # The spill directory is removed on close(), or when the reader is collected
        # unclosed (silently: tests that never close a reader must not warn).
        self._spill: weakref.finalize[..., DataReader] | None = None
        # Weak, so that a stream dropped by its consumer is finalized (and recorded)
        # at once; a dict keeps creation order, so close() records deterministically.
        self._streams: dict[int, weakref.ref[_BatchStream]] = {}
        self.accesses: list[DataAccess] = []

    # -- metadata

    @property
    def info(self) -> DatasetInfo:
        """The dataset's info."""
        return self._info

    @property
    def rows(self) -> int:
        """Rows in the dataset."""
        return self._info.rows

    @property
    def columns(self) -> tuple[ColumnInfo, ...]:
        """All columns, in dataset order."""
        return self._info.columns

    def names(self, role: str | None = None) -> list[str]:
        """Column names in dataset order, optionally only those with ``role``.

        Raises:
            ValueError: ``role`` is not a column role.
        """
        if role is None:
            return [c.name for c in self._info.columns]
        if role not in _COLUMN_ROLES:
            raise ValueError(
                f"unknown column role {role!r}; expected one of {sorted(_COLUMN_ROLES)}"
            )
        return [c.name for c in self._info.columns if c.role == role]

    def column(self, name: str) -> ColumnInfo:
        """The column called ``name``.

        Raises:
            KeyError: there is no such column (the message lists the available ones).
        """
        try:
            return self._by_name[name]
        except KeyError:
            raise self._unknown(name) from None

    def event_role(self, role: str) -> str | None:
        """The column serving event role ``role``, or ``None`` when none was found.

        Raises:
            ValueError: ``role`` is not an event role.
        """
        if role not in _EVENT_ROLES:
            raise ValueError(f"unknown event role {role!r}; expected one of {sorted(_EVENT_ROLES)}")
        return self._info.event_roles.get(role)

    # -- data

    def sql(self, query: str, params: list[Any] | None = None) -> pa.Table:
        """Run ``query`` (against table ``data``) and return its whole result.

        Args:
            query: SQL; rows of a query without ``ORDER BY`` come in table order.
            params: values for ``?`` placeholders.

        Returns:
            The result as an Arrow table (empty for statements without a result).
        """
        self._permit("sql")
        rel = self._connection().sql(query, params=params)
        table = rel.to_arrow_table() if rel is not None else pa.table({})
        self._record(DataAccess(kind="sql", rows=table.num_rows, query=query))
        return table

    def batches(self, columns: Sequence[str], rows: int = 65536) -> Iterator[pa.RecordBatch]:
        """Stream ``columns`` in row order, ``rows`` rows per batch (the last may be short).

        The query starts on the first ``next()``; close the iterator (or exhaust it)
        to release it. It runs on its own cursor, so other calls may be interleaved.

        Raises:
            KeyError: an unknown column.
            ValueError: no columns, or ``rows < 1``.
        """
        self._permit("batches")
        select = self._select(columns)
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            raise ValueError(f"batch size must be a positive integer, got {rows!r}")
        stream = _BatchStream(self, select, tuple(columns), rows)
        self._streams[id(stream)] = weakref.ref(stream)
        return stream

    def load(self, columns: Sequence[str], max_rows: int) -> pa.Table:
        """The first ``max_rows`` rows of ``columns``, in row order.

        Raises:
            KeyError: an unknown column.
            ValueError: no columns, or ``max_rows < 0``.
        """
        self._permit("load")
        select = self._select(columns)
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 0:
            raise ValueError(f"max_rows must be a non-negative integer, got {max_rows!r}")
        rel = self._connection().sql(f"{select} LIMIT {max_rows}")
        table = rel.to_arrow_table()
        self._record(
            DataAccess(kind="load", columns=tuple(columns), rows=table.num_rows, limit=max_rows)
        )
        return table

    def load_all(self, columns: Sequence[str]) -> pa.Table:
        """Every row of ``columns``, in row order.

        Raises:
            KeyError: an unknown column.
            ValueError: no columns.
        """
        self._permit("load_all")
        select = self._select(columns)
        table = self._connection().sql(select).to_arrow_table()
        self._record(DataAccess(kind="load_all", columns=tuple(columns), rows=table.num_rows))
        return table

    # -- lifecycle

    def close(self) -> None:
        """Finish open ``batches`` streams (recording them) and close the database."""
        streams, self._streams = self._streams, {}
        for ref in streams.values():
            stream = ref()
            if stream is not None:
                stream.close()
        if self._con is not None:
            con, self._con = self._con, None
            con.close()
        if self._spill is not None:
            self._spill()
            self._spill = None

    def __enter__(self) -> DataReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"DataReader({self._info.source!r}, rows={self._info.rows}, "
            f"columns={len(self._info.columns)})"
        )

    # -- internals

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            db_path = self._info.db_path
            if not db_path or not Path(db_path).is_file():
                raise DatasetError(self._info.source, f"normalized database not found: {db_path!r}")
            spill = tempfile.mkdtemp(prefix="engine-duckdb-")
            self._spill = weakref.finalize(self, shutil.rmtree, spill, True)
            con = duckdb.connect(
                db_path,
                read_only=True,
                config={
                    "threads": 1,
                    "memory_limit": READER_MEMORY_LIMIT,
                    "preserve_insertion_order": True,
                    "temp_directory": spill,
                },
            )
            # Set after connecting: as connect options these two are applied in an
            # order that can reject temp_directory. Locking makes them final for
            # every query (a plugin cannot SET threads or re-enable file access).
            con.execute("SET enable_progress_bar = false")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            self._con = con
        return self._con

    def _unknown(self, name: str) -> UnknownColumnError:
        return UnknownColumnError(name, [c.name for c in self._info.columns])

    def _select(self, columns: Sequence[str]) -> str:
        if isinstance(columns, str):
            raise TypeError(f"columns must be a sequence of names, not a string: use [{columns!r}]")
        cols = list(columns)
        if not cols:
            raise ValueError("at least one column is required")
        for name in cols:
            if name not in self._by_name:
                raise self._unknown(name)
        return f"SELECT {', '.join(quote_ident(c) for c in cols)} FROM data"

    def _permit(self, kind: str) -> None:
        if self._allowed is None or kind in self._allowed:
            return
        message = (
            f"{kind}() is outside the declared data_access {self.declared!r} "
            f"(which allows {', '.join(sorted(self._allowed))})"
        )
        self.violations.append(message)
        raise DataAccessViolation(message)

    def _record(self, access: DataAccess) -> None:
        self.accesses.append(access)

    def _finished(self, stream: _BatchStream, access: DataAccess) -> None:
        self._record(access)
        self._streams.pop(id(stream), None)


class _BatchStream(Iterator[pa.RecordBatch]):
    """The iterator behind :meth:`DataReader.batches`; records itself exactly once."""

    def __init__(
        self, reader: DataReader, select: str, columns: tuple[str, ...], batch_rows: int
    ) -> None:
        self._reader: DataReader | None = reader
        self._select = select
        self._columns = columns
        self._batch_rows = batch_rows
        self._cursor: duckdb.DuckDBPyConnection | None = None
        self._arrow: Any = None
        self._total = 0

    def __iter__(self) -> _BatchStream:
        return self

    def __next__(self) -> pa.RecordBatch:
        reader = self._reader
        if reader is None:
            raise StopIteration
        try:
            if self._arrow is None:
                self._cursor = reader._connection().cursor()
                self._arrow = self._cursor.sql(self._select).to_arrow_reader(self._batch_rows)
            batch = self._arrow.read_next_batch()
        except BaseException:  # StopIteration at the end, or a query error
            self.close()
            raise
        self._total += batch.num_rows
        return batch

    def close(self) -> None:
        """Release the query and record the access (once)."""
        reader, self._reader = self._reader, None
        if reader is None:
            return
        arrow, self._arrow = self._arrow, None
        cursor, self._cursor = self._cursor, None
        if arrow is not None:
            arrow.close()
        if cursor is not None:
            cursor.close()
        kind: AccessKind = "batches"
        reader._finished(
            self,
            DataAccess(kind=kind, columns=self._columns, rows=self._total, limit=self._batch_rows),
        )

    def __enter__(self) -> _BatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
