"""project.apply() and project.plan(): validate definitions, compare them with the catalog, record changes."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import keel
from keel import DataFrameSource, Entity, FeatureView, Field, ParquetSource, ValidationError
from keel.features import CsvSource

ENTITIES = """\
from keel import Entity

customer = Entity("customer", join_keys=["customer_id"])
"""


def _views(
    *,
    ttl_days: int = 30,
    entities: str = "[customer]",
    schema: str = 'Field("spend_30d", "float64"), Field("plan", "string")',
    imports: str = "from entities import customer",
) -> str:
    """The text of views.py, with parts replaceable."""
    return f"""\
from datetime import timedelta

from keel import FeatureView, Field, ParquetSource
{imports}

activity = FeatureView(
    "customer_activity", entities={entities}, ttl=timedelta(days={ttl_days}),
    source=ParquetSource("data/activity.parquet", timestamp="event_time"),
    schema=[{schema}],
)
"""


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def _activity_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [1, 2],
            "event_time": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
            "spend_30d": [10.0, 20.0],
            "plan": ["basic", "pro"],
        }
    )


@pytest.fixture
def project(project_dir: Path) -> Iterator[Any]:
    """A project with entities.py, views.py and the view's Parquet source."""
    (project_dir / "data").mkdir()
    _activity_frame().to_parquet(project_dir / "data" / "activity.parquet")
    _write(project_dir, "entities.py", ENTITIES)
    _write(project_dir, "views.py", _views())
    proj = keel.Project.open(project_dir)
    yield proj
    proj.close()


def _summary(plan: Any) -> list[tuple[str, str, str, int]]:
    return [(i.kind, i.name, i.action, i.version) for i in plan.items]


def _rows(project: Any) -> dict[tuple[str, str], list[int]]:
    """Every recorded version of every definition."""
    return {
        key: [r.version for r in project.catalog.definition_history(*key)]
        for key in project.catalog.current_definitions()
    }


def test_apply_records_the_projects_definitions_as_version_1(project: Any) -> None:
    plan = project.apply()

    assert _summary(plan) == [
        ("entity", "customer", "add", 1),
        ("feature_view", "customer_activity", "add", 1),
    ]
    assert plan.applied
    assert str(plan).splitlines() == [
        "+ entity customer v1",
        "+ feature view customer_activity v1",
        "2 added, 0 changed, 0 removed",
    ]
    assert project.feature_view("customer_activity").feature_names == ["spend_30d", "plan"]
    assert project.entities()["customer"].join_keys == ("customer_id",)


def test_re_applying_unchanged_definitions_writes_nothing(project: Any) -> None:
    project.apply()
    before = _rows(project)

    plan = project.apply()

    assert not plan.has_changes
    assert _summary(plan) == [
        ("entity", "customer", "unchanged", 1),
        ("feature_view", "customer_activity", "unchanged", 1),
    ]
    assert _rows(project) == before


def test_a_changed_view_gets_version_2_naming_what_changed(project: Any, project_dir: Path) -> None:
    project.apply()
    _write(project_dir, "views.py", _views(ttl_days=7))

    plan = project.apply()

    (changed,) = plan.changed
    assert (changed.name, changed.version, changed.changes) == ("customer_activity", 2, ("ttl_seconds",))
    assert "~ feature view customer_activity v2 (ttl_seconds)" in str(plan)
    assert project.feature_view("customer_activity").ttl == timedelta(days=7)
    assert _rows(project)[("feature_view", "customer_activity")] == [1, 2]


def test_a_view_removed_from_the_project_is_recorded_as_removed(project: Any, project_dir: Path) -> None:
    project.apply()
    (project_dir / "views.py").unlink()

    plan = project.apply()

    assert _summary(plan) == [
        ("entity", "customer", "unchanged", 1),
        ("feature_view", "customer_activity", "remove", 2),
    ]
    assert "- feature view customer_activity v2" in str(plan)
    assert not project.catalog.current_definitions()[("feature_view", "customer_activity")].active
    with pytest.raises(keel.NotFoundError, match=r"unknown feature view 'customer_activity'; known: none"):
        project.feature_view("customer_activity")


def test_a_view_declared_again_after_removal_gets_the_next_version(project: Any, project_dir: Path) -> None:
    project.apply()
    views = (project_dir / "views.py").read_text()
    (project_dir / "views.py").unlink()
    project.apply()
    (project_dir / "views.py").write_text(views)

    plan = project.apply()

    assert [(i.name, i.action, i.version) for i in plan.added] == [("customer_activity", "add", 3)]
    assert project.feature_view("customer_activity").name == "customer_activity"


def test_a_dry_run_shows_the_plan_and_writes_nothing(project: Any, project_dir: Path) -> None:
    planned = project.plan()
    dry = project.apply(dry_run=True)

    assert (
        _summary(planned)
        == _summary(dry)
        == [
            ("entity", "customer", "add", 1),
            ("feature_view", "customer_activity", "add", 1),
        ]
    )
    assert not planned.applied
    assert str(planned).splitlines()[-1] == "2 to add, 0 to change, 0 to remove"
    assert project.catalog.current_definitions() == {}


def test_a_dry_run_of_a_change_and_a_removal_writes_nothing(project: Any, project_dir: Path) -> None:
    project.apply()
    before = _rows(project)
    _write(project_dir, "entities.py", ENTITIES + '\nstore = Entity("store")\n')
    _write(project_dir, "views.py", _views(ttl_days=7))
    project.apply()
    (project_dir / "entities.py").write_text(ENTITIES)
    (project_dir / "views.py").write_text(_views(ttl_days=1))
    after_apply = _rows(project)

    plan = project.plan()

    assert before != after_apply
    assert {(i.name, i.action) for i in plan.items if i.action != "unchanged"} == {
        ("customer_activity", "change"),
        ("store", "remove"),
    }
    assert _rows(project) == after_apply


def test_applying_given_objects_does_not_remove_the_others(project: Any) -> None:
    project.apply()
    merchant = Entity("merchant")

    plan = project.apply([merchant])

    assert _summary(plan) == [("entity", "merchant", "add", 1)]
    assert project.catalog.current_definitions()[("feature_view", "customer_activity")].active


def test_applying_a_view_registers_the_entity_objects_it_uses(project: Any, project_dir: Path) -> None:
    account = Entity("account", ["customer_id"])
    view = FeatureView(
        "account_activity",
        entities=[account],
        source=ParquetSource("data/activity.parquet"),
        schema=[Field("spend_30d", "float64")],
    )

    plan = project.apply([view])

    assert _summary(plan) == [("entity", "account", "add", 1), ("feature_view", "account_activity", "add", 1)]


def test_a_view_may_name_an_entity_registered_earlier(project: Any) -> None:
    project.apply()
    view = FeatureView(
        "spend_only",
        entities=["customer"],
        source=ParquetSource("data/activity.parquet"),
        schema=[Field("spend_30d", "float64")],
    )

    plan = project.apply([view])

    assert _summary(plan) == [("feature_view", "spend_only", "add", 1)]


def test_an_unknown_entity_is_refused_and_nothing_is_recorded(project: Any, project_dir: Path) -> None:
    _write(project_dir, "views.py", _views(entities='["merchant"]'))

    with pytest.raises(ValidationError) as info:
        project.apply()

    assert "feature view 'customer_activity' refers to unknown entity 'merchant'" in str(info.value)
    assert "declare Entity('merchant', ...) and apply it" in str(info.value)
    assert info.value.field == "merchant"
    assert project.catalog.current_definitions() == {}


def test_removing_an_entity_a_view_still_uses_is_refused(project: Any, project_dir: Path) -> None:
    _write(project_dir, "views.py", _views(entities='["customer"]'))
    project.apply()
    before = _rows(project)
    (project_dir / "entities.py").write_text("# the entity was deleted\n")
    _write(project_dir, "views.py", _views(entities='["customer"]', imports=""))

    with pytest.raises(ValidationError, match=r"'customer_activity' refers to unknown entity 'customer'"):
        project.apply()

    assert _rows(project) == before


def test_two_different_definitions_with_one_name_are_refused(project: Any, project_dir: Path) -> None:
    _write(project_dir, "more.py", _views(ttl_days=3))

    with pytest.raises(ValidationError, match=r"two different definitions of feature view 'customer_activity'"):
        project.apply()

    assert project.catalog.current_definitions() == {}


def test_two_different_objects_with_one_name_given_to_apply_are_refused(project: Any) -> None:
    a = Entity("customer", ["customer_id"])
    b = Entity("customer", ["cid"])

    with pytest.raises(ValidationError, match=r"two different definitions of entity 'customer'"):
        project.apply([a, b])


def test_a_schema_field_missing_from_the_parquet_source_is_refused(project: Any, project_dir: Path) -> None:
    _write(project_dir, "views.py", _views(schema='Field("spend_30d", "float64"), Field("region", "string")'))

    with pytest.raises(ValidationError) as info:
        project.apply()

    message = str(info.value)
    assert "feature view 'customer_activity': schema field(s) ['region'] missing from parquet source" in message
    assert "it has: customer_id, event_time, spend_30d, plan" in message
    assert info.value.field == "region"
    assert project.catalog.current_definitions() == {}


def test_a_join_key_or_timestamp_missing_from_the_source_is_refused(project: Any) -> None:
    view = FeatureView(
        "by_account",
        entities=[Entity("account")],
        source=ParquetSource("data/activity.parquet", timestamp="ts"),
        schema=[Field("spend_30d", "float64")],
    )

    with pytest.raises(ValidationError, match=r"key or timestamp column\(s\) \['account_id', 'ts'\] missing") as info:
        project.apply([view])

    assert info.value.field == "account_id"


def test_a_field_that_is_also_a_join_key_is_refused(project: Any) -> None:
    view = FeatureView(
        "keyed",
        entities=[Entity("customer", ["customer_id"])],
        source=ParquetSource("data/activity.parquet"),
        schema=[Field("spend_30d", "float64"), Field("customer_id", "int64")],
    )

    with pytest.raises(ValidationError, match=r"'keyed': field\(s\) \['customer_id'\] are also join keys") as info:
        project.apply([view])

    assert info.value.field == "customer_id"
    assert project.catalog.current_definitions() == {}


def test_a_missing_source_file_is_refused_naming_the_path(project: Any) -> None:
    view = FeatureView(
        "ghost",
        entities=["customer"],
        source=ParquetSource("data/ghost.parquet"),
        schema=[Field("spend_30d", "float64")],
    )

    with pytest.raises(ValidationError, match=r"feature view 'ghost': parquet source 'data/ghost\.parquet': no file"):
        project.apply([Entity("customer", ["customer_id"]), view])


def test_an_unknown_dtype_in_a_module_is_refused_naming_the_file_and_the_valid_dtypes(
    project: Any, project_dir: Path
) -> None:
    _write(project_dir, "views.py", _views(schema='Field("spend_30d", "money")'))

    with pytest.raises(ValidationError) as info:
        project.apply()

    message = str(info.value)
    assert message.startswith("views.py (at views.py:")
    assert "unknown dtype 'money'; valid dtypes are: int64, float64, bool, string, timestamp, list[float64]" in message
    assert project.catalog.current_definitions() == {}


def test_a_csv_source_is_checked_against_its_header(project: Any, project_dir: Path) -> None:
    _activity_frame().to_csv(project_dir / "data" / "activity.csv", index=False)
    good = FeatureView(
        "from_csv",
        entities=["customer"],
        source=CsvSource("data/activity.csv"),
        schema=[Field("spend_30d", "float64")],
    )
    bad = FeatureView(
        "from_csv",
        entities=["customer"],
        source=CsvSource("data/activity.csv"),
        schema=[Field("orders", "int64")],
    )
    customer = Entity("customer", ["customer_id"])

    with pytest.raises(ValidationError, match=r"schema field\(s\) \['orders'\] missing from csv source"):
        project.apply([customer, bad])
    plan = project.apply([customer, good])

    assert [i.name for i in plan.added] == ["customer", "from_csv"]


def test_a_dataframe_source_is_checked_against_its_columns(project: Any) -> None:
    view = FeatureView(
        "pushed",
        entities=[Entity("customer", ["customer_id"])],
        source=DataFrameSource(_activity_frame()),
        schema=[Field("spend_30d", "float64"), Field("missing", "bool")],
    )

    with pytest.raises(ValidationError, match=r"schema field\(s\) \['missing'\] missing from in-memory DataFrame"):
        project.apply([view])


def test_apply_refuses_objects_that_are_not_definitions(project: Any) -> None:
    with pytest.raises(ValidationError, match=r"apply\(\) takes Entity and FeatureView objects, got str"):
        project.apply(["customer"])
