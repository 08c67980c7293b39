"""Finding the definitions declared in a project's Python modules."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from keel.definitions._discovery import discover, project_modules, unique_definitions
from keel.errors import ValidationError
from keel.features import Definition, Entity, FeatureView

ENTITY = """\
from keel import Entity

customer = Entity("customer", join_keys=["customer_id"])
"""

VIEW = """\
from datetime import timedelta

from keel import FeatureView, Field, ParquetSource
from entities import customer

activity = FeatureView(
    "customer_activity", entities=[customer], ttl=timedelta(days=30),
    source=ParquetSource("data/activity.parquet", timestamp="event_time"),
    schema=[Field("spend_30d", "float64")],
)
"""


def _write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _names(found: list[Definition]) -> list[tuple[str, str]]:
    return sorted((d.kind, d.name) for d in found)


def test_top_level_definitions_of_every_module_are_found(project_dir: Path) -> None:
    _write(project_dir, "entities.py", ENTITY)
    _write(project_dir, "views.py", VIEW)
    _write(project_dir, "pkg/__init__.py", "")
    _write(project_dir, "pkg/more.py", 'from keel import Entity\nstore = Entity("store")\n')
    _write(project_dir, "loose/extra.py", 'from keel import Entity\nregion = Entity("region")\n')

    found = discover(project_dir)

    assert _names(found) == [
        ("entity", "customer"),
        ("entity", "region"),
        ("entity", "store"),
        ("feature_view", "customer_activity"),
    ]


def test_an_object_imported_by_another_module_is_found_once(project_dir: Path) -> None:
    _write(project_dir, "entities.py", ENTITY)
    _write(project_dir, "views.py", VIEW)

    found = discover(project_dir)

    entities = [d for d in found if isinstance(d, Entity)]
    (view,) = [d for d in found if isinstance(d, FeatureView)]
    assert len(entities) == 1
    assert view.entities[0] is entities[0]


def test_two_modules_importing_one_another_are_discovered(project_dir: Path) -> None:
    _write(project_dir, "entities.py", ENTITY + "\nimport views  # noqa: E402\n")
    _write(project_dir, "views.py", VIEW)

    found = discover(project_dir)

    assert _names(found) == [("entity", "customer"), ("feature_view", "customer_activity")]


@pytest.mark.parametrize(
    "rel",
    [
        "tests/defs.py",
        "test/defs.py",
        ".venv/lib/python3.11/site-packages/defs.py",
        "venv/defs.py",
        ".hidden/defs.py",
        "data/defs.py",
        "build/defs.py",
        "node_modules/defs.py",
        "test_defs.py",
        "conftest.py",
        "setup.py",
    ],
)
def test_test_environment_data_and_hidden_folders_are_skipped(project_dir: Path, rel: str) -> None:
    _write(project_dir, "entities.py", ENTITY)
    _write(project_dir, rel, 'raise RuntimeError("must not be imported")\n')

    assert [p.relative_to(project_dir).as_posix() for p in project_modules(project_dir)] == ["entities.py"]
    assert _names(discover(project_dir)) == [("entity", "customer")]


def test_a_module_that_fails_to_import_is_named_with_its_line(project_dir: Path) -> None:
    _write(project_dir, "entities.py", ENTITY)
    _write(project_dir, "broken.py", "from keel import Entity\n\nx = undefined_name + 1\n")

    with pytest.raises(ValidationError) as info:
        discover(project_dir)

    message = str(info.value)
    assert "cannot import broken.py while looking for definitions (at broken.py:3)" in message
    assert "NameError: name 'undefined_name' is not defined" in message
    assert info.value.field == "broken.py"


def test_a_failure_in_an_imported_module_names_the_file_where_it_happened(project_dir: Path) -> None:
    _write(project_dir, "aaa.py", "import helpers\n")
    _write(project_dir, "helpers.py", "\n\nraise KeyError('boom')\n")

    with pytest.raises(ValidationError, match=r"cannot import aaa\.py .*\(at helpers\.py:3\): KeyError: 'boom'"):
        discover(project_dir)


def test_a_syntax_error_names_the_file(project_dir: Path) -> None:
    _write(project_dir, "broken.py", "def nope(:\n")

    with pytest.raises(ValidationError, match=r"cannot import broken\.py .*SyntaxError.*broken\.py, line 1"):
        discover(project_dir)


def test_an_invalid_definition_in_a_module_names_the_file_and_the_problem(project_dir: Path) -> None:
    _write(project_dir, "views.py", 'from keel import Field\n\nspend = Field("spend", "decimal")\n')

    with pytest.raises(ValidationError) as info:
        discover(project_dir)

    assert str(info.value).startswith("views.py (at views.py:3): field 'spend': unknown dtype 'decimal'")
    assert "valid dtypes are: int64, float64, bool, string, timestamp, list[float64]" in str(info.value)
    assert info.value.field == "spend"


def test_a_module_named_like_a_standard_library_module_is_refused_untouched(project_dir: Path) -> None:
    import statistics

    _write(project_dir, "statistics.py", ENTITY)

    with pytest.raises(ValidationError, match=r"statistics\.py: a project module cannot be called 'statistics'"):
        discover(project_dir)

    assert sys.modules["statistics"] is statistics


def test_modules_are_imported_afresh_on_each_discovery(project_dir: Path) -> None:
    _write(project_dir, "entities.py", ENTITY)
    _write(project_dir, "views.py", VIEW)
    first = discover(project_dir)

    _write(project_dir, "entities.py", ENTITY.replace('["customer_id"]', '["cid"]'))
    second = discover(project_dir)

    assert [e.join_keys for e in first if isinstance(e, Entity)] == [("customer_id",)]
    assert [e.join_keys for e in second if isinstance(e, Entity)] == [("cid",)]


def test_a_deleted_helper_module_does_not_linger_between_discoveries(project_dir: Path) -> None:
    _write(project_dir, "entities.py", ENTITY)
    _write(project_dir, "views.py", VIEW)
    discover(project_dir)

    (project_dir / "entities.py").unlink()

    with pytest.raises(ValidationError, match=r"cannot import views\.py .*ModuleNotFoundError.*'entities'"):
        discover(project_dir)


def test_two_projects_with_the_same_module_names_each_see_their_own(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    _write(one, "features.py", 'from keel import Entity\ncustomer = Entity("customer")\n')
    _write(two, "features.py", 'from keel import Entity\nmerchant = Entity("merchant")\n')

    assert _names(discover(one)) == [("entity", "customer")]
    assert _names(discover(two)) == [("entity", "merchant")]


def test_discovery_leaves_sys_path_as_it_was(project_dir: Path) -> None:
    _write(project_dir, "entities.py", ENTITY)
    before = list(sys.path)

    discover(project_dir)

    assert sys.path == before


def test_listed_modules_are_the_only_ones_scanned(project_dir: Path) -> None:
    _write(project_dir, "entities.py", ENTITY)
    _write(project_dir, "scratch.py", 'raise RuntimeError("not listed")\n')

    assert _names(discover(project_dir, ["entities.py"])) == [("entity", "customer")]


def test_a_listed_module_that_does_not_exist_is_refused(project_dir: Path) -> None:
    with pytest.raises(ValidationError, match=r"keel\.yaml lists module 'nope\.py', but .*nope\.py is not a file"):
        discover(project_dir, ["nope.py"])


def test_a_listed_module_outside_the_project_is_refused(project_dir: Path) -> None:
    _write(project_dir.parent, "shared.py", ENTITY)

    with pytest.raises(ValidationError, match=r"'\.\./shared\.py', which is outside the project folder"):
        discover(project_dir, ["../shared.py"])


def test_two_different_definitions_under_one_name_are_refused() -> None:
    a = Entity("customer", ["customer_id"])
    b = Entity("customer", ["cid"])

    with pytest.raises(ValidationError) as info:
        unique_definitions([a, b])

    assert "two different definitions of entity 'customer' were found (they differ in: join_keys)" in str(info.value)
    assert info.value.field == "customer"


def test_equal_definitions_under_one_name_are_kept_once() -> None:
    a = Entity("customer", ["customer_id"])
    b = Entity("customer", ["customer_id"])

    assert unique_definitions([a, b, a]) == [a]
