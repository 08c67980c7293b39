"""``keel init``: empty projects, the churn example, and the example's data generator."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from keel._scaffold import (
    STARTER_FEATURES,
    example_dir,
    generate_example_data,
    known_examples,
    load_example_module,
    scaffold,
)
from keel.config import DEFAULT_YAML
from keel.errors import ConflictError, NotFoundError, ValidationError
from keel.project import Project

DATA_FILES = ("customers.parquet", "activity.parquet", "labels.parquet")


@pytest.fixture(scope="module")
def churn_generator() -> Iterator[ModuleType]:
    """The churn example's ``generate.py``, imported by path."""
    path = example_dir("churn") / "generate.py"
    spec = importlib.util.spec_from_file_location("_test_churn_generate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _read(folder: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(folder / name) for name in DATA_FILES}


# -- empty projects ------------------------------------------------------------------------------------------
def test_init_writes_defaults_gitignore_and_a_starter_that_declares_nothing(tmp_path: Path) -> None:
    root = scaffold(tmp_path / "new" / "project")

    assert root == (tmp_path / "new" / "project").resolve()
    assert (root / "keel.yaml").read_text() == DEFAULT_YAML
    assert ".keel/" in (root / ".gitignore").read_text().splitlines()
    assert (root / "features.py").read_text() == STARTER_FEATURES
    compile(STARTER_FEATURES, "features.py", "exec")
    with Project.open(root) as project:
        assert project.config.name == "project"
        plan = project.apply()
        assert plan.items == []


def test_project_init_returns_an_open_project(tmp_path: Path) -> None:
    with Project.init(tmp_path / "p") as project:
        assert project.root == (tmp_path / "p").resolve()
        assert project.config_path.is_file()


def test_init_refuses_an_existing_project_unless_forced(tmp_path: Path) -> None:
    root = scaffold(tmp_path / "p")
    (root / "keel.yaml").write_text("name: mine\n")

    with pytest.raises(ConflictError, match="force"):
        scaffold(root)
    assert (root / "keel.yaml").read_text() == "name: mine\n"

    scaffold(root, force=True)
    assert (root / "keel.yaml").read_text() == DEFAULT_YAML


def test_init_keeps_existing_code_and_ignore_rules(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / ".gitignore").write_text("*.log")  # no trailing newline
    (root / "features.py").write_text("X = 1\n")

    scaffold(root)

    assert (root / ".gitignore").read_text() == "*.log\n.keel/\n"
    assert (root / "features.py").read_text() == "X = 1\n"
    scaffold(root, force=True)
    assert (root / ".gitignore").read_text().count(".keel/") == 1


def test_init_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ConflictError, match="not a folder"):
        scaffold(target)


# -- the churn example ---------------------------------------------------------------------------------------
def test_example_is_found_and_unknown_ones_are_listed() -> None:
    assert "churn" in known_examples()
    assert (example_dir("churn") / "features.py").is_file()
    with pytest.raises(NotFoundError, match=r"known examples: .*churn"):
        example_dir("nope")
    with pytest.raises(NotFoundError):
        example_dir("../churn")


def test_init_with_example_generates_data_that_applies_and_ingests(tmp_path: Path) -> None:
    root = scaffold(tmp_path / "churn", example="churn", customers=150, seed=3)

    for name in ("keel.yaml", "features.py", "training.py", "generate.py", "yardstick.py", "README.md", ".gitignore"):
        assert (root / name).is_file(), name
    assert not list(root.rglob("__pycache__"))
    assert not (root / ".keep").exists()
    data = _read(root / "data")
    assert data["customers.parquet"]["customer_id"].nunique() == 150

    with Project.open(root) as project:
        assert project.config.name == "churn"
        plan = project.apply()
        assert {(i.kind, i.name) for i in plan.added} == {
            ("entity", "customer"),
            ("feature_view", "customer_profile"),
            ("feature_view", "customer_activity"),
            ("training_spec", "churn"),
        }
        activity = project.ingest("customer_activity")
        profile = project.ingest("customer_profile")
        assert activity.created and profile.created
        assert activity.version.row_count == len(data["activity.parquet"])
        assert profile.version.row_count == len(data["customers.parquet"])
        train = project.historical_features(data["labels.parquet"], ["customer_profile:*", "customer_activity:*"])
        assert len(train) == len(data["labels.parquet"])
        assert train["spend_30d"].notna().mean() > 0.95


def test_init_with_example_refuses_to_overwrite_files(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    root.mkdir()
    (root / "features.py").write_text("X = 1\n")

    with pytest.raises(ConflictError, match=r"features\.py"):
        scaffold(root, example="churn", customers=20)
    assert (root / "features.py").read_text() == "X = 1\n"


def test_init_with_bad_example_options_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="customers"):
        scaffold(tmp_path / "a", example="churn", customers=0)
    with pytest.raises(ValidationError, match="drift_after"):
        scaffold(tmp_path / "b", example="churn", customers=20, drift_after="not a date")
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "b").exists()


def test_example_modules_import_their_own_siblings_and_leave_no_trace(tmp_path: Path) -> None:
    roots = []
    for value in (1, 2):
        root = tmp_path / f"project{value}"
        root.mkdir()
        (root / "helper.py").write_text(f"VALUE = {value}\n")
        (root / "main.py").write_text("from helper import VALUE\n")
        roots.append(root)
    stale = ModuleType("helper")  # another project's helper, already imported in this process
    sys.modules["helper"] = stale
    try:
        loaded = [load_example_module(root, "main") for root in roots]
        assert sys.modules["helper"] is stale
    finally:
        sys.modules.pop("helper", None)

    assert [module.VALUE for module in loaded if module is not None] == [1, 2]
    assert str(roots[0]) not in sys.path and str(roots[1]) not in sys.path
    assert not [name for name in sys.modules if name.startswith("_keel_example_main_")]
    assert load_example_module(roots[0], "missing") is None


def test_example_data_is_regenerated_with_drift_in_place(tmp_path: Path) -> None:
    root = scaffold(tmp_path / "churn", example="churn", customers=40, seed=2)
    before = _read(root / "data")

    counts = generate_example_data(root, customers=40, seed=2, drift_after="2025-09-01")

    after = _read(root / "data")
    assert counts == {name: len(frame) for name, frame in after.items()}
    cut = pd.Timestamp("2025-09-01", tz="UTC")
    old, new = before["activity.parquet"], after["activity.parquet"]
    old_before, new_before = (f[f["event_time"] < cut].reset_index(drop=True) for f in (old, new))
    old_after, new_after = (f[f["event_time"] >= cut].reset_index(drop=True) for f in (old, new))
    pd.testing.assert_frame_equal(old_before, new_before)
    assert not old_after.equals(new_after)
    with pytest.raises(ValidationError, match="cannot generate"):
        generate_example_data(root, customers=0, seed=2, drift_after=None)
    assert generate_example_data(tmp_path, customers=40, seed=2, drift_after=None) == {}


# -- the generator -------------------------------------------------------------------------------------------
def test_generated_data_has_the_documented_schema_and_rates(tmp_path: Path, churn_generator: ModuleType) -> None:
    counts = churn_generator.generate(tmp_path, customers=400)
    data = _read(tmp_path)

    assert counts == {name: len(df) for name, df in data.items()}
    customers, activity, labels = data["customers.parquet"], data["activity.parquet"], data["labels.parquet"]
    assert str(customers["event_time"].dtype) == "datetime64[us, UTC]"
    assert str(activity["event_time"].dtype) == "datetime64[us, UTC]"
    assert str(labels["event_timestamp"].dtype) == "datetime64[us, UTC]"
    assert set(customers["plan"]) == {"basic", "standard", "premium"}
    assert customers["customer_id"].dtype == "int64" and activity["orders_30d"].dtype == "int64"
    assert activity["event_time"].min() == pd.Timestamp("2025-01-01", tz="UTC")
    assert activity["event_time"].max() == pd.Timestamp("2025-12-31", tz="UTC")
    assert (activity["event_time"] == activity["event_time"].dt.normalize()).all()
    assert not activity.duplicated(["customer_id", "event_time"]).any()
    assert 0.0 < activity["days_since_last_order"].isna().mean() < 0.2
    assert labels["event_timestamp"].dt.day.eq(1).all()
    assert labels["event_timestamp"].nunique() == 12
    assert set(labels["churned"]) == {0, 1}
    assert 0.08 < labels["churned"].mean() < 0.25
    # Spend follows orders and basket; sessions drive orders.
    assert activity["spend_30d"].corr(activity["orders_30d"]) > 0.5
    assert activity["sessions_7d"].corr(activity["orders_30d"]) > 0.3


def test_generation_is_deterministic_for_a_seed(tmp_path: Path, churn_generator: ModuleType) -> None:
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        churn_generator.generate(tmp_path / name, customers=120, seed=seed)
    a, b, c = (_read(tmp_path / name) for name in "abc")

    for file in DATA_FILES:
        pd.testing.assert_frame_equal(a[file], b[file])
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    assert not a["activity.parquet"].equals(c["activity.parquet"])


def test_drift_after_shifts_distributions_after_the_date_only(tmp_path: Path, churn_generator: ModuleType) -> None:
    date = pd.Timestamp("2025-07-01", tz="UTC")
    churn_generator.generate(tmp_path / "base", customers=800)
    churn_generator.generate(tmp_path / "drift", customers=800, drift_after="2025-07-01")
    base, drift = _read(tmp_path / "base"), _read(tmp_path / "drift")

    # Before the date nothing changes.
    for file, column in (("customers.parquet", "event_time"), ("activity.parquet", "event_time")):
        before_base = base[file][base[file][column] <= date].reset_index(drop=True)
        before_drift = drift[file][drift[file][column] <= date].reset_index(drop=True)
        pd.testing.assert_frame_equal(before_base, before_drift)
    labels_base, labels_drift = base["labels.parquet"], drift["labels.parquet"]
    pd.testing.assert_frame_equal(
        labels_base[labels_base["event_timestamp"] <= date].reset_index(drop=True),
        labels_drift[labels_drift["event_timestamp"] <= date].reset_index(drop=True),
    )

    # A month after it, spend has fallen and tickets have risen, measured in standard deviations.
    def later(df: pd.DataFrame) -> pd.DataFrame:
        return df[df["event_time"] >= date + pd.Timedelta(days=30)]

    sd = base["activity.parquet"]["spend_30d"].std()
    spend_shift = (
        later(drift["activity.parquet"])["spend_30d"].mean() - later(base["activity.parquet"])["spend_30d"].mean()
    ) / sd
    assert spend_shift < -0.2
    tickets = [later(d["activity.parquet"])["support_tickets_30d"].mean() for d in (base, drift)]
    assert tickets[1] > 1.3 * tickets[0]

    # A new plan appears, and new customers come from elsewhere.
    profiles = drift["customers.parquet"]
    assert "enterprise" in set(profiles["plan"])
    assert (profiles.loc[profiles["plan"] == "enterprise", "event_time"] >= date).all()
    new_base = base["customers.parquet"][base["customers.parquet"]["event_time"] > date]
    new_drift = profiles[profiles["event_time"] > date]
    assert (new_drift["region"] == "asia_pacific").mean() > (new_base["region"] == "asia_pacific").mean() + 0.1


def test_generator_rejects_bad_arguments(tmp_path: Path, churn_generator: ModuleType) -> None:
    with pytest.raises(ValueError, match="customers"):
        churn_generator.generate(tmp_path, customers=0)
    with pytest.raises(ValueError, match="days"):
        churn_generator.generate(tmp_path, days=10)
    with pytest.raises(ValueError, match="start"):
        churn_generator.generate(tmp_path, start="yesterday-ish")
    assert not list(tmp_path.iterdir())
