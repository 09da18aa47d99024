"""Executors: where plugin jobs run, behind the one contract in :mod:`.base`."""

from __future__ import annotations

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

EXECUTORS = ("process", "inline")


def make_executor(kind: str, workers: int | None) -> Executor:
    if kind == "process":
        return ProcessPool(workers)
    if kind == "inline":
        return InlineExecutor()
    raise ConfigError(f"executor: expected one of {list(EXECUTORS)}, got {kind!r}")
