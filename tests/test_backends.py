"""Engines are built from the configuration by the plug-in table's builders, never by a constructor call."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keel._backends import open_engine
from keel.config import KeelConfig
from keel.engines import ROW, TS, Engine, LocalEngine, PointInTimeSource
from keel.errors import ConfigError

T0 = datetime(2024, 1, 1, tzinfo=UTC)
UTC_US = pa.timestamp("us", tz="UTC")


def test_the_default_configuration_builds_the_local_engine() -> None:
    engine = open_engine(KeelConfig())

    assert isinstance(engine, LocalEngine)
    assert isinstance(engine, Engine)


def test_an_engine_without_a_builder_is_a_config_error_listing_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"engine 'flink': unknown scheme 'flink'; valid schemes are: local, spark"):
        open_engine(KeelConfig.model_construct(engine="flink"))


def test_the_engine_reads_through_the_filesystems_it_is_built_with() -> None:
    fs = fsspec.filesystem("memory")
    root = f"/engine-{uuid.uuid4().hex}"
    with fs.open(f"{root}/v.parquet", "wb") as f:
        pq.write_table(pa.table({"k": [1], "t": pa.array([T0], UTC_US), "x": [2.5]}), f)
    src = PointInTimeSource("v", (f"memory://{root}/v.parquet",), ("k",), "t", None, (("x", "x"),), None, False)
    entities = pa.table({ROW: pa.array([0], pa.int64()), TS: pa.array([T0], UTC_US), "k": [1]})

    try:
        out = open_engine(KeelConfig(), [fs]).point_in_time_join(entities, [src])
    finally:
        fs.rm(root, recursive=True)

    assert out.column("x").to_pylist() == [2.5]
