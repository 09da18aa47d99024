"""The run timeline SVG: one shape per plugin with its id, the outcome in words,
round axis ticks, well-formed XML, and the same bytes for the same timeline."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from contracts.charts import RunTimeline, TimelineEntry
from engine._render.charts import VERMILION
from engine._render.timeline import ticks, timeline_svg

SVG = "{http://www.w3.org/2000/svg}"


def timeline(entries: tuple[TimelineEntry, ...], elapsed: float = 2.0) -> RunTimeline:
    return RunTimeline(run_id="r<1>", status="failed", mode="two_lane_strict", seed=3,
                       dataset="x.csv", rows=10, started_wall=1.7e9, elapsed_s=elapsed,
                       events=40, workers=2, executor="process", entries=entries)  # fmt: skip


ENTRIES = (
    TimelineEntry(plugin_id="fast", lane="decision", order=0, status="ok", worker=0,
                  dispatched_s=0.1, started_s=0.2, finished_s=0.5, duration_s=0.3, ran=True),
    TimelineEntry(plugin_id="broken&co", lane="explanation", order=1, status="failed",
                  reason_code="TIMEOUT", worker=1, dispatched_s=0.0, started_s=0.1,
                  finished_s=1.9, duration_s=1.8, ran=True),
    TimelineEntry(plugin_id="hit", lane="decision", order=2, status="ok", finished_s=0.05,
                  cached=True),
    TimelineEntry(plugin_id="skipped", lane="explanation", order=3, status="na",
                  reason_code="NOT_APPLICABLE", finished_s=0.01, preflight=True),
)  # fmt: skip


def test_every_plugin_is_drawn_with_its_id_and_outcome() -> None:
    svg = timeline_svg(timeline(ENTRIES))
    root = ET.fromstring(svg)  # well-formed, names escaped
    ids = sorted(el.get("id", "") for el in root.iter() if el.get("id", "").startswith("tl-"))
    assert ids == ["tl-bar-broken_co", "tl-bar-fast", "tl-mark-hit", "tl-mark-skipped"]
    words = ["".join(el.itertext()) for el in root.iter(f"{SVG}text")]
    expected = [
        *("ok", "FAILED TIMEOUT", "ok (cache hit)", "na (preflight) NOT_APPLICABLE"),
        *("broken&co  [w1]", "hit  [—]", "Run timeline: 4 plugins on 2 worker(s)"),
    ]
    assert [w for w in expected if w not in words] == []
    failed = next(el for el in root.iter(f"{SVG}text") if el.text == "FAILED TIMEOUT")
    assert failed.get("fill") == VERMILION  # and the word says it: colour is not the only cue
    assert root.get("aria-label") == "Run timeline of r<1>"
    tips = {"".join(el.itertext()) for el in root.iter(f"{SVG}title")}
    assert "fast: ok, 0.300 s" in tips


def test_rows_are_grouped_by_worker_then_start_time() -> None:
    root = ET.fromstring(timeline_svg(timeline(ENTRIES)))
    labels = [el.text for el in root.iter(f"{SVG}text") if el.text and "[" in el.text]
    assert labels == ["fast  [w0]", "broken&co  [w1]", "skipped  [—]", "hit  [—]"]


def test_the_same_timeline_gives_the_same_bytes() -> None:
    assert timeline_svg(timeline(ENTRIES)) == timeline_svg(timeline(ENTRIES))
    assert timeline_svg(timeline(ENTRIES)) != timeline_svg(timeline(ENTRIES, elapsed=3.0))


@pytest.mark.parametrize(
    ("end", "expected"),
    [
        (4.7, [0, 1, 2, 3, 4]),
        (2.0, [0, 0.5, 1.0, 1.5, 2.0]),
        (0.03, [0, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03]),
        (130.0, [0, 20, 40, 60, 80, 100, 120]),
    ],
)
def test_axis_ticks_are_round_and_cover_the_run(end: float, expected: list[float]) -> None:
    assert ticks(end) == pytest.approx(expected)


def test_an_empty_run_draws_an_empty_chart() -> None:
    root = ET.fromstring(timeline_svg(timeline((), elapsed=0.0)))
    assert not [el for el in root.iter() if el.get("id", "").startswith("tl-")]
