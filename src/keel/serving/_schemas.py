"""Pydantic models describing the services' JSON bodies in the OpenAPI documentation.

The hot endpoints do not validate with them (see :mod:`keel.serving._body`); they are the documentation of
the contract, and tests check that the endpoints keep to it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ErrorDetail",
    "ErrorResponse",
    "FeaturesRequest",
    "FeaturesResponse",
    "HealthResponse",
    "ModelInfo",
    "ModelsResponse",
    "PredictResponse",
    "PredictionWarning",
    "PushRequest",
    "PushResponse",
    "ReadyResponse",
]


class ErrorDetail(BaseModel):
    """What went wrong."""

    type: str = Field(description="ValidationError, NotFoundError, BackendError, AuthenticationError, ...")
    message: str = Field(description="What was wrong, where, and what to do about it.")
    field: str | None = Field(None, description="The offending field, column or feature reference.")
    row: int | None = Field(None, description="The offending entity or row, counting from 0.")
    request_id: str | None = Field(None, description="The request's id, as in the X-Request-ID header and logs.")


class ErrorResponse(BaseModel):
    """Every error answer has this shape."""

    error: ErrorDetail


class HealthResponse(BaseModel):
    """The process is up."""

    status: Literal["ok"] = "ok"
    service: str
    version: str


class FeaturesRequest(BaseModel):
    """Feature references and the entities to read them for."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "features": ["customer_activity:spend_30d", "customer_profile:plan"],
                    "entities": [{"customer_id": 100042}],
                },
                {
                    "features": ["customer_activity:*"],
                    "entities": {"customer_id": [100042, 100007]},
                    "full_feature_names": True,
                },
            ]
        },
    )

    features: list[str] = Field(
        description="References 'view:feature' or 'view:*' (every feature of the view).", min_length=1
    )
    entities: list[dict[str, Any]] | dict[str, list[Any]] = Field(
        description="One object of join keys per entity, or one array per join key."
    )
    full_feature_names: bool = Field(False, description="Name the columns 'view__feature'.")


class FeaturesResponse(BaseModel):
    """One column per feature, in the request's entity order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "features": {"spend_30d": [118.5, None], "plan": ["premium", None]},
                    "versions": {"customer_activity": 3, "customer_profile": 1},
                }
            ]
        }
    )

    features: dict[str, list[Any]] = Field(
        description="{column: [value per entity]}; null for unknown entities, nulls and values older than the "
        "view's TTL; timestamps in ISO 8601."
    )
    versions: dict[str, int] = Field(description="{view: ingested version the online store served}.")


class PushRequest(BaseModel):
    """Rows of one feature view, validated like ingestion."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "view": "customer_activity",
                    "rows": [
                        {
                            "customer_id": 100042,
                            "event_time": "2025-01-05T10:00:00Z",
                            "spend_30d": 120.0,
                            "orders_30d": 4,
                            "sessions_7d": 9,
                            "support_tickets_30d": 0,
                            "days_since_last_order": 3.0,
                            "avg_basket": 30.0,
                        }
                    ],
                    "to": "online",
                }
            ]
        },
    )

    view: str = Field(description="The feature view.")
    rows: list[dict[str, Any]] = Field(
        description="Join keys, the event time (ISO 8601) and the view's features, one object per row.",
        min_length=1,
    )
    to: Literal["online", "offline", "both"] = Field(
        "online", description="Upsert into the online store, append a new offline version, or both."
    )


class PushResponse(BaseModel):
    """What a push did."""

    view: str
    rows: int = Field(description="Rows received.")
    online_rows: int = Field(description="Rows applied online (rows older than the stored ones are ignored).")
    offline_version: int | None = Field(description="The new offline version, when pushed offline.")
    warnings: list[str] = Field(description="What was noticed and corrected (naive timestamps taken as UTC ...).")


class PredictionWarning(BaseModel):
    """Something noticed about one record's input."""

    type: Literal["missing_imputed", "unknown_category", "out_of_range"] = Field(
        description="A value missing and imputed, a category not seen in training, or a value outside the "
        "training range."
    )
    field: str = Field(description="The model's input the warning is about.")
    message: str


class PredictResponse(BaseModel):
    """One prediction per record, in request order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "churn",
                    "version": 3,
                    "predictions": [0, 1],
                    "probabilities": [{"0": 0.91, "1": 0.09}, {"0": 0.35, "1": 0.65}],
                    "warnings": [[], [{"type": "unknown_category", "field": "plan", "message": "..."}]],
                }
            ]
        }
    )

    model: str = Field(description="The model's name.")
    version: int = Field(description="The model version that scored the records.")
    predictions: list[Any] = Field(description="Per record: the predicted class (classifiers) or value.")
    probabilities: list[dict[str, float | None]] | None = Field(
        None, description="Classifiers only: per record, the probability of each class."
    )
    warnings: list[list[PredictionWarning]] = Field(description="Per record, what was noticed about its input.")


class ModelInfo(BaseModel):
    """A loaded model."""

    name: str
    ref: str = Field(description="The reference it was loaded by (churn@champion, churn:3).")
    version: int
    digest: str = Field(description="The SHA-256 of the model package.")
    task: str = Field(description="classification or regression.")
    features: list[str] = Field(description="The model's inputs.")
    feature_refs: list[str] = Field(description="The feature references the inputs are read from online.")
    classes: list[Any] | None = Field(description="The classes, for classifiers.")
    loaded_at: str = Field(description="When the version was loaded (ISO 8601).")


class ModelsResponse(BaseModel):
    """The loaded models."""

    models: list[ModelInfo]


class ReadyResponse(BaseModel):
    """The models are loaded."""

    status: Literal["ready"] = "ready"
    models: dict[str, int] = Field(description="{model: loaded version}.")
