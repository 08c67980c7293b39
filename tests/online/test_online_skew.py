"""Online/offline skew on every online backend: after a materialization the sampled entities agree; a value changed
online, a view emptied online, an older value left online, a value pushed online only and newer offline data not
yet materialized are each found and told apart; the sample is reproducible."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from keel import DataFrameSource, Entity, FeatureView, Field
from keel.errors import ValidationError
from keel.online._skew import online_skew

CUSTOMER = Entity("customer", ["customer_id"])
NOW = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)  # Redis expires by wall clock
N = 300


def rows(n: int = N, seed: int = 0, hours_ago: float = 5.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": np.arange(n, dtype=np.int64),
            "event_time": pd.Series([NOW - timedelta(hours=hours_ago)] * n, dtype="datetime64[us, UTC]"),
            "spend": rng.gamma(2.0, 30.0, n),
            "orders": rng.integers(0, 9, n).astype(np.int64),
            "plan": rng.choice(["basic", "pro"], n).astype(object),
        }
    )


def setup(project: Any, df: pd.DataFrame) -> FeatureView:
    view = FeatureView(
        "activity",
        entities=[CUSTOMER],
        source=DataFrameSource(df),
        schema=[Field("spend", "float64"), Field("orders", "int64"), Field("plan", "string")],
        ttl=timedelta(days=2),
    )
    project.apply([CUSTOMER, view])
    project.ingest(view)
    project.materialize(end=NOW)
    return view


def check(project: Any, view: FeatureView, **kwargs: Any) -> Any:
    return online_skew(
        view,
        ["customer_id"],
        catalog=project.catalog,
        engine=project.engine,
        offline_store=project.offline_store,
        online_store=project.online_store,
        store_id=project.online_store_id,
        now=kwargs.pop("now", NOW),
        **kwargs,
    )


def test_after_materialization_every_sampled_entity_agrees(any_project: Any) -> None:
    view = setup(any_project, rows())

    found = check(any_project, view, sample=100)

    assert found.entities == N and found.sampled == 100 and found.cases["same"] == 100
    assert found.errors == {} and found.warnings == [] and found.examples == []
    again = check(any_project, view, sample=100)
    assert [e.to_dict() for e in again.examples] == [] and again.cases == found.cases


def test_a_value_changed_online_is_found_with_its_feature_and_both_values(any_project: Any) -> None:
    df = rows()
    view = setup(any_project, df)
    changed = df.iloc[:30].copy()
    changed["spend"] = changed["spend"] * 100  # cents online, dollars offline: same event time
    any_project.push("activity", changed, to="online")

    found = check(any_project, view, sample=N)

    assert found.cases["value differs"] == 30 and found.features == {"spend": 30}
    assert found.errors == {"value differs": 30}
    example = found.examples[0]
    assert example.case == "value differs" and example.feature == "spend"
    assert example.online == pytest.approx(example.offline * 100)
    assert example.to_dict()["key"][0] in set(range(30))


def test_an_emptied_view_and_an_older_value_left_online_are_errors(any_project: Any) -> None:
    df = rows()
    view = setup(any_project, df)
    any_project.online_store.drop_view("activity")
    older = rows(hours_ago=30.0).iloc[:50]
    any_project.push("activity", older, to="online")

    found = check(any_project, view, sample=N)

    assert found.cases["missing online"] == N - 50 and found.cases["behind offline"] == 50
    assert set(found.errors) == {"missing online", "behind offline"}
    behind = next(e for e in found.examples if e.case == "behind offline")
    assert behind.online_time is not None and behind.offline_time is not None
    assert behind.offline_time - behind.online_time == timedelta(hours=25)


def test_a_value_pushed_online_only_is_newer_than_offline(any_project: Any) -> None:
    view = setup(any_project, rows())
    any_project.push("activity", rows(hours_ago=1.0).iloc[:20], to="online")

    found = check(any_project, view, sample=N)

    assert found.errors == {"online newer": 20}


def test_newer_offline_data_not_materialized_yet_is_a_warning(any_project: Any) -> None:
    view = setup(any_project, rows())
    any_project.push("activity", rows(hours_ago=1.0, seed=3).iloc[:40], to="offline")  # a new version, v2
    any_project.materialize(end=NOW - timedelta(hours=2))  # v2 written up to before the new rows

    found = check(any_project, view, sample=N)

    assert found.version == 2 and found.latest_version == 2
    assert found.errors == {} and found.cases["not yet materialized"] == 40
    assert "run `keel materialize`" in found.warnings[0]
    any_project.materialize(end=NOW)
    assert check(any_project, view, sample=N).cases["same"] == N


def test_a_version_never_materialized_is_reported_not_blamed(project: Any) -> None:
    df = rows()
    view = FeatureView(
        "activity",
        entities=[CUSTOMER],
        source=DataFrameSource(df),
        schema=[Field("spend", "float64"), Field("orders", "int64"), Field("plan", "string")],
        ttl=timedelta(days=2),
    )
    project.apply([CUSTOMER, view])
    project.ingest(view)

    found = check(project, view, sample=50)

    assert found.errors == {} and found.cases["not yet materialized"] == 50
    assert "never materialized into this online store" in found.warnings


def test_the_sample_is_uniform_and_reproducible(project: Any) -> None:
    view = setup(project, rows(n=5000))

    a = check(project, view, sample=200, seed=1)
    b = check(project, view, sample=200, seed=1)
    c = check(project, view, sample=200, seed=2)

    assert a.sampled == b.sampled == c.sampled == 200 and a.entities == 5000
    with pytest.raises(ValidationError, match="positive number"):
        check(project, view, sample=0)


def test_the_sample_draws_every_row_alike_across_batches() -> None:
    """Rows arrive in batches of uneven sizes; each row is kept with the same probability, whatever its batch."""
    import pyarrow as pa

    from keel.online._skew import _sample

    sizes = [7, 1000, 1, 250, 2742]
    batches = []
    start = 0
    for size in sizes:
        batches.append(pa.RecordBatch.from_pydict({"k": list(range(start, start + size))}))
        start += size
    first, total = _sample(iter(batches), 100, seed=4)
    again, _ = _sample(iter(batches), 100, seed=4)
    assert total == 4000 and first is not None and again is not None
    assert first.column("k").to_pylist() == again.column("k").to_pylist()
    kept = np.zeros(4000)
    for seed in range(400):
        drawn, _ = _sample(iter(batches), 100, seed=seed)
        assert drawn is not None and drawn.num_rows == 100
        kept[drawn.column("k").to_numpy()] += 1
    batch_of = np.repeat(np.arange(len(sizes)), sizes)
    p = 100 / 4000
    for b, size in enumerate(sizes):  # each batch's draws: binomial(size * 400, p), within four standard deviations
        trials = size * 400
        assert abs(kept[batch_of == b].sum() - trials * p) <= 4 * np.sqrt(trials * p * (1 - p)), (b, size)
