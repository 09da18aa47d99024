"""What crosses between the engine and a worker: the job, its output, and the
frames of the worker pipe protocol.

A job is small (ids, paths, settings, the dataset's description, upstream results:
no data rows). Frames are msgpack-encoded tagged Structs:

- to the worker: :class:`RunJob` (a job with its sequence number) and
  :class:`CancelJob` (drop a job that has not started yet);
- from the worker: :class:`JobBegan` when it actually starts a job (with the
  worker's resident memory at that moment, so the memory cap is charged to the job
  alone) and :class:`JobEnded` with the output.
"""

from __future__ import annotations

from typing import Any

import msgspec

from contracts import DataAccess, DatasetInfo, PluginResult
from contracts._base import Wire
from contracts.dataset import SpanRecord
from contracts.manifest import DataAccessMode


class Job(Wire, frozen=True):
    """Everything a worker needs to run one plugin (small: no data rows)."""

    run_id: str
    plugin_id: str
    plugin_dir: str
    entrypoint: str
    code_hash: str
    settings: dict[str, Any]
    seed: int
    dataset: DatasetInfo
    upstream: dict[str, PluginResult] = {}
    artifacts_dir: str = ""
    data_access: DataAccessMode | None = None


class JobOutput(Wire, frozen=True):
    """What a job produced: always a valid result (the output boundary saw to it)."""

    plugin_id: str
    result: PluginResult
    accesses: tuple[DataAccess, ...] = ()
    duration_s: float = 0.0
    pid: int = 0
    spans: tuple[SpanRecord, ...] = ()
    artifact_sha256: dict[str, str] = {}
    """SHA-256 of each artifact file by path, when the executor moved the files
    (the dask executor returns them by content); empty otherwise."""


class RunJob(Wire, frozen=True, tag="run"):
    """Run ``job``; numbered by the executor. ``recycle_mb``: exit after the job
    when the worker's resident memory is above this (0: never)."""

    seq: int
    job: Job
    recycle_mb: int = 0


class CancelJob(Wire, frozen=True, tag="cancel"):
    """Drop job ``seq`` if it has not started (a started job is stopped by a kill)."""

    seq: int


class JobBegan(Wire, frozen=True, tag="began"):
    seq: int
    rss_bytes: int = 0


class JobEnded(Wire, frozen=True, tag="ended"):
    """``peak_rss_bytes``: the worker's resident-memory high-water mark during the
    job (0 when the system cannot tell), so a cap holds however briefly it was
    broken."""

    seq: int
    output: JobOutput
    rss_bytes: int = 0
    peak_rss_bytes: int = 0


ToWorker = RunJob | CancelJob
FromWorker = JobBegan | JobEnded

TO_WORKER_ENCODER = msgspec.msgpack.Encoder()
TO_WORKER_DECODER: msgspec.msgpack.Decoder[ToWorker] = msgspec.msgpack.Decoder(ToWorker)
FROM_WORKER_ENCODER = msgspec.msgpack.Encoder()
FROM_WORKER_DECODER: msgspec.msgpack.Decoder[FromWorker] = msgspec.msgpack.Decoder(FromWorker)
