"""Inline SVG charts for Keel's self-contained HTML reports: no external assets, no JavaScript; every label escaped."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

__all__ = ["CURRENT_COLOR", "REFERENCE_COLOR", "bar_chart", "column_chart", "line_chart"]

REFERENCE_COLOR = "#9aa5b1"
CURRENT_COLOR = "#2b6cb0"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: float) -> str:
    return f"{float(value):.1%}"


_TICKS = (0.0, 0.5, 1.0)


def _canvas(width: int, height: int, left: int, top: int, plot_w: int, plot_h: int, ticks: list[str]) -> list[str]:
    """An SVG's opening, its x axis, and the labels of the y axis at 0, half and all of the plot's height."""
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'viewBox="0 0 {width} {height}" font-size="10">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#4a5568"/>',
    ]
    for frac, label in zip(_TICKS, ticks, strict=True):
        y = top + plot_h * (1 - frac)
        svg.append(f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{_e(label)}</text>')
    return svg


def bar_chart(
    labels: Sequence[str],
    reference: Sequence[float],
    current: Sequence[float],
    *,
    edge_ticks: Sequence[str] | None = None,
    width: int = 520,
    height: int = 230,
) -> str:
    """Grouped bars (reference, current) per bin or category, as inline SVG.

    ``edge_ticks`` (numeric bins): labels of the ``k + 1`` bin edges, of which the first, middle and last are
    shown under the axis; otherwise each category is labelled under its bars.
    """
    k = min(len(labels), len(reference), len(current))
    left, right, top = 44, 10, 10
    bottom = 30 if edge_ticks is not None else 70
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max([*reference[:k], *current[:k], 1e-12])
    svg = _canvas(width, height, left, top, plot_w, plot_h, [_pct(peak * f) for f in _TICKS])
    group = plot_w / max(k, 1)
    bar = group * 0.4
    for i in range(k):
        x0 = left + i * group + group * 0.1
        for j, (share, color, side) in enumerate(
            ((reference[i], REFERENCE_COLOR, "reference"), (current[i], CURRENT_COLOR, "current"))
        ):
            h = plot_h * share / peak
            svg.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{color}"><title>{_e(labels[i])}: {side} {_pct(share)}</title></rect>'
            )
        if edge_ticks is None:
            cx = left + (i + 0.5) * group
            text = labels[i] if len(labels[i]) <= 14 else labels[i][:13] + "…"
            svg.append(
                f'<text x="{cx:.1f}" y="{top + plot_h + 12}" text-anchor="end" '
                f'transform="rotate(-40 {cx:.1f} {top + plot_h + 12})">{_e(text)}</text>'
            )
    if edge_ticks is not None and k:
        for idx in sorted({0, k // 2, k}):
            x = left + idx * group
            svg.append(f'<text x="{x:.1f}" y="{top + plot_h + 14}" text-anchor="middle">{_e(edge_ticks[idx])}</text>')
    svg.append("</svg>")
    return "".join(svg)


def line_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    threshold: float | None = None,
    marked: Sequence[bool] = (),
    width: int = 520,
    height: int = 160,
) -> str:
    """A series as an inline SVG line, with a dashed ``threshold`` line and ``marked`` points drawn red.

    ``labels`` name the points (their tooltips; the first and last are written under the axis).
    """
    k = min(len(labels), len(values))
    left, right, top, bottom = 44, 10, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    finite = [float(v) for v in values[:k] if v == v and abs(float(v)) != float("inf")]
    peak = max([*finite, threshold or 0.0, 1e-12]) * 1.1

    def x(i: int) -> float:
        return left + (plot_w * i / (k - 1) if k > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h * (1 - min(max(v, 0.0), peak) / peak)

    svg = _canvas(width, height, left, top, plot_w, plot_h, [f"{peak * f:.3g}" for f in _TICKS])
    if threshold is not None:
        svg.append(
            f'<line x1="{left}" y1="{y(threshold):.1f}" x2="{left + plot_w}" y2="{y(threshold):.1f}" '
            f'stroke="#c53030" stroke-dasharray="4 3"><title>threshold {threshold:.3g}</title></line>'
        )
    if k:
        points = " ".join(f"{x(i):.1f},{y(float(values[i])):.1f}" for i in range(k))
        svg.append(f'<polyline points="{points}" fill="none" stroke="{CURRENT_COLOR}" stroke-width="1.5"/>')
        for i in range(k):
            red = i < len(marked) and marked[i]
            svg.append(
                f'<circle cx="{x(i):.1f}" cy="{y(float(values[i])):.1f}" r="{3 if red else 2}" '
                f'fill="{"#c53030" if red else CURRENT_COLOR}"><title>{_e(labels[i])}: {float(values[i]):.4g}'
                "</title></circle>"
            )
        svg.append(f'<text x="{left}" y="{height - 6}">{_e(labels[0])}</text>')
        if k > 1:
            svg.append(f'<text x="{left + plot_w}" y="{height - 6}" text-anchor="end">{_e(labels[k - 1])}</text>')
    svg.append("</svg>")
    return "".join(svg)


def column_chart(labels: Sequence[str], values: Sequence[float], *, width: int = 420, height: int = 180) -> str:
    """One series of bars (a category's count, a bin's share) as inline SVG; each bar's tooltip gives its value."""
    k = min(len(labels), len(values))
    left, right, top, bottom = 52, 10, 10, 62
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max([*(float(v) for v in values[:k]), 1e-12])
    svg = _canvas(width, height, left, top, plot_w, plot_h, [f"{peak * f:,.3g}" for f in _TICKS])
    group = plot_w / max(k, 1)
    for i in range(k):
        h = plot_h * float(values[i]) / peak
        x = left + i * group + group * 0.15
        svg.append(
            f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{group * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{CURRENT_COLOR}"><title>{_e(labels[i])}: {float(values[i]):,.4g}</title></rect>'
        )
        cx = left + (i + 0.5) * group
        text = labels[i] if len(labels[i]) <= 14 else labels[i][:13] + "…"
        svg.append(
            f'<text x="{cx:.1f}" y="{top + plot_h + 12}" text-anchor="end" '
            f'transform="rotate(-40 {cx:.1f} {top + plot_h + 12})">{_e(text)}</text>'
        )
    svg.append("</svg>")
    return "".join(svg)
