"""Write examples/ops_events.csv: a small, deterministic operations event log.

Run: ``python examples/generate_example.py`` (or with ``--out PATH``).

About 6,000 jobs over 30 days: job_id, process_name, module, user, host, status,
queued_at/started_at/ended_at (ISO timestamps), amount, retry_count and cost_center.
Planted on purpose, so that the decision plugins have something to find:

* ``close_gl`` waits far longer in its queue than the other seven processes
  (queue_bottleneck);
* about 1% of ``amount`` values are extreme (robust_outliers);
* 60 rows are exact copies of other rows (duplicate_rows);
* ``cost_center`` is missing on about 40% of rows (high_missingness).

The same seed always writes the same bytes.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

SEED = 20240601
N_JOBS = 5940
N_DUPLICATES = 60
DAYS = 30
START = np.datetime64("2024-03-01T00:00:00", "s")

# process -> (module, share of jobs, median wait s, median run s)
PROCESSES = {
    "ap_invoice": ("AP", 0.16, 240.0, 420.0),
    "ar_receipt": ("AR", 0.14, 200.0, 300.0),
    "bank_recon": ("BNK", 0.10, 300.0, 900.0),
    "close_gl": ("GL", 0.14, 2400.0, 1200.0),
    "fx_reval": ("FX", 0.08, 180.0, 240.0),
    "inventory_sync": ("INV", 0.16, 260.0, 600.0),
    "payroll_calc": ("PY", 0.10, 320.0, 1500.0),
    "tax_report": ("TAX", 0.12, 280.0, 720.0),
}
COLUMNS = [
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
    "cost_center",
]


def _iso(seconds: np.ndarray) -> list[str]:
    stamps = START + seconds.astype("timedelta64[s]")
    return [str(s) for s in np.datetime_as_string(stamps, unit="s")]


def generate(seed: int = SEED) -> list[list[str]]:
    """The rows of the example (header excluded), in a stable order."""
    rng = np.random.default_rng(seed)
    names = sorted(PROCESSES)
    shares = np.array([PROCESSES[p][1] for p in names])
    proc_idx = rng.choice(len(names), size=N_JOBS, p=shares / shares.sum())
    process = np.array(names)[proc_idx]
    wait_median = np.array([PROCESSES[p][2] for p in names])[proc_idx]
    run_median = np.array([PROCESSES[p][3] for p in names])[proc_idx]

    queued = np.sort(rng.uniform(0, DAYS * 86400, size=N_JOBS)).astype(np.int64)
    wait = np.round(rng.lognormal(np.log(wait_median), 0.6)).astype(np.int64)
    run = np.round(rng.lognormal(np.log(run_median), 0.5)).astype(np.int64) + 1
    started = queued + wait
    ended = started + run

    status = rng.choice(["ok", "failed", "retried"], size=N_JOBS, p=[0.85, 0.06, 0.09])
    retry_count = np.where(status == "retried", rng.integers(1, 4, size=N_JOBS), 0)
    retry_count = np.where(status == "failed", rng.integers(0, 2, size=N_JOBS), retry_count)

    amount = rng.lognormal(np.log(1200.0), 0.2, size=N_JOBS)
    n_out = round(0.01 * N_JOBS)
    out_idx = rng.choice(N_JOBS, size=n_out, replace=False)
    high = out_idx[: int(n_out * 0.7)]
    low = out_idx[int(n_out * 0.7) :]
    amount[high] *= rng.uniform(20, 50, size=high.size)
    amount[low] = -amount[low] * rng.uniform(3, 6, size=low.size)

    users = np.array([f"u{i:02d}" for i in range(1, 26)])[rng.integers(0, 25, size=N_JOBS)]
    hosts = np.array([f"h{i:02d}" for i in range(1, 7)])[rng.integers(0, 6, size=N_JOBS)]
    cost_center = np.array([f"CC{i}" for i in range(100, 120)])[rng.integers(0, 20, N_JOBS)]
    missing_cc = rng.random(N_JOBS) < 0.4

    q_iso, s_iso, e_iso = _iso(queued), _iso(started), _iso(ended)
    rows = []
    for i in range(N_JOBS):
        rows.append(
            [
                f"J{i + 1:06d}",
                str(process[i]),
                PROCESSES[str(process[i])][0],
                str(users[i]),
                str(hosts[i]),
                str(status[i]),
                q_iso[i],
                s_iso[i],
                e_iso[i],
                f"{amount[i]:.2f}",
                str(int(retry_count[i])),
                "" if missing_cc[i] else str(cost_center[i]),
            ]
        )
    dup_idx = rng.choice(N_JOBS, size=N_DUPLICATES, replace=False)
    rows.extend(list(rows[i]) for i in sorted(dup_idx.tolist()))
    rows.sort(key=lambda r: (r[6], r[0]))
    return rows


def write(path: Path, seed: int = SEED) -> int:
    rows = generate(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "ops_events.csv"
    )
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    n = write(args.out, args.seed)
    print(f"wrote {n} rows to {args.out}")


if __name__ == "__main__":
    main()
