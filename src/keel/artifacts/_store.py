"""A content-addressed blob store on any fsspec filesystem.

Blobs live at ``<root>/sha256/<ab>/<digest>``. A write goes to ``<root>/tmp/<random>`` and is renamed into
place only when complete, so a reader never sees half a blob; a read re-hashes the bytes and refuses a
mismatch before anything is deserialized.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path
from typing import Any, BinaryIO

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
        import fsspec

        self.uri = str(uri)
        try:
            self.fs, root = fsspec.core.url_to_fs(self.uri)
        except (ImportError, ValueError) as exc:
            raise BackendError(f"artifact store {self.uri!r}: cannot open its filesystem: {exc}") from exc
        self.root = root.rstrip("/") if root not in ("", "/") else root
        self._local = self.fs.protocol in ("file", "local") or (
            isinstance(self.fs.protocol, tuple) and "file" in self.fs.protocol
        )

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

    def _tmp(self) -> str:
        return f"{self.root}/tmp/{uuid.uuid4().hex}"

    def exists(self, digest: str) -> bool:
        """Whether the blob is stored."""
        return bool(self.fs.exists(self.path(digest)))

    # -- writes ----------------------------------------------------------------------------------------------
    def _commit(self, tmp: str, digest: str) -> str:
        final = self.path(digest)
        try:
            if self.fs.exists(final):  # same content already stored: keep the first copy
                self.fs.rm(tmp)
                return digest
            self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
            self.fs.mv(tmp, final)
        except OSError as exc:
            raise BackendError(f"artifact store {self.uri!r}: cannot store blob {digest}: {exc}") from exc
        return digest

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; returns its SHA-256 (storing the same bytes twice is a no-op)."""
        digest = hashlib.sha256(data).hexdigest()
        if self.exists(digest):
            return digest
        tmp = self._tmp()
        try:
            self.fs.makedirs(tmp.rsplit("/", 1)[0], exist_ok=True)
            with self.fs.open(tmp, "wb") as f:
                f.write(data)
                if self._local:
                    f.flush()
                    _fsync(f)
        except OSError as exc:
            raise BackendError(f"artifact store {self.uri!r}: cannot write: {exc}") from exc
        return self._commit(tmp, digest)

    def put_file(self, path: str | Path) -> str:
        """Store a local file, streaming it; returns its SHA-256."""
        h = hashlib.sha256()
        tmp = self._tmp()
        try:
            self.fs.makedirs(tmp.rsplit("/", 1)[0], exist_ok=True)
            with open(path, "rb") as src, self.fs.open(tmp, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    dst.write(chunk)
                if self._local:
                    dst.flush()
                    _fsync(dst)
        except FileNotFoundError as exc:
            raise NotFoundError(f"cannot store {str(path)!r} as an artifact: no such file") from exc
        except OSError as exc:
            raise BackendError(f"artifact store {self.uri!r}: cannot write: {exc}") from exc
        return self._commit(tmp, h.hexdigest())

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
                data = f.read()
        except FileNotFoundError as exc:
            raise NotFoundError(f"{label} is not in the artifact store {self.uri!r}") from exc
        except OSError as exc:
            raise BackendError(f"artifact store {self.uri!r}: cannot read {label}: {exc}") from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise IntegrityError(
                f"{label} in {self.uri!r} is corrupt: its content hashes to {actual}; it was refused. "
                "Restore it from a backup or re-create it."
            )
        return data

    def get_file(self, digest: str, dest: str | Path, *, name: str | None = None) -> Path:
        """Copy the blob to a local file, verified; the file appears only once verified."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
        label = f"artifact {name} ({digest})" if name else f"artifact {digest}"
        h = hashlib.sha256()
        try:
            with self.fs.open(self.path(digest), "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    dst.write(chunk)
        except FileNotFoundError as exc:
            tmp.unlink(missing_ok=True)
            raise NotFoundError(f"{label} is not in the artifact store {self.uri!r}") from exc
        if h.hexdigest() != digest:
            tmp.unlink(missing_ok=True)
            raise IntegrityError(
                f"{label} in {self.uri!r} is corrupt: its content hashes to {h.hexdigest()}; it was refused."
            )
        tmp.replace(dest)
        return dest

    def open_verified(self, digest: str, *, name: str | None = None) -> BinaryIO:
        """A file-like object over the verified bytes of the blob."""
        import io

        return io.BytesIO(self.get_bytes(digest, name=name))


def _fsync(f: Any) -> None:
    import os

    fileno = getattr(f, "fileno", None)
    if fileno is None:
        return
    try:
        os.fsync(fileno())
    except (OSError, ValueError):  # io.UnsupportedOperation: not backed by a real file
        pass
