"""Executors: where plugin jobs run, behind the one contract in :mod:`.base`."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError
from .base import Completion, Executor, JobDone, JobStarted, Reply, Ticket
from .inline import InlineExecutor
from .process import ProcessPool

__all__ = [
    "Completion",
    "Executor",
    "InlineExecutor",
    "JobDone",
    "JobStarted",
    "ProcessPool",
    "Reply",
    "Ticket",
    "make_executor",
]

EXECUTORS = ("process", "inline", "dask")


def make_executor(
    kind: str,
    workers: int | None,
    *,
    scheduler: str | None = None,
    data_store: str | None = None,
    libraries: Sequence[str] = (),
) -> Executor:
    """The executor named ``kind``. ``scheduler`` and ``data_store`` are the dask
    executor's (a Dask scheduler's address; where workers read datasets);
    ``libraries`` are checked on its workers against this process's versions."""
    if kind != "dask" and (scheduler is not None or data_store is not None):
        raise ConfigError(f"executor {kind!r}: a scheduler and a data store need executor 'dask'")
    if kind == "process":
        return ProcessPool(workers)
    if kind == "inline":
        return InlineExecutor()
    if kind == "dask":
        # Imported only when asked for: nothing of Dask is loaded otherwise.
        from .dask import DaskExecutor

        return DaskExecutor(scheduler, workers=workers, data_store=data_store, libraries=libraries)
    raise ConfigError(f"executor: expected one of {list(EXECUTORS)}, got {kind!r}")
