"""``keel init``: create a project folder, empty or as a copy of an example project with generated data."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

from keel.config import CONFIG_FILE, DEFAULT_YAML
from keel.errors import ConflictError, NotFoundError, ValidationError

__all__ = [
    "STARTER_FEATURES",
    "example_dir",
    "generate_example_data",
    "known_examples",
    "load_example_module",
    "scaffold",
]

#: What an example folder may hold that is never copied: generated data, local state, caches.
_NOT_COPIED = ("__pycache__", "*.pyc", ".keel", "data", ".keep")
_EXAMPLE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")

#: The ``features.py`` of a new, empty project: valid Python that declares nothing yet.
STARTER_FEATURES = '''\
"""Feature definitions of this project.

Keel imports every Python file of the project (outside hidden, data and test folders) and registers the
entities and feature views it finds at module level when you run `keel apply` (or `project.apply()`).
Uncomment and adapt the example below, put your data under data/, then run:

    keel apply               # register the definitions (keel apply --dry-run shows the plan)
    keel ingest              # store an immutable, validated version of every view's data
"""

# from datetime import timedelta
#
# from keel import Entity, FeatureView, Field, ParquetSource
#
# customer = Entity("customer", join_keys=["customer_id"])
#
# customer_activity = FeatureView(
#     "customer_activity",
#     entities=[customer],
#     source=ParquetSource("data/activity.parquet", timestamp="event_time"),
#     schema=[
#         Field("spend_30d", "float64"),
#         Field("orders_30d", "int64"),
#         Field("plan", "string"),
#     ],
#     ttl=timedelta(days=30),  # a value older than this at a row's time is treated as missing
# )
'''

_GITIGNORE_LINE = ".keel/"


def _example_roots() -> list[Path]:
    """Where examples live: inside the installed package (wheels), then in the source checkout."""
    package = Path(__file__).resolve().parent  # this module sits at the top of the keel package
    return [package / "_examples", package.parents[1] / "examples"]


def known_examples() -> list[str]:
    """The names of the example projects this installation ships."""
    names: set[str] = set()
    for root in _example_roots():
        if root.is_dir():
            names.update(p.name for p in root.iterdir() if p.is_dir() and (p / CONFIG_FILE).is_file())
    return sorted(names)


def example_dir(name: str) -> Path:
    """The folder of the example project ``name``.

    It is looked up in the installed package (``keel/_examples/<name>``, where wheels carry it), then in the
    repository's ``examples/<name>`` (editable installs).

    Raises:
        NotFoundError: there is no such example; the message lists the known ones.
    """
    if isinstance(name, str) and _EXAMPLE_NAME.match(name):
        for root in _example_roots():
            candidate = root / name
            if (candidate / CONFIG_FILE).is_file():
                return candidate
    known = ", ".join(known_examples()) or "none (this installation ships none)"
    raise NotFoundError(f"unknown example {name!r}; known examples: {known}")


def _check_target(root: Path, *, force: bool) -> None:
    if root.exists() and not root.is_dir():
        raise ConflictError(f"{root} exists and is not a folder; choose another path for the project")
    if (root / CONFIG_FILE).exists() and not force:
        raise ConflictError(
            f"{root} already holds a Keel project ({CONFIG_FILE}); pass force=True (`keel init --force`) to "
            "write over its files, or choose an empty folder"
        )


def _ensure_gitignore(root: Path) -> None:
    # Append rather than overwrite: the folder may already be a repository with its own ignore rules.
    path = root / ".gitignore"
    existing = path.read_text() if path.exists() else ""
    if _GITIGNORE_LINE in (line.strip() for line in existing.splitlines()):
        return
    separator = "" if not existing or existing.endswith("\n") else "\n"
    path.write_text(f"{existing}{separator}{_GITIGNORE_LINE}\n")


def _scaffold_empty(root: Path) -> None:
    (root / CONFIG_FILE).write_text(DEFAULT_YAML)
    _ensure_gitignore(root)
    features = root / "features.py"
    # Someone's existing definitions are never replaced by the commented starter, even with force.
    if not features.exists():
        features.write_text(STARTER_FEATURES)
    (root / "data").mkdir(exist_ok=True)


def _copy_example(source: Path, root: Path, *, force: bool) -> None:
    ignore = shutil.ignore_patterns(*_NOT_COPIED)
    names = [p.name for p in source.iterdir()]
    skipped = ignore(str(source), names)
    incoming = [name for name in names if name not in skipped]
    clashes = sorted(name for name in incoming if (root / name).exists())
    if clashes and not force:
        raise ConflictError(
            f"{root} already has {', '.join(clashes)}, which the example would overwrite; pass force=True "
            "(`keel init --force`) to overwrite them, or choose an empty folder"
        )
    shutil.copytree(source, root, ignore=ignore, dirs_exist_ok=True)


def load_example_module(root: Path, name: str) -> ModuleType | None:
    """The project's ``name.py``, executed as a fresh module under a private name; ``None`` when there is none.

    The project folder leads ``sys.path`` meanwhile, as it does while discovery imports the project, so the
    example's files import each other by name (``from generate import churn_logit``). The modules of those names
    are set aside first and restored after: a module of another project (or of an earlier run) that happens to
    share a name is never used, and what this load imported does not linger.
    """
    path = root / f"{name}.py"
    # A unique name: the project's own discovery imports the same file under its plain name, and two projects
    # loaded in one process must not share a module object.
    module_name = f"_keel_example_{name}_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(module_name, path) if path.is_file() else None
    if spec is None or spec.loader is None:
        return None
    siblings = {p.stem for p in root.glob("*.py")} - set(sys.stdlib_module_names) - {"keel"}
    saved = {key: sys.modules.pop(key) for key in _modules_named(siblings)}
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses resolve their module's annotations through sys.modules
    sys.path.insert(0, str(root))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(root))
        for key in [*_modules_named(siblings), module_name]:
            sys.modules.pop(key, None)
        sys.modules.update(saved)
    return module


def _modules_named(names: set[str]) -> list[str]:
    """The keys of ``sys.modules`` that are one of ``names`` or a submodule of one."""
    return [key for key in list(sys.modules) if key.split(".", 1)[0] in names]


def generate_example_data(root: Path, *, customers: int, seed: int, drift_after: str | None) -> dict[str, int]:
    """Run the project's ``generate.py`` (an example's data generator) to write ``root/data``.

    Returns:
        The rows written per file name; empty when the project has no ``generate.py``.

    Raises:
        ValidationError: the generator refuses an option (``customers``, ``seed``, ``drift_after``).
    """
    module = load_example_module(root, "generate")
    if module is None:
        return {}
    generate: Any = module.generate
    try:
        counts: dict[str, int] = generate(root / "data", customers=customers, seed=seed, drift_after=drift_after)
    except ValueError as exc:
        raise ValidationError(f"cannot generate the example's data: {exc}") from exc
    return counts


def scaffold(
    path: Path,
    *,
    example: str | None = None,
    customers: int = 1000,
    seed: int = 7,
    drift_after: str | None = None,
    force: bool = False,
) -> Path:
    """Create a Keel project in ``path`` and return its absolute path.

    Without ``example``: ``keel.yaml`` with the embedded defaults, a ``.gitignore`` ignoring ``.keel/``, an
    empty ``data/`` folder and a commented starter ``features.py``. With ``example``: a copy of that example
    project, then its ``generate.py`` writes ``data/``.

    Args:
        path: the project folder; created when missing.
        example: the name of an example project to copy (``churn``).
        customers: the example's scale, in customers.
        seed: the example's random seed.
        drift_after: for the example, an ISO date after which the data's distributions shift.
        force: write into a folder that already holds a project, overwriting the files scaffolded there.

    Returns:
        The project's absolute path.

    Raises:
        ConflictError: ``path`` holds a project (or files the example would overwrite) and ``force`` is False,
            or ``path`` is a file.
        NotFoundError: the example is unknown.
        ValidationError: an example option is out of range.

    Example:
        >>> scaffold(Path("churn"), example="churn", customers=500)  # doctest: +SKIP
        PosixPath('/home/me/churn')
    """
    root = Path(path).expanduser().resolve()
    source = example_dir(example) if example is not None else None
    _check_target(root, force=force)
    if source is not None:
        for name, value in (("customers", customers), ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "customers" else 0):
                raise ValidationError(
                    f"{name} must be a {'positive' if name == 'customers' else 'non-negative'} integer, got {value!r}",
                    field=name,
                )
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    try:
        if source is None:
            _scaffold_empty(root)
        else:
            _copy_example(source, root, force=force)
            generate_example_data(root, customers=customers, seed=seed, drift_after=drift_after)
    except BaseException:
        # A folder this call created is removed again rather than left half-written.
        if created:
            shutil.rmtree(root, ignore_errors=True)
        raise
    return root
