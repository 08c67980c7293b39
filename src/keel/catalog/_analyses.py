"""The catalog's analyses of model versions (mixed into :class:`SqlCatalog`)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from keel.catalog import _schema
from keel.catalog._monitoring import _check_json, _now, _utc
from keel.catalog._records import ModelAnalysisRecord
from keel.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    T = TypeVar("T")

#: The kinds of analyses.
ANALYSIS_KINDS = ("analysis", "importance", "selection")


class AnalysisCatalog:
    """Analyses of model versions. Needs ``_read`` and ``_retrying``."""

    if TYPE_CHECKING:

        def _read(self) -> AbstractContextManager[sa.Connection]: ...
        def _retrying(self, what: str, fn: Callable[[sa.Connection], T]) -> T: ...

    @staticmethod
    def _analysis(row: sa.Row[Any]) -> ModelAnalysisRecord:
        return ModelAnalysisRecord(
            id=row.id,
            name=row.name,
            version=int(row.version),
            kind=row.kind,
            created_at=_utc(row.created_at) or _now(),
            summary=dict(row.summary),
            artifacts={str(k): str(v) for k, v in dict(row.artifacts).items()},
        )

    def add_model_analysis(
        self,
        *,
        analysis_id: str,
        name: str,
        version: int,
        kind: str,
        summary: dict[str, Any],
        artifacts: dict[str, str],
        created_at: datetime | None = None,
    ) -> ModelAnalysisRecord:
        """Store one analysis of model version ``name:version`` (JSON values only)."""
        if kind not in ANALYSIS_KINDS:
            raise ValidationError(f"unknown analysis kind {kind!r}; kinds: {', '.join(ANALYSIS_KINDS)}", field="kind")
        _check_json("model analysis", summary=summary, artifacts=artifacts)
        t = _schema.model_analyses
        values = {
            "id": analysis_id,
            "name": name,
            "version": version,
            "kind": kind,
            "created_at": _utc(created_at) or _now(),
            "summary": summary,
            "artifacts": artifacts,
        }

        def write(conn: sa.Connection) -> ModelAnalysisRecord:
            conn.execute(sa.insert(t).values(**values))
            return self._analysis(conn.execute(sa.select(t).where(t.c.id == analysis_id)).one())

        return self._retrying(f"storing a {kind} of model {name!r} v{version}", write)

    def model_analysis(self, analysis_id: str) -> ModelAnalysisRecord:
        """One analysis by id (a unique prefix of at least 6 characters will do)."""
        t = _schema.model_analyses
        with self._read() as conn:
            rows = conn.execute(sa.select(t).where(t.c.id.startswith(analysis_id, autoescape=True)).limit(2)).all()
        if len(rows) != 1 or (len(analysis_id) < 6 and rows[0].id != analysis_id):
            what = "is ambiguous" if len(rows) > 1 else "matches no analysis"
            if len(rows) == 1:
                what = "is too short a prefix (give at least 6 characters)"
            raise NotFoundError(f"analysis id {analysis_id!r} {what}; `keel models show NAME:VERSION` lists them")
        return self._analysis(rows[0])

    def model_analyses(
        self, name: str | None = None, *, version: int | None = None, kind: str | None = None
    ) -> list[ModelAnalysisRecord]:
        """The analyses of one model (of one version, of one kind), newest first."""
        t = _schema.model_analyses
        query = sa.select(t)
        if name is not None:
            query = query.where(t.c.name == name)
        if version is not None:
            query = query.where(t.c.version == version)
        if kind is not None:
            query = query.where(t.c.kind == kind)
        with self._read() as conn:
            rows = conn.execute(query.order_by(t.c.created_at.desc(), t.c.id.desc())).all()
        return [self._analysis(row) for row in rows]
