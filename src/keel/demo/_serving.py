"""The demo's inference steps: features served online, the model served over HTTP with its log, batch scoring."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from keel.demo import CHAMPION, DEMO_SPEC
from keel.demo._features import labels
from keel.demo._render import FIRST_ROWS, cell, table
from keel.features import FeatureRef

if TYPE_CHECKING:
    import pandas as pd

    from keel.project import Project

__all__ = ["json_value", "latest_refs", "one_native_thread", "post", "step_batch", "step_online", "step_serve"]

#: How many customers the online step pushes fresh activity for.
_PUSHED = 3
#: Single-customer requests the serve step times (each another customer: none is answered from the cache).
_TIMED_REQUESTS = 20
#: Customers the serve step sends by key: the online step pushed fresh activity for the first three.
_BY_KEY = _PUSHED + 1


def one_native_thread() -> Any:
    """One native (OpenMP/BLAS) thread while scoring: small batches of tree ensembles are quicker so, and a
    busy machine does not stall the thread pool (the trainer does the same)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def latest_refs(refs: list[str]) -> list[str]:
    """``refs`` unpinned: the same features from the latest versions of their views (``view@1:f`` → ``view:f``)."""
    return [str(replace(FeatureRef.parse(ref), version=None)) for ref in refs]


def post(url: str, body: dict[str, Any], *, request_id: str | None = None) -> tuple[int, dict[str, Any], float]:
    """POST ``body`` as JSON to ``url`` (no proxy): the status, the JSON answer and the milliseconds it took."""
    import urllib.error
    import urllib.request

    import orjson

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    headers = {"Content-Type": "application/json"}
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    request = urllib.request.Request(url, data=orjson.dumps(body), headers=headers, method="POST")
    started = time.perf_counter()
    try:
        with opener.open(request, timeout=30) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    return status, orjson.loads(payload), (time.perf_counter() - started) * 1000


def json_value(value: object) -> object:
    """A feature value read online, as a JSON request would send it."""
    import pandas as pd

    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    item = getattr(value, "item", None)
    return item() if callable(item) else value


# -- online features -----------------------------------------------------------------------------------------
def step_online(project: Project, *, console: Console) -> dict[str, Any]:
    """Materialize, push today's activity for a few customers, read features online, score them, and check
    that offline retrieval at the same instant gives the same values and the same predictions."""
    import pandas as pd

    ref = f"{DEMO_SPEC}@{CHAMPION}"
    console.rule("[bold]9. Serve features online[/]: materialize, push, read, score")
    started = time.perf_counter()
    results = project.materialize()
    materialized = table("view", "version", "entities written", "note", title="materialized into the online store")
    for r in results:
        ttl = project.feature_view(r.view).ttl
        note = f"TTL {ttl.days} d: the example's 2025 data has expired" if ttl is not None and not r.rows else ""
        materialized.add_row(r.view, f"v{r.version}", f"{r.rows:,}", note)
    console.print(materialized)

    package = project.models.load(ref)
    # The champion's features, unpinned: the latest versions, which now include the pushed rows offline too.
    refs = latest_refs(package.feature_refs)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    offline = pd.read_parquet(project.root / "data" / "activity.parquet")
    latest = offline.sort_values("event_time").groupby("customer_id").tail(1)
    fresh = latest.sort_values("customer_id").head(_PUSHED).copy()
    fresh["event_time"] = now
    project.push("customer_activity", fresh, to="both")
    ids = [int(i) for i in fresh["customer_id"]]
    stale = int(latest.sort_values("customer_id").iloc[_PUSHED]["customer_id"])
    online = project.online_features(refs, [{"customer_id": i} for i in [*ids, stale]]).to_frame()
    at_now = pd.DataFrame({"customer_id": [*ids, stale], "ts": now})
    offline_frame = project.historical_features(at_now, refs).drop(columns=["customer_id", "ts"])
    same_values = online.equals(offline_frame.reset_index(drop=True)[online.columns])
    p_online = package.predict_proba(online)[:, 1]
    p_offline = package.predict_proba(offline_frame)[:, 1]
    same_predictions = bool((p_online == p_offline).all())
    shown = table("customer", "spend 30d", "tickets", "plan", "P(churn) online", title="read online, scored")
    for i, customer in enumerate([*ids, stale]):
        shown.add_row(
            str(customer),
            cell(online.at[i, "spend_30d"]),
            cell(online.at[i, "support_tickets_30d"]),
            cell(online.at[i, "plan"]),
            f"{p_online[i]:.0%}",
        )
    console.print(shown)
    console.print(
        f"Customers {', '.join(map(str, ids))} got today's activity pushed; {stale}'s is older than the 7-day TTL "
        "and reads as missing, online as offline. "
        + (
            "Online values and predictions are identical to offline retrieval at the same instant."
            if same_values and same_predictions
            else "[red]Online and offline disagree.[/]"
        )
    )
    return {
        "materialized": {r.view: r.rows for r in results},
        "pushed": ids,
        "stale": stale,
        "online_equals_offline": same_values,
        "predictions_identical": same_predictions,
        "p_churn": [float(p) for p in p_online],
        "seconds": time.perf_counter() - started,
    }


# -- the prediction service ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Requests:
    """What the serve step sends: customers by key, raw values with a key overridden, one customer at a time."""

    keyed: list[int]
    raw: dict[str, object]
    override: dict[str, object]
    timed: list[int]


@dataclass(frozen=True)
class _Answers:
    """What the service answered the serve step's requests, and how long each took."""

    by_key: dict[str, Any]
    first_ms: float
    mixed: dict[str, Any]
    latencies: list[float]
    again: dict[str, Any]
    cached_ms: float
    statuses: list[int]
    bad_status: int
    bad: dict[str, Any]


def _requests(project: Project, package: Any) -> tuple[_Requests, pd.DataFrame]:
    """The serve step's requests, and the online rows of the customers it sends by key."""
    import pandas as pd

    # The customers the online step pushed fresh activity for (the first ones), and the next, whose expired.
    activity = pd.read_parquet(project.root / "data" / "activity.parquet", columns=["customer_id"])
    customers = sorted(int(c) for c in activity["customer_id"].unique())
    keyed = customers[:_BY_KEY]
    online = project.online_features(latest_refs(package.feature_refs), [{"customer_id": c} for c in keyed]).to_frame()
    # Raw values: the first customer's, with a plan never seen in training, an absurd spend and a null.
    raw = {name: json_value(online.at[0, name]) for name in package.feature_names if name in online.columns}
    raw.update({"plan": "platinum", "spend_30d": 1_000_000.0, "sessions_7d": None})
    override: dict[str, object] = {"customer_id": keyed[0], "support_tickets_30d": 5, "sessions_7d": 0}
    timed = customers[_BY_KEY : _BY_KEY + _TIMED_REQUESTS]
    return _Requests(keyed, raw, override, timed), online


def _send(predict_url: str, requests: _Requests) -> _Answers:
    """Send the requests: by key, raw and overridden, one customer at a time, by key again (cached), a bad one."""
    by_key_body = {"records": [{"customer_id": c} for c in requests.keyed]}
    status, by_key, first_ms = post(predict_url, by_key_body)
    statuses = [status]
    status, mixed, _ = post(predict_url, {"records": [requests.raw, requests.override]})
    statuses.append(status)
    latencies = []
    for customer in requests.timed:
        status, _, ms = post(predict_url, {"records": [{"customer_id": customer}]})
        statuses.append(status)
        latencies.append(ms)
    status, again, cached_ms = post(predict_url, by_key_body)
    statuses.append(status)
    bad_status, bad, _ = post(predict_url, {"records": [{"customer_id": requests.keyed[0], "spend_30d": "a lot"}]})
    return _Answers(by_key, first_ms, mixed, latencies, again, cached_ms, statuses, bad_status, bad)


def _answers_table(requests: _Requests, answers: _Answers, positive: str) -> Table:
    answered = table("record", "sent", "P(churn)", "warnings", title="answers of POST /v1/models/churn/predict")
    by_key, mixed = answers.by_key, answers.mixed
    rows: list[tuple[str, str, dict[str, Any], list[dict[str, Any]]]] = [
        (f"customer {c}", "entity key: features looked up online", p, w)
        for c, p, w in zip(requests.keyed, by_key["probabilities"], by_key["warnings"], strict=True)
    ]
    rows.append(("raw values", "every feature in the request", mixed["probabilities"][0], mixed["warnings"][0]))
    rows.append(
        (
            f"customer {requests.keyed[0]}",
            "key + 5 tickets, 0 sessions",
            mixed["probabilities"][1],
            mixed["warnings"][1],
        )
    )
    for label, sent, proba, warnings in rows:
        shown = "; ".join(w["message"] for w in warnings[:2]) + (
            f" (+{len(warnings) - 2})" if len(warnings) > 2 else ""
        )
        answered.add_row(label, sent, f"{proba[positive]:.0%}", shown or "—")
    return answered


def _show_log(project: Project, version: int, positive: str, console: Console) -> tuple[pd.DataFrame, int]:
    """Print the first rows of the prediction log the service wrote; return the log and its file count."""
    log = project.predictions(DEMO_SPEC, version=version)
    folder = Path(project.config.offline) / "_prediction_log" / f"model={DEMO_SPEC}"
    files = len(list(folder.rglob("part-*.parquet")))
    columns = ["request_id", "record", "key.customer_id", "feature.plan", "feature.spend_30d", "prediction"]
    columns += [c for c in log.columns if c == f"proba.{positive}"]
    title = f"the prediction log: {len(log):,} rows in {files} file(s) under .keel/offline/_prediction_log/"
    head = table(*columns, title=title)
    for _, row in log.head(FIRST_ROWS + 2).iterrows():
        head.add_row(*[str(row[c])[:8] if c == "request_id" else cell(row[c]) for c in columns])
    console.print(head)
    console.print(
        f"One row per scored record ({len(log.columns)} columns: keys, the features scored before imputation, "
        "the prediction and its probabilities), written by a background thread; read it with "
        "project.predictions()."
    )
    return log, files


def step_serve(project: Project, *, console: Console) -> dict[str, Any]:
    """Serve the champion over HTTP on a free local port: requests by entity key, by raw values and both, their
    warnings and latency; then the prediction log the service wrote, read back."""
    import numpy as np

    from keel.serving import background_server

    ref = f"{DEMO_SPEC}@{CHAMPION}"
    console.rule(f"[bold]10. Serve[/] {ref} over HTTP, and log every prediction")
    started = time.perf_counter()
    app = project.prediction_app([ref])
    model = app.state.models[DEMO_SPEC]
    package = model.package
    requests, online = _requests(project, package)
    with one_native_thread(), background_server(app) as url:
        answers = _send(f"{url}/v1/models/{DEMO_SPEC}/predict", requests)
    served_seconds = time.perf_counter() - started  # the server is shut down: the log is written out

    positive = [str(c) for c in package.classes or [0, 1]][-1]
    expected = package.predict_proba(online)[:, -1]
    served = np.array([p[positive] for p in answers.by_key["probabilities"]])
    identical = bool((served == expected).all()) and answers.again == answers.by_key
    console.print(_answers_table(requests, answers, positive))
    error = answers.bad.get("error", {})
    console.print(f"A bad value is refused with {answers.bad_status}: {error.get('message')}")
    latencies = answers.latencies
    p50 = float(np.median(latencies)) if latencies else 0.0
    console.print(
        f"Served at {url}: first request {answers.first_ms:.1f} ms; {len(latencies)} one-customer requests p50 "
        f"{p50:.1f} ms (max {max(latencies, default=0.0):.1f} ms), each with an online lookup; the repeated request "
        f"{answers.cached_ms:.1f} ms from the cache. "
        + (
            "The served probabilities are the package's own on the same online rows."
            if identical
            else "[red]The served probabilities differ from the package's.[/]"
        )
    )
    log, files = _show_log(project, model.version, positive, console)
    return {
        "url": url,
        "statuses": answers.statuses,
        "bad_status": answers.bad_status,
        "bad_field": error.get("field"),
        "by_key": [
            {"customer_id": c, "p_churn": float(p[positive]), "warnings": sorted({w["type"] for w in w_})}
            for c, p, w_ in zip(
                requests.keyed, answers.by_key["probabilities"], answers.by_key["warnings"], strict=True
            )
        ],
        "raw_warnings": sorted({w["type"] for w in answers.mixed["warnings"][0]}),
        "override_p_churn": float(answers.mixed["probabilities"][1][positive]),
        "served_equals_package": identical,
        "latency_ms": {
            "first": answers.first_ms,
            "p50": p50,
            "max": max(latencies, default=0.0),
            "cached": answers.cached_ms,
        },
        "records": _BY_KEY * 2 + 2 + len(requests.timed),
        "log": _log_figures(log, files),
        "seconds": served_seconds,
    }


def _log_figures(log: pd.DataFrame, files: int) -> dict[str, Any]:
    keys = log["key.customer_id"].head(_BY_KEY).tolist() if "key.customer_id" in log.columns else []
    return {
        "rows": len(log),
        "files": files,
        "columns": list(log.columns),
        "requests": int(log["request_id"].nunique()) if len(log) else 0,
        "keys": [None if k is None or k != k else int(k) for k in keys],
    }


# -- batch scoring -------------------------------------------------------------------------------------------
def step_batch(project: Project, *, console: Console) -> dict[str, Any]:
    """Batch-score every label row: entity keys and as-of times, features joined point in time offline."""
    import numpy as np
    import pandas as pd

    ref = f"{DEMO_SPEC}@{CHAMPION}"
    console.rule(f"[bold]11. Batch-score[/] with {ref}: entity keys and as-of times, features from the offline store")
    entities = labels(project)[["customer_id", "event_timestamp"]]
    source = project.root / "data" / "to_score.parquet"
    output = project.root / "data" / "scores.parquet"
    entities.to_parquet(source, index=False)
    with one_native_thread():
        result = project.predict_batch(
            ref, source, output, features="offline", timestamp="event_timestamp", resume=False
        )
    scores = pd.read_parquet(output)
    rate = result.rows / result.seconds if result.seconds > 0 else 0.0
    package = project.models.load(ref)
    proba_column = f"proba_{(package.classes or [0, 1])[-1]}"
    # The same rows scored in process, from the same point-in-time features: the batch must agree exactly.
    last = (entities["event_timestamp"] == entities["event_timestamp"].max()).to_numpy()
    month = entities[last].reset_index(drop=True)
    with one_native_thread():
        expected = package.predict_proba(project.historical_features(month, package.feature_refs))[:, -1]
    identical = bool(np.array_equal(scores.loc[last, proba_column].to_numpy(), expected))
    chunks = f"{result.chunks} chunk" + ("s" if result.chunks != 1 else "")
    console.print(
        f"{result.rows:,} rows scored in {result.seconds:.2f}s ({rate:,.0f} rows/s) in {chunks} by "
        f"{result.model}; written to data/{output.name} in input order. "
        + (
            "The last month's scores are identical to in-process scoring."
            if identical
            else "[red]Batch and in-process scores differ.[/]"
        )
    )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    first = _first_scores(entities, scores, proba_column)
    console.print(_first_scores_table(first))
    return {
        "model": result.model,
        "rows": result.rows,
        "input_rows": len(entities),
        "chunks": result.chunks,
        "failures": len(result.failures),
        "seconds": result.seconds,
        "rows_per_second": rate,
        "output": str(output),
        "columns": list(scores.columns),
        "identical_to_package": identical,
        "last_month": {int(c): float(p) for c, p in zip(month["customer_id"], expected, strict=True)},
        "first_rows": [{"customer_id": r["customer_id"], "p_churn": r["p_churn"]} for r in first],
    }


def _first_scores(entities: pd.DataFrame, scores: pd.DataFrame, proba_column: str) -> list[dict[str, Any]]:
    """The first rows scored in batch: the row, its customer and as-of time, P(churn) and the prediction."""
    count = min(len(scores), FIRST_ROWS + 2)
    ids = entities["customer_id"].to_numpy()[:count]
    times = entities["event_timestamp"].iloc[:count].tolist()
    probabilities = scores[proba_column].to_numpy()[:count]
    rows = scores["row_number"].astype(str).tolist() if "row_number" in scores.columns else None
    return [
        {
            "row": rows[i] if rows is not None else str(i),
            "customer_id": int(ids[i]),
            "as_of": times[i],
            "p_churn": float(probabilities[i]),
            "prediction": str(scores["prediction"].iat[i]),
        }
        for i in range(count)
    ]


def _first_scores_table(first: list[dict[str, Any]]) -> Table:
    shown = table("row", "customer", "as of", "P(churn)", "prediction", title="first rows")
    for r in first:
        shown.add_row(r["row"], str(r["customer_id"]), cell(r["as_of"]), f"{r['p_churn']:.0%}", r["prediction"])
    return shown
