"""The engine's one error hierarchy.

Every error the engine raises on purpose is an :class:`EngineError`; each inherits
the matching builtin where there is one so callers can catch either.
"""

from __future__ import annotations

from collections.abc import Sequence


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class EngineInternalError(EngineError, RuntimeError):
    """An invariant of the engine itself is broken: a bug, never bad input."""


class ConfigError(EngineError, ValueError):
    """Bad settings or command-line arguments."""


class DatasetError(EngineError, ValueError):
    """The dataset cannot be read or normalized. ``path`` names the file."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.detail = message


class ManifestProblem:
    """One problem with one manifest, path-qualified."""

    __slots__ = ("message", "path", "plugin_id")

    def __init__(self, path: str, message: str, plugin_id: str | None = None) -> None:
        self.path = path
        self.message = message
        self.plugin_id = plugin_id

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def __repr__(self) -> str:
        return f"ManifestProblem({self.path!r}, {self.message!r})"


class ManifestError(EngineError, ValueError):
    """One or more manifests are invalid; every problem is reported at once."""

    def __init__(self, problems: Sequence[ManifestProblem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} manifest problem(s):\n{lines}")


class PlanError(EngineError, ValueError):
    """The plugins cannot be ordered (for example a dependency cycle)."""


class CycleError(PlanError):
    """Dependency cycles; ``cycles`` lists every plugin of each cycle, in edge order."""

    def __init__(self, cycles: Sequence[Sequence[str]]) -> None:
        self.cycles = tuple(tuple(c) for c in cycles)
        self.cycle = self.cycles[0]
        parts = [" -> ".join([*c, c[0]]) for c in self.cycles]
        super().__init__("dependency cycle: " + "; ".join(parts))


class LogIntegrityError(EngineError, ValueError):
    """An event log's hash chain is broken or a record cannot be decoded."""

    def __init__(self, path: str, seq: int, message: str) -> None:
        super().__init__(f"{path}: record {seq}: {message}")
        self.path = path
        self.seq = seq


class NondeterminismError(EngineError, RuntimeError):
    """A replayed fold disagrees with what was recorded."""
