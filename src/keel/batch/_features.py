"""Where a batch run's features come from: the input itself, or joined to it from the stores, chunk by chunk.

A :class:`FeatureJoin` turns an input chunk into the frame the package scores. The joins take the retrieval
functions as plain callables (a project's ``historical_features`` and ``online_features``, or any function of
the same shape) with the entity keys already resolved, so batch scoring knows neither the project nor the stores.

Example:
    >>> join = InputFeatures(["spend", "orders"], model="churn")
    >>> join.columns(["customer_id", "spend", "orders"])
    ['spend', 'orders']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from keel.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "FeatureJoin",
    "HistoricalFeatures",
    "InputFeatures",
    "OfflineJoin",
    "OnlineGet",
    "OnlineJoin",
    "OnlineValues",
]


class FeatureJoin(Protocol):
    """Turns input chunks into the frames a package scores.

    Attributes:
        warnings: what was noticed while joining (online values of another version than the model's ...),
            reported with the run's result.
    """

    warnings: list[str]

    def columns(self, available: Sequence[str]) -> list[str]:
        """The input columns to read, of the ``available`` ones.

        Raises:
            ValidationError: a column the join needs is missing (its message starts with "the input").
        """
        ...

    def prepare(self, table: pa.Table) -> pa.Table | pd.DataFrame:
        """What the package scores for one chunk: the chunk's table, or a frame with the features joined."""
        ...


class HistoricalFeatures(Protocol):
    """A point-in-time join, as :meth:`keel.Project.historical_features`."""

    def __call__(
        self, entity_df: pd.DataFrame, features: Sequence[str], *, timestamp: str | None = None
    ) -> pd.DataFrame: ...


class OnlineValues(Protocol):
    """The answer of an online lookup, as :class:`keel.online.OnlineFeatures`."""

    versions: dict[str, int]

    def to_frame(self) -> pd.DataFrame: ...


class OnlineGet(Protocol):
    """An online lookup by entity keys, as :meth:`keel.Project.online_features`."""

    def __call__(self, features: Sequence[str], entity_rows: dict[str, list[Any]]) -> OnlineValues: ...


class InputFeatures:
    """The input holds the model's feature columns: chunks are scored as they are read.

    Args:
        features: the model's input columns (``package.feature_names``).
        model: the model's name, for messages.
    """

    def __init__(self, features: Sequence[str], *, model: str = "the model") -> None:
        self.features = list(features)
        self.model = model
        self.warnings: list[str] = []

    def columns(self, available: Sequence[str]) -> list[str]:
        have = set(available)
        missing = [c for c in self.features if c not in have]
        if missing:
            raise ValidationError(
                f"the input lacks feature column(s) {missing} of model {self.model!r}, which needs: "
                f"{', '.join(self.features)}. Add them, or join them from the stores with "
                "features='offline' (entity keys + a timestamp column) or features='online' (entity keys).",
                field=missing[0],
            )
        return list(self.features)

    def prepare(self, table: pa.Table) -> pa.Table:
        return table


class _KeyedJoin:
    """What the two store joins share: the entity keys to read, and the entity frame sent to the store.

    Args:
        refs, keys, features, read_all, id_column, model: see :class:`OnlineJoin`.
    """

    def __init__(
        self,
        refs: Sequence[str],
        keys: Sequence[str],
        *,
        features: Sequence[str] = (),
        read_all: bool = False,
        id_column: str | None = None,
        model: str = "the model",
    ) -> None:
        self.refs = list(refs)
        self.keys = list(keys)
        self.features = list(features)
        self.read_all = read_all
        self.id_column = id_column
        self.model = model
        self.warnings: list[str] = []

    def columns(self, available: Sequence[str]) -> list[str]:
        have = set(available)
        missing = [k for k in self.keys if k not in have]
        if missing:
            raise ValidationError(
                f"the input lacks entity key column(s) {missing} needed to look up the features of model "
                f"{self.model!r}",
                field=missing[0],
            )
        if self.read_all:
            return list(available)
        return list(dict.fromkeys([*self.keys, *self._extra()]))

    def _extra(self) -> list[str]:
        """Input columns read beside the keys."""
        return []

    def _entity(self, table: pa.Table, timestamp: str | None = None) -> pd.DataFrame:
        frame: pd.DataFrame = table.to_pandas()
        kept = {*self.keys, self.id_column, timestamp}
        return frame.drop(columns=[c for c in self.features if c in frame.columns and c not in kept])


class OfflineJoin(_KeyedJoin):
    """Joins the features point in time, as of each row's timestamp.

    Args:
        historical_features: the point-in-time join (``project.historical_features``).
        refs, keys: see :class:`OnlineJoin`.
        timestamp: the input's as-of column (``None``: the retrieval finds the only timestamp column, so every
            column is read).
        features, read_all, id_column, model: see :class:`OnlineJoin`.
    """

    def __init__(
        self,
        historical_features: HistoricalFeatures,
        refs: Sequence[str],
        keys: Sequence[str],
        timestamp: str | None = None,
        *,
        features: Sequence[str] = (),
        read_all: bool = False,
        id_column: str | None = None,
        model: str = "the model",
    ) -> None:
        super().__init__(refs, keys, features=features, read_all=read_all, id_column=id_column, model=model)
        self.historical_features = historical_features
        self.timestamp = timestamp
        if timestamp is None:
            self.read_all = True

    def columns(self, available: Sequence[str]) -> list[str]:
        if self.timestamp is not None and self.timestamp not in available:
            raise ValidationError(
                f"the input has no timestamp column {self.timestamp!r}; columns: {', '.join(available)}",
                field=self.timestamp,
            )
        return super().columns(available)

    def _extra(self) -> list[str]:
        return [self.timestamp] if self.timestamp else []

    def prepare(self, table: pa.Table) -> pd.DataFrame:
        entity = self._entity(table, self.timestamp)
        return self.historical_features(entity, self.refs, timestamp=self.timestamp)


class OnlineJoin(_KeyedJoin):
    """Looks the features up in the online store by each row's entity keys.

    Args:
        online_get: the lookup (``project.online_features``).
        refs: the model's feature references (``view@3:feature``); the versions they pin are compared with those
            the online store serves, and a difference is reported in :attr:`warnings`.
        keys: the entity keys those features are looked up by, in order (resolved by the caller from the
            registered definitions: batch scoring does not read them).
        pinned: ``{view: version}`` the model was trained on (default: the versions ``refs`` pin).
        features: the model's input columns: input columns of those names are replaced by the joined values.
        read_all: read every input column (an on-demand feature's request fields come from the input).
        id_column: the output's id column, kept from the input even when a feature bears its name.
        model: the model's name, for messages.
    """

    def __init__(
        self,
        online_get: OnlineGet,
        refs: Sequence[str],
        keys: Sequence[str],
        pinned: Mapping[str, int | None] | None = None,
        *,
        features: Sequence[str] = (),
        read_all: bool = False,
        id_column: str | None = None,
        model: str = "the model",
    ) -> None:
        from keel.features import FeatureRef

        super().__init__(refs, keys, features=features, read_all=read_all, id_column=id_column, model=model)
        self.online_get = online_get
        parsed = [FeatureRef.parse(r) for r in self.refs]
        self.online_refs = [f"{p.view}:{p.feature}" for p in parsed]  # the store serves its latest version
        self.pinned = dict(pinned) if pinned is not None else {p.view: p.version for p in parsed}

    def prepare(self, table: pa.Table) -> pd.DataFrame:
        import pandas as pd

        entity = self._entity(table)
        found = self.online_get(self.online_refs, {k: entity[k].tolist() for k in self.keys})
        for view, version in found.versions.items():
            wanted = self.pinned.get(view)
            if wanted is not None and version != wanted:
                note = f"online values of {view!r} come from version {version}; the model was trained on {wanted}"
                if note not in self.warnings:
                    self.warnings.append(note)
        values = found.to_frame().reset_index(drop=True)
        joined: pd.DataFrame = pd.concat([entity.reset_index(drop=True), values], axis=1)
        return joined
