"""``engine replay``: the stored artifacts are the fold of the log, or replay says where not.

Also holds the recorder of the replay fixtures (``v2``, ``v3``) and the command that
refreshes the newest one's artifacts from its committed log (see the end of the file).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import anyio
import pytest

from contracts.events import (
    CacheHit,
    CacheMiss,
    DataAccessed,
    Event,
    GateEvaluated,
    PluginFinished,
    PluginSpan,
    PluginStarted,
    PreflightFailed,
    RunResumed,
    event_tag,
)
from engine import Engine, LogIntegrityError, read_log
from engine._tools.cli import main
from engine._tools.replay import ABSENT, ARTIFACTS, first_difference, replay

from .conftest import MakePlugin, write_plugin

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "logs"
VERSIONS = sorted(p.name for p in FIXTURES.iterdir() if (p / "events.jsonl").is_file())
NEWEST = "v3"

SPANNED = """
from contracts import Evidence, Finding, Impact, ok

def run(ctx):
    with ctx.span("profile", rows=ctx.data.rows):
        with ctx.span("count"):
            table = ctx.data.sql("SELECT count(*) AS n FROM data")
    n = table.column("n")[0].as_py()
    return ok(
        findings=[
            Finding(
                kind="{pid}_kind",
                title="{pid} counted " + str(n) + " rows",
                target="data",
                what="w",
                why="y",
                recommendation="r",
                evidence=Evidence(metrics={{"rows": n}}, query="SELECT count(*) FROM data"),
                measurement="modeled",
                impact=Impact(value=float(n), unit="rows", assumptions=("every row counts",)),
            )
        ],
        metrics={{"rows": n}},
    )
"""

QUIET = """
from contracts import na

def run(ctx):
    return na("NO_SIGNIFICANT_EFFECT", "checked the row count; nothing stands out",
              checked=["row count"])
"""


@pytest.fixture
def anyio_backend() -> str:
    """One backend: replay folds a finished run's log (synchronous code); the run is
    only its input, and the runtime tests run the engine on both backends."""
    return "asyncio"


def _fixture_plugins(root: Path) -> None:
    """The v2 fleet: spans, a modeled finding, an na, a gate offender, a preflight na."""
    write_plugin(
        root,
        "explainer",
        lane="explanation",
        downstream=["decider"],
        diagnostic_only=True,
        requires_downstream_mapping=True,
        code=SPANNED.format(pid="explainer"),
    )
    write_plugin(root, "decider", depends_on=["explainer"], code=SPANNED.format(pid="decider"))
    write_plugin(root, "quiet", code=QUIET)
    write_plugin(root, "orphan", lane="explanation")  # no downstream: a gate offender
    write_plugin(
        root,
        "inapplicable",
        applies_when={"columns": [{"name": "no_such_column"}]},
    )


async def record_v2(work: Path, dest: Path) -> Path:
    """Record the fixture run in ``work`` and copy its log and artifacts to ``dest``
    (``expected.json`` is written by hand: see test_the_expected_outcomes_follow_from_the_fleet).

    Cache misses (``absent``, ``code_changed``, ``upstream_changed``) and hits, child
    spans, a gate offender, a preflight ``na`` and a resume after an interruption
    while a plugin was running (its cache gone by then, so it runs again).
    """
    plugins, runs = work / "plugins", work / "runs"
    _fixture_plugins(plugins)
    dataset = work / "events.csv"
    dataset.write_text(
        "job_id,process,amount\n" + "".join(f"j{i},p{i % 3},{i * 1.5}\n" for i in range(30))
    )
    async with Engine(plugins_dir=plugins, runs_dir=runs, workers=1) as engine:
        await engine.run(dataset, seed=5, run_id="warmup")
        with (plugins / "explainer" / "plugin.py").open("a") as fh:
            fh.write("# v2: edited after the warmup run\n")
        done = await engine.run(dataset, seed=5, run_id="fixture-v2")
    log = done.run_dir / "events.jsonl"
    events = read_log(log)
    cut = next(e.seq for e in events if isinstance(e, PluginStarted) and e.plugin_id == "decider")
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[: cut + 1]))  # as if killed while decider ran
    for name in ("report.json", "run_manifest.json", "report.md", "report.html"):
        (done.run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(runs / "_cache")
    async with Engine(plugins_dir=plugins, runs_dir=runs, workers=1) as engine:
        resumed = await engine.resume(done.run_dir)
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("events.jsonl", *ARTIFACTS):
        shutil.copyfile(done.run_dir / name, dest / name)
    assert resumed.report.status == "failed"
    return dest


def refresh_artifacts(folder: Path) -> list[str]:
    """Rewrite a fixture's artifacts from its committed log (a deliberate format change)."""
    from engine import last_hash
    from engine._tools.replay import finished_run, rebuild_artifacts

    events, state = finished_run(folder)
    built = rebuild_artifacts(state, last_hash(events, folder / "events.jsonl"))
    for name, data in built.items():
        (folder / name).write_bytes(data)
    return [str(folder / name) for name in built]


def _tags(events: list[Event]) -> set[str]:
    return {event_tag(type(e)) for e in events}


V2_TAGS = {
    "run_started",
    "plan_built",
    "preflight_failed",
    "plugin_dispatched",
    "plugin_started",
    "data_accessed",
    "plugin_span",
    "plugin_finished",
    "cache_hit",
    "cache_miss",
    "run_resumed",
    "gate_evaluated",
    "run_finished",
}


def _check_v2_log(events: list[Event]) -> None:
    assert _tags(events) >= V2_TAGS
    misses = {e.plugin_id: e.reason for e in events if isinstance(e, CacheMiss)}
    assert misses["explainer"] == "code_changed"
    assert misses["decider"] == "absent"  # looked up again after the resume
    assert {e.plugin_id for e in events if isinstance(e, CacheHit)} == {"quiet", "orphan"}
    resumed = next(e for e in events if isinstance(e, RunResumed))
    assert resumed.pending == ("decider",)
    spans = [e for e in events if isinstance(e, PluginSpan)]
    assert {(e.plugin_id, e.span.name, e.span.parent) for e in spans} >= {
        ("explainer", "count", 0),
        ("decider", "profile", -1),
    }
    assert any(isinstance(e, PreflightFailed) and e.plugin_id == "inapplicable" for e in events)
    gates = next(e for e in events if isinstance(e, GateEvaluated))
    assert [o.plugin_id for o in gates.offenders] == ["orphan"]
    assert sum(isinstance(e, DataAccessed) for e in events) >= 2
    finished = [e for e in events if isinstance(e, PluginFinished)]
    assert {e.plugin_id for e in finished if e.cached} == {"quiet", "orphan"}


# --------------------------------------------------------------------------- fixtures


def test_there_is_a_v2_fixture_with_artifacts() -> None:
    assert {"v1", "v2"} <= set(VERSIONS)
    for name in ("report.json", "run_manifest.json", "report.md", "expected.json"):
        assert (FIXTURES / "v2" / name).is_file(), name


NOT_STORED = "{}: not stored (written by a version without it)"
COMPAT = {
    "v1": ([], [NOT_STORED.format(name) for name in ARTIFACTS]),
    "v2": (
        ["run_manifest.json", "report.md"],
        [
            "report.json: written by an older version; it lacks 3 field(s) the current version "
            "adds: $.plugins[0].findings[0].charts, $.plugins[3].findings[0].charts, "
            "$.plugins[4].findings[0].charts",
            NOT_STORED.format("report.html"),
        ],
    ),
    "v3": (list(ARTIFACTS), []),
}
"""What replaying each recorded fixture gives, artifact by artifact: identical byte for
byte, or (``compat``) the exact note on what an older version did not write."""


@pytest.mark.parametrize("version", VERSIONS)
def test_recorded_logs_keep_replaying(version: str) -> None:
    folder = FIXTURES / version
    result = replay(folder, compat=True)  # artifacts may predate the current version
    assert result.ok, [str(d) for d in result.divergences]
    assert result.status == json.loads((folder / "expected.json").read_text())["status"]
    assert (result.identical, result.notes) == COMPAT[version]


def test_the_newest_fixture_is_rebuilt_byte_for_byte_without_compat() -> None:
    """The committed artifacts of the newest fixture are what the current code builds
    from its committed log, byte for byte. A deliberate change of an artifact's format
    refreshes them with ``python -m tests.engine.test_replay --refresh
    tests/fixtures/logs/v3`` (the log itself is never re-recorded)."""
    result = replay(FIXTURES / NEWEST)
    assert result.ok, [str(d) for d in result.divergences]
    assert (result.identical, result.notes) == (list(ARTIFACTS), [])


@pytest.mark.parametrize("version", ["v2", NEWEST])
def test_the_expected_outcomes_follow_from_the_fleet(version: str) -> None:
    """``expected.json`` was written by hand from how the fixture fleet is built, not
    by the code it checks: finding ids are the documented hash of plugin id, kind and
    target; each plugin's status is what its code returns."""
    expected = json.loads((FIXTURES / version / "expected.json").read_text())

    def fid(pid: str, target: str) -> str:
        return hashlib.sha256(f"{pid}\x1f{pid}_kind\x1f{target}".encode()).hexdigest()[:16]

    assert expected["status"] == "failed"  # orphan breaks the downstream gate
    assert expected["plugins"] == {
        "decider": ["ok", None, [fid("decider", "data")]],
        "explainer": ["ok", None, [fid("explainer", "data")]],
        "inapplicable": ["na", "NOT_APPLICABLE", []],
        "orphan": ["ok", None, [fid("orphan", "orphan")]],
        "quiet": ["na", "NO_SIGNIFICANT_EFFECT", []],
    }


def test_v2_fixture_covers_cache_resume_spans_and_gates() -> None:
    _check_v2_log(read_log(FIXTURES / "v2" / "events.jsonl"))


@pytest.mark.anyio
async def test_recording_v2_afresh_replays_byte_for_byte(tmp_path: Path) -> None:
    dest = await record_v2(tmp_path / "work", tmp_path / "v2")
    shutil.rmtree(tmp_path / "work")  # no plugins, no dataset: replay runs nothing
    _check_v2_log(read_log(dest / "events.jsonl"))
    result = replay(dest)
    assert result.ok, [str(d) for d in result.divergences]
    assert result.identical == ["report.json", "run_manifest.json", "report.md", "report.html"]
    assert result.notes == []
    # The code of today gives the outcomes committed with the newest fixture.
    report = json.loads((dest / "report.json").read_text())
    expected = json.loads((FIXTURES / NEWEST / "expected.json").read_text())
    got = {
        p["id"]: [p["status"], p["reason_code"], [f["id"] for f in p["findings"]]]
        for p in report["plugins"]
    }
    assert (report["status"], got) == (expected["status"], expected["plugins"])


# --------------------------------------------------------------------------- real runs


async def _run(plugins: Path, dataset: Path, runs: Path, seed: int = 0) -> Path:
    async with Engine(plugins_dir=plugins, runs_dir=runs, workers=1, cache=False) as engine:
        return (await engine.run(dataset, seed=seed)).run_dir


def _fleet(make_plugin: MakePlugin) -> None:
    make_plugin("explainer", lane="explanation", downstream=["decider", "second"])
    make_plugin("decider", depends_on=["explainer"])
    make_plugin("second", depends_on=["explainer"])
    make_plugin("quiet", code=QUIET)


@pytest.mark.anyio
async def test_a_fresh_run_replays_identically_without_its_plugins(
    make_plugin: MakePlugin,
    plugins_dir: Path,
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _fleet(make_plugin)
    run_dir = await _run(plugins_dir, dataset, tmp_path / "runs", seed=4)
    shutil.rmtree(plugins_dir)  # replay never runs a plugin
    dataset.unlink()
    result = replay(run_dir)
    assert result.ok and result.status == "ok"
    assert result.identical == ["report.json", "run_manifest.json", "report.md", "report.html"]
    assert main(["replay", str(run_dir)]) == 0
    assert "replay IDENTICAL" in capsys.readouterr().out


@pytest.mark.anyio
async def test_edited_report_or_manifest_is_a_divergence_with_path_and_values(
    make_plugin: MakePlugin,
    plugins_dir: Path,
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _fleet(make_plugin)
    run_dir = await _run(plugins_dir, dataset, tmp_path / "runs")
    report_path = run_dir / "report.json"
    original = report_path.read_bytes()
    report = json.loads(original)
    index = next(i for i, p in enumerate(report["plugins"]) if p["id"] == "second")
    report["plugins"][index]["status"] = "na"
    report_path.write_text(json.dumps(report, indent=2))

    assert main(["replay", str(run_dir)]) == 1
    out = capsys.readouterr().out
    first = f'report.json: $.plugins[{index}].status: stored "na", replayed "ok"'
    assert f"first divergence: {first}" in out

    report_path.write_bytes(original)
    manifest_path = run_dir / "run_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["workers"] = 7
    manifest_path.write_bytes(
        json.dumps(manifest, indent=2).encode()
    )  # also re-formatted: the value is what is reported first
    result = replay(run_dir)
    assert not result.ok
    assert str(result.first) == "run_manifest.json: $.workers: stored 7, replayed 1"
    assert result.identical == ["report.json", "report.md", "report.html"]

    # Same JSON value, different bytes: still a divergence (the files must be the fold).
    manifest["workers"] = 1
    manifest_path.write_text(json.dumps(manifest))
    result = replay(run_dir)
    assert result.first is not None and result.first.path.startswith("$ (same JSON, line 1)")
    # ... unless the file predates the current format and compat was asked for.
    assert replay(run_dir, compat=True).ok

    manifest_path.unlink()
    result = replay(run_dir)
    assert result.first is not None and result.first.stored is ABSENT
    assert main(["replay", str(run_dir), "--compat"]) == 0


@pytest.mark.anyio
async def test_a_tampered_log_exits_2_naming_the_record(
    make_plugin: MakePlugin,
    plugins_dir: Path,
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _fleet(make_plugin)
    run_dir = await _run(plugins_dir, dataset, tmp_path / "runs")
    log = run_dir / "events.jsonl"
    original = log.read_bytes().splitlines(keepends=True)
    lines = list(original)
    record = json.loads(lines[3])
    record["wall"] += 1.0  # a valid record, edited: the next record's prev no longer matches
    lines[3] = json.dumps(record, separators=(",", ":")).encode() + b"\n"
    log.write_bytes(b"".join(lines))
    with pytest.raises(LogIntegrityError, match="record 4: hash chain broken") as info:
        replay(run_dir)
    assert info.value.seq == 4
    assert main(["replay", str(run_dir)]) == 2
    assert "record 4: hash chain broken" in capsys.readouterr().err

    log.write_bytes(b"".join(original[:5]))  # cut: an intact log of an unfinished run
    assert main(["replay", str(run_dir)]) == 2
    assert "never finished" in capsys.readouterr().err
    assert main(["replay", str(tmp_path / "nowhere")]) == 2


def test_first_difference_paths() -> None:
    assert first_difference({"a": [1, 2]}, {"a": [1, 2]}) is None
    assert first_difference({"a": [1, 2]}, {"a": [1, 3]}) == ("$.a[1]", 2, 3)
    assert first_difference({"a": [1]}, {"a": [1, 2]}) == ("$.a[1]", ABSENT, 2)
    assert first_difference({"a b": 1}, {"a b": 1.0}) == ('$["a b"]', 1, 1.0)
    assert first_difference({"x": True}, {"x": 1}) == ("$.x", True, 1)
    added: list[str] = []
    assert first_difference({"a": 1}, {"a": 1, "new": {}}, added=added) is None
    assert added == ["$.new"]


if __name__ == "__main__":
    # Deliberate, separate commands, never run by the tests:
    #   python -m tests.engine.test_replay --refresh tests/fixtures/logs/v3
    #       rewrite the artifacts from the committed log (an artifact format changed)
    #   python -m tests.engine.test_replay tests/fixtures/logs/vN
    #       record a new fixture (a new folder when the log format gains something)
    args = sys.argv[1:]
    if args[:1] == ["--refresh"]:
        print("\n".join(refresh_artifacts(Path(args[1]))))
    else:
        target = Path(args[0])
        with tempfile.TemporaryDirectory() as scratch:
            print(anyio.run(record_v2, Path(scratch), target))
