"""The inline executor: plugins run in this process and thread, one at a time.

It exists so a debugger can step into a plugin. While a plugin runs the event loop
is blocked, there are no timeouts or memory caps, and a running job cannot be
cancelled (a queued one can). Results are the same as on the process pool: both
run :func:`engine._worker.run.execute_job`.
"""

from __future__ import annotations

import heapq
import itertools
import os
from types import TracebackType
from typing import Self

import anyio
from anyio.abc import TaskGroup

from contracts import Failed

from .._worker.job import Job, JobOutput
from .._worker.run import execute_job
from ..errors import EngineInternalError
from .base import JobDone, JobStarted, Reply, Ticket


class InlineExecutor:
    """Runs jobs in the calling thread, one at a time, by priority."""

    name = "inline"
    capacity = 1
    pipeline = 0

    def __init__(self) -> None:
        self._queue: list[tuple[int, int, Ticket, Job, Reply]] = []
        self._dropped: set[int] = set()
        self._seq = itertools.count()
        self._wake = anyio.Event()
        self._tg: TaskGroup | None = None

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._runner)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(exc_type, exc, tb)
        self._tg = None

    def submit(
        self, job: Job, *, timeout_s: float, memory_mb: int | None, priority: int, reply: Reply
    ) -> Ticket:
        if self._tg is None:
            raise EngineInternalError("InlineExecutor.submit() outside `async with`")
        ticket = Ticket(next(self._seq), job.run_id, job.plugin_id)
        heapq.heappush(self._queue, (priority, ticket.seq, ticket, job, reply))
        self._wake.set()
        return ticket

    def cancel(self, ticket: Ticket, reason: str, message: str) -> None:
        for entry in self._queue:
            if entry[2] is ticket and ticket.seq not in self._dropped:
                self._dropped.add(ticket.seq)
                failed = Failed(reason_code=reason, message=message)
                entry[4](JobDone(ticket, JobOutput(plugin_id=ticket.plugin_id, result=failed)))

    async def _runner(self) -> None:
        pid = os.getpid()
        while True:
            if not self._queue:
                await self._wake.wait()
                self._wake = anyio.Event()
                continue
            _, seq, ticket, job, reply = heapq.heappop(self._queue)
            if seq in self._dropped:
                self._dropped.discard(seq)
                continue
            reply(JobStarted(ticket, 0, pid, f"inline pid {pid}"))
            reply(JobDone(ticket, execute_job(job)))
            await anyio.lowlevel.checkpoint()
