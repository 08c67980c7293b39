"""Packages to bytes and back: the ``keel`` format when it can represent the package, else ``skops`` when every
type is on the allowlist, else ``joblib``.

``keel`` and ``skops`` load without unpickling and rebuild only what the allowlist of
:mod:`keel.models._trust` names (plus the types the caller trusts by name); ``keel`` loads several times faster.
Pickle runs code when loaded, so a ``joblib`` package is only loaded when the caller says so explicitly; the
catalog records each package's format, and the run's lineage why a package is not in the preferred format.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from keel.errors import IntegrityError, ValidationError
from keel.models import _keelfmt
from keel.models._audit import audit
from keel.models._package import InputSchema, ModelPackage
from keel.models._trust import trusted_set, untrusted_error

__all__ = ["SAFE_FORMATS", "SerializedPackage", "dumps", "loads", "serialize"]

logger = logging.getLogger("keel.models")


def _skops_loads(blob: bytes, what: str, trusted: frozenset[str]) -> Any:
    """``skops.io.loads`` after Keel's own audit of every name the file holds: nothing outside the allowlist
    (and ``trusted``) is imported or built, whatever skops itself would trust by default."""
    report = audit(blob, "skops", trusted=trusted, what=what)
    if report.refused:
        raise untrusted_error(what, report.refused)
    import skops.io as sio

    try:
        return sio.loads(blob, trusted=[r.name for r in report.references])
    except Exception as exc:  # a damaged archive makes zipfile, numpy or skops raise almost anything (bad CRC ...)
        raise IntegrityError(f"{what} cannot be loaded ({type(exc).__name__}: {exc}); refused") from exc


def _plain(value: Any) -> Any:
    """Python scalars instead of numpy ones (JSON- and skops-friendly)."""
    return value.item() if hasattr(value, "item") else value


def _parts(package: ModelPackage) -> dict[str, Any]:
    return {
        "format": PARTS_VERSION,
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


#: The version of the parts a package holds (``format`` beside ``estimator``, ``preprocessor`` and ``meta``).
PARTS_VERSION = 1


def _package(parts: dict[str, Any], what: str = "model package") -> ModelPackage:
    """The package of ``parts`` (deserialized, still to be checked).

    Raises:
        IntegrityError: the parts are of another version (a newer Keel wrote them), or not a package's.
    """
    version = parts.get("format") if isinstance(parts, dict) else None
    if version != PARTS_VERSION and (type(version) is int or isinstance(version, str)):
        raise IntegrityError(
            f"{what} holds a model package of version {version!r}; this Keel reads version {PARTS_VERSION}: "
            "upgrade Keel (or register the model again with this one)"
        )
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


def _keel_dumps(parts: dict[str, Any], trusted: frozenset[str]) -> tuple[bytes | None, str]:
    """``(blob, "")`` of ``parts`` in the ``keel`` format, or ``(None, why)`` when it cannot hold them faithfully.

    The blob is checked by loading it and encoding the result again: the same bytes back prove that every
    object was rebuilt with the state it was written with.
    """
    try:
        blob = _keelfmt.encode(parts, trusted_types=trusted)
    except _keelfmt.Unsupported as exc:
        return None, str(exc)
    try:
        again = _keelfmt.encode(_keelfmt.decode(blob, trusted_types=trusted), trusted_types=trusted)
    except (_keelfmt.Unsupported, IntegrityError) as exc:  # a class whose pickling the format does not follow
        return None, f"the package does not load back the same ({exc})"
    if again != blob:
        return None, "the package loaded back does not encode to the same bytes"
    return blob, ""


def _skops_dumps(parts: dict[str, Any], trusted: frozenset[str]) -> tuple[bytes | None, str]:
    """``(blob, "")`` of ``parts`` in the ``skops`` format, or ``(None, why)``: skops cannot represent them, or
    they hold types a load would refuse."""
    import skops.io as sio
    from skops.io.exceptions import UnsupportedTypeException

    try:
        blob = sio.dumps(parts)
    except UnsupportedTypeException as exc:  # skops' documented "cannot persist this"
        return None, str(exc)
    refused = audit(blob, "skops", trusted=trusted).refused
    if refused:
        return None, f"types outside Keel's allowlist: {', '.join(refused)}"
    return blob, ""


#: The formats a project can prefer for packages of allowlisted types (``package_format`` in ``keel.yaml``).
SAFE_FORMATS = ("keel", "skops")


@dataclass(frozen=True)
class SerializedPackage:
    """A package's bytes and how they were written.

    Attributes:
        blob: the bytes.
        format: ``keel``, ``skops`` or ``joblib``.
        reason: why the package is not in the preferred format (None when it is): what each format tried
            before it could not hold.
    """

    blob: bytes
    format: str
    reason: str | None = None


def serialize(
    package: ModelPackage, *, prefer: str = "keel", trusted_types: Iterable[str] | None = None
) -> SerializedPackage:
    """Serialize ``package`` in the first format that holds it faithfully, saying why when it is not ``prefer``.

    ``prefer`` picks the first format tried: ``keel`` (the default: one JSON tree and one array block, loads
    several times faster) or ``skops``; both rebuild only allowlisted classes (and ``trusted_types``) and never
    unpickle. A package neither can hold is written with joblib (pickle); the fallback is logged at WARNING on
    the ``keel.models`` logger. Only the formats' documented signals cause a fallback (the ``keel`` encoder's
    ``Unsupported``, skops' ``UnsupportedTypeException``, a type outside the allowlist): any other error is raised.
    """
    if prefer not in SAFE_FORMATS:
        raise ValidationError(f"unknown package format {prefer!r}; use one of {', '.join(SAFE_FORMATS)}")
    trusted = trusted_set(trusted_types)
    parts = _parts(package)
    reasons = []
    if prefer == "keel":
        blob, why = _keel_dumps(parts, trusted)
        if blob is not None:
            return SerializedPackage(blob, "keel")
        reasons.append(f"keel: {why}")
    blob, why = _skops_dumps(parts, trusted)
    if blob is not None:
        result = SerializedPackage(blob, "skops", "; ".join(reasons) or None)
    else:
        import joblib

        reasons.append(f"skops: {why}")
        buffer = io.BytesIO()
        joblib.dump(parts, buffer)
        result = SerializedPackage(buffer.getvalue(), "joblib", "; ".join(reasons))
    if result.reason:
        logger.warning("package %r is stored as %s, not %s: %s", package.name, result.format, prefer, result.reason)
    return result


def dumps(
    package: ModelPackage, *, prefer: str = "keel", trusted_types: Iterable[str] | None = None
) -> tuple[bytes, str]:
    """Serialize ``package``; returns ``(bytes, format)`` with format ``keel``, ``skops`` or ``joblib``.

    See :func:`serialize` (which also says why a package is not in the preferred format). The same package
    gives the same ``keel`` bytes.
    """
    result = serialize(package, prefer=prefer, trusted_types=trusted_types)
    return result.blob, result.format


def loads(
    blob: bytes,
    fmt: str,
    *,
    allow_pickle: bool = False,
    trusted_types: Iterable[str] | None = None,
    what: str = "model package",
) -> ModelPackage:
    """Rebuild a package from verified bytes.

    ``keel`` and ``skops`` packages rebuild only the classes (and, for skops, the few functions) on Keel's
    allowlist; every name is checked before anything is imported or built. A package of your own classes
    loads only when you name them: ``trusted_types=["mypkg.MyTransformer"]``.

    Raises:
        ValidationError: the package is pickle-based and ``allow_pickle`` is False.
        IntegrityError: a ``keel`` or ``skops`` package names a type outside the allowlist and
            ``trusted_types`` (the message names it), or it is truncated or malformed.
    """
    trusted = trusted_set(trusted_types)
    if fmt in SAFE_FORMATS:
        parts = (
            _keelfmt.decode(blob, what, trusted_types=trusted) if fmt == "keel" else _skops_loads(blob, what, trusted)
        )
        return _checked_package(parts, what)
    if fmt == "joblib":
        if not allow_pickle:
            raise ValidationError(
                f"{what} is stored with joblib (pickle): loading it runs code from the file. Load it only if you "
                "trust its origin, with allow_pickle=True (CLI: --allow-pickle)",
                field="allow_pickle",
            )
        import joblib

        try:
            parts = joblib.load(io.BytesIO(blob))
        except Exception as exc:  # whatever a truncated or foreign pickle makes the unpickler raise
            raise IntegrityError(
                f"{what} cannot be read as a joblib package ({type(exc).__name__}: {exc}); refused"
            ) from exc
        return _checked_package(parts, what)
    raise ValidationError(f"{what} has unknown format {fmt!r}; upgrade Keel")


def _checked_package(parts: Any, what: str) -> ModelPackage:
    """The package of deserialized ``parts``, or the error that says they are not one."""
    try:
        return _package(parts, what)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"{what} does not hold a model package ({type(exc).__name__}: {exc}); refused") from exc
