"""The import direction of docs/architecture.md, checked on the source itself.

``_tools -> engine (public API) -> _core -> _executors/_worker/_data/_render -> errors``;
plugins and telemetry import ``contracts`` only (telemetry never the engine). The
renderer (``_render``) is a pure function of contracts types: it never sees the kernel.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imports_of(path: Path) -> list[str]:
    """Absolute module names imported by ``path`` (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append(module)
            # ``from . import reader`` imports a submodule.
            found += [f"{module}.{a.name}" for a in node.names if node.module is None]
    return found


def layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "engine":
        return None
    if len(parts) == 1:
        return "public"
    return parts[1]


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


# What each layer may import from the engine (None: the layer itself is free).
ALLOWED = {
    "_tools": {"public", "_tools", "errors"},
    "_core": {"_core", "_executors", "_worker", "_data", "_render", "errors"},
    "_render": {"_render", "errors"},
    "_executors": {"_executors", "_worker", "errors"},
    "_worker": {"_worker", "errors"},
    "_data": {"_data", "errors"},
    "errors": set(),
}


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_engine_layers_import_only_downwards(name: str) -> None:
    folder = ROOT / "engine" / (name if name != "errors" else "")
    files = [ROOT / "engine" / "errors.py"] if name == "errors" else sorted(folder.rglob("*.py"))
    assert files
    bad = []
    for path in files:
        for module in imports_of(path):
            target = layer(module)
            if target is not None and target not in ALLOWED[name]:
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("folder", ["plugins", "telemetry", "contracts"])
def test_plugins_telemetry_and_contracts_never_import_the_engine(folder: str) -> None:
    bad = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sources(folder)
        for module in imports_of(path)
        if module == "engine" or module.startswith("engine.")
    ]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_relative_imports(tmp_path: Path) -> None:
    # A layering test that cannot see imports protects nothing.
    assert "engine._worker.run" in imports_of(ROOT / "engine" / "_executors" / "process.py")
    assert "engine.errors" in imports_of(ROOT / "engine" / "_core" / "plan.py")
