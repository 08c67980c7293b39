"""`keel validate`: expectations of feature views, inferred into a reviewable file and checked against versions."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from keel.cli._common import ProjectOption, console, err_console, open_project
from keel.errors import NotFoundError

validate_app = typer.Typer(
    help="Feature validation: infer a view's expectations into a file, check versions against them.",
    no_args_is_help=True,
)

VersionOption = Annotated[int | None, typer.Option("--version", help="The version (default: the latest).", min=1)]


def _default_file(root: Path, view: str) -> Path:
    return root / "expectations" / f"{view}.yaml"


@validate_app.command("infer")
def infer(
    view: Annotated[str, typer.Argument(help="The feature view.")],
    version: VersionOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="The file to write (default: expectations/VIEW.yaml).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the proposal (and the diff); write nothing.")
    ] = False,
    project: ProjectOption = Path("."),
) -> None:
    """Propose expectations from a version's statistics and write them to a file to review and commit.

    When the file exists, the differences are shown before it is replaced.
    """
    from keel.validation._infer import dump, infer

    with open_project(project) as proj:
        found = proj.catalog.feature_version(view, version)
        features = list(found.columns.get("features", {}))
        proposed = infer(found.statistics, rows=found.row_count, has_duplicates=found.has_duplicates, features=features)
        path = output or _default_file(proj.root, view)
    text = dump(view, proposed)
    if path.exists():
        old = path.read_text()
        diff = list(difflib.unified_diff(old.splitlines(), text.splitlines(), str(path), "inferred", lineterm=""))
        console.print("\n".join(diff) if diff else f"{path}: no change", highlight=False, markup=False)
    elif dry_run:
        console.print(text, highlight=False, markup=False)
    if not dry_run:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        console.print(f"{len(proposed)} expectation(s) of {view} v{found.version} written to {path}", highlight=False)


@validate_app.command("check")
def check(
    view: Annotated[str, typer.Argument(help="The feature view.")],
    expectations: Annotated[
        Path | None, typer.Option("--expectations", "-e", help="The file (default: expectations/VIEW.yaml).")
    ] = None,
    version: VersionOption = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON here.")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML report here.")] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Check a version of a view against its expectations (the file, else those declared on the view); exit 1 when
    an error-level expectation fails."""
    from keel.offline._ingest import declared_expectations
    from keel.validation._infer import load

    with open_project(project) as proj:
        path = expectations or _default_file(proj.root, view)
        if path.exists():
            named, declared = load(path.read_text(), source=str(path))
            if named != view:
                err_console.print(f"note: {path} holds the expectations of {named!r}; checking {view!r} with them")
        else:
            declared = declared_expectations(proj.definitions.feature_view(view)[0]) if expectations is None else []
            if not declared:
                raise NotFoundError(
                    f"no expectations file at {path} and none declared on {view}; write one with "
                    f"`keel validate infer {view}`"
                )
            err_console.print(f"note: checking the {len(declared)} expectation(s) declared on {view}")
        found, report = proj.validate(view, declared, version=version)
    table = Table(title=f"{view} v{found.version}: {report.rows:,} rows, {len(report.results)} expectation(s)")
    for column in ("expectation", "severity", "result", "failing rows", "share", "first row"):
        table.add_column(column)
    for r in report.results:
        verdict = (
            "[green]pass[/]"
            if r.passed
            else ("[red]FAIL[/]" if r.expectation.severity == "error" else "[yellow]warn[/]")
        )
        table.add_row(
            r.expectation.describe(),
            r.expectation.severity,
            verdict,
            f"{r.failed:,}" if not r.passed else "",
            f"{r.share:.2%}" if not r.passed and r.rows else "",
            "" if r.first is None or r.passed else str(r.first),
        )
    console.print(table)
    if json_path is not None:
        document = {"view": view, "version": found.version, **report.to_dict()}
        json_path.write_text(json.dumps(document, indent=2, default=str))
    if html is not None:
        from keel.validation._html import render_html

        html.write_text(render_html(view, found.version, report.to_dict(), found.statistics))
    errors = report.errors
    if errors:
        err_console.print(f"{len(errors)} error-level expectation(s) failed")
        raise typer.Exit(1)


JsonOption = Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON here.")]
HtmlOption = Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML report here.")]
SeverityOption = Annotated[
    str,
    typer.Option(
        "--severity", help="error: a shift exits 1 (gates a pipeline); warning: report only.", show_default=True
    ),
]


@validate_app.command("stability")
def stability(
    view: Annotated[str, typer.Argument(help="The feature view.")],
    window: Annotated[
        str, typer.Option("--window", "-w", help="The windows: 1d, 7d, 12h, 1mo, daily, weekly, monthly.")
    ] = "7d",
    version: VersionOption = None,
    feature: Annotated[
        list[str] | None, typer.Option("--feature", "-f", help="Only this feature (repeatable; default: all).")
    ] = None,
    psi: Annotated[float, typer.Option("--psi", help="PSI at which a numeric feature shifted.", min=0)] = 0.2,
    linf: Annotated[
        float, typer.Option("--linf", help="L-infinity at which a categorical feature shifted.", min=0)
    ] = 0.1,
    severity: SeverityOption = "error",
    json_path: JsonOption = None,
    html: HtmlOption = None,
    project: ProjectOption = Path("."),
) -> None:
    """Compare each event-time window of a view's version with the one before, per feature (PSI, Jensen–Shannon,
    L-infinity); exit 1 when a feature shifted (with --severity error, the default)."""
    from keel.validation import ShiftThresholds

    thresholds = ShiftThresholds(psi=psi, linf=linf)
    with open_project(project) as proj:
        found, report = proj.stability(
            view, window=window, version=version, features=feature, thresholds=thresholds, severity=severity
        )
    rows = report.rows
    table = Table(
        title=f"{view} v{found.version}: {len(report.starts)} {report.window.label} window(s), "
        f"{sum(rows):,} rows ({min(rows, default=0):,}–{max(rows, default=0):,} per window)"
    )
    table.caption = (
        f"shifted: psi ≥ {thresholds.psi:g} (numeric), linf ≥ {thresholds.linf:g} (categorical); "
        f"windows under {thresholds.small_sample:,} rows: chi-squared p < {thresholds.alpha:g} (BH-adjusted)"
    )
    for column in ("feature", "kind", "verdict", "largest change", "at", "shifted windows"):
        table.add_column(column)
    for f in report.features:
        largest = f.largest
        change, at = "", ""
        if largest is not None:
            i = f.shifts.index(largest)
            change = (
                f"p={largest.p_value:.2g}"
                if largest.p_value is not None
                else f"{largest.method} {largest.statistic:.3f}"
            )
            at = f"{report.starts[i + 1]:%Y-%m-%d}"
        verdict = {"stable": "[green]stable[/]", "shifted": "[red]SHIFTED[/]"}.get(f.verdict, f.verdict)
        shifted = ", ".join(f"{report.starts[i]:%Y-%m-%d}" for i in f.shifted_at[:3])
        more = len(f.shifted_at) - 3
        table.add_row(f.name, f.kind, verdict, change, at, shifted + (f" +{more}" if more > 0 else ""))
    console.print(table)
    for after, before in report.gaps:
        err_console.print(f"note: no rows between {after:%Y-%m-%d %H:%M} and {before:%Y-%m-%d %H:%M} UTC")
    for name, reason in report.skipped.items():
        err_console.print(f"note: {name} not measured: {reason}")
    document = {"view": view, "version": found.version, **report.to_dict()}
    if json_path is not None:
        json_path.write_text(json.dumps(document, indent=2, default=str))
    if html is not None:
        from keel.validation._html import render_stability_html

        html.write_text(render_stability_html(view, found.version, document))
    if report.failed:
        err_console.print(f"{len(report.shifted)} feature(s) shifted: {', '.join(report.shifted)}")
        raise typer.Exit(1)


@validate_app.command("skew")
def skew(
    model: Annotated[str, typer.Argument(help="The model version: NAME@ALIAS or NAME:VERSION.")],
    sample: Annotated[
        int, typer.Option("--sample", "-n", help="Entities per view to compare online and offline.", min=1)
    ] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the entity sample.")] = 0,
    window: Annotated[
        str, typer.Option("--window", "-w", help="The prediction log's window, back from now: 1d, 7d, 12h ...")
    ] = "7d",
    psi: Annotated[float, typer.Option("--psi", help="PSI at which a numeric feature is skewed.", min=0)] = 0.2,
    linf: Annotated[
        float, typer.Option("--linf", help="L-infinity at which a categorical feature is skewed.", min=0)
    ] = 0.1,
    json_path: JsonOption = None,
    html: HtmlOption = None,
    project: ProjectOption = Path("."),
) -> None:
    """Training/serving skew of a model: its views' online values against the offline store's for a sample of
    entities, and the features it was served (its prediction log) against its training set. Exit 1 on skew."""
    from datetime import timedelta

    from keel.engines._windows import Window
    from keel.errors import ValidationError
    from keel.validation import ShiftThresholds

    parsed = Window.parse(window)
    if parsed.kind != "fixed":
        raise ValidationError("the log's window must be a duration (1d, 7d, 12h ...), not calendar months")
    thresholds = ShiftThresholds(psi=psi, linf=linf)
    with open_project(project) as proj:
        report = proj.skew(
            model, sample=sample, seed=seed, window=timedelta(microseconds=parsed.width_us), thresholds=thresholds
        )
    online = Table(title=f"{report.model}: online store against offline store")
    for column in ("view", "version", "sampled", "same", "value differs", "missing", "behind", "online newer", "late"):
        online.add_column(column, justify="left" if column == "view" else "right")
    for o in report.online:
        c = o.cases

        def cell(n: int) -> str:
            return f"[red]{n:,}[/]" if n else "0"

        online.add_row(
            o.view,
            f"v{o.version}",
            f"{o.sampled:,} of {o.entities:,}",
            f"{c['same']:,}",
            cell(c["value differs"]),
            cell(c["missing online"]),
            cell(c["behind offline"]),
            cell(c["online newer"]),
            f"{c['not yet materialized']:,}",
        )
    console.print(online)
    for o in report.online:
        for feature, n in o.features.items():
            console.print(f"  {o.view}.{feature}: {n:,} sampled entities differ", highlight=False)
        for warning in o.warnings:
            err_console.print(f"note: {o.view}: {warning}")
    served = report.serving
    if served is not None:
        title = f"{report.model}: served features against training ({served.rows:,} logged rows)"
        table = Table(title=title)
        for column in ("feature", "kind", "method", "distance", "threshold", "verdict"):
            table.add_column(column)
        for f in served.features:
            s = f.shift
            shown = f"p={s.p_value:.2g}" if s.p_value is not None else f"{s.statistic:.3f}"
            verdict = "[red]SKEWED[/]" if s.shifted else "[green]as trained[/]"
            table.add_row(f.name, s.kind, s.method, shown, f"{s.threshold:g}", verdict)
        console.print(table)
        for name, reason in served.skipped.items():
            err_console.print(f"note: {name} not compared: {reason}")
    for note in report.notes:
        err_console.print(f"note: {note}")
    document = report.to_dict()
    if json_path is not None:
        json_path.write_text(json.dumps(document, indent=2, default=str))
    if html is not None:
        from keel.validation._html import render_skew_html

        html.write_text(render_skew_html(document))
    if report.failed:
        err_console.print("training/serving skew found")
        raise typer.Exit(1)
