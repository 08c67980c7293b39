"""A model version loaded for serving: its package, and where each input column's value comes from online."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from keel.features import FeatureRef

if TYPE_CHECKING:
    from keel.models import FeatureSchema, ModelPackage, ModelRegistry

__all__ = ["InputColumn", "LoadedModel", "load_model"]


@dataclass(frozen=True)
class InputColumn:
    """One input column of a model and where its value comes from online (``None``: explicit only)."""

    schema: FeatureSchema
    online_ref: str | None
    online_column: str | None


@dataclass(frozen=True)
class LoadedModel:
    """A model version loaded for serving: swapped as a whole, never mutated.

    Attributes:
        name: the name it is served under (the registered model's).
        ref: the reference it was loaded from (``churn@champion``).
        version: the registered version.
        digest: the package's SHA-256.
        package: the model package.
        loaded_at: when it was loaded (UTC).
        inputs: each input column, with the unpinned reference that reads it online.
        full_names: the package's columns are named ``view__feature`` (the online read asks for those names).
    """

    name: str
    ref: str
    version: int
    digest: str
    package: ModelPackage
    loaded_at: datetime
    inputs: tuple[InputColumn, ...] = field(repr=False)
    full_names: bool = False

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/models`` tells of the model."""
        return {
            "name": self.name,
            "ref": self.ref,
            "version": self.version,
            "digest": self.digest,
            "task": self.package.task,
            "features": self.package.feature_names,
            "feature_refs": self.package.feature_refs,
            "classes": self.package.classes,
            "loaded_at": self.loaded_at.isoformat(),
        }


def _inputs(package: ModelPackage) -> tuple[tuple[InputColumn, ...], bool]:
    """Each input column with the unpinned reference that reads it online.

    The package pins the versions it was trained on (``view@3:feature``); an online read of a pinned version
    the store no longer holds is refused, and the store holds one version per view, so the service reads
    whatever version is served (``view:feature``), as it would at any other time.
    """
    by_feature: dict[str, str] = {}
    by_full: dict[str, str] = {}
    for text in package.feature_refs:
        ref = FeatureRef.parse(text)
        unpinned = f"{ref.view}:{ref.feature}"
        by_feature.setdefault(ref.feature, unpinned)
        by_full[f"{ref.view}__{ref.feature}"] = unpinned
    names = package.feature_names
    full = bool(names) and all(n in by_full for n in names) and not all(n in by_feature for n in names)
    inputs = []
    for f in package.schema.features:
        online = (by_full if full else by_feature).get(f.name)
        inputs.append(InputColumn(f, online, f.name if online is not None else None))
    return tuple(inputs), full


def load_model(registry: ModelRegistry, ref: str, *, allow_pickle: bool = False) -> LoadedModel:
    """Load the version ``ref`` names now (the catalog is read once: the version and its package agree).

    Raises:
        NotFoundError: no such model, version or alias.
        ValidationError: the package is pickle-based (joblib) and ``allow_pickle`` is False.
    """
    record = registry.get(ref)
    package = registry.load(f"{record.name}:{record.version}", allow_pickle=allow_pickle)
    inputs, full = _inputs(package)
    return LoadedModel(
        name=record.name,
        ref=ref,
        version=record.version,
        digest=record.package_digest,
        package=package,
        loaded_at=datetime.now(UTC),
        inputs=inputs,
        full_names=full,
    )
