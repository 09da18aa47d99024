"""Chart specs and the run timeline drawn as inline SVG with matplotlib.

matplotlib's SVG backend, through its object-oriented API only (no pyplot, no GUI
backend, no global figure registry). The output is a pure function of the spec:
``svg.hashsalt`` is set per chart (so the ids inside the SVG are stable, and unique
within one page), the date is left out of the metadata, text stays text
(``svg.fonttype: none``: small, selectable, read by screen readers) and the font is
the DejaVu Sans that matplotlib ships, so layout does not depend on the fonts a
machine happens to have. rcParams are process-global, so drawing holds a lock.
"""

from __future__ import annotations

import io
import math
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, assert_never

from contracts.charts import (
    Bars,
    Chart,
    HeatMap,
    Histogram,
    Quantiles,
    RunTimeline,
    Series,
    TimelineEntry,
)

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
BLUE, ORANGE, GREEN, VERMILION = "#0072B2", "#E69F00", "#009E73", "#D55E00"
SKY, PURPLE, YELLOW, GREY = "#56B4E9", "#CC79A7", "#F0E442", "#7F7F7F"
PALETTE = (BLUE, ORANGE, GREEN, PURPLE, SKY, VERMILION, YELLOW, GREY)
LANE_COLOURS = {"decision": BLUE, "explanation": GREEN, "legacy": PURPLE}
WIDTH_IN = 6.6

_RC: dict[str, Any] = {
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 8.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 9.5,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "legend.fontsize": 7.5,
    "legend.frameon": False,
    "hatch.linewidth": 0.8,
}
_LOCK = threading.Lock()
_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def safe_id(text: str) -> str:
    """``text`` usable in an HTML/SVG id (anything else becomes ``_``)."""
    return _SAFE.sub("_", text)


@contextmanager
def _figure(height_in: float, salt: str) -> Iterator[Any]:
    import matplotlib as mpl
    from matplotlib.figure import Figure

    rc: Any = {**_RC, "svg.hashsalt": salt}
    with _LOCK, mpl.rc_context(rc):
        try:
            # Margins are set from the labels (``_place``): a layout engine would
            # measure every text, and costs more than the drawing itself.
            yield Figure(figsize=(WIDTH_IN, height_in))
        finally:
            _release_fonts()


def _release_fonts() -> None:
    """matplotlib keeps each font file open per drawing thread; reports are drawn in
    short-lived worker threads, so the open files would pile up in a long-lived
    service. Let them go after each figure."""
    from matplotlib import font_manager

    cached = getattr(font_manager, "_get_font", None)
    if cached is not None and hasattr(cached, "cache_clear"):
        cached.cache_clear()


_REF = re.compile(r'url\(#([^")]+)\)|href="#([^"]+)"')
_ID = re.compile(r'(\bid="|url\(#|href="#)([^"()]+)("|\))')
_GEOMETRY = re.compile(r'\b(d|x|y|transform|points)="([^"]*)"')
_DIGITS = re.compile(r"\d+\.\d{3,}")


def _round(m: re.Match[str]) -> str:
    return f"{float(m.group(0)):.2f}".rstrip("0").rstrip(".")


def _compact(svg: str, key: str) -> str:
    """Smaller, page-safe SVG. matplotlib numbers its ids per figure (``axes_1``) and
    one page holds many figures: ids that something refers to are prefixed with
    ``key``, the others dropped (our own ``tl-`` ids stay: tests and links use them).
    Coordinates are rounded to a hundredth of a point, and the indentation between
    tags goes."""
    used = {a or b for a, b in _REF.findall(svg)}

    def scope(m: re.Match[str]) -> str:
        head, name, tail = m.groups()
        if name.startswith("tl-"):
            return m.group(0)
        if head == 'id="' and name not in used:
            return "\x00"
        return f"{head}{key}-{name}{tail}"

    svg = _ID.sub(scope, svg).replace(" \x00", "").replace("\x00", "")
    svg = _GEOMETRY.sub(lambda m: f'{m.group(1)}="{_DIGITS.sub(_round, m.group(2))}"', svg)
    return re.sub(r">\s+<", "><", svg)


def _svg(fig: Any, label: str, key: str) -> str:
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    buf = io.StringIO()
    FigureCanvasSVG(fig).print_svg(buf, metadata={"Date": None, "Creator": None})  # type: ignore[no-untyped-call]
    text = buf.getvalue()
    start = text.index("<svg")
    head_end = text.index(">", start)
    head = text[start:head_end]
    # Scale with the page: keep the viewBox, drop the fixed size in points.
    head = re.sub(r' (width|height)="[^"]*"', "", head)
    label = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    body = _compact(text[head_end:].rstrip(), safe_id(key))
    return f'{head} role="img" aria-label="{label}"' + body + "\n"


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


CHAR_IN = 0.064  # average width of a character of the 8.5 pt font, in inches
TOP_IN = 0.62  # the title and, under it, a legend row


def _legend(ax: Any, **kw: Any) -> None:
    """The legend in a row just above the plot (never over the data; placing it
    'best' would search the data for a gap, which is slow)."""
    handles, _ = ax.get_legend_handles_labels()
    if handles or "handles" in kw:
        count = len(kw.get("handles", handles))
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=min(count, 4),
                  borderaxespad=0.2, handlelength=1.6, columnspacing=1.2, **kw)  # fmt: skip


def _title(fig: Any, text: str) -> None:
    height = fig.get_figheight()
    fig.text(0.01, 1 - 0.06 / height, text, ha="left", va="top", fontsize=9.5, weight="bold")


def _place(fig: Any, left_in: float, bottom_in: float, right_in: float = 0.25) -> None:
    width, height = fig.get_figwidth(), fig.get_figheight()
    left = min(left_in, width * 0.45) / width
    fig.subplots_adjust(left=left, right=1 - right_in / width,
                        bottom=bottom_in / height, top=1 - TOP_IN / height)  # fmt: skip


def _chars(labels: Sequence[str]) -> int:
    return max((len(x) for x in labels), default=0)


def _histogram(fig: Any, c: Histogram) -> None:
    ax = fig.add_subplot()
    ax.stairs(c.counts, c.edges, fill=True, color=SKY, edgecolor=BLUE, linewidth=0.6)
    if c.log_x:
        ax.set_xscale("log")
    for i, m in enumerate(c.markers):
        ax.axvline(float(m.at), color=(VERMILION, ORANGE, PURPLE)[i % 3], ls="--", lw=1.1,
                   label=m.label)  # fmt: skip
    if c.below or c.above:
        ax.text(0.99, 0.97, f"outside the plotted range: {c.below:,} below, {c.above:,} above",
                transform=ax.transAxes, ha="right", va="top", fontsize=7.5, color=GREY)  # fmt: skip
    ax.set_xlabel(c.x_label)
    ax.set_ylabel(c.y_label)
    _title(fig, c.title)
    _legend(ax)
    _place(fig, 0.8, 0.5)


def _series(fig: Any, c: Series) -> None:
    from matplotlib import dates as mdates

    ax = fig.add_subplot()
    xs = [_time(x) for x in c.x]
    for i, line in enumerate(c.lines):
        ys = [_nan(v) for v in line.values]
        colour = PALETTE[i % len(PALETTE)]
        if c.step:
            ax.step(xs, ys, where="post", color=colour, lw=1.2, label=line.label)
        else:
            ax.plot(xs, ys, color=colour, lw=1.2, marker="o" if len(xs) <= 60 else None,
                    ms=2.5, label=line.label)  # fmt: skip
    if c.highlight:
        first = c.lines[0].values
        ax.scatter([xs[i] for i in c.highlight], [_nan(first[i]) for i in c.highlight],
                   s=22, color=VERMILION, marker="X", zorder=3, label="flagged")  # fmt: skip
    for r in c.rules:
        if r.start is None and r.end is None:
            ax.axhline(r.value, color=GREY, ls=":", lw=1.1, label=r.label)
        else:
            lo = _time(r.start) if r.start is not None else xs[0]
            hi = _time(r.end) if r.end is not None else xs[-1]
            ax.hlines(r.value, lo, hi, colors=ORANGE, linestyles="--", lw=1.3, label=r.label)
    for m in c.markers:
        ax.axvline(_time(str(m.at)), color=VERMILION, ls="--", lw=1.1, label=m.label)
    if c.log_y:
        ax.set_yscale("log")
    locator = mdates.AutoDateLocator(maxticks=8)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.set_ylabel(c.y_label)
    _title(fig, c.title)
    _legend(ax)
    _place(fig, 0.8, 0.45)


def _quantiles(fig: Any, c: Quantiles) -> None:
    ax = fig.add_subplot()
    shapes = ("o", "^", "s", "D", "v", "P")
    n = len(c.groups)
    ys = list(range(n))[::-1]
    for y, g in zip(ys, c.groups, strict=True):
        vals = [v for v in g.values if v is not None and (v > 0 or not c.log_scale)]
        hot = g.label in c.highlight
        if len(vals) >= 2:
            ax.hlines(
                y, min(vals), max(vals), colors=VERMILION if hot else GREY, lw=2 if hot else 1
            )
    for j, name in enumerate(c.quantiles):
        pts = [(g.values[j], y) for y, g in zip(ys, c.groups, strict=True)]
        pts = [(v, y) for v, y in pts if v is not None and (v > 0 or not c.log_scale)]
        ax.scatter([v for v, _ in pts], [y for _, y in pts], marker=shapes[j % len(shapes)],
                   s=20, color=PALETTE[j % len(PALETTE)], zorder=3, label=name)  # fmt: skip
    ax.set_yticks(ys, [g.label if g.n is None else f"{g.label} (n={g.n:,})" for g in c.groups])
    for tick, g in zip(ax.get_yticklabels(), c.groups, strict=True):
        if g.label in c.highlight:
            tick.set_fontweight("bold")
            tick.set_color(VERMILION)
    if c.log_scale:
        ax.set_xscale("log")
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel(c.value_label)
    _title(fig, c.title)
    _legend(ax)
    labels = [g.label if g.n is None else f"{g.label} (n={g.n:,})" for g in c.groups]
    _place(fig, 0.25 + CHAR_IN * _chars(labels), 0.5)


def _heatmap(fig: Any, c: HeatMap) -> None:
    import numpy as np

    ax = fig.add_subplot()
    data = np.ma.masked_invalid(np.array([[_nan(v) for v in row] for row in c.values]))
    cmap = "RdBu_r" if c.diverging else "viridis"
    image = ax.imshow(data, cmap=cmap, vmin=c.vmin, vmax=c.vmax, aspect="auto")
    ax.set_xticks(range(len(c.x_labels)), c.x_labels, rotation=45, ha="right")
    ax.set_yticks(range(len(c.y_labels)), c.y_labels)
    ax.spines[:].set_visible(False)
    if len(c.x_labels) * len(c.y_labels) <= 225:
        lo, hi = image.get_clim()
        for i, row in enumerate(c.values):
            for j, v in enumerate(row):
                shade = (float(v) - lo) / (hi - lo) if v is not None and hi > lo else 0.5
                dark = shade < 0.25 or shade > 0.75 if c.diverging else shade < 0.55
                ax.text(j, i, "–" if v is None else f"{v:.2f}", ha="center", va="center",
                        fontsize=7, color="white" if dark else "black")  # fmt: skip
    _title(fig, c.title)
    _place(fig, 0.2 + CHAR_IN * _chars(c.y_labels), 0.25 + 0.7 * CHAR_IN * _chars(c.x_labels))
    fig.colorbar(image, ax=ax, label=c.value_label, shrink=0.9, fraction=0.05, pad=0.02)


def _bars(fig: Any, c: Bars) -> None:
    ax = fig.add_subplot()
    k = len(c.series)
    width = 0.8 / k
    pos = list(range(len(c.categories)))
    for i, s in enumerate(c.series):
        offs = [p - 0.4 + width * (i + 0.5) for p in pos]
        draw = ax.barh if c.horizontal else ax.bar
        draw(offs, s.values, width, color=PALETTE[i % len(PALETTE)], label=s.label)
    if c.horizontal:
        ax.set_yticks(pos, c.categories)
        ax.invert_yaxis()
        ax.set_xlabel(c.y_label)
        ticks = ax.get_yticklabels()
    else:
        ax.set_xticks(pos, c.categories, rotation=0 if len(c.categories) <= 12 else 45)
        ax.set_ylabel(c.y_label)
        if c.x_label:
            ax.set_xlabel(c.x_label)
        ticks = ax.get_xticklabels()
    for tick, cat in zip(ticks, c.categories, strict=True):
        if cat in c.highlight:
            tick.set_fontweight("bold")
            tick.set_color(VERMILION)
    _title(fig, c.title)
    if k > 1:
        _legend(ax)
    if c.horizontal:
        _place(fig, 0.25 + CHAR_IN * _chars(c.categories), 0.5)
    else:
        rotated = len(c.categories) > 12
        _place(fig, 0.8, 0.5 + (0.7 * CHAR_IN * _chars(c.categories) if rotated else 0.0))


def _height(chart: Chart) -> float:
    match chart:
        case Quantiles():
            return 1.0 + 0.24 * len(chart.groups)
        case HeatMap():
            return 1.6 + 0.26 * len(chart.y_labels) + 0.05 * _chars(chart.x_labels)
        case Bars(horizontal=True):
            return 1.0 + 0.22 * len(chart.categories) * math.sqrt(max(1, len(chart.series)))
        case _:
            return 2.6


_DRAW: dict[type, Callable[[Any, Any], None]] = {
    Histogram: _histogram,
    Series: _series,
    Quantiles: _quantiles,
    HeatMap: _heatmap,
    Bars: _bars,
}


def chart_svg(chart: Chart, key: str) -> str:
    """``chart`` as an inline ``<svg>`` element; ``key`` (unique in the page) salts its ids."""
    match chart:
        case Histogram() | Series() | Quantiles() | HeatMap() | Bars():
            draw = _DRAW[type(chart)]
        case _:
            assert_never(chart)
    with _figure(_height(chart), key) as fig:
        draw(fig, chart)
        return _svg(fig, chart.title, key)


def _row_label(e: TimelineEntry) -> str:
    where = f"w{e.worker}" if e.worker is not None else "—"
    return f"{e.plugin_id}  [{where}]"


def _outcome(e: TimelineEntry) -> str:
    """The status word drawn beside a bar (the colour is never the only cue)."""
    if e.preflight:
        return f"na (preflight) {e.reason_code or ''}".rstrip()
    if e.cached:
        return f"{e.status} (cache hit)"
    if e.status in ("ok", "na", "failed") and not e.ran:
        return f"{e.status} (not run) {e.reason_code or ''}".rstrip()
    if e.status == "failed":
        return f"FAILED {e.reason_code or ''}".rstrip()
    return e.status


def timeline_rows(timeline: RunTimeline) -> list[TimelineEntry]:
    """Entries in drawing order: by worker, then start; those never started last."""

    def key(e: TimelineEntry) -> tuple[Any, ...]:
        started = e.started_s if e.started_s is not None else math.inf
        return (e.worker is None, e.worker or 0, started, e.finished_s or 0.0, e.order)

    return sorted(timeline.entries, key=key)


def timeline_svg(timeline: RunTimeline) -> str:
    """The run's Gantt chart: a row per plugin, grouped by worker, coloured by lane;
    hatching and a status word give the outcome. Cache hits, preflight ``na`` and
    plugins resolved without running are diamonds at the time they were decided."""
    from matplotlib.patches import Patch

    rows = timeline_rows(timeline)
    end = max(timeline.elapsed_s, 1e-3)
    with _figure(1.2 + 0.2 * max(len(rows), 1), f"timeline-{timeline.run_id}") as fig:
        ax = fig.add_subplot()
        n = len(rows)
        for i, e in enumerate(rows):
            y = n - 1 - i
            colour = LANE_COLOURS.get(e.lane, GREY)
            if e.dispatched_s is not None:
                waited = e.started_s if e.started_s is not None else e.finished_s
                ax.hlines(y, e.dispatched_s, end if waited is None else waited,
                          colors=GREY, lw=1, linestyles=":")  # fmt: skip
            if e.started_s is not None:
                stop = e.finished_s if e.finished_s is not None else end
                hatch = {"na": "////", "failed": "xxxx", "running": "...."}.get(e.status)
                (bar,) = ax.barh(y, max(stop - e.started_s, end / 2000), left=e.started_s,
                                 height=0.62, color=colour, alpha=0.45 if hatch else 0.95,
                                 hatch=hatch, edgecolor=VERMILION if e.status == "failed"
                                 else colour, linewidth=0.8)  # fmt: skip
                bar.set_gid(f"tl-bar-{safe_id(e.plugin_id)}")
                at = stop
            else:
                at = e.finished_s if e.finished_s is not None else 0.0
                if e.finished_s is not None:
                    (mark,) = ax.plot([at], [y], marker="D", ms=5, color=colour,
                                      markeredgecolor="black", markeredgewidth=0.5)  # fmt: skip
                    mark.set_gid(f"tl-mark-{safe_id(e.plugin_id)}")
            ax.text(at + end * 0.006, y, _outcome(e), va="center", fontsize=6.5,
                    color=VERMILION if e.status == "failed" else "#333333")  # fmt: skip
        ax.set_yticks(range(n), [_row_label(e) for e in rows][::-1], fontsize=6.5)
        ax.set_ylim(-0.8, n - 0.2)
        ax.set_xlim(0, end * 1.18)
        ax.set_xlabel("seconds since the run started")
        ax.grid(axis="x", color="#dddddd", lw=0.5)
        ax.set_axisbelow(True)
        lanes = sorted({e.lane for e in rows})
        handles = [
            Patch(color=LANE_COLOURS.get(lane, GREY), label=f"{lane} lane") for lane in lanes
        ]
        handles += [
            Patch(facecolor="white", edgecolor=GREY, hatch="////", label="na"),
            Patch(facecolor="white", edgecolor=VERMILION, hatch="xxxx", label="failed"),
        ]
        _legend(ax, handles=handles, fontsize=7)
        _title(fig, f"Run timeline: {n} plugins on {timeline.workers} worker(s)")
        _place(fig, 0.2 + 0.05 * _chars([_row_label(e) for e in rows]), 0.45)
        return _svg(fig, f"Run timeline of {timeline.run_id}", f"timeline-{timeline.run_id}")


def charts_svg(charts: Sequence[Chart], key: str) -> list[str]:
    """Each chart drawn; one that cannot be drawn is a note, never an exception."""
    out = []
    for i, chart in enumerate(charts):
        try:
            out.append(chart_svg(chart, f"{key}-{i}"))
        except Exception as exc:  # a spec from an older or faulty plugin: say so, go on
            out.append(
                f'<p class="chart-error">This chart could not be drawn: {type(exc).__name__}</p>'
            )
    return out
