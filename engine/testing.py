"""Helpers for plugin unit tests: a real ``ctx`` over a real (small) dataset.

Plugin tests should exercise the same data path as a run: the data is written to
Parquet, ingested into DuckDB exactly as the engine does, and read back through a
:class:`~engine.DataReader`. Nothing is mocked, so a test that passes
here behaves the same inside a worker process.

Example::

    from engine.testing import make_context

    def test_counts(tmp_path):
        ctx = make_context({"x": [1, 2, 3]}, tmp_path, settings={"k": 2})
        result = my_plugin.run(ctx)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.parquet as pq

from contracts import PluginResult
from contracts.manifest import DataAccessMode

from ._data.ingest import ingest
from ._worker.context import PluginContext
from ._worker.reader import DataReader

__all__ = ["make_context", "make_reader"]

DataLike: TypeAlias = "pa.Table | Mapping[str, list[Any]] | str | Path"
"""What the helpers accept as data: an Arrow table, a dict of columns, or a file path."""


def _source_path(data: DataLike, tmp_path: Path) -> Path:
    """A file on disk holding ``data``: the path itself, or a Parquet file we write."""
    if isinstance(data, str | Path):
        return Path(data)
    table = data if isinstance(data, pa.Table) else pa.table(dict(data))
    out = tmp_path / "_data_source.parquet"
    n = 0
    while out.exists():  # several readers in one test must not overwrite each other
        n += 1
        out = tmp_path / f"_data_source_{n}.parquet"
    pq.write_table(table, out)
    return out


def make_reader(
    data: DataLike, tmp_path: Path, *, declared: DataAccessMode | None = None
) -> DataReader:
    """Ingest ``data`` and return a reader over it.

    Args:
        data: a ``pyarrow.Table``, a ``dict`` of column name to values (converted
            with ``pyarrow.table``), or the path of a CSV/Parquet file.
        tmp_path: a scratch directory (pytest's ``tmp_path``). Tables and dicts are
            written to Parquet here; the DuckDB cache lives in ``tmp_path/"_data"``.
        declared: a ``data_access`` mode to enforce, as a run does (None: any call).

    Returns:
        A :class:`DataReader`; close it (or use it as a context manager) when done.

    Raises:
        DatasetError: the data cannot be ingested (no rows, bad column names, ...).
    """
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    source = _source_path(data, tmp_path)
    info = ingest(source, tmp_path / "_data")
    return DataReader(info, declared=declared)


def make_context(
    data: DataLike,
    tmp_path: Path,
    *,
    plugin_id: str = "test_plugin",
    settings: Mapping[str, Any] | None = None,
    upstream: Mapping[str, PluginResult] | None = None,
    seed: int = 0,
    run_id: str = "test-run",
    data_access: DataAccessMode | None = None,
) -> PluginContext:
    """Build the ``ctx`` a plugin would receive, over ``data``.

    Args:
        data: as for :func:`make_reader`.
        tmp_path: a scratch directory (pytest's ``tmp_path``).
        plugin_id: the plugin id; also names ``artifacts_dir``.
        settings: the plugin's resolved settings (passed through as given).
        upstream: results of the plugins this one depends on.
        seed: the per-plugin seed behind ``ctx.rng()``.
        run_id: the run id.
        data_access: the plugin's declared access mode; when given, calls
            outside it are refused exactly as in a run (``DataAccessViolation``).

    Returns:
        A :class:`PluginContext` whose ``artifacts_dir`` is
        ``tmp_path/"artifacts"/plugin_id``. ``ctx.data.accesses`` lists every data
        call the plugin made, so tests can assert on them.
    """
    tmp_path = Path(tmp_path)
    return PluginContext(
        plugin_id=plugin_id,
        run_id=run_id,
        data=make_reader(data, tmp_path, declared=data_access),
        settings=dict(settings or {}),
        seed=seed,
        upstream=dict(upstream or {}),
        artifacts_dir=tmp_path / "artifacts" / plugin_id,
    )
