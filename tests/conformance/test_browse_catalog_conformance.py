"""The catalog's browsing reads (the web UI's pages) answer alike on every backend: pages of runs, views, models
and analyses, a model's page, runs by id, and a view's lineage — including the reads made on the driver itself."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from keel.catalog import RunQuery, SqlCatalog
from keel.errors import NotFoundError, ValidationError

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def run_id(i: int) -> str:
    return f"{i:02x}{uuid.UUID(int=i).hex[2:]}"


@pytest.fixture
def catalog(any_catalog: SqlCatalog) -> SqlCatalog:
    """Twelve runs (the even ones read view ``a`` v1, the odd ones ``a`` v2 and ``b`` v1), model ``m`` with a
    version from runs 0 and 1 and an alias moved twice, three analyses, and views ``a`` (two versions) and ``b``."""
    catalog = any_catalog
    for i in range(12):
        catalog.start_run(run_id=run_id(i), spec="even" if i % 2 == 0 else "odd", spec_snapshot={}, params={"i": i})
        lineage = {"feature_versions": {"a": 1} if i % 2 == 0 else {"a": 2, "b": 1}}
        params = {"i": i, "flavour": "plain" if i % 2 == 0 else "spicy", "nested": {"depth": i % 4}}
        catalog.finish_run(
            run_id(i), status="finished", params=params, metrics={"auc": i / 100}, durations={}, lineage=lineage
        )
    for i in (0, 1):
        catalog.add_model_version(name="m", run_id=run_id(i), package_digest=f"{i}" * 64, package_format="skops")
    catalog.annotate_model_version("m", 2, description="second", tags={"team": "x"})
    catalog.set_alias("m", "champion", 1, reason="first")
    catalog.set_alias("m", "champion", 2, reason="better")
    for k in range(3):
        catalog.add_model_analysis(
            analysis_id=uuid.uuid4().hex,
            name="m",
            version=2,
            kind="analysis",
            summary={"k": k},
            artifacts={"report.html": "b" * 64},
            created_at=T0 + timedelta(hours=k),
        )
    spec = {"entities": ["customer"], "schema": [{"name": "x", "dtype": "float64"}], "description": "d"}
    definitions = catalog.record_definitions(
        [("feature_view", name, name * 64, {"name": name, **spec}, "active") for name in ("a", "b")]
    )
    for definition, versions in zip(definitions, (2, 1), strict=True):
        for v in range(versions):
            catalog.add_feature_version(
                view=definition.name,
                definition_version=definition.version,
                definition_hash=definition.hash,
                location=f"/data/{definition.name}/{v}",
                files=[],
                row_count=10 * (v + 1),
                event_time_min=T0,
                event_time_max=T0 + timedelta(days=v),
                data_digest=f"{v}" * 64,
                columns={"x": "float64"},
                statistics={"x": {"count": 10 * (v + 1), "min": 0.0, "max": float(v)}},
                has_duplicates=False,
            )
    return catalog


def test_runs_are_paged_sorted_by_a_metric_and_read_by_id(catalog: SqlCatalog) -> None:
    page = catalog.runs_page(RunQuery(sort="metric.auc", order="asc", page=2, page_size=5), facets=True)
    assert (page["total"], page["pages"]) == (12, 3)
    assert [r["id"] for r in page["runs"]] == [run_id(i) for i in range(5, 10)]
    assert page["facets"]["specs"] == ["even", "odd"]
    records = catalog.runs_by_ids([run_id(3), run_id(0), run_id(3)])
    assert [(r.id, r.params["i"], r.metrics["auc"]) for r in records] == [
        (run_id(3), 3, 0.03),
        (run_id(0), 0, 0.0),
        (run_id(3), 3, 0.03),
    ]
    assert records[0].started_at.tzinfo is not None and records[0].lineage == {"feature_versions": {"a": 2, "b": 1}}
    with pytest.raises(NotFoundError):
        catalog.runs_by_ids([run_id(0), "f" * 32])


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (("metric.auc>=0.09",), [9, 10, 11]),
        (("metric.auc<0.02", "param.i!=0"), [1]),
        (("param.i=4",), [4]),
        (("param.flavour=plain",), [0, 2, 4, 6, 8, 10]),
        (("param.flavour!=plain",), [1, 3, 5, 7, 9, 11]),
        (("param.flavour=0",), []),  # text never equals a number (SQLite would cast it to 0)
        (("param.nested.depth>2",), [3, 7, 11]),
        (("metric.missing>0",), []),
    ],
)
def test_runs_are_filtered_by_conditions_on_metrics_and_parameters(
    catalog: SqlCatalog, where: tuple[str, ...], expected: list[int]
) -> None:
    page = catalog.runs_page(RunQuery(where=where, sort="metric.auc", order="asc"))
    assert [r["id"] for r in page["runs"]] == [run_id(i) for i in expected]


@pytest.mark.parametrize("bad", ["auc>1", "metric.auc>high", "param.a<text", "param..x=1", "metric.x~1"])
def test_a_malformed_condition_is_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RunQuery(where=(bad,))
    assert caught.value.field == "where"


def test_a_run_read_on_the_driver_equals_the_one_read_through_a_transaction(catalog: SqlCatalog) -> None:
    exact, by_prefix = catalog.run(run_id(7)), catalog.run(run_id(7)[:8])  # the prefix takes the other path
    assert exact == by_prefix


def test_views_are_paged_with_their_latest_version(catalog: SqlCatalog) -> None:
    first = catalog.view_summaries(page_size=1)
    assert (first["total"], first["pages"], [v["name"] for v in first["views"]]) == (2, 2, ["a"])
    a = first["views"][0]
    assert (a["versions"], a["latest"]["version"], a["latest"]["row_count"], a["features"]) == (2, 2, 20, ["x"])
    assert a["latest"]["event_time_max"] == (T0 + timedelta(days=1)).isoformat()
    with pytest.raises(ValidationError, match="page_size"):
        catalog.view_summaries(page_size=0)


def test_a_view_page_has_its_versions_a_versions_statistics_and_its_lineage(catalog: SqlCatalog) -> None:
    page = catalog.view_page("a")
    assert [v["version"] for v in page["versions"]] == [2, 1]
    assert (page["statistics_version"], page["statistics"]["x"]["max"]) == (2, 1.0)
    assert catalog.view_page("a", version=1)["statistics"]["x"]["max"] == 0.0
    lineage = {r["id"]: (r["feature_version"], r["models"]) for r in page["lineage"]}
    assert len(lineage) == 12
    assert lineage[run_id(0)] == (1, ["m:1"]) and lineage[run_id(1)] == (2, ["m:2"])
    assert lineage[run_id(5)] == (2, [])
    assert {r["id"] for r in catalog.view_lineage("b")} == {run_id(i) for i in range(1, 12, 2)}
    with pytest.raises(NotFoundError):
        catalog.view_page("nothing")
    with pytest.raises(NotFoundError, match="no version 9"):
        catalog.view_page("a", version=9)


def test_a_model_page_and_its_analyses_pages(catalog: SqlCatalog) -> None:
    page = catalog.model_page("m", analyses=2)
    assert page["version_count"] == 2
    assert [(v["version"], v["aliases"], v["description"], v["tags"]) for v in page["versions"]] == [
        (2, ["champion"], "second", {"team": "x"}),
        (1, [], "", {}),
    ]
    assert page["versions"][0]["metrics"] == {"auc": 0.01}
    assert page["versions"][0]["created_at"].endswith("+00:00")
    assert page["aliases"] == {"champion": 2}
    assert [(c["from_version"], c["to_version"], c["reason"]) for c in page["alias_history"]] == [
        (1, 2, "better"),
        (None, 1, "first"),
    ]
    assert (page["analyses_total"], [a["summary"]["k"] for a in page["analyses"]]) == (3, [2, 1])
    assert page["analyses"][0]["has_report"] is True
    rest = catalog.model_analyses_page("m", page=2, page_size=2)
    assert (rest["total"], rest["pages"], [a["summary"]["k"] for a in rest["analyses"]]) == (3, 2, [0])
    summaries = catalog.model_summaries()
    assert summaries["models"] == [
        {
            "name": "m",
            "versions": 2,
            "latest": 2,
            "updated_at": summaries["models"][0]["updated_at"],
            "aliases": {"champion": 2},
        }
    ]
    assert catalog.model_page("nothing")["version_count"] == 0
