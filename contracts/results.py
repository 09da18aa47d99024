"""What a plugin returns: findings and the three result states.

There is no ``skipped`` state. A plugin returns :func:`ok` or :func:`na`; raising
means ``failed``; returning anything else is ``failed``/``INVALID_RESULT``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ._base import Wire, sha256_hex
from .charts import Chart

Severity = Literal["info", "low", "medium", "high", "critical"]
Measurement = Literal["measured", "modeled"]
Scalar = int | float | str | bool | None


class Evidence(Wire, frozen=True):
    """What reproduces a finding: the columns, the figures, and the query or rows."""

    columns: tuple[str, ...] = ()
    metrics: dict[str, Scalar] = {}
    query: str = ""
    rows: int | None = None


class Impact(Wire, frozen=True):
    """A modeled effect of acting on a finding (``value`` ``unit``, e.g. 38 hours/month)."""

    value: float
    unit: str
    description: str = ""
    assumptions: tuple[str, ...] = ()


class Finding(Wire, frozen=True):
    """One observation. ``id`` is stable: a hash of plugin id, kind and target.

    Plugins leave ``plugin_id`` and ``id`` empty; the engine fills them in.
    ``charts`` are the plots of the evidence (``contracts.charts``), drawn by the
    engine in ``report.html``.
    """

    kind: str
    title: str
    severity: Severity = "info"
    confidence: float = 1.0
    what: str = ""
    why: str = ""
    recommendation: str = ""
    target: str = ""
    evidence: Evidence = Evidence()
    measurement: Measurement = "measured"
    impact: Impact | None = None
    charts: tuple[Chart, ...] = ()
    plugin_id: str = ""
    id: str = ""

    def stamped(self, plugin_id: str) -> Finding:
        """Return a copy carrying ``plugin_id`` and the stable ``id``."""
        return msgspec.structs.replace(
            self, plugin_id=plugin_id, id=finding_id(plugin_id, self.kind, self.target)
        )


def finding_id(plugin_id: str, kind: str, target: str) -> str:
    return sha256_hex(f"{plugin_id}\x1f{kind}\x1f{target}".encode())[:16]


class Ok(Wire, frozen=True, tag="ok", tag_field="status"):
    findings: tuple[Finding, ...] = ()
    metrics: dict[str, Any] = {}
    artifacts: tuple[str, ...] = ()


class Na(Wire, frozen=True, tag="na", tag_field="status"):
    reason_code: str
    explanation: str
    checked: tuple[str, ...] = ()
    metrics: dict[str, Any] = {}


class Failed(Wire, frozen=True, tag="failed", tag_field="status"):
    reason_code: str
    error_type: str = ""
    message: str = ""
    traceback: str = ""


PluginResult = Ok | Na | Failed
"""The three result states, tagged by ``status``."""


def ok(
    findings: list[Finding] | tuple[Finding, ...] = (),
    metrics: dict[str, Any] | None = None,
    artifacts: list[str] | tuple[str, ...] = (),
) -> Ok:
    """The plugin produced a result."""
    return Ok(findings=tuple(findings), metrics=dict(metrics or {}), artifacts=tuple(artifacts))


def na(
    reason_code: str,
    explanation: str,
    checked: list[str] | tuple[str, ...] = (),
    metrics: dict[str, Any] | None = None,
) -> Na:
    """The plugin ran (or could not apply) and has nothing to report, and says why."""
    return Na(
        reason_code=reason_code,
        explanation=explanation,
        checked=tuple(checked),
        metrics=dict(metrics or {}),
    )


def failed(reason_code: str, message: str, error_type: str = "", traceback: str = "") -> Failed:
    return Failed(
        reason_code=reason_code, error_type=error_type, message=message, traceback=traceback
    )
