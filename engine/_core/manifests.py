"""Loading and validating plugin manifests.

Every problem in every manifest is collected and reported together, each one
path-qualified (``plugins/x/plugin.yaml: $.lane: ...``), before anything runs.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import yaml
from attrs import define

import contracts
from contracts import CONTRACTS_VERSION, Manifest
from contracts.manifest import SettingSpec

from .._data.ingest import settled
from ..errors import ConfigError, ManifestError, ManifestProblem

PLUGIN_ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SKIP_DIRS = {"__pycache__"}
# The C build of the *safe* loader when libyaml is present: same semantics as
# yaml.safe_load (no object-constructing tags), an order of magnitude faster.
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@define(frozen=True, kw_only=True)
class PluginSpec:
    """A validated plugin: its manifest, folder and code hash."""

    manifest: Manifest
    directory: Path
    manifest_path: Path
    code_hash: str

    @property
    def id(self) -> str:
        return self.manifest.id


CONTRACTS_DIR = Path(contracts.__file__).resolve().parent


@functools.lru_cache(maxsize=4)
def contracts_source_hash(root: Path = CONTRACTS_DIR) -> str:
    """Hash of the contracts package's Python sources: plugins run on this code (the
    SDK helpers, result validation), so a change to it must change every code hash."""
    h = hashlib.sha256()
    for rel, path in sorted(_plugin_files(str(root))):
        if rel.endswith(".py"):
            h.update(rel.encode() + b"\0")
            with open(path, "rb") as fh:
                h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()


def code_hash(directory: Path) -> str:
    """Hash of every file in the plugin folder (names and bytes), the contracts
    version and the contracts sources, so that a change to any helper file, or to the
    SDK the plugin runs on, changes the hash."""
    h = hashlib.sha256(f"contracts={CONTRACTS_VERSION}:{contracts_source_hash()}\n".encode())
    for rel, path in sorted(_plugin_files(str(directory))):
        h.update(rel.encode() + b"\0")
        with open(path, "rb") as fh:
            h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()


def _plugin_files(directory: str) -> list[tuple[str, str]]:
    """(relative posix path, path) of every file, skipping caches and bytecode."""
    return [(rel, entry.path) for rel, entry in _files(directory)]


def _files(directory: str) -> list[tuple[str, os.DirEntry[str]]]:
    """(relative posix path, directory entry) of every file the code hash covers, in
    no particular order (a loop, not recursive generators: it runs for every plugin
    of every run, through :func:`folder_state`)."""
    found = []
    folders = [(directory, "")]
    while folders:
        where, prefix = folders.pop()
        with os.scandir(where) as entries:
            for entry in entries:
                name = entry.name
                if entry.is_dir():
                    if name not in _SKIP_DIRS:
                        folders.append((entry.path, f"{prefix}{name}/"))
                elif not name.endswith((".pyc", ".pyo")):
                    found.append((prefix + name, entry))
    return found


def _display(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base.parent).as_posix()
    except ValueError:
        return str(path)


FolderState = tuple[tuple[str, int, int, int, int, int], ...]


def folder_state(directory: str | Path) -> FolderState:
    """(relative path, size, mtime_ns, ctime_ns, inode, device) of every file the
    code hash covers, sorted: what :class:`SpecCache` compares instead of bytes."""
    found = []
    for rel, entry in _files(str(directory)):
        st = entry.stat()
        found.append((rel, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev))
    found.sort()
    return tuple(found)


class SpecCache:
    """Validated plugin specs reused across runs while a folder is unchanged.

    When the content is hashed again: a folder is reused when its files, and each
    file's size, ``mtime_ns``, ``ctime_ns``, inode and device, are those seen when it
    was last hashed (the rule of the dataset fingerprint, :mod:`engine._data.ingest`:
    ``ctime`` moves with every write and cannot be set back). Any difference (a file
    edited, touched, added, removed or replaced) reads and hashes every file again.
    One case needs more: a write in the same tick of the file system's clock as the
    one before leaves all five values unchanged. So a folder whose newest time was
    less than ``RACY_NS`` (2 s) before the moment it was hashed is not trusted (git
    treats its index the same way): it is hashed again at its next use, until its
    files are old enough for any later write to show in their times.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[FolderState, PluginSpec]] = {}

    def get(self, directory: str | Path, state: FolderState) -> PluginSpec | None:
        entry = self._entries.get(str(directory))
        return entry[1] if entry is not None and entry[0] == state else None

    def put(
        self, directory: str | Path, state: FolderState, hashed_at_ns: int, spec: PluginSpec
    ) -> None:
        """Remember ``spec``, hashed at ``hashed_at_ns`` (``time.time_ns()``) from the
        folder in ``state``, unless that is too close to the folder's newest write."""
        if settled(max((max(f[2], f[3]) for f in state), default=0), hashed_at_ns):
            self._entries[str(directory)] = (state, spec)
        else:
            self._entries.pop(str(directory), None)


def load_plugins(
    plugins_dir: str | Path, *, cache: SpecCache | None = None
) -> tuple[PluginSpec, ...]:
    """Load and validate every ``<plugins_dir>/<id>/plugin.yaml``.

    Returns the plugins sorted by id. Raises :class:`ManifestError` listing every
    problem found across all manifests. With a ``cache``, unchanged folders are
    not parsed again.
    """
    root = Path(plugins_dir)
    if not root.is_dir():
        raise ConfigError(f"{root}: plugins directory does not exist")
    problems: list[ManifestProblem] = []
    specs: list[PluginSpec] = []
    with os.scandir(root) as entries:
        folders = sorted(
            e.name for e in entries if e.is_dir() and not e.name.startswith((".", "_"))
        )
    base = str(root)
    for name in folders:
        if cache is None:
            spec = _load_one(root / name, root, problems)
        else:
            folder = os.path.join(base, name)
            state = folder_state(folder)
            spec = cache.get(folder, state)
            if spec is None:
                hashed_at = time.time_ns()
                spec = _load_one(root / name, root, problems)
                # A folder that changed while it was read is not remembered.
                if spec is not None and folder_state(folder) == state:
                    cache.put(folder, state, hashed_at, spec)
        if spec is not None:
            specs.append(spec)
    _check_fleet(specs, root, problems)
    if problems:
        raise ManifestError(problems)
    return tuple(sorted(specs, key=lambda s: s.id))


def _load_one(directory: Path, root: Path, problems: list[ManifestProblem]) -> PluginSpec | None:
    path = directory / "plugin.yaml"
    shown = _display(path, root)
    if not path.is_file():
        problems.append(ManifestProblem(shown, "missing plugin.yaml"))
        return None
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(ManifestProblem(shown, f"not UTF-8 ({exc.reason} at byte {exc.start})"))
        return None
    try:
        raw = yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        problems.append(ManifestProblem(shown, f"invalid YAML: {_yaml_reason(exc)}"))
        return None
    if not isinstance(raw, dict):
        problems.append(ManifestProblem(shown, f"expected a mapping, got {type(raw).__name__}"))
        return None
    try:
        manifest = msgspec.convert(raw, Manifest)
    except msgspec.ValidationError as exc:
        problems.append(ManifestProblem(shown, qualify_validation_error(str(exc))))
        return None
    before = len(problems)
    _check_manifest(manifest, directory, shown, problems)
    if len(problems) > before:
        return None
    return PluginSpec(
        manifest=manifest,
        directory=directory.resolve(),
        manifest_path=path,
        code_hash=code_hash(directory),
    )


def _yaml_reason(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    # An error without a message (``yaml.YAMLError()``) still gets words.
    problem = getattr(exc, "problem", None) or next(iter(str(exc).splitlines()), type(exc).__name__)
    if mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(problem)


def qualify_validation_error(message: str) -> str:
    """msgspec says ``... - at `$.lane```; lead with the path instead."""
    match = re.search(r" - at `(\$[^`]*)`$", message)
    if match:
        return f"{match.group(1)}: {message[: match.start()]}"
    return f"$: {message}"


def _check_manifest(m: Manifest, directory: Path, shown: str, out: list[ManifestProblem]) -> None:
    def bad(where: str, message: str) -> None:
        out.append(ManifestProblem(shown, f"{where}: {message}", m.id))

    if not PLUGIN_ID_RE.match(m.id):
        bad("$.id", f"{m.id!r} is not a valid plugin id (lowercase letters, digits, _)")
    elif m.id != directory.name:
        bad("$.id", f"{m.id!r} does not match its folder name {directory.name!r}")
    if not m.version.strip():
        bad("$.version", "must not be blank")
    if m.lane == "decision" and not m.decision_capable:
        bad("$.lane", "'decision' requires decision_capable: true")
    if m.lane == "decision" and m.diagnostic_only:
        bad("$.lane", "diagnostic_only plugins cannot be in the 'decision' lane")
    if m.decision_capable and m.diagnostic_only:
        bad("$.diagnostic_only", "a plugin cannot be both decision_capable and diagnostic_only")
    if m.requires_downstream_mapping and not m.downstream:
        bad("$.downstream", "requires_downstream_mapping is set but downstream is empty")
    if m.lane == "decision" and m.downstream:
        bad("$.downstream", "only explanation plugins declare downstream consumers")
    if m.id in m.depends_on:
        bad("$.depends_on", "a plugin cannot depend on itself")
    if len(set(m.depends_on)) != len(m.depends_on):
        bad("$.depends_on", "lists the same plugin twice")
    for i, kind in enumerate(m.finding_kinds):
        if not kind.strip():
            bad(f"$.finding_kinds[{i}]", "must not be blank")
    if not m.timeout_s > 0:
        bad("$.timeout_s", "must be positive")
    _check_entrypoint(m.entrypoint, directory, bad)
    for name in sorted(m.settings):
        problem = setting_problem(m.settings[name], m.settings[name].default)
        if problem:
            bad(f"$.settings.{name}.default", problem)


def _check_entrypoint(entrypoint: str, directory: Path, bad: Any) -> None:
    module, sep, func = entrypoint.partition(":")
    parts = module.split(".")
    if not sep or not func or not all(_IDENT_RE.match(p) for p in [*parts, func]):
        bad("$.entrypoint", f"{entrypoint!r} must be 'module:function' inside the plugin folder")
        return
    base = os.path.realpath(directory)
    stem = os.path.join(str(directory), *parts)
    found = next(
        (c for c in (stem + ".py", os.path.join(stem, "__init__.py")) if os.path.isfile(c)), None
    )
    if found is None:
        bad("$.entrypoint", f"module {module!r} not found in {directory.name}/")
        return
    if os.path.commonpath([base, os.path.realpath(found)]) != base:
        bad("$.entrypoint", f"{entrypoint!r} resolves outside the plugin folder")


def setting_problem(spec: SettingSpec, value: Any) -> str | None:
    """Why ``value`` does not fit ``spec`` (or None when it does)."""
    expected: dict[str, tuple[type, ...]] = {
        "int": (int,),
        "float": (int, float),
        "str": (str,),
        "bool": (bool,),
    }
    if isinstance(value, bool) and spec.type != "bool":
        return f"expected {spec.type}, got bool"
    if not isinstance(value, expected[spec.type]):
        return f"expected {spec.type}, got {type(value).__name__}"
    if spec.minimum is not None and isinstance(value, int | float) and value < spec.minimum:
        return f"{value!r} is below the minimum {spec.minimum!r}"
    if spec.maximum is not None and isinstance(value, int | float) and value > spec.maximum:
        return f"{value!r} is above the maximum {spec.maximum!r}"
    if spec.choices and value not in spec.choices:
        return f"{value!r} is not one of {list(spec.choices)!r}"
    return None


def _check_fleet(specs: list[PluginSpec], root: Path, out: list[ManifestProblem]) -> None:
    by_id: dict[str, list[PluginSpec]] = {}
    for spec in specs:
        by_id.setdefault(spec.id, []).append(spec)
    for plugin_id in sorted(by_id):
        if len(by_id[plugin_id]) > 1:
            where = ", ".join(_display(s.manifest_path, root) for s in by_id[plugin_id])
            for s in by_id[plugin_id]:
                out.append(
                    ManifestProblem(
                        _display(s.manifest_path, root),
                        f"$.id: duplicate plugin id {plugin_id!r} (declared in {where})",
                        plugin_id,
                    )
                )
    known = set(by_id)
    for spec in specs:
        m = spec.manifest

        def bad(where: str, message: str, spec: PluginSpec = spec) -> None:
            shown = _display(spec.manifest_path, root)
            out.append(ManifestProblem(shown, f"{where}: {message}", spec.id))

        for i, dep in enumerate(m.depends_on):
            if dep not in known:
                bad(f"$.depends_on[{i}]", f"unknown plugin {dep!r}")
        for i, down in enumerate(m.downstream):
            if down not in known:
                bad(f"$.downstream[{i}]", f"unknown plugin {down!r}")
            elif by_id[down][0].manifest.lane != "decision":
                bad(f"$.downstream[{i}]", f"{down!r} is not a decision-lane plugin")


def resolve_settings(spec: PluginSpec, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Manifest defaults updated by ``overrides``; unknown or ill-typed keys are errors."""
    settings = {name: s.default for name, s in sorted(spec.manifest.settings.items())}
    problems = []
    for name in sorted(overrides or {}):
        value = (overrides or {})[name]
        setting = spec.manifest.settings.get(name)
        if setting is None:
            problems.append(f"settings.{spec.id}.{name}: unknown setting")
            continue
        problem = setting_problem(setting, value)
        if problem:
            problems.append(f"settings.{spec.id}.{name}: {problem}")
            continue
        settings[name] = value
    if problems:
        raise ConfigError("; ".join(problems))
    return settings
