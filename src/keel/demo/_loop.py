"""The demo's last step, the loop back: the world drifts, monitoring sees it, a retrained challenger is promoted
and the running service hot-reloads it."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from keel.demo import BEFORE_DRIFT, CHAMPION, DEMO_SPEC, DRIFT_AFTER
from keel.demo._features import labels, spec_views
from keel.demo._render import metric, table
from keel.demo._serving import json_value, latest_refs, one_native_thread, post
from keel.errors import BackendError

if TYPE_CHECKING:
    import pandas as pd

    from keel.monitoring import DriftResult, MonitoringReport
    from keel.project import Project
    from keel.retraining import RetrainDecision

__all__ = ["step_monitor"]

#: Rows of the drifted months sent to the service as raw values, per request.
_LOOP_BATCH = 250
#: How long the loop step waits for the service to pick a new champion up (it watches the alias every 0.25 s).
_RELOAD_SECONDS = 10.0


def step_monitor(project: Project, *, customers: int, seed: int, console: Console) -> dict[str, Any]:
    """Close the loop: the world drifts, the served champion's predictions are logged, monitoring detects the
    drift and the decay, a retrained challenger wins on the same later holdout, the champion alias moves, and
    the running service hot-reloads it."""
    from keel.serving import background_server

    ref = f"{DEMO_SPEC}@{CHAMPION}"
    console.rule(f"[bold]13. Close the loop[/]: the world drifts after {DRIFT_AFTER}; monitor, retrain, promote")
    started = time.perf_counter()
    versions = _drift_the_world(project, customers=customers, seed=seed)
    champion = project.models.get(ref).version
    drifted, records = _drifted_records(project, ref)
    console.print(
        f"The data were generated again with drift after {DRIFT_AFTER} (identical before it; the files as they were "
        f"are kept in data/{BEFORE_DRIFT}/) and ingested as "
        + ", ".join(f"{view} v{v}" for view, v in versions.items())
        + f". The service scores the {len(records):,} customer-months since, as raw values, with {ref} (v{champion})."
    )
    app = project.prediction_app([ref], reload_seconds=0.25)
    traffic_started = datetime.now(UTC)
    with one_native_thread(), background_server(app) as url:
        predict_url = f"{url}/v1/models/{DEMO_SPEC}/predict"
        truth = _send_drifted(predict_url, records, drifted)
        app.state.prediction_log.flush()
        report, html = _monitor(project, ref, truth, traffic_started, console)
        decision = project.retrain(ref, report_id=report.id) if report.crossed else None
        reloaded_to = None
        if decision is not None:
            reloaded_to = _promoted_and_reloaded(project, app, decision, predict_url, records[:1], console)
    events = project.catalog.monitoring_events(DEMO_SPEC)
    history = table("event", "version", "what", title="audit trail (keel monitor history --model churn)")
    for e in events:
        history.add_row(e.kind, f"v{e.version}" if e.version is not None else "—", e.message)
    console.print(history)
    return {
        "versions": versions,
        "champion": champion,
        "logged": len(records),
        "report_id": report.id,
        "crossed": report.crossed,
        "verdict": report.verdict,
        "drifted_features": report.drift.drifted_features if report.drift else [],
        "html": str(html),
        "decision": decision.to_dict() if decision is not None else None,
        "reloaded_to": reloaded_to,
        "events": [e.kind for e in events],
        "seconds": time.perf_counter() - started,
    }


def _drift_the_world(project: Project, *, customers: int, seed: int) -> dict[str, int]:
    """Keep the data files as they are, generate them again with drift after the date, ingest the new versions."""
    from keel._scaffold import generate_example_data

    data = project.root / "data"
    (data / BEFORE_DRIFT).mkdir(exist_ok=True)
    for name in ("customers.parquet", "activity.parquet", "labels.parquet"):  # the world before, kept
        shutil.copy2(data / name, data / BEFORE_DRIFT / name)
    generate_example_data(project.root, customers=customers, seed=seed, drift_after=DRIFT_AFTER)
    return {view: project.ingest(view).version.version for view in spec_views(project)}


def _drifted_records(project: Project, ref: str) -> tuple[pd.DataFrame, list[dict[str, object]]]:
    """The label rows after the drift date, and their features from the drifted versions as JSON records."""
    import pandas as pd

    package = project.models.load(ref)
    rows = labels(project)
    drifted = rows[rows["event_timestamp"] > pd.Timestamp(DRIFT_AFTER, tz="UTC")].reset_index(drop=True)
    with one_native_thread():
        frame = project.historical_features(drifted, latest_refs(package.feature_refs))
    names = [n for n in package.feature_names if n in frame.columns]
    records = [
        {n: json_value(v) for n, v in zip(names, values, strict=True)}
        for values in frame[names].itertuples(index=False)
    ]
    return drifted, records


def _send_drifted(predict_url: str, records: list[dict[str, object]], drifted: pd.DataFrame) -> list[dict[str, Any]]:
    """Score ``records`` through the service in batches; return the label of each, by request id and record."""
    truth: list[dict[str, Any]] = []
    for i in range(0, len(records), _LOOP_BATCH):
        request_id = f"demo-loop-{i // _LOOP_BATCH}"
        status, answer, _ms = post(predict_url, {"records": records[i : i + _LOOP_BATCH]}, request_id=request_id)
        if status != 200:
            raise BackendError(f"the demo's prediction service answered {status}: {answer}")
        truth.extend(
            {"request_id": request_id, "record": j, "churned": int(y)}
            for j, y in enumerate(drifted["churned"].iloc[i : i + _LOOP_BATCH])
        )
    return truth


def _monitor(
    project: Project, ref: str, truth: list[dict[str, Any]], since: datetime, console: Console
) -> tuple[MonitoringReport, Path]:
    """Monitor the traffic since ``since`` with the labels that arrived; print the drift and the verdict."""
    import pandas as pd

    from keel.monitoring import MonitorSettings, default_html_path, write_html

    # The labels arrive: joined to the logged predictions by request id and record.
    # The window: the drifted traffic only (not the serve step's hand-made requests, absurd values included).
    window = datetime.now(UTC) - since + timedelta(seconds=1)
    report = project.monitor(ref, labels=pd.DataFrame(truth), settings=MonitorSettings(window=window))
    html = write_html(report, default_html_path(project.root, report))
    console.print(_drift_table(report.drift))
    name = report.verdict["metric"]
    now = (report.overall or {}).get("metrics", {}).get(name, {})
    console.print(
        f"{name} on the labelled predictions: {metric(now.get('value'))} "
        f"(95% interval {metric(now.get('low'))}–{metric(now.get('high'))}) against "
        f"{metric(report.validation_metrics.get(name))} at validation."
    )
    for reason in report.verdict["reasons"]:
        console.print(f"  [red]•[/] {reason}", highlight=False)
    console.print(f"Report {report.id[:12]} stored in the catalog; HTML at {html.relative_to(project.root)}")
    return report, html


def _drift_table(drift: DriftResult | None) -> Table:
    shown = table("feature", "method", "statistic", "threshold", "drifted", title="drift of the logged inputs")
    for f in sorted(drift.features if drift else [], key=lambda f: (not f.drifted, f.name)):
        shown.add_row(f.name, f.method, f"{f.statistic:.3f}", f"{f.threshold:g}", "[red]yes[/]" if f.drifted else "no")
    return shown


def _promoted_and_reloaded(
    project: Project,
    app: Any,
    decision: RetrainDecision,
    predict_url: str,
    probe: list[dict[str, object]],
    console: Console,
) -> int | None:
    """Print the retraining decision and what the running service answers with after it; return the version
    the service reloaded (``None`` when it kept the champion it had)."""
    colour = "green" if decision.promoted else "yellow"
    console.print(f"[{colour}]{decision.reason}[/] ({decision.holdout_rows:,} holdout rows)")
    reloaded_to = None
    deadline = time.monotonic() + (_RELOAD_SECONDS if decision.promoted else 0.0)
    while time.monotonic() < deadline:  # the service watches the alias every 0.25 s
        served = app.state.models[DEMO_SPEC].version
        if served == project.models.get(f"{DEMO_SPEC}@{CHAMPION}").version:
            reloaded_to = served
            break
        time.sleep(0.05)
    _, answer, _ms = post(predict_url, {"records": probe}, request_id="demo-loop-after")
    if not decision.promoted:
        console.print(f"The running service keeps answering with v{answer.get('version')}.")
    elif reloaded_to is not None:
        console.print(f"The running service now answers with v{answer.get('version')} (hot-reloaded, no restart).")
    else:
        console.print("[red]The service did not pick the new champion up.[/]")
    return reloaded_to
