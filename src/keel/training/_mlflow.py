"""Mirroring runs to an MLflow tracking server, so teams keep the UI they know (``pip install 'keel[mlflow]'``).

Keel's catalog stays the source of truth; the mirror copies each run's params, metrics and lineage (as tags),
and the model package as a ``pyfunc`` model that predicts through :class:`~keel.models.ModelPackage`.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.errors import BackendError, MissingExtraError

if TYPE_CHECKING:
    from collections.abc import Callable

    from keel.catalog import RunRecord

#: MLflow caps param values at this length.
_PARAM_MAX = 500


def _python_model_class() -> Any:
    import mlflow.pyfunc

    base: Any = mlflow.pyfunc.PythonModel

    class KeelPackageModel(base):  # type: ignore[misc]
        """A pyfunc wrapper that loads the Keel package and predicts with it."""

        def load_context(self, context: Any) -> None:
            from keel.models._serialization import loads

            path = Path(context.artifacts["package"])
            fmt = path.suffix.lstrip(".")
            self.package = loads(path.read_bytes(), fmt, allow_pickle=(fmt == "joblib"))

        def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> Any:
            return self.package.predict(model_input)

    return KeelPackageModel


def mirror_for(uri: str | None, experiment: str) -> Callable[[RunRecord, bytes | None, str | None], None] | None:
    """With an MLflow ``uri``, a function copying each finished run to that server's ``experiment``; else ``None``."""
    if not uri:
        return None
    return functools.partial(_mirror, uri, experiment)


def _mirror(uri: str, experiment: str, record: RunRecord, blob: bytes | None, fmt: str | None) -> None:
    mirror_run(uri, record, package_blob=blob, package_format=fmt, experiment=experiment)


def mirror_run(
    uri: str, run: RunRecord, *, package_blob: bytes | None, package_format: str | None, experiment: str
) -> str:
    """Copy ``run`` to the MLflow tracking server at ``uri``; returns the MLflow run id.

    Raises:
        MissingExtraError: MLflow is not installed.
        BackendError: the server refused or failed.
    """
    try:
        import mlflow
        from mlflow import MlflowClient
        from mlflow.entities import Metric, Param, RunTag
    except ImportError as exc:
        raise MissingExtraError("mlflow", "mlflow", "mirroring runs to MLflow (mlflow_uri in keel.yaml)") from exc
    if "://" not in uri or uri.startswith("file:"):
        _allow_file_store()
    try:
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
        tags = {
            "keel.run_id": run.id,
            "keel.spec": run.spec,
            "keel.status": run.status,
            "mlflow.runName": f"{run.spec}-{run.id[:8]}",
        }
        lineage = run.lineage
        for view, version in lineage.get("feature_versions", {}).items():
            tags[f"keel.feature_version.{view}"] = str(version)
        for view, digest in lineage.get("feature_digests", {}).items():
            tags[f"keel.data_digest.{view}"] = str(digest)
        if lineage.get("training_set_digest"):
            tags["keel.training_set_digest"] = str(lineage["training_set_digest"])
        git = lineage.get("git") or {}
        if git.get("commit"):
            tags["mlflow.source.git.commit"] = str(git["commit"])
        if run.package_digest:
            tags["keel.package_digest"] = run.package_digest
        if run.error:
            tags["keel.error"] = run.error[:5000]
        created = client.create_run(experiment_id, tags=tags)
        mlflow_id = created.info.run_id
        now = int(time.time() * 1000)
        params = [Param(k, str(v)[:_PARAM_MAX]) for k, v in sorted(run.flat_params().items())]
        metrics = [Metric(k, float(v), now, 0) for k, v in run.metrics.items() if isinstance(v, int | float)]
        client.log_batch(
            mlflow_id,
            metrics=metrics,
            params=params,
            tags=[RunTag("keel.lineage", json.dumps(lineage, default=str)[:5000])],
        )
        if package_blob is not None and package_format is not None:
            with tempfile.TemporaryDirectory() as tmp:
                package_path = Path(tmp) / f"package.{package_format}"
                package_path.write_bytes(package_blob)
                model_path = Path(tmp) / "model"
                mlflow.pyfunc.save_model(
                    str(model_path),
                    python_model=_python_model_class()(),
                    artifacts={"package": str(package_path)},
                    pip_requirements=["keel"],  # explicit: inferring them would import and probe the environment
                )
                client.log_artifacts(mlflow_id, str(model_path), "model")
        client.set_terminated(mlflow_id, status="FINISHED" if run.status == "finished" else "FAILED")
    except MissingExtraError:
        raise
    except Exception as exc:
        raise BackendError(f"mirroring run {run.id} to MLflow at {uri} failed: {exc}") from exc
    return str(mlflow_id)


def _allow_file_store() -> None:
    """Let MLflow use a local folder as its tracking store (recent versions refuse unless told)."""
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
