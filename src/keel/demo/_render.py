"""How the demo prints: values as cells, and the tables of the feature steps."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

    from keel.definitions._apply import ApplyPlan
    from keel.offline import IngestResult

__all__ = [
    "FIRST_ROWS",
    "METRIC_LABELS",
    "cell",
    "first_rows",
    "fmt",
    "ingest_table",
    "metric",
    "plan_table",
    "statistics_tables",
    "table",
]

#: Rows shown of a frame, a training set or a file written.
FIRST_ROWS = 3
#: How the demo names metrics; any other is shown as recorded.
METRIC_LABELS = {"roc_auc": "ROC AUC", "log_loss": "log loss", "brier": "Brier score", "f1": "F1"}


def table(*columns: str, title: str, show_header: bool = True) -> Table:
    """A table titled on the left, as every table of the demo is."""
    return Table(*columns, title=title, title_justify="left", show_header=show_header)


def fmt(value: object, *, whole: bool = False) -> str:
    """A statistic: numbers with thousands separators (``whole``: a float that is an integer shown as one)."""
    if value is None:
        return "—"
    if whole and isinstance(value, float) and value.is_integer():
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def cell(value: object) -> str:
    """A value of a frame: missing as a dash, a midnight timestamp as its date, floats to two decimals."""
    import pandas as pd

    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return "—"
    if isinstance(value, pd.Timestamp):
        return f"{value:%Y-%m-%d}" if value == value.normalize() else f"{value:%Y-%m-%d %H:%M}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def metric(value: object) -> str:
    """A metric's value to three decimals, or a dash when it is undefined."""
    return f"{value:.3f}" if isinstance(value, float) else "—"


def first_rows(frame: pd.DataFrame) -> Table:
    """The first rows of ``frame``, transposed: a dozen columns side by side do not fit a terminal, a few rows do."""
    head = frame.head(FIRST_ROWS)
    out = table("column", *(f"row {i}" for i in range(len(head))), title="first rows")
    for column in head.columns:
        out.add_row(str(column), *(cell(v) for v in head[column]))
    return out


def plan_table(plan: ApplyPlan, seconds: float) -> Table:
    """What ``apply`` did: one row per definition, marked added, changed, removed or unchanged."""
    out = table("", "kind", "name", "version", title=f"apply plan ({seconds:.2f}s)")
    symbol = {"add": "[green]+[/]", "change": "[yellow]~[/]", "remove": "[red]-[/]", "unchanged": " "}
    for item in plan.items:
        out.add_row(symbol[item.action], item.kind.replace("_", " "), item.name, f"v{item.version}")
    return out


def ingest_table(results: list[IngestResult]) -> Table:
    """The versions ingested: rows, event-time range, digest and time taken."""
    out = table("view", "rows", "event times", "digest", "time", title="ingested versions")
    for r in results:
        v = r.version
        span = (
            f"{v.event_time_min:%Y-%m-%d} → {v.event_time_max:%Y-%m-%d}"
            if v.event_time_min and v.event_time_max
            else "—"
        )
        status = "" if r.created else " (unchanged)"
        out.add_row(f"{r.view} v{v.version}{status}", f"{v.row_count:,}", span, v.data_digest[:8], f"{r.seconds:.2f}s")
    return out


def statistics_tables(results: list[IngestResult]) -> list[Table]:
    """The statistics recorded with each version: numbers summarised, categories by their top values."""
    numbers = table("feature", "nulls", "mean", "std", "min", "median", "max", title="numeric features")
    categories = table("feature", "nulls", "distinct", "top values", title="categorical features")
    for r in results:
        # The catalog stores the version's columns as JSON: "features" maps each feature to its dtype.
        features = cast("dict[str, str]", r.version.columns.get("features") or {})
        for feature, dtype in features.items():
            s = r.version.statistics.get(feature) or {}
            if dtype in ("int64", "float64"):
                whole = dtype == "int64"
                numbers.add_row(
                    feature,
                    fmt(s.get("nulls")),
                    fmt(s.get("mean")),
                    fmt(s.get("std")),
                    fmt(s.get("min"), whole=whole),
                    fmt((s.get("quantiles") or {}).get("p50"), whole=whole),
                    fmt(s.get("max"), whole=whole),
                )
            else:
                top = ", ".join(
                    f"{value} {count / max(r.version.row_count, 1):.0%}" for value, count in s.get("top") or []
                )
                categories.add_row(feature, fmt(s.get("nulls")), fmt(s.get("distinct")), top)
    return [numbers, categories]
