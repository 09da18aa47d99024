"""Rendering for people: ``report.html``, the run diff page and the pages of
``engine serve``.

Pure functions of contracts-typed inputs (a :class:`~contracts.Report`, a
:class:`~contracts.charts.RunTimeline`, a :class:`~contracts.diff.RunDiff`): this
package imports ``contracts`` and its plotting and template libraries, never the
kernel, so the same inputs give the same bytes wherever they come from (a live run,
a replayed log).
"""

from .charts import ChartCache, chart_svg, draw_charts, safe_id
from .pages import (
    action_key,
    explanation_charts,
    lane_progress,
    monthly_hours,
    render_diff_html,
    render_html,
    render_live_page,
    render_run_list,
    render_timeline_svg,
    timeline_table,
)

__all__ = [
    "ChartCache",
    "action_key",
    "chart_svg",
    "draw_charts",
    "explanation_charts",
    "lane_progress",
    "monthly_hours",
    "render_diff_html",
    "render_html",
    "render_live_page",
    "render_run_list",
    "render_timeline_svg",
    "safe_id",
    "timeline_table",
]
