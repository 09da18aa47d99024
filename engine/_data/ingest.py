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

When the content is hashed: a file's fingerprint is remembered in
``<cache_dir>/stat/`` under its absolute path, with its size, ``mtime_ns``,
``ctime_ns``, inode and device (:func:`remembered_fingerprint`). A later run whose
file shows exactly those five values reuses the fingerprint without reading the
file; any difference (the file rewritten, touched, replaced, copied, moved to
another file system, or its metadata changed: ``ctime`` moves with every write and
cannot be set back) rehashes the whole content, and the new fingerprint decides as
always whether the normalized database can be reused. One case needs more: a write
in the same tick of the file system's clock as the one before leaves all five values
unchanged. So a file whose mtime or ctime is less than :data:`RACY_NS` (2 s) before
the moment it was hashed is not remembered (git treats its index the same way): it
is hashed again at its next use, until it is old enough for any later write to show
in its times.

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

Column semantics
================
Every column of a numeric type (integers, floats, decimals) also gets a
*semantic*: what its numbers mean, so that analyses of magnitudes (outliers,
shape, drift, correlation, Benford) never judge a code or a time of day. Non-numeric
columns have none (``None``). The statistics come from one SQL aggregate per
numeric column over its finite values: count, min, max, how many values are not
whole numbers, and, for whole numbers, the last two digits (``x mod 100``) and the
digits above them (``x div 100``). The first rule that fires decides
(:func:`infer_semantic`; ``semantic_rule`` records which):

1. ``identifier`` (``name``): the role is ``identifier``, or the values are whole
   numbers and the name looks like an id (above) or a code: its last word is
   ``no``, ``nr``, ``num``, ``number``, ``key``, ``idx``,
   ``index``, ``serial``, ``zip``, ``zipcode``, ``postcode``, ``fips``, ``isbn``,
   ``sku``, ``flight``, ``rownames``, ``rowname``, a word ending in ``code`` or
   ``cod`` (``zipcode``, ``distcod``), or a place unit (``state``, ``county``,
   ``district``, ``region``, ``country``) stored as a number.
2. ``calendar_part``: whole numbers, a word of the name is a calendar unit and the
   values lie in its range: ``year``/``yr`` 1600..2200, ``quarter``/``qtr`` 1..4,
   ``month``/``mon``/``mo`` 1..12, ``week``/``wk`` 1..53, ``day``/``dom``/``mday``
   1..31, ``weekday``/``wday``/``dow`` 0..7, ``doy``/``yday`` 1..366, ``hour``/``hr``
   0..24, ``minute`` 0..59, ``second`` 0..60. (Plurals such as ``days`` are
   durations, not parts.)
3. ``clock_time`` (``hhmm``): whole numbers in 0..2400 whose last two digits never
   reach 60 (minutes 0..59: 2355 and 0005 are neighbours, 2360 does not exist),
   spanning at least 3 distinct hours, and either a name word that speaks of a time
   of day (``time``, ``hhmm``, ``clock``, ``dep``, ``arr``, ``sched``, ``depart``,
   ``arrival``, ``departure``) or at least 30 distinct minute values over at least
   6 hours (random magnitudes would reach 60..99 in two of every five values).
4. ``clock_time`` (``seconds_of_day``): values in 0..86400 spanning at least 6
   hours, and a name saying so (``tod``, ``sod``, ``time of day``, ``seconds of
   day``).
5. ``timestamp``: a point in time stored as a number: a name word ``epoch``,
   ``unix``, ``unixtime``, ``timestamp``, ``ts``, ``datetime``, or a last word
   ``at`` or ``date`` (``created_at``; a decimal-year ``date``), unless a duration
   unit (``s``, ``sec``, ``ms``, ``min``, ``hours``, ``duration``, ...) is in the name.
6. ``identifier`` (``sequence``): at least 20 whole, distinct values in a dense range
   (``max - min + 1 <= 1.5 x count``): row numbers and sequence ids.
7. ``share``: values in 0..100 and a name word starting with ``pct``/``perc``,
   ending in ``pct``, or equal to ``percent``, ``percentage``, ``share``, ``ratio``,
   ``frac``, ``fraction``, ``prop``, ``proportion``: ``fraction`` when the values lie
   in 0..1 and some are fractional, else ``percent``. (Without such a name a column
   of values in 0..1 is a quantity: densities and areas live there too.)
8. ``count``: non-negative whole numbers and a name word ``n``, ``count``,
   ``counts``, ``cnt``, ``num``, ``number``, ``nb``, ``qty``, ``freq``,
   ``frequency``, ``retries``, ``retry``, ``attempts``, ``tries``, ``visits``,
   ``votes``, ``errors``, ``failures``.
9. ``quantity`` otherwise (detail ``binary`` for whole numbers in {0, 1}).
    A numeric column with no finite value has no semantic.

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
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeAlias, get_args

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from contracts import ColumnInfo, DatasetInfo
from contracts.manifest import ColumnRole, ColumnSemantic, EventRole
from contracts.sql import quote_ident

from ..errors import DatasetError

__all__ = [
    "CATEGORICAL_FRACTION",
    "CATEGORICAL_MAX",
    "ID_RATIO",
    "ID_WHITESPACE_FRACTION",
    "INGEST_VERSION",
    "NumericStats",
    "fingerprint_file",
    "infer_event_roles",
    "infer_role",
    "infer_semantic",
    "ingest",
    "quote_ident",
]

INGEST_VERSION: Final = "2"
"""Part of every fingerprint: bump when ingestion (types, roles, stats) changes meaning."""

ID_RATIO: Final = 0.95
"""Distinct/non-null ratio above which a column can be an identifier."""

CATEGORICAL_MAX: Final = 50
"""A string column with at most this many distinct values is always categorical."""

CATEGORICAL_FRACTION: Final = 0.05
"""... or with at most this fraction of the row count as distinct values."""

ID_WHITESPACE_FRACTION: Final = 0.05
"""Identifiers (by uniqueness) must have fewer than this fraction of values with whitespace."""

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

_NUMERIC_PREFIXES: Final = ("DECIMAL", "NUMERIC")
_CODE_LAST_WORDS: Final = frozenset(
    {"no", "nr", "num", "number", "key", "idx", "index", "serial", "zip"}
    | {"zipcode", "postcode", "fips", "isbn", "sku", "flight", "rownames", "rowname"}
    | {"state", "county", "district", "region", "country"}
)
# word -> (detail, low, high): a calendar unit and the range its values must lie in
_CALENDAR_WORDS: Final[dict[str, tuple[str, int, int]]] = {
    **dict.fromkeys(("year", "yr"), ("year", 1600, 2200)),
    **dict.fromkeys(("quarter", "qtr"), ("quarter", 1, 4)),
    **dict.fromkeys(("month", "mon", "mo"), ("month", 1, 12)),
    **dict.fromkeys(("week", "wk"), ("week", 1, 53)),
    **dict.fromkeys(("day", "dom", "mday"), ("day", 1, 31)),
    **dict.fromkeys(("weekday", "wday", "dow"), ("weekday", 0, 7)),
    **dict.fromkeys(("doy", "yday"), ("day_of_year", 1, 366)),
    **dict.fromkeys(("hour", "hr"), ("hour", 0, 24)),
    "minute": ("minute", 0, 59),
    "second": ("second", 0, 60),
}
_CLOCK_WORDS: Final = frozenset(
    {"time", "hhmm", "clock", "dep", "arr", "sched", "depart", "arrival", "departure"}
)
_TIME_POINT_WORDS: Final = frozenset({"epoch", "unix", "unixtime", "timestamp", "ts", "datetime"})
_TIME_POINT_LAST: Final = frozenset({"at", "date"})
_DURATION_WORDS: Final = frozenset(
    {"s", "sec", "secs", "seconds", "ms", "min", "mins", "minutes", "h", "hours", "duration"}
    | {"elapsed", "days"}
)
_SHARE_WORDS: Final = frozenset(
    {"percent", "percentage", "share", "ratio", "frac", "fraction", "prop", "proportion"}
)
_COUNT_WORDS: Final = frozenset(
    {"n", "count", "counts", "cnt", "num", "number", "nb", "qty", "freq", "frequency"}
    | {"retries", "retry", "attempts", "tries", "visits", "votes", "errors", "failures"}
)
HHMM_MIN_HOURS: Final = 3
"""An HHMM clock column spans at least this many distinct hours (``x div 100``)."""
HHMM_MIN_MINUTES: Final = 30
"""... and without a clock-like name, at least this many distinct minutes ..."""
HHMM_MIN_HOURS_UNNAMED: Final = 6
"""... over at least this many distinct hours."""
SEQUENCE_MIN_VALUES: Final = 20
"""A dense run of distinct whole numbers is a sequence id from this many values on."""
SEQUENCE_DENSITY: Final = 1.5
"""... when ``max - min + 1 <= SEQUENCE_DENSITY x count``."""

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
    whitespace: int | Callable[[], int] = 0,
) -> ColumnRole:
    """The role of one column (rules in the module docstring).

    Args:
        name: the column name.
        dtype: the DuckDB type as reported by ``DESCRIBE`` (e.g. ``"BIGINT"``).
        rows: rows in the table.
        non_null: non-null values in the column.
        distinct: distinct non-null values in the column.
        whitespace: values containing whitespace (string columns only), or a function
            that counts them: called only for a column whose role depends on it.

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
        if ratio > ID_RATIO:
            spaced = whitespace() if callable(whitespace) else whitespace
            if spaced < ID_WHITESPACE_FRACTION * non_null:
                return "identifier"
        return "text"
    return "text"


def is_numeric_type(dtype: str) -> bool:
    """Whether a DuckDB type holds numbers (integers, floats, decimals)."""
    upper = dtype.upper()
    return upper in _INTEGER_TYPES or upper in _FLOAT_TYPES or upper.startswith(_NUMERIC_PREFIXES)


@dataclass(frozen=True, kw_only=True)
class NumericStats:
    """What :func:`infer_semantic` knows of a numeric column (its finite values).

    ``over59``, ``minute_values`` and ``hour_values`` are about whole numbers only:
    values whose last two digits (``x mod 100``) are 60 or more, and the distinct
    ``x mod 100`` and ``x div 100``.
    """

    count: int
    distinct: int
    min: float | None
    max: float | None
    fractional: int = 0
    over59: int = 0
    minute_values: int = 0
    hour_values: int = 0


SemanticResult: TypeAlias = "tuple[ColumnSemantic | None, str, str]"


def _code_word(word: str) -> bool:
    return word in _CODE_LAST_WORDS or word.endswith(("code", "cod"))


def _share_word(word: str) -> bool:
    return word in _SHARE_WORDS or word.startswith(("pct", "perc")) or word.endswith("pct")


def infer_semantic(name: str, role: str, stats: NumericStats) -> SemanticResult:
    """The semantic of one numeric column (rules in the module docstring).

    Args:
        name: the column name.
        role: its inferred role (``numeric`` or ``identifier``).
        stats: its statistics, from SQL.

    Returns:
        ``(semantic, detail, rule)``; ``(None, "", ...)`` when it has no finite value.
    """
    lo, hi = stats.min, stats.max
    if stats.count == 0 or lo is None or hi is None:
        return None, "", "no finite values"
    words = _words(name)
    whole = stats.fractional == 0
    if role == "identifier":
        return "identifier", "name", "role identifier (id-like name, nearly unique)"
    if whole and words and (_looks_like_id(name) or _code_word(words[-1])):
        return "identifier", "name", f"whole numbers named like an id or code ({name!r})"
    if whole:
        for w in words:
            unit = _CALENDAR_WORDS.get(w)
            if unit is not None and unit[1] <= lo and hi <= unit[2]:
                detail, low, high = unit
                return "calendar_part", detail, f"named {w!r}, whole numbers in {low}..{high}"
    if whole and lo >= 0 and hi <= 2400 and stats.over59 == 0:
        named = bool(_CLOCK_WORDS & set(words))
        if (named and stats.hour_values >= HHMM_MIN_HOURS) or (
            stats.minute_values >= HHMM_MIN_MINUTES and stats.hour_values >= HHMM_MIN_HOURS_UNNAMED
        ):
            return (
                "clock_time",
                "hhmm",
                f"HHMM: whole numbers in 0..2400, last two digits 0..59, "
                f"{stats.hour_values} hours, {stats.minute_values} minute values",
            )
    joined = " ".join(words)
    if (
        lo >= 0
        and hi <= 86400
        and hi - lo >= 6 * 3600
        and ({"tod", "sod"} & set(words) or "time of day" in joined or "of day" in joined)
    ):
        return "clock_time", "seconds_of_day", "named a time of day, values in 0..86400"
    if not (_DURATION_WORDS & set(words)) and (
        _TIME_POINT_WORDS & set(words) or (words and words[-1] in _TIME_POINT_LAST)
    ):
        return "timestamp", "number", f"named like a point in time ({name!r})"
    if (
        whole
        and stats.distinct == stats.count >= SEQUENCE_MIN_VALUES
        and hi - lo + 1 <= SEQUENCE_DENSITY * stats.count
    ):
        return "identifier", "sequence", "distinct whole numbers in a dense range"
    if lo >= 0 and hi <= 100 and any(_share_word(w) for w in words):
        detail = "fraction" if hi <= 1 and not whole else "percent"
        return (
            "share",
            detail,
            f"named like a share, values in 0..{1 if detail == 'fraction' else 100}",
        )
    if whole and lo >= 0 and _COUNT_WORDS & set(words):
        return "count", "", "named like a count, non-negative whole numbers"
    if whole and lo >= 0 and hi <= 1:
        return "quantity", "binary", "whole numbers in {0, 1}"
    return "quantity", "", "a magnitude (no other rule applies)"


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


RACY_NS = 2_000_000_000
"""A file (or plugin folder) changed less than this before it was hashed is hashed
again at its next use: a later write in the same clock tick would not show."""


def settled(newest_change_ns: int, hashed_at_ns: int) -> bool:
    """Whether a content hash taken at ``hashed_at_ns`` (``time.time_ns()``) of files
    last changed at ``newest_change_ns`` may be remembered by their status."""
    return newest_change_ns < hashed_at_ns - RACY_NS


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def remembered_fingerprint(path: Path, memo_dir: Path) -> tuple[str, Callable[[], None]]:
    """:func:`fingerprint_file`, hashing the content only when the file's size,
    mtime, ctime, inode or device differ from the last time (module docstring).

    Returns the fingerprint and a function that remembers it (call it once the file
    was ingested: a file that fails to ingest leaves nothing behind). A memo that
    cannot be read or written is ignored: the content is hashed.
    """
    absolute = path.absolute()
    memo = memo_dir / f"{hashlib.sha256(str(absolute).encode()).hexdigest()}.json"
    before = _stat_key(absolute.stat())
    try:
        known = msgspec.json.decode(memo.read_bytes())
        if known["stat"] == before and known["ingest"] == INGEST_VERSION:
            return str(known["fingerprint"]), lambda: None
    except (OSError, msgspec.DecodeError, KeyError, TypeError):
        pass
    hashed_at = time.time_ns()
    fingerprint = fingerprint_file(absolute)
    changed_while_read = _stat_key(absolute.stat()) != before
    young = not settled(max(before[1], before[2]), hashed_at)

    def remember() -> None:
        if changed_while_read or young:
            return
        record = {"path": str(absolute), "stat": before, "ingest": INGEST_VERSION,
                  "fingerprint": fingerprint}  # fmt: skip
        with contextlib.suppress(OSError):
            memo_dir.mkdir(parents=True, exist_ok=True)
            tmp = memo.with_name(f".{memo.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_bytes(msgspec.json.encode(record))
            os.replace(tmp, memo)

    return fingerprint, remember


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
    cache_dir = Path(cache_dir).absolute()
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        fingerprint, remember = remembered_fingerprint(path, cache_dir / "stat")
    except OSError as exc:
        raise DatasetError(label, f"cannot read file: {exc.strerror or exc}") from exc
    db_path = cache_dir / f"{fingerprint}.duckdb"
    info_path = cache_dir / f"{fingerprint}.json"

    stored = _load_info(db_path, info_path)
    if stored is None:
        stored = _build(label, path, kind, fingerprint, db_path, info_path)
    remember()
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


def _numeric_stats(
    con: duckdb.DuckDBPyConnection, col: str, non_null: int, distinct: int
) -> NumericStats:
    """One aggregate over the finite values of a numeric column (``col`` is quoted).

    ``distinct`` counts the distinct non-null values; in a column that also holds
    NaN or infinity it is not the finite values' count, so such a column is treated
    as having repeats (no rule needs more than "are the values all distinct").
    """
    x = f"CAST({col} AS DOUBLE)"
    whole = "x = floor(x)"
    row = con.execute(
        f"SELECT count(x), min(x), max(x), count_if(NOT ({whole})), "
        f"count_if({whole} AND x - 100 * floor(x / 100) >= 60), "
        f"count(DISTINCT x - 100 * floor(x / 100)) FILTER (WHERE {whole}), "
        f"count(DISTINCT floor(x / 100)) FILTER (WHERE {whole}) "
        f"FROM (SELECT {x} AS x FROM data WHERE isfinite({x}))"
    ).fetchone()
    assert row is not None
    count = int(row[0] or 0)
    return NumericStats(
        count=count,
        distinct=distinct if count == non_null else min(distinct, count - 1),
        min=None if row[1] is None else float(row[1]),
        max=None if row[2] is None else float(row[2]),
        fractional=int(row[3] or 0),
        over59=int(row[4] or 0),
        minute_values=int(row[5] or 0),
        hour_values=int(row[6] or 0),
    )


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
        stats = con.execute(f"SELECT count({col}), count(DISTINCT {col}) FROM data")
        non_null, distinct = (int(v or 0) for v in (stats.fetchone() or (0, 0)))

        def whitespace(col: str = col) -> int:
            # a scan of the column, so only for the columns whose role needs it
            found = con.execute(f"SELECT count_if(regexp_matches({col}, '\\s')) FROM data")
            return int((found.fetchone() or (0,))[0] or 0)  # NULL over all-null values

        role = infer_role(
            name, dtype, rows=rows, non_null=non_null, distinct=distinct, whitespace=whitespace
        )
        semantic: SemanticResult = (None, "", "")
        if is_numeric_type(dtype):
            semantic = infer_semantic(name, role, _numeric_stats(con, col, non_null, distinct))
        columns.append(
            ColumnInfo(
                name=name,
                dtype=dtype,
                role=role,
                null_count=rows - non_null,
                distinct_count=distinct,
                semantic=semantic[0],
                semantic_detail=semantic[1],
                semantic_rule=semantic[2],
            )
        )
    return DatasetInfo(
        source=label,
        fingerprint=fingerprint,
        rows=rows,
        columns=tuple(columns),
        event_roles=infer_event_roles(columns),
    )
