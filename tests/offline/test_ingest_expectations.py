"""A view's expectations are checked at every ingest: ``warn`` writes the version and keeps the results with it,
``strict`` publishes nothing (catalog and offline store as they were) and names each failure."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import keel
from _training_fixtures import ACTIVITY_SCHEMA, CUSTOMER, activity_frame, write_activity
from keel import FeatureView, ParquetSource
from keel.cli import app
from keel.cli._features import _expectations
from keel.errors import ValidationError
from keel.validation import InRange, NotNull, OneOf, UniqueKeys


def view(validation: str = "warn", **overrides: object) -> FeatureView:
    options: dict[str, object] = {
        "expectations": [
            NotNull("orders"),
            InRange("orders", min=0),
            OneOf("plan", ["basic", "pro", "team"]),
            UniqueKeys(),
            InRange("spend", max=1e9, severity="warning"),
        ],
        "validation": validation,
        **overrides,
    }
    return FeatureView(
        "activity",
        entities=[CUSTOMER],
        source=ParquetSource("data/activity.parquet", timestamp="event_time"),
        schema=ACTIVITY_SCHEMA,
        ttl=timedelta(days=7),
        **options,  # type: ignore[arg-type]
    )


def clean_frame() -> pd.DataFrame:
    frame = activity_frame(240)
    frame["plan"] = frame["plan"].where(frame["plan"].isin(["basic", "pro", "team"]), "basic")
    frame["orders"] = frame["orders"].fillna(0).abs()
    return frame


def bad_frame() -> pd.DataFrame:
    frame = clean_frame()
    frame.loc[[3, 50], "orders"] = -1
    frame.loc[7, "plan"] = "enterprise"
    return frame


def files_of(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in (root / ".keel" / "offline").rglob("*") if p.is_file()}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "project"


def test_warn_writes_the_version_and_keeps_each_result_with_it(root: Path) -> None:
    write_activity(root, bad_frame())
    with keel.Project.open(root) as project:
        project.apply([CUSTOMER, view("warn")])

        result = project.ingest("activity")
        stored = project.catalog.feature_version("activity")

    assert result.created and stored.version == 1
    assert stored.validation is not None and stored.validation["policy"] == "warn"
    failed = {r["describe"]: r for r in stored.validation["failures"]}
    assert set(failed) == {"orders >= 0", "plan is one of 'basic', 'pro', 'team'"}
    assert (failed["orders >= 0"]["failed"], failed["orders >= 0"]["first"]) == (2, 3)
    assert failed["plan is one of 'basic', 'pro', 'team'"]["first"] == 7
    assert len(stored.validation["results"]) == 5
    assert any("expectation failed: orders >= 0 (2 rows)" in w for w in result.warnings)
    shown = CliRunner().invoke(app, ["features", "versions", "activity", "-p", str(root)])
    assert shown.exit_code == 0 and "failed" in shown.output
    assert _expectations(stored.validation) == "[yellow]2 failed[/]: orders >= 0; plan is one of 'basic', 'pro', 'team'"


def test_strict_publishes_nothing_and_names_every_failure(root: Path) -> None:
    write_activity(root, clean_frame())
    with keel.Project.open(root) as project:
        project.apply([CUSTOMER, view("strict")])
        first = project.ingest("activity")
        assert first.created
        assert project.catalog.feature_version("activity").validation["failures"] == []  # type: ignore[index]
        before = (project.feature_versions("activity"), files_of(root))
        write_activity(root, bad_frame())

        with pytest.raises(ValidationError) as failure:
            project.ingest("activity")

        after = (project.feature_versions("activity"), files_of(root))
    message = str(failure.value)
    assert "2 expectation(s) failed; nothing ingested" in message
    assert "- orders >= 0: 2 of 240 rows (0.83%), first at row 3" in message
    assert "plan is one of 'basic', 'pro', 'team': 1 of 240 rows" in message
    assert "spend" not in message  # a warning-level expectation never blocks
    assert after == before  # invariant 4: the catalog and the offline store as they were


def test_a_push_is_judged_with_the_version_it_makes_and_strict_refuses_it_whole(root: Path) -> None:
    write_activity(root, clean_frame())
    with keel.Project.open(root) as project:
        project.apply([CUSTOMER, view("strict")])
        project.ingest("activity")
        before = (project.feature_versions("activity"), files_of(root))
        pushed = clean_frame().head(3).assign(event_time=pd.Timestamp("2030-01-01", tz="UTC"), orders=-5)

        with pytest.raises(ValidationError, match="orders >= 0: 3 of 243 rows"):
            project.push("activity", pushed, to="offline")

        assert (project.feature_versions("activity"), files_of(root)) == before
        good = pushed.assign(orders=1)
        project.push("activity", good, to="offline")
        latest = project.catalog.feature_version("activity")
    assert latest.version == 2 and latest.validation is not None and latest.validation["failures"] == []


def test_a_clean_strict_ingest_of_new_data_passes(root: Path) -> None:
    write_activity(root, clean_frame())
    with keel.Project.open(root) as project:
        project.apply([CUSTOMER, view("strict")])
        project.ingest("activity")
        frame = clean_frame()
        frame["spend"] = frame["spend"] + 1.0
        write_activity(root, frame)

        result = project.ingest("activity")

    assert result.created and result.version.version == 2


def test_expectations_are_part_of_the_definition_only_when_declared() -> None:
    declared = view("strict")
    plain = FeatureView(
        "activity",
        entities=[CUSTOMER],
        source=ParquetSource("data/activity.parquet", timestamp="event_time"),
        schema=ACTIVITY_SCHEMA,
        ttl=timedelta(days=7),
    )

    assert "expectations" not in plain.spec()  # views without expectations keep their definition hash
    assert declared.spec()["validation"] == "strict"
    assert FeatureView.from_spec(declared.spec()) == declared
    assert declared.definition_hash != plain.definition_hash


def test_an_expectation_on_an_unknown_column_or_a_bad_policy_is_refused() -> None:
    with pytest.raises(ValidationError, match="'age', which is not one of its columns"):
        view(expectations=[NotNull("age")])
    with pytest.raises(ValidationError, match="'warn' or 'strict'"):
        view("loud")
    with pytest.raises(ValidationError, match="not an expectation"):
        view(expectations=[np.nan])


def test_the_failed_expectations_of_the_versions_a_spec_reads_are_what_refuses_a_retraining(root: Path) -> None:
    from keel.training import TrainingSpec

    write_activity(root, bad_frame())
    with keel.Project.open(root) as project:
        project.apply([CUSTOMER, view("warn")])
        project.ingest("activity")
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression()
        spec = TrainingSpec("churn", labels=pd.DataFrame(), label="churned", features=["activity:orders"], model=model)
        plain = TrainingSpec("churn", labels=pd.DataFrame(), label="churned", features=["elsewhere:x"], model=model)

        problems = project.expectation_failures(spec)
        nothing = project.expectation_failures(plain)

    assert problems == ["activity v1: orders >= 0 (2 rows), plan is one of 'basic', 'pro', 'team' (1 rows)"]
    assert nothing == []
