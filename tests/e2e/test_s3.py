"""Artifacts and the offline store on S3, end to end, against a real S3-compatible server (moto's, run in a
subprocess on 127.0.0.1): the same loop as on local files gives the same results; a damaged or missing object,
an endpoint out of reach and credentials written into the configuration are clear Keel errors; credentials
come from the environment only and never show in logs, errors, reprs or the catalog.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

import keel
from _object_store import ACCESS_KEY, SECRET_KEY, forget_s3_clients, free_port
from _training_fixtures import build_project
from keel.engines import Files
from keel.errors import BackendError, ConfigError, IntegrityError, KeelError, NotFoundError
from keel.training import TrainingSpec

REFS = ["activity:spend", "activity:orders", "activity:plan", "profile:age"]


@pytest.fixture
def bucket(s3_bucket: str) -> str:
    """A fresh bucket; the credentials and the endpoint are in the environment (``tests/conftest.py``)."""
    return s3_bucket


def s3() -> Any:
    import fsspec

    return fsspec.filesystem("s3")


def run_loop(root: Path, io: str, **stores: str) -> dict[str, Any]:
    """Ingest, a point-in-time training set, train, register, alias, load by alias in a project opened afresh,
    and batch scoring with features joined from the offline store; ``io`` is where the batch input and output
    live (a local folder or an ``s3://`` prefix)."""
    with threadpool_limits(1):
        project, labels = build_project(root, **stores)
        entities = labels[["customer_id", "ts"]]
        training_set = project.historical_features(entities, REFS)
        spec = TrainingSpec(
            "churn",
            labels=labels[["customer_id", "ts", "churned"]],
            label="churned",
            features=REFS,
            model=LogisticRegression(max_iter=500),
        )
        run = project.train(spec)
        version = project.models.register(run)
        project.models.set_alias("churn", "champion", version.version)
        versions = {view: project.catalog.feature_version(view) for view in ("activity", "profile")}
        project.close()

        reopened = keel.Project.open(root, **stores)
        package = reopened.models.load("churn@champion")
        features = training_set[[ref.split(":")[1] for ref in REFS]]
        in_process = package.predict_proba(features)
        record = reopened.models.get(f"churn:{version.version}")
        entities.to_parquet(root / "entities.parquet", index=False)
        source = f"{io}/entities.parquet"
        if source.startswith("s3://"):
            s3().put_file(str(root / "entities.parquet"), source)
        result = reopened.predict_batch(
            "churn@champion", source, f"{io}/scores.parquet", feature_source="offline", timestamp="ts"
        )
        assert result.ok
        import fsspec

        with fsspec.open(f"{io}/scores.parquet", "rb") as f:
            scores = pd.read_parquet(f)
        reopened.close()
    return {
        "versions": versions,
        "training_set": training_set,
        "metrics": run.metrics,
        "package_digest": record.package_digest,
        "in_process": in_process,
        "scores": scores,
    }


def test_the_loop_on_s3_gives_the_results_of_local_files(
    bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, botocore's and s3fs's included
    local = run_loop(tmp_path / "local", str(tmp_path / "local"))
    prefix = f"s3://{bucket}/churn"
    stores = {"artifacts": f"{prefix}/artifacts", "offline": f"{prefix}/offline"}
    remote = run_loop(tmp_path / "remote", f"s3://{bucket}/batch", **stores)

    # Nothing of the remote project was written to the local disk.
    assert not (tmp_path / "remote" / ".keel" / "artifacts").exists()
    assert not (tmp_path / "remote" / ".keel" / "offline").exists()
    # The same feature versions: data digests, files and their SHA-256, rows.
    for view, version in local["versions"].items():
        other = remote["versions"][view]
        assert other.data_digest == version.data_digest
        assert other.files == version.files
        assert (other.row_count, other.event_time_min, other.event_time_max) == (
            version.row_count,
            version.event_time_min,
            version.event_time_max,
        )
        # ...stored in the bucket, each file hashing to its recorded digest.
        for f in other.files:
            data = s3().cat_file(f"{bucket}/churn/offline/{other.location}/{f['path']}")
            assert _sha256(data) == f["sha256"]
    # The same point-in-time training set, metrics and predictions (in process and in batch).
    pd.testing.assert_frame_equal(remote["training_set"], local["training_set"])
    assert remote["metrics"] == local["metrics"]
    np.testing.assert_array_equal(remote["in_process"], local["in_process"])
    pd.testing.assert_frame_equal(remote["scores"], local["scores"])
    assert len(remote["scores"]) == len(remote["training_set"])
    # The model's package is the object its digest names.
    digest = remote["package_digest"]
    assert _sha256(s3().cat_file(f"{bucket}/churn/artifacts/sha256/{digest[:2]}/{digest}")) == digest

    # No staging folder, temporary object or unfinished upload is left behind.
    keys = s3().find(bucket)
    assert keys, "nothing was written to the bucket"
    assert not [k for k in keys if "/_tmp-" in k or k.rsplit("/", 1)[-1].startswith(".")], keys
    assert _pending_uploads(bucket) == []

    # The credentials were never logged, by Keel or by the libraries under it (the secret is never even sent:
    # requests are signed with it); the key id shows in no record but botocore's own request dumps at DEBUG.
    for record in caplog.records:
        text = record.getMessage()
        assert SECRET_KEY not in text, record.name
        if not record.name.startswith("botocore") or record.levelno > logging.DEBUG:
            assert ACCESS_KEY not in text, record.name
    # ...nor kept in the catalog, the configuration or a repr.
    catalog = b"".join(p.read_bytes() for p in (tmp_path / "remote" / ".keel").glob("catalog.db*"))  # WAL too
    assert catalog
    assert SECRET_KEY.encode() not in catalog and ACCESS_KEY.encode() not in catalog
    project = keel.Project.open(tmp_path / "remote", **stores)
    shown = " ".join(
        [repr(project), repr(project.artifacts), repr(project.offline_store), project.config.model_dump_json()]
    )
    assert SECRET_KEY not in shown and ACCESS_KEY not in shown
    project.close()


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _pending_uploads(bucket: str) -> list[str]:
    """Multipart uploads started and neither completed nor aborted."""
    fs = s3()
    answer = fs.call_s3("list_multipart_uploads", Bucket=bucket)
    return [u["Key"] for u in answer.get("Uploads", [])]


@pytest.fixture
def s3_project(bucket: str, tmp_path: Path) -> Iterator[tuple[keel.Project, pd.DataFrame, dict[str, str]]]:
    """A project on S3 with both views ingested and ``churn`` v1 registered."""
    stores = {"artifacts": f"s3://{bucket}/p/artifacts", "offline": f"s3://{bucket}/p/offline"}
    with threadpool_limits(1):
        project, labels = build_project(tmp_path / "project", **stores)
        spec = TrainingSpec(
            "churn",
            labels=labels[["customer_id", "ts", "churned"]],
            label="churned",
            features=REFS,
            model=LogisticRegression(max_iter=200),
        )
        project.models.register(project.train(spec))
    yield project, labels, stores
    project.close()


def test_a_damaged_or_missing_object_is_a_clear_error(
    s3_project: tuple[keel.Project, pd.DataFrame, dict[str, str]], bucket: str
) -> None:
    project, labels, stores = s3_project
    digest = project.models.get("churn:1").package_digest
    blob = f"{bucket}/p/artifacts/sha256/{digest[:2]}/{digest}"
    original = s3().cat_file(blob)

    s3().pipe_file(blob, original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(IntegrityError, match=f"model churn v1 .*{digest}.* is corrupt"):
        keel.Project.open(project.root, **stores).models.load("churn:1")
    s3().rm_file(blob)
    with pytest.raises(NotFoundError, match=f"model churn v1 .*{digest}.* is not in the artifact store"):
        keel.Project.open(project.root, **stores).models.load("churn:1")
    # Registering the same package again restores the object; the model loads.
    project.artifacts.put_bytes(original)
    assert keel.Project.open(project.root, **stores).models.load("churn:1").classes is not None

    version = project.catalog.feature_version("activity")
    part = f"{bucket}/p/offline/{version.location}/{version.files[0]['path']}"
    data = s3().cat_file(part)
    s3().pipe_file(part, data[:-64] + bytes(64))
    assert project.offline.verify() == {"activity@1": [version.files[0]["path"]]}
    with pytest.raises(IntegrityError, match=r"feature view 'activity' version 1: .*part-0\.parquet"):
        keel.Project.open(project.root, **stores).historical_features(labels[["customer_id", "ts"]], REFS)
    s3().rm_file(part)
    assert project.offline.verify() == {"activity@1": [version.files[0]["path"]]}
    with pytest.raises(KeelError, match=version.files[0]["path"]) as missing:
        keel.Project.open(project.root, **stores).historical_features(labels[["customer_id", "ts"]], REFS)
    assert "Traceback" not in str(missing.value)


def test_an_endpoint_out_of_reach_is_a_clear_error(
    s3_project: tuple[keel.Project, pd.DataFrame, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    project, labels, stores = s3_project
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # fail at once rather than after botocore's retries
    forget_s3_clients()
    reopened = keel.Project.open(project.root, **stores)
    failures = []
    with pytest.raises(BackendError, match=r"artifact store .*cannot read .*model churn v1") as load:
        reopened.models.load("churn:1")
    failures.append(load.value)
    with pytest.raises(BackendError, match=r"offline store .*cannot list") as ingest:
        reopened.offline_store.sweep_staging("activity")
    failures.append(ingest.value)
    with pytest.raises(BackendError, match="'activity'") as join:
        reopened.historical_features(labels[["customer_id", "ts"]], REFS)
    failures.append(join.value)
    # DuckDB reading through s3fs quotes the Python traceback of the failure and its SQL: only the error is kept.
    with pytest.raises(BackendError, match="counting duplicates") as engine:
        reopened.engine.count_duplicates(
            Files((f"s3://{stores['offline'][5:]}/activity/part-0.parquet",)), ["customer_id"], "event_time"
        )
    assert "^^^" not in str(engine.value) and "LINE 1" not in str(engine.value)
    failures.append(engine.value)
    with pytest.raises(BackendError, match="cannot look up the input") as batch:
        reopened.predict_batch("churn:1", f"s3://{stores['offline'][5:]}/x.parquet", "s3://b/out.parquet")
    failures.append(batch.value)
    for error in failures:
        text = str(error)
        assert "Could not connect to the endpoint URL" in text
        assert "Traceback" not in text
        assert SECRET_KEY not in text and ACCESS_KEY not in text


@pytest.mark.parametrize(
    "uri",
    [
        f"s3://{ACCESS_KEY}:{SECRET_KEY}@bucket/prefix",
        f"s3://{SECRET_KEY}@bucket/prefix",
        f"gs://{ACCESS_KEY}:{SECRET_KEY}@bucket/prefix",
    ],
)
@pytest.mark.parametrize("key", ["artifacts", "offline"])
def test_credentials_in_the_configuration_are_refused_unrepeated(
    uri: str, key: str, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project_dir / "keel.yaml").write_text(f"{key}: {uri}\n")
    with pytest.raises(ConfigError, match=f"{key}: .*holds credentials.*environment") as from_file:
        keel.Project.open(project_dir)
    (project_dir / "keel.yaml").unlink()
    monkeypatch.setenv(f"KEEL_{key.upper()}", uri)
    with pytest.raises(ConfigError, match="holds credentials") as from_env:
        keel.Project.open(project_dir)
    for error in (from_file.value, from_env.value):
        for text in (str(error), repr(error), str(error.__cause__)):
            assert SECRET_KEY not in text and ACCESS_KEY not in text


def test_addresses_that_look_like_credentials_are_kept(project_dir: Path) -> None:
    from keel.config import KeelConfig

    for uri in ("abfs://container@account.dfs.core.windows.net/keel", "s3://bucket/prefix", "memory://keel"):
        assert KeelConfig(artifacts=uri, offline=uri).artifacts == uri


def test_a_failed_write_leaves_no_object_and_no_pending_upload(bucket: str) -> None:
    from keel._files import atomic_open, atomic_write

    fs = s3()
    key = f"{bucket}/atomic/blob"

    def interrupted() -> None:
        with atomic_open(fs, key) as f:
            f.write(b"x" * (6 * 1024 * 1024))  # more than one part of a multipart upload
            raise RuntimeError("midway")

    with pytest.raises(RuntimeError, match="midway"):
        interrupted()
    assert not fs.exists(key)
    assert _pending_uploads(bucket) == []
    atomic_write(fs, key, b"whole")
    assert fs.cat_file(key) == b"whole"
    assert fs.find(f"{bucket}/atomic") == [key]  # no temporary object beside it
    assert _pending_uploads(bucket) == []


def test_stale_staging_folders_on_s3_are_swept(bucket: str) -> None:
    from keel.offline import OfflineStore

    store = OfflineStore(f"s3://{bucket}/offline")
    old = f"{bucket}/offline/activity/_tmp-crashed"
    s3().pipe_file(f"{old}/part-0.parquet", b"half")
    # A folder in which something changed less than six hours ago is a write still running: kept.
    assert store.sweep_staging("activity") == []
    assert s3().exists(f"{old}/part-0.parquet")
    # Once nothing in it has changed for longer than the limit, it is a crashed write's: removed.
    assert store.sweep_staging("activity", older_than=timedelta(0)) == [old]
    s3().invalidate_cache()
    assert not s3().exists(f"{old}/part-0.parquet")


def test_without_s3fs_an_s3_store_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    from keel.artifacts import ArtifactStore
    from keel.offline import OfflineStore

    registry = importlib.import_module("fsspec.registry")
    monkeypatch.setitem(sys.modules, "s3fs", None)  # as if it were not installed
    monkeypatch.delitem(registry._registry, "s3", raising=False)  # fsspec's record of the class it loaded
    for store in (ArtifactStore, OfflineStore):
        with pytest.raises(BackendError, match=r"store: cannot open the filesystem of 's3://bucket/x'.*keel\[s3\]"):
            store("s3://bucket/x")


def test_a_missing_bucket_is_a_clear_error_and_is_not_created(bucket: str, tmp_path: Path) -> None:
    missing = f"{bucket}-missing"
    stores = {"artifacts": f"s3://{missing}/artifacts", "offline": f"s3://{missing}/offline"}
    with pytest.raises(BackendError, match="bucket does not exist") as ingest:
        build_project(tmp_path / "project", **stores)
    assert "Traceback" not in str(ingest.value)
    with pytest.raises(BackendError, match=r"artifact store .*cannot store blob .*bucket does not exist"):
        keel.Project.open(tmp_path / "project", **stores).artifacts.put_bytes(b"model")
    s3().invalidate_cache()
    assert not s3().exists(missing)


def test_batch_output_to_a_missing_bucket_is_a_clear_error_and_creates_none(
    s3_project: tuple[keel.Project, pd.DataFrame, dict[str, str]], bucket: str
) -> None:
    project, labels, _ = s3_project
    source = f"s3://{bucket}/entities.parquet"
    with s3().open(source, "wb") as f:
        labels[["customer_id", "ts"]].to_parquet(f, index=False)
    missing = f"{bucket}-missing"
    with pytest.raises(KeelError, match="bucket does not exist") as failed:
        project.predict_batch("churn:1", source, f"s3://{missing}/scores.parquet", feature_source="offline")
    assert "Traceback" not in str(failed.value)
    s3().invalidate_cache()
    assert not s3().exists(missing)
