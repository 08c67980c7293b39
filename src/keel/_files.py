"""The one storage primitive: where a URI lives (fsspec), and how a file or a folder is published atomically.

Invariant 4 (a crash leaves the old state or the new state, never half of one) lives here, with one durability
rule for every writer in Keel:

* a file is written under a hidden temporary name beside its final name, then renamed into place, so a reader
  never sees part of it;
* on a local disk, the file's bytes are synced before the rename and its folder is synced after it, so the
  published file survives a power cut as soon as the call returns;
* on S3 (and S3-compatible stores) a file is uploaded straight to its final key as a multipart upload that is
  completed only when the whole file was written, and aborted otherwise: an object appears whole or not at
  all, so no temporary object and no copy are needed (:func:`writes_whole`);
* on any other filesystem (``gs://``, ``memory://`` ...) the temporary object is moved into place with the
  filesystem's own move.

Example:
    >>> fs, root, local = open_filesystem("memory://files-doc")
    >>> atomic_write(fs, f"{root}/a.txt", b"hello")
    >>> fs.cat(f"{root}/a.txt")
    b'hello'
    >>> uri_of(fs, f"{root}/a.txt")
    'memory://files-doc/a.txt'
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from typing import Any, BinaryIO

from keel.errors import BackendError

__all__ = [
    "atomic_open",
    "atomic_write",
    "discard",
    "fsync_dir",
    "is_local",
    "open_filesystem",
    "protocol_of",
    "publish_folder",
    "replace",
    "storage_errors",
    "temp_name",
    "uri_of",
    "writes_whole",
]


def open_filesystem(uri: str) -> tuple[Any, str, bool]:
    """``(filesystem, root path, is_local)`` of a local path or an fsspec URI.

    Raises:
        BackendError: the URI's filesystem cannot be opened (an unknown scheme, a missing fsspec extra).
    """
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(str(uri))
    except ImportError as exc:
        scheme = str(uri).partition("://")[0].lower()
        hint = "; pip install 'keel[s3]'" if scheme in ("s3", "s3a") else ""
        raise BackendError(f"cannot open the filesystem of {str(uri)!r}: {exc}{hint}") from exc
    except ValueError as exc:
        raise BackendError(f"cannot open the filesystem of {str(uri)!r}: {exc}") from exc
    root = root.rstrip("/") or "/"
    return fs, root, is_local(fs)


def storage_errors() -> tuple[type[Exception], ...]:
    """What a filesystem raises when the storage itself fails: ``OSError`` (fsspec's translation of most
    failures, a missing file or a refused permission included), and for S3 botocore's own errors, which s3fs
    passes on untranslated (no connection to the endpoint, a timeout, no credentials found)."""
    errors: list[type[Exception]] = [OSError]
    botocore = sys.modules.get("botocore.exceptions")  # loaded by s3fs: nothing to catch until S3 is used
    if botocore is not None:
        errors += [botocore.BotoCoreError, botocore.ClientError]
    return tuple(errors)


def protocol_of(fs: Any) -> str:
    """The filesystem's main protocol name (``file``, ``memory``, ``s3`` ...)."""
    protocol = fs.protocol
    return str(protocol if isinstance(protocol, str) else protocol[0])


def is_local(fs: Any) -> bool:
    """Whether ``fs`` is the local disk."""
    protocol = fs.protocol
    names = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    return "file" in names or "local" in names


#: Filesystems whose uploads become visible only when completed, whole (S3's multipart upload).
_WHOLE_UPLOADS = frozenset({"s3", "s3a"})


def writes_whole(fs: Any) -> bool:
    """Whether a file written to ``fs`` appears only once complete, so it can be written in place: an S3
    multipart upload, completed when the file is closed without an error and aborted otherwise."""
    protocol = fs.protocol
    names = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    return bool(_WHOLE_UPLOADS.intersection(names))


def uri_of(fs: Any, path: str) -> str:
    """``path`` of ``fs`` as something another reader (DuckDB, pyarrow, a worker process) can open: the path
    itself on the local disk, else a URI with the filesystem's protocol."""
    if is_local(fs) or "://" in path:
        return path
    return f"{protocol_of(fs)}://{path.lstrip('/')}"


def temp_name(path: str) -> str:
    """A hidden, unique temporary name beside ``path`` (``dir/.name.<hex>.tmp``)."""
    head, _, name = path.rpartition("/")
    hidden = f".{name}.{uuid.uuid4().hex[:12]}.tmp"
    return f"{head}/{hidden}" if head else hidden


def fsync_dir(path: str) -> None:
    """Sync a local folder, so that a rename inside it is durable (best effort: some filesystems cannot)."""
    try:
        fd = os.open(path or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _fsync(f: Any) -> None:
    fileno = getattr(f, "fileno", None)
    if fileno is None:
        return
    with contextlib.suppress(OSError, ValueError):  # io.UnsupportedOperation: not backed by a real file
        f.flush()
        os.fsync(fileno())


def discard(fs: Any, path: str) -> None:
    """Remove a temporary file or folder after a failure (best effort: the failure itself is what is reported)."""
    with contextlib.suppress(Exception):
        if fs.exists(path):
            fs.rm(path, recursive=fs.isdir(path))


def replace(fs: Any, src: str, dst: str) -> None:
    """Rename the finished file ``src`` to ``dst``, replacing it: atomic and durable on a local disk, the
    filesystem's own move elsewhere."""
    if is_local(fs):
        os.replace(src, dst)
        fsync_dir(os.path.dirname(dst))
        return
    if fs.exists(dst):
        fs.rm(dst)
    fs.mv(src, dst)


@contextlib.contextmanager
def atomic_open(fs: Any, path: str, *, makedirs: bool = True) -> Iterator[BinaryIO]:
    """A binary file to write that appears at ``path`` only when the block ends without an error.

    On an error the temporary file (or the unfinished upload) is removed and the error propagates; ``path`` is
    left as it was.
    """
    if writes_whole(fs):
        with _whole_upload(fs, path) as f:
            yield f
        return
    parent = path.rpartition("/")[0]
    if makedirs and parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = temp_name(path)
    local = is_local(fs)
    try:
        with fs.open(tmp, "wb") as f:
            yield f
            if local:
                _fsync(f)
        replace(fs, tmp, path)
    except BaseException:
        discard(fs, tmp)
        raise


@contextlib.contextmanager
def _whole_upload(fs: Any, path: str) -> Iterator[BinaryIO]:
    """An upload to ``path`` that is completed (made visible) only when the block ends without an error.

    There are no folders to make on an object store: a missing bucket is an error of the write.
    """
    f = fs.open(path, "wb", autocommit=False)
    try:
        yield f
        f.close()  # uploads what is left as the last part; nothing is visible yet
        f.commit()
    except BaseException:
        with contextlib.suppress(Exception):
            f.close()
        with contextlib.suppress(Exception):
            f.discard()  # aborts the upload: its parts are dropped
        raise
    finally:
        # fsspec queues every file opened without autocommit for a transaction; this one is settled already.
        with contextlib.suppress(Exception):
            fs.transaction.files.remove(f)


def atomic_write(fs: Any, path: str, data: bytes | str) -> None:
    """Write ``data`` (text is UTF-8) to ``path`` atomically (see the module docstring for the durability)."""
    with atomic_open(fs, path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def publish_folder(fs: Any, tmp: str, final: str) -> bool:
    """Rename the finished folder ``tmp`` to ``final``; ``False`` (and ``tmp`` removed) when ``final`` exists
    already, published by a concurrent writer of the same content.

    Callers write content-addressed folders, so an existing ``final`` holds the same data. The caller syncs the
    files it wrote; the rename is synced here.
    """
    if is_local(fs):
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isdir(final):
                raise
            discard(fs, tmp)
            return False
        fsync_dir(os.path.dirname(final))
        return True
    if fs.exists(final):
        discard(fs, tmp)
        return False
    fs.mv(tmp, final, recursive=True)
    return True
