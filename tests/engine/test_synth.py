"""``engine synth``: real files on disk, read back with DuckDB, plants verified in the data."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from engine._data.ingest import ingest
from engine._tools import synth
from engine._tools.cli import main
from engine._tools.synth import DAYS, START, synthesize, truth_path_for
from engine.errors import ConfigError

ROWS = 100_000
WAIT = "date_diff('second', queued_at, started_at)"
RUN = "date_diff('second', started_at, ended_at)"
BASE_COLUMNS = [
    "job_id",
    "process_name",
    "module",
    "user",
    "host",
    "status",
    "queued_at",
    "started_at",
    "ended_at",
    "amount",
    "retry_count",
    "cpu_s",
    "rows_processed",
    "cost_center",
]


def _con(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    reader = "read_parquet" if path.suffix == ".parquet" else "read_csv"
    con.execute(f"CREATE VIEW d AS SELECT * FROM {reader}('{path}')")
    return con


def _one(con: duckdb.DuckDBPyConnection, query: str) -> Any:
    row = con.execute(query).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


def _rows(con: duckdb.DuckDBPyConnection, query: str) -> dict[str, Any]:
    return {r[0]: r[1] if len(r) == 2 else r[1:] for r in con.execute(query).fetchall()}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synth")
    out = {}
    for name in synth.SCENARIOS:
        path = root / f"{name}.parquet"
        synthesize(path, rows=ROWS, seed=11, scenario=name)
        out[name] = path
    return out


def _truth(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(truth_path_for(path).read_text())
    return data


# ----------------------------------------------------------------------- files


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_files_read_back_with_duckdb(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"events{suffix}"
    result = synthesize(path, rows=5_000, seed=3, scenario="baseline")
    assert result.format == suffix[1:]
    assert Path(result.truth_path) == tmp_path / "events.truth.json"
    con = _con(path)
    described = con.execute("DESCRIBE d").fetchall()
    assert [r[0] for r in described] == BASE_COLUMNS
    types = {r[0]: r[1] for r in described}
    assert types["queued_at"] == types["started_at"] == types["ended_at"] == "TIMESTAMP"
    assert types["amount"] == types["cpu_s"] == "DOUBLE"
    assert types["retry_count"] in ("INTEGER", "BIGINT")
    assert _one(con, "SELECT count(*) FROM d") == 5_000
    assert _one(con, "SELECT count(DISTINCT job_id) FROM d") == 5_000
    assert _one(con, f"SELECT count(*) FROM d WHERE {WAIT} < 0 OR {RUN} < 0") == 0
    first, last = _one(con, "SELECT min(queued_at), max(queued_at) FROM d")
    assert str(first) >= START.replace("T", " ")
    assert (last - first).days >= DAYS - 2
    assert _one(con, "SELECT count(DISTINCT process_name) FROM d") == 12
    assert _one(con, "SELECT count(DISTINCT host) FROM d") == 8
    assert _one(con, "SELECT count(DISTINCT user) FROM d") == 60
    statuses = _rows(con, "SELECT status, count(*) FROM d GROUP BY 1")
    assert set(statuses) == {"ok", "failed", "retried"}
    truth = json.loads(Path(result.truth_path).read_text())
    assert truth["scenario"] == "baseline" and truth["seed"] == 3 and truth["rows"] == 5_000
    assert truth["planted"] == []
    assert truth["columns"] == BASE_COLUMNS


def test_engine_ingest_finds_the_event_roles(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    synthesize(path, rows=3_000, seed=1, scenario="data_quality")
    info = ingest(path, tmp_path / "cache")
    assert info.rows == 3_000
    assert info.event_roles == {
        "case": "job_id",
        "process": "process_name",
        "status": "status",
        "user": "user",
        "host": "host",
        "queued": "queued_at",
        "started": "started_at",
        "ended": "ended_at",
    }
    roles = {c.name: c.role for c in info.columns}
    assert roles["amount"] == roles["amount_eur"] == roles["cpu_s"] == "numeric"
    assert roles["region"] == roles["cost_center"] == "categorical"
    assert {c.name: c.null_count for c in info.columns}["cost_center"] > 1_000


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, suffix: str) -> None:
    def make(name: str, seed: int) -> tuple[bytes, bytes]:
        path = tmp_path / f"{name}{suffix}"
        synthesize(path, rows=4_000, seed=seed, scenario="ops_incidents")
        return path.read_bytes(), truth_path_for(path).read_bytes()

    a, b, c = make("a", 5), make("b", 5), make("c", 6)
    assert a == b
    assert a[0] != c[0]
    assert json.loads(a[1])["seed"] == 5 and json.loads(c[1])["seed"] == 6


def test_chunks_are_deterministic_and_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(synth, "CHUNK_ROWS", 2_500)
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    synthesize(first, rows=10_001, seed=2, scenario="data_quality")
    synthesize(second, rows=10_001, seed=2, scenario="data_quality")
    assert first.read_bytes() == second.read_bytes()
    meta = pq.ParquetFile(first).metadata
    assert meta.num_rows == 10_001
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [2_500] * 4 + [1]
    con = _con(first)
    # 1% copies per chunk (round(25) x 4, round(0.01) x 1); the originals' ids are unique
    assert _one(con, "SELECT count(*) - count(DISTINCT job_id) FROM d") == 100
    # Chunks cover consecutive slices of time.
    bounds = con.execute(
        "SELECT min(queued_at), max(queued_at) FROM "
        "(SELECT *, (row_number() OVER () - 1) // 2500 AS chunk FROM d) "
        "GROUP BY chunk ORDER BY chunk"
    ).fetchall()
    assert all(bounds[i][1] <= bounds[i + 1][0] for i in range(len(bounds) - 1))


def test_small_and_odd_sizes(tmp_path: Path) -> None:
    for rows in (1, 7, 101):
        path = tmp_path / f"r{rows}.parquet"
        synthesize(path, rows=rows, seed=0, scenario="data_quality")
        assert pq.ParquetFile(path).metadata.num_rows == rows


def test_ten_thousand_rows_are_fast(tmp_path: Path) -> None:
    begin = time.perf_counter()
    synthesize(tmp_path / "fast.parquet", rows=10_000, seed=1, scenario="ops_incidents")
    synthesize(tmp_path / "fast.csv", rows=10_000, seed=1, scenario="data_quality")
    assert time.perf_counter() - begin < 5.0


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="scenario"):
        synthesize(tmp_path / "x.csv", rows=10, scenario="nope")
    with pytest.raises(ConfigError, match="rows"):
        synthesize(tmp_path / "x.csv", rows=0)
    with pytest.raises(ConfigError, match="seed"):
        synthesize(tmp_path / "x.csv", rows=10, seed=-1)
    with pytest.raises(ConfigError, match="does not exist"):
        synthesize(tmp_path / "missing" / "x.csv", rows=10)
    assert not list(tmp_path.iterdir())


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ops.csv"
    truth = tmp_path / "elsewhere.json"
    args = ["--rows", "2000", "--seed", "4", "--scenario", "ops_incidents"]
    code = main(["synth", *args, "--out", str(out), "--truth", str(truth)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "wrote 2000 rows" in printed and str(truth) in printed
    assert json.loads(truth.read_text())["scenario"] == "ops_incidents"
    assert not truth_path_for(out).exists()

    bad = main(["synth", "--rows", "10", "--out", str(tmp_path / "no" / "x.csv")])
    assert bad == 2
    assert "x.csv: folder" in capsys.readouterr().err


def test_cli_subprocess_usage_errors(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "engine", "synth", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert run("--rows", "10", "--out", str(tmp_path / "a.csv"), "--scenario", "x").returncode == 2
    assert run("--rows", "0", "--out", str(tmp_path / "a.csv")).returncode == 2
    ok = run("--rows", "50", "--out", str(tmp_path / "a.parquet"))
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "a.truth.json").is_file()


# ---------------------------------------------------------------------- plants


def _planted(path: Path) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in _truth(path)["planted"]}


def _others_ratio(values: dict[str, float], key: str) -> float:
    """values[key] over the largest of the other values."""
    return values[key] / max(v for k, v in values.items() if k != key)


def test_baseline_is_clean(made: dict[str, Path]) -> None:
    path = made["baseline"]
    truth = _truth(path)
    assert truth["planted"] == []
    assert "queue_bottleneck" in truth["expected_clean"]
    con = _con(path)
    assert _one(con, "SELECT count(*) FROM d") == ROWS
    assert _one(con, "SELECT count(*) FROM (SELECT DISTINCT * FROM d)") == ROWS
    assert _one(con, "SELECT count(*) FROM d WHERE cost_center IS NULL") == 0
    shares = _rows(
        con, f"SELECT process_name, sum({WAIT}) / (SELECT sum({WAIT}) FROM d) FROM d GROUP BY 1"
    )
    assert max(shares.values()) < 0.2
    retried = _rows(con, "SELECT process_name, avg((status = 'retried')::INT) FROM d GROUP BY 1")
    assert min(retried.values()) > 0 and max(retried.values()) < 2 * statistics.median(
        retried.values()
    )
    failed = _rows(con, "SELECT host, avg((status = 'failed')::INT) FROM d GROUP BY 1")
    assert min(failed.values()) > 0 and max(failed.values()) < 2 * statistics.median(
        failed.values()
    )
    gap_h = _one(
        con,
        "SELECT max(g) / 3600 FROM (SELECT epoch(queued_at) - "
        "lag(epoch(queued_at)) OVER (ORDER BY queued_at) AS g FROM d)",
    )
    assert gap_h < 4
    # Processes differ by design (more than twice in median wait and in median run time).
    medians = con.execute(
        f"SELECT median({WAIT}), median({RUN}) FROM d GROUP BY process_name"
    ).fetchall()
    assert max(m[0] for m in medians) > 4 * min(m[0] for m in medians)
    assert max(m[1] for m in medians) > 10 * min(m[1] for m in medians)
    corr = con.execute(
        "SELECT corr(cpu_s, rows_processed), corr(amount, cpu_s), corr(amount, rows_processed) "
        "FROM d"
    ).fetchone()
    assert corr is not None and all(abs(c) < 0.9 for c in corr)


def test_ops_incidents_plants_are_in_the_data(made: dict[str, Path]) -> None:
    path = made["ops_incidents"]
    planted = _planted(path)
    assert set(planted) == {
        "queue_bottleneck",
        "wait_changepoint",
        "data_outage",
        "retry_hotspot",
        "run_trend",
        "failure_hotspot",
    }
    con = _con(path)
    assert _one(con, "SELECT count(*) FROM d") == ROWS

    # queue bottleneck: the largest share of wait, p95 far above the peers'
    bottleneck = planted["queue_bottleneck"]["target"]
    assert planted["queue_bottleneck"]["kinds"] == ["queue_bottleneck"]
    stats = _rows(
        con,
        f"SELECT process_name, sum({WAIT}) / (SELECT sum({WAIT}) FROM d), "
        f"quantile_cont({WAIT}, 0.95) FROM d GROUP BY 1",
    )
    assert stats[bottleneck][0] > 0.4
    assert max(stats, key=lambda k: stats[k][0]) == bottleneck
    peer_p95 = sorted(v[1] for k, v in stats.items() if k != bottleneck)[5]
    assert stats[bottleneck][1] > 5 * peer_p95

    # changepoint: one process's median wait x3 from day 45, the others flat
    cp = planted["wait_changepoint"]
    assert set(cp["kinds"]) == {"changepoint", "control_chart_violation"}
    split = f"queued_at >= TIMESTAMP '{START}' + INTERVAL 45 DAY"
    ratios = _rows(
        con,
        f"SELECT process_name, median({WAIT}) FILTER (WHERE {split}) / "
        f"median({WAIT}) FILTER (WHERE NOT {split}) FROM d GROUP BY 1",
    )
    assert ratios[cp["target"]] > 2.5
    assert all(0.8 < r < 1.25 for k, r in ratios.items() if k != cp["target"])

    # outage: nothing queued, started or ended for 36 h; events on both sides
    outage = planted["data_outage"]
    assert outage["target"] == "queued_at"
    assert set(outage["alt_targets"]) == {"started_at", "ended_at"}
    w0 = f"TIMESTAMP '{START}' + INTERVAL {64 * 24 + 18} HOUR"
    w1 = f"{w0} + INTERVAL 36 HOUR"
    for col in ("queued_at", "started_at", "ended_at"):
        assert _one(con, f"SELECT count(*) FROM d WHERE {col} >= {w0} AND {col} < {w1}") == 0
    before = f"queued_at BETWEEN {w0} - INTERVAL 2 HOUR AND {w0}"
    after = f"queued_at BETWEEN {w1} AND {w1} + INTERVAL 2 HOUR"
    assert _one(con, f"SELECT count(*) FROM d WHERE {before}") > 0
    assert _one(con, f"SELECT count(*) FROM d WHERE {after}") > 0

    # retry hotspot: retried share and mean retry_count >= 5x every other process
    hot = planted["retry_hotspot"]["target"]
    retried = _rows(con, "SELECT process_name, avg((status = 'retried')::INT) FROM d GROUP BY 1")
    retries = _rows(con, "SELECT process_name, avg(retry_count) FROM d GROUP BY 1")
    assert _others_ratio(retried, hot) >= 4.5
    assert _others_ratio(retries, hot) >= 5

    # trend: one process's daily median run time doubles; the others stay flat
    trend = planted["run_trend"]["target"]
    first = f"queued_at < TIMESTAMP '{START}' + INTERVAL 10 DAY"
    last = f"queued_at >= TIMESTAMP '{START}' + INTERVAL {DAYS - 10} DAY"
    growth = _rows(
        con,
        f"SELECT process_name, median({RUN}) FILTER (WHERE {last}) / "
        f"median({RUN}) FILTER (WHERE {first}) FROM d GROUP BY 1",
    )
    assert growth[trend] > 1.7
    assert all(0.8 < g < 1.25 for k, g in growth.items() if k != trend)

    # failure hotspot host
    host = planted["failure_hotspot"]["target"]
    failed = _rows(con, "SELECT host, avg((status = 'failed')::INT) FROM d GROUP BY 1")
    assert _others_ratio(failed, host) >= 5


def test_data_quality_plants_are_in_the_data(made: dict[str, Path]) -> None:
    path = made["data_quality"]
    planted = _planted(path)
    assert {p: planted[p]["target"] for p in planted} == {
        "duplicate_rows": "data",
        "high_missingness": "cost_center",
        "benford_fabrication": "amount",
        "redundant_column": "amount_eur",
        "constant_column": "region",
    }
    assert planted["benford_fabrication"]["alt_targets"] == ["amount_eur"]
    con = _con(path)
    columns = [r[0] for r in con.execute("DESCRIBE d").fetchall()]
    assert columns.index("amount_eur") == columns.index("amount") + 1
    assert columns[-1] == "region"
    assert _one(con, "SELECT count(*) FROM d") == ROWS
    distinct = _one(con, "SELECT count(*) FROM (SELECT DISTINCT * FROM d)")
    assert ROWS - distinct == ROWS // 100
    missing = _one(con, "SELECT avg((cost_center IS NULL)::INT) FROM d")
    assert 0.43 < missing < 0.47
    nullable = " OR ".join(f'"{c}" IS NULL' for c in columns if c != "cost_center")
    assert _one(con, f"SELECT count(*) FROM d WHERE {nullable}") == 0
    leading = "CAST(floor(amount / pow(10, floor(log10(amount)))) AS INT)"
    fives = _one(con, f"SELECT avg(({leading} = 5)::INT) FROM d")
    assert fives > 0.3  # Benford expects 7.9% leading fives
    corr, ratio = _one(con, "SELECT corr(amount, amount_eur), median(amount_eur / amount) FROM d")
    assert corr > 0.999 and abs(ratio - 0.92) < 0.001
    assert _one(con, "SELECT count(DISTINCT region) || ':' || min(region) FROM d") == "1:EU"


def test_baseline_amounts_follow_benford(made: dict[str, Path]) -> None:
    con = _con(made["baseline"])
    digits = _rows(
        con,
        "SELECT CAST(floor(amount / pow(10, floor(log10(amount)))) AS INT) AS digit, "
        "count(*) / (SELECT count(*) FROM d) FROM d GROUP BY 1",
    )
    mad = sum(abs(digits.get(k, 0.0) - math.log10(1 + 1 / k)) for k in range(1, 10)) / 9
    assert mad < 0.006  # Nigrini's "close conformity"
    orders = _one(con, "SELECT log10(max(amount) / min(amount)) FROM d")
    assert orders > 4


def _running_max(con: duckdb.DuckDBPyConnection, process: str) -> int:
    """The most jobs of ``process`` running at once (exact, from start/end events)."""
    return int(
        _one(
            con,
            "SELECT max(n) FROM (SELECT sum(d) OVER (ORDER BY t, d ROWS UNBOUNDED PRECEDING) "
            f"AS n FROM (SELECT epoch(started_at) AS t, 1 AS d FROM d WHERE process_name = "
            f"'{process}' UNION ALL SELECT epoch(ended_at), -1 FROM d WHERE process_name = "
            f"'{process}' AND ended_at IS NOT NULL))",
        )
    )


@pytest.mark.parametrize("scenario", ["ops_capacity", "ops_calendar"])
def test_capacity_and_calendar_plants_are_in_the_data(made: dict[str, Path], scenario: str) -> None:
    path = made[scenario]
    truth = _truth(path)
    planted = _planted(path)
    common = {"capacity_shortfall", "volume_growth", "timeout_cutoff", "sla_breach"}
    if scenario == "ops_calendar":
        common |= {"close_spill", "close_contention", "host_rebalance"}
    if scenario == "ops_capacity":
        common |= {"arrival_bursts", "joint_anomaly"}
    assert set(planted) == common
    assert truth["confounders"]
    con = _con(path)
    assert _one(con, "SELECT count(*) FROM d") == ROWS

    # the understaffed pool: never more jobs running than its workers; first come, first
    # served (start order follows queue order); a large share of its jobs wait
    pool = planted["capacity_shortfall"]["target"]
    workers = truth["servers"][pool]
    assert _running_max(con, pool) == workers
    inversions = _one(
        con,
        "SELECT count(*) FROM (SELECT started_at < lag(started_at) OVER "
        f"(ORDER BY queued_at, started_at) AS inv FROM d WHERE process_name = '{pool}' "
        "AND started_at IS NOT NULL) WHERE inv",
    )
    assert inversions == 0
    assert _one(con, f"SELECT avg(({WAIT} > 0)::INT) FROM d WHERE process_name = '{pool}'") > 0.1

    # the timeout: killed jobs ran exactly the limit, about the planted share of the process
    proc = planted["timeout_cutoff"]["target"]
    limits = con.execute(
        f"SELECT DISTINCT {RUN} FROM d WHERE status = 'killed' AND ended_at IS NOT NULL"
    ).fetchall()
    assert len(limits) == 1
    assert _one(con, f"SELECT max({RUN}) FROM d WHERE process_name = '{proc}'") == limits[0][0]
    killed = _one(con, f"SELECT avg((status = 'killed')::INT) FROM d WHERE process_name = '{proc}'")
    share = 0.05 if scenario == "ops_capacity" else 0.04
    assert killed == pytest.approx(share, abs=0.015)

    # the stall: about 15% of the process's jobs wait an hour or more
    stalled = planted["sla_breach"]["target"]
    hour = _one(con, f"SELECT avg(({WAIT} >= 3600)::INT) FROM d WHERE process_name = '{stalled}'")
    assert hour == pytest.approx(0.15, abs=0.03)

    # the growth: the last two weeks hold about 2.8x the jobs of the first two
    grower = planted["volume_growth"]["target"]
    first, last = _one(
        con,
        f"SELECT count(*) FILTER (WHERE queued_at < TIMESTAMP '{START}' + INTERVAL 14 DAY), "
        f"count(*) FILTER (WHERE queued_at >= TIMESTAMP '{START}' + INTERVAL {DAYS - 14} DAY) "
        f"FROM d WHERE process_name = '{grower}'",
    )
    assert 2.2 < last / first < 3.4

    # censoring at the end of the log: no end time exactly for the open jobs
    end = f"TIMESTAMP '{START}' + INTERVAL {DAYS} DAY"
    assert _one(con, f"SELECT count(*) FROM d WHERE ended_at > {end}") == 0
    assert (
        _one(
            con,
            "SELECT count(*) FROM d WHERE (ended_at IS NULL) <> (status IN ('running', 'queued'))",
        )
        == 0
    )
    assert (
        _one(con, "SELECT count(*) FROM d WHERE (started_at IS NULL) <> (status = 'queued')") == 0
    )


def test_calendar_rhythm_and_capacity_confounders(made: dict[str, Path]) -> None:
    cal = _con(made["ops_calendar"])
    by_day = _rows(
        cal,
        f"SELECT isodow(queued_at), median({WAIT}) FROM d WHERE process_name = 'inv_stock_sync' "
        "GROUP BY 1",
    )
    assert by_day[1] / by_day[3] == pytest.approx(3.0, rel=0.2)  # Monday vs Wednesday
    assert by_day[7] / by_day[3] == pytest.approx(0.5, rel=0.2)
    cap = _con(made["ops_capacity"])
    truth = _truth(made["ops_capacity"])
    # the busy but adequately staffed pool: bounded by its workers, and it barely waits
    assert _running_max(cap, "inv_valuation") <= truth["servers"]["inv_valuation"]
    assert _one(cap, f"SELECT avg({WAIT}) FROM d WHERE process_name = 'inv_valuation'") < 30
    sigma = _one(
        cap,
        f"SELECT stddev(ln({RUN})) FROM d WHERE process_name = 'gl_journal_import' AND {RUN} > 0",
    )
    assert sigma == pytest.approx(0.9, abs=0.1)  # the heavy tail


WINDOW_DAYS = "(" + ", ".join(f"DATE '{d}'" for d in (
    "2024-04-26", "2024-04-29", "2024-04-30", "2024-05-29", "2024-05-30", "2024-05-31",
    "2024-06-26", "2024-06-27", "2024-06-28",
)) + ")"  # fmt: skip
PLANTED_DAYS = WINDOW_DAYS.split(", DATE '2024-06-26'")[0] + ")"  # months that end in the log


def test_close_window_days_follow_the_calendar() -> None:
    # the last 3 business days of April, May and June 2024 (no holidays)
    days = synth.close_window_days()
    first = synth.np.datetime64(START[:10], "D")
    got = [str(first + int(d)) for d in synth.np.flatnonzero(days)]
    assert "(" + ", ".join(f"DATE '{d}'" for d in got) + ")" == WINDOW_DAYS
    assert len(got) == 9
    planted = [str(first + int(d)) for d in synth.np.flatnonzero(synth.close_window_days(True))]
    assert planted == got[:6]


def test_calendar_close_plants_are_in_the_data(made: dict[str, Path]) -> None:
    con = _con(made["ops_calendar"])
    planted = _planted(made["ops_calendar"])
    close = planted["close_spill"]["target"]
    mover = planted["close_contention"]["target"]
    busy = "fa_depreciation"
    win = f"CAST(queued_at AS DATE) IN {PLANTED_DAYS}"
    other = f"NOT CAST(queued_at AS DATE) IN {WINDOW_DAYS}"
    weekday = "isodow(queued_at) <= 5"

    def per_day(proc: str) -> tuple[float, float]:
        n_w, n_o = _one(
            con,
            f"SELECT count(*) FILTER (WHERE {win}), count(*) FILTER (WHERE {other}) "
            f"FROM d WHERE process_name = '{proc}' AND {weekday}",
        )
        return n_w / 6, n_o / (65 - 9)

    # the close runs about 4x its jobs a business day in the window, the others as usual
    w, o = per_day(close)
    assert 3.5 < w / o < 6.5
    w, o = per_day(busy)
    assert 2.5 < w / o < 4.5
    for proc in (mover, "ap_invoice_post", "inv_stock_sync"):
        w, o = per_day(proc)
        assert 0.8 < w / o < 1.25, proc
    # in the window the close and its competitor run on the close hosts only
    hosts = _one(
        con,
        f"SELECT list(DISTINCT host ORDER BY host) FROM d WHERE {win} "
        f"AND process_name IN ('{close}', '{mover}')",
    )
    assert hosts == list(synth.CLOSE_HOSTS)

    # the close waits far longer in the window on average (the median rises only when the
    # competitor has jobs running most of the time: with rows); the busy one does not
    def wait_ratio(proc: str) -> float:
        a, b = _one(
            con,
            f"SELECT avg({WAIT}) FILTER (WHERE {win}), avg({WAIT}) FILTER "
            f"(WHERE {other}) FROM d WHERE process_name = '{proc}' AND {weekday}",
        )
        return float(a) / float(b)

    assert wait_ratio(close) > 3.0
    assert 0.8 < wait_ratio(busy) < 1.25
    # the failing pairing: about 10x on its host; the mix host runs most of ar_dunning
    proc, host = planted["host_rebalance"]["target"], planted["host_rebalance"]["alt_targets"][0]
    fails = "avg((status = 'failed')::INT)"
    here, there = _one(
        con,
        f"SELECT {fails} FILTER (WHERE host = '{host}'), {fails} FILTER (WHERE host <> '{host}') "
        f"FROM d WHERE process_name = '{proc}'",
    )
    assert 6.0 < here / there < 15.0
    share = _one(
        con, "SELECT avg((host = 'erp-app-07')::INT) FROM d WHERE process_name = 'ar_dunning'"
    )
    assert share == pytest.approx(0.7 + 0.3 * 0.12, abs=0.03)


def test_capacity_bursts_cron_and_joint_anomalies(made: dict[str, Path]) -> None:
    cap = _con(made["ops_capacity"])
    planted = _planted(made["ops_capacity"])
    assert planted["arrival_bursts"]["target"] == "ar_dunning"
    assert planted["arrival_bursts"]["kinds"] == ["arrival_burst"]
    assert planted["joint_anomaly"]["target"] == "gl_period_close"
    assert planted["joint_anomaly"]["kinds"] == ["job_anomaly"]
    # bursts: about 30% of ar_dunning's jobs have 4+ of its jobs within a minute of them
    # (no other process's jobs do), and they wait longer than its other jobs
    crowded = (
        f"WITH w AS (SELECT process_name AS p, {WAIT} AS wait, count(*) OVER (PARTITION BY "
        "process_name ORDER BY epoch(queued_at) RANGE BETWEEN 60 PRECEDING AND 60 FOLLOWING) "
        "- 1 AS near FROM d WHERE started_at IS NOT NULL) "
    )
    in_bursts = _rows(cap, f"{crowded}SELECT p, avg((near >= 4)::INT) FROM w GROUP BY p")
    assert in_bursts["ar_dunning"] == pytest.approx(0.3, abs=0.05)
    assert max(v for p, v in in_bursts.items() if p != "ar_dunning") < 0.01
    waits = _rows(
        cap, f"{crowded}SELECT near >= 4, avg(wait) FROM w WHERE p = 'ar_dunning' GROUP BY 1"
    )
    assert waits[True] > waits[False] + 150  # a burst drains over up to 10 min
    # the cron-like process: evenly spaced queue times (the gaps vary by a second at most)
    gaps = _one(
        cap,
        "SELECT max(g) - min(g) FROM (SELECT epoch(queued_at) - lag(epoch(queued_at)) OVER "
        "(ORDER BY queued_at) AS g FROM d WHERE process_name = 'ap_payment_run') "
        "WHERE g IS NOT NULL",
    )
    assert gaps <= 1
    # the joint anomaly: about 4% of gl_period_close's jobs have 2-3 retries and a queue
    # wait at least e^(2 x 0.85) x its median, while neither alone is rare elsewhere
    odd = _one(
        cap,
        f"SELECT avg((retry_count BETWEEN 2 AND 3 AND {WAIT} >= 150 * exp(1.7) - 1)::INT) "
        "FROM d WHERE process_name = 'gl_period_close'",
    )
    assert odd == pytest.approx(0.04, abs=0.015)
    other = _one(
        cap,
        f"SELECT avg((retry_count BETWEEN 2 AND 3 AND {WAIT} >= 150 * exp(1.7) - 1)::INT) "
        "FROM d WHERE process_name = 'ap_invoice_post'",
    )
    assert other < 0.002


# ----------------------------------------------------------------------- cases

CASE_WAIT = "date_diff('second', queued_at, started_at)"


def test_ops_cases_is_deterministic_and_chunked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(synth, "CHUNK_ROWS", 2_500)
    a, b, c = (tmp_path / f"{n}.parquet" for n in "abc")
    made = [synthesize(p, rows=10_001, seed=s, scenario="ops_cases") for p, s in ((a, 4), (b, 4))]
    synthesize(c, rows=10_001, seed=5, scenario="ops_cases")
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    meta = pq.ParquetFile(a).metadata
    assert made[0].rows == meta.num_rows <= 10_001
    assert all(meta.row_group(i).num_rows <= 2_500 for i in range(meta.num_row_groups))
    con = _con(a)
    assert _one(con, "SELECT count(DISTINCT job_id) FROM d") == meta.num_rows
    # a case never spans two chunks: its steps sit in one row group
    spans = _one(
        con,
        "SELECT count(*) FROM (SELECT case_id FROM (SELECT case_id, (row_number() OVER () - 1) "
        "// 2500 AS chunk FROM d) GROUP BY case_id HAVING count(DISTINCT chunk) > 1)",
    )
    assert spans == 0


def test_ops_cases_plants_are_in_the_data(made: dict[str, Path]) -> None:
    path = made["ops_cases"]
    truth = _truth(path)
    planted = _planted(path)
    assert set(planted) == {"rework_loop", "handoff_gap"}
    assert planted["rework_loop"]["target"] == "le_pick_pack"
    assert planted["handoff_gap"]["target"] == "le_ship->sd_invoice"
    assert planted["handoff_gap"]["alt_targets"] == ["sd_invoice"]
    assert len(truth["confounders"]) == 3
    assert truth["columns"] == ["case_id", *BASE_COLUMNS]
    con = _con(path)
    rows = _one(con, "SELECT count(*) FROM d")
    assert 0.98 * ROWS < rows <= ROWS  # steps queued after the end are left out
    end = f"TIMESTAMP '{START}' + INTERVAL {DAYS} DAY"
    assert _one(con, f"SELECT count(*) FROM d WHERE queued_at > {end}") == 0
    assert _one(con, f"SELECT count(*) FROM d WHERE {CASE_WAIT} < 0 OR {RUN} < 0") == 0

    # loops: about 12% of cases redo le_pick_pack, 1.5% of credit checks are redone
    loops = _rows(
        con,
        "SELECT process_name, avg((k >= 2)::INT) FROM (SELECT case_id, process_name, "
        "count(*) AS k FROM d GROUP BY ALL) GROUP BY 1",
    )
    assert loops["le_pick_pack"] == pytest.approx(0.12, abs=0.015)
    assert loops["fi_credit_check"] == pytest.approx(0.015, abs=0.006)
    assert all(v == 0 for k, v in loops.items() if k not in ("le_pick_pack", "fi_credit_check"))

    # hand-offs: le_ship -> sd_invoice a median ~6 h (x3 at weekends), the rest minutes
    gaps = _rows(
        con,
        "SELECT t, median(g) FROM (SELECT lag(process_name) OVER w || '->' || process_name AS t, "
        "date_diff('second', lag(ended_at) OVER w, queued_at) AS g, "
        "isodow(first_value(queued_at) OVER w) >= 6 AS weekend FROM d "
        "WINDOW w AS (PARTITION BY case_id ORDER BY queued_at)) WHERE t IS NOT NULL "
        "AND NOT weekend GROUP BY 1",
    )
    assert gaps["le_ship->sd_invoice"] == pytest.approx(6 * 3600, rel=0.1)
    others = [v for k, v in gaps.items() if k != "le_ship->sd_invoice"]
    assert all(200 < v < 400 for v in others)
    weekend = _one(
        con,
        "SELECT median(g) FROM (SELECT lag(process_name) OVER w AS a, "
        "date_diff('second', lag(ended_at) OVER w, queued_at) AS g, "
        "isodow(first_value(queued_at) OVER w) >= 6 AS weekend FROM d "
        "WINDOW w AS (PARTITION BY case_id ORDER BY queued_at)) "
        "WHERE weekend AND a IS NOT NULL AND a <> 'le_ship'",
    )
    assert weekend == pytest.approx(3 * 300, rel=0.15)

    # three variants of the flow (without the loops)
    variants = _rows(
        con,
        "SELECT v, count(*) FROM (SELECT case_id, string_agg(DISTINCT process_name, ',' "
        "ORDER BY process_name) AS v FROM d GROUP BY 1) GROUP BY 1",
    )
    top = sorted(variants.values(), reverse=True)[:3]
    assert sum(top) / sum(variants.values()) > 0.99
    assert top[0] / sum(variants.values()) == pytest.approx(0.6, abs=0.03)

    # the ingest maps the case column to the case role
    info = ingest(path, path.parent / "cache_cases")
    assert info.event_roles["case"] == "case_id"


def test_tabular_is_an_orders_table_with_its_plants(made: dict[str, Path], tmp_path: Path) -> None:
    path = made["tabular"]
    truth = _truth(path)
    assert truth["columns"] == list(synth._TABULAR_TYPES)
    assert [p["target"] for p in truth["planted"]] == [
        "price~product_category",
        "shipping_cost",
        "handling_minutes",
    ]
    assert len(truth["confounders"]) == 3
    info = ingest(path, tmp_path / "cache")
    assert info.event_roles == {}  # not an event log: no role is detected
    roles = {c.name: c.role for c in info.columns}
    assert roles["region"] == roles["product_category"] == "categorical"
    assert roles["order_date"] == "timestamp"
    con = _con(path)
    assert _one(con, "SELECT count(*) FROM d") == ROWS
    assert _one(con, "SELECT count(DISTINCT order_id) FROM d") == ROWS
    first, last = _one(con, "SELECT min(order_date), max(order_date) FROM d")
    assert (last - first).days == DAYS - 1
    price = _rows(con, "SELECT product_category, median(price) FROM d GROUP BY 1")
    others = statistics.median(v for k, v in price.items() if k != "electronics")
    assert price["electronics"] / others == pytest.approx(3.0, rel=0.1)
    day = f"date_diff('day', TIMESTAMP '{START}', order_date)"
    ship = _one(
        con,
        f"SELECT median(shipping_cost) FILTER ({day} >= 50) / "
        f"median(shipping_cost) FILTER ({day} < 50) FROM d",
    )
    assert ship == pytest.approx(1.8, rel=0.05)
    hand = _one(
        con,
        f"SELECT median(handling_minutes) FILTER ({day} >= 80) / "
        f"median(handling_minutes) FILTER ({day} < 10) FROM d",
    )
    assert hand == pytest.approx(1.9 / 1.05, rel=0.1)  # linear growth to 2x at the end
    qty = _rows(con, "SELECT isodow(order_date) >= 6, median(quantity) FROM d GROUP BY 1")
    assert qty[True] / qty[False] == pytest.approx(2.0, rel=0.15)  # the weekly confounder
    online = _rows(con, "SELECT channel = 'online', avg(discount) FROM d GROUP BY 1")
    assert online[True] - online[False] == pytest.approx(0.01, abs=0.004)  # small
    assert _one(con, "SELECT count(DISTINCT customer_code) FROM d") == 4000


def test_tabular_is_deterministic_and_chunked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(synth, "CHUNK_ROWS", 1_000)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    synthesize(a, rows=3_500, seed=4, scenario="tabular")
    synthesize(b, rows=3_500, seed=4, scenario="tabular")
    assert a.read_bytes() == b.read_bytes()
    assert pq.ParquetFile(a).metadata.num_row_groups == 4
    con = _con(a)
    assert _one(con, "SELECT count(*) FROM d") == 3_500


@pytest.mark.parametrize("scenario", ["ops_capacity", "ops_calendar"])
def test_volume_plants_only_in_logs_large_enough_to_show_them(
    tmp_path: Path, scenario: str
) -> None:
    volume = {"arrival_bursts", "close_spill", "close_contention"}
    full = {p.id for p in synth.scenario_plants(scenario)}
    assert full & volume  # each scenario has some
    small = tmp_path / "small.parquet"
    synthesize(small, rows=synth.VOLUME_PLANT_ROWS - 1, seed=3, scenario=scenario)
    truth = _truth(small)
    assert {p["id"] for p in truth["planted"]} == full - volume
    assert not any("cron-like" in c or "close window" in c for c in truth["confounders"])
    # the data has none of them either: the burst and close processes keep their rate
    con = _con(small)
    for proc in ("ar_dunning", "gl_period_close"):
        per_minute = _one(
            con,
            "SELECT max(n) FROM (SELECT count(*) AS n FROM d WHERE process_name = "
            f"'{proc}' GROUP BY date_trunc('minute', queued_at))",
        )
        assert per_minute <= 4, proc
    assert {p.id for p in synth.scenario_plants(scenario, synth.VOLUME_PLANT_ROWS)} == full
