"""A batch run's output: where it goes (the Parquet file, its parts folder and manifest), and how the scored parts
are assembled into it, in input order, while the rest are still being scored."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from keel._files import atomic_open, open_filesystem, protocol_of, uri_of
from keel.errors import ValidationError

if TYPE_CHECKING:
    from keel.batch._io import InputFile
    from keel.batch._manifest import Manifest

#: Suffixes of the files kept next to the output while a run is unfinished.
MANIFEST_SUFFIX = ".manifest.json"
PARTS_SUFFIX = ".parts"


@dataclass(frozen=True)
class Output:
    """The output file of a run and the files kept beside it until the run is complete.

    Attributes:
        fs: its filesystem.
        path: its path there.
    """

    fs: Any
    path: str

    @classmethod
    def of(cls, output: str, source: InputFile) -> Output:
        """The output at ``output`` (a local path or an fsspec URI), checked against the input ``source``.

        Raises:
            ValidationError: not named ``.parquet``, it is the input, a folder, or in a folder that is a file.
        """
        fs, path, _ = open_filesystem(output)
        if not path.lower().endswith((".parquet", ".pq")):
            raise ValidationError(f"{output}: the output is written as Parquet; name it .parquet", field="output")
        if path == source.path and type(fs) is type(source.fs):
            raise ValidationError(f"{output}: the output would overwrite the input", field="output")
        if fs.isdir(path):
            raise ValidationError(f"{output} is a folder; the output is one Parquet file: name a file", field="output")
        parent = path.rpartition("/")[0]
        if parent and fs.exists(parent) and not fs.isdir(parent):
            raise ValidationError(f"{output}: {parent} is a file, not a folder", field="output")
        return cls(fs, path)

    @property
    def parts_path(self) -> str:
        """The folder of the scored chunks' part files."""
        return self.path + PARTS_SUFFIX

    @property
    def manifest_path(self) -> str:
        return self.path + MANIFEST_SUFFIX

    @property
    def in_memory(self) -> bool:
        """Whether the output lives in this process's memory (``memory://``): other processes cannot write it."""
        return protocol_of(self.fs) == "memory"

    def uri(self, path: str) -> str:
        """``path`` of the output's filesystem as a URI other processes can open."""
        return uri_of(self.fs, path)


class Combiner:
    """Appends the done chunks' parts, in input order, to the output under a temporary name as soon as every
    chunk before them is settled (done, failed or taken from an earlier run), one part at a time: the output is
    written while the chunks are scored, and memory holds one part at most.

    Used as a context manager: leaving it on an error removes the unfinished output.
    """

    def __init__(self, output: Output, manifest: Manifest, dictionary: list[str] | None = None) -> None:
        self.output = output
        self.dictionary = dictionary or []  # the columns worth dictionary-encoding (few distinct values)
        self.manifest = manifest
        self.next = 0  # the first chunk not appended (or skipped) yet
        self._file = contextlib.ExitStack()  # holds the atomic file once the first part is appended
        self._writer: Any = None

    def __enter__(self) -> Combiner:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if error is None:
            return
        if self._writer is not None:
            with contextlib.suppress(Exception):  # the error being raised is what is reported
                self._writer.close()
            self._writer = None
        self._file.__exit__(kind, error, traceback)  # the atomic file is discarded, the output left as it was

    def advance(self, settled: int, unsettled: set[int]) -> None:
        """Append every chunk from the next one up to the first still unsettled, below ``settled``."""
        while self.next < settled and self.next not in unsettled:
            entry = self.manifest.chunks.get(str(self.next))
            if entry is not None:  # not a failed chunk
                self._append(entry["part"])
            self.next += 1

    def _append(self, part: str) -> None:
        import pyarrow.parquet as pq

        fs = self.output.fs
        with fs.open(f"{self.output.parts_path}/{part}", "rb") as f:
            table = pq.read_table(f)
        if self._writer is None:
            target = self._file.enter_context(atomic_open(fs, self.output.path))
            self._writer = pq.ParquetWriter(target, table.schema, use_dictionary=self.dictionary)
        elif table.schema != self._writer.schema:
            table = table.cast(self._writer.schema)
        self._writer.write_table(table)

    def finish(self) -> bool:
        """Close the output and publish it (see :mod:`keel._files`); ``False`` when no chunk was done (no
        output)."""
        if self._writer is None:
            return False
        self._writer.close()
        self._writer = None
        self._file.close()
        return True
