"""Ingestion through each engine, as a user runs it: the same data gives the same version on every engine, and a
failure anywhere publishes nothing (invariant 4)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keel import Entity, FeatureView, Field, ParquetSource
from keel.catalog import SqlCatalog
from keel.definitions import Definitions, apply_definitions
from keel.engines import Engine
from keel.errors import BackendError, ValidationError
from keel.offline import OfflineFeatureService, OfflineStore

ENGINES = ["local", pytest.param("spark", marks=pytest.mark.spark)]
CUSTOMER = Entity("customer", ["customer_id"])


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Engine:
    built: Engine = request.getfixturevalue(f"{request.param}_engine")
    return built


def write_source(folder: Path, *, bad_row: int | None = None) -> Path:
    """Two files of activity; with ``bad_row``, that row (counted across both files) holds an unparseable spend."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 40
    spend: list[Any] = [f"{i * 1.5}" for i in range(n)]
    if bad_row is not None:
        spend[bad_row] = "not a number"
    frame = pd.DataFrame(
        {
            "customer_id": [i % 7 for i in range(n)],
            "event_time": pd.date_range("2024-01-01", periods=n, freq="6h", tz="UTC"),
            "spend": spend,
            "plan": ["basic" if i % 3 else "pro" for i in range(n)],
        }
    )
    pq.write_table(pa.Table.from_pandas(frame.iloc[:25], preserve_index=False), folder / "part-a.parquet")
    pq.write_table(pa.Table.from_pandas(frame.iloc[25:], preserve_index=False), folder / "part-b.parquet")
    return folder


def service(root: Path, engine: Engine, source: Path) -> tuple[OfflineFeatureService, FeatureView]:
    catalog = SqlCatalog(f"sqlite:///{root / 'catalog.db'}")
    definitions = Definitions(catalog, root=root, modules=None)
    view = FeatureView(
        "activity",
        entities=[CUSTOMER],
        source=ParquetSource(str(source), timestamp="event_time"),
        schema=[Field("spend", "float64"), Field("plan", "string")],
        ttl=timedelta(days=30),
    )
    apply_definitions([CUSTOMER, view], catalog, root=root, partial=True)
    definitions.remember([CUSTOMER, view])
    return OfflineFeatureService(definitions, catalog, OfflineStore(str(root / "offline")), engine, root), view


def test_the_same_source_is_the_same_version_on_every_engine(
    engine: Engine, local_engine: Engine, tmp_path: Path
) -> None:
    source = write_source(tmp_path / "source")
    ours, _ = service(tmp_path / "a", engine, source)
    reference, _ = service(tmp_path / "b", local_engine, source)

    got = ours.ingest("activity").version
    expected = reference.ingest("activity").version

    assert got.data_digest == expected.data_digest
    assert (got.row_count, got.event_time_min, got.event_time_max) == (
        40,
        expected.event_time_min,
        expected.event_time_max,
    )
    assert got.columns == expected.columns
    assert got.statistics["plan"] == expected.statistics["plan"]
    rows = pa.concat_tables([pq.read_table(p) for p in ours.store.paths(got)]).sort_by("__keel_seq")
    want = pa.concat_tables([pq.read_table(p) for p in reference.store.paths(expected)]).sort_by("__keel_seq")
    assert rows.equals(want)
    assert ours.ingest("activity").created is False  # unchanged data: nothing written


def test_a_bad_value_in_a_later_file_publishes_nothing(engine: Engine, tmp_path: Path) -> None:
    source = write_source(tmp_path / "source", bad_row=31)
    offline, _ = service(tmp_path / "p", engine, source)

    with pytest.raises(ValidationError) as err:
        offline.ingest("activity")

    assert "row 31" in str(err.value) and "'not a number'" in str(err.value)
    assert offline.catalog.feature_versions("activity") == []
    leftovers = [p for p in (tmp_path / "p" / "offline").rglob("*") if p.is_file()]
    assert leftovers == []


def test_a_write_that_fails_halfway_publishes_nothing(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_source(tmp_path / "source")
    offline, _ = service(tmp_path / "p", engine, source)
    store = offline.store
    publish = store.publish

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk full while publishing")

    monkeypatch.setattr(store, "publish", crash)
    with pytest.raises((OSError, BackendError)):
        offline.ingest("activity")
    monkeypatch.setattr(store, "publish", publish)

    assert offline.catalog.feature_versions("activity") == []
    assert [p for p in (tmp_path / "p" / "offline").rglob("*") if p.is_file()] == []
    assert offline.ingest("activity").version.version == 1  # and the next try works
