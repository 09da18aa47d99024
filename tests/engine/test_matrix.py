"""Plugin matrices: every plugin classified, drift from the manifests detected."""

from __future__ import annotations

import json
from pathlib import Path

from engine import load_plugins
from engine._tools.matrix import MATRIX_FILES, check, write

from .conftest import MakePlugin


def test_write_then_check_then_drift(
    make_plugin: MakePlugin, plugins_dir: Path, tmp_path: Path
) -> None:
    make_plugin(
        "explainer",
        lane="explanation",
        diagnostic_only=True,
        downstream=["decider"],
        requires_downstream_mapping=True,
    )
    make_plugin("decider", depends_on=["explainer"], data_access="bounded")
    docs = tmp_path / "docs"
    assert any("missing" in p for p in check(load_plugins(plugins_dir), docs))
    write(load_plugins(plugins_dir), docs)
    assert sorted(p.name for p in docs.iterdir()) == sorted(MATRIX_FILES)
    assert check(load_plugins(plugins_dir), docs) == []
    classes = json.loads((docs / "plugin_class_actionability_matrix.json").read_text())
    by_id = {row["id"]: row for row in classes["plugins"]}
    assert by_id["explainer"]["class"] == "diagnostic"
    assert by_id["explainer"]["consumed_by"] == ["decider"]
    assert by_id["decider"]["class"] == "actionable"
    access = json.loads((docs / "plugin_data_access_matrix.json").read_text())
    assert {r["id"]: r["allowed_calls"] for r in access["plugins"]}["decider"] == [
        "batches",
        "load",
        "sql",
    ]
    # A manifest change the matrices do not reflect is drift.
    make_plugin("decider", depends_on=["explainer"], data_access="unbounded")
    problems = check(load_plugins(plugins_dir), docs)
    assert any("out of date" in p for p in problems)


def test_unclassified_plugins_fail(
    make_plugin: MakePlugin, plugins_dir: Path, tmp_path: Path
) -> None:
    make_plugin("vague", lane="explanation")  # neither diagnostic_only nor decision_capable
    plugins = load_plugins(plugins_dir)
    write(plugins, tmp_path)
    problems = check(plugins, tmp_path)
    assert len(problems) == 1 and "'vague' is unclassified" in problems[0]


def test_bundled_fleet_matrices_are_current() -> None:
    root = Path(__file__).resolve().parents[2]
    assert check(load_plugins(root / "plugins"), root / "docs") == []
