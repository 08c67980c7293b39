"""``keel models verify``: a stored package audited without loading it (hash, format, every name it holds)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

import keel
from _training_fixtures import build_project
from keel.cli import app
from keel.cli._common import console
from keel.cli._models import EXIT_UNVERIFIED
from keel.models import _keelfmt
from keel.training import TrainingSpec

runner = CliRunner()
FEATURES = ["activity:*", "profile:age"]


class Constant(BaseEstimator, ClassifierMixin):  # type: ignore[misc]
    """The user's own estimator: outside the allowlist, so stored with joblib (pickle)."""

    def fit(self, x: Any, y: Any) -> Constant:
        self.classes_ = np.unique(y)
        return self

    def predict(self, x: Any) -> Any:
        return np.full(len(x), self.classes_[0])


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(console, "_width", 250)
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with ``churn`` v1 (champion, keel format) and ``custom`` v1 (joblib)."""
    path = tmp_path_factory.mktemp("verify") / "project"
    project, labels = build_project(path)
    labels = labels[["customer_id", "ts", "churned"]]
    for name, model in (("churn", LogisticRegression(max_iter=300)), ("custom", Constant())):
        run = project.train(TrainingSpec(name, labels=labels, label="churned", features=FEATURES, model=model))
        version = project.models.register(run)
        project.models.set_alias(name, "champion", version.version)
    project.close()
    return path


def _verify(root: Path, *args: str) -> Any:
    return runner.invoke(app, ["models", "verify", *args, "-p", str(root)])


def test_verify_lists_every_type_of_a_keel_package_and_confirms_its_hash(root: Path) -> None:
    result = _verify(root, "churn@champion")

    assert result.exit_code == 0, result.output
    assert "keel package" in result.output and "matches" in result.output and "verified" in result.output
    assert "sklearn.linear_model._logistic.LogisticRegression" in result.output
    assert "sklearn.compose._column_transformer.ColumnTransformer" in result.output
    assert " no " not in result.output


def test_verify_json_gives_the_same_audit(root: Path) -> None:
    result = _verify(root, "churn@champion", "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["hash_matches"] and report["format"] == "keel" and report["refused"] == []
    names = {r["name"]: r for r in report["references"]}
    assert names["sklearn.linear_model._logistic.LogisticRegression"] == {
        "name": "sklearn.linear_model._logistic.LogisticRegression",
        "kind": "class",
        "allowed": True,
    }


def test_a_pickle_package_is_listed_but_not_verified(root: Path) -> None:
    result = _verify(root, "custom@champion", "--json")

    assert result.exit_code == EXIT_UNVERIFIED, result.output
    report = json.loads(result.output)
    assert report["format"] == "joblib" and not report["verifiable"] and not report["ok"]
    assert report["note"].startswith("pickle: cannot be audited without running it")
    custom = f"{Constant.__module__}.{Constant.__qualname__}"
    assert custom in report["refused"]  # the globals its opcodes name, read without running it


def test_an_altered_package_fails_on_its_hash_and_names_what_it_would_build(root: Path, tmp_path: Path) -> None:
    with keel.Project.open(root) as project:
        version = project.models.get("churn@champion")
        path = Path(project.artifacts.path(version.package_digest))
    original = path.read_bytes()
    tree, data = _keelfmt.unpack(original)
    document = orjson.loads(tree)
    document["types"].append(["os", "system"])
    try:
        path.chmod(0o644)
        path.write_bytes(_keelfmt.pack(orjson.dumps(document), bytes(data)))

        result = _verify(root, "churn@champion")
        as_json = json.loads(_verify(root, "churn@champion", "--json").output)
    finally:
        path.write_bytes(original)

    assert result.exit_code == EXIT_UNVERIFIED, result.output
    assert "does not match" in result.output and "refused: os.system" in result.output
    assert not as_json["hash_matches"] and as_json["refused"] == ["os.system"]
    assert as_json["actual_digest"] != as_json["digest"] == version.package_digest
