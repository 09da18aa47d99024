"""Manifest loading: strict decode, lane rules, fleet checks, all reported together."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import ConfigError, ManifestError, load_plugins

from .conftest import MakePlugin


def _messages(exc: ManifestError) -> list[str]:
    return [str(p) for p in exc.problems]


def test_valid_fleet_loads_sorted(make_plugin: MakePlugin, plugins_dir: Path) -> None:
    make_plugin("b_dec", depends_on=["a_exp"])
    make_plugin("a_exp", lane="explanation", diagnostic_only=True, downstream=["b_dec"])
    specs = load_plugins(plugins_dir)
    assert [s.id for s in specs] == ["a_exp", "b_dec"]
    assert all(len(s.code_hash) == 64 for s in specs)


def test_every_problem_is_reported_together(make_plugin: MakePlugin, plugins_dir: Path) -> None:
    make_plugin("unknown_key", color="blue")
    make_plugin("bad_lane", lane="sideways")
    make_plugin("needs_capable", decision_capable=False)
    make_plugin("diag_decision", diagnostic_only=True)
    make_plugin("unknown_dep", depends_on=["ghost"])
    make_plugin("outside", entrypoint="..evil:run")
    make_plugin("missing_module", entrypoint="nowhere:run")
    make_plugin("dup_a", id="dup_b")  # id differs from folder, and duplicates dup_b
    make_plugin("dup_b")
    make_plugin("bad_default", settings={"k": {"type": "int", "default": "x"}})
    make_plugin("no_downstream", lane="explanation", requires_downstream_mapping=True)
    (plugins_dir / "broken_yaml").mkdir()
    (plugins_dir / "broken_yaml" / "plugin.yaml").write_text("id: [unclosed\n")
    (plugins_dir / "no_yaml").mkdir()
    with pytest.raises(ManifestError) as info:
        load_plugins(plugins_dir)
    text = "\n".join(_messages(info.value))
    expected = [
        "plugins/unknown_key/plugin.yaml: $: Object contains unknown field `color`",
        "plugins/bad_lane/plugin.yaml: $.lane: Invalid enum value 'sideways'",
        "plugins/needs_capable/plugin.yaml: $.lane: 'decision' requires decision_capable",
        "plugins/diag_decision/plugin.yaml: $.lane: diagnostic_only plugins cannot",
        "plugins/unknown_dep/plugin.yaml: $.depends_on[0]: unknown plugin 'ghost'",
        "plugins/outside/plugin.yaml: $.entrypoint:",
        "plugins/missing_module/plugin.yaml: $.entrypoint: module 'nowhere' not found",
        "plugins/dup_a/plugin.yaml: $.id: 'dup_b' does not match its folder name 'dup_a'",
        "plugins/bad_default/plugin.yaml: $.settings.k.default: expected int, got str",
        "plugins/no_downstream/plugin.yaml: $.downstream: requires_downstream_mapping",
        "plugins/broken_yaml/plugin.yaml: invalid YAML:",
        "plugins/no_yaml/plugin.yaml: missing plugin.yaml",
    ]
    for fragment in expected:
        assert fragment in text, f"{fragment!r} not reported in:\n{text}"


def test_duplicate_ids_name_both_files(plugins_dir: Path, make_plugin: MakePlugin) -> None:
    make_plugin("same")
    nested = plugins_dir / "same_copy"
    make_plugin("same_copy")
    # Rewrite the copy's id to collide while keeping a valid folder-name mismatch report.
    text = (nested / "plugin.yaml").read_text().replace("id: same_copy", "id: same")
    (nested / "plugin.yaml").write_text(text)
    with pytest.raises(ManifestError) as info:
        load_plugins(plugins_dir)
    assert any("does not match its folder name" in str(p) for p in info.value.problems)


def test_entrypoint_symlink_outside_folder_is_rejected(
    tmp_path: Path, make_plugin: MakePlugin, plugins_dir: Path
) -> None:
    outside = tmp_path / "elsewhere.py"
    outside.write_text("def run(ctx):\n    return None\n")
    folder = make_plugin("sneaky", entrypoint="linked:run")
    (folder / "linked.py").symlink_to(outside)
    with pytest.raises(ManifestError) as info:
        load_plugins(plugins_dir)
    assert "resolves outside the plugin folder" in str(info.value)


def test_yaml_tags_that_construct_objects_are_refused(plugins_dir: Path) -> None:
    (plugins_dir / "evil").mkdir()
    (plugins_dir / "evil" / "plugin.yaml").write_text(
        "id: !!python/object/apply:os.system ['true']\n"
    )
    with pytest.raises(ManifestError) as info:
        load_plugins(plugins_dir)
    assert "plugins/evil/plugin.yaml: invalid YAML" in str(info.value)


def test_downstream_must_be_decision_plugins(make_plugin: MakePlugin, plugins_dir: Path) -> None:
    make_plugin("exp_a", lane="explanation", downstream=["exp_b"])
    make_plugin("exp_b", lane="explanation")
    with pytest.raises(ManifestError, match=r"\$\.downstream\[0\]: 'exp_b' is not a decision-lane"):
        load_plugins(plugins_dir)


def test_missing_plugins_dir_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_plugins(tmp_path / "nope")


def test_code_hash_covers_helper_files(make_plugin: MakePlugin, plugins_dir: Path) -> None:
    folder = make_plugin("helped", files={"helpers.py": "X = 1\n"})
    before = load_plugins(plugins_dir)[0].code_hash
    (folder / "helpers.py").write_text("X = 2\n")
    assert load_plugins(plugins_dir)[0].code_hash != before


def test_contracts_source_hash_follows_the_sources(tmp_path: Path) -> None:
    import shutil

    from engine._core.manifests import CONTRACTS_DIR, contracts_source_hash

    copy = tmp_path / "contracts"
    shutil.copytree(CONTRACTS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = contracts_source_hash(copy)
    assert before == contracts_source_hash(CONTRACTS_DIR)
    (copy / "results.py").write_text((copy / "results.py").read_text() + "\n# changed\n")
    contracts_source_hash.cache_clear()
    assert contracts_source_hash(copy) != before
