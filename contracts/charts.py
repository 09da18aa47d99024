"""Chart specs: the data of a plot, declared, never drawn by a plugin.

A finding carries its plots as small typed specs (``Finding.charts``); the engine
renders them (``report.html``) the same way for every plugin. Each spec holds only
what the plot shows (bin counts, daily values, quantiles), bounded by
:data:`MAX_CHART_VALUES`, never raw rows. Values are plain floats; ``None`` marks a
missing point. Times on a time axis are ISO strings (``2024-01-05`` or
``2024-01-05T13:00:00``), so the spec is the same JSON on every machine.

:class:`RunTimeline` is not a plugin chart: the engine folds it from the event log
(when each plugin was dispatched, started and finished, on which worker) to draw the
run's Gantt chart and the live view of ``engine serve``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Literal, assert_never

from ._base import Wire
from .plan import Mode, StepLane

MAX_CHART_VALUES = 5000
"""Most numbers one chart may hold (bins, points times lines, cells): a report of a
whole fleet stays small, and a chart is a summary, not a copy of the data."""


class Marker(Wire, frozen=True):
    """A labelled position on the x axis: an outlier bound, a changepoint's date.

    ``at`` is a number on a numeric axis, an ISO date or time on a time axis."""

    at: float | str
    label: str


class Rule(Wire, frozen=True):
    """A labelled horizontal line (a control limit, a level before a change),
    across the whole plot or from ``start`` to ``end`` (x values of the chart)."""

    value: float
    label: str
    start: str | None = None
    end: str | None = None


class Histogram(Wire, frozen=True, tag="histogram", tag_field="type"):
    """Counts of values in bins; ``edges`` has one more entry than ``counts``.

    ``below`` and ``above`` count the values outside the binned range, so a plot
    that shows the bulk of a heavy-tailed column still says how many it left out."""

    title: str
    x_label: str
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    y_label: str = "values"
    below: int = 0
    above: int = 0
    log_x: bool = False
    markers: tuple[Marker, ...] = ()


class Line(Wire, frozen=True):
    """One line of a :class:`Series`: a value per x position (``None``: no value)."""

    label: str
    values: tuple[float | None, ...]


class Series(Wire, frozen=True, tag="series", tag_field="type"):
    """Lines over time: ``x`` are ISO dates or date-times in ascending order.

    ``highlight`` are indices into ``x`` marked on the first line (days beyond a
    control limit); ``markers`` are dates (a changepoint); ``rules`` horizontal
    lines; ``step`` draws the lines as steps (counts that hold until the next x)."""

    title: str
    y_label: str
    x: tuple[str, ...]
    lines: tuple[Line, ...]
    markers: tuple[Marker, ...] = ()
    rules: tuple[Rule, ...] = ()
    highlight: tuple[int, ...] = ()
    step: bool = False
    log_y: bool = False


class QuantileGroup(Wire, frozen=True):
    """One group of a :class:`Quantiles` chart: its value at each quantile."""

    label: str
    values: tuple[float | None, ...]
    n: int | None = None


class Quantiles(Wire, frozen=True, tag="quantiles", tag_field="type"):
    """Quantiles per group, side by side (per-process wait or run times).

    ``quantiles`` names the columns of every group's ``values`` in ascending order
    (``("p50", "p95", "p99")``); ``highlight`` names the groups to emphasize."""

    title: str
    value_label: str
    quantiles: tuple[str, ...]
    groups: tuple[QuantileGroup, ...]
    highlight: tuple[str, ...] = ()
    log_scale: bool = False


class HeatMap(Wire, frozen=True, tag="heatmap", tag_field="type"):
    """A matrix of values: ``values[i][j]`` belongs to ``y_labels[i]``, ``x_labels[j]``."""

    title: str
    x_labels: tuple[str, ...]
    y_labels: tuple[str, ...]
    values: tuple[tuple[float | None, ...], ...]
    value_label: str
    vmin: float | None = None
    vmax: float | None = None
    diverging: bool = False


class BarSeries(Wire, frozen=True):
    label: str
    values: tuple[float, ...]


class Bars(Wire, frozen=True, tag="bars", tag_field="type"):
    """Bars per category, one bar per series (observed beside expected)."""

    title: str
    y_label: str
    categories: tuple[str, ...]
    series: tuple[BarSeries, ...]
    x_label: str = ""
    highlight: tuple[str, ...] = ()
    horizontal: bool = False


Chart = Histogram | Series | Quantiles | HeatMap | Bars
"""Every chart a finding may carry, tagged by ``type``."""


def _count(chart: Chart) -> int:
    match chart:
        case Histogram():
            return len(chart.counts)
        case Series():
            return len(chart.x) * max(len(chart.lines), 1)
        case Quantiles():
            return len(chart.groups) * max(len(chart.quantiles), 1)
        case HeatMap():
            return len(chart.x_labels) * len(chart.y_labels)
        case Bars():
            return len(chart.categories) * max(len(chart.series), 1)
    assert_never(chart)


def chart_problem(chart: Chart) -> str | None:
    """Why ``chart`` cannot be drawn as declared (``None``: it can)."""
    if not chart.title.strip():
        return "title must not be blank"
    size = _count(chart)
    if size > MAX_CHART_VALUES:
        return f"{size} values; a chart holds at most {MAX_CHART_VALUES}"
    match chart:
        case Histogram(edges=edges, counts=counts):
            if not counts or len(edges) != len(counts) + 1:
                return f"{len(edges)} edges for {len(counts)} counts; expected counts + 1"
            if any(b <= a for a, b in pairwise(edges)):
                return "edges must increase"
            if chart.log_x and edges[0] <= 0:
                return "a log axis needs positive edges"
        case Series(x=x, lines=lines):
            if not x or not lines:
                return "a series needs x values and at least one line"
            bad = [ln.label for ln in lines if len(ln.values) != len(x)]
            if bad:
                return f"line(s) {', '.join(bad)} do not have one value per x ({len(x)})"
            if list(x) != sorted(x):
                return "x must be in ascending order"
            if any(not 0 <= i < len(x) for i in chart.highlight):
                return "highlight index outside x"
        case Quantiles(quantiles=names, groups=groups):
            if not names or not groups:
                return "quantiles need names and at least one group"
            bad = [g.label for g in groups if len(g.values) != len(names)]
            if bad:
                return f"group(s) {', '.join(bad)} do not have one value per quantile"
        case HeatMap(values=rows):
            if not chart.x_labels or len(rows) != len(chart.y_labels):
                return f"{len(rows)} rows for {len(chart.y_labels)} y labels"
            if any(len(r) != len(chart.x_labels) for r in rows):
                return f"every row needs {len(chart.x_labels)} values"
        case Bars(categories=cats, series=series):
            if not cats or not series:
                return "bars need categories and at least one series"
            bad = [s.label for s in series if len(s.values) != len(cats)]
            if bad:
                return f"series {', '.join(bad)} do not have one value per category"
    return None


TimelineStatus = Literal["pending", "dispatched", "running", "ok", "na", "failed"]


class TimelineEntry(Wire, frozen=True):
    """One plugin on the run's timeline; times are seconds since ``run_started``.

    ``started_s`` is set only for plugins a worker started; a cache hit, a preflight
    ``na`` and a plugin resolved without running (its upstream failed) have only
    ``finished_s``. ``worker`` is the executor's worker index."""

    plugin_id: str
    lane: StepLane
    order: int
    status: TimelineStatus
    reason_code: str | None = None
    worker: int | None = None
    dispatched_s: float | None = None
    started_s: float | None = None
    finished_s: float | None = None
    duration_s: float = 0.0
    cached: bool = False
    preflight: bool = False
    ran: bool = False
    findings: int = 0


class RunTimeline(Wire, frozen=True):
    """Where a run is, folded from its event log alone (finished or in progress).

    ``status`` is ``running`` until ``run_finished``; ``elapsed_s`` runs to the last
    event. ``entries`` are in plan order."""

    run_id: str
    status: Literal["running", "ok", "failed"]
    mode: Mode
    seed: int
    dataset: str
    rows: int
    started_wall: float
    elapsed_s: float
    events: int
    workers: int
    executor: str
    entries: tuple[TimelineEntry, ...] = ()


def first_digit_bars(title: str, counts: Sequence[int]) -> Bars:
    """Observed first-significant-digit shares (``counts`` of digits 1..9) beside
    Benford's law, ``log10(1 + 1/d)``."""
    total = sum(counts) or 1
    return Bars(
        title=title,
        y_label="share of values",
        x_label="first significant digit",
        categories=tuple(str(d) for d in range(1, 10)),
        series=(
            BarSeries(label="observed", values=tuple(c / total for c in counts)),
            BarSeries(label="Benford", values=tuple(math.log10(1 + 1 / d) for d in range(1, 10))),
        ),
    )


def histogram_from_rows(
    title: str,
    x_label: str,
    rows: Sequence[Mapping[str, int]],
    low: float,
    high: float,
    bins: int,
    *,
    log: bool = False,
    markers: tuple[Marker, ...] = (),
) -> Histogram:
    """A :class:`Histogram` from the rows of :func:`contracts.sql.histogram_sql`."""
    counts = [0] * bins
    below = above = 0
    for row in rows:
        b, n = int(row["bin"]), int(row["n"])
        if b < 0:
            below += n
        elif b >= bins:
            above += n
        else:
            counts[b] += n
    if log:
        step = (math.log(high) - math.log(low)) / bins
        edges = tuple(math.exp(math.log(low) + i * step) for i in range(bins + 1))
    else:
        edges = tuple(low + (high - low) * i / bins for i in range(bins + 1))
    return Histogram(title=title, x_label=x_label, edges=edges, counts=tuple(counts),
                     below=below, above=above, log_x=log, markers=markers)  # fmt: skip
