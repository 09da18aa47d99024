"""The trivial plugin body both sides of the overhead benchmark run."""

from __future__ import annotations

from typing import Any

from contracts import na


def run(ctx: Any) -> Any:
    total = sum(range(200))
    return na("NO_SIGNIFICANT_EFFECT", f"trivial benchmark plugin (checked {total})")


def bare_task(index: int) -> Any:
    """What the bare pool runs: the same body, no engine around it."""
    return run(None)
