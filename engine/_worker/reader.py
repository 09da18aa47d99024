"""Recorded read access to a normalized dataset (``ctx.data``).

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
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, get_args

import duckdb
import pyarrow as pa

from contracts import ColumnInfo, DataAccess, DatasetInfo
from contracts.dataset import AccessKind
from contracts.manifest import ColumnRole, ColumnSemantic, DataAccessMode, EventRole
from contracts.sql import quote_ident

from ..errors import DatasetError

__all__ = ["ALLOWED_CALLS", "DataAccessViolation", "DataReader", "UnknownColumnError"]

READER_MEMORY_LIMIT: Final = "512MB"
"""Per-reader DuckDB memory limit; larger work spills to a private temp directory.
With two workers and the 1 GB ingest limit this keeps a 10M-row run of the whole
fleet under 2 GiB for all processes (see docs/benchmarks.md)."""

_COLUMN_ROLES: Final = frozenset(get_args(ColumnRole))
_SEMANTICS: Final = frozenset(get_args(ColumnSemantic))
_EVENT_ROLES: Final = frozenset(get_args(EventRole))

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

    def names(
        self, role: str | None = None, *, semantic: str | Iterable[str] | None = None
    ) -> list[str]:
        """Column names in dataset order, optionally only those with ``role`` and
        (``semantic``: one name or several) one of those semantics, e.g.
        ``names("numeric", semantic=QUANTITY_SEMANTICS)`` for the magnitudes.

        Raises:
            ValueError: ``role`` is not a column role, or a semantic is unknown.
        """
        if role is not None and role not in _COLUMN_ROLES:
            raise ValueError(
                f"unknown column role {role!r}; expected one of {sorted(_COLUMN_ROLES)}"
            )
        wanted = (
            None if semantic is None else {semantic} if isinstance(semantic, str) else set(semantic)
        )
        if wanted is not None and not wanted <= _SEMANTICS:
            unknown = sorted(wanted - _SEMANTICS)
            raise ValueError(
                f"unknown semantic(s) {unknown}; expected some of {sorted(_SEMANTICS)}"
            )
        return [
            c.name
            for c in self._info.columns
            if (role is None or c.role == role) and (wanted is None or c.semantic in wanted)
        ]

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
            # A name only: DuckDB creates the folder when a query first spills, and
            # removes it on close. A job process killed (a timeout, a memory cap)
            # leaves nothing behind unless it had spilled.
            spill = str(Path(tempfile.gettempdir()) / f"engine-duckdb-{uuid.uuid4().hex}")
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
