"""`keel analyze`: a model version's performance by segment, weak segments, curves and comparison, stored with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from keel.cli._common import ProjectOption, console, err_console, open_project
from keel.cli._models import print_diff

DataOption = Annotated[
    str,
    typer.Option(
        "--data",
        "-d",
        help="holdout (default) or training: the run's split rebuilt as trained; log: the prediction "
        "log with --labels; or a Parquet/CSV file with the label column.",
    ),
]
JsonOption = Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")]
HtmlOption = Annotated[Path | None, typer.Option("--html", help="Also write the self-contained HTML report here.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the resamples.")]
StoreOption = Annotated[bool, typer.Option("--store/--no-store", help="Store the report with the version.")]
LabelsOption = Annotated[Path | None, typer.Option("--labels", help="Labels of the logged predictions (--data log).")]


def _write(stored: Any, model: str, json_path: Path | None, html: Path | None) -> None:
    """Say where the report is stored; write its JSON and HTML where asked."""
    if stored.record is not None:
        console.print(f"stored as analysis {stored.record.id[:12]} of {model}", highlight=False)
    if json_path is not None:
        json_path.write_text(json.dumps(stored.document, indent=2, default=str))
    if html is not None:
        html.write_text(stored.page.html())


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    return f"{float(value):.{digits}g}"


def _data(value: str) -> str | Path:
    return value if value in ("holdout", "training", "log") else Path(value)


def analyze(
    model: Annotated[str, typer.Argument(help="The model version: NAME@ALIAS or NAME:VERSION.")],
    data: DataOption = "holdout",
    labels: Annotated[
        Path | None, typer.Option("--labels", help="Labels of the logged predictions (--data log).")
    ] = None,
    segment: Annotated[
        list[str] | None,
        typer.Option(
            "--segment",
            "-s",
            help="A segment: a column (plan), bins (age:4, age[30,60]) or an expression "
            "('age >= 60 and plan == \"basic\"'); repeatable.",
        ),
    ] = None,
    compare: Annotated[
        str | None, typer.Option("--compare", help="Another version (NAME@challenger): compared by segment.")
    ] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="The primary metric (roc_auc, accuracy, mae ...).")
    ] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples.", min=100)] = 1000,
    no_weak: Annotated[bool, typer.Option("--no-weak", help="Do not search for weak segments.")] = False,
    seed: SeedOption = 0,
    store: StoreOption = True,
    json_path: JsonOption = None,
    html: HtmlOption = None,
    project: ProjectOption = Path("."),
) -> None:
    """Performance of a model version by segment (bootstrap intervals), the weak segments found, a classifier's
    curves or a regressor's residuals, and with --compare the other version's difference on every segment. Stored
    with the version; exit 1 when the compared version is significantly worse on a segment."""
    with open_project(project) as proj:
        result, stored = proj.analyses.analyze(
            model,
            data=_data(data),
            labels=labels,
            segments=segment or [],
            compare=compare,
            metric=metric,
            find_weak=not no_weak,
            n_boot=bootstrap,
            seed=seed,
            store=store,
        )
    overall = result.segments.overall.metrics[result.metric]
    console.print(
        f"[bold]{result.model}[/]: {result.rows:,} rows ({result.data}); {result.metric} {_num(overall.value)} "
        f"[{_num(overall.low)}, {_num(overall.high)}]",
        highlight=False,
    )
    shown = [result.metric, *[m for m in result.segments.overall.metrics if m != result.metric][:2]]
    table = Table(title=f"metrics by segment (95% intervals, {result.segments.n_boot:,} resamples)")
    for column in ("segment", "rows", *shown, "note"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for s in [result.segments.overall, *result.segments.segments]:
        cells = [
            f"{_num(s.metrics[m].value)} [{_num(s.metrics[m].low, 3)}, {_num(s.metrics[m].high, 3)}]" for m in shown
        ]
        table.add_row(s.name, f"{s.rows:,}", *cells, s.reason or "", style="dim" if not s.reliable else None)
    console.print(table)
    if result.weak is not None:
        if result.weak.segments:
            weak = Table(
                title=f"weak segments found ({result.weak.metric}, BH-corrected over {len(result.weak.tested):,})"
            )
            for column in ("segment", "rows", result.weak.metric, "rest", "adjusted p"):
                weak.add_column(column)
            for w in result.weak.segments[:10]:
                weak.add_row(w.name, f"{w.rows:,}", _num(w.value), _num(w.rest), _num(w.p_adjusted, 2), style="red")
            console.print(weak)
        else:
            console.print(f"no segment is significantly worse than the rest ({len(result.weak.tested):,} tested)")
    worse = False
    if result.comparison is not None:
        c = result.comparison
        table = Table(title=f"{result.challenger} − {result.model} on {c.metric} (paired bootstrap, {c.correction})")
        for column in ("segment", "rows", "champion", "challenger", "difference", "interval", "verdict"):
            table.add_column(column)
        for d in [c.overall, *c.segments]:
            verdict = "[red]WORSE[/]" if d.worse else ("" if d.reliable else "too small")
            table.add_row(
                d.name,
                f"{d.rows:,}",
                _num(d.champion),
                _num(d.challenger),
                f"{d.difference:+.4f}",
                f"[{d.low:+.4f}, {d.high:+.4f}]",
                verdict,
            )
        console.print(table)
        for reason in c.gate_reasons():
            err_console.print(reason, highlight=False, markup=False)
        worse = not c.passes
    _write(stored, result.model, json_path, html)
    if worse:
        raise typer.Exit(1)


def importance(
    model: Annotated[str, typer.Argument(help="The model version: NAME@ALIAS or NAME:VERSION.")],
    data: DataOption = "holdout",
    labels: Annotated[
        Path | None, typer.Option("--labels", help="Labels of the logged predictions (--data log).")
    ] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Permutations per feature.", min=2)] = 5,
    shap: Annotated[bool, typer.Option("--shap/--no-shap", help="SHAP values (needs keel[shap]).")] = True,
    explain: Annotated[
        list[int] | None, typer.Option("--explain", help="Explain the prediction of this row (repeatable).")
    ] = None,
    seed: SeedOption = 0,
    store: StoreOption = True,
    json_path: JsonOption = None,
    html: HtmlOption = None,
    project: ProjectOption = Path("."),
) -> None:
    """Feature importance on held-out rows: permutation importance with intervals (correlated features grouped),
    mutual information, impurity importance (biased toward many-valued features) and SHAP values."""
    with open_project(project) as proj:
        stored = proj.analyses.importance(
            model,
            data=_data(data),
            labels=labels,
            repeats=repeats,
            shap=shap,
            explain=explain or [],
            seed=seed,
            store=store,
        )
    document = stored.document
    metric = document["metric"]
    console.print(f"[bold]{document['model']}[/]: {document['rows']:,} rows ({document['data']})", highlight=False)
    table = Table(title=f"permutation importance: drop in {metric} ({repeats} repeats, 95% intervals)")
    for column in ("rank", "feature", "importance", "interval", "mutual information", "mean |SHAP|"):
        table.add_column(column)
    shap_values = (document.get("shap") or {}).get("importance", {})
    mi = document["mutual_information"]
    for rank, f in enumerate(document["permutation"]["features"], start=1):
        table.add_row(
            str(rank),
            f["name"],
            _num(f["mean"]),
            f"[{_num(f['ci_low'], 3)}, {_num(f['ci_high'], 3)}]",
            _num(mi.get(f["name"])) if f["name"] in mi else "",
            _num(shap_values.get(f["name"])) if f["name"] in shap_values else "",
            style="bold" if len(f["columns"]) > 1 else None,
        )
    console.print(table)
    for group in document["groups"]:
        err_console.print(f"note: correlated, measured together too: {', '.join(group)}")
    for note in document["notes"]:
        err_console.print(f"note: {note}")
    _write(stored, document["model"], json_path, html)


def select(
    model: Annotated[str, typer.Argument(help="The model version: NAME@ALIAS or NAME:VERSION.")],
    data: DataOption = "holdout",
    resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap resamples of the holdout.", min=2)] = 20,
    threshold: Annotated[
        float, typer.Option("--threshold", help="Share of resamples a feature must beat the noise in.", min=0, max=1)
    ] = 0.8,
    train: Annotated[
        bool, typer.Option("--train", help="Train the proposed subset with the same spec and register it.")
    ] = False,
    seed: SeedOption = 0,
    store: StoreOption = True,
    json_path: JsonOption = None,
    html: HtmlOption = None,
    project: ProjectOption = Path("."),
) -> None:
    """Stable feature selection: ranks across methods and bootstrap resamples of the holdout, a noise probe to beat,
    the proposed subset and its stability; with --train, the subset trained, registered and compared."""
    with open_project(project) as proj:
        stored, run = proj.analyses.select(
            model, data=_data(data), resamples=resamples, threshold=threshold, seed=seed, train=train, store=store
        )
        document = stored.document
        table = Table(title=f"{document['model']}: selection over {resamples} resamples of {document['rows']:,} rows")
        for column in ("feature", "selected", "frequency", "mean rank (permutation)"):
            table.add_column(column)
        for f in document["features"]:
            picked = f["name"] in document["selected"]
            table.add_row(
                f["name"],
                "[green]yes[/]" if picked else "",
                _num(f["frequency"], 3),
                _num(f["mean_rank"].get("permutation"), 3),
                style=None if picked else "dim",
            )
        console.print(table)
        stability = document.get("stability")
        console.print(
            f"proposed: {', '.join(document['selected_columns']) or 'nothing beats the noise'}; stability "
            f"{'undefined' if stability is None else f'{stability:.3f}'}",
            highlight=False,
        )
        if run is not None:
            version = proj.models.register(run, tags={"selected_from": document["model"]})
            subset = f"{version.name}:{version.version}"
            console.print(f"trained the subset: registered {subset} (run {run.id[:8]})", highlight=False)
            print_diff(proj.models.diff(document["model"], subset), document["model"], subset)
    _write(stored, document["model"], json_path, html)
