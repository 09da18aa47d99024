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


def test_every_bad_value_is_reported_together_and_the_bounds_are_allowed(tmp_path: Path) -> None:
    from engine import ConfigError, load_settings

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "workers: 0\nworker_memory_mb: 0\nstall_timeout_s: 0\nlarge_dataset_rows: -1\n"
        "timeouts: {a: 0, b: -2, c: 1}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(bad)
    assert str(info.value) == "; ".join(
        f"{bad}: {p}"
        for p in (
            "$.workers: must be at least 1",
            "$.worker_memory_mb: must be at least 1 (or null for no cap)",
            "$.stall_timeout_s: must be positive",
            "$.large_dataset_rows: must be >= 0",
            "$.timeouts.a: must be positive",
            "$.timeouts.b: must be positive",
        )
    )
    edge = tmp_path / "edge.yaml"
    edge.write_text(
        "workers: 1\nworker_memory_mb: 1\nstall_timeout_s: 0.5\nlarge_dataset_rows: 0\n"
        "timeouts: {a: 0.25}\n"
    )
    settings = load_settings(edge)
    assert (settings.workers, settings.worker_memory_mb, settings.stall_timeout_s) == (1, 1, 0.5)
    assert (settings.large_dataset_rows, settings.timeouts) == (0, {"a": 0.25})


def test_unreadable_settings_files_say_why(tmp_path: Path) -> None:
    from engine import ConfigError, ProjectSettings, load_settings

    cases = {
        "latin.yaml": (b"mode: caf\xe9\n", "not UTF-8 (invalid continuation byte at byte 9)"),
        "broken.yaml": (b"mode: [x\n", "invalid YAML: while parsing a flow sequence"),
        "list.yaml": (b"- a\n", "expected a mapping, got list"),
    }
    for name, (data, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ConfigError) as info:
            load_settings(path)
        assert str(info.value) == f"{path}: {words}"
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "missing.yaml")
    assert str(info.value) == f"{tmp_path / 'missing.yaml'}: settings file not found"
    empty = tmp_path / "sub" / "empty.yaml"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    settings = load_settings(empty)
    assert settings == ProjectSettings(
        plugins_dir=str(empty.parent.resolve() / "plugins"),
        runs_dir=str(empty.parent.resolve() / "runs"),
    )


def test_the_dask_settings_need_the_dask_executor(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text("executor: inline\nscheduler: tcp://h:8786\ndata_store: store\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == (
        f"{path}: $.scheduler: only with executor: dask; "
        f"{path}: $.data_store: only with executor: dask"
    )
    path.write_text("executor: dask\nscheduler: tcp://h:8786\ndata_store: store\n")
    settings = load_settings(path)
    assert (settings.executor, settings.scheduler) == ("dask", "tcp://h:8786")
    assert settings.data_store == str(tmp_path / "store")  # a folder: beside the file
    path.write_text("executor: dask\ndata_store: s3://bucket/runs\n")
    assert load_settings(path).data_store == "s3://bucket/runs"  # a URL: as it is
    path.write_text("executor: dask\n")
    assert load_settings(path).data_store is None
