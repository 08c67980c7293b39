"""Who may change state through the UI: the token, and the guard against cross-site requests.

Reading needs nothing (the UI binds to 127.0.0.1 by default). A state-changing request (promote, roll back) must:

* carry ``Authorization: Bearer <token>``, the token ``keel ui`` was started with (compared in constant time);
  without a configured token every such request is refused (403), with one but a wrong or missing header, 401;
* carry the custom header ``X-Keel-UI: 1``. A cross-site page can submit a form or a "simple" request without
  asking, but not one with a custom header: that needs a CORS preflight, which this app never grants. It is the
  cross-site-request guard, and it does not depend on the token being secret from the attacker's page;
* when the browser sends an ``Origin`` header, come from the UI's own origin (the ``Host`` it was reached at);
  a mismatch is refused (403) even with the custom header, as a second line.

The UI keeps no session and sets no cookie: nothing is sent by the browser on the user's behalf.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import HTTPException, Request

from keel.serving._auth import BearerAuth

#: The custom header every state-changing request carries (the page's script sets it).
CSRF_HEADER = "X-Keel-UI"


def check_write(request: Request, token: str | None) -> None:
    """Refuse a state-changing request that lacks the token or may come from another site.

    Raises:
        HTTPException: 403 when no token is configured or the request may be cross-site; 401 when the bearer
            token is missing or wrong.
    """
    if request.headers.get(CSRF_HEADER) != "1":
        raise HTTPException(
            403, f"state-changing requests need the header '{CSRF_HEADER}: 1' (cross-site request protection)"
        )
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        host = request.headers.get("host", "")
        if urlsplit(origin).netloc != host:
            raise HTTPException(403, f"cross-origin request from {origin} refused")
    elif origin == "null":
        raise HTTPException(403, "request from an opaque origin refused")
    if not token:
        raise HTTPException(
            403, "state changes are disabled: start `keel ui` with --token (or KEEL_UI_TOKEN) to allow them"
        )
    given = request.headers.get("authorization")
    if not BearerAuth(token).accepts(None if given is None else given.encode("latin-1")):
        raise HTTPException(
            401, "a valid 'Authorization: Bearer <token>' header is required", {"WWW-Authenticate": "Bearer"}
        )
