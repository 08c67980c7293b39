"""One specification of the artifact store, run on every kind of storage available without a network:
a local folder given as a path, the same as a ``file://`` URI, fsspec's in-memory filesystem, and S3 (moto's
S3-compatible server, run on 127.0.0.1 by ``tests/conftest.py``).

The store offers put (bytes, a local file), get (bytes, a local file, a verified reader) and exists; blobs are
immutable, so there is no delete. Every kind keeps: content addressing, one copy per content, atomic
publication (a reader never sees part of a blob; a failed write leaves nothing behind), and integrity (a
damaged blob is refused, and putting its content again repairs it).
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keel._files import writes_whole
from keel.artifacts import ArtifactStore
from keel.errors import BackendError, IntegrityError, NotFoundError, ValidationError

PAYLOAD = b"model bytes \x00\x01\x02" * 1000


@pytest.fixture(params=["folder", "file_uri", "memory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "folder":
        yield ArtifactStore(tmp_path / "artifacts")
        return
    if request.param == "file_uri":
        yield ArtifactStore(f"file://{tmp_path / 'artifacts'}")
        return
    if request.param == "s3":  # moto's S3-compatible server (tests/conftest.py), a fresh bucket
        yield ArtifactStore(f"s3://{request.getfixturevalue('s3_bucket')}/artifacts")
        return
    memory_store = ArtifactStore(f"memory://keel-test-{uuid.uuid4().hex}")
    yield memory_store
    if memory_store.fs.exists(memory_store.root):
        memory_store.fs.rm(memory_store.root, recursive=True)


def _overwrite(store: ArtifactStore, digest: str, data: bytes) -> None:
    with store.fs.open(store.path(digest), "wb") as f:
        f.write(data)


def _files(store: ArtifactStore) -> list[str]:
    """Every file under the store's root (blobs, and any temporary file left behind)."""
    return sorted(store.fs.find(store.root)) if store.fs.exists(store.root) else []


def test_put_bytes_returns_the_sha256_and_get_bytes_returns_the_bytes(store: ArtifactStore) -> None:
    digest = store.put_bytes(PAYLOAD)

    assert digest == hashlib.sha256(PAYLOAD).hexdigest()
    assert store.exists(digest)
    assert store.get_bytes(digest) == PAYLOAD
    assert store.path(digest).endswith(f"/sha256/{digest[:2]}/{digest}")


def test_put_file_streams_a_local_file_and_get_file_writes_it_back(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "model.skops"
    source.write_bytes(PAYLOAD * 300)  # several read chunks

    digest = store.put_file(source)
    copy = store.get_file(digest, tmp_path / "out" / "model.skops")

    assert digest == hashlib.sha256(PAYLOAD * 300).hexdigest()
    assert copy == tmp_path / "out" / "model.skops"
    assert copy.read_bytes() == PAYLOAD * 300
    assert [p.name for p in copy.parent.iterdir()] == ["model.skops"]


def test_putting_the_same_content_twice_stores_one_blob(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "same.bin"
    source.write_bytes(PAYLOAD)

    first = store.put_bytes(PAYLOAD)
    second = store.put_bytes(PAYLOAD)
    third = store.put_file(source)

    assert first == second == third
    assert _files(store) == [store.path(first)]


def test_a_blob_is_absent_until_it_is_written_completely(
    store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(PAYLOAD * 300)  # several chunks
    digest = hashlib.sha256(PAYLOAD * 300).hexdigest()
    real_open = store.fs.open
    seen: list[tuple[str, bool]] = []

    class Spy:
        """A file being written that notes, at each write, whether the blob is visible yet."""

        def __init__(self, f: Any, path: str) -> None:
            self.f, self.path = f, path

        def write(self, data: bytes) -> int:
            seen.append((self.path, store.exists(digest)))
            return int(self.f.write(data))

        def __getattr__(self, name: str) -> Any:
            return getattr(self.f, name)

        def __enter__(self) -> Spy:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.__exit__(*exc)

    def spy_open(path: str, mode: str = "rb", **kw: Any) -> Any:
        f = real_open(path, mode, **kw)
        return Spy(f.__enter__(), path) if "w" in mode else f

    monkeypatch.setattr(store.fs, "open", spy_open)

    assert store.put_file(source) == digest

    assert len(seen) > 1
    assert {visible for _, visible in seen} == {False}
    if not writes_whole(store.fs):  # S3 uploads to the blob's own key, invisible until completed (as seen above)
        assert {path for path, _ in seen} != {store.path(digest)}  # written under another name, then renamed
    monkeypatch.undo()
    assert store.get_bytes(digest) == PAYLOAD * 300
    assert _files(store) == [store.path(digest)]


def test_a_write_that_fails_midway_stores_nothing_and_leaves_no_temporary_file(
    store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = store.put_bytes(b"stored before")
    source = tmp_path / "big.bin"
    source.write_bytes(PAYLOAD * 300)
    digest = hashlib.sha256(PAYLOAD * 300).hexdigest()
    real_open = store.fs.open

    class Full:
        def __init__(self, f: Any) -> None:
            self.f, self.writes = f, 0

        def write(self, data: bytes) -> int:
            self.writes += 1
            if self.writes == 2:
                raise OSError("no space left on device")
            return int(self.f.write(data))

        def __getattr__(self, name: str) -> Any:
            return getattr(self.f, name)

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.__exit__(*exc)

    def full_open(path: str, mode: str = "rb", **kw: Any) -> Any:
        f = real_open(path, mode, **kw)
        return Full(f.__enter__()) if "w" in mode else f

    monkeypatch.setattr(store.fs, "open", full_open)

    with pytest.raises(BackendError, match=rf"cannot store blob {digest}: no space left on device") as err:
        store.put_file(source)

    assert isinstance(err.value.__cause__, OSError)
    monkeypatch.undo()
    assert not store.exists(digest)
    assert _files(store) == [store.path(kept)]
    assert store.get_bytes(kept) == b"stored before"


def test_a_file_that_changes_while_it_is_stored_is_refused_and_nothing_is_stored(
    store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(PAYLOAD)
    before = hashlib.sha256(b"what the file held when it was hashed")
    monkeypatch.setattr(hashlib, "file_digest", lambda f, name: before)  # then it changed to PAYLOAD

    with pytest.raises(BackendError, match=r"the content changed while it was stored as blob .*nothing was stored"):
        store.put_file(source)

    assert _files(store) == []


def test_concurrent_writers_of_the_same_content_leave_one_intact_blob(store: ArtifactStore) -> None:
    results: list[str] = []
    failures: list[BaseException] = []
    start = threading.Barrier(8)

    def put() -> None:
        try:
            start.wait()
            results.append(store.put_bytes(PAYLOAD * 50))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=put) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    digest = hashlib.sha256(PAYLOAD * 50).hexdigest()
    assert results == [digest] * 8
    assert _files(store) == [store.path(digest)]
    assert store.get_bytes(digest) == PAYLOAD * 50


def test_byte_buffers_are_stored_like_bytes(store: ArtifactStore) -> None:
    digest = store.put_bytes(bytearray(PAYLOAD))

    assert store.put_bytes(memoryview(PAYLOAD)) == digest
    assert store.get_bytes(digest) == PAYLOAD


def test_a_corrupt_blob_is_refused_with_an_error_naming_the_artifact(store: ArtifactStore) -> None:
    digest = store.put_bytes(PAYLOAD)
    _overwrite(store, digest, PAYLOAD[:-1] + b"!")

    with pytest.raises(IntegrityError) as info:
        store.get_bytes(digest, name="model churn v3")

    message = str(info.value)
    assert f"artifact model churn v3 ({digest})" in message
    assert "is corrupt" in message
    assert "refused" in message
    assert hashlib.sha256(PAYLOAD[:-1] + b"!").hexdigest() in message


def test_putting_the_content_again_repairs_a_corrupt_blob(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(PAYLOAD)
    digest = store.put_bytes(PAYLOAD)
    _overwrite(store, digest, b"tampered")
    with pytest.raises(IntegrityError):
        store.get_bytes(digest)

    assert store.put_bytes(PAYLOAD) == digest
    assert store.get_bytes(digest) == PAYLOAD
    _overwrite(store, digest, b"tampered again")
    assert store.put_file(source) == digest
    assert store.get_bytes(digest) == PAYLOAD
    assert _files(store) == [store.path(digest)]


def test_open_verified_refuses_a_corrupt_blob(store: ArtifactStore) -> None:
    digest = store.put_bytes(PAYLOAD)
    good = store.open_verified(digest).read()
    _overwrite(store, digest, b"tampered")

    with pytest.raises(IntegrityError, match=digest):
        store.open_verified(digest)
    assert good == PAYLOAD


def test_get_file_of_a_corrupt_blob_leaves_no_file(store: ArtifactStore, tmp_path: Path) -> None:
    digest = store.put_bytes(PAYLOAD)
    _overwrite(store, digest, b"tampered")
    out = tmp_path / "out"

    with pytest.raises(IntegrityError, match=rf"artifact preprocessor \({digest}\)"):
        store.get_file(digest, out / "model.bin", name="preprocessor")

    assert list(out.iterdir()) == []


def test_get_file_of_a_corrupt_blob_keeps_an_existing_destination_unchanged(
    store: ArtifactStore, tmp_path: Path
) -> None:
    digest = store.put_bytes(PAYLOAD)
    _overwrite(store, digest, b"tampered")
    dest = tmp_path / "out" / "model.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"previous good copy")

    with pytest.raises(IntegrityError):
        store.get_file(digest, dest)

    assert dest.read_bytes() == b"previous good copy"
    assert [p.name for p in dest.parent.iterdir()] == ["model.bin"]


@pytest.mark.parametrize("bad", ["abc", "A" * 64, "g" * 64, "../" + "0" * 61, ""])
def test_an_invalid_digest_is_a_validation_error(store: ArtifactStore, bad: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="is not a SHA-256 digest"):
        store.get_bytes(bad)
    with pytest.raises(ValidationError, match="is not a SHA-256 digest"):
        store.exists(bad)
    with pytest.raises(ValidationError, match="is not a SHA-256 digest"):
        store.get_file(bad, tmp_path / "nested" / "out.bin")
    assert not (tmp_path / "nested").exists()


def test_a_missing_blob_is_not_found(store: ArtifactStore, tmp_path: Path) -> None:
    digest = hashlib.sha256(b"never stored").hexdigest()

    assert not store.exists(digest)
    with pytest.raises(NotFoundError, match=rf"artifact scaler \({digest}\) is not in the artifact store"):
        store.get_bytes(digest, name="scaler")
    with pytest.raises(NotFoundError, match=digest):
        store.get_file(digest, tmp_path / "out.bin")
    assert list(tmp_path.glob("*out.bin*")) == []


def test_putting_a_missing_file_is_not_found_and_writes_nothing(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"no-such\.bin' as an artifact: no such file"):
        store.put_file(tmp_path / "no-such.bin")

    assert _files(store) == []


def test_put_bytes_refuses_text(store: ArtifactStore) -> None:
    with pytest.raises(ValidationError, match="put_bytes takes bytes, got str"):
        store.put_bytes("hello")  # type: ignore[arg-type]
