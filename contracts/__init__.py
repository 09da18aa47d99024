"""The plugin SDK and every wire type of the engine.

A plugin imports only from here::

    from contracts import Finding, Evidence, Impact, ok, na

    def run(ctx):
        ...
        return ok(findings=[Finding(kind="...", title="...")], metrics={...})
"""

from ._base import CONTRACTS_VERSION, canonical_json, stable_hash
from .charts import (
    Bars,
    BarSeries,
    Chart,
    HeatMap,
    Histogram,
    Line,
    Marker,
    QuantileGroup,
    Quantiles,
    Rule,
    Series,
    chart_problem,
)
from .dataset import ColumnInfo, DataAccess, DatasetInfo
from .manifest import QUANTITY_SEMANTICS, ColumnSemantic, Manifest
from .plan import Plan, PlanStep
from .reasons import REASON_CODES, ReasonCode, is_registered
from .report import PluginReport, Report, RunManifest, Summary
from .results import (
    Evidence,
    Failed,
    Finding,
    Impact,
    Na,
    Ok,
    PluginResult,
    failed,
    finding_id,
    na,
    ok,
)

__all__ = [
    "CONTRACTS_VERSION",
    "QUANTITY_SEMANTICS",
    "REASON_CODES",
    "BarSeries",
    "Bars",
    "Chart",
    "ColumnInfo",
    "ColumnSemantic",
    "DataAccess",
    "DatasetInfo",
    "Evidence",
    "Failed",
    "Finding",
    "HeatMap",
    "Histogram",
    "Impact",
    "Line",
    "Manifest",
    "Marker",
    "Na",
    "Ok",
    "Plan",
    "PlanStep",
    "PluginReport",
    "PluginResult",
    "QuantileGroup",
    "Quantiles",
    "ReasonCode",
    "Report",
    "Rule",
    "RunManifest",
    "Series",
    "Summary",
    "canonical_json",
    "chart_problem",
    "failed",
    "finding_id",
    "is_registered",
    "na",
    "ok",
    "stable_hash",
]
