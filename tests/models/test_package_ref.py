"""A package by its verified digest: picklable, checked against its SHA-256, loaded once per process."""

from __future__ import annotations

import dataclasses
import importlib
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from _training_fixtures import build_project
from keel.artifacts import ArtifactStore
from keel.catalog import ModelVersionRecord
from keel.errors import IntegrityError, NotFoundError, ValidationError
from keel.models import InputSchema, ModelPackage, PackageRef, dumps
from keel.training import TrainingSpec

DTYPES = {"spend": "float64", "orders": "int64"}


class Constant(BaseEstimator, ClassifierMixin):  # type: ignore[misc]
    """A custom estimator: a type outside the trusted libraries, so its package is stored with joblib."""

    def fit(self, x: Any, y: Any) -> Constant:
        self.classes_ = np.unique(y)
        return self

    def predict(self, x: Any) -> Any:
        return np.full(len(x), self.classes_[0])


def frame(rows: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"spend": rng.normal(50, 10, rows), "orders": rng.integers(0, 9, rows)})


def package_of(estimator: Any, name: str) -> ModelPackage:
    """A package of ``estimator``; each test names its own, so that no other test loaded it in this process."""
    train = frame()
    y = (train["spend"] > 50).astype(int).to_numpy()
    return ModelPackage(
        name=name,
        task="classification",
        label="churned",
        estimator=estimator.fit(train, y),
        preprocessor=None,
        schema=InputSchema.infer(train, DTYPES),
        feature_refs=["activity@1:spend", "activity@1:orders"],
        classes=[0, 1],
    )


def stored(package: ModelPackage, store: ArtifactStore, **options: Any) -> PackageRef:
    blob, fmt = dumps(package)
    digest = store.put_bytes(blob)
    return PackageRef(name=package.name, version=1, digest=digest, format=fmt, artifacts_uri=store.uri, **options)


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The process targets, importable by name in 'spawn' children (which inherit sys.path)."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    return importlib.import_module("_package_ref_workers")


def test_a_reference_loads_the_package_it_names(store: ArtifactStore) -> None:
    package = package_of(LogisticRegression(), name="churn")
    ref = stored(package, store)

    loaded = ref.load()

    assert ref.format == "keel" and ref.label == "model churn v1"
    assert loaded.feature_refs == package.feature_refs and loaded.schema == package.schema
    np.testing.assert_array_equal(loaded.predict_proba(frame()), package.predict_proba(frame()))


def test_a_reference_survives_pickling_and_is_small(store: ArtifactStore) -> None:
    ref = stored(package_of(LogisticRegression(), name="pickled"), store)

    again = pickle.loads(pickle.dumps(ref))

    assert again == ref and hash(again) == hash(ref)
    assert len(pickle.dumps(ref)) < 500  # the digest and where to read it, not the package
    assert again.load() is ref.load()  # equal references share the process's one package


def test_bytes_that_do_not_match_the_digest_are_refused_before_loading(store: ArtifactStore) -> None:
    blob, fmt = dumps(package_of(LogisticRegression(), name="tampered"))  # never loaded in this process
    digest = store.put_bytes(blob)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])

    carried = PackageRef(name="tampered", version=1, digest=digest, format=fmt, blob=tampered)
    with pytest.raises(IntegrityError, match="hashes to .*, not " + digest):
        carried.load()
    Path(store.path(digest)).write_bytes(tampered)  # the stored copy changed behind the catalog's back
    with pytest.raises(IntegrityError, match="corrupt"):
        PackageRef(name="tampered", version=1, digest=digest, format=fmt, artifacts_uri=store.uri).load()
    with pytest.raises(NotFoundError, match="not in the artifact store"):
        PackageRef(name="churn", version=1, digest="0" * 64, format=fmt, artifacts_uri=store.uri).load()


def test_a_package_is_read_and_deserialized_once_per_process(store: ArtifactStore) -> None:
    ref = stored(package_of(LogisticRegression(), name="once"), store)
    first = ref.load()
    Path(store.path(ref.digest)).unlink()  # a second read would fail: there is none

    assert ref.load() is first
    with pytest.raises(NotFoundError):
        ref.read_bytes()


def test_each_worker_process_loads_the_package_once_and_scores_like_this_one(
    store: ArtifactStore, workers: ModuleType
) -> None:
    package = package_of(LogisticRegression(), name="in_workers")
    ref = stored(package, store)
    columns = {name: values.tolist() for name, values in frame(5).items()}
    expected = [float(p) for p in package.predict_proba(frame(5))[:, 1]]

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        first = pool.submit(workers.load_and_score, ref, columns).result(timeout=120)
        Path(store.path(ref.digest)).unlink()  # the worker must not need the bytes again
        second = pool.submit(workers.load_and_score, ref, columns).result(timeout=120)

    assert first[0] == second[0]  # the same worker process ...
    assert first[1] == second[1]  # ... kept the package it loaded
    assert first[2] == second[2] == expected


def test_pickle_needs_its_own_opt_in_even_when_another_reference_loaded_it(store: ArtifactStore) -> None:
    allowed = stored(package_of(Constant(), name="custom"), store, allow_pickle=True)
    assert allowed.format == "joblib"
    assert allowed.load().predict(frame(3)).tolist() == [0, 0, 0]

    refused = dataclasses.replace(allowed, allow_pickle=False)
    with pytest.raises(ValidationError, match="pickle"):
        refused.load()


def test_a_malformed_reference_is_refused_when_made(store: ArtifactStore) -> None:
    with pytest.raises(ValidationError, match="SHA-256"):
        PackageRef(name="churn", version=1, digest="not-a-digest", format="keel", artifacts_uri=store.uri)
    with pytest.raises(ValidationError, match="exactly one of artifacts_uri and blob"):
        PackageRef(name="churn", version=1, digest="0" * 64, format="keel")
    with pytest.raises(ValidationError, match="exactly one"):
        PackageRef(name="churn", version=1, digest="0" * 64, format="keel", artifacts_uri=store.uri, blob=b"x")


def test_extra_trusted_types_are_part_of_the_reference_and_reach_the_loader(store: ArtifactStore) -> None:
    plain = stored(package_of(LogisticRegression(), name="trusting"), store)
    trusting = stored(package_of(LogisticRegression(), name="trusting"), store, trusted=("mymodule.MyEstimator",))

    assert plain != trusting  # the opt-in is part of the identity, so the cache never shares across it
    assert trusting.trusted == ("mymodule.MyEstimator",)
    assert trusting.load().name == "trusting"


def test_the_registry_gives_a_reference_to_a_registered_version(tmp_path: Path) -> None:
    project, labels = build_project(tmp_path / "project")
    try:
        spec = TrainingSpec(
            "churn",
            labels=labels[["customer_id", "ts", "churned"]],
            label="churned",
            features=["activity:spend", "activity:orders"],
            model=LogisticRegression(),
        )
        version = project.models.register(project.train(spec))
        ref = project.models.ref("churn@latest")

        assert (ref.name, ref.version, ref.digest, ref.format) == ("churn", 1, version.package_digest, "keel")
        assert ref.artifacts_uri == project.artifacts.uri and ref.blob is None
        loaded = ref.load()
        assert loaded.feature_refs == project.models.load("churn:1").feature_refs
    finally:
        project.close()


def test_a_store_other_processes_cannot_read_travels_as_verified_bytes() -> None:
    store = ArtifactStore("memory://keel-package-ref-test")
    package = package_of(LogisticRegression(), name="in_memory")
    blob, fmt = dumps(package)
    digest = store.put_bytes(blob)
    version = ModelVersionRecord(
        name="in_memory", version=2, run_id="r", package_digest=digest, package_format=fmt, created_at=datetime.now(UTC)
    )
    ref = PackageRef.for_version(version, store)

    assert ref.artifacts_uri is None and ref.blob == blob
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(ref)).load().predict(frame()), package.predict(frame()))
