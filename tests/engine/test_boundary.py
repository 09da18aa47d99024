"""The output boundary: whatever a plugin returns, no worker and no engine dies, and
what cannot be represented ends failed/INVALID_RESULT naming the value's path."""

from __future__ import annotations

import enum
import math
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import Evidence, Failed, Finding, Ok, PluginResult, na, ok
from contracts.dataset import SpanRecord
from contracts.events import PluginSpan, RunFinished
from engine import Engine, read_log
from engine._worker.boundary import (
    MAX_DEPTH,
    Refused,
    check_result,
    check_spans,
    plain,
    safe_str,
)

from .conftest import MakePlugin

RESULT = msgspec.json.Decoder(PluginResult)


class Colour(enum.IntEnum):
    RED = 1


def message(result: PluginResult) -> str:
    assert isinstance(result, Failed), result
    return f"{result.reason_code} {result.message}"


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.int64(3), 3),
        (np.float32(0.5), 0.5),
        (np.bool_(True), True),
        (np.str_("x"), "x"),
        (np.array([1, 2, 3]), [1, 2, 3]),
        (np.array([[1.5], [2.5]]), [[1.5], [2.5]]),
        (Colour.RED, 1),
        ((1, (2, 3)), [1, [2, 3]]),
        ({"a": np.int8(-1)}, {"a": -1}),
        (2**64 - 1, 2**64 - 1),
        (-(2**63), -(2**63)),
        ("héllo", "héllo"),
    ],
)
def test_plain_values_are_normalized(value: Any, expected: Any) -> None:
    got = plain(value)
    assert got == expected
    assert type(got) is type(expected)


@pytest.mark.parametrize(
    ("value", "path", "words"),
    [
        ({"big": 2**70}, "$.metrics.big", "does not fit in 64 bits"),
        ({"r": math.nan}, "$.metrics.r", "nan is not allowed"),
        ({"r": np.float64("inf")}, "$.metrics.r", "inf is not allowed"),
        ({"xs": [1, -math.inf]}, "$.metrics.xs[1]", "-inf is not allowed"),
        ({"s": {1, 2}}, "$.metrics.s", "a set has no order"),
        ({"b": b"raw"}, "$.metrics.b", "bytes cannot be represented"),
        ({"o": object()}, "$.metrics.o", "cannot represent a object"),
        ({"odd key": {2: "x"}}, "$.metrics['odd key']", "key 2 is a int"),
        ({"t": np.datetime64("2024-01-01")}, "$.metrics.t", "numpy date/time"),
        ({"c": 1 + 2j}, "$.metrics.c", "cannot represent a complex"),
        ({"u": "\ud800"}, "$.metrics.u", "not valid Unicode"),
        ({"a": np.array([1.0, np.nan])}, "$.metrics.a[1]", "nan is not allowed"),
    ],
)
def test_unrepresentable_values_are_refused_with_their_path(
    value: dict[str, Any], path: str, words: str
) -> None:
    with pytest.raises(Refused) as caught:
        plain(value, "$.metrics")
    assert caught.value.path == path
    assert words in caught.value.message
    result = check_result("p", ok(metrics=value))
    assert message(result) == f"INVALID_RESULT result does not fit the contract: {caught.value}"


def test_depth_is_bounded() -> None:
    deep: Any = 1
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(Refused, match=f"nested more than {MAX_DEPTH} levels"):
        plain(deep)


def test_findings_are_walked_and_validated_with_paths() -> None:
    bad_type = Finding(kind="k", title="t", confidence="high")  # type: ignore[arg-type]
    assert message(check_result("p", ok(findings=[bad_type]))) == (
        "INVALID_RESULT result does not fit the contract: "
        "$.findings[0].confidence: Expected `float`, got `str`"
    )
    nan_metric = Finding(kind="k", title="t", evidence=Evidence(metrics={"p_value": math.nan}))
    assert "$.findings[0].evidence.metrics.p_value: nan is not allowed" in message(
        check_result("p", ok(findings=[nan_metric]))
    )
    numpy_ok = Finding(
        kind="k", title="t", confidence=np.float64(0.5), evidence=Evidence(rows=np.int64(7))
    )
    checked = check_result("p", ok(findings=[numpy_ok]))
    assert isinstance(checked, Ok)
    assert checked.findings[0].confidence == 0.5 and checked.findings[0].evidence.rows == 7
    assert type(checked.findings[0].evidence.rows) is int


def test_the_invalid_result_table() -> None:
    assert message(check_result("p", 42)) == (
        "INVALID_RESULT plugin returned int; expected ok(...) or na(...)"
    )
    assert message(check_result("p", {"status": "ok"})).startswith(
        "INVALID_RESULT plugin returned dict"
    )
    assert message(check_result("p", na("MADE_UP", "x"))) == (
        "UNKNOWN_REASON_CODE na reason code 'MADE_UP' is not a registered na code"
    )
    assert message(check_result("p", na("UPSTREAM_FAILED", "x"))) == (
        "INVALID_RESULT na reason code 'UPSTREAM_FAILED' is reserved for the engine"
    )
    assert message(check_result("p", ok(findings=[Finding(kind="k", title=" ")]))) == (
        "INVALID_FINDING finding 'k': title must not be blank"
    )
    assert message(
        check_result("p", ok(findings=[Finding(kind="k", title="t", confidence=2)]))
    ) == ("INVALID_FINDING finding 'k': confidence 2.0 is outside [0, 1]")
    modeled = Finding(kind="k", title="t", measurement="modeled")
    assert "a modeled finding needs an impact" in message(check_result("p", ok(findings=[modeled])))


def test_artifacts_must_be_files_the_plugin_wrote(tmp_path: Path) -> None:
    (tmp_path / "plot.svg").write_text("<svg/>")
    assert isinstance(check_result("p", ok(artifacts=["plot.svg"]), tmp_path), Ok)
    assert message(check_result("p", ok(artifacts=["missing.svg"]), tmp_path)) == (
        "INVALID_RESULT $.artifacts[0]: 'missing.svg' is not a file in the plugin's artifacts dir"
    )
    assert "must be a relative path" in message(
        check_result("p", ok(artifacts=["../escape"]), tmp_path)
    )


def test_results_too_large_for_the_log_are_refused() -> None:
    result = check_result("p", ok(metrics={"blob": "x" * (17 * 1024 * 1024)}))
    assert "above the 16777216-byte limit" in message(result)


def test_span_attributes() -> None:
    spans = [
        SpanRecord(
            index=0,
            parent=-1,
            name="s",
            start_wall=1.0,
            end_wall=2.0,
            attributes={"n": np.int64(3), "ok": np.bool_(False)},
        ),  # type: ignore[dict-item]
    ]
    clean, refused = check_spans(spans)
    assert refused is None
    assert clean[0].attributes == {"n": 3, "ok": False}
    assert type(clean[0].attributes["n"]) is int
    bad = [msgspec.structs.replace(spans[0], attributes={"xs": [1, 2]})]  # type: ignore[dict-item]
    _, refused = check_spans(bad)
    assert str(refused) == "$.spans[0].attributes.xs: a span attribute must be a scalar, got list"
    # OpenTelemetry's integers are signed 64-bit: 2**63 fits a result, not a span
    edge = [msgspec.structs.replace(spans[0], attributes={"n": 2**63 - 1, "m": -(2**63)})]
    clean, refused = check_spans(edge)
    assert refused is None and clean[0].attributes == {"n": 2**63 - 1, "m": -(2**63)}
    over = [msgspec.structs.replace(spans[0], attributes={"n": 2**63})]
    _, refused = check_spans(over)
    assert str(refused) == (
        "$.spans[0].attributes.n: integer 9223372036854775808 does not fit a span "
        "attribute's signed 64 bits (send it as a string)"
    )


def test_safe_str_survives_hostile_exceptions() -> None:
    class Nasty(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert safe_str(Nasty()) == "<unprintable Nasty: RuntimeError>"
    assert safe_str("x" * 10_000).endswith("... (truncated)")


# --------------------------------------------------------------------------- property

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.integers(-100, 100).map(np.int64),
    st.floats(allow_nan=True, width=32).map(np.float32),
    st.binary(max_size=3),
    st.builds(object),
    st.sets(st.integers(0, 3), max_size=2),
    st.complex_numbers(max_magnitude=2),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=3), st.integers(0, 3)), inner, max_size=3),
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(metrics=st.dictionaries(st.text(max_size=4), values, max_size=4), attr=values)
def test_any_return_value_gives_a_valid_encodable_result_or_a_pathed_refusal(
    metrics: dict[str, Any], attr: Any
) -> None:
    for value in (ok(metrics=metrics), na("NO_SIGNIFICANT_EFFECT", "x", metrics=metrics)):
        result = check_result("p", value)
        # Whatever it is, it encodes and decodes to itself (no NaN, no overflow).
        assert RESULT.decode(msgspec.json.encode(result)) == result
        if isinstance(result, Failed):
            assert result.reason_code == "INVALID_RESULT"
            assert result.message.startswith("result does not fit the contract: $.metrics")
        else:  # accepted: the same result, every value plain
            assert type(result) is type(value)
            assert result.metrics == plain(metrics)
    span = SpanRecord(
        index=0, parent=-1, name="s", start_wall=0.0, end_wall=1.0, attributes={"a": attr}
    )
    clean, refused = check_spans([span])
    if refused is None:
        assert msgspec.msgpack.decode(msgspec.msgpack.encode(clean[0]), type=SpanRecord) == clean[0]
    else:
        assert refused.path.startswith("$.spans[0].attributes.a")


# ----------------------------------------------------------------------- through runs

NUMPY_AND_HUGE = """
import numpy as np
from contracts import Finding, Evidence, ok

def run(ctx):
    with ctx.span("step", n=np.int64(3), share=np.float64(0.25)):
        pass
    return ok(findings=[Finding(kind="{pid}_kind", title="t", target="x", recommendation="r",
                                confidence=np.float64(0.9),
                                evidence=Evidence(metrics={{"n": np.int64(4)}}))],
              metrics={{"mean": np.float64(1.5), "counts": np.array([1, 2])}})
"""
BIG = "from contracts import ok\ndef run(ctx):\n    return ok(metrics={'big': 2**70})\n"
NAN = "from contracts import ok\ndef run(ctx):\n    return ok(metrics={'r': float('nan')})\n"
BAD_SPAN = """
from contracts import ok
def run(ctx):
    with ctx.span("step", what=object()):
        pass
    return ok(metrics={"fine": 1})
"""
GARBAGE = "def run(ctx):\n    return {'status': 'ok'}\n"
EXITS = "def run(ctx):\n    raise SystemExit(4)\n"
BASE_EXCEPTION = """
class Odd(BaseException):
    pass
def run(ctx):
    raise Odd("odd")
"""
BROKEN_IMPORT = "raise RuntimeError('at import')\ndef run(ctx):\n    pass\n"


@pytest.mark.anyio
@pytest.mark.parametrize("executor", ["process", "inline"])
async def test_plugin_return_values_never_kill_a_worker_or_the_engine(
    executor: str, make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("numpyish", code=NUMPY_AND_HUGE.format(pid="numpyish"))
    for pid, code in [
        ("big", BIG),
        ("nan", NAN),
        ("badspan", BAD_SPAN),
        ("garbage", GARBAGE),
        ("exits", EXITS),
        ("odd", BASE_EXCEPTION),
        ("broken", BROKEN_IMPORT),
    ]:
        make_plugin(pid, code=code)
    async with Engine(
        plugins_dir=plugins_dir, runs_dir=tmp_path / "r", executor=executor, workers=1
    ) as engine:
        result = await engine.run(dataset)
        pool = engine.executor
        replaced = getattr(pool, "replacements", 0)
    outcome = {p.id: (p.status, p.reason_code, p.explanation) for p in result.report.plugins}
    assert outcome["numpyish"][:2] == ("ok", None)
    assert outcome["big"] == (
        "failed",
        "INVALID_RESULT",
        "result does not fit the contract: "
        "$.metrics.big: integer 1180591620717411303424 does not fit in 64 bits",
    )
    assert outcome["nan"][:2] == ("failed", "INVALID_RESULT")
    assert "$.metrics.r: nan is not allowed" in outcome["nan"][2]
    assert outcome["badspan"][:2] == ("failed", "INVALID_RESULT")
    assert "$.spans[0].attributes.what: cannot represent a object" in outcome["badspan"][2]
    assert outcome["garbage"][:2] == ("failed", "INVALID_RESULT")
    assert outcome["exits"][:2] == ("failed", "PLUGIN_ERROR")
    assert outcome["odd"][:2] == ("failed", "PLUGIN_ERROR")
    assert outcome["broken"][:2] == ("failed", "IMPORT_ERROR")
    assert replaced == 0  # no worker died for any of it
    numpyish = next(p for p in result.report.plugins if p.id == "numpyish")
    assert numpyish.metrics == {"mean": 1.5, "counts": [1, 2]}
    assert numpyish.findings[0].evidence.metrics == {"n": 4}
    events = read_log(result.run_dir / "events.jsonl")
    assert isinstance(events[-1], RunFinished)
    spans = [e.span for e in events if isinstance(e, PluginSpan) and e.plugin_id == "numpyish"]
    assert [s.attributes for s in spans] == [{"n": 3, "share": 0.25}]
