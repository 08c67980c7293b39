"""The model package: the one thing in Keel that turns raw features into predictions.

It bundles the fitted preprocessing and estimator with the input schema seen in training (names, dtypes,
categories, ranges) and the exact feature references (with versions) the model was trained on. In-process,
HTTP, batch and Spark scoring all go through :meth:`ModelPackage.predict`, so they cannot disagree.
"""

from __future__ import annotations

import logging
import warnings
import weakref
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from keel.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

#: How many categories of a string feature the schema remembers.
MAX_CATEGORIES = 1000

log = logging.getLogger(__name__)


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
        self._check_frame(frame)
        return pd.DataFrame(self._prepared_columns(frame), index=frame.index)

    def _prepared_columns(self, frame: pd.DataFrame | Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Each input column of ``frame`` in training order and type: float64 arrays, object arrays of strings.

        ``frame`` is a DataFrame, or (inside Keel) a mapping of column name to array; a float64 array of a
        numeric column is taken as is, anything else goes through the same pandas conversion as a frame's.
        """
        import pandas as pd

        columns: dict[str, np.ndarray] = {}
        mapping = not isinstance(frame, pd.DataFrame)
        for f in self.schema.features:
            raw = frame[f.name]
            if mapping and f.dtype != "string" and isinstance(raw, np.ndarray) and raw.dtype == np.float64:
                columns[f.name] = raw  # what _numeric gives for a float64 column
                continue
            if mapping and f.dtype == "string" and isinstance(raw, np.ndarray) and raw.dtype == object:
                values = raw.tolist()
                if all(type(v) is str or v is None for v in values):  # what the frame's path gives for these
                    columns[f.name] = np.array([np.nan if v is None else v for v in values], dtype=object)
                    continue
            col = pd.Series(raw) if mapping else raw
            if f.dtype == "string":
                values = col.to_numpy(dtype=object, na_value=np.nan)
                columns[f.name] = np.array(
                    [v if isinstance(v, str) or v is np.nan else _as_str(v) for v in values], dtype=object
                )
            else:
                columns[f.name] = _numeric(col, f.dtype, f.name)
        return columns

    def _checked_columns(self, frame: pd.DataFrame | Mapping[str, Any]) -> dict[str, np.ndarray]:
        import pandas as pd

        if isinstance(frame, pd.DataFrame):
            self._check_frame(frame)
            return self._prepared_columns(frame)
        missing = [f.name for f in self.schema.features if f.name not in frame]
        if missing:
            raise ValidationError(
                f"model {self.name!r}: input lacks feature column(s) {missing}; "
                f"it needs: {', '.join(self.feature_names)}",
                field=missing[0],
            )
        return self._prepared_columns(frame)

    def _check_frame(self, frame: pd.DataFrame) -> None:
        missing = [f.name for f in self.schema.features if f.name not in frame.columns]
        if missing:
            raise ValidationError(
                f"model {self.name!r}: input lacks feature column(s) {missing}; "
                f"it needs: {', '.join(self.feature_names)}",
                field=missing[0],
            )

    def transform(self, frame: pd.DataFrame) -> Any:
        """The estimator's input matrix for ``frame``."""
        self._check_type(frame)
        columns = self._checked_columns(frame)
        return self._matrix_of(columns, len(frame))

    def _check_type(self, frame: Any) -> None:
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            raise ValidationError(f"model {self.name!r} predicts on a pandas DataFrame, got {type(frame).__name__}")

    def _matrix(self, prepared: pd.DataFrame) -> Any:
        return prepared if self.preprocessor is None else self.preprocessor.transform(prepared)

    def _matrix_of(self, columns: dict[str, np.ndarray], rows: int) -> Any:
        """The estimator's input for prepared ``columns``: the replayed preprocessing when it has a verified
        plan (bit-identical to the preprocessor's output), else the preprocessor on a frame of them."""
        plan = self._plan()
        if plan is not None:
            return plan.matrix(columns, rows)
        import pandas as pd

        return self._matrix(pd.DataFrame(columns, index=pd.RangeIndex(rows)))

    def _plan(self) -> _Plan | None:
        plan = self.__dict__.get("_fast_plan", _UNSET)
        if plan is _UNSET:
            plan = _Plan.build(self)
            self.__dict__["_fast_plan"] = plan  # not a field: never serialized, compared or copied
        return plan if isinstance(plan, _Plan) else None

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predictions for each row of ``frame`` (raw feature columns, as retrieval returns them)."""
        return self.score(frame, probabilities=False).predictions

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities for each row (columns in the order of :attr:`classes`)."""
        if not self.has_probabilities:
            raise ValidationError(f"model {self.name!r} is a {self.task} model without class probabilities")
        self._check_type(frame)
        columns = self._checked_columns(frame)
        if len(frame) == 0:
            return np.empty((0, len(self.classes or [])), dtype=np.float64)
        return np.asarray(self.estimator.predict_proba(self._matrix_of(columns, len(frame))))

    @property
    def has_probabilities(self) -> bool:
        """Whether the model gives class probabilities (a classifier with ``predict_proba``)."""
        return self.task == "classification" and hasattr(self.estimator, "predict_proba")

    def score(self, frame: pd.DataFrame | Mapping[str, Any], *, probabilities: bool = True) -> Scores:
        """Prepared inputs, predictions and (``probabilities`` and a classifier) class probabilities, at once.

        The same numbers as :meth:`prepare`, :meth:`predict` and :meth:`predict_proba`, each input prepared once
        (and, for a histogram gradient boosting classifier, its trees walked once for both answers).
        ``frame`` may also be a mapping of column name to array of equal lengths (Keel's own callers).
        """
        import pandas as pd

        if isinstance(frame, pd.DataFrame):
            rows = len(frame)
        else:
            self._check_mapping(frame)
            rows = len(next(iter(frame.values()))) if frame else 0
        columns = self._checked_columns(frame)
        proba = probabilities and self.has_probabilities
        if rows == 0:  # scikit-learn refuses zero rows; no rows, no predictions
            empty = np.empty(0, dtype=np.asarray(self.classes if self.classes else [0.0]).dtype)
            return Scores(columns, empty, np.empty((0, len(self.classes or [])), dtype=np.float64) if proba else None)
        matrix = self._matrix_of(columns, rows)
        plan = self._plan()
        if proba and plan is not None and plan.joint:
            predictions, probs = _joint_hgb(self.estimator, matrix)
            return Scores(columns, predictions, probs)
        predictions = np.asarray(self.estimator.predict(matrix))
        return Scores(columns, predictions, np.asarray(self.estimator.predict_proba(matrix)) if proba else None)

    def _check_mapping(self, frame: Any) -> None:
        if not isinstance(frame, Mapping):
            raise ValidationError(f"model {self.name!r} predicts on a pandas DataFrame, got {type(frame).__name__}")

    def __repr__(self) -> str:
        return (
            f"ModelPackage({self.name!r}, task={self.task!r}, estimator={type(self.estimator).__name__}, "
            f"features={self.feature_names})"
        )


def _as_str(value: Any) -> Any:
    return value if value is None else str(value)


# -- the fast path -------------------------------------------------------------------------------------------
_UNSET = object()


@dataclass(frozen=True)
class Scores:
    """What :meth:`ModelPackage.score` gives.

    Attributes:
        prepared: each input column as prepared for the model (float64, or object for strings), by name.
        predictions: one per row.
        probabilities: one row of class probabilities per input row (``None`` when not asked or not a
            classifier).
    """

    prepared: dict[str, np.ndarray]
    predictions: np.ndarray
    probabilities: np.ndarray | None


class _Numeric:
    """Numeric columns: imputed with the fitted statistics, then (optionally) standardized."""

    def __init__(self, columns: list[str], fill: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None):
        self.columns = columns
        self.fill = fill
        self.mean = mean
        self.scale = scale
        self.width = len(columns)

    def write(self, columns: Mapping[str, np.ndarray], out: np.ndarray, at: int) -> None:
        block = out[:, at : at + self.width]
        for j, name in enumerate(self.columns):
            block[:, j] = columns[name]
        missing = np.isnan(block)
        if missing.any():
            np.copyto(block, np.broadcast_to(self.fill, block.shape), where=missing)
        if self.mean is not None:  # as StandardScaler.transform: X -= mean_; X /= scale_
            block -= self.mean
        if self.scale is not None:
            block /= self.scale


class _Categorical:
    """String columns: missing values filled with the fitted constant, then ordinal or one-hot codes."""

    def __init__(
        self, columns: list[str], fill: list[Any], codes: list[dict[Any, int]], onehot: bool, unknown: float
    ) -> None:
        self.columns = columns
        self.fill = fill
        self.codes = codes
        self.onehot = onehot
        self.unknown = unknown
        self.widths = [len(c) if onehot else 1 for c in codes]
        self.width = sum(self.widths)

    def write(self, columns: Mapping[str, np.ndarray], out: np.ndarray, at: int) -> None:
        for j, name in enumerate(self.columns):
            fill, codes = self.fill[j], self.codes[j]
            # missing as SimpleImputer sees it in an object column: a value unequal to itself (NaN)
            found = [codes.get(fill if v != v else v, -1) for v in columns[name].tolist()]
            if self.onehot:
                block = out[:, at : at + self.widths[j]]
                block[:] = 0.0
                index = np.asarray(found, dtype=np.int64)
                known = index >= 0
                block[np.flatnonzero(known), index[known]] = 1.0
            else:
                index = np.asarray(found, dtype=np.float64)
                if self.unknown != -1:
                    index[index == -1] = self.unknown
                out[:, at] = index
            at += self.widths[j]


class _Plan:
    """The fitted automatic preprocessing replayed on numpy arrays, without pandas or per-call validation.

    Built only from the building blocks of :func:`keel.training._preprocessing.auto_preprocessor` (a
    ``ColumnTransformer`` of ``SimpleImputer``, ``StandardScaler``, ``OrdinalEncoder``, ``OneHotEncoder``
    pipelines), and kept only when it reproduces the preprocessor's own output bit for bit on a probe of the
    schema (every category, an unseen one, missing values, the training range and beyond). ``joint``: the
    estimator is a histogram gradient boosting classifier whose predictions and probabilities come from one
    walk of its trees, checked on the same probe.
    """

    def __init__(self, parts: list[_Numeric | _Categorical]) -> None:
        self.parts = parts
        self.width = sum(p.width for p in parts)
        self.joint = False
        #: The memory layout the preprocessor itself produces (``F`` when one part's output is passed through
        #: as pandas gives it), kept so that the estimator sees the same layout on both paths.
        self.order: Literal["C", "F"] = "C"

    def matrix(self, columns: Mapping[str, np.ndarray], rows: int) -> np.ndarray:
        out = np.empty((rows, self.width), dtype=np.float64, order=self.order)
        at = 0
        for part in self.parts:
            part.write(columns, out, at)
            at += part.width
        return out

    @classmethod
    def build(cls, package: ModelPackage) -> _Plan | None:
        try:
            plan = cls._compile(package.preprocessor)
            if plan is None:
                return None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if not plan._reproduces(package):
                    log.debug("model %r: the replayed preprocessing differs; using the preprocessor", package.name)
                    return None
        except Exception:  # anything unexpected: the preprocessor itself is always right
            log.debug("model %r: no fast preprocessing path", package.name, exc_info=True)
            return None
        return plan

    @classmethod
    def _compile(cls, pre: Any) -> _Plan | None:
        if pre is None:
            return None
        from sklearn.compose import ColumnTransformer
        from sklearn.pipeline import Pipeline

        if type(pre) is not ColumnTransformer or getattr(pre, "sparse_output_", True):
            return None
        parts: list[_Numeric | _Categorical] = []
        for _name, transformer, cols in pre.transformers_:
            if isinstance(transformer, str) and transformer == "drop":
                continue
            if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
                return None
            if not cols:
                continue
            steps = [s for _, s in transformer.steps] if type(transformer) is Pipeline else [transformer]
            part = _part(cols, steps)
            if part is None:
                return None
            parts.append(part)
        return cls(parts) if parts else None

    def _reproduces(self, package: ModelPackage) -> bool:
        import pandas as pd

        columns = _probe(package.schema)
        rows = len(next(iter(columns.values())))
        expected = package.preprocessor.transform(pd.DataFrame(columns))
        if not isinstance(expected, np.ndarray) or expected.dtype != np.float64:
            return False
        if not expected.flags.c_contiguous and not expected.flags.f_contiguous:
            return False
        self.order = "C" if expected.flags.c_contiguous else "F"
        got = self.matrix(columns, rows)
        if expected.shape != got.shape or not np.array_equal(expected.view(np.int64), got.view(np.int64)):
            return False
        estimator = package.estimator
        if _is_hgb_classifier(estimator):
            predictions, probabilities = _joint_hgb(estimator, got)
            self.joint = bool(
                np.array_equal(predictions, np.asarray(estimator.predict(expected)))
                and np.array_equal(probabilities, np.asarray(estimator.predict_proba(expected)))
            )
        return True


def _part(cols: list[str], steps: list[Any]) -> _Numeric | _Categorical | None:
    """The replay of one ``ColumnTransformer`` part, or ``None`` when a step is not one it knows."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    if not steps or type(steps[0]) is not SimpleImputer:
        return None
    imputer = steps[0]
    missing = imputer.missing_values
    if imputer.add_indicator or not (isinstance(missing, float) and missing != missing):
        return None
    stats = np.asarray(imputer.statistics_)
    if len(stats) != len(cols):
        return None
    rest = steps[1:]
    if stats.dtype.kind == "f":
        if np.isnan(stats).any() or any(type(s) is not StandardScaler for s in rest) or len(rest) > 1:
            return None
        mean = scale = None
        if rest:
            scaler = rest[0]
            mean = np.asarray(scaler.mean_, dtype=np.float64) if scaler.with_mean else None
            scale = np.asarray(scaler.scale_, dtype=np.float64) if scaler.with_std else None
        return _Numeric(cols, stats.astype(np.float64), mean, scale)
    if len(rest) != 1:
        return None
    encoder = rest[0]
    if getattr(encoder, "_infrequent_enabled", False) or np.dtype(encoder.dtype) != np.float64:
        return None
    categories = [list(c) for c in encoder.categories_]
    if len(categories) != len(cols) or not all(isinstance(v, str) for c in categories for v in c):
        return None
    codes = [{v: i for i, v in enumerate(c)} for c in categories]
    if type(encoder) is OrdinalEncoder:
        if encoder.handle_unknown != "use_encoded_value":
            return None
        unknown = float(encoder.unknown_value)
        return _Categorical(cols, list(stats), codes, onehot=False, unknown=unknown)
    if type(encoder) is OneHotEncoder:
        if encoder.handle_unknown != "ignore" or encoder.drop_idx_ is not None or encoder.sparse_output:
            return None
        return _Categorical(cols, list(stats), codes, onehot=True, unknown=-1.0)
    return None


def _probe(schema: InputSchema) -> dict[str, np.ndarray]:
    """Prepared columns that visit every category, an unseen one, missing values and the training range."""
    rows = 12
    columns: dict[str, np.ndarray] = {}
    for f in schema.features:
        if f.dtype == "string":
            cats = list(f.categories or ("a",))
            values: list[Any] = [*cats[: rows - 3], "\x00keel-unseen", np.nan, ""]
            values += [cats[i % len(cats)] for i in range(rows - len(values))]
            columns[f.name] = np.array(values[:rows], dtype=object)
        else:
            lo = f.min if f.min is not None else 0.0
            hi = f.max if f.max is not None else 1.0
            numbers = [np.nan, lo, hi, (lo + hi) / 2, lo - 1.5, hi * 2 + 1, 0.0, -0.0, np.nan, 1e9, -1e9, 0.25]
            columns[f.name] = np.array(numbers[:rows], dtype=np.float64)
    return columns


def _is_hgb_classifier(estimator: Any) -> bool:
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        return False
    return (
        type(estimator) is HistGradientBoostingClassifier
        and hasattr(estimator, "_raw_predict")
        and hasattr(estimator, "_loss")
    )


#: Up to this many rows, a histogram gradient boosting model's trees are walked all at once with NumPy (one
#: step per tree level for every tree together) instead of tree by tree: scikit-learn's per-tree call costs
#: a few microseconds each (hundreds per row), which is most of a one-record request.
SMALL_BATCH_ROWS = 64
_FORESTS: weakref.WeakKeyDictionary[Any, _Forest | None] = weakref.WeakKeyDictionary()


class _Forest:
    """Every tree of a fitted histogram gradient boosting model in one node table, walked level by level.

    The raw predictions are summed in scikit-learn's order (zero, plus the baseline, plus each iteration's
    tree in turn), so they are the same floats; :meth:`of` keeps a forest only when it reproduces the
    estimator's ``_raw_predict`` bit for bit on a probe, and never for categorical splits.
    """

    def __init__(self, estimator: Any) -> None:
        per_class: list[list[np.ndarray]] = [[] for _ in range(estimator.n_trees_per_iteration_)]
        for iteration in estimator._predictors:
            for k, predictor in enumerate(iteration):
                per_class[k].append(predictor.nodes)
        self.baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64).ravel()
        self.n_features = int(estimator.n_features_in_)
        self.classes: list[tuple[np.ndarray, ...]] = []
        for trees in per_class:
            sizes = np.array([len(t) for t in trees])
            offsets = np.r_[0, np.cumsum(sizes)[:-1]]
            nodes = np.concatenate(trees)
            shift = np.repeat(offsets, sizes)
            self.classes.append(
                (
                    offsets.astype(np.intp),  # the roots
                    nodes["feature_idx"].astype(np.intp),
                    nodes["num_threshold"].astype(np.float64),
                    nodes["missing_go_to_left"].astype(bool),
                    (nodes["left"].astype(np.intp) + shift),
                    (nodes["right"].astype(np.intp) + shift),
                    nodes["is_leaf"].astype(bool),
                    nodes["value"].astype(np.float64),
                )
            )
        self.categorical = any(bool(t["is_categorical"].any()) for trees in per_class for t in trees)

    def raw(self, x: np.ndarray) -> np.ndarray:
        """``estimator._raw_predict(x)`` for float64 rows ``x``."""
        n = x.shape[0]
        out = np.empty((n, len(self.classes)), dtype=np.float64, order="F")
        for k, (roots, feature, threshold, nan_left, left, right, leaf, value) in enumerate(self.classes):
            node = np.broadcast_to(roots, (n, roots.size)).copy()
            active = ~leaf[node]
            while active.any():
                at = node[active]
                cell = x[np.nonzero(active)[0], feature[at]]
                go_left = np.where(np.isnan(cell), nan_left[at], cell <= threshold[at])
                node[active] = np.where(go_left, left[at], right[at])
                active = ~leaf[node]
            # 0, the baseline, then each tree's leaf in iteration order, added one at a time (accumulate is
            # sequential, unlike sum): the very additions scikit-learn makes, so the same floats.
            terms = np.empty((n, node.shape[1] + 2), dtype=np.float64)
            terms[:, 0] = 0.0
            terms[:, 1] = self.baseline[k]
            terms[:, 2:] = value[node]
            out[:, k] = np.add.accumulate(terms, axis=1)[:, -1]
        return out

    @classmethod
    def of(cls, estimator: Any) -> _Forest | None:
        """The estimator's forest, compiled once and kept only if it reproduces ``_raw_predict`` exactly."""
        try:
            return _FORESTS[estimator]
        except KeyError:
            pass
        forest: _Forest | None
        try:
            forest = cls(estimator)
            if forest.categorical:
                forest = None
            else:
                probe = _forest_probe(forest)
                if not np.array_equal(forest.raw(probe), estimator._raw_predict(probe)):
                    forest = None
        except Exception:  # an estimator this does not understand: scikit-learn's own walk
            log.debug("no NumPy forest walk for %r", type(estimator).__name__, exc_info=True)
            forest = None
        _FORESTS[estimator] = forest
        return forest


def _forest_probe(forest: _Forest) -> np.ndarray:
    """Rows that take every split's both ways at its threshold, plus missing values and random ones."""
    rng = np.random.default_rng(0)
    thresholds = np.concatenate([c[2][~c[6]] for c in forest.classes])
    features = np.concatenate([c[1][~c[6]] for c in forest.classes])
    rows = [np.full(forest.n_features, np.nan)]
    for f in range(forest.n_features):
        ts = np.unique(thresholds[features == f])
        picks = ts[rng.integers(0, ts.size, 24)] if ts.size else np.array([0.0])
        for t in picks:
            for v in (t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf)):
                row = rng.standard_normal(forest.n_features)
                row[f] = v
                rows.append(row)
    probe = np.array(rows, dtype=np.float64)
    probe[rng.random(probe.shape) < 0.1] = np.nan
    return probe


def _joint_hgb(estimator: Any, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(predict(X), predict_proba(X))`` of a ``HistGradientBoostingClassifier`` from one walk of its trees,
    computed as its own ``predict`` and ``predict_proba`` compute them (checked against them when the plan is
    built). Small batches walk every tree at once (:class:`_Forest`)."""
    forest = _Forest.of(estimator) if matrix.shape[0] <= SMALL_BATCH_ROWS else None
    if forest is not None and matrix.shape[1] != forest.n_features:
        forest = None  # scikit-learn's own walk raises its own error
    raw = forest.raw(np.asarray(matrix, dtype=np.float64)) if forest is not None else estimator._raw_predict(matrix)
    # np.argmax([0.5, 0.5]) is 0, not 1: "> 0", as scikit-learn's predict
    encoded = (raw.ravel() > 0).astype(int) if raw.shape[1] == 1 else np.argmax(raw, axis=1)
    return np.asarray(estimator.classes_[encoded]), np.asarray(estimator._loss.predict_proba(raw))
