"""The manifest of a batch run: what was asked, and which chunks are done, so a re-run resumes."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from keel._files import atomic_write

MANIFEST_VERSION = 1


@dataclass
class Manifest:
    """A JSON file next to the output.

    Attributes:
        input: the input's path, size and modification time.
        model: the model version (``churn v3``) and its package digest.
        settings: chunk size, feature mode, id and timestamp columns: what decides the chunks' content.
        chunks: chunk index (as a string, JSON's keys) -> ``{"start": row, "rows": n, "part": file name}``.
        failures: chunk index -> ``{"start", "end", "error"}`` of the last attempt.
    """

    input: dict[str, Any]
    model: dict[str, Any]
    settings: dict[str, Any]
    chunks: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)
    version: int = MANIFEST_VERSION

    def matches(self, other: Manifest) -> bool:
        """Whether ``other`` describes the same work (same input, model and settings)."""
        return (
            self.version == other.version
            and self.input == other.input
            and self.model == other.model
            and self.settings == other.settings
        )

    def save(self, fs: Any, path: str) -> None:
        atomic_write(fs, path, json.dumps(asdict(self), indent=1, sort_keys=True))

    @classmethod
    def load(cls, fs: Any, path: str) -> Manifest | None:
        """The manifest at ``path``, or ``None`` when there is none or it is unreadable."""
        try:
            with fs.open(path, "r") as f:
                data = json.load(f)
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None
