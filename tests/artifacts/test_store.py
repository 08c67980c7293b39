"""What the artifact store does on each kind of storage beyond the conformance suite: how a rename failure is
reported, durability on a local disk, and a filesystem that cannot be opened."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from keel._files import is_local
from keel.artifacts import ArtifactStore, sha256_file
from keel.errors import BackendError

PAYLOAD = b"model bytes \x00\x01\x02" * 1000


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return ArtifactStore(tmp_path / "artifacts")
    return ArtifactStore(f"memory://keel-test-{uuid.uuid4().hex}")


def test_sha256_file_hashes_a_local_file_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(PAYLOAD * 300)

    assert sha256_file(path) == hashlib.sha256(PAYLOAD * 300).hexdigest()


def test_a_failed_rename_leaves_neither_the_blob_nor_a_temporary_file(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(src: str, dst: str, **kw: Any) -> None:
        raise OSError("no space left on device")

    if is_local(store.fs):
        monkeypatch.setattr(os, "replace", broken)  # the local disk renames with os.replace
    else:
        monkeypatch.setattr(store.fs, "mv", broken)  # other filesystems with their own move
    digest = hashlib.sha256(PAYLOAD).hexdigest()

    with pytest.raises(BackendError, match=rf"cannot store blob {digest}: no space left on device"):
        store.put_bytes(PAYLOAD)

    monkeypatch.undo()
    assert not store.exists(digest)
    assert store.fs.find(store.root) == []


def test_a_blob_on_a_local_disk_is_synced_before_and_after_its_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    synced: list[int] = []  # inodes, in the order they were synced
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_ino), real_fsync(fd)))

    digest = store.put_bytes(PAYLOAD)

    final = store.path(digest)
    # the file's bytes (written under a temporary name, then renamed: the same inode), then its folder
    assert synced == [os.stat(final).st_ino, os.stat(os.path.dirname(final)).st_ino]


def test_a_filesystem_that_cannot_be_opened_is_a_backend_error_naming_the_artifact_store() -> None:
    with pytest.raises(BackendError, match=r"artifact store: cannot open the filesystem of 'nosuchfs://x'"):
        ArtifactStore("nosuchfs://x")
