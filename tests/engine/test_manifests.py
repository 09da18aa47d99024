"""Manifest loading: strict decode, lane rules, fleet checks, all reported together."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest
import yaml

from contracts import Manifest
from engine import ConfigError, ManifestError, load_plugins

from .conftest import MakePlugin, write_plugin


def _messages(exc: ManifestError) -> list[str]:
    return [str(p) for p in exc.problems]


def test_valid_fleet_loads_sorted(make_plugin: MakePlugin, plugins_dir: Path) -> None:
    make_plugin("b_dec", depends_on=["a_exp"])
    make_plugin("a_exp", lane="explanation", diagnostic_only=True, downstream=["b_dec"])
    specs = load_plugins(plugins_dir)
    assert [s.id for s in specs] == ["a_exp", "b_dec"]
    assert [(s.directory, s.manifest_path) for s in specs] == [
        ((plugins_dir / p).resolve(), plugins_dir / p / "plugin.yaml") for p in ("a_exp", "b_dec")
    ]
    assert [s.code_hash for s in specs] == [
        _documented_code_hash(plugins_dir / "a_exp"),
        _documented_code_hash(plugins_dir / "b_dec"),
    ]


def _documented_code_hash(folder: Path) -> str:
    """docs/architecture.md: SHA-256 over the contracts version and sources, then each
    file's relative path, a NUL and the SHA-256 of its bytes, in path order."""
    import hashlib

    from contracts import CONTRACTS_VERSION
    from engine._core.manifests import CONTRACTS_DIR

    sources = hashlib.sha256()
    for path in sorted(CONTRACTS_DIR.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        sources.update(path.relative_to(CONTRACTS_DIR).as_posix().encode() + b"\0")
        sources.update(hashlib.sha256(path.read_bytes()).digest())
    h = hashlib.sha256(f"contracts={CONTRACTS_VERSION}:{sources.hexdigest()}\n".encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def test_every_problem_is_reported_together(make_plugin: MakePlugin, plugins_dir: Path) -> None:
    make_plugin("unknown_key", color="blue")
    make_plugin("bad_lane", lane="sideways")
    make_plugin("bad_id", id="Bad-Id")
    make_plugin("needs_capable", decision_capable=False)
    make_plugin("diag_decision", diagnostic_only=True)
    make_plugin("unknown_dep", depends_on=["ghost"])
    make_plugin("outside", entrypoint="..evil:run")
    make_plugin("missing_module", entrypoint="nowhere:run")
    # An id that differs from its folder is refused there, so it is never also
    # reported as a duplicate of dup_b (folder names are unique: load_plugins cannot
    # meet a duplicate id; the fleet check is tested on its own below).
    make_plugin("dup_a", id="dup_b")
    make_plugin("dup_b")
    make_plugin("bad_default", settings={"k": {"type": "int", "default": "x"}})
    make_plugin("no_downstream", lane="explanation", requires_downstream_mapping=True)
    (plugins_dir / "broken_yaml").mkdir()
    (plugins_dir / "broken_yaml" / "plugin.yaml").write_text("id: [unclosed\n")
    (plugins_dir / "no_yaml").mkdir()
    with pytest.raises(ManifestError) as info:
        load_plugins(plugins_dir)
    # Every problem, each once, in folder order, each message whole.
    assert _messages(info.value) == [
        "plugins/bad_default/plugin.yaml: $.settings.k.default: expected int, got str",
        "plugins/bad_id/plugin.yaml: $.id: 'Bad-Id' is not a valid plugin id (lowercase "
        "letters, digits, _)",
        "plugins/bad_lane/plugin.yaml: $.lane: Invalid enum value 'sideways'",
        "plugins/broken_yaml/plugin.yaml: invalid YAML: did not find expected ',' or ']' "
        "(line 2, column 1)",
        "plugins/diag_decision/plugin.yaml: $.lane: diagnostic_only plugins cannot be in the "
        "'decision' lane",
        "plugins/diag_decision/plugin.yaml: $.diagnostic_only: a plugin cannot be both "
        "decision_capable and diagnostic_only",
        "plugins/dup_a/plugin.yaml: $.id: 'dup_b' does not match its folder name 'dup_a'",
        "plugins/missing_module/plugin.yaml: $.entrypoint: module 'nowhere' not found in "
        "missing_module/",
        "plugins/needs_capable/plugin.yaml: $.lane: 'decision' requires decision_capable: true",
        "plugins/no_downstream/plugin.yaml: $.downstream: requires_downstream_mapping is set "
        "but downstream is empty",
        "plugins/no_yaml/plugin.yaml: missing plugin.yaml",
        "plugins/outside/plugin.yaml: $.entrypoint: '..evil:run' must be 'module:function' "
        "inside the plugin folder",
        "plugins/unknown_key/plugin.yaml: $: Object contains unknown field `color`",
        "plugins/unknown_dep/plugin.yaml: $.depends_on[0]: unknown plugin 'ghost'",
    ]
    # A problem found after decoding names the plugin it belongs to.
    assert [p.plugin_id for p in info.value.problems] == [
        "bad_default",
        "Bad-Id",
        None,
        None,
        "diag_decision",
        "diag_decision",
        "dup_b",
        "missing_module",
        "needs_capable",
        "no_downstream",
        None,
        "outside",
        None,
        "unknown_dep",
    ]


def test_duplicate_ids_name_both_files(plugins_dir: Path, make_plugin: MakePlugin) -> None:
    make_plugin("same")
    nested = plugins_dir / "same_copy"
    make_plugin("same_copy")
    # Rewrite the copy's id to collide while keeping a valid folder-name mismatch report.
    text = (nested / "plugin.yaml").read_text().replace("id: same_copy", "id: same")
    (nested / "plugin.yaml").write_text(text)
    with pytest.raises(ManifestError) as info:
        load_plugins(plugins_dir)
    # The copy is reported for its folder name, and both files for the shared id.
    assert [str(p) for p in info.value.problems] == [
        "plugins/same_copy/plugin.yaml: $.id: 'same' does not match its folder name 'same_copy'",
    ]


def test_duplicate_ids_name_both_files_in_each_report(tmp_path: Path) -> None:
    from engine._core.manifests import PluginSpec, _check_fleet
    from engine.errors import ManifestProblem

    root = tmp_path / "plugins"
    specs = [
        write_plugin(root, "same"),
        write_plugin(root, "twin", id="same"),
        write_plugin(root, "other"),
    ]
    loaded = []
    for folder in specs:
        manifest = msgspec.convert(yaml.safe_load((folder / "plugin.yaml").read_text()), Manifest)
        loaded.append(
            PluginSpec(
                manifest=manifest,
                directory=folder,
                manifest_path=folder / "plugin.yaml",
                code_hash="h",
            )
        )
    problems: list[ManifestProblem] = []
    _check_fleet(loaded, root, problems)
    both = "plugins/same/plugin.yaml, plugins/twin/plugin.yaml"
    assert [(str(p), p.plugin_id) for p in problems] == [
        (
            f"plugins/same/plugin.yaml: $.id: duplicate plugin id 'same' (declared in {both})",
            "same",
        ),
        (
            f"plugins/twin/plugin.yaml: $.id: duplicate plugin id 'same' (declared in {both})",
            "same",
        ),
    ]


def test_entrypoint_symlink_outside_folder_is_rejected(
    tmp_path: Path, make_plugin: MakePlugin, plugins_dir: Path
) -> None:
    outside = tmp_path / "elsewhere.py"
    outside.write_text("def run(ctx):\n    return None\n")
    folder = make_plugin("sneaky", entrypoint="linked:run")
    (folder / "linked.py").symlink_to(outside)
    with pytest.raises(ManifestError) as info:
        load_plugins(plugins_dir)
    assert _messages(info.value) == [
        "plugins/sneaky/plugin.yaml: $.entrypoint: 'linked:run' resolves outside the plugin folder"
    ]


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


def test_code_hash_covers_nested_files_and_skips_bytecode(
    make_plugin: MakePlugin, plugins_dir: Path
) -> None:
    from engine._core.manifests import code_hash

    folder = make_plugin("nested", files={f"helper_{i}.py": f"X = {i}\n" for i in range(12)})
    (folder / "sub").mkdir()
    (folder / "sub" / "deep.py").write_text("Y = 1\n")
    documented = _documented_code_hash(folder)
    assert code_hash(folder) == documented
    # Bytecode and caches are not the plugin's code: they leave the hash alone.
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "plugin.cpython-311.pyc").write_bytes(b"\0")
    (folder / "sub" / "deep.pyc").write_bytes(b"\0")
    (folder / "sub" / "deep.pyo").write_bytes(b"\0")
    (folder / "a.pyc").write_bytes(b"\0")
    assert code_hash(folder) == documented
    (folder / "sub" / "deep.py").write_text("Y = 2\n")
    assert code_hash(folder) != documented


def test_display_falls_back_to_the_whole_path(tmp_path: Path) -> None:
    from engine._core.manifests import _display

    root = tmp_path / "plugins"
    assert _display(root / "x" / "plugin.yaml", root) == "plugins/x/plugin.yaml"
    assert _display(Path("/elsewhere/plugin.yaml"), root) == "/elsewhere/plugin.yaml"


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


@pytest.mark.parametrize(
    ("spec", "value", "problem"),
    [
        ({"type": "int", "default": 0}, 3, None),
        ({"type": "int", "default": 0}, True, "expected int, got bool"),
        ({"type": "int", "default": 0}, 1.5, "expected int, got float"),
        ({"type": "float", "default": 0.0}, 2, None),
        ({"type": "float", "default": 0.0}, False, "expected float, got bool"),
        ({"type": "float", "default": 0.0}, "x", "expected float, got str"),
        ({"type": "str", "default": ""}, "x", None),
        ({"type": "str", "default": ""}, 1, "expected str, got int"),
        ({"type": "bool", "default": False}, True, None),
        ({"type": "bool", "default": False}, 1, "expected bool, got int"),
        ({"type": "int", "default": 0, "minimum": 2}, 2, None),
        ({"type": "int", "default": 0, "minimum": 2}, 1, "1 is below the minimum 2.0"),
        ({"type": "float", "default": 0, "maximum": 1}, 1.0, None),
        ({"type": "float", "default": 0, "maximum": 1}, 1.5, "1.5 is above the maximum 1.0"),
        ({"type": "str", "default": "a", "minimum": 1, "maximum": 2}, "zz", None),
        ({"type": "str", "default": "a", "choices": ["a", "b"]}, "b", None),
        (
            {"type": "str", "default": "a", "choices": ["a", "b"]},
            "c",
            "'c' is not one of ['a', 'b']",
        ),
        ({"type": "str", "default": "a"}, "anything", None),
    ],
)
def test_setting_problems(spec: dict[str, object], value: object, problem: str | None) -> None:
    from contracts.manifest import SettingSpec
    from engine._core.manifests import setting_problem

    assert setting_problem(msgspec.convert(spec, SettingSpec), value) == problem


def test_yaml_reasons_name_the_line_and_column(plugins_dir: Path) -> None:
    from engine._core.manifests import SAFE_LOADER, _yaml_reason

    with pytest.raises(yaml.YAMLError) as info:
        yaml.load("a: 1\nb: [x\n", Loader=SAFE_LOADER)
    assert _yaml_reason(info.value) == "did not find expected ',' or ']' (line 3, column 1)"
    bare = yaml.YAMLError("first line\nsecond line")
    assert _yaml_reason(bare) == "first line"
    assert _yaml_reason(yaml.YAMLError()) == "YAMLError"  # no message: still words


def test_the_spec_cache_reuses_a_folder_only_while_its_files_are_unchanged(
    make_plugin: MakePlugin, plugins_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from engine._core import manifests
    from engine._core.manifests import SpecCache, code_hash
    from engine._data.ingest import RACY_NS

    folder = make_plugin("cached")
    # Hashed "later": the files are older than the racy window by then.
    clock = [os.stat(folder / "plugin.py").st_ctime_ns + 3 * RACY_NS]
    monkeypatch.setattr(time, "time_ns", lambda: clock[0])
    cache = SpecCache()
    first = load_plugins(plugins_dir, cache=cache)[0]
    assert first.code_hash == code_hash(folder)
    assert load_plugins(plugins_dir, cache=cache)[0] is first  # not parsed again
    assert cache.get(plugins_dir / "elsewhere", manifests.folder_state(folder)) is None

    def reloaded() -> manifests.PluginSpec:
        clock[0] = time_after_every_write(folder)
        return load_plugins(plugins_dir, cache=cache)[0]

    # Each change makes a new spec with the new content's hash.
    (folder / "plugin.py").write_text((folder / "plugin.py").read_text() + "\n# edited\n")
    second = reloaded()
    assert second is not first and second.code_hash == code_hash(folder) != first.code_hash
    (folder / "helper.py").write_text("X = 1\n")  # a file added
    third = reloaded()
    assert third is not second and third.code_hash == code_hash(folder)
    (folder / "helper.py").unlink()  # and removed
    fourth = reloaded()
    assert fourth.code_hash == second.code_hash and fourth is not third
    # A same-size rewrite with the times put back is still seen: ctime moved.
    before = os.stat(folder / "plugin.py")
    text = (folder / "plugin.py").read_text()
    (folder / "plugin.py").write_text(text.replace("# edited", "# edite!"))
    os.utime(folder / "plugin.py", ns=(before.st_atime_ns, before.st_mtime_ns))
    fifth = reloaded()
    assert fifth is not fourth and fifth.code_hash == code_hash(folder) != fourth.code_hash


def time_after_every_write(folder: Path) -> int:
    from engine._data.ingest import RACY_NS

    newest = max(max(p.stat().st_mtime_ns, p.stat().st_ctime_ns) for p in folder.iterdir())
    return newest + 3 * RACY_NS


def test_a_folder_written_just_before_it_was_hashed_is_hashed_again(
    make_plugin: MakePlugin, plugins_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write in the same clock tick as the one before leaves size, times and inode
    as they were: only the racy rule (hash again while the files are young) sees it."""
    import os

    from engine._core.manifests import SpecCache, code_hash
    from engine._data.ingest import RACY_NS

    folder = make_plugin("young")
    newest = os.stat(folder / "plugin.py").st_ctime_ns
    monkeypatch.setattr(time, "time_ns", lambda: newest + RACY_NS // 2)
    cache = SpecCache()
    first = load_plugins(plugins_dir, cache=cache)[0]
    assert load_plugins(plugins_dir, cache=cache)[0] is not first  # not trusted yet
    # Old enough: the next load is remembered, the one after reuses it.
    monkeypatch.setattr(time, "time_ns", lambda: newest + 2 * RACY_NS)
    remembered = load_plugins(plugins_dir, cache=cache)[0]
    assert load_plugins(plugins_dir, cache=cache)[0] is remembered
    assert remembered.code_hash == first.code_hash == code_hash(folder)


def test_resolve_settings_applies_overrides_and_reports_every_bad_one() -> None:
    from engine._core.manifests import PluginSpec, resolve_settings

    settings = {
        "k": {"type": "int", "default": 3},
        "alpha": {"type": "float", "default": 0.05, "minimum": 0, "maximum": 1},
    }
    manifest = msgspec.convert(
        {"id": "p", "version": "1", "lane": "explanation", "settings": settings}, Manifest
    )
    spec = PluginSpec(
        manifest=manifest, directory=Path("p"), manifest_path=Path("p"), code_hash="h"
    )
    assert resolve_settings(spec, None) == {"alpha": 0.05, "k": 3}
    assert resolve_settings(spec, {}) == {"alpha": 0.05, "k": 3}
    assert resolve_settings(spec, {"k": 5}) == {"alpha": 0.05, "k": 5}
    with pytest.raises(ConfigError) as info:
        resolve_settings(spec, {"zeta": 1, "k": "x", "alpha": 2.0, "beta": 1})
    assert str(info.value) == (
        "settings.p.alpha: 2.0 is above the maximum 1.0; settings.p.beta: unknown setting; "
        "settings.p.k: expected int, got str; settings.p.zeta: unknown setting"
    )


def test_each_manifest_rule_in_its_words(make_plugin: MakePlugin, plugins_dir: Path) -> None:
    make_plugin("blank_version", version=" ")
    make_plugin("decides_downstream", downstream=["blank_version"])
    make_plugin("self_dep", lane="explanation", depends_on=["self_dep"])
    make_plugin("twice", lane="explanation", depends_on=["blank_version", "blank_version"])
    make_plugin("blank_kind", finding_kinds=["ok", " "])
    make_plugin("no_time", timeout_s=0)
    make_plugin("quick", timeout_s=0.5)  # a fraction of a second is a valid timeout
    make_plugin("no_func", entrypoint="plugin:")
    package = make_plugin("package", entrypoint="pkg.sub:run")  # pkg/sub/__init__.py
    (package / "pkg" / "sub").mkdir(parents=True)
    (package / "pkg" / "sub" / "__init__.py").write_text("def run(ctx):\n    return None\n")
    make_plugin("good")
    make_plugin("helper", lane="explanation")
    make_plugin("explains", lane="explanation", downstream=["good", "ghost", "helper"])
    (plugins_dir / "latin1").mkdir()
    (plugins_dir / "latin1" / "plugin.yaml").write_bytes(b"id: caf\xe9\n")
    (plugins_dir / "listed").mkdir()
    (plugins_dir / "listed" / "plugin.yaml").write_text("- id\n")
    (plugins_dir / "_private").mkdir()  # not a plugin folder: skipped
    (plugins_dir / ".hidden").mkdir()
    with pytest.raises(ManifestError) as info:
        load_plugins(plugins_dir)
    assert [(str(p), p.plugin_id) for p in info.value.problems] == [
        ("plugins/blank_kind/plugin.yaml: $.finding_kinds[1]: must not be blank", "blank_kind"),
        ("plugins/blank_version/plugin.yaml: $.version: must not be blank", "blank_version"),
        (
            "plugins/decides_downstream/plugin.yaml: $.downstream: only explanation plugins "
            "declare downstream consumers",
            "decides_downstream",
        ),
        (
            "plugins/latin1/plugin.yaml: not UTF-8 (invalid continuation byte at byte 7)",
            None,
        ),
        ("plugins/listed/plugin.yaml: expected a mapping, got list", None),
        (
            "plugins/no_func/plugin.yaml: $.entrypoint: 'plugin:' must be 'module:function' "
            "inside the plugin folder",
            "no_func",
        ),
        ("plugins/no_time/plugin.yaml: $.timeout_s: must be positive", "no_time"),
        (
            "plugins/self_dep/plugin.yaml: $.depends_on: a plugin cannot depend on itself",
            "self_dep",
        ),
        ("plugins/twice/plugin.yaml: $.depends_on: lists the same plugin twice", "twice"),
        ("plugins/explains/plugin.yaml: $.downstream[1]: unknown plugin 'ghost'", "explains"),
        (
            "plugins/explains/plugin.yaml: $.downstream[2]: 'helper' is not a decision-lane plugin",
            "explains",
        ),
    ]
