"""``keel demo``: run the churn example end to end on the embedded defaults and print what happened.

The demo copies the example project (``examples/churn``: its definitions, data generator and yardsticks are real
files there) and only runs steps, each printing its part of the summary and returning its figures: the feature
steps (generate, apply, ingest, a training set), then the model steps (train, register, lineage, predict), then
inference (online features, the prediction service over HTTP with its prediction log, batch scoring), then the
loop back (the world drifts, monitoring detects it, a retrained challenger is promoted and the running service
reloads it). Steps hand each other nothing but the project and names the catalog knows (a run id,
``churn@champion``), as a user's scripts would.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console

__all__ = ["BEFORE_DRIFT", "CHAMPION", "DEMO_MARKER", "DEMO_SPEC", "DRIFT_AFTER", "EXAMPLE", "run_demo"]

#: The example project the demo copies and runs.
EXAMPLE = "churn"
#: Written at the root of a demo folder: only a folder holding it (and the churn keel.yaml) is ever deleted.
DEMO_MARKER = ".keel-demo"
#: The training spec declared in the example's training.py, and the model it registers.
DEMO_SPEC = "churn"
CHAMPION = "champion"
#: The demo's world changes on this date (the example's drift: spend falls, tickets rise and weigh more on churn).
DRIFT_AFTER = "2025-08-01"
#: Where the loop step keeps the data files as they were before the drift (``data/before_drift/``).
BEFORE_DRIFT = "before_drift"


def run_demo(path: Path, *, customers: int = 1000, seed: int = 7, console: Console | None = None) -> dict[str, Any]:
    """Run the churn example end to end in ``path`` and print a summary.

    The folder is (re)created: a previous demo there is deleted, any other non-empty folder refused.

    Args:
        path: the demo project's folder.
        customers: how many customers the example simulates.
        seed: the example's random seed.
        console: where to print (default: a new console on standard output).

    Returns:
        The key figures, by step: ``generate`` (rows per file), ``apply`` (definitions added...),
        ``ingest`` (per view: version, rows, seconds, digest, event-time range), ``training_set`` (shape, null
        rates, churn rate, feature versions), ``train`` (run id, validation metrics, rows per split, cutoff,
        the no-skill metrics and the generator's formula's ROC AUC for scale), ``register`` (model, version,
        package digest and format, aliases), ``lineage`` (feature versions and data digests, training-set
        digest, git, libraries, and whether a retrain reproduced the training set and metrics), ``predict``
        (the champion's version, the customers scored, the shown rows with P(churn) and the actual label, the
        churn rate of the riskiest tenth), ``online`` (materialized rows, pushed customers, whether online and
        offline agree), ``serve`` (the answers by key and by raw values with their warnings, latencies, whether
        the served probabilities are the package's, and the prediction log read back), ``batch`` (rows, chunks,
        rows per second, whether the batch scores are the package's), ``monitor`` (the drifted data's versions,
        the rows logged, the monitoring verdict and drifted features, the retraining decision, the version the
        running service reloaded, the audit trail), ``analyze`` (before the drift: the champion's metric by plan
        and region, the weak segments found, the stored analysis and its page), plus ``path`` and ``seconds``.

    Raises:
        ConflictError: ``path`` is a non-empty folder that a previous demo did not create.

    Example:
        >>> figures = run_demo(Path("demo"), customers=500)  # doctest: +SKIP
        >>> figures["training_set"]["churn_rate"]  # doctest: +SKIP
        0.13
        >>> figures["register"]["aliases"]  # doctest: +SKIP
        {'champion': 1}
    """
    # The steps import this package's constants: imported here, once the package is whole.
    from keel.demo import _features, _loop, _models, _serving
    from keel.demo._folder import prepare_folder
    from keel.project import Project

    console = console or Console()
    root = Path(path).expanduser().resolve()
    started = time.perf_counter()
    prepare_folder(root)
    figures: dict[str, Any] = {"path": str(root), "customers": customers, "seed": seed}
    figures["generate"] = _features.step_generate(root, customers=customers, seed=seed, console=console)
    with Project.open(root) as project:
        figures["apply"] = _features.step_apply(project, console=console)
        figures["ingest"] = _features.step_ingest(project, console=console)
        figures["training_set"] = _features.step_training_set(project, console=console)
        figures["train"] = _models.step_train(project, console=console)
        figures["register"] = _models.step_register(project, figures["train"]["run_id"], console=console)
        figures["lineage"] = _models.step_lineage(project, console=console)
        figures["predict"] = _models.step_predict(project, console=console)
        figures["online"] = _serving.step_online(project, console=console)
        figures["serve"] = _serving.step_serve(project, console=console)
        figures["batch"] = _serving.step_batch(project, console=console)
        figures["analyze"] = _models.step_analyze(project, console=console)
        figures["monitor"] = _loop.step_monitor(project, customers=customers, seed=seed, console=console)
    figures["seconds"] = time.perf_counter() - started
    console.rule(f"[bold green]Done[/] in {figures['seconds']:.1f}s — the project is in {root}")
    return figures
