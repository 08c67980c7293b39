"""Find the definitions declared in a project's Python modules."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from pathlib import Path

from keel.errors import ValidationError
from keel.features._definitions import Definition

#: Folders never scanned for definitions.
SKIP_DIRS = frozenset(
    {"__pycache__", "venv", "env", "node_modules", "data", "tests", "test", "build", "dist", "site-packages"}
)
SKIP_FILES = frozenset({"setup.py", "conftest.py", "noxfile.py"})


def project_modules(root: Path, modules: list[str] | None = None) -> list[Path]:
    """The Python files to scan: ``modules`` when given (paths relative to ``root``), else every ``*.py``
    below ``root`` outside hidden, environment, test and data folders."""
    if modules is not None:
        paths = []
        for m in modules:
            path = (root / m).resolve()
            if not path.is_file():
                raise ValidationError(f"keel.yaml lists module {m!r}, but {path} is not a file", field="modules")
            paths.append(path)
        return paths
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(p.startswith(".") or p in SKIP_DIRS for p in rel.parts[:-1]):
            continue
        if rel.name in SKIP_FILES or rel.name.startswith(("test_", ".")):
            continue
        found.append(path)
    return found


def _module_name(root: Path, path: Path) -> str:
    rel = path.resolve().relative_to(root.resolve()).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def discover(root: Path, modules: list[str] | None = None) -> list[Definition]:
    """Import the project's modules and return every top-level :class:`Definition` they hold.

    Modules are imported under their dotted name relative to ``root`` (so ``from features import customer``
    in another module finds the same objects), freshly each time.

    Raises:
        ValidationError: a module fails to import; the message names it and the error.
    """
    root = root.resolve()
    paths = project_modules(root, modules)
    names = [_module_name(root, p) for p in paths]
    found: list[Definition] = []
    seen: set[int] = set()
    saved_path = list(sys.path)
    sys.path.insert(0, str(root))
    try:
        for name in names:  # forget modules of the same name imported from elsewhere (another project)
            for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                sys.modules.pop(loaded, None)
        importlib.invalidate_caches()
        for name, path in zip(names, paths, strict=True):
            try:
                module = importlib.import_module(name)
            except ValidationError as exc:
                raise ValidationError(f"{path.relative_to(root)}: {exc}", field=exc.field) from exc
            except Exception as exc:
                raise ValidationError(
                    f"cannot import {path.relative_to(root)} while looking for definitions: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            for value in vars(module).values():
                if isinstance(value, Definition) and id(value) not in seen:
                    seen.add(id(value))
                    found.append(value)
    finally:
        sys.path[:] = saved_path
    return found


def unique_definitions(objects: Iterable[Definition]) -> list[Definition]:
    """Drop repeats of the same definition; refuse two different definitions of one kind under one name."""
    by_key: dict[tuple[str, str], Definition] = {}
    for obj in objects:
        key = (obj.kind, obj.name)
        other = by_key.get(key)
        if other is None:
            by_key[key] = obj
        elif other is not obj and other.definition_hash != obj.definition_hash:
            raise ValidationError(
                f"two different {obj.kind.replace('_', ' ')}s are named {obj.name!r}; names must be unique",
                field=obj.name,
            )
    return list(by_key.values())
