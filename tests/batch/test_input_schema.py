"""One definition of a valid input, on every path: the prediction service (HTTP), batch scoring
(``predict_batch``, what ``keel predict`` runs), the engines' ``score`` (local and Spark) and the Python API
(``ModelPackage.predict``) accept and refuse the same values, and score the accepted ones alike.

Each case is one value of one feature, sent as a JSON client sends it and written as a typed column holds it
(Parquet): an integer for a string feature, a string for a number, a boolean for an integer, ``inf``, an integer
beyond 64 bits ... A missing value is JSON ``null`` over HTTP and a null or NaN in a column.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from threadpoolctl import threadpool_limits

import keel
from _training_fixtures import build_project, register_churn_versions
from keel.engines import Files
from keel.engines._base import Scoring
from keel.errors import ValidationError
from keel.models import InputValuesError, ModelPackage

MODEL = "churn@champion"
SINCE = datetime(2023, 6, 1, tzinfo=UTC)
#: A valid record: every feature of the model given (nothing is looked up online).
BASE: dict[str, Any] = {
    "spend": 42.5,
    "orders": 3,
    "plan": "pro",
    "active": True,
    "since": SINCE.isoformat(),
    "age": 40,
}
#: The same record as typed columns hold it.
BASE_COLUMNS: dict[str, pa.Array] = {
    "spend": pa.array([42.5]),
    "orders": pa.array([3]),
    "plan": pa.array(["pro"]),
    "active": pa.array([True]),
    "since": pa.array([SINCE], pa.timestamp("us", "UTC")),
    "age": pa.array([40]),
}
ABSENT = object()  # the record or the input lacks the column


@dataclass(frozen=True)
class Case:
    """One value of one column: as JSON sends it, as a typed column holds it, and whether a model takes it."""

    id: str
    column: str
    value: Any  # JSON (json.dumps: inf is written Infinity, which is not JSON); ABSENT: the column is left out
    accepted: bool
    typed: pa.Array | None = field(default=None)  # default: pa.array([value])

    def array(self) -> pa.Array:
        return self.typed if self.typed is not None else pa.array([self.value])


INF = float("inf")
CASES = [
    # float64
    Case("float: a float", "spend", 12.25, True),
    Case("float: an integer", "spend", 12, True),
    Case("float: a huge float", "spend", 1e308, True),
    Case("float: beyond 64 bits", "spend", 2**64, True, pa.array([Decimal(2**64)], pa.decimal128(38, 0))),
    Case("float: missing (null / NaN)", "spend", None, True, pa.array([math.nan])),
    Case("float: a number as text", "spend", "12.5", False),
    Case("float: a boolean", "spend", True, False),
    Case("float: inf", "spend", INF, False),
    Case("float: -inf", "spend", -INF, False),
    Case("float: 'inf' as text", "spend", "inf", False),
    # int64
    Case("int: an integer", "orders", 7, True),
    Case("int: an integral float", "orders", 7.0, True),
    Case("int: the largest 64-bit integer", "age", 2**63 - 1, True),
    Case("int: missing", "age", None, True),
    Case("int: a fraction", "orders", 2.5, False),
    Case("int: a boolean", "orders", True, False),
    Case("int: an integer as text", "orders", "3", False),
    Case("int: 2**63 (beyond 64 bits)", "age", 2**63, False, pa.array([2**63], pa.uint64())),
    Case("int: 2**64 (beyond 64 bits)", "age", 2**64, False, pa.array([Decimal(2**64)], pa.decimal128(38, 0))),
    Case("int: inf", "orders", INF, False),
    # bool
    Case("bool: false", "active", False, True),
    Case("bool: missing", "active", None, True),
    Case("bool: 1", "active", 1, False),
    Case("bool: 0.0", "active", 0.0, False),
    Case("bool: 'true' as text", "active", "true", False),
    # string
    Case("string: a known category", "plan", "team", True),
    Case("string: an unseen category", "plan", "enterprise", True),
    Case("string: digits as text", "plan", "007", True),
    Case("string: missing", "plan", None, True),
    Case("string: an integer", "plan", 7, False),
    Case("string: a float", "plan", 7.5, False),
    Case("string: a boolean", "plan", True, False),
    # timestamp
    Case("timestamp: ISO 8601 text", "since", "2022-02-03T04:05:06Z", True),
    Case(
        "timestamp: a timestamp column",
        "since",
        "2022-02-03T04:05:06+00:00",
        True,
        pa.array([datetime(2022, 2, 3, 4, 5, 6, tzinfo=UTC)], pa.timestamp("us", "UTC")),
    ),
    Case("timestamp: missing", "since", None, True),
    Case("timestamp: not a time", "since", "yesterday", False),
    Case("timestamp: a number", "since", 1700000000, False),
    # columns
    Case("a feature absent", "plan", ABSENT, False),
    Case("a column the model does not read", "unused", "anything", True),
]


# -- the paths ---------------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    accepted: bool
    message: str = ""
    probabilities: list[float] | None = None  # the case row's class probabilities, when accepted


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[keel.Project]:
    """churn@champion: a LogisticRegression on a float, two integers, a string, a boolean and a timestamp."""
    root = tmp_path_factory.mktemp("input-schema") / "project"
    root.mkdir()
    project, labels = build_project(root)
    register_churn_versions(project, labels)
    project.models.set_alias("churn", "champion", 1)
    yield project
    project.close()


@pytest.fixture(scope="module")
def package(project: keel.Project) -> ModelPackage:
    return project.models.load(MODEL)


@pytest.fixture(scope="module")
def client(project: keel.Project) -> Iterator[TestClient]:
    with TestClient(project.prediction_app([MODEL])) as c:
        yield c


def record_of(case: Case) -> dict[str, Any]:
    record = dict(BASE)
    if case.value is ABSENT:
        del record[case.column]
    else:
        record[case.column] = case.value
    return record


def table_of(case: Case) -> pa.Table:
    """Three rows: valid, the case's value, valid (so the refused row is row 1 of the input). In a column whose
    type is not the valid value's, the valid rows are missing values of that type."""
    columns = {name: pa.concat_arrays([a, a, a]) for name, a in BASE_COLUMNS.items()}
    if case.value is ABSENT:
        del columns[case.column]
        return pa.table(columns)
    value = case.array()
    base = BASE_COLUMNS.get(case.column, value)
    kind = base.type if pa.types.is_null(value.type) else value.type
    edge = base if base.type == kind else pa.nulls(1, kind)
    columns[case.column] = pa.concat_arrays([edge, value.cast(kind), edge])
    return pa.table(columns)


def over_http(client: TestClient, case: Case) -> Outcome:
    body = json.dumps({"records": [record_of(case)]})  # inf is written Infinity: not JSON, as a client would send it
    response = client.post("/v1/models/churn/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert 400 <= response.status_code < 500
        return Outcome(False, response.json()["error"]["message"])
    answer = response.json()
    return Outcome(True, probabilities=[answer["probabilities"][0][c] for c in ("0", "1")])


def in_batch(project: keel.Project, case: Case, tmp_path: Path) -> Outcome:
    """``predict_batch`` (``keel predict``): a refused value fails its chunk (the error names its input rows); a
    column of the wrong type fails the run before any row is scored."""
    source = tmp_path / "in.parquet"
    pq.write_table(table_of(case), source)
    try:
        result = project.predict_batch(MODEL, source, tmp_path / "out.parquet", chunk_rows=3)
    except ValidationError as exc:
        return Outcome(False, str(exc))
    if result.failures:
        return Outcome(False, result.failures[0].error)
    out = pd.read_parquet(tmp_path / "out.parquet")
    return Outcome(True, probabilities=out.loc[1, ["proba_0", "proba_1"]].tolist())


def on_local_engine(project: keel.Project, case: Case, tmp_path: Path) -> Outcome:
    """The local engine's ``score`` (what the Spark engine shares: the plan and the package's checks)."""
    source = tmp_path / "engine-in.parquet"
    pq.write_table(table_of(case), source)
    into = tmp_path / "engine-out"
    try:
        project.engine.score(Files((str(source),)), project.models.ref(MODEL), str(into), scoring=Scoring(None, True))
    except ValidationError as exc:
        return Outcome(False, str(exc))
    out = pd.read_parquet(into)
    return Outcome(True, probabilities=out.loc[1, ["proba_0", "proba_1"]].tolist())


def in_python(package: ModelPackage, case: Case) -> Outcome:
    frame = table_of(case).to_pandas()
    try:
        proba = package.predict_proba(frame)
    except ValidationError as exc:
        return Outcome(False, str(exc))
    return Outcome(True, probabilities=proba[1].tolist())


# -- the table ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_http_batch_engine_and_python_accept_and_refuse_alike(
    client: TestClient, project: keel.Project, package: ModelPackage, case: Case, tmp_path: Path
) -> None:
    outcomes = {
        "http": over_http(client, case),
        "batch": in_batch(project, case, tmp_path),
        "engine": on_local_engine(project, case, tmp_path),
        "python": in_python(package, case),
    }

    assert {path: o.accepted for path, o in outcomes.items()} == dict.fromkeys(outcomes, case.accepted), outcomes
    if case.accepted:  # the same value gives the same answer everywhere (invariant 2)
        expected = outcomes["http"].probabilities
        for path, outcome in outcomes.items():
            np.testing.assert_allclose(outcome.probabilities, expected, rtol=0, atol=1e-12, err_msg=path)
    else:  # every refusal names the column
        for path, outcome in outcomes.items():
            assert repr(case.column) in outcome.message or f".{case.column}" in outcome.message, (path, outcome)


def test_a_batch_refusal_names_the_column_how_many_rows_and_a_few_of_them(
    project: keel.Project, package: ModelPackage, tmp_path: Path
) -> None:
    table = pa.table({**{n: pa.array(np.resize(a.to_pylist(), 1000), a.type) for n, a in BASE_COLUMNS.items()}})
    spend = np.full(1000, 42.5)
    bad_rows = [17, 250, 251, 640, 999]
    spend[bad_rows] = [INF, -INF, INF, INF, -INF]
    table = table.set_column(0, "spend", pa.array(spend))
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=300)

    result = project.predict_batch(MODEL, tmp_path / "in.parquet", tmp_path / "out.parquet", chunk_rows=500)

    assert result.rows == 0 and [(f.start_row, f.end_row) for f in result.failures] == [(0, 500), (500, 1000)]
    first, second = (f.error for f in result.failures)
    assert "InputValuesError: model 'churn': column 'spend' (float64): 3 rows hold an infinite value: " in first
    assert "input row 17 (inf), input row 250 (-inf), input row 251 (inf); send a finite number" in first
    assert "2 rows hold an infinite value: input row 640 (inf), input row 999 (-inf);" in second
    # the Python API says the same of a frame, counting its rows from 0
    with pytest.raises(
        InputValuesError, match=r"5 rows hold an infinite value: row 17 \(inf\), row 250 .*, \.\.\."
    ) as e:
        package.predict(table.to_pandas())
    assert (e.value.field, e.value.row, e.value.count) == ("spend", 17, 5)


def test_a_column_of_the_wrong_type_fails_the_run_before_any_chunk_is_scored(
    project: keel.Project, tmp_path: Path
) -> None:
    table = table_of(Case("", "plan", 7, False))
    pq.write_table(table, tmp_path / "in.parquet")

    with pytest.raises(ValidationError, match=r"column 'plan' of parquet input .* holds int64 values, which are not"):
        project.predict_batch(MODEL, tmp_path / "in.parquet", tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_a_csv_input_is_text_read_as_the_models_types(project: keel.Project, tmp_path: Path) -> None:
    """A CSV file has no types: a string feature of digits stays text (leading zeros too) and is accepted, as
    ``"007"`` is over HTTP; a number column holding words is refused, naming the column."""
    frame = table_of(Case("", "plan", "007", True)).to_pandas()
    frame.to_csv(tmp_path / "in.csv", index=False)

    result = project.predict_batch(MODEL, tmp_path / "in.csv", tmp_path / "out.parquet")
    assert result.ok and result.rows == 3

    frame.assign(spend=["12.5", "twelve", "13"]).to_csv(tmp_path / "words.csv", index=False)
    with pytest.raises(ValidationError, match=r"column 'spend' of csv input .* holds string values, which are not"):
        project.predict_batch(MODEL, tmp_path / "words.csv", tmp_path / "words.parquet")


SPARK_CASES = [c for c in CASES if c.id in ("float: a float", "float: inf", "string: an integer")]


@pytest.mark.parametrize("case", SPARK_CASES, ids=[c.id for c in SPARK_CASES])
def test_the_spark_engine_accepts_and_refuses_as_the_service_does(
    spark_engine: Any, client: TestClient, project: keel.Project, case: Case, tmp_path: Path
) -> None:
    source = tmp_path / "in.parquet"
    table = table_of(case)
    pq.write_table(table.append_column("row", pa.array(range(table.num_rows))), source)  # Spark keeps no order
    try:
        spark_engine.score(
            Files((str(source),)), project.models.ref(MODEL), str(tmp_path / "out"), scoring=Scoring("row", True)
        )
        out = pd.read_parquet(tmp_path / "out").sort_values("row")
        spark = Outcome(True, probabilities=out.iloc[1][["proba_0", "proba_1"]].tolist())
    except ValidationError as exc:
        spark = Outcome(False, str(exc))
    http = over_http(client, case)

    assert spark.accepted is http.accepted is case.accepted
    if case.accepted:
        np.testing.assert_allclose(spark.probabilities, http.probabilities, rtol=0, atol=1e-12)
    else:
        assert f"column {case.column!r}" in spark.message
