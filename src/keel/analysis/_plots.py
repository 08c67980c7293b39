"""The figures of an analysis, drawn with matplotlib (headless: the Agg backend, no display) as PNG bytes.

Every figure has the same size (:data:`WIDTH` × :data:`HEIGHT` pixels) so a report lays them out in a grid, and is
drawn from plain numbers (lists, arrays): the analyses compute, this module only draws. Figures are made on their
own ``Figure`` objects (never ``pyplot``'s global state), so threads and repeated calls do not interfere.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "HEIGHT",
    "WIDTH",
    "bars_with_intervals",
    "calibration_plot",
    "confusion_plot",
    "curve_plot",
    "png_size",
    "residual_plot",
]

WIDTH, HEIGHT = 640, 400
DPI = 100
BLUE, GREY, RED, GREEN = "#2b6cb0", "#9aa5b1", "#c53030", "#2f855a"


def _figure() -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI)
    axes = figure.add_subplot()
    axes.grid(True, alpha=0.3)
    return figure, axes


def _png(figure: Figure) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)  # no bbox_inches="tight": every figure keeps its size
    return buffer.getvalue()


def png_size(data: bytes) -> tuple[int, int]:
    """The width and height of a PNG image (read from its header), or ``(0, 0)`` when it is not one."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return 0, 0
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _short(text: str, width: int = 28) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def bars_with_intervals(
    names: Sequence[str],
    values: Sequence[float],
    lows: Sequence[float | None],
    highs: Sequence[float | None],
    *,
    title: str,
    xlabel: str,
    reference: float | None = None,
    flagged: Sequence[bool] = (),
    muted: Sequence[bool] = (),
) -> bytes:
    """Horizontal bars with their confidence intervals, one per name, top to bottom: metrics by segment (the
    ``reference`` line is the whole data's), importances, or differences between two models (reference 0).
    ``flagged`` bars are red (a weak segment, a worse one), ``muted`` ones grey (too small to trust)."""
    figure, axes = _figure()
    k = len(names)
    y = np.arange(k)[::-1]
    colours = [
        RED if i < len(flagged) and flagged[i] else GREY if i < len(muted) and muted[i] else BLUE for i in range(k)
    ]
    value_array = np.asarray(values, dtype=np.float64)
    axes.barh(y, value_array, color=colours, height=0.6)
    for i in range(k):
        low, high = lows[i], highs[i]
        if low is not None and high is not None and np.isfinite(low) and np.isfinite(high):
            axes.plot([low, high], [y[i], y[i]], color="#1a202c", linewidth=1.2)
            axes.plot([low, low], [y[i] - 0.15, y[i] + 0.15], color="#1a202c", linewidth=1.2)
            axes.plot([high, high], [y[i] - 0.15, y[i] + 0.15], color="#1a202c", linewidth=1.2)
    if reference is not None:
        axes.axvline(reference, color="#4a5568", linestyle="--", linewidth=1)
    axes.set_yticks(y, [_short(str(n)) for n in names], fontsize=8 if k > 12 else 9)
    axes.set_xlabel(xlabel)
    axes.set_title(title, fontsize=11)
    return _png(figure)


def curve_plot(
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    diagonal: bool = False,
    baseline: float | None = None,
) -> bytes:
    """One or more curves (label, x, y): ROC curves (with the chance ``diagonal``), precision–recall curves (with
    the positive rate as ``baseline``), metric-by-threshold lines."""
    figure, axes = _figure()
    for i, (label, x, y) in enumerate(series):
        axes.plot(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), label=label,
                  color=(BLUE, RED, GREEN, GREY)[i % 4], linewidth=1.6)  # fmt: skip
    if diagonal:
        axes.plot([0, 1], [0, 1], color="#4a5568", linestyle="--", linewidth=1)
    if baseline is not None:
        axes.axhline(baseline, color="#4a5568", linestyle="--", linewidth=1)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=11)
    if len(series) > 1 or (series and series[0][0]):
        axes.legend(fontsize=8, loc="best")
    return _png(figure)


def calibration_plot(
    predicted: Sequence[float], observed: Sequence[float], counts: Sequence[int], *, title: str
) -> bytes:
    """Observed frequency against mean predicted probability per bin, over the perfectly calibrated diagonal; each
    point's size grows with its bin's rows."""
    figure, axes = _figure()
    axes.plot([0, 1], [0, 1], color="#4a5568", linestyle="--", linewidth=1)
    sizes = np.asarray(counts, dtype=np.float64)
    scaled = 20 + 180 * sizes / max(float(sizes.max()), 1.0) if sizes.size else sizes
    axes.plot(predicted, observed, color=BLUE, linewidth=1.4)
    axes.scatter(predicted, observed, s=scaled, color=BLUE, alpha=0.7, zorder=3)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("mean predicted probability")
    axes.set_ylabel("observed frequency")
    axes.set_title(title, fontsize=11)
    return _png(figure)


def confusion_plot(matrix: Sequence[Sequence[int]], labels: Sequence[Any], *, title: str) -> bytes:
    """A confusion matrix (rows: true class, columns: predicted), each cell with its count and its row's share."""
    figure, axes = _figure()
    counts = np.asarray(matrix, dtype=np.float64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    axes.grid(False)
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            colour = "white" if shares[i, j] > 0.6 else "#1a202c"
            axes.text(j, i, f"{int(counts[i, j]):,}\n{shares[i, j]:.0%}", ha="center", va="center", color=colour,
                      fontsize=9)  # fmt: skip
    ticks = [_short(str(v), 14) for v in labels]
    axes.set_xticks(range(len(ticks)), ticks)
    axes.set_yticks(range(len(ticks)), ticks)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title, fontsize=11)
    return _png(figure)


def residual_plot(
    x: Sequence[float],
    mean: Sequence[float],
    low: Sequence[float] | None = None,
    high: Sequence[float] | None = None,
    *,
    title: str,
    xlabel: str,
) -> bytes:
    """Binned residuals (observed − predicted) against a value: each bin's mean, and a band between two of its
    quantiles when given; the zero line is a perfect model."""
    figure, axes = _figure()
    xs = np.asarray(x, dtype=np.float64)
    if low is not None and high is not None:
        axes.fill_between(xs, np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64), color=BLUE,
                          alpha=0.18, linewidth=0)  # fmt: skip
    axes.plot(xs, np.asarray(mean, dtype=np.float64), color=BLUE, marker="o", markersize=3, linewidth=1.4)
    axes.axhline(0.0, color="#4a5568", linestyle="--", linewidth=1)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("residual (observed − predicted)")
    axes.set_title(title, fontsize=11)
    return _png(figure)
