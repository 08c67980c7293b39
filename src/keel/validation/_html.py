"""A validation report as one self-contained HTML page: no external assets, no JavaScript.

One row per expectation with its verdict, failing rows and their share drawn as an inline SVG bar. Every text
from the data or the user (view, feature and category names, patterns) is escaped with :func:`html.escape`: a
feature called ``<script>`` is shown, never run.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["render_html"]

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1000px;padding:0 1rem;color:#1a202c}"
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


def render_html(view: str, version: int, report: dict[str, Any]) -> str:
    """The page of a :meth:`~keel.validation.ValidationReport.to_dict` of ``view``'s ``version``."""
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
        "<th>first row</th><th>detail</th></tr>" + "".join(rows) + "</table></body></html>\n"
    )
