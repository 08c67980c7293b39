"""Sources: Parquet files and folders, CSV files, DataFrames, local paths and fsspec URIs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keel.errors import BackendError, NotFoundError, ValidationError
from keel.features import CsvSource, DataFrameSource, ParquetSource, source_from_spec


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [1, 2, 3],
            "event_time": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-02-15"], utc=True),
            "spend": [1.0, 2.0, 3.0],
            "month": ["2024-01", "2024-02", "2024-02"],
        }
    )


@pytest.fixture
def memory_dir() -> Iterator[str]:
    fs = fsspec.filesystem("memory")
    root = f"/keel-sources-{uuid.uuid4().hex}"
    yield root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_a_parquet_file_relative_to_the_project_root_is_read(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    _frame().to_parquet(tmp_path / "data" / "a.parquet")
    source = ParquetSource("data/a.parquet")

    types = source.column_types(tmp_path)
    table = source.read(tmp_path)

    assert list(types) == ["customer_id", "event_time", "spend", "month"]
    assert types["spend"] == pa.float64()
    assert table.num_rows == 3
    assert table.column("customer_id").to_pylist() == [1, 2, 3]


def test_a_hive_partitioned_parquet_folder_is_read_whole(tmp_path: Path) -> None:
    pq.write_to_dataset(pa.Table.from_pandas(_frame()), tmp_path / "activity", partition_cols=["month"])
    source = ParquetSource(tmp_path / "activity")

    types = source.column_types()
    table = source.read()

    assert set(types) == {"customer_id", "event_time", "spend", "month"}
    assert sorted(table.column("customer_id").to_pylist()) == [1, 2, 3]
    assert sorted(str(v) for v in table.column("month").to_pylist()) == ["2024-01", "2024-02", "2024-02"]


def test_a_parquet_file_behind_an_fsspec_uri_is_read(memory_dir: str) -> None:
    with fsspec.filesystem("memory").open(f"{memory_dir}/a.parquet", "wb") as f:
        _frame().to_parquet(f)
    source = ParquetSource(f"memory://{memory_dir}/a.parquet")

    assert "spend" in source.column_types(Path("/ignored/for/uris"))
    assert source.read().num_rows == 3


def test_a_missing_parquet_path_is_not_found_naming_it(tmp_path: Path) -> None:
    source = ParquetSource("data/missing.parquet")

    with pytest.raises(NotFoundError, match=r"parquet source 'data/missing\.parquet': no file or folder at .*missing"):
        source.column_types(tmp_path)
    with pytest.raises(NotFoundError, match=r"no file or folder"):
        source.read(tmp_path)


def test_a_parquet_folder_without_parquet_files_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    with pytest.raises(NotFoundError, match=r"parquet source 'empty': the folder .*empty' holds no Parquet files"):
        ParquetSource("empty").column_types(tmp_path)
    with pytest.raises(NotFoundError, match=r"holds no Parquet files"):
        ParquetSource("empty").read(tmp_path)


def test_a_file_that_is_not_parquet_is_a_backend_error_naming_the_source(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"definitely not parquet")

    with pytest.raises(BackendError, match=r"cannot read the schema of parquet source 'bad\.parquet'"):
        ParquetSource("bad.parquet").column_types(tmp_path)


def test_a_csv_file_with_its_delimiter_is_read(tmp_path: Path) -> None:
    _frame().to_csv(tmp_path / "a.csv", sep=";", index=False)
    source = CsvSource("a.csv", delimiter=";")

    types = source.column_types(tmp_path)
    table = source.read(tmp_path)

    assert list(types) == ["customer_id", "event_time", "spend", "month"]
    assert types["spend"] == pa.float64()
    assert table.num_rows == 3


@pytest.mark.parametrize("delimiter", ["", ";;", "\n", '"'])
def test_a_csv_delimiter_must_be_one_plain_character(delimiter: str) -> None:
    with pytest.raises(ValidationError, match=r"CsvSource\('a\.csv'\): delimiter must be one character") as info:
        CsvSource("a.csv", delimiter=delimiter)
    assert info.value.field == "delimiter"


@pytest.mark.parametrize("path", ["", None, 42])
def test_a_file_source_needs_a_path(path: Any) -> None:
    with pytest.raises(ValidationError, match=r"ParquetSource needs a path \(a string or a Path\)"):
        ParquetSource(path)


def test_a_dataframe_source_reads_its_frame() -> None:
    source = DataFrameSource(_frame())

    assert list(source.column_types()) == ["customer_id", "event_time", "spend", "month"]
    assert source.read().num_rows == 3
    assert source.spec()["columns"] == ["customer_id", "event_time", "spend", "month"]


def test_a_dataframe_source_needs_a_dataframe() -> None:
    with pytest.raises(ValidationError, match="DataFrameSource needs a pandas DataFrame, got dict"):
        DataFrameSource({"a": [1]})  # type: ignore[arg-type]


def test_a_dataframe_arrow_cannot_convert_is_a_validation_error() -> None:
    df = pd.DataFrame({"customer_id": [1, 2], "event_time": [1, 2], "mixed": [1, "a"]})

    with pytest.raises(ValidationError, match="in-memory DataFrame source: cannot convert the DataFrame"):
        DataFrameSource(df).read()


def test_sources_are_equal_when_their_specs_are() -> None:
    assert ParquetSource("a.parquet") == ParquetSource(Path("a.parquet"))
    assert hash(ParquetSource("a.parquet")) == hash(ParquetSource(Path("a.parquet")))
    assert ParquetSource("a.parquet") != ParquetSource("a.parquet", timestamp="ts")
    assert ParquetSource("a.csv") != CsvSource("a.csv")


def test_an_unknown_source_kind_in_a_stored_spec_says_to_upgrade() -> None:
    with pytest.raises(ValidationError, match=r"unknown source kind 'kafka' in a stored definition; upgrade keel"):
        source_from_spec({"kind": "kafka", "timestamp": "ts"})
