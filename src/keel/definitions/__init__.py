"""Definitions in a project: found in its modules (:func:`discover`), validated and recorded in the catalog
(:func:`apply_definitions`), and read back as live objects (:class:`Definitions`).

The definitions themselves (entities, feature views, on-demand views) are pure and live in :mod:`keel.features`;
this package is where they meet the catalog.
"""

from keel.definitions._apply import (
    ApplyPlan,
    PlanItem,
    apply_definitions,
    validate_definitions,
    with_referenced_definitions,
)
from keel.definitions._discovery import discover, unique_definitions
from keel.definitions._registered import Definitions

__all__ = [
    "ApplyPlan",
    "Definitions",
    "PlanItem",
    "apply_definitions",
    "discover",
    "unique_definitions",
    "validate_definitions",
    "with_referenced_definitions",
]
