"""Feature references: ``view:feature``, ``view:*`` and ``view@3:feature``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from keel.errors import ValidationError

_REF = re.compile(
    r"^(?P<view>[A-Za-z_][A-Za-z0-9_]*)(?:@(?P<version>[0-9]+|latest))?:(?P<feature>\*|[A-Za-z_][A-Za-z0-9_]*)$"
)


@dataclass(frozen=True)
class FeatureRef:
    """One parsed feature reference.

    Attributes:
        view: the feature view's name.
        feature: the feature's name, or ``"*"`` for every feature of the view.
        version: the ingested version it is pinned to, or ``None`` for the latest.
    """

    view: str
    feature: str
    version: int | None = None

    @classmethod
    def parse(cls, ref: str) -> FeatureRef:
        """Parse ``ref``; raise a :class:`ValidationError` naming it when it is malformed.

        Example:
            >>> FeatureRef.parse("customer_activity@3:spend_30d")
            FeatureRef(view='customer_activity', feature='spend_30d', version=3)
        """
        if not isinstance(ref, str):
            raise ValidationError(f"a feature reference must be a string, got {ref!r}")
        match = _REF.match(ref.strip())
        if match is None:
            raise ValidationError(
                f"malformed feature reference {ref!r}; expected 'view:feature', 'view:*' or 'view@3:feature'",
                field=ref,
            )
        version = match["version"]
        pinned = int(version) if version not in (None, "latest") else None
        if pinned is not None and pinned < 1:
            raise ValidationError(f"feature reference {ref!r}: versions are numbered from 1", field=ref)
        return cls(match["view"], match["feature"], pinned)

    def __str__(self) -> str:
        at = f"@{self.version}" if self.version is not None else ""
        return f"{self.view}{at}:{self.feature}"


def parse_refs(refs: list[str] | tuple[str, ...] | str) -> list[FeatureRef]:
    """Parse a list of references, refusing an empty list and a bare string's characters."""
    if isinstance(refs, str):
        refs = [refs]
    parsed = [FeatureRef.parse(r) for r in refs]
    if not parsed:
        raise ValidationError("no features requested; pass at least one 'view:feature' reference")
    return parsed
