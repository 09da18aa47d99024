"""Generated JSON Schemas match the committed ones; wire types round-trip."""

from __future__ import annotations

from typing import get_args

import msgspec
import pytest
import yaml
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
from contracts.manifest import (
    AppliesWhen,
    ColumnRequirement,
    ColumnRole,
    DataAccessMode,
    EventRole,
    Requires,
    SettingSpec,
)
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


ids = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
column_requirements = st.builds(
    ColumnRequirement,
    name=st.none() | text,
    role=st.none() | st.sampled_from(get_args(ColumnRole)),
    event_role=st.none() | st.sampled_from(get_args(EventRole)),
    min_count=st.integers(0, 5),
)
setting_specs = st.one_of(
    st.builds(
        SettingSpec,
        type=st.just("int"),
        default=st.integers(-100, 100),
        minimum=st.none() | st.floats(-1e3, 0),
        maximum=st.none() | st.floats(100, 1e3),
    ),
    st.builds(
        SettingSpec, type=st.just("float"), default=st.floats(allow_nan=False, allow_infinity=False)
    ),
    st.builds(
        SettingSpec,
        type=st.just("str"),
        default=text,
        choices=st.lists(text, max_size=3).map(tuple),
        description=text,
    ),
    st.builds(SettingSpec, type=st.just("bool"), default=st.booleans()),
)
manifests = st.builds(
    Manifest,
    id=ids,
    version=text,
    lane=st.sampled_from(["decision", "explanation"]),
    entrypoint=st.sampled_from(["plugin:run", "pkg.mod:main"]),
    description=text,
    decision_capable=st.booleans(),
    diagnostic_only=st.booleans(),
    requires_downstream_mapping=st.booleans(),
    depends_on=st.lists(ids, max_size=3).map(tuple),
    downstream=st.lists(ids, max_size=3).map(tuple),
    requires=st.builds(
        Requires,
        columns=st.lists(column_requirements, max_size=2).map(tuple),
        min_rows=st.integers(0, 10**6),
    ),
    applies_when=st.builds(
        AppliesWhen,
        columns=st.lists(column_requirements, max_size=2).map(tuple),
        min_rows=st.integers(0, 10**6),
    ),
    data_access=st.sampled_from(get_args(DataAccessMode)),
    settings=st.dictionaries(ids, setting_specs, max_size=3),
    finding_kinds=st.lists(text, max_size=3).map(tuple),
    timeout_s=st.floats(0.001, 1e5),
)


@settings(max_examples=150, deadline=None)
@given(manifests)
def test_valid_manifests_round_trip_through_yaml(manifest: Manifest) -> None:
    """Every manifest built field by field survives what a plugin.yaml goes through:
    builtins, YAML text, ``yaml.safe_load`` and the strict decode."""
    document = yaml.safe_dump(msgspec.to_builtins(manifest), sort_keys=True)
    assert msgspec.convert(yaml.safe_load(document), Manifest) == manifest


FIELD_TYPES = {
    "id": "str",
    "version": "str",
    "lane": "str",
    "timeout_s": "float",
    "depends_on": "array",
    "decision_capable": "bool",
}


@settings(max_examples=150, deadline=None)
@given(
    manifests,
    st.sampled_from(sorted(FIELD_TYPES)),
    st.one_of(st.integers(-5, 5).map(lambda i: {"n": i}), st.just([[1]])),
)
def test_an_ill_typed_field_is_refused_naming_its_path(
    manifest: Manifest, name: str, bad: object
) -> None:
    raw = msgspec.to_builtins(manifest)
    raw[name] = bad
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert(raw, Manifest)
    expected = "object" if isinstance(bad, dict) else "array"
    if FIELD_TYPES[name] == "array" and isinstance(bad, list):
        assert str(info.value) == "Expected `str`, got `array` - at `$.depends_on[0]`"
    else:
        assert str(info.value).startswith(f"Expected `{FIELD_TYPES[name]}")
        assert str(info.value).endswith(f", got `{expected}` - at `$.{name}`")


@settings(max_examples=100, deadline=None)
@given(
    manifests,
    st.from_regex(r"[a-z]{1,8}", fullmatch=True).filter(
        lambda k: k not in Manifest.__struct_fields__
    ),
)
def test_an_unknown_key_is_refused(manifest: Manifest, key: str) -> None:
    raw = {**msgspec.to_builtins(manifest), key: 1}
    with pytest.raises(msgspec.ValidationError, match=rf"^Object contains unknown field `{key}`$"):
        msgspec.convert(raw, Manifest)


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
