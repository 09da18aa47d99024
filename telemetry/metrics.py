"""Lane metrics: per-lane figures folded from the run state.

:func:`lane_metrics` is a pure function of the folded state (the engine's
``RunState``, or anything shaped like it: see :class:`RunView`), so the figures in
``run_manifest.json`` and ``report.json`` can be recomputed from the event log.

Definitions (per lane; every field is a number, never null):

- ``duration_s``: wall time from the lane's first dispatch to its last finish. A
  lane where nothing was dispatched (all cached, preflight-failed or
  upstream-failed) measures from its first terminal event; an empty lane is 0.0.
- ``ok``/``failed``/``na``: plugins by status (``failed`` is the fail count, ``na``
  the NA count); ``ran`` started in a worker in this run, ``cached`` came from the
  result cache (an earlier run's), ``preflight_failed`` and ``upstream_failed`` were
  resolved without starting.
- ``actionable_yield``: decision plugins with at least one finding that carries a
  non-empty recommendation, over decision plugins that ran (started, or whose
  result came from the cache). 0.0 when no decision plugin ran.
- ``downstream_utilization``: explanation plugins that are ``ok`` and consumed (named
  in their ``downstream``, or depended on) by at least one decision plugin that ran
  and ended ``ok`` or ``na``, over explanation plugins that are ``ok``. 0.0 when no
  explanation plugin is ok.
- ``cache_hit_rate``: hits over lookups; 0.0 when there were no lookups.
- silent-failure checks: ``plugins_without_terminal_state`` (no terminal event),
  ``na_without_reason`` (an ``na`` with a blank reason code or explanation),
  ``failed_without_reason`` (a ``failed`` with a blank reason code). All must be 0.

A plugin counts as a *decision* plugin when it is in the decision lane, or in the
legacy lane and declared ``lane: decision``; every other plugin is an explanation
plugin. Ratios carry their numerator and denominator beside them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import msgspec

from contracts import DataAccess, Failed, Na, Ok, PlanStep, PluginResult
from contracts.report import LaneMetrics

LANE_METRIC_FIELDS: tuple[str, ...] = tuple(LaneMetrics.__struct_fields__)
RATIO_FIELDS = ("actionable_yield", "downstream_utilization", "cache_hit_rate")


class PluginView(Protocol):
    """The parts of a plugin record the metrics read (``engine``'s ``PluginRecord``)."""

    @property
    def step(self) -> PlanStep: ...
    @property
    def result(self) -> PluginResult | None: ...
    @property
    def ran(self) -> bool: ...
    @property
    def preflight(self) -> bool: ...
    @property
    def cached(self) -> bool: ...
    @property
    def cache(self) -> str | None: ...
    @property
    def data_access(self) -> Sequence[DataAccess]: ...
    @property
    def dispatched_wall(self) -> float | None: ...
    @property
    def finished_wall(self) -> float | None: ...


class RunView(Protocol):
    """The parts of the run state the metrics read (``engine``'s ``RunState``)."""

    @property
    def plugins(self) -> Mapping[str, PluginView]: ...


def is_decision(step: PlanStep) -> bool:
    return step.lane == "decision" or (step.lane == "legacy" and step.manifest_lane == "decision")


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _executed(record: PluginView) -> bool:
    """Produced its result by running: now, or in the run whose result was reused."""
    return (record.ran or record.cached) and not record.preflight


def _actionable(result: PluginResult | None) -> bool:
    return isinstance(result, Ok) and any(f.recommendation.strip() for f in result.findings)


def _consumers(step: PlanStep) -> set[str]:
    return set(step.downstream) | set(step.dependents)


def lane_metrics(state: RunView) -> tuple[LaneMetrics, ...]:
    """Per-lane figures of a run state, lanes in name order."""
    plugins = state.plugins
    lanes: dict[str, list[PluginView]] = {}
    for record in sorted(plugins.values(), key=lambda r: r.step.order):
        lanes.setdefault(record.step.lane, []).append(record)

    def useful_consumer(pid: str) -> bool:
        consumer = plugins.get(pid)
        return (
            consumer is not None
            and is_decision(consumer.step)
            and _executed(consumer)
            and isinstance(consumer.result, Ok | Na)
        )

    out = []
    for _, members in sorted(lanes.items()):
        results = [r.result for r in members]
        dispatched = [r.dispatched_wall for r in members if r.dispatched_wall is not None]
        finished = [r.finished_wall for r in members if r.finished_wall is not None]
        begin = min(dispatched) if dispatched else (min(finished) if finished else 0.0)
        end = max(finished) if finished else begin
        decisions = [r for r in members if is_decision(r.step)]
        decisions_ran = [r for r in decisions if _executed(r)]
        explanations_ok = [
            r for r in members if not is_decision(r.step) and isinstance(r.result, Ok)
        ]
        consumed = [
            r for r in explanations_ok if any(useful_consumer(c) for c in _consumers(r.step))
        ]
        lookups = [r for r in members if r.cache is not None]
        hits = [r for r in lookups if r.cache == "hit"]
        actionable = [r for r in decisions_ran if _actionable(r.result)]
        out.append(
            LaneMetrics(
                lane=members[0].step.lane,
                plugins=len(members),
                ok=sum(isinstance(x, Ok) for x in results),
                failed=sum(isinstance(x, Failed) for x in results),
                na=sum(isinstance(x, Na) for x in results),
                ran=sum(r.ran and not r.cached for r in members),
                cached=sum(r.cached for r in members),
                preflight_failed=sum(r.preflight for r in members),
                upstream_failed=sum(
                    isinstance(r.result, Na)
                    and r.result.reason_code == "UPSTREAM_FAILED"
                    and not r.ran
                    for r in members
                ),
                findings=sum(len(x.findings) for x in results if isinstance(x, Ok)),
                rows_read=sum(a.rows for r in members for a in r.data_access),
                duration_s=round(max(end - begin, 0.0), 6),
                actionable_yield=_ratio(len(actionable), len(decisions_ran)),
                actionable_plugins=len(actionable),
                decision_plugins_ran=len(decisions_ran),
                downstream_utilization=_ratio(len(consumed), len(explanations_ok)),
                explanations_consumed=len(consumed),
                explanations_ok=len(explanations_ok),
                cache_hit_rate=_ratio(len(hits), len(lookups)),
                cache_hits=len(hits),
                cache_lookups=len(lookups),
                plugins_without_terminal_state=sum(x is None for x in results),
                na_without_reason=sum(
                    isinstance(x, Na) and not (x.reason_code.strip() and x.explanation.strip())
                    for x in results
                ),
                failed_without_reason=sum(
                    isinstance(x, Failed) and not x.reason_code.strip() for x in results
                ),
            )
        )
    return tuple(out)


# -- reading them back ---------------------------------------------------------------


def metric_problems(where: str, value: Any) -> list[str]:
    """What is missing or null in ``value``, the ``lane_metrics`` of a JSON artifact.

    A metric is a problem when its key is absent, it is null, or it is not a finite
    number; a missing or empty ``lane_metrics`` is a problem too.
    """
    if not isinstance(value, list | tuple) or not value:
        return [f"{where}: lane_metrics is missing or empty"]
    problems = []
    for index, lane in enumerate(value):
        if not isinstance(lane, dict):
            problems.append(f"{where}: lane_metrics[{index}] is not an object")
            continue
        name = lane.get("lane") or f"#{index}"
        if not isinstance(lane.get("lane"), str):
            problems.append(f"{where}: lane_metrics[{index}].lane is missing or null")
        for key in LANE_METRIC_FIELDS:
            if key == "lane":
                continue
            figure = lane.get(key)
            if key not in lane:
                problems.append(f"{where}: lane {name}: {key} is missing")
            elif figure is None:
                problems.append(f"{where}: lane {name}: {key} is null")
            elif (
                isinstance(figure, bool)
                or not isinstance(figure, int | float)
                or not math.isfinite(figure)
            ):
                problems.append(f"{where}: lane {name}: {key} is not a number ({figure!r})")
    return problems


def load_lane_metrics(path: str | Path) -> tuple[tuple[LaneMetrics, ...], list[str]]:
    """The ``lane_metrics`` of a ``report.json`` or ``run_manifest.json``, and the
    problems found (missing file, missing or null metrics); metrics are ``()`` when
    there are problems."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return (), [f"{path}: missing"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return (), [f"{path}: unreadable: {exc}"]
    value = data.get("lane_metrics") if isinstance(data, dict) else None
    problems = metric_problems(str(path), value)
    if problems:
        return (), problems
    try:
        return msgspec.convert(value, tuple[LaneMetrics, ...]), []
    except msgspec.ValidationError as exc:
        return (), [f"{path}: lane_metrics: {exc}"]


# -- OpenTelemetry metrics -----------------------------------------------------------


def export_lane_metrics(
    metrics: Sequence[LaneMetrics],
    endpoint: str,
    *,
    run_id: str = "",
    timeout_s: float = 10.0,
) -> bool:
    """Send the lane metrics as OpenTelemetry gauges over OTLP/HTTP (``/v1/metrics``).

    One gauge per figure (``engine.lane.<field>``), one point per lane, with the
    attributes ``lane`` and ``run.id``. Returns whether the export succeeded.
    """
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
    from opentelemetry.sdk.resources import Resource

    from .export import signal_endpoint
    from .records import SERVICE_NAME

    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource({"service.name": SERVICE_NAME, "service.instance.id": run_id}),
    )
    try:
        meter = provider.get_meter("two_lane_engine.telemetry")
        for name in LANE_METRIC_FIELDS:
            if name == "lane":
                continue
            gauge = meter.create_gauge(
                f"engine.lane.{name}", unit="s" if name == "duration_s" else "1"
            )
            for lane in metrics:
                gauge.set(getattr(lane, name), {"lane": lane.lane, "run.id": run_id})
        data = reader.get_metrics_data()
    finally:
        provider.shutdown()
    if data is None:
        return True
    exporter = OTLPMetricExporter(endpoint=signal_endpoint(endpoint, "metrics"), timeout=timeout_s)
    try:
        return exporter.export(data) is MetricExportResult.SUCCESS
    except Exception:  # telemetry never takes a run down; the caller reports False
        return False
    finally:
        exporter.shutdown()
