"""Plugin matrices: what every plugin does, how actionable it is, how it reads data.

``python -m engine matrix`` writes three JSON files under ``docs/``;
``--check`` regenerates them in memory and fails on drift from the committed
files or on any plugin whose class cannot be derived from its manifest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine import ALLOWED_CALLS, PluginSpec

MATRIX_FILES = (
    "plugins_functionality_matrix.json",
    "plugin_class_actionability_matrix.json",
    "plugin_data_access_matrix.json",
)
UNCLASSIFIED = "unclassified"


def actionability_class(spec: PluginSpec) -> str:
    """``actionable`` (decision lane), ``diagnostic`` (explanation only),
    ``supporting`` (an explanation that could also decide), else ``unclassified``."""
    m = spec.manifest
    if m.lane == "decision" and m.decision_capable and not m.diagnostic_only:
        return "actionable"
    if m.lane == "explanation" and m.diagnostic_only and not m.decision_capable:
        return "diagnostic"
    if m.lane == "explanation" and m.decision_capable and not m.diagnostic_only:
        return "supporting"
    return UNCLASSIFIED


def build(plugins: Sequence[PluginSpec]) -> dict[str, dict[str, Any]]:
    """The three matrices, keyed by file name; deterministic (sorted by plugin id)."""
    ordered = sorted(plugins, key=lambda s: s.id)
    consumers: dict[str, list[str]] = {s.id: [] for s in ordered}
    for spec in ordered:
        for dep in spec.manifest.depends_on:
            if dep in consumers:
                consumers[dep].append(spec.id)
    functionality = []
    actionability = []
    data_access = []
    for spec in ordered:
        m = spec.manifest
        functionality.append(
            {
                "id": m.id,
                "version": m.version,
                "lane": m.lane,
                "description": " ".join(m.description.split()),
                "depends_on": sorted(m.depends_on),
                "finding_kinds": sorted(m.finding_kinds),
                "settings": sorted(m.settings),
                "requires_columns": [_req(r) for r in m.requires.columns],
                "applies_when_columns": [_req(r) for r in m.applies_when.columns],
                "timeout_s": m.timeout_s,
            }
        )
        klass = actionability_class(spec)
        obligations = (
            ["map to the decision plugins that consume it (downstream)"]
            if m.lane == "explanation"
            else ["return findings with a recommendation, or na with a registered reason"]
        )
        actionability.append(
            {
                "id": m.id,
                "lane": m.lane,
                "class": klass,
                "decision_capable": m.decision_capable,
                "diagnostic_only": m.diagnostic_only,
                "requires_downstream_mapping": m.requires_downstream_mapping,
                "explanation_obligations": obligations,
                "downstream": sorted(m.downstream),
                "consumed_by": sorted(consumers[m.id]),
            }
        )
        data_access.append(
            {
                "id": m.id,
                "declared": m.data_access,
                "allowed_calls": sorted(ALLOWED_CALLS[m.data_access]),
                "large_dataset_safe": m.data_access != "unbounded",
            }
        )

    def wrap(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {"plugins": rows, "count": len(rows)}

    return {
        MATRIX_FILES[0]: wrap(functionality),
        MATRIX_FILES[1]: wrap(actionability),
        MATRIX_FILES[2]: wrap(data_access),
    }


def _req(req: Any) -> str:
    parts = [f"{k}={getattr(req, k)}" for k in ("name", "role", "event_role") if getattr(req, k)]
    return ",".join(parts) + (f" x{req.min_count}" if req.min_count != 1 else "")


def render(matrix: dict[str, Any]) -> str:
    return json.dumps(matrix, indent=2, sort_keys=True) + "\n"


def write(plugins: Sequence[PluginSpec], docs_dir: Path) -> list[Path]:
    docs_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, matrix in build(plugins).items():
        path = docs_dir / name
        path.write_text(render(matrix), encoding="utf-8")
        written.append(path)
    return written


def check(plugins: Sequence[PluginSpec], docs_dir: Path) -> list[str]:
    """Every problem: unclassified plugins, missing or drifted matrix files."""
    problems = [
        f"{s.manifest_path}: plugin {s.id!r} is unclassified (lane {s.manifest.lane}, "
        f"decision_capable={s.manifest.decision_capable}, "
        f"diagnostic_only={s.manifest.diagnostic_only})"
        for s in sorted(plugins, key=lambda s: s.id)
        if actionability_class(s) == UNCLASSIFIED
    ]
    for name, matrix in build(plugins).items():
        path = docs_dir / name
        if not path.is_file():
            problems.append(f"{path}: missing; run `python -m engine matrix`")
        elif path.read_text(encoding="utf-8") != render(matrix):
            problems.append(
                f"{path}: out of date with the manifests; run `python -m engine matrix`"
            )
    return problems
