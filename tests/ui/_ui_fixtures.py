"""A project with something on every page of the UI (a plain module on ``sys.path``, like ``_training_fixtures``).

The project is the training fixtures' (two views, ``churn`` v1 and v2 trained for real) plus rows written straight
into the catalog: a ``sweep`` of runs with known metrics (for sorting, filtering and paging), a run with other
metrics, a model and a view whose names and descriptions are HTML, monitoring reports with drift over time and an
audit trail, and a stored analysis report.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import keel

TOKEN = "test-token-1234"
XSS_MODEL = "<script>alert('model')</script>"
XSS_VIEW = "<img src=x onerror=alert('view')>"
XSS_DESCRIPTION = "<script>alert('description')</script>"
SWEEP = 30


@dataclass(frozen=True)
class Seeded:
    """The seeded project and what was put in it."""

    project: keel.Project
    sweep: list[str]  # run ids, run i has roc_auc 0.5 + i / 100 and C = i
    failed: set[str]  # the sweep runs recorded as failed
    analysis_id: str


def sweep_id(i: int) -> str:
    return f"5eed{i:028x}"


def seed(project: keel.Project) -> Seeded:
    """Write the rows described above into ``project``'s catalog and artifact store."""
    catalog = project.catalog
    sweep, failed = [], set()
    for i in range(SWEEP):
        run_id = sweep_id(i)
        catalog.start_run(run_id=run_id, spec="sweep", spec_snapshot={"name": "sweep"}, params={})
        status = "failed" if i % 10 == 9 else "finished"
        catalog.finish_run(
            run_id,
            status=status,
            params={"estimator": {"C": i}, "note": f"trial-{i:02d}"},
            metrics={"roc_auc": 0.5 + i / 100, "accuracy": 0.9 - i / 100},
            durations={"total": 1.0},
            lineage={"feature_versions": {"activity": 1}},
            error="boom" if status == "failed" else None,
        )
        sweep.append(run_id)
        if status == "failed":
            failed.add(run_id)

    catalog.start_run(run_id="0" * 32, spec="regression", spec_snapshot={}, params={})
    catalog.finish_run("0" * 32, status="finished", params={}, metrics={"rmse": 1.5}, durations={}, lineage={})

    version = catalog.add_model_version(
        name=XSS_MODEL, run_id=sweep[0], package_digest="0" * 64, package_format="skops"
    )
    catalog.annotate_model_version(XSS_MODEL, version.version, description=XSS_DESCRIPTION)
    catalog.record_definitions(
        [
            (
                "feature_view",
                XSS_VIEW,
                "f" * 64,
                {
                    "name": XSS_VIEW,
                    "entities": ["customer"],
                    "schema": [{"name": "<b>bold</b>", "dtype": "float64", "description": XSS_DESCRIPTION}],
                    "description": XSS_DESCRIPTION,
                    "tags": {},
                },
                "active",
            )
        ]
    )

    for k, statistic in enumerate((0.05, 0.12, 0.3)):
        report_id = uuid.uuid4().hex
        crossed = statistic > 0.1
        catalog.add_monitoring_report(
            report_id=report_id,
            name="churn",
            version=2,
            window_start=None,
            window_end=None,
            crossed=crossed,
            verdict={"crossed": crossed, "reasons": [f"spend drifted ({statistic})"] if crossed else []},
            report={
                "drift": {
                    "features": [
                        {
                            "name": "spend",
                            "method": "wasserstein",
                            "statistic": statistic,
                            "threshold": 0.1,
                            "drifted": crossed,
                        },
                        {
                            "name": "orders",
                            "method": "chi2",
                            "statistic": 0.01 * (k + 1),
                            "threshold": 0.05,
                            "drifted": False,
                        },
                    ],
                    "share": 0.5 if crossed else 0.0,
                },
                "quality": {
                    "issues": [],
                    "columns": [
                        {
                            "name": "spend",
                            "kind": "numeric",
                            "reference_missing_rate": 0.01,
                            "current_missing_rate": 0.01 * (k + 1),
                            "out_of_range_share": 0.0,
                            "new_categories": [],
                            "new_category_share": 0.0,
                        }
                    ],
                },
            },
        )
        catalog.add_monitoring_event(name="churn", kind="checked", version=2, report_id=report_id, message="checked")
    catalog.add_monitoring_event(
        name="churn", kind="kept", version=2, message="the challenger was not better: kept <b>v2</b>"
    )

    digest = project.artifacts.put_bytes(b"<!doctype html><html><body><h1>Segment report of churn</h1></body></html>")
    analysis_id = uuid.uuid4().hex
    catalog.add_model_analysis(
        analysis_id=analysis_id,
        name="churn",
        version=2,
        kind="analysis",
        summary={"weak_segments": 1},
        artifacts={"report.html": digest},
    )
    return Seeded(project=project, sweep=sweep, failed=failed, analysis_id=analysis_id)
