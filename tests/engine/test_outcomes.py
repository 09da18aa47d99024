"""What the engine does with each plugin outcome, on the real process pool: the
invalid-result table, dependents of na and failed plugins, and the decision lane
served first at run time (asserted on the recorded event order)."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.events import PluginDispatched, PluginFinished, PluginStarted
from engine import Engine, RunResult, read_log

from .conftest import MakePlugin

pytestmark = pytest.mark.anyio


def _by_id(result: RunResult) -> dict[str, tuple[str, str | None, str, str]]:
    return {
        p.id: (p.status, p.reason_code, p.error_type, p.explanation) for p in result.report.plugins
    }


async def _run(plugins: Path, dataset: Path, tmp_path: Path, workers: int = 2) -> RunResult:
    async with Engine(
        plugins_dir=plugins, runs_dir=tmp_path / "runs", workers=workers, cache=False
    ) as engine:
        return await engine.run(dataset)


FINDING = 'Finding(kind="{pid}_kind", title="t", target="x", recommendation="r"{extra})'
RETURNS = "from contracts import Finding, Impact, ok, na\ndef run(ctx):\n    return {value}\n"
TABLE = {
    # plugin id: (code, expected status, reason code, error type, explanation)
    "import_raises": (
        "raise RuntimeError('broken at import')\n",
        ("failed", "IMPORT_ERROR", "RuntimeError", "broken at import"),
    ),
    "import_exits": (
        "import sys\nsys.exit(4)\n",
        ("failed", "IMPORT_ERROR", "SystemExit", "4"),
    ),
    "not_callable": (
        "run = 42\n",
        ("failed", "IMPORT_ERROR", "ImportError", "'plugin:run' is not a callable in {dir}"),
    ),
    "exits": (
        "import sys\ndef run(ctx):\n    sys.exit('leaving early')\n",
        ("failed", "PLUGIN_ERROR", "SystemExit", "leaving early"),
    ),
    "confident": (
        RETURNS.format(
            value="ok(findings=[" + FINDING.format(pid="confident", extra=", confidence=2.0") + "])"
        ),
        (
            "failed",
            "INVALID_FINDING",
            "",
            "finding 'confident_kind': confidence 2.0 is outside [0, 1]",
        ),
    ),
    "modeled": (
        RETURNS.format(
            value="ok(findings=["
            + FINDING.format(
                pid="modeled", extra=', measurement="modeled", impact=Impact(value=1.0, unit="h")'
            )
            + "])"
        ),
        (
            "failed",
            "INVALID_FINDING",
            "",
            "finding 'modeled_kind': a modeled finding needs an impact with assumptions",
        ),
    ),
    "untitled": (
        RETURNS.format(value='ok(findings=[Finding(kind="untitled_kind", title=" ")])'),
        ("failed", "INVALID_FINDING", "", "finding 'untitled_kind': title must not be blank"),
    ),
    "nan_metric": (
        RETURNS.format(
            value="ok(findings=["
            + FINDING.format(pid="nan_metric", extra="")
            + "], metrics={'x': float('nan')})"
        ),
        (
            "failed",
            "INVALID_RESULT",
            "",
            "result does not fit the contract: $.metrics.x: nan is not allowed "
            "(return None for an undefined value)",
        ),
    ),
    "inf_evidence": (
        RETURNS.format(
            value="ok(findings=["
            + FINDING.format(
                pid="inf_evidence",
                extra=", evidence=__import__('contracts').Evidence(metrics={'e': float('-inf')})",
            )
            + "])"
        ),
        (
            "failed",
            "INVALID_RESULT",
            "",
            "result does not fit the contract: $.findings[0].evidence.metrics.e: -inf is not "
            "allowed (return None for an undefined value)",
        ),
    ),
    "none_is_fine": (
        RETURNS.format(
            value="ok(findings=["
            + FINDING.format(pid="none_is_fine", extra="")
            + "], metrics={'x': None})"
        ),
        ("ok", None, "", ""),
    ),
    "engine_code": (
        RETURNS.format(value="na('UPSTREAM_FAILED', 'pretending')"),
        (
            "failed",
            "INVALID_RESULT",
            "",
            "na reason code 'UPSTREAM_FAILED' is reserved for the engine",
        ),
    ),
}


async def test_the_invalid_result_table(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    for pid, (code, _) in TABLE.items():
        make_plugin(pid, code=code)
    make_plugin("after_exit", depends_on=["exits"])
    result = await _run(plugins_dir, dataset, tmp_path)
    got = _by_id(result)
    for pid, (_, expected) in TABLE.items():
        status, reason, error_type, explanation = expected
        explanation = explanation.format(dir=plugins_dir.resolve() / pid)
        assert got[pid] == (status, reason, error_type, explanation), pid
    assert got["after_exit"] == (
        "na",
        "UPSTREAM_FAILED",
        "",
        "Not started because upstream plugin 'exits' failed.",
    )
    assert result.status == "failed"
    # A plugin's SystemExit ends the plugin, not its worker: no job ended
    # WORKER_CRASHED and no worker was replaced (each worker slot that ran a job ran
    # every one of its jobs in the one process; how many of the two slots got a job
    # is scheduling, not asserted).
    events = read_log(result.run_dir / "events.jsonl")
    ended = {getattr(e.result, "reason_code", "") for e in events if isinstance(e, PluginFinished)}
    assert "WORKER_CRASHED" not in ended
    started = [e for e in events if isinstance(e, PluginStarted)]
    pids_by_slot: dict[int, set[int]] = {}
    for e in started:
        pids_by_slot.setdefault(e.worker, set()).add(e.pid)
    assert started and len(pids_by_slot) <= 2
    assert all(len(pids) == 1 for pids in pids_by_slot.values()), pids_by_slot


SEES_UPSTREAM = """
from contracts import Finding, ok
def run(ctx):
    seen = {{k: type(v).__name__ + ":" + getattr(v, "reason_code", "")
            for k, v in ctx.upstream.items()}}
    return ok(findings=[Finding(kind="{pid}_kind", title="t", target="x", recommendation="r")],
              metrics={{"seen": dict(sorted(seen.items()))}})
"""
QUIET = (
    "from contracts import na\ndef run(ctx):\n    return na('NO_SIGNIFICANT_EFFECT', 'nothing')\n"
)
RAISES = "def run(ctx):\n    raise ValueError('no')\n"


async def test_an_upstream_na_does_not_block_its_dependents_a_failure_does(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("quiet", lane="explanation", code=QUIET, downstream=["after_na"])
    make_plugin(
        "inapplicable",
        lane="explanation",
        downstream=["after_na"],
        applies_when={"columns": [{"name": "no_such_column"}]},
    )
    make_plugin("broken", lane="explanation", code=RAISES, downstream=["after_failure"])
    make_plugin(
        "after_na", depends_on=["quiet", "inapplicable"], code=SEES_UPSTREAM.format(pid="after_na")
    )
    make_plugin(
        "after_failure",
        depends_on=["broken", "quiet"],
        code=SEES_UPSTREAM.format(pid="after_failure"),
    )
    make_plugin("two_down", depends_on=["after_failure"])
    result = await _run(plugins_dir, dataset, tmp_path)
    report = {p.id: p for p in result.report.plugins}
    after_na = report["after_na"]
    assert (after_na.status, after_na.ran) == ("ok", True)
    assert after_na.metrics == {
        "seen": {"inapplicable": "Na:NOT_APPLICABLE", "quiet": "Na:NO_SIGNIFICANT_EFFECT"}
    }
    for pid, root in (("after_failure", "'broken'"), ("two_down", "'broken'")):
        p = report[pid]
        assert (p.status, p.reason_code, p.ran) == ("na", "UPSTREAM_FAILED", False)
        assert p.explanation == f"Not started because upstream plugin {root} failed."
        assert p.metrics == {"checked": ["broken"]}
    assert report["broken"].downstream_affected == ("after_failure",)
    assert report["quiet"].downstream_affected == ("after_failure", "after_na")


WAIT_FOR = """
import time
from pathlib import Path
from contracts import Finding, ok
def run(ctx):
    here = Path(ctx.settings["dir"])
    (here / "{pid}.started").touch()
    wanted = ctx.settings["wait_for"]
    if wanted:
        deadline = time.monotonic() + 60
        while not list(here.glob(wanted)):
            if time.monotonic() > deadline:
                raise TimeoutError("never saw " + wanted)
            time.sleep(0.005)
    return ok(findings=[Finding(kind="{pid}_kind", title="t", target="x", recommendation="r")])
"""


async def test_the_decision_lane_is_served_first_at_run_time(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    """Two workers. The explanation plugins are ready from the start and shallower
    than the decision plugins (depth 0 against 1), so by plan depth alone they would
    go first. Barriers fix the timing: ``root`` (decision) and ``e1`` (explanation)
    hold both workers; ``e1`` ends only once a decision step has started, i.e. after ``root``
    freed its worker and the decision steps were admitted. Every decision step must
    be dispatched before any further explanation step."""
    gates = tmp_path / "gates"
    gates.mkdir()

    def plugin(pid: str, wait_for: str = "", **kw: object) -> None:
        make_plugin(
            pid,
            code=WAIT_FOR.format(pid=pid),
            settings={
                "dir": {"type": "str", "default": str(gates)},
                "wait_for": {"type": "str", "default": wait_for},
            },
            **kw,
        )

    plugin("root", wait_for="e1.started")
    for i in (1, 2, 3):
        plugin(f"d{i}", depends_on=["root"])
    plugin("e1", lane="explanation", wait_for="d*.started")
    plugin("e2", lane="explanation")
    plugin("e3", lane="explanation")
    result = await _run(plugins_dir, dataset, tmp_path)
    assert result.report.summary.ok == 7
    plan = [r.step.plugin_id for r in result.state.ordered()]
    assert plan[0] == "root" and set(plan[1:4]) == {"d1", "d2", "d3"}
    events = read_log(result.run_dir / "events.jsonl")
    dispatched = [e.plugin_id for e in events if isinstance(e, PluginDispatched)]
    decisions = sorted(dispatched[2:5])
    assert dispatched[:2] == ["root", "e1"]
    assert decisions == ["d1", "d2", "d3"]
    assert sorted(dispatched[5:]) == ["e2", "e3"]
    # The decision steps went in plan order.
    assert dispatched[2:5] == [p for p in plan if p.startswith("d")]
