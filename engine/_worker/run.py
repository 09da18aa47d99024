"""What runs a plugin: shared by the process pool's workers and the inline executor.

``execute_job`` never raises for anything a plugin does: a raise, a bad return
value, an unencodable metric all become a ``Failed`` result. Imports are cached
per worker (keyed by code hash, so an edited plugin is re-imported).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec

from contracts import (
    DataAccess,
    DatasetInfo,
    Failed,
    Finding,
    Na,
    Ok,
    PluginResult,
    chart_problem,
    is_registered,
)
from contracts._base import Wire
from contracts.dataset import SpanRecord
from contracts.manifest import DataAccessMode
from contracts.reasons import ENGINE_ONLY

from .context import PluginContext


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
    plugin_id: str
    result: PluginResult
    accesses: tuple[DataAccess, ...] = ()
    duration_s: float = 0.0
    pid: int = 0
    spans: tuple[SpanRecord, ...] = ()


def _enc_hook(obj: Any) -> Any:
    """Let plugins hand back numpy scalars and arrays in metrics."""
    item = getattr(obj, "item", None)
    tolist = getattr(obj, "tolist", None)
    if callable(tolist) and getattr(obj, "ndim", 0) > 0:
        return tolist()
    if callable(item):
        return item()
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


RESULT_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook)
RESULT_DECODER: msgspec.json.Decoder[PluginResult] = msgspec.json.Decoder(PluginResult)
JOB_ENCODER = msgspec.msgpack.Encoder()
JOB_DECODER = msgspec.msgpack.Decoder(Job)
OUTPUT_ENCODER = msgspec.msgpack.Encoder()
OUTPUT_DECODER = msgspec.msgpack.Decoder(JobOutput)

_ENTRYPOINTS: dict[tuple[str, str, str], Callable[..., Any]] = {}


def load_entrypoint(
    plugin_id: str, plugin_dir: str, entrypoint: str, code_hash: str
) -> Callable[..., Any]:
    """Import the plugin folder as a package and return its entrypoint.

    The package name carries the code hash so an edited plugin is a new module,
    and relative imports between the plugin's own files work.
    """
    key = (plugin_dir, entrypoint, code_hash)
    cached = _ENTRYPOINTS.get(key)
    if cached is not None:
        return cached
    module_name, _, func_name = entrypoint.partition(":")
    package = f"_engine_plugin_{plugin_id}_{code_hash[:12]}"
    if package not in sys.modules:
        init = Path(plugin_dir) / "__init__.py"
        spec: importlib.machinery.ModuleSpec | None
        if init.is_file():
            spec = importlib.util.spec_from_file_location(
                package, init, submodule_search_locations=[plugin_dir]
            )
        else:
            spec = importlib.machinery.ModuleSpec(package, None, is_package=True)
            spec.submodule_search_locations = [plugin_dir]
        if spec is None:
            raise ImportError(f"cannot import plugin folder {plugin_dir}")
        pkg: ModuleType = importlib.util.module_from_spec(spec)
        sys.modules[package] = pkg
        if spec.loader is not None:
            spec.loader.exec_module(pkg)
    module = importlib.import_module(f"{package}.{module_name}")
    func: Callable[..., Any] | None = getattr(module, func_name, None)
    if not callable(func):
        raise ImportError(f"{entrypoint!r} is not a callable in {plugin_dir}")
    _ENTRYPOINTS[key] = func
    return func


def _failure(code: str, exc: BaseException | None = None, message: str = "") -> Failed:
    if exc is None:
        return Failed(reason_code=code, message=message)
    return Failed(
        reason_code=code,
        error_type=type(exc).__name__,
        message=message or str(exc),
        traceback="".join(traceback.format_exception(exc)),
    )


def validate_result(plugin_id: str, value: Any) -> PluginResult:
    """Turn what a plugin returned into a valid result, or a ``Failed`` saying why."""
    if not isinstance(value, Ok | Na):
        return _failure(
            "INVALID_RESULT",
            message=f"plugin returned {type(value).__name__}; expected ok(...) or na(...)",
        )
    try:
        # A round trip validates every field's type (Struct constructors do not).
        checked = RESULT_DECODER.decode(RESULT_ENCODER.encode(value))
    except (msgspec.ValidationError, msgspec.EncodeError, NotImplementedError, TypeError) as exc:
        return _failure("INVALID_RESULT", exc, f"result does not fit the contract: {exc}")
    if isinstance(checked, Na):
        if checked.reason_code in ENGINE_ONLY:
            return _failure(
                "INVALID_RESULT",
                message=f"na reason code {checked.reason_code!r} is reserved for the engine",
            )
        if not is_registered(checked.reason_code, "na"):
            return _failure(
                "UNKNOWN_REASON_CODE",
                message=f"na reason code {checked.reason_code!r} is not a registered na code",
            )
        return checked
    assert isinstance(checked, Ok)
    problems = [p for f in checked.findings if (p := finding_problem(f))]
    if problems:
        return _failure("INVALID_FINDING", message="; ".join(problems))
    return msgspec.structs.replace(
        checked, findings=tuple(f.stamped(plugin_id) for f in checked.findings)
    )


def finding_problem(finding: Finding) -> str | None:
    """Structural breaches of the finding contract (kind checks are quality gates)."""
    if not 0.0 <= finding.confidence <= 1.0:
        return f"finding {finding.kind!r}: confidence {finding.confidence} is outside [0, 1]"
    if finding.measurement == "modeled" and (
        finding.impact is None or not finding.impact.assumptions
    ):
        return f"finding {finding.kind!r}: a modeled finding needs an impact with assumptions"
    if not finding.title.strip():
        return f"finding {finding.kind!r}: title must not be blank"
    for index, chart in enumerate(finding.charts):
        if problem := chart_problem(chart):
            return f"finding {finding.kind!r}: charts[{index}] ({chart.title!r}): {problem}"
    return None


def execute_job(job: Job) -> JobOutput:
    """Run one plugin and return its output; never raises for plugin misbehaviour."""
    from .reader import DataReader

    start = time.perf_counter()
    reader = DataReader(job.dataset, declared=job.data_access)
    spans: list[SpanRecord] = []
    try:
        try:
            func = load_entrypoint(job.plugin_id, job.plugin_dir, job.entrypoint, job.code_hash)
        except Exception as exc:
            result: PluginResult = _failure("IMPORT_ERROR", exc)
        else:
            ctx = PluginContext(
                plugin_id=job.plugin_id,
                run_id=job.run_id,
                data=reader,
                settings=dict(job.settings),
                seed=job.seed,
                upstream=dict(job.upstream),
                artifacts_dir=Path(job.artifacts_dir),
                spans=spans,
            )
            try:
                value = func(ctx)
            except (Exception, SystemExit) as exc:
                result = _failure("PLUGIN_ERROR", exc)
            else:
                result = validate_result(job.plugin_id, value)
    finally:
        reader.close()
    if reader.violations:
        # Fail closed even if the plugin caught the refusal and carried on.
        calls = "; ".join(
            f"{a.kind}({', '.join(a.columns)}) -> {a.rows} rows" for a in reader.accesses
        )
        result = _failure(
            "DATA_ACCESS_VIOLATION",
            message=f"{reader.violations[0]}; calls made: {calls or 'none'}",
        )
    return JobOutput(
        plugin_id=job.plugin_id,
        result=result,
        accesses=tuple(reader.accesses),
        duration_s=time.perf_counter() - start,
        pid=os.getpid(),
        spans=tuple(sorted(spans, key=lambda s: s.index)),
    )


def worker_main(conn: Connection) -> None:
    """Body of a pool worker: announce readiness, then run jobs until EOF."""
    # Imports done once per worker, before the first job arrives.
    import duckdb  # noqa: F401
    import numpy  # noqa: F401
    import pyarrow  # noqa: F401

    from . import reader  # noqa: F401

    conn.send_bytes(str(os.getpid()).encode())
    while True:
        try:
            payload = conn.recv_bytes()
        except (EOFError, OSError):
            return
        output = execute_job(JOB_DECODER.decode(payload))
        conn.send_bytes(OUTPUT_ENCODER.encode(output))
