"""Optional bearer-token authentication, shared by every Keel HTTP service.

When a token is configured (``KEEL_API_TOKEN``), every request except the public paths (health and the API
documentation) must carry ``Authorization: Bearer <token>``; the comparison takes constant time, so response
times tell nothing about the token.
"""

from __future__ import annotations

import hmac
import os

__all__ = ["TOKEN_VARIABLE", "BearerAuth"]

TOKEN_VARIABLE = "KEEL_API_TOKEN"
_SCHEME = b"bearer "


class BearerAuth:
    """Checks ``Authorization`` headers against one token.

    Args:
        token: the expected token; ``None`` or empty turns authentication off.
    """

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    @classmethod
    def from_environment(cls) -> BearerAuth:
        """The token of ``KEEL_API_TOKEN`` (authentication off when unset or empty)."""
        return cls(os.environ.get(TOKEN_VARIABLE))

    @property
    def enabled(self) -> bool:
        """Whether requests need a token."""
        return self._token is not None

    def accepts(self, authorization: bytes | None) -> bool:
        """Whether an ``Authorization`` header value carries the token (always true when off)."""
        if self._token is None:
            return True
        if authorization is None or authorization[:7].lower() != _SCHEME:
            return False
        return hmac.compare_digest(authorization[7:].strip(), self._token)
