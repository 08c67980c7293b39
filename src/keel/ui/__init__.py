"""The web UI (``keel ui``): pages and a JSON API over a project's catalog, every asset shipped in the package.

:func:`create_app` builds the FastAPI app from a project (or anything with its ``catalog``, ``models`` and
``analyses``); ``keel ui`` serves it on 127.0.0.1. The pages are shells that ``static/app.js`` fills from
``/api/...`` with DOM calls; no script, style or font is fetched from anywhere else. Only alias moves change
state, and only with the token (see :mod:`keel.ui._security`).
"""

from keel.ui._app import ReportFiles, UiSources, create_app
from keel.ui._security import CSRF_HEADER

__all__ = [
    "CSRF_HEADER",
    "ReportFiles",
    "UiSources",
    "create_app",
]
