"""`keel analyze` on a project whose model is much worse in one region: the weak segment is found and flagged, the
metrics by declared segment carry intervals, the report is stored with the version (JSON, HTML, PNG figures of the
expected size), the page needs no network, and a challenger worse on a declared segment exits 1."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import keel
from keel.analysis._plots import HEIGHT, WIDTH, png_size
from keel.cli import app
from keel.cli._common import console

runner = CliRunner()

FEATURES = textwrap.dedent(
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    from keel import Entity, FeatureView, Field, ParquetSource
    from keel.training import RandomSplit, TrainingSpec

    customer = Entity("customer", join_keys=["customer_id"])
    profile = FeatureView(
        "profile",
        entities=[customer],
        source=ParquetSource("data/profile.parquet", timestamp="event_time"),
        schema=[Field("x1", "float64"), Field("x2", "float64"), Field("noise", "float64"), Field("region", "string")],
    )
    churn = TrainingSpec(
        "churn",
        labels="data/labels.parquet",
        label="churned",
        features=["profile:*"],
        model=HistGradientBoostingClassifier(max_iter=60, random_state=0),
        split=RandomSplit(validation_fraction=0.4),
    )
    plain = TrainingSpec(
        "plain",
        labels="data/labels.parquet",
        label="churned",
        features=["profile:x1"],
        model=LogisticRegression(max_iter=300),
        split=RandomSplit(validation_fraction=0.4),
    )
    """
)
N = 6000


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "_width", 250)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Customers whose label follows x1 and x2, except in region "west", where a third of the labels are flipped."""
    root = tmp_path_factory.mktemp("analyze")
    rng = np.random.default_rng(0)
    x1, x2, noise = rng.normal(size=N), rng.normal(size=N), rng.normal(size=N)
    region = rng.choice(["north", "south", "east", "west"], N)
    churned = (x1 + 0.8 * x2 + rng.normal(0, 0.5, N) > 0).astype(np.int64)
    flip = (region == "west") & (rng.random(N) < 0.35)
    churned[flip] = 1 - churned[flip]
    at = pd.Timestamp("2024-01-01", tz="UTC")
    (root / "data").mkdir()
    pd.DataFrame(
        {"customer_id": np.arange(N), "event_time": at, "x1": x1, "x2": x2, "noise": noise, "region": region}
    ).to_parquet(root / "data" / "profile.parquet")
    pd.DataFrame({"customer_id": np.arange(N), "ts": at + pd.Timedelta(days=1), "churned": churned}).to_parquet(
        root / "data" / "labels.parquet"
    )
    (root / "features.py").write_text(FEATURES)
    for args in (
        ["apply"],
        ["ingest"],
        ["train", "churn", "--register", "--promote", "champion"],
        ["train", "plain", "--register"],
    ):
        result = runner.invoke(app, [*args, "-p", str(root)])
        assert result.exit_code == 0, result.output
    with keel.Project.open(root) as project:
        project.models.set_alias("churn", "challenger", 1)
    return root


def invoke(root: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "-p", str(root)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_the_weak_region_is_found_and_the_report_is_stored_with_the_version(root: Path) -> None:
    code, out = invoke(
        root,
        "analyze",
        "churn@champion",
        "-s",
        "region",
        "-s",
        "x1:3",
        "-s",
        'x2 >= 1 and region == "west"',
        "--bootstrap",
        "300",
        "--json",
        str(root / "a.json"),
        "--html",
        str(root / "a.html"),
    )

    assert code == 0, out
    assert "weak segments found" in out and 'region == "west"' in out
    document = json.loads((root / "a.json").read_text())
    weak = {w["name"]: w for w in document["weak_segments"]["segments"]}
    assert weak['region == "west"']["significant"]  # found among every column's values and bins (and pairs)
    assert not any("noise" in name for name in weak)
    names = [s["name"] for s in document["segments"]["segments"]]
    assert names[:4] == ['region == "east"', 'region == "north"', 'region == "south"', 'region == "west"']
    west = document["segments"]["segments"][3]["metrics"]["roc_auc"]
    rest = document["segments"]["segments"][0]["metrics"]["roc_auc"]
    assert west["high"] < rest["low"]  # much worse, beyond both intervals
    assert document["data"].startswith("holdout of run") and document["rows"] == int(N * 0.4)

    with keel.Project.open(root) as project:
        [record] = project.catalog.model_analyses("churn", version=1, kind="analysis")
        assert 'region == "west"' in record.summary["weak_segments"]
        page = project.analyses.file(record, "report.html").decode()
        for name in ("segments.png", "roc.png", "calibration.png", "confusion.png"):
            assert png_size(project.analyses.file(record, name)) == (WIDTH, HEIGHT), name
    assert page == (root / "a.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched: the page opens offline
    assert page.count("data:image/png;base64,") == len(document["figures"]) >= 6


def test_a_challenger_worse_on_a_declared_segment_exits_1_with_the_reason(root: Path) -> None:
    code, out = invoke(
        root,
        "analyze",
        "churn@champion",
        "--compare",
        "plain:1",
        "-s",
        "region",
        "--bootstrap",
        "300",
        "--no-store",
    )

    assert code == 1, out
    assert "WORSE" in out and "significantly worse" in out
    same, out_same = invoke(
        root,
        "analyze",
        "churn@champion",
        "--compare",
        "churn@challenger",
        "-s",
        "region",
        "--bootstrap",
        "300",
        "--no-store",
        "--no-weak",
    )
    assert same == 0, out_same


def test_a_file_of_rows_and_clear_errors(root: Path) -> None:
    rows = pd.read_parquet(root / "data" / "profile.parquet").merge(
        pd.read_parquet(root / "data" / "labels.parquet")[["customer_id", "churned"]], on="customer_id"
    )
    rows.iloc[:2000].to_parquet(root / "rows.parquet")
    code, out = invoke(
        root, "analyze", "churn:1", "--data", str(root / "rows.parquet"), "--no-store", "--bootstrap", "200"
    )
    assert code == 0, out
    assert "2,000 rows" in out

    rows.drop(columns=["churned"]).to_parquet(root / "unlabelled.parquet")
    result = runner.invoke(app, ["analyze", "churn:1", "--data", str(root / "unlabelled.parquet"), "-p", str(root)])
    assert "no label column 'churned'" in str(result.exception)
    result = runner.invoke(app, ["analyze", "churn:1", "-s", "__import__('os')", "-p", str(root)])
    assert result.exception is not None and "__import__" in str(result.exception)
    result = runner.invoke(app, ["analyze", "churn:1", "--data", "log", "-p", str(root)])
    assert "the prediction log holds no labels" in str(result.exception)


def test_importance_ranks_the_noise_last_and_explains_a_prediction(root: Path) -> None:
    code, out = invoke(
        root,
        "importance",
        "churn@champion",
        "--explain",
        "0",
        "--json",
        str(root / "i.json"),
        "--html",
        str(root / "i.html"),
    )

    assert code == 0, out
    document = json.loads((root / "i.json").read_text())
    ranking = [f["name"] for f in document["permutation"]["features"] if len(f["columns"]) == 1]
    assert ranking[:2] == ["x1", "x2"] and ranking.index("noise") >= 2
    noise = next(f for f in document["permutation"]["features"] if f["name"] == "noise")
    assert noise["ci_low"] <= 0.01  # indistinguishable from nothing
    assert document["metric"] == "roc_auc" and document["impurity"] is None  # HistGradientBoosting has none
    shap = document["shap"]
    assert shap is not None and next(iter(shap["importance"])) == "x1"
    [explained] = shap["explanations"]
    assert explained["row"] == 0
    assert explained["base_value"] + sum(explained["values"].values()) == pytest.approx(explained["output"], abs=1e-6)
    page = (root / "i.html").read_text()
    assert "Single predictions (SHAP)" in page and page.count("data:image/png;base64,") >= 3
    with keel.Project.open(root) as project:
        [record] = project.catalog.model_analyses("churn", kind="importance")
        assert record.summary["ranking"][0] == "x1"


def test_selection_keeps_the_informative_features_and_trains_the_subset(root: Path) -> None:
    code, out = invoke(root, "select", "churn@champion", "--resamples", "6", "--train", "--json", str(root / "s.json"))

    assert code == 0, out
    document = json.loads((root / "s.json").read_text())
    assert {"x1", "x2"} <= set(document["selected_columns"]) and "noise" not in document["selected_columns"]
    assert "trained the subset: registered churn:2" in out and "feature profile:noise" in out  # the diff
    with keel.Project.open(root) as project:
        subset = project.models.get("churn:2")
        assert subset.tags["selected_from"] == "churn:1"
        assert project.models.run_of("churn:2").lineage["features"] == [
            "profile@1:x1",
            "profile@1:x2",
            "profile@1:region",
        ]


def test_models_show_lists_the_versions_analyses(root: Path) -> None:
    code, out = invoke(root, "models", "show", "churn:1")

    assert code == 0, out
    assert "analyses (keel analyze / importance / select)" in out
    assert {"analysis", "importance", "selection"} <= set(re.findall(r"│ [0-9a-f]{12} │ (\w+)", out))


def test_the_prediction_log_joined_with_labels_is_analysed(root: Path) -> None:
    from fastapi.testclient import TestClient

    profile = pd.read_parquet(root / "data" / "profile.parquet").iloc[:600]
    labels = pd.read_parquet(root / "data" / "labels.parquet").iloc[:600]
    records = [
        {"customer_id": int(r.customer_id), "x1": r.x1, "x2": r.x2, "noise": r.noise, "region": r.region}
        for r in profile.itertuples()
    ]
    with keel.Project.open(root) as project, TestClient(project.prediction_app(["churn:1"])) as client:
        for start in range(0, len(records), 200):
            response = client.post(
                "/v1/models/churn/predict",
                json={"records": records[start : start + 200]},
                headers={"X-Request-ID": f"batch-{start}"},
            )
            assert response.status_code == 200, response.text
    by_request = pd.DataFrame(
        {
            "request_id": [f"batch-{(i // 200) * 200}" for i in range(600)],
            "record": [i % 200 for i in range(600)],
            "churned": labels["churned"].to_numpy(),
        }
    )
    by_request.to_parquet(root / "log_labels.parquet")

    code, out = invoke(
        root,
        "analyze",
        "churn:1",
        "--data",
        "log",
        "--labels",
        str(root / "log_labels.parquet"),
        "-s",
        "region",
        "--bootstrap",
        "200",
        "--no-store",
        "--json",
        str(root / "log.json"),
    )

    assert code == 0, out
    document = json.loads((root / "log.json").read_text())
    assert document["rows"] == 600 and document["data"] == "prediction log, 600 labelled predictions"
    west = next(s for s in document["segments"]["segments"] if s["name"] == 'region == "west"')
    east = next(s for s in document["segments"]["segments"] if s["name"] == 'region == "east"')
    assert west["metrics"]["roc_auc"]["value"] < east["metrics"]["roc_auc"]["value"]
