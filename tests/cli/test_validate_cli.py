"""`keel validate infer` writes a reviewable expectations file from a version's statistics (showing the diff when
it changes), and `keel validate check` checks a version against it, exiting non-zero on an error-level failure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import keel
from _training_fixtures import activity_frame, build_project, write_activity
from keel.cli import app
from keel.errors import NotFoundError, ValidationError
from keel.validation import InRange, NotNull, OneOf, UniqueKeys
from keel.validation._infer import dump, infer, load

runner = CliRunner()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    project, _ = build_project(tmp_path / "project")
    project.close()
    return tmp_path / "project"


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_infer_writes_a_file_of_what_the_version_showed_and_check_passes_it(root: Path) -> None:
    code, out = invoke("validate", "infer", "activity", "-p", str(root))

    assert code == 0, out
    path = root / "expectations" / "activity.yaml"
    view, expectations = load(path.read_text())
    assert view == "activity"
    described = [e.describe() for e in expectations]
    assert "(keys, event time) are unique" in described
    assert any(isinstance(e, InRange) and e.severity == "warning" for e in expectations)
    code, out = invoke("validate", "check", "activity", "-p", str(root), "--json", str(root / "result.json"))
    assert code == 0, out
    assert "pass" in out
    result = json.loads((root / "result.json").read_text())
    assert result["version"] == 1 and all(r["passed"] for r in result["results"])


def test_check_fails_on_a_planted_anomaly_naming_it_and_its_first_row(root: Path) -> None:
    invoke("validate", "infer", "activity", "-p", str(root))
    path = root / "expectations" / "activity.yaml"
    inferred = root / "inferred.yaml"
    inferred.write_text(path.read_text())
    view, expectations = load(path.read_text())
    path.write_text(dump(view, [*expectations, NotNull("spend"), OneOf("plan", ["basic", "pro"])]))
    frame = activity_frame(240)
    frame.loc[5, "spend"] = np.nan
    frame.loc[9, "plan"] = "enterprise"
    write_activity(root, frame)
    assert invoke("ingest", "activity", "-p", str(root))[0] == 0

    report = root / "report.html"
    code, out = invoke(
        "validate", "check", "activity", "-p", str(root), "--json", str(root / "result.json"), "--html", str(report)
    )

    assert code == 1, out
    page = report.read_text()
    results = json.loads((root / "result.json").read_text())["results"]
    errors = sum(not r["passed"] and r["severity"] == "error" for r in results)
    warned = sum(not r["passed"] and r["severity"] == "warning" for r in results)
    assert f"{errors} error-level and {warned} warning-level expectation(s) failed" in page
    assert "plan is one of &#x27;basic&#x27;, &#x27;pro&#x27;" in page
    assert "FAIL" in out and "error-level expectation(s) failed" in out
    failed = {r["describe"]: r for r in json.loads((root / "result.json").read_text())["results"] if not r["passed"]}
    missing = frame["spend"].isna().to_numpy()
    assert failed["spend is not null"]["failed"] == missing.sum()
    assert failed["spend is not null"]["first"] == int(np.argmax(missing))  # the row in the source
    unknown = (frame["plan"].notna() & ~frame["plan"].isin(["basic", "pro"])).to_numpy()
    assert failed["plan is one of 'basic', 'pro'"]["failed"] == unknown.sum()
    assert failed["plan is one of 'basic', 'pro'"]["first"] == int(np.argmax(unknown))
    # what v1 showed, v1 passes
    assert invoke("validate", "check", "activity", "--version", "1", "-e", str(inferred), "-p", str(root))[0] == 0


def test_reinferring_shows_the_diff_before_replacing_the_file(root: Path) -> None:
    invoke("validate", "infer", "activity", "-p", str(root))
    path = root / "expectations" / "activity.yaml"
    path.write_text(path.read_text().replace("unique_keys", "row_count\n  min: 1"))

    code, out = invoke("validate", "infer", "activity", "--dry-run", "-p", str(root))

    assert code == 0
    assert "-- expect: row_count" in out  # the line the file has, the proposal has not
    assert "+- expect: unique_keys" in out
    assert "row_count" in path.read_text()  # a dry run writes nothing


def test_check_without_a_file_says_how_to_make_one(root: Path) -> None:
    result = runner.invoke(app, ["validate", "check", "activity", "-p", str(root)])

    assert isinstance(result.exception, NotFoundError)
    assert "keel validate infer activity" in str(result.exception)


def test_inference_is_conservative_and_files_round_trip() -> None:
    stats = {
        "x": {"dtype": "float64", "count": 90, "nulls": 10, "min": -1.5, "max": 3.0},
        "n": {"dtype": "int64", "count": 100, "nulls": 0, "min": 0, "max": 7, "distinct": 8},
        "s": {"dtype": "string", "count": 100, "nulls": 0, "distinct": 40, "top": [["a", 50], ["b", 50]]},
        "gone": {"dtype": "float64", "count": 10, "nulls": 90, "min": 0.0, "max": 1.0},
    }

    found = infer(stats, rows=100, has_duplicates=True)

    assert found == [
        NotNull("x", max_rate=0.2),
        InRange("x", min=-1.5, max=3.0, severity="warning"),
        NotNull("n"),
        InRange("n", min=0, max=7, severity="warning"),
        NotNull("s"),  # 40 values seen: too many for a domain
        InRange("gone", min=0.0, max=1.0, severity="warning"),  # mostly missing: no null expectation
    ]
    assert UniqueKeys() not in found
    assert load(dump("v", found)) == ("v", found)


def test_a_bad_file_is_refused_naming_the_entry() -> None:
    with pytest.raises(ValidationError, match="expectation 2"):
        load("view: v\nexpectations:\n  - expect: not_null\n    feature: x\n  - expect: bogus\n")
    with pytest.raises(ValidationError, match="not YAML"):
        load("view: [")


def test_the_html_report_escapes_what_users_wrote() -> None:
    from keel.validation import MatchesPattern, ValidationReport
    from keel.validation._expectations import ExpectationResult
    from keel.validation._html import render_html

    hostile = MatchesPattern("code", "<script>alert(1)</script>")
    report = ValidationReport(10, (ExpectationResult(hostile, False, 3, 10, first=2),))

    page = render_html("<b>view</b>", 1, report.to_dict())

    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;view&lt;/b&gt; v1" in page and "30.00%" in page


def test_check_without_a_file_checks_the_expectations_declared_on_the_view(root: Path) -> None:
    from _training_fixtures import ACTIVITY_SCHEMA, CUSTOMER, profile_view
    from keel import FeatureView, ParquetSource

    declared = FeatureView(
        "activity",
        entities=[CUSTOMER],
        source=ParquetSource("data/activity.parquet", timestamp="event_time"),
        schema=ACTIVITY_SCHEMA,
        expectations=[NotNull("spend"), OneOf("plan", ["basic", "pro", "team"])],
    )
    with keel.Project.open(root) as project:
        project.apply([CUSTOMER, declared, profile_view()])
    report = root / "declared.html"

    code, out = invoke("validate", "check", "activity", "-p", str(root), "--html", str(report))

    assert code == 1, out  # the fixture's spend is missing in about a tenth of the rows
    assert "checking the 2 expectation(s) declared on activity" in out
    page = report.read_text()
    assert "<h2>Columns</h2>" in page and page.count("<figure>") == 2  # spend's quantiles, plan's values
    assert "spend (float64" in page and "plan (string" in page
