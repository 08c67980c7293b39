"""The compiled preprocessing: the fitted automatic preprocessing replayed on numpy arrays, a speed path beside
the package that is used only when it gives the preprocessor's own output bit for bit (see
:class:`_CompiledPreprocessing`)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from keel.models._forest import _is_hgb_classifier, _joint_hgb

if TYPE_CHECKING:
    from keel.models._package import ModelPackage
    from keel.models._schema import InputSchema

log = logging.getLogger(__name__)


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


class _CompiledPreprocessing:
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
    def build(cls, package: ModelPackage) -> _CompiledPreprocessing | None:
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
    def _compile(cls, pre: Any) -> _CompiledPreprocessing | None:
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
