"""report.html as a pure function of a Report and a RunTimeline (no run needed)."""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import msgspec
import pytest

from contracts import Evidence, Finding, Impact, PluginReport, Report, Summary
from contracts.charts import (
    Histogram,
    Line,
    Marker,
    QuantileGroup,
    Quantiles,
    RunTimeline,
    Series,
    TimelineEntry,
)
from contracts.report import GATE_NAMES, Offender, PreflightEntry, QualityGates
from engine import build_report, fold, read_log, render_markdown, render_report_html
from engine._render import render_html
from engine._render.pages import fmt

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


class _Text(HTMLParser):
    """The text a person can read (scripts and styles left out), whitespace folded."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.skip += 1
        self.ids += [v for k, v in attrs if k == "id" and v]

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.skip -= 1

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def page_text(page: str) -> tuple[str, list[str]]:
    parser = _Text()
    parser.feed(page)
    return re.sub(r"\s+", " ", " ".join(parser.parts)), parser.ids


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def finding(title: str, **kw: object) -> Finding:
    return Finding(kind="k", title=title, target=title, id=title.replace(" ", "-"), **kw)  # type: ignore[arg-type]


def modeled(value: float, unit: str) -> dict[str, object]:
    return {
        "measurement": "modeled",
        "impact": Impact(value=value, unit=unit, description="d", assumptions=("a",)),
    }


DAILY = Series(
    title="Daily median wait of close_gl",
    y_label="wait (s)",
    x=tuple(f"2024-01-{d:02d}" for d in range(1, 31)),
    lines=(Line(label="median", values=tuple(float(d) for d in range(30))),),
    markers=(Marker(at="2024-01-15", label="change"),),
)


def synthetic(plugins: int = 4, charts: tuple[object, ...] = ()) -> tuple[Report, RunTimeline]:
    """A report whose answer is known by construction: five decision findings in three
    units, an explanation supporting two decisions, an na, a failure, gates broken."""
    decide = PluginReport(
        id="decide",
        version="1",
        lane="decision",
        status="ok",
        findings=(
            finding("small hours", severity="low", **modeled(5.0, "hours/month")),
            finding("large hours", severity="low", **modeled(50.0, "hours/month")),
            # A larger number in another unit: never ranked against hours a month.
            finding("total hours", severity="critical", **modeled(9000.0, "hours")),
            finding("rows high", severity="high", confidence=0.6, **modeled(7.0, "rows")),
            finding(
                "measured high",
                severity="high",
                confidence=0.9,
                what="W",
                why="Y",
                recommendation="R",
                evidence=Evidence(metrics={"p_value": 0.001, "ratio": 8.12345}, query="SELECT 1"),
                charts=(DAILY, *charts),  # type: ignore[arg-type]
            ),
        ),
    )
    other = PluginReport(id="other", version="1", lane="decision", status="na",
                         reason_code="NO_SIGNIFICANT_EFFECT", explanation="checked 3 things",
                         metrics={"checked": ["a", "b"]})  # fmt: skip
    explain = PluginReport(
        id="explain",
        version="1",
        lane="explanation",
        status="ok",
        downstream=("decide", "other"),
        findings=(finding("profile of x", what="x is fine"),),
    )
    broken = PluginReport(id="broken", version="2", lane="explanation", status="failed",
                          reason_code="PLUGIN_ERROR", explanation="boom <b>", error_type="KeyError",
                          traceback="Traceback ...", ran=True)  # fmt: skip
    extra = [
        PluginReport(id=f"filler_{i}", version="1", lane="explanation", status="ok",
                     downstream=("decide",), findings=tuple(
                         finding(f"filler {i} {j}", charts=(DAILY, *charts)) for j in range(3)))  # type: ignore[arg-type]
        for i in range(max(plugins - 4, 0))
    ]  # fmt: skip
    members = (decide, other, explain, broken, *extra)
    summary = Summary(
        plugins=len(members),
        ok=len(members) - 2,
        failed=1,
        na=1,
        decisions=5,
        explanations=1,
        findings=6,
        duration_s=12.5,
        failed_plugins=("broken",),
        gates=QualityGates(unexplained_plugin_count=1),
        gates_passed=False,
        offenders=(Offender(gate="unexplained_plugin_count", plugin_id="broken", detail="why?"),),
    )
    report = Report(
        run_id="r1",
        status="failed",
        mode="two_lane_strict",
        seed=3,
        plan_hash="ab" * 32,
        dataset_fingerprint="cd" * 32,
        plugins=members,
        summary=summary,
        preflight=(
            PreflightEntry(
                plugin_id="other",
                status="na",
                reason_code="NOT_APPLICABLE",
                explanation="no amount column",
            ),
        ),
    )
    entries = tuple(
        TimelineEntry(plugin_id=p.id, lane=p.lane, order=i, status="ok", worker=i % 2,
                      dispatched_s=0.1 * i, started_s=0.2 * i, finished_s=0.2 * i + 0.1, ran=True)
        if p.id != "other"
        else TimelineEntry(plugin_id=p.id, lane=p.lane, order=i, status="na", finished_s=0.01,
                           preflight=True)
        for i, p in enumerate(members)
    )  # fmt: skip
    timeline = RunTimeline(run_id="r1", status="failed", mode="two_lane_strict", seed=3,
                           dataset="x.csv", rows=10, started_wall=1.7e9, elapsed_s=2.0, events=40,
                           workers=2, executor="process", entries=entries)  # fmt: skip
    return report, timeline


def test_actions_rank_hours_a_month_first_and_never_across_units() -> None:
    report, timeline = synthetic()
    page = render_html(report, timeline, {})
    text, _ = page_text(page)
    order = [text.index(t) for t in ("large hours", "small hours", "total hours")]
    assert order == sorted(order)
    # Without hours a month: severity (critical > high), then confidence (0.9 > 0.6).
    rest = [text.index(t) for t in ("total hours", "measured high", "rows high")]
    assert rest == sorted(rest)
    head, tail = text.split("Further actions", 1)
    assert "large hours" in head and "small hours" in head and "total hours" in tail
    assert "MODELED impact: 50 hours/month" in text and "MEASURED finding" in text


def markdown_facts(report: Report) -> list[str]:
    """Every value ``report.md`` shows, read from the report (not from either page)."""
    s = report.summary
    facts = [report.run_id, report.status, report.mode, str(report.seed)]
    facts += [report.plan_hash[:12], report.dataset_fingerprint[:12]]
    facts.append(f"{s.plugins} plugins: {s.ok} ok, {s.na} na, {s.failed} failed")
    facts.append(f"{s.decisions} decision findings, {s.explanations} explanation findings")
    for p in report.plugins:
        facts += [p.id, p.status]
        if p.status in ("na", "skipped", "failed"):
            facts += [p.reason_code or "", p.explanation, p.error_type]
        facts += list(p.downstream)
        for f in p.findings:
            facts += [f.title, f.what]
            if p.lane != "decision":
                continue
            facts += [f.severity, f.kind, f"confidence {f.confidence:.2f}", f.why]
            facts += [f.recommendation, f.evidence.query]
            facts += [f"{k}" for k in f.evidence.metrics]
            facts += [fmt(v) for v in f.evidence.metrics.values()]
            if f.impact is not None:
                facts += [f.measurement.upper(), f"{fmt(f.impact.value)} {f.impact.unit}"]
                facts += [f.impact.description, *(f"assumes: {a}" for a in f.impact.assumptions)]
    if s.gates is not None:
        facts.append("passed" if s.gates_passed else "FAILED")
        facts += [n for n in GATE_NAMES] + [str(getattr(s.gates, n)) for n in GATE_NAMES]
    for o in s.offenders:
        facts += [o.plugin_id, o.gate, o.detail]
    for e in report.preflight:
        facts += [e.plugin_id, e.status, e.reason_code, e.explanation]
    return [_norm(f) for f in facts if f.strip()]


def test_every_value_report_md_shows_is_in_the_html() -> None:
    report, timeline = synthetic()
    md = render_markdown(report)
    text, _ = page_text(render_html(report, timeline, {}))
    facts = markdown_facts(report)
    assert len(facts) > 60
    # The list is report.md's: every fact is in the Markdown too ...
    assert [f for f in facts if f not in _norm(md) and f.upper() != f] == []
    # ... and in the page.
    assert [f for f in facts if f not in text] == []


def test_every_fact_of_a_recorded_run_is_in_the_html() -> None:
    state = fold(read_log(FIXTURES / "v2" / "events.jsonl"))
    report = build_report(state)
    text, ids = page_text(render_report_html(state))
    assert [f for f in markdown_facts(report) if f not in text] == []
    for p in report.plugins:
        assert f"plugin-{p.id}" in ids
        assert p.id in text and p.status in text
        for f in p.findings:
            assert f.title in text
    assert len(ids) == len(set(ids)), "duplicate ids"


def test_explanations_sit_under_the_decisions_they_support_once() -> None:
    report, timeline = synthetic()
    page = render_html(report, timeline, {})
    text, ids = page_text(page)
    assert ids.count("expl-explain") == 1
    first, second = text.index("Behind decide"), text.index("Behind other")
    assert first < text.index("x is fine") < second
    assert "Also: explain" in text[second:]


def test_accessible_words_anchors_and_print_styles() -> None:
    report, timeline = synthetic()
    page = render_html(report, timeline, {})
    text, ids = page_text(page)
    for p in report.plugins:
        assert f"plugin-{p.id}" in ids
    for word in ("FAILED", "breached", "preflight", "cache hit", "KeyError", "Traceback ..."):
        assert word in text or word in page
    assert "boom <b>" in text and "boom <b>" not in page  # escaped, shown as text
    assert "@media print" in page and 'aria-label="Contents"' in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "no external reference"
    assert len(ids) == len(set(ids)), "duplicate ids"


def test_the_same_inputs_give_the_same_bytes_in_another_process(tmp_path: Path) -> None:
    report, timeline = synthetic()
    page = render_html(report, timeline, {})
    assert render_html(report, timeline, {}) == page
    (tmp_path / "in.json").write_bytes(msgspec.json.encode([report, timeline]))
    code = (
        "import sys, msgspec\n"
        "from contracts import Report\n"
        "from contracts.charts import RunTimeline\n"
        "from engine._render import render_html\n"
        f"r, t = msgspec.json.decode(open({str(tmp_path / 'in.json')!r}, 'rb').read(),"
        " type=tuple[Report, RunTimeline])\n"
        "sys.stdout.write(render_html(r, t, {}))\n"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert fresh == page


@pytest.mark.slow  # draws 238 charts
def test_a_thirty_plugin_report_with_charts_everywhere_stays_under_5_mb() -> None:
    many = Quantiles(
        title="Wait by process",
        value_label="s",
        quantiles=("p50", "p95", "p99"),
        groups=tuple(QuantileGroup(label=f"p{i}", values=(1.0, 2.0, 3.0)) for i in range(40)),
    )
    hist = Histogram(title="h", x_label="x", edges=tuple(float(i) for i in range(51)),
                     counts=tuple(range(50)))  # fmt: skip
    report, timeline = synthetic(plugins=30, charts=(many, hist))
    page = render_html(report, timeline, {})
    figures = page.count('<figure class="chart')
    assert figures == 26 * 3 * 3 + 3 + 1  # fillers' findings x charts, the card, the timeline
    assert len(page.encode()) < 5 * 1024 * 1024, len(page.encode())


@pytest.mark.parametrize("mode", ["legacy"])
def test_a_legacy_report_says_so_and_uses_manifest_lanes(mode: str) -> None:
    report, timeline = synthetic()
    legacy = msgspec.structs.replace(
        report,
        mode=mode,
        plugins=tuple(msgspec.structs.replace(p, lane="legacy") for p in report.plugins),
    )
    lanes = {"decide": "decision", "other": "decision", "explain": "explanation"}
    lanes |= {"broken": "explanation"}
    text, _ = page_text(render_html(legacy, timeline, lanes))
    assert "Legacy mode (pre-contract baseline)" in text
    assert "Behind decide" in text
    assert text.index("large hours") < text.index("The diagnostics behind the decisions")


def test_the_plugin_table_rows_are_escaped_and_complete() -> None:
    """Every column of the outcome table, escaping included (the rows are written in
    Python, not in the template: this is the markup the template produced)."""
    from contracts.charts import TimelineEntry
    from engine._render.pages import plugin_rows

    f = Finding(kind="k", severity="low", confidence=0.5, title="t", target="x")
    plugins = [
        PluginReport(
            id="a_plugin", version="1.0", lane="decision", status="failed",
            reason_code="PLUGIN_ERROR", error_type="ValueError",
            explanation="bad <input> & 'quotes'", downstream_affected=("b", "c"),
            duration_s=1.23456,
        ),
        PluginReport(
            id="b", version="2", lane="explanation", status="na", reason_code="NOT_APPLICABLE",
            explanation="no", metrics={"checked": ["x<y", 3]}, ran=False, preflight=True,
        ),
        PluginReport(id="c", version="3", lane="decision", status="ok", findings=(f, f),
                     duration_s=0.5),
    ]  # fmt: skip
    entries = {
        "a_plugin": TimelineEntry(
            plugin_id="a_plugin", lane="decision", order=0, status="failed", worker=1
        ),
        "c": TimelineEntry(plugin_id="c", lane="decision", order=2, status="ok", cached=True),
    }
    assert str(plugin_rows(plugins, entries)) == (
        '<tr id="plugin-a_plugin" data-plugin-id="a_plugin" data-status="failed">\n'
        '<th scope="row"><a href="#plugin-a_plugin">a_plugin</a> <span class="meta">v1.0</span>'
        "</th>\n"
        '<td class="lane-decision">decision</td>\n'
        '<td><span class="badge status-failed plugin-status">failed</span></td>\n'
        "<td><code>PLUGIN_ERROR</code> ValueError: bad &lt;input&gt; &amp; &#39;quotes&#39;"
        '<br><span class="meta">affects: b, c</span></td>\n'
        '<td class="num">0</td>\n<td class="num">1.235</td>\n<td class="num">1</td>\n'
        "<td></td>\n</tr>\n"
        '<tr id="plugin-b" data-plugin-id="b" data-status="na">\n'
        '<th scope="row"><a href="#plugin-b">b</a> <span class="meta">v2</span></th>\n'
        '<td class="lane-explanation">explanation</td>\n'
        '<td><span class="badge status-na plugin-status">na</span></td>\n'
        "<td><code>NOT_APPLICABLE</code>: no<details><summary>checked</summary><ul>"
        "<li>x&lt;y</li><li>3</li></ul></details></td>\n"
        '<td class="num">0</td>\n<td class="num">0.000</td>\n<td class="num"></td>\n'
        "<td>preflight not run</td>\n</tr>\n"
        '<tr id="plugin-c" data-plugin-id="c" data-status="ok">\n'
        '<th scope="row"><a href="#plugin-c">c</a> <span class="meta">v3</span></th>\n'
        '<td class="lane-decision">decision</td>\n'
        '<td><span class="badge status-ok plugin-status">ok</span></td>\n'
        "<td>2 finding(s)</td>\n"
        '<td class="num">2</td>\n<td class="num">0.500</td>\n<td class="num"></td>\n'
        "<td>cache hit </td>\n</tr>\n"
    )
