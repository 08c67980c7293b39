"""The reference online store: Python dicts, shared by every store opened on the same ``memory://`` URI.

Obviously correct rather than fast; the conformance suite holds the other backends to its behaviour. Like
fsspec's memory filesystem, data lives as long as the process and is shared per URI, so that two stores
opened on ``memory://`` see the same views (as two stores on one SQLite file or Redis database do). An
unpublished generation is a separate dict; publishing it swaps it in under the lock.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from keel.online._batch import Batch, ViewSchema
from keel.online._keys import encode_keys
from keel.online._store import OnlineRead, OnlineStore, abandoned, empty_read, new_generation, now_ms

__all__ = ["MemoryOnlineStore"]


@dataclass
class _View:
    schema: ViewSchema | None
    #: encoded key -> (event time in epoch microseconds, {feature: value})
    rows: dict[int | str, tuple[int, dict[str, Any]]] = field(default_factory=dict)


@dataclass
class _Generation:
    data: _View
    owner: dict[str, Any]
    touched_ms: int


#: URI -> (prefix, view) -> data
_SPACES: dict[str, dict[tuple[str, str], _View]] = {}
#: URI -> (prefix, view, generation) -> an unpublished generation
_GENERATIONS: dict[str, dict[tuple[str, str, str], _Generation]] = {}
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
            self._generations = _GENERATIONS.setdefault(uri, {})

    def _write(self, batch: Batch, ttl: timedelta | None) -> int:
        columns = [batch.python_values(i) for i in range(len(batch.features))]
        with _LOCK:
            if batch.generation is None:
                current = self._space.get((self.prefix, batch.view))
            else:
                staged = self._generations.get((self.prefix, batch.view, batch.generation))
                if staged is None:
                    raise self._unknown_generation(batch.view, batch.generation)
                staged.touched_ms = now_ms()
                current = staged.data
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
            for key in [k for k in self._generations if k[:2] == (self.prefix, view)]:
                del self._generations[key]

    def _sweep_generations(self, view: str) -> list[str]:
        with _LOCK:
            swept = []
            for key, staged in list(self._generations.items()):
                if key[:2] == (self.prefix, view) and abandoned(staged.owner, staged.touched_ms):
                    del self._generations[key]
                    swept.append(key[2])
            return swept

    def _begin_generation(self, view: str, owner: dict[str, Any]) -> str:
        with _LOCK:
            self._sweep_generations(view)
            generation = new_generation()
            self._generations[(self.prefix, view, generation)] = _Generation(_View(None), owner, now_ms())
            return generation

    def _publish_generation(self, view: str, generation: str) -> None:
        with _LOCK:
            staged = self._generations.pop((self.prefix, view, generation), None)
            if staged is None:
                raise self._unknown_generation(view, generation)
            if staged.data.schema is None:  # nothing was written: the view is empty from now on
                self._space.pop((self.prefix, view), None)
            else:
                self._space[(self.prefix, view)] = staged.data

    def _discard_generation(self, view: str, generation: str) -> None:
        with _LOCK:
            self._generations.pop((self.prefix, view, generation), None)

    def _hidden_generations(self, view: str) -> list[str]:
        with _LOCK:
            return [key[2] for key in self._generations if key[:2] == (self.prefix, view)]

    def close(self) -> None:
        """Nothing to release: the data stays for other stores on the same URI."""


def _copy(value: Any) -> Any:
    # Lists are the only mutable values: a caller changing its result must not change the store.
    return list(value) if type(value) is list else value
