"""Generated JSON Schemas match the committed ones; wire types round-trip."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import (
    REASON_CODES,
    Evidence,
    Finding,
    Impact,
    Manifest,
    Na,
    Ok,
    is_registered,
    na,
    ok,
)
from contracts.events import EVENT_TYPES, event_tag
from contracts.results import PluginResult
from contracts.schema import SCHEMAS, load, render


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_committed_schema_matches_the_structs(name: str) -> None:
    from contracts.schema import SCHEMA_DIR

    committed = (SCHEMA_DIR / name).read_text(encoding="utf-8")
    assert committed == render(name), f"{name} drifted: run `python -m contracts`"
    assert load(name)["title"] == name.removesuffix(".schema.json")


def test_event_tags_are_unique_and_stable() -> None:
    tags = [event_tag(cls) for cls in EVENT_TYPES]
    assert len(tags) == len(set(tags))
    # Once written to disk a tag never changes meaning: these are on disk.
    assert tags[:8] == [
        "run_started",
        "plan_built",
        "preflight_failed",
        "plugin_dispatched",
        "plugin_started",
        "data_accessed",
        "plugin_finished",
        "run_finished",
    ]


def test_reason_registry() -> None:
    assert is_registered("NO_SIGNIFICANT_EFFECT", "na")
    assert not is_registered("NO_SIGNIFICANT_EFFECT", "failed")
    assert is_registered("UPSTREAM_FAILED", "na")
    assert all(r.meaning.strip() for r in REASON_CODES.values())
    assert "SKIPPED" not in REASON_CODES


text = st.text(max_size=20)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    text,
    st.floats(allow_nan=False, allow_infinity=False),
)
findings = st.builds(
    Finding,
    kind=text,
    title=text,
    severity=st.sampled_from(["info", "low", "medium", "high", "critical"]),
    confidence=st.floats(0, 1),
    what=text,
    why=text,
    recommendation=text,
    target=text,
    evidence=st.builds(
        Evidence,
        columns=st.lists(text).map(tuple),
        metrics=st.dictionaries(text, scalars, max_size=4),
        query=text,
        rows=st.none() | st.integers(0, 10**9),
    ),
    measurement=st.sampled_from(["measured", "modeled"]),
    impact=st.none()
    | st.builds(
        Impact,
        value=st.floats(allow_nan=False, allow_infinity=False),
        unit=text,
        assumptions=st.lists(text).map(tuple),
    ),
)
results = st.one_of(
    st.builds(
        ok,
        findings=st.lists(findings, max_size=3),
        metrics=st.dictionaries(text, scalars, max_size=4),
    ),
    st.builds(
        na,
        reason_code=st.sampled_from(sorted(REASON_CODES)),
        explanation=text,
        checked=st.lists(text, max_size=3),
    ),
)


@settings(max_examples=60, deadline=None)
@given(results)
def test_results_round_trip(result: Ok | Na) -> None:
    encoded = msgspec.json.encode(result)
    assert msgspec.json.decode(encoded, type=PluginResult) == result  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["id", "version", "lane", "color", "depends_on", "timeout_s"]),
        st.one_of(text, st.integers(), st.lists(text, max_size=2), st.none()),
    )
)
def test_manifest_decoding_only_raises_validation_errors(raw: dict[str, object]) -> None:
    try:
        manifest = msgspec.convert(raw, Manifest)
    except msgspec.ValidationError:
        return
    assert msgspec.convert(msgspec.to_builtins(manifest), Manifest) == manifest


def test_schema_descriptions_do_not_depend_on_the_docstring_rendering() -> None:
    # msgspec releases differ in whether they dedent docstrings; the committed
    # schemas must be the same whichever rendered them.
    from contracts.schema import _normalized

    dedented = {"description": "Title.\n\nBody line one\nline two", "x": [{"description": "a"}]}
    indented = {
        "description": "Title.\n\n    Body line one\n    line two",
        "x": [{"description": "a"}],
    }
    assert _normalized(indented) == _normalized(dedented) == dedented
