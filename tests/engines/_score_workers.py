"""What the scoring tests ship to Spark's Python workers (a plain module: workers import it by name)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from keel.models import PackageRef


@dataclass(frozen=True)
class LoggedRef:
    """A package reference that notes each load in a file: the process, and the identity of the package it got.

    A process that deserialized the package twice would note two identities: the package is loaded once per
    process when every line of one process names the same object.
    """

    ref: PackageRef
    log: str

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def digest(self) -> str:
        return self.ref.digest

    def load(self) -> Any:
        package = self.ref.load()
        with open(self.log, "a", encoding="utf-8") as f:  # one short line per write: appends do not interleave
            f.write(f"{os.getpid()} {id(package)}\n")
        return package
