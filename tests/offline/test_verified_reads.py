"""Verified reads: every read of a stored version checks its files against the SHA-256 recorded when they were
written. A damaged, truncated, replaced or missing file is refused with an error naming the view, the version and
the file, never read; an intact file is hashed once per process, later reads cost a stat."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pytest

import keel
from keel import DataFrameSource, Entity, FeatureView, Field, IntegrityError
from keel.catalog import SqlCatalog
from keel.definitions import Definitions, apply_definitions
from keel.offline import OfflineFeatureService, OfflineStore
from keel.offline._verify import verified_files, verify_version
from keel.validation import InRange

CUSTOMER = Entity("customer", ["customer_id"])
T0 = pd.Timestamp("2024-01-20", tz="UTC")
DAY = timedelta(days=1)


def activity_view() -> FeatureView:
    """Rows over two months: with ``partition_rows=2`` the version is two files (January, February)."""
    frame = pd.DataFrame(
        {
            "customer_id": [1, 2, 1, 2],
            "event_time": pd.Series([T0, T0 + DAY, T0 + 20 * DAY, T0 + 21 * DAY], dtype="datetime64[us, UTC]"),
            "spend": [10.0, 20.0, 30.0, 40.0],
        }
    )
    return FeatureView(
        "activity",
        entities=[CUSTOMER],
        source=DataFrameSource(frame),
        schema=[Field("spend", "float64")],
        ttl=30 * DAY,
        online=True,
    )


def labels() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [1, 2], "ts": pd.Series([T0 + 25 * DAY] * 2, dtype="datetime64[us, UTC]")})


@pytest.fixture(autouse=True)
def fresh_record() -> Iterator[None]:
    """Each test starts as a new process would: no file verified yet."""
    verified_files().forget()
    yield
    verified_files().forget()


@pytest.fixture
def project(project_dir: Path) -> Iterator[Any]:
    with keel.Project.open(project_dir, partition_rows=2) as p:
        p.apply([CUSTOMER, activity_view()])
        p.ingest("activity")
        yield p


def stored_files(project: Any) -> list[Path]:
    version = project.feature_versions("activity")[-1]
    return [Path(p) for p in project.offline_store.paths(version)]


def flip_one_byte(path: Path) -> None:
    """Damage a file in place, its size kept, as a bad disk or a stray write would (a later time than the write)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    before = path.stat()
    path.write_bytes(bytes(data))
    # Filesystem clocks can be coarse: make sure the change is seen as later, as it would be in life.
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


def test_an_intact_version_is_read_and_each_file_hashed_once_per_process(project: Any) -> None:
    files = len(project.feature_versions("activity")[-1].files)
    hashed = verified_files().hashed

    first = project.historical_features(labels(), ["activity:spend"])
    after_first = verified_files().hashed
    second = project.historical_features(labels(), ["activity:spend"])
    project.materialize(end=(T0 + 25 * DAY).to_pydatetime())

    assert files == 2
    assert first["spend"].tolist() == second["spend"].tolist() == [30.0, 40.0]
    assert after_first - hashed == files  # the first read hashed every file
    assert verified_files().hashed == after_first  # later reads only looked at each file's size and times


def test_a_flipped_byte_in_a_stored_file_refuses_the_training_set_naming_view_version_and_file(
    project: Any,
) -> None:
    damaged = stored_files(project)[1]
    flip_one_byte(damaged)

    with pytest.raises(IntegrityError) as err:
        project.historical_features(labels(), ["activity:spend"])

    message = str(err.value)
    assert "feature view 'activity' version 1" in message
    assert f"{damaged.parent.name}/{damaged.name}" in message  # month=2024-02/part-0.parquet
    assert "does not match the SHA-256" in message


def test_a_file_damaged_after_it_was_read_intact_is_refused_on_the_next_read(project: Any) -> None:
    project.historical_features(labels(), ["activity:spend"])
    flip_one_byte(stored_files(project)[0])

    with pytest.raises(IntegrityError, match="does not match the SHA-256"):
        project.historical_features(labels(), ["activity:spend"])


def test_a_truncated_file_is_refused_even_after_it_was_read_intact(project: Any) -> None:
    project.historical_features(labels(), ["activity:spend"])
    damaged = stored_files(project)[0]
    with damaged.open("r+b") as f:
        f.truncate(damaged.stat().st_size - 100)

    with pytest.raises(IntegrityError, match=r"version 1: file '.*month=2024-01/part-0\.parquet' does not match"):
        project.historical_features(labels(), ["activity:spend"])


def test_a_replaced_file_is_refused(project: Any) -> None:
    first, second = stored_files(project)
    second.write_bytes(first.read_bytes())  # a valid Parquet file, but not the one recorded

    with pytest.raises(IntegrityError, match="does not match the SHA-256"):
        project.historical_features(labels(), ["activity:spend"])


def test_a_missing_file_is_refused(project: Any) -> None:
    stored_files(project)[0].unlink()

    with pytest.raises(IntegrityError, match="is missing from the offline store"):
        project.historical_features(labels(), ["activity:spend"])


def test_materialization_validation_and_stability_refuse_a_damaged_version_too(project: Any) -> None:
    flip_one_byte(stored_files(project)[0])

    with pytest.raises(IntegrityError):
        project.materialize(end=(T0 + 25 * DAY).to_pydatetime())
    with pytest.raises(IntegrityError):
        project.validate("activity", [InRange("spend", 0, 100)])
    with pytest.raises(IntegrityError):
        project.stability("activity")


def test_a_version_recorded_without_file_hashes_is_read_unverified_and_noted(
    project: Any, caplog: pytest.LogCaptureFixture
) -> None:
    version = project.feature_versions("activity")[-1]
    older = replace(version, files=[{k: v for k, v in f.items() if k != "sha256"} for f in version.files])
    flip_one_byte(stored_files(project)[0])  # nothing to compare it with
    hashed = verified_files().hashed

    with caplog.at_level(logging.WARNING, logger="keel.offline._verify"):
        verify_version(project.offline_store, older)
        verify_version(project.offline_store, older)

    noted = [r.getMessage() for r in caplog.records if "read unverified" in r.getMessage()]
    assert noted == [
        "feature view 'activity' version 1: 2 file(s) were recorded without a SHA-256 (an older "
        "version); they are read unverified"
    ]  # once per version and process
    assert verified_files().hashed == hashed


def test_an_offline_store_on_an_fsspec_uri_is_verified_by_what_the_filesystem_reports(project_dir: Path) -> None:
    uri = f"memory://keel-verified-{uuid.uuid4().hex}"
    with keel.Project.open(project_dir, offline=uri, partition_rows=2) as project:
        project.apply([CUSTOMER, activity_view()])
        version = project.ingest("activity").version
        project.historical_features(labels(), ["activity:spend"])
        hashed = verified_files().hashed
        project.historical_features(labels(), ["activity:spend"])
        assert verified_files().hashed == hashed  # the second read looked at the files' info only

        fs = fsspec.filesystem("memory")
        path = f"{project.offline_store.root}/{version.location}/{version.files[0]['path']}"
        data = bytearray(fs.cat_file(path))
        data[len(data) // 2] ^= 0x01
        fs.pipe_file(path, bytes(data))

        with pytest.raises(IntegrityError, match=r"feature view 'activity' version 1: file .* does not match"):
            project.historical_features(labels(), ["activity:spend"])


@pytest.mark.spark
def test_the_spark_engine_is_handed_only_verified_files(spark_engine: Any, tmp_path: Path) -> None:
    catalog = SqlCatalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    definitions = Definitions(catalog, root=tmp_path, modules=None)
    view = activity_view()
    apply_definitions([CUSTOMER, view], catalog, root=tmp_path, partial=True)
    definitions.remember([CUSTOMER, view])
    store = OfflineStore(str(tmp_path / "offline"), partition_rows=2)
    service = OfflineFeatureService(definitions, catalog, store, spark_engine, tmp_path)
    version = service.ingest("activity").version
    intact = service.historical_features(labels(), ["activity:spend"])
    flip_one_byte(Path(store.root) / version.location / version.files[-1]["path"])

    with pytest.raises(IntegrityError, match=r"feature view 'activity' version 1: file .* does not match"):
        service.historical_features(labels(), ["activity:spend"])  # checked on the driver, before Spark reads

    assert intact["spend"].tolist() == [30.0, 40.0]  # type: ignore[index]
