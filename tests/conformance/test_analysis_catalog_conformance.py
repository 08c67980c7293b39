"""Analyses of model versions are stored and listed alike on every catalog backend."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from keel.catalog import SqlCatalog
from keel.errors import NotFoundError, ValidationError


@pytest.fixture
def catalog(any_catalog: SqlCatalog) -> SqlCatalog:
    return any_catalog


def add(catalog: SqlCatalog, *, version: int = 1, kind: str = "analysis", at: datetime | None = None) -> str:
    analysis_id = uuid.uuid4().hex
    catalog.add_model_analysis(
        analysis_id=analysis_id,
        name="churn",
        version=version,
        kind=kind,
        summary={"weak_segments": ['plan == "basic"'], "rows": 1000, "auc": 0.81},
        artifacts={"report.json": "a" * 64, "report.html": "b" * 64},
        created_at=at,
    )
    return analysis_id


def test_an_analysis_is_stored_and_read_back_whole(catalog: SqlCatalog) -> None:
    analysis_id = add(catalog, at=datetime(2026, 12, 1, tzinfo=UTC))

    got = catalog.model_analysis(analysis_id[:8])

    assert (got.id, got.name, got.version, got.kind) == (analysis_id, "churn", 1, "analysis")
    assert got.created_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert got.summary["weak_segments"] == ['plan == "basic"'] and got.artifacts["report.html"] == "b" * 64


def test_analyses_are_listed_newest_first_by_model_version_and_kind(catalog: SqlCatalog) -> None:
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    first = add(catalog, at=t0)
    second = add(catalog, version=2, kind="importance", at=t0 + timedelta(hours=1))
    third = add(catalog, version=2, at=t0 + timedelta(hours=2))

    assert [a.id for a in catalog.model_analyses("churn")] == [third, second, first]
    assert [a.id for a in catalog.model_analyses("churn", version=2)] == [third, second]
    assert [a.id for a in catalog.model_analyses("churn", kind="importance")] == [second]
    assert catalog.model_analyses("other") == []


def test_unknown_kinds_ids_and_values_that_are_not_json_are_refused(catalog: SqlCatalog) -> None:
    with pytest.raises(ValidationError, match="unknown analysis kind"):
        add(catalog, kind="vibes")
    with pytest.raises(NotFoundError, match="matches no analysis"):
        catalog.model_analysis("0123456789")
    with pytest.raises(ValidationError):
        catalog.add_model_analysis(
            analysis_id=uuid.uuid4().hex,
            name="churn",
            version=1,
            kind="analysis",
            summary={"auc": float("nan")},
            artifacts={},
        )
