"""Spark scoring benchmark: the Spark engine's ``score`` (``score_frame``) against a hand-written ``mapInPandas``.

Model (seeded, fitted once per run, not timed): a ``HistGradientBoostingClassifier(max_iter=100)`` on 100,000
rows of 20 float features, behind Keel's automatic preprocessing (a median imputer: tree models are not scaled),
packaged as Keel packages it; the reference carries the package's bytes.

Input (seeded, generated once into ``bench/.data/``): a Parquet file of 1,000,000 rows (``--quick``: 100,000)
x 20 float features and an ``id``, in row groups of 100,000 rows. No nulls: the imputer then passes every
value through, so the bare estimator's predictions are the package's and the two sides can be compared row by
row.

Spark: ``local[2]`` (the machine's two cores), UTC, the UI off, Spark's default Arrow batches (10,000 rows).

Workloads (one JSON line each; the sides alternate, each run writes a fresh output folder):

``spark.score.predictions``
    ``score_frame(spark, frame, package_ref, folder, Scoring(id_column="id"))``: the package loaded and verified
    on the driver and once per Python worker, each of Spark's Arrow batches scored as it comes, ``id`` and
    ``prediction`` written as Parquet and every file's SHA-256 read back, all timed; against
    ``frame.mapInPandas(f).write.parquet(folder)`` where ``f`` unpickles the bare estimator once per partition
    and calls ``estimator.predict(pdf[features].to_numpy())`` on each pandas batch. Throughput ratio = Keel's
    rows/s over the baseline's (``ratio_is``; higher is better for Keel). Besides wall times, each side reports
    ``cpu_s``: the CPU seconds its runs cost the whole process tree (driver, JVM, Python workers; median), a
    steadier figure than wall time on a shared machine. Checks: the two outputs hold the same ids with the same
    predictions.
``spark.score.probabilities``
    The same with ``probabilities=True`` against a baseline that also calls ``predict_proba`` (two walks of the
    trees where the package walks them once for both).
``spark.score.batch_rows.<n>``
    Keel's predictions with Spark's batches gathered into calls of 50,000 / 100,000 rows (``batch_rows``)
    against the same baseline: what showed that gathering gains nothing for this model.

Run ``python bench/spark_score.py`` (a few minutes) or ``python bench/spark_score.py --quick`` (under a minute
after Spark starts).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import shutil
import statistics
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

SEED = 20240117
FEATURES = [f"f{i}" for i in range(20)]
FULL = {"rows": 1_000_000, "train_rows": 100_000}
QUICK = {"rows": 100_000, "train_rows": 20_000}
ROW_GROUP = 100_000


def input_file(rows: int) -> Path:
    """The seeded input of ``rows`` rows (generated once)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = common.DATA_DIR / f"spark_score_{rows}.parquet"
    if not path.exists():
        common.log(f"generating {path.name}")
        rng = np.random.default_rng(SEED)
        columns = {"id": pa.array(np.arange(rows, dtype=np.int64))}
        columns.update({name: pa.array(rng.normal(size=rows)) for name in FEATURES})
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), path, row_group_size=ROW_GROUP)
    return path


def package_ref(train_rows: int) -> tuple[Any, bytes]:
    """The package's reference (carrying its bytes) and the bare estimator, pickled."""
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier

    from keel.models import InputSchema, ModelPackage, PackageRef, dumps
    from keel.training._preprocessing import auto_preprocessor

    rng = np.random.default_rng(SEED + 1)
    frame = pd.DataFrame(rng.normal(size=(train_rows, len(FEATURES))), columns=FEATURES)
    y = (frame[FEATURES[:5]].sum(axis=1) + rng.normal(0, 1, train_rows) > 0).astype(np.int64)
    dtypes = dict.fromkeys(FEATURES, "float64")
    pre = auto_preprocessor(dtypes, HistGradientBoostingClassifier())
    estimator = HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=0)
    estimator.fit(pre.fit_transform(frame), y)
    package = ModelPackage(
        name="bench",
        task="classification",
        label="y",
        estimator=estimator,
        preprocessor=pre,
        schema=InputSchema.infer(frame, dtypes),
        feature_refs=[f"v@1:{c}" for c in FEATURES],
        classes=[0, 1],
    )
    blob, fmt = dumps(package)
    ref = PackageRef(name="bench", version=1, digest=hashlib.sha256(blob).hexdigest(), format=fmt, blob=blob)
    return ref, pickle.dumps(estimator)


def start_spark() -> Any:
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    src = str(common.REPO_DIR / "src")  # the workers import the Keel being measured
    os.environ["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("keel-bench-spark-score")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "2g")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def baseline_writer(spark: Any, frame: Any, estimator: bytes, *, probabilities: bool) -> Any:
    """``folder -> None``: the hand-written ``mapInPandas`` with the bare estimator, written as Parquet."""
    from pyspark.sql.types import DoubleType, LongType, StructField, StructType

    fields = [StructField("id", LongType()), StructField("prediction", LongType())]
    if probabilities:
        fields += [StructField("proba_0", DoubleType()), StructField("proba_1", DoubleType())]
    features = list(FEATURES)

    def predict(batches: Any) -> Any:
        import pickle

        import pandas as pd

        model = pickle.loads(estimator)
        for pdf in batches:
            x = pdf[features].to_numpy()
            out = {"id": pdf["id"], "prediction": model.predict(x)}
            if probabilities:
                proba = model.predict_proba(x)
                out.update(proba_0=proba[:, 0], proba_1=proba[:, 1])
            yield pd.DataFrame(out)

    scored = frame.mapInPandas(predict, StructType(fields))

    def write(folder: str) -> None:
        scored.write.parquet(folder)

    return write


@contextlib.contextmanager
def tree_cpu(into: list[float]) -> Iterator[None]:
    """Append the CPU seconds this process and its descendants (the JVM, Spark's Python workers) spend in the
    block to ``into`` (processes that end inside the block are not counted: Spark keeps its workers)."""
    import psutil

    def total() -> float:
        me = psutil.Process()
        seconds = 0.0
        for process in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                seconds += times.user + times.system
        return seconds

    before = total()
    yield
    into.append(total() - before)


def median_cpu(seconds: list[float], runs: int) -> float | None:
    """The median CPU seconds of the ``runs`` timed runs (the warm-up runs come first and are left out)."""
    timed = seconds[-runs:]
    return common.round6(statistics.median(timed)) if timed else None


def figures(timing: common.Timing, rows: int) -> dict[str, Any]:
    return {**timing.as_json(), "rows_per_s": round(rows / timing.median_s)}


def identical(keel_folder: str, raw_folder: str) -> bool:
    import pyarrow.parquet as pq

    mine = pq.read_table(keel_folder).sort_by("id")
    theirs = pq.read_table(raw_folder).sort_by("id")
    return bool(mine.select(theirs.column_names).equals(theirs))


def bench_workload(
    name: str,
    spark: Any,
    frame: Any,
    ref: Any,
    estimator: bytes,
    fresh: Callable[[], str],
    args: Any,
    probabilities: bool,
    batch_rows: int | None,
    rows: int,
) -> dict[str, Any]:
    """One workload's result line: Keel's ``score_frame`` and the raw ``mapInPandas`` in alternation."""
    from keel.engines._base import Scoring
    from keel.engines._spark_score import score_frame

    scoring = Scoring(id_column="id", probabilities=probabilities)
    raw = baseline_writer(spark, frame, estimator, probabilities=probabilities)
    last: dict[str, str] = {}
    cpu: dict[str, list[float]] = {"keel": [], "raw": []}

    def keel_side(folder: str) -> None:
        last["keel"] = folder
        with tree_cpu(cpu["keel"]):
            score_frame(spark, frame, ref, folder, scoring, batch_rows=batch_rows)

    def raw_side(folder: str) -> None:
        last["raw"] = folder
        with tree_cpu(cpu["raw"]):
            raw(folder)

    timings = common.interleaved_with_setup(
        {"keel": (fresh, keel_side), "raw": (fresh, raw_side)}, runs=args.runs, warmup=args.warmup
    )
    keel_t, raw_t = timings["keel"], timings["raw"]
    baseline = "mapInPandas + bare estimator " + ("predict + predict_proba" if probabilities else "predict")
    return common.result(
        name,
        params={"rows": rows, "features": len(FEATURES), "batch_rows": batch_rows, "master": "local[2]"},
        keel={**figures(keel_t, rows), "cpu_s": median_cpu(cpu["keel"], args.runs)},
        baseline_name=baseline,
        baseline={**figures(raw_t, rows), "cpu_s": median_cpu(cpu["raw"], args.runs)},
        ratio_max=None,
        ratio=raw_t.median_s / keel_t.median_s,
        ratio_is="keel rows/s / baseline rows/s",
        checks={"rows": rows, "predictions_identical": identical(last["keel"], last["raw"])},
    )


def main(argv: list[str] | None = None) -> None:
    args = common.parse_args(common.parser(__doc__.splitlines()[0], runs=5), argv)
    try:
        import pyspark  # noqa: F401
    except ImportError:
        common.log("pyspark is not installed (pip install 'keel[spark]'): nothing to measure")
        return
    sizes = QUICK if args.quick else FULL
    rows = sizes["rows"]
    path = input_file(rows)
    common.log("fitting the model")
    ref, estimator = package_ref(sizes["train_rows"])
    common.log("starting Spark")
    spark = start_spark()
    frame = spark.read.parquet(str(path))
    scratch = Path(tempfile.mkdtemp(prefix="keel-bench-spark-score-"))
    folders = iter(range(10**6))

    def fresh() -> str:
        return str(scratch / f"out-{next(folders)}")

    workloads: list[tuple[str, bool, int | None]] = [
        ("spark.score.predictions", False, None),
        ("spark.score.probabilities", True, None),
        *((f"spark.score.batch_rows.{n // 1000}k", False, n) for n in (50_000, 100_000)),
    ]
    try:
        for name, probabilities, batch_rows in workloads:
            if not common.selected(args, name):
                continue
            common.log(f"{name}: {rows:,} rows")
            line = bench_workload(name, spark, frame, ref, estimator, fresh, args, probabilities, batch_rows, rows)
            common.emit(line, args)
            for child in scratch.iterdir():
                shutil.rmtree(child, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        spark.stop()


if __name__ == "__main__":
    main()
