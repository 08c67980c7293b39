"""Model registry benchmark: a tracked run + package + register, a load by alias, and concurrent registration.

Model (seeded, fitted once per run, not timed): ``HistGradientBoostingClassifier(max_iter=100,
early_stopping=False)`` on 20,000 rows of 20 float features (a few nulls), behind Keel's automatic
preprocessing (median imputation), as ``project.train`` would package it.

Workloads (one JSON line each):

``registry.run_register``
    Everything ``train()`` does after the fit: ``catalog.start_run``, ``models._serialization.dumps`` of the
    package (the ``keel`` format, checked by a load and a re-encode), ``artifacts.put_bytes`` (SHA-256,
    temporary file, fsync, rename), ``catalog.finish_run`` and ``project.models.register`` (run lookup, artifact check,
    ``catalog.add_model_version``), against ``joblib.dump`` of the same estimator to a file. Target <= 10x.
``registry.load``
    ``project.models.load("bench@champion")`` (alias and version lookup, read, SHA-256 check, ``keel`` format load:
    one JSON parse, one ``np.frombuffer`` per array, trusted classes only),
    against ``joblib.load`` of the estimator's file. Target <= 2x. The loaded package must predict exactly
    as the fitted model.
``registry.concurrent_register``
    8 processes (spawned, released together by a barrier) registering 25 versions each of one model name on
    the project's SQLite catalog: errors, duplicate and missing version numbers (target 0, 0, 0) and the
    seconds from release to the last registration, against one process registering as many versions in a
    row (context only).

Run ``python bench/registry.py`` (about a minute) or ``python bench/registry.py --quick`` (seconds).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

SEED = 20240115
FULL = {"rows": 20_000, "features": 20, "max_iter": 100, "workers": 8, "versions_per_worker": 25}
QUICK = {"rows": 2_000, "features": 20, "max_iter": 100, "workers": 8, "versions_per_worker": 5}
NULL_FRACTION = 0.01

RUN_REGISTER_TARGET = 10.0
LOAD_TARGET = 2.0
MODEL = "bench"


# -- the model -----------------------------------------------------------------------------------------------
def fitted_package(sizes: dict[str, int]) -> tuple[Any, Any, Any]:
    """``(package, estimator, sample frame)``: a fitted HGB classifier packaged as the trainer packages it."""
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier

    from keel.models import InputSchema, ModelPackage
    from keel.training._preprocessing import auto_preprocessor

    rng = np.random.default_rng(SEED)
    n, k = sizes["rows"], sizes["features"]
    values = rng.standard_normal(size=(n, k))
    y = (values[:, 0] + values[:, 1] * values[:, 2] + 0.5 * rng.standard_normal(n) > 0).astype(np.int64)
    values[rng.random(size=values.shape) < NULL_FRACTION] = np.nan
    frame = pd.DataFrame(values, columns=[f"f{i}" for i in range(k)])
    dtypes = dict.fromkeys(frame.columns, "float64")
    estimator = HistGradientBoostingClassifier(max_iter=sizes["max_iter"], early_stopping=False, random_state=0)
    preprocessor = auto_preprocessor(dtypes, estimator)
    common.log(f"fitting HistGradientBoostingClassifier(max_iter={sizes['max_iter']}) on {n:,} x {k} ...")
    started = time.perf_counter()
    estimator.fit(preprocessor.fit_transform(frame), y)
    common.log(f"fitted in {time.perf_counter() - started:.1f}s")
    package = ModelPackage(
        name=MODEL,
        task="classification",
        label="label",
        estimator=estimator,
        preprocessor=preprocessor,
        schema=InputSchema.infer(frame, dtypes),
        feature_refs=[f"bench_view@1:{c}" for c in frame.columns],
        classes=[0, 1],
        metadata={},
    )
    return package, estimator, frame.head(1_000)


def tracked_run_and_register(project: Any, package: Any) -> Any:
    """What ``train()`` does after fitting, then ``models.register``: the Keel side of ``run_register``."""
    from dataclasses import replace

    from keel.models._serialization import dumps

    run_id = uuid.uuid4().hex
    params = {"task": "classification", "seed": 0, "estimator": package.estimator.get_params()}
    lineage = {
        "feature_versions": {"bench_view": 1},
        "feature_digests": {"bench_view": "0" * 64},
        "features": list(package.feature_refs),
        "training_set_digest": "1" * 64,
        "libraries": {"scikit-learn": "x"},
    }
    project.catalog.start_run(run_id=run_id, spec=MODEL, spec_snapshot={"name": MODEL}, params=_json(params))
    metrics = {"accuracy": 0.9, "roc_auc": 0.95}
    blob, fmt = dumps(replace(package, metadata={"run_id": run_id, "metrics": metrics}))
    digest = project.artifacts.put_bytes(blob)
    record = project.catalog.finish_run(
        run_id,
        status="finished",
        params=_json(params),
        metrics=metrics,
        durations={"fit": 1.0},
        lineage=lineage,
        package_digest=digest,
        package_format=fmt,
    )
    return project.models.register(record)


def _json(value: Any) -> Any:
    from keel.training._lineage import json_safe

    return json_safe(value)


# -- workloads -----------------------------------------------------------------------------------------------
def bench_run_register(args: Any, project: Any, package: Any, work: Path, params: dict[str, Any]) -> None:
    import joblib

    from keel.training._lineage import git_commit, library_versions

    path = work / "baseline.joblib"
    timings = common.interleaved(
        {
            "keel": lambda: tracked_run_and_register(project, package),
            "baseline": lambda: joblib.dump(package.estimator, path),
        },
        runs=args.runs,
        warmup=args.warmup,
    )
    facts = common.measure(lambda: (library_versions(package.estimator), git_commit(project.root)), runs=args.runs)
    version = timings["keel"].last
    for side, t in timings.items():
        common.log(f"run_register {side}: median {t.median_s * 1000:.1f} ms runs {[round(r, 4) for r in t.runs]}")
    blob = project.artifacts.get_bytes(version.package_digest)
    line = common.result(
        "registry.run_register",
        params={**params, "package_bytes": len(blob), "baseline_bytes": path.stat().st_size},
        keel={**timings["keel"].as_json(), "lineage_facts_median_s": common.round6(facts.median_s)},
        baseline_name="joblib.dump of the estimator",
        baseline=timings["baseline"],
        ratio_max=RUN_REGISTER_TARGET,
        checks={
            "format": version.package_format,
            "safe_format": version.package_format in ("keel", "skops"),  # loads without unpickling
            "versions": version.version,
            "versions_gap_free": [v.version for v in project.models.versions(MODEL)]
            == list(range(1, version.version + 1)),
        },
    )
    common.emit(line, args)


def bench_load(args: Any, project: Any, package: Any, frame: Any, work: Path, params: dict[str, Any]) -> None:
    import joblib

    versions = project.models.versions(MODEL)
    latest = versions[-1] if versions else tracked_run_and_register(project, package)
    project.models.set_alias(MODEL, "champion", latest.version)
    path = work / "baseline.joblib"
    joblib.dump(package.estimator, path)
    timings = common.interleaved(
        {"keel": lambda: project.models.load(f"{MODEL}@champion"), "baseline": lambda: joblib.load(path)},
        runs=args.runs,
        warmup=args.warmup,
    )
    for side, t in timings.items():
        common.log(f"load {side}: median {t.median_s * 1000:.1f} ms runs {[round(r, 4) for r in t.runs]}")
    loaded = timings["keel"].last
    expected = package.estimator.predict_proba(package.preprocessor.transform(frame))
    line = common.result(
        "registry.load",
        params={**params, "package_bytes": project.artifacts.get_bytes(latest.package_digest).__len__()},
        keel=timings["keel"],
        baseline_name="joblib.load of the estimator",
        baseline=timings["baseline"],
        ratio_max=LOAD_TARGET,
        checks={
            "format": latest.package_format,
            "predictions_identical": bool(np.array_equal(loaded.predict_proba(frame), expected)),
            "baseline_predictions_identical": bool(
                np.array_equal(timings["baseline"].last.predict_proba(package.preprocessor.transform(frame)), expected)
            ),
        },
    )
    common.emit(line, args)


def register_worker(
    root: str, run_id: str, worker: int, count: int, barrier: Any, results: Any
) -> None:  # pragma: no cover - runs in a spawned process
    """Open the project's catalog and artifact store, wait for the others, then register ``count`` versions."""
    import keel

    versions: list[int] = []
    errors: list[str] = []
    started = finished = 0.0
    try:
        project = keel.Project.open(root)
        registry = project.models
        barrier.wait(timeout=120)
        started = time.time()
        for _ in range(count):
            try:
                versions.append(registry.register(run_id, name="concurrent").version)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        finished = time.time()
        project.close()
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    results.put((worker, versions, errors, started, finished))


def bench_concurrent(args: Any, project: Any, package: Any, params: dict[str, Any]) -> None:
    import queue

    workers, per = params["workers"], params["versions_per_worker"]
    run_id = tracked_run_and_register(project, package).run_id
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=register_worker, args=(str(project.root), run_id, w, per, barrier, results))
        for w in range(workers)
    ]
    common.log(f"concurrent_register: {workers} processes x {per} versions ...")
    for p in procs:
        p.start()
    versions: list[int] = []
    errors: list[str] = []
    starts: list[float] = []
    ends: list[float] = []
    try:
        for _ in range(workers):
            _, got, failed, started, finished = results.get(timeout=600)
            versions += got
            errors += failed
            starts.append(started)
            ends.append(finished)
    except queue.Empty:
        errors.append("a worker did not report within 600 s")
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
                p.join()
    seconds = max(ends) - min(starts) if starts and all(starts) else float("nan")
    total = workers * per
    duplicates = len(versions) - len(set(versions))
    gaps = len(set(range(1, max(versions, default=0) + 1)) - set(versions))
    stored = [v.version for v in project.models.versions("concurrent")]

    def sequential() -> None:
        name = f"sequential-{uuid.uuid4().hex[:8]}"
        for _ in range(total):
            project.models.register(run_id, name=name)

    baseline = common.measure(sequential, runs=1, warmup=0)
    for message in errors[:5]:
        common.log(f"concurrent_register error: {message}")
    common.log(
        f"concurrent_register: {len(versions)} versions in {seconds:.2f}s, errors {len(errors)}, "
        f"duplicates {duplicates}, gaps {gaps}; one process: {baseline.median_s:.2f}s"
    )
    line = common.result(
        "registry.concurrent_register",
        params={**params, "registrations": total, "catalog": "sqlite (file)"},
        keel={"median_s": common.round6(seconds), "runs": [common.round6(seconds)], "per_s": round(total / seconds)},
        baseline_name=f"one process registering {total} versions in a row",
        baseline={**baseline.as_json(), "per_s": round(total / baseline.median_s)},
        ratio_max=None,
        checks={
            "errors": len(errors),
            "duplicates": duplicates,
            "gaps": gaps,
            "versions": len(versions),
            "all_registered": len(versions) == total and sorted(stored) == list(range(1, total + 1)),
        },
    )
    line["target"] = {"ratio_max": None, "errors": 0, "duplicates": 0, "gaps": 0}
    line["meets_target"] = bool(not errors and duplicates == 0 and gaps == 0 and line["checks"]["all_registered"])
    common.emit(line, args)


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(common.parser(__doc__.splitlines()[0]), argv)
    for key in [k for k in os.environ if k.startswith("KEEL_")]:  # the defaults, whatever the shell says
        del os.environ[key]
    from threadpoolctl import threadpool_limits

    import keel

    sizes = QUICK if args.quick else FULL
    params: dict[str, Any] = {
        "rows": sizes["rows"],
        "features": sizes["features"],
        "estimator": f"HistGradientBoostingClassifier(max_iter={sizes['max_iter']})",
        "workers": sizes["workers"],
        "versions_per_worker": sizes["versions_per_worker"],
        "quick": args.quick,
        "seed": SEED,
    }
    common.DATA_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="registry-", dir=common.DATA_DIR))
    try:
        with threadpool_limits(1):  # a fit on every core is not what is measured; keep the machine quiet
            package, _, frame = fitted_package(sizes)
        (work / "project").mkdir()
        with keel.Project.open(work / "project") as project:
            if common.selected(args, "registry.run_register"):
                bench_run_register(args, project, package, work, params)
            if common.selected(args, "registry.load"):
                bench_load(args, project, package, frame, work, params)
            if common.selected(args, "registry.concurrent_register"):
                bench_concurrent(args, project, package, params)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
