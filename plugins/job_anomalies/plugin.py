"""job_anomalies: jobs that are odd in several features at once, and where they pile up.

Features per finished job: queue wait (started - queued), run time (ended - started)
and the dataset's quantity/count columns. A seeded sample of at most ``max_sample``
finished jobs is drawn in SQL (ordered by ``hash(rowid, seed)``); jobs still running at
the end (no end time: censored) are left out. Each feature is standardized per process
by normal scores of its within-process ranks (scipy.stats.rankdata, ties averaged, then
the standard normal quantile): a monotone transform, so it needs no log scale for
right-skewed columns, a heavy but stable tail or a zero-inflated count (retries) is
not odd for its shape, and a process that is slow by design is not odd for being
itself. The forest gets the randomized transform (ties broken at random from
``ctx.rng()``), exactly standard normal in every process, so a spike of equal counts
sitting at a different place in each process does not single one out; the reported z
keep mid-ranks. An IsolationForest (scikit-learn, random_state from the run seed) is fitted on
the sample and scores it; the rest is not scored (the result says how many were
checked). A process is a decision when its anomalies are concentrated (share >=
``min_ratio`` x the other processes', enough of them, most odd in two features or more);
otherwise the ranked triage list is given in an ``na``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.ensemble import IsolationForest

from contracts import QUANTITY_SEMANTICS, Evidence, Finding, na, ok
from contracts.sql import quote_ident as _q
from contracts.sql import seeded_sample, string_literal, timestamp_expr


def _settings(ctx) -> dict:
    s = ctx.settings
    return {
        "contamination": str(s.get("contamination", "0.005")),
        "n_estimators": int(s.get("n_estimators", 200)),
        "max_sample": int(s.get("max_sample", 50000)),
        "max_columns": int(s.get("max_columns", 8)),
        "top_n": int(s.get("top_n", 20)),
        "min_ratio": float(s.get("min_ratio", 3.0)),
        "min_anomalies": int(s.get("min_anomalies", 20)),
        "joint_z": float(s.get("joint_z", 1.5)),
        "min_joint_share": float(s.get("min_joint_share", 0.5)),
        "min_sampled": int(s.get("min_sampled", 100)),
    }


def _contamination(text: str) -> str | float | None:
    """'auto' or a share in (0, 0.5]; None when the setting is neither."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0.0 < value <= 0.5 else None


def jobs_query(ctx, roles: dict[str, str], case: str | None, extra: list[str]) -> str:
    """The finished jobs with their raw features (``{tail}``: what follows the CTE)."""
    dtypes = {c.name: c.dtype for c in ctx.data.columns}
    t = {
        r: timestamp_expr(roles[r], dtypes.get(roles[r], ""))
        for r in ("queued", "started", "ended")
    }
    p = _q(roles["process"])
    cols = "".join(f", CAST({_q(c)} AS DOUBLE) AS x{i}" for i, c in enumerate(extra))
    case_id = f"CAST({_q(case)} AS VARCHAR)" if case else "CAST(NULL AS VARCHAR)"
    return (
        f"WITH jobs AS (SELECT rowid AS rid, {case_id} AS case_id, CAST({p} AS VARCHAR) AS p, "
        f"date_diff('millisecond', {t['queued']}, {t['started']}) / 1000.0 AS wait_s, "
        f"date_diff('millisecond', {t['started']}, {t['ended']}) / 1000.0 AS run_s{cols} "
        f"FROM data WHERE {p} IS NOT NULL AND {t['queued']} IS NOT NULL "
        f"AND {t['started']} IS NOT NULL AND {t['ended']} IS NOT NULL "
        f"AND {t['started']} >= {t['queued']} AND {t['ended']} >= {t['started']}) "
    )


def normal_scores(
    values: np.ndarray, groups: np.ndarray, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Per group, the standard normal quantile of each value's rank, (rank - 0.5) / n;
    nulls score 0. Ties get their mid-rank (a constant column scores 0 everywhere), or,
    with ``rng``, are broken at random: the randomized probability integral transform,
    whose result is exactly standard normal in every group even for a count with a
    spike of equal values (zero retries)."""
    out = np.zeros(values.size, dtype=np.float64)
    for g in sorted(set(groups.tolist())):
        idx = np.flatnonzero((groups == g) & np.isfinite(values))
        if idx.size < 2:
            continue
        if rng is None:
            ranks = stats.rankdata(values[idx], method="average")
        else:
            order = np.lexsort((rng.random(idx.size), values[idx]))
            ranks = np.empty(idx.size, dtype=np.float64)
            ranks[order] = np.arange(1, idx.size + 1, dtype=np.float64)
        out[idx] = stats.norm.ppf((ranks - 0.5) / idx.size)
    return out


def run(ctx):
    cfg = _settings(ctx)
    contamination = _contamination(cfg["contamination"])
    if contamination is None:
        return na(
            "NOT_APPLICABLE",
            f"contamination must be 'auto' or a share in (0, 0.5], got {cfg['contamination']!r}.",
            checked=[f"setting contamination = {cfg['contamination']!r}"],
        )
    roles = {r: ctx.data.event_role(r) for r in ("process", "queued", "started", "ended")}
    case = ctx.data.event_role("case")
    used = set(roles.values()) | ({case} if case else set())
    quantity = [c for c in ctx.data.names("numeric", semantic=QUANTITY_SEMANTICS) if c not in used]
    extra = quantity[: cfg["max_columns"]]
    names = ["wait", "run", *extra]
    raw = ["wait_s", "run_s"] + [f"x{i}" for i in range(len(extra))]
    checked = [
        f"features: wait, run and {len(extra)} of {len(quantity)} quantity/count columns "
        f"(the first {cfg['max_columns']} in dataset order): {', '.join(extra) or 'none'}"
    ]
    base = jobs_query(ctx, roles, case, extra)
    count_q = (
        f"{base}SELECT (SELECT CAST(count(*) AS BIGINT) FROM jobs) AS n, "
        "CAST(count(*) AS BIGINT) AS total FROM data"
    )
    counts = ctx.data.sql(count_q).to_pylist()[0]
    n_jobs, total = int(counts["n"]), int(counts["total"])
    checked.append(
        f"{n_jobs} of {total} rows are finished jobs (queued, started and ended, in order); "
        "the others (still running at the end of the log: censored) are left out"
    )
    if n_jobs < cfg["min_sampled"]:
        return na(
            "INSUFFICIENT_DATA",
            f"Only {n_jobs} finished jobs (needs >= {cfg['min_sampled']}).",
            checked=checked,
        )
    seed = int(ctx.seed) % (2**31)
    table, _ = seeded_sample(
        ctx.data.sql,
        f"{base}SELECT rid, case_id, p, {', '.join(raw)} FROM jobs",
        "TRUE",
        key="rid",
        seed=seed,
        limit=cfg["max_sample"],
        population=n_jobs,
    )
    sample = table.to_pydict()
    procs = np.asarray(sample["p"], dtype=object)
    by_proc = {str(name): int((procs == name).sum()) for name in sorted(set(procs.tolist()))}
    judged = sorted(name for name, n in by_proc.items() if n >= cfg["min_sampled"])
    keep = np.isin(procs, np.asarray(judged, dtype=object))
    k = int(keep.sum())
    checked.append(
        f"checked {k} of {n_jobs} finished jobs: a seeded sample (hash(rowid, seed), at most "
        f"{cfg['max_sample']}) of {len(judged)} of {len(by_proc)} processes with >= "
        f"{cfg['min_sampled']} sampled jobs; the forest is fitted on and scores the sample only"
    )
    if len(judged) < 2:
        return na(
            "INSUFFICIENT_DATA",
            "Fewer than two processes have enough sampled finished jobs to compare.",
            checked=checked,
        )
    sample = {
        c: [v for v, m in zip(vals, keep.tolist(), strict=True) if m] for c, vals in sample.items()
    }
    procs = np.asarray(sample["p"], dtype=object)
    columns = [
        np.asarray([np.nan if v is None else v for v in sample[c]], dtype=np.float64) for c in raw
    ]
    # the forest sees randomized normal scores (each feature exactly standard normal in
    # every process, so a process is never odd for the shape of its counts); the
    # reported z and the count of odd features use mid-ranks (ties stay equal)
    rng = ctx.rng()
    x = np.column_stack([normal_scores(v, procs, rng) for v in columns])
    z = np.column_stack([normal_scores(v, procs) for v in columns])
    # The forest is fitted and scores its own sample: scored once here. With a share
    # for contamination, its threshold is that percentile of the scores, which is what
    # scikit-learn's fit computes (a second scoring) and predict compares with (a third).
    forest = IsolationForest(
        n_estimators=cfg["n_estimators"], contamination="auto", random_state=seed
    ).fit(x)
    normality = forest.score_samples(x)
    offset = (
        forest.offset_
        if contamination == "auto"
        else float(np.percentile(normality, 100.0 * float(contamination)))
    )
    score = -normality  # higher: more anomalous
    flagged = normality < offset
    odd = (np.abs(z) >= cfg["joint_z"]).sum(axis=1)
    n_flag = int(flagged.sum())
    checked.append(
        f"{n_flag} of {k} sampled jobs anomalous (contamination {cfg['contamination']}); "
        f"{int((flagged & (odd >= 2)).sum())} of them odd in >= 2 features "
        f"(|z| >= {cfg['joint_z']:g})"
    )
    view = {"sample": sample, "z": z, "score": score, "flagged": flagged, "odd": odd}
    triage = _triage(view, names, raw, cfg["top_n"])
    findings = []
    for name in judged:
        mask = procs == name
        n_p, a_p = int(mask.sum()), int((flagged & mask).sum())
        j_p = int((flagged & mask & (odd >= 2)).sum())
        n_o, a_o = k - n_p, n_flag - a_p
        share, other = a_p / n_p, (a_o / n_o if n_o else 0.0)
        ratio = share / other if other > 0 else (1e9 if share > 0 else 0.0)
        joint = j_p / a_p if a_p else 0.0
        checked.append(
            f"{name}: {a_p} of {n_p} sampled jobs anomalous ({share:.2%}) vs the others' "
            f"{other:.2%} (ratio {ratio:.2f}, needs >= {cfg['min_ratio']:g} and >= "
            f"{cfg['min_anomalies']} jobs); {joint:.0%} odd in >= 2 features (needs >= "
            f"{cfg['min_joint_share']:.0%})"
        )
        if a_p < cfg["min_anomalies"] or ratio < cfg["min_ratio"]:
            continue
        if joint < cfg["min_joint_share"]:
            continue
        p_value = float(stats.binomtest(a_p, n_p, max(other, 1e-12), alternative="greater").pvalue)
        stats_p = {"n": n_p, "a": a_p, "j": j_p, "share": share, "other": other, "p": p_value}
        findings.append(_finding(roles, case, name, stats_p, view, names, raw, extra, cfg))
    metrics = {
        "checked": checked,
        "triage": triage,
        "triage_query": selection_sql(case, triage),
        "sampled": k,
        "finished_jobs": n_jobs,
        "anomalous": n_flag,
        "features": names,
    }
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            "Anomalous jobs are spread over the processes: none holds a concentrated share "
            "of jobs odd in several features at once. metrics.triage ranks the most "
            "anomalous sampled jobs for review.",
            checked=checked,
            metrics=metrics,
        )
    return ok(findings=findings, metrics=metrics)


def _triage(view, names, raw, top_n: int, only: str | None = None) -> list[dict]:
    """The ``top_n`` most anomalous sampled jobs (of process ``only``), highest score
    first, ties by rowid."""
    sample, score = view["sample"], view["score"]
    order = sorted(range(score.size), key=lambda i: (-float(score[i]), int(sample["rid"][i])))
    out = []
    for i in order:
        if only is not None and sample["p"][i] != only:
            continue
        row = {
            "rowid": int(sample["rid"][i]),
            "case_id": sample["case_id"][i],
            "process": str(sample["p"][i]),
            "score": float(score[i]),
            "anomalous": bool(view["flagged"][i]),
            "odd_features": int(view["odd"][i]),
        }
        for j, (n, c) in enumerate(zip(names, raw, strict=True)):
            v = sample[c][i]
            row[n] = float(v) if v is not None and np.isfinite(v) else None
            row[f"z_{n}"] = float(view["z"][i, j])
        out.append(row)
        if len(out) >= top_n:
            break
    return out


def selection_sql(case: str | None, rows: list[dict]) -> str:
    """The SQL selecting the listed jobs: by case id where there is one, else by rowid."""
    if not rows:
        return "SELECT * FROM data WHERE false"
    if case and all(r["case_id"] is not None for r in rows):
        ids = ", ".join(string_literal(str(r["case_id"])) for r in rows)
        return f"SELECT * FROM data WHERE CAST({_q(case)} AS VARCHAR) IN ({ids})"
    ids = ", ".join(str(int(r["rowid"])) for r in rows)
    return f"SELECT * FROM data WHERE rowid IN ({ids})"


def _finding(roles, case, name, s, view, names, raw, extra, cfg) -> Finding:
    top = _triage(view, names, raw, cfg["top_n"], name)
    mask = (np.asarray(view["sample"]["p"], dtype=object) == name) & view["flagged"]
    mean_z = view["z"][mask].mean(axis=0)
    profile = sorted(zip(names, mean_z.tolist(), strict=True), key=lambda t: (-abs(t[1]), t[0]))
    text = ", ".join(f"{n} {v:+.1f} sd" for n, v in profile[:4])
    ratio = s["share"] / s["other"] if s["other"] > 0 else 1e9
    metrics = {
        "sampled_jobs": s["n"],
        "anomalous_jobs": s["a"],
        "joint_anomalous_jobs": s["j"],
        "anomalous_share": s["share"],
        "others_anomalous_share": s["other"],
        "ratio": ratio,
        "joint_share": s["j"] / s["a"],
        "p_value": s["p"],
        "mean_z_profile": text,
        "listed_jobs": len(top),
    }
    for n, v in profile:
        metrics[f"mean_z_{n}"] = float(v)
    ids = ", ".join(
        str(r["case_id"]) if r["case_id"] is not None else f"row {r['rowid']}" for r in top[:5]
    )
    return Finding(
        kind="job_anomaly",
        title=f"{s['share']:.1%} of {name}'s jobs are odd in several features at once",
        severity="high" if ratio >= 2 * cfg["min_ratio"] else "medium",
        confidence=max(0.0, min(0.99, 1.0 - s["p"])),
        target=name,
        what=(
            f"{s['a']} of {s['n']} sampled jobs of {name} ({s['share']:.1%}) are anomalous to "
            f"an isolation forest over per-process standardized features, {ratio:.1f}x the "
            f"other processes' {s['other']:.2%}; {s['j']} of them are odd in two or more "
            f"features (|z| >= {cfg['joint_z']:g}). On average they sit at {text}. Most "
            f"anomalous: {ids}."
        ),
        why=(
            "Jobs unusual in several measures at once, though each value alone is within its "
            "normal range, that cluster in one process point at a recurring cause there (a "
            "particular input, batch or caller), not at noise."
        ),
        recommendation=(
            f"Review the listed jobs of {name} (the evidence query selects them): find what "
            "they share (input, user, host, time of day) and fix that cause."
        ),
        evidence=Evidence(
            columns=(roles["process"], roles["queued"], roles["started"], roles["ended"], *extra),
            metrics=metrics,
            query=selection_sql(case, top),
            rows=s["n"],
        ),
    )
