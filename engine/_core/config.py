"""Project settings: ``engine.yaml``, decoded strictly with path-qualified errors.

Everything here can also be passed to :class:`engine.Engine` directly; the file is
a convenience for the CLI and for keeping a project's policy in version control.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from contracts._base import StrictWire
from contracts.plan import Mode

from ..errors import ConfigError
from .manifests import SAFE_LOADER, qualify_validation_error

CONFIG_NAME = "engine.yaml"


class ProjectSettings(StrictWire, frozen=True):
    """Project policy. Unknown keys are errors.

    Attributes:
        mode: ``two_lane_strict`` (default) or ``legacy``.
        plugins_dir: plugin folder, relative to the settings file.
        runs_dir: where run directories go, relative to the settings file.
        workers: worker processes (default: CPU count).
        large_dataset_rows: above this, unbounded-only plugins are failed.
        lanes: lane overrides for experiments, ``{plugin_id: lane}``; recorded in the
            plan (and so in its hash and every cache key).
        timeouts: per-plugin timeout overrides in seconds, ``{plugin_id: seconds}``.
        settings: per-plugin setting overrides, ``{plugin_id: {name: value}}``.
        worker_memory_mb: per-worker memory cap in MB (``null``: no cap).
        stall_timeout_s: seconds without any event, with work outstanding, after
            which the stall is recorded and outstanding plugins are stopped.
        trace_file: write ``trace.json`` (OTLP JSON of the run's spans) in every run.
        executor: ``process`` (default), ``inline`` or ``dask``.
        scheduler: the Dask scheduler's address (``tcp://host:8786``) for the dask
            executor; without it, a local cluster of ``workers`` processes.
        data_store: where the dask executor publishes datasets for its workers: a
            folder (relative to the settings file) or an fsspec URL (``s3://...``).
    """

    mode: Mode = "two_lane_strict"
    plugins_dir: str = "plugins"
    runs_dir: str = "runs"
    workers: int | None = None
    large_dataset_rows: int = 1_000_000
    lanes: dict[str, Literal["decision", "explanation"]] = {}
    timeouts: dict[str, float] = {}
    settings: dict[str, dict[str, Any]] = {}
    worker_memory_mb: int | None = 4096
    stall_timeout_s: float = 900.0
    trace_file: bool = True
    executor: Literal["process", "inline", "dask"] = "process"
    scheduler: str | None = None
    data_store: str | None = None


def load_settings(path: str | Path) -> ProjectSettings:
    """Read ``path``; relative directories in it are resolved against its folder."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_bytes().decode("utf-8"), Loader=SAFE_LOADER)
    except FileNotFoundError:
        raise ConfigError(f"{path}: settings file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping, got {type(raw).__name__}")
    try:
        settings = msgspec.convert(raw, ProjectSettings)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {qualify_validation_error(str(exc))}") from None
    problems = []
    if settings.workers is not None and settings.workers < 1:
        problems.append("$.workers: must be at least 1")
    if settings.worker_memory_mb is not None and settings.worker_memory_mb < 1:
        problems.append("$.worker_memory_mb: must be at least 1 (or null for no cap)")
    if not settings.stall_timeout_s > 0:
        problems.append("$.stall_timeout_s: must be positive")
    if settings.large_dataset_rows < 0:
        problems.append("$.large_dataset_rows: must be >= 0")
    for pid, seconds in sorted(settings.timeouts.items()):
        if not seconds > 0:
            problems.append(f"$.timeouts.{pid}: must be positive")
    if settings.executor != "dask":
        problems += [
            f"$.{name}: only with executor: dask"
            for name in ("scheduler", "data_store")
            if getattr(settings, name) is not None
        ]
    if problems:
        raise ConfigError("; ".join(f"{path}: {p}" for p in problems))
    base = path.resolve().parent
    store = settings.data_store
    if store is not None and "://" not in store:
        store = str(base / store)
    return msgspec.structs.replace(
        settings,
        plugins_dir=str(base / settings.plugins_dir),
        runs_dir=str(base / settings.runs_dir),
        data_store=store,
    )
