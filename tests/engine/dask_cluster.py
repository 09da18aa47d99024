"""A real Dask cluster for tests: ``dask scheduler`` and ``dask worker`` subprocesses.

Each process runs in a folder of its own (its working and local directory), binds
127.0.0.1 on a port it picks itself (``--port 0``), and is found by the address it
prints: nothing is shared through a working directory and no port is assumed free.
Every process leads its own session, so a worker is killed with its nanny and the
job processes below it in one ``killpg``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

DASK = str(Path(sys.executable).with_name("dask"))
START_TIMEOUT_S = 180.0


class _Process:
    """A subprocess whose stderr is read by a thread until a line matches."""

    def __init__(
        self,
        args: list[str],
        cwd: Path,
        pattern: str,
        env: Mapping[str, str] | None = None,
    ) -> None:
        cwd.mkdir(parents=True, exist_ok=True)
        self.log = cwd / "stderr.log"
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self._pattern = re.compile(pattern)
        self._found = threading.Event()
        self.match = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        with open(self.log, "wb") as log:
            for line in self.proc.stderr:
                log.write(line)
                log.flush()
                if not self._found.is_set():
                    m = self._pattern.search(line.decode(errors="replace"))
                    if m:
                        self.match = m.group(1)
                        self._found.set()
        self._found.set()  # ended: whoever waits learns it now

    def wait_ready(self) -> str:
        if not self._found.wait(START_TIMEOUT_S) or not self.match:
            self.kill()
            raise RuntimeError(f"{self.proc.args} did not start:\n{self.log.read_text()}")
        return self.match

    def kill(self) -> None:
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._reader.join(30)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class Cluster:
    """A scheduler and its workers, by address."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.workers: dict[str, _Process] = {}
        self._scheduler = _Process(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"],
            root / "scheduler",
            r"Scheduler at:\s+(tcp://\S+)",
        )
        self.address = self._scheduler.wait_ready()

    def add_worker(self, name: str, env: Mapping[str, str] | None = None) -> str:
        folder = self.root / name
        worker = _Process(
            [
                DASK,
                "worker",
                self.address,
                "--name",
                name,
                "--nworkers",
                "1",
                "--nthreads",
                "1",
                "--host",
                "127.0.0.1",
                "--no-dashboard",
                "--local-directory",
                str(folder / "local"),
            ],
            folder,
            r"Registered to:\s+(tcp://\S+)",
            env,
        )
        worker.wait_ready()
        address = self._worker_address(worker)
        self.workers[address] = worker
        return address

    @staticmethod
    def _worker_address(worker: _Process) -> str:
        m = re.search(r"Start worker at:\s+(tcp://\S+)", worker.log.read_text())
        assert m, worker.log.read_text()
        return m.group(1)

    def folder_of(self, address: str) -> Path:
        """The worker's own folder (its working and local directory are inside)."""
        return self.workers[address].log.parent

    def kill_worker(self, address: str) -> None:
        self.workers.pop(address).kill()

    def close(self) -> None:
        for worker in self.workers.values():
            worker.kill()
        self._scheduler.kill()


@contextmanager
def cluster(root: Path, workers: int = 2) -> Iterator[Cluster]:
    running = Cluster(root)
    try:
        for i in range(workers):
            running.add_worker(f"worker-{i}")
        yield running
    finally:
        running.close()


def worker_of(worker_id: str) -> str:
    """The Dask worker's address in a ``plugin_started`` worker id."""
    m = re.match(r"dask (tcp://\S+) pid \d+$", worker_id)
    assert m, worker_id
    return m.group(1)
