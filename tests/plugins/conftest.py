"""Helpers for plugin tests: load a plugin folder as a package, build its settings,
run it over small data, and check its result against the contracts."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import yaml

from contracts import Failed, Manifest, Na, Ok, PluginResult, is_registered

PLUGINS_DIR = Path(__file__).resolve().parents[2] / "plugins"


def manifest(plugin_id: str) -> Manifest:
    """The plugin's manifest, decoded strictly."""
    text = (PLUGINS_DIR / plugin_id / "plugin.yaml").read_text(encoding="utf-8")
    return msgspec.convert(yaml.safe_load(text), Manifest)


def load_plugin(plugin_id: str) -> ModuleType:
    """Import ``plugins/<plugin_id>`` as a package and return its entrypoint module."""
    folder = PLUGINS_DIR / plugin_id
    package = f"_test_plugin_{plugin_id}"
    if package not in sys.modules:
        init = folder / "__init__.py"
        spec: importlib.machinery.ModuleSpec | None
        if init.is_file():
            spec = importlib.util.spec_from_file_location(
                package, init, submodule_search_locations=[str(folder)]
            )
        else:  # a folder without __init__.py is still imported as a package
            spec = importlib.machinery.ModuleSpec(package, None, is_package=True)
            spec.submodule_search_locations = [str(folder)]
        assert spec is not None
        pkg = importlib.util.module_from_spec(spec)
        sys.modules[package] = pkg
        if spec.loader is not None:
            spec.loader.exec_module(pkg)
    module_name = manifest(plugin_id).entrypoint.partition(":")[0]
    return importlib.import_module(f"{package}.{module_name}")


def settings(plugin_id: str, **overrides: Any) -> dict[str, Any]:
    """The manifest defaults with ``overrides`` applied (unknown names are errors)."""
    specs = manifest(plugin_id).settings
    unknown = sorted(set(overrides) - set(specs))
    assert not unknown, f"unknown settings for {plugin_id}: {unknown}"
    return {name: specs[name].default for name in sorted(specs)} | overrides


def roundtrip(result: PluginResult) -> PluginResult:
    """The result as a dependent receives it: through the engine's JSON wire format."""
    return msgspec.json.decode(msgspec.json.encode(result), type=PluginResult)  # type: ignore[arg-type]


def run_plugin(
    plugin_id: str,
    data: Any,
    tmp_path: Path,
    *,
    upstream: dict[str, PluginResult] | None = None,
    seed: int = 0,
    **overrides: Any,
) -> PluginResult:
    """Run the plugin over ``data`` with its default settings (plus ``overrides``),
    check the result against the contracts, and return it."""
    from engine.testing import make_context

    ctx = make_context(
        data,
        tmp_path,
        plugin_id=plugin_id,
        settings=settings(plugin_id, **overrides),
        upstream={k: roundtrip(v) for k, v in sorted((upstream or {}).items())},
        seed=seed,
    )
    try:
        result = load_plugin(plugin_id).run(ctx)
    finally:
        ctx.data.close()
    check_result(plugin_id, result)
    return result


def run_chain(
    plugin_id: str, data: Any, tmp_path: Path, *, seed: int = 0, **overrides: Any
) -> PluginResult:
    """Run the plugin's ``depends_on`` first (defaults), then the plugin itself."""
    m = manifest(plugin_id)
    upstream = {
        dep: run_plugin(dep, data, tmp_path / f"up_{dep}", seed=seed) for dep in m.depends_on
    }
    return run_plugin(
        plugin_id, data, tmp_path / plugin_id, upstream=upstream, seed=seed, **overrides
    )


def _scalar(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isnan(value)
    return value is None or isinstance(value, int | str | bool)


def check_result(plugin_id: str, result: Any) -> None:
    """Assert the plugin contract: ok with valid findings, or na with a registered code."""
    m = manifest(plugin_id)
    assert isinstance(result, Ok | Na), f"{plugin_id} returned {type(result).__name__}"
    assert not isinstance(result, Failed)
    msgspec.json.encode(result)  # must be encodable on the wire
    if isinstance(result, Na):
        assert is_registered(result.reason_code, "na"), result.reason_code
        assert result.explanation.strip()
        assert result.checked, "na must say what was checked"
        return
    assert result.findings, "ok must carry findings (a decision with nothing is na)"
    for f in result.findings:
        assert f.kind.strip() and f.kind in m.finding_kinds, f.kind
        assert f.target.strip(), "finding without target"
        assert f.title.strip() and f.what.strip() and f.why.strip()
        assert 0.0 <= f.confidence <= 1.0
        assert f.severity in ("info", "low", "medium", "high", "critical")
        assert all(_scalar(v) for v in f.evidence.metrics.values()), f.evidence.metrics
        assert f.evidence.query.strip()
        if m.lane == "decision":
            assert f.recommendation.strip(), "decision findings need a recommendation"
        if f.measurement == "modeled":
            assert f.impact is not None and f.impact.assumptions
            assert all(a.strip() for a in f.impact.assumptions)
            assert math.isfinite(f.impact.value)
        else:
            assert f.impact is None or f.impact.assumptions
    ids = [(f.kind, f.target) for f in result.findings]
    assert len(ids) == len(set(ids)), "two findings share a stable id"
