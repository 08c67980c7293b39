"""The floors of the house: which part of ``src/keel`` may import which, held as data and checked on every module.

Every import counts: at module level, under ``TYPE_CHECKING`` and inside functions (a lazy import is still a
dependency). A *unit* is a subpackage (``keel.serving``) or a top-level module (``keel._files``). The rules:

* no unit imports one that is not in its row of :data:`ALLOWED` (a new arrow is a design decision: add it here,
  on purpose, in review);
* no circle between units;
* only the facade (``keel.project``), the command line and the demo import ``keel.project``, and nothing
  imports the package root ``keel`` (which re-exports the facade) but those and the root itself.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "keel"

#: The base layer every unit may use.
BASE = {"errors", "_time", "_files", "_tables", "_version", "_svg", "_code", "_numbers", "_outage", "_process"}

#: unit -> the units it may import (besides itself and :data:`BASE`). Read from the bottom of the walk to its top:
#: source -> offline -> training set -> package -> service / batch -> log -> monitor -> retrain.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "_version": set(),
    "_svg": set(),
    "_numbers": set(),
    "_outage": {"errors"},
    "_process": set(),
    "_code": {"errors"},
    "_time": {"errors"},
    "_files": {"errors"},
    "_tables": {"errors", "_time"},
    "_backends": {"config", "engines"},  # the plug-in table: builders import their backend lazily
    "config": set(),
    "_scaffold": {"config"},
    "catalog": set(),
    "artifacts": set(),
    "engines": set(),
    "features": set(),
    "definitions": {"catalog", "features"},
    "offline": {"catalog", "definitions", "engines", "features", "validation"},
    "online": {"_backends", "catalog", "definitions", "engines", "features", "offline", "validation"},
    "models": {"artifacts", "catalog", "features"},
    "profiles": {"engines", "models"},  # a reference at rest is summarised by the engine
    "training": {"artifacts", "catalog", "features", "models", "offline", "profiles"},
    "prediction_log": {"engines", "features", "models"},
    "serving": {"_backends", "definitions", "features", "models", "online", "prediction_log"},
    "batch": {"artifacts", "catalog", "features", "models"},
    "monitoring": {
        "artifacts",
        "catalog",
        "engines",
        "models",
        "prediction_log",
        "profiles",
        "training",
        "validation",  # serving skew is judged by the same distances as stability
    },
    "validation": {"engines"},
    "retraining": {"analysis", "catalog", "models", "training"},  # the promotion gate's comparison by segment
    # the web UI reads the catalog, moves aliases through the registry, and shares the services' direct routes
    "ui": {"catalog", "models", "serving"},
    "analysis": {"artifacts", "catalog", "features", "models", "monitoring", "training"},
    # The faces: they build and wire everything below them.
    "project": {"*"},
    "cli": {"*"},
    "demo": {"*"},
    "keel": {"*"},
}
#: The units that may import the facade (``keel.project``) or the package root that re-exports it.
FACES = {"project", "cli", "demo", "keel"}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


UNITS = {p.stem if p.is_file() else p.name for p in SRC.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
UNITS = {"keel" if u == "__init__" else u for u in UNITS}


def unit_of(module: str) -> str | None:
    """The unit of a dotted module name inside Keel (``keel.serving._app`` -> ``serving``), else ``None``."""
    parts = module.split(".")
    if parts[0] != "keel":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in UNITS else "keel"


def imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every Keel module ``name`` imports, with the line: top level, ``TYPE_CHECKING`` and function bodies alike.

    ``from keel import errors`` counts as an import of ``keel.errors``; ``from keel import Project`` as one of the
    package root.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module == "keel":
                for alias in node.names:
                    yield (f"keel.{alias.name}" if alias.name in UNITS else "keel"), node.lineno
            else:
                yield module, node.lineno


def arrows() -> dict[tuple[str, str], list[str]]:
    """``(importing unit, imported unit) -> ["module:line", ...]`` over the whole package."""
    found: dict[tuple[str, str], list[str]] = {}
    for name, path in _modules():
        source = unit_of(name)
        assert source is not None
        for target_module, line in imports(name, path):
            target = unit_of(target_module)
            if target is None or target == source:
                continue
            if target == "keel" and target_module != "keel":
                continue
            found.setdefault((source, target), []).append(f"{path.relative_to(SRC.parent)}:{line}")
    return found


def test_the_parser_sees_every_kind_of_import(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    module.write_text(
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "from keel import errors\n"
        "if TYPE_CHECKING:\n"
        "    from keel.project import Project\n"
        "def f():\n"
        "    import keel.serving._app\n"
        "    from . import _sibling\n"
        "    from keel import Project\n"
    )
    seen = [m for m, _ in imports("keel.batch.probe", module)]
    assert [unit_of(m) for m in seen if unit_of(m)] == ["errors", "project", "serving", "batch", "keel"]


def test_every_unit_has_a_row() -> None:
    missing = sorted(UNITS - set(ALLOWED))
    assert not missing, f"units without a row in ALLOWED: {missing}"


def test_only_the_faces_import_the_project() -> None:
    offending = [
        f"{source} imports {target} ({', '.join(where)})"
        for (source, target), where in sorted(arrows().items())
        if target in ("project", "keel") and source not in FACES
    ]
    assert not offending, "services must take their collaborators, not the project:\n" + "\n".join(offending)


def test_every_arrow_between_units_is_allowed() -> None:
    offending = []
    for (source, target), where in sorted(arrows().items()):
        allowed = ALLOWED.get(source, set())
        if "*" in allowed or target in allowed or target in BASE:
            continue
        offending.append(f"{source} -> {target} ({', '.join(where[:3])})")
    assert not offending, "arrows not in ALLOWED (a new arrow is a design decision):\n" + "\n".join(offending)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("with_faces", [False, True])
def test_no_circle_between_units(with_faces: bool) -> None:
    graph: dict[str, set[str]] = {}
    for source, target in arrows():
        if not with_faces and (source in FACES or target in FACES):
            continue
        graph.setdefault(source, set()).add(target)
    # The package root re-exports the facade, and the facade's lazy imports reach every service: with the faces
    # in, only a service importing a face could close a circle, which the rule above already refuses.
    if with_faces:
        graph.pop("keel", None)
    cycle = _cycle(graph)
    assert cycle is None, f"import circle: {' -> '.join(cycle or [])}"
