"""Looking at runs: list (newest first, or by a metric), show, compare."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

from keel.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

    from keel.catalog import Catalog, RunRecord


class Runs:
    """The project's training runs, as recorded in the catalog.

    Reading them first records as ``failed`` ("process died: ...") the ``running`` runs whose process is known to
    have died (see :meth:`keel.catalog.SqlCatalog.fail_dead_runs`): a killed training never says ``running`` for
    ever.
    """

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def list(
        self,
        spec: str | None = None,
        *,
        status: str | None = None,
        sort_by: str | None = None,
        ascending: bool = False,
        limit: int | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first; with ``sort_by`` a metric name, best first (highest, or lowest if ``ascending``).

        Runs without that metric come last.
        """
        self._catalog.fail_dead_runs()
        runs = self._catalog.runs(spec, status=status)
        if sort_by is not None:
            if runs and not any(sort_by in r.metrics for r in runs):
                known = sorted({m for r in runs for m in r.metrics})
                raise ValidationError(f"no run has metric {sort_by!r}; metrics: {', '.join(known)}", field="sort_by")
            with_metric = [r for r in runs if isinstance(r.metrics.get(sort_by), int | float)]
            without = [r for r in runs if not isinstance(r.metrics.get(sort_by), int | float)]
            with_metric.sort(key=lambda r: r.metrics[sort_by], reverse=not ascending)
            runs = with_metric + without
        return runs[:limit] if limit is not None else runs

    def get(self, run_id: str) -> RunRecord:
        """One run by id or unique prefix."""
        self._catalog.fail_dead_runs()
        return self._catalog.run(run_id)

    def compare(self, run_ids: builtins.list[str]) -> pd.DataFrame:
        """A table with one column per run: status, metrics, then the params that differ between them."""
        import pandas as pd

        runs = [self.get(r) for r in run_ids]
        if not runs:
            raise ValidationError("compare needs at least one run id")
        rows: dict[str, dict[str, Any]] = {}
        for r in runs:
            col = r.id[:8]
            rows.setdefault("spec", {})[col] = r.spec
            rows.setdefault("status", {})[col] = r.status
            rows.setdefault("started_at", {})[col] = r.started_at.isoformat(timespec="seconds")
            for k, v in r.metrics.items():
                rows.setdefault(f"metric.{k}", {})[col] = v
        flat = [r.flat_params() for r in runs]
        for key in sorted(set().union(*flat)):
            values = [f.get(key) for f in flat]
            if len({repr(v) for v in values}) > 1:
                rows[f"param.{key}"] = {r.id[:8]: v for r, v in zip(runs, values, strict=True)}
        return pd.DataFrame.from_dict(rows, orient="index")
