"""The SDK's helpers against values known by construction: results and finding ids,
canonical hashing, frozen containers, SQL helpers run in DuckDB, chart rules, the
schema files, and the statistics and log helpers the plugins share (series, robust
scales, group effects, units, event and case logs)."""

from __future__ import annotations

import hashlib
import math
import pickle
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from contracts import (
    ColumnInfo,
    DatasetInfo,
    Failed,
    Finding,
    Histogram,
    Na,
    canonical_json,
    chart_problem,
    failed,
    finding_id,
    na,
    ok,
    stable_hash,
)
from contracts._base import FrozenDict, FrozenList, freeze
from contracts.cases import ORDER, multi_step, multi_step_or_na, roles, steps_cte
from contracts.charts import (
    MAX_CHART_VALUES,
    Bars,
    BarSeries,
    HeatMap,
    Line,
    Marker,
    QuantileGroup,
    Quantiles,
    Series,
    first_digit_bars,
    histogram_from_rows,
)
from contracts.effects import GroupEffect, is_large, keep_ppm, kruskal_effect, single_group_a
from contracts.events import GENESIS, PreflightFailed
from contracts.logs import EVENT_LOG_TEXT, event_log_na, failure_values, is_event_log
from contracts.report import GATE_NAMES, QualityGates
from contracts.results import Ok
from contracts.robust import (
    judged_scale,
    median_mad,
    number_expr,
    read_into,
    scaled_expr,
    unscaled,
)
from contracts.series import (
    best_step_sse,
    binary_segmentation,
    dense_daily,
    evaluate_cut,
    linear_sse,
    mann_kendall,
    seasonal_strength,
    shift_cuts,
    sse,
    weekly_rhythm,
)
from contracts.sql import histogram_sql, quote_ident, string_literal, timestamp_expr
from contracts.units import DAYS_PER_MONTH, observed_months, p_text


def test_result_helpers_keep_every_field() -> None:
    assert failed("PLUGIN_ERROR", "m", "E", "tb") == Failed(
        reason_code="PLUGIN_ERROR", message="m", error_type="E", traceback="tb"
    )
    assert failed("PLUGIN_ERROR", "m") == Failed(reason_code="PLUGIN_ERROR", message="m")
    assert na("NO_SIGNIFICANT_EFFECT", "x", checked=["a", "b"], metrics={"n": 1}) == Na(
        reason_code="NO_SIGNIFICANT_EFFECT", explanation="x", checked=("a", "b"), metrics={"n": 1}
    )


def test_the_finding_id_and_stamp() -> None:
    expected = hashlib.sha256(b"plug\x1fkind\x1ftarget").hexdigest()[:16]
    assert finding_id("plug", "kind", "target") == expected
    stamped = Finding(kind="kind", title="t", target="target").stamped("plug")
    assert (stamped.plugin_id, stamped.id, stamped.kind, stamped.target) == (
        "plug",
        expected,
        "kind",
        "target",
    )


def test_canonical_json_and_stable_hash() -> None:
    assert canonical_json({"b": [1, 2.5], "a": None}) == b'{"a":null,"b":[1,2.5]}'
    assert stable_hash({"b": 1, "a": 2}) == hashlib.sha256(b'{"a":2,"b":1}').hexdigest()
    assert stable_hash({"a": 2, "b": 1}) == stable_hash({"b": 1, "a": 2})


def test_frozen_containers_refuse_every_change_and_survive_pickling() -> None:
    frozen = freeze({"a": [1, {"b": 2}], "c": (3, [4])})
    assert frozen == {"a": [1, {"b": 2}], "c": (3, [4])}
    assert type(frozen) is FrozenDict and type(frozen["a"]) is FrozenList
    assert type(frozen["a"][1]) is FrozenDict and type(frozen["c"][1]) is FrozenList
    for change in (
        lambda: frozen.__setitem__("x", 1),
        lambda: frozen.pop("a"),
        lambda: frozen["a"].append(5),
        lambda: frozen["a"].sort(),
    ):
        with pytest.raises(TypeError, match=r"^an event's data cannot be changed$"):
            change()
    again = pickle.loads(pickle.dumps(frozen))
    assert again == frozen and type(again) is FrozenDict and type(again["a"]) is FrozenList


def test_an_event_freezes_the_structs_it_holds() -> None:
    metrics = {"a": [1, {"b": 2}], "n": 3}
    event = PreflightFailed(
        seq=0,
        prev=GENESIS,
        wall=0.0,
        mono=0.0,
        plugin_id="p",
        lane="explanation",
        result=na("NOT_APPLICABLE", "x", metrics=metrics),
    )
    held = event.result.metrics  # type: ignore[union-attr]
    assert held == metrics and type(held) is FrozenDict and type(held["a"]) is FrozenList
    assert type(held["a"][1]) is FrozenDict and held["n"] == 3
    assert event.result.reason_code == "NOT_APPLICABLE"  # atomic fields stay as they are
    metrics["a"].append(4)
    assert held["a"] == [1, {"b": 2}]  # a copy: the caller's dict is not the event's


def test_quality_gates_total_every_count() -> None:
    counts = {name: i + 1 for i, name in enumerate(GATE_NAMES)}
    assert QualityGates(**counts).total() == sum(range(1, len(GATE_NAMES) + 1))
    assert QualityGates().total() == 0


def test_ok_keeps_every_field() -> None:
    finding = Finding(kind="k", title="t")
    assert ok([finding], {"n": 1}, ["a.png"]) == Ok(
        findings=(finding,), metrics={"n": 1}, artifacts=("a.png",)
    )
    assert ok() == Ok()


def test_schema_view_is_names_types_and_roles() -> None:
    info = DatasetInfo(
        source="s",
        fingerprint="f",
        rows=1,
        columns=(
            ColumnInfo(name="a", dtype="DOUBLE", role="numeric", null_count=3),
            ColumnInfo(name="b", dtype="VARCHAR", role="categorical"),
        ),
    )
    assert info.schema_view() == (("a", "DOUBLE", "numeric"), ("b", "VARCHAR", "categorical"))


def test_sql_quoting_and_the_timestamp_rule() -> None:
    assert quote_ident('we"ird') == '"we""ird"'
    assert string_literal("it's") == "'it''s'"
    assert timestamp_expr("t", "TIMESTAMP WITH TIME ZONE") == '"t"'
    assert timestamp_expr("t", "timestamptz") == '"t"'
    assert timestamp_expr("t", "TIMESTAMP") == 'TRY_CAST("t" AS TIMESTAMP)'
    assert timestamp_expr("t", "VARCHAR_TZ") == 'TRY_CAST("t" AS TIMESTAMP)'  # not a timestamp


@pytest.mark.parametrize("log", [False, True])
def test_histogram_sql_bins_known_values(log: bool) -> None:
    con = duckdb.connect()
    # 1..10 and out-of-range values on both sides; with log, non-positive values drop.
    con.execute(
        "CREATE TABLE data AS SELECT * FROM (VALUES (-1.0), (0.5), (1.0), (2.0), "
        "(3.0), (4.0), (5.0), (6.0), (7.0), (8.0), (9.0), (10.0), (20.0), (NULL)) t(v)"
    )
    rows = [
        {"bin": b, "n": n}
        for b, n in con.execute(histogram_sql("v", 1.0, 10.0, 3, log=log)).fetchall()
    ]
    hist = histogram_from_rows("h", "v", rows, 1.0, 10.0, 3, log=log)
    if log:  # edges 1, 10^(1/3), 10^(2/3), 10: 1,2 | 3,4 | 5..10; below: 0.5; above: 20
        assert rows == [
            {"bin": -1, "n": 1},
            {"bin": 0, "n": 2},
            {"bin": 1, "n": 2},
            {"bin": 2, "n": 6},
            {"bin": 3, "n": 1},
        ]
        assert hist.edges == pytest.approx((1.0, 10 ** (1 / 3), 10 ** (2 / 3), 10.0))
        assert (hist.counts, hist.below, hist.above, hist.log_x) == ((2, 2, 6), 1, 1, True)
    else:  # edges 1, 4, 7, 10: 1,2,3 | 4,5,6 | 7..10 (10 in the last bin)
        assert rows == [
            {"bin": -1, "n": 2},
            {"bin": 0, "n": 3},
            {"bin": 1, "n": 3},
            {"bin": 2, "n": 4},
            {"bin": 3, "n": 1},
        ]
        assert hist.edges == (1.0, 4.0, 7.0, 10.0)
        assert (hist.counts, hist.below, hist.above, hist.log_x) == ((3, 3, 4), 2, 1, False)
    assert chart_problem(hist) is None


def test_histogram_rows_add_up_and_the_defaults() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE data AS SELECT * FROM (VALUES (0.0), (1.5), (4.0), (9.0)) t(v)")
    assert con.execute(histogram_sql("v", 1.0, 4.0, 3)).fetchall() == [
        (-1, 1),
        (0, 1),
        (2, 1),
        (3, 1),
    ]
    marker = Marker(at=2.0, label="m")
    rows = [
        {"bin": -2, "n": 1},
        {"bin": -1, "n": 2},
        {"bin": 0, "n": 3},
        {"bin": 0, "n": 4},
        {"bin": 2, "n": 5},
        {"bin": 3, "n": 6},
    ]
    hist = histogram_from_rows("h", "x", rows, 2.0, 8.0, 2, markers=(marker,))
    assert (hist.counts, hist.below, hist.above) == ((7, 0), 3, 11)
    assert (hist.x_label, hist.log_x, hist.markers, hist.edges) == (
        "x",
        False,
        (marker,),
        (2.0, 5.0, 8.0),
    )
    log = histogram_from_rows("h", "x", [], 2.0, 8.0, 2, log=True)
    assert log.edges == pytest.approx((2.0, 4.0, 8.0)) and log.counts == (0, 0)


@pytest.mark.parametrize(
    "chart",
    [
        Series(
            title="s",
            y_label="y",
            x=tuple(f"{i:05d}" for i in range(MAX_CHART_VALUES + 1)),
            lines=(),
        ),
        Quantiles(
            title="q",
            value_label="v",
            quantiles=(),
            groups=(QuantileGroup(label="g", values=()),) * (MAX_CHART_VALUES + 1),
        ),
        Bars(
            title="b",
            y_label="y",
            x_label="x",
            categories=("c",) * (MAX_CHART_VALUES + 1),
            series=(),
        ),
    ],
)
def test_a_chart_without_lines_still_counts_its_values(chart: object) -> None:
    assert chart_problem(chart) == (  # type: ignore[arg-type]
        f"{MAX_CHART_VALUES + 1} values; a chart holds at most {MAX_CHART_VALUES}"
    )


def test_first_digit_bars_beside_benford() -> None:
    bars = first_digit_bars("digits", [3, 1, 0, 0, 0, 0, 0, 0, 0])
    assert bars.categories == tuple("123456789")
    assert (bars.y_label, bars.x_label) == ("share of values", "first significant digit")
    assert [s.label for s in bars.series] == ["observed", "Benford"]
    assert bars.series[0].values == (0.75, 0.25, 0, 0, 0, 0, 0, 0, 0)
    assert bars.series[1].values == tuple(math.log10(1 + 1 / d) for d in range(1, 10))
    assert first_digit_bars("none", [0] * 9).series[0].values == (0.0,) * 9
    assert chart_problem(bars) is None


H = {"title": "h", "x_label": "x"}
S = {"title": "s", "y_label": "y"}
Q = {"title": "q", "value_label": "v"}
B = {"title": "b", "y_label": "y", "x_label": "x"}


@pytest.mark.parametrize(
    ("chart", "problem"),
    [
        (Histogram(**H, edges=(0.0, 1.0), counts=(1,)), None),
        (
            Histogram(**{**H, "title": " "}, edges=(0.0, 1.0), counts=(1,)),
            "title must not be blank",
        ),
        (Histogram(**H, edges=(0.0,), counts=()), "1 edges for 0 counts; expected counts + 1"),
        (
            Histogram(**H, edges=(0.0, 1.0), counts=(1, 2)),
            "2 edges for 2 counts; expected counts + 1",
        ),
        (Histogram(**H, edges=(0.0, 0.0), counts=(1,)), "edges must increase"),
        (
            Histogram(**H, edges=(0.0, 1.0), counts=(1,), log_x=True),
            "a log axis needs positive edges",
        ),
        (Histogram(**H, edges=(0.5, 1.0), counts=(1,), log_x=True), None),
        (
            Histogram(
                **H, edges=tuple(range(MAX_CHART_VALUES + 2)), counts=(1,) * (MAX_CHART_VALUES + 1)
            ),
            f"{MAX_CHART_VALUES + 1} values; a chart holds at most {MAX_CHART_VALUES}",
        ),
        (
            Histogram(
                **H, edges=tuple(range(MAX_CHART_VALUES + 1)), counts=(1,) * MAX_CHART_VALUES
            ),
            None,
        ),
        (
            Series(**S, x=("2024-01-01", "2024-01-02"), lines=(Line(label="a", values=(1, None)),)),
            None,
        ),
        (
            Series(**S, x=(), lines=(Line(label="a", values=()),)),
            "a series needs x values and at least one line",
        ),
        (Series(**S, x=("2024-01-01",), lines=()), "a series needs x values and at least one line"),
        (
            Series(
                **S,
                x=("a", "b"),
                lines=(
                    Line(label="p", values=(1,)),
                    Line(label="q", values=(1, 2)),
                    Line(label="r", values=()),
                ),
            ),
            "line(s) p, r do not have one value per x (2)",
        ),
        (
            Series(**S, x=("b", "a"), lines=(Line(label="p", values=(1, 2)),)),
            "x must be in ascending order",
        ),
        (
            Series(**S, x=("a", "b"), lines=(Line(label="p", values=(1, 2)),), highlight=(2,)),
            "highlight index outside x",
        ),
        (
            Series(**S, x=("a", "b"), lines=(Line(label="p", values=(1, 2)),), highlight=(-1,)),
            "highlight index outside x",
        ),
        (
            Series(**S, x=("a", "b"), lines=(Line(label="p", values=(1, 2)),), highlight=(0, 1)),
            None,
        ),
        (
            Series(
                **S,
                x=tuple(f"{i:05d}" for i in range(2501)),
                lines=(Line(label="a", values=(0,) * 2501),) * 2,
            ),
            f"5002 values; a chart holds at most {MAX_CHART_VALUES}",
        ),
        (Quantiles(**Q, quantiles=("p50",), groups=(QuantileGroup(label="g", values=(1,)),)), None),
        (
            Quantiles(**Q, quantiles=(), groups=(QuantileGroup(label="g", values=()),)),
            "quantiles need names and at least one group",
        ),
        (
            Quantiles(**Q, quantiles=("p50",), groups=()),
            "quantiles need names and at least one group",
        ),
        (
            Quantiles(
                **Q,
                quantiles=("p50", "p95"),
                groups=(
                    QuantileGroup(label="g", values=(1,)),
                    QuantileGroup(label="h", values=(1, 2)),
                    QuantileGroup(label="k", values=(1, 2, 3)),
                ),
            ),
            "group(s) g, k do not have one value per quantile",
        ),
        (
            Quantiles(
                **Q, quantiles=("p",) * 2, groups=(QuantileGroup(label="g", values=(1, 2)),) * 2501
            ),
            f"5002 values; a chart holds at most {MAX_CHART_VALUES}",
        ),
        (
            HeatMap(title="m", value_label="r", x_labels=("a",), y_labels=("b",), values=((1.0,),)),
            None,
        ),
        (
            HeatMap(title="m", value_label="r", x_labels=(), y_labels=(), values=()),
            "0 rows for 0 y labels",
        ),
        (
            HeatMap(
                title="m", value_label="r", x_labels=("a",), y_labels=("b", "c"), values=((1.0,),)
            ),
            "1 rows for 2 y labels",
        ),
        (
            HeatMap(
                title="m", value_label="r", x_labels=("a", "b"), y_labels=("c",), values=((1.0,),)
            ),
            "every row needs 2 values",
        ),
        (
            HeatMap(
                title="m",
                value_label="r",
                x_labels=tuple("ab"),
                y_labels=tuple(str(i) for i in range(2501)),
                values=((1.0, 2.0),) * 2501,
            ),
            f"5002 values; a chart holds at most {MAX_CHART_VALUES}",
        ),
        (Bars(**B, categories=("a",), series=(BarSeries(label="s", values=(1,)),)), None),
        (
            Bars(**B, categories=(), series=(BarSeries(label="s", values=()),)),
            "bars need categories and at least one series",
        ),
        (Bars(**B, categories=("a",), series=()), "bars need categories and at least one series"),
        (
            Bars(
                **B,
                categories=("a", "b"),
                series=(
                    BarSeries(label="s", values=(1,)),
                    BarSeries(label="t", values=(1, 2)),
                    BarSeries(label="u", values=()),
                ),
            ),
            "series s, u do not have one value per category",
        ),
        (
            Bars(
                **B,
                categories=tuple(str(i) for i in range(2501)),
                series=(BarSeries(label="s", values=(1,) * 2501),) * 2,
            ),
            f"5002 values; a chart holds at most {MAX_CHART_VALUES}",
        ),
    ],
)
def test_chart_rules(chart: object, problem: str | None) -> None:
    assert chart_problem(chart) == problem  # type: ignore[arg-type]


def test_the_schema_files_are_written_and_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contracts import schema

    monkeypatch.setattr(schema, "SCHEMA_DIR", tmp_path / "schemas")
    written = schema.write_all()
    assert written == [tmp_path / "schemas" / name for name in sorted(schema.SCHEMAS)]
    for name in schema.SCHEMAS:
        text = (tmp_path / "schemas" / name).read_text(encoding="utf-8")
        assert text == schema.render(name) and text.endswith("}\n")
        assert schema.load(name)["title"] == name.removesuffix(".schema.json")
    assert schema.write_all() == written  # the folder may exist already


# The shared statistics: level shifts and trends (contracts.series), robust scales
# (contracts.robust), group effects (contracts.effects) and the p-value's words.


def _brute_step_sse(y: list[float], min_len: int) -> float:
    """The best single mean shift of ``y`` by trying every cut (no cumulative sums)."""
    return min(
        sse(np.array(y[:k])) + sse(np.array(y[k:])) for k in range(min_len, len(y) - min_len + 1)
    )


def test_squared_errors_around_a_mean_a_line_and_a_step() -> None:
    assert sse(np.array([])) == 0.0
    assert sse(np.array([1.0, 2.0, 6.0])) == 14.0  # mean 3: 4 + 1 + 9
    x = np.array([0.0, 1.0, 2.0, 3.0])
    assert linear_sse(x, 2 * x + 1) == 0.0
    # the line through (0, 0), (1, 2), (2, 1), (3, 3): slope 0.8, residuals -0.3 0.9 -0.9 0.3
    assert linear_sse(x, np.array([0.0, 2.0, 1.0, 3.0])) == pytest.approx(1.8)
    assert linear_sse(np.array([5.0, 5.0, 5.0]), np.array([1.0, 2.0, 6.0])) == 14.0  # no slope
    assert linear_sse(np.array([0.0, 0.5, 1.0]), np.array([0.0, 1.0, 2.0])) == 0.0  # narrow x
    assert best_step_sse(np.array([1.0, 2.0, 3.0]), 2) is None  # shorter than two sides
    assert best_step_sse(np.array([0.0, 0.0, 5.0, 5.0]), 2) == 0.0  # exactly two sides
    for y in (
        [10.0, 10.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0],  # the best cut is the first allowed
        [0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 10.0, 10.0],  # ... and the last
        [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0],
    ):
        for min_len in (2, 3):
            expected = _brute_step_sse(y, min_len)
            assert best_step_sse(np.array(y), min_len) == pytest.approx(expected)


def test_binary_segmentation_and_its_penalty() -> None:
    steps = np.array([0.0] * 6 + [10.0] * 6 + [0.0] * 6 + [10.0] * 6)
    assert binary_segmentation(steps, 3, 1.0, 5) == [6, 12, 18]
    assert binary_segmentation(steps, 3, 1.0, 2) == [12, 18]  # at most max_cuts
    assert binary_segmentation(steps, 3, 1e6, 5) == []  # no gain above the penalty
    assert binary_segmentation(np.array([0.0, 0.0, 0.0, 5.0, 5.0, 5.0]), 3, 1.0, 5) == [3]
    assert binary_segmentation(np.array([0.0, 0.0, 0.0, 5.0, 5.0]), 3, 1.0, 5) == []  # short
    assert binary_segmentation(np.array([2.0] * 8), 2, 0.0, 5) == []  # constant
    assert binary_segmentation(np.array([0.0] * 6 + [1.0] * 6), 3, 0.1, 3) == [6]  # a step of 1
    # no side shorter than min_len, though a cut at 2 would fit exactly
    assert binary_segmentation(np.array([0.0, 0.0] + [10.0] * 6), 3, 1.0, 1) == [3]
    assert shift_cuts(np.array([0.0, 0.0, 0.0, 5.0, 5.0, 5.0]), 3, 0.0, 5) == [
        3
    ]  # just long enough
    assert shift_cuts(np.array([0.0, 0.0, 0.0, 5.0, 5.0]), 3, 0.0, 5) == []  # short
    # Moves of 1 between neighbours: sigma = 1 / 0.954, penalty = f sigma^2 ln 20; the
    # step of 2 between halves of 10 gains 5 * 2^2 = 20, above the penalty below f = 6.08.
    noisy = np.array([0.0, 1.0] * 5 + [2.0, 3.0] * 5)
    assert shift_cuts(noisy, 2, 6.0, 3) == [10]
    assert shift_cuts(noisy, 2, 6.15, 3) == []
    # No moves at all: sigma is floored at 1e-6 (penalty f 1e-12 ln 12; the gain is 3e-10).
    tiny = np.array([0.0] * 6 + [1e-5] * 6)
    assert shift_cuts(tiny, 3, 100.0, 3) == [6]
    assert shift_cuts(tiny, 3, 130.0, 3) == []


GATES = {
    "min_relative_shift": 1.0,
    "alpha": 0.05,
    "min_consistency": 0.75,
    "max_step_to_line_sse": 0.7,
}


def _cut(raw: list[float], cut: int, **settings: float) -> dict[str, object]:
    values = np.array(raw)
    days = [f"d{i}" for i in range(len(raw))]
    x = np.arange(len(raw), dtype=float)
    jobs = np.arange(1.0, len(raw) + 1)
    return evaluate_cut(
        days, values, np.log(np.maximum(values, 1.0)), x, jobs, 0, cut, len(raw), GATES | settings
    )


def test_a_cut_is_measured_and_gated() -> None:
    from scipy import stats

    raw = [10.0, 10.0, 10.0, 20.0, 40.0, 40.0, 40.0, 40.0]
    got = _cut(raw, 4)
    p = float(stats.mannwhitneyu(raw[:4], raw[4:], alternative="two-sided").pvalue)
    assert got == {
        "date": "d4",
        "before": 10.0,
        "after": 40.0,
        "relative_shift": 3.0,
        "log_ratio": math.log(4.0),
        "consistency": 0.75,  # 20 is not below the midpoint sqrt(10 * 40)
        "p_value": p,
        "step_to_line_sse": pytest.approx(_step_ratio(raw, 4)),
        "days_before": 4,
        "days_after": 4,
        "jobs_per_day_after": 6.5,
        "first_day": "d0",
        "last_day": "d7",
        "passed": True,
    }
    assert p < 0.05
    # every gate at its threshold passes, and just past it fails
    assert _cut(raw, 4, min_relative_shift=3.0)["passed"] is True
    assert _cut(raw, 4, min_relative_shift=3.01)["passed"] is False
    assert _cut(raw, 4, min_consistency=0.76)["passed"] is False
    assert _cut(raw, 4, alpha=p)["passed"] is False
    ratio = float(got["step_to_line_sse"])  # type: ignore[arg-type]
    assert _cut(raw, 4, max_step_to_line_sse=ratio)["passed"] is True
    assert _cut(raw, 4, max_step_to_line_sse=ratio * 0.99)["passed"] is False
    # the other side's point at the midpoint, and a downward shift
    assert _cut([10.0] * 4 + [20.0, 40.0, 40.0, 40.0], 4)["consistency"] == 0.75
    both = [10.0, 10.0, 10.0, 20.0, 20.0, 40.0, 40.0, 40.0]  # both sides spread
    assert _cut(both, 4)["step_to_line_sse"] == pytest.approx(_step_ratio(both, 4))
    # equal medians: the share on the expected side of the level, upward
    assert _cut([5.0, 5.0, 5.0, 1.0, 5.0, 5.0, 5.0, 9.0], 4)["consistency"] == 0.25
    # a spread below 1 is still a spread (tested, not p = 1)
    narrow = _cut([10.0] * 4 + [10.5] * 4, 4)
    assert narrow["p_value"] == pytest.approx(
        float(stats.mannwhitneyu([10.0] * 4, [10.5] * 4, alternative="two-sided").pvalue)
    )
    assert narrow["p_value"] < 0.05
    # a cut inside a longer series: counted from lo
    values = np.array([1.0, 1.0, 10.0, 10.0, 10.0, 40.0, 40.0, 40.0, 1.0])
    days = [f"d{i}" for i in range(9)]
    x = np.arange(9.0)
    inner = evaluate_cut(days, values, np.log(values), x, x, 2, 5, 8, GATES)
    assert (inner["days_before"], inner["days_after"], inner["first_day"], inner["last_day"]) == (
        3,
        3,
        "d2",
        "d7",
    )
    assert (inner["before"], inner["after"], inner["jobs_per_day_after"]) == (10.0, 40.0, 6.0)
    down = _cut([40.0, 40.0, 40.0, 20.0, 10.0, 10.0, 10.0, 10.0], 4)
    assert (down["relative_shift"], down["consistency"]) == (-0.75, 0.75)
    assert down["log_ratio"] == pytest.approx(math.log(0.25))
    assert _cut([40.0] * 4 + [20.0, 10.0, 10.0, 10.0], 4)["consistency"] == 0.75
    # levels below the floor count as the floor; a flat stretch has p 1 and ratio 1
    floored = _cut([0.0] * 4 + [5.0] * 4, 4)
    assert (floored["before"], floored["relative_shift"], floored["consistency"]) == (1.0, 4.0, 1.0)
    flat = _cut([3.0] * 8, 4)
    assert (flat["p_value"], flat["step_to_line_sse"], flat["passed"]) == (1.0, 1.0, False)


def _step_ratio(raw: list[float], cut: int) -> float:
    y = np.log(np.array(raw))
    x = np.arange(len(raw), dtype=float)
    fit = np.polyval(np.polyfit(x, y, 1), x)
    return (sse(y[:cut]) + sse(y[cut:])) / float(np.sum((y - fit) ** 2))


def test_mann_kendall_and_sens_slope() -> None:
    from scipy import stats

    x = np.arange(6, dtype=float)
    y = np.array([1.0, 3.0, 2.0, 5.0, 4.0, 8.0])
    tau = stats.kendalltau(x, y)
    slope, intercept, _, _ = stats.theilslopes(y, x)
    assert mann_kendall(x, y) == {
        "tau": tau.statistic,
        "p_value": tau.pvalue,
        "slope": slope,
        "intercept": intercept,
    }
    assert slope != intercept
    wide_x = 2 * x  # the slope is per unit of x, not per index
    assert mann_kendall(wide_x, y)["slope"] == pytest.approx(slope / 2)
    small = mann_kendall(x, y / 100)  # a range below 1 is still a trend
    assert (small["tau"], small["slope"]) == (
        pytest.approx(tau.statistic),
        pytest.approx(slope / 100),
    )
    assert mann_kendall(x, np.full(6, 3.0)) == {
        "tau": 0.0,
        "p_value": 1.0,
        "slope": 0.0,
        "intercept": 3.0,
    }


def test_seasonal_strength_and_the_daily_series() -> None:
    s = np.array([1.0, -1.0, 1.0, -1.0])
    assert seasonal_strength(s, np.array([0.5, 0.5, -0.5, -0.5])) == pytest.approx(0.8)
    assert seasonal_strength(np.array([1.0, -1.0, 0, 0]), np.array([-1.0, 1.0, 1, -1])) == 0.0
    assert seasonal_strength(np.zeros(4), np.zeros(4)) == 0.0
    assert seasonal_strength(s / 10, np.array([0.05, 0.05, -0.05, -0.05])) == pytest.approx(0.8)
    d = date(2024, 1, 1)
    first, dense = dense_daily([d, d + timedelta(1), d + timedelta(3)], [1.0, None, 4.0])
    assert first == d and dense.tolist() == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ValueError):
        dense_daily([d, d + timedelta(1)], [1.0])  # one value a day


def test_weekly_rhythm_is_monday_first() -> None:
    start = date(2024, 1, 3)  # a Wednesday
    days = [start + timedelta(i) for i in range(28)]
    values: list[float | None] = [float(d.weekday()) for d in days]
    rhythm = weekly_rhythm(days, values, 4)
    assert rhythm is not None
    assert (rhythm["days"], rhythm["first_day"]) == (28, "2024-01-03")
    assert rhythm["strength"] > 0.99
    assert rhythm["weekday_effect"] == pytest.approx([-3, -2, -1, 0, 1, 2, 3], abs=0.01)
    assert weekly_rhythm(days, values, 5) is None  # fewer than 5 weeks
    spiked = [*values[:10], 100.0, *values[11:]]  # robust: one outlier does not move it
    assert weekly_rhythm(days, spiked, 4)["weekday_effect"] == pytest.approx(  # type: ignore[index]
        [-3, -2, -1, 0, 1, 2, 3], abs=0.01
    )
    assert weekly_rhythm(days, [None, *values[1:]], 4) is None  # 27 values
    assert weekly_rhythm(days, [2.0] * 28, 4) is None  # constant


def test_the_judged_scale() -> None:
    def q(low: object, p01: object, p50: object, p99: object, high: object = 1e9) -> dict:
        return {"min": low, "p01": p01, "p50": p50, "p99": p99, "max": high}

    raw = {"kind": "raw", "shift": 0.0, "top": 1.0}
    log = {"kind": "log", "shift": 0.0, "top": 1.0}
    assert judged_scale(q(1, 1, 2, 4), None) == log  # p99 - p50 = 2 (p50 - p01): skewed
    assert judged_scale(q(1, 1, 2, 3.9), None) == raw
    assert judged_scale(q(1, 1, 50, 100), None) == log  # p99 / p01 = 100: wide
    assert judged_scale(q(1, 1, 60, 99), None) == raw
    assert judged_scale(q(0.1, 0.1, 5, 10), None) == log  # a ratio of 100 below 1
    assert judged_scale(q(10, 10, 600, 990), None) == raw  # a ratio of 99 above it
    assert judged_scale(q(5, 5, 5, 5), None) == raw  # constant: not skewed
    assert judged_scale(q(5, 5, 5, 5), None, "log") == log
    assert judged_scale(q(0, 0, 2, 10), None) == {"kind": "log", "shift": 2.0, "top": 1.0}
    assert judged_scale(q(0, 0, 0, 10), None) == raw  # zero median: no shift makes it positive
    assert judged_scale(q(-1, 1, 2, 10), None) == raw  # negative values
    assert judged_scale(q(1, 1, 2, 10), None, "raw") == raw
    assert judged_scale(q(0, 0.1, 0.5, 0.9, 1), "share") == {
        "kind": "logit",
        "shift": 0.0,
        "top": 1.0,
    }
    assert judged_scale(q(0, 1, 50, 90, 100), "share")["top"] == 100.0
    assert judged_scale(q(0, 0.1, 0.5, 0.9, 1.5), "share")["top"] == 100.0
    assert judged_scale(q(0, 0.1, 0.5, 0.9, None), "share")["top"] == 1.0
    assert judged_scale(q(-0.1, 0.1, 0.5, 0.9, 1), "share") == raw
    assert judged_scale(q(0, 0.1, 0.2, 0.9, 1), "share", "log")["kind"] == "log"
    for bad in (None, float("nan"), float("inf"), True, "1"):
        for at in range(4):
            values: list[object] = [1, 1, 2, 10]
            values[at] = bad
            assert judged_scale(q(*values), None) == raw, (bad, at)
    assert judged_scale({"min": 1, "p01": 1, "p50": 2, "p99": 10}, None) == log  # no max


def test_scaled_expressions_and_back() -> None:
    x = """nullif(CAST("a b" AS DOUBLE), 'NaN'::DOUBLE)"""
    assert number_expr("a b") == x
    # NaN is no value (NULL); an infinity is one
    got = duckdb.sql(
        f"""SELECT {x} AS v FROM (VALUES (1.5), ('NaN'::DOUBLE), ('inf'::DOUBLE), (NULL))
        AS t("a b")"""
    ).fetchall()
    assert got == [(1.5,), (None,), (math.inf,), (None,)]
    assert scaled_expr("a b", {"kind": "raw", "shift": 0.0, "top": 1.0}) == x
    assert scaled_expr("a b", {"kind": "log", "shift": 2, "top": 1.0}) == f"ln({x} + 2.0)"
    p = f"least(greatest({x} / 100.0, 0.001), 0.999)"
    assert scaled_expr("a b", {"kind": "logit", "shift": 0.0, "top": 100}) == f"ln({p} / (1 - {p}))"
    assert unscaled(math.log(5.0), {"kind": "log", "shift": 2.0, "top": 1.0}) == pytest.approx(3.0)
    assert unscaled(math.log(3.0), {"kind": "logit", "shift": 0.0, "top": 100.0}) == 75.0
    assert unscaled(7.0, {"kind": "raw", "shift": 2.0, "top": 100.0}) == 7.0


def test_the_shared_group_effects() -> None:
    from scipy import stats

    assert keep_ppm(2000, 1000) == 1_000_000
    assert keep_ppm(10, 1000) == 1_000_000  # never above a million
    assert keep_ppm(2001, 1000) == 999_501  # 999,500.25 rounded up
    assert keep_ppm(10**13, 1) == 1
    empty = np.array([])
    assert single_group_a(empty, np.array([1.0])) == (0.5, 1.0)
    assert single_group_a(np.array([1.0]), empty) == (0.5, 1.0)
    hi, lo = np.array([4.0, 5.0, 6.0]), np.array([1.0, 2.0, 3.0, 3.5])
    above = stats.mannwhitneyu(hi, lo, alternative="greater").pvalue
    assert single_group_a(hi, lo) == (1.0, above)
    assert single_group_a(lo, hi, "less") == (
        0.0,
        stats.mannwhitneyu(lo, hi, alternative="less").pvalue,
    )
    assert single_group_a(np.array([1.0, 2.0]), np.array([2.0, 1.0]))[0] == 0.5  # ties half
    samples = [np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]), np.array([7.0, 8.0, 9.0])]
    h = stats.kruskal(*samples)
    rest = np.array([4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    common = {"h": h.statistic, "p_value": h.pvalue, "n": 9, "epsilon_squared": h.statistic / 8}
    assert kruskal_effect(["a", "b", "c"], samples, "a", two_sided=True) == common | {
        "single_group": "a",
        "single_group_a": 1.0,  # every value of a below every other
        "single_group_p_value": stats.mannwhitneyu(samples[0], rest, alternative="less").pvalue,
    }
    assert kruskal_effect(["a", "b", "c"], samples, "a") == common | {
        "single_group": "a",
        "single_group_a": 0.0,
        "single_group_p_value": stats.mannwhitneyu(samples[0], rest, alternative="greater").pvalue,
    }
    top = kruskal_effect(["a", "b", "c"], samples, "c", two_sided=True)
    assert (top["single_group_a"], top["single_group"]) == (1.0, "c")
    # below its peers, A is the share of pairs further down: 16 of 18 here
    low = [np.array([1.0, 2.0, 5.0]), np.array([3.0, 4.0, 6.0]), np.array([7.0, 8.0, 9.0])]
    assert kruskal_effect(["a", "b", "c"], low, "a", two_sided=True)["single_group_a"] == 16 / 18
    # equal medians: judged upwards (ties count half: 7 of 9 pairs)
    even = [np.array([5.0, 5.0, 9.0]), np.array([1.0, 5.0, 5.0])]
    assert kruskal_effect(["a", "b"], even, "a", two_sided=True)["single_group_a"] == 7 / 9
    # no peers: A 0.5, p 1
    alone = kruskal_effect(["a", "a"], samples[:2], "a", two_sided=True)
    assert (alone["single_group_a"], alone["single_group_p_value"]) == (0.5, 1.0)
    with pytest.raises(ValueError):
        kruskal_effect(["a", "b"], samples, "a")  # one label per sample
    pair = kruskal_effect(["a", "b"], [np.array([1.0]), np.array([2.0])], "b")
    assert pair["epsilon_squared"] == pair["h"] == 1.0  # two values: H / 1


def test_is_large_at_its_thresholds() -> None:
    def effect(eps2: float, a: float, p_single: float, p: float) -> GroupEffect:
        return {
            "h": 0.0,
            "p_value": p,
            "n": 9,
            "epsilon_squared": eps2,
            "single_group": "g",
            "single_group_a": a,
            "single_group_p_value": p_single,
        }

    assert is_large(effect(0.26, 0.5, 1.0, 0.04), 0.26, 0.71, 0.05)
    assert not is_large(effect(0.25, 0.5, 1.0, 0.04), 0.26, 0.71, 0.05)
    assert not is_large(effect(0.26, 0.5, 1.0, 0.05), 0.26, 0.71, 0.05)
    assert is_large(effect(0.0, 0.71, 0.04, 0.04), 0.26, 0.71, 0.05)
    assert not is_large(effect(0.0, 0.70, 0.04, 0.04), 0.26, 0.71, 0.05)
    assert not is_large(effect(0.0, 0.71, 0.05, 0.04), 0.26, 0.71, 0.05)
    assert not is_large(effect(0.0, 0.71, 0.04, 0.05), 0.26, 0.71, 0.05)


def test_p_values_in_words() -> None:
    assert p_text(1e-301) == "p < 1e-300"
    assert p_text(1e-300) == "p = 1e-300"
    assert p_text(0.01234) == "p = 0.012"


# What the plugins ask of an event log or a case log (contracts.logs, contracts.units,
# contracts.cases), over real tables ingested as a run ingests them.

T0 = datetime(2024, 1, 1)


def _ctx(tmp_path: Path, columns: dict[str, object]) -> Any:
    from engine.testing import make_context

    return make_context(pa.table(columns), tmp_path)


def _stamps(*hours: float | None) -> pa.Array:
    return pa.array(
        [None if h is None else T0 + timedelta(hours=h) for h in hours], pa.timestamp("us")
    )


def test_what_makes_an_event_log(tmp_path: Path) -> None:
    cases = {
        ("started_at", "ended_at"): True,
        ("started_at", "queued_at"): True,
        ("started_at",): False,
        ("queued_at", "ended_at"): False,
    }
    for i, (cols, expected) in enumerate(cases.items()):
        ctx = _ctx(tmp_path / str(i), {c: _stamps(0, 1) for c in cols} | {"x": [1, 2]})
        assert is_event_log(ctx) is expected, cols
        assert (event_log_na(ctx) is None) is not expected
    ctx = _ctx(tmp_path / "log", {"started_at": _stamps(0, 1), "ended_at": _stamps(1, 2)})
    assert event_log_na(ctx) == Na(
        reason_code="NOT_APPLICABLE",
        explanation=f"The table is {EVENT_LOG_TEXT}.",
        checked=(
            "event role ended: ended_at",
            "event role queued: not found",
            "event role started: started_at",
        ),
    )


def test_failure_values_are_sorted_and_matched_case_insensitively(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, {"state": ["ok", "FAILED", None, "error", "ok", "retry"]})
    assert failure_values(ctx, "state", "fail|err") == (
        ["FAILED", "error", "ok", "retry"],
        ["FAILED", "error"],
    )
    ctx = _ctx(tmp_path / "n", {"code": [3, 1, 2, 1]})
    assert failure_values(ctx, "code", "^[23]$") == (["1", "2", "3"], ["2", "3"])


def test_observed_months_of_the_first_time_role(tmp_path: Path) -> None:
    both = {"queued_at": _stamps(0, 48, 24), "started_at": _stamps(0, 240, 1)}
    assert observed_months(_ctx(tmp_path / "a", both)) == 2.0 / DAYS_PER_MONTH
    nulls = {"queued_at": _stamps(None, None), "started_at": _stamps(0, 72)}
    assert observed_months(_ctx(tmp_path / "b", nulls)) == 3.0 / DAYS_PER_MONTH
    ended = {"ended_at": _stamps(0, 2), "started_at": _stamps(None, None)}
    assert observed_months(_ctx(tmp_path / "c", ended)) == 1.0 / DAYS_PER_MONTH  # at least a day
    zoned = pa.array([T0, T0 + timedelta(days=4)], pa.timestamp("us", tz="UTC"))
    assert observed_months(_ctx(tmp_path / "z", {"ended_at": zoned})) == 4.0 / DAYS_PER_MONTH
    assert observed_months(_ctx(tmp_path / "d", {"x": [1, 2]})) is None
    assert observed_months(_ctx(tmp_path / "e", {"started_at": _stamps(None, None)})) is None


def _case_log(steps: list[tuple[str | None, str | None, float]]) -> dict[str, object]:
    """(case, activity, start hour): queued an hour before, ended an hour after."""
    return {
        "case_id": [c for c, _, _ in steps],
        "process_name": [p for _, p, _ in steps],
        "queued_at": _stamps(*(h - 1 for _, _, h in steps)),
        "started_at": _stamps(*(h for _, _, h in steps)),
        "ended_at": _stamps(*(h + 1 for _, _, h in steps)),
    }


def test_the_steps_of_a_case_log(tmp_path: Path) -> None:
    steps = [
        ("c1", "A", 0),
        ("c1", "B", 2),
        ("c2", "A", 1),
        ("c3", "A", 3),
        ("c3", "B", 5),
        ("c3", "C", 7),
        ("c1", "A", 0),
        ("c4", None, 9),
        (None, "A", 9),
    ]
    ctx = _ctx(tmp_path, _case_log(steps))  # type: ignore[arg-type]
    cols = roles(ctx)
    assert cols == {
        "case": "case_id",
        "process": "process_name",
        "queued": "queued_at",
        "started": "started_at",
        "ended": "ended_at",
    }
    # the exact copy of c1's first step counts once; rows without case or activity drop
    ordered = ctx.data.sql(
        f"WITH {steps_cte(ctx, cols)} SELECT c, p, q, s, e FROM ev ORDER BY c, {ORDER}"
    ).to_pylist()
    hour = 3_600_000_000
    t0 = int(T0.timestamp()) * 1_000_000
    assert [(r["c"], r["p"], (r["s"] - t0) // hour) for r in ordered] == [
        ("c1", "A", 0),
        ("c1", "B", 2),
        ("c2", "A", 1),
        ("c3", "A", 3),
        ("c3", "B", 5),
        ("c3", "C", 7),
    ]
    assert all(r["q"] == r["s"] - hour and r["e"] == r["s"] + hour for r in ordered)
    counts, reason = multi_step(ctx, cols, 2, 0.5)
    assert reason is None
    assert counts == {
        "cases": 3,
        "steps": 6,
        "multi": 2,
        "lengths": {"mean": 2.0, "p50": 2.0, "p90": pytest.approx(2.8), "max": 3.0},
        "span_days": 9 / 24,  # from c1's first queue (-1 h) to c3's last end (8 h)
    }
    assert multi_step_or_na(ctx, cols, 2, 0.5) == (counts, None)
    _, reason = multi_step(ctx, cols, 3, 0.5)
    assert reason == (
        "cases with >= 2 steps: 2 of 3 (needs >= 3 and >= 50% of cases): the cases are "
        "single steps, so there is no flow to mine"
    )
    assert multi_step(ctx, cols, 2, 2 / 3)[1] is None  # 2 of 3 is 2/3
    assert multi_step(ctx, cols, 2, 0.7)[1] is not None
    assert multi_step_or_na(ctx, cols, 3, 0.5) == (
        counts,
        Na(
            reason_code="NOT_APPLICABLE",
            explanation=f"Not a multi-step case log: {reason}.",
            checked=(reason,),
        ),
    )


def test_a_case_log_without_times_or_repeated_cases(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path / "a", {"case_id": ["c1", "c1", "c2"], "process_name": ["A", "B", "A"]})
    cols = roles(ctx)
    counts, reason = multi_step(ctx, cols, 1, 0.5)
    assert (counts["cases"], counts["steps"], counts["multi"], reason) == (2, 3, 1, None)
    assert counts["span_days"] == 0.0
    # one row beyond each case's first: at most one case with two steps, known before a scan
    counts, reason = multi_step(ctx, cols, 2, 0.5)
    assert counts == {"cases": 2, "steps": 0, "multi": 0, "lengths": {}, "span_days": 0.0}
    assert reason == (
        "cases with >= 2 steps: at most 1 of 2 (rows beyond the first of each case_id value; "
        "needs >= 2): the cases are single steps, so there is no flow to mine"
    )
    ctx = _ctx(tmp_path / "b", {"case_id": ["c1", "c2", None, None], "process_name": ["A"] * 4})
    assert multi_step(ctx, roles(ctx), 1, 0.0)[1] == (
        "cases with >= 2 steps: at most 0 of 2 (rows beyond the first of each case_id value; "
        "needs >= 1): the cases are single steps, so there is no flow to mine"
    )
    # one distinct case: its count decides before a scan; none at all: the scan does
    ctx = _ctx(tmp_path / "d", {"case_id": ["c1"], "process_name": ["A"]})
    assert multi_step(ctx, roles(ctx), 1, 0.0)[1] == (
        "cases with >= 2 steps: at most 0 of 1 (rows beyond the first of each case_id value; "
        "needs >= 1): the cases are single steps, so there is no flow to mine"
    )
    no_cases = {"case_id": pa.array([None, None], pa.string()), "process_name": ["A", "B"]}
    ctx = _ctx(tmp_path / "e", no_cases)
    assert multi_step(ctx, roles(ctx), 1, 0.0)[1] == "no row has both a case and an activity"
    nothing = {"case_id": ["c1", "c1"], "process_name": pa.array([None, None], pa.string())}
    ctx = _ctx(tmp_path / "c", nothing)
    counts, reason = multi_step(ctx, roles(ctx), 0, 0.0)
    assert (counts["cases"], counts["lengths"], reason) == (
        0,
        {"mean": 0.0, "p50": 0.0, "p90": 0.0, "max": 0.0},
        "no row has both a case and an activity",
    )


@pytest.mark.parametrize("size", [1, 2, 999, 1000])
def test_median_mad_in_place_is_duckdbs_median_and_mad(size: int) -> None:
    rng = np.random.default_rng(size)
    x = np.round(rng.lognormal(2, 1, size), 1)  # ties, odd and even counts
    con = duckdb.connect()
    values_table = pa.table({"x": x})
    # read in chunks, as a query's result arrives, into a larger reused buffer
    chunks = values_table.to_batches(max_chunksize=97)
    buffer = np.full(size + 5, np.nan)
    values = read_into(buffer, (b.column(0) for b in chunks))
    assert values.base is buffer and values.size == size
    assert values.tolist() == x.tolist()
    median, mad = median_mad(values)
    con.register("v", values_table)
    row = con.execute("SELECT median(x), mad(x) FROM v").fetchone()
    assert row is not None
    assert median == pytest.approx(row[0], rel=1e-15, abs=0)
    assert mad == pytest.approx(row[1], rel=1e-12, abs=1e-15)
    assert not np.isnan(buffer[:size]).any()  # overwritten in place: the deviations
