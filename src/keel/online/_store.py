"""The online store interface: the latest feature values per entity key, per feature view."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self
from urllib.parse import urlsplit, urlunsplit

from keel.errors import BackendError, KeelError, ValidationError
from keel.features._definitions import check_name
from keel.online._batch import Batch, check_prefix, prepare_batch
from keel.online._values import datetime_from_us

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["OnlineRead", "OnlineStore"]


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

    A backend implements :meth:`_write` (given a validated :class:`~keel.online._batch.Batch`), :meth:`_read`,
    :meth:`_drop_view` and :meth:`close`. The public :meth:`write_batch`, :meth:`read` and :meth:`drop_view`
    are template methods around them (Kedro's ``load``/``_load``): they validate the input once for every
    backend, and turn whatever the backend's library raises into one :class:`~keel.errors.BackendError` naming
    the store, the view and the action, with the library's exception as its ``__cause__``. Keel errors raised
    inside a backend (a conflict, a bad key) pass through as they are.

    Semantics every backend keeps (the conformance suite checks them):

    - a written row replaces the entity's stored row as a whole (features it does not carry read as
      ``None``), unless its event time is older than the stored one: then it is ignored, so a late write
      never overwrites newer data (an equal event time overwrites, and within one batch later rows win ties);
    - a view remembers its key columns and the dtype of each feature; a write that changes them is refused
      with a :class:`~keel.errors.ConflictError` (drop the view first);
    - float NaN is stored as null; keys compare by their encoded form (:func:`~keel.online._keys.encode_key`),
      so pass key values in the key columns' types;
    - backend failures raise :class:`~keel.errors.BackendError` naming the store, the view and the cause.

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

        Returns:
            The number of rows applied: rows older than the stored ones are ignored and not counted.

        Raises:
            ValidationError: the rows or names are invalid.
            ConflictError: the key columns or a feature's dtype differ from what the view stores.
            BackendError: the backend failed.
        """
        if ttl is not None and (not isinstance(ttl, timedelta) or ttl <= timedelta(0)):
            raise ValidationError(f"{self.description}: ttl must be a positive timedelta, got {ttl!r}", field="ttl")
        batch = prepare_batch(self.description, view, rows, keys=keys, features=features, timestamp=timestamp)
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
        """Delete the (validly named) view's data (see :meth:`drop_view`)."""

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
