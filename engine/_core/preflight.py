"""Preflight: a plugin's declared needs checked against the dataset's schema.

Runs before anything is scheduled. A broken hard requirement (``requires``) ends
the plugin ``failed``; a broken applicability condition (``applies_when``) ends it
``na``. Either way the plugin is never started and the reason names the column.
"""

from __future__ import annotations

from contracts import ColumnInfo, DatasetInfo, Failed, Na, PluginResult
from contracts.manifest import ColumnRequirement

from .manifests import PluginSpec


def _describe(req: ColumnRequirement) -> str:
    parts = []
    if req.name is not None:
        parts.append(f"column {req.name!r}")
    if req.role is not None:
        parts.append(f"role {req.role!r}")
    if req.event_role is not None:
        parts.append(f"event-log role {req.event_role!r}")
    if req.semantic:
        parts.append(f"semantic {' or '.join(repr(s) for s in req.semantic)}")
    what = " with ".join(parts) or "any column"
    return what if req.min_count == 1 else f"{req.min_count} x {what}"


def _fits(req: ColumnRequirement, column: ColumnInfo) -> bool:
    return (
        (req.name is None or column.name == req.name)
        and (req.role is None or column.role == req.role)
        and (not req.semantic or column.semantic in req.semantic)
    )


def unmet(req: ColumnRequirement, dataset: DatasetInfo) -> str | None:
    """Why ``req`` is not met by ``dataset``, or None.

    With ``semantic``, only columns whose inferred semantic is one of those count
    (a column without a semantic, such as a text column, never does); with
    ``event_role`` as well, the column serving the role must have one of them.
    """
    if req.event_role is not None:
        column = dataset.event_roles.get(req.event_role)
        if column is None:
            return f"no column has the event-log role {req.event_role!r}"
        if req.name is not None and column != req.name:
            return f"event-log role {req.event_role!r} is {column!r}, not {req.name!r}"
        info = next((c for c in dataset.columns if c.name == column), None)
        if req.semantic and (info is None or info.semantic not in req.semantic):
            semantic = None if info is None else info.semantic
            return (
                f"event-log role {req.event_role!r} is {column!r}, whose semantic is {semantic!r}"
            )
        return None
    matches = [c for c in dataset.columns if _fits(req, c)]
    if len(matches) >= req.min_count:
        return None
    found = next((c for c in dataset.columns if c.name == req.name), None)
    if found is not None:
        if req.role is not None and found.role != req.role:
            return f"column {req.name!r} has role {found.role!r}, not {req.role!r}"
        if req.semantic and found.semantic not in req.semantic:
            return f"column {req.name!r} has semantic {found.semantic!r}"
    return f"needs {_describe(req)}, found {len(matches)}"


def preflight(
    spec: PluginSpec, dataset: DatasetInfo, large_dataset_rows: int = 1_000_000
) -> PluginResult | None:
    """The result that ends ``spec`` before it starts, or None when it may run."""
    m = spec.manifest
    if m.data_access == "unbounded" and dataset.rows > large_dataset_rows:
        return Failed(
            reason_code="LARGE_DATASET_UNBOUNDED",
            error_type="PreflightError",
            message=(
                f"dataset has {dataset.rows} rows, above the large-dataset threshold of "
                f"{large_dataset_rows}, and the plugin declares data_access 'unbounded' "
                "(no sql, batched or bounded path)"
            ),
        )
    for req in m.requires.columns:
        why = unmet(req, dataset)
        if why is not None:
            return Failed(
                reason_code="PREFLIGHT_MISSING_COLUMN",
                error_type="PreflightError",
                message=f"hard requirement not met: {why}",
            )
    if dataset.rows < m.requires.min_rows:
        return Failed(
            reason_code="PREFLIGHT_TOO_FEW_ROWS",
            error_type="PreflightError",
            message=f"needs at least {m.requires.min_rows} rows, dataset has {dataset.rows}",
        )
    for req in m.applies_when.columns:
        why = unmet(req, dataset)
        if why is not None:
            return Na(
                reason_code="NOT_APPLICABLE",
                explanation=f"Does not apply to this dataset: {why}.",
                checked=(_describe(req),),
            )
    if dataset.rows < m.applies_when.min_rows:
        return Na(
            reason_code="INSUFFICIENT_DATA",
            explanation=(
                f"Needs at least {m.applies_when.min_rows} rows to be meaningful; "
                f"the dataset has {dataset.rows}."
            ),
            checked=("row count",),
        )
    return None
