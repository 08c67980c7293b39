"""A content-addressed blob store on any fsspec filesystem.

Blobs live at ``<root>/sha256/<ab>/<digest>``. A blob appears only when complete (:func:`keel._files.atomic_open`):
on a local disk it is written under a hidden temporary name and renamed into place, its bytes and the rename
synced, so a stored blob survives a power cut; on S3 it is uploaded to its key as a multipart upload completed
only once every byte was sent and hashed. A reader never sees half a blob; a read re-hashes the bytes and
refuses a mismatch before anything is deserialized.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from keel._files import atomic_open, open_filesystem, storage_errors, writes_whole
from keel.errors import BackendError, IntegrityError, NotFoundError, ValidationError

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a local file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class _Mismatch(Exception):
    """The bytes copied do not hash to the digest they are copied under (a private signal, never raised out)."""


class _AlreadyStored(Exception):
    """A concurrent writer published the same blob first (a private signal, never raised out)."""


class ArtifactStore:
    """Immutable blobs addressed by their SHA-256.

    Args:
        uri: a local directory, or any fsspec URI (``memory://keel``, ``s3://bucket/prefix``).

    Example:
        >>> store = ArtifactStore("memory://doc")
        >>> digest = store.put_bytes(b"hello")
        >>> store.get_bytes(digest)
        b'hello'
    """

    def __init__(self, uri: str | Path) -> None:
        self.uri = str(uri)
        try:
            self.fs, root, _ = open_filesystem(self.uri)
        except BackendError as exc:
            raise BackendError(f"artifact store: {exc}") from exc.__cause__
        self.root = root.rstrip("/")  # "/" (the disk's root) becomes "", so that paths do not start with "//"

    def __repr__(self) -> str:
        return f"ArtifactStore({self.uri!r})"

    # -- paths -----------------------------------------------------------------------------------------------
    @staticmethod
    def _check(digest: str) -> str:
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            raise ValidationError(f"{digest!r} is not a SHA-256 digest (64 lowercase hex characters)")
        return digest

    def path(self, digest: str) -> str:
        """Where the blob ``digest`` lives in the store's filesystem."""
        self._check(digest)
        return f"{self.root}/sha256/{digest[:2]}/{digest}"

    def exists(self, digest: str) -> bool:
        """Whether the blob is stored."""
        path = self.path(digest)
        try:
            return bool(self.fs.exists(path))
        except storage_errors() as exc:
            raise BackendError(f"artifact store {self.uri!r}: cannot look up blob {digest}: {exc}") from exc

    def _intact(self, digest: str) -> bool:
        """Whether the blob is stored and its bytes still hash to ``digest``."""
        h = hashlib.sha256()
        try:
            with self.fs.open(self.path(digest), "rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
        except FileNotFoundError:
            return False
        return h.hexdigest() == digest

    # -- writes ----------------------------------------------------------------------------------------------
    def _store(self, digest: str, chunks: Iterable[bytes | bytearray | memoryview]) -> str:
        """Write ``chunks`` as the blob ``digest`` unless an intact copy is stored already.

        A damaged copy is replaced (the rename, or the completed upload, over it is still atomic). Bytes that do
        not hash to ``digest`` are never published.
        """
        h = hashlib.sha256()
        try:
            if self._intact(digest):  # the same content is stored: keep the first copy, write nothing
                return digest
            with atomic_open(self.fs, self.path(digest)) as f:
                for chunk in chunks:
                    h.update(chunk)
                    f.write(chunk)
                if h.hexdigest() != digest:
                    raise _Mismatch
                if not writes_whole(self.fs) and self._intact(digest):
                    # Published meanwhile by a concurrent writer: keep its copy rather than replace it (a
                    # replacement by a move removes the object first, and a reader could miss it). An upload
                    # completed over it replaces it in one step with the same bytes: nothing to check.
                    raise _AlreadyStored
        except _AlreadyStored:
            pass
        except _Mismatch:
            raise BackendError(
                f"artifact store {self.uri!r}: the content changed while it was stored as blob {digest}; "
                "nothing was stored. Store it again once it no longer changes."
            ) from None
        except storage_errors() as exc:
            raise BackendError(f"artifact store {self.uri!r}: cannot store blob {digest}: {exc}") from exc
        return digest

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; returns its SHA-256.

        Storing the same bytes twice writes nothing, unless the stored copy was damaged: then it is replaced.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValidationError(f"put_bytes takes bytes, got {type(data).__name__}; encode text first")
        return self._store(hashlib.sha256(data).hexdigest(), [data])

    def put_file(self, path: str | Path) -> str:
        """Store a local file, streaming it; returns its SHA-256.

        The file is hashed first, so a file already stored is not written again; it is then copied while
        hashed once more, and refused if it changed in between.
        """
        try:
            src = open(path, "rb")  # noqa: SIM115 - closed below; opened first so a missing file writes nothing
        except FileNotFoundError as exc:
            raise NotFoundError(f"cannot store {str(path)!r} as an artifact: no such file") from exc
        except storage_errors() as exc:
            raise BackendError(f"cannot store {str(path)!r} as an artifact: cannot read it: {exc}") from exc
        with src:
            try:
                digest = hashlib.file_digest(src, "sha256").hexdigest()
                src.seek(0)
            except storage_errors() as exc:
                raise BackendError(f"cannot store {str(path)!r} as an artifact: cannot read it: {exc}") from exc
            return self._store(digest, iter(lambda: src.read(_CHUNK), b""))

    # -- reads -----------------------------------------------------------------------------------------------
    def get_bytes(self, digest: str, *, name: str | None = None) -> bytes:
        """The blob's bytes, verified against ``digest``.

        Args:
            digest: the blob's SHA-256.
            name: what the blob is (``model churn v3``), used in error messages.

        Raises:
            NotFoundError: no such blob.
            IntegrityError: the stored bytes do not hash to ``digest``.
        """
        label = f"artifact {name} ({digest})" if name else f"artifact {digest}"
        try:
            with self.fs.open(self.path(digest), "rb") as f:
                data: bytes = f.read()
        except FileNotFoundError as exc:
            raise NotFoundError(f"{label} is not in the artifact store {self.uri!r}") from exc
        except storage_errors() as exc:
            raise BackendError(f"artifact store {self.uri!r}: cannot read {label}: {exc}") from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise IntegrityError(
                f"{label} in {self.uri!r} is corrupt: its content hashes to {actual}; it was refused. "
                "Restore it from a backup or re-create it."
            )
        return data

    def get_file(self, digest: str, dest: str | Path, *, name: str | None = None) -> Path:
        """Copy the blob to a local file, verified; the file appears only once verified (atomically, and
        durably, as :func:`keel._files.atomic_open` writes)."""
        import fsspec

        dest = Path(dest)
        self._check(digest)
        label = f"artifact {name} ({digest})" if name else f"artifact {digest}"
        local = fsspec.filesystem("file")
        h = hashlib.sha256()
        try:
            with self.fs.open(self.path(digest), "rb") as src, atomic_open(local, str(dest)) as dst:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    dst.write(chunk)
                if h.hexdigest() != digest:
                    raise _Mismatch
        except _Mismatch:
            raise IntegrityError(
                f"{label} in {self.uri!r} is corrupt: its content hashes to {h.hexdigest()}; it was refused. "
                "Restore it from a backup or re-create it."
            ) from None
        except FileNotFoundError as exc:
            raise NotFoundError(f"{label} is not in the artifact store {self.uri!r}") from exc
        except storage_errors() as exc:
            raise BackendError(f"artifact store {self.uri!r}: cannot copy {label} to {dest}: {exc}") from exc
        return dest

    def open_verified(self, digest: str, *, name: str | None = None) -> BinaryIO:
        """A file-like object over the verified bytes of the blob."""
        import io

        return io.BytesIO(self.get_bytes(digest, name=name))
