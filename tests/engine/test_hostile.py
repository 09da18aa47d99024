"""Hostile input: random manifests and bytes either load or raise the project's own
error, never anything else; nothing is written outside the run directory."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import msgspec
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from contracts import Manifest
from engine import (
    ConfigError,
    EngineError,
    LogIntegrityError,
    ManifestError,
    load_plugins,
    read_log,
)
from engine._core.api import check_run_id
from engine._core.manifests import SAFE_LOADER

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

# Derandomized: the same examples every run, so a result never depends on the draw.
SETTINGS = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _fleet(root: Path, docs: list[dict[str, object]]) -> None:
    for i, doc in enumerate(docs):
        folder = root / f"p{i}"
        folder.mkdir(parents=True)
        (folder / "plugin.yaml").write_text(yaml.safe_dump(doc))
        (folder / "plugin.py").write_text("def run(ctx):\n    return None\n")


def _decode_problem(doc: object) -> str | None:
    """What the strict decode says of ``doc`` (msgspec's words, path first), or None."""
    try:
        msgspec.convert(doc, Manifest)
    except msgspec.ValidationError as exc:
        message = str(exc)
        where = re.search(r" - at `(\$[^`]*)`$", message)
        return f"{where.group(1)}: {message[: where.start()]}" if where else f"$: {message}"
    return None


@SETTINGS
@given(st.lists(manifests, min_size=1, max_size=3))
def test_random_manifests_load_or_raise_manifest_error(docs: list[dict[str, object]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "plugins"
        _fleet(root, docs)
        try:
            specs = load_plugins(root)
        except ManifestError as exc:
            problems = [str(p) for p in exc.problems]
        else:
            problems = []
            assert [s.manifest for s in specs] == [msgspec.convert(d, Manifest) for d in docs]
        for i, doc in enumerate(docs):
            shown = f"plugins/p{i}/plugin.yaml: "
            mine = [p.removeprefix(shown) for p in problems if p.startswith(shown)]
            expected = _decode_problem(yaml.safe_load(yaml.safe_dump(doc)))
            if expected is not None:  # refused by the decode: that one problem, exactly
                assert mine == [expected]
        assert all(p.startswith("plugins/p") for p in problems)


@SETTINGS
@given(st.binary(max_size=300))
@example(b"!")  # a bare tag: libyaml reads an empty string, the pure-Python loader None
def test_random_manifest_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "plugins" / "p0"
        folder.mkdir(parents=True)
        (folder / "plugin.yaml").write_bytes(data)
        (folder / "plugin.py").write_text("def run(ctx):\n    return None\n")
        with pytest.raises(ManifestError) as info:
            load_plugins(folder.parent)  # random bytes are never a whole valid manifest
        [problem] = [str(p) for p in info.value.problems]
        assert problem.startswith("plugins/p0/plugin.yaml: ")
        said = problem.removeprefix("plugins/p0/plugin.yaml: ")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            assert said == f"not UTF-8 ({exc.reason} at byte {exc.start})"
            return
        try:
            doc = yaml.load(text, Loader=SAFE_LOADER)  # as manifests are read
        except yaml.YAMLError:
            assert said.startswith("invalid YAML: ")
            return
        if not isinstance(doc, dict):
            assert said == f"expected a mapping, got {type(doc).__name__}"
        else:
            assert said == _decode_problem(doc)


@SETTINGS
@given(st.binary(max_size=400), st.booleans())
def test_random_log_bytes(data: bytes, repair: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_bytes(data)
        lines = data.split(b"\n")
        # Random bytes are no event: the first record is the bad one. Only a torn
        # *last* record may be cut: one line without a newline, or one line and its
        # newline.
        if not data:
            assert read_log(path, repair_tail=repair) == []
        elif repair and len(lines) <= 2 and (len(lines) == 1 or lines[1] == b""):
            assert read_log(path, repair_tail=True) == []
            assert path.read_bytes() == b""
        else:
            with pytest.raises(LogIntegrityError) as info:
                read_log(path, repair_tail=repair)
            assert info.value.seq == 0
            reason = "record has no terminating newline" if len(lines) == 1 else ""
            assert str(info.value).startswith(f"{path}: record 0: undecodable record: {reason}")
            assert path.read_bytes() == data  # nothing cut


def _real_log(path: Path, records: int) -> bytes:
    from contracts import Na
    from contracts.events import PluginFinished
    from engine._core.eventlog import EventLog

    log = EventLog(path)
    result = Na(reason_code="NO_SIGNIFICANT_EFFECT", explanation="x")
    for i in range(records):
        log.append(PluginFinished, plugin_id=f"p{i}", lane="decision", result=result)
    log.close()
    return path.read_bytes()


@SETTINGS
@given(st.integers(1, 5), st.integers(0, 10**6))
def test_a_log_cut_anywhere_keeps_exactly_its_whole_records(records: int, where: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        whole = _real_log(path, records)
        cut = where % (len(whole) + 1)  # the log's length varies with its times
        path.write_bytes(whole[:cut])
        ends = [i + 1 for i, byte in enumerate(whole) if byte == ord("\n")]
        complete = sum(end <= cut for end in ends)
        if cut in (0, *ends):  # cut at a record boundary: an intact, shorter log
            assert [e.seq for e in read_log(path)] == list(range(complete))
        else:
            with pytest.raises(LogIntegrityError) as info:
                read_log(path)
            assert info.value.seq == complete
            assert str(info.value).endswith(
                f"record {complete}: undecodable record: record has no terminating newline"
            )
            assert path.read_bytes() == whole[:cut]
        events = read_log(path, repair_tail=True)
        assert [e.seq for e in events] == list(range(complete))
        assert path.read_bytes() == whole[: ([0, *ends])[complete]]


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
