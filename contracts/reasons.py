"""The registry of reason codes.

Every ``na`` and ``failed`` result carries one of these codes. A code is never
removed or reused with another meaning once released; ``docs/contracts.md`` lists
the same registry in prose and a test keeps the two in step.
"""

from __future__ import annotations

from typing import Literal

from ._base import Wire

ReasonKind = Literal["na", "failed"]


class ReasonCode(Wire, frozen=True):
    code: str
    kind: ReasonKind
    meaning: str


_REGISTRY: tuple[ReasonCode, ...] = (
    # --- not applicable / nothing to report -----------------------------------
    ReasonCode(
        code="NO_SIGNIFICANT_EFFECT",
        kind="na",
        meaning="The plugin checked the data and found nothing worth acting on; "
        "the explanation says what was checked.",
    ),
    ReasonCode(
        code="NOT_APPLICABLE",
        kind="na",
        meaning="The plugin does not apply to this dataset (for example it needs a "
        "column role the dataset does not have).",
    ),
    ReasonCode(
        code="INSUFFICIENT_DATA",
        kind="na",
        meaning="The dataset has too few rows or values for the method to give a "
        "trustworthy answer.",
    ),
    ReasonCode(
        code="UPSTREAM_FAILED",
        kind="na",
        meaning="A plugin this one depends on failed, so this one was not started; "
        "the explanation names the upstream plugin.",
    ),
    ReasonCode(
        code="UPSTREAM_NA",
        kind="na",
        meaning="A plugin this one needs produced no result it could use.",
    ),
    # --- failures -----------------------------------------------------------
    ReasonCode(
        code="PLUGIN_ERROR",
        kind="failed",
        meaning="The plugin raised an exception; the result carries its type, "
        "message and traceback.",
    ),
    ReasonCode(
        code="INVALID_RESULT",
        kind="failed",
        meaning="The plugin returned something that is not a valid ok/na result.",
    ),
    ReasonCode(
        code="INVALID_FINDING",
        kind="failed",
        meaning="A finding broke the finding contract (confidence outside [0, 1], a blank "
        "title, or modeled without an impact and its assumptions); blank and undeclared "
        "kinds are counted by the quality gates instead.",
    ),
    ReasonCode(
        code="UNKNOWN_REASON_CODE",
        kind="failed",
        meaning="The plugin returned na with a reason code that is not in the registry.",
    ),
    ReasonCode(
        code="IMPORT_ERROR",
        kind="failed",
        meaning="The plugin's entrypoint could not be imported or is not callable, or its "
        "folder no longer matched its code hash (it was not run).",
    ),
    ReasonCode(
        code="TIMEOUT",
        kind="failed",
        meaning="The plugin ran longer than its timeout; its worker was killed and replaced.",
    ),
    ReasonCode(
        code="WORKER_CRASHED",
        kind="failed",
        meaning="The worker process running the plugin died, or its Dask worker left the "
        "cluster (the message names it); the executor carried on without it.",
    ),
    ReasonCode(
        code="RESOURCE_LIMIT",
        kind="failed",
        meaning="The plugin used more resident memory than the memory cap allows a job "
        "(counted from its worker's memory when the job started); the worker was killed "
        "and replaced.",
    ),
    ReasonCode(
        code="EXECUTOR_UNAVAILABLE",
        kind="failed",
        meaning="No worker could run the plugin (none could be started or reached, or its code "
        "or data could not be delivered); the message carries the executor's error. The "
        "run goes on and ends failed.",
    ),
    ReasonCode(
        code="STALLED",
        kind="failed",
        meaning="The run saw no event for the stall period while this plugin was "
        "outstanding; the stall was recorded and the plugin stopped.",
    ),
    ReasonCode(
        code="PREFLIGHT_MISSING_COLUMN",
        kind="failed",
        meaning="A column the plugin declares as a hard requirement is missing or "
        "has the wrong type; the plugin was never started.",
    ),
    ReasonCode(
        code="PREFLIGHT_TOO_FEW_ROWS",
        kind="failed",
        meaning="The dataset has fewer rows than the plugin's declared hard minimum; "
        "the plugin was never started.",
    ),
    ReasonCode(
        code="DATA_ACCESS_VIOLATION",
        kind="failed",
        meaning="The plugin called ctx.data in a way its manifest's data_access does not "
        "allow; the call was refused and the result lists the calls made.",
    ),
    ReasonCode(
        code="LARGE_DATASET_UNBOUNDED",
        kind="failed",
        meaning="The dataset is above the large-dataset threshold and the plugin declares "
        "only unbounded loads (no sql, batched or bounded path); it was never started.",
    ),
)

REASON_CODES: dict[str, ReasonCode] = {r.code: r for r in _REGISTRY}
"""Every registered code, by name."""

ENGINE_ONLY: frozenset[str] = frozenset({"UPSTREAM_FAILED"})
"""na codes only the engine may give (a plugin returning one is an invalid result)."""


def is_registered(code: str, kind: ReasonKind | None = None) -> bool:
    """Whether ``code`` is registered (and, if given, of ``kind``)."""
    entry = REASON_CODES.get(code)
    return entry is not None and (kind is None or entry.kind == kind)
