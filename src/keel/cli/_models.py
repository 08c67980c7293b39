"""Training and model commands: train, runs list/show/compare, models list/show/diff/promote/rollback/tag/verify."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from keel.cli._common import ProjectOption, console, open_project
from keel.errors import ValidationError

if TYPE_CHECKING:
    from keel.models import ModelDiff, PackageVerification

runs_app = typer.Typer(help="Training runs: list, show, compare.", no_args_is_help=True)
models_app = typer.Typer(help="The model registry: versions, aliases, lineage.", no_args_is_help=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if value is None:
        return "—"
    return str(value)


def train(
    spec: Annotated[str, typer.Argument(help="The training spec's name (declared in the project's modules).")],
    register: Annotated[bool, typer.Option("--register", help="Register the run as a new model version.")] = False,
    promote: Annotated[
        str | None, typer.Option(help="With --register: move this alias (e.g. champion) to the new version.")
    ] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Train a spec once: build the training set point in time, fit, evaluate, record the run."""
    from rich.status import Status

    if promote and not register:
        raise ValidationError("--promote needs --register", field="promote")
    with open_project(project) as proj:
        status = Status("training", console=console)
        if console.is_terminal:
            status.start()
        try:
            run = proj.train(spec, on_step=lambda step: status.update(f"{spec}: {step}"))
        finally:
            status.stop()
        table = Table(
            title=f"Run {run.id[:8]} of {spec} ({run.train_rows:,} training rows, "
            f"{run.validation_rows:,} validation rows)"
        )
        table.add_column("metric")
        table.add_column("validation", justify="right")
        for name, value in run.metrics.items():
            table.add_row(name, _fmt(value))
        console.print(table)
        if register:
            version = proj.models.register(run)
            console.print(f"Registered [bold]{version.name} v{version.version}[/] ({version.package_format})")
            if promote:
                proj.models.set_alias(version.name, promote, version.version, reason="keel train --promote")
                console.print(f"{promote} → v{version.version}")


@runs_app.command("list")
def runs_list(
    spec: Annotated[str | None, typer.Option(help="Only runs of this spec.")] = None,
    sort_by: Annotated[str | None, typer.Option(help="Sort by this metric, best first.")] = None,
    ascending: Annotated[bool, typer.Option(help="With --sort-by: lowest first (losses).")] = False,
    limit: Annotated[int, typer.Option(help="At most this many runs.", min=1)] = 20,
    project: ProjectOption = Path("."),
) -> None:
    """List runs, newest first (or best first by a metric)."""
    with open_project(project) as proj:
        runs = proj.runs.list(spec, sort_by=sort_by, ascending=ascending, limit=limit)
    metrics = list(dict.fromkeys(k for r in runs for k in r.metrics))[:6]
    table = Table(title="Runs")
    for column in ("run", "spec", "status", "started", *metrics):
        table.add_column(column)
    for r in runs:
        table.add_row(
            r.id[:8], r.spec, r.status, f"{r.started_at:%Y-%m-%d %H:%M:%S}", *[_fmt(r.metrics.get(m)) for m in metrics]
        )
    console.print(table)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix of 6+ characters).")],
    project: ProjectOption = Path("."),
) -> None:
    """Show a run: status, metrics, params, durations, lineage."""
    with open_project(project) as proj:
        r = proj.runs.get(run_id)
    console.print(f"[bold]Run {r.id}[/] of {r.spec}: {r.status}")
    if r.error:
        console.print(f"[red]error:[/] {r.error}")
    console.print_json(
        json.dumps(
            {
                "metrics": r.metrics,
                "params": r.params,
                "durations": r.durations,
                "lineage": r.lineage,
                "package": {"digest": r.package_digest, "format": r.package_format},
            },
            default=str,
        )
    )


@runs_app.command("compare")
def runs_compare(
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids (or prefixes).")],
    project: ProjectOption = Path("."),
) -> None:
    """Compare runs side by side: metrics and the params that differ."""
    with open_project(project) as proj:
        frame = proj.runs.compare(run_ids)
    table = Table(title="Runs compared")
    table.add_column("")
    for column in frame.columns:
        table.add_column(str(column))
    for index, row in frame.iterrows():
        table.add_row(str(index), *[_fmt(v) for v in row])
    console.print(table)


@models_app.command("list")
def models_list(
    name: Annotated[str | None, typer.Argument(help="Only versions of this model.")] = None,
    project: ProjectOption = Path("."),
) -> None:
    """List model versions with their aliases."""
    with open_project(project) as proj:
        versions = proj.models.versions(name)
        if name is not None and not versions:
            proj.models.get(name)  # says the model does not exist, listing those that do
        metrics = {v.run_id: proj.runs.get(v.run_id).metrics for v in versions}
    names = list(dict.fromkeys(k for m in metrics.values() for k in m))[:4]
    table = Table(title="Model versions")
    for column in ("model", "version", "aliases", "created", "format", *names):
        table.add_column(column)
    for v in versions:
        table.add_row(
            v.name,
            f"v{v.version}",
            ", ".join(v.aliases),
            f"{v.created_at:%Y-%m-%d %H:%M}",
            v.package_format,
            *[_fmt(metrics[v.run_id].get(k)) for k in names],
        )
    console.print(table)


@models_app.command("show")
def models_show(
    ref: Annotated[str, typer.Argument(help="churn:3, churn@champion or churn@latest.")],
    project: ProjectOption = Path("."),
) -> None:
    """Show a model version: run, metrics, features with versions, data digests, libraries."""
    with open_project(project) as proj:
        v = proj.models.get(ref)
        r = proj.runs.get(v.run_id)
        analyses = proj.catalog.model_analyses(v.name, version=v.version)
    console.print(f"[bold]{v.name} v{v.version}[/]  aliases: {', '.join(v.aliases) or '—'}  format: {v.package_format}")
    if v.description:
        console.print(v.description)
    console.print_json(
        json.dumps(
            {
                "run": r.id,
                "created_at": v.created_at,
                "tags": v.tags,
                "metrics": r.metrics,
                "lineage": r.lineage,
                "package_digest": v.package_digest,
            },
            default=str,
        )
    )
    if analyses:
        table = Table(title="analyses (keel analyze / importance / select)")
        for column in ("id", "kind", "created at", "summary"):
            table.add_column(column)
        for a in analyses:
            brief = {k: a.summary[k] for k in ("data", "weak_segments", "ranking", "selected") if k in a.summary}
            table.add_row(a.id[:12], a.kind, f"{a.created_at:%Y-%m-%d %H:%M}", json.dumps(brief, default=str)[:100])
        console.print(table)


@models_app.command("diff")
def models_diff(
    a: Annotated[str, typer.Argument(help="First version (churn:2).")],
    b: Annotated[str, typer.Argument(help="Second version (churn:3 or churn@challenger).")],
    project: ProjectOption = Path("."),
) -> None:
    """Compare two versions: params, metrics, feature set, data digests, library versions."""
    with open_project(project) as proj:
        d = proj.models.diff(a, b)
    print_diff(d, a, b)


def print_diff(d: ModelDiff, a: str, b: str) -> None:
    """A table of how version ``b`` differs from ``a``."""
    table = Table(title=f"{d.a.name} v{d.a.version} → {d.b.name} v{d.b.version}")
    for column in ("", a, b, "change"):
        table.add_column(column)
    for k, (x, y, delta) in d.metrics.items():
        table.add_row(f"metric {k}", _fmt(x), _fmt(y), _fmt(delta))
    for k, (x, y) in d.params.items():
        table.add_row(f"param {k}", _fmt(x), _fmt(y), "")
    for f in d.features_added:
        table.add_row(f"feature {f}", "", "✓", "added")
    for f in d.features_removed:
        table.add_row(f"feature {f}", "✓", "", "removed")
    for view, (x, y) in d.feature_versions_changed.items():
        table.add_row(f"view {view}", f"v{x}", f"v{y}", "version changed")
    for view, (x, y) in d.data_digests_changed.items():
        table.add_row(f"data {view}", (x or "—")[:12], (y or "—")[:12], "digest changed")
    table.add_row("training set", "", "", "changed" if d.training_set_changed else "identical")
    for lib, (x, y) in d.libraries.items():
        table.add_row(f"library {lib}", _fmt(x), _fmt(y), "")
    console.print(table)


@models_app.command("promote")
def models_promote(
    ref: Annotated[str, typer.Argument(help="The version to promote (churn:3).")],
    alias: Annotated[str, typer.Option(help="The alias to move.")] = "champion",
    reason: Annotated[str, typer.Option(help="Why (kept in the alias history).")] = "",
    project: ProjectOption = Path("."),
) -> None:
    """Move an alias (champion by default) to a version; the previous holder is remembered."""
    with open_project(project) as proj:
        v = proj.models.get(ref)
        change = proj.models.set_alias(v.name, alias, v.version, reason=reason or "keel models promote")
    before = f"v{change.from_version}" if change.from_version else "nobody"
    console.print(f"{v.name}@{alias}: {before} → v{change.to_version}")


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="The model.")],
    alias: Annotated[str, typer.Option(help="The alias to roll back.")] = "champion",
    project: ProjectOption = Path("."),
) -> None:
    """Give an alias back to the version that held it before its last move."""
    with open_project(project) as proj:
        change = proj.models.rollback(name, alias=alias)
    console.print(f"{name}@{alias}: v{change.from_version} → v{change.to_version} (rolled back)")


@models_app.command("tag")
def models_tag(
    ref: Annotated[str, typer.Argument(help="The version (churn:3).")],
    tags: Annotated[list[str] | None, typer.Argument(help="key=value to set, key= to remove.")] = None,
    description: Annotated[str | None, typer.Option(help="Set the description.")] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Set tags and the description of a version (notes about it; the version itself never changes)."""
    parsed: dict[str, str | None] = {}
    for item in tags or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValidationError(f"tag {item!r}: expected key=value (or key= to remove)", field="tags")
        parsed[key] = value or None
    with open_project(project) as proj:
        v = proj.models.tag(ref, description=description, **parsed)
    console.print(
        f"{v.name} v{v.version}: tags {v.tags or '{}'}" + (f", description: {v.description}" if v.description else "")
    )


#: The exit code of ``keel models verify`` when the package is altered, names a type outside the allowlist, or is
#: a pickle (which cannot be verified without running it).
EXIT_UNVERIFIED = 3


@models_app.command("verify")
def models_verify(
    ref: Annotated[str, typer.Argument(help="The version to audit (churn@champion, churn:3).")],
    trust_type: Annotated[
        list[str] | None,
        typer.Option(help="A class or function of your own to count as allowed (repeatable); adds to keel.yaml's."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the audit as JSON.")] = False,
    project: ProjectOption = Path("."),
) -> None:
    """Audit a stored package without loading it: its hash against the catalog, its format, and every type and
    function it names, allowed or not. Exit codes: 0 verified, 3 not (altered, a refused name, or pickle), 1 an
    error."""
    with open_project(project) as proj:
        result = proj.models.verify(ref, trusted_types=trust_type)
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
    else:
        _print_verification(result)
    if not result.ok:
        raise typer.Exit(EXIT_UNVERIFIED)


def _print_verification(result: PackageVerification) -> None:
    audit = result.audit
    table = Table(title=f"{result.name} v{result.version}: {len(audit.references)} names in a {audit.format} package")
    for column in ("name", "kind", "allowed"):
        table.add_column(column)
    for reference in audit.references:
        table.add_row(reference.name, reference.kind, "yes" if reference.allowed else "[red]no[/]")
    console.print(table)
    if result.hash_matches:
        console.print(f"hash: {result.digest} [green]matches[/] the catalog")
    else:
        console.print(f"hash: [red]{result.actual_digest} does not match[/] the catalog's {result.digest}")
    if audit.note:
        console.print(f"[yellow]{audit.note}[/]")
    if audit.refused:
        console.print(f"[red]refused[/]: {', '.join(audit.refused)} (a load would refuse the package)")
    console.print("[green]verified[/]" if result.ok else "[red]not verified[/]")
