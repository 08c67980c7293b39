"""What a stored package refers to, read without loading it: every class and function it names, and whether
each is on the allowlist (:mod:`keel.models._trust`).

``keel`` packages list their types in one table; ``skops`` packages name a type in every node of their
``schema.json``; both are read as data, and nothing they name is imported unless it is allowlisted. A
``joblib`` package is a pickle: what it does is only known by running it, so its audit lists the globals its
opcodes name (``pickletools``, nothing executed) and says it cannot be verified.
"""

from __future__ import annotations

import io
import json
import pickletools
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from keel.errors import IntegrityError
from keel.models._trust import allowed

__all__ = ["PackageAudit", "PackageVerification", "Reference", "audit", "skops_references"]

ReferenceKind = Literal["class", "function", "type", "method"]


@dataclass(frozen=True)
class Reference:
    """One name a package refers to.

    Attributes:
        name: the full name, ``module.qualname`` (``module.Class.method`` for a bound method).
        kind: what loading does with it: builds an object of a ``class``, returns a ``function``, returns a
            ``type`` (a class or a function) as a value, or looks up a ``method`` on an object.
        allowed: whether it is on the allowlist or among the caller's trusted types.
    """

    name: str
    kind: ReferenceKind
    allowed: bool


@dataclass(frozen=True)
class PackageAudit:
    """The audit of one stored package.

    Attributes:
        format: ``keel``, ``skops`` or ``joblib``.
        references: every distinct name the package refers to, sorted.
        verifiable: whether its contents can be checked without running it (not for pickle).
        note: what the audit could not do, when it could not.
    """

    format: str
    references: list[Reference] = field(default_factory=list)
    verifiable: bool = True
    note: str = ""

    @property
    def refused(self) -> list[str]:
        """The names a load refuses."""
        return [r.name for r in self.references if not r.allowed]

    @property
    def ok(self) -> bool:
        """Whether a load would rebuild everything the package names (and it could be checked)."""
        return self.verifiable and not self.refused


def audit(blob: bytes, fmt: str, *, trusted: frozenset[str] = frozenset(), what: str = "model package") -> PackageAudit:
    """The audit of a package's bytes in format ``fmt``, without loading it.

    Raises:
        IntegrityError: the bytes are not a well-formed package of that format.
    """
    if fmt == "keel":
        from keel.models._keel_decode import type_names

        names: set[tuple[str, ReferenceKind]] = {(n, "class") for n in type_names(blob, what)}
        return PackageAudit("keel", _references(names, trusted))
    if fmt == "skops":
        return PackageAudit("skops", _references(set(skops_references(blob, what)), trusted))
    if fmt == "joblib":
        found, complete = _pickle_globals(blob)
        note = "pickle: cannot be audited without running it; these are the globals its opcodes name"
        if not complete:
            note += " up to the first array (joblib writes array bytes outside the pickle stream)"
        return PackageAudit("joblib", _references({(n, "type") for n in found}, trusted), False, note)
    return PackageAudit(fmt, [], False, f"unknown format {fmt!r}: cannot be audited")


def _references(names: set[tuple[str, ReferenceKind]], trusted: frozenset[str]) -> list[Reference]:
    out = []
    for name, kind in sorted(names):
        module, _, qualname = name.rpartition(".")
        if kind == "method":  # a method looked up on an object: none is allowlisted
            ok = name in trusted
        elif kind == "type":  # a class or a function returned as a value
            ok = allowed(module, qualname, "class", trusted) or allowed(module, qualname, "function", trusted)
        else:
            ok = allowed(module, qualname, kind, trusted)
        out.append(Reference(name, kind, ok))
    return out


# -- skops ---------------------------------------------------------------------------------------------------
#: The skops node kinds whose imports are all visible in the schema, reviewed against skops' loaders: each builds
#: what its ``__module__``/``__class__`` names (plus the few extras :func:`_node_names` reads). A file with another
#: kind is refused: its loader may import a name the audit does not see.
_SKOPS_NODES = frozenset(
    {
        *("DictNode", "ListNode", "SetNode", "TupleNode", "BytesNode", "BytearrayNode", "SliceNode", "JsonNode"),
        *("ObjectNode", "ReduceNode", "TreeNode", "LossNode", "NdArrayNode", "MaskedArrayNode", "DTypeNode"),
        *("RandomStateNode", "RandomGeneratorNode", "SparseMatrixNode", "CachedNode", "DefaultDictNode"),
        *("FunctionNode", "TypeNode", "MethodNode", "PartialNode", "OperatorFuncNode", "ConstructorFromReduceNode"),
    }
)


def skops_references(blob: bytes, what: str = "model package") -> Iterator[tuple[str, ReferenceKind]]:
    """``(full name, kind)`` of everything a skops blob's nodes name, read from its ``schema.json``.

    Raises:
        IntegrityError: not a skops zip, or a node of a kind the audit does not know.
    """
    # a damaged archive: a bad header or CRC, a member cut short, a flag saying "encrypted" (RuntimeError), a
    # compressed stream that does not inflate
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, RuntimeError, OSError, zlib.error) as exc:
        raise IntegrityError(f"{what} is not a skops package ({exc}); refused") from exc
    stack: list[Any] = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        if "__loader__" in item:
            yield from _node_names(item, what)
        stack.extend(item.values())


def _node_names(node: dict[str, Any], what: str) -> Iterator[tuple[str, ReferenceKind]]:
    loader, module, name = node.get("__loader__"), node.get("__module__"), node.get("__class__")
    if not all(isinstance(v, str) for v in (loader, module, name)):
        raise IntegrityError(f"{what} is malformed (a skops node without a string type name); refused")
    if loader not in _SKOPS_NODES:
        raise IntegrityError(f"{what} holds a skops node of kind {loader!r}, which Keel does not load; refused")
    full = f"{module}.{name}"
    if loader == "CachedNode":  # a second reference to a node read (and checked) where it first appeared
        return
    if loader == "FunctionNode":
        yield full, "function"
    elif loader == "TypeNode":
        yield full, "type"
    elif loader == "MethodNode":
        content = node.get("content")
        method = content.get("func") if isinstance(content, dict) else None
        if not isinstance(method, str):
            raise IntegrityError(f"{what} is malformed (a skops method without a name); refused")
        yield f"{full}.{method}", "method"
    else:
        yield full, "class"
    if loader == "RandomGeneratorNode":  # skops calls numpy.random.<the name in the state> to build it
        try:
            inner = node["content"]["bit_generator"]["content"]["bit_generator"]["content"]
            bit_generator = json.loads(inner)
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"{what} is malformed (a random generator without its bit generator)") from exc
        if not isinstance(bit_generator, str):
            raise IntegrityError(f"{what} is malformed (a random generator without its bit generator)")
        yield f"numpy.random.{bit_generator}", "class"


# -- pickle --------------------------------------------------------------------------------------------------
_STRINGS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"})


def _pickle_globals(blob: bytes) -> tuple[set[str], bool]:
    """The globals a pickle's opcodes name (``GLOBAL``, ``STACK_GLOBAL``), and whether the whole stream was read.

    Opcodes are only parsed, never executed. ``STACK_GLOBAL`` takes its two names from the stack: they are the
    last two strings pushed (or fetched from the memo) before it, as a pickler writes them.
    """
    found: set[str] = set()
    pushed: list[str | None] = []
    memo: dict[int, str | None] = {}
    try:
        for opcode, arg, _ in pickletools.genops(blob):
            name = opcode.name
            if name == "GLOBAL" and isinstance(arg, str):
                found.add(arg.replace(" ", "."))
            elif name == "STACK_GLOBAL":
                if len(pushed) >= 2 and pushed[-2] is not None and pushed[-1] is not None:
                    found.add(f"{pushed[-2]}.{pushed[-1]}")
                else:
                    found.add("<a global whose name is computed>")
            elif name in _STRINGS:
                pushed.append(arg if isinstance(arg, str) else None)
            elif name == "MEMOIZE":
                memo[len(memo)] = pushed[-1] if pushed else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT") and isinstance(arg, int):
                memo[arg] = pushed[-1] if pushed else None
            elif name in ("GET", "BINGET", "LONG_BINGET") and isinstance(arg, int):
                pushed.append(memo.get(arg))
            elif name != "FRAME":
                pushed.append(None)
    except ValueError:  # joblib's raw array bytes, or a truncated stream
        return found, False
    return found, True


# -- a stored package ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PackageVerification:
    """A stored package checked against the catalog, without loading it (``ModelRegistry.verify``).

    Attributes:
        name: the model.
        version: its version.
        digest: the SHA-256 the catalog recorded.
        actual_digest: the SHA-256 of the stored bytes.
        audit: what the package refers to and whether each name is allowed.
    """

    name: str
    version: int
    digest: str
    actual_digest: str
    audit: PackageAudit

    @property
    def hash_matches(self) -> bool:
        """Whether the stored bytes are the ones the catalog recorded."""
        return self.digest == self.actual_digest

    @property
    def ok(self) -> bool:
        """Whether the bytes are intact and a load would rebuild only allowed names (never true for pickle)."""
        return self.hash_matches and self.audit.ok

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form (``keel models verify --json``)."""
        return {
            "model": self.name,
            "version": self.version,
            "ok": self.ok,
            "digest": self.digest,
            "actual_digest": self.actual_digest,
            "hash_matches": self.hash_matches,
            "format": self.audit.format,
            "verifiable": self.audit.verifiable,
            "note": self.audit.note,
            "references": [{"name": r.name, "kind": r.kind, "allowed": r.allowed} for r in self.audit.references],
            "refused": self.audit.refused,
        }
