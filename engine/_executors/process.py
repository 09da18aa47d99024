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
import signal
import socket
import struct
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Protocol

import anyio
import anyio.lowlevel

from contracts import Failed

from .._worker.run import JOB_ENCODER, OUTPUT_DECODER, Job, JobOutput, execute_job, worker_main
from ..errors import EngineError, EngineInternalError


class WorkerHandle(Protocol):
    index: int
    pid: int

    async def run(
        self, job: Job, timeout_s: float, on_start: Callable[[int, int], None] | None = None
    ) -> JobOutput: ...


class Executor(Protocol):
    """The interface the runtime uses; it does not know which executor it has.

    ``slots`` is how many jobs may be handed to it at once (workers x depth).
    """

    name: str
    workers: int
    slots: int

    async def start(self) -> None: ...

    def worker(self) -> AbstractAsyncContextManager[WorkerHandle]: ...

    async def watch(self) -> None:
        """Enforce timeouts and limits on running jobs until cancelled (a run's
        supervisor runs this for the length of the run)."""
        ...

    def stop(self, plugin_ids: Iterable[str], reason: str, message: str) -> None:
        """End the running jobs of ``plugin_ids`` with ``reason`` (the stall guard)."""
        ...

    async def aclose(self) -> None: ...


def _crash_output(job: Job, code: str, message: str, pid: int, duration: float) -> JobOutput:
    return JobOutput(
        plugin_id=job.plugin_id,
        result=Failed(reason_code=code, error_type="", message=message),
        duration_s=duration,
        pid=pid,
    )


class _Pending:
    """A job handed to a worker; ``turn`` is set when it reaches the queue head.

    ``deadline`` is set when the job starts (reaches the head); the pool's watchdog
    sets ``verdict`` and kills the worker when the job must end (timeout, memory
    cap, stall), and the job's waiter reports that verdict instead of a crash.
    """

    __slots__ = ("deadline", "generation", "payload", "plugin_id", "turn", "verdict")

    def __init__(self, payload: bytes, generation: int, plugin_id: str) -> None:
        self.payload = payload
        self.generation = generation
        self.plugin_id = plugin_id
        self.turn = anyio.Event()
        self.deadline: float | None = None
        self.verdict: tuple[str, str] | None = None


class _Proc:
    """One worker process, the parent's end of its pipe, and its queue of jobs.

    Jobs are pipelined: up to ``depth`` are written ahead so the worker never
    sleeps between jobs. Results come back in order; the job at the head of the
    queue reads the next result. ``generation`` changes whenever the process is
    replaced, so jobs written to a dead process are written again.
    """

    def __init__(self, index: int, process: BaseProcess, conn: Connection, pid: int) -> None:
        self.index = index
        self.process = process
        self.conn = conn
        self.sock = _nonblocking(conn)
        self.pid = pid
        self.generation = 0
        self.queue: deque[_Pending] = deque()
        self.reserved = 0
        self.send_lock = anyio.Lock()

    async def send(self, payload: bytes) -> None:
        """Write one frame without blocking the event loop (one writer at a time)."""
        try:
            self.send_lock.acquire_nowait()  # the usual case: no checkpoint
        except anyio.WouldBlock:
            await self.send_lock.acquire()
        try:
            await send_frame(self.sock, payload)
        finally:
            self.send_lock.release()

    async def recv(self) -> bytes:
        """Read one frame (only the job at the head of the queue reads)."""
        return await recv_frame(self.sock)


def _nonblocking(conn: Connection) -> socket.socket:
    """A non-blocking socket over the parent's end of a worker pipe.

    The parent never blocks on a worker: a job or an output larger than the socket
    buffer is written and read in pieces as the other side makes room, so neither
    the event loop nor the pair of processes can lock up on a full pipe.
    """
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    sock.setblocking(False)
    return sock


def _frame_header(size: int) -> bytes:
    # The framing of multiprocessing.connection, which the worker side reads.
    return struct.pack("!i", size) if size <= 0x7FFFFFFF else struct.pack("!iQ", -1, size)


async def send_frame(sock: socket.socket, payload: bytes) -> None:
    view = memoryview(_frame_header(len(payload)) + payload)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            await anyio.wait_writable(sock)
            continue
        view = view[sent:]


async def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        try:
            chunk = sock.recv(size - len(buf))
        except BlockingIOError:
            await anyio.wait_readable(sock)
            continue
        if not chunk:
            raise EOFError("worker pipe closed")
        buf += chunk
    return bytes(buf)


async def recv_frame(sock: socket.socket) -> bytes:
    (size,) = struct.unpack("!i", await _recv_exactly(sock, 4))
    if size == -1:
        (size,) = struct.unpack("!Q", await _recv_exactly(sock, 8))
    return await _recv_exactly(sock, size)


class _PoolWorker:
    def __init__(self, pool: ProcessPool, proc: _Proc) -> None:
        self._pool = pool
        self.proc = proc
        self.index = proc.index
        self.pid = proc.pid

    async def run(
        self, job: Job, timeout_s: float, on_start: Callable[[int, int], None] | None = None
    ) -> JobOutput:
        proc = self.proc
        entry = _Pending(JOB_ENCODER.encode(job), proc.generation, job.plugin_id)
        proc.queue.append(entry)
        try:
            try:
                await proc.send(entry.payload)
            except (OSError, anyio.ClosedResourceError):
                entry.generation = -1  # written again once the process is replaced
            return await self._await_result(job, entry, timeout_s, on_start)
        except BaseException:
            # Cancelled: the worker may still answer for this job later, so the
            # process cannot be trusted. Replace it; queued jobs are re-sent.
            if entry.generation == proc.generation:
                with anyio.CancelScope(shield=True):
                    await self._pool._replace(proc)
            raise
        finally:
            proc.queue.remove(entry)
            if proc.queue:
                proc.queue[0].turn.set()

    async def _await_result(
        self,
        job: Job,
        entry: _Pending,
        timeout_s: float,
        on_start: Callable[[int, int], None] | None,
    ) -> JobOutput:
        proc = self.proc
        while proc.queue[0] is not entry:
            await entry.turn.wait()
            entry.turn = anyio.Event()
        announced = False
        while True:
            started = anyio.current_time()
            pid = proc.pid
            try:
                if entry.verdict is None:
                    if entry.generation != proc.generation:
                        entry.generation = proc.generation
                        await proc.send(entry.payload)
                    if not announced and on_start is not None:
                        on_start(proc.index, proc.pid)
                    announced = True
                    entry.deadline = started + timeout_s
                    output = OUTPUT_DECODER.decode(await proc.recv())
                    self._pool._observe(output.duration_s)
                    return output
            except (EOFError, OSError, anyio.ClosedResourceError):
                if entry.verdict is None and entry.generation != proc.generation:
                    continue  # replaced under us: write the job again
            if entry.verdict is not None:  # ended by the watchdog, which killed the worker
                reason, message = entry.verdict
                if reason == "TIMEOUT":
                    message = f"no result after {timeout_s:g}s; worker {pid} killed"
                await self._pool._replace(proc)
                return _crash_output(job, reason, message, pid, anyio.current_time() - started)
            # Reap it first: the exit status says how it died.
            await anyio.to_thread.run_sync(proc.process.join, 5.0)
            how = _exit_description(proc.process.exitcode)
            await self._pool._replace(proc)
            return _crash_output(
                job,
                "WORKER_CRASHED",
                f"worker process {pid} died ({how})",
                pid,
                anyio.current_time() - started,
            )


def _exit_description(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (0 when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


class ProcessPool:
    """Warm worker processes behind async handles."""

    name = "process"

    def __init__(
        self,
        workers: int | None = None,
        *,
        depth: int = 2,
        short_depth: int = 4,
        short_job_s: float = 0.02,
        start_timeout_s: float = 120.0,
        memory_limit_mb: int | None = None,
    ) -> None:
        self.workers = workers or max(1, min(os.cpu_count() or 1, 8))
        if self.workers < 1 or depth < 1 or short_depth < depth:
            raise EngineError("workers and depth must be at least 1; short_depth >= depth")
        # Jobs written ahead per worker: ``depth`` normally, ``short_depth`` while
        # recent jobs are shorter than ``short_job_s`` (then the round trip, not the
        # job, is what a worker waits on). Deep queues are kept for short jobs only
        # so a long plugin never strands several others behind it.
        # Resident memory a worker may use while running a job (None: no cap).
        self.memory_limit_mb = memory_limit_mb
        self.depth = depth
        self.short_depth = short_depth
        self.short_job_s = short_job_s
        self.slots = self.workers * short_depth
        self._recent_s = math.inf  # moving average of job durations; unknown at first
        self._room = anyio.Event()
        self._waiting = 0
        self._ctx = multiprocessing.get_context("spawn")
        self._start_timeout_s = start_timeout_s
        self._procs: list[_Proc] = []
        self._started = False
        self.replacements = 0

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        procs: dict[int, _Proc] = {}

        async def spawn(index: int) -> None:
            procs[index] = await self._spawn(index)

        async with anyio.create_task_group() as tg:
            for index in range(self.workers):
                tg.start_soon(spawn, index)
        self._procs = [procs[i] for i in range(self.workers)]

    async def _spawn(self, index: int) -> _Proc:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=worker_main, args=(child,), name=f"engine-worker-{index}", daemon=True
        )
        await anyio.to_thread.run_sync(_start_with_fixed_hash_seed, process)
        child.close()
        try:
            with anyio.fail_after(self._start_timeout_s):
                await anyio.wait_readable(parent.fileno())
            pid = int(parent.recv_bytes().decode())
        except (EOFError, OSError, ValueError, TimeoutError) as exc:
            process.kill()
            raise EngineError(
                f"worker {index} failed to start ({exc!r}). Workers are started with the "
                "'spawn' method, which re-imports the main module: a script that uses the "
                "engine must guard its entry point with `if __name__ == '__main__':`"
            ) from exc
        return _Proc(index, process, parent, pid)

    async def _kill(self, proc: _Proc) -> None:
        if proc.sock.fileno() != -1:
            anyio.notify_closing(proc.sock)  # wake anyone waiting on it
            proc.sock.close()
        if not proc.conn.closed:
            proc.conn.close()
        if proc.process.is_alive():
            proc.process.kill()
        await anyio.to_thread.run_sync(proc.process.join, 10.0)

    async def _replace(self, proc: _Proc) -> None:
        """Kill ``proc``'s process and start a fresh one in its place."""
        self.replacements += 1
        proc.generation += 1
        await self._kill(proc)
        fresh = await self._spawn(proc.index)
        proc.process, proc.conn, proc.sock, proc.pid = (
            fresh.process,
            fresh.conn,
            fresh.sock,
            fresh.pid,
        )
        proc.generation += 1

    async def watch(self) -> None:
        """Every ``WATCH_INTERVAL_S``: end running jobs past their deadline or whose
        worker is above the memory cap. One timer for the whole pool, so a job
        costs no timer of its own."""
        while True:
            await anyio.sleep(WATCH_INTERVAL_S)
            now = anyio.current_time()
            limit = self.memory_limit_mb
            for proc in self._procs:
                head = proc.queue[0] if proc.queue else None
                if head is None or head.deadline is None or head.verdict is not None:
                    continue
                if now >= head.deadline:
                    self._end(proc, head, ("TIMEOUT", ""))
                elif limit:
                    rss = rss_mb(proc.pid)
                    if rss > limit:
                        message = (
                            f"worker {proc.pid} used {rss:.0f} MB, above the {limit} MB cap; killed"
                        )
                        self._end(proc, head, ("RESOURCE_LIMIT", message))

    def stop(self, plugin_ids: Iterable[str], reason: str, message: str) -> None:
        wanted = set(plugin_ids)
        for proc in self._procs:
            head = proc.queue[0] if proc.queue else None
            if head is not None and head.plugin_id in wanted and head.verdict is None:
                self._end(proc, head, (reason, message))

    @staticmethod
    def _end(proc: _Proc, entry: _Pending, verdict: tuple[str, str]) -> None:
        """Give the running job its verdict and kill its worker; the job's waiter
        sees the pipe close, reports the verdict and replaces the worker."""
        entry.verdict = verdict
        if proc.process.is_alive():
            proc.process.kill()

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[WorkerHandle]:
        if not self._started:
            raise EngineInternalError("ProcessPool.worker() before start()")
        while True:
            limit = self.short_depth if self._recent_s < self.short_job_s else self.depth
            proc = min(self._procs, key=lambda p: (p.reserved, p.index))
            if proc.reserved < limit:
                break
            self._waiting += 1
            try:
                await self._room.wait()
            finally:
                self._waiting -= 1
        proc.reserved += 1
        try:
            yield _PoolWorker(self, proc)
        finally:
            proc.reserved -= 1
            if self._waiting:
                self._room.set()
                self._room = anyio.Event()

    def _observe(self, duration_s: float) -> None:
        self._recent_s = (
            duration_s if math.isinf(self._recent_s) else 0.8 * self._recent_s + 0.2 * duration_s
        )

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            for proc in self._procs:
                await self._kill(proc)
        self._procs = []
        self._started = False


class _InlineWorker:
    index = 0

    def __init__(self) -> None:
        self.pid = os.getpid()

    async def run(
        self, job: Job, timeout_s: float, on_start: Callable[[int, int], None] | None = None
    ) -> JobOutput:
        await anyio.lowlevel.checkpoint()
        if on_start is not None:
            on_start(self.index, self.pid)
        return execute_job(job)


class InlineExecutor:
    """Runs plugins in this process and thread, one at a time (for debugging)."""

    name = "inline"
    workers = 1
    slots = 1

    def __init__(self) -> None:
        self._lock = anyio.Lock()

    async def start(self) -> None:
        return None

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[WorkerHandle]:
        async with self._lock:
            yield _InlineWorker()

    async def watch(self) -> None:
        await anyio.sleep_forever()  # inline jobs cannot be interrupted

    def stop(self, plugin_ids: Iterable[str], reason: str, message: str) -> None:
        return None

    async def aclose(self) -> None:
        return None


WATCH_INTERVAL_S = 0.1
_ENV_LOCK = threading.Lock()


def _start_with_fixed_hash_seed(process: BaseProcess) -> None:
    """Start a spawned worker with PYTHONHASHSEED=0: string hashing (and so the
    iteration order of sets of strings in plugins) is then the same in every worker
    and every run. The variable is set only for the moment of the spawn."""
    with _ENV_LOCK:
        previous = os.environ.get("PYTHONHASHSEED")
        os.environ["PYTHONHASHSEED"] = "0"
        try:
            process.start()
        finally:
            if previous is None:
                del os.environ["PYTHONHASHSEED"]
            else:
                os.environ["PYTHONHASHSEED"] = previous


def make_executor(kind: str, workers: int | None, memory_limit_mb: int | None = None) -> Executor:
    if kind == "process":
        return ProcessPool(workers, memory_limit_mb=memory_limit_mb)
    if kind == "inline":
        return InlineExecutor()
    raise EngineError(f"executor: expected 'process' or 'inline', got {kind!r}")
