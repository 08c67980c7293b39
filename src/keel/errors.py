"""The one exception tree of Keel.

Every error a user can meet derives from :class:`KeelError`. Messages say what was wrong, where, and what to
do about it; the cause, when there is one, is chained with ``raise ... from exc``. The tree::

    KeelError
    ├── ConfigError
    ├── ValidationError (also a ValueError)
    │   └── MalformedRequestError          HTTP layer (keel.serving._http): a body that is not JSON, 400
    │       └── RequestTooLargeError       HTTP layer: a body over the size limit, 413
    ├── NotFoundError (also a LookupError)
    ├── ConflictError
    ├── IntegrityError
    ├── BackendError
    ├── TrainingError                      a run failed while fitting or evaluating (recorded as failed)
    └── MissingExtraError (also an ImportError)

The two HTTP-layer classes live beside the service that raises them, because only the HTTP status differs;
code that catches :class:`ValidationError` catches them too.

Backends raise from this tree through their base classes: :class:`~keel.online.OnlineStore` (``read``,
``write_batch``, ``drop_view``) and :class:`~keel.engines.EngineBase` (every engine operation) turn whatever
their library raises into a :class:`BackendError` (or, for an engine given data that does not fit the query, a
:class:`ValidationError`) naming the backend, what it was doing and the library's message, so that every
backend says the same thing for the same failure.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "ConfigError",
    "ConflictError",
    "IntegrityError",
    "KeelError",
    "MissingExtraError",
    "NotFoundError",
    "TrainingError",
    "ValidationError",
]


class KeelError(Exception):
    """Base class of every error Keel raises on purpose."""


class ConfigError(KeelError):
    """``keel.yaml`` or a ``KEEL_*`` variable is wrong, or names an unknown backend."""


class ValidationError(KeelError, ValueError):
    """An input (definition, data, argument, request) is invalid.

    Attributes:
        field: the offending field or column, when there is one.
        row: the offending row number (0-based, in the input's order), when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None, row: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.row = row


class NotFoundError(KeelError, LookupError):
    """A named thing (view, version, artifact, model...) does not exist."""


class ConflictError(KeelError):
    """The operation collides with existing state (a duplicate name, a concurrent writer)."""


class IntegrityError(KeelError):
    """Stored data does not match its recorded digest; it is refused rather than used."""


class BackendError(KeelError):
    """A storage or compute backend failed; the message names the backend, the key and the cause."""


class MissingExtraError(KeelError, ImportError):
    """An optional dependency is needed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'keel[{extra}]'"
        )
        self.package = package
        self.extra = extra


class TrainingError(KeelError):
    """A training run failed while fitting or evaluating; it is recorded in the catalog as failed."""
