"""Hostile input: random manifests and bytes either load or raise the project's own
error, never anything else; nothing is written outside the run directory."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import (
    ConfigError,
    EngineError,
    LogIntegrityError,
    ManifestError,
    load_plugins,
    read_log,
)
from engine._core.api import check_run_id

FIELDS = [
    "id",
    "version",
    "lane",
    "entrypoint",
    "decision_capable",
    "diagnostic_only",
    "requires_downstream_mapping",
    "depends_on",
    "downstream",
    "requires",
    "applies_when",
    "data_access",
    "settings",
    "finding_kinds",
    "timeout_s",
    "colour",
]
leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["decision", "explanation", "plugin:run", "p0", "../x:run"]),
)
values = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
manifests = st.dictionaries(st.sampled_from(FIELDS), values, max_size=10)

SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _fleet(root: Path, docs: list[dict[str, object]]) -> None:
    for i, doc in enumerate(docs):
        folder = root / f"p{i}"
        folder.mkdir(parents=True)
        (folder / "plugin.yaml").write_text(yaml.safe_dump(doc))
        (folder / "plugin.py").write_text("def run(ctx):\n    return None\n")


@SETTINGS
@given(st.lists(manifests, min_size=1, max_size=3))
def test_random_manifests_load_or_raise_manifest_error(docs: list[dict[str, object]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "plugins"
        _fleet(root, docs)
        try:
            load_plugins(root)
        except ManifestError as exc:
            assert exc.problems and all(str(p).startswith("plugins/") for p in exc.problems)


@SETTINGS
@given(st.binary(max_size=300))
def test_random_manifest_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "plugins" / "p0"
        folder.mkdir(parents=True)
        (folder / "plugin.yaml").write_bytes(data)
        (folder / "plugin.py").write_text("def run(ctx):\n    return None\n")
        with contextlib.suppress(ManifestError):
            load_plugins(folder.parent)


@SETTINGS
@given(st.binary(max_size=400), st.booleans())
def test_random_log_bytes(data: bytes, repair: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_bytes(data)
        with contextlib.suppress(LogIntegrityError):
            read_log(path, repair_tail=repair)


@pytest.mark.parametrize("run_id", ["../up", "a/b", "a\\b", ".", "..", "", "x" * 200, "-lead"])
def test_run_ids_with_path_separators_are_refused(run_id: str) -> None:
    with pytest.raises(ConfigError):
        check_run_id(run_id)


def test_errors_are_engine_errors() -> None:
    for cls in (ConfigError, ManifestError, LogIntegrityError):
        assert issubclass(cls, EngineError)


def test_a_huge_single_line_gets_a_short_clear_error(tmp_path: Path) -> None:
    from engine import DatasetError, ingest

    path = tmp_path / "oneline.csv"
    path.write_bytes(b"a,b\n" + b"x" * (16 * 1024 * 1024) + b",1\n")
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError) as info:
        ingest(path, cache)
    message = str(info.value)
    assert message.startswith(f"{path}: cannot parse CSV") and len(message) < 1000
    assert list(cache.iterdir()) == []  # nothing left behind


def test_plugin_ids_with_path_separators_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "plugins" / "evil"
    folder.mkdir(parents=True)
    (folder / "plugin.yaml").write_text(
        "id: ../evil\nversion: '1'\nlane: decision\ndecision_capable: true\n"
    )
    (folder / "plugin.py").write_text("def run(ctx):\n    return None\n")
    with pytest.raises(ManifestError, match=r"'\.\./evil' is not a valid plugin id"):
        load_plugins(folder.parent)
