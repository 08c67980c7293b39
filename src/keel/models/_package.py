"""The model package: the one thing in Keel that turns raw features into predictions.

It bundles the fitted preprocessing and estimator with the input schema seen in training (names, dtypes,
categories, ranges) and the exact feature references (with versions) the model was trained on. In-process,
HTTP, batch and Spark scoring all go through :meth:`ModelPackage.score` (``predict`` and ``predict_proba`` are
views of it), so they cannot disagree.

Two speed paths sit beside it, each used only when it reproduces the slow path bit for bit on a probe: the
compiled preprocessing (:mod:`keel.models._compiled`) and the level-wise tree walk (:mod:`keel.models._forest`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from keel.errors import ValidationError
from keel.models._compiled import _CompiledPreprocessing
from keel.models._forest import _joint_hgb
from keel.models._input_check import RowLabel, check_frame, check_schema, check_table
from keel.models._schema import InputSchema, _numeric

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

# InputSchema lives in _schema; exported here too because _serialization imports it from this module.
__all__ = ["InputSchema", "ModelPackage", "Scores"]


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
            ValidationError: a column is missing, or a value does not fit its column's type (named with its row;
                see :mod:`keel.models._input_check` for what fits).
        """
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            raise ValidationError(f"model {self.name!r} predicts on a pandas DataFrame, got {type(frame).__name__}")
        self._check_frame(frame)
        check_frame(frame, self.schema, model=self.name)
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

    def _checked_columns(
        self, frame: pd.DataFrame | Mapping[str, Any], rows: RowLabel | None = None
    ) -> dict[str, np.ndarray]:
        """The prepared columns of ``frame``: a frame's values checked first (a mapping's are Keel's own, checked
        where they came in: a request's values, an Arrow table's columns)."""
        import pandas as pd

        if isinstance(frame, pd.DataFrame):
            self._check_frame(frame)
            check_frame(frame, self.schema, model=self.name, rows=rows)
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

    def _plan(self) -> _CompiledPreprocessing | None:
        plan = self.__dict__.get("_fast_plan", _UNSET)
        if plan is _UNSET:
            plan = _CompiledPreprocessing.build(self)
            self.__dict__["_fast_plan"] = plan  # not a field: never serialized, compared or copied
        return plan if isinstance(plan, _CompiledPreprocessing) else None

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

    def score(
        self, frame: pd.DataFrame | Mapping[str, Any], *, probabilities: bool = True, rows: RowLabel | None = None
    ) -> Scores:
        """Prepared inputs, predictions and (``probabilities`` and a classifier) class probabilities, at once.

        The same numbers as :meth:`prepare`, :meth:`predict` and :meth:`predict_proba`, each input prepared once
        (and, for a histogram gradient boosting classifier, its trees walked once for both answers).
        ``frame`` may also be a mapping of column name to array of equal lengths (Keel's own callers: the values
        are checked where they came in, see :meth:`arrow_columns`). ``rows`` says how an error names a frame's
        rows (default ``row <position>``).

        Raises:
            ValidationError: a feature column is missing; :class:`~keel.models.InputValuesError` a frame's column
                holds values its feature does not take (see :mod:`keel.models._input_check`).
        """
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            self._check_mapping(frame)
        count = len(frame) if isinstance(frame, pd.DataFrame) else len(next(iter(frame.values()))) if frame else 0
        columns = self._checked_columns(frame, rows)
        proba = probabilities and self.has_probabilities
        if count == 0:  # scikit-learn refuses zero rows; no rows, no predictions
            empty = np.empty(0, dtype=np.asarray(self.classes if self.classes else [0.0]).dtype)
            return Scores(columns, empty, np.empty((0, len(self.classes or [])), dtype=np.float64) if proba else None)
        matrix = self._matrix_of(columns, count)
        plan = self._plan()
        if proba and plan is not None and plan.joint:
            predictions, probs = _joint_hgb(self.estimator, matrix)
            return Scores(columns, predictions, probs)
        predictions = np.asarray(self.estimator.predict(matrix))
        return Scores(columns, predictions, np.asarray(self.estimator.predict_proba(matrix)) if proba else None)

    def arrow_columns(self, table: pa.Table | pa.RecordBatch, *, rows: RowLabel | None = None) -> dict[str, Any]:
        """The input of :meth:`score` for an Arrow table: the feature columns it holds, by name, their values
        checked first (vectorised; see :mod:`keel.models._input_check`).

        A float64 column of a numeric feature is handed over straight from Arrow as a numpy array (nulls as NaN,
        as pandas gives them; no copy when it has one chunk and no nulls); every other feature column goes
        through pandas, as :meth:`score` of ``table.to_pandas()`` would see it. The predictions are therefore
        those of ``score(table.to_pandas())``, bit for bit; batch scoring and both engines read Arrow this way.
        Columns that are not features are left out; a missing feature is reported by :meth:`score`.

        Args:
            table: the rows.
            rows: how an error names the row at a position of ``table`` (default ``row <position>``; batch
                scoring says ``input row 100003``).

        Raises:
            InputValuesError: a column holds values its feature does not take: the error names the column, how
                many rows of ``table`` and a few of them.
        """
        import pyarrow as pa

        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        check_table(table, self.schema, model=self.name, rows=rows)
        present = set(table.column_names)
        names = [f.name for f in self.schema.features if f.name in present]
        numeric = {f.name for f in self.schema.features if f.dtype != "string"}
        direct = [c for c in names if c in numeric and pa.types.is_float64(table.schema.field(c).type)]
        rest = [c for c in names if c not in direct]
        columns: dict[str, Any] = dict(table.select(rest).to_pandas().items()) if rest else {}
        for c in direct:
            columns[c] = table.column(c).to_numpy()  # float64; nulls -> NaN
        return columns

    def check_input_types(self, schema: pa.Schema, *, what: str) -> None:
        """Refuse, before any row is read, an input whose feature columns are of a type that cannot hold their
        features' values (an integer column for a string feature ...); ``what`` names the input in the message.

        Raises:
            ValidationError: naming the column, its type and the feature's dtype.
        """
        check_schema(schema, self.schema, model=self.name, what=what)

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


#: The compiled preprocessing not yet looked for (``None`` is kept once it is known there is none).
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
