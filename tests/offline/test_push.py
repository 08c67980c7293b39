"""Push: rows validated like ingestion, upserted online and/or appended offline as a new immutable version.

Also the command line of the online loop: ``keel push``, ``keel materialize`` and ``keel features get``.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import keel
from keel import DataFrameSource, Entity, FeatureView, Field, NotFoundError, ValidationError
from keel.cli import app
from keel.online._values import us_from_datetime

CUSTOMER = Entity("customer", ["customer_id"])
NOW = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
NOW_US = us_from_datetime(NOW)
TTL = timedelta(days=2)
HOUR = timedelta(hours=1)


def times(*hours_ago: float) -> pd.Series:
    return pd.Series([NOW - h * HOUR for h in hours_ago], dtype="datetime64[us, UTC]")


def rows(keys: list[Any], hours_ago: list[float], spend: list[Any], **extra: Any) -> pd.DataFrame:
    n = len(keys)
    return pd.DataFrame(
        {
            "customer_id": keys,
            "event_time": times(*hours_ago),
            "spend": spend,
            "plan": extra.pop("plan", ["pushed"] * n),
            **extra,
        }
    )


def activity(df: pd.DataFrame | None = None, *, schema: list[Field] | None = None, **source: Any) -> FeatureView:
    base = rows([1, 2, 3], [10, 10, 5], [1.0, 2.0, 3.0], plan=["a", "b", "c"])
    return FeatureView(
        "activity",
        entities=[CUSTOMER],
        source=DataFrameSource(base if df is None else df, **source),
        schema=schema or [Field("spend", "float64"), Field("plan", "string")],
        ttl=TTL,
    )


@pytest.fixture
def project(project_dir: Path) -> Iterator[Any]:
    """Version 1 of ``activity`` ingested and materialized: customers 1, 2 (10 h ago) and 3 (5 h ago)."""
    with keel.Project.open(project_dir) as p:
        view = activity()
        p.apply([CUSTOMER, view])
        p.ingest(view)
        p.materialize(end=NOW)
        yield p


def online(project: Any, keys: list[Any], features: tuple[str, ...] = ("spend", "plan")) -> dict[str, list[Any]]:
    refs = [f"activity:{f}" for f in features]
    result: dict[str, list[Any]] = project.online.get(refs, {"customer_id": keys}, now_us=NOW_US).to_dict()
    return result


def offline(project: Any, keys: list[Any], hours_ago: list[float], version: int | None = None) -> dict[str, list[Any]]:
    entities = pd.DataFrame({"customer_id": keys, "ts": times(*hours_ago)})
    pin = "" if version is None else f"@{version}"
    out = project.historical_features(entities, [f"activity{pin}:spend", f"activity{pin}:plan"])
    return {c: [None if pd.isna(v) else v for v in out[c]] for c in ("spend", "plan")}


# -- online ----------------------------------------------------------------------------------------------------
def test_a_push_online_is_read_at_once_and_makes_no_offline_version(project: Any) -> None:
    result = project.push("activity", rows([1, 4], [1, 2], [10.0, 40.0]))

    assert (result.view, result.rows, result.online_rows, result.offline_version) == ("activity", 2, 2, None)
    assert online(project, [1, 4, 2]) == {"spend": [10.0, 40.0, 2.0], "plan": ["pushed", "pushed", "b"]}
    assert [v.version for v in project.feature_versions("activity")] == [1]


def test_rows_older_than_the_stored_ones_are_ignored_online(project: Any) -> None:
    result = project.push("activity", rows([3, 3, 1], [6, 5, 11], [30.0, 31.0, 10.0]))

    # 3's row 6 h ago is older than the stored one (5 h ago); the one at the same time replaces it; 1's is older.
    assert result.online_rows == 1
    assert online(project, [3, 1]) == {"spend": [31.0, 1.0], "plan": ["pushed", "a"]}


def test_a_push_online_of_rows_older_than_the_ttl_reads_as_none(project: Any) -> None:
    project.push("activity", rows([7], [49], [70.0]))

    assert online(project, [7]) == {"spend": [None], "plan": [None]}


def test_a_push_accepts_the_feature_views_object_and_naive_timestamps_with_a_warning(project: Any) -> None:
    naive = rows([5], [1], [50.0]).assign(event_time=lambda d: d["event_time"].dt.tz_localize(None))

    result = project.push(activity(), naive)

    assert any("taken as UTC" in w for w in result.warnings)
    assert online(project, [5]) == {"spend": [50.0], "plan": ["pushed"]}


@pytest.mark.parametrize("to", ["online", "offline", "both"])
@pytest.mark.parametrize(
    ("bad", "message", "field", "row"),
    [
        ({"spend": ["1.0", "abc", "2"]}, "column 'spend': row 1 has value 'abc'", "spend", 1),
        ({"customer_id": [1, 2, None]}, "join key 'customer_id': row 2 is null", "customer_id", 2),
        ({"event_time": ["2024-01-01T00:00:00Z", "yesterday", None]}, "row 1 has 'yesterday'", "event_time", 1),
        ({"plan": [1.5, 2.5, 3.5]}, "declared string but the source holds double", "plan", None),
    ],
)
def test_bad_rows_are_refused_naming_the_row_and_column_and_nothing_is_written(
    project: Any, to: str, bad: dict[str, list[Any]], message: str, field: str, row: int | None
) -> None:
    df = rows([1, 2, 4], [1, 1, 1], [7.0, 8.0, 9.0])
    for column, values in bad.items():
        df[column] = pd.Series(values, dtype=object)

    with pytest.raises(ValidationError, match=message) as caught:
        project.push("activity", df, to=to)

    assert (caught.value.field, caught.value.row) == (field, row)
    assert online(project, [1, 2, 4]) == {"spend": [1.0, 2.0, None], "plan": ["a", "b", None]}
    assert [v.version for v in project.feature_versions("activity")] == [1]


def test_a_missing_column_is_refused_by_name(project: Any) -> None:
    with pytest.raises(ValidationError, match=r"column\(s\) \['plan'\] missing") as caught:
        project.push("activity", rows([1], [1], [1.0]).drop(columns=["plan"]))

    assert caught.value.field == "plan"


@pytest.mark.parametrize(
    ("view", "df", "to", "error", "message"),
    [
        ("activity", rows([1], [1], [1.0]), "sideways", ValidationError, "to must be 'online', 'offline' or 'both'"),
        ("activity", [{"customer_id": 1}], "online", ValidationError, "expected a pandas DataFrame of rows, got list"),
        ("activity", rows([], [], []), "online", ValidationError, "no rows"),
        ("nope", rows([1], [1], [1.0]), "online", NotFoundError, "unknown feature view 'nope'"),
    ],
)
def test_bad_push_requests_are_refused(
    project: Any, view: str, df: Any, to: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        project.push(view, df, to=to)


# -- offline -------------------------------------------------------------------------------------------------
def test_a_push_offline_is_a_new_version_made_of_the_parent_and_the_rows(project: Any) -> None:
    parent = project.catalog.feature_version("activity", 1)

    result = project.push("activity", rows([1, 4], [3, 2], [10.0, 40.0]), to="offline")

    child = project.catalog.feature_version("activity")
    assert (result.offline_version, result.online_rows, child.version) == (2, 0, 2)
    assert child.row_count == 5
    assert child.files[: len(parent.files)] == [{**f, "location": parent.location} for f in parent.files]
    assert len(child.files) == len(parent.files) + 1 and child.files[-1]["location"] != parent.location
    assert child.files[-1]["rows"] == 2
    assert child.data_digest != parent.data_digest
    assert (child.event_time_min, child.event_time_max) == (NOW - 10 * HOUR, NOW - 2 * HOUR)
    # The parent is immutable: the same record, the same data.
    assert project.catalog.feature_version("activity", 1) == parent
    assert offline(project, [1, 4], [0, 0], version=1) == {"spend": [1.0, None], "plan": ["a", None]}
    # Not online until materialized.
    assert online(project, [1, 4]) == {"spend": [1.0, None], "plan": ["a", None]}


def test_historical_features_see_pushed_rows_from_their_event_time(project: Any) -> None:
    project.push("activity", rows([1, 4], [3, 2], [10.0, 40.0]), to="offline")

    got = offline(project, [1, 1, 4, 4, 2], [4, 2, 3, 1, 0])

    assert got == {"spend": [1.0, 10.0, None, 40.0, 2.0], "plan": ["a", "pushed", None, "pushed", "b"]}


def test_a_tie_on_event_time_goes_to_the_pushed_row_offline_and_online(project: Any) -> None:
    project.push("activity", rows([2, 3], [10, 5], [20.0, 30.0]), to="offline")  # the same times as v1's rows

    version = project.catalog.feature_version("activity")
    assert version.has_duplicates
    assert offline(project, [2, 3], [0, 0]) == {"spend": [20.0, 30.0], "plan": ["pushed", "pushed"]}
    [result] = project.materialize(end=NOW)
    assert (result.version, result.rebuilt) == (2, "")
    assert online(project, [2, 3]) == {"spend": [20.0, 30.0], "plan": ["pushed", "pushed"]}


def test_ties_follow_the_created_timestamp_before_the_push_order(project_dir: Path) -> None:
    base = rows([1, 2], [5, 5], [1.0, 2.0], plan=["a", "b"], created=times(1, 1))
    with keel.Project.open(project_dir) as project:
        view = activity(base, created_timestamp="created")
        project.apply([CUSTOMER, view])
        project.ingest(view)

        # 1: pushed with an older created time (loses); 2: pushed with a newer one (wins).
        project.push("activity", rows([1, 2], [5, 5], [10.0, 20.0], created=times(2, 0.5)), to="offline")

        assert offline(project, [1, 2], [0, 0]) == {"spend": [1.0, 20.0], "plan": ["a", "pushed"]}
        project.materialize(end=NOW)
        assert online(project, [1, 2]) == {"spend": [1.0, 20.0], "plan": ["a", "pushed"]}


def test_statistics_and_counts_describe_the_whole_version(project: Any) -> None:
    project.push("activity", rows([1, 4, 5], [3, 2, 1], [100.0, None, -5.0]), to="offline")

    version = project.catalog.feature_version("activity")
    spend = version.statistics["spend"]
    assert version.row_count == 6
    assert (spend["count"], spend["nulls"], spend["min"], spend["max"]) == (5, 1, -5.0, 100.0)
    assert version.statistics["customer_id"]["count"] == 6
    assert version.statistics["customer_id"]["max"] == 5


def test_pushes_stack_up_and_materialize_follows(project: Any) -> None:
    project.push("activity", rows([1], [3], [10.0]), to="offline")
    project.push("activity", rows([1, 6], [2, 1], [11.0, 60.0]), to="offline")

    [result] = project.materialize(end=NOW)

    assert [v.row_count for v in project.feature_versions("activity")] == [3, 4, 6]
    assert len(project.catalog.feature_version("activity").files) == 3
    assert result.version == 3
    assert (
        online(project, [1, 6])
        == offline(project, [1, 6], [0, 0])
        == {
            "spend": [11.0, 60.0],
            "plan": ["pushed", "pushed"],
        }
    )


def test_a_push_offline_to_a_view_without_versions_makes_the_first(project_dir: Path) -> None:
    with keel.Project.open(project_dir) as project:
        project.apply([CUSTOMER, activity()])

        result = project.push("activity", rows([8], [1], [80.0]), to="offline")

        assert result.offline_version == 1
        assert project.catalog.feature_version("activity").row_count == 1
        assert offline(project, [8], [0]) == {"spend": [80.0], "plan": ["pushed"]}


def test_a_push_offline_after_the_definition_changed_is_refused(project: Any) -> None:
    changed = activity(
        rows([1], [1], [1.0], visits=[3]),
        schema=[Field("spend", "float64"), Field("plan", "string"), Field("visits", "int64")],
    )
    project.apply([CUSTOMER, changed])

    with pytest.raises(ValidationError, match="changed since its latest version \\(v1\\); ingest it again"):
        project.push("activity", rows([1], [1], [1.0], visits=[3]), to="offline")

    assert [v.version for v in project.feature_versions("activity")] == [1]


def test_a_push_to_both_refused_offline_writes_nothing_online(project: Any) -> None:
    changed = activity(
        rows([1], [1], [1.0], visits=[3]),
        schema=[Field("spend", "float64"), Field("plan", "string"), Field("visits", "int64")],
    )
    project.apply([CUSTOMER, changed])

    with pytest.raises(ValidationError, match="changed since its latest version"):
        project.push("activity", rows([1], [1], [100.0], visits=[3]), to="both")

    assert online(project, [1]) == {"spend": [1.0], "plan": ["a"]}


def test_a_push_offline_with_keys_of_another_type_is_refused(project: Any) -> None:
    with pytest.raises(ValidationError, match="join key 'customer_id' holds strings but version v1 stores integers"):
        project.push("activity", rows(["1"], [1], [1.0]), to="offline")

    assert [v.version for v in project.feature_versions("activity")] == [1]


def test_a_push_to_both_stores_writes_online_and_a_new_version(project: Any) -> None:
    result = project.push("activity", rows([1, 9], [1, 1], [10.0, 90.0]), to="both")

    assert (result.online_rows, result.offline_version) == (2, 2)
    assert (
        online(project, [1, 9])
        == offline(project, [1, 9], [0, 0])
        == {
            "spend": [10.0, 90.0],
            "plan": ["pushed", "pushed"],
        }
    )
    [again] = project.materialize(end=NOW)
    assert again.version == 2
    assert online(project, [1, 9, 2]) == offline(project, [1, 9, 2], [0, 0, 0])


# -- the command line ----------------------------------------------------------------------------------------
runner = CliRunner()

FEATURES = textwrap.dedent(
    """
    from datetime import timedelta
    from keel import Entity, FeatureView, Field, ParquetSource

    customer = Entity("customer", join_keys=["customer_id"])
    activity = FeatureView(
        "activity",
        entities=[customer],
        source=ParquetSource("data/activity.parquet", timestamp="event_time"),
        schema=[Field("spend", "float64"), Field("plan", "string")],
        ttl=timedelta(days=2),
    )
    shop = Entity("shop", join_keys=["shop_code"])
    shops = FeatureView(
        "shops",
        entities=[shop],
        source=ParquetSource("data/shops.parquet", timestamp="event_time"),
        schema=[Field("rating", "float64")],
    )
    later = FeatureView(
        "later",
        entities=[customer],
        source=ParquetSource("data/later.parquet", timestamp="event_time"),
        schema=[Field("score", "float64")],
    )
    """
)


@pytest.fixture
def cli_project(project_dir: Path) -> Path:
    """A project on disk with ``activity`` (ingested by the tests) and ``later`` (never ingested)."""
    (project_dir / "data").mkdir()
    rows([1, 1, 2], [30, 3, 5], [10.0, 20.0, 30.0], plan=["basic", "premium", "basic"]).to_parquet(
        project_dir / "data" / "activity.parquet"
    )
    pd.DataFrame({"customer_id": [1], "event_time": times(1), "score": [0.5]}).to_parquet(
        project_dir / "data" / "later.parquet"
    )
    pd.DataFrame({"shop_code": ["007", "42"], "event_time": times(1, 1), "rating": [4.5, 3.0]}).to_parquet(
        project_dir / "data" / "shops.parquet"
    )
    (project_dir / "features.py").write_text(FEATURES)
    for args in (["apply"], ["ingest", "activity"], ["ingest", "shops"]):
        result = runner.invoke(app, [*args, "-p", str(project_dir)])
        assert result.exit_code == 0, result.output
    return project_dir


def invoke(project_dir: Path, *args: str) -> Any:
    return runner.invoke(app, [*args, "-p", str(project_dir)], catch_exceptions=True)


def features_json(project_dir: Path, *entities: str, features: str = "activity:*") -> dict[str, Any]:
    args = ["features", "get", "-f", features, "--json"]
    for e in entities:
        args += ["-e", e]
    result = invoke(project_dir, *args)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


@pytest.mark.parametrize("command", [["materialize"], ["push"], ["features", "get"]])
def test_online_commands_have_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_keel_materialize_then_features_get(cli_project: Path) -> None:
    end = (NOW - 2 * HOUR).isoformat()

    first = invoke(cli_project, "materialize", "--end", end)
    again = invoke(cli_project, "materialize", "--end", end)
    got = features_json(cli_project, "customer_id=1", "customer_id=2", "customer_id=3")

    assert first.exit_code == 0, first.output
    assert "activity" in first.output and "written" in first.output
    assert "later" not in first.output  # online but never ingested: skipped, as by project.materialize()
    assert again.exit_code == 0 and "up to date" in again.output
    # features get reads at the wall clock, an hour before NOW: the same values.
    assert got == {
        "features": {"spend": [20.0, 30.0, None], "plan": ["premium", "basic", None]},
        "versions": {"activity": 1},
    }


def test_keel_materialize_named_views_with_a_window(cli_project: Path) -> None:
    result = invoke(
        cli_project, "materialize", "activity", "--start", (NOW - 4 * HOUR).isoformat(), "--end", NOW.isoformat()
    )

    assert result.exit_code == 0, result.output
    assert features_json(cli_project, "customer_id=1", "customer_id=2")["features"]["spend"] == [20.0, None]


def test_keel_materialize_with_nothing_ingested_says_so(tmp_path: Path) -> None:
    project_dir = tmp_path / "empty"
    (project_dir / "data").mkdir(parents=True)
    for name in ("activity", "later", "shops"):
        rows([1], [1], [1.0]).assign(score=0.5, shop_code="a", rating=1.0).to_parquet(
            project_dir / "data" / f"{name}.parquet"
        )
    (project_dir / "features.py").write_text(FEATURES)
    assert invoke(project_dir, "apply").exit_code == 0

    result = invoke(project_dir, "materialize")

    assert result.exit_code == 0, result.output
    assert "Nothing to materialize" in result.output


@pytest.mark.parametrize("value", ["soon", "", "2024-13-01"])
def test_keel_materialize_refuses_a_bad_time(cli_project: Path, value: str) -> None:
    result = invoke(cli_project, "materialize", "--end", value)

    assert result.exit_code != 0
    assert isinstance(result.exception, ValidationError)
    assert f"--end: {value!r} is not an ISO 8601 date or time" in str(result.exception)


def test_keel_materialize_of_a_view_never_ingested_is_an_error(cli_project: Path) -> None:
    result = invoke(cli_project, "materialize", "later")

    assert isinstance(result.exception, NotFoundError)
    assert "'later' has no ingested data" in str(result.exception)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_keel_push_online_from_a_file(cli_project: Path, tmp_path: Path, suffix: str) -> None:
    assert invoke(cli_project, "materialize").exit_code == 0
    path = tmp_path / f"rows{suffix}"
    pushed = rows([2, 7], [1, 1], [33.0, 70.0])
    if suffix == ".csv":
        pushed.assign(event_time=pushed["event_time"].map(lambda t: t.isoformat())).to_csv(path, index=False)
    else:
        pushed.to_parquet(path)

    result = invoke(cli_project, "push", "activity", "--input", str(path))

    assert result.exit_code == 0, result.output
    assert "activity: 2 rows pushed (2 applied online)" in result.output
    assert features_json(cli_project, "customer_id=2", "customer_id=7")["features"]["spend"] == [33.0, 70.0]


def test_keel_push_offline_and_both(cli_project: Path, tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    rows([1], [1], [99.0]).to_parquet(path)

    offline_only = invoke(cli_project, "push", "activity", "-i", str(path), "--to", "offline")
    both = invoke(cli_project, "push", "activity", "-i", str(path), "--to", "both")

    assert offline_only.exit_code == 0, offline_only.output
    assert "activity: 1 rows pushed (offline version v2)" in offline_only.output
    assert "1 applied online, offline version v3" in both.output
    with keel.Project.open(cli_project) as project:
        assert [v.row_count for v in project.feature_versions("activity")] == [3, 4, 5]


def test_keel_push_refuses_bad_rows_and_bad_arguments(cli_project: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    rows([1, 2], [1, 1], [1.0, 2.0]).assign(spend=["1.0", "lots"]).to_parquet(bad)
    good = tmp_path / "good.parquet"
    rows([1], [1], [1.0]).to_parquet(good)

    bad_row = invoke(cli_project, "push", "activity", "-i", str(bad))
    bad_to = invoke(cli_project, "push", "activity", "-i", str(good), "--to", "sideways")
    no_file = invoke(cli_project, "push", "activity", "-i", str(tmp_path / "missing.parquet"))
    text = tmp_path / "rows.txt"
    text.write_text("customer_id\n1\n")
    bad_type = invoke(cli_project, "push", "activity", "-i", str(text))

    assert "column 'spend': row 1 has value 'lots'" in str(bad_row.exception)
    assert "to must be 'online', 'offline' or 'both'" in str(bad_to.exception)
    assert "no file at" in str(no_file.exception)
    assert "unsupported file type '.txt'" in str(bad_type.exception)
    assert all(isinstance(r.exception, ValidationError) for r in (bad_row, bad_to, no_file, bad_type))


def test_keel_features_get_prints_a_table_with_keys_values_and_versions(cli_project: Path) -> None:
    assert invoke(cli_project, "materialize").exit_code == 0
    refs = "activity:spend,activity:plan"

    table = invoke(cli_project, "features", "get", "-f", refs, "-e", "customer_id=1", "-e", "customer_id=5")
    full = invoke(cli_project, "features", "get", "-f", refs, "-e", "customer_id=1", "--full-feature-names", "--json")

    assert table.exit_code == 0, table.output
    for text in ("customer_id", "spend", "plan", "20.0", "premium", "null", "versions: activity v1"):
        assert text in table.output
    assert json.loads(full.output) == {
        "features": {"activity__spend": [20.0], "activity__plan": ["premium"]},
        "versions": {"activity": 1},
    }


def test_keel_features_get_reads_string_keys(cli_project: Path) -> None:
    assert invoke(cli_project, "materialize", "shops").exit_code == 0

    got = features_json(cli_project, "shop_code=42", "shop_code=abc", features="shops:rating")

    assert got["features"] == {"rating": [3.0, None]}


def test_keel_features_get_keeps_string_keys_with_leading_zeros(cli_project: Path) -> None:
    assert invoke(cli_project, "materialize", "shops").exit_code == 0

    assert features_json(cli_project, "shop_code=007", features="shops:rating")["features"] == {"rating": [4.5]}


def test_keel_features_get_refuses_a_malformed_entity(cli_project: Path) -> None:
    result = invoke(cli_project, "features", "get", "-f", "activity:spend", "-e", "customer_id")

    assert isinstance(result.exception, ValidationError)
    assert "--entity 'customer_id': expected key=value" in str(result.exception)


def test_pushed_numpy_values_are_plain_python_online(project: Any) -> None:
    project.push("activity", rows([np.int64(4)], [1], [np.float32(1.5)]))

    got = online(project, [4])
    assert got == {"spend": [1.5], "plan": ["pushed"]}
    assert type(got["spend"][0]) is float
