"""docs/contracts.md lists the reason codes and event types; the code is the source.

The two tables are parsed from the Markdown and compared with the registries, so a
code or event added, removed, reordered or reworded on either side alone fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contracts import REASON_CODES
from contracts.events import EVENT_TYPES, event_tag

CONTRACTS_MD = Path(__file__).resolve().parents[2] / "docs" / "contracts.md"


def split_row(line: str) -> list[str]:
    """The cells of one Markdown table row.

    A ``|`` separates cells unless it is escaped (``\\|``, kept as ``|``) or inside a
    code span (delimited by equal runs of backticks). Leading and trailing pipes and
    whitespace around cells are dropped.
    """
    text = line.strip()
    cells: list[str] = []
    cell: list[str] = []
    fence = 0  # length of the backtick run that opened the current code span
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and text[i + 1 : i + 2] == "|":
            cell.append("|")
            i += 2
            continue
        if ch == "`":
            run = len(text[i:]) - len(text[i:].lstrip("`"))
            if fence == 0:
                fence = run
            elif run == fence:
                fence = 0
            cell.append("`" * run)
            i += run
            continue
        if ch == "|" and fence == 0:
            cells.append("".join(cell))
            cell = []
        else:
            cell.append(ch)
        i += 1
    cells.append("".join(cell))
    if text.startswith("|"):
        cells = cells[1:]
    if text.endswith("|") and not text.endswith("\\|") and cells:
        cells = cells[:-1]
    return [c.strip() for c in cells]


def unquote(cell: str) -> str:
    """``cell`` without one enclosing code span (```x``` or ``` `` x `` ```)."""
    run = len(cell) - len(cell.lstrip("`"))
    if run and len(cell) > 2 * run and cell.endswith("`" * run):
        inner = cell[run:-run]
        # One span only: the inner text must not close it early.
        if not re.search(f"(?<!`)`{{{run}}}(?!`)", inner) and "`" not in (inner[0], inner[-1]):
            return inner.strip() if run > 1 else inner
    return cell


def table_under(heading: str, text: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the first table in the section titled ``heading``."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.rstrip() == heading]
    assert len(starts) == 1, f"expected exactly one {heading!r} heading in {CONTRACTS_MD}"
    rows: list[str] = []
    for line in lines[starts[0] + 1 :]:
        if line.startswith("#") and not line.startswith("#" * (heading.count("#") + 1)):
            break
        if line.lstrip().startswith("|"):
            rows.append(line)
        elif rows:
            break  # the first table has ended
    assert len(rows) >= 2, f"no table under {heading!r}"
    header, rule, *body = (split_row(r) for r in rows)
    assert all(set(c) <= set(":-") and "-" in c for c in rule), f"bad table rule: {rule}"
    return header, body


@pytest.fixture(scope="module")
def text() -> str:
    return CONTRACTS_MD.read_text(encoding="utf-8")


def test_reason_code_table_matches_the_registry(text: str) -> None:
    header, body = table_under("## Reason codes", text)
    assert header == ["code", "kind", "meaning"]
    assert all(len(row) == 3 for row in body), body
    documented = [unquote(row[0]) for row in body]
    assert documented == list(REASON_CODES), "codes differ from contracts.REASON_CODES"
    for code, kind, meaning in body:
        entry = REASON_CODES[unquote(code)]
        assert unquote(kind) == entry.kind, entry.code
        assert meaning == entry.meaning, entry.code


def test_event_type_table_matches_the_union(text: str) -> None:
    header, body = table_under("## Event types", text)
    assert header == ["tag", "event", "meaning"]
    assert all(len(row) == 3 for row in body), body
    assert all(row[0].startswith("`") and row[0].endswith("`") for row in body), body
    assert [unquote(row[0]) for row in body] == [event_tag(c) for c in EVENT_TYPES]
    assert [unquote(row[1]) for row in body] == [c.__name__ for c in EVENT_TYPES]
    assert all(row[2] for row in body), "every event needs a meaning"


@pytest.mark.parametrize(
    ("line", "cells"),
    [
        ("| `a` | b |", ["`a`", "b"]),
        ("|`a|b`| c \\| d |   ", ["`a|b`", "c | d"]),
        ("| ``x | `y` `` | z", ["``x | `y` ``", "z"]),
        ("a | b", ["a", "b"]),
    ],
)
def test_split_row(line: str, cells: list[str]) -> None:
    assert split_row(line) == cells


def test_unquote() -> None:
    assert unquote("`run_started`") == "run_started"
    assert unquote("`` a`b ``") == "a`b"
    assert unquote("plain") == "plain"
    assert unquote("`a` and `b`") == "`a` and `b`"
