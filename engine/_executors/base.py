"""The executor contract: the one interface between the kernel and where plugins run.

The supervisor submits jobs and receives completions; it never knows whether a job
runs in a local process, inline, or on a cluster. An executor:

- is an async context manager (``async with executor:``), which owns its workers,
  its watchdog and every task it needs; leaving it stops them all;
- has a ``capacity`` (jobs that can run at once) and a ``pipeline`` depth (how many
  more it can usefully hold per unit of capacity, written ahead so a worker never
  waits for the next job; 0 when it cannot pipeline). Admission (what to submit,
  when, in which order) is the supervisor's; the executor runs what it is given, in
  priority order when it holds more than it can start;
- :meth:`Executor.submit` takes a job with its timeout, memory cap and priority and
  returns a :class:`Ticket` at once. It later calls ``reply`` (on the event loop,
  never raising into the executor) with :class:`JobStarted` when the job actually
  starts, then exactly once with :class:`JobDone`. A job that could not run (its
  worker died, it was cancelled, no worker could be started) still gets its
  ``JobDone``, with a ``Failed`` result and a reason code;
- :meth:`Executor.cancel` ends one ticket's job with a reason: dropped if not
  started, stopped if running. Tickets are unique, so runs sharing an executor never
  touch each other's jobs;
- owns its watchdog: timeouts (``TIMEOUT``), memory caps (``RESOURCE_LIMIT``),
  worker death (``WORKER_CRASHED``), all charged to the job actually running;
- never retries a job silently: a job that started runs at most once.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Self

from attrs import define

from .._worker.job import Job, JobOutput


@define(frozen=True, eq=False)
class Ticket:
    """One submitted job. Compared by identity: every submission is a new ticket."""

    seq: int
    run_id: str
    plugin_id: str


@define(frozen=True)
class JobStarted:
    """The job's worker began running it (``worker``: index; ``worker_id``: a name
    a person can find the worker by, such as ``process/1 pid 4242``)."""

    ticket: Ticket
    worker: int
    pid: int
    worker_id: str


@define(frozen=True)
class JobDone:
    ticket: Ticket
    output: JobOutput


Completion = JobStarted | JobDone
Reply = Callable[[Completion], None]


class Executor(Protocol):
    """Where plugin jobs run. See the module docstring for the contract."""

    name: str

    @property
    def capacity(self) -> int:
        """Jobs that can run at the same time."""
        ...

    @property
    def pipeline(self) -> int:
        """Extra jobs per unit of capacity worth holding ahead (0: none)."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def submit(
        self,
        job: Job,
        *,
        timeout_s: float,
        memory_mb: int | None,
        priority: int,
        reply: Reply,
    ) -> Ticket:
        """Queue ``job``; ``reply`` receives its completions."""
        ...

    def cancel(self, ticket: Ticket, reason: str, message: str) -> None:
        """End ``ticket``'s job (``failed``/``reason``) unless it already ended."""
        ...
