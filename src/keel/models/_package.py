"""The model package: the one thing in Keel that turns raw features into predictions.

It bundles the fitted preprocessing and estimator with the input schema seen in training (names, dtypes,
categories, ranges) and the exact feature references (with versions) the model was trained on. In-process,
HTTP, batch and Spark scoring all go through :meth:`ModelPackage.predict`, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from keel.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

#: How many categories of a string feature the schema remembers.
MAX_CATEGORIES = 1000


@dataclass(frozen=True)
class FeatureSchema:
    """What training saw of one input column.

    Attributes:
        name: the column.
        dtype: its Keel dtype.
        categories: for strings, the categories seen (up to 1,000), sorted.
        min: for numbers, the smallest value seen.
        max: for numbers, the largest value seen.
        null_fraction: share of missing values in training.
    """

    name: str
    dtype: str
    categories: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    null_fraction: float = 0.0


@dataclass(frozen=True)
class InputSchema:
    """The model's input columns, in order."""

    features: tuple[FeatureSchema, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def to_dict(self) -> list[dict[str, Any]]:
        return [{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(f).items()} for f in self.features]

    @classmethod
    def from_dict(cls, items: list[dict[str, Any]]) -> InputSchema:
        return cls(
            tuple(
                FeatureSchema(
                    **{**i, "categories": tuple(i["categories"]) if i.get("categories") is not None else None}
                )
                for i in items
            )
        )

    @classmethod
    def infer(cls, frame: pd.DataFrame, dtypes: dict[str, str]) -> InputSchema:
        """The schema of ``frame``'s columns (``dtypes`` gives each one's Keel dtype)."""
        out = []
        for name, dtype in dtypes.items():
            col = frame[name]
            nulls = float(col.isna().mean()) if len(col) else 0.0
            if dtype == "string":
                cats = sorted({str(v) for v in col.dropna().unique()})
                out.append(FeatureSchema(name, dtype, tuple(cats[:MAX_CATEGORIES]), null_fraction=nulls))
            elif dtype in ("int64", "float64", "bool", "timestamp"):
                values = _numeric(col, dtype, name)
                finite = values[np.isfinite(values)]
                lo = float(finite.min()) if finite.size else None
                hi = float(finite.max()) if finite.size else None
                out.append(FeatureSchema(name, dtype, None, lo, hi, nulls))
            else:
                out.append(FeatureSchema(name, dtype, null_fraction=nulls))
        return cls(tuple(out))


_EPOCH_US = 10**6


def _bad_value(col: pd.Series, bad: pd.Series | np.ndarray, name: str, dtype: str, what: str) -> ValidationError:
    """The error for the first value of ``col`` flagged in ``bad``, naming its column and row."""
    row = int(np.argmax(np.asarray(bad)))
    value = col.iloc[row]
    value = value.item() if isinstance(value, np.generic) else value
    return ValidationError(
        f"column {name!r} ({dtype}): row {row} has {value!r}, which is not {what}", field=name, row=row
    )


def _numeric(col: pd.Series, dtype: str, name: str) -> np.ndarray:
    """A float64 array of a numeric, boolean or timestamp column (missing -> NaN).

    Timestamps become seconds since the epoch (UTC; naive values are taken as UTC), whatever the column's
    time unit, so a frame in nanoseconds and one in microseconds give the same numbers.

    Raises:
        ValidationError: a value is not of the column's type (the message names the row).
    """
    import pandas as pd

    if dtype == "timestamp":
        if pd.api.types.is_datetime64_any_dtype(col):
            ts = col.dt.tz_localize("UTC") if getattr(col.dt, "tz", None) is None else col.dt.tz_convert("UTC")
        else:
            ts = pd.to_datetime(col, utc=True, errors="coerce", format="ISO8601")
            bad = ts.isna() & col.notna()
            if bad.any():
                raise _bad_value(col, bad, name, dtype, "a timestamp")
        us = ts.astype("datetime64[us, UTC]")  # the unit of every stored timestamp; ns would overflow after 2262
        out = np.asarray(us.array.asi8, dtype=np.float64) / _EPOCH_US
        out[us.isna().to_numpy()] = np.nan
        return out
    if dtype == "bool" or pd.api.types.is_bool_dtype(col):
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            return col.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
        values = col.to_numpy(dtype=object)
        wrong = np.array([not (pd.isna(v) or isinstance(v, bool | np.bool_ | int | np.integer)) for v in values], bool)
        if wrong.any():
            raise _bad_value(col, wrong, name, dtype, "a boolean")
        return np.array([np.nan if pd.isna(v) else float(v) for v in values], dtype=np.float64)
    if pd.api.types.is_numeric_dtype(col):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    converted = pd.to_numeric(col, errors="coerce")
    bad = converted.isna() & col.notna()
    if bad.any():
        raise _bad_value(col, bad, name, dtype, "a number")
    return converted.to_numpy(dtype=np.float64, na_value=np.nan)


@dataclass
class ModelPackage:
    """Fitted preprocessing + estimator + input schema + feature lineage, with ``predict`` on raw features.

    Args:
        name: the model's name (the training spec's).
        task: ``classification`` or ``regression``.
        label: the label column it predicts.
        estimator: the fitted estimator.
        preprocessor: the fitted transformer (``None``: the estimator takes the prepared columns as they are).
        schema: the input columns as seen in training.
        feature_refs: the feature references trained on, each pinned to the version used (``view@3:feature``).
        classes: the classes, for classifiers.
        metadata: run id, metrics and other facts worth carrying with the model.
    """

    name: str
    task: str
    label: str
    estimator: Any
    preprocessor: Any
    schema: InputSchema
    feature_refs: list[str]
    classes: list[Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        """The input columns, in order."""
        return self.schema.names

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The input columns of ``frame`` in training order and types (extra columns are ignored).

        Raises:
            ValidationError: a column is missing, or a value does not fit its column's type (named with its row).
        """
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            raise ValidationError(f"model {self.name!r} predicts on a pandas DataFrame, got {type(frame).__name__}")
        missing = [f.name for f in self.schema.features if f.name not in frame.columns]
        if missing:
            raise ValidationError(
                f"model {self.name!r}: input lacks feature column(s) {missing}; "
                f"it needs: {', '.join(self.feature_names)}",
                field=missing[0],
            )
        columns: dict[str, Any] = {}
        for f in self.schema.features:
            col = frame[f.name]
            if f.dtype == "string":
                values = col.to_numpy(dtype=object, na_value=np.nan)
                columns[f.name] = np.array(
                    [v if isinstance(v, str) or v is np.nan else _as_str(v) for v in values], dtype=object
                )
            else:
                columns[f.name] = _numeric(col, f.dtype, f.name)
        return pd.DataFrame(columns, index=frame.index)

    def transform(self, frame: pd.DataFrame) -> Any:
        """The estimator's input matrix for ``frame``."""
        return self._matrix(self.prepare(frame))

    def _matrix(self, prepared: pd.DataFrame) -> Any:
        return prepared if self.preprocessor is None else self.preprocessor.transform(prepared)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predictions for each row of ``frame`` (raw feature columns, as retrieval returns them)."""
        prepared = self.prepare(frame)
        if len(prepared) == 0:  # scikit-learn refuses zero rows; no rows, no predictions
            return np.empty(0, dtype=np.asarray(self.classes if self.classes else [0.0]).dtype)
        return np.asarray(self.estimator.predict(self._matrix(prepared)))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities for each row (columns in the order of :attr:`classes`)."""
        if self.task != "classification" or not hasattr(self.estimator, "predict_proba"):
            raise ValidationError(f"model {self.name!r} is a {self.task} model without class probabilities")
        prepared = self.prepare(frame)
        if len(prepared) == 0:
            return np.empty((0, len(self.classes or [])), dtype=np.float64)
        return np.asarray(self.estimator.predict_proba(self._matrix(prepared)))

    def __repr__(self) -> str:
        return (
            f"ModelPackage({self.name!r}, task={self.task!r}, estimator={type(self.estimator).__name__}, "
            f"features={self.feature_names})"
        )


def _as_str(value: Any) -> Any:
    return value if value is None else str(value)
