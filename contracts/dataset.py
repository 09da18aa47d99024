"""What the engine knows about a dataset: typed columns, roles, fingerprint."""

from __future__ import annotations

from typing import Literal

from ._base import Wire
from .manifest import ColumnRole, ColumnSemantic

AccessKind = Literal["sql", "batches", "load", "load_all"]


class ColumnInfo(Wire, frozen=True):
    """One column: its DuckDB type, role, counts and (numeric columns) semantic.

    ``semantic`` is ``None`` for non-numeric columns and in datasets normalized
    before semantics existed; ``semantic_detail`` refines it (``hhmm``, ``year``,
    ``percent``, ``sequence``, ...) and ``semantic_rule`` says which rule decided.
    """

    name: str
    dtype: str
    role: ColumnRole
    null_count: int = 0
    distinct_count: int = 0
    semantic: ColumnSemantic | None = None
    semantic_detail: str = ""
    semantic_rule: str = ""


class DatasetInfo(Wire, frozen=True):
    """The normalized dataset: source, content fingerprint, schema and roles."""

    source: str
    fingerprint: str
    rows: int
    columns: tuple[ColumnInfo, ...]
    event_roles: dict[str, str] = {}
    db_path: str = ""

    def schema_view(self) -> tuple[tuple[str, str, str], ...]:
        """The part of the dataset the plan may depend on (no paths, no counts)."""
        return tuple((c.name, c.dtype, c.role) for c in self.columns)


class DataAccess(Wire, frozen=True):
    """One recorded call of ``ctx.data``."""

    kind: AccessKind
    columns: tuple[str, ...] = ()
    rows: int = 0
    query: str = ""
    limit: int | None = None


class SpanRecord(Wire, frozen=True):
    """A span a plugin opened through ``ctx.span(...)`` inside its worker.

    ``index`` numbers the plugin's spans in the order they were opened;
    ``parent`` is the index of the enclosing span, or -1 for the plugin's own span.
    """

    index: int
    parent: int
    name: str
    start_wall: float
    end_wall: float
    attributes: dict[str, str | int | float | bool] = {}
