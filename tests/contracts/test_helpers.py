"""The SDK's helpers against values known by construction: results and finding ids,
canonical hashing, frozen containers, SQL helpers run in DuckDB, chart rules, and the
schema files."""

from __future__ import annotations

import hashlib
import math
import pickle
from pathlib import Path

import duckdb
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
    stable_hash,
)
from contracts._base import FrozenDict, FrozenList, freeze
from contracts.charts import (
    MAX_CHART_VALUES,
    Bars,
    BarSeries,
    HeatMap,
    Line,
    QuantileGroup,
    Quantiles,
    Series,
    first_digit_bars,
    histogram_from_rows,
)
from contracts.sql import histogram_sql, quote_ident, string_literal, timestamp_expr


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


def test_first_digit_bars_beside_benford() -> None:
    bars = first_digit_bars("digits", [3, 1, 0, 0, 0, 0, 0, 0, 0])
    assert bars.categories == tuple("123456789")
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
