"""Point-in-time retrieval of an entity table at rest: the engine joins a Parquet file where it lies and writes
the result, the same values the in-memory join gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_retrieval import CUSTOMER, activity_view, profile_view, ts

import keel
from keel.engines import Written
from keel.errors import ValidationError


@pytest.fixture
def project(project_dir: Path) -> Any:
    with keel.Project.open(project_dir) as p:
        activity, profile = activity_view(), profile_view()
        p.apply([CUSTOMER, activity, profile])
        p.ingest(activity)
        p.ingest(profile)
        yield p


def entity_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row_id": [0, 1, 2, 3, 4],
            "customer_id": [1, 1, 2, 3, 1],
            "at": ts(0.5, 2.5, 1.5, 1, 30),
            "label": [1, 0, 1, 0, 1],
        }
    )


FEATURES = ["activity:spend", "activity:plan", "profile:age"]


def test_an_entity_file_is_joined_where_it_lies_as_the_same_frame_would_be(project: Any, tmp_path: Path) -> None:
    frame = entity_frame()
    path = tmp_path / "entities.parquet"
    frame.to_parquet(path, index=False)

    written = project.historical_features(str(path), FEATURES, timestamp="at", into=str(tmp_path / "training"))

    assert isinstance(written, Written) and written.rows == 5
    got = pq.read_table(written.uris()[0]).sort_by("row_id")
    expected = pa.Table.from_pandas(project.historical_features(frame, FEATURES, timestamp="at"), preserve_index=False)
    assert got.column_names == expected.column_names
    for column in ("spend", "plan", "age", "label"):
        assert got.column(column).to_pylist() == expected.column(column).to_pylist()


def test_an_in_memory_frame_with_into_is_written_there(project: Any, tmp_path: Path) -> None:
    written = project.historical_features(entity_frame(), FEATURES, timestamp="at", into=str(tmp_path / "out"))

    assert written.rows == 5
    assert pq.read_table(written.uris()[0]).column("age").to_pylist()[0] == 30


def test_a_table_at_rest_needs_its_timestamp_column_named(project: Any, tmp_path: Path) -> None:
    path = tmp_path / "entities.parquet"
    entity_frame().to_parquet(path, index=False)

    with pytest.raises(ValidationError, match="timestamp='column'"):
        project.historical_features(str(path), FEATURES, into=str(tmp_path / "o"))


def test_the_local_engine_writes_a_table_at_rest_only_to_a_folder(project: Any, tmp_path: Path) -> None:
    path = tmp_path / "entities.parquet"
    entity_frame().to_parquet(path, index=False)

    with pytest.raises(ValidationError, match="into=PATH"):
        project.historical_features(str(path), FEATURES, timestamp="at")
