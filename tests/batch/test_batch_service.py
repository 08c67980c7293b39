"""Batch scoring as a service: ``keel.batch.predict_batch`` with a registry, an artifact store and a feature join,
no project. The joins take plain functions; the options are checked when they are built."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from keel.artifacts import ArtifactStore
from keel.batch import (
    ROW_COLUMN,
    BatchOptions,
    InputFeatures,
    OfflineJoin,
    OnlineJoin,
    predict_batch,
)
from keel.batch import _lanes as batch_lanes
from keel.catalog import SqlCatalog
from keel.errors import ValidationError
from keel.models import FeatureSchema, InputSchema, ModelPackage, ModelRegistry, dumps

FEATURES = ["spend", "orders"]
REFS = ["activity@2:spend", "activity@2:orders"]
MODEL = "spend@champion"


def _features_of(ids: np.ndarray) -> pd.DataFrame:
    """Feature values as a function of the customer id: what the stand-in stores below serve."""
    return pd.DataFrame({"spend": ids * 1.5 - 40.0, "orders": (ids % 7).astype(np.int64)})


def _package() -> ModelPackage:
    ids = np.arange(300)
    frame = _features_of(ids)
    labels = (frame["spend"] + 10 * frame["orders"] > 150).astype(np.int64)
    estimator = LogisticRegression(max_iter=500).fit(frame.astype(np.float64), labels)
    schema = InputSchema((FeatureSchema("spend", "float64"), FeatureSchema("orders", "int64")))
    return ModelPackage(
        name="spend",
        task="classification",
        label="big",
        estimator=estimator,
        preprocessor=None,
        schema=schema,
        feature_refs=list(REFS),
        classes=[0, 1],
    )


@pytest.fixture(params=["memory", "folder"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ModelRegistry, ArtifactStore]]:
    """A registry of one model, ``spend@champion``, on a SQLite catalog and an in-memory or folder artifact store."""
    catalog = SqlCatalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    uri = f"memory://batch-service-{uuid.uuid4().hex}" if request.param == "memory" else str(tmp_path / "artifacts")
    artifacts = ArtifactStore(uri)
    blob, fmt = dumps(_package())
    digest = artifacts.put_bytes(blob)
    run = catalog.start_run(run_id=uuid.uuid4().hex, spec="spend", spec_snapshot={}, params={})
    catalog.finish_run(
        run.id,
        status="finished",
        params={},
        metrics={},
        durations={},
        lineage={},
        package_digest=digest,
        package_format=fmt,
    )
    models = ModelRegistry(catalog, artifacts)
    version = models.register(run.id)
    models.set_alias("spend", "champion", version.version)
    yield models, artifacts
    catalog.close()


def _input(path: Path, rows: int = 250) -> pd.DataFrame:
    ids = np.arange(1000, 1000 + rows)
    frame = pd.concat([pd.DataFrame({"customer_id": ids}), _features_of(ids)], axis=1)
    frame.to_parquet(path, index=False, row_group_size=40)
    return frame


def test_a_registry_and_an_artifact_store_are_all_batch_scoring_needs(
    registry: tuple[ModelRegistry, ArtifactStore], tmp_path: Path
) -> None:
    models, artifacts = registry
    frame = _input(tmp_path / "in.parquet")
    result = predict_batch(
        MODEL,
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        registry=models,
        artifacts=artifacts,
        options=BatchOptions(chunk_rows=60, id_column="customer_id"),
    )
    assert result.ok and result.rows == 250 and result.chunks == 5 and result.model == "spend v1"
    out = pd.read_parquet(tmp_path / "out.parquet")
    package = models.load(MODEL)
    assert list(out["customer_id"]) == list(frame["customer_id"])
    np.testing.assert_array_equal(out["prediction"].to_numpy(), package.predict(frame))
    np.testing.assert_allclose(out[["proba_0", "proba_1"]].to_numpy(), package.predict_proba(frame), rtol=1e-12)


def test_worker_processes_load_the_package_from_the_artifact_store_given(
    registry: tuple[ModelRegistry, ArtifactStore], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An in-memory store cannot be opened by another process: its workers get the package's verified bytes."""
    monkeypatch.setattr(batch_lanes, "PROCESSES_ALWAYS", True)
    monkeypatch.setattr(batch_lanes, "LOCAL_UNTIL_READY", False)  # the processes score every chunk
    models, artifacts = registry
    frame = _input(tmp_path / "in.parquet")
    result = predict_batch(
        MODEL,
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        registry=models,
        artifacts=artifacts,
        options=BatchOptions(workers=2, chunk_rows=50, probabilities=False),
    )
    assert result.ok and result.rows == 250
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out[ROW_COLUMN]) == list(range(250)) and "proba_1" not in out.columns
    np.testing.assert_array_equal(out["prediction"].to_numpy(), models.load(MODEL).predict(frame))


def test_an_offline_join_is_any_point_in_time_function(
    registry: tuple[ModelRegistry, ArtifactStore], tmp_path: Path
) -> None:
    models, artifacts = registry
    ids = np.arange(1000, 1100)
    entity = pd.DataFrame({"customer_id": ids, "ts": pd.Timestamp("2024-03-01", tz="UTC"), "spend": -1.0})
    entity.to_parquet(tmp_path / "in.parquet", index=False)
    asked: list[tuple[list[str], list[str], str | None]] = []

    def historical_features(
        entity_df: pd.DataFrame, features: Sequence[str], *, timestamp: str | None = None
    ) -> pd.DataFrame:
        asked.append((list(entity_df.columns), list(features), timestamp))
        return pd.concat([entity_df.reset_index(drop=True), _features_of(entity_df["customer_id"].to_numpy())], axis=1)

    # every column read (as for an on-demand feature's request fields), so the input's "spend" reaches the join
    join = OfflineJoin(historical_features, REFS, ["customer_id"], "ts", features=FEATURES, read_all=True)
    result = predict_batch(
        MODEL,
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        registry=models,
        artifacts=artifacts,
        join=join,
        options=BatchOptions(chunk_rows=30, feature_source="offline", timestamp="ts"),
    )
    assert result.ok and result.chunks == 4
    # the keys and the as-of column are sent; the input's own "spend" gives way to the joined one
    assert asked[0] == (["customer_id", "ts"], REFS, "ts")
    out = pd.read_parquet(tmp_path / "out.parquet")
    np.testing.assert_array_equal(out["prediction"].to_numpy(), models.load(MODEL).predict(_features_of(ids)))


class _Found:
    """An online lookup's answer, as the online store gives it: the values and the versions that served them."""

    def __init__(self, frame: pd.DataFrame, versions: dict[str, int]) -> None:
        self.frame = frame
        self.versions = versions

    def to_frame(self) -> pd.DataFrame:
        return self.frame


def test_an_online_join_reports_values_of_another_version_than_the_models(
    registry: tuple[ModelRegistry, ArtifactStore], tmp_path: Path
) -> None:
    models, artifacts = registry
    ids = np.arange(1000, 1060)
    pd.DataFrame({"customer_id": ids}).to_parquet(tmp_path / "in.parquet", index=False)
    asked: list[list[str]] = []

    def online_get(features: Sequence[str], entity_rows: dict[str, list[Any]]) -> _Found:
        asked.append(list(features))
        return _Found(_features_of(np.asarray(entity_rows["customer_id"])), {"activity": 3})

    join = OnlineJoin(online_get, REFS, ["customer_id"], features=FEATURES, model="spend")
    result = predict_batch(
        MODEL,
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        registry=models,
        artifacts=artifacts,
        join=join,
        options=BatchOptions(chunk_rows=25, feature_source="online"),
    )
    assert result.ok and result.chunks == 3
    assert asked[0] == ["activity:spend", "activity:orders"]  # the latest version: the store serves one
    assert result.warnings == ["online values of 'activity' come from version 3; the model was trained on 2"]
    out = pd.read_parquet(tmp_path / "out.parquet")
    np.testing.assert_array_equal(out["prediction"].to_numpy(), models.load(MODEL).predict(_features_of(ids)))


def test_input_features_name_the_missing_columns_and_the_input(
    registry: tuple[ModelRegistry, ArtifactStore], tmp_path: Path
) -> None:
    models, artifacts = registry
    _input(tmp_path / "in.parquet").drop(columns=["orders"]).to_parquet(tmp_path / "in.parquet", index=False)
    with pytest.raises(ValidationError, match=r"in\.parquet: the input lacks feature column\(s\) \['orders'\]") as err:
        predict_batch(
            MODEL,
            tmp_path / "in.parquet",
            tmp_path / "out.parquet",
            registry=models,
            artifacts=artifacts,
            join=InputFeatures(FEATURES, model="spend"),
        )
    assert err.value.field == "orders"
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"feature_source": "offline"}, "feature_source"),  # joining features needs a join
        ({"feature_source": "online"}, "feature_source"),
    ],
)
def test_a_feature_source_without_its_join_is_refused(
    registry: tuple[ModelRegistry, ArtifactStore], tmp_path: Path, options: dict[str, Any], field: str
) -> None:
    models, artifacts = registry
    _input(tmp_path / "in.parquet")
    with pytest.raises(ValidationError, match="needs a join") as err:
        predict_batch(
            MODEL,
            tmp_path / "in.parquet",
            tmp_path / "out.parquet",
            registry=models,
            artifacts=artifacts,
            options=BatchOptions(**options),
        )
    assert err.value.field == field


def test_a_join_given_with_the_input_as_feature_source_is_refused(
    registry: tuple[ModelRegistry, ArtifactStore], tmp_path: Path
) -> None:
    """The input's rows would be read where they are scored, past the join: refused rather than ignored."""
    models, artifacts = registry
    _input(tmp_path / "in.parquet")
    join = OnlineJoin(lambda features, rows: _Found(pd.DataFrame(), {}), REFS, ["customer_id"])
    with pytest.raises(ValidationError, match="feature_source='input' needs no join") as err:
        predict_batch(
            MODEL, tmp_path / "in.parquet", tmp_path / "out.parquet", registry=models, artifacts=artifacts, join=join
        )
    assert err.value.field == "feature_source"


# -- BatchOptions ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"workers": 0}, "workers", "workers must be at least 1, got 0"),
        ({"workers": True}, "workers", "workers must be an integer"),
        ({"workers": "2"}, "workers", "workers must be an integer"),
        ({"chunk_rows": -5}, "chunk_rows", "chunk_rows must be at least 1, got -5"),
        ({"chunk_rows": 1.5}, "chunk_rows", "chunk_rows must be an integer"),
        ({"feature_source": "sideways"}, "feature_source", "feature_source must be one of input, offline, online"),
        ({"id_column": ""}, "id_column", "id_column must be a column name"),
        ({"timestamp": 3}, "timestamp", "timestamp must be a column name"),
    ],
)
def test_batch_options_are_checked_when_built(options: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as err:
        BatchOptions(**options)
    assert err.value.field == field


def test_batch_options_default_to_one_lane_over_the_inputs_own_columns() -> None:
    options = BatchOptions()
    assert (options.workers, options.chunk_rows, options.feature_source) == (1, 100_000, "input")
    assert options.resume and options.probabilities and not options.allow_pickle
    with pytest.raises(AttributeError):
        options.workers = 4  # type: ignore[misc]  # frozen: one run's options do not change under it
