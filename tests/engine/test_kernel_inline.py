"""The supervisor's and the engine's paths through whole runs on the inline executor
(plugins run in-process: a run takes a fraction of a second), asserted on the
recorded event sequences: dispatch in plan order, upstream failures and their
chains, an upstream ``na`` (a preflight's too) handed on, what a plugin read and the
spans it opened, cache hits on a rerun, and a resume of a log cut after a plugin's
end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contracts import DataAccess, Na, Ok
from contracts.events import (
    CacheHit,
    CacheMiss,
    DataAccessed,
    Event,
    GateEvaluated,
    PlanBuilt,
    PluginDispatched,
    PluginFinished,
    PluginSpan,
    PluginStarted,
    PreflightFailed,
    RunFinished,
    RunResumed,
    RunStarted,
)
from contracts.report import QualityGates
from engine import Engine, RunResult, read_log
from engine._core.supervisor import plugin_seed

from .conftest import MakePlugin

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """asyncio only: the paths asserted here are the supervisor's, not the backend's
    (both backends are run by ``test_api.py`` and ``test_resume.py``)."""
    return "asyncio"


SEES = """
from contracts import Finding, ok
def run(ctx):
    seen = ",".join(f"{{k}}={{type(v).__name__}}" for k, v in sorted(ctx.upstream.items()))
    return ok(findings=[Finding(kind="{pid}_kind", title="{pid} saw " + seen, target="t",
                                what="w", why="y", recommendation="{rec}")],
              metrics={{"rows": ctx.data.rows, "seed": ctx.seed}})
"""
QUIET = (
    "from contracts import na\ndef run(ctx):\n    return na('NO_SIGNIFICANT_EFFECT', 'nothing')\n"
)
RAISES = "def run(ctx):\n    raise ValueError('no')\n"
READER = """
from contracts import ok
def run(ctx):
    with ctx.span("count", rows=ctx.data.rows):
        n = ctx.data.sql("SELECT count(*) AS n FROM data")["n"][0].as_py()
    ctx.artifact_path("n.txt").write_text(f"n={n}")
    return ok(metrics={"n": n}, artifacts=["n.txt"])
"""


def fleet(make_plugin: MakePlugin) -> None:
    make_plugin(
        "base", lane="explanation", downstream=["dec"], code=SEES.format(pid="base", rec="")
    )
    make_plugin("quiet", lane="explanation", downstream=["dec"], code=QUIET)
    make_plugin("broken", lane="explanation", downstream=["after"], code=RAISES)
    make_plugin("broken2", lane="explanation", downstream=["both"], code=RAISES)
    make_plugin("small", applies_when={"min_rows": 1000})  # 40 rows: a preflight na
    make_plugin("dec", depends_on=["base", "quiet"], code=SEES.format(pid="dec", rec="r"))
    make_plugin("after", depends_on=["broken"])
    make_plugin("chain", depends_on=["after", "dec"])
    make_plugin("both", depends_on=["broken", "broken2"])
    make_plugin("after_small", depends_on=["small"], code=SEES.format(pid="after_small", rec="r"))
    make_plugin("reader", code=READER)


def steps(events: list[Event]) -> list[tuple[str, str]]:
    """The plugin events in log order, as (event type, plugin id)."""
    kinds = (
        PluginDispatched | PluginStarted | PluginFinished | PreflightFailed | CacheHit | CacheMiss
    )
    return [(type(e).__name__, e.plugin_id) for e in events if isinstance(e, kinds)]


def runs_of(*pids: str) -> list[tuple[str, str]]:
    return [
        (kind, p) for p in pids for kind in ("PluginDispatched", "PluginStarted", "PluginFinished")
    ]


async def run_fleet(
    plugins_dir: Path, runs: Path, dataset: Path, run_id: str, seed: int = 5, **kwargs: Any
) -> RunResult:
    seen: list[Event] = []
    async with Engine(plugins_dir=plugins_dir, runs_dir=runs, executor="inline", **kwargs) as eng:
        async with eng.open_run(dataset, seed=seed, run_id=run_id) as handle:
            async for event in handle:
                seen.append(event)
        result = handle.result
    # Every event recorded is handed to the run's subscribers, in log order.
    assert seen == read_log(result.run_dir / "events.jsonl")
    return result


FIRST_RUN = [
    ("PreflightFailed", "small"),  # before anything is dispatched
    # Looked up as each becomes ready (no dependency, or only small's na), in plan order.
    *[("CacheMiss", pid) for pid in ("broken2", "broken", "base", "reader", "quiet")],
    ("CacheMiss", "after_small"),
    # Dispatched one at a time (the inline executor has one slot), in plan order.
    *runs_of("broken2", "broken"),
    # Resolved without running: an upstream plugin failed.
    ("PluginFinished", "both"),
    ("PluginFinished", "after"),
    *runs_of("base", "reader", "quiet"),
    ("CacheMiss", "dec"),  # ready once both its dependencies ended
    *runs_of("after_small", "dec"),  # after_small waited longer: it comes first
    ("PluginFinished", "chain"),  # through after's UPSTREAM_FAILED
]
CACHED = ("base", "quiet", "after_small", "dec")
STATUSES = [
    ("broken2", "failed", "PLUGIN_ERROR"),
    ("broken", "failed", "PLUGIN_ERROR"),
    ("small", "na", "INSUFFICIENT_DATA"),
    ("base", "ok", None),
    ("reader", "ok", None),
    ("quiet", "na", "NO_SIGNIFICANT_EFFECT"),
    ("after_small", "ok", None),
    ("both", "na", "UPSTREAM_FAILED"),
    ("after", "na", "UPSTREAM_FAILED"),
    ("dec", "ok", None),
    ("chain", "na", "UPSTREAM_FAILED"),
]
UPSTREAM_FAILED = Na(
    reason_code="UPSTREAM_FAILED",
    explanation="Not started because upstream plugin 'broken' failed.",
    checked=("broken",),
)


def ends(events: list[Event]) -> dict[str, PluginFinished | PreflightFailed]:
    return {e.plugin_id: e for e in events if isinstance(e, PluginFinished | PreflightFailed)}


def check_outcomes(result: RunResult, events: list[Event]) -> None:
    assert [(p.id, p.status, p.reason_code) for p in result.report.plugins] == STATUSES
    end = ends(events)
    assert end["after"].result == UPSTREAM_FAILED and end["chain"].result == UPSTREAM_FAILED
    assert end["both"].result == Na(
        reason_code="UPSTREAM_FAILED",
        explanation="Not started because upstream plugin 'broken', 'broken2' failed.",
        checked=("broken", "broken2"),
    )
    # What each end names as affected downstream: nothing for an ok.
    assert {pid: e.downstream_affected for pid, e in end.items()} == {
        **dict.fromkeys(("base", "reader", "after_small", "both", "dec", "chain"), ()),
        "small": ("after_small",),
        "broken2": ("both",),
        "broken": ("after", "both"),
        "after": ("chain",),
        "quiet": ("dec",),
    }
    # An upstream na, a preflight's too, is handed on; a failure is not.
    for pid, title in (
        ("after_small", "after_small saw small=Na"),
        ("dec", "dec saw base=Ok,quiet=Na"),
    ):
        result_of = end[pid].result
        assert isinstance(result_of, Ok) and result_of.findings[0].title == title
        assert result_of.metrics == {"rows": 40, "seed": plugin_seed(5, pid)}  # its own seed
    # What the reader read and the span it opened, recorded before its end. It ran in
    # every run: a result that lists artifact files is never served from the cache.
    reader = [e for e in events if getattr(e, "plugin_id", None) == "reader"]
    last = reader[-1]
    assert isinstance(last, PluginFinished) and last.ran and not last.cached
    assert last.result == Ok(metrics={"n": 40}, artifacts=("n.txt",))
    accessed, span = reader[-3:-1]
    assert isinstance(accessed, DataAccessed) and isinstance(span, PluginSpan)
    query = "SELECT count(*) AS n FROM data"
    assert accessed.access == DataAccess(kind="sql", rows=1, query=query)
    assert (span.span.name, span.span.parent) == ("count", -1)
    assert span.span.attributes == {"rows": 40}
    # Its artifact is in its folder under the run's own artifacts.
    assert (result.run_dir / "artifacts" / "reader" / "n.txt").read_text() == "n=40"
    gates, finished = events[-2:]
    assert isinstance(gates, GateEvaluated)
    # Strict mode: the gates are enforced; reader, a decision plugin ok without a
    # finding, breaks one.
    assert (gates.passed, gates.enforced) == (False, True)
    assert gates.gates == QualityGates(analysis_ok_without_findings_count=1)
    assert [(o.gate, o.plugin_id) for o in gates.offenders] == [
        ("analysis_ok_without_findings_count", "reader")
    ]
    started = events[0]
    assert isinstance(started, RunStarted) and started.executor == "inline"
    assert isinstance(finished, RunFinished)
    assert (finished.status, finished.counts) == ("failed", {"ok": 4, "failed": 2, "na": 5})
    assert result.state.finished == finished


async def test_a_run_and_its_rerun_from_the_cache(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    fleet(make_plugin)
    runs = tmp_path / "runs"
    first = await run_fleet(plugins_dir, runs, dataset, "r1")
    events = read_log(first.run_dir / "events.jsonl")
    assert [type(e) for e in events[:2]] == [RunStarted, PlanBuilt]
    assert steps(events) == FIRST_RUN
    check_outcomes(first, events)
    first_ends = ends(events)
    ran = ["broken2", "broken", "base", "reader", "quiet", "after_small", "dec"]
    assert [p for p, e in first_ends.items() if isinstance(e, PluginFinished) and e.ran] == ran
    # The rerun: every result the cache keeps (ok and na) comes from it, in plan
    # order as each becomes ready; a failure is never kept, so both broken run again.
    second = await run_fleet(plugins_dir, runs, dataset, "r2")
    events = read_log(second.run_dir / "events.jsonl")
    assert steps(events) == [
        ("PreflightFailed", "small"),
        ("CacheMiss", "broken2"),
        ("CacheMiss", "broken"),
        ("CacheHit", "base"),
        ("PluginFinished", "base"),
        # a result that lists artifact files is never kept: reader runs again
        ("CacheMiss", "reader"),
        *[(kind, pid) for pid in CACHED[1:] for kind in ("CacheHit", "PluginFinished")],
        *runs_of("broken2", "broken"),
        ("PluginFinished", "both"),
        ("PluginFinished", "after"),
        ("PluginFinished", "chain"),
        *runs_of("reader"),
    ]
    check_outcomes(second, events)
    end = ends(events)
    assert {p for p, e in end.items() if isinstance(e, PluginFinished) and e.cached} == set(CACHED)
    for pid in CACHED:
        assert end[pid].result == first_ends[pid].result
        assert end[pid].duration_s == first_ends[pid].duration_s  # the recorded one


async def test_resume_of_a_log_cut_after_a_plugins_end(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    fleet(make_plugin)
    runs = tmp_path / "runs"
    whole = await run_fleet(plugins_dir, runs, dataset, "r1", cache=False)
    log = whole.run_dir / "events.jsonl"
    events = read_log(log)
    assert not any(isinstance(e, CacheHit | CacheMiss) for e in events)
    # As if the engine died right after base ended: the log is cut after that record.
    cut = next(
        i for i, e in enumerate(events) if isinstance(e, PluginFinished) and e.plugin_id == "base"
    )
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[: cut + 1]))
    async with Engine(
        plugins_dir=plugins_dir, runs_dir=runs, executor="inline", cache=False
    ) as eng:
        resumed = await eng.resume(whole.run_dir)
    again = read_log(log)
    assert again[: cut + 1] == events[: cut + 1]  # appended to, never rewritten
    resumed_part = again[cut + 1 :]
    first = resumed_part[0]
    assert isinstance(first, RunResumed)
    assert first.pending == ("reader", "quiet", "after_small", "dec", "chain")
    # Only what had not ended runs: the rest keeps its recorded result.
    assert steps(resumed_part) == [
        *runs_of("reader", "quiet", "after_small", "dec"),
        ("PluginFinished", "chain"),
    ]
    check_outcomes(resumed, again)
    assert [e.seq for e in again] == list(range(len(again)))


def lookups(events: list[Event]) -> list[tuple[str, str, str]]:
    return [
        (type(e).__name__, e.plugin_id, e.reason if isinstance(e, CacheMiss) else "")
        for e in events
        if isinstance(e, CacheHit | CacheMiss)
    ]


async def test_what_a_cached_result_depends_on(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    fleet(make_plugin)
    runs = tmp_path / "runs"
    await run_fleet(plugins_dir, runs, dataset, "r1")
    # base's code changes but not its result: base runs again, and so does dec, whose
    # key holds base's key (not its result); quiet still comes from the cache (reader,
    # whose result lists an artifact file, is never stored).
    code = plugins_dir / "base" / "plugin.py"
    code.write_text(code.read_text() + "# changed\n")
    # small's preflight na now gives other words: after_small, whose key holds that
    # outcome (small has no key: it never ran), runs again too.
    make_plugin("small", applies_when={"min_rows": 2000})
    again = await run_fleet(plugins_dir, runs, dataset, "r2")
    changed = lookups(read_log(again.run_dir / "events.jsonl"))
    assert changed == [
        ("CacheMiss", "broken2", "absent"),
        ("CacheMiss", "broken", "absent"),
        ("CacheMiss", "base", "code_changed"),
        ("CacheMiss", "reader", "absent"),
        ("CacheHit", "quiet", ""),
        ("CacheMiss", "after_small", "upstream_changed"),
        ("CacheMiss", "dec", "upstream_changed"),
    ]
    # Another seed: each plugin's seed is in its key, so nothing is reused.
    reseeded = await run_fleet(plugins_dir, runs, dataset, "r3", seed=6)
    events = read_log(reseeded.run_dir / "events.jsonl")
    assert [kind for kind, _, _ in lookups(events)] == ["CacheMiss"] * 7
    finished = ends(events)["dec"].result
    assert isinstance(finished, Ok) and finished.metrics["seed"] == plugin_seed(6, "dec")
