"""The reference online store: Python dicts, shared by every store opened on the same ``memory://`` URI.

Obviously correct rather than fast; the conformance suite holds the other backends to its behaviour. Like
fsspec's memory filesystem, data lives as long as the process and is shared per URI, so that two stores
opened on ``memory://`` see the same views (as two stores on one SQLite file or Redis database do).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from keel.online._batch import Batch, ViewSchema
from keel.online._keys import encode_keys
from keel.online._store import OnlineRead, OnlineStore, empty_read

__all__ = ["MemoryOnlineStore"]


@dataclass
class _View:
    schema: ViewSchema
    #: encoded key -> (event time in epoch microseconds, {feature: value})
    rows: dict[int | str, tuple[int, dict[str, Any]]] = field(default_factory=dict)


#: URI -> (prefix, view) -> data
_SPACES: dict[str, dict[tuple[str, str], _View]] = {}
_LOCK = threading.RLock()


class MemoryOnlineStore(OnlineStore):
    """Online store in process memory: ``memory://`` (or ``memory://name`` for a separate space).

    Args:
        uri: ``memory://`` optionally followed by a name; stores on the same URI share data.
        prefix: namespace of this project's views.
    """

    kind = "memory"

    def __init__(self, uri: str = "memory://", *, prefix: str = "keel") -> None:
        super().__init__(uri, prefix=prefix)
        with _LOCK:
            self._space = _SPACES.setdefault(uri, {})

    def _write(self, batch: Batch, ttl: timedelta | None) -> int:
        columns = [batch.python_values(i) for i in range(len(batch.features))]
        with _LOCK:
            current = self._space.get((self.prefix, batch.view))
            schema, _ = batch.bind(current.schema if current else None)
            if current is None:
                current = self._space[(self.prefix, batch.view)] = _View(schema)
            current.schema = schema
            rows = current.rows
            written = 0
            for i, (key, event_us) in enumerate(zip(batch.keys, batch.event_us, strict=True)):
                stored = rows.get(key)
                if stored is not None and event_us < stored[0]:
                    continue  # a late write never overwrites newer data
                rows[key] = (
                    event_us,
                    {name: col[i] for name, col in zip(batch.features, columns, strict=True)},
                )
                written += 1
            return written

    def _read(self, view: str, entity_keys: Sequence[tuple[Any, ...]], features: Sequence[str]) -> OnlineRead:
        names = tuple(features)
        keys = encode_keys(entity_keys)
        data = self._space.get((self.prefix, view))
        if data is None:
            return empty_read(names, len(keys))
        found = [data.rows.get(key) for key in keys]
        return OnlineRead(
            names,
            [None if row is None else row[0] for row in found],
            [[None if row is None else _copy(row[1].get(name)) for row in found] for name in names],
        )

    def _drop_view(self, view: str) -> None:
        with _LOCK:
            self._space.pop((self.prefix, view), None)

    def close(self) -> None:
        """Nothing to release: the data stays for other stores on the same URI."""


def _copy(value: Any) -> Any:
    # Lists are the only mutable values: a caller changing its result must not change the store.
    return list(value) if type(value) is list else value
