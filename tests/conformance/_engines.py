"""What the engine conformance suites share: the engines they run on, and how they write their inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keel.engines import SEQ, Engine
from keel.engines._statistics import QUANTILE_RANK_ERROR, QUANTILE_SAMPLE_ROWS, QUANTILES, quantile_names

#: Every engine of the plug-in table; each names a session fixture ``<name>_engine`` in tests/conftest.py.
ENGINES = ["local", pytest.param("spark", marks=pytest.mark.spark)]

UTC_US = pa.timestamp("us", tz="UTC")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def at(*hours: float | None) -> pa.Array:
    """Timestamps ``T0 + h`` hours (``None``: null)."""
    return pa.array([None if h is None else T0 + h * HOUR for h in hours], UTC_US)


def write(path: Path, columns: dict[str, Any], *, first: int | None = None) -> str:
    """Write ``columns`` as one Parquet file; with ``first``, as a version's file whose sequence column
    numbers its rows from ``first`` (what ingest writes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(columns)
    if first is not None:
        table = table.append_column(SEQ, pa.array(range(first, first + table.num_rows), pa.int64()))
    pq.write_table(table, path)
    return str(path)


def _rank_quantile(ordered: list[float], p: float) -> float:
    position = p * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def quantiles_match(engine: Engine, got: dict[str, Any], values: list[float | int]) -> bool:
    """Exact quantiles (interpolated between ranks) on the local engine and on any engine up to
    ``QUANTILE_SAMPLE_ROWS`` values; above that, on an engine that documents sampled quantiles, each within the
    documented rank error of the exact one."""
    ordered = sorted(float(v) for v in values)
    for name, p in zip(quantile_names(), QUANTILES, strict=True):
        exact = _rank_quantile(ordered, p)
        if engine.name == "local" or len(ordered) <= QUANTILE_SAMPLE_ROWS:
            if got[name] != pytest.approx(exact, rel=1e-12):
                return False
            continue
        slack = QUANTILE_RANK_ERROR
        low = _rank_quantile(ordered, max(0.0, p - slack))
        high = _rank_quantile(ordered, min(1.0, p + slack))
        if not low - 1e-9 <= got[name] <= high + 1e-9:
            return False
    return True
