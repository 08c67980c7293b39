"""Retrieval holds the engine to its contract: one joined row per entity row, or an error naming the engine."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

import keel
from keel import BackendError, DataFrameSource, Entity, FeatureView, Field
from keel.engines import LocalEngine, PointInTimeSource

CUSTOMER = Entity("customer", ["customer_id"])
T0 = pd.Timestamp("2024-01-01", tz="UTC")


class _OneRowShort(LocalEngine):
    """An engine with a bug: its join loses the last entity row."""

    name = "buggy"

    def _point_in_time_join(self, entities: pa.Table, sources: list[PointInTimeSource]) -> pa.Table:
        joined = super()._point_in_time_join(entities, sources)
        return joined.slice(0, joined.num_rows - 1)


def test_an_engine_returning_the_wrong_number_of_rows_is_a_backend_error_naming_it(project_dir: Path) -> None:
    frame = pd.DataFrame({"customer_id": [1, 2], "event_time": [T0, T0], "spend": [1.0, 2.0]})
    view = FeatureView(
        "activity", entities=[CUSTOMER], source=DataFrameSource(frame), schema=[Field("spend", "float64")]
    )
    entities = pd.DataFrame({"customer_id": [1, 2], "event_timestamp": [T0, T0]})
    with keel.Project.open(project_dir) as project:
        project.apply([CUSTOMER, view])
        project.ingest(view)
        project.offline.engine = _OneRowShort()

        with pytest.raises(BackendError, match=r"buggy engine: the point-in-time join returned 1 rows for 2 entity"):
            project.historical_features(entities, ["activity:spend"])
