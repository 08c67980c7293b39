"""Web UI benchmark: the server time of the UI's pages on a big catalog, against the raw SQL that fetches their rows.

Catalog (seeded, built once per run, not timed; SQLite, written in bulk): 10,000 runs of 4 specs with 4 metrics and
a dozen parameters each (lineage included), 1,000 model versions (10 models x 100 versions, each with an
annotation, 3 aliases and 20 alias moves per model), 200 feature-view versions (20 views x 10 versions, with
per-column statistics). ``--quick``: 500 runs, 100 model versions (1 model), 20 view versions.

A page's server time is the time of the JSON API call the page makes (the page itself is a constant shell of
about 700 bytes): the request handed to the app as ASGI on one event loop, answered in full (middleware, routing,
validation, the endpoint on the threadpool, JSON encoding), with no socket or test-client thread in between
(Starlette's ``TestClient`` alone adds about 4 ms a request, more than most pages cost). The baseline is the
same rows fetched with plain ``sqlite3`` on the same database file and decoded (``json.loads`` of the JSON
columns): the ceiling no page can beat.

Workloads (one JSON line each; target <= 3x for each):

``ui.runs_page``
    ``GET /api/runs`` (newest 50 runs, the total, the filter facets) vs the same four queries.
``ui.runs_page_by_metric``
    ``GET /api/runs?sort=metric.roc_auc`` (sorted inside the ``metrics`` JSON) vs the same query by hand.
``ui.run_page``
    ``GET /api/runs/{id}`` vs ``SELECT * FROM keel_runs WHERE id = ?``.
``ui.compare``
    ``GET /api/compare?runs=`` 5 runs vs ``SELECT * ... WHERE id IN (5 ids)``.
``ui.model_page``
    ``GET /api/models/{name}`` (100 versions with annotations, aliases and run metrics; alias history;
    analyses) vs the same queries.

Each timed sample makes ``calls_per_sample`` calls on each side (200 for the run page and compare, 50 for the model
page, 10 for the runs pages), so the medians are of that many calls, in a steady state on both sides (SQLite's
statement cache warm for the baseline). Every line's ``checks`` carry ``payload_bytes`` (the API answer's size) and
``payload_bytes_small`` (the same page over a catalog a tenth the size, built alongside);
``payload_independent_of_catalog`` is true when the two differ by less than 5% — the pages are paged, so their size
must not grow with the catalog.

Run ``python bench/ui.py`` (about a minute) or ``python bench/ui.py --quick`` (seconds).
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

SEED = 20261207
FULL = {"runs": 10_000, "models": 10, "versions_per_model": 100, "views": 20, "versions_per_view": 10}
QUICK = {"runs": 500, "models": 1, "versions_per_model": 100, "views": 2, "versions_per_view": 10}
TARGET = 3.0
PAGE_SIZE = 50
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def run_id(i: int) -> str:
    return f"{i:032x}"


def build(root: Path, sizes: dict[str, int]) -> Any:
    """A project at ``root`` whose catalog holds ``sizes``' rows (bulk inserts in one transaction)."""
    import sqlalchemy as sa

    import keel
    from keel.catalog import _schema

    root.mkdir(parents=True, exist_ok=True)
    project = keel.Project.open(root)
    rng = random.Random(SEED)
    specs = ["churn", "upsell", "fraud", "ltv"]
    runs = []
    for i in range(sizes["runs"]):
        at = T0 + timedelta(minutes=i)
        params = {
            "estimator": {"C": round(rng.uniform(0.01, 10), 4), "max_iter": 500, "penalty": "l2", "tol": 0.0001},
            "split": {"kind": "random", "validation_fraction": 0.2, "seed": i},
            "features": ["activity:*", "profile:age"],
        }
        runs.append(
            {
                "id": run_id(i),
                "spec": specs[i % 4],
                "status": "failed" if i % 50 == 49 else "finished",
                "started_at": at,
                "finished_at": at + timedelta(seconds=30),
                "spec_snapshot": {"name": specs[i % 4]},
                "params": params,
                "metrics": {k: round(rng.uniform(0.5, 0.99), 4) for k in ("roc_auc", "accuracy", "f1", "log_loss")},
                "durations": {"build": 1.5, "fit": 10.25, "evaluate": 0.5, "total": 12.25},
                "lineage": {
                    "feature_versions": {"activity": 1 + i % 10, "profile": 1},
                    "feature_digests": {"activity": "a" * 64, "profile": "b" * 64},
                    "training_set_digest": "c" * 64,
                    "libraries": {"scikit-learn": "1.6.1", "pandas": "2.2.3", "numpy": "2.2.1"},
                    "git_commit": "d" * 40,
                },
                "error": "failed" if i % 50 == 49 else None,
                "package_digest": "e" * 64,
                "package_format": "skops",
            }
        )
    versions, notes, aliases, history = [], [], [], []
    for m in range(sizes["models"]):
        name = f"model_{m:02d}"
        for v in range(1, sizes["versions_per_model"] + 1):
            at = T0 + timedelta(hours=v)
            rid = run_id((m * sizes["versions_per_model"] + v) % sizes["runs"])
            versions.append(
                {
                    "name": name,
                    "version": v,
                    "run_id": rid,
                    "package_digest": "e" * 64,
                    "package_format": "skops",
                    "created_at": at,
                }
            )
            notes.append(
                {"name": name, "version": v, "description": f"version {v}", "tags": {"team": "ml"}, "updated_at": at}
            )
        for alias, v in (("champion", 90), ("challenger", 100), ("staging", 95)):
            aliases.append({"name": name, "alias": alias, "version": v, "updated_at": T0})
        for k in range(20):
            history.append(
                {
                    "name": name,
                    "alias": "champion",
                    "from_version": k or None,
                    "to_version": k + 1,
                    "reason": "keel models promote",
                    "at": T0 + timedelta(hours=k),
                }
            )
    statistics = {
        f"f{c}": {
            "dtype": "float64",
            "count": 100_000,
            "nulls": 12,
            "min": 0.0,
            "max": 1.0,
            "mean": 0.5,
            "std": 0.29,
            "quantiles": {f"p{q:02d}": q / 100 for q in (1, 5, 25, 50, 75, 95, 99)},
        }
        for c in range(8)
    }
    features = []
    for w in range(sizes["views"]):
        for v in range(1, sizes["versions_per_view"] + 1):
            features.append(
                {
                    "view": f"view_{w:02d}",
                    "version": v,
                    "definition_version": 1,
                    "definition_hash": "f" * 64,
                    "location": f"view_{w:02d}/v{v}",
                    "files": [{"path": "part-0.parquet", "sha256": "0" * 64}],
                    "row_count": 100_000,
                    "event_time_min": T0,
                    "event_time_max": T0 + timedelta(days=30),
                    "data_digest": "1" * 64,
                    "columns": {"features": {f"f{c}": "float64" for c in range(8)}},
                    "statistics": statistics,
                    "has_duplicates": False,
                    "created_at": T0 + timedelta(days=v),
                }
            )
    with project.catalog._write() as conn:  # bulk: the catalog's own writers commit one row per transaction
        conn.execute(sa.insert(_schema.runs), runs)
        conn.execute(sa.insert(_schema.model_versions), versions)
        conn.execute(sa.insert(_schema.model_annotations), notes)
        conn.execute(sa.insert(_schema.aliases), aliases)
        conn.execute(sa.insert(_schema.alias_history), history)
        conn.execute(sa.insert(_schema.feature_versions), features)
    return project


class AsgiCaller:
    """GET requests handed straight to an ASGI app on one event loop; returns ``(status, body)``."""

    def __init__(self, app: Any) -> None:
        import asyncio

        self.app = app
        self.loop = asyncio.new_event_loop()

    def get(self, url: str) -> tuple[int, bytes]:
        path, _, query = url.partition("?")
        return self.loop.run_until_complete(self._get(path, query))

    def get_many(self, url: str, calls: int) -> tuple[int, bytes]:
        """``calls`` requests one after the other on the running loop, as a server's loop answers them (one
        ``run_until_complete`` for all, whose own cost would otherwise be counted per request); the last answer."""
        path, _, query = url.partition("?")

        async def many() -> tuple[int, bytes]:
            answer = (0, b"")
            for _ in range(calls):
                answer = await self._get(path, query)
            return answer

        return self.loop.run_until_complete(many())

    async def _get(self, path: str, query: str) -> tuple[int, bytes]:
        from urllib.parse import unquote

        status, body = 0, []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": unquote(path),
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1:8765")],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8765),
        }
        await self.app(scope, receive, send)
        return status, b"".join(body)

    def close(self) -> None:
        self.loop.close()


# -- the baseline: the same rows by hand ---------------------------------------------------------------------------
def _rows(db: sqlite3.Connection, sql: str, args: tuple[Any, ...] = (), json_columns: tuple[str, ...] = ()) -> Any:
    cursor = db.execute(sql, args)
    names = [d[0] for d in cursor.description]
    out = []
    for row in cursor.fetchall():
        record = dict(zip(names, row, strict=True))
        for column in json_columns:
            if record.get(column) is not None:
                record[column] = json.loads(record[column])
        out.append(record)
    return out


def raw_runs_page(db: sqlite3.Connection, order_by: str) -> Any:
    total = db.execute("SELECT count(*) FROM keel_runs").fetchone()[0]
    rows = _rows(
        db,
        "SELECT id, spec, status, started_at, finished_at, metrics FROM keel_runs "
        f"ORDER BY {order_by} LIMIT {PAGE_SIZE}",
        json_columns=("metrics",),
    )
    specs = db.execute("SELECT DISTINCT spec FROM keel_runs ORDER BY spec").fetchall()
    statuses = db.execute("SELECT DISTINCT status FROM keel_runs ORDER BY status").fetchall()
    recent = [json.loads(m) for (m,) in db.execute("SELECT metrics FROM keel_runs ORDER BY started_at DESC LIMIT 20")]
    return total, rows, specs, statuses, recent


RUN_JSON = ("spec_snapshot", "params", "metrics", "durations", "lineage")


def raw_model_page(db: sqlite3.Connection, name: str) -> Any:
    total = db.execute("SELECT count(*) FROM keel_model_versions WHERE name = ?", (name,)).fetchone()[0]
    versions = _rows(
        db,
        "SELECT v.*, a.description, a.tags, r.metrics FROM keel_model_versions v "
        "LEFT JOIN keel_model_annotations a ON a.name = v.name AND a.version = v.version "
        "LEFT JOIN keel_runs r ON r.id = v.run_id WHERE v.name = ? ORDER BY v.version DESC LIMIT 200",
        (name,),
        ("tags", "metrics"),
    )
    aliases = db.execute("SELECT alias, version FROM keel_aliases WHERE name = ?", (name,)).fetchall()
    history = _rows(db, "SELECT * FROM keel_alias_history WHERE name = ? ORDER BY id", (name,))
    analyses = _rows(
        db, "SELECT * FROM keel_model_analyses WHERE name = ? ORDER BY created_at DESC", (name,), ("summary",)
    )
    return total, versions, aliases, history, analyses


# -- workloads -----------------------------------------------------------------------------------------------------
#: Calls per timed sample: a page answered in a fraction of a millisecond is timed over many calls, on both sides
#: alike, so that the clock's and the first call's costs do not decide the ratio.
CALLS = {"runs_page": 10, "runs_page_by_metric": 10, "run_page": 200, "compare": 200, "model_page": 50}


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__.splitlines()[0])
    args = common.parse_args(p, argv)
    sizes = QUICK if args.quick else FULL
    small = {k: max(1, v // 10) if k in ("runs", "models", "views") else v for k, v in sizes.items()}

    from keel.ui import create_app

    with tempfile.TemporaryDirectory(prefix="keel-bench-ui-") as tmp:
        common.log(f"building a catalog of {sizes} and one of {small}")
        big, little = build(Path(tmp) / "big", sizes), build(Path(tmp) / "small", small)
        client, small_client = AsgiCaller(create_app(big)), AsgiCaller(create_app(little))
        database = big.catalog.url.removeprefix("sqlite:///")
        db = sqlite3.connect(database, check_same_thread=False)
        five = [run_id(i) for i in (3, 77, 150, 299, 420)]
        workloads: list[tuple[str, str, Any, str]] = [
            (
                "runs_page",
                "/api/runs",
                lambda: raw_runs_page(db, "started_at DESC, id DESC"),
                "sqlite3: count + page of 50 + facets",
            ),
            (
                "runs_page_by_metric",
                "/api/runs?sort=metric.roc_auc&order=desc",
                lambda: raw_runs_page(
                    db, "json_extract(metrics, '$.roc_auc') IS NULL, json_extract(metrics, '$.roc_auc') DESC, id DESC"
                ),
                "sqlite3: the same, ordered by json_extract",
            ),
            (
                "run_page",
                f"/api/runs/{run_id(1234 % sizes['runs'])}",
                lambda: _rows(db, "SELECT * FROM keel_runs WHERE id = ?", (run_id(1234 % sizes["runs"]),), RUN_JSON),
                "sqlite3: one run by id",
            ),
            (
                "compare",
                "/api/compare?runs=" + ",".join(five),
                lambda: _rows(db, f"SELECT * FROM keel_runs WHERE id IN ({','.join('?' * 5)})", tuple(five), RUN_JSON),
                "sqlite3: 5 runs by id",
            ),
            ("model_page", "/api/models/model_00", lambda: raw_model_page(db, "model_00"), "sqlite3: the same queries"),
        ]
        small_urls = {  # the same page over the small catalog (its runs are fewer: ids taken modulo its size)
            "run_page": f"/api/runs/{run_id(1234 % small['runs'])}",
            "compare": "/api/compare?runs=" + ",".join(run_id(i % small["runs"]) for i in (3, 77, 150, 299, 420)),
        }
        for name, url, raw, baseline_name in workloads:
            bench = f"ui.{name}"
            if not common.selected(args, bench):
                continue

            calls = CALLS[name]

            def keel_side(url: str = url, calls: int = calls) -> int:
                status, body = client.get_many(url, calls)
                assert status == 200, body[:500]
                return len(body)

            def raw_side(raw: Any = raw, calls: int = calls) -> Any:
                for _ in range(calls):
                    found = raw()
                return found

            timings = common.interleaved({"keel": keel_side, "baseline": raw_side}, runs=args.runs, warmup=args.warmup)
            payload = int(timings["keel"].last)
            status, small_body = small_client.get(small_urls.get(name, url))
            assert status == 200, small_body[:500]
            payload_small = len(small_body)
            line = common.result(
                bench,
                params={**sizes, "page_size": PAGE_SIZE, "url": url, "calls_per_sample": calls},
                keel=timings["keel"],
                baseline_name=baseline_name,
                baseline=timings["baseline"],
                ratio_max=TARGET,
                checks={
                    "payload_bytes": payload,
                    "payload_bytes_small": payload_small,
                    "payload_independent_of_catalog": abs(payload - payload_small) <= 0.05 * payload_small,
                },
            )
            common.emit(line, args)
        db.close()
        client.close()
        small_client.close()
        big.close()
        little.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
