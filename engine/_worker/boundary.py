"""The output boundary: what a plugin hands back, checked and normalized once.

Every executor runs plugins through :func:`engine._worker.run.execute_job`, which
passes the plugin's return value and its spans through this module before anything
is encoded, so a return value can neither kill a worker nor reach the event log in a
form the log cannot hold. What cannot be represented ends the plugin
``failed``/``INVALID_RESULT`` with the path of the offending value
(``$.metrics.big: integer 1180591620717411303424 does not fit in 64 bits``).

The rules (also in docs/contracts.md, "The output boundary"):

- numpy scalars become Python numbers, bools and strings; numpy arrays become lists
  (their items then follow the same rules); subclasses of int, float and str (an
  ``IntEnum``, ``numpy.str_``) become the plain type; tuples become lists.
- Integers must fit in 64 bits (``-2**63`` to ``2**64 - 1``).
- NaN and infinity are **refused**: JSON has no spelling for them, and a silent
  ``null`` would be a different answer. Return ``None`` for an undefined value.
- Mapping keys must be strings. Sets (no order), bytes, dates and times (send an
  ISO 8601 string), complex numbers and any other object are refused.
- Nesting deeper than :data:`MAX_DEPTH` and results larger than
  :data:`MAX_RESULT_BYTES` (encoded) are refused.
- Span attributes must be strings, numbers or bools (OpenTelemetry's scalar types);
  an integer one must fit OpenTelemetry's signed 64 bits (up to ``2**63 - 1``).
- Every name in ``ok(artifacts=[...])`` must be a file the plugin wrote in its
  artifacts directory.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec
import numpy as np

from contracts import Failed, Finding, Na, Ok, PluginResult, chart_problem, is_registered
from contracts.dataset import SpanRecord
from contracts.reasons import ENGINE_ONLY

MAX_DEPTH = 64
"""Deepest nesting of lists and mappings a result may have."""
MAX_RESULT_BYTES = 16 * 1024 * 1024
"""Largest encoded result: it becomes one record of the event log. Large data
belongs in an artifact file."""
MAX_MESSAGE_CHARS = 4_000
MAX_TRACEBACK_CHARS = 64_000
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
SPAN_INT_MAX = 2**63 - 1  # OpenTelemetry's AnyValue.int_value is an int64

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESULT_ENCODER = msgspec.msgpack.Encoder()


class Refused(Exception):
    """A value that cannot cross the boundary, and where it is."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if _IDENT.match(key) else f"{path}[{key!r}]"


def plain(value: Any, path: str = "$", depth: int = 0) -> Any:
    """``value`` as JSON-ready builtins under the rules above, or :class:`Refused`."""
    kind = type(value)
    # The common types first, by exact type: this runs on every value of a result.
    if value is None or kind is bool or kind is str:
        if kind is str and not value.isascii():
            _check_unicode(value, path)
        return value
    if kind is int:
        if not INT_MIN <= value <= INT_MAX:
            raise Refused(path, f"integer {value} does not fit in 64 bits")
        return value
    if kind is float:
        if not math.isfinite(value):
            raise Refused(path, f"{value} is not allowed (return None for an undefined value)")
        return value
    if depth >= MAX_DEPTH:
        raise Refused(path, f"nested more than {MAX_DEPTH} levels deep")
    if kind is dict:
        return _mapping(value, path, depth)
    if kind is list or kind is tuple:
        return [plain(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    return _other(value, path, depth)


def _mapping(value: Mapping[Any, Any], path: str, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(key, np.str_):
            key = str(key)
        if type(key) is not str:
            raise Refused(path, f"key {key!r} is a {type(key).__name__}; keys must be strings")
        out[key] = plain(item, _key_path(path, key), depth + 1)
    return out


def _other(value: Any, path: str, depth: int) -> Any:
    """The slower cases: numpy, subclasses, Structs, and what is refused."""
    if isinstance(value, np.ndarray):
        return plain(value.tolist(), path, depth)
    if isinstance(value, np.datetime64 | np.timedelta64):
        raise Refused(path, "a numpy date/time cannot be represented; send an ISO 8601 string")
    if isinstance(value, np.generic):
        item = value.item()
        if isinstance(item, np.generic | bytes | complex):
            raise Refused(path, f"cannot represent a numpy {type(value).__name__}")
        return plain(item, path, depth)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return plain(int(value), path, depth)
    if isinstance(value, float):
        return plain(float(value), path, depth)
    if isinstance(value, str):
        return plain(str(value), path, depth)
    if isinstance(value, msgspec.Struct):
        return _struct(value, path, depth)
    if isinstance(value, Mapping):
        return _mapping(value, path, depth)
    if isinstance(value, set | frozenset):
        raise Refused(path, "a set has no order; return a sorted list")
    if isinstance(value, bytes | bytearray | memoryview):
        raise Refused(path, "bytes cannot be represented; write them to an artifact file")
    if isinstance(value, _dt.date | _dt.time | _dt.timedelta):
        raise Refused(path, f"a {type(value).__name__} cannot be represented; send an ISO string")
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [plain(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    raise Refused(path, f"cannot represent a {type(value).__name__}")


def _struct(value: msgspec.Struct, path: str, depth: int) -> dict[str, Any]:
    config = value.__struct_config__
    out: dict[str, Any] = {}
    if isinstance(config.tag_field, str):
        out[config.tag_field] = config.tag
    for name in value.__struct_fields__:
        out[name] = plain(getattr(value, name), f"{path}.{name}", depth + 1)
    return out


def _check_unicode(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Refused(path, f"not valid Unicode ({exc.reason} at index {exc.start})") from None


def _qualified(exc: msgspec.ValidationError) -> str:
    """msgspec says ``Expected ... - at `$.x```; lead with the path instead."""
    message = str(exc)
    match = re.search(r" - at `(\$[^`]*)`$", message)
    if match:
        return f"{match.group(1)}: {message[: match.start()]}"
    return f"$: {message}"


def safe_str(obj: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``str(obj)`` that cannot raise and is bounded (plugins raise odd things)."""
    try:
        text = str(obj)
    except Exception as exc:  # an exception whose __str__ raises
        text = f"<unprintable {type(obj).__name__}: {type(exc).__name__}>"
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 15] + "... (truncated)"


def failure(code: str, exc: BaseException | None = None, message: str = "") -> Failed:
    """A ``Failed`` result, with the exception's type, message and traceback."""
    if exc is None:
        return Failed(reason_code=code, message=safe_str(message))
    try:
        trace = "".join(traceback.format_exception(exc))
    except Exception:
        trace = "<traceback could not be formatted>"
    return Failed(
        reason_code=code,
        error_type=safe_str(type(exc).__name__, 200),
        message=safe_str(message or safe_str(exc)),
        traceback=safe_str(trace, MAX_TRACEBACK_CHARS),
    )


def check_result(plugin_id: str, value: Any, artifacts_dir: Path | None = None) -> PluginResult:
    """What a plugin returned, as a valid result, or ``Failed`` saying why not."""
    if not isinstance(value, Ok | Na):
        return failure(
            "INVALID_RESULT",
            message=f"plugin returned {type(value).__name__}; expected ok(...) or na(...)",
        )
    try:
        checked = msgspec.convert(plain(value), type=PluginResult)
    except Refused as exc:
        return failure("INVALID_RESULT", message=f"result does not fit the contract: {exc}")
    except msgspec.ValidationError as exc:
        return failure(
            "INVALID_RESULT", message=f"result does not fit the contract: {_qualified(exc)}"
        )
    size = len(_RESULT_ENCODER.encode(checked))
    if size > MAX_RESULT_BYTES:
        return failure(
            "INVALID_RESULT",
            message=f"result is {size} bytes, above the {MAX_RESULT_BYTES}-byte limit; "
            "write large data to an artifact file",
        )
    if isinstance(checked, Na):
        if checked.reason_code in ENGINE_ONLY:
            return failure(
                "INVALID_RESULT",
                message=f"na reason code {checked.reason_code!r} is reserved for the engine",
            )
        if not is_registered(checked.reason_code, "na"):
            return failure(
                "UNKNOWN_REASON_CODE",
                message=f"na reason code {checked.reason_code!r} is not a registered na code",
            )
        return checked
    assert isinstance(checked, Ok)
    problems = [p for f in checked.findings if (p := finding_problem(f))]
    if problems:
        return failure("INVALID_FINDING", message="; ".join(problems))
    problems = artifact_problems(checked.artifacts, artifacts_dir)
    if problems:
        return failure("INVALID_RESULT", message="; ".join(problems))
    return msgspec.structs.replace(
        checked, findings=tuple(f.stamped(plugin_id) for f in checked.findings)
    )


def finding_problem(finding: Finding) -> str | None:
    """Structural breaches of the finding contract (kind checks are quality gates)."""
    if not 0.0 <= finding.confidence <= 1.0:
        return f"finding {finding.kind!r}: confidence {finding.confidence} is outside [0, 1]"
    if finding.measurement == "modeled" and (
        finding.impact is None or not finding.impact.assumptions
    ):
        return f"finding {finding.kind!r}: a modeled finding needs an impact with assumptions"
    if not finding.title.strip():
        return f"finding {finding.kind!r}: title must not be blank"
    for index, chart in enumerate(finding.charts):
        if problem := chart_problem(chart):
            return f"finding {finding.kind!r}: charts[{index}] ({chart.title!r}): {problem}"
    return None


def artifact_problems(names: Sequence[str], artifacts_dir: Path | None) -> list[str]:
    """Names in ``ok(artifacts=...)`` that are not files the plugin wrote."""
    problems = []
    for i, name in enumerate(names):
        where = f"$.artifacts[{i}]"
        parts = PurePosixPath(name).parts
        if not name or name.startswith("/") or "\\" in name or ".." in parts:
            problems.append(f"{where}: {name!r} must be a relative path inside the artifacts dir")
        elif artifacts_dir is None or not (artifacts_dir / name).is_file():
            problems.append(f"{where}: {name!r} is not a file in the plugin's artifacts dir")
    return problems


def check_spans(spans: Sequence[SpanRecord]) -> tuple[tuple[SpanRecord, ...], Refused | None]:
    """The plugin's spans with plain attribute values, or the first refusal."""
    out = []
    for i, span in enumerate(sorted(spans, key=lambda s: s.index)):
        attributes = {}
        for key, value in span.attributes.items():
            path = _key_path(f"$.spans[{i}].attributes", str(key))
            if type(key) is not str:
                return (), Refused(path, "attribute names must be strings")
            if value is None:
                return (), Refused(path, "a span attribute cannot be None")
            try:
                clean = plain(value, path)
            except Refused as exc:
                return (), exc
            if not isinstance(clean, str | int | float | bool):
                return (), Refused(
                    path, f"a span attribute must be a scalar, got {type(value).__name__}"
                )
            if type(clean) is int and clean > SPAN_INT_MAX:
                return (), Refused(
                    path,
                    f"integer {clean} does not fit a span attribute's signed 64 bits "
                    "(send it as a string)",
                )
            attributes[key] = clean
        out.append(msgspec.structs.replace(span, attributes=attributes))
    return tuple(out), None
