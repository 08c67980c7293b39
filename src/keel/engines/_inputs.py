"""Rows at rest as the engines take them: a Parquet or CSV file, or a folder of them, named by a path or URI."""

from __future__ import annotations

from typing import Literal

from keel._files import open_filesystem
from keel.engines._base import Files
from keel.errors import NotFoundError, ValidationError

__all__ = ["input_files"]


def input_files(input: str) -> Files:
    """The input as the engines take it: a Parquet or CSV file, or a folder of Parquet (or CSV) files.

    Raises:
        NotFoundError: nothing at ``input``.
        ValidationError: not a Parquet or CSV file, or a folder holding none.
    """
    fs, path, _ = open_filesystem(input)
    if not fs.exists(path):
        raise NotFoundError(f"no input at {input}")
    if not fs.isdir(path):
        return Files((input,), format=_format_of(input))
    found = sorted(
        p
        for p in fs.find(path)
        if not any(part.startswith(("_", ".")) for part in p[len(path) :].split("/")) and p.lower().endswith(_SUFFIXES)
    )
    formats = {_format_of(p) for p in found}
    if not found or len(formats) > 1:
        what = "no Parquet or CSV file" if not found else "both Parquet and CSV files"
        raise ValidationError(f"the input folder {input} holds {what}; give a folder of one kind", field="input")
    uris = tuple(input.rstrip("/") + p[len(path.rstrip("/")) :] for p in found)
    return Files(uris, format=formats.pop(), describe=f"the input folder {input!r}")


_SUFFIXES = (".parquet", ".pq", ".csv")


def _format_of(path: str) -> Literal["parquet", "csv"]:
    lower = path.lower()
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith(".csv"):
        return "csv"
    raise ValidationError(
        f"{path}: unsupported input type; use a .parquet or .csv file (or a folder of them)", field="input"
    )
