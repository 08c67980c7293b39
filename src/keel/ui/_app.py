"""The web UI's FastAPI app: a JSON API under ``/api`` over the catalog, the pages that use it, the static files.

The app reads everything through the collaborators it is given (the catalog, the model registry, the stored
analysis files) and writes only one thing: an alias move, through the registry's ``promote``/``rollback``, so
that the move lands in the alias history with a reason saying it came from the UI, exactly as a CLI move does.
Reads are bounded: tables (runs, model versions, reports, events) are paged or capped in SQL, so a page's cost
and size do not grow with the catalog.

Every page is a stable URL (``/runs?sort=metric.roc_auc&order=desc&page=2``, ``/models/churn?a=1&b=2``) whose
arguments are the API's; the shipped script (``static/app.js``) builds it from the API with ``textContent``.
See :mod:`keel.ui._security` for who may change state, :mod:`keel.ui._pages` for the escaping rules.
"""

from __future__ import annotations

import math
from datetime import datetime
from importlib.resources import files
from typing import Annotated, Any, Protocol

import orjson
from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel._version import __version__
from keel.catalog import (
    MAX_PAGE_SIZE,
    AliasChange,
    ModelAnalysisRecord,
    MonitoringEvent,
    MonitoringReportRecord,
    RunQuery,
    RunRecord,
    SqlCatalog,
)
from keel.errors import ConflictError, KeelError, NotFoundError, ValidationError
from keel.models import ModelRegistry
from keel.serving import DirectRoute, path_parameters
from keel.ui._pages import PAGE_POLICY, REPORT_POLICY, shell
from keel.ui._security import check_write

#: The most runs the compare page puts side by side.
MAX_COMPARED = 10
#: The most monitoring reports and audit events a monitoring page shows (the newest).
MONITORING_LIMIT = 200


def direct(app: FastAPI, path: str, endpoint: Any, summary: str, *, query: dict[str, str] | None = None) -> None:
    """Add a GET endpoint taking the request itself (a :class:`~keel.serving.DirectRoute`), documented with its
    path parameters and the required query parameters of ``query`` (name: description)."""
    parameters = path_parameters(path) + [
        {"name": name, "in": "query", "required": True, "description": text, "schema": {"type": "string"}}
        for name, text in (query or {}).items()
    ]
    app.router.add_api_route(
        path,
        endpoint,
        methods=["GET"],
        route_class_override=DirectRoute,
        tags=["api"],
        summary=summary,
        openapi_extra={"parameters": parameters},
        responses={200: {"content": {"application/json": {}}}, 400: {"description": "bad argument"}},
    )


#: A page number and size, as every paged endpoint takes them.
Page = Annotated[int, Query(ge=1, description="1, 2, 3...")]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="rows per page")]
#: The rows of each table on the overview (the views and models pages page through the rest).
OVERVIEW_ROWS = 20
#: The reason recorded with an alias move made from the UI (the user's own text is appended).
UI_REASON = "keel ui"


class Json(JSONResponse):
    """A JSON answer encoded by orjson, straight from plain dicts and lists (datetimes as ISO 8601, NaN as null).

    The API's endpoints return it rather than a dict: FastAPI's own encoder walks every value in Python first,
    which costs more than the catalog query behind a page.
    """

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ReportFiles(Protocol):
    """Where the stored files of an analysis are read (``keel.analysis.Analyses`` is one)."""

    def file(self, record: ModelAnalysisRecord, name: str = "report.html") -> bytes: ...


class UiSources(Protocol):
    """What the UI reads and writes through: a :class:`keel.Project` is one."""

    @property
    def catalog(self) -> SqlCatalog: ...

    @property
    def models(self) -> ModelRegistry: ...

    @property
    def analyses(self) -> ReportFiles: ...


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such floats become ``None`` (the catalog refuses them, diffs may not)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _run(run: RunRecord) -> dict[str, Any]:
    return {
        "id": run.id,
        "spec": run.spec,
        "status": run.status,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "params": run.flat_params(),
        "metrics": run.metrics,
        "durations": run.durations,
        "lineage": run.lineage,
        "error": run.error,
        "package_digest": run.package_digest,
        "package_format": run.package_format,
    }


def _change(change: AliasChange) -> dict[str, Any]:
    return {
        "alias": change.alias,
        "from_version": change.from_version,
        "to_version": change.to_version,
        "reason": change.reason,
        "at": _iso(change.at),
    }


def _report(record: MonitoringReportRecord) -> dict[str, Any]:
    drift = record.report.get("drift") or {}
    quality = record.report.get("quality") or {}
    return {
        "id": record.id,
        "version": record.version,
        "created_at": _iso(record.created_at),
        "window_start": _iso(record.window_start),
        "window_end": _iso(record.window_end),
        "crossed": record.crossed,
        "reasons": list(record.verdict.get("reasons") or []),
        "drift": {
            str(f.get("name")): {
                "statistic": f.get("statistic"),
                "method": f.get("method"),
                "threshold": f.get("threshold"),
                "drifted": bool(f.get("drifted")),
            }
            for f in drift.get("features") or []
        },
        "drift_share": drift.get("share"),
        "quality_issues": list(quality.get("issues") or []),
        "quality": {
            str(c.get("name")): {
                "missing_rate": c.get("current_missing_rate"),
                "reference_missing_rate": c.get("reference_missing_rate"),
                "out_of_range_share": c.get("out_of_range_share"),
                "new_category_share": c.get("new_category_share"),
            }
            for c in quality.get("columns") or []
        },
    }


def _event(event: MonitoringEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "kind": event.kind,
        "version": event.version,
        "report_id": event.report_id,
        "message": event.message,
        "details": event.details,
        "at": _iso(event.at),
    }


#: Security headers on every answer; a route that sets its own Content-Security-Policy keeps it.
_HEADERS = (
    (b"content-security-policy", PAGE_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


class _SecurityHeaders:
    """ASGI middleware adding :data:`_HEADERS` (plain ASGI: Starlette's ``BaseHTTPMiddleware`` costs a task per
    request, a large share of a fast page's time)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend((name, value) for name, value in _HEADERS if name not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(project: UiSources, *, token: str | None = None) -> FastAPI:
    """The web UI over ``project``'s catalog, registry and stored analyses.

    Args:
        project: a :class:`keel.Project` (or anything with its ``catalog``, ``models`` and ``analyses``).
        token: the token that allows state changes (``Authorization: Bearer <token>``); ``None`` refuses them all.

    The read endpoints are coroutines that query the catalog on the event loop: each read is one short query
    (sub-millisecond on SQLite, one round trip on PostgreSQL), cheaper than handing it to a worker thread, which
    cost a UI page about 1.5 ms a request. The two that move aliases write through the registry on worker threads.

    Example:
        >>> app = create_app(keel.Project.open("."), token="s3cret")  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8765)  # doctest: +SKIP
    """
    catalog = project.catalog
    app = FastAPI(
        title="Keel UI",
        version=__version__,
        description="Feature views, runs, models, analyses and monitoring of a Keel project.",
        # No OpenTelemetry spans for a browsing tool's requests: FastAPI's native telemetry asks the three
        # OpenTelemetry providers (environment lookups) on every request, a sixth of a point page's time.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.add_middleware(_SecurityHeaders)

    @app.exception_handler(KeelError)
    async def _keel_error(_request: Request, exc: KeelError) -> JSONResponse:
        status = 404 if isinstance(exc, NotFoundError) else 409 if isinstance(exc, ConflictError) else 400
        return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=status)

    # -- API: reading --------------------------------------------------------------------------------------------
    @app.get("/api/overview", tags=["api"], summary="Views, models and aliases, latest verdicts and decisions")
    async def api_overview() -> Json:
        reports = catalog.monitoring_reports(limit=20)
        latest: dict[str, dict[str, Any]] = {}
        for report in reports:  # newest first: the first seen of each model is its latest verdict
            latest.setdefault(report.name, {"model": report.name, **_report(report)})
        decisions = catalog.monitoring_events(kinds=("compared", "promoted", "kept", "retrain_refused"), limit=20)
        return Json(
            {
                "views": catalog.view_summaries(page_size=OVERVIEW_ROWS),
                "models": catalog.model_summaries(page_size=OVERVIEW_ROWS),
                "verdicts": list(latest.values()),
                "decisions": [{"model": e.name, **_event(e)} for e in reversed(decisions)],
            }
        )

    @app.get("/api/views", tags=["api"], summary="A page of feature views, each with its latest version")
    async def api_views(page: Page = 1, page_size: PageSize = 50) -> Json:
        return Json(catalog.view_summaries(page=page, page_size=page_size))

    @app.get(
        "/api/views/{name:path}",
        tags=["api"],
        summary="A view's schema, a page of its versions, one version's statistics and validation, its lineage",
    )
    async def api_view(
        name: str,
        version: Annotated[int | None, Query(ge=1, description="whose statistics (default: the latest)")] = None,
        page: Page = 1,
        page_size: PageSize = 50,
    ) -> Json:
        return Json(catalog.view_page(name, version=version, page=page, page_size=page_size))

    @app.get("/api/runs", tags=["api"], summary="A page of runs, sorted, filtered and searched in the catalog")
    async def api_runs(
        sort: Annotated[str, Query(description="started_at, spec, status or metric.<name>")] = "started_at",
        order: Annotated[str, Query(description="asc or desc")] = "desc",
        q: Annotated[str, Query(description="text in the run id, spec name or parameters", max_length=200)] = "",
        status: Annotated[str, Query(max_length=16)] = "",
        spec: Annotated[str, Query(max_length=255)] = "",
        where: Annotated[
            list[str] | None,
            Query(description="conditions all runs meet: metric.roc_auc>=0.8, param.estimator.C=1 (repeatable)"),
        ] = None,
        page: int = 1,
        page_size: int = 50,
    ) -> Json:
        query = RunQuery(
            sort=sort,
            order=order,
            q=q,
            status=status,
            spec=spec,
            where=tuple(where or ()),
            page=page,
            page_size=page_size,
        )
        return Json(catalog.runs_page(query, facets=True))

    # The point pages (a run, compare) are direct routes: the endpoint takes the request itself, skipping FastAPI's
    # parameter solving, which cost more than the catalog read behind them.
    async def api_run(request: Request) -> Json:
        return Json(_run(catalog.run(request.path_params["run_id"])))

    direct(app, "/api/runs/{run_id}", api_run, "One run: params, metrics, lineage, package")

    async def api_compare(request: Request) -> Json:
        runs = request.query_params.get("runs")
        if runs is None:
            raise ValidationError("give the runs to compare: ?runs=ID,ID,...", field="runs")
        ids = [r.strip() for r in runs.split(",") if r.strip()]
        if not 1 <= len(ids) <= MAX_COMPARED:
            raise ValidationError(f"compare 1 to {MAX_COMPARED} runs, got {len(ids)}", field="runs")
        records = catalog.runs_by_ids(ids)
        params = [r.flat_params() for r in records]
        param_names = sorted({k for p in params for k in p})
        metric_names = sorted({k for r in records for k in r.metrics})
        return Json(
            {
                "runs": [
                    {"id": r.id, "spec": r.spec, "status": r.status, "started_at": _iso(r.started_at)} for r in records
                ],
                "params": [
                    {
                        "name": k,
                        "values": [p.get(k) for p in params],
                        "differs": len({repr(p.get(k)) for p in params}) > 1,
                    }
                    for k in param_names
                ],
                "metrics": [{"name": k, "values": [_finite(r.metrics.get(k)) for r in records]} for k in metric_names],
            }
        )

    direct(
        app,
        "/api/compare",
        api_compare,
        "Runs side by side: params and metrics",
        query={"runs": "run ids, comma-separated (1 to 10)"},
    )

    @app.get("/api/models", tags=["api"], summary="A page of models: versions and aliases")
    async def api_models(page: Page = 1, page_size: PageSize = 50) -> Json:
        return Json(catalog.model_summaries(page=page, page_size=page_size))

    @app.get("/api/models/{name:path}/analyses", tags=["api"], summary="A page of a model's stored analyses")
    async def api_analyses(name: str, page: Page = 1, page_size: PageSize = 50) -> Json:
        return Json(catalog.model_analyses_page(name, page=page, page_size=page_size))

    @app.get("/api/models/{name:path}/diff", tags=["api"], summary="How version b differs from version a")
    async def api_diff(name: str, a: int, b: int) -> Json:
        diff = project.models.diff(f"{name}:{a}", f"{name}:{b}")
        return Json(
            {
                "a": diff.a.version,
                "b": diff.b.version,
                "params": [{"name": k, "a": va, "b": vb} for k, (va, vb) in diff.params.items()],
                "metrics": [
                    {"name": k, "a": _finite(va), "b": _finite(vb), "delta": _finite(d)}
                    for k, (va, vb, d) in diff.metrics.items()
                ],
                "features_added": diff.features_added,
                "features_removed": diff.features_removed,
                "feature_versions_changed": {k: list(v) for k, v in diff.feature_versions_changed.items()},
                "data_digests_changed": {k: list(v) for k, v in diff.data_digests_changed.items()},
                "training_set_changed": diff.training_set_changed,
                "libraries": {k: list(v) for k, v in diff.libraries.items()},
            }
        )

    @app.get("/api/models/{name:path}", tags=["api"], summary="A model's versions, aliases with history, analyses")
    async def api_model(name: str) -> Json:
        page = catalog.model_page(name)
        if page["version_count"] == 0:
            catalog.model_version(name)  # raises the catalog's NotFoundError, which lists the known models
        return Json({"name": name, **page})

    @app.get("/api/monitoring/{name:path}", tags=["api"], summary="A model's monitoring reports and retraining audit")
    async def api_monitoring(name: str) -> Json:
        reports = catalog.monitoring_reports(name, limit=MONITORING_LIMIT)
        events = catalog.monitoring_events(name, limit=MONITORING_LIMIT)
        if not reports and not events:
            catalog.model_version(name)  # an unknown model says so; a known one just has no monitoring yet
        return Json(
            {
                "name": name,
                "reports": [_report(r) for r in reversed(reports)],  # oldest first: the charts' time axis
                "events": [_event(e) for e in events],
            }
        )

    # -- API: changing (token and same-site only) --------------------------------------------------------------
    def reason_from(body: dict[str, Any], what: str) -> str:
        given = body.get("reason")
        if given is not None and not isinstance(given, str):
            raise ValidationError("reason must be a string", field="reason")
        return f"{UI_REASON} {what}" + (f": {given.strip()}" if given and given.strip() else "")

    @app.post(
        "/api/models/{name:path}/aliases/{alias}/rollback",
        tags=["api"],
        summary="Give an alias back to its previous version (token)",
    )
    def api_rollback(
        name: str, alias: str, request: Request, body: Annotated[dict[str, Any] | None, Body()] = None
    ) -> Json:
        check_write(request, token)
        change = project.models.rollback(name, alias=alias, reason=reason_from(body or {}, "rollback"))
        return Json(_change(change))

    @app.post("/api/models/{name:path}/aliases/{alias}", tags=["api"], summary="Move an alias to a version (token)")
    def api_promote(name: str, alias: str, request: Request, body: Annotated[dict[str, Any], Body()]) -> Json:
        check_write(request, token)
        version = body.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise ValidationError(f"version must be a whole number, got {version!r}", field="version")
        change = project.models.promote(name, version, alias=alias, reason=reason_from(body, "promote"))
        return Json(_change(change))

    # -- pages -------------------------------------------------------------------------------------------------
    # A model's or a view's name may hold "/" (the catalog does not forbid it): those routes take the rest of the
    # path, so each longer route is declared before the shorter one it would otherwise fall into.
    def page(request: Request, kind: str, title: str, **data: str) -> HTMLResponse:
        return HTMLResponse(shell(kind, title, base=request.scope.get("root_path", ""), **data))

    @app.get("/", include_in_schema=False)
    def overview_page(request: Request) -> HTMLResponse:
        return page(request, "overview", "Overview")

    @app.get("/views", include_in_schema=False)
    def views_page(request: Request) -> HTMLResponse:
        return page(request, "views", "Feature views")

    @app.get("/views/{name:path}", include_in_schema=False)
    def view_page(request: Request, name: str) -> HTMLResponse:
        return page(request, "view", f"Feature view {name}", name=name)

    @app.get("/runs", include_in_schema=False)
    def runs_page(request: Request) -> HTMLResponse:
        return page(request, "runs", "Runs")

    @app.get("/runs/{run_id}", include_in_schema=False)
    def run_page(request: Request, run_id: str) -> HTMLResponse:
        return page(request, "run", f"Run {run_id}", id=run_id)

    @app.get("/compare", include_in_schema=False)
    def compare_page(request: Request) -> HTMLResponse:
        return page(request, "compare", "Compare runs")

    @app.get("/models", include_in_schema=False)
    def models_page(request: Request) -> HTMLResponse:
        return page(request, "models", "Models")

    @app.get("/models/{name:path}/analyses/{analysis_id}/report", include_in_schema=False)
    def analysis_report(name: str, analysis_id: str) -> Response:
        record = catalog.model_analysis(analysis_id)
        if record.name != name:
            raise HTTPException(404, f"analysis {analysis_id} is not one of model {name!r}")
        body = project.analyses.file(record, "report.html")
        return Response(body, media_type="text/html", headers={"Content-Security-Policy": REPORT_POLICY})

    @app.get("/models/{name:path}", include_in_schema=False)
    def model_page(request: Request, name: str) -> HTMLResponse:
        return page(request, "model", f"Model {name}", name=name)

    @app.get("/monitoring/{name:path}", include_in_schema=False)
    def monitoring_page(request: Request, name: str) -> HTMLResponse:
        return page(request, "monitoring", f"Monitoring of {name}", name=name)

    # Last: the API's and the pages' routes are matched first, on every request.
    app.mount("/static", StaticFiles(directory=str(files("keel.ui") / "static")), name="static")
    # The point pages' direct routes first of all: a route is found by trying each in turn, and their paths
    # (/api/runs/ID, /api/compare) are matched by no other route, so the order changes nothing else.
    app.router.routes.sort(key=lambda route: not isinstance(route, DirectRoute))
    return app


__all__ = ["ReportFiles", "UiSources", "create_app"]
