"""A deterministic, fail-closed, two-lane plugin engine for statistical analysis.

The public API is exactly the names in ``__all__``; everything else lives in
``engine._core`` and may change.
"""

from ._core.api import Engine, RunHandle, RunResult, prepare_plan
from ._core.data import DataReader, ingest
from ._core.errors import (
    ConfigError,
    CycleError,
    DatasetError,
    EngineError,
    EngineInternalError,
    LogIntegrityError,
    ManifestError,
    ManifestProblem,
    NondeterminismError,
    PlanError,
)
from ._core.eventlog import read_log
from ._core.executor import Executor, InlineExecutor, ProcessPool
from ._core.manifests import PluginSpec, load_plugins
from ._core.plan import build_plan
from ._core.state import RunState, apply, fold
from ._core.supervisor import ENGINE_VERSION as __version__

__all__ = [
    "ConfigError",
    "CycleError",
    "DataReader",
    "DatasetError",
    "Engine",
    "EngineError",
    "EngineInternalError",
    "Executor",
    "InlineExecutor",
    "LogIntegrityError",
    "ManifestError",
    "ManifestProblem",
    "NondeterminismError",
    "PlanError",
    "PluginSpec",
    "ProcessPool",
    "RunHandle",
    "RunResult",
    "RunState",
    "__version__",
    "apply",
    "build_plan",
    "fold",
    "ingest",
    "load_plugins",
    "prepare_plan",
    "read_log",
]
