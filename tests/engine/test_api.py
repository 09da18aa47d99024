"""The library API used by async services, on asyncio and trio."""

from __future__ import annotations

import types
from pathlib import Path

import anyio
import pytest

import engine
from contracts.events import (
    Event,
    PluginFinished,
    PluginStarted,
    RunFinished,
    RunStarted,
)
from engine import ConfigError, Engine, EngineError, ManifestError, fold, read_log

from .conftest import MakePlugin

pytestmark = pytest.mark.anyio

SLOW = """
import time
from contracts import Finding, ok
def run(ctx):
    time.sleep(0.05)
    return ok(findings=[Finding(kind="{pid}_kind", title="t", target="x", recommendation="r")])
"""


def test_public_api_is_exactly_what_is_intended() -> None:
    assert sorted(engine.__all__) == sorted(
        [
            *("ALLOWED_CALLS", "CACHE_DIR", "CONFIG_NAME", "DATA_CACHE", "MODES"),
            *("LOG_NAME", "MANIFEST_NAME", "MARKDOWN_NAME", "REPORT_NAME", "TRACE_NAME"),
            *("ConfigError", "CycleError", "DatasetError", "EngineError", "EngineInternalError"),
            *("LogIntegrityError", "ManifestError", "ManifestProblem", "NondeterminismError"),
            "PlanError",
            *("DataReader", "Engine", "Executor", "InlineExecutor", "PluginSpec", "ProcessPool"),
            *("ProjectSettings", "ResultCache", "RunHandle", "RunResult", "RunState"),
            "__version__",
            *("apply", "atomic_write", "build_plan", "build_report", "evaluate_gates", "fold"),
            *("ingest", "last_hash", "load_plugins", "load_settings", "prepare_plan"),
            *("read_log", "verify_plan_record", "write_artifacts"),
            # Reports for people (report.html, the diff page, engine serve's pages).
            *("HTML_NAME", "build_timeline", "manifest_lanes", "render_markdown"),
            *("render_report_html", "render_diff_html", "render_live_page", "render_run_list"),
            *("render_timeline_svg", "lane_progress", "timeline_table"),
        ]
    )
    # Submodules (engine.errors, engine.testing) are not names of the API.
    public = {
        n
        for n in dir(engine)
        if not n.startswith("_") and not isinstance(getattr(engine, n), types.ModuleType)
    }
    assert public == set(engine.__all__) - {"__version__"}


GATED = """
import time
from pathlib import Path
from contracts import Finding, ok
def run(ctx):
    # Waits for the test to say it has seen the first plugin's result: the run
    # cannot end (and write report.json) before the consumer saw that event.
    gate = Path(ctx.settings["gate"])
    for _ in range(60_000):
        if gate.exists():
            break
        time.sleep(0.001)
    else:
        raise TimeoutError("the test never opened the gate")
    return ok(findings=[Finding(kind="gated_kind", title="t", target="x", recommendation="r")])
"""


async def test_events_are_streamed_as_they_are_appended(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    make_plugin("first", code=SLOW.format(pid="first"))
    make_plugin(
        "gated",
        code=GATED,
        depends_on=["first"],
        settings={"gate": {"type": "str", "default": str(gate)}},
    )
    seen: list[Event] = []
    async with Engine(plugins_dir=plugins_dir, runs_dir=tmp_path / "runs", workers=2) as eng:
        async with eng.open_run(dataset, seed=1) as handle:
            async for event in handle:
                seen.append(event)
                if isinstance(event, PluginFinished) and event.plugin_id == "first":
                    # The run is still going when its first results arrive.
                    assert not (handle.run_dir / "report.json").exists()
                    gate.touch()
        result = handle.result
    assert gate.exists()
    assert isinstance(seen[0], RunStarted) and isinstance(seen[-1], RunFinished)
    assert [e.seq for e in seen] == list(range(len(seen)))
    assert seen == read_log(result.run_dir / "events.jsonl")
    assert result.ok


async def test_inline_executor_gives_the_same_results(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("base", lane="explanation", downstream=["dependent"])
    make_plugin("dependent", depends_on=["base"])
    results = []
    for executor in ("inline", "process"):
        async with Engine(
            plugins_dir=plugins_dir, runs_dir=tmp_path / executor, executor=executor
        ) as eng:
            results.append(await eng.run(dataset, seed=2))
    inline, process = results
    assert inline.state.started is not None and inline.state.started.executor == "inline"
    assert [(p.id, p.status, p.findings) for p in inline.report.plugins] == [
        (p.id, p.status, p.findings) for p in process.report.plugins
    ]


async def test_errors_before_the_run_create_nothing(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    make_plugin("bad", lane="nowhere")
    async with Engine(plugins_dir=plugins_dir, runs_dir=runs, executor="inline") as eng:
        with pytest.raises(ManifestError):
            await eng.run(dataset)
        with pytest.raises(ConfigError, match="path separators"):
            await eng.run(dataset, run_id="../escape")
    # Only the shared stores exist: no run directory was created.
    assert {p.name for p in runs.glob("*")} <= {"_datasets", "_cache"}


async def test_engine_must_be_entered(plugins_dir: Path, dataset: Path) -> None:
    with pytest.raises(EngineError, match="async with"):
        await Engine(plugins_dir=plugins_dir, executor="inline").run(dataset)


async def test_cancelling_a_run_leaves_an_unfinished_log(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("sleepy", code="import time\ndef run(ctx):\n    time.sleep(30)\n")
    async with Engine(plugins_dir=plugins_dir, runs_dir=tmp_path / "runs", workers=1) as eng:
        with anyio.CancelScope() as scope:
            async with eng.open_run(dataset, run_id="cancelled") as handle:
                async for event in handle:
                    if isinstance(event, PluginStarted):
                        scope.cancel()  # cancelled while the plugin is running
        assert scope.cancelled_caught
        events = read_log(tmp_path / "runs" / "cancelled" / "events.jsonl")
        assert not isinstance(events[-1], RunFinished)
        assert not (tmp_path / "runs" / "cancelled" / "report.json").exists()
        # The pool replaced the busy worker and still works.
        make_plugin("quick")
        result = await eng.run(dataset, select=["quick"])
        assert result.ok


CHARTED = """
from contracts import Finding, ok
from contracts.charts import Histogram
def run(ctx):
    chart = Histogram(title="{pid}", x_label="x", edges=(0.0, 1.0, 2.0), counts=(2, 3))
    return ok(findings=[Finding(kind="{pid}_kind", title="t", target="x", charts=(chart,){rec})])
"""


class RecordingDrawer:
    """Draws here, recording the keys of each call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def close(self) -> None:
        pass

    def __call__(self, items):  # type: ignore[no-untyped-def]
        from engine._render.charts import draw_here

        self.calls.append([key for _, key in items])
        return draw_here(items)


async def test_explanation_charts_are_drawn_as_their_plugin_finishes(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    # an explanation plugin's charts have their page keys when it finishes, so they are
    # drawn then (beside the run), and report.html takes them as drawn: one call for
    # them, the report's own call draws only the decision's chart (keyed by its rank),
    # and the page is the one rendered from the log afterwards, byte for byte
    make_plugin(
        "expl", lane="explanation", downstream=["dec"], code=CHARTED.format(pid="expl", rec="")
    )
    make_plugin(
        "dec", depends_on=["expl"], code=CHARTED.format(pid="dec", rec=', recommendation="r"')
    )
    async with Engine(
        plugins_dir=plugins_dir, runs_dir=tmp_path / "runs", executor="inline", cache=False
    ) as eng:
        drawer = RecordingDrawer()
        eng._drawer = drawer  # type: ignore[assignment]
        result = await eng.run(dataset, seed=1)
    assert result.ok
    drawn = drawer.calls
    assert [["expl-expl-0" in k for k in keys] for keys in drawn] == [[True], [False]]
    assert drawn[1][0].startswith("action-1-")
    html = (result.run_dir / "report.html").read_text()
    assert html == engine.render_report_html(fold(read_log(result.run_dir / "events.jsonl")))


async def test_the_chart_process_starts_for_charts_only(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    # report.html's charts are drawn in a child process, started at the first chart to
    # draw: not for a run without charts, nor for a rerun whose results and drawn charts
    # all come from the cache (no plugin runs, nothing is drawn)
    runs = tmp_path / "runs"
    make_plugin("plain")
    async with Engine(plugins_dir=plugins_dir, runs_dir=runs, executor="inline") as eng:
        assert (await eng.run(dataset, seed=1)).ok
        assert eng._drawer._pool is None
    make_plugin(
        "expl", lane="explanation", downstream=["plain"], code=CHARTED.format(pid="expl", rec="")
    )
    for started in (True, False):
        async with Engine(plugins_dir=plugins_dir, runs_dir=runs, executor="inline") as eng:
            result = await eng.run(dataset, seed=1)
            assert (eng._drawer._pool is not None) == started
        events = read_log(result.run_dir / "events.jsonl")
        ran = [e.plugin_id for e in events if isinstance(e, PluginStarted)]
        assert ran == (["expl"] if started else [])  # plain: cached from the first run
        assert "<svg" in (result.run_dir / "report.html").read_text()
