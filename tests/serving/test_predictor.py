"""The predictor without HTTP: the package's own predictions by keys (invariant 2), errors that name the record,
loading all or nothing, hot reload that follows aliases and not pinned versions, and the prediction log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import keel
from _training_fixtures import build_project, push_fresh_online, register_churn_versions
from keel.errors import NotFoundError, ValidationError
from keel.prediction_log import PredictionLog, read_prediction_log
from keel.serving import MemoryPredictionCache, Predictor

CUSTOMERS = 6
REFS = ["activity:spend", "activity:orders", "activity:plan", "activity:active", "activity:since", "profile:age"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[keel.Project]:
    """``churn`` v1 and v2 (champion: v1) and fresh online rows for a few customers."""
    with threadpool_limits(1):
        proj, labels = build_project(tmp_path_factory.mktemp("predictor") / "project", n=80)
        register_churn_versions(proj, labels)
    proj.models.set_alias("churn", "champion", 1)
    push_fresh_online(proj, CUSTOMERS)
    yield proj
    proj.close()


def predictor_of(project: keel.Project, log: PredictionLog | None = None) -> Predictor:
    return Predictor(project.models, project.online, MemoryPredictionCache(0), log, project.definitions.key_types)


def test_scores_by_keys_are_the_packages_on_the_online_rows(project: keel.Project) -> None:
    predictor = predictor_of(project)
    predictor.load(["churn:1"])
    ids = list(range(CUSTOMERS))
    answer = predictor.score("churn", [{"customer_id": i} for i in ids], "req-1")

    frame = project.online_features(REFS, [{"customer_id": i} for i in ids]).to_frame()
    package = project.models.load("churn:1")
    assert (answer["model"], answer["version"]) == ("churn", 1)
    assert answer["predictions"] == package.predict(frame).tolist()
    got = np.array([[p[str(c)] for c in package.classes] for p in answer["probabilities"]])
    np.testing.assert_array_equal(got, package.predict_proba(frame))
    assert len(answer["warnings"]) == CUSTOMERS


def test_an_unknown_model_or_a_bad_record_is_an_error_naming_it(project: keel.Project) -> None:
    predictor = predictor_of(project)
    predictor.load(["churn:1"])
    with pytest.raises(NotFoundError, match="no model 'fraud' is served here; served: churn"):
        predictor.score("fraud", [{"customer_id": 1}])
    with pytest.raises(ValidationError, match=r"records\[1\]\.orders") as caught:
        predictor.score("churn", [{"customer_id": 1}, {"customer_id": 2, "orders": "three"}])
    assert (caught.value.field, caught.value.row) == ("orders", 1)


def test_loading_is_all_or_nothing_and_each_name_is_served_once(project: keel.Project) -> None:
    predictor = predictor_of(project)
    with pytest.raises(ValidationError, match="at least one model"):
        predictor.load([])
    with pytest.raises(NotFoundError):
        predictor.load(["churn:1", "fraud@champion"])
    assert predictor.models == {}  # churn:1 was loaded, but nothing is served
    with pytest.raises(ValidationError, match="given twice"):
        predictor.load(["churn@champion", "churn:2"])
    predictor.load(["churn@champion"])
    with pytest.raises(ValidationError, match="given twice"):
        predictor.load(["churn:2"])  # already served
    assert predictor.models["churn"].version == 1


def test_reload_follows_an_alias_and_never_a_pinned_version(project: keel.Project) -> None:
    project.models.set_alias("churn", "champion", 1)
    following, pinned = predictor_of(project), predictor_of(project)
    following.load(["churn@champion"])
    pinned.load(["churn:1"])
    try:
        assert following.reload_once() == []
        project.models.set_alias("churn", "champion", 2)
        assert (following.reload_once(), pinned.reload_once()) == (["churn"], [])
        assert following.score("churn", [{"customer_id": 1}])["version"] == 2
        assert pinned.score("churn", [{"customer_id": 1}])["version"] == 1
        reloads = following.metrics.registry.get_sample_value("keel_model_reloads_total", {"model": "churn"})
        assert reloads == 1
    finally:
        project.models.set_alias("churn", "champion", 1)


def test_every_scored_record_is_logged_with_its_keys(project: keel.Project, tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path / "log"), linger_seconds=0)
    predictor = predictor_of(project, log)
    predictor.load(["churn:1"])
    answer = predictor.score("churn", [{"customer_id": 1}, {"customer_id": 2, "plan": "pro"}], "req-7")
    predictor.close()  # writes the log out

    logged = read_prediction_log(str(tmp_path / "log"), "churn")
    assert logged["request_id"].tolist() == ["req-7", "req-7"]
    assert logged["key.customer_id"].tolist() == [1, 2]
    assert logged["feature.plan"].tolist()[1] == "pro"
    assert logged["prediction"].tolist() == answer["predictions"]
