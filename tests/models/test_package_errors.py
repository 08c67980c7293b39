"""A damaged, foreign or newer model package is a clear Keel error, never a traceback, and loading it runs no
code: in Python (``loads`` and the registry), an :class:`IntegrityError` (or, for pickle not allowed and unknown
formats, a :class:`ValidationError`) naming the package and the problem on one line; on the command line, that
line after ``error:`` and exit code 1.

The registry checks a package's SHA-256 before it reads a byte of it, so these packages reach the readers only
when their hash is the one recorded: written by another (newer) Keel, or a catalog row pointing at crafted bytes.
Here each is stored in the artifact store and the version's catalog row pointed at it.
"""

from __future__ import annotations

import io
import sqlite3
import struct
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

import keel
from _training_fixtures import build_project
from keel.cli import main
from keel.errors import BackendError, IntegrityError, KeelError, ValidationError
from keel.models import ModelPackage, dumps, loads
from keel.models import _keelfmt as fmt
from keel.training import TrainingSpec

LABEL = "model churn v1"


@dataclass(frozen=True)
class Blobs:
    keel: bytes
    skops: bytes
    joblib: bytes


@dataclass(frozen=True)
class Case:
    """A package's bytes made from a good package's, its recorded format, and what the error must say."""

    id: str
    make: Callable[[Blobs], bytes]
    format: str
    says: str
    error: type[KeelError] = IntegrityError
    allow_pickle: bool = False


# -- crafting ----------------------------------------------------------------------------------------------------
def central_entry(blob: bytes, name_suffix: bytes) -> int:
    """The offset of the zip's central directory entry of the first member whose name ends with ``name_suffix``."""
    at = blob.find(b"PK\x01\x02")
    while at != -1:
        length = struct.unpack_from("<H", blob, at + 28)[0]
        if blob[at + 46 : at + 46 + length].endswith(name_suffix):
            return at
        at = blob.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"no member named *{name_suffix!r}")


def local_data(blob: bytes, name_suffix: bytes) -> int:
    """The offset of the data of the first member whose name ends with ``name_suffix``."""
    entry = central_entry(blob, name_suffix)
    header = struct.unpack_from("<I", blob, entry + 42)[0]
    name, extra = struct.unpack_from("<HH", blob, header + 26)
    return int(header + 30 + name + extra)


def with_bytes(blob: bytes, at: int, new: bytes) -> bytes:
    return blob[:at] + new + blob[at + len(new) :]


def bad_crc(b: Blobs) -> bytes:
    at = local_data(b.skops, b".npy") + 100  # a byte of the array's data: the member's CRC no longer matches
    return with_bytes(b.skops, at, bytes([b.skops[at] ^ 0xFF]))


def encrypted(b: Blobs) -> bytes:
    at = central_entry(b.skops, b".npy") + 8  # the general-purpose flags: bit 0 says "encrypted"
    return with_bytes(b.skops, at, struct.pack("<H", struct.unpack_from("<H", b.skops, at)[0] | 1))


def cut_short(b: Blobs) -> bytes:
    at = central_entry(b.skops, b"schema.json") + 20  # sizes far past the end of the archive
    return with_bytes(b.skops, at, struct.pack("<II", 10**7, 10**7))


def rezipped(b: Blobs, edit: Callable[[dict[str, bytes]], dict[str, bytes]]) -> bytes:
    with zipfile.ZipFile(io.BytesIO(b.skops)) as archive:
        members = edit({n: archive.read(n) for n in archive.namelist()})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def schema_edit(text: Callable[[str], str]) -> Callable[[Blobs], bytes]:
    return lambda b: rezipped(b, lambda m: {**m, "schema.json": text(m["schema.json"].decode()).encode()})


def newer_parts(b: Blobs) -> bytes:
    """What a newer Keel could write: its own version of the package's parts, in the skops format."""
    return sio.dumps({"format": 2, "estimator": None, "preprocessor": None, "meta": {"schema_v2": []}})


def keel_version(b: Blobs) -> bytes:
    return b.keel[:8] + struct.pack("<I", fmt.VERSION + 1) + b.keel[12:]


def pickled(value: object) -> bytes:
    out = io.BytesIO()
    joblib.dump(value, out)
    return out.getvalue()


CASES = [
    Case("keel: empty", lambda b: b"", "keel", "is not a Keel package (bad header)"),
    Case("keel: truncated", lambda b: b.keel[:100], "keel", "is truncated or corrupted"),
    Case("keel: a newer format version", keel_version, "keel", f"format version {fmt.VERSION + 1}; this Keel reads"),
    Case("skops: empty", lambda b: b"", "skops", "is not a skops package (File is not a zip file)"),
    Case("skops: truncated", lambda b: b.skops[: len(b.skops) // 2], "skops", "is not a skops package"),
    Case("skops: a member with a bad CRC", bad_crc, "skops", "Bad CRC-32"),
    Case("skops: a member flagged encrypted", encrypted, "skops", "encrypted"),
    Case("skops: a member cut short", cut_short, "skops", "is not a skops package"),
    Case(
        "skops: no schema.json",
        lambda b: rezipped(b, lambda m: {k: v for k, v in m.items() if k != "schema.json"}),
        "skops",
        "no item named 'schema.json'",
    ),
    Case(
        "skops: an array missing",
        lambda b: rezipped(b, lambda m: {k: v for k, v in m.items() if not k.endswith(".npy")}),
        "skops",
        ".npy' in the archive",
    ),
    Case("skops: schema.json not JSON", schema_edit(lambda s: s[:-10]), "skops", "is not a skops package"),
    Case(
        "skops: another skops protocol",
        schema_edit(lambda s: s.replace('"protocol": 2', '"protocol": 99')),
        "skops",
        "protocol 99",
    ),
    Case(
        "skops: a type off the allowlist",
        schema_edit(
            lambda s: s.replace('"LogisticRegression"', '"Popen"').replace(
                '"sklearn.linear_model._logistic"', '"subprocess"'
            )
        ),
        "skops",
        "subprocess.Popen",
    ),
    Case(
        "skops: a newer package version",
        newer_parts,
        "skops",
        "holds a model package of version 2; this Keel reads version 1: upgrade Keel",
    ),
    Case("skops: not a package", lambda b: sio.dumps([1, 2, 3]), "skops", "does not hold a model package"),
    Case("keel bytes said to be skops", lambda b: b.keel, "skops", "is not a skops package"),
    Case("joblib: not allowed", lambda b: b.joblib, "joblib", "loading it runs code from the file", ValidationError),
    Case("joblib: garbage", lambda b: b"garbage", "joblib", "cannot be read as a joblib package", allow_pickle=True),
    Case(
        "joblib: truncated", lambda b: b.joblib[:10], "joblib", "cannot be read as a joblib package", allow_pickle=True
    ),
    Case(
        "joblib: not a package",
        lambda b: pickled({"x": 1}),
        "joblib",
        "does not hold a model package",
        allow_pickle=True,
    ),
    Case("an unknown format", lambda b: b.keel, "onnx", "has unknown format 'onnx'; upgrade Keel", ValidationError),
]
IDS = [c.id for c in CASES]


# -- fixtures ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[keel.Project]:
    """``churn`` v1 registered; its catalog row is pointed at each case's bytes in turn."""
    root = tmp_path_factory.mktemp("package-errors") / "project"
    root.mkdir()
    with threadpool_limits(1):
        project, labels = build_project(root, n=120)
        spec = TrainingSpec(
            "churn",
            labels=labels[["customer_id", "ts", "churned"]],
            label="churned",
            features=["activity:spend"],
            model=LogisticRegression(max_iter=200),
        )
        project.models.register(project.train(spec))
    yield project
    project.close()


@pytest.fixture(scope="module")
def blobs(project: keel.Project) -> Blobs:
    package = project.models.load("churn:1")
    return Blobs(dumps(package)[0], dumps(package, prefer="skops")[0], pickled(package_parts(package)))


def package_parts(package: ModelPackage) -> dict[str, object]:
    from keel.models._serialization import _parts

    return _parts(package)


def point_version_at(project: keel.Project, blob: bytes, package_format: str) -> None:
    """Store ``blob`` and make ``churn`` v1's catalog row name it (its digest and format)."""
    digest = project.artifacts.put_bytes(blob)
    database = project.config.catalog.removeprefix("sqlite:///")
    with sqlite3.connect(database) as db:
        db.execute(
            "UPDATE keel_model_versions SET package_digest = ?, package_format = ? "
            "WHERE name = 'churn' AND version = 1",
            (digest, package_format),
        )


# -- the table ---------------------------------------------------------------------------------------------------
def test_the_good_package_loads_in_every_format(blobs: Blobs) -> None:
    """The control: what the cases damage loads when intact."""
    for blob, kind in ((blobs.keel, "keel"), (blobs.skops, "skops"), (blobs.joblib, "joblib")):
        assert isinstance(loads(blob, kind, allow_pickle=True), ModelPackage)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_loads_refuses_it_with_a_keel_error_naming_the_package(blobs: Blobs, case: Case) -> None:
    with pytest.raises(KeelError) as raised:
        loads(case.make(blobs), case.format, allow_pickle=case.allow_pickle, what=LABEL)

    assert type(raised.value) is case.error
    message = str(raised.value)
    assert message.startswith(LABEL) and case.says in message and "\n" not in message


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_registry_and_the_command_line_refuse_it(
    project: keel.Project,
    blobs: Blobs,
    case: Case,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    point_version_at(project, case.make(blobs), case.format)
    with pytest.raises(case.error, match=case.says.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        project.models.load("churn:1", allow_pickle=case.allow_pickle)

    source = tmp_path / "in.parquet"
    pd.DataFrame({"spend": np.arange(3.0)}).to_parquet(source)
    argv = ["keel", "predict", "--model", "churn:1", "--input", str(source), "--output", str(tmp_path / "out.parquet")]
    monkeypatch.setattr(
        sys, "argv", [*argv, "--project", str(project.root), *(["--allow-pickle"] if case.allow_pickle else [])]
    )
    with pytest.raises(SystemExit) as exited:
        main()

    assert exited.value.code == 1
    out, err = capsys.readouterr()
    [line] = err.splitlines()
    assert out == ""
    assert line.startswith(f"error: {LABEL}") and case.says in line and "Traceback" not in err
    assert not (tmp_path / "out.parquet").exists()


def test_verifying_a_package_stored_as_a_folder_is_a_backend_error(project: keel.Project, blobs: Blobs) -> None:
    point_version_at(project, blobs.keel, "keel")
    digest = project.models.get("churn:1").package_digest
    stored = Path(project.artifacts.path(digest))
    stored.unlink()
    stored.mkdir()

    with pytest.raises(BackendError, match=r"cannot read the package of model churn v1 .*Is a directory"):
        project.models.verify("churn:1")
