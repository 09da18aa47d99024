"""``engine report RUN_DIR``: rebuild the reports for people from the event log.

The log is read (hash chain verified), folded, and ``report.md`` and/or
``report.html`` rendered by the very functions the run used, so the files are
byte-identical to the ones the run wrote (``engine replay`` checks exactly that).
"""

from __future__ import annotations

from pathlib import Path

from engine import (
    HTML_NAME,
    MARKDOWN_NAME,
    atomic_write,
    build_report,
    render_markdown,
    render_report_html,
)

from .replay import finished_run

__all__ = ["rebuild_reports"]


def rebuild_reports(
    run_dir: str | Path,
    *,
    html: bool = True,
    markdown: bool = True,
    out_dir: str | Path | None = None,
) -> list[Path]:
    """Write the reports of a finished run, rebuilt from its log.

    Args:
        run_dir: the run directory (holding ``events.jsonl``).
        html, markdown: which reports to write.
        out_dir: where to write them (default: the run directory itself).

    Returns:
        The paths written.

    Raises:
        LogIntegrityError: the log is missing or broken, or the run never finished.
    """
    folder = Path(run_dir)
    _, state = finished_run(folder)
    report = build_report(state)
    target = Path(out_dir) if out_dir is not None else folder
    target.mkdir(parents=True, exist_ok=True)
    written = []
    if markdown:
        atomic_write(target / MARKDOWN_NAME, render_markdown(report).encode())
        written.append(target / MARKDOWN_NAME)
    if html:
        atomic_write(target / HTML_NAME, render_report_html(state, report).encode())
        written.append(target / HTML_NAME)
    return written
