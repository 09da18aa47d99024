"""case_variants: variants, directly-follows counts and steps per case of a small case log
counted here by hand; single-step logs are not applicable."""

from __future__ import annotations

from datetime import datetime, timedelta

from contracts import Na, Ok

from .conftest import manifest, run_plugin

T0 = datetime(2024, 1, 1)


def _log(cases: list[tuple[str, list[tuple[str, int]]]]) -> dict[str, list]:
    """``cases``: (case id, [(activity, start second)]); every step runs 60 s after a 10 s
    wait."""
    out: dict[str, list] = {k: [] for k in ("case_id", "process_name", "queued_at")}
    out |= {"started_at": [], "ended_at": []}
    for case, steps in cases:
        for act, at in steps:
            out["case_id"].append(case)
            out["process_name"].append(act)
            out["queued_at"].append(T0 + timedelta(seconds=at - 10))
            out["started_at"].append(T0 + timedelta(seconds=at))
            out["ended_at"].append(T0 + timedelta(seconds=at + 60))
    return out


def _flow(n_abc: int, n_ac: int, n_abbc: int) -> list[tuple[str, list[tuple[str, int]]]]:
    cases = []
    for i in range(n_abc + n_ac + n_abbc):
        t = 1000 * i
        if i < n_abc:
            steps = [("B", t + 200), ("A", t), ("C", t + 400)]  # rows out of order
        elif i < n_abc + n_ac:
            steps = [("A", t), ("C", t + 100)]
        else:
            steps = [("A", t), ("B", t + 100), ("B", t + 200), ("C", t + 300)]
        cases.append((f"c{i:03d}", steps))
    return cases


def test_variants_and_directly_follows(tmp_path):
    cases = _flow(30, 20, 10)
    data = _log(cases)
    for k in ("case_id", "process_name", "queued_at", "started_at", "ended_at"):
        data[k] += data[k][:3]  # an exact copy of the first case's steps: not new steps
    result = run_plugin("case_variants", data, tmp_path, max_variants=2, max_pairs=3)
    assert isinstance(result, Ok)
    m = result.metrics
    assert (m["cases"], m["steps"], m["multi_step_cases"]) == (60, 30 * 3 + 20 * 2 + 10 * 4, 60)
    assert m["variants_total"] == 3
    assert [(v["variant"], v["cases"], v["steps"]) for v in m["variants"]] == [
        ("A -> B -> C", 30, 3),
        ("A -> C", 20, 2),
    ]
    assert m["variants"][0]["share"] == 0.5
    # A->B 40, B->C 40, A->C 20, B->B 10: four pairs, the top three listed
    assert m["directly_follows_total"] == 4
    assert [(p["from"], p["to"], p["count"]) for p in m["directly_follows"]] == [
        ("A", "B", 40),
        ("B", "C", 40),
        ("A", "C", 20),
    ]
    assert m["steps_per_case"] == {"mean": 170 / 60, "p50": 3.0, "p90": 4.0, "max": 4.0}
    assert "the top 2 of 3" in " ".join(m["checked"])
    (f,) = result.findings
    assert f.target == "case_id" and f.evidence.metrics["variants_total"] == 3


def test_ties_are_broken_by_activity_name(tmp_path):
    cases = [(f"c{i}", [("Z", 0), ("M", 0), ("A", 50)]) for i in range(60)]
    result = run_plugin("case_variants", _log(cases), tmp_path)
    assert isinstance(result, Ok)
    assert result.metrics["variants"][0]["variant"] == "M -> Z -> A"


def test_single_step_cases_are_not_applicable(tmp_path):
    cases = [(f"j{i}", [("A" if i % 2 else "B", 100 * i)]) for i in range(200)]
    cases += [("j0", [("C", 5)])]  # one case with two steps: far below the bar
    result = run_plugin("case_variants", _log(cases), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    # decided from the dataset's counts (201 rows, 200 distinct case ids), before a scan
    assert "cases with >= 2 steps: at most 1 of 200" in result.explanation


def test_few_multi_step_cases_are_not_applicable_after_counting(tmp_path):
    # 60 rows beyond the first of their case: enough to look, too few (< 5%) to mine
    cases = [(f"j{i:04d}", [("A", 100 * i)]) for i in range(2000)]
    cases += [(f"m{i:02d}", [("A", 10 * i), ("B", 10 * i + 5)]) for i in range(60)]
    result = run_plugin("case_variants", _log(cases), tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"
    assert "cases with >= 2 steps: 60 of 2060 (needs >= 50 and >= 5%" in result.explanation


def test_null_cases_and_activities_are_not_applicable(tmp_path):
    data = _log([(f"c{i}", [("A", 0), ("B", 10)]) for i in range(5)])
    data["case_id"] = [None] * len(data["case_id"])
    data["case_id"][0] = "x"
    result = run_plugin("case_variants", data, tmp_path)
    assert isinstance(result, Na) and result.reason_code == "NOT_APPLICABLE"


def test_needs_a_case_and_an_activity_column():
    roles = {c.event_role for c in manifest("case_variants").applies_when.columns}
    assert roles == {"case", "process"}
