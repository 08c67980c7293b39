"""``keel demo`` end to end: generate, apply, ingest, and a point-in-time-correct training set."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from rich.console import Console

from keel._demo import DEMO_FEATURES, run_demo
from keel.errors import ConflictError
from keel.project import Project

CUSTOMERS = 200


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=120, force_terminal=False), out


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """One demo run shared by the tests of this module: its folder, figures and printed output."""
    root = tmp_path_factory.mktemp("e2e") / "demo"
    console, out = _console()
    figures = run_demo(root, customers=CUSTOMERS, seed=5, console=console)
    return root, figures, out.getvalue()


def _reference(root: Path) -> pd.DataFrame:
    """The training set by an obviously correct join: for each label row, each customer's latest row at or
    before its time (within the TTL for activity), straight from the raw files."""
    labels = pd.read_parquet(root / "data" / "labels.parquet")
    ordered = labels.reset_index().sort_values("event_timestamp", kind="stable")
    for name, tolerance in (("customers", None), ("activity", timedelta(days=7))):
        rows = pd.read_parquet(root / "data" / f"{name}.parquet").sort_values("event_time")
        rows = rows.rename(columns={"event_time": f"{name}_time"})
        ordered = pd.merge_asof(
            ordered,
            rows,
            left_on="event_timestamp",
            right_on=f"{name}_time",
            by="customer_id",
            direction="backward",
            allow_exact_matches=True,
            tolerance=pd.Timedelta(tolerance) if tolerance else None,
        )
    return ordered.set_index("index").sort_index()


def test_demo_reports_every_step(demo: tuple[Path, dict[str, Any], str]) -> None:
    root, figures, output = demo

    assert figures["path"] == str(root.resolve())
    files = figures["generate"]["files"]
    assert set(files) == {"customers.parquet", "activity.parquet", "labels.parquet"}
    assert figures["apply"]["added"] == 3
    for view, rows_file in (
        ("customer_profile", "customers.parquet"),
        ("customer_activity", "activity.parquet"),
    ):
        ingested = figures["ingest"][view]
        assert ingested["version"] == 1 and ingested["created"]
        assert ingested["rows"] == files[rows_file]
        assert len(ingested["digest"]) == 64
    for heading in ("Generate", "Apply", "Ingest", "training set", "null rates", "first rows", "Done"):
        assert heading in output


def test_demo_training_set_keeps_every_label_with_features(demo: tuple[Path, dict[str, Any], str]) -> None:
    _, figures, _ = demo
    training = figures["training_set"]

    assert training["rows"] == training["label_rows"] == figures["generate"]["files"]["labels.parquet"]
    assert training["columns"] == 3 + len(training["features"])
    assert training["feature_versions"] == {"customer_profile": 1, "customer_activity": 1}
    assert 0.05 < training["churn_rate"] < 0.3
    for feature, rate in training["null_rates"].items():
        limit = 0.2 if feature == "days_since_last_order" else 0.05
        assert rate <= limit, (feature, rate)


def test_demo_training_set_is_point_in_time_correct(demo: tuple[Path, dict[str, Any], str]) -> None:
    root, _, _ = demo
    labels = pd.read_parquet(root / "data" / "labels.parquet")
    with Project.open(root) as project:
        train = project.historical_features(labels, list(DEMO_FEATURES))
    expected = _reference(root)

    # The reference never uses a row from after the label's time...
    for name in ("customers", "activity"):
        used = expected[f"{name}_time"].notna()
        assert (expected.loc[used, f"{name}_time"] <= expected.loc[used, "event_timestamp"]).all()
    # ...and Keel serves exactly its values, row by row, in the labels' order.
    assert train[["customer_id", "event_timestamp", "churned"]].equals(labels)
    for column in ("plan", "region"):
        pd.testing.assert_series_equal(
            train[column].astype("string"), expected[column].astype("string"), check_names=False
        )
    numeric = ["tenure_days", "spend_30d", "orders_30d", "sessions_7d", "support_tickets_30d"]
    for column in [*numeric, "days_since_last_order", "avg_basket"]:
        pd.testing.assert_series_equal(
            train[column].astype("float64"), expected[column].astype("float64"), check_names=False
        )

    # The check has teeth: the next day's values (what a join peeking one day ahead would serve) differ.
    activity = pd.read_parquet(root / "data" / "activity.parquet")
    next_day = labels.reset_index().assign(event_time=labels["event_timestamp"] + pd.Timedelta(days=1))
    ahead = next_day.merge(activity, on=["customer_id", "event_time"], how="inner").set_index("index")
    assert len(ahead) > 0
    assert (ahead["spend_30d"] != train.loc[ahead.index, "spend_30d"]).any()


def test_demo_reruns_in_its_own_folder_but_refuses_others(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    console, _ = _console()
    first = run_demo(root, customers=30, seed=1, console=console)
    (root / "stale.txt").write_text("left by the first run")
    second = run_demo(root, customers=30, seed=1, console=console)

    assert not (root / "stale.txt").exists()
    assert second["ingest"]["customer_activity"]["version"] == 1
    assert second["ingest"]["customer_activity"]["digest"] == first["ingest"]["customer_activity"]["digest"]

    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("precious")
    with pytest.raises(ConflictError, match="not created by `keel demo`"):
        run_demo(other, customers=30, console=console)
    assert (other / "notes.txt").read_text() == "precious"
