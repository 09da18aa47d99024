"""Every plugin manifest decodes strictly, and the fleet's lane wiring is consistent."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest
import yaml

from contracts import Manifest
from engine._core.manifests import load_plugins

from .conftest import PLUGINS_DIR, load_plugin, manifest

MANIFESTS = sorted(PLUGINS_DIR.glob("*/plugin.yaml"))
EXPLANATION = ("column_profile", "numeric_summary", "process_durations")
DECISION = ("high_missingness", "robust_outliers", "queue_bottleneck", "duplicate_rows")


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.parent.name)
def test_manifest_decodes_strictly(path: Path) -> None:
    m = msgspec.convert(yaml.safe_load(path.read_text(encoding="utf-8")), Manifest)
    assert m.id == path.parent.name
    assert m.finding_kinds and all(k.strip() for k in m.finding_kinds)


def test_unknown_manifest_key_is_rejected() -> None:
    raw = yaml.safe_load((PLUGINS_DIR / "column_profile" / "plugin.yaml").read_text())
    raw["colour"] = "blue"
    with pytest.raises(msgspec.ValidationError, match="colour"):
        msgspec.convert(raw, Manifest)


def test_fleet_loads_through_the_engine() -> None:
    ids = {spec.id for spec in load_plugins(PLUGINS_DIR)}
    assert set(EXPLANATION + DECISION) <= ids


@pytest.mark.parametrize("plugin_id", EXPLANATION)
def test_explanation_plugins_map_to_their_consumers(plugin_id: str) -> None:
    m = manifest(plugin_id)
    assert m.lane == "explanation"
    assert m.diagnostic_only and m.requires_downstream_mapping and not m.decision_capable
    assert m.downstream
    for consumer in m.downstream:
        assert plugin_id in manifest(consumer).depends_on, consumer
    assert callable(load_plugin(plugin_id).run)


@pytest.mark.parametrize("plugin_id", DECISION)
def test_decision_plugins_consume_explanations(plugin_id: str) -> None:
    m = manifest(plugin_id)
    assert m.lane == "decision" and m.decision_capable and not m.diagnostic_only
    assert m.depends_on
    for dep in m.depends_on:
        upstream = manifest(dep)
        assert upstream.lane == "explanation"
        assert plugin_id in upstream.downstream, dep
    assert callable(load_plugin(plugin_id).run)


@pytest.mark.parametrize("plugin_id", EXPLANATION + DECISION)
def test_declared_data_access_is_sql(plugin_id: str) -> None:
    # Every one of these plugins reads only through ctx.data.sql (aggregates or a
    # LIMITed sample), so they scale to large datasets.
    assert manifest(plugin_id).data_access == "sql"


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.parent.name)
def test_numeric_requirements_name_the_semantics_they_accept(path: Path) -> None:
    # A plugin that needs numeric columns says which meanings of numbers it accepts;
    # none of them takes identifiers (codes, row numbers) as numbers.
    m = msgspec.convert(yaml.safe_load(path.read_text(encoding="utf-8")), Manifest)
    for req in m.requires.columns + m.applies_when.columns:
        if req.role == "numeric":
            assert req.semantic, f"{m.id}: role numeric without semantic"
            assert "identifier" not in req.semantic, m.id


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.parent.name)
def test_plugins_select_numeric_columns_by_semantic(path: Path) -> None:
    # ctx.data.names("numeric") alone would hand identifiers and clock times over.
    source = (path.parent / "plugin.py").read_text(encoding="utf-8")
    assert not re.search(r"names\(\s*(role=)?\"numeric\"\s*\)", source), path.parent.name
