"""Pushing rows as they arrive: validated like ingestion, written offline first, then online."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from keel.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

    from keel.definitions import Definitions
    from keel.features import FeatureView
    from keel.offline import OfflineFeatureService
    from keel.online._store import OnlineStore

__all__ = ["PUSH_TARGETS", "PushResult", "push_rows"]

#: Where a push writes.
PUSH_TARGETS = ("online", "offline", "both")
PushTarget = Literal["online", "offline", "both"]


@dataclass(frozen=True)
class PushResult:
    """What a push did.

    Attributes:
        view: the feature view.
        rows: rows received.
        online_rows: rows applied to the online store (rows older than the stored ones are ignored).
        offline_version: the new offline version, when pushed offline.
        warnings: what was noticed and corrected (naive timestamps taken as UTC ...).
    """

    view: str
    rows: int
    online_rows: int
    offline_version: int | None
    warnings: list[str] = field(default_factory=list)


def push_rows(
    view: FeatureView | str,
    df: pd.DataFrame,
    *,
    to: str,
    definitions: Definitions,
    offline: OfflineFeatureService,
    store: OnlineStore | None,
) -> PushResult:
    """Validate ``df`` against ``view`` and write it to the online store, the offline store, or both.

    ``store`` may be ``None`` for a push ``to="offline"``. The offline side is written first: it is the one
    that can refuse (a changed definition, a key of another type), and a refused push must leave both stores
    untouched.

    Raises:
        ValidationError: a bad ``to``, no rows, rows that do not match the view's schema.
        NotFoundError: the view is not registered.
    """
    import pandas as pd
    import pyarrow as pa

    from keel.offline import validate_table

    if to not in PUSH_TARGETS:
        raise ValidationError(f"push: to must be 'online', 'offline' or 'both', got {to!r}", field="to")
    if not isinstance(df, pd.DataFrame):
        raise ValidationError(f"push: expected a pandas DataFrame of rows, got {type(df).__name__}")
    if df.empty:
        raise ValidationError(f"push to {view if isinstance(view, str) else view.name!r}: no rows")
    definition, definition_version = definitions.registered(view)
    keys = definitions.join_keys(definition)
    try:
        raw = pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValidationError(f"push to {definition.name!r}: cannot read the rows: {exc}") from exc
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        validated = validate_table(raw, definition, keys)
    noticed = [str(w.message) for w in caught]
    offline_version = None
    if to in ("offline", "both"):
        appended = offline.append(definition, validated, definition_version=definition_version, warnings=noticed)
        offline_version = appended.version.version
    online_rows = 0
    if to in ("online", "both"):
        if store is None:
            raise ValidationError(f"push to {definition.name!r}: to={to!r} needs an online store", field="to")
        online_rows = store.write_batch(
            definition.name,
            validated.table,
            keys=keys,
            features=definition.feature_names,
            timestamp=validated.timestamp,
            ttl=definition.ttl,
        )
    return PushResult(definition.name, len(df), online_rows, offline_version, noticed)
