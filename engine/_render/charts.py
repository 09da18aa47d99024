"""Chart specs drawn as inline SVG with matplotlib (the run timeline: timeline.py).

matplotlib's SVG backend, through its object-oriented API only (no pyplot, no GUI
backend, no global figure registry). The output is a pure function of the spec:
``svg.hashsalt`` is set per chart (so the ids inside the SVG are stable, and unique
within one page), the date is left out of the metadata, text stays text
(``svg.fonttype: none``: small, selectable, read by screen readers) and the font is
the DejaVu Sans that matplotlib ships, so layout does not depend on the fonts a
machine happens to have. rcParams are process-global, so drawing holds a lock.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import io
import math
import multiprocessing
import os
import pickle
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, assert_never

import msgspec

from contracts.charts import (
    Bars,
    Chart,
    HeatMap,
    Histogram,
    Quantiles,
    Series,
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


def _compact_number(value: float, _pos: object = None) -> str:
    """A tick label such as ``500``, ``20k``, ``3M`` or ``0.001``."""
    size = abs(value)
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if size >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _log_scale(ax: Any, which: str) -> None:
    """A log axis labelled in plain text. matplotlib's default labels (10 to a
    power) are typeset with mathtext, whose parser costs tens of milliseconds a
    label: most of a chart's drawing time."""
    from matplotlib import ticker

    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_formatter(ticker.FuncFormatter(_compact_number))
    axis.set_minor_formatter(ticker.NullFormatter())


def _chars(labels: Sequence[str]) -> int:
    return max((len(x) for x in labels), default=0)


def _histogram(fig: Any, c: Histogram) -> None:
    ax = fig.add_subplot()
    ax.stairs(c.counts, c.edges, fill=True, color=SKY, edgecolor=BLUE, linewidth=0.6)
    if c.log_x:
        _log_scale(ax, "x")
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
        _log_scale(ax, "y")
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
        _log_scale(ax, "x")
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


class ChartCache:
    """Drawn charts kept by content: a chart's SVG is a pure function of its spec, its
    key and the renderer (this module's source and the matplotlib version). Kept in
    memory for the life of this object (a run draws charts as its plugins finish, and
    the report takes them from here), and, with a ``directory``, on disk between runs,
    so a rerun whose results came from the result cache draws nothing (and does not
    even import matplotlib). Disk entries are written atomically (a temp file renamed
    into place); a missing or unreadable entry is drawn again."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self.hits = 0
        self._kept: dict[tuple[str, bytes], str] = {}
        self._lock = threading.Lock()

    @functools.cached_property
    def _renderer(self) -> bytes:
        source = Path(__file__).read_bytes()
        return f"{importlib.metadata.version('matplotlib')}:".encode() + source

    def _path(self, directory: Path, spec: bytes, key: str) -> Path:
        digest = hashlib.sha256(self._renderer)
        digest.update(b"\x00" + key.encode() + b"\x00" + spec)
        return directory / f"{digest.hexdigest()}.svg"

    def get(self, chart: Chart, key: str) -> str | None:
        """The kept drawing of ``chart`` under ``key``, if there is one."""
        spec = msgspec.json.encode(chart)
        with self._lock:
            text = self._kept.get((key, spec))
        if text is None and self.directory is not None:
            try:
                text = self._path(self.directory, spec, key).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                return None
        if text is not None:
            self.hits += 1
        return text

    def put(self, chart: Chart, key: str, text: str) -> None:
        spec = msgspec.json.encode(chart)
        with self._lock:
            self._kept[(key, spec)] = text
        if self.directory is None:
            return
        path = self._path(self.directory, spec, key)
        with contextlib.suppress(OSError):  # a cache that cannot be written is no cache
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)


Drawing = tuple[bool, str]
"""A chart drawn (``True``, its SVG) or not (``False``, the note shown instead)."""

Drawer = Callable[[Sequence[tuple[Chart, str]]], list[Drawing]]
"""Draws ``(chart, key)`` pairs, in order (see :func:`draw_here`, :class:`ChartProcess`)."""


def _drawing(chart: Chart, key: str) -> Drawing:
    try:
        return True, chart_svg(chart, key)
    except Exception as exc:  # a spec from an older or faulty plugin: say so, go on
        return False, (
            f'<p class="chart-error">This chart could not be drawn: {type(exc).__name__}</p>'
        )


def draw_here(items: Sequence[tuple[Chart, str]]) -> list[Drawing]:
    """The :data:`Drawer` that draws in this process and thread."""
    return [_drawing(chart, key) for chart, key in items]


DRAWING_NICENESS = 19
"""How much lower than the engine's the chart process's scheduling priority is: the
lowest, below the plugin workers' (5), since it draws while they run (an explanation
plugin's charts as it finishes) and must only take what they leave idle; at the end
of a run, when the report waits on it, the workers are idle."""


PARENT_CHECK_S = 1.0
"""How often the chart process looks whether the engine that started it still lives."""


def start_drawing_process(parent: int) -> None:
    """The chart process's initializer: below the engine's priority, and gone when
    the engine is. A pool's child waits on a queue whose write end it holds itself,
    so it never sees its parent die (a SIGKILLed engine left it behind, for good);
    nor can the kernel's parent-death signal be used, since the kernel sends it when
    the *thread* that started the child ends, and the child is started from a
    short-lived worker thread. A thread of its own watches the parent instead."""
    os.nice(DRAWING_NICENESS)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="engine-parent-watch", daemon=True).start()


class ChartProcess:
    """A :data:`Drawer` that draws in a child process of its own, started when first
    needed and kept until :meth:`close`.

    matplotlib holds the GIL for long stretches (loading its extension modules,
    laying out text), so drawing in a thread of an async service stalls that
    service's event loop for as long (100-160 ms seen beside a first run). In a
    child process the parent only waits on a pipe. The SVG is a pure function of
    the spec and the renderer, so the bytes are those :func:`draw_here` gives (a
    report rebuilt from the log later is identical). If the child cannot be used
    (it died, or could not start) the charts are drawn here instead: slower for
    the loop, never a lost chart."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _started(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=start_drawing_process,
                    initargs=(os.getpid(),),
                )
            return self._pool

    def __call__(self, items: Sequence[tuple[Chart, str]]) -> list[Drawing]:
        if not items:
            return []
        pool = self._started()
        try:
            return pool.submit(draw_here, list(items)).result()
        except (BrokenProcessPool, OSError, pickle.PicklingError):
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=True, cancel_futures=True)
            return draw_here(items)

    def close(self) -> None:
        """Stop the child (blocking: call it off the loop)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def draw_charts(
    requests: Sequence[tuple[Sequence[Chart], str]],
    cache: ChartCache | None = None,
    drawer: Drawer = draw_here,
) -> list[list[str]]:
    """For each ``(charts, key)``, its charts drawn (one that cannot be drawn is a
    note, never an exception): kept drawings from ``cache`` first, the others in one
    batch by ``drawer`` (then kept)."""
    flat = [(chart, f"{key}-{i}") for charts, key in requests for i, chart in enumerate(charts)]
    found = [cache.get(chart, key) if cache is not None else None for chart, key in flat]
    missing = [n for n, text in enumerate(found) if text is None]
    for n, (drawn, text) in zip(missing, drawer([flat[n] for n in missing]), strict=True):
        found[n] = text
        if drawn and cache is not None:
            cache.put(*flat[n], text)
    out, start = [], 0
    for charts, _ in requests:
        out.append([text or "" for text in found[start : start + len(charts)]])
        start += len(charts)
    return out


def charts_svg(charts: Sequence[Chart], key: str, cache: ChartCache | None = None) -> list[str]:
    """Each chart drawn here; one that cannot be drawn is a note, never an exception."""
    return draw_charts([(charts, key)], cache)[0]
