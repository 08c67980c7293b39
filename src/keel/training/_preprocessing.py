"""Preprocessing: turn raw feature columns into the estimator's numeric matrix, fitted on training rows only."""

from __future__ import annotations

from typing import Any

from keel.errors import ValidationError

NUMERIC = ("int64", "float64", "bool", "timestamp")
MISSING_CATEGORY = "__missing__"


def is_tree_model(estimator: Any) -> bool:
    """Whether ``estimator`` is tree-based (no scaling needed; ordinal codes are as good as one-hot)."""
    from sklearn.ensemble import BaseEnsemble, HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.tree import BaseDecisionTree

    if isinstance(estimator, BaseDecisionTree | BaseEnsemble | HistGradientBoostingClassifier):
        return True
    if isinstance(estimator, HistGradientBoostingRegressor):
        return True
    module = type(estimator).__module__.split(".")[0]
    return module in ("lightgbm", "xgboost", "catboost")


def auto_preprocessor(dtypes: dict[str, str], estimator: Any) -> Any:
    """A ``ColumnTransformer`` for ``dtypes`` (column -> Keel dtype), chosen for ``estimator``.

    Numbers (and booleans and timestamps, as numbers) are median-imputed, and scaled unless the estimator is
    tree-based; strings are imputed with a ``__missing__`` category, then one-hot encoded (unknown categories
    ignored) or, for trees, ordinal-encoded (unknown categories as -1).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    unsupported = [c for c, d in dtypes.items() if d not in (*NUMERIC, "string")]
    if unsupported:
        raise ValidationError(
            f"automatic preprocessing does not handle column(s) {unsupported} "
            f"({', '.join(dtypes[c] for c in unsupported)}); pass preprocessing=<a scikit-learn transformer> "
            "or leave those features out",
            field=unsupported[0],
        )
    tree = is_tree_model(estimator)
    numeric = [c for c, d in dtypes.items() if d in NUMERIC]
    strings = [c for c, d in dtypes.items() if d == "string"]
    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median", keep_empty_features=True))]
        if not tree:
            steps.append(("scale", StandardScaler()))
        parts.append(("numeric", Pipeline(steps), numeric))
    if strings:
        encoder: Any = (
            OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
            if tree
            else OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        )
        parts.append(
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
                        ("encode", encoder),
                    ]
                ),
                strings,
            )
        )
    return ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)
