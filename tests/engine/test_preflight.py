"""Preflight on its own: each rule, its exact words, and the case that passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from contracts import ColumnInfo, DatasetInfo, Failed, Manifest, Na
from engine._core.manifests import PluginSpec
from engine._core.preflight import preflight

DATASET = DatasetInfo(
    source="d.csv",
    fingerprint="f",
    rows=100,
    columns=(
        ColumnInfo(name="amount", dtype="DOUBLE", role="numeric"),
        ColumnInfo(name="cost", dtype="DOUBLE", role="numeric"),
        ColumnInfo(name="process", dtype="VARCHAR", role="categorical"),
    ),
    event_roles={"process": "process"},
)


def spec(**fields: Any) -> PluginSpec:
    manifest = msgspec.convert({"id": "p", "version": "1", "lane": "decision", **fields}, Manifest)
    return PluginSpec(
        manifest=manifest, directory=Path("p"), manifest_path=Path("p"), code_hash="h"
    )


def failed(message: str, code: str = "PREFLIGHT_MISSING_COLUMN") -> Failed:
    return Failed(reason_code=code, error_type="PreflightError", message=message)


@pytest.mark.parametrize(
    ("requires", "outcome"),
    [
        ({"columns": [{"name": "amount"}]}, None),
        ({"columns": [{"role": "numeric", "min_count": 2}]}, None),
        ({"columns": [{"name": "amount", "role": "numeric"}]}, None),
        ({"columns": [{"event_role": "process"}]}, None),
        ({"columns": [{"event_role": "process", "name": "process"}]}, None),
        (
            {"columns": [{"name": "nope"}]},
            failed("hard requirement not met: needs column 'nope', found 0"),
        ),
        (
            {"columns": [{"role": "numeric", "min_count": 3}]},
            failed("hard requirement not met: needs 3 x role 'numeric', found 2"),
        ),
        (
            {"columns": [{"name": "amount", "role": "timestamp"}]},
            failed("hard requirement not met: column 'amount' has role 'numeric', not 'timestamp'"),
        ),
        (
            {"columns": [{"name": "ghost", "role": "timestamp"}]},
            failed("hard requirement not met: needs column 'ghost' with role 'timestamp', found 0"),
        ),
        (
            {"columns": [{"event_role": "ended"}]},
            failed("hard requirement not met: no column has the event-log role 'ended'"),
        ),
        (
            {"columns": [{"event_role": "process", "name": "amount"}]},
            failed("hard requirement not met: event-log role 'process' is 'process', not 'amount'"),
        ),
        (
            {"columns": [{}], "min_rows": 101},
            failed("needs at least 101 rows, dataset has 100", "PREFLIGHT_TOO_FEW_ROWS"),
        ),
        ({"min_rows": 100}, None),
        (
            {"columns": [{"min_count": 4}]},
            failed("hard requirement not met: needs 4 x any column, found 3"),
        ),
        (
            {"columns": [{"name": "amount", "min_count": 2}]},
            failed("hard requirement not met: needs 2 x column 'amount', found 1"),
        ),
    ],
)
def test_hard_requirements(requires: dict[str, Any], outcome: Failed | None) -> None:
    assert preflight(spec(requires=requires), DATASET) == outcome


def test_applicability_ends_na_naming_what_was_checked() -> None:
    assert preflight(spec(applies_when={"columns": [{"role": "timestamp"}]}), DATASET) == Na(
        reason_code="NOT_APPLICABLE",
        explanation="Does not apply to this dataset: needs role 'timestamp', found 0.",
        checked=("role 'timestamp'",),
    )
    assert preflight(
        spec(
            applies_when={"columns": [{"event_role": "case", "name": "id", "role": "identifier"}]}
        ),
        DATASET,
    ) == Na(
        reason_code="NOT_APPLICABLE",
        explanation="Does not apply to this dataset: no column has the event-log role 'case'.",
        checked=("column 'id' with role 'identifier' with event-log role 'case'",),
    )
    assert preflight(spec(applies_when={"min_rows": 101}), DATASET) == Na(
        reason_code="INSUFFICIENT_DATA",
        explanation="Needs at least 101 rows to be meaningful; the dataset has 100.",
        checked=("row count",),
    )
    assert preflight(spec(applies_when={"min_rows": 100}), DATASET) is None
    # A hard requirement is checked before applicability.
    both = spec(requires={"min_rows": 500}, applies_when={"min_rows": 500})
    assert preflight(both, DATASET) == failed(
        "needs at least 500 rows, dataset has 100", "PREFLIGHT_TOO_FEW_ROWS"
    )


@pytest.mark.parametrize("mode", ["sql", "batched", "bounded", "unbounded"])
def test_only_unbounded_plugins_are_refused_above_the_threshold(mode: str) -> None:
    plugin = spec(data_access=mode)
    assert preflight(plugin, DATASET, large_dataset_rows=100) is None  # not above it
    expected = (
        failed(
            "dataset has 100 rows, above the large-dataset threshold of 99, and the plugin "
            "declares data_access 'unbounded' (no sql, batched or bounded path)",
            "LARGE_DATASET_UNBOUNDED",
        )
        if mode == "unbounded"
        else None
    )
    assert preflight(plugin, DATASET, large_dataset_rows=99) == expected
    assert preflight(plugin, DATASET) is None  # the default threshold is 1,000,000
    at = msgspec.structs.replace(DATASET, rows=1_000_000)
    above = msgspec.structs.replace(DATASET, rows=1_000_001)
    assert preflight(plugin, at) is None
    assert (preflight(plugin, above) is None) == (mode != "unbounded")


SEMANTIC = DatasetInfo(
    source="d.csv",
    fingerprint="f",
    rows=100,
    columns=(
        ColumnInfo(name="amount", dtype="DOUBLE", role="numeric", semantic="quantity"),
        ColumnInfo(name="cost", dtype="DOUBLE", role="numeric", semantic="count"),
        ColumnInfo(name="process", dtype="VARCHAR", role="categorical"),
        ColumnInfo(name="started", dtype="TIMESTAMP", role="timestamp", semantic="timestamp"),
    ),
    event_roles={"process": "process", "started": "started", "ended": "gone"},
)


@pytest.mark.parametrize(
    ("requires", "outcome"),
    [
        ({"columns": [{"semantic": ["quantity"]}]}, None),
        ({"columns": [{"semantic": ["quantity", "count"], "min_count": 2}]}, None),
        (
            {"columns": [{"semantic": ["quantity", "share"], "min_count": 2}]},
            failed("hard requirement not met: needs 2 x semantic 'quantity' or 'share', found 1"),
        ),
        (
            {"columns": [{"semantic": ["identifier"]}]},
            failed("hard requirement not met: needs semantic 'identifier', found 0"),
        ),
        (
            {"columns": [{"name": "cost", "semantic": ["quantity"]}]},
            failed("hard requirement not met: column 'cost' has semantic 'count'"),
        ),
        ({"columns": [{"event_role": "started", "semantic": ["timestamp"]}]}, None),
        (
            {"columns": [{"event_role": "started", "semantic": ["quantity"]}]},
            failed(
                "hard requirement not met: event-log role 'started' is 'started', "
                "whose semantic is 'timestamp'"
            ),
        ),
        (
            # A text column has no semantic: it never meets a semantic requirement.
            {"columns": [{"event_role": "process", "semantic": ["identifier"]}]},
            failed(
                "hard requirement not met: event-log role 'process' is 'process', "
                "whose semantic is None"
            ),
        ),
        (
            # A role naming a column the schema does not hold reads as no semantic.
            {"columns": [{"event_role": "ended", "semantic": ["timestamp"]}]},
            failed(
                "hard requirement not met: event-log role 'ended' is 'gone', whose semantic is None"
            ),
        ),
        ({"columns": [{"event_role": "ended"}]}, None),
    ],
)
def test_semantic_requirements(requires: dict[str, Any], outcome: Failed | None) -> None:
    assert preflight(spec(requires=requires), SEMANTIC) == outcome
