"""The UI's reads that the catalog's own methods cannot answer in bounded time: pages of runs, model summaries.

The catalog's ``runs()`` returns every run, whole; a table of 10,000 runs sorted by a metric must not load them
all. :class:`CatalogQueries` asks the catalog's database for one page at a time — the sort (by start time, spec,
status or one metric inside the ``metrics`` JSON), the filters and the text search all run in SQL — and fetches
only the columns a table shows, so a page's size and cost do not grow with the catalog. It reads through the
catalog's own read transactions and table definitions, so SQLite and PostgreSQL are served alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from keel.catalog import RunRecord, SqlCatalog, _schema
from keel.errors import ValidationError

#: Sort keys a runs table accepts, besides ``metric.<name>``.
RUN_SORTS = ("started_at", "spec", "status")
#: What a metric's name may hold (it becomes a JSON path).
_METRIC = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
#: The largest page a client may ask for.
MAX_PAGE_SIZE = 200


def _utc(value: datetime | None) -> str | None:
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
        page: 1, 2, 3...
        page_size: runs per page, 1 to :data:`MAX_PAGE_SIZE`.
    """

    sort: str = "started_at"
    order: str = "desc"
    q: str = ""
    status: str = ""
    spec: str = ""
    page: int = 1
    page_size: int = 50

    def __post_init__(self) -> None:
        if self.sort not in RUN_SORTS and not (
            self.sort.startswith("metric.") and _METRIC.match(self.sort.removeprefix("metric."))
        ):
            raise ValidationError(
                f"cannot sort runs by {self.sort!r}; sort by {', '.join(RUN_SORTS)} or metric.<name>", field="sort"
            )
        if self.order not in ("asc", "desc"):
            raise ValidationError(f"order must be 'asc' or 'desc', not {self.order!r}", field="order")
        if self.page < 1:
            raise ValidationError(f"page must be 1 or more, not {self.page}", field="page")
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ValidationError(
                f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {self.page_size}", field="page_size"
            )


class CatalogQueries:
    """Bounded reads over a :class:`~keel.catalog.SqlCatalog` for the UI's tables.

    Args:
        catalog: the project's catalog.
    """

    def __init__(self, catalog: SqlCatalog) -> None:
        self._catalog = catalog

    def _read(self) -> Any:
        # The catalog's read transaction: one connection from its pool, its SQLite pragmas, its dialect.
        return self._catalog._read()

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
        page = {
            "total": total,
            "page": query.page,
            "page_size": query.page_size,
            "pages": max(1, -(-total // query.page_size)),
            "sort": query.sort,
            "order": query.order,
            "runs": [
                {
                    "id": row.id,
                    "spec": row.spec,
                    "status": row.status,
                    "started_at": _utc(row.started_at),
                    "finished_at": _utc(row.finished_at),
                    "metrics": dict(row.metrics),
                }
                for row in rows
            ],
        }
        if found is not None:
            page["facets"] = found
        return page

    def runs_by_id(self, ids: list[str]) -> list[RunRecord]:
        """The runs of ``ids``, in that order, read in one query; an id not found whole (a prefix, a typo) is
        looked up by the catalog, which resolves a unique prefix or raises its :class:`NotFoundError`."""
        r = _schema.runs
        with self._read() as conn:
            rows = conn.execute(sa.select(r).where(r.c.id.in_(ids))).all()
        found = {row.id: self._catalog._run(row) for row in rows}
        return [found[i] if i in found else self._catalog.run(i) for i in ids]

    def runs_using_view(self, view: str, *, limit: int = 20) -> list[dict[str, Any]]:
        """The newest ``limit`` runs whose lineage names feature view ``view``, with the version each read."""
        r = _schema.runs
        needle = f'"{view}"'  # a JSON key or string: the view's name whole, not a longer name containing it
        with self._read() as conn:
            rows = conn.execute(
                sa.select(r.c.id, r.c.spec, r.c.status, r.c.started_at, r.c.lineage)
                .where(sa.cast(r.c.lineage, sa.Text).contains(needle, autoescape=True))
                .order_by(r.c.started_at.desc(), r.c.id.desc())
                .limit(limit)
            ).all()
        out = []
        for row in rows:
            versions = dict(row.lineage).get("feature_versions") or {}
            if view not in versions:
                continue
            out.append(
                {
                    "id": row.id,
                    "spec": row.spec,
                    "status": row.status,
                    "started_at": _utc(row.started_at),
                    "feature_version": versions[view],
                }
            )
        return out

    @staticmethod
    def _facets(conn: sa.Connection) -> dict[str, list[str]]:
        r = _schema.runs
        specs = conn.execute(sa.select(r.c.spec).distinct().order_by(r.c.spec)).scalars().all()
        statuses = conn.execute(sa.select(r.c.status).distinct().order_by(r.c.status)).scalars().all()
        recent = conn.execute(sa.select(r.c.metrics).order_by(r.c.started_at.desc()).limit(20)).scalars().all()
        metrics = sorted({name for m in recent for name in dict(m)})
        return {"specs": list(specs), "statuses": list(statuses), "metrics": metrics}

    def models(self) -> list[dict[str, Any]]:
        """Every model: its name, version count, latest version, when that was registered, and its aliases."""
        mv, al = _schema.model_versions, _schema.aliases
        with self._read() as conn:
            rows = conn.execute(
                sa.select(
                    mv.c.name,
                    sa.func.count().label("versions"),
                    sa.func.max(mv.c.version).label("latest"),
                    sa.func.max(mv.c.created_at).label("updated_at"),
                )
                .group_by(mv.c.name)
                .order_by(mv.c.name)
            ).all()
            aliases = conn.execute(sa.select(al.c.name, al.c.alias, al.c.version).order_by(al.c.alias)).all()
        by_model: dict[str, dict[str, int]] = {}
        for a in aliases:
            by_model.setdefault(a.name, {})[a.alias] = int(a.version)
        return [
            {
                "name": row.name,
                "versions": int(row.versions),
                "latest": int(row.latest),
                "updated_at": _utc(row.updated_at),
                "aliases": by_model.get(row.name, {}),
            }
            for row in rows
        ]

    def model_page(self, name: str, *, limit: int = 200) -> dict[str, Any]:
        """Everything a model's page shows, read in one transaction: ``version_count``, ``versions`` (the
        newest ``limit``), ``aliases``, ``alias_history`` (newest first) and ``analyses`` (newest first)."""
        al, h, t = _schema.aliases, _schema.alias_history, _schema.model_analyses
        with self._read() as conn:
            total, versions = self._model_versions(conn, name, limit)
            aliases = conn.execute(
                sa.select(al.c.alias, al.c.version).where(al.c.name == name).order_by(al.c.alias)
            ).all()
            history = conn.execute(sa.select(h).where(h.c.name == name).order_by(h.c.id.desc())).all()
            analyses = conn.execute(
                sa.select(t).where(t.c.name == name).order_by(t.c.created_at.desc(), t.c.id.desc())
            ).all()
        return {
            "version_count": total,
            "versions": versions,
            "aliases": {row.alias: int(row.version) for row in aliases},
            "alias_history": [
                {
                    "alias": row.alias,
                    "from_version": row.from_version,
                    "to_version": row.to_version,
                    "reason": row.reason,
                    "at": _utc(row.at),
                }
                for row in history
            ],
            "analyses": [
                {
                    "id": row.id,
                    "version": int(row.version),
                    "kind": row.kind,
                    "created_at": _utc(row.created_at),
                    "summary": dict(row.summary),
                    "files": sorted(dict(row.artifacts)),
                    "has_report": "report.html" in dict(row.artifacts),
                }
                for row in analyses
            ],
        }

    @staticmethod
    def _model_versions(conn: sa.Connection, name: str, limit: int) -> tuple[int, list[dict[str, Any]]]:
        mv, a, al, r = _schema.model_versions, _schema.model_annotations, _schema.aliases, _schema.runs
        total = int(conn.execute(sa.select(sa.func.count()).where(mv.c.name == name)).scalar_one())
        rows = conn.execute(
            sa.select(mv, a.c.description, a.c.tags, r.c.metrics)
            .outerjoin(a, (a.c.name == mv.c.name) & (a.c.version == mv.c.version))
            .outerjoin(r, r.c.id == mv.c.run_id)
            .where(mv.c.name == name)
            .order_by(mv.c.version.desc())
            .limit(limit)
        ).all()
        aliases = conn.execute(sa.select(al.c.alias, al.c.version).where(al.c.name == name)).all()
        held: dict[int, list[str]] = {}
        for alias in aliases:
            held.setdefault(int(alias.version), []).append(alias.alias)
        return total, [
            {
                "version": int(row.version),
                "run_id": row.run_id,
                "package_digest": row.package_digest,
                "package_format": row.package_format,
                "created_at": _utc(row.created_at),
                "description": row.description or "",
                "tags": dict(row.tags or {}),
                "aliases": sorted(held.get(int(row.version), [])),
                "metrics": dict(row.metrics or {}),
            }
            for row in rows
        ]
