"""The online store interface: the latest feature values per entity key, per feature view."""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self
from urllib.parse import urlsplit, urlunsplit

from keel._process import ProcessOwner
from keel.errors import BackendError, ConflictError, KeelError, ValidationError
from keel.features._definitions import check_name
from keel.online._batch import Batch, check_prefix, prepare_batch
from keel.online._values import datetime_from_us

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["STALE_GENERATION", "OnlineRead", "OnlineStore"]

#: An unpublished generation nobody has written to for this long is a dead writer's leftover, whoever owned it
#: (a writer on this machine that died is recognised at once; see :meth:`OnlineStore.begin_generation`).
STALE_GENERATION = timedelta(hours=6)
_GENERATION = re.compile(r"[0-9a-f]{16}")


@dataclass(slots=True)
class OnlineRead:
    """What :meth:`OnlineStore.read` returns: one entry per requested entity, in request order, by column.

    Columnar because every consumer wants columns (a dict of feature -> values, a DataFrame, a model's input
    frame) and the backends produce rows: one C-level ``zip(*rows)`` transposes them, and a dtype that needs a
    conversion (bool, timestamp, list) is converted by one comprehension over its column. Event times stay
    integer epoch microseconds because the caller's TTL check is then one integer comparison per entity;
    :attr:`event_times` gives datetimes when wanted.

    Attributes:
        features: the features asked for, in order.
        event_us: per entity, the stored event time in microseconds since the Unix epoch (UTC), or ``None``
            when the entity is unknown.
        values: one sequence per feature (in the order of :attr:`features`), each holding one value per
            entity: ``None`` for unknown entities, nulls, and features never written. Types: ``int``,
            ``float``, ``bool``, ``str``, ``datetime`` (UTC) and ``list[float]``.

    Example:
        >>> read = store.read("customer_activity", [(42,), (7,)], ["spend_30d", "plan"])  # doctest: +SKIP
        >>> read.to_dict()  # doctest: +SKIP
        {'spend_30d': [12.5, None], 'plan': ['pro', None]}
    """

    features: tuple[str, ...]
    event_us: Sequence[int | None]
    values: list[Sequence[Any]]

    def __len__(self) -> int:
        return len(self.event_us)

    @property
    def event_times(self) -> list[datetime | None]:
        """The event times as UTC datetimes (``None`` for unknown entities)."""
        return [None if us is None else datetime_from_us(us) for us in self.event_us]

    def column(self, feature: str) -> Sequence[Any]:
        """The values of one feature, one per entity."""
        try:
            return self.values[self.features.index(feature)]
        except ValueError:
            raise ValidationError(
                f"feature {feature!r} was not read; this result holds {list(self.features)}", field=feature
            ) from None

    def to_dict(self) -> dict[str, list[Any]]:
        """The values as ``{feature: [value per entity]}``."""
        return {name: list(col) for name, col in zip(self.features, self.values, strict=True)}


class OnlineStore(ABC):
    """Latest feature values per entity key, per feature view.

    A backend implements :meth:`_write` (given a validated :class:`~keel.online._batch.Batch`, whose
    ``generation`` says where it goes), :meth:`_read`, :meth:`_drop_view`, the generation primitives
    (:meth:`_begin_generation`, :meth:`_publish_generation`, :meth:`_discard_generation`,
    :meth:`_sweep_generations`, :meth:`_hidden_generations`) and :meth:`close`. The public :meth:`write_batch`,
    :meth:`read`, :meth:`drop_view` and generation methods are template methods around them (Kedro's
    ``load``/``_load``): they validate the input once for every backend, and turn whatever the backend's library
    raises into one :class:`~keel.errors.BackendError` naming the store, the view and the action, with the
    library's exception as its ``__cause__``. Keel errors raised inside a backend (a conflict, a bad key) pass
    through as they are.

    Semantics every backend keeps (the conformance suite checks them):

    - a written row replaces the entity's stored row as a whole (features it does not carry read as
      ``None``), unless its event time is older than the stored one: then it is ignored, so a late write
      never overwrites newer data (an equal event time overwrites, and within one batch later rows win ties);
    - a view remembers its key columns and the dtype of each feature; a write that changes them is refused
      with a :class:`~keel.errors.ConflictError` (drop the view first);
    - float NaN is stored as null; keys compare by their encoded form (:func:`~keel.online._keys.encode_key`),
      so pass key values in the key columns' types;
    - backend failures raise :class:`~keel.errors.BackendError` naming the store, the view and the cause;
    - a view's data can be replaced whole in one atomic step: writes into a new *generation*
      (:meth:`begin_generation`, then :meth:`write_batch` with ``generation=``) stay invisible until
      :meth:`publish_generation` makes it the view's data, so a reader sees the old data or the new, never a
      mix nor nothing; a writer that dies before publishing leaves the old data serving and a leftover that the
      next :meth:`begin_generation` of the view removes.

    Args:
        uri: where the store lives; the scheme picks the backend.
        prefix: namespace of this project's views inside the store (letters, digits, ``_.-``); stores with
            different prefixes never see each other's data.
    """

    #: the backend's name in messages
    kind: ClassVar[str] = "online"
    uri: str
    prefix: str

    def __init__(self, uri: str, *, prefix: str = "keel") -> None:
        self.uri = uri
        self.prefix = check_prefix(prefix)

    @property
    def description(self) -> str:
        """How messages name this store: backend, URI (password hidden) and prefix."""
        return f"{self.kind} online store {safe_uri(self.uri)} (prefix {self.prefix!r})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({safe_uri(self.uri)!r}, prefix={self.prefix!r})"

    def write_batch(
        self,
        view: str,
        rows: pa.Table,
        *,
        keys: Sequence[str],
        features: Sequence[str],
        timestamp: str,
        ttl: timedelta | None = None,
        generation: str | None = None,
    ) -> int:
        """Upsert the latest feature values of ``view`` per entity key.

        Args:
            view: the feature view.
            rows: the key columns, the event-time column and the feature columns (Keel dtypes; nulls allowed
                in features). Other columns are ignored.
            keys: the key columns (integers or strings), in the order reads will give key values.
            features: the feature columns to write.
            timestamp: the event-time column (``timestamp[us, tz=UTC]``; other units and naive times, taken as
                UTC, are accepted).
            ttl: when given, a backend with native expiry (Redis) expires each entity at its event time plus
                ``ttl``; the others keep the row (readers apply the TTL in every case).
            generation: write into this unpublished generation of the view (:meth:`begin_generation`) instead
                of the data readers see.

        Returns:
            The number of rows applied: rows older than the stored ones are ignored and not counted.

        Raises:
            ValidationError: the rows or names are invalid.
            ConflictError: the key columns or a feature's dtype differ from what the view stores, or
                ``generation`` is not being written (published, discarded, or removed as a dead writer's).
            BackendError: the backend failed.
        """
        if ttl is not None and (not isinstance(ttl, timedelta) or ttl <= timedelta(0)):
            raise ValidationError(f"{self.description}: ttl must be a positive timedelta, got {ttl!r}", field="ttl")
        batch = prepare_batch(self.description, view, rows, keys=keys, features=features, timestamp=timestamp)
        if generation is not None:
            batch.generation = self._checked_generation(generation)
        try:
            return self._write(batch, ttl)
        except KeelError:
            raise
        except Exception as exc:
            raise self._failure(view, "writing", exc) from exc

    @abstractmethod
    def _write(self, batch: Batch, ttl: timedelta | None) -> int:
        """Write a validated batch (see :meth:`write_batch`); return the number of rows applied."""

    def read(self, view: str, entity_keys: Sequence[tuple[Any, ...]], features: Sequence[str]) -> OnlineRead:
        """The stored values of ``features`` for each entity, in request order.

        Args:
            view: the feature view.
            entity_keys: one tuple of key values per entity, in the order of the ``keys`` used at write time.
            features: the features to return.

        Returns:
            An :class:`OnlineRead`; unknown views, entities and features read as ``None``.

        Raises:
            ValidationError: an entity key is not a tuple of integers and strings.
            BackendError: the backend failed.
        """
        # The serving hot path: on CPython 3.11+ a try block costs nothing until something raises.
        try:
            return self._read(view, entity_keys, features)
        except KeelError:
            raise
        except Exception as exc:
            raise self._failure(view, "reading", exc) from exc

    @abstractmethod
    def _read(self, view: str, entity_keys: Sequence[tuple[Any, ...]], features: Sequence[str]) -> OnlineRead:
        """Read the stored values (see :meth:`read`); bad entity keys raise :class:`ValidationError`."""

    def drop_view(self, view: str) -> None:
        """Delete everything stored for ``view`` under this store's prefix (nothing happens when absent).

        Raises:
            ValidationError: ``view`` is not a valid feature view name.
            BackendError: the backend failed.
        """
        check_name(view, f"{self.description}: feature view")
        try:
            self._drop_view(view)
        except KeelError:
            raise
        except Exception as exc:
            raise self._failure(view, "dropping the view", exc) from exc

    @abstractmethod
    def _drop_view(self, view: str) -> None:
        """Delete the (validly named) view's data, its unpublished generations included (see :meth:`drop_view`)."""

    # -- generations: a view's data replaced whole, atomically
    def begin_generation(self, view: str) -> str:
        """Start a new generation of ``view``: an empty data set that :meth:`write_batch` with ``generation=``
        fills while readers keep seeing the view's current data, until :meth:`publish_generation`.

        The view's unpublished generations left by dead writers are removed first: those whose owner process
        is known to have died (same machine; see :class:`keel._process.ProcessOwner`), and those nobody wrote
        to for :data:`STALE_GENERATION`.

        Returns:
            The generation's id (16 hex digits).

        Raises:
            ValidationError: ``view`` is not a valid feature view name.
            BackendError: the backend failed.
        """
        check_name(view, f"{self.description}: feature view")
        owner = ProcessOwner.current().to_dict()
        try:
            return self._begin_generation(view, owner)
        except KeelError:
            raise
        except Exception as exc:
            raise self._failure(view, "starting a generation", exc) from exc

    def sweep_generations(self, view: str) -> list[str]:
        """Remove the generations of ``view`` that dead writers left (see :meth:`begin_generation`, which does
        it too); returns their ids.

        Raises:
            ValidationError: ``view`` is not a valid feature view name.
            BackendError: the backend failed.
        """
        check_name(view, f"{self.description}: feature view")
        try:
            return sorted(self._sweep_generations(view))
        except KeelError:
            raise
        except Exception as exc:
            raise self._failure(view, "removing abandoned generations", exc) from exc

    def publish_generation(self, view: str, generation: str) -> None:
        """Make ``generation`` the data of ``view`` in one atomic step, then remove the data it replaces.

        Readers see the previous data up to that step and the generation's from then on; entities the
        generation lacks read as unknown. Writes to the view without ``generation`` go to the new data from
        then on.

        Raises:
            ValidationError: ``view`` or ``generation`` is malformed.
            ConflictError: ``generation`` is not being written (published, discarded, removed, or never begun).
            BackendError: the backend failed.
        """
        check_name(view, f"{self.description}: feature view")
        generation = self._checked_generation(generation)
        try:
            self._publish_generation(view, generation)
        except KeelError:
            raise
        except Exception as exc:
            raise self._failure(view, f"publishing generation {generation}", exc) from exc

    def discard_generation(self, view: str, generation: str) -> None:
        """Remove an unpublished generation and what was written to it (nothing happens when it is gone).

        Raises:
            ValidationError: ``view`` or ``generation`` is malformed.
            BackendError: the backend failed.
        """
        check_name(view, f"{self.description}: feature view")
        generation = self._checked_generation(generation)
        try:
            self._discard_generation(view, generation)
        except KeelError:
            raise
        except Exception as exc:
            raise self._failure(view, f"discarding generation {generation}", exc) from exc

    def hidden_generations(self, view: str) -> list[str]:
        """The generations of ``view`` that hold data readers do not see (for inspection): one begun and not
        yet published nor discarded (a writer at work, or a dead writer's leftover), or, on a backend that
        removes replaced data after the switch (Redis), data replaced and not yet removed. The next
        :meth:`begin_generation` of the view removes those of dead writers.

        Raises:
            ValidationError: ``view`` is not a valid feature view name.
            BackendError: the backend failed.
        """
        check_name(view, f"{self.description}: feature view")
        try:
            return sorted(self._hidden_generations(view))
        except KeelError:
            raise
        except Exception as exc:
            raise self._failure(view, "listing generations", exc) from exc

    @abstractmethod
    def _begin_generation(self, view: str, owner: dict[str, Any]) -> str:
        """Remove the view's abandoned generations (:meth:`_sweep_generations`), record a new one owned by
        ``owner`` and return its id (:func:`new_generation`)."""

    @abstractmethod
    def _sweep_generations(self, view: str) -> list[str]:
        """Remove the view's abandoned generations (:func:`abandoned`) and return their ids."""

    @abstractmethod
    def _publish_generation(self, view: str, generation: str) -> None:
        """Switch the view to ``generation`` atomically (:meth:`_unknown_generation` when it is not being
        written), then remove the replaced data."""

    @abstractmethod
    def _discard_generation(self, view: str, generation: str) -> None:
        """Remove ``generation`` if it is unpublished."""

    @abstractmethod
    def _hidden_generations(self, view: str) -> list[str]:
        """The ids of the view's generations that readers do not see (see :meth:`hidden_generations`)."""

    def _checked_generation(self, generation: object) -> str:
        if not isinstance(generation, str) or not _GENERATION.fullmatch(generation):
            raise ValidationError(
                f"{self.description}: generation {generation!r} is invalid: pass the id begin_generation returned",
                field="generation",
            )
        return generation

    def _unknown_generation(self, view: str, generation: str) -> ConflictError:
        return ConflictError(
            f"{self.description}: view {view!r}: generation {generation} is not being written: it was published "
            "or discarded, removed as a dead writer's leftover, or removed with the view; start a new one"
        )

    def _failure(self, view: str, action: str, exc: BaseException) -> BackendError:
        """The error of a backend failure: the store, the view, the action and the library's message."""
        return BackendError(f"{self.description}: view {view!r}: {action} failed: {exc}{self._hint(exc)}")

    def _hint(self, exc: BaseException) -> str:
        """What a backend can add to the message of a failure of its library (what it likely means)."""
        return ""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def safe_uri(uri: str) -> str:
    """``uri`` with any password replaced by ``***``, for messages."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def empty_read(features: tuple[str, ...], n: int) -> OnlineRead:
    """The result of reading ``n`` entities that are all unknown."""
    nothing = (None,) * n
    return OnlineRead(features, nothing, [nothing] * len(features))


def new_generation() -> str:
    """A fresh generation id: 16 random hex digits."""
    import secrets

    return secrets.token_hex(8)


def now_ms() -> int:
    """Now in milliseconds since the Unix epoch (when a generation was last written to)."""
    return time.time_ns() // 1_000_000


def abandoned(owner: Any, touched_ms: Any, now: int | None = None) -> bool:
    """Whether an unpublished generation is a dead writer's leftover: its owner process is known to be dead,
    or nothing was written to it for :data:`STALE_GENERATION` (or its record is unreadable)."""
    recorded = ProcessOwner.from_dict(owner)
    if recorded is not None and recorded.is_dead():
        return True
    if type(touched_ms) is not int:
        return True
    return (now_ms() if now is None else now) - touched_ms > STALE_GENERATION // timedelta(milliseconds=1)
