"""Synthetic operations event logs with planted, documented anomalies (``engine synth``).

:func:`synthesize` writes a realistic job event log (Parquet or CSV) and a
``truth.json`` that lists what was planted in it, so a run of the plugin fleet can
be scored against it (:mod:`engine._core.score`).

The data
========
About 90 days (from :data:`START`, a Monday) of jobs of twelve processes in eight
ERP modules, run by 60 users on eight hosts. Columns, in order::

    job_id, process_name, module, user, host, status, queued_at, started_at,
    ended_at, amount, [amount_eur], retry_count, cpu_s, rows_processed,
    cost_center, [region]

(the bracketed columns only in ``data_quality``).

* Arrivals (``queued_at``) follow a weekly intensity: busy office hours, a nightly
  batch bump, quiet nights and weekends; never a full stop of more than a few
  hours (except a planted outage).
* Each process has its own lognormal queue wait and run time (processes differ
  *by design*: a plugin must never flag a process for merely being itself). Run
  time is correlated with ``rows_processed``; ``cpu_s`` is run time times cores
  times a utilization; all extra numeric columns correlate well below 0.9.
* Every process pairs a fast and a slow job type within a module, or is a module
  of its own with a middling profile, so ``module`` separates durations far less
  than ``process_name`` does.
* ``status`` is ``ok`` / ``failed`` / ``retried`` with low, non-zero rates that vary
  mildly by process and host. ``retry_count`` is how many times the job had been
  re-attempted before this record (independent of this record's status).
* ``amount`` is lognormal over five orders of magnitude and so follows Benford's
  law. ``cost_center`` is the user's home cost centre (occasionally another).

Scenarios (:data:`SCENARIOS`) add plants to this; see :func:`scenario_plants`. The
operations scenarios (``ops_capacity``, ``ops_calendar``) also change how some jobs are
served: a process may be a simulated first-come, first-served pool of workers (its
waits come from the queue, carried from chunk to chunk; the pool is sized from the
busiest hour's load, so it scales with ``rows``), grow in volume, be killed at a run-time
limit (status ``killed``), stall in the queue, follow a weekly rhythm or have a heavy
run-time tail; and the log ends at the last queue time, so jobs still running have no
``ended_at`` (status ``running``, or ``queued`` without ``started_at``).
:func:`scenario_confounders` lists what must not be reported.

``ops_cases`` is a different log: a ``case_id`` column first, and each row one step of
an order-to-cash case (six activities in three variants; :func:`_case_chunk`): a
hand-off gap after the previous step's end, then the step's queue wait and run, both
per activity as load-independent as the baseline's. It plants a rework loop and one
slow hand-off; a rare normal loop and slower hand-offs at weekends are its confounders.
A long gap that is long by design (an overnight batch) is not planted: the gap alone
cannot tell it from a slow hand-off (only a schedule can), so no plugin could be held
to telling them apart.
The ``tabular`` scenario is not an event log at all: an orders table (one order date,
region/channel/category/customer labels and five quantities, no event-log role), written
by :func:`_tabular_chunk` with the same chunking and seeding, for the plugins that serve
tables without event-log roles (segment_differences, level_shifts).

Determinism and scale
=====================
Rows are generated in chunks of :data:`CHUNK_ROWS`; chunk ``c`` draws from
``numpy.random.default_rng(SeedSequence([seed, c, stream]))`` and covers the
``c``-th slice of the arrival-time distribution, so rows come out (almost) in
``queued_at`` order, memory stays bounded by one chunk whatever ``rows`` is, and the
output is a pure function of ``(rows, seed, scenario)`` (byte-identical files). The
unplanted part of a scenario draws from the same streams as ``baseline``.
"""

from __future__ import annotations

import heapq
import math
import os
import secrets
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import NormalDist
from typing import Any, Final

import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from engine import ConfigError

__all__ = [
    "CHUNK_ROWS",
    "DAYS",
    "GENERATOR_VERSION",
    "SCENARIOS",
    "START",
    "Planted",
    "SynthResult",
    "Truth",
    "scenario_plants",
    "synthesize",
    "truth_path_for",
]

GENERATOR_VERSION: Final = "1"
"""Bump whenever the same (rows, seed, scenario) would give different bytes."""

CHUNK_ROWS: Final = 1_000_000
"""Rows generated (and written as one Parquet row group) at a time."""

START: Final = "2024-04-01T00:00:00"
"""First possible queue time (a Monday, UTC, no time zone in the data)."""

DAYS: Final = 90
"""Length of the covered time range in days."""

_START_S: Final = int(np.datetime64(START, "s").astype(np.int64))
_SPAN_S: Final = DAYS * 86400
_DAY: Final = 86400

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


# ----------------------------------------------------------------------------- truth


class Planted(msgspec.Struct, frozen=True, kw_only=True):
    """One planted anomaly and the findings that legitimately detect it.

    A decision finding detects it when ``finding.kind`` is in ``kinds`` and the
    finding's target is ``target`` (or one of ``alt_targets``), or that name is in
    the finding's ``evidence.columns``.
    """

    id: str
    description: str
    kinds: tuple[str, ...]
    target: str
    alt_targets: tuple[str, ...] = ()


class Truth(msgspec.Struct, frozen=True, kw_only=True):
    """What ``truth.json`` holds."""

    scenario: str
    seed: int
    rows: int
    planted: tuple[Planted, ...]
    expected_clean: tuple[str, ...] = ()
    generator_version: str = GENERATOR_VERSION
    start: str = START
    days: int = DAYS
    columns: tuple[str, ...] = ()
    confounders: tuple[str, ...] = ()
    servers: dict[str, int] = {}


DECISION_KINDS: Final = (
    "high_missingness",
    "robust_outliers",
    "queue_bottleneck",
    "duplicate_rows",
    "constant_column",
    "benford_violation",
    "changepoint",
    "trend",
    "control_chart_violation",
    "group_difference",
    "tail_latency_hotspot",
    "concurrency_saturation",
    "retry_hotspot",
    "failure_hotspot",
    "redundant_feature",
    "distribution_drift",
    "timestamp_gap",
    "capacity_shortfall",
    "volume_peak",
    "timeout_cutoff",
    "sla_breach",
    "close_contention",
    "close_spill",
    "host_rebalance",
    "arrival_burst",
    "job_anomaly",
    "rework_loop",
    "handoff_gap",
    "segment_difference",
    "level_shift",
    "quantity_trend",
)
"""The catalog's decision finding kinds (docs/fleet.md), less ``fdr_not_significant``
(whose target is a finding id, so it never detects a plant) and ``top_action`` (which
restates the findings it merges, and is scored through their kinds)."""


# --------------------------------------------------------------------- the world


@dataclass(frozen=True)
class _Process:
    name: str
    module: str
    weight: float  # share of jobs
    wait_s: float  # median queue wait
    wait_sigma: float
    run_s: float  # median run time
    run_sigma: float
    rows: float  # median rows_processed
    cores: int
    fail_mult: float
    retry_mult: float


# Pairs within a module: one fast and one slow job type; single-process modules
# sit in the middle. Waits are independent of load (no weekday/weekend effect).
_PROCESSES: Final = (
    _Process("ap_invoice_post", "AP", 0.16, 45, 0.9, 90, 0.55, 800, 1, 1.0, 1.1),
    _Process("ap_payment_run", "AP", 0.05, 180, 0.8, 1200, 0.6, 20000, 2, 1.2, 0.9),
    _Process("ar_cash_apply", "AR", 0.08, 120, 0.9, 900, 0.6, 5000, 2, 0.9, 1.0),
    _Process("ar_dunning", "AR", 0.06, 60, 0.85, 120, 0.5, 1500, 1, 0.8, 0.8),
    _Process("gl_journal_import", "GL", 0.14, 60, 0.9, 150, 0.6, 3000, 1, 1.1, 1.2),
    _Process("gl_period_close", "GL", 0.05, 150, 0.85, 1500, 0.65, 60000, 4, 1.3, 1.0),
    _Process("inv_valuation", "INV", 0.07, 150, 0.8, 1000, 0.55, 30000, 2, 1.0, 0.9),
    _Process("inv_stock_sync", "INV", 0.15, 30, 0.9, 60, 0.5, 400, 1, 0.8, 1.3),
    _Process("bank_statement_import", "BNK", 0.08, 90, 0.85, 200, 0.6, 2000, 1, 1.0, 1.0),
    _Process("fa_depreciation", "FA", 0.03, 240, 0.8, 600, 0.6, 8000, 2, 0.7, 0.8),
    _Process("payroll_calc", "PY", 0.04, 200, 0.8, 800, 0.55, 12000, 4, 1.2, 0.9),
    _Process("tax_vat_report", "TAX", 0.09, 120, 0.85, 400, 0.6, 4000, 1, 0.9, 1.1),
)
_HOSTS: Final = tuple(f"erp-app-{i:02d}" for i in range(1, 9))
_HOST_WEIGHTS: Final = (0.14, 0.13, 0.13, 0.12, 0.12, 0.12, 0.12, 0.12)
_HOST_FAIL: Final = (1.0, 0.9, 1.1, 1.0, 0.95, 1.05, 1.0, 0.9)
_SURNAMES: Final = (
    "adams",
    "baker",
    "berg",
    "brandt",
    "carter",
    "costa",
    "dahl",
    "davies",
    "diaz",
    "eriksen",
    "evans",
    "fischer",
    "garcia",
    "green",
    "hansen",
    "hart",
    "ito",
    "jansen",
    "kaur",
    "keller",
    "klein",
    "kowalski",
    "lang",
    "larsen",
    "lee",
    "lopez",
    "maier",
    "martin",
    "meyer",
    "moreau",
    "murphy",
    "nagy",
    "nielsen",
    "novak",
    "olsen",
    "ortiz",
    "park",
    "patel",
    "peters",
    "quinn",
    "reed",
    "ricci",
    "rossi",
    "sato",
    "schmidt",
    "silva",
    "singh",
    "smith",
    "sousa",
    "stone",
    "tanaka",
    "torres",
    "vargas",
    "vogel",
    "wagner",
    "walsh",
    "weber",
    "wong",
    "young",
    "zimmer",
)
_INITIALS: Final = "ajmkstdelrcn"
_USERS: Final = tuple(f"{_INITIALS[i % len(_INITIALS)]}.{s}" for i, s in enumerate(_SURNAMES))
_COST_CENTERS: Final = tuple(f"CC-{1000 + 10 * i}" for i in range(20))

_FAIL_RATE: Final = 0.015
_RETRIED_RATE: Final = 0.03
_RETRY_COUNT_RATE: Final = 0.04  # share of jobs re-attempted at least once
_AMOUNT_MEDIAN: Final = 850.0
_AMOUNT_SIGMA: Final = 1.7
_ROWS_SIGMA: Final = 1.3
_RUN_ROWS_CORR: Final = 0.6
_HOME_COST_CENTER: Final = 0.92
_EUR_RATE: Final = 0.92
_CORE_STEPS: Final = (0.55, 0.30, 0.15)  # a job gets 1x, 2x or 4x its process's cores

# Relative arrival intensity by hour of a weekday; weekends are flatter and lower.
_WEEKDAY_PROFILE: Final = (
    0.10, 0.08, 0.08, 0.08, 0.10, 0.15, 0.35, 0.65, 0.95, 1.0, 1.0, 1.0,
    0.80, 1.0, 1.0, 1.0, 1.0, 0.80, 0.55, 0.40, 0.30, 0.35, 0.45, 0.20,
)  # fmt: skip
_WEEKEND_BASE: Final = 0.10
_WEEKEND_SCALE: Final = 0.25


def _users_home_cost_center() -> Ints:
    return (np.arange(len(_USERS), dtype=np.int64) * 7) % len(_COST_CENTERS)


def _user_weights() -> Floats:
    w: Floats = 1.0 / (np.arange(len(_USERS), dtype=np.float64) + 5.0) ** 0.8
    return w / float(w.sum())


# ----------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class _Queue:
    """A process whose jobs are served first-come first-served by a fixed pool of
    workers (simulated), sized so that the busiest hour runs at ``peak_utilization``."""

    process: str
    peak_utilization: float
    understaffed: bool  # a plant; False: a busy but adequately staffed confounder


@dataclass(frozen=True)
class _Scenario:
    name: str
    bottleneck: tuple[str, float] | None = None  # process, wait factor
    changepoint: tuple[str, int, float] | None = None  # process, day, wait factor
    outage: tuple[int, int] | None = None  # start (s after START), duration (s)
    retry_hotspot: tuple[str, float, float] | None = None  # process, P(retried), P(rc>=1)
    trend: tuple[str, float] | None = None  # process, run factor at the end
    failure_host: tuple[str, float] | None = None  # host, failure-rate factor
    duplicate_fraction: float = 0.0
    missing: tuple[str, float] | None = None  # column, null fraction
    fabricated: tuple[float, int, int] | None = None  # share, low, high (integers)
    redundant: bool = False  # amount_eur after amount
    constant: tuple[str, str] | None = None  # column, value
    queues: tuple[_Queue, ...] = ()
    growth: tuple[str, float] | None = None  # process, volume factor at the end
    timeout: tuple[str, float] | None = None  # process, share of its jobs killed at it
    stall: tuple[str, float, int, int] | None = None  # process, share, extra wait lo..hi s
    weekly_wait: tuple[str, tuple[float, ...]] | None = None  # process, factor Mon..Sun
    heavy_tail: tuple[str, float] | None = None  # process, run-time log sigma
    censor_end: bool = False  # jobs still running at the end have no ended_at
    # month-end close (the last CLOSE_DAYS business days of each month):
    close: tuple[str, float, float] | None = None  # close process, volume and run factor
    close_mover: tuple[str, float] | None = None  # non-close process, close wait per job
    close_busy: tuple[str, float] | None = None  # busy-by-design process, volume factor
    host_fail: tuple[str, str, float] | None = None  # process, host, failure-rate factor
    host_mix: tuple[str, str, float, float] | None = None  # process, host, share, fail factor
    bursts: tuple[str, float, float, int] | None = None  # process, share, bursts/day, drain s
    cron: str | None = None  # process whose jobs are queued on a fixed, even grid
    joint_anomaly: tuple[str, float] | None = None  # process, share of jointly odd jobs
    cases: bool = False  # multi-step cases of an order-to-cash flow (_case_chunk)
    tabular: bool = False  # an orders table, not an event log (_tabular_chunk)


SCENARIOS: Final[dict[str, _Scenario]] = {
    "baseline": _Scenario("baseline"),
    "ops_incidents": _Scenario(
        "ops_incidents",
        bottleneck=("gl_period_close", 15.0),
        changepoint=("ap_invoice_post", 45, 3.0),
        outage=((64 * 24 + 18) * 3600, 36 * 3600),
        retry_hotspot=("bank_statement_import", 0.22, 0.40),
        trend=("inv_valuation", 2.0),
        failure_host=("erp-app-06", 8.0),
    ),
    "data_quality": _Scenario(
        "data_quality",
        duplicate_fraction=0.01,
        missing=("cost_center", 0.45),
        fabricated=(0.30, 5000, 5999),
        redundant=True,
        constant=("region", "EU"),
    ),
    "ops_capacity": _Scenario(
        "ops_capacity",
        queues=(_Queue("ar_cash_apply", 0.93, True), _Queue("inv_valuation", 0.55, False)),
        growth=("tax_vat_report", 3.0),
        timeout=("fa_depreciation", 0.05),
        stall=("bank_statement_import", 0.15, 3600, 7200),
        heavy_tail=("gl_journal_import", 0.9),
        censor_end=True,
        bursts=("ar_dunning", 0.3, 2.0, 600),
        cron="ap_payment_run",
        joint_anomaly=("gl_period_close", 0.04),
    ),
    "ops_calendar": _Scenario(
        "ops_calendar",
        queues=(_Queue("ap_payment_run", 0.93, True),),
        growth=("gl_journal_import", 3.0),
        timeout=("inv_valuation", 0.04),
        stall=("tax_vat_report", 0.15, 3600, 7200),
        weekly_wait=("inv_stock_sync", (3.0, 2.0, 1.0, 1.0, 1.0, 0.5, 0.5)),
        heavy_tail=("ap_invoice_post", 0.9),
        censor_end=True,
        close=("gl_period_close", 4.0, 2.0),
        close_mover=("payroll_calc", 1800.0),
        close_busy=("fa_depreciation", 3.0),
        host_fail=("bank_statement_import", "erp-app-05", 10.0),
        host_mix=("ar_dunning", "erp-app-07", 0.7, 6.0),
    ),
    "ops_cases": _Scenario("ops_cases", cases=True),
    "tabular": _Scenario("tabular", tabular=True),
}

CLOSE_DAYS: Final = 3
"""The month-end close window: the last this many business days (Mon-Fri) of a month."""

CLOSE_HOSTS: Final = ("erp-app-03", "erp-app-04")
"""The hosts the close (and, in ``ops_calendar``, its competitor) runs on in the window."""


def close_window_days(complete: bool = False) -> npt.NDArray[np.bool_]:
    """Per day of the covered range: is it one of the last :data:`CLOSE_DAYS` business
    days of its month (weekends never are; no holidays). ``complete``: only of the
    months whose end the range covers (the close plants run there: a close whose month
    ends after the log does would be cut off by it)."""
    first = np.datetime64(START[:10], "D")
    days = first + np.arange(DAYS)
    out = np.zeros(DAYS, dtype=bool)
    for m in np.unique(days.astype("datetime64[M]")):
        month = np.arange(np.datetime64(m, "D"), np.datetime64(m + 1, "D"))
        last = month[np.is_busday(month)][-CLOSE_DAYS:]
        if complete and np.datetime64(m + 1, "D") > first + DAYS:
            continue
        idx = (last - first).astype(np.int64)
        out[idx[(idx >= 0) & (idx < DAYS)]] = True
    return out


KILLED: Final = "killed"
RUNNING: Final = "running"


def _stamp(offset_s: int) -> str:
    return str(np.datetime64(_START_S + offset_s, "s")).replace("T", " ")


def scenario_plants(name: str, rows: int | None = None) -> tuple[Planted, ...]:
    """The planted items of scenario ``name`` in a log of ``rows`` rows (what
    ``truth.json`` lists; None: at full size, see :data:`VOLUME_PLANT_ROWS`)."""
    s = _scenario(name, rows)
    out: list[Planted] = []
    if s.bottleneck:
        proc, factor = s.bottleneck
        out.append(
            Planted(
                id="queue_bottleneck",
                description=f"{proc} queue waits are {factor:g}x its normal level all "
                "along, so it holds most of the total queue wait",
                kinds=("queue_bottleneck",),
                target=proc,
            )
        )
    if s.changepoint:
        proc, day, factor = s.changepoint
        out.append(
            Planted(
                id="wait_changepoint",
                description=f"{proc} queue waits jump {factor:g}x from {_stamp(day * _DAY)} "
                f"(day {day}) on",
                kinds=("changepoint", "control_chart_violation"),
                target=proc,
            )
        )
    if s.outage:
        start, length = s.outage
        out.append(
            Planted(
                id="data_outage",
                description=f"no job is queued, started or ended from {_stamp(start)} to "
                f"{_stamp(start + length)} ({length / 3600:g} h)",
                kinds=("timestamp_gap",),
                target="queued_at",
                alt_targets=("started_at", "ended_at"),
            )
        )
    if s.retry_hotspot:
        proc, retried, again = s.retry_hotspot
        out.append(
            Planted(
                id="retry_hotspot",
                description=f"{proc}: {retried:.0%} of jobs end 'retried' (others about "
                f"{_RETRIED_RATE:.0%}) and {again:.0%} were re-attempted (others about "
                f"{_RETRY_COUNT_RATE:.0%})",
                kinds=("retry_hotspot",),
                target=proc,
            )
        )
    if s.trend:
        proc, factor = s.trend
        out.append(
            Planted(
                id="run_trend",
                description=f"{proc} run times rise linearly to {factor:g}x over the {DAYS} days",
                kinds=("trend",),
                target=proc,
            )
        )
    if s.failure_host:
        host, factor = s.failure_host
        out.append(
            Planted(
                id="failure_hotspot",
                description=f"jobs on {host} fail {factor:g}x as often as elsewhere",
                kinds=("failure_hotspot",),
                target=host,
            )
        )
    for q in s.queues:
        if q.understaffed:
            out.append(
                Planted(
                    id="capacity_shortfall",
                    description=f"{q.process} is served first come, first served by a fixed "
                    f"pool of workers that runs at {q.peak_utilization:.0%} utilization in the "
                    "busiest hour, so its jobs queue for workers; one more worker cuts the waits",
                    kinds=("capacity_shortfall", "queue_bottleneck"),
                    target=q.process,
                )
            )
    if s.growth:
        proc, factor = s.growth
        out.append(
            Planted(
                id="volume_growth",
                description=f"{proc}'s job volume grows linearly to {factor:g}x over the "
                f"{DAYS} days, so next week's peak is above any week so far",
                kinds=("volume_peak",),
                target=proc,
            )
        )
    if s.timeout:
        proc, share = s.timeout
        out.append(
            Planted(
                id="timeout_cutoff",
                description=f"{proc}'s jobs are killed (status {KILLED!r}) after "
                f"{_timeout_s(proc, share)} s of running, which cuts off the longest "
                f"{share:.0%} of its real work",
                kinds=("timeout_cutoff",),
                target=proc,
            )
        )
    if s.stall:
        proc, share, lo, hi = s.stall
        out.append(
            Planted(
                id="sla_breach",
                description=f"{share:.0%} of {proc}'s jobs stall {lo // 60}-{hi // 60} min "
                "in the queue, far past the turnaround of its other jobs",
                kinds=("sla_breach", "queue_bottleneck"),
                target=proc,
            )
        )
    if s.close:
        proc, volume, run = s.close
        out.append(
            Planted(
                id="close_spill",
                description=f"{proc} is the month-end close: {volume:g}x its jobs in the last "
                f"{CLOSE_DAYS} business days of each month the log covers to its end, "
                f"{run:g}x their run time, on "
                f"{' and '.join(CLOSE_HOSTS)}, where they queue behind a competitor",
                kinds=(
                    "close_spill",
                    "control_chart_violation",
                    "changepoint",
                    "queue_bottleneck",
                    "sla_breach",
                ),
                target=proc,
            )
        )
    if s.close and s.close_mover:
        proc, per_job = s.close_mover
        out.append(
            Planted(
                id="close_contention",
                description=f"{proc} (no month-end volume of its own) runs on "
                f"{' and '.join(CLOSE_HOSTS)} in the close window; every job of it running "
                f"there when a {s.close[0]} job is queued adds about {per_job:g} s (at its "
                "busiest-hour load) to that job's wait",
                kinds=("close_contention",),
                target=proc,
            )
        )
    if s.host_fail:
        proc, host, factor = s.host_fail
        out.append(
            Planted(
                id="host_rebalance",
                description=f"{proc}'s jobs on {host} fail {factor:g}x as often as its jobs "
                "on its other hosts (the other processes on that host fail as usual)",
                kinds=("host_rebalance", "failure_hotspot"),
                target=proc,
                alt_targets=(host,),
            )
        )
    if s.bursts:
        proc, share, per_day, drain = s.bursts
        out.append(
            Planted(
                id="arrival_bursts",
                description=f"{share:.0%} of {proc}'s jobs arrive in bursts (all within one "
                f"minute, about {per_day:g} bursts a day at random times); a burst's jobs "
                f"wait up to {drain // 60} min more, in arrival order, while it drains",
                kinds=("arrival_burst",),
                target=proc,
            )
        )
    if s.joint_anomaly:
        proc, share = s.joint_anomaly
        out.append(
            Planted(
                id="joint_anomaly",
                description=f"{share:.0%} of {proc}'s jobs are odd in four features at once "
                "(queue wait and run time 2-2.6 sd above the process's log mean, 2-3 retries, "
                "an amount 2-2.6 sd from the log mean), each alone within the normal range",
                kinds=("job_anomaly",),
                target=proc,
            )
        )
    if s.cases:
        share = _REWORK_ONCE + _REWORK_TWICE
        out.append(
            Planted(
                id="rework_loop",
                description=f"{share:.0%} of cases do {_REWORK} again once or twice right "
                f"after it ({_REWORK_ONCE:.0%} once, {_REWORK_TWICE:.0%} twice)",
                kinds=("rework_loop",),
                target=_REWORK,
            )
        )
        a, b = _HANDOFF
        out.append(
            Planted(
                id="handoff_gap",
                description=f"{b} is queued a median {_HANDOFF_S / 3600:g} h after {a} ends; "
                f"every other hand-off takes a median {_GAP_S / 60:g} min",
                kinds=("handoff_gap",),
                target=f"{a}->{b}",
                alt_targets=(b,),
            )
        )
    if s.duplicate_fraction:
        out.append(
            Planted(
                id="duplicate_rows",
                description=f"{s.duplicate_fraction:.0%} of rows are exact copies of another row",
                kinds=("duplicate_rows",),
                target="data",
            )
        )
    if s.missing:
        col, frac = s.missing
        out.append(
            Planted(
                id="high_missingness",
                description=f"{col} is null on {frac:.0%} of rows (at random)",
                kinds=("high_missingness",),
                target=col,
            )
        )
    if s.fabricated:
        share, lo, hi = s.fabricated
        out.append(
            Planted(
                id="benford_fabrication",
                description=f"{share:.0%} of amounts are replaced by whole numbers drawn "
                f"uniformly from {lo}-{hi} (amount_eur follows them)",
                kinds=("benford_violation",),
                target="amount",
                alt_targets=("amount_eur",) if s.redundant else (),
            )
        )
    if s.redundant:
        out.append(
            Planted(
                id="redundant_column",
                description=f"amount_eur = amount x {_EUR_RATE} with 0.1% noise, placed "
                "right after amount",
                kinds=("redundant_feature",),
                target="amount_eur",
            )
        )
    if s.constant:
        col, value = s.constant
        out.append(
            Planted(
                id="constant_column",
                description=f"{col} is {value!r} on every row",
                kinds=("constant_column",),
                target=col,
            )
        )
    if s.tabular:
        out += _tabular_plants()
    return tuple(out)


def scenario_confounders(name: str, rows: int | None = None) -> tuple[str, ...]:
    """What scenario ``name`` (in a log of ``rows`` rows) holds that looks like a
    finding but must not be one."""
    s = _scenario(name, rows)
    out = [
        f"{q.process} is served by a busy worker pool (up to {q.peak_utilization:.0%} "
        "utilization in the busiest hour) that is adequately staffed: its waits are short"
        for q in s.queues
        if not q.understaffed
    ]
    if s.weekly_wait:
        proc, factors = s.weekly_wait
        out.append(
            f"{proc}'s queue waits follow a strong weekly rhythm (x{factors[0]:g} on Mondays, "
            f"x{factors[-1]:g} at weekends), the same every week: not a changepoint"
        )
    if s.heavy_tail:
        proc, sigma = s.heavy_tail
        out.append(
            f"{proc}'s run times have a heavy but stable tail (log sigma {sigma:g}); nothing "
            "cuts it off and it does not change over time"
        )
    if s.close_busy:
        proc, volume = s.close_busy
        out.append(
            f"{proc} runs {volume:g}x its jobs in the close window by design, on every host, "
            "and its waits stay as short as ever: a month-end process, but no contention"
        )
    if s.host_mix:
        proc, host, share, factor = s.host_mix
        out.append(
            f"{proc} fails {factor:g}x as often as other processes on every host, and "
            f"{share:.0%} of its jobs run on {host}: that host fails more only because of "
            "its process mix"
        )
    if s.cron:
        out.append(
            f"{s.cron}'s jobs are queued on a fixed, even schedule (cron-like): regular, "
            "under-dispersed arrivals, not bursts"
        )
    if s.bursts or s.joint_anomaly:
        out.append(
            "every process's arrivals follow the weekly rhythm (busy office hours, quiet "
            "nights and weekends): hour-of-week volume differences are not bursts"
        )
    if s.cases:
        out.append(
            f"{_RARE_LOOP} is done twice in {_RARE_LOOP_SHARE:.1%} of the cases that have it: "
            "a rare, normal loop, not rework worth removing"
        )
        out.append(
            f"hand-offs of cases opened at a weekend take {_WEEKEND_GAP:g}x as long at every "
            "step (a weekly rhythm shared by all transitions, not one slow hand-off)"
        )
        out.append(
            "cases follow three variants (full flow, no cash application, express without "
            "a credit check) with different step counts; the last cases are still open at the "
            "end of the log"
        )
    if s.censor_end:
        out.append(
            f"jobs still running at the end of the log have no ended_at (status {RUNNING!r}; "
            "not yet started: status 'queued', no started_at either)"
        )
    if s.tabular:
        out += _tabular_confounders()
    return tuple(out)


def _timeout_s(process: str, share: float) -> int:
    """The run-time limit that kills the longest ``share`` of ``process``'s jobs."""
    p = next(p for p in _PROCESSES if p.name == process)
    return round(p.run_s * math.exp(p.run_sigma * NormalDist().inv_cdf(1.0 - share)))


def _servers(s: _Scenario, rows: int, weights: Floats) -> dict[str, int]:
    """Workers of each simulated queue: the busiest hour's offered load ``a`` (arrival
    rate x mean run time) over the target utilization, rounded up; an adequately staffed
    pool also gets at least ``a + 2 sqrt(a)`` (square-root staffing: few jobs wait,
    however small the pool)."""
    total = sum(p.weight for p in _PROCESSES)
    peak_per_s = float(weights.max()) / float(weights.sum()) / 60.0 * rows
    out = {}
    for q in s.queues:
        p = next(p for p in _PROCESSES if p.name == q.process)
        mean_run = p.run_s * math.exp(p.run_sigma**2 / 2)
        load = peak_per_s * p.weight / total * mean_run
        servers = math.ceil(load / q.peak_utilization)
        if not q.understaffed:
            servers = max(servers, math.ceil(load + 2.0 * math.sqrt(load)))
        out[q.process] = max(1, servers)
    return out


def _mover_load(s: _Scenario, rows: int, weights: Floats) -> float:
    """The close competitor's jobs running at once on one close host in the busiest hour."""
    assert s.close_mover
    total = sum(p.weight for p in _PROCESSES)
    peak_per_s = float(weights.max()) / float(weights.sum()) / 60.0 * rows
    p = next(p for p in _PROCESSES if p.name == s.close_mover[0])
    mean_run = p.run_s * math.exp(p.run_sigma**2 / 2)
    return max(peak_per_s * p.weight / total * mean_run / len(CLOSE_HOSTS), 1e-6)


def _contend(
    s: _Scenario,
    rows: int,
    weights: Floats,
    proc: Ints,
    host: Ints,
    window: npt.NDArray[np.bool_],
    queued: Ints,
    wait: Floats,
    run: Floats,
) -> Floats:
    """The close's jobs queued in the window wait ``close_mover[1]`` seconds for every
    competitor job running on their host when they are queued (per the competitor's
    busiest-hour load, so the effect does not depend on ``rows``)."""
    assert s.close and s.close_mover
    names = [p.name for p in _PROCESSES]
    victim_p, mover_p = names.index(s.close[0]), names.index(s.close_mover[0])
    per_job = s.close_mover[1] / _mover_load(s, rows, weights)
    start = queued + wait.astype(np.int64)
    end = start + run.astype(np.int64)
    out = wait.copy()
    for h in (_HOSTS.index(x) for x in CLOSE_HOSTS):
        mover = (proc == mover_p) & window & (host == h)
        starts, ends = np.sort(start[mover]), np.sort(end[mover])
        victims = np.flatnonzero((proc == victim_p) & window & (host == h))
        t = queued[victims]
        running = np.searchsorted(starts, t, side="right") - np.searchsorted(ends, t, side="right")
        out[victims] = out[victims] + np.round(per_job * running)
    return out


def _bursts(
    spec: tuple[str, float, float, int], member: npt.NDArray[np.bool_], queued: Ints, rng: Any
) -> tuple[Ints, Floats]:
    """Move a share of the process's jobs (``member``) into bursts: about ``per_day``
    bursts a day at random instants of the chunk's time range, each burst's jobs queued
    within one minute of its start. Returns the new queue times and each job's extra
    wait: a burst drains in arrival order over ``drain`` seconds."""
    _, share, per_day, drain = spec
    n = queued.size
    lo, hi = int(queued.min()), int(queued.max())
    n_bursts = max(1, round(per_day * (hi - lo) / _DAY))
    starts = np.sort(rng.integers(lo, max(lo + 1, hi - 60), size=n_bursts))
    chosen = member & (rng.random(n) < share)
    which = rng.integers(0, n_bursts, size=n)
    within = rng.integers(0, 60, size=n)
    moved: Ints = np.where(chosen, starts[which] + within, queued)
    extra = np.zeros(n, dtype=np.float64)
    idx = np.flatnonzero(chosen)
    if idx.size:
        order = idx[np.lexsort((moved[idx], which[idx]))]
        sizes = np.bincount(which[order], minlength=n_bursts)
        first = np.cumsum(sizes) - sizes
        rank = np.arange(order.size) - first[which[order]]
        extra[order] = rank / np.maximum(sizes[which[order]], 1) * float(drain)
    return moved, extra


def _serve(free: list[int], arrivals: Ints, runs: Floats) -> Floats:
    """Queue waits of jobs served first come, first served by the workers whose next
    free instants are the heap ``free`` (updated in place, so chunks continue it)."""
    waits = np.empty(arrivals.size, dtype=np.float64)
    for i, (at, run) in enumerate(zip(arrivals.tolist(), runs.tolist(), strict=True)):
        start = max(at, free[0])
        heapq.heapreplace(free, start + int(run))
        waits[i] = start - at
    return waits


def _scenario(name: str, rows: int | None = None) -> _Scenario:
    """Scenario ``name`` as planted in a log of ``rows`` rows (None: at full size)."""
    try:
        s = SCENARIOS[name]
    except KeyError:
        raise ConfigError(f"scenario: expected one of {sorted(SCENARIOS)}, got {name!r}") from None
    if rows is not None and rows < VOLUME_PLANT_ROWS:
        s = replace(s, close=None, close_mover=None, close_busy=None, bursts=None, cron=None)
    return s


VOLUME_PLANT_ROWS: Final = 100_000
"""Plants whose signal is made of volume are planted only in logs of at least this
many rows: the month-end close and its competitor (in a smaller log the close's few
window jobs rarely meet a running competitor, so its median wait does not move), the
arrival bursts (a burst is a share of one process's jobs: in a small log a few jobs,
not a burst) and the cron-like schedule beside them. Below it, neither the data nor
``truth.json`` has them, so a small log (the gauntlet's CI size) is scored on what
can be seen in it."""


def _columns(s: _Scenario) -> tuple[str, ...]:
    if s.tabular:
        return tuple(_TABULAR_TYPES)
    cols = ["case_id"] if s.cases else []
    cols += ["job_id", "process_name", "module", "user", "host", "status"]
    cols += ["queued_at", "started_at", "ended_at", "amount"]
    if s.redundant:
        cols.append("amount_eur")
    cols += ["retry_count", "cpu_s", "rows_processed", "cost_center"]
    if s.constant:
        cols.append(s.constant[0])
    return tuple(cols)


def _schema(s: _Scenario) -> pa.Schema:
    if s.tabular:
        return pa.schema(list(_TABULAR_TYPES.items()))
    types: dict[str, Any] = {
        "queued_at": pa.timestamp("s"),
        "started_at": pa.timestamp("s"),
        "ended_at": pa.timestamp("s"),
        "amount": pa.float64(),
        "amount_eur": pa.float64(),
        "retry_count": pa.int32(),
        "cpu_s": pa.float64(),
        "rows_processed": pa.int64(),
    }
    return pa.schema([(c, types.get(c, pa.string())) for c in _columns(s)])


# ------------------------------------------------------------------------ arrivals


def _intensity(s: _Scenario) -> Floats:
    """Relative arrival intensity per minute of the covered range."""
    weekday = np.asarray(_WEEKDAY_PROFILE, dtype=np.float64)
    weekend = _WEEKEND_BASE + _WEEKEND_SCALE * weekday
    days = [weekend if (d % 7) >= 5 else weekday for d in range(DAYS)]  # START is a Monday
    per_minute = np.repeat(np.concatenate(days), 60)
    if s.outage:
        start, length = s.outage
        per_minute[start // 60 : (start + length) // 60] = 0.0
    return per_minute


def _close_extra(s: _Scenario) -> list[tuple[int, float]]:
    """The month-end processes (index) and the share of the other processes' window jobs
    each takes over, in the order they are drawn."""
    names = [p.name for p in _PROCESSES]
    total = sum(p.weight for p in _PROCESSES)
    out = []
    for spec in (s.close, s.close_busy):
        if spec:
            c = names.index(spec[0])
            share = _PROCESSES[c].weight / total
            out.append((c, share * (spec[1] - 1.0) / (1.0 - share)))
    return out


def _close_boost(s: _Scenario, weights: Floats) -> Floats:
    """Arrival intensity with the close window's extra jobs on top: the other processes
    keep their usual jobs per day there, as the month-end processes take theirs over."""
    extra = _close_extra(s)
    if not extra:
        return weights
    keep = float(np.prod([1.0 - e for _, e in extra]))
    per_minute = close_window_days(complete=True).repeat(24 * 60)
    return np.where(per_minute, weights / keep, weights)


def _arrivals(cdf: Floats, weights: Floats, quantiles: Floats) -> Ints:
    """Queue times (s after START) at the given quantiles of the intensity."""
    x = quantiles * cdf[-1]
    idx = np.searchsorted(cdf, x, side="right") - 1
    idx = np.clip(idx, 0, weights.size - 1)
    frac = np.clip((x - cdf[idx]) / weights[idx], 0.0, 1.0 - 1e-9)
    seconds: Ints = np.floor((idx + frac) * 60.0).astype(np.int64)
    return seconds


# -------------------------------------------------------------------------- chunks


def _rng(seed: int, chunk: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, chunk, stream]))


def _stream_id(name: str) -> int:
    return 1 + zlib.crc32(name.encode())


def _strings(values: Sequence[str], idx: npt.NDArray[Any]) -> pa.Array:
    return pa.array(values, type=pa.string()).take(pa.array(idx))


def _chunk(
    s: _Scenario,
    seed: int,
    rows: int,
    chunk: int,
    first: int,
    count: int,
    cdf: Floats,
    weights: Floats,
    queues: dict[str, list[int]],
) -> pa.Table:
    """Rows ``first .. first+count`` of the dataset as an Arrow table (``queues``: the
    workers' next free instants of each simulated queue, carried from chunk to chunk)."""
    rng = _rng(seed, chunk, 0)  # the unplanted world, shared by every scenario
    plant = _rng(seed, chunk, _stream_id(s.name))
    n_dup = round(s.duplicate_fraction * count) if s.duplicate_fraction else 0
    n = count - n_dup
    procs = _PROCESSES
    names = [p.name for p in procs]

    def per_process(attr: str) -> Floats:
        return np.asarray([float(getattr(p, attr)) for p in procs], dtype=np.float64)

    # --- who, what, where
    weight = per_process("weight")
    proc = rng.choice(len(procs), size=n, p=weight / weight.sum())
    user = rng.choice(len(_USERS), size=n, p=_user_weights())
    host_w = np.asarray(_HOST_WEIGHTS, dtype=np.float64)
    host = rng.choice(len(_HOSTS), size=n, p=host_w / host_w.sum())
    home = _users_home_cost_center()[user]
    other_cc = rng.integers(0, len(_COST_CENTERS), size=n)
    cost_center = np.where(rng.random(n) < _HOME_COST_CENTER, home, other_cc)

    # --- when
    quantiles = (first + np.sort(rng.uniform(0.0, float(count), size=n))) / float(rows)
    queued = _arrivals(cdf, weights, quantiles)
    if s.growth:
        g = names.index(s.growth[0])
        share = float(weight[g] / weight.sum())
        moved = share * (s.growth[1] - 1.0) * (queued / float(_SPAN_S)) / (1.0 - share)
        proc = np.where((proc != g) & (plant.random(n) < moved), g, proc)
    cal = _rng(seed, chunk, _stream_id(s.name + ":close"))  # the close plants' own stream
    window = close_window_days(complete=True)[np.clip(queued // _DAY, 0, DAYS - 1)]
    close_hosts = np.asarray([_HOSTS.index(h) for h in CLOSE_HOSTS], dtype=np.int64)
    taken = [c for c, _ in _close_extra(s)]
    for c, extra_share in _close_extra(s):  # the window's extra jobs of a month-end process
        proc = np.where(window & ~np.isin(proc, taken) & (cal.random(n) < extra_share), c, proc)
    if s.close:  # in the window the close (and its competitor) run on the close hosts
        sent = proc == names.index(s.close[0])
        if s.close_mover:
            sent |= proc == names.index(s.close_mover[0])
        pick = close_hosts[cal.integers(0, close_hosts.size, size=n)]
        host = np.where(window & sent, pick, host)
    if s.host_mix:  # most of one process's jobs run on one host (a mix, not a host effect)
        mix_host = _HOSTS.index(s.host_mix[1])
        moved_mix = (proc == names.index(s.host_mix[0])) & (cal.random(n) < s.host_mix[2])
        host = np.where(moved_mix, mix_host, host)
    # plants on arrival times and joint values draw from a stream of their own, so the
    # other plants of the scenario are the same with or without them
    extra = _rng(seed, chunk, _stream_id(s.name + "/arrivals"))
    if s.cron:  # an even grid over the chunk's time range: regular, under-dispersed
        cron = np.flatnonzero(proc == names.index(s.cron))
        if cron.size:
            lo, hi = int(queued.min()), int(queued.max())
            step = (hi - lo) / cron.size
            queued[cron] = lo + np.floor((np.arange(cron.size) + 0.5) * step).astype(np.int64)
    burst_wait = np.zeros(n, dtype=np.float64)
    if s.bursts:
        queued, burst_wait = _bursts(s.bursts, proc == names.index(s.bursts[0]), queued, extra)
    z_wait = rng.standard_normal(n)
    z_rows = rng.standard_normal(n)
    z_run = rng.standard_normal(n)
    wait_med = per_process("wait_s")[proc]
    if s.bottleneck:
        wait_med = np.where(
            proc == names.index(s.bottleneck[0]), wait_med * s.bottleneck[1], wait_med
        )
    if s.changepoint:
        cp_proc, cp_day, cp_factor = s.changepoint
        late = (proc == names.index(cp_proc)) & (queued >= cp_day * _DAY)
        wait_med = np.where(late, wait_med * cp_factor, wait_med)
    if s.weekly_wait:
        factors = np.asarray(s.weekly_wait[1], dtype=np.float64)[(queued // _DAY) % 7]
        wait_med = np.where(proc == names.index(s.weekly_wait[0]), wait_med * factors, wait_med)
    wait = np.round(wait_med * np.exp(per_process("wait_sigma")[proc] * z_wait))
    if s.stall:
        st_proc, st_share, lo, hi = s.stall
        stalled = (proc == names.index(st_proc)) & (plant.random(n) < st_share)
        wait = wait + np.where(stalled, plant.integers(lo, hi + 1, size=n), 0)
    wait = wait + np.round(burst_wait)
    rows_med = per_process("rows")[proc]
    rows_processed = np.round(rows_med * np.exp(_ROWS_SIGMA * z_rows)).astype(np.int64) + 1
    run_z = _RUN_ROWS_CORR * z_rows + np.sqrt(1.0 - _RUN_ROWS_CORR**2) * z_run
    run_med = per_process("run_s")[proc]
    if s.trend:
        tr_proc, tr_factor = s.trend
        growth = 1.0 + (tr_factor - 1.0) * queued / float(_SPAN_S)
        run_med = np.where(proc == names.index(tr_proc), run_med * growth, run_med)
    if s.close:
        closing = window & (proc == names.index(s.close[0]))
        run_med = np.where(closing, run_med * s.close[2], run_med)
    run_sigma = per_process("run_sigma")[proc]
    if s.heavy_tail:
        run_sigma = np.where(proc == names.index(s.heavy_tail[0]), s.heavy_tail[1], run_sigma)
    run = np.maximum(1.0, np.round(run_med * np.exp(run_sigma * run_z)))
    odd = np.zeros(n, dtype=bool)
    if s.joint_anomaly:  # each value alone is within the process's normal range
        odd = (proc == names.index(s.joint_anomaly[0])) & (extra.random(n) < s.joint_anomaly[1])
        z_odd = extra.uniform(2.0, 2.6, size=(3, n))
        wait_odd = np.round(wait_med * np.exp(per_process("wait_sigma")[proc] * z_odd[0]))
        wait = np.where(odd, wait_odd, wait)
        run_odd = np.maximum(1.0, np.round(run_med * np.exp(run_sigma * z_odd[1])))
        run = np.where(odd, run_odd, run)
    killed = np.zeros(n, dtype=bool)
    if s.timeout:
        limit = float(_timeout_s(*s.timeout))
        killed = (proc == names.index(s.timeout[0])) & (run > limit)
        run = np.where(killed, limit, run)
    for q in s.queues:
        served = np.flatnonzero(proc == names.index(q.process))
        wait[served] = _serve(queues[q.process], queued[served], run[served])
    if s.close and s.close_mover:
        wait = _contend(s, rows, weights, proc, host, window, queued, wait, run)
    cores = per_process("cores")[proc] * np.exp2(rng.choice(3, size=n, p=_CORE_STEPS))
    util = rng.beta(5.0, 3.0, size=n)
    cpu_s = np.round(run * cores * util, 3)
    started = queued + wait.astype(np.int64)
    ended = started + run.astype(np.int64)

    # --- outcome
    p_fail = _FAIL_RATE * per_process("fail_mult")[proc] * np.asarray(_HOST_FAIL)[host]
    p_retried = _RETRIED_RATE * per_process("retry_mult")[proc]
    p_again = _RETRY_COUNT_RATE * per_process("retry_mult")[proc]
    u_status = rng.random(n)
    u_again = rng.random(n)
    again = rng.geometric(0.55, size=n)
    if s.failure_host:
        p_fail = np.where(
            host == _HOSTS.index(s.failure_host[0]), p_fail * s.failure_host[1], p_fail
        )
    if s.host_fail:
        cell = (proc == names.index(s.host_fail[0])) & (host == _HOSTS.index(s.host_fail[1]))
        p_fail = np.where(cell, p_fail * s.host_fail[2], p_fail)
    if s.host_mix:
        p_fail = np.where(proc == names.index(s.host_mix[0]), p_fail * s.host_mix[3], p_fail)
    if s.retry_hotspot:
        rh = proc == names.index(s.retry_hotspot[0])
        p_retried = np.where(rh, s.retry_hotspot[1], p_retried)
        p_again = np.where(rh, s.retry_hotspot[2], p_again)
    status = np.where(u_status < p_fail, 1, np.where(u_status < p_fail + p_retried, 2, 0))
    status = np.where(killed, 3, status)
    no_end = np.zeros(n, dtype=bool)
    no_start = np.zeros(n, dtype=bool)
    if s.censor_end:  # the log ends at the last possible queue time
        no_end = ended > _SPAN_S
        no_start = started > _SPAN_S
        status = np.where(no_start, 5, np.where(no_end, 4, status))
    retry_count = np.where(u_again < p_again, np.minimum(again, 9), 0).astype(np.int32)
    if s.joint_anomaly:
        retry_count = np.where(odd, extra.integers(2, 4, size=n), retry_count).astype(np.int32)

    # --- money
    amount = np.maximum(
        0.01, np.round(_AMOUNT_MEDIAN * np.exp(_AMOUNT_SIGMA * rng.standard_normal(n)), 2)
    )

    if s.joint_anomaly:
        sign = np.where(extra.random(n) < 0.5, -1.0, 1.0)
        odd_amount = np.round(_AMOUNT_MEDIAN * np.exp(sign * _AMOUNT_SIGMA * z_odd[2]), 2)
        amount = np.where(odd, np.maximum(0.01, odd_amount), amount)

    # --- plants on values
    if s.outage:
        w0 = s.outage[0]
        crossing = (queued < w0) & (ended >= w0)
        shift = np.where(crossing, ended - w0 + 1, 0)
        queued, started, ended = queued - shift, started - shift, ended - shift
    null_cc = np.zeros(n, dtype=bool)
    if s.missing:
        null_cc = plant.random(n) < s.missing[1]
    if s.fabricated:
        share, lo, hi = s.fabricated
        fake = plant.random(n) < share
        amount = np.where(fake, plant.integers(lo, hi + 1, size=n).astype(np.float64), amount)
    amount_eur = np.round(amount * _EUR_RATE * (1.0 + 0.001 * plant.standard_normal(n)), 2)

    # --- order: by queue time; job ids follow it; copies sit next to their originals
    order = np.argsort(queued, kind="stable")
    job_no = np.empty(n, dtype=np.int64)
    job_no[order] = first + np.arange(n, dtype=np.int64)
    source = np.arange(n, dtype=np.int64)
    if n_dup:
        copies = np.sort(plant.choice(n, size=n_dup, replace=False))
        source = np.concatenate([source, copies])
    take = source[np.argsort(queued[source], kind="stable")]

    import pyarrow.compute as pc  # here: a third of a second to import, for one call

    ids = pc.utf8_lpad(pa.array(job_no[take]).cast(pa.string()), width=9, padding="0")
    statuses = ("ok", "failed", "retried", KILLED, RUNNING, "queued")
    cc = _strings(_COST_CENTERS, cost_center[take])
    columns: dict[str, pa.Array] = {
        "job_id": pc.binary_join_element_wise("J", ids, ""),
        "process_name": _strings(names, proc[take]),
        "module": _strings([p.module for p in procs], proc[take]),
        "user": _strings(_USERS, user[take]),
        "host": _strings(_HOSTS, host[take]),
        "status": _strings(statuses, status[take]),
        "queued_at": pa.array(_START_S + queued[take], type=pa.int64()),
        "started_at": pa.array(_START_S + started[take], type=pa.int64(), mask=no_start[take]),
        "ended_at": pa.array(_START_S + ended[take], type=pa.int64(), mask=no_end[take]),
        "amount": pa.array(amount[take]),
        "amount_eur": pa.array(amount_eur[take]),
        "retry_count": pa.array(retry_count[take]),
        "cpu_s": pa.array(cpu_s[take]),
        "rows_processed": pa.array(rows_processed[take]),
        "cost_center": pc.if_else(pa.array(null_cc[take]), pa.scalar(None, pa.string()), cc),
    }
    if s.constant:
        columns[s.constant[0]] = _strings([s.constant[1]], np.zeros(count, dtype=np.int64))
    schema = _schema(s)
    arrays = [columns[f.name].cast(f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


# --------------------------------------------------------------------------- cases

# The order-to-cash flow of ``ops_cases``: each row is one step of a case. Activities
# pair a fast and a slow step within a module (as the processes do), so ``module``
# separates durations far less than the activity does; waits and run times are
# lognormal and independent of load, like the baseline's.
_ACTIVITIES: Final = (
    _Process("sd_order_entry", "SD", 0.0, 60, 0.85, 90, 0.55, 800, 1, 1.0, 1.0),
    _Process("fi_credit_check", "FI", 0.0, 90, 0.85, 60, 0.55, 500, 1, 1.0, 1.0),
    _Process("le_pick_pack", "LE", 0.0, 90, 0.85, 300, 0.55, 3000, 2, 1.0, 1.0),
    _Process("le_ship", "LE", 0.0, 75, 0.85, 300, 0.6, 2000, 1, 1.0, 1.0),
    _Process("sd_invoice", "SD", 0.0, 60, 0.85, 900, 0.55, 6000, 2, 1.0, 1.0),
    _Process("fi_cash_apply", "FI", 0.0, 90, 0.85, 1200, 0.6, 8000, 2, 1.0, 1.0),
)
# Variants: which activities (in flow order) a case goes through, and their shares.
_VARIANTS: Final = (
    ((1, 1, 1, 1, 1, 1), 0.60),  # the full flow
    ((1, 1, 1, 1, 1, 0), 0.25),  # paid elsewhere: no cash application
    ((1, 0, 1, 1, 1, 0), 0.15),  # express: no credit check, no cash application
)
_REWORK: Final = "le_pick_pack"
_REWORK_ONCE: Final = 0.08  # share of cases that do it one extra time
_REWORK_TWICE: Final = 0.04  # two extra times
_RARE_LOOP: Final = "fi_credit_check"
_RARE_LOOP_SHARE: Final = 0.015  # a normal, rare re-check
_HANDOFF: Final = ("le_ship", "sd_invoice")
_HANDOFF_S: Final = 6 * 3600.0  # median gap of the slow hand-off
_HANDOFF_SIGMA: Final = 0.4
_GAP_S: Final = 5 * 60.0  # median gap of every other hand-off
_GAP_SIGMA: Final = 0.8
_WEEKEND_GAP: Final = 3.0  # hand-offs of cases opened at a weekend take this much longer


def _case_chunk(
    s: _Scenario,
    seed: int,
    rows: int,
    chunk: int,
    first: int,
    count: int,
    cdf: Floats,
    weights: Floats,
) -> pa.Table:
    """Rows ``first .. first+count`` of a multi-step case log as an Arrow table.

    Cases are drawn until they hold ``count`` steps (the last one is cut there: it is
    still open at the chunk's end, as a log extract cuts cases); steps queued after the
    end of the covered range are left out, so the last chunk may hold fewer rows (a
    hand-off of several hours would otherwise leave a thinning tail of events after the
    end, read as a gap in the timestamps). A case opens at the
    quantile of the arrival intensity given by the row of its first step, so chunks
    cover consecutive slices of time as in :func:`_chunk`; its steps then follow one
    another: hand-off gap, queue wait, run.
    """
    rng = _rng(seed, chunk, 0)
    plant = _rng(seed, chunk, _stream_id(s.name))
    acts = _ACTIVITIES
    names = [a.name for a in acts]
    n_slots = len(acts)
    k_max = count // 4 + 1  # every variant has at least 4 steps

    def per_activity(attr: str) -> Floats:
        return np.asarray([float(getattr(a, attr)) for a in acts], dtype=np.float64)

    # --- the cases: variant, loops, steps
    shares = np.asarray([v[1] for v in _VARIANTS], dtype=np.float64)
    variant = rng.choice(len(_VARIANTS), size=k_max, p=shares / shares.sum())
    reps = np.asarray([v[0] for v in _VARIANTS], dtype=np.int64)[variant]
    u_rework = plant.random(k_max)
    extra = np.where(
        u_rework < _REWORK_TWICE, 2, np.where(u_rework < _REWORK_TWICE + _REWORK_ONCE, 1, 0)
    )
    reps[:, names.index(_REWORK)] += extra
    rare = names.index(_RARE_LOOP)
    reps[:, rare] += (reps[:, rare] > 0) & (plant.random(k_max) < _RARE_LOOP_SHARE)
    steps = reps.sum(axis=1)
    start_row = np.cumsum(steps) - steps
    k = int(np.searchsorted(start_row, count, side="left"))  # cases starting in this chunk
    steps, start_row, variant = steps[:k], start_row[:k], variant[:k]
    act = np.repeat(np.tile(np.arange(n_slots, dtype=np.int64), k), reps[:k].ravel())[:count]
    case = np.repeat(np.arange(k, dtype=np.int64), steps)[:count]
    n = act.size
    pos = np.arange(n, dtype=np.int64) - start_row[case]  # step number within its case

    # --- when the cases open
    quantiles = (first + start_row + rng.uniform(0.0, 1.0, size=k) * steps) / float(rows)
    opened = _arrivals(cdf, weights, np.minimum(quantiles, 1.0 - 1e-12))
    weekend = ((opened // _DAY) % 7) >= 5  # START is a Monday

    # --- each step: hand-off gap from the previous step's end, queue wait, run
    z_wait = rng.standard_normal(n)
    z_rows = rng.standard_normal(n)
    z_run = rng.standard_normal(n)
    z_gap = rng.standard_normal(n)
    wait = np.round(per_activity("wait_s")[act] * np.exp(per_activity("wait_sigma")[act] * z_wait))
    rows_processed = (
        np.round(per_activity("rows")[act] * np.exp(_ROWS_SIGMA * z_rows)).astype(np.int64) + 1
    )
    run_z = _RUN_ROWS_CORR * z_rows + np.sqrt(1.0 - _RUN_ROWS_CORR**2) * z_run
    run = np.maximum(
        1.0, np.round(per_activity("run_s")[act] * np.exp(per_activity("run_sigma")[act] * run_z))
    )
    prev = np.where(pos > 0, np.roll(act, 1), -1)
    slow = (prev == names.index(_HANDOFF[0])) & (act == names.index(_HANDOFF[1]))
    gap = np.where(
        slow,
        _HANDOFF_S * np.exp(_HANDOFF_SIGMA * z_gap),
        _GAP_S * np.exp(_GAP_SIGMA * z_gap),
    )
    gap = np.where(weekend[case], gap * _WEEKEND_GAP, gap)
    gap = np.where(pos == 0, 0.0, np.round(gap))
    took = gap + wait + run
    done = np.cumsum(took)
    before = done - took  # time of all earlier steps of the chunk
    offset = before - before[start_row[case]] + gap  # queue time within the case
    queued = opened[case] + offset.astype(np.int64)
    started = queued + wait.astype(np.int64)
    ended = started + run.astype(np.int64)

    # --- who, where, outcome, money (as in the baseline)
    user = rng.choice(len(_USERS), size=n, p=_user_weights())
    host_w = np.asarray(_HOST_WEIGHTS, dtype=np.float64)
    host = rng.choice(len(_HOSTS), size=n, p=host_w / host_w.sum())
    home = _users_home_cost_center()[user]
    other_cc = rng.integers(0, len(_COST_CENTERS), size=n)
    cost_center = np.where(rng.random(n) < _HOME_COST_CENTER, home, other_cc)
    cores = per_activity("cores")[act] * np.exp2(rng.choice(3, size=n, p=_CORE_STEPS))
    cpu_s = np.round(run * cores * rng.beta(5.0, 3.0, size=n), 3)
    p_fail = _FAIL_RATE * np.asarray(_HOST_FAIL)[host]
    u_status = rng.random(n)
    status = np.where(u_status < p_fail, 1, np.where(u_status < p_fail + _RETRIED_RATE, 2, 0))
    again = rng.geometric(0.55, size=n)
    retry_count = np.where(rng.random(n) < _RETRY_COUNT_RATE, np.minimum(again, 9), 0)
    order_value = _AMOUNT_MEDIAN * np.exp(_AMOUNT_SIGMA * rng.standard_normal(k))
    amount = np.maximum(0.01, np.round(order_value[case], 2))  # the case's order value

    # --- order: by queue time; job ids follow it. The log is extracted at the end of the
    # covered range: steps queued later are not in it (their cases are still open).
    take = np.argsort(queued, kind="stable")
    take = take[queued[take] <= _SPAN_S]
    import pyarrow.compute as pc  # here: a third of a second to import, for one call

    def ids(prefix: str, numbers: Ints) -> pa.Array:
        padded = pc.utf8_lpad(pa.array(numbers).cast(pa.string()), width=9, padding="0")
        return pc.binary_join_element_wise(prefix, padded, "")

    statuses = ("ok", "failed", "retried")
    columns: dict[str, pa.Array] = {
        "case_id": ids("C", (first + start_row[case])[take]),
        "job_id": ids("J", first + np.arange(take.size, dtype=np.int64)),
        "process_name": _strings(names, act[take]),
        "module": _strings([a.module for a in acts], act[take]),
        "user": _strings(_USERS, user[take]),
        "host": _strings(_HOSTS, host[take]),
        "status": _strings(statuses, status[take]),
        "queued_at": pa.array(_START_S + queued[take], type=pa.int64()),
        "started_at": pa.array(_START_S + started[take], type=pa.int64()),
        "ended_at": pa.array(_START_S + ended[take], type=pa.int64()),
        "amount": pa.array(amount[take]),
        "retry_count": pa.array(retry_count[take].astype(np.int32)),
        "cpu_s": pa.array(cpu_s[take]),
        "rows_processed": pa.array(rows_processed[take]),
        "cost_center": _strings(_COST_CENTERS, cost_center[take]),
    }
    schema = _schema(s)
    arrays = [columns[f.name].cast(f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


# ------------------------------------------------------------------ the orders table

_TABULAR_TYPES: Final[dict[str, pa.DataType]] = {
    "order_id": pa.int64(),
    "order_date": pa.timestamp("s"),
    "region": pa.string(),
    "channel": pa.string(),
    "product_category": pa.string(),
    "customer_code": pa.string(),
    "price": pa.float64(),
    "quantity": pa.int32(),
    "discount": pa.float64(),
    "shipping_cost": pa.float64(),
    "handling_minutes": pa.float64(),
}
"""The ``tabular`` scenario's columns: an orders table, no event-log role (no process,
status, case, user or host name; no queued/started/ended timestamp word)."""

_REGIONS: Final = ("north", "south", "east", "west", "central", "islands")
_REGION_WEIGHTS: Final = (0.24, 0.2, 0.18, 0.18, 0.14, 0.06)
_CHANNELS: Final = ("online", "store", "phone")
_CHANNEL_WEIGHTS: Final = (0.55, 0.35, 0.10)
_CATEGORIES: Final = (
    "apparel",
    "books",
    "electronics",
    "garden",
    "grocery",
    "health",
    "home",
    "music",
    "office",
    "pets",
    "sports",
    "toys",
)
_CUSTOMERS: Final = 4000
_PRICE_MEDIAN: Final = 40.0
_PRICE_SIGMA: Final = 0.5
_HIGH_PRICE: Final = ("electronics", 3.0)  # plant: the category's prices are this many times
_SHIPPING_MEDIAN: Final = 8.0
_SHIPPING_SIGMA: Final = 0.35
_SHIPPING_SHIFT: Final = (50, 1.8)  # plant: from this day on, shipping costs this many times
_HANDLING_MEDIAN: Final = 20.0
_HANDLING_SIGMA: Final = 0.4
_HANDLING_GROWTH: Final = 2.0  # plant: handling time grows linearly to this factor at the end
_QUANTITY_WEEKLY: Final = (8.0, 8.0, 8.0, 8.0, 10.0, 16.0, 16.0)  # Poisson mean Mon..Sun
_ONLINE_DISCOUNT: Final = 0.01  # small but significant: online discounts this much higher
_CUSTOMER_DISCOUNT_SIGMA: Final = 0.3  # each customer's own discount level (log scale)


def _tabular_plants() -> list[Planted]:
    cat, factor = _HIGH_PRICE
    day, jump = _SHIPPING_SHIFT
    return [
        Planted(
            id="segment_difference",
            description=f"{cat} prices are {factor:g}x the other product categories'",
            kinds=("segment_difference",),
            target="price~product_category",
        ),
        Planted(
            id="level_shift",
            description=f"shipping_cost jumps to {jump:g}x its level on day {day} "
            f"({_stamp(day * _DAY)[:10]})",
            kinds=("level_shift", "distribution_drift"),
            target="shipping_cost",
        ),
        Planted(
            id="quantity_trend",
            description=f"handling_minutes grows steadily to {_HANDLING_GROWTH:g}x over the "
            f"{DAYS} days",
            kinds=("quantity_trend", "distribution_drift"),
            target="handling_minutes",
        ),
    ]


def _tabular_confounders() -> list[str]:
    return [
        "quantity follows a strong weekly rhythm (Poisson mean "
        f"{_QUANTITY_WEEKLY[0]:g} on weekdays, {_QUANTITY_WEEKLY[-1]:g} at weekends), the same "
        "every week: no level shift or trend",
        f"customer_code has {_CUSTOMERS} values, each customer with its own discount level "
        "(an identifier-like column: never a grouping column)",
        f"online discounts are {_ONLINE_DISCOUNT:g} higher than the other channels': "
        "significant at this size, but a small effect",
    ]


def _tabular_chunk(
    seed: int, rows: int, chunk: int, first: int, count: int, cdf: Floats, weights: Floats
) -> pa.Table:
    """Rows ``first .. first+count`` of the ``tabular`` scenario's orders table."""
    rng = _rng(seed, chunk, _stream_id("tabular"))
    n = count
    quantiles = (first + np.sort(rng.uniform(0.0, float(count), size=n))) / float(rows)
    at = _arrivals(cdf, weights, quantiles)
    day = at // _DAY
    region = rng.choice(len(_REGIONS), size=n, p=np.asarray(_REGION_WEIGHTS))
    channel = rng.choice(len(_CHANNELS), size=n, p=np.asarray(_CHANNEL_WEIGHTS))
    category = rng.integers(0, len(_CATEGORIES), size=n)
    customer = rng.integers(0, _CUSTOMERS, size=n)
    # each customer's own discount level: a pure function of (seed, customer)
    own = np.random.default_rng(np.random.SeedSequence([seed, _stream_id("customers")]))
    customer_level = np.exp(_CUSTOMER_DISCOUNT_SIGMA * own.standard_normal(_CUSTOMERS))
    price = _PRICE_MEDIAN * np.exp(_PRICE_SIGMA * rng.standard_normal(n))
    price = np.where(category == _CATEGORIES.index(_HIGH_PRICE[0]), price * _HIGH_PRICE[1], price)
    quantity = 1 + rng.poisson(np.asarray(_QUANTITY_WEEKLY)[day % 7] - 1.0)
    discount = 0.02 + rng.beta(5.0, 20.0, size=n) * customer_level[customer]
    discount = discount + np.where(channel == 0, _ONLINE_DISCOUNT, 0.0)
    shipping = _SHIPPING_MEDIAN * np.exp(_SHIPPING_SIGMA * rng.standard_normal(n))
    shipping = np.where(day >= _SHIPPING_SHIFT[0], shipping * _SHIPPING_SHIFT[1], shipping)
    growth = 1.0 + (_HANDLING_GROWTH - 1.0) * at / float(_SPAN_S)
    handling = _HANDLING_MEDIAN * growth * np.exp(_HANDLING_SIGMA * rng.standard_normal(n))
    codes = [f"C{i:05d}" for i in range(_CUSTOMERS)]
    columns: dict[str, pa.Array] = {
        "order_id": pa.array(np.arange(first + 1, first + n + 1, dtype=np.int64)),
        "order_date": pa.array(_START_S + at, type=pa.int64()).cast(pa.timestamp("s")),
        "region": _strings(_REGIONS, region),
        "channel": _strings(_CHANNELS, channel),
        "product_category": _strings(_CATEGORIES, category),
        "customer_code": _strings(codes, customer),
        "price": pa.array(np.round(price, 2)),
        "quantity": pa.array(quantity.astype(np.int32)),
        "discount": pa.array(np.round(discount, 4)),
        "shipping_cost": pa.array(np.round(shipping, 2)),
        "handling_minutes": pa.array(np.round(handling, 1)),
    }
    schema = pa.schema(list(_TABULAR_TYPES.items()))
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


# --------------------------------------------------------------------------- write


class SynthResult(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`synthesize` wrote."""

    data_path: str
    truth_path: str
    format: str
    rows: int
    truth: Truth


def truth_path_for(out: str | Path) -> Path:
    """The default truth file of data file ``out``: ``<stem>.truth.json`` next to it."""
    path = Path(out)
    return path.with_name(f"{path.stem}.truth.json")


def _format_of(path: Path) -> str:
    return "parquet" if path.name.lower().endswith((".parquet", ".pq")) else "csv"


def _atomic_target(path: Path) -> Path:
    """A fresh temporary name next to ``path`` (created with the usual permissions)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def synthesize(
    out: str | Path,
    *,
    rows: int,
    seed: int = 0,
    scenario: str = "baseline",
    truth: str | Path | None = None,
) -> SynthResult:
    """Write ``rows`` rows of scenario ``scenario`` to ``out`` and its truth file.

    ``ops_cases`` writes a little fewer: the steps of its last cases that would be queued
    after the end of the log are not in it (``SynthResult.rows`` says how many were
    written; the truth keeps the requested ``rows``, which reproduce the file).

    Parquet when ``out`` ends in ``.parquet`` or ``.pq``, CSV otherwise. Both files
    are written to temporary names and moved into place, so a crash never leaves a
    partial file under the final name.

    Raises:
        ConfigError: bad rows, seed or scenario, or an output folder that does not exist.
    """
    _scenario(scenario)  # a bad name is reported first
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ConfigError(f"rows: must be a positive integer, got {rows!r}")
    s = _scenario(scenario, rows)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed: must be a non-negative integer, got {seed!r}")
    out_path = Path(out)
    truth_path = Path(truth) if truth is not None else truth_path_for(out_path)
    for p in (out_path, truth_path):
        if not p.parent.is_dir():
            raise ConfigError(f"{p}: folder {str(p.parent)!r} does not exist")

    fmt = _format_of(out_path)
    schema = _schema(s)
    weights = _intensity(s)
    arriving = _close_boost(s, weights)
    cdf = np.concatenate([[0.0], np.cumsum(arriving)])
    queues = {name: [0] * c for name, c in sorted(_servers(s, rows, weights).items())}
    tmp = _atomic_target(out_path)
    try:
        writer: Any
        if fmt == "parquet":
            writer = pq.ParquetWriter(tmp, schema, compression="zstd")
        else:
            writer = pacsv.CSVWriter(tmp, schema)
        written = 0
        with writer:
            for chunk, first in enumerate(range(0, rows, CHUNK_ROWS)):
                count = min(CHUNK_ROWS, rows - first)
                if s.cases:
                    table = _case_chunk(s, seed, rows, chunk, first, count, cdf, weights)
                elif s.tabular:
                    table = _tabular_chunk(seed, rows, chunk, first, count, cdf, weights)
                else:
                    table = _chunk(s, seed, rows, chunk, first, count, cdf, arriving, queues)
                written += table.num_rows
                if fmt == "parquet":
                    writer.write_table(table, row_group_size=CHUNK_ROWS)
                else:
                    writer.write_table(table)
                del table
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

    planted = scenario_plants(s.name, rows)
    accepted = {k for item in planted for k in item.kinds}
    result_truth = Truth(
        scenario=s.name,
        seed=seed,
        rows=rows,
        planted=planted,
        expected_clean=tuple(k for k in DECISION_KINDS if k not in accepted),
        columns=_columns(s),
        confounders=scenario_confounders(s.name, rows),
        servers=_servers(s, rows, weights),
    )
    encoded = msgspec.json.format(msgspec.json.encode(result_truth), indent=2) + b"\n"
    tmp_truth = _atomic_target(truth_path)
    try:
        tmp_truth.write_bytes(encoded)
        os.replace(tmp_truth, truth_path)
    except BaseException:
        tmp_truth.unlink(missing_ok=True)
        raise
    return SynthResult(
        data_path=str(out_path),
        truth_path=str(truth_path),
        format=fmt,
        rows=written,
        truth=result_truth,
    )
