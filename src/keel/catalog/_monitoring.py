"""The catalog's monitoring reports and monitoring audit trail (mixed into :class:`SqlCatalog`)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from keel.catalog import _schema
from keel.catalog._records import MonitoringEvent, MonitoringReportRecord
from keel.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    T = TypeVar("T")

#: The kinds of audit events, in the order a retraining cycle records them.
EVENT_KINDS = (
    "checked",
    "threshold_crossed",
    "retrain_started",
    "retrain_failed",
    "retrain_refused",
    "compared",
    "promoted",
    "kept",
)


def _utc(value: datetime | None) -> datetime | None:
    from keel.catalog._sql import _as_utc

    return _as_utc(value)


def _now() -> datetime:
    from keel.catalog._sql import utcnow

    return utcnow()


def _check_json(what: str, **values: Any) -> None:
    from keel.catalog._sql import _json_safe

    for name, value in values.items():
        _json_safe(value, f"the {what}'s {name}", name)


class MonitoringCatalog:
    """Monitoring reports and events. Needs ``_read`` and ``_retrying``."""

    if TYPE_CHECKING:

        def _read(self) -> AbstractContextManager[sa.Connection]: ...
        def _retrying(self, what: str, fn: Callable[[sa.Connection], T]) -> T: ...

    # -- reports ---------------------------------------------------------------------------------------------
    @staticmethod
    def _report(row: sa.Row[Any]) -> MonitoringReportRecord:
        return MonitoringReportRecord(
            id=row.id,
            name=row.name,
            version=int(row.version),
            created_at=_utc(row.created_at) or _now(),
            window_start=_utc(row.window_start),
            window_end=_utc(row.window_end),
            crossed=bool(row.crossed),
            verdict=dict(row.verdict),
            report=dict(row.report),
        )

    def add_monitoring_report(
        self,
        *,
        report_id: str,
        name: str,
        version: int,
        window_start: datetime | None,
        window_end: datetime | None,
        crossed: bool,
        verdict: dict[str, Any],
        report: dict[str, Any],
        created_at: datetime | None = None,
    ) -> MonitoringReportRecord:
        """Store one monitoring report (JSON values only: ``None`` instead of NaN)."""
        _check_json("monitoring report", verdict=verdict, report=report)
        t = _schema.monitoring_reports
        values = {
            "id": report_id,
            "name": name,
            "version": version,
            "created_at": _utc(created_at) or _now(),
            "window_start": _utc(window_start),
            "window_end": _utc(window_end),
            "crossed": crossed,
            "verdict": verdict,
            "report": report,
        }

        def write(conn: sa.Connection) -> MonitoringReportRecord:
            conn.execute(sa.insert(t).values(**values))
            return self._report(conn.execute(sa.select(t).where(t.c.id == report_id)).one())

        return self._retrying(f"storing a monitoring report of model {name!r}", write)

    def monitoring_report(self, report_id: str) -> MonitoringReportRecord:
        """One report by id (a unique prefix of at least 6 characters will do)."""
        t = _schema.monitoring_reports
        with self._read() as conn:
            rows = conn.execute(sa.select(t).where(t.c.id.startswith(report_id, autoescape=True)).limit(2)).all()
        if len(rows) != 1 or (len(report_id) < 6 and rows[0].id != report_id):
            what = "is ambiguous" if len(rows) > 1 else "matches no report"
            if len(rows) == 1:
                what = "is too short a prefix (give at least 6 characters)"
            raise NotFoundError(f"monitoring report id {report_id!r} {what}; `keel monitor history` lists them")
        return self._report(rows[0])

    def monitoring_reports(self, name: str | None = None, *, limit: int | None = None) -> list[MonitoringReportRecord]:
        """Reports of one model (or of all), newest first."""
        t = _schema.monitoring_reports
        query = sa.select(t)
        if name is not None:
            query = query.where(t.c.name == name)
        query = query.order_by(t.c.created_at.desc(), t.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [self._report(row) for row in conn.execute(query).all()]

    # -- audit trail -----------------------------------------------------------------------------------------
    @staticmethod
    def _event(row: sa.Row[Any]) -> MonitoringEvent:
        return MonitoringEvent(
            id=int(row.id),
            name=row.name,
            kind=row.kind,
            version=int(row.version) if row.version is not None else None,
            report_id=row.report_id,
            message=row.message,
            details=dict(row.details),
            at=_utc(row.at) or _now(),
        )

    def add_monitoring_event(
        self,
        *,
        name: str,
        kind: str,
        message: str,
        version: int | None = None,
        report_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> MonitoringEvent:
        """Append one audit event to the trail of model ``name``."""
        if kind not in EVENT_KINDS:
            raise ValidationError(
                f"unknown monitoring event kind {kind!r}; kinds: {', '.join(EVENT_KINDS)}", field="kind"
            )
        details = dict(details or {})
        _check_json("monitoring event", details=details)
        t = _schema.monitoring_events

        def write(conn: sa.Connection) -> MonitoringEvent:
            result = conn.execute(
                sa.insert(t).values(
                    name=name,
                    kind=kind,
                    version=version,
                    report_id=report_id,
                    message=message,
                    details=details,
                    at=_now(),
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return self._event(conn.execute(sa.select(t).where(t.c.id == key[0])).one())

        return self._retrying(f"recording a monitoring event of model {name!r}", write)

    def monitoring_events(
        self, name: str | None = None, *, kinds: tuple[str, ...] | None = None, limit: int | None = None
    ) -> list[MonitoringEvent]:
        """The audit trail of one model (or of all), oldest first; ``limit`` keeps the newest."""
        t = _schema.monitoring_events
        query = sa.select(t)
        if name is not None:
            query = query.where(t.c.name == name)
        if kinds:
            query = query.where(t.c.kind.in_(kinds))
        query = query.order_by(t.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [self._event(row) for row in reversed(rows)]
