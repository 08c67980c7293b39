"""A content-addressed blob store on any fsspec filesystem.

Blobs live at ``<root>/sha256/<ab>/<digest>``. A write goes to ``<root>/tmp/<random>`` and is renamed into
place only when complete, so a reader never sees half a blob; a read re-hashes the bytes and refuses a
mismatch before anything is deserialized.
"""

from __future__ import annotations

import contextlib
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
    def _discard(self, tmp: str) -> None:
        """Remove a temporary file after a failure (best effort: the failure itself is what gets reported)."""
        try:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
        except OSError:
            pass

    def _commit(self, tmp: str, digest: str) -> str:
        final = self.path(digest)
        try:
            if self._intact(digest):  # same content already stored: keep the first copy
                self.fs.rm(tmp)
                return digest
            # absent, or corrupt: the verified new copy replaces it (a rename over it, still atomic)
            parent = final.rsplit("/", 1)[0]
            self.fs.makedirs(parent, exist_ok=True)
            self.fs.mv(tmp, final)
            if self._local:
                _fsync_dir(parent)  # the rename itself is durable only once its folder is synced
        except OSError as exc:
            self._discard(tmp)
            raise BackendError(f"artifact store {self.uri!r}: cannot store blob {digest}: {exc}") from exc
        return digest

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; returns its SHA-256.

        Storing the same bytes twice writes nothing, unless the stored copy was damaged: then it is replaced.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValidationError(f"put_bytes takes bytes, got {type(data).__name__}; encode text first")
        digest = hashlib.sha256(data).hexdigest()
        if self._intact(digest):
            return digest
        tmp = self._tmp()
        try:
            self.fs.makedirs(tmp.rsplit("/", 1)[0], exist_ok=True)
            with self.fs.open(tmp, "wb") as f:
                f.write(data)
                if self._local:
                    f.flush()
                    _fsync(f)
        except BaseException as exc:
            self._discard(tmp)
            if isinstance(exc, OSError):
                raise BackendError(f"artifact store {self.uri!r}: cannot write: {exc}") from exc
            raise
        return self._commit(tmp, digest)

    def put_file(self, path: str | Path) -> str:
        """Store a local file, streaming it; returns its SHA-256."""
        h = hashlib.sha256()
        tmp = self._tmp()
        try:
            src = open(path, "rb")  # noqa: SIM115 - closed below; opened first so a missing file writes nothing
        except FileNotFoundError as exc:
            raise NotFoundError(f"cannot store {str(path)!r} as an artifact: no such file") from exc
        except OSError as exc:
            raise BackendError(f"cannot store {str(path)!r} as an artifact: cannot read it: {exc}") from exc
        try:
            with src:
                self.fs.makedirs(tmp.rsplit("/", 1)[0], exist_ok=True)
                with self.fs.open(tmp, "wb") as dst:
                    while chunk := src.read(_CHUNK):
                        h.update(chunk)
                        dst.write(chunk)
                    if self._local:
                        dst.flush()
                        _fsync(dst)
        except BaseException as exc:
            self._discard(tmp)
            if isinstance(exc, OSError):
                raise BackendError(f"artifact store {self.uri!r}: cannot write: {exc}") from exc
            raise
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
                data: bytes = f.read()
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
        self._check(digest)
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
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise BackendError(f"artifact store {self.uri!r}: cannot copy {label} to {dest}: {exc}") from exc
            raise
        if h.hexdigest() != digest:
            tmp.unlink(missing_ok=True)
            raise IntegrityError(
                f"{label} in {self.uri!r} is corrupt: its content hashes to {h.hexdigest()}; it was refused. "
                "Restore it from a backup or re-create it."
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
    with contextlib.suppress(OSError, ValueError):  # io.UnsupportedOperation: not backed by a real file
        os.fsync(fileno())


def _fsync_dir(path: str) -> None:
    import os

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some filesystems cannot sync a folder
            os.fsync(fd)
    finally:
        os.close(fd)
