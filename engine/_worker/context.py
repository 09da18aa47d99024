"""What a plugin receives: ``ctx``. Built inside the worker process."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from attrs import define, field

from contracts import PluginResult
from contracts.dataset import SpanRecord

if TYPE_CHECKING:
    from .reader import DataReader


@define(frozen=True, kw_only=True)
class PluginContext:
    """The only door a plugin has to the run.

    Attributes:
        plugin_id: the plugin being run.
        data: recorded access to the normalized dataset (``sql``, ``batches``,
            ``load``, ``load_all``); every call becomes a ``DataAccessed`` event.
        settings: the plugin's resolved settings (manifest defaults + overrides).
        seed: a per-plugin seed derived from the run seed and the plugin id.
        upstream: the results of the plugins named in ``depends_on``.
        artifacts_dir: where the plugin may write files (created on first use).
    """

    plugin_id: str
    run_id: str
    data: DataReader
    settings: Mapping[str, Any]
    seed: int
    upstream: Mapping[str, PluginResult] = field(factory=dict)
    artifacts_dir: Path
    spans: list[SpanRecord] = field(factory=list)
    _open: list[int] = field(factory=list)

    def rng(self) -> np.random.Generator:
        """A generator seeded from ``seed``: the only randomness a plugin should use."""
        return np.random.default_rng(self.seed)

    @contextmanager
    def span(self, name: str, **attributes: str | int | float | bool) -> Iterator[None]:
        """Time a part of the plugin as a child span of its own span.

        The span is recorded in the run's event log and exported with the run's
        trace, nested under the plugin (or under an enclosing ``ctx.span``).
        """
        index = len(self.spans) + len(self._open)
        parent = self._open[-1] if self._open else -1
        self._open.append(index)
        start = time.time()
        try:
            yield
        finally:
            self._open.pop()
            self.spans.append(
                SpanRecord(
                    index=index,
                    parent=parent,
                    name=name,
                    start_wall=start,
                    end_wall=time.time(),
                    attributes=dict(attributes),
                )
            )

    def artifact_path(self, name: str) -> Path:
        """A path for an artifact file named ``name`` inside ``artifacts_dir``."""
        if not name or "/" in name or "\\" in name or name in {".", ".."}:
            raise ValueError(f"artifact name must be a plain file name, got {name!r}")
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        return self.artifacts_dir / name
