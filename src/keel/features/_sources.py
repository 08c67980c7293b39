"""Where a feature view's rows come from: Parquet files or folders, CSV files, in-memory DataFrames.

Paths are local (relative to the project root) or fsspec URIs (``s3://bucket/key.parquet``).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from keel.errors import BackendError, NotFoundError, ValidationError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["CsvSource", "DataFrameSource", "ParquetSource", "Source", "source_from_spec"]


def _is_uri(path: str) -> bool:
    return "://" in path


class Source(ABC):
    """Base of every source: names the event-time column and, optionally, the created-time column.

    Args:
        timestamp: the column holding each row's event time.
        created_timestamp: the column holding when each row was written; it breaks ties on event time
            (latest wins).
    """

    kind: ClassVar[str]

    def __init__(self, *, timestamp: str = "event_time", created_timestamp: str | None = None) -> None:
        if not isinstance(timestamp, str) or not timestamp:
            raise ValidationError("a source needs the name of its event-time column (timestamp=...)")
        if created_timestamp is not None and (not isinstance(created_timestamp, str) or not created_timestamp):
            raise ValidationError("created_timestamp must be a column name or None")
        self.timestamp = timestamp
        self.created_timestamp = created_timestamp

    def spec(self) -> dict[str, Any]:
        """A JSON-able description, stable across processes (it is part of a view's definition hash)."""
        return {
            "kind": self.kind,
            "timestamp": self.timestamp,
            "created_timestamp": self.created_timestamp,
            **self._location_spec(),
        }

    @abstractmethod
    def _location_spec(self) -> dict[str, Any]: ...

    @abstractmethod
    def read(self, root: Path | None = None) -> pa.Table:
        """Read every row as an Arrow table."""

    @abstractmethod
    def column_types(self, root: Path | None = None) -> dict[str, pa.DataType]:
        """The source's columns and types, read as cheaply as the format allows."""

    def uris(self, root: Path | None = None) -> tuple[str, ...]:
        """Where an engine reads the source: its file or folder as a local path or URI; ``()`` for a source
        held in this process's memory (read it with :meth:`read`).

        Raises:
            NotFoundError: the file or folder does not exist.
        """
        return ()

    def format_options(self) -> tuple[tuple[str, str], ...]:
        """Options of the source's format, as text, that every engine applies the same way."""
        return ()

    @property
    def describe(self) -> str:
        """A short human description used in messages."""
        return self.kind

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.spec().items() if k != "kind" and v is not None)
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Source) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(repr(self.spec()))


class _FileSource(Source):
    def __init__(self, path: str | Path, *, timestamp: str = "event_time", created_timestamp: str | None = None):
        super().__init__(timestamp=timestamp, created_timestamp=created_timestamp)
        if not isinstance(path, str | os.PathLike) or not str(path):
            raise ValidationError(f"{type(self).__name__} needs a path (a string or a Path), got {path!r}")
        self.path = str(path)

    def _location_spec(self) -> dict[str, Any]:
        return {"path": self.path}

    @property
    def describe(self) -> str:
        return f"{self.kind} source {self.path!r}"

    def resolve(self, root: Path | None) -> tuple[Any, str]:
        """The fsspec filesystem and the path inside it."""
        import fsspec

        if _is_uri(self.path):
            fs, inner = fsspec.core.url_to_fs(self.path)
            return fs, inner
        path = Path(self.path)
        if not path.is_absolute() and root is not None:
            path = root / path
        return fsspec.filesystem("file"), str(path)

    def uris(self, root: Path | None = None) -> tuple[str, ...]:
        inner = self._require(root)[1]
        return (self.path if _is_uri(self.path) else inner,)

    def _require(self, root: Path | None) -> tuple[Any, str]:
        fs, inner = self.resolve(root)
        try:
            exists = fs.exists(inner)
        except Exception as exc:  # a remote filesystem that cannot be reached
            raise BackendError(f"cannot reach {self.describe}: {exc}") from exc
        if not exists:
            raise NotFoundError(f"{self.describe}: no file or folder at {inner!r}; create it or fix the path")
        return fs, inner


class ParquetSource(_FileSource):
    """A Parquet file, or a folder of Parquet files (Hive partitions allowed).

    Example:
        >>> ParquetSource("data/activity.parquet", timestamp="event_time")
        ParquetSource(timestamp='event_time', path='data/activity.parquet')
    """

    kind = "parquet"

    def _dataset(self, root: Path | None) -> tuple[Any, str, Any]:
        """The filesystem, the path, and the Arrow dataset; a folder without Parquet files is not found."""
        import pyarrow.dataset as ds

        fs, inner = self._require(root)
        try:
            dataset = ds.dataset(inner, filesystem=fs, format="parquet", partitioning="hive")
        except Exception as exc:
            raise BackendError(f"cannot read the schema of {self.describe}: {exc}") from exc
        if not dataset.files:
            raise NotFoundError(f"{self.describe}: the folder {inner!r} holds no Parquet files")
        return fs, inner, dataset

    def uris(self, root: Path | None = None) -> tuple[str, ...]:
        self._dataset(root)  # a folder without Parquet files is not found
        return super().uris(root)

    def read(self, root: Path | None = None) -> pa.Table:
        import pyarrow.parquet as pq

        fs, inner, _ = self._dataset(root)
        try:
            return pq.read_table(inner, filesystem=fs)
        except Exception as exc:
            raise BackendError(f"cannot read {self.describe}: {exc}") from exc

    def column_types(self, root: Path | None = None) -> dict[str, pa.DataType]:
        schema = self._dataset(root)[2].schema
        return {name: schema.field(name).type for name in schema.names}


class CsvSource(_FileSource):
    """A CSV file with a header row.

    Args:
        path: local path or fsspec URI.
        delimiter: the field separator.
    """

    kind = "csv"

    def __init__(
        self,
        path: str | Path,
        *,
        timestamp: str = "event_time",
        created_timestamp: str | None = None,
        delimiter: str = ",",
    ) -> None:
        super().__init__(path, timestamp=timestamp, created_timestamp=created_timestamp)
        if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '\r\n"':
            raise ValidationError(
                f"CsvSource({self.path!r}): delimiter must be one character other than a quote or a line "
                f"break, got {delimiter!r}",
                field="delimiter",
            )
        self.delimiter = delimiter

    def _location_spec(self) -> dict[str, Any]:
        return {"path": self.path, "delimiter": self.delimiter}

    def format_options(self) -> tuple[tuple[str, str], ...]:
        return (("delimiter", self.delimiter),)

    def read(self, root: Path | None = None) -> pa.Table:
        import pyarrow.csv as pcsv

        fs, inner = self._require(root)
        try:
            with fs.open(inner, "rb") as f:
                return pcsv.read_csv(
                    f,
                    parse_options=pcsv.ParseOptions(delimiter=self.delimiter),
                    convert_options=pcsv.ConvertOptions(strings_can_be_null=True),  # an empty field is null
                )
        except Exception as exc:
            raise BackendError(f"cannot read {self.describe}: {exc}") from exc

    def column_types(self, root: Path | None = None) -> dict[str, pa.DataType]:
        import pyarrow.csv as pcsv

        fs, inner = self._require(root)
        try:
            with fs.open(inner, "rb") as f:
                reader = pcsv.open_csv(f, parse_options=pcsv.ParseOptions(delimiter=self.delimiter))
                schema = reader.schema
        except Exception as exc:
            raise BackendError(f"cannot read the header of {self.describe}: {exc}") from exc
        return {name: schema.field(name).type for name in schema.names}


class DataFrameSource(Source):
    """Rows held in a pandas DataFrame in this process (tests, notebooks, pushed data).

    A view with this source can be ingested only from the process that holds the DataFrame.
    """

    kind = "dataframe"

    def __init__(
        self, df: pd.DataFrame, *, timestamp: str = "event_time", created_timestamp: str | None = None
    ) -> None:
        import pandas as pd

        super().__init__(timestamp=timestamp, created_timestamp=created_timestamp)
        if not isinstance(df, pd.DataFrame):
            raise ValidationError(f"DataFrameSource needs a pandas DataFrame, got {type(df).__name__}")
        self.df = df

    def _location_spec(self) -> dict[str, Any]:
        return {"columns": [str(c) for c in self.df.columns]}

    @property
    def describe(self) -> str:
        return "in-memory DataFrame source"

    def read(self, root: Path | None = None) -> pa.Table:
        import pyarrow as pa

        try:
            return pa.Table.from_pandas(self.df, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValidationError(f"{self.describe}: cannot convert the DataFrame: {exc}") from exc

    def column_types(self, root: Path | None = None) -> dict[str, pa.DataType]:
        import pyarrow as pa

        try:
            schema = pa.Schema.from_pandas(self.df, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValidationError(f"{self.describe}: cannot convert the DataFrame: {exc}") from exc
        return {name: schema.field(name).type for name in schema.names}


class _DetachedDataFrameSource(Source):
    """A DataFrame source rebuilt from the catalog in another process: it knows its columns, not its rows."""

    kind = "dataframe"

    def __init__(self, columns: list[str], **kw: Any) -> None:
        super().__init__(**kw)
        self.columns = columns

    def _location_spec(self) -> dict[str, Any]:
        return {"columns": self.columns}

    def read(self, root: Path | None = None) -> pa.Table:
        raise ValidationError(
            "this view's source is an in-memory DataFrame defined in another process; ingest it from that "
            "process with project.ingest(view) passing the FeatureView object"
        )

    def column_types(self, root: Path | None = None) -> dict[str, pa.DataType]:
        self.read(root)  # always raises
        raise AssertionError("unreachable")


def source_from_spec(spec: dict[str, Any]) -> Source:
    """Rebuild a source from :meth:`Source.spec` (as stored in the catalog)."""
    kind = spec.get("kind")
    common = {"timestamp": spec["timestamp"], "created_timestamp": spec.get("created_timestamp")}
    if kind == "parquet":
        return ParquetSource(spec["path"], **common)
    if kind == "csv":
        return CsvSource(spec["path"], delimiter=spec.get("delimiter", ","), **common)
    if kind == "dataframe":
        return _DetachedDataFrameSource(list(spec.get("columns", [])), **common)
    raise ValidationError(f"unknown source kind {kind!r} in a stored definition; upgrade keel")
