"""Structured logs: one JSON object per line, for the services and the server running them.

Each record carries ``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``, then whatever the caller
passed with ``extra=`` (``request_id``, ``status``, ``duration_ms`` ...), and ``exception`` with the traceback
when there is one. Tracebacks go to the log, never to a client.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["ACCESS_LOGGER", "JsonFormatter", "access_log", "log_config", "service_log"]

ACCESS_LOGGER = "keel.serving.access"

#: Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged as a field;
#: uvicorn's ``color_message`` repeats the message with terminal colours.
_SKIPPED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}

access_log = logging.getLogger(ACCESS_LOGGER)
service_log = logging.getLogger("keel.serving")


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (see the module's docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object on one line."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _SKIPPED and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return orjson.dumps(entry, default=str).decode()


def log_config(level: str = "info") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` configuration (also uvicorn's ``log_config``) sending Keel's and
    uvicorn's logs to standard error as JSON lines at ``level``.

    Uvicorn's own access log is left off: the service middleware writes a richer one (request id, route,
    duration) under the ``keel.serving.access`` logger.
    """
    level = level.upper()
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"json": handler},
        "loggers": {
            "keel": {"handlers": ["json"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["json"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
