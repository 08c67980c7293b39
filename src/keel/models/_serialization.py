"""Packages to bytes and back: ``skops`` when every type is a trusted library type, ``joblib`` otherwise.

Pickle runs code when loaded, so a ``joblib`` package is only loaded when the caller says so explicitly; the
catalog records each package's format so that the choice is visible.
"""

from __future__ import annotations

import io
from typing import Any

from keel.errors import IntegrityError, ValidationError
from keel.models._package import InputSchema, ModelPackage

#: Type modules trusted when loading a skops package.
TRUSTED_MODULES = ("sklearn", "numpy", "scipy", "keel")


#: Exact type names that passed the module check (skops takes names, not module prefixes): most packages hold
#: only types seen before, and are loaded in one pass instead of an audit pass and then a load.
_TRUSTED_SEEN: set[str] = set()


def _skops_loads(blob: bytes, what: str) -> Any:
    """``skops.io.loads`` with every type from a trusted library allowed, and no other."""
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    if _TRUSTED_SEEN:
        try:
            return sio.loads(blob, trusted=sorted(_TRUSTED_SEEN))
        except UntrustedTypesFoundException:  # a type not seen yet: audit it below
            pass
    untrusted = list(sio.get_untrusted_types(data=blob))
    bad = [t for t in untrusted if t.split(".", 1)[0] not in TRUSTED_MODULES]
    if bad:
        raise IntegrityError(f"{what} holds types outside the trusted libraries ({', '.join(bad)}); refused")
    _TRUSTED_SEEN.update(untrusted)
    return sio.loads(blob, trusted=untrusted)


def _trusted(types: list[str]) -> bool:
    return all(t.split(".", 1)[0] in TRUSTED_MODULES for t in types)


def _plain(value: Any) -> Any:
    """Python scalars instead of numpy ones (JSON- and skops-friendly)."""
    return value.item() if hasattr(value, "item") else value


def _parts(package: ModelPackage) -> dict[str, Any]:
    return {
        "format": 1,
        "estimator": package.estimator,
        "preprocessor": package.preprocessor,
        "meta": {
            "name": package.name,
            "task": package.task,
            "label": package.label,
            "schema": package.schema.to_dict(),
            "feature_refs": list(package.feature_refs),
            "classes": [_plain(c) for c in package.classes] if package.classes is not None else None,
            "metadata": package.metadata,
        },
    }


def _package(parts: dict[str, Any]) -> ModelPackage:
    meta = parts["meta"]
    return ModelPackage(
        name=meta["name"],
        task=meta["task"],
        label=meta["label"],
        estimator=parts["estimator"],
        preprocessor=parts["preprocessor"],
        schema=InputSchema.from_dict(meta["schema"]),
        feature_refs=list(meta["feature_refs"]),
        classes=list(meta["classes"]) if meta["classes"] is not None else None,
        metadata=dict(meta["metadata"]),
    )


def dumps(package: ModelPackage) -> tuple[bytes, str]:
    """Serialize ``package``; returns ``(bytes, format)`` with format ``skops`` or ``joblib``."""
    import skops.io as sio

    parts = _parts(package)
    try:
        blob: bytes = sio.dumps(parts)
        if _trusted(list(sio.get_untrusted_types(data=blob))):
            return blob, "skops"
    except Exception:  # a type skops cannot represent: fall back to pickle, recorded as such
        pass
    import joblib

    buffer = io.BytesIO()
    joblib.dump(parts, buffer)
    return buffer.getvalue(), "joblib"


def loads(blob: bytes, fmt: str, *, allow_pickle: bool = False, what: str = "model package") -> ModelPackage:
    """Rebuild a package from verified bytes.

    Raises:
        ValidationError: the package is pickle-based and ``allow_pickle`` is False.
        IntegrityError: a skops package holds a type outside the trusted libraries.
    """
    if fmt == "skops":
        return _package(_skops_loads(blob, what))
    if fmt == "joblib":
        if not allow_pickle:
            raise ValidationError(
                f"{what} is stored with joblib (pickle): loading it runs code from the file. Load it only if you "
                "trust its origin, with allow_pickle=True (CLI: --allow-pickle)",
                field="allow_pickle",
            )
        import joblib

        return _package(joblib.load(io.BytesIO(blob)))
    raise ValidationError(f"{what} has unknown format {fmt!r}; upgrade Keel")
