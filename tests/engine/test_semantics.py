"""Column semantics: inferred at ingestion (in SQL), checked in preflight, listed by ctx.data.

Each table is built so that its answer is known: clock times written as HHMM,
row numbers, codes, calendar parts and real magnitudes, ingested into a real DuckDB
file exactly as a run does.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pyarrow as pa
import pytest

from contracts import QUANTITY_SEMANTICS, ColumnInfo, DatasetInfo
from contracts.manifest import AppliesWhen, ColumnRequirement, Manifest
from engine._core.manifests import PluginSpec
from engine._core.preflight import preflight, unmet
from engine._data.ingest import NumericStats, infer_semantic
from engine.testing import make_reader

N = 600


def _hhmm(i: int) -> int:
    """Minute ``i * 7`` of the day (mod 24 h) written as HHMM: 0..2359, minutes 0..59."""
    m = (i * 7) % 1440
    return 100 * (m // 60) + m % 60


def known_table() -> pa.Table:
    return pa.table(
        {
            "rownames": list(range(1, N + 1)),
            "seq": list(range(1000, 1000 + N)),  # no name hint: a dense run of distinct ints
            "year": [2013] * N,
            "month": [1 + i % 12 for i in range(N)],
            "hour": [i % 24 for i in range(N)],
            "dep_time": [_hhmm(i) for i in range(N)],
            "sched": [_hhmm(i + 3) for i in range(N)],  # neutral name: structure alone
            "flight": [1 + (i * 37) % 400 for i in range(N)],
            "zipcode": [10000 + i % 50 for i in range(N)],
            "distance": [100 + (i * 53) % 2400 for i in range(N)],  # reaches x mod 100 >= 60
            "price": [float(i % 97) * 1.5 + 0.25 for i in range(N)],
            "perc_white": [float(i % 100) for i in range(N)],
            "win_share": [(i % 10) / 10 + 0.05 for i in range(N)],
            "retry_count": [i % 4 for i in range(N)],
            "is_late": [i % 2 for i in range(N)],
            "created_at": [1_700_000_000 + i for i in range(N)],
            "duration_s": [i * 1.5 for i in range(N)],
            "empty": pa.array([None] * N, pa.float64()),
            "name": [f"n{i % 5}" for i in range(N)],
        }
    )


EXPECTED = {
    "rownames": ("identifier", "name"),
    "seq": ("identifier", "sequence"),
    "year": ("calendar_part", "year"),
    "month": ("calendar_part", "month"),
    "hour": ("calendar_part", "hour"),
    "dep_time": ("clock_time", "hhmm"),
    "sched": ("clock_time", "hhmm"),
    "flight": ("identifier", "name"),
    "zipcode": ("identifier", "name"),
    "distance": ("quantity", ""),
    "price": ("quantity", ""),
    "perc_white": ("share", "percent"),
    "win_share": ("share", "fraction"),
    "retry_count": ("count", ""),
    "is_late": ("quantity", "binary"),
    "created_at": ("timestamp", "number"),
    "duration_s": ("quantity", ""),
    "empty": (None, ""),
    "name": (None, ""),
}


@pytest.fixture
def info(tmp_path: Path) -> DatasetInfo:
    with make_reader(known_table(), tmp_path) as reader:
        return reader.info


def test_semantics_are_inferred_at_ingestion(info: DatasetInfo) -> None:
    got = {c.name: (c.semantic, c.semantic_detail) for c in info.columns}
    assert got == EXPECTED
    rules = {c.name: c.semantic_rule for c in info.columns}
    assert "last two digits 0..59" in rules["sched"]
    assert rules["name"] == ""  # non-numeric: no rule ran


def test_semantics_survive_the_sidecar_and_old_records_decode(tmp_path: Path) -> None:
    with make_reader(known_table(), tmp_path) as first:
        built = first.info
    with make_reader(known_table(), tmp_path) as second:  # read back from the stored JSON
        assert second.info.columns == built.columns
    # A column recorded before semantics existed decodes with no semantic.
    old = msgspec.json.decode(b'{"name":"x","dtype":"BIGINT","role":"numeric"}', type=ColumnInfo)
    assert (old.semantic, old.semantic_detail, old.semantic_rule) == (None, "", "")


def stats(**kw: float | int | None) -> NumericStats:
    base = {"count": 1000, "distinct": 900, "min": 0.0, "max": 2359.0}
    return NumericStats(**(base | kw))  # type: ignore[arg-type]


def test_hhmm_needs_the_minutes_structure_and_hours() -> None:
    clock = stats(over59=0, minute_values=60, hour_values=24)
    assert infer_semantic("x", "numeric", clock)[:2] == ("clock_time", "hhmm")
    # one value with minutes >= 60 (e.g. 1275) and it is a magnitude
    assert infer_semantic("x", "numeric", stats(over59=1, minute_values=60, hour_values=24))[0] == (
        "quantity"
    )
    # days 0..21 named "Time": a single hour part, so no clock
    days = stats(max=21.0, minute_values=12, hour_values=1)
    assert infer_semantic("Time", "numeric", days)[0] == "quantity"
    # multiples of 50 below 2400 without a clock name: too few minute values
    fifties = stats(max=2350.0, minute_values=2, hour_values=24)
    assert infer_semantic("price", "numeric", fifties)[0] == "quantity"
    assert infer_semantic("dep_time", "numeric", fifties)[0] == "clock_time"
    # fractional values are never HHMM
    assert infer_semantic("dep_time", "numeric", stats(fractional=5, hour_values=24))[0] == (
        "quantity"
    )


def test_calendar_parts_need_their_range() -> None:
    assert infer_semantic("month", "numeric", stats(min=1.0, max=12.0))[:2] == (
        "calendar_part",
        "month",
    )
    assert infer_semantic("month", "numeric", stats(min=1.0, max=13.0))[0] != "calendar_part"
    assert infer_semantic("Year_Built", "numeric", stats(min=1872.0, max=2010.0))[1] == "year"
    assert infer_semantic("days", "numeric", stats(min=0.0, max=9.0))[0] == "quantity"


def test_seconds_of_day_and_sequence_and_no_values() -> None:
    tod = stats(min=0.0, max=86399.0, over59=500, fractional=0)
    assert infer_semantic("time_of_day", "numeric", tod)[:2] == ("clock_time", "seconds_of_day")
    unique = stats(distinct=1000, min=5.0, max=1400.0, over59=300)  # 1396 <= 1.5 * 1000
    assert infer_semantic("x", "numeric", unique)[:2] == ("identifier", "sequence")
    sparse = stats(distinct=1000, min=5.0, max=90_000.0, over59=300)
    assert infer_semantic("x", "numeric", sparse)[0] == "quantity"
    assert infer_semantic("x", "numeric", stats(count=0, min=None, max=None))[0] is None
    assert infer_semantic("job_id", "identifier", stats())[0] == "identifier"


def _spec(tmp_path: Path, *reqs: ColumnRequirement) -> PluginSpec:
    manifest = Manifest(
        id="p", version="1", lane="explanation", applies_when=AppliesWhen(columns=reqs)
    )
    return PluginSpec(
        manifest=manifest,
        directory=tmp_path,
        manifest_path=tmp_path / "plugin.yaml",
        code_hash="0" * 64,
    )


def test_preflight_filters_by_semantic(info: DatasetInfo, tmp_path: Path) -> None:
    quantities = ColumnRequirement(role="numeric", semantic=QUANTITY_SEMANTICS)
    assert unmet(quantities, info) is None
    three = ColumnRequirement(role="numeric", semantic=("clock_time",), min_count=3)
    assert unmet(three, info) == "needs 3 x role 'numeric' with semantic 'clock_time', found 2"
    named = ColumnRequirement(name="dep_time", semantic=QUANTITY_SEMANTICS)
    assert unmet(named, info) == "column 'dep_time' has semantic 'clock_time'"
    text = ColumnRequirement(name="name", semantic=("quantity",))
    assert unmet(text, info) == "column 'name' has semantic None"
    result = preflight(_spec(tmp_path, named), info)
    assert result is not None and result.reason_code == "NOT_APPLICABLE"
    assert "semantic 'clock_time'" in result.explanation
    assert preflight(_spec(tmp_path, quantities), info) is None


def test_manifest_rejects_an_unknown_semantic() -> None:
    with pytest.raises(msgspec.ValidationError, match="semantic"):
        msgspec.convert({"role": "numeric", "semantic": ["money"]}, ColumnRequirement)


def test_reader_lists_columns_by_role_and_semantic(tmp_path: Path) -> None:
    with make_reader(known_table(), tmp_path) as reader:
        assert reader.names("numeric", semantic="clock_time") == ["dep_time", "sched"]
        quantities = reader.names("numeric", semantic=QUANTITY_SEMANTICS)
        assert quantities == [n for n, (s, _) in EXPECTED.items() if s in QUANTITY_SEMANTICS]
        assert reader.names(semantic=["identifier"]) == ["rownames", "seq", "flight", "zipcode"]
        with pytest.raises(ValueError, match="unknown semantic"):
            reader.names(semantic="money")


def test_times_stored_as_numbers_never_serve_the_event_log_roles(tmp_path: Path) -> None:
    # An HHMM start clock and an epoch end are numbers: the queueing, survival and
    # SLA plugins (which need queued/started/ended) must not take them for times.
    table = pa.table(
        {
            "process": ["a", "b"] * 50,
            "start_time": [_hhmm(i) for i in range(100)],
            "end_epoch": [1_700_000_000 + i for i in range(100)],
            "queued_at": pa.array([None] * 100, pa.timestamp("s")),
        }
    )
    with make_reader(table, tmp_path) as reader:
        info = reader.info
    semantics = {c.name: c.semantic for c in info.columns}
    assert semantics["start_time"] == "clock_time" and semantics["end_epoch"] == "timestamp"
    assert info.event_roles == {"process": "process", "queued": "queued_at"}
