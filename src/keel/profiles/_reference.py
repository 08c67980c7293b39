"""What a model version is compared against: the profile of its training data and of its predictions.

The profile is computed once, when the run is trained (the training split is in memory then), stored in the
artifact store, and referenced from the run's lineage (``lineage["reference_profile"]``); every version
registered from the run carries it, and no check ever recomputes it.

Features are profiled on the training split (what the model learned from). Predictions are profiled on the
validation split: a model's predictions on the rows it was fitted on are sharper than on any new row (trees
above all), so in-sample predictions would make every live window look drifted; out-of-sample predictions are
what live traffic without drift looks like.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from keel.profiles._profile import ReferenceProfile, build_profile, profile_values

if TYPE_CHECKING:
    from keel.engines import Engine, PackageSource
    from keel.models._package import ModelPackage

#: Keel dtypes profiled as numbers; every other dtype (strings, booleans) is profiled as categories.
NUMERIC_DTYPES = frozenset({"float64", "float32", "int64", "int32", "int16", "int8"})
#: The name of the predictions' column in profiles and drift results.
PREDICTION = "prediction"


def feature_kinds(package: ModelPackage) -> dict[str, str]:
    """``numeric`` or ``categorical`` for each input column of ``package``."""
    return {f.name: "numeric" if f.dtype in NUMERIC_DTYPES else "categorical" for f in package.schema.features}


def positive_class(package: ModelPackage) -> Any | None:
    """The class whose probability stands for a binary classifier's prediction (``classes[1]``), else None."""
    classes = package.classes
    if package.task == "classification" and classes is not None and len(classes) == 2:
        return classes[1]
    return None


def prediction_values(package: ModelPackage, predictions: np.ndarray, proba: np.ndarray | None) -> pd.Series:
    """What prediction drift is measured on, the same way at training and at check time.

    A binary classifier's probability of the positive class (a number), a multi-class classifier's predicted
    class (a category), a regressor's prediction (a number).
    """
    if package.task == "classification":
        if positive_class(package) is not None and proba is not None:
            return pd.Series(np.asarray(proba, dtype=np.float64)[:, 1], name=PREDICTION)
        return pd.Series([str(p) for p in predictions], name=PREDICTION, dtype="string")
    return pd.Series(np.asarray(predictions, dtype=np.float64), name=PREDICTION)


def reference_profile(
    package: ModelPackage, train: pd.DataFrame, predictions: np.ndarray, proba: np.ndarray | None
) -> ReferenceProfile:
    """The profile of the training rows ``train`` (model input columns) and of the validation predictions.

    ``predictions`` and ``proba`` are the model's answers on the validation split (already computed to
    evaluate the run); with no validation rows there is no prediction profile.
    """
    kinds = feature_kinds(package)
    profile = build_profile(train[list(kinds)].reset_index(drop=True), kinds=kinds)
    if len(predictions) == 0:
        return profile
    values = prediction_values(package, predictions, proba)
    kind = "numeric" if pd.api.types.is_float_dtype(values) else "categorical"
    return dataclasses.replace(profile, prediction=profile_values(PREDICTION, values, kind))


def profile_of_frame(package: ModelPackage, frame: pd.DataFrame) -> ReferenceProfile:
    """A profile of rows given as a file or frame (``keel monitor --reference``): features, and predictions."""
    kinds = feature_kinds(package)
    missing = [c for c in kinds if c not in frame.columns]
    if missing:
        from keel.errors import ValidationError

        raise ValidationError(
            f"the reference rows lack the model's input columns {', '.join(missing)}", field=missing[0]
        )
    rows = frame[list(kinds)].reset_index(drop=True)
    proba = package.predict_proba(rows) if positive_class(package) is not None else None
    predictions = package.predict(rows) if proba is None else np.empty(0)
    return build_profile(rows, kinds=kinds, predictions=prediction_values(package, predictions, proba))


def profile_at_rest(
    package: ModelPackage, path: str, engine: Engine, ref: PackageSource, scratch: str
) -> ReferenceProfile:
    """A profile of rows at rest (``keel monitor --reference PATH``), computed where they are: the features by
    :meth:`Engine.profile <keel.engines.Engine.profile>`, the predictions by scoring the rows on the engine
    (the package by reference, into a folder under ``scratch`` removed afterwards) and profiling what was
    written. The rows never come to this process: a reference larger than its memory is profiled on Spark.

    Raises:
        ValidationError: the rows lack an input column of the model, or there are none.
        NotFoundError: nothing at ``path``.
    """
    import uuid

    from keel._files import open_filesystem
    from keel.engines._base import Scoring
    from keel.engines._inputs import input_files
    from keel.engines._scoring import PROBA_PREFIX
    from keel.errors import ValidationError
    from keel.profiles._profile import HISTOGRAM_BINS, QUANTILE_GRID, column_from_summary

    files = input_files(path)
    shape = {"grid": QUANTILE_GRID.tolist(), "bins": HISTOGRAM_BINS}
    columns = {n: column_from_summary(s) for n, s in engine.profile(files, feature_kinds(package), **shape).items()}
    first = next(iter(columns.values()))
    rows = first.count + first.missing
    if rows == 0:
        raise ValidationError(f"the reference rows at {path} are empty; a profile needs at least one row")
    positive = positive_class(package)
    if positive is not None:
        column, kind = f"{PROBA_PREFIX}{positive}", "numeric"
    else:
        column, kind = PREDICTION, "categorical" if package.task == "classification" else "numeric"
    out = f"{scratch.rstrip('/')}/reference-{uuid.uuid4().hex}"
    try:
        engine.score(files, ref, out, scoring=Scoring(id_column=None, probabilities=positive is not None))
        scored = column_from_summary(engine.profile(input_files(out), {column: kind}, **shape)[column])
    finally:
        fs, root, _ = open_filesystem(out)
        if fs.exists(root):
            fs.rm(root, recursive=True)
    prediction = dataclasses.replace(scored, name=PREDICTION)
    return ReferenceProfile(columns=columns, rows=rows, prediction=prediction)
