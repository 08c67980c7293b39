"""``keel monitor``: drift, data quality and performance checks, retraining, and their history."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from keel.cli._common import ProjectOption, console, err_console, open_project
from keel.errors import ValidationError

if TYPE_CHECKING:
    from keel.monitoring import MonitoringReport
    from keel.project import Project
    from keel.retraining import RetrainDecision

#: The exit code of a check that crossed a threshold (drift, decay, or data quality with --fail-on-quality).
EXIT_CROSSED = 3

monitor_app = typer.Typer(
    help=(
        "Check a model for drift, data quality and performance decay; retrain and promote on a threshold. "
        f"Exit codes: 0 within thresholds, {EXIT_CROSSED} a threshold was crossed, 1 an error, 2 a usage error."
    ),
    invoke_without_command=True,
)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _show(report: MonitoringReport, html: Path | None) -> None:
    verdict = report.verdict
    console.print(
        f"[bold]{report.model} v{report.version}[/]: {report.current['rows']:,} current rows "
        f"({report.current['source']}) against {report.reference['rows']:,} reference rows"
    )
    drift = report.drift
    if drift is not None:
        table = Table(
            title=f"Drift: {len(drift.drifted_features)} of {len(drift.features)} features ({drift.share:.0%})"
        )
        for column in ("feature", "kind", "method", "statistic", "p-value", "threshold", "drifted"):
            table.add_column(column, justify="right" if column in ("statistic", "p-value", "threshold") else "left")
        rows = sorted(drift.features, key=lambda f: (not f.drifted, f.name))
        if drift.prediction is not None:
            rows.append(drift.prediction)
        for f in rows:
            table.add_row(
                f.name,
                f.kind,
                f.method,
                _fmt(f.statistic),
                _fmt(f.p_value),
                _fmt(f.threshold),
                "[red]yes[/]" if f.drifted else "no",
            )
        console.print(table)
    if report.quality is not None and report.quality.issues:
        console.print("[bold]Data quality[/]")
        for issue in report.quality.issues:
            console.print(f"  • {issue}", highlight=False)
    if report.overall is not None:
        table = Table(title=f"Performance on {report.overall['rows']:,} labelled rows")
        for column in ("metric", "current", "95% interval", "validation"):
            table.add_column(column, justify="right" if column != "metric" else "left")
        for name, est in report.overall["metrics"].items():
            interval = f"{_fmt(est['low'])} – {_fmt(est['high'])}" if est["low"] is not None else "—"
            table.add_row(name, _fmt(est["value"]), interval, _fmt(report.validation_metrics.get(name)))
        console.print(table)
    for note in verdict.get("notes", []):
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    if verdict["crossed"]:
        console.print("[bold red]Threshold crossed[/]")
        for reason in verdict["reasons"]:
            console.print(f"  • {reason}", highlight=False)
    else:
        console.print("[bold green]Within thresholds[/]")
    if html is not None:
        console.print(f"Report: {html}  (id {report.id[:12]})")


def _show_decision(decision: RetrainDecision) -> None:
    colour = "green" if decision.promoted else "yellow"
    console.print(f"[bold {colour}]{'Promoted' if decision.promoted else 'Kept the champion'}[/]: {decision.reason}")


def _check(
    proj: Project,
    model: str,
    *,
    settings: Any,
    reference: Path | None,
    current: Path | None,
    labels: Path | None,
    html: Path | None,
    retrain: bool,
    margin: float,
    labels_window: Any,
    gate_segments: list[str],
    as_json: bool,
) -> int:
    from keel.monitoring import default_html_path, write_html

    report = proj.monitor(model, reference=reference, current=current, labels=labels, settings=settings)
    path = write_html(report, html or default_html_path(proj.root, report))
    decision = None
    if retrain and report.crossed:
        from rich.status import Status

        status = Status("retraining", console=err_console)
        if err_console.is_terminal and not as_json:
            status.start()
        try:
            decision = proj.retrain(
                model,
                margin=margin,
                labels_window=labels_window,
                report_id=report.id,
                on_step=lambda step: status.update(f"retraining: {step}"),
                segments=gate_segments,
            )
        finally:
            status.stop()
    if as_json:
        out: dict[str, Any] = {
            "report_id": report.id,
            "model": report.model,
            "version": report.version,
            "verdict": report.verdict,
            "drifted_features": report.drift.drifted_features if report.drift else [],
            "html": str(path),
            "retrain": decision.to_dict() if decision else None,
        }
        typer.echo(json.dumps(out, default=str))
    else:
        _show(report, path)
        if decision is not None:
            _show_decision(decision)
        elif retrain:
            console.print("No retraining: no threshold was crossed.")
    return EXIT_CROSSED if report.crossed else 0


@monitor_app.callback()
def monitor(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="The model version to check: churn@champion, churn:3.")
    ] = None,
    window: Annotated[str, typer.Option(help="How far back the prediction log is read: 30m, 12h, 7d, 2w.")] = "7d",
    reference: Annotated[
        Path | None,
        typer.Option(help="Reference rows (Parquet/CSV) instead of the profile stored at training."),
    ] = None,
    current: Annotated[
        Path | None,
        typer.Option(help="Current rows (Parquet/CSV of the model's inputs) instead of the prediction log."),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(help="Labels: request_id[, record] and the label, or entity keys, a timestamp and the label."),
    ] = None,
    html: Annotated[Path | None, typer.Option(help="Where to write the HTML report.")] = None,
    retrain: Annotated[
        bool, typer.Option("--retrain", help="When a threshold is crossed: retrain, compare, promote a winner.")
    ] = False,
    margin: Annotated[
        float, typer.Option(help="With --retrain: how much better (share) the challenger must be.", min=0.0)
    ] = 0.0,
    labels_window: Annotated[
        str | None, typer.Option(help="With --retrain: train only on labels of the last 90d, 26w ...")
    ] = None,
    gate_segment: Annotated[
        list[str] | None,
        typer.Option(
            "--gate-segment",
            help="With --retrain: never promote a challenger significantly worse on this segment (plan, age:4, "
            "an expression); repeatable.",
        ),
    ] = None,
    every: Annotated[
        str | None, typer.Option(help="Check on this period (1h, 30m ...) until stopped (SIGTERM, Ctrl-C).")
    ] = None,
    metric: Annotated[str | None, typer.Option(help="The metric decay is judged on (default roc_auc/rmse).")] = None,
    decay_tolerance: Annotated[
        float, typer.Option(help="Decay: the metric worse than validation by more than this share.", min=0.0)
    ] = 0.05,
    drift_share: Annotated[
        float, typer.Option(help="The dataset drifts when at least this share of features drift.", min=0.0, max=1.0)
    ] = 0.5,
    fail_on_quality: Annotated[
        bool, typer.Option("--fail-on-quality", help="A data-quality failure alone crosses the threshold.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary instead of tables.")] = False,
    project: ProjectOption = Path("."),
) -> None:
    """Check a model version for drift, data quality and decay; store the report; exit 3 on a crossed threshold."""
    if ctx.invoked_subcommand is not None:
        return
    if model is None:
        raise ValidationError("keel monitor needs --model (e.g. --model churn@champion)", field="model")
    from keel._time import parse_duration
    from keel.monitoring import DriftConfig, MonitorSettings
    from keel.retraining import Schedule

    settings = MonitorSettings(
        window=parse_duration(window, "window"),
        drift=DriftConfig(drift_share=drift_share),
        metric=metric,
        decay_tolerance=decay_tolerance,
        quality_crosses=fail_on_quality,
    )
    recent = parse_duration(labels_window, "labels_window") if labels_window else None
    options: dict[str, Any] = {
        "settings": settings,
        "reference": reference,
        "current": current,
        "labels": labels,
        "html": html,
        "retrain": retrain,
        "margin": margin,
        "labels_window": recent,
        "gate_segments": gate_segment or [],
        "as_json": as_json,
    }
    with open_project(project) as proj:
        if every is None:
            raise typer.Exit(_check(proj, model, **options))
        period = parse_duration(every, "every")

        def tick() -> int:
            if not as_json:
                console.rule(f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
            return _check(proj, model, **options)

        schedule = Schedule(period, tick)
        runs = schedule.run()
        err_console.print(f"stopped after {runs} check(s), {schedule.failures} failed")


@monitor_app.command("history")
def history(
    model: Annotated[str, typer.Option("--model", "-m", help="The model's name (churn) or a reference.")],
    limit: Annotated[int, typer.Option(help="At most this many events (the newest).", min=1)] = 50,
    reports: Annotated[bool, typer.Option("--reports", help="List the stored reports instead of events.")] = False,
    project: ProjectOption = Path("."),
) -> None:
    """The audit trail: checks, drift seen, retraining started, metrics compared, promoted or kept."""
    from keel.models._registry import parse_model_ref

    name = parse_model_ref(model)[0]
    with open_project(project) as proj:
        if reports:
            table = Table(title=f"Monitoring reports of {name}")
            for column in ("report", "created", "version", "window end", "crossed", "reasons"):
                table.add_column(column)
            for r in proj.catalog.monitoring_reports(name, limit=limit):
                table.add_row(
                    r.id[:12],
                    f"{r.created_at:%Y-%m-%d %H:%M:%S}",
                    f"v{r.version}",
                    f"{r.window_end:%Y-%m-%d %H:%M}" if r.window_end else "—",
                    "[red]yes[/]" if r.crossed else "no",
                    "; ".join(r.verdict.get("reasons", [])) or "—",
                )
            console.print(table)
            return
        events = proj.catalog.monitoring_events(name, limit=limit)
        table = Table(title=f"Monitoring history of {name}")
        for column in ("at", "event", "version", "report", "what"):
            table.add_column(column)
        for e in events:
            table.add_row(
                f"{e.at:%Y-%m-%d %H:%M:%S}",
                e.kind,
                f"v{e.version}" if e.version is not None else "—",
                e.report_id[:12] if e.report_id else "—",
                e.message,
            )
        console.print(table)
        if not events:
            console.print(f"No monitoring events for {name} yet.")
