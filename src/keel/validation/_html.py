"""A validation report as one self-contained HTML page: no external assets, no JavaScript.

One row per expectation with its verdict, failing rows and their share drawn as an inline SVG bar. Every text
from the data or the user (view, feature and category names, patterns) is escaped with :func:`html.escape`: a
feature called ``<script>`` is shown, never run.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["render_html", "render_skew_html", "render_stability_html"]

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1000px;padding:0 1rem;color:#1a202c}"
    "figure{display:inline-block;margin:.5rem 1rem .5rem 0;vertical-align:top}figcaption{font-weight:600}"
    "table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #e2e8f0;padding:.35rem .6rem;"
    "text-align:left}th{background:#f7fafc}td.n{text-align:right;font-variant-numeric:tabular-nums}"
    ".pass{color:#2f855a}.fail{color:#c53030;font-weight:600}.warn{color:#b7791f;font-weight:600}"
)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _bar(share: float) -> str:
    """The failing share as a bar 160 px wide at 100% (at least 1 px when anything fails)."""
    width = 0 if share <= 0 else max(1.0, min(1.0, share) * 160)
    return (
        f'<svg width="160" height="10" role="img" aria-label="{share:.2%} of rows fail">'
        f'<rect width="160" height="10" fill="#edf2f7"/><rect width="{width:.1f}" height="10" fill="#c53030"/></svg>'
    )


def _feature_figures(report: dict[str, Any], statistics: dict[str, Any]) -> list[str]:
    """Per column an expectation names, its distribution in the version (from the stored statistics): the quantile
    function of a number, the most frequent values of a text."""
    from keel._svg import column_chart, line_chart

    named: dict[str, None] = {}
    for r in report.get("results", []):
        spec = r.get("expectation") or {}
        for column in [spec.get("feature"), *(spec.get("columns") or [])]:
            if column in statistics:
                named[column] = None
    figures = []
    for column in named:
        st = statistics[column]
        quantiles = st.get("quantiles") or {}
        top = st.get("top") or []
        caption = f"{_e(column)} ({_e(st.get('dtype', ''))}, {int(st.get('nulls') or 0):,} missing)"
        if quantiles:
            labels = ["min", *quantiles, "max"]
            values = [st.get("min"), *quantiles.values(), st.get("max")]
            points = [(lab, float(v)) for lab, v in zip(labels, values, strict=True) if isinstance(v, int | float)]
            chart = line_chart([p[0] for p in points], [p[1] for p in points], width=420)
            figures.append(f"<figure><figcaption>{caption}: quantiles</figcaption>{chart}</figure>")
        elif top:
            chart = column_chart([str(v) for v, _ in top[:20]], [float(n) for _, n in top[:20]])
            figures.append(f"<figure><figcaption>{caption}: most frequent values</figcaption>{chart}</figure>")
    return figures


def render_html(view: str, version: int, report: dict[str, Any], statistics: dict[str, Any] | None = None) -> str:
    """The page of a :meth:`~keel.validation.ValidationReport.to_dict` of ``view``'s ``version``; with the version's
    ``statistics``, a plot of each column an expectation names."""
    results = report.get("results", [])
    failed = [r for r in results if not r["passed"]]
    errors = [r for r in failed if r["severity"] == "error"]
    rows = []
    for r in results:
        if r["passed"]:
            verdict, css, count, share, first = "pass", "pass", "", "", ""
        else:
            verdict, css = ("FAIL", "fail") if r["severity"] == "error" else ("warn", "warn")
            count = f"{int(r['failed']):,}"
            share = _bar(float(r["share"])) + f" {float(r['share']):.2%}"
            first = "" if r.get("first") is None else _e(r["first"])
        rows.append(
            f"<tr><td>{_e(r['describe'])}</td><td>{_e(r['severity'])}</td><td class='{css}'>{verdict}</td>"
            f"<td class='n'>{count}</td><td>{share}</td><td class='n'>{first}</td>"
            f"<td>{_e(r.get('detail') or '')}</td></tr>"
        )
    summary = f"{len(errors)} error-level and {len(failed) - len(errors)} warning-level expectation(s) failed"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(view)} v{version}: validation</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_e(view)} v{version}</h1><p>{report.get('rows', 0):,} rows, {len(results)} expectation(s): "
        f"{summary if failed else 'every expectation holds'}.</p>"
        "<table><tr><th>expectation</th><th>severity</th><th>result</th><th>failing rows</th><th>share</th>"
        "<th>first row</th><th>detail</th></tr>"
        + "".join(rows)
        + "</table>"
        + ("<h2>Columns</h2>" + "".join(_feature_figures(report, statistics)) if statistics else "")
        + "</body></html>\n"
    )


def _page(title: str, body: list[str]) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_STYLE}.muted{{color:#718096}}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )


def _verdict_cell(shifted: bool, severity: str = "error", words: tuple[str, str] = ("stable", "shifted")) -> str:
    if not shifted:
        return f"<td class='pass'>{words[0]}</td>"
    return f"<td class='fail'>{words[1].upper()}</td>" if severity == "error" else f"<td class='warn'>{words[1]}</td>"


def render_stability_html(view: str, version: int, report: dict[str, Any]) -> str:
    """The page of a :meth:`~keel.validation.StabilityReport.to_dict`: a table of verdicts, then per feature the
    deciding distance between consecutive windows over time, and the two windows of its largest change."""
    from keel._svg import bar_chart, line_chart

    windows = report.get("windows", [])
    method = report["thresholds"]
    features = report.get("features", [])
    body = [
        f"<h1>{_e(view)} v{version}: stability</h1>",
        f"<p>{len(windows)} {_e(report.get('window'))} window(s) with rows, {len(features)} feature(s); "
        f"{len(report.get('shifted', []))} shifted.</p>",
    ]
    for gap in report.get("gaps", []):
        body.append(f"<p class='warn'>No rows from {_e(gap['after'])} to {_e(gap['before'])}.</p>")
    body.append("<table><tr><th>feature</th><th>kind</th><th>verdict</th><th>largest change</th><th>at</th></tr>")
    figures = []
    for f in features:
        comparisons = f.get("comparisons", [])
        deciding = method["numeric_method"] if f["kind"] == "numeric" else method["categorical_method"]
        values = [float(c["distances"][deciding]) for c in comparisons]
        top = max(range(len(values)), key=values.__getitem__) if values else None
        largest = "" if top is None else f"{deciding} {values[top]:.3g}"
        at = "" if top is None else _e(comparisons[top]["to"][:10])
        body.append(
            f"<tr><td>{_e(f['name'])}</td><td>{_e(f['kind'])}</td>"
            f"{_verdict_cell(f['verdict'] == 'shifted', report.get('severity', 'error'))}"
            f"<td class='n'>{largest}</td><td>{at}</td></tr>"
        )
        if top is None:
            continue
        labels = [c["to"][:10] for c in comparisons]
        chart = line_chart(
            labels, values, threshold=float(method[deciding]), marked=[bool(c["shifted"]) for c in comparisons]
        )
        shares = f["shares"]
        bars = bar_chart(list(f["buckets"]), shares[top], shares[top + 1])
        figures.append(
            f"<h2>{_e(f['name'])}</h2><figure><figcaption>{_e(deciding)} between consecutive windows</figcaption>"
            f"{chart}</figure><figure><figcaption>{_e(comparisons[top]['from'][:10])} (grey) and "
            f"{_e(comparisons[top]['to'][:10])} (blue)</figcaption>{bars}</figure>"
        )
    body.append("</table>")
    skipped = report.get("skipped") or {}
    if skipped:
        body.append(
            "<p class='muted'>Not measured: " + "; ".join(f"{_e(k)} ({_e(v)})" for k, v in skipped.items()) + "</p>"
        )
    return _page(f"{view} v{version}: stability", body + figures)


def render_skew_html(report: dict[str, Any]) -> str:
    """The page of a :meth:`~keel.validation._skew.SkewReport.to_dict`: the online/offline comparison per view with
    example entities, then each served feature's distribution against training."""
    from keel._svg import bar_chart

    model = report["model"]
    body = [f"<h1>{_e(model)}: training/serving skew</h1>", "<h2>Online store against offline store</h2>"]
    body.append(
        "<table><tr><th>view</th><th>version</th><th>sampled</th><th>same</th><th>value differs</th>"
        "<th>missing online</th><th>behind offline</th><th>online newer</th><th>not yet materialized</th></tr>"
    )
    examples = []
    for o in report.get("online", []):
        c = o["cases"]
        cells = "".join(
            f"<td class='n{' fail' if c[k] and k != 'same' else ''}'>{int(c[k]):,}</td>"
            for k in ("same", "value differs", "missing online", "behind offline", "online newer")
        )
        body.append(
            f"<tr><td>{_e(o['view'])}</td><td>v{int(o['version'])}</td>"
            f"<td class='n'>{int(o['sampled']):,} of {int(o['entities']):,}</td>{cells}"
            f"<td class='n'>{int(c['not yet materialized']):,}</td></tr>"
        )
        for e in o.get("examples", []):
            examples.append(
                f"<tr><td>{_e(o['view'])}</td><td>{_e(e['case'])}</td><td>{_e(e['key'])}</td>"
                f"<td>{_e(e['feature'] or '')}</td><td>{_e(e['online'])}</td><td>{_e(e['offline'])}</td>"
                f"<td>{_e(e['online_time'] or '')}</td><td>{_e(e['offline_time'] or '')}</td></tr>"
            )
        for warning in o.get("warnings", []):
            body.append(f"<tr><td colspan='9' class='warn'>{_e(o['view'])}: {_e(warning)}</td></tr>")
    body.append("</table>")
    if examples:
        body.append(
            "<h3>Examples</h3><table><tr><th>view</th><th>case</th><th>entity</th><th>feature</th><th>online</th>"
            "<th>offline</th><th>online event time</th><th>offline event time</th></tr>"
            + "".join(examples)
            + "</table>"
        )
    served = report.get("serving")
    figures = []
    if served is not None:
        body.append(f"<h2>Served features against training</h2><p>{int(served['rows']):,} logged rows.</p>")
        body.append("<table><tr><th>feature</th><th>kind</th><th>method</th><th>distance</th><th>verdict</th></tr>")
        for f in served.get("features", []):
            shown = f"p={f['p_value']:.2g}" if f["p_value"] is not None else f"{f['statistic']:.3f}"
            body.append(
                f"<tr><td>{_e(f['name'])}</td><td>{_e(f['kind'])}</td><td>{_e(f['method'])}</td>"
                f"<td class='n'>{shown}</td>{_verdict_cell(bool(f['shifted']), words=('as trained', 'skewed'))}</tr>"
            )
            figures.append(
                f"<figure><figcaption>{_e(f['name'])}: training (grey) and served (blue)</figcaption>"
                f"{bar_chart(list(f['buckets']), f['training'], f['serving'])}</figure>"
            )
        body.append("</table>")
    for note in report.get("notes", []):
        body.append(f"<p class='muted'>{_e(note)}</p>")
    return _page(f"{model}: skew", body + figures)
