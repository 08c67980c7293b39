"""Monitoring reports and the monitoring audit trail behave alike on every catalog backend."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from keel.catalog import SqlCatalog
from keel.errors import NotFoundError, ValidationError


@pytest.fixture
def catalog(any_catalog: SqlCatalog) -> SqlCatalog:
    return any_catalog


def report(catalog: SqlCatalog, name: str = "churn", version: int = 1, crossed: bool = False, **kw: object) -> str:
    report_id = uuid.uuid4().hex
    end = datetime(2026, 3, 8, tzinfo=UTC)
    catalog.add_monitoring_report(
        report_id=report_id,
        name=name,
        version=version,
        window_start=end - timedelta(days=7),
        window_end=end,
        crossed=crossed,
        verdict={"crossed": crossed, "reasons": ["3 of 9 features drifted"] if crossed else []},
        report={"drift": {"share": 0.33 if crossed else 0.0}, "features": ["a", "b"]},
        **kw,  # type: ignore[arg-type]
    )
    return report_id


def test_a_report_is_stored_and_read_back_whole(catalog: SqlCatalog) -> None:
    report_id = report(catalog, crossed=True)
    got = catalog.monitoring_report(report_id)
    assert (got.name, got.version, got.crossed) == ("churn", 1, True)
    assert got.window_end == datetime(2026, 3, 8, tzinfo=UTC)
    assert got.window_start == datetime(2026, 3, 1, tzinfo=UTC)
    assert got.verdict == {"crossed": True, "reasons": ["3 of 9 features drifted"]}
    assert got.report == {"drift": {"share": 0.33}, "features": ["a", "b"]}
    assert catalog.monitoring_report(report_id[:8]).id == report_id


def test_reports_list_newest_first_per_model(catalog: SqlCatalog) -> None:
    now = datetime.now(UTC)
    first = report(catalog, created_at=now - timedelta(hours=2))
    second = report(catalog, created_at=now - timedelta(hours=1))
    report(catalog, name="other")
    assert [r.id for r in catalog.monitoring_reports("churn")] == [second, first]
    assert [r.id for r in catalog.monitoring_reports("churn", limit=1)] == [second]
    assert len(catalog.monitoring_reports()) == 3


def test_unknown_report_and_non_json_values_are_refused(catalog: SqlCatalog) -> None:
    with pytest.raises(NotFoundError, match="matches no report"):
        catalog.monitoring_report("f" * 32)
    with pytest.raises(ValidationError, match="cannot be stored"):
        catalog.add_monitoring_report(
            report_id=uuid.uuid4().hex,
            name="churn",
            version=1,
            window_start=None,
            window_end=None,
            crossed=False,
            verdict={},
            report={"psi": float("nan")},
        )


def test_events_append_in_order_and_filter_by_kind(catalog: SqlCatalog) -> None:
    report_id = report(catalog, crossed=True)
    catalog.add_monitoring_event(name="churn", kind="checked", version=1, report_id=report_id, message="checked")
    catalog.add_monitoring_event(name="churn", kind="threshold_crossed", version=1, message="drift")
    catalog.add_monitoring_event(
        name="churn", kind="compared", version=2, message="v2 0.81 vs v1 0.74", details={"challenger": 0.81}
    )
    catalog.add_monitoring_event(name="other", kind="checked", message="checked")
    events = catalog.monitoring_events("churn")
    assert [e.kind for e in events] == ["checked", "threshold_crossed", "compared"]
    assert events[0].report_id == report_id and events[0].at.tzinfo is not None
    assert events[2].details == {"challenger": 0.81} and events[2].version == 2
    assert [e.kind for e in catalog.monitoring_events("churn", kinds=("compared",))] == ["compared"]
    assert [e.kind for e in catalog.monitoring_events("churn", limit=2)] == ["threshold_crossed", "compared"]
    with pytest.raises(ValidationError, match="unknown monitoring event kind") as caught:
        catalog.add_monitoring_event(name="churn", kind="exploded", message="?")
    assert caught.value.field == "kind"
