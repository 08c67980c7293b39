"""The one rule for which column of a table holds its times (labels, entity frames, rows to check)."""

from __future__ import annotations

import pandas as pd
import pytest

from keel._tables import timestamp_column
from keel.errors import ValidationError

T = pd.Timestamp("2025-01-01", tz="UTC")


def test_the_named_column_wins_and_a_missing_one_is_refused_by_name() -> None:
    frame = pd.DataFrame({"id": [1], "at": [T], "event_timestamp": [T]})
    assert timestamp_column(frame, "at") == "at"
    with pytest.raises(ValidationError, match="labels: no timestamp column 'when'; the columns are: id, at") as caught:
        timestamp_column(frame, "when", what="labels")
    assert caught.value.field == "when"


def test_the_only_datetime_column_is_the_time_whatever_its_name() -> None:
    frame = pd.DataFrame({"id": [1], "ts": [T], "timestamp": ["not the time"]})
    assert timestamp_column(frame) == "ts"


def test_among_several_datetime_columns_a_preferred_name_is_chosen() -> None:
    frame = pd.DataFrame({"since": [T], "event_time": [T], "timestamp": [T]})
    assert timestamp_column(frame) == "event_time"
    assert timestamp_column(frame, prefer=("timestamp",)) == "timestamp"


def test_a_preferred_name_holding_text_is_the_time_of_a_table_without_datetimes() -> None:
    assert timestamp_column(pd.DataFrame({"id": [1], "timestamp": ["2025-01-01T00:00:00Z"]})) == "timestamp"


def test_no_rule_applies_gives_none() -> None:
    assert timestamp_column(pd.DataFrame({"id": [1], "when": ["2025-01-01"]})) is None
    assert timestamp_column(pd.DataFrame({"a": [T], "b": [T]})) is None
