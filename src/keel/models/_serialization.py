"""Packages to bytes and back: the ``keel`` format when it can represent the package, else ``skops`` when every
type is a trusted library type, else ``joblib``.

``keel`` and ``skops`` load without unpickling and rebuild trusted library classes only (see
:mod:`keel.models._keelfmt`); ``keel`` loads several times faster. Pickle runs code when loaded, so a ``joblib``
package is only loaded when the caller says so explicitly; the catalog records each package's format so that
the choice is visible.
"""

from __future__ import annotations

import io
from typing import Any

from keel.errors import IntegrityError, ValidationError
from keel.models import _keelfmt
from keel.models._keelfmt import TRUSTED_MODULES
from keel.models._package import InputSchema, ModelPackage

__all__ = ["TRUSTED_MODULES", "dumps", "loads"]


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


def _keel_dumps(parts: dict[str, Any]) -> bytes | None:
    """``parts`` in the ``keel`` format, or None when the format cannot hold them faithfully.

    The blob is checked by loading it and encoding the result again: the same bytes back prove that every
    object was rebuilt with the state it was written with.
    """
    try:
        blob = _keelfmt.encode(parts)
        again = _keelfmt.encode(_keelfmt.decode(blob))
    except Exception:  # Unsupported, or a class whose pickling the format does not follow: use another format
        return None
    return blob if again == blob else None


#: The formats a project can prefer for packages of trusted types (``package_format`` in ``keel.yaml``).
SAFE_FORMATS = ("keel", "skops")


def dumps(package: ModelPackage, *, prefer: str = "keel") -> tuple[bytes, str]:
    """Serialize ``package``; returns ``(bytes, format)`` with format ``keel``, ``skops`` or ``joblib``.

    ``prefer`` picks the first format tried for packages of trusted types: ``keel`` (the default: one JSON tree
    and one array block, loads several times faster) or ``skops``; both rebuild only trusted classes and never
    unpickle. The same package gives the same ``keel`` bytes.
    """
    if prefer not in SAFE_FORMATS:
        raise ValidationError(f"unknown package format {prefer!r}; use one of {', '.join(SAFE_FORMATS)}")
    parts = _parts(package)
    blob = _keel_dumps(parts) if prefer == "keel" else None
    if blob is not None:
        return blob, "keel"
    import skops.io as sio

    try:
        blob = sio.dumps(parts)
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
        IntegrityError: a ``keel`` or ``skops`` package holds a type outside the trusted libraries, or a ``keel``
            package is truncated or malformed.
    """
    if fmt == "keel":
        parts = _keelfmt.decode(blob, what)
        try:
            return _package(parts)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise IntegrityError(
                f"{what} does not hold a model package ({type(exc).__name__}: {exc}); refused"
            ) from exc
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
