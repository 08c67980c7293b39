"""Find the definitions declared in a project's Python modules."""

from __future__ import annotations

import importlib
import os
import sys
import threading
import traceback
from collections.abc import Iterable
from pathlib import Path

from keel.errors import ValidationError
from keel.features._definitions import Definition

#: Folders never scanned for definitions.
SKIP_DIRS = frozenset(
    {"__pycache__", "venv", "env", "node_modules", "data", "tests", "test", "build", "dist", "site-packages"}
)
SKIP_FILES = frozenset({"setup.py", "conftest.py", "noxfile.py"})

#: One discovery at a time in a process (it edits ``sys.path`` and ``sys.modules``); re-entry in one thread is
#: a module that runs Keel code when imported, refused rather than recursing.
_DISCOVERING = threading.RLock()
_ACTIVE = threading.local()

#: Top-level module names a project module may not take: importing the project's file under such a name
#: would replace the real module for the whole process.
_RESERVED_MODULES = frozenset(sys.stdlib_module_names) | {"keel"}


def project_modules(root: Path, modules: list[str] | None = None) -> list[Path]:
    """The Python files to scan: ``modules`` when given (paths relative to ``root``), else every ``*.py``
    below ``root`` outside hidden, environment, test and data folders (which are not even walked)."""
    root = root.resolve()
    if modules is not None:
        paths = []
        for m in modules:
            path = (root / m).resolve()
            if not path.is_file():
                raise ValidationError(f"keel.yaml lists module {m!r}, but {path} is not a file", field="modules")
            if not path.is_relative_to(root):
                raise ValidationError(
                    f"keel.yaml lists module {m!r}, which is outside the project folder {root}; "
                    "list only the project's own files",
                    field="modules",
                )
            paths.append(path)
        return paths
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
        for name in files:
            if not name.endswith(".py") or name in SKIP_FILES or name.startswith(("test_", ".")):
                continue
            if name == "__init__.py" and Path(folder) == root:  # the project folder is not a package
                continue
            found.append(Path(folder) / name)
    return sorted(found)


def _module_name(root: Path, path: Path) -> str:
    rel = path.resolve().relative_to(root.resolve()).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _check_module_name(name: str, path: Path, root: Path) -> None:
    top = name.split(".", 1)[0]
    if top in _RESERVED_MODULES:
        what = "Keel itself" if top == "keel" else "a standard-library module"
        raise ValidationError(
            f"{path.relative_to(root)}: a project module cannot be called {top!r}, the name of {what} "
            "(importing it would replace that module in this process); rename the file or its folder",
            field=str(path.relative_to(root)),
        )


def _in_project(file: str | None, root: Path) -> bool:
    """Whether ``file`` is project code: under ``root``, not in a hidden, environment, test or data folder."""
    if not file or file.startswith("<"):  # "<stdin>", "<frozen ...>": not a file of the project
        return False
    try:
        rel = Path(file).resolve().relative_to(root)
    except (OSError, ValueError):
        return False
    return not any(p.startswith(".") or p in SKIP_DIRS for p in rel.parts[:-1])


def _forget_project_modules(root: Path, names: Iterable[str]) -> None:
    """Drop modules imported by an earlier discovery (of this or another project) so they are imported afresh.

    Dropped: the modules named like the project's, and any module loaded from the project's own files (a
    helper changed or deleted since the last discovery must not linger). Standard-library, Keel and
    installed modules are never touched.
    """
    wanted = set(names)
    for key, module in list(sys.modules.items()):
        if key == "__main__" or key.split(".", 1)[0] in _RESERVED_MODULES:
            continue  # the running script stays itself even when it lives in the project
        named = key in wanted or any(key.startswith(n + ".") for n in wanted)
        if named or _in_project(getattr(module, "__file__", None), root):
            sys.modules.pop(key, None)


def _where(exc: BaseException, root: Path) -> str:
    """``file:line`` of the deepest frame of the traceback inside the project, or an empty string."""
    where = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        try:
            inside = Path(frame.filename).resolve().is_relative_to(root)
        except (OSError, ValueError):
            inside = False
        if inside:
            where = f" (at {Path(frame.filename).resolve().relative_to(root)}:{frame.lineno})"
    return where


def discover(root: Path, modules: list[str] | None = None) -> list[Definition]:
    """Import the project's modules and return every top-level :class:`Definition` they hold.

    Modules are imported under their dotted name relative to ``root`` (so ``from features import customer``
    in another module finds the same objects), freshly each time.

    Raises:
        ValidationError: a module fails to import, or is named like a standard-library module; the message
            names the file and the error.
    """
    with _DISCOVERING:
        if getattr(_ACTIVE, "root", None) is not None:
            raise ValidationError(
                "Keel was asked to import the project's modules while it was importing them: a module runs Keel "
                "code (apply, feature reads) when imported; guard that code with `if __name__ == '__main__':`"
            )
        _ACTIVE.root = root
        try:
            return _discover(root, modules)
        finally:
            _ACTIVE.root = None


def _discover(root: Path, modules: list[str] | None) -> list[Definition]:
    root = root.resolve()
    paths = project_modules(root, modules)
    names = [_module_name(root, p) for p in paths]
    for name, path in zip(names, paths, strict=True):
        _check_module_name(name, path, root)
    found: list[Definition] = []
    seen: set[int] = set()
    saved_path = list(sys.path)
    sys.path.insert(0, str(root))
    try:
        _forget_project_modules(root, names)
        importlib.invalidate_caches()
        for name, path in zip(names, paths, strict=True):
            rel = path.relative_to(root)
            try:
                module = importlib.import_module(name)
            except ValidationError as exc:
                raise ValidationError(f"{rel}{_where(exc, root)}: {exc}", field=exc.field) from exc
            except Exception as exc:
                raise ValidationError(
                    f"cannot import {rel} while looking for definitions{_where(exc, root)}: "
                    f"{type(exc).__name__}: {exc}",
                    field=str(rel),
                ) from exc
            for value in vars(module).values():
                if isinstance(value, Definition) and id(value) not in seen:
                    seen.add(id(value))
                    found.append(value)
    finally:
        sys.path[:] = saved_path
    return found


def loaded_definitions(root: Path) -> list[Definition]:
    """Every top-level :class:`Definition` of the project modules this process has already imported.

    The running script counts when it is a project file. Nothing is imported: this is how a process finds the
    objects it already holds (an on-demand view's function) before resorting to :func:`discover`.
    """
    root = root.resolve()
    found: list[Definition] = []
    seen: set[int] = set()
    for module in list(sys.modules.values()):
        if not _in_project(getattr(module, "__file__", None), root):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Definition) and id(value) not in seen:
                seen.add(id(value))
                found.append(value)
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
            label = obj.kind.replace("_", " ")
            differ = sorted(
                k for k in other.spec().keys() | obj.spec().keys() if other.spec().get(k) != obj.spec().get(k)
            )
            raise ValidationError(
                f"two different definitions of {label} {obj.name!r} were found (they differ in: "
                f"{', '.join(differ)}); names must be unique per kind, so rename one of them",
                field=obj.name,
            )
    return list(by_key.values())
