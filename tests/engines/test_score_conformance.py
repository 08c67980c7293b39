"""Scoring on both engines: the package's own numbers bit for bit, the same columns, the same refusals.

The local engine's ``score`` (:func:`keel.engines._local_score.score_files`) and the Spark engine's
(:func:`keel.engines._spark_score.score_frame`) score the same Parquet input with packages trained by Keel (a
HistGradientBoosting classifier over numbers with nulls, a string category, a boolean and a timestamp; a
regressor; a classifier of string labels; a model on on-demand features), and must give exactly what
``ModelPackage.score`` gives on the same rows read with pandas.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _score_workers import LoggedRef
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from _training_fixtures import activity_frame, activity_view, in_memory_services, labels_frame, profile_frame
from keel import Field, RequestSource, on_demand_feature_view
from keel.artifacts import ArtifactStore
from keel.batch import PROBA_PREFIX
from keel.engines._base import Files, PackageSource, Scoring, Written
from keel.engines._local_score import score_files
from keel.engines._scoring import PREDICTION
from keel.engines._scoring import PROBA_PREFIX as ENGINE_PROBA_PREFIX
from keel.errors import IntegrityError, ValidationError
from keel.models import InputSchema, ModelPackage, PackageRef, dumps
from keel.training import TrainingSpec
from keel.training._preprocessing import auto_preprocessor

ROWS = 400
ENGINES = ["local", pytest.param("spark", marks=pytest.mark.spark)]

cart = RequestSource("cart", schema=[Field("cart_value", "float64")])


@on_demand_feature_view(
    sources=[activity_view(), cart],
    inputs=["activity:spend", "activity:orders"],
    schema=[Field("spend_per_order", "float64"), Field("cart_to_spend", "float64")],
)
def basket(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {"spend_per_order": df["spend"] / df["orders"].clip(lower=1), "cart_to_spend": df["cart_value"] / df["spend"]}
    )


# -- what is scored ----------------------------------------------------------------------------------------------
ACTIVITY = ["spend", "orders", "plan", "active", "since"]


@dataclass(frozen=True)
class Trained:
    """Registered models, and a Parquet input holding their features (with plans unseen in training, missing
    plans and missing spends)."""

    registry: Any
    store: ArtifactStore
    input: Path

    def ref(self, model: str) -> PackageRef:
        """The model's package in an artifact store on disk: every worker reads it there."""
        carried = self.registry.ref(model)  # the registry's store is in memory: the reference carries the bytes
        digest = self.store.put_bytes(carried.read_bytes())
        return replace(carried, blob=None, artifacts_uri=self.store.uri, digest=digest)


def customers(n: int, seed: int) -> pd.DataFrame:
    """Every feature of ``n`` customers: activity, profile, and the on-demand ``basket`` outputs."""
    frame = activity_frame(n, seed=seed).drop(columns=["event_time"])
    frame = frame.merge(profile_frame(n, seed=seed + 1).drop(columns=["event_time"]), on="customer_id")
    frame["cart_value"] = np.random.default_rng(seed).uniform(1, 100, n)
    return pd.concat([frame, basket(frame)], axis=1)  # the view's own function computes its outputs


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """``churn`` (HGB classifier, Keel's preprocessing: ordinal codes for ``plan``), ``amount`` (HGB regressor)
    and ``basket`` (a classifier on the on-demand view's outputs), trained by Keel and registered."""
    features = customers(ROWS, seed=0)
    services = in_memory_services(features)
    labels = labels_frame(activity_frame(ROWS))
    specs = [
        ("churn", "churned", [*(f"activity:{c}" for c in ACTIVITY), "profile:age"], HistGradientBoostingClassifier),
        ("amount", "amount", [*(f"activity:{c}" for c in ACTIVITY), "profile:age"], HistGradientBoostingRegressor),
        (
            "basket",
            "churned",
            ["activity:plan", "basket:spend_per_order", "basket:cart_to_spend"],
            HistGradientBoostingClassifier,
        ),
    ]
    with threadpool_limits(1):
        for name, label, refs, model in specs:
            spec = TrainingSpec(
                name, labels=labels[["customer_id", "ts", label]], label=label, features=refs, model=model(max_iter=30)
            )
            services.registry.register(services.train(spec))
    source = customers(ROWS, seed=7)
    source.loc[source.index[::37], "plan"] = "enterprise"  # a category training never saw
    source.loc[source.index[::41], "plan"] = None
    folder = tmp_path_factory.mktemp("score")
    pq.write_table(pa.Table.from_pandas(source, preserve_index=False), folder / "customers.parquet")
    return Trained(services.registry, ArtifactStore(folder / "artifacts"), folder / "customers.parquet")


def blob_ref(package: ModelPackage) -> PackageRef:
    """A reference carrying the package's bytes (as for a ``memory://`` artifact store)."""
    blob, fmt = dumps(package)
    return PackageRef(name=package.name, version=None, digest=hashlib.sha256(blob).hexdigest(), format=fmt, blob=blob)


@pytest.fixture(scope="module")
def grades() -> tuple[PackageRef, pd.DataFrame]:
    """A classifier of string labels (``low``/``mid``/``high``) with Keel's preprocessing, and rows to score."""
    rng = np.random.default_rng(11)
    frame = pd.DataFrame(
        {"id": [f"row-{i}" for i in range(300)], "x": rng.normal(0, 1, 300), "kind": rng.choice(["a", "b", "c"], 300)}
    )
    y = np.where(frame["x"] > 0.5, "high", np.where(frame["x"] < -0.5, "low", "mid"))
    dtypes = {"x": "float64", "kind": "string"}
    pre = auto_preprocessor(dtypes, HistGradientBoostingClassifier())
    with threadpool_limits(1):
        estimator = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(pre.fit_transform(frame), y)
    package = ModelPackage(
        name="grades",
        task="classification",
        label="grade",
        estimator=estimator,
        preprocessor=pre,
        schema=InputSchema.infer(frame, dtypes),
        feature_refs=["v@1:x", "v@1:kind"],
        classes=[str(c) for c in estimator.classes_],
    )
    return blob_ref(package), frame


# -- the two engines -----------------------------------------------------------------------------------------------
Score = Callable[..., tuple[Written, pd.DataFrame]]


@pytest.fixture
def spark(request: pytest.FixtureRequest) -> Any:
    """The Spark session (skipped, with the reason, without pyspark or Java)."""
    return request.getfixturevalue("spark_session")


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def score(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> Score:
    """``score(input, package, scoring)``: the engine's score of a Parquet file, and its output read back."""
    folders = (tmp_path / f"scored-{i}" for i in itertools.count())
    session = request.getfixturevalue("spark_session") if engine == "spark" else None

    def run(source: Path | pa.Table, package: PackageSource, scoring: Scoring, **options: Any) -> Any:
        into = str(options.pop("into", None) or next(folders))
        if isinstance(source, pa.Table):  # written to a file for Spark to read
            path = tmp_path / f"input-{next(folders).name}.parquet"
            pq.write_table(source, path)
            source = path
        if session is None:
            written = score_files(Files((str(source),)), package, into, scoring, **options)
        else:
            from keel.engines._spark_score import score_frame

            frame = session.read.parquet(str(source))
            written = score_frame(session, frame, package, into, scoring, **options)
        assert isinstance(written, Written)
        parts = [pq.read_table(uri) for uri in written.uris()]
        return written, pa.concat_tables(parts).to_pandas() if parts else pd.DataFrame()

    return run


def in_input_order(out: pd.DataFrame, source: pd.DataFrame, id_column: str) -> pd.DataFrame:
    """The output's rows in the input's order (Spark keeps none), by their ids."""
    assert out[id_column].is_unique
    return out.set_index(id_column).loc[source[id_column]].reset_index()


def assert_files_listed(written: Written) -> None:
    """Every data file, its rows and its digest; Spark's markers and checksums are not data."""
    folder = Path(written.folder)
    on_disk = sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(("_", ".")) for part in p.relative_to(folder).parts)
    )
    assert sorted(f.path for f in written.files) == on_disk
    for f in written.files:
        assert hashlib.sha256((folder / f.path).read_bytes()).hexdigest() == f.sha256
        assert pq.ParquetFile(folder / f.path).metadata.num_rows == f.rows
        assert not f.path.startswith("_")


# -- the package's numbers, bit for bit --------------------------------------------------------------------------
def test_predictions_and_probabilities_are_the_packages_bit_for_bit(trained: Trained, score: Score) -> None:
    ref = trained.ref("churn@latest")
    source = pd.read_parquet(trained.input)
    expected = ref.load().score(source)

    written, out = score(trained.input, ref, Scoring(id_column="customer_id", probabilities=True))

    assert written.rows == len(source) == len(out)
    assert_files_listed(written)
    out = in_input_order(out, source, "customer_id")
    assert list(out.columns) == ["customer_id", PREDICTION, f"{PROBA_PREFIX}0", f"{PROBA_PREFIX}1"]
    assert out[PREDICTION].dtype == expected.predictions.dtype
    assert np.array_equal(out[PREDICTION].to_numpy(), expected.predictions)
    assert expected.probabilities is not None
    for i in range(2):  # exact equality: the same floats, not close ones
        assert out[f"{PROBA_PREFIX}{i}"].to_numpy().tobytes() == expected.probabilities[:, i].tobytes()


def test_predictions_only_when_probabilities_are_not_asked(trained: Trained, score: Score) -> None:
    ref = trained.ref("churn@latest")
    source = pd.read_parquet(trained.input)

    _, out = score(trained.input, ref, Scoring(id_column="customer_id"))

    assert list(out.columns) == ["customer_id", PREDICTION]
    out = in_input_order(out, source, "customer_id")
    assert np.array_equal(out[PREDICTION].to_numpy(), ref.load().predict(source))


def test_a_regressor_gives_its_floats_and_no_probabilities(trained: Trained, score: Score) -> None:
    ref = trained.ref("amount@latest")
    source = pd.read_parquet(trained.input)

    _, out = score(trained.input, ref, Scoring(id_column="customer_id", probabilities=True))

    assert list(out.columns) == ["customer_id", PREDICTION]
    out = in_input_order(out, source, "customer_id")
    assert out[PREDICTION].to_numpy().tobytes() == ref.load().predict(source).astype(np.float64).tobytes()


def test_string_labels_are_predicted_as_strings(grades: tuple[PackageRef, pd.DataFrame], score: Score) -> None:
    ref, frame = grades
    expected = ref.load().score(frame)
    assert expected.probabilities is not None

    _, out = score(pa.Table.from_pandas(frame, preserve_index=False), ref, Scoring(id_column="id", probabilities=True))

    out = in_input_order(out, frame, "id")
    assert list(out.columns) == ["id", PREDICTION, *(f"{PROBA_PREFIX}{c}" for c in ["high", "low", "mid"])]
    assert out[PREDICTION].tolist() == expected.predictions.tolist()
    assert out[f"{PROBA_PREFIX}mid"].to_numpy().tobytes() == expected.probabilities[:, 2].tobytes()


def test_a_model_on_on_demand_features_scores_their_computed_columns_identically(
    trained: Trained, score: Score
) -> None:
    ref = trained.ref("basket@latest")
    package = ref.load()
    assert {"spend_per_order", "cart_to_spend"} <= set(package.feature_names)
    source = pd.read_parquet(trained.input)
    expected = package.score(source)
    assert expected.probabilities is not None

    _, out = score(trained.input, ref, Scoring(id_column="customer_id", probabilities=True, request=("cart_value",)))

    out = in_input_order(out, source, "customer_id")
    assert np.array_equal(out[PREDICTION].to_numpy(), expected.predictions)
    assert out[f"{PROBA_PREFIX}1"].to_numpy().tobytes() == expected.probabilities[:, 1].tobytes()


def test_on_demand_features_are_computed_from_the_inputs_by_the_views_own_function(
    trained: Trained, score: Score, tmp_path: Path
) -> None:
    from keel.features._on_demand_plan import scoring_steps

    ref = trained.ref("basket@latest")
    package = ref.load()
    source = pd.read_parquet(trained.input)
    expected = package.score(source)  # the input's basket columns were computed by basket's function
    raw = tmp_path / "raw.parquet"
    source.drop(columns=["spend_per_order", "cart_to_spend"]).to_parquet(raw, index=False)
    activity = {f.name: f.dtype for f in activity_view().schema}
    steps = scoring_steps(
        package.feature_refs,
        package.feature_names,
        lambda name: basket if name == "basket" else None,
        lambda view: activity,
    )
    assert [step.view.name for step in steps] == ["basket"]

    _, out = score(raw, ref, Scoring(id_column="customer_id", probabilities=True, on_demand=steps))

    out = in_input_order(out, source, "customer_id")
    assert np.array_equal(out[PREDICTION].to_numpy(), expected.predictions)
    assert out[f"{PROBA_PREFIX}1"].to_numpy().tobytes() == expected.probabilities[:, 1].tobytes()
    narrow = tmp_path / "narrow.parquet"
    source.drop(columns=["spend_per_order", "cart_to_spend", "cart_value"]).to_parquet(narrow, index=False)
    with pytest.raises(ValidationError, match=r"request field of on-demand feature view 'basket' 'cart_value'"):
        score(narrow, ref, Scoring(on_demand=steps))


@pytest.mark.spark
def test_spark_workers_run_an_on_demand_function_of_a_module_they_cannot_import(
    trained: Trained, spark_session: Any, tmp_path: Path
) -> None:
    # Keel imports a project's modules from its folder only while it reads the definitions: a worker process
    # could not import them, so their functions travel by value.
    import importlib
    import textwrap

    from keel.engines._spark_score import score_frame
    from keel.features._on_demand_plan import scoring_steps

    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "shop_definitions_only_here.py").write_text(
        textwrap.dedent(
            """
            import pandas as pd
            from keel import Field, RequestSource, on_demand_feature_view
            from _training_fixtures import activity_view

            cart = RequestSource("cart", schema=[Field("cart_value", "float64")])


            @on_demand_feature_view(
                sources=[activity_view(), cart],
                inputs=["activity:spend", "activity:orders"],
                schema=[Field("spend_per_order", "float64"), Field("cart_to_spend", "float64")],
            )
            def basket(df: pd.DataFrame) -> pd.DataFrame:
                ratio = df["spend"] / df["orders"].clip(lower=1)
                return pd.DataFrame({"spend_per_order": ratio, "cart_to_spend": df["cart_value"] / df["spend"]})
            """
        )
    )
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module("shop_definitions_only_here")
    finally:
        sys.path.remove(str(folder))
    ref = trained.ref("basket@latest")
    package = ref.load()
    source = pd.read_parquet(trained.input)
    activity = {f.name: f.dtype for f in activity_view().schema}
    steps = scoring_steps(
        package.feature_refs,
        package.feature_names,
        lambda n: module.basket if n == "basket" else None,
        lambda v: activity,
    )
    frame = spark_session.read.parquet(str(trained.input)).drop("spend_per_order", "cart_to_spend")

    scored = score_frame(spark_session, frame, ref, None, Scoring(id_column="customer_id", on_demand=steps))
    out = scored.toArrow().to_pandas()

    expected = package.score(source)
    out = in_input_order(out, source, "customer_id")
    assert np.array_equal(out[PREDICTION].to_numpy(), expected.predictions)


def test_without_an_id_column_the_output_is_the_predictions(trained: Trained, score: Score) -> None:
    ref = trained.ref("churn@latest")

    written, out = score(trained.input, ref, Scoring())

    assert list(out.columns) == [PREDICTION] and written.rows == ROWS
    assert sorted(out[PREDICTION].tolist()) == sorted(ref.load().predict(pd.read_parquet(trained.input)).tolist())


def test_the_local_engine_keeps_the_input_order_in_bounded_batches(trained: Trained, tmp_path: Path) -> None:
    ref = trained.ref("churn@latest")
    source = pd.read_parquet(trained.input)
    into = str(tmp_path / "out")

    written = score_files(Files((str(trained.input),)), ref, into, Scoring("customer_id"), batch_rows=7)

    out = pq.read_table(written.uris()[0])
    assert [f.path for f in written.files] == ["part-0.parquet"]
    assert out.column("customer_id").to_pylist() == source["customer_id"].tolist()
    assert out.column(PREDICTION).to_numpy().tobytes() == ref.load().predict(source).tobytes()
    assert pq.ParquetFile(written.uris()[0]).metadata.row_group(0).num_rows <= 7


def test_the_engines_use_the_batch_scorers_column_names() -> None:
    assert ENGINE_PROBA_PREFIX == PROBA_PREFIX


# -- refusals, before any row is scored -------------------------------------------------------------------------
def test_a_missing_feature_column_is_the_packages_own_error(trained: Trained, score: Score) -> None:
    ref = trained.ref("churn@latest")
    source = pd.read_parquet(trained.input).drop(columns=["spend"])
    with pytest.raises(ValidationError) as local:
        ref.load().predict(source)

    with pytest.raises(ValidationError) as raised:
        score(pa.Table.from_pandas(source, preserve_index=False), ref, Scoring(id_column="customer_id"))

    assert str(raised.value) == str(local.value) and "'spend'" in str(raised.value)
    assert raised.value.field == "spend"


def test_a_feature_column_of_lists_is_refused_before_any_row_is_scored(trained: Trained, score: Score) -> None:
    table = pq.read_table(trained.input)
    spend = pa.array([[v] for v in table.column("spend").to_pylist()], pa.list_(pa.float64()))
    table = table.set_column(table.schema.get_field_index("spend"), "spend", spend)

    with pytest.raises(ValidationError, match=r"column 'spend' .* holds list<.*> values, which are not float64") as e:
        score(table, trained.ref("churn@latest"), Scoring(id_column="customer_id"))

    assert e.value.field == "spend"


def test_a_missing_id_column_is_named(trained: Trained, score: Score) -> None:
    with pytest.raises(ValidationError, match="no id column 'client'") as raised:
        score(trained.input, trained.ref("churn@latest"), Scoring(id_column="client"))

    assert raised.value.field == "client"


def test_a_value_the_package_refuses_is_its_error_naming_the_row(trained: Trained, score: Score) -> None:
    ref = trained.ref("churn@latest")
    source = pd.read_parquet(trained.input)
    source["orders"] = source["orders"].astype("float64")
    source.loc[5, "orders"] = 2.5  # not an integer
    with pytest.raises(ValidationError) as local:
        ref.load().predict(source)

    with pytest.raises(ValidationError) as raised:
        score(pa.Table.from_pandas(source, preserve_index=False), ref, Scoring(id_column="customer_id"))

    refused = "model 'churn': column 'orders' (int64): 1 row holds a value that is not an integer: "
    assert str(local.value).startswith(refused + "row 5 (2.5)")
    assert str(raised.value).startswith(refused)  # the package's message, naming the row as the engine knows it
    assert f"[customer_id={source.loc[5, 'customer_id']}] (2.5)" in str(raised.value)
    assert raised.value.field == "orders"


def test_a_column_of_a_type_that_cannot_hold_its_feature_is_refused_before_any_row_is_scored(
    trained: Trained, score: Score
) -> None:
    source = pd.read_parquet(trained.input)
    source["plan"] = np.arange(len(source))  # integers for a string feature

    with pytest.raises(
        ValidationError, match=r"column 'plan' of .* holds int64 values, which are not string"
    ) as raised:
        score(pa.Table.from_pandas(source, preserve_index=False), trained.ref("churn@latest"), Scoring())
    assert raised.value.field == "plan"


def test_an_output_folder_holding_files_is_refused(trained: Trained, score: Score, tmp_path: Path) -> None:
    into = tmp_path / "taken"
    into.mkdir()
    (into / "old.parquet").write_bytes(b"")

    with pytest.raises(ValidationError, match="not an empty folder"):
        score(trained.input, trained.ref("churn@latest"), Scoring(), into=into)


@pytest.mark.parametrize("tamper", ["wrong digest", "altered bytes"])
def test_a_tampered_package_is_refused(trained: Trained, score: Score, engine: str, tamper: str) -> None:
    # a package of its own, never loaded in this process (a loaded one is known by its digest and not read again)
    package = replace(trained.ref("churn@latest").load(), name=f"churn-{engine}-{tamper.replace(' ', '-')}")
    good = blob_ref(package)
    assert good.blob is not None
    if tamper == "wrong digest":
        bad = replace(good, digest=hashlib.sha256(b"another package").hexdigest())
    else:
        bad = replace(good, blob=good.blob[:-1] + bytes([good.blob[-1] ^ 1]))

    with pytest.raises(IntegrityError, match="refused"):
        score(trained.input, bad, Scoring(id_column="customer_id"))


# -- Spark: workers load the package once and verify it themselves --------------------------------------------------
@pytest.mark.spark
def test_each_spark_worker_loads_the_package_once_across_its_tasks(
    trained: Trained,
    spark: Any,
    tmp_path: Path,
) -> None:
    from keel.engines._spark_score import score_frame

    log = tmp_path / "loads.log"
    ref = LoggedRef(trained.ref("churn@latest"), str(log))
    frame = spark.read.parquet(str(trained.input)).repartition(8)  # eight tasks for two worker processes
    assert spark.sparkContext.getConf().get("spark.python.worker.reuse", "true") == "true"

    written = score_frame(spark, frame, ref, str(tmp_path / "out"), Scoring("customer_id"))

    assert isinstance(written, Written) and written.rows == ROWS
    lines = [line.split() for line in log.read_text().splitlines()]
    workers = [(pid, package) for pid, package in lines if int(pid) != os.getpid()]  # the driver loads it too
    assert len(workers) == 8  # one load per task
    pids = {pid for pid, _ in workers}
    assert len(pids) < 8  # tasks shared worker processes
    for pid in pids:  # each process deserialized it once: every load there gave the same object
        assert len({package for p, package in workers if p == pid}) == 1


@pytest.mark.spark
def test_spark_workers_verify_the_package_themselves(
    tmp_path: Path,
    spark: Any,
    grades: tuple[PackageRef, pd.DataFrame],
) -> None:
    """The driver holds a verified copy; the store's file is altered afterwards: the workers refuse it."""
    from keel.engines._spark_score import score_frame

    ref, frame = grades
    # a package of its own (another name changes its bytes): no worker process has loaded it yet
    other = replace(ref.load(), name="grades-tampered")
    blob, fmt = dumps(other)
    store = ArtifactStore(tmp_path / "artifacts")
    digest = store.put_bytes(blob)
    stored = PackageRef(name="grades-tampered", version=1, digest=digest, format=fmt, artifacts_uri=store.uri)
    stored.load()  # the driver's copy, verified and kept
    Path(store.path(digest)).write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))  # changed behind the catalog's back
    source = spark.createDataFrame(frame)

    with pytest.raises(IntegrityError, match=digest):
        score_frame(spark, source, stored, str(tmp_path / "out"), Scoring(id_column="id"))


@pytest.mark.spark
def test_without_a_folder_spark_returns_the_scored_frame(
    trained: Trained,
    spark: Any,
) -> None:
    from keel.engines._spark_score import score_frame

    ref = trained.ref("churn@latest")
    frame = spark.read.parquet(str(trained.input))

    out = score_frame(spark, frame, ref, None, Scoring("customer_id", probabilities=True))

    assert not isinstance(out, Written)
    assert out.columns == ["customer_id", PREDICTION, f"{PROBA_PREFIX}0", f"{PROBA_PREFIX}1"]
    assert out.count() == ROWS


@pytest.mark.spark
def test_both_engines_write_the_same_schema_and_rows(
    trained: Trained,
    spark: Any,
    tmp_path: Path,
) -> None:
    from keel.engines._spark_score import score_frame

    ref = trained.ref("churn@latest")
    scoring = Scoring("customer_id", probabilities=True)
    local = score_files(Files((str(trained.input),)), ref, str(tmp_path / "local"), scoring)
    frame = spark.read.parquet(str(trained.input))
    remote = score_frame(spark, frame, ref, str(tmp_path / "spark"), scoring)
    assert isinstance(remote, Written)

    mine = pq.read_table(local.uris()[0])
    theirs = pa.concat_tables([pq.read_table(u) for u in remote.uris()]).sort_by("customer_id")

    assert [(f.name, f.type) for f in theirs.schema] == [(f.name, f.type) for f in mine.schema]
    assert theirs.equals(mine.sort_by("customer_id"))


def test_the_local_engine_loads_the_package_once(trained: Trained, tmp_path: Path) -> None:
    log = tmp_path / "loads.log"
    ref = LoggedRef(trained.ref("churn@latest"), str(log))

    score_files(Files((str(trained.input),)), ref, str(tmp_path / "out"), Scoring(), batch_rows=50)

    assert len(log.read_text().splitlines()) == 1
