"""The run timeline (a Gantt chart of the plugins) written directly as SVG.

A row per plugin, grouped by worker, coloured by lane; hatching and a status word
give the outcome (the colour is never the only cue). Cache hits, preflight ``na``
and plugins resolved without running are diamonds at the time they were decided.

It is drawn without matplotlib on purpose: it is only rectangles, lines and text,
it is redrawn live while a run is watched (``engine serve``) and once per run
(report.html), and a fleet has hundreds of rows. matplotlib builds several artists
per row (about 4 ms a row, 1.8 s for 400 plugins: more than the run it shows);
this costs microseconds a row. The look follows the matplotlib charts of the page:
same palette, font and sizes, in points (a viewBox, so it scales with the page).
The output is a pure function of the timeline.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from html import escape

from contracts.charts import RunTimeline, TimelineEntry

from .charts import GREY, LANE_COLOURS, VERMILION, WIDTH_IN, safe_id

PT = 72.0  # points per inch
WIDTH = WIDTH_IN * PT
ROW = 0.2 * PT  # one plugin's row
BAR = 0.62 * ROW  # a bar's thickness
TOP = 0.62 * PT  # title and legend
BOTTOM = 0.45 * PT  # the axis, its tick labels and its label
RIGHT = 0.25 * PT
SMALL = 6.5  # font size of labels and status words, in points
CHAR = 0.55 * SMALL  # average width of one of their characters
FONT = "font-family:'DejaVu Sans',sans-serif"
HATCHED = ("na", "failed", "running")  # statuses drawn hatched, a pattern each


def timeline_rows(timeline: RunTimeline) -> list[TimelineEntry]:
    """Entries in drawing order: by worker, then start; those never started last."""

    def key(e: TimelineEntry) -> tuple[object, ...]:
        started = e.started_s if e.started_s is not None else math.inf
        return (e.worker is None, e.worker or 0, started, e.finished_s or 0.0, e.order)

    return sorted(timeline.entries, key=key)


def row_label(e: TimelineEntry) -> str:
    where = f"w{e.worker}" if e.worker is not None else "—"
    return f"{e.plugin_id}  [{where}]"


def outcome(e: TimelineEntry) -> str:
    """The status word drawn beside a bar."""
    if e.preflight:
        return f"na (preflight) {e.reason_code or ''}".rstrip()
    if e.cached:
        return f"{e.status} (cache hit)"
    if e.status in ("ok", "na", "failed") and not e.ran:
        return f"{e.status} (not run) {e.reason_code or ''}".rstrip()
    if e.status == "failed":
        return f"FAILED {e.reason_code or ''}".rstrip()
    return e.status


def ticks(end: float, most: int = 7) -> list[float]:
    """Round tick positions (1, 2 or 5 times a power of ten) from 0 to ``end``."""
    raw = end / most
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(int(end / step + 1e-9) + 1)]


def _n(x: float) -> str:
    """A coordinate to a hundredth of a point, without trailing zeros."""
    text = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _seconds(x: float) -> str:
    return f"{x:g}"


def _patterns(key: str) -> Iterator[str]:
    lines = {
        "na": '<path d="M0,4L4,0" stroke="#555" stroke-width="0.6"/>',
        "failed": '<path d="M0,4L4,0M0,0L4,4" stroke="#333" stroke-width="0.6"/>',
        "running": '<circle cx="2" cy="2" r="0.6" fill="#333"/>',
    }
    for name, body in lines.items():
        yield (
            f'<pattern id="{key}-{name}" width="4" height="4" '
            f'patternUnits="userSpaceOnUse">{body}</pattern>'
        )


def timeline_svg(timeline: RunTimeline) -> str:
    """The run's Gantt chart as an inline ``<svg>`` element."""
    rows = timeline_rows(timeline)
    key = safe_id(f"timeline-{timeline.run_id}")
    end = max(timeline.elapsed_s, 1e-3)
    n = len(rows)
    labels = [row_label(e) for e in rows]
    left = min(0.2 * PT + CHAR * max((len(x) for x in labels), default=0), 0.45 * WIDTH)
    height = TOP + ROW * max(n, 1) + BOTTOM
    plot_w = WIDTH - left - RIGHT
    span = end * 1.18  # room after the last bar for its status word

    def x(seconds: float) -> float:
        return left + plot_w * seconds / span

    def y(i: int) -> float:  # the middle of row i
        return TOP + ROW * (i + 0.5)

    bottom = TOP + ROW * max(n, 1)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_n(WIDTH)} {_n(height)}" '
        f'role="img" aria-label="{escape(f"Run timeline of {timeline.run_id}")}" '
        f'style="{FONT}">',
        f"<defs>{''.join(_patterns(key))}</defs>",
        f'<rect width="{_n(WIDTH)}" height="{_n(height)}" fill="white"/>',
        f'<text x="{_n(0.01 * WIDTH)}" y="{_n(0.06 * PT + 9.5)}" font-size="9.5" '
        f'font-weight="bold">{escape(f"Run timeline: {n} plugins on {timeline.workers} worker(s)")}'
        "</text>",
    ]
    out.extend(_legend(rows, key))
    grid, tick_text = [], []
    for t in ticks(end):
        gx = _n(x(t))
        grid.append(f"M{gx},{_n(TOP)}V{_n(bottom)}")
        tick_text.append(
            f'<text x="{gx}" y="{_n(bottom + 11)}" text-anchor="middle">{_seconds(t)}</text>'
        )
    out.append(f'<path d="{"".join(grid)}" stroke="#dddddd" stroke-width="0.5"/>')
    out.append(
        f'<path d="M{_n(left)},{_n(TOP)}V{_n(bottom)}H{_n(WIDTH - RIGHT)}" '
        'stroke="black" stroke-width="0.8" fill="none"/>'
    )
    out.append(f'<g font-size="8.5">{"".join(tick_text)}</g>')
    out.append(
        f'<text x="{_n(left + plot_w / 2)}" y="{_n(bottom + 25)}" font-size="8.5" '
        'text-anchor="middle">seconds since the run started</text>'
    )
    waits, body, words = [], [], []
    for i, (e, label) in enumerate(zip(rows, labels, strict=True)):
        cy = y(i)
        colour = LANE_COLOURS.get(e.lane, GREY)
        failed = e.status == "failed"
        words.append(
            f'<text x="{_n(left - 3)}" y="{_n(cy)}" text-anchor="end" '
            f'dominant-baseline="central">{escape(label)}</text>'
        )
        if e.dispatched_s is not None:
            waited = e.started_s if e.started_s is not None else e.finished_s
            until = end if waited is None else waited
            waits.append(f"M{_n(x(e.dispatched_s))},{_n(cy)}H{_n(x(until))}")
        tip = escape(f"{e.plugin_id}: {outcome(e)}, {e.duration_s:.3f} s")
        if e.started_s is not None:
            stop = e.finished_s if e.finished_s is not None else end
            x0, x1 = x(e.started_s), x(max(stop, e.started_s + end / 2000))
            hatch = e.status if e.status in HATCHED else None
            geometry = (
                f'x="{_n(x0)}" y="{_n(cy - BAR / 2)}" width="{_n(x1 - x0)}" height="{_n(BAR)}"'
            )
            shape = (
                f'<rect {geometry} fill="{colour}" fill-opacity="{0.45 if hatch else 0.95}" '
                f'stroke="{VERMILION if failed else colour}" stroke-width="0.8"/>'
            )
            if hatch:
                shape += f'<rect {geometry} fill="url(#{key}-{hatch})"/>'
            body.append(f'<g id="tl-bar-{safe_id(e.plugin_id)}"><title>{tip}</title>{shape}</g>')
            at = stop
        else:
            at = e.finished_s if e.finished_s is not None else 0.0
            if e.finished_s is not None:
                mx, r = x(at), 2.5
                body.append(
                    f'<path id="tl-mark-{safe_id(e.plugin_id)}" '
                    f'd="M{_n(mx)},{_n(cy - r)}l{r},{r}l-{r},{r}l-{r},-{r}Z" fill="{colour}" '
                    f'stroke="black" stroke-width="0.5"><title>{tip}</title></path>'
                )
        words.append(
            f'<text x="{_n(x(at) + plot_w * 0.006 / 1.18)}" y="{_n(cy)}" '
            f'dominant-baseline="central"{f" fill={VERMILION!r}" if failed else ""}>'
            f"{escape(outcome(e))}</text>"
        )
    if waits:
        out.append(
            f'<path d="{"".join(waits)}" stroke="{GREY}" stroke-width="1" '
            'stroke-dasharray="1,1.65"/>'
        )
    out.extend(body)
    out.append(f'<g font-size="{SMALL}" fill="#333333">{"".join(words)}</g>')
    out.append("</svg>")
    return "".join(out) + "\n"


def _legend(rows: list[TimelineEntry], key: str) -> Iterator[str]:
    """A row of swatches under the title: each lane drawn, then na and failed."""
    items = [
        (f'fill="{LANE_COLOURS.get(lane, GREY)}"', f"{lane} lane")
        for lane in sorted({e.lane for e in rows})
    ]
    items += [
        (f'fill="url(#{key}-na)" stroke="{GREY}" stroke-width="0.8"', "na"),
        (f'fill="url(#{key}-failed)" stroke="{VERMILION}" stroke-width="0.8"', "failed"),
    ]
    at, base = 0.01 * WIDTH, TOP - 8
    yield '<g font-size="7">'
    for style, text in items:
        yield f'<rect x="{_n(at)}" y="{_n(base - 6)}" width="11.5" height="6" {style}/>'
        yield f'<text x="{_n(at + 15)}" y="{_n(base)}">{escape(text)}</text>'
        at += 15 + 0.55 * 7 * len(text) + 12
    yield "</g>"
