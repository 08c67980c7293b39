"""Small synthetic Keel projects for the training, model and registry tests (a plain module on ``sys.path``).

One entity (``customer``), a feature view ``activity`` read from a Parquet file (a float with nulls that
trends upward over time, an integer, a string, a boolean and a timestamp) and a view ``profile`` (an
integer); one label row per customer, an hour after its feature row, over 60 days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import keel
from keel import Entity, FeatureView, Field, ParquetSource

T0 = pd.Timestamp("2024-01-01", tz="UTC")
CUSTOMER = Entity("customer", ["customer_id"])
ACTIVITY_SCHEMA = [
    Field("spend", "float64"),
    Field("orders", "int64"),
    Field("plan", "string"),
    Field("active", "bool"),
    Field("since", "timestamp"),
]


def activity_frame(n: int = 240, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    """Feature rows, one per customer; ``spend`` grows with time (so a prefix's median is not the whole's)."""
    rng = np.random.default_rng(seed)
    hours = np.sort(rng.integers(0, 60 * 24, n))
    event = pd.Series(T0 + pd.to_timedelta(hours, unit="h"), dtype="datetime64[us, UTC]")
    spend = 20.0 + hours / 24.0 * 3.0 + rng.normal(0, 15, n) + shift
    spend[rng.random(n) < 0.1] = np.nan
    since = pd.Series(T0 - pd.to_timedelta(rng.integers(10, 1000, n), unit="D"), dtype="datetime64[us, UTC]")
    return pd.DataFrame(
        {
            "customer_id": np.arange(n, dtype=np.int64),
            "event_time": event,
            "spend": spend,
            "orders": rng.integers(0, 10, n).astype(np.int64),
            "plan": rng.choice(["basic", "pro", "team"], n),
            "active": rng.random(n) > 0.3,
            "since": since,
        }
    )


def profile_frame(n: int = 240, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": np.arange(n, dtype=np.int64),
            "event_time": pd.Series([T0 - timedelta(days=1)] * n, dtype="datetime64[us, UTC]"),
            "age": rng.integers(18, 80, n).astype(np.int64),
        }
    )


def labels_frame(activity: pd.DataFrame, seed: int = 2) -> pd.DataFrame:
    """Entity rows an hour after each feature row, with a binary ``churned`` and a float ``amount`` label."""
    rng = np.random.default_rng(seed)
    spend = activity["spend"].fillna(activity["spend"].median()).to_numpy()
    score = (
        -0.03 * spend
        + 0.4 * activity["orders"].to_numpy()
        + 1.5 * (activity["plan"] == "basic").to_numpy()
        + rng.normal(0, 0.8, len(activity))
    )
    return pd.DataFrame(
        {
            "customer_id": activity["customer_id"],
            "ts": activity["event_time"] + timedelta(hours=1),
            "churned": (score > np.median(score)).astype(np.int64),
            "amount": 10.0 + 0.5 * spend + 3.0 * activity["orders"].to_numpy() + rng.normal(0, 2, len(activity)),
        }
    )


def activity_view() -> FeatureView:
    return FeatureView(
        "activity",
        entities=[CUSTOMER],
        source=ParquetSource("data/activity.parquet", timestamp="event_time"),
        schema=ACTIVITY_SCHEMA,
        ttl=timedelta(days=7),
    )


def profile_view() -> FeatureView:
    return FeatureView(
        "profile",
        entities=[CUSTOMER],
        source=ParquetSource("data/profile.parquet", timestamp="event_time"),
        schema=[Field("age", "int64")],
    )


def write_activity(root: Path, frame: pd.DataFrame) -> None:
    (root / "data").mkdir(parents=True, exist_ok=True)
    frame.to_parquet(root / "data" / "activity.parquet", index=False)


def build_project(root: Path, *, n: int = 240, **overrides: Any) -> tuple[keel.Project, pd.DataFrame]:
    """A project at ``root`` with both views applied and ingested (version 1); returns it and the labels."""
    activity = activity_frame(n)
    write_activity(root, activity)
    profile_frame(n).to_parquet(root / "data" / "profile.parquet", index=False)
    project = keel.Project.open(root, **overrides)
    project.apply([CUSTOMER, activity_view(), profile_view()])
    project.ingest("activity")
    project.ingest("profile")
    return project, labels_frame(activity)


def register_churn_versions(project: keel.Project, labels: pd.DataFrame) -> None:
    """``churn`` v1 (``C=1``) and v2 (``C=0.001``), logistic regressions on every activity feature and age."""
    from sklearn.linear_model import LogisticRegression

    from keel.training import TrainingSpec

    for c in (1.0, 0.001):
        spec = TrainingSpec(
            "churn",
            labels=labels[["customer_id", "ts", "churned"]],
            label="churned",
            features=["activity:*", "profile:age"],
            model=LogisticRegression(C=c, max_iter=500),
        )
        project.models.register(project.train(spec))


def push_fresh_online(project: keel.Project, customers: int) -> None:
    """Both views' rows of the first ``customers`` customers, stamped now, into the online store."""
    now = pd.Timestamp.now(tz="UTC").floor("s")
    for view, frame in (("activity", activity_frame(customers)), ("profile", profile_frame(customers))):
        fresh = frame.assign(event_time=now)
        fresh["event_time"] = fresh["event_time"].astype("datetime64[us, UTC]")
        project.push(view, fresh, to="online")


# -- services without a project folder ------------------------------------------------------------------------
@dataclass
class Services:
    """An in-memory catalog, a ``memory://`` artifact store and a registry over them, and a ``train`` function
    that joins features from an in-memory frame: what training, monitoring and retraining use, without a
    project folder."""

    catalog: Any
    artifacts: Any
    registry: Any
    features: pd.DataFrame

    def build_training_set(
        self, labels: pd.DataFrame, refs: list[str], *, timestamp: str | None = None
    ) -> pd.DataFrame:
        """Each label row with its customer's features (the view's name dropped from each reference)."""
        names = [ref.split(":", 1)[1] for ref in refs]
        return labels.merge(self.features[["customer_id", *names]], on="customer_id", how="left")

    def train(self, spec: Any, *, on_step: Any = None) -> Any:
        from keel.training import train

        return train(
            spec,
            root=None,
            build_training_set=self.build_training_set,
            feature_version_digest=lambda _view, _version: "",
            catalog=self.catalog,
            artifacts=self.artifacts,
            on_step=on_step,
        )


def in_memory_services(features: pd.DataFrame) -> Services:
    """:class:`Services` whose training sets join ``features`` (one row per ``customer_id``)."""
    import uuid

    from keel.artifacts import ArtifactStore
    from keel.catalog import SqlCatalog
    from keel.models import ModelRegistry

    catalog = SqlCatalog("sqlite://")
    artifacts = ArtifactStore(f"memory://keel-tests-{uuid.uuid4().hex}")
    return Services(catalog, artifacts, ModelRegistry(catalog, artifacts), features)


def champion_services(n: int, inputs: list[str]) -> Services:
    """In-memory services with ``churn`` v1 — a logistic regression on ``activity:<input>`` for each of ``inputs``,
    trained on ``n`` customers with a 30% random validation split — promoted to ``champion``."""
    from sklearn.linear_model import LogisticRegression

    from keel.training import RandomSplit, TrainingSpec

    activity = activity_frame(n)
    services = in_memory_services(activity)
    spec = TrainingSpec(
        "churn",
        labels=labels_frame(activity)[["customer_id", "ts", "churned"]],
        label="churned",
        features=[f"activity:{name}" for name in inputs],
        model=LogisticRegression(max_iter=500),
        split=RandomSplit(validation_fraction=0.3),
        seed=3,
    )
    version = services.registry.register(services.train(spec))
    services.registry.promote("churn", version.version)
    return services
