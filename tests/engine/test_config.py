"""engine.yaml: strict decoding, path-qualified errors, overrides reach the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import ConfigError, Engine, build_plan, load_plugins
from engine._core.config import load_settings

from .conftest import MakePlugin


def test_settings_resolve_relative_dirs(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text("mode: legacy\nplugins_dir: fleet\nworkers: 2\nlanes: {a: explanation}\n")
    settings = load_settings(path)
    assert settings.mode == "legacy" and settings.workers == 2
    assert settings.plugins_dir == str(tmp_path / "fleet")
    assert settings.lanes == {"a": "explanation"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour: blue\n", "$: Object contains unknown field `colour`"),
        ("mode: fast\n", "$.mode: Invalid enum value 'fast'"),
        ("lanes: {a: sideways}\n", "$.lanes[...]: Invalid enum value 'sideways'"),
        ("workers: 0\n", "$.workers: must be at least 1"),
        ("timeouts: {a: -1}\n", "$.timeouts.a: must be positive"),
        ("- a list\n", "expected a mapping, got list"),
        ("mode: [unclosed\n", "invalid YAML"),
        ("x: !!python/object/apply:os.system ['true']\n", "invalid YAML"),
    ],
)
def test_bad_settings_are_path_qualified(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_missing_settings_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="settings file not found"):
        load_settings(tmp_path / "engine.yaml")


def test_lane_and_timeout_overrides_change_the_plan(
    make_plugin: MakePlugin, plugins_dir: Path
) -> None:
    make_plugin("dual", lane="explanation", decision_capable=True, timeout_s=30)
    make_plugin("diag", lane="explanation", diagnostic_only=True)
    plugins = load_plugins(plugins_dir)
    base = build_plan(plugins)
    moved = build_plan(plugins, lanes={"dual": "decision"}, timeouts={"dual": 5})
    step = next(s for s in moved.steps if s.plugin_id == "dual")
    assert (step.lane, step.manifest_lane, step.timeout_s, step.priority) == (
        "decision",
        "explanation",
        5,
        0,
    )
    assert moved.plan_hash != base.plan_hash
    with pytest.raises(ConfigError, match=r"lanes\.diag: cannot move to the decision lane"):
        build_plan(plugins, lanes={"diag": "decision"})
    with pytest.raises(ConfigError, match="timeouts: unknown plugin id"):
        build_plan(plugins, timeouts={"ghost": 1})


@pytest.mark.anyio
async def test_overrides_are_recorded_in_the_run_manifest(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("dual", lane="explanation", decision_capable=True, downstream=["decider"])
    make_plugin("decider", depends_on=["dual"])
    path = tmp_path / "engine.yaml"
    path.write_text(
        f"plugins_dir: {plugins_dir}\nruns_dir: runs\nlanes: {{dual: decision}}\n"
        "timeouts: {decider: 7}\nlarge_dataset_rows: 5000\n"
    )
    async with Engine.from_settings(load_settings(path), workers=1) as engine:
        result = await engine.run(dataset)
    manifest = json.loads((result.run_dir / "run_manifest.json").read_text())
    assert manifest["lane_overrides"] == {"dual": "decision"}
    assert manifest["timeout_overrides"] == {"decider": 7}
    assert manifest["large_dataset_rows"] == 5000
    assert result.run_dir.parent == tmp_path / "runs"
    lanes = {p.id: p.lane for p in result.report.plugins}
    assert lanes == {"dual": "decision", "decider": "decision"}
