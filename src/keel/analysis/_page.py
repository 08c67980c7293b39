"""An analysis as one self-contained HTML page: tables and PNG figures embedded as data URIs — no external asset,
no script, nothing fetched — so the page opens offline, from an artifact store or an e-mail attachment.

Every text from the data or the user (model, feature, segment and category names, expressions) is escaped with
:func:`html.escape`: a segment called ``<script>`` is shown, never run.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Figure", "Page", "Section", "Table"]

_STYLE = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;max-width:1320px;"
    "padding:0 1rem;color:#1a202c}h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #e2e8f0;"
    "padding-bottom:.3rem}.meta{color:#4a5568}table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}"
    "th,td{border-bottom:1px solid #e2e8f0;padding:.3rem .6rem;text-align:left}th{background:#f7fafc}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}tr.flag td{background:#fff5f5}"
    "tr.muted td{color:#718096}figure{display:inline-block;margin:.5rem 1rem .5rem 0;vertical-align:top}"
    "figcaption{font-weight:600;margin-bottom:.2rem}img{max-width:100%}.note{color:#4a5568;font-size:.9rem}"
)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


@dataclass(frozen=True)
class Figure:
    """A PNG figure: ``name`` is its file name in the stored report, ``caption`` its title on the page."""

    name: str
    caption: str
    png: bytes


@dataclass(frozen=True)
class Table:
    """Rows of cells under a header; ``flags`` marks rows (``"flag"``: highlighted, ``"muted"``: greyed)."""

    header: Sequence[str]
    rows: Sequence[Sequence[Any]]
    flags: Sequence[str] = ()
    numeric: Sequence[int] = ()

    def html(self) -> str:
        out = ["<table><tr>", *(f"<th>{_e(h)}</th>" for h in self.header), "</tr>"]
        for i, row in enumerate(self.rows):
            css = self.flags[i] if i < len(self.flags) and self.flags[i] else ""
            out.append(f"<tr class='{css}'>" if css else "<tr>")
            for j, cell in enumerate(row):
                out.append(f"<td class='n'>{_e(cell)}</td>" if j in self.numeric else f"<td>{_e(cell)}</td>")
            out.append("</tr>")
        out.append("</table>")
        return "".join(out)


@dataclass(frozen=True)
class Section:
    """A titled part of the page: notes (plain text), tables, then figures."""

    title: str
    notes: Sequence[str] = ()
    tables: Sequence[Table] = ()
    figures: Sequence[Figure] = ()


@dataclass(frozen=True)
class Page:
    """The whole page."""

    title: str
    meta: Sequence[str] = ()
    sections: Sequence[Section] = field(default_factory=list)

    @property
    def figures(self) -> list[Figure]:
        """Every figure of the page, in order."""
        return [f for s in self.sections for f in s.figures]

    def html(self) -> str:
        body = [f"<h1>{_e(self.title)}</h1>", *(f"<p class='meta'>{_e(m)}</p>" for m in self.meta)]
        for section in self.sections:
            body.append(f"<h2>{_e(section.title)}</h2>")
            body.extend(f"<p class='note'>{_e(n)}</p>" for n in section.notes)
            body.extend(t.html() for t in section.tables)
            for figure in section.figures:
                data = base64.b64encode(figure.png).decode("ascii")
                body.append(
                    f"<figure><figcaption>{_e(figure.caption)}</figcaption>"
                    f"<img alt='{_e(figure.caption)}' src='data:image/png;base64,{data}'></figure>"
                )
        return (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{_e(self.title)}</title><style>{_STYLE}</style></head><body>" + "".join(body) + "</body></html>\n"
        )
