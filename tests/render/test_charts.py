"""Chart specs: validation at the plugin boundary, and deterministic SVG drawing."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from contracts import Finding, Na, Ok, ok
from contracts.charts import (
    MAX_CHART_VALUES,
    Bars,
    BarSeries,
    Chart,
    HeatMap,
    Histogram,
    Line,
    Marker,
    QuantileGroup,
    Quantiles,
    Rule,
    Series,
    chart_problem,
)
from engine._render.charts import ChartProcess, chart_svg, charts_svg
from engine._worker.boundary import check_result

DAYS = tuple(f"2024-03-{d:02d}" for d in range(1, 29))

CHARTS: dict[str, Chart] = {
    "histogram": Histogram(
        title="amount",
        x_label="amount (EUR)",
        edges=(1.0, 10.0, 100.0, 1000.0),
        counts=(5, 50, 7),
        above=3,
        log_x=True,
        markers=(Marker(at=500.0, label="upper bound"),),
    ),
    "series": Series(
        title="daily median wait",
        y_label="wait (s)",
        x=DAYS,
        lines=(Line(label="median", values=tuple(10.0 if i < 14 else 40.0 for i in range(28))),),
        markers=(Marker(at="2024-03-15", label="change"),),
        rules=(Rule(value=10.0, label="before", end="2024-03-15"),),
        highlight=(20,),
    ),
    "quantiles": Quantiles(
        title="wait by process",
        value_label="wait (s)",
        quantiles=("p50", "p95"),
        groups=(
            QuantileGroup(label="a", values=(1.0, 5.0)),
            QuantileGroup(label="b", values=(2.0, None)),
        ),
        highlight=("a",),
    ),
    "heatmap": HeatMap(
        title="correlations",
        x_labels=("x", "y"),
        y_labels=("x", "y"),
        values=((1.0, -0.5), (-0.5, None)),
        value_label="r",
        vmin=-1.0,
        vmax=1.0,
        diverging=True,
    ),
    "bars": Bars(
        title="first digits",
        y_label="share",
        categories=("1", "2"),
        series=(
            BarSeries(label="observed", values=(0.5, 0.5)),
            BarSeries(label="Benford", values=(0.3, 0.18)),
        ),
    ),
}

# Valid by shape, but x values that are not ISO dates cannot be drawn (they come from a
# plugin that skipped validation).
BROKEN = Series(title="s", y_label="y", x=("not a date",), lines=(Line(label="l", values=(1.0,)),))


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_each_kind_is_valid_and_draws_an_accessible_svg(name: str) -> None:
    chart = CHARTS[name]
    assert chart_problem(chart) is None
    svg = chart_svg(chart, "k")
    root = ET.fromstring(svg)  # well-formed XML
    assert root.tag.endswith("svg")
    assert root.get("role") == "img" and root.get("aria-label") == chart.title
    assert root.get("width") is None and root.get("viewBox")  # scales with the page
    assert "<dc:date>" not in svg  # no clock in the output
    assert chart.title in svg  # text stays text


def test_drawing_is_byte_identical_in_a_fresh_process() -> None:
    here = "\n".join(chart_svg(CHARTS[n], f"k{n}") for n in sorted(CHARTS))
    code = (
        "import sys\n"
        "from tests.render.test_charts import CHARTS\n"
        "from engine._render.charts import chart_svg\n"
        "sys.stdout.write('\\n'.join(chart_svg(CHARTS[n], f'k{n}') for n in sorted(CHARTS)))\n"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert fresh == here


def test_ids_are_scoped_by_key_so_two_charts_in_one_page_never_share_one() -> None:
    a, b = chart_svg(CHARTS["series"], "one"), chart_svg(CHARTS["series"], "two")
    ids_a = {e.get("id") for e in ET.fromstring(a).iter() if e.get("id")}
    ids_b = {e.get("id") for e in ET.fromstring(b).iter() if e.get("id")}
    assert ids_a and not ids_a & ids_b
    for svg, ids in ((a, ids_a), (b, ids_b)):  # every reference points into its own chart
        refs = re.findall(r'url\(#([^)]+)\)|href="#([^"]+)"', svg)
        assert {x or y for x, y in refs} <= ids


H, S, L = Histogram, Series, Line


def _hist(edges: tuple[float, ...], counts: tuple[int, ...], **kw: object) -> Histogram:
    return H(title=str(kw.pop("title", "h")), x_label="x", edges=edges, counts=counts, **kw)  # type: ignore[arg-type]


def _series(x: tuple[str, ...], values: tuple[float, ...], **kw: object) -> Series:
    return S(title="s", y_label="y", x=x, lines=(L(label="l", values=values),), **kw)  # type: ignore[arg-type]


BIG = tuple(str(i) for i in range(MAX_CHART_VALUES + 1))
BAD = [
    (_hist((0.0, 1.0), (1, 2)), "edges for 2 counts"),
    (_hist((0.0, 2.0, 1.0), (1, 2)), "edges must increase"),
    (_hist((0.0, 1.0), (1,), log_x=True), "positive"),
    (_hist((0.0, 1.0), (1,), title=" "), "title"),
    (_series(DAYS[:2], (1.0,)), "one value per x"),
    (_series((DAYS[1], DAYS[0]), (1.0, 2.0)), "ascending"),
    (_series(DAYS[:1], (1.0,), highlight=(3,)), "highlight"),
    (
        Quantiles(
            title="q",
            value_label="v",
            quantiles=("p50",),
            groups=(QuantileGroup(label="g", values=(1.0, 2.0)),),
        ),
        "one value per quantile",
    ),
    (
        HeatMap(title="m", x_labels=("a",), y_labels=("a", "b"), values=((1.0,),), value_label="r"),
        "rows",
    ),
    (
        Bars(title="b", y_label="y", categories=("a",), series=(BarSeries(label="s", values=()),)),
        "one value per category",
    ),
    (
        Bars(
            title="b",
            y_label="y",
            categories=BIG,
            series=(BarSeries(label="s", values=(0.0,) * len(BIG)),),
        ),
        "at most",
    ),
]


@pytest.mark.parametrize(("chart", "words"), BAD)
def test_a_malformed_chart_fails_the_plugin_naming_the_chart(chart: Chart, words: str) -> None:
    problem = chart_problem(chart)
    assert problem is not None and words in problem
    result = check_result("p", ok(findings=[Finding(kind="k", title="t", charts=(chart,))]))
    assert not isinstance(result, Ok | Na)
    assert result.reason_code == "INVALID_FINDING"
    assert "charts[0]" in result.message and words in result.message


def test_a_chart_that_cannot_be_drawn_becomes_a_note_not_an_exception() -> None:
    # Valid by shape, but a log axis over values <= 0 cannot be drawn by a date parser:
    # x values that are not ISO dates come from a plugin that skipped validation.
    broken = Series(
        title="s", y_label="y", x=("not a date",), lines=(Line(label="l", values=(1.0,)),)
    )
    (note,) = charts_svg([broken], "k")
    assert "could not be drawn" in note and "<svg" not in note


def test_the_child_process_draws_the_same_bytes_and_the_parent_never_imports_matplotlib() -> None:
    """The engine draws report charts in a child process (matplotlib holds the GIL for
    long stretches; in a thread it would stall an async host's loop). The parent must
    not import matplotlib at all, and the drawings are those drawn in process."""
    code = (
        "import sys\n"
        "from tests.render.test_charts import BROKEN, CHARTS\n"
        "from engine._render.charts import ChartProcess\n"
        "items = [(CHARTS[n], f'k{n}') for n in sorted(CHARTS)] + [(BROKEN, 'kb')]\n"
        "drawer = ChartProcess()\n"
        "try:\n"
        "    drawn = drawer(items)\n"
        "finally:\n"
        "    drawer.close()\n"
        "assert 'matplotlib' not in sys.modules, 'the parent imported matplotlib'\n"
        "sys.stdout.write('\\n'.join(f'{ok}:{svg}' for ok, svg in drawn))\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180
    )
    assert child.returncode == 0, child.stderr
    here = [chart_svg(CHARTS[n], f"k{n}") for n in sorted(CHARTS)]
    (note,) = charts_svg([BROKEN], "kb")
    assert child.stdout == "\n".join([f"True:{svg}" for svg in here] + [f"False:{note}"])


def test_a_dead_drawing_process_loses_no_chart() -> None:
    """The child killed between two pages: the next page's charts are drawn all the
    same (here, in the parent), byte for byte."""
    import os
    import signal

    items = [(CHARTS[n], f"k{n}") for n in sorted(CHARTS)]
    expected = [(True, chart_svg(chart, key)) for chart, key in items]
    drawer = ChartProcess()
    try:
        assert drawer(items[:1]) == expected[:1]
        pool = drawer._pool
        assert pool is not None
        for pid in list(pool._processes):  # the child, started by the first page
            os.kill(pid, signal.SIGKILL)
        assert drawer(items) == expected
    finally:
        drawer.close()


def test_the_drawing_process_ends_when_the_engine_is_killed() -> None:
    """A SIGKILLed engine must not leave its chart process behind (a pool's child
    never sees its parent die on its own): it ends within a few looks at its parent."""
    import os
    import time

    code = (
        "import sys, time\n"
        "from tests.render.test_charts import CHARTS\n"
        "from engine._render.charts import ChartProcess\n"
        "drawer = ChartProcess()\n"
        "name = sorted(CHARTS)[0]\n"
        "drawer([(CHARTS[name], 'k')])\n"
        "print(*drawer._pool._processes, flush=True)\n"
        "time.sleep(600)\n"
    )
    engine = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert engine.stdout is not None
        (child,) = (int(pid) for pid in engine.stdout.readline().split())
        os.kill(child, 0)  # drawing: alive
    finally:
        engine.kill()
        engine.wait()
        if engine.stdout is not None:
            engine.stdout.close()

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        with open(f"/proc/{pid}/stat") as fh:  # a zombie waits for init to reap it
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"

    deadline = time.monotonic() + 60  # a bound, not an expectation: it looks once a second
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), f"chart process {child} outlived its engine"
