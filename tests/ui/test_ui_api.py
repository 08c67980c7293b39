"""The UI's JSON API and pages over a seeded project: runs paged, sorted, filtered and searched in SQL; compare and
diff; alias moves only with the token and the cross-site header, recorded with a UI reason; user text escaped."""

from __future__ import annotations

import html
from typing import Any

import pytest
from _ui_fixtures import SWEEP, TOKEN, XSS_DESCRIPTION, XSS_MODEL, XSS_VIEW, Seeded, sweep_id
from fastapi.testclient import TestClient

WRITE = {"Authorization": f"Bearer {TOKEN}", "X-Keel-UI": "1"}


@pytest.fixture(scope="module")
def client(ui_app: Any) -> TestClient:
    return TestClient(ui_app)


def runs(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/api/runs", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


# -- runs --------------------------------------------------------------------------------------------------------
def test_runs_are_paged_with_the_total_and_a_bounded_page(client: TestClient) -> None:
    first = runs(client, spec="sweep", page_size=7)
    assert first["total"] == SWEEP
    assert first["pages"] == 5
    assert len(first["runs"]) == 7
    last = runs(client, spec="sweep", page_size=7, page=5)
    assert len(last["runs"]) == SWEEP - 4 * 7
    seen = [r["id"] for p in range(1, 6) for r in runs(client, spec="sweep", page_size=7, page=p)["runs"]]
    assert sorted(seen) == sorted(sweep_id(i) for i in range(SWEEP))  # every run once, none twice


def test_a_page_carries_no_params_or_lineage(client: TestClient) -> None:
    row = runs(client, page_size=1)["runs"][0]
    assert set(row) == {"id", "spec", "status", "started_at", "finished_at", "metrics"}


def test_runs_sort_by_a_metric_both_ways(client: TestClient) -> None:
    down = runs(client, spec="sweep", sort="metric.roc_auc", order="desc", page_size=3)["runs"]
    assert [r["id"] for r in down] == [sweep_id(29), sweep_id(28), sweep_id(27)]
    up = runs(client, spec="sweep", sort="metric.roc_auc", order="asc", page_size=3)["runs"]
    assert [r["id"] for r in up] == [sweep_id(0), sweep_id(1), sweep_id(2)]


def test_runs_without_the_sorted_metric_come_last(client: TestClient) -> None:
    every = runs(client, sort="metric.roc_auc", order="asc", page_size=200)["runs"]
    has = ["roc_auc" in r["metrics"] for r in every]
    assert has == sorted(has, reverse=True)  # all with the metric, then the regression run without it
    assert not has[-1]


def test_runs_sort_by_spec_and_status(client: TestClient) -> None:
    by_spec = runs(client, sort="spec", order="asc", page_size=200)["runs"]
    assert [r["spec"] for r in by_spec] == sorted(r["spec"] for r in by_spec)
    by_status = runs(client, sort="status", order="asc", page_size=1)["runs"]
    assert by_status[0]["status"] == "failed"


def test_runs_filter_by_status_and_search_params(client: TestClient, seeded: Seeded) -> None:
    failed = runs(client, status="failed", page_size=50)
    assert {r["id"] for r in failed["runs"]} == seeded.failed
    found = runs(client, q="TRIAL-07")  # case-insensitive, inside the params
    assert [r["id"] for r in found["runs"]] == [sweep_id(7)]
    assert runs(client, q=sweep_id(12)[-6:])["total"] == 1  # part of an id
    assert runs(client, q="churn")["total"] == 2  # a spec name
    assert runs(client, q="100%")["total"] == 0  # LIKE wildcards are taken literally


def test_the_facets_list_specs_statuses_and_metrics(client: TestClient) -> None:
    facets = runs(client)["facets"]
    assert facets["specs"] == ["churn", "regression", "sweep"]
    assert facets["statuses"] == ["failed", "finished"]
    assert {"roc_auc", "accuracy"} <= set(facets["metrics"])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sort": "params; DROP TABLE"}, "sort"),
        ({"sort": "metric.a'b"}, "sort"),
        ({"order": "sideways"}, "order"),
        ({"page": 0}, "page"),
        ({"page_size": 10_000}, "page_size"),
    ],
)
def test_bad_run_queries_are_a_400_naming_the_field(client: TestClient, params: dict[str, Any], field: str) -> None:
    response = client.get("/api/runs", params=params)
    assert response.status_code == 400
    assert field in response.json()["detail"]


def test_a_run_page_shows_everything_recorded(client: TestClient) -> None:
    run = client.get(f"/api/runs/{sweep_id(3)}").json()
    assert run["params"] == {"estimator.C": 3, "note": "trial-03"}
    assert run["metrics"]["roc_auc"] == pytest.approx(0.53)
    assert run["lineage"] == {"feature_versions": {"activity": 1}}
    assert client.get("/api/runs/nope").status_code == 404


# -- compare and diff --------------------------------------------------------------------------------------------
def test_compare_puts_runs_side_by_side_in_the_order_asked(client: TestClient) -> None:
    ids = [sweep_id(5), sweep_id(2), sweep_id(8)]
    data = client.get("/api/compare", params={"runs": ",".join(ids)}).json()
    assert [r["id"] for r in data["runs"]] == ids
    metrics = {m["name"]: m["values"] for m in data["metrics"]}
    assert metrics["roc_auc"] == pytest.approx([0.55, 0.52, 0.58])
    params = {p["name"]: p for p in data["params"]}
    assert params["estimator.C"]["values"] == [5, 2, 8]
    assert params["estimator.C"]["differs"] is True


def test_compare_takes_unique_id_prefixes(client: TestClient) -> None:
    data = client.get("/api/compare", params={"runs": f"{sweep_id(4)},00000000"}).json()  # the regression run
    assert [r["id"] for r in data["runs"]] == [sweep_id(4), "0" * 32]
    ambiguous = client.get("/api/compare", params={"runs": sweep_id(4)[:8]})
    assert ambiguous.status_code == 400
    assert "ambiguous" in ambiguous.json()["detail"]


def test_compare_refuses_too_many_or_unknown_runs(client: TestClient) -> None:
    many = ",".join(sweep_id(i) for i in range(11))
    assert client.get("/api/compare", params={"runs": many}).status_code == 400
    assert client.get("/api/compare", params={"runs": "ffffffffffff"}).status_code == 404


def test_diff_shows_the_changed_param_and_metric_deltas(client: TestClient) -> None:
    diff = client.get("/api/models/churn/diff", params={"a": 1, "b": 2}).json()
    params = {p["name"]: (p["a"], p["b"]) for p in diff["params"]}
    assert params["estimator.C"] == (1.0, 0.001)
    for metric in diff["metrics"]:
        if metric["delta"] is not None:
            assert metric["delta"] == pytest.approx(metric["b"] - metric["a"])
    assert client.get("/api/models/churn/diff", params={"a": 1, "b": 9}).status_code == 404


# -- models, views, monitoring, overview ---------------------------------------------------------------------------
def test_a_model_has_its_versions_aliases_history_and_analyses(client: TestClient, seeded: Seeded) -> None:
    model = client.get("/api/models/churn").json()
    assert [v["version"] for v in model["versions"]] == [2, 1]
    assert model["version_count"] == 2
    assert [a["id"] for a in model["analyses"]] == [seeded.analysis_id]
    report = client.get(f"/models/churn/analyses/{seeded.analysis_id}/report")
    assert report.status_code == 200
    assert b"Segment report of churn" in report.content
    assert "sandbox" in report.headers["content-security-policy"]
    assert client.get(f"/models/other/analyses/{seeded.analysis_id}/report").status_code == 404
    assert client.get("/api/models/nobody").status_code == 404


def test_a_view_has_its_schema_versions_statistics_and_lineage(client: TestClient, seeded: Seeded) -> None:
    view = client.get("/api/views/activity").json()
    assert [f["name"] for f in view["schema"]] == ["spend", "orders", "plan", "active", "since"]
    assert view["versions"][0]["version"] == 1
    assert (view["total"], view["statistics_version"]) == (1, 1)
    assert view["statistics"]["spend"]["count"] > 0
    # Lineage: every run that read the view (newest first, capped at fifty), each with the models made from it.
    sweeps = [r for r in view["lineage"] if r["spec"] == "sweep"]
    assert [r["id"] for r in sweeps] == [sweep_id(i) for i in reversed(range(SWEEP))]
    assert sweeps[0] == {
        "id": sweep_id(SWEEP - 1),
        "spec": "sweep",
        "status": "failed",
        "started_at": sweeps[0]["started_at"],
        "feature_version": 1,
        "models": [],
    }
    first = next(r for r in view["lineage"] if r["id"] == seeded.sweep[0])
    assert first["models"] == [f"{XSS_MODEL}:1"]  # the model version registered from that run
    profile = client.get("/api/views/profile").json()  # read by the two trained churn runs only
    assert [(r["spec"], r["feature_version"], r["models"]) for r in profile["lineage"]] == [
        ("churn", 1, ["churn:2"]),
        ("churn", 1, ["churn:1"]),
    ]
    assert client.get("/api/views/nothing").status_code == 404
    assert client.get("/api/views/activity?version=9").status_code == 404


def test_runs_are_filtered_by_conditions_on_metrics_and_parameters(client: TestClient) -> None:
    page = client.get("/api/runs", params={"where": ["metric.roc_auc>=0.75", "param.estimator.C!=27"], "spec": "sweep"})
    assert {r["id"] for r in page.json()["runs"]} == {sweep_id(i) for i in (25, 26, 28, 29)}
    bad = client.get("/api/runs", params={"where": "metric.roc_auc>=high"})
    assert bad.status_code == 400 and "is not a number" in bad.json()["detail"]


def test_views_and_models_lists_are_paged(client: TestClient) -> None:
    views = client.get("/api/views?page_size=1").json()
    assert (views["page_size"], views["pages"]) == (1, views["total"]) and len(views["views"]) == 1
    names = [client.get(f"/api/views?page_size=1&page={p}").json()["views"][0]["name"] for p in (1, 2, 3)]
    assert names == sorted(names) and len(set(names)) == 3
    models = client.get("/api/models?page_size=1&page=2").json()
    assert (models["page"], len(models["models"])) == (2, 1) and models["total"] >= 2
    assert client.get("/api/views?page=0").status_code == 422
    assert client.get(f"/api/models?page_size={10**6}").status_code == 422


def test_monitoring_lists_reports_oldest_first_and_the_audit(client: TestClient) -> None:
    data = client.get("/api/monitoring/churn").json()
    assert [r["quality"]["spend"]["missing_rate"] for r in data["reports"]] == [0.01, 0.02, 0.03]
    assert data["reports"][0]["quality"]["spend"]["reference_missing_rate"] == 0.01
    assert [r["drift"]["spend"]["statistic"] for r in data["reports"]] == [0.05, 0.12, 0.3]
    assert [r["crossed"] for r in data["reports"]] == [False, True, True]
    assert [e["kind"] for e in data["events"]] == ["checked", "checked", "checked", "kept"]


def test_the_overview_lists_views_models_verdicts_and_decisions(client: TestClient) -> None:
    data = client.get("/api/overview").json()
    assert {"activity", "profile", XSS_VIEW} <= {v["name"] for v in data["views"]["views"]}
    churn = next(m for m in data["models"]["models"] if m["name"] == "churn")
    assert churn["versions"] == 2
    assert [v["model"] for v in data["verdicts"]] == ["churn"]
    assert data["verdicts"][0]["crossed"] is True  # the latest report
    assert [d["kind"] for d in data["decisions"]] == ["kept"]


def test_the_api_is_in_the_openapi_spec(client: TestClient) -> None:
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {
        "/api/overview",
        "/api/views",
        "/api/views/{name}",
        "/api/runs",
        "/api/runs/{run_id}",
        "/api/compare",
        "/api/models",
        "/api/models/{name}",
        "/api/models/{name}/diff",
        "/api/monitoring/{name}",
        "/api/models/{name}/aliases/{alias}",
        "/api/models/{name}/aliases/{alias}/rollback",
    } <= paths


# -- changing state ------------------------------------------------------------------------------------------------
def promote(client: TestClient, version: int, headers: dict[str, str], alias: str = "champion") -> Any:
    return client.post(
        f"/api/models/churn/aliases/{alias}", json={"version": version, "reason": "test"}, headers=headers
    )


def test_promote_with_the_token_moves_the_alias_and_records_a_ui_reason(client: TestClient, seeded: Seeded) -> None:
    response = promote(client, 1, WRITE, alias="staging")
    assert response.status_code == 200, response.text
    response = promote(client, 2, WRITE, alias="staging")
    assert response.json()["to_version"] == 2
    assert seeded.project.catalog.alias("churn", "staging") == 2
    last = seeded.project.models.history("churn", "staging")[-1]
    assert last.reason == "keel ui promote: test"
    back = client.post("/api/models/churn/aliases/staging/rollback", headers=WRITE)
    assert back.status_code == 200, back.text
    assert seeded.project.catalog.alias("churn", "staging") == 1
    assert seeded.project.models.history("churn", "staging")[-1].reason == "keel ui rollback"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"X-Keel-UI": "1"}, 401),  # no token
        ({"X-Keel-UI": "1", "Authorization": "Bearer wrong"}, 401),
        ({"X-Keel-UI": "1", "Authorization": f"Basic {TOKEN}"}, 401),
        ({"Authorization": f"Bearer {TOKEN}"}, 403),  # no cross-site header: what a foreign form would send
        ({**WRITE, "Origin": "http://evil.example"}, 403),
        ({**WRITE, "Origin": "null"}, 403),
    ],
)
def test_alias_moves_are_refused_without_the_token_or_from_another_site(
    client: TestClient, seeded: Seeded, headers: dict[str, str], status: int
) -> None:
    before = seeded.project.models.history("churn")
    assert promote(client, 1, headers, alias="guarded").status_code == status
    assert client.post("/api/models/churn/aliases/guarded/rollback", headers=headers).status_code == status
    assert seeded.project.models.history("churn") == before


def test_a_same_origin_request_is_accepted(client: TestClient) -> None:
    response = promote(client, 1, {**WRITE, "Origin": "http://testserver"}, alias="same-origin")
    assert response.status_code == 200, response.text


def test_without_a_configured_token_every_change_is_refused(seeded: Seeded) -> None:
    from keel.ui import create_app

    readonly = TestClient(create_app(seeded.project))
    response = promote(readonly, 1, WRITE)
    assert response.status_code == 403
    assert "--token" in response.json()["detail"]
    assert readonly.get("/api/models/churn").status_code == 200


def test_bad_alias_moves_are_clear_errors(client: TestClient) -> None:
    assert promote(client, 99, WRITE).status_code == 404
    bad = client.post("/api/models/churn/aliases/champion", json={"version": "two"}, headers=WRITE)
    assert bad.status_code == 400
    assert "version" in bad.json()["detail"]
    assert promote(client, 1, WRITE, alias="latest").status_code == 400
    assert client.post("/api/models/churn/aliases/never-set/rollback", headers=WRITE).status_code == 404


# -- pages -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "/",
        "/views",
        "/views/activity",
        "/runs",
        f"/runs/{sweep_id(1)}",
        "/compare?runs=a,b",
        "/models",
        "/models/churn",
        "/monitoring/churn",
    ],
)
def test_every_page_is_a_shell_with_only_local_assets(client: TestClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    body = response.text
    assert '<script src="/static/app.js" defer></script>' in body
    assert "http://" not in body and "https://" not in body  # no CDN, no font service


def test_static_assets_ship_in_the_package(client: TestClient) -> None:
    from importlib.resources import files

    for name in ("app.js", "style.css", "favicon.svg"):
        assert (files("keel.ui") / "static" / name).is_file()
        assert client.get(f"/static/{name}").status_code == 200


def test_html_names_are_escaped_in_the_pages(client: TestClient) -> None:
    for url, raw in ((f"/models/{XSS_MODEL}", XSS_MODEL), (f"/views/{XSS_VIEW}", XSS_VIEW)):
        body = client.get(url).text
        assert raw not in body
        assert html.escape(raw) in body
    api = client.get(f"/api/models/{XSS_MODEL}").json()
    assert api["versions"][0]["description"] == XSS_DESCRIPTION  # JSON carries the text as is; the page escapes
