"""JSON Schemas generated from the wire types.

``python -m contracts`` rewrites ``contracts/schemas/*.json``; a test fails when the
committed files drift from what the Structs generate.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import msgspec

from .manifest import Manifest
from .report import Report, RunManifest

SCHEMA_DIR = Path(__file__).parent / "schemas"

SCHEMAS: dict[str, type] = {
    "plugin.schema.json": Manifest,
    "report.schema.json": Report,
    "run_manifest.schema.json": RunManifest,
}


def _normalized(node: Any) -> Any:
    """Descriptions as ``inspect.cleandoc`` gives them: msgspec releases render
    docstrings with different indentation, and the committed files must not depend
    on which release generated them."""
    if isinstance(node, dict):
        return {
            k: inspect.cleandoc(v) if k == "description" and isinstance(v, str) else _normalized(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_normalized(v) for v in node]
    return node


def generate(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = _normalized(msgspec.json.schema(SCHEMAS[name]))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = name.removesuffix(".schema.json")
    return schema


def render(name: str) -> str:
    return json.dumps(generate(name), indent=2, sort_keys=True) + "\n"


def load(name: str) -> dict[str, Any]:
    """The committed schema (what artifacts are validated against)."""
    result: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return result


def write_all() -> list[Path]:
    SCHEMA_DIR.mkdir(exist_ok=True)
    written = []
    for name in sorted(SCHEMAS):
        path = SCHEMA_DIR / name
        path.write_text(render(name), encoding="utf-8")
        written.append(path)
    return written
