"""The monitoring report as one self-contained HTML page: no external assets, no JavaScript, inline SVG charts.

Every piece of text from the report (model, feature and category names, sources, reasons) is escaped with
:func:`html.escape`, so a feature called ``<script>`` is shown, never run.
"""

from __future__ import annotations

import html
import math
from typing import Any

from keel._svg import CURRENT_COLOR, REFERENCE_COLOR, bar_chart

__all__ = ["render_html"]

DRIFT_COLOR = "#c53030"
OK_COLOR = "#2f855a"

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#1a202c;padding:0 1rem}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #e2e8f0;padding-bottom:.3rem}
.meta{color:#4a5568;margin:.2rem 0}
.banner{padding:1rem 1.2rem;border-radius:6px;margin:1.2rem 0;color:#fff}
.banner.crossed{background:#c53030}.banner.ok{background:#2f855a}
.banner ul{margin:.4rem 0 0 1.2rem;padding:0}
.flags span{display:inline-block;margin-right:1rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.92rem}
th,td{border-bottom:1px solid #e2e8f0;padding:.3rem .7rem;text-align:left}
th{background:#f7fafc}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.drifted td{background:#fff5f5}.yes{color:#c53030;font-weight:600}.no{color:#2f855a}
figure{display:inline-block;margin:.6rem 1rem .6rem 0;vertical-align:top}
figcaption{font-weight:600;margin-bottom:.2rem}
.legend span{margin-right:1rem;font-size:.85rem}
.swatch{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:middle}
.muted{color:#718096}
"""


def render_html(report: dict[str, Any]) -> str:
    """The report (its ``to_dict()`` form) as a complete HTML page.

    Expected keys: ``model``, ``version``, ``created_at``, ``window`` (``start``/``end``), ``reference`` and
    ``current`` (``rows``/``source``), ``drift`` (:meth:`DriftResult.to_dict`), ``quality``
    (:meth:`QualityResult.to_dict`), ``performance`` (a list of :meth:`WindowMetrics.to_dict`, or ``None``),
    ``validation_metrics`` and ``verdict`` (``drift``/``quality``/``decay``/``crossed``/``reasons``). Missing
    sections are left out rather than failing, so a partial report still renders.
    """
    model = str(report.get("model", "model"))
    version = report.get("version")
    title = f"{model} v{version}" if version is not None else model
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Monitoring report — {_e(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Monitoring report — {_e(title)}</h1>",
        *_header(report),
        *_verdict(report.get("verdict") or {}),
    ]
    drift = report.get("drift")
    if drift:
        parts += _drift_section(drift)
    quality = report.get("quality")
    if quality:
        parts += _quality_section(quality)
    parts += _performance_section(report.get("performance"), report.get("validation_metrics") or {})
    parts.append("</body></html>")
    return "\n".join(parts)


# -- text helpers ---------------------------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    if value is None or isinstance(value, bool):
        return "—" if value is None else str(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return _e(value)
    if not math.isfinite(x):
        return _e(x)
    if x != 0 and abs(x) < 10**-(digits):
        return f"{x:.1e}"
    return f"{x:.{digits}g}"


def _pct(value: Any) -> str:
    return "—" if value is None else f"{float(value):.1%}"


# -- sections -------------------------------------------------------------------------------------------------
def _header(report: dict[str, Any]) -> list[str]:
    window = report.get("window") or {}
    ref = report.get("reference") or {}
    cur = report.get("current") or {}
    out = [
        f'<p class="meta">Window: {_e(window.get("start") or "beginning")} → {_e(window.get("end") or "now")}'
        f" · report created {_e(report.get('created_at', ''))}</p>",
        f'<p class="meta">Reference: {_e(ref.get("rows", "?"))} rows from {_e(ref.get("source", "?"))} · '
        f"Current: {_e(cur.get('rows', '?'))} rows from {_e(cur.get('source', '?'))}</p>",
    ]
    return out


def _verdict(verdict: dict[str, Any]) -> list[str]:
    crossed = bool(verdict.get("crossed"))
    flags = []
    for key, label in (("drift", "Drift"), ("quality", "Data quality"), ("decay", "Performance decay")):
        hit = bool(verdict.get(key))
        flags.append(f"<span>{label}: <strong>{'crossed' if hit else 'ok'}</strong></span>")
    reasons = verdict.get("reasons") or []
    head = "Action needed: a monitoring threshold was crossed" if crossed else "No monitoring threshold crossed"
    items = "".join(f"<li>{_e(r)}</li>" for r in reasons)
    return [
        f'<div class="banner {"crossed" if crossed else "ok"}"><strong>{head}</strong>',
        f'<div class="flags">{"".join(flags)}</div>',
        f"<ul>{items}</ul></div>" if items else "</div>",
    ]


def _drift_section(drift: dict[str, Any]) -> list[str]:
    features = list(drift.get("features") or [])
    config = drift.get("config") or {}
    drifted = [f for f in features if f.get("drifted")]
    ordered = drifted + [f for f in features if not f.get("drifted")]
    share_needed = config.get("drift_share")
    out = [
        "<h2>Drift</h2>",
        f"<p>{len(drifted)} of {len(features)} features drifted ({_pct(drift.get('share', 0.0))}); "
        f"dataset drift: <strong>{'yes' if drift.get('dataset_drifted') else 'no'}</strong>"
        + (f" (when at least {_pct(share_needed)} of the features drift)" if share_needed is not None else "")
        + ".</p>",
        "<table><thead><tr><th>feature</th><th>kind</th><th>method</th><th>statistic</th><th>p-value</th>"
        "<th>threshold</th><th>rows</th><th>drifted</th></tr></thead><tbody>",
    ]
    prediction = drift.get("prediction")
    rows = ordered + (
        [{**prediction, "name": f"{prediction.get('name', 'prediction')} (model output)"}] if prediction else []
    )
    for f in rows:
        yes = bool(f.get("drifted"))
        out.append(
            f'<tr class="{"drifted" if yes else ""}"><td>{_e(f.get("name"))}</td><td>{_e(f.get("kind"))}</td>'
            f'<td>{_e(f.get("method"))}</td><td class="num">{_num(f.get("statistic"))}</td>'
            f'<td class="num">{_num(f.get("p_value"))}</td><td class="num">{_num(f.get("threshold"))}</td>'
            f'<td class="num">{_e(f.get("current_rows", ""))}</td>'
            f'<td class="{"yes" if yes else "no"}">{"yes" if yes else "no"}</td></tr>'
        )
    out.append("</tbody></table>")
    skipped = drift.get("skipped") or {}
    if skipped:
        items = "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in skipped.items())
        out.append(f'<p class="muted">Not tested:</p><ul class="muted">{items}</ul>')
    plotted = drifted + ([prediction] if prediction and prediction.get("drifted") else [])
    if plotted:
        out.append("<h3>Distributions of the drifted features</h3>")
        out.append(_legend())
        for f in plotted:
            out.append(_distribution_figure(f))
    elif prediction:
        out.append("<h3>Distribution of the predictions</h3>")
        out.append(_legend())
        out.append(_distribution_figure(prediction))
    return out


def _legend() -> str:
    return (
        f'<p class="legend"><span><span class="swatch" style="background:{REFERENCE_COLOR}"></span>reference</span>'
        f'<span><span class="swatch" style="background:{CURRENT_COLOR}"></span>current</span></p>'
    )


def _distribution_figure(feature: dict[str, Any]) -> str:
    caption = (
        f"{_e(feature.get('name'))} — {_e(feature.get('method'))} {_num(feature.get('statistic'))} "
        f"(threshold {_num(feature.get('threshold'))})"
    )
    bins = list(feature.get("bins") or [])
    ref = [float(v) for v in feature.get("reference") or []]
    cur = [float(v) for v in feature.get("current") or []]
    if feature.get("kind") == "numeric" and len(bins) == len(ref) + 1:
        labels = [f"{_num(bins[i], 3)} – {_num(bins[i + 1], 3)}" for i in range(len(ref))]
        ticks = [_num(b, 3) for b in bins]
    else:
        labels = [str(b) for b in bins]
        ticks = None
    return f"<figure><figcaption>{caption}</figcaption>{bar_chart(labels, ref, cur, edge_ticks=ticks)}</figure>"


def _quality_section(quality: dict[str, Any]) -> list[str]:
    issues = quality.get("issues") or []
    out = ["<h2>Data quality</h2>"]
    if issues:
        out.append("<ul>" + "".join(f"<li>{_e(i)}</li>" for i in issues) + "</ul>")
    else:
        out.append("<p>No quality issue.</p>")
    columns = quality.get("columns") or []
    if columns:
        out.append(
            "<table><thead><tr><th>column</th><th>kind</th><th>missing (reference)</th><th>missing (current)</th>"
            "<th>outside reference range</th><th>new categories</th></tr></thead><tbody>"
        )
        for c in columns:
            new = c.get("new_categories") or []
            listed = ", ".join(f"{_e(n.get('value'))} ({_pct(n.get('share'))})" for n in new[:5])
            if len(new) > 5:
                listed += ", …"
            out.append(
                f"<tr><td>{_e(c.get('name'))}</td><td>{_e(c.get('kind'))}</td>"
                f'<td class="num">{_pct(c.get("reference_missing_rate"))}</td>'
                f'<td class="num">{_pct(c.get("current_missing_rate"))}</td>'
                f'<td class="num">{_pct(c.get("out_of_range_share"))}</td><td>{listed or "—"}</td></tr>'
            )
        out.append("</tbody></table>")
    return out


def _performance_section(performance: list[dict[str, Any]] | None, validation: dict[str, Any]) -> list[str]:
    out = ["<h2>Performance</h2>"]
    if not performance:
        out.append('<p class="muted">No labelled predictions in the window: performance not measured.</p>')
        if validation:
            out.append(
                "<p>Validation metrics: " + ", ".join(f"{_e(k)} {_num(v)}" for k, v in validation.items()) + "</p>"
            )
        return out
    names = list(dict.fromkeys(n for w in performance for n in (w.get("metrics") or {})))
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    out.append(f"<table><thead><tr><th>window start</th><th>rows</th>{head}</tr></thead><tbody>")
    if validation:
        cells = "".join(f'<td class="num">{_num(validation.get(n))}</td>' for n in names)
        out.append(f"<tr><td><em>validation</em></td><td></td>{cells}</tr>")
    for w in performance:
        metrics = w.get("metrics") or {}
        cells = ""
        for n in names:
            m = metrics.get(n) or {}
            interval = (
                f' <span class="muted">[{_num(m.get("low"))}, {_num(m.get("high"))}]</span>'
                if m.get("low") is not None
                else ""
            )
            cells += f'<td class="num">{_num(m.get("value"))}{interval}</td>'
        out.append(
            f'<tr><td>{_e(_short_date(w.get("start")))}</td><td class="num">{_e(w.get("rows"))}</td>{cells}</tr>'
        )
    out.append("</tbody></table>")
    for n in names:
        out.append(
            f"<figure><figcaption>{_e(n)} over time</figcaption>{_metric_chart(n, performance, validation)}</figure>"
        )
    return out


def _short_date(value: Any) -> str:
    text = "" if value is None else str(value)
    return text[:16].replace("T", " ") if len(text) >= 10 else text


def _metric_chart(name: str, performance: list[dict[str, Any]], validation: dict[str, Any]) -> str:
    """The metric per window as a line with its interval as a band, and the validation value dashed."""
    width, height, left, right, top, bottom = 520, 200, 50, 10, 10, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    points = []
    for i, w in enumerate(performance):
        m = (w.get("metrics") or {}).get(name) or {}
        points.append((i, m.get("value"), m.get("low"), m.get("high")))
    val = validation.get(name)
    ys = [float(v) for _, *vs in points for v in vs if v is not None]
    if val is not None:
        ys.append(float(val))
    if not ys:
        return '<p class="muted">undefined in every window</p>'
    lo, hi = min(ys), max(ys)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5 * (abs(lo) or 1), hi + 0.5 * (abs(hi) or 1)
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad
    n = len(points)

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h * (1 - (float(v) - lo) / (hi - lo))

    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'viewBox="0 0 {width} {height}" font-size="10">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#4a5568"/>',
    ]
    for v in (lo + pad, (lo + hi) / 2, hi - pad):
        svg.append(f'<text x="{left - 4}" y="{y(v) + 3:.1f}" text-anchor="end">{_num(v, 3)}</text>')
    band = [(i, low, high) for i, _, low, high in points if low is not None and high is not None]
    if len(band) >= 2:
        upper = " ".join(f"{x(i):.1f},{y(h):.1f}" for i, _, h in band)
        lower = " ".join(f"{x(i):.1f},{y(low):.1f}" for i, low, _ in reversed(band))
        svg.append(f'<polygon points="{upper} {lower}" fill="{CURRENT_COLOR}" fill-opacity="0.18"/>')
    for i, low, high in band:
        svg.append(
            f'<line x1="{x(i):.1f}" y1="{y(low):.1f}" x2="{x(i):.1f}" y2="{y(high):.1f}" '
            f'stroke="{CURRENT_COLOR}" stroke-opacity="0.5"/>'
        )
    line = [(i, v) for i, v, _, _ in points if v is not None]
    if len(line) >= 2:
        path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in line)
        svg.append(f'<polyline points="{path}" fill="none" stroke="{CURRENT_COLOR}" stroke-width="2"/>')
    for i, v in line:
        svg.append(
            f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{CURRENT_COLOR}"><title>'
            f"{_e(_short_date(performance[i].get('start')))}: {_num(v)}</title></circle>"
        )
    if val is not None:
        svg.append(
            f'<line x1="{left}" y1="{y(val):.1f}" x2="{left + plot_w}" y2="{y(val):.1f}" stroke="{DRIFT_COLOR}" '
            f'stroke-dasharray="5,4"><title>validation: {_num(val)}</title></line>'
        )
        svg.append(
            f'<text x="{left + plot_w}" y="{y(val) - 4:.1f}" text-anchor="end" fill="{DRIFT_COLOR}">'
            f"validation {_num(val)}</text>"
        )
    for i in sorted({0, n - 1}):
        svg.append(
            f'<text x="{x(i):.1f}" y="{top + plot_h + 14}" text-anchor="middle">'
            f"{_e(_short_date(performance[i].get('start'))[:10])}</text>"
        )
    svg.append("</svg>")
    return "".join(svg)
