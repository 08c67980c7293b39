"""The plug-in table: which class serves which URI scheme, per interface.

Heavy dependencies are imported only when a backend is built, so ``import keel`` stays fast and a missing
extra surfaces as a clear error naming it.
"""

from __future__ import annotations

import importlib
from typing import Any

from keel.errors import ConfigError

#: interface -> scheme -> "module:attribute"
BACKENDS: dict[str, dict[str, str]] = {
    "catalog": {
        "sqlite": "keel.catalog._sql:SqlCatalog",
        "postgresql": "keel.catalog._sql:SqlCatalog",
        "memory": "keel.catalog._sql:SqlCatalog",
    },
    "online": {
        "memory": "keel.online._memory:MemoryOnlineStore",
        "sqlite": "keel.online._sqlite:SqliteOnlineStore",
        "redis": "keel.online._redis:RedisOnlineStore",
        "rediss": "keel.online._redis:RedisOnlineStore",
    },
    "engine": {
        "local": "keel.engines.local:LocalEngine",
    },
}


def scheme_of(uri: str) -> str:
    """The backend scheme of a URI: ``postgresql+psycopg://`` -> ``postgresql``; a bare path -> ``file``."""
    if "://" not in uri:
        return uri if uri.isidentifier() else "file"
    return uri.split("://", 1)[0].split("+", 1)[0].lower()


def backend_class(interface: str, uri: str) -> Any:
    """The class registered for ``uri``'s scheme; a :class:`ConfigError` listing valid schemes otherwise."""
    table = BACKENDS.get(interface)
    if table is None:
        raise ConfigError(
            f"unknown backend interface {interface!r}; known interfaces are: {', '.join(sorted(BACKENDS))}"
        )
    scheme = scheme_of(uri)
    target = table.get(scheme)
    if target is None:
        raise ConfigError(
            f"{interface} {uri!r}: unknown scheme {scheme!r}; valid schemes are: {', '.join(sorted(table))}"
        )
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def open_catalog(uri: str) -> Any:
    """Build the catalog for ``uri`` (``memory://`` is SQLite in memory)."""
    cls = backend_class("catalog", uri)
    return cls("sqlite://" if scheme_of(uri) == "memory" else uri)
