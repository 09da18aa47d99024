"""Every wire type round-trips through JSON and msgpack: events, Plan, Job,
JobOutput and the worker frames included.

Strategies are built from each Struct's own type information
(``msgspec.inspect``), so a field added later is covered without editing this file,
and a type nobody listed is found by walking the subclasses.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import contracts
from contracts._base import StrictWire, Wire
from contracts.events import EVENT_TYPES
from engine._core.cache import CachedResult
from engine._worker import job as job_module


def _all_structs() -> list[type[msgspec.Struct]]:
    for info in pkgutil.iter_modules(contracts.__path__):
        importlib.import_module(f"contracts.{info.name}")
    found: dict[str, type[msgspec.Struct]] = {}
    todo: list[type[msgspec.Struct]] = [Wire, StrictWire, *EVENT_TYPES]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            todo.append(sub)
        if cls not in (Wire, StrictWire) and not cls.__name__.startswith("_"):
            found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[k] for k in sorted(found)]


WIRE_TYPES = _all_structs()

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def strategy(t: mi.Type, depth: int = 0) -> st.SearchStrategy[Any]:
    if isinstance(t, mi.AnyType):
        return json_values
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.IntType):
        lo = t.ge if t.ge is not None else -(2**63)
        return st.integers(min_value=lo, max_value=2**63 - 1)
    if isinstance(t, mi.FloatType):
        return st.floats(allow_nan=False, allow_infinity=False)
    if isinstance(t, mi.StrType):
        return st.text(max_size=12)
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.UnionType):
        return st.one_of(*(strategy(u, depth) for u in t.types))
    size = 0 if depth > 3 else 3
    if isinstance(t, mi.ListType):
        return st.lists(strategy(t.item_type, depth + 1), max_size=size)
    if isinstance(t, mi.VarTupleType):
        return st.lists(strategy(t.item_type, depth + 1), max_size=size).map(tuple)
    if isinstance(t, mi.TupleType):
        return st.tuples(*(strategy(i, depth + 1) for i in t.item_types))
    if isinstance(t, mi.DictType):
        return st.dictionaries(
            strategy(t.key_type, depth + 1), strategy(t.value_type, depth + 1), max_size=size
        )
    if isinstance(t, mi.StructType):
        fields = {}
        for f in t.fields:
            value = strategy(f.type, depth + 1)
            if not f.required and depth > 2:
                continue  # keep deep values small: defaults stand in
            fields[f.name] = value
        return st.builds(t.cls, **fields)
    raise NotImplementedError(f"no strategy for {t!r}")


def of(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    return strategy(mi.type_info(cls))


def test_every_kind_of_wire_type_is_covered() -> None:
    names = {c.__name__ for c in WIRE_TYPES}
    # The ones the issue names, and the worker protocol, are among them.
    assert {"RunStarted", "PluginFinished", "Plan", "PlanStep", "Manifest", "Report"} <= names
    assert {"Job", "JobOutput", "RunJob", "CancelJob", "JobBegan", "JobEnded"} <= names
    assert set(EVENT_TYPES) <= set(WIRE_TYPES)
    assert {job_module.Job, job_module.JobOutput, CachedResult} <= set(WIRE_TYPES)


@pytest.mark.parametrize("cls", WIRE_TYPES, ids=lambda c: c.__name__)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_round_trip(cls: type[msgspec.Struct], data: st.DataObject) -> None:
    value = data.draw(of(cls))
    assert msgspec.json.decode(msgspec.json.encode(value), type=cls) == value
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(value), type=cls) == value
    # Deterministic encoding: the same value always gives the same bytes.
    assert contracts.canonical_json(value) == contracts.canonical_json(
        msgspec.json.decode(msgspec.json.encode(value), type=cls)
    )
