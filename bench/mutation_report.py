"""Print the mutation score and every surviving mutant by file (``bench/mutation.sh``).

Reads mutmut's result files (``mutants/<path>.py.meta``: an exit code per mutant)
and, for the survivors, the mutated line (from the mutated copy of the file). Killed and timed-out
mutants count as killed; a mutant no test reached ("no tests") counts as a survivor:
nothing would notice it either.

    python bench/mutation_report.py .mutation/mutants engine/_core contracts
"""

from __future__ import annotations

import ast
import difflib
import json
import sys
from collections import Counter
from pathlib import Path

KILLED = {1: "killed", 3: "killed", 36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout"}
"""mutmut's exit codes that mean a test noticed the mutant (``mutmut.stats``)."""
SURVIVED = {0: "survived", 5: "no tests", 33: "no tests"}


def _functions(mutated: Path) -> dict[str, str]:
    """Every function of a mutated file (mutmut writes each mutant as a function of
    its own beside ``..._orig``), source by name."""
    text = mutated.read_text()
    lines = text.splitlines()
    # Whole lines by number: ast.get_source_segment splits the whole text again on
    # every call, minutes for a mutated file of a few thousand functions.
    return {
        node.name: "\n".join(lines[node.lineno - 1 : node.end_lineno])
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def _mutated_line(functions: dict[str, str], name: str) -> str:
    """The line the mutant changed, as ``old  ->  new``."""
    short = name.rsplit(".", 1)[-1]
    original = functions.get(short.rsplit("__mutmut_", 1)[0] + "__mutmut_orig", "")
    mutant = functions.get(short, "")
    old = original.splitlines()[1:]  # the def line names the function: skip it
    new = mutant.splitlines()[1:]
    changed = [line[2:].strip() for line in difflib.ndiff(old, new) if line[:2] in ("- ", "+ ")]
    return "  ->  ".join(changed) or "(no diff)"


def main(argv: list[str]) -> int:
    mutants = Path(argv[0]).resolve()
    targets = [t.rstrip("/") for t in argv[1:]]
    totals: Counter[str] = Counter()
    survivors: dict[str, list[str]] = {}
    rows = []
    for meta in sorted(mutants.rglob("*.py.meta")):
        source = meta.relative_to(mutants).as_posix().removesuffix(".meta")
        if targets and not any(source == t or source.startswith(t + "/") for t in targets):
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if not codes:
            continue
        counts: Counter[str] = Counter()
        for name, code in sorted(codes.items()):
            if code in KILLED:
                counts["killed"] += 1
            elif code is None:
                counts["not checked"] += 1
            else:
                counts[SURVIVED.get(code, "suspicious")] += 1
                survivors.setdefault(source, []).append(name)
        totals.update(counts)
        checked = sum(counts.values()) - counts["not checked"]
        rows.append((source, counts, checked))
    print(f"{'file':44} {'mutants':>8} {'killed':>7} {'survived':>9} {'no tests':>9} {'score':>7}")
    for source, counts, checked in rows:
        score = f"{100 * counts['killed'] / checked:.1f}%" if checked else "-"
        print(
            f"{source:44} {checked:8} {counts['killed']:7} {counts['survived']:9} "
            f"{counts['no tests']:9} {score:>7}"
        )
    checked = sum(totals.values()) - totals["not checked"]
    score = 100 * totals["killed"] / checked if checked else 0.0
    print(
        f"\nmutation score: {score:.1f}% ({totals['killed']} of {checked} mutants killed; "
        f"{totals['survived']} survived, {totals['no tests']} reached by no test, "
        f"{totals['suspicious']} suspicious, {totals['not checked']} not checked)"
    )
    for source, names in survivors.items():
        print(f"\n{source}: {len(names)} surviving")
        functions = _functions(mutants / source)
        for name in names:
            print(f"  {name}: {_mutated_line(functions, name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
