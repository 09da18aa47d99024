"""Executors: where plugin jobs run, behind one narrow async interface.

The supervisor and lanes only see :class:`Executor`: ``async with
executor.worker() as w`` reserves a worker, ``await w.run(job, timeout_s)`` runs a
job on it. Implementations:

- :class:`ProcessPool`: warm ``spawn`` worker processes, one duplex pipe each. The
  event loop waits on the pipe's file descriptor directly (``anyio.wait_readable``),
  so a completion costs no thread hop. A worker that times out is killed and
  replaced (``TIMEOUT``); a worker that dies is replaced (``WORKER_CRASHED``).
- :class:`InlineExecutor`: runs jobs in the calling thread, one at a time, so a
  debugger can step into a plugin. No timeouts.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Protocol

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from contracts import Failed

from .errors import EngineError, EngineInternalError
from .worker import JOB_ENCODER, OUTPUT_DECODER, Job, JobOutput, execute_job, worker_main


class WorkerHandle(Protocol):
    index: int
    pid: int

    async def run(self, job: Job, timeout_s: float) -> JobOutput: ...


class Executor(Protocol):
    """The interface the runtime uses; it does not know which executor it has."""

    name: str
    workers: int

    async def start(self) -> None: ...

    def worker(self) -> AbstractAsyncContextManager[WorkerHandle]: ...

    async def aclose(self) -> None: ...


def _crash_output(job: Job, code: str, message: str, pid: int, duration: float) -> JobOutput:
    return JobOutput(
        plugin_id=job.plugin_id,
        result=Failed(reason_code=code, error_type="", message=message),
        duration_s=duration,
        pid=pid,
    )


class _Proc:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, index: int, process: BaseProcess, conn: Connection) -> None:
        self.index = index
        self.process = process
        self.conn = conn
        self.pid = process.pid or 0


class _PoolWorker:
    def __init__(self, pool: ProcessPool, proc: _Proc) -> None:
        self._pool = pool
        self.proc = proc
        self.index = proc.index
        self.pid = proc.pid

    async def run(self, job: Job, timeout_s: float) -> JobOutput:
        proc = self.proc
        started = anyio.current_time()
        try:
            proc.conn.send_bytes(JOB_ENCODER.encode(job))
            with anyio.move_on_after(timeout_s) as scope:
                await anyio.wait_readable(proc.conn.fileno())
            if scope.cancelled_caught:
                await self._pool._replace(proc)
                return _crash_output(
                    job, "TIMEOUT", f"no result after {timeout_s:g}s; worker killed",
                    proc.pid, anyio.current_time() - started,
                )
            payload = proc.conn.recv_bytes()
        except (EOFError, OSError):
            code = proc.process.exitcode
            await self._pool._replace(proc)
            return _crash_output(
                job, "WORKER_CRASHED",
                f"worker process {proc.pid} died (exit code {code})",
                proc.pid, anyio.current_time() - started,
            )
        except BaseException:
            # Cancelled mid-job: the worker may still answer later, so it cannot
            # be reused. Replace it (shielded) and let the cancellation go on.
            with anyio.CancelScope(shield=True):
                await self._pool._replace(proc)
            raise
        return OUTPUT_DECODER.decode(payload)


class ProcessPool:
    """Warm worker processes behind async handles."""

    name = "process"

    def __init__(self, workers: int | None = None, *, start_timeout_s: float = 120.0) -> None:
        self.workers = workers or max(1, min(os.cpu_count() or 1, 8))
        if self.workers < 1:
            raise EngineError("workers must be at least 1")
        self._ctx = multiprocessing.get_context("spawn")
        self._start_timeout_s = start_timeout_s
        self._procs: dict[int, _Proc] = {}
        self._idle_send: MemoryObjectSendStream[_Proc]
        self._idle_recv: MemoryObjectReceiveStream[_Proc]
        self._idle_send, self._idle_recv = anyio.create_memory_object_stream[_Proc](math.inf)
        self._started = False
        self.replacements = 0

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        async with anyio.create_task_group() as tg:
            for index in range(self.workers):
                tg.start_soon(self._spawn_ready, index)

    async def _spawn(self, index: int) -> _Proc:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=worker_main, args=(child,), name=f"engine-worker-{index}", daemon=True
        )
        await anyio.to_thread.run_sync(process.start)
        child.close()
        proc = _Proc(index, process, parent)
        with anyio.fail_after(self._start_timeout_s):
            await anyio.wait_readable(parent.fileno())
        try:
            proc.pid = int(parent.recv_bytes().decode())
        except (EOFError, OSError, ValueError) as exc:
            raise EngineError(f"worker {index} failed to start: {exc}") from exc
        return proc

    async def _spawn_ready(self, index: int) -> None:
        proc = await self._spawn(index)
        self._procs[index] = proc
        self._idle_send.send_nowait(proc)

    async def _kill(self, proc: _Proc) -> None:
        proc.conn.close()
        if proc.process.is_alive():
            proc.process.kill()
        await anyio.to_thread.run_sync(proc.process.join, 10.0)

    async def _replace(self, proc: _Proc) -> None:
        """Kill ``proc`` and put a fresh worker in its slot."""
        self.replacements += 1
        await self._kill(proc)
        fresh = await self._spawn(proc.index)
        self._procs[proc.index] = fresh
        proc.process = fresh.process
        proc.conn = fresh.conn
        proc.pid = fresh.pid

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[WorkerHandle]:
        if not self._started:
            raise EngineInternalError("ProcessPool.worker() before start()")
        proc = await self._idle_recv.receive()
        try:
            yield _PoolWorker(self, proc)
        finally:
            self._idle_send.send_nowait(proc)

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            for proc in list(self._procs.values()):
                await self._kill(proc)
            self._procs.clear()
        self._idle_send.close()
        self._idle_recv.close()


class _InlineWorker:
    index = 0

    def __init__(self) -> None:
        self.pid = os.getpid()

    async def run(self, job: Job, timeout_s: float) -> JobOutput:
        await anyio.lowlevel.checkpoint()
        return execute_job(job)


class InlineExecutor:
    """Runs plugins in this process and thread, one at a time (for debugging)."""

    name = "inline"
    workers = 1

    def __init__(self) -> None:
        self._lock = anyio.Lock()

    async def start(self) -> None:
        return None

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[WorkerHandle]:
        async with self._lock:
            yield _InlineWorker()

    async def aclose(self) -> None:
        return None


def make_executor(kind: str, workers: int | None) -> Executor:
    if kind == "process":
        return ProcessPool(workers)
    if kind == "inline":
        return InlineExecutor()
    raise EngineError(f"executor: expected 'process' or 'inline', got {kind!r}")
