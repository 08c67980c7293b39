"""Validate rows against a feature view's schema: the view's :class:`~keel.engines.Normalisation`, applied in
memory (pushed rows; the engines apply the same rules to whole sources at ingest)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keel.engines import SEQ, Normalisation, _digest
from keel.engines._normalise import NaiveTimestampWarning, normalise_table, parse_timestamps

if TYPE_CHECKING:
    import pyarrow as pa

    from keel.features import FeatureView

__all__ = ["NaiveTimestampWarning", "ValidatedTable", "normalisation", "parse_timestamps", "validate_table"]

#: The definition of the version digest recorded with each version (:mod:`keel.engines._digest`).
DIGEST_KIND = _digest.DIGEST_KIND


def normalisation(view: FeatureView, join_keys: list[str], *, key_types: dict[str, str] | None = None) -> Normalisation:
    """The rules that turn ``view``'s source rows into stored rows (keys typed as ``key_types`` when given)."""
    source = view.source
    return Normalisation(
        view=view.name,
        join_keys=tuple(join_keys),
        timestamp=source.timestamp,
        created_timestamp=source.created_timestamp,
        features=tuple((f.name, f.dtype) for f in view.schema),
        key_types=tuple((key_types or {}).items()),
        source=source.describe,
    )


def version_columns(rules: Normalisation, key_types: dict[str, str]) -> dict[str, Any]:
    """A version's self-description stored in the catalog: column roles and types, the sequence column and
    the digest's definition."""
    return {
        "join_keys": {k: key_types[k] for k in rules.join_keys},
        "timestamp": rules.timestamp,
        "created_timestamp": rules.created_timestamp,
        "features": dict(rules.features),
        "sequence": SEQ,
        "digest": DIGEST_KIND,
    }


@dataclass
class ValidatedTable:
    """A validated, normalised table, the rules it was checked against and what was noticed on the way."""

    table: pa.Table
    rules: Normalisation
    key_types: dict[str, str]
    warnings: list[str] = field(default_factory=list)

    @property
    def join_keys(self) -> list[str]:
        """The key columns."""
        return list(self.rules.join_keys)

    @property
    def timestamp(self) -> str:
        """The event-time column."""
        return self.rules.timestamp

    @property
    def created_timestamp(self) -> str | None:
        """The created-time column, if any."""
        return self.rules.created_timestamp

    @property
    def features(self) -> dict[str, str]:
        """Feature name -> dtype."""
        return dict(self.rules.features)

    @property
    def columns(self) -> dict[str, Any]:
        """The version's self-description stored in the catalog."""
        return version_columns(self.rules, self.key_types)


def validate_table(raw: pa.Table, view: FeatureView, join_keys: list[str]) -> ValidatedTable:
    """Check ``raw`` against ``view`` and return the normalised table (declared columns only).

    Raises:
        ValidationError: a column is missing or has the wrong type, a key or event time is null, or a value
            does not convert; the message names the column and the first bad row.
    """
    rules = normalisation(view, join_keys)
    normalised = normalise_table(raw, rules)
    return ValidatedTable(normalised.table, rules, normalised.key_types, normalised.warnings)
