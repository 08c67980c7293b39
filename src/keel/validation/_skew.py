"""What the skew checks report: the online store against the offline store (:mod:`keel.online._skew`), and the
features a model was served against those it was trained on (:mod:`keel.monitoring._skew`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keel.validation._distances import Shift, ShiftThresholds

__all__ = ["CASES", "ERROR_CASES", "FeatureSkew", "OnlineSkew", "ServingSkew", "SkewExample", "SkewReport"]

CASES = ("same", "value differs", "missing online", "behind offline", "online newer", "not yet materialized")
ERROR_CASES = ("value differs", "missing online", "behind offline", "online newer")
EXAMPLES = 10


@dataclass(frozen=True)
class SkewExample:
    """One entity whose online value is not the offline one."""

    case: str
    key: tuple[Any, ...]
    feature: str | None
    online: Any
    offline: Any
    online_time: datetime | None
    offline_time: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "case": self.case,
            "key": [_json(v) for v in self.key],
            "feature": self.feature,
            "online": _json(self.online),
            "offline": _json(self.offline),
            "online_time": None if self.online_time is None else self.online_time.isoformat(),
            "offline_time": None if self.offline_time is None else self.offline_time.isoformat(),
        }


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


@dataclass(frozen=True)
class OnlineSkew:
    """The online store against the offline store for a sample of a view's entities.

    Attributes:
        view: the feature view.
        version: the offline version compared (the one last materialized, else the latest).
        latest_version: the latest ingested version.
        materialized_until: the end of the last materialization of ``version`` into the store (``None``: never).
        checked_at: the time both sides were read as of.
        entities: entities the offline store holds a value for within the TTL.
        sampled: entities compared.
        cases: entities per case (see the module docstring).
        features: per feature, the entities whose value differs.
        examples: up to ten entities of each case that is not ``same``.
    """

    view: str
    version: int
    latest_version: int
    materialized_until: datetime | None
    checked_at: datetime
    entities: int
    sampled: int
    cases: dict[str, int]
    features: dict[str, int]
    examples: list[SkewExample] = field(default_factory=list)

    @property
    def errors(self) -> dict[str, int]:
        """The error cases found, with their counts."""
        return {c: n for c, n in self.cases.items() if c in ERROR_CASES and n}

    @property
    def warnings(self) -> list[str]:
        """What is not an error but worth knowing."""
        out = []
        if self.cases.get("not yet materialized"):
            out.append(
                f"{self.cases['not yet materialized']:,} sampled entities have a newer offline value than the last "
                "materialization wrote; run `keel materialize`"
            )
        if self.latest_version != self.version:
            out.append(f"v{self.latest_version} is the latest version; the online store holds v{self.version}")
        if self.materialized_until is None:
            out.append("never materialized into this online store")
        if self.entities == 0:
            out.append(f"no entity has an offline value within the TTL at {self.checked_at:%Y-%m-%d %H:%M} UTC")
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "view": self.view,
            "version": self.version,
            "latest_version": self.latest_version,
            "materialized_until": None if self.materialized_until is None else self.materialized_until.isoformat(),
            "checked_at": self.checked_at.isoformat(),
            "entities": self.entities,
            "sampled": self.sampled,
            "cases": dict(self.cases),
            "features": dict(self.features),
            "errors": self.errors,
            "warnings": self.warnings,
            "examples": [e.to_dict() for e in self.examples],
        }


@dataclass(frozen=True)
class FeatureSkew:
    """One feature's served distribution against its training one."""

    name: str
    buckets: list[str]
    training: list[float]
    serving: list[float]
    shift: Shift

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "name": self.name,
            "buckets": list(self.buckets),
            "training": [float(v) for v in self.training],
            "serving": [float(v) for v in self.serving],
            **self.shift.to_dict(),
        }


@dataclass(frozen=True)
class ServingSkew:
    """The prediction log of a window against the training profile, per feature.

    Attributes:
        model: ``name:version``.
        window_start, window_end: the log's window (``None`` for rows given).
        rows: logged rows compared.
        features: one entry per feature found in both.
        skipped: features not compared, with the reason.
        thresholds: what decided.
    """

    model: str
    window_start: datetime | None
    window_end: datetime | None
    rows: int
    features: list[FeatureSkew]
    skipped: dict[str, str] = field(default_factory=dict)
    thresholds: ShiftThresholds = field(default_factory=ShiftThresholds)

    @property
    def skewed(self) -> list[str]:
        """The features served with a distribution other than training's."""
        return [f.name for f in self.features if f.shift.shifted]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "model": self.model,
            "window_start": None if self.window_start is None else self.window_start.isoformat(),
            "window_end": None if self.window_end is None else self.window_end.isoformat(),
            "rows": self.rows,
            "features": [f.to_dict() for f in self.features],
            "skewed": self.skewed,
            "skipped": dict(self.skipped),
            "thresholds": self.thresholds.to_dict(),
        }


@dataclass(frozen=True)
class SkewReport:
    """Training/serving skew of a model version: its views' online stores against their offline stores, and its
    served features against its training set.

    Attributes:
        model: ``name:version``.
        online: one comparison per feature view the model reads from the online store.
        serving: the prediction log against the training profile (``None`` when the run stored no profile).
        notes: what could not be checked, and why.
    """

    model: str
    online: list[OnlineSkew]
    serving: ServingSkew | None
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether an error was found: an online value that is not the offline one, or a skewed served feature."""
        return any(o.errors for o in self.online) or bool(self.serving and self.serving.skewed)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "model": self.model,
            "online": [o.to_dict() for o in self.online],
            "serving": None if self.serving is None else self.serving.to_dict(),
            "notes": list(self.notes),
            "failed": self.failed,
        }
