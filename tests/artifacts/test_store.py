"""The content-addressed artifact store, on a local folder and on fsspec's in-memory filesystem."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keel.artifacts import ArtifactStore, sha256_file
from keel.errors import BackendError, IntegrityError, NotFoundError, ValidationError

PAYLOAD = b"model bytes \x00\x01\x02" * 1000


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "local":
        yield ArtifactStore(tmp_path / "artifacts")
        return
    root = f"memory://keel-test-{uuid.uuid4().hex}"
    memory_store = ArtifactStore(root)
    yield memory_store
    if memory_store.fs.exists(memory_store.root):
        memory_store.fs.rm(memory_store.root, recursive=True)


def _overwrite(store: ArtifactStore, digest: str, data: bytes) -> None:
    with store.fs.open(store.path(digest), "wb") as f:
        f.write(data)


def _tmp_files(store: ArtifactStore) -> list[str]:
    tmp = f"{store.root}/tmp"
    return list(store.fs.find(tmp)) if store.fs.exists(tmp) else []


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

    assert digest == sha256_file(source) == hashlib.sha256(PAYLOAD * 300).hexdigest()
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
    assert store.fs.find(f"{store.root}/sha256") == [store.path(first)]
    assert _tmp_files(store) == []


def test_a_write_goes_to_a_temporary_name_and_is_renamed_only_when_complete(
    store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(PAYLOAD * 300)
    digest = hashlib.sha256(PAYLOAD * 300).hexdigest()
    final = store.path(digest)
    real_open, real_mv = store.fs.open, store.fs.mv
    seen: dict[str, Any] = {}

    def spy_open(path: str, mode: str = "rb", **kw: Any) -> Any:
        if "w" in mode:
            seen["written_to"] = path
            seen["final_existed_while_writing"] = store.fs.exists(final)
        return real_open(path, mode, **kw)

    def spy_mv(src: str, dst: str, **kw: Any) -> Any:
        seen["moved"] = (src, dst)
        seen["final_existed_before_rename"] = store.fs.exists(final)
        with real_open(src, "rb") as f:
            seen["complete_before_rename"] = f.read() == PAYLOAD * 300
        return real_mv(src, dst, **kw)

    monkeypatch.setattr(store.fs, "open", spy_open)
    monkeypatch.setattr(store.fs, "mv", spy_mv)

    assert store.put_file(source) == digest

    assert seen["written_to"].startswith(f"{store.root}/tmp/")
    assert seen["moved"] == (seen["written_to"], final)
    assert seen["final_existed_while_writing"] is False
    assert seen["final_existed_before_rename"] is False
    assert seen["complete_before_rename"] is True
    assert _tmp_files(store) == []


def test_a_failed_rename_leaves_neither_the_blob_nor_a_temporary_file(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_mv(src: str, dst: str, **kw: Any) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(store.fs, "mv", broken_mv)
    digest = hashlib.sha256(PAYLOAD).hexdigest()

    with pytest.raises(BackendError, match=rf"cannot store blob {digest}: no space left on device"):
        store.put_bytes(PAYLOAD)

    assert not store.exists(digest)
    assert _tmp_files(store) == []


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
    assert _tmp_files(store) == []


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

    assert _tmp_files(store) == []


def test_put_bytes_refuses_text(store: ArtifactStore) -> None:
    with pytest.raises(ValidationError, match="put_bytes takes bytes, got str"):
        store.put_bytes("hello")  # type: ignore[arg-type]
