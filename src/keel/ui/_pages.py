"""The HTML of the UI's pages: one small shell per URL that the shipped script fills from the JSON API.

The server writes only the page's kind, its title and its arguments (HTML-escaped, in ``data-`` attributes);
``static/app.js`` reads them, calls ``/api/...`` and builds the page with DOM calls and ``textContent``, never
``innerHTML`` — so a name like ``<script>`` stays text on both sides. Every script and style is served from
``/static`` out of the package, and the Content-Security-Policy forbids anything else (no inline script, no CDN).
"""

from __future__ import annotations

import html

#: The policy of every page: scripts, styles and images from the UI itself only.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: The policy of a stored analysis report: a self-contained page that may not run scripts or load anything.
REPORT_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"

_NAV = (("/", "Overview"), ("/views", "Feature views"), ("/runs", "Runs"), ("/models", "Models"))


def shell(page: str, title: str, *, base: str = "", **data: str) -> str:
    """The HTML of one page.

    Args:
        page: which page the script builds (``overview``, ``run``, ``model``...).
        title: the page's title (user text: escaped here).
        base: the path the UI is served under (``/ui`` inside ``keel serve --ui``; empty at the root), put
            before every URL of the page and given to the script as ``data-base``.
        **data: the page's arguments (a run id, a model's name...), escaped into ``data-`` attributes.
    """
    root = base.rstrip("/")
    data = {**data, "base": root} if root else data
    base = html.escape(root, quote=True)
    attributes = "".join(
        f' data-{key.replace("_", "-")}="{html.escape(value, quote=True)}"' for key, value in data.items()
    )
    links = "".join(f'<a href="{base}{href}">{html.escape(label)}</a>' for href, label in _NAV)
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} · Keel</title>"
        f'<link rel="stylesheet" href="{base}/static/style.css">'
        f'<link rel="icon" href="{base}/static/favicon.svg" type="image/svg+xml">'
        f'<script src="{base}/static/app.js" defer></script>'
        "</head><body>"
        f'<header><a class="brand" href="{base}/">Keel</a><nav>{links}</nav></header>'
        f'<main id="app" data-page="{html.escape(page, quote=True)}"{attributes}>'
        f'<h1>{html.escape(title)}</h1><p class="loading">Loading…</p></main>'
        "</body></html>\n"
    )
