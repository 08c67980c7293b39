"""Feature commands: list views, their versions, and build point-in-time training sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from keel._tables import read_table
from keel.cli._common import ProjectOption, console, open_project, write_table
from keel.errors import IntegrityError, NotFoundError, ValidationError

app = typer.Typer(help="Feature views: list them, their versions, and point-in-time retrieval.", no_args_is_help=True)


@app.command("list")
def list_views(project: ProjectOption = Path(".")) -> None:
    """List registered feature views with their latest ingested version."""
    with open_project(project) as proj:
        table = Table(title="Feature views")
        for column in ("view", "entities", "features", "ttl", "latest version", "rows"):
            table.add_column(column)
        for view in proj.feature_views():
            try:
                latest = proj.catalog.feature_version(view.name)
                version, rows = f"v{latest.version}", f"{latest.row_count:,}"
            except NotFoundError:
                version, rows = "not ingested", ""
            table.add_row(
                view.name,
                ", ".join(view.entity_names),
                ", ".join(view.feature_names),
                str(view.ttl) if view.ttl else "none",
                version,
                rows,
            )
    console.print(table)


@app.command("versions")
def versions(
    view: Annotated[str, typer.Argument(help="The feature view.")],
    project: ProjectOption = Path("."),
) -> None:
    """List every ingested version of a view: rows, time range, digest, definition version."""
    with open_project(project) as proj:
        found = proj.feature_versions(view)
    table = Table(title=f"Versions of {view}")
    for column in ("version", "created at", "rows", "event time range", "digest", "definition", "expectations"):
        table.add_column(column)
    for v in found:
        span = f"{v.event_time_min:%Y-%m-%d} → {v.event_time_max:%Y-%m-%d}" if v.event_time_min else ""
        table.add_row(
            f"v{v.version}",
            f"{v.created_at:%Y-%m-%d %H:%M:%S}",
            f"{v.row_count:,}",
            span,
            v.data_digest[:12],
            f"v{v.definition_version}",
            _expectations(v.validation),
        )
    console.print(table)


@app.command("show")
def show(
    view: Annotated[str, typer.Argument(help="The feature view.")],
    version: Annotated[int | None, typer.Option("--version", help="The version (default: the latest).", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the version as JSON.")] = False,
    project: ProjectOption = Path("."),
) -> None:
    """Show a view's ingested version: its columns, rows, event times, statistics and validation results."""
    import json

    with open_project(project) as proj:
        found = proj.catalog.feature_version(view, version)
    if as_json:
        document = {
            "view": found.view,
            "version": found.version,
            "definition_version": found.definition_version,
            "rows": found.row_count,
            "event_time_min": found.event_time_min,
            "event_time_max": found.event_time_max,
            "data_digest": found.data_digest,
            "columns": found.columns,
            "statistics": found.statistics,
            "validation": found.validation,
            "created_at": found.created_at,
        }
        console.print_json(json.dumps(document, default=str))
        return
    span = (
        f"{found.event_time_min:%Y-%m-%d %H:%M} → {found.event_time_max:%Y-%m-%d %H:%M}" if found.event_time_min else ""
    )
    console.print(
        f"[bold]{view} v{found.version}[/] (definition v{found.definition_version}): {found.row_count:,} rows, "
        f"{span}, digest {found.data_digest[:12]}"
    )
    stats = Table(title="Columns")
    for column in ("column", "dtype", "count", "nulls", "min", "p50", "max", "top"):
        stats.add_column(column)
    for name, st in found.statistics.items():
        top = ", ".join(f"{v} ({n:,})" for v, n in (st.get("top") or [])[:3])
        stats.add_row(
            name,
            str(st.get("dtype", "")),
            f"{st.get('count', 0):,}",
            f"{st.get('nulls', 0):,}",
            _short(st.get("min")),
            _short((st.get("quantiles") or {}).get("p50")),
            _short(st.get("max")),
            top,
        )
    console.print(stats)
    validation = found.validation
    if validation is None:
        console.print("No expectations were checked on this version.")
        return
    results = Table(title=f"Expectations ({validation.get('policy')})")
    for column in ("expectation", "severity", "result", "failing rows", "first row"):
        results.add_column(column)
    for r in validation.get("results", []):
        verdict = (
            "[green]pass[/]" if r["passed"] else ("[red]FAIL[/]" if r["severity"] == "error" else "[yellow]warn[/]")
        )
        failing = "" if r["passed"] else f"{r['failed']:,} ({r['share']:.2%})"
        results.add_row(
            str(r["describe"]), r["severity"], verdict, failing, "" if r["passed"] else str(r.get("first") or "")
        )
    console.print(results)


def _short(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)[:19]


def _expectations(validation: dict[str, Any] | None) -> str:
    """A version's validation in a few words: none checked, all passed, or what failed."""
    if validation is None:
        return "—"
    failures = validation.get("failures", [])
    if not failures:
        return f"[green]{len(validation.get('results', []))} passed[/]"
    names = "; ".join(str(f.get("describe")) for f in failures[:3]) + ("; …" if len(failures) > 3 else "")
    return f"[yellow]{len(failures)} failed[/]: {names}"


@app.command("historical")
def historical(
    entities: Annotated[Path, typer.Option("--entities", "-e", help="Parquet or CSV: join keys and a timestamp.")],
    features: Annotated[
        list[str],
        typer.Option("--features", "-f", help="Feature refs: view:feature, view:*, view@3:feature."),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the result (.parquet or .csv).")],
    timestamp: Annotated[
        str | None,
        typer.Option(help="The entity file's timestamp column (default: its only datetime column)."),
    ] = None,
    full_feature_names: Annotated[bool, typer.Option(help="Name columns view__feature.")] = False,
    at_rest: Annotated[
        bool | None,
        typer.Option(
            "--at-rest/--in-memory",
            help="Join the Parquet entity file where it lies and write a folder of Parquet files, never loading "
            "it here (default with engine: spark); --in-memory reads it into this process (default otherwise).",
        ),
    ] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Join features point in time onto an entity file and write the training set."""
    refs = [r.strip() for item in features for r in item.split(",") if r.strip()]
    with open_project(project) as proj:
        if at_rest if at_rest is not None else proj.config.engine != "local":
            written = proj.historical_features(
                str(entities), refs, timestamp=timestamp, full_feature_names=full_feature_names, into=str(output)
            )
            console.print(
                f"Wrote {written.rows:,} rows to {output} ({len(written.files)} file(s), {proj.engine.name} engine)"
            )
            return
        entity_df = read_table(entities)
        result = proj.historical_features(entity_df, refs, timestamp=timestamp, full_feature_names=full_feature_names)
    write_table(result, output)
    served = ", ".join(f"{v}@{n}" for v, n in result.attrs.get("keel_feature_versions", {}).items())
    console.print(f"Wrote {len(result):,} rows × {result.shape[1]} columns to {output} (versions: {served})")


@app.command("get")
def get(
    features: Annotated[list[str], typer.Option("--features", "-f", help="Feature refs: view:feature or view:*.")],
    entity: Annotated[
        list[str], typer.Option("--entity", "-e", help="An entity as key=value[,key=value]; repeat for more.")
    ],
    full_feature_names: Annotated[bool, typer.Option(help="Name columns view__feature.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    project: ProjectOption = Path("."),
) -> None:
    """Read features from the online store for some entities."""
    import json

    rows = [_parse_entity(e) for e in entity]
    refs = [r.strip() for item in features for r in item.split(",") if r.strip()]
    with open_project(project) as proj:
        result = proj.online_features(refs, rows, full_feature_names=full_feature_names)
    if as_json:
        console.print_json(json.dumps({"features": result.to_dict(), "versions": result.versions}, default=str))
        return
    table = Table(title="Online features")
    keys = list(dict.fromkeys(k for row in rows for k in row))
    for column in [*keys, *result.values]:
        table.add_column(column)
    for i, row in enumerate(rows):
        table.add_row(*[str(row.get(k, "")) for k in keys], *[_show(result.values[c][i]) for c in result.values])
    console.print(table)
    console.print("versions: " + ", ".join(f"{v} v{n}" for v, n in result.versions.items()))


def _show(value: object) -> str:
    return "[dim]null[/]" if value is None else str(value)


def _parse_entity(text: str) -> dict[str, object]:
    """``customer_id=42,region=eu`` -> ``{"customer_id": "42", "region": "eu"}``."""
    row: dict[str, object] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValidationError(f"--entity {text!r}: expected key=value[,key=value]", field="entity")
        # Values stay text: the online read converts each key to its column's type ("007" stays a string key).
        row[key.strip()] = value.strip()
    return row


@app.command("verify")
def verify(
    views: Annotated[list[str] | None, typer.Argument(help="Views to check (default: all).")] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Re-hash every ingested version's files against the SHA-256 recorded in the catalog."""
    with open_project(project) as proj:
        damaged = proj.verify(views)
        checked = len(list(views)) if views else len(proj.feature_views())
    if not damaged:
        console.print(f"All versions of {checked} view(s) are intact.")
        return
    for version, files in damaged.items():
        console.print(f"[red]{version}[/]: damaged or missing: {', '.join(files)}")
    raise IntegrityError(f"{len(damaged)} version(s) failed verification; restore them from a backup or re-ingest")
