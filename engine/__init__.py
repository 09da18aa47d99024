"""A deterministic, fail-closed, two-lane plugin engine for statistical analysis.

The public API is exactly the names in ``__all__``; everything else lives in the
private packages (``_core`` the kernel, ``_executors``, ``_worker``, ``_data``,
``_render`` the pages for people, ``_tools``) and may change. The tools (replay,
check, diff, ...) and the command line are built on these names only.
"""

from ._core import ENGINE_VERSION as __version__
from ._core.api import CACHE_DIR, DATA_CACHE, Engine, RunHandle, RunResult, prepare_plan
from ._core.artifacts import (
    HTML_NAME,
    MANIFEST_NAME,
    MARKDOWN_NAME,
    REPORT_NAME,
    TRACE_NAME,
    atomic_write,
    build_report,
    build_timeline,
    manifest_lanes,
    render_markdown,
    render_report_html,
    write_artifacts,
)
from ._core.cache import ResultCache
from ._core.config import CONFIG_NAME, ProjectSettings, load_settings
from ._core.eventlog import LOG_NAME, last_hash, read_log
from ._core.gates import evaluate_gates
from ._core.manifests import PluginSpec, load_plugins
from ._core.plan import MODES, build_plan, verify_plan_record
from ._core.state import RunState, apply, fold
from ._data.ingest import ingest
from ._executors import Executor, InlineExecutor, ProcessPool
from ._render import (
    lane_progress,
    render_diff_html,
    render_live_page,
    render_run_list,
    render_timeline_svg,
    timeline_table,
)
from ._worker.reader import ALLOWED_CALLS, DataReader
from .errors import (
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

__all__ = [
    "ALLOWED_CALLS",
    "CACHE_DIR",
    "CONFIG_NAME",
    "DATA_CACHE",
    "HTML_NAME",
    "LOG_NAME",
    "MANIFEST_NAME",
    "MARKDOWN_NAME",
    "MODES",
    "REPORT_NAME",
    "TRACE_NAME",
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
    "ProjectSettings",
    "ResultCache",
    "RunHandle",
    "RunResult",
    "RunState",
    "__version__",
    "apply",
    "atomic_write",
    "build_plan",
    "build_report",
    "build_timeline",
    "evaluate_gates",
    "fold",
    "ingest",
    "lane_progress",
    "last_hash",
    "load_plugins",
    "load_settings",
    "manifest_lanes",
    "prepare_plan",
    "read_log",
    "render_diff_html",
    "render_live_page",
    "render_markdown",
    "render_report_html",
    "render_run_list",
    "render_timeline_svg",
    "timeline_table",
    "verify_plan_record",
    "write_artifacts",
]
