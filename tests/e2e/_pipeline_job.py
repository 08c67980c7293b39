"""Run by ``test_spark_end_to_end.py`` in its own interpreter: ``python _pipeline_job.py PROJECT OUT SAMPLE``.

The churn example's life up to batch scoring, on whatever engine and stores the environment's ``KEEL_*``
variables choose (``KEEL_ENGINE=spark``, ``KEEL_SPARK__MASTER=spark://…``, ``KEEL_ONLINE=redis://…``):
apply, ingest every view, the churn spec's training set (``historical_features``), train, register and promote
``churn@champion``, materialize to the online store, read the online values of the entities listed in the
file ``SAMPLE`` (one id a line). It writes under the folder ``OUT``:

- ``training_set.parquet``: the training set, in the labels' order;
- ``online.parquet``: the online values of the sample, in the sample's order;
- ``score_input.parquet``: the training set's feature columns and a ``row_id``, the input of ``keel predict``;
- ``summary.json``: per view the version, rows and digest; the run's metrics, sizes and package digest; the
  drift of half the scored rows against a reference profile of all of them, computed by the engine.

Why a separate interpreter: a process holds one SparkSession (the unit tests' ``local[2]`` one may live in the
test process), and the engine builds its session from the configuration of the process that opens the
project — here, the environment the test gives this process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SPEC = "churn"
ALIAS = "champion"


def run(root: Path, out: Path, sample: list[int]) -> dict[str, Any]:
    """Everything up to batch scoring; see the module's docstring."""
    import pandas as pd

    import keel

    out.mkdir(parents=True, exist_ok=True)
    with keel.Project.open(root) as project:
        project.apply()
        views: dict[str, Any] = {}
        for view in project.feature_views():
            result = project.ingest(view.name)
            version = result.version
            views[view.name] = {
                "version": version.version,
                "rows": version.row_count,
                "digest": version.data_digest,
                "event_time_min": str(version.event_time_min),
                "event_time_max": str(version.event_time_max),
                "has_duplicates": version.has_duplicates,
            }

        spec = project.training_spec(SPEC)
        labels = pd.read_parquet(root / str(spec.labels))
        training = project.historical_features(labels, list(spec.features))
        training.to_parquet(out / "training_set.parquet", index=False)

        run_ = project.train(SPEC)
        version = project.models.register(run_)
        project.models.set_alias(version.name, ALIAS, version.version)

        materialized = project.materialize()
        key = shared_key(project)
        online = project.online_features([f"{view}:*" for view in sorted(views)], [{key: k} for k in sample])
        online = online.to_frame()
        online.insert(0, key, sample)
        online.to_parquet(out / "online.parquet", index=False)

        feature_columns = [c for c in training.columns if c not in labels.columns]
        key_columns = [c for c in labels.columns if c != spec.label]
        score_input = training[key_columns + feature_columns].reset_index(drop=True)
        score_input.insert(0, "row_id", range(len(score_input)))
        score_input.to_parquet(out / "score_input.parquet", index=False)
        # The reference profile of rows at rest is computed by the engine (and its predictions scored by it).
        checked = project.monitor(
            f"{version.name}@{ALIAS}",
            reference=str(out / "score_input.parquet"),
            current=score_input.iloc[: len(score_input) // 2],
            store=False,
        )
        monitored = {"reference_rows": checked.reference["rows"], "drift": checked.to_dict()["drift"]}

        summary = {
            "engine": project.config.engine,
            "spark_master": project.config.spark.master if project.config.engine == "spark" else None,
            "online": project.online_store_id,
            "views": views,
            "training_set": {"rows": len(training), "columns": list(training.columns)},
            "run": {
                "metrics": run_.metrics,
                "train_rows": run_.train_rows,
                "validation_rows": run_.validation_rows,
                "package_digest": run_.record.package_digest,
            },
            "model": {"name": version.name, "version": version.version},
            "materialized": {r.view: r.rows for r in materialized},
            "monitor": monitored,
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def shared_key(project: Any) -> str:
    """The one join key every view of the project uses (the churn example's ``customer_id``)."""
    entities = project.entities()
    keys = {tuple(view.join_keys(entities)) for view in project.feature_views()}
    if len(keys) != 1 or len(next(iter(keys))) != 1:
        raise SystemExit(f"expected every view to have the same single join key, found {sorted(keys)}")
    return str(next(iter(keys))[0])


if __name__ == "__main__":
    root_arg, out_arg, sample_arg = sys.argv[1:4]
    ids = [int(line) for line in Path(sample_arg).read_text().split()]
    run(Path(root_arg), Path(out_arg), ids)
