"""Bounded reads for browsing a catalog (the web UI's tables): pages of runs, views and analyses, lineage.

The catalog's ``runs()`` returns every run, whole; a table of 10,000 runs sorted by a metric must not load them
all. These reads ask the database for one page at a time — the sort (by start time, spec, status or one metric
inside the ``metrics`` JSON), the filters and the text search all run in SQL — and fetch only the columns a table
shows, so a page's size and cost do not grow with the catalog. SQLite and PostgreSQL are served alike.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

from keel.catalog import _schema
from keel.catalog._lean import LeanReads
from keel.catalog._records import RunRecord
from keel.errors import NotFoundError, ValidationError

#: Sort keys a runs table accepts, besides ``metric.<name>``.
RUN_SORTS = ("started_at", "spec", "status")
#: What a metric's name may hold (it becomes a JSON path).
_METRIC = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
#: The largest page a client may ask for.
MAX_PAGE_SIZE = 200


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat()


@dataclass(frozen=True)
class RunQuery:
    """One request for a page of runs.

    Attributes:
        sort: ``started_at``, ``spec``, ``status`` or ``metric.<name>`` (runs without that metric come last).
        order: ``asc`` or ``desc``.
        q: text looked for (case-insensitively) in the run's id, spec name and parameters.
        status: only runs with this status.
        spec: only runs of this spec.
        where: conditions on metrics and parameters, all of which a run must meet: ``metric.roc_auc>=0.8``,
            ``param.estimator.C=1``, ``param.model!=gbm`` (``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``; a number
            compares as a number, anything else as text with ``=``/``!=`` only; a run without the value fails).
        page: 1, 2, 3...
        page_size: runs per page, 1 to :data:`MAX_PAGE_SIZE`.
    """

    sort: str = "started_at"
    order: str = "desc"
    q: str = ""
    status: str = ""
    spec: str = ""
    where: tuple[str, ...] = ()
    page: int = 1
    page_size: int = 50

    def __post_init__(self) -> None:
        for condition in self.where:
            parse_condition(condition)
        if self.sort not in RUN_SORTS and not (
            self.sort.startswith("metric.") and _METRIC.match(self.sort.removeprefix("metric."))
        ):
            raise ValidationError(
                f"cannot sort runs by {self.sort!r}; sort by {', '.join(RUN_SORTS)} or metric.<name>", field="sort"
            )
        if self.order not in ("asc", "desc"):
            raise ValidationError(f"order must be 'asc' or 'desc', not {self.order!r}", field="order")
        check_page(self.page, self.page_size)


#: ``metric.<name>`` or ``param.<dotted.path>``, an operator, a value.
_CONDITION = re.compile(r"^\s*(metric|param)\.([A-Za-z0-9_.\-]{1,200}?)\s*(>=|<=|!=|=|<|>)\s*(.{1,200}?)\s*$")
_COMPARE: dict[str, Any] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def parse_condition(text: str) -> tuple[str, tuple[str, ...], str, float | str]:
    """``(kind, path, operator, value)`` of a run condition like ``metric.auc>=0.8`` (see :class:`RunQuery`).

    Raises:
        ValidationError: the text is not such a condition, or compares text with an order.
    """
    found = _CONDITION.match(text)
    if found is None:
        raise ValidationError(
            f"cannot filter runs by {text!r}; write metric.NAME>=0.8 or param.PATH=VALUE "
            "(operators =, !=, <, <=, >, >=)",
            field="where",
        )
    kind, name, operator, raw = found.groups()
    value: float | str
    try:
        value = float(raw)
    except ValueError:
        value = raw.strip("\"'")
        if operator not in ("=", "!="):
            message = f"{text!r}: only = and != compare text; {raw!r} is not a number"
            raise ValidationError(message, field="where") from None
    if kind == "metric" and isinstance(value, str):
        raise ValidationError(f"{text!r}: a metric compares with a number, not {raw!r}", field="where")
    path = (name,) if kind == "metric" else tuple(name.split("."))
    if any(not part for part in path):
        raise ValidationError(f"{text!r}: {name!r} is not a parameter path", field="where")
    return kind, path, operator, value


class _JsonIsNumber(sa.ColumnElement[bool]):
    """Whether the JSON value at ``path`` in ``column`` is a number (a text or a boolean is not): the guard that
    keeps a numeric condition from casting text (an error on PostgreSQL, 0 on SQLite)."""

    inherit_cache = False
    type = sa.Boolean()

    def __init__(self, column: sa.ColumnElement[Any], path: tuple[str, ...]) -> None:
        self.column, self.path = column, path


@compiles(_JsonIsNumber)
def _json_is_number(element: _JsonIsNumber, compiler: Any, **kw: Any) -> str:  # SQLite
    path = "$" + "".join(f'."{part}"' for part in element.path)  # parts are [A-Za-z0-9_-]: see _CONDITION
    column = compiler.process(element.column, **kw)
    return f"json_type({column}, {compiler.process(sa.literal(path), **kw)}) IN ('integer', 'real')"


@compiles(_JsonIsNumber, "postgresql")
def _json_is_number_postgresql(element: _JsonIsNumber, compiler: Any, **kw: Any) -> str:
    value = element.column[element.path[0]] if len(element.path) == 1 else element.column[element.path]
    return f"json_typeof({compiler.process(value, **kw)}) = 'number'"


def _condition(text: str) -> sa.ColumnElement[bool]:
    r = _schema.runs
    kind, path, operator, value = parse_condition(text)
    column = r.c.metrics if kind == "metric" else r.c.params
    element = column[path[0]] if len(path) == 1 else column[path]
    extracted: sa.ColumnElement[Any]
    if isinstance(value, float):
        # CASE, not AND: PostgreSQL may evaluate AND's sides in either order, CASE's branches only when taken.
        extracted = sa.case((_JsonIsNumber(column, path), element.as_float()), else_=sa.null())
    else:
        extracted = element.as_string()
    return sa.and_(extracted.is_not(None), _COMPARE[operator](extracted, value))


def check_page(page: int, page_size: int) -> None:
    """Refuse a page number below 1 or a page size outside 1 to :data:`MAX_PAGE_SIZE`."""
    if page < 1:
        raise ValidationError(f"page must be 1 or more, not {page}", field="page")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}", field="page_size")


def paged(total: int, page: int, page_size: int, **items: Any) -> dict[str, Any]:
    """A page's envelope: ``{"total", "page", "page_size", "pages", **items}``."""
    return {"total": total, "page": page, "page_size": page_size, "pages": max(1, -(-total // page_size)), **items}


class BrowseCatalog:
    """Paged reads for browsing, mixed into :class:`~keel.catalog.SqlCatalog`. Needs ``_read``, ``_lean`` and
    ``run``; every answer is plain JSON data (timestamps as ISO 8601 strings in UTC)."""

    if TYPE_CHECKING:

        def _read(self) -> AbstractContextManager[sa.Connection]: ...
        def run(self, run_id: str) -> RunRecord: ...
        @staticmethod
        def _run(row: Any) -> RunRecord: ...

        _lean: LeanReads

    # -- runs --------------------------------------------------------------------------------------------------
    def runs_page(self, query: RunQuery, *, facets: bool = False) -> dict[str, Any]:
        """One page of runs: ``{"total", "page", "page_size", "pages", "sort", "order", "runs": [...]}``.

        Each run carries its id, spec, status, start and end times and metrics (not its params or lineage,
        which a table does not show and which can be large). With ``facets``, also ``"facets"``, read in the same
        transaction: the specs and statuses runs have, and the metric names of the newest 20 runs (the table's
        filters and columns).
        """
        r = _schema.runs
        where: list[sa.ColumnElement[bool]] = []
        if query.status:
            where.append(r.c.status == query.status)
        if query.spec:
            where.append(r.c.spec == query.spec)
        where.extend(_condition(condition) for condition in query.where)
        if query.q:
            where.append(
                sa.or_(
                    r.c.id.icontains(query.q, autoescape=True),
                    r.c.spec.icontains(query.q, autoescape=True),
                    sa.cast(r.c.params, sa.Text).icontains(query.q, autoescape=True),
                )
            )
        key: sa.ColumnElement[Any]
        if query.sort.startswith("metric."):
            key = r.c.metrics[query.sort.removeprefix("metric.")].as_float()
        else:
            key = r.c[query.sort]
        ordered = key.desc() if query.order == "desc" else key.asc()
        tie = r.c.id.desc() if query.order == "desc" else r.c.id.asc()
        columns = (r.c.id, r.c.spec, r.c.status, r.c.started_at, r.c.finished_at, r.c.metrics)
        select = (
            sa.select(*columns)
            .where(*where)
            .order_by(sa.nulls_last(ordered), tie)
            .limit(query.page_size)
            .offset((query.page - 1) * query.page_size)
        )
        with self._read() as conn:
            total = int(conn.execute(sa.select(sa.func.count()).select_from(r).where(*where)).scalar_one())
            rows = conn.execute(select).all()
            found = self._facets(conn) if facets else None
        page = paged(
            total,
            query.page,
            query.page_size,
            sort=query.sort,
            order=query.order,
            runs=[
                {
                    "id": row.id,
                    "spec": row.spec,
                    "status": row.status,
                    "started_at": _iso(row.started_at),
                    "finished_at": _iso(row.finished_at),
                    "metrics": dict(row.metrics),
                }
                for row in rows
            ],
        )
        if found is not None:
            page["facets"] = found
        return page

    @staticmethod
    def _facets(conn: sa.Connection) -> dict[str, list[str]]:
        r = _schema.runs
        specs = conn.execute(sa.select(r.c.spec).distinct().order_by(r.c.spec)).scalars().all()
        statuses = conn.execute(sa.select(r.c.status).distinct().order_by(r.c.status)).scalars().all()
        recent = conn.execute(sa.select(r.c.metrics).order_by(r.c.started_at.desc()).limit(20)).scalars().all()
        metrics = sorted({name for m in recent for name in dict(m)})
        return {"specs": list(specs), "statuses": list(statuses), "metrics": metrics}

    def runs_by_ids(self, ids: list[str]) -> list[RunRecord]:
        """The runs of ``ids``, in that order, read in one statement on the driver; an id not found whole (a
        prefix, a typo) is looked up by :meth:`run`, which resolves a unique prefix or raises its
        :class:`~keel.errors.NotFoundError`."""
        r = _schema.runs
        count = len(ids)

        def statement() -> sa.Select[Any]:
            return sa.select(r).where(r.c.id.in_([sa.bindparam(f"id{i}") for i in range(count)]))

        rows = self._lean.all(f"runs_by_ids:{count}", statement, **{f"id{i}": v for i, v in enumerate(ids)})
        found = {row.id: self._run(row) for row in rows}
        return [found[i] if i in found else self.run(i) for i in ids]

    # -- lineage -----------------------------------------------------------------------------------------------
    def view_lineage(self, view: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """The newest ``limit`` runs whose training read feature view ``view``: each with the view's version it
        read and the model versions registered from it (``"name:version"``), newest first."""
        r, mv = _schema.runs, _schema.model_versions
        needle = f'"{view}"'  # a JSON key or string: the view's name whole, not a longer name containing it
        with self._read() as conn:
            rows = conn.execute(
                sa.select(r.c.id, r.c.spec, r.c.status, r.c.started_at, r.c.lineage)
                .where(sa.cast(r.c.lineage, sa.Text).contains(needle, autoescape=True))
                .order_by(r.c.started_at.desc(), r.c.id.desc())
                .limit(limit)
            ).all()
            used = [row for row in rows if view in (dict(row.lineage).get("feature_versions") or {})]
            models = conn.execute(
                sa.select(mv.c.run_id, mv.c.name, mv.c.version)
                .where(mv.c.run_id.in_([row.id for row in used]))
                .order_by(mv.c.name, mv.c.version)
            ).all()
        registered: dict[str, list[str]] = {}
        for m in models:
            registered.setdefault(m.run_id, []).append(f"{m.name}:{m.version}")
        return [
            {
                "id": row.id,
                "spec": row.spec,
                "status": row.status,
                "started_at": _iso(row.started_at),
                "feature_version": dict(row.lineage)["feature_versions"][view],
                "models": registered.get(row.id, []),
            }
            for row in used
        ]

    # -- feature views -----------------------------------------------------------------------------------------
    @staticmethod
    def _current_views() -> sa.Select[Any]:
        d = _schema.definitions
        latest = (
            sa.select(d.c.name, sa.func.max(d.c.version).label("version"))
            .where(d.c.kind == "feature_view")
            .group_by(d.c.name)
            .subquery()
        )
        return (
            sa.select(d.c.name, d.c.spec)
            .join(latest, (d.c.name == latest.c.name) & (d.c.version == latest.c.version))
            .where(d.c.kind == "feature_view", d.c.status == "active")
        )

    _VERSION_COLUMNS = (
        "version",
        "definition_version",
        "row_count",
        "event_time_min",
        "event_time_max",
        "data_digest",
        "location",
        "has_duplicates",
        "created_at",
    )

    @classmethod
    def _version(cls, row: Any) -> dict[str, Any]:
        out = {name: getattr(row, name) for name in cls._VERSION_COLUMNS}
        for name in ("event_time_min", "event_time_max", "created_at"):
            out[name] = _iso(out[name])
        out["row_count"] = int(out["row_count"])
        out["has_duplicates"] = bool(out["has_duplicates"])
        return out

    def view_summaries(self, *, page: int = 1, page_size: int = 50) -> dict[str, Any]:
        """One page of the active feature views, by name: each with its description, entities, features, number
        of versions and latest version (without its statistics)."""
        check_page(page, page_size)
        fv = _schema.feature_versions
        current = self._current_views().subquery()
        with self._read() as conn:
            total = int(conn.execute(sa.select(sa.func.count()).select_from(current)).scalar_one())
            views = conn.execute(
                sa.select(current).order_by(current.c.name).limit(page_size).offset((page - 1) * page_size)
            ).all()
            counts = (
                sa.select(fv.c.view, sa.func.max(fv.c.version).label("latest"), sa.func.count().label("n"))
                .where(fv.c.view.in_([v.name for v in views]))
                .group_by(fv.c.view)
                .subquery()
            )
            latest = conn.execute(
                sa.select(*(fv.c[c] for c in self._VERSION_COLUMNS), fv.c.view, counts.c.n).join(
                    counts, (fv.c.view == counts.c.view) & (fv.c.version == counts.c.latest)
                )
            ).all()
        by_view = {row.view: row for row in latest}
        out = []
        for view in views:
            spec = dict(view.spec or {})
            row = by_view.get(view.name)
            out.append(
                {
                    "name": view.name,
                    "description": spec.get("description", ""),
                    "entities": spec.get("entities", []),
                    "features": [f.get("name") for f in spec.get("schema", [])],
                    "versions": int(row.n) if row is not None else 0,
                    "latest": self._version(row) if row is not None else None,
                }
            )
        return paged(total, page, page_size, views=out)

    def view_page(self, name: str, *, version: int | None = None, page: int = 1, page_size: int = 50) -> dict[str, Any]:
        """Everything a feature view's page shows: its current definition, one page of its versions (newest
        first), the statistics and validation of ``version`` (default: the latest), and its lineage.

        Raises:
            NotFoundError: no active view ``name``, or it has no version ``version``.
        """
        check_page(page, page_size)
        fv = _schema.feature_versions
        with self._read() as conn:
            found = conn.execute(self._current_views().where(_schema.definitions.c.name == name)).first()
            if found is None:
                raise NotFoundError(f"no feature view named {name!r}; /api/views lists them")
            total = int(conn.execute(sa.select(sa.func.count()).where(fv.c.view == name)).scalar_one())
            versions = conn.execute(
                sa.select(*(fv.c[c] for c in self._VERSION_COLUMNS))
                .where(fv.c.view == name)
                .order_by(fv.c.version.desc())
                .limit(page_size)
                .offset((page - 1) * page_size)
            ).all()
            chosen = sa.select(fv.c.version, fv.c.statistics, fv.c.validation).where(fv.c.view == name)
            chosen = chosen.where(fv.c.version == version) if version is not None else chosen
            detail = conn.execute(chosen.order_by(fv.c.version.desc()).limit(1)).first()
        if version is not None and detail is None:
            raise NotFoundError(f"feature view {name!r} has no version {version}; it has {total}")
        spec = dict(found.spec or {})
        return {
            "name": name,
            "description": spec.get("description", ""),
            "entities": spec.get("entities", []),
            "schema": spec.get("schema", []),
            "ttl_seconds": spec.get("ttl_seconds"),
            "tags": spec.get("tags", {}),
            "source": spec.get("source"),
            **paged(total, page, page_size, versions=[self._version(v) for v in versions]),
            "statistics_version": detail.version if detail is not None else None,
            "statistics": dict(detail.statistics) if detail is not None else {},
            "validation": dict(detail.validation) if detail is not None and detail.validation is not None else None,
            "lineage": self.view_lineage(name),
        }

    # -- models ------------------------------------------------------------------------------------------------
    def model_summaries(self, *, page: int = 1, page_size: int = 50) -> dict[str, Any]:
        """One page of the models, by name: each with its version count, latest version, when that was
        registered, and its aliases."""
        check_page(page, page_size)
        mv, al = _schema.model_versions, _schema.aliases
        with self._read() as conn:
            total = int(conn.execute(sa.select(sa.func.count(sa.distinct(mv.c.name)))).scalar_one())
            rows = conn.execute(
                sa.select(
                    mv.c.name,
                    sa.func.count().label("versions"),
                    sa.func.max(mv.c.version).label("latest"),
                    sa.func.max(mv.c.created_at).label("updated_at"),
                )
                .group_by(mv.c.name)
                .order_by(mv.c.name)
                .limit(page_size)
                .offset((page - 1) * page_size)
            ).all()
            aliases = conn.execute(
                sa.select(al.c.name, al.c.alias, al.c.version)
                .where(al.c.name.in_([row.name for row in rows]))
                .order_by(al.c.alias)
            ).all()
        by_model: dict[str, dict[str, int]] = {}
        for a in aliases:
            by_model.setdefault(a.name, {})[a.alias] = int(a.version)
        return paged(
            total,
            page,
            page_size,
            models=[
                {
                    "name": row.name,
                    "versions": int(row.versions),
                    "latest": int(row.latest),
                    "updated_at": _iso(row.updated_at),
                    "aliases": by_model.get(row.name, {}),
                }
                for row in rows
            ],
        )

    def model_page(self, name: str, *, limit: int = 200, analyses: int = 50) -> dict[str, Any]:
        """Everything a model's page shows, read together (one connection, one snapshot on SQLite):
        ``version_count``, ``versions`` (the newest ``limit``), ``aliases``, ``alias_history`` (newest first,
        whole: it is the audit trail) and the newest ``analyses`` with ``analyses_total``
        (:meth:`model_analyses_page` pages through the rest)."""
        count, versions, aliases, history, analyses_count, analyses_rows = self._lean.many(
            [
                ("model_page:count", _model_count, {"name": name}),
                ("model_page:versions", _model_versions, {"name": name, "limit": limit}),
                ("model_page:aliases", _model_aliases, {"name": name}),
                ("model_page:history", _alias_history, {"name": name}),
                ("model_page:analyses_count", _analyses_count, {"name": name}),
                ("model_page:analyses", _analyses, {"name": name, "limit": analyses, "offset": 0}),
            ]
        )
        held: dict[int, list[str]] = {}
        for alias in aliases:
            held.setdefault(int(alias.version), []).append(alias.alias)
        return {
            "version_count": int(count[0].n),
            "versions": [
                {
                    "version": int(row.version),
                    "run_id": row.run_id,
                    "package_digest": row.package_digest,
                    "package_format": row.package_format,
                    "created_at": _iso(row.created_at),
                    "description": row.description or "",
                    "tags": row.tags or {},
                    "aliases": sorted(held.get(int(row.version), [])),
                    "metrics": row.metrics or {},
                }
                for row in versions
            ],
            "aliases": {row.alias: int(row.version) for row in aliases},
            "alias_history": [
                {
                    "alias": row.alias,
                    "from_version": row.from_version,
                    "to_version": row.to_version,
                    "reason": row.reason,
                    "at": _iso(row.at),
                }
                for row in history
            ],
            "analyses_total": int(analyses_count[0].n),
            "analyses": [_analysis(row) for row in analyses_rows],
        }

    def model_analyses_page(self, name: str, *, page: int = 1, page_size: int = 50) -> dict[str, Any]:
        """One page of a model's stored analyses, newest first."""
        check_page(page, page_size)
        window = {"name": name, "limit": page_size, "offset": (page - 1) * page_size}
        count, rows = self._lean.many(
            [
                ("model_page:analyses_count", _analyses_count, {"name": name}),
                ("model_page:analyses", _analyses, window),
            ]
        )
        return paged(int(count[0].n), page, page_size, analyses=[_analysis(row) for row in rows])


# -- the model page's statements (compiled once per dialect by the catalog's LeanReads) -------------------------
def _model_count() -> sa.Select[Any]:
    mv = _schema.model_versions
    return sa.select(sa.func.count().label("n")).where(mv.c.name == sa.bindparam("name"))


def _model_versions() -> sa.Select[Any]:
    mv, a, r = _schema.model_versions, _schema.model_annotations, _schema.runs
    return (
        sa.select(
            mv.c.version,
            mv.c.run_id,
            mv.c.package_digest,
            mv.c.package_format,
            mv.c.created_at,
            a.c.description,
            a.c.tags,
            r.c.metrics,
        )
        .outerjoin(a, (a.c.name == mv.c.name) & (a.c.version == mv.c.version))
        .outerjoin(r, r.c.id == mv.c.run_id)
        .where(mv.c.name == sa.bindparam("name"))
        .order_by(mv.c.version.desc())
        .limit(sa.bindparam("limit", type_=sa.Integer))
    )


def _model_aliases() -> sa.Select[Any]:
    al = _schema.aliases
    return sa.select(al.c.alias, al.c.version).where(al.c.name == sa.bindparam("name")).order_by(al.c.alias)


def _alias_history() -> sa.Select[Any]:
    h = _schema.alias_history
    return (
        sa.select(h.c.alias, h.c.from_version, h.c.to_version, h.c.reason, h.c.at)
        .where(h.c.name == sa.bindparam("name"))
        .order_by(h.c.id.desc())
    )


def _analyses_count() -> sa.Select[Any]:
    t = _schema.model_analyses
    return sa.select(sa.func.count().label("n")).where(t.c.name == sa.bindparam("name"))


def _analyses() -> sa.Select[Any]:
    t = _schema.model_analyses
    return (
        sa.select(t.c.id, t.c.version, t.c.kind, t.c.created_at, t.c.summary, t.c.artifacts)
        .where(t.c.name == sa.bindparam("name"))
        .order_by(t.c.created_at.desc(), t.c.id.desc())
        .limit(sa.bindparam("limit", type_=sa.Integer))
        .offset(sa.bindparam("offset", type_=sa.Integer))
    )


def _analysis(row: Any) -> dict[str, Any]:
    files = row.artifacts or {}
    return {
        "id": row.id,
        "version": int(row.version),
        "kind": row.kind,
        "created_at": _iso(row.created_at),
        "summary": row.summary or {},
        "files": sorted(files),
        "has_report": "report.html" in files,
    }
