"""The plug-in table: which class (or builder function) serves which URI scheme, per interface.

Heavy dependencies are imported only when a backend is built, so ``import keel`` stays fast and a missing
extra surfaces as a clear error naming it. Engines are made by builders, ``(config, filesystems) -> Engine``,
so that each engine reads its own settings (``spark: {master, conf}``) and no engine's constructor has to
match another's.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from keel.errors import ConfigError

if TYPE_CHECKING:
    from keel.config import KeelConfig
    from keel.engines import Engine

#: interface -> scheme -> "module:attribute" (a class, or for engines a builder)
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
        "local": "keel._backends:build_local_engine",
        "spark": "keel._backends:build_spark_engine",
    },
    # builders (setting, CacheOptions) -> PredictionCache: each backend takes the options that apply to it
    "cache": {
        "memory": "keel.serving._cache:memory_cache",
        "none": "keel.serving._cache:no_cache",
        "redis": "keel.serving._cache:redis_cache",
        "rediss": "keel.serving._cache:redis_cache",
        "unix": "keel.serving._cache:redis_cache",
    },
}


def scheme_of(uri: str) -> str:
    """The backend scheme of a URI: ``postgresql+psycopg://`` -> ``postgresql``; a bare path -> ``file``."""
    if "://" not in uri:
        return uri if uri.isidentifier() else "file"
    return uri.split("://", 1)[0].split("+", 1)[0].lower()


def backend_class(interface: str, uri: str) -> Any:
    """The class (or builder) registered for ``uri``'s scheme; a :class:`ConfigError` listing valid schemes
    otherwise."""
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


def open_engine(config: KeelConfig, filesystems: Sequence[Any] = ()) -> Engine:
    """Build the compute engine ``config.engine`` names, from the settings it reads.

    Args:
        config: the project's resolved configuration.
        filesystems: fsspec filesystems the engine must read through (the offline store's, when not local).

    Raises:
        ConfigError: no engine of that name is registered (the message lists the valid ones).
    """
    build = backend_class("engine", config.engine)
    engine: Engine = build(config, list(filesystems))
    return engine


def build_local_engine(config: KeelConfig, filesystems: list[Any]) -> Engine:
    """The local engine (DuckDB in this process); it needs no settings of its own."""
    from keel.engines.local import LocalEngine

    return LocalEngine(filesystems=filesystems)


def build_spark_engine(config: KeelConfig, filesystems: list[Any]) -> Engine:
    """The Spark engine, from ``spark: {master, conf, app_name}``; its session starts on first use, so building
    it needs neither Java nor a cluster (``Project.open`` stays fast).

    Raises:
        MissingExtraError: PySpark is not installed (``pip install 'keel[spark]'``).
    """
    from keel.engines._spark_session import import_pyspark
    from keel.engines.spark import SparkEngine

    import_pyspark()
    return SparkEngine(
        master=config.spark.master, conf=config.spark.conf, app_name=config.spark.app_name, filesystems=filesystems
    )


def open_cache(setting: str, options: Any) -> Any:
    """Build the prediction cache (a :class:`keel.serving._cache.PredictionCache`) the ``cache`` setting
    names: ``memory``, ``none`` or a ``redis://`` URL, with ``options`` (a :class:`~keel.serving._cache.CacheOptions`).

    Raises:
        ConfigError: an unknown setting (the error lists the valid ones), or an invalid Redis URL.
        MissingExtraError: a Redis cache without redis-py installed.
    """
    text = setting.strip()
    if "://" not in text:
        text = text.lower()  # ``Memory``, ``NONE``
    return backend_class("cache", text)(text, options)
