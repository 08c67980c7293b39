"""Project configuration: ``keel.yaml`` plus ``KEEL_*`` environment overrides.

Every key is optional; the embedded defaults keep everything under ``.keel/`` in the project:

.. code-block:: yaml

    catalog: sqlite:///.keel/catalog.db     # postgresql+psycopg://user@host/db
    artifacts: .keel/artifacts              # s3://bucket/prefix
    offline: .keel/offline
    online: sqlite:///.keel/online.db       # redis://localhost:6379/0
    cache: memory                           # redis://localhost:6379/1 | none
    engine: local                           # spark
    prediction_log:                         # what the prediction service logs to <offline>/_prediction_log/
      enabled: true
      max_bytes: 67108864                   # a log file is closed (made visible) past this size...
      max_seconds: 60                       # ...or this long after it was opened

An environment variable ``KEEL_<KEY>`` overrides a top-level key (``KEEL_CATALOG=postgresql+psycopg://…``);
``KEEL_SPARK__MASTER`` reaches into a nested one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError

from keel.errors import ConfigError

CONFIG_FILE = "keel.yaml"
ENV_PREFIX = "KEEL_"

DEFAULT_YAML = """\
# Keel project configuration. Every key is optional; these are the embedded defaults.
# Any key can be overridden by an environment variable: KEEL_CATALOG, KEEL_ONLINE, ...
catalog: sqlite:///.keel/catalog.db     # postgresql+psycopg://user@host/db
artifacts: .keel/artifacts              # s3://bucket/prefix (any fsspec URI)
offline: .keel/offline                  # where ingested feature versions are written
online: sqlite:///.keel/online.db       # redis://localhost:6379/0
cache: memory                           # redis://localhost:6379/1 | none
engine: local                           # spark
"""


class SparkConfig(BaseModel):
    """Settings of the Spark engine (``engine: spark``).

    Attributes:
        master: where Spark runs: ``local[*]`` (or ``local[N]``: in this process, N cores), ``spark://host:port``
            (a standalone cluster; several masters as ``spark://h1:7077,h2:7077``) or ``sc://host:port`` (a Spark
            Connect server).
        conf: Spark settings applied when the session starts (``spark.executor.memory: 4g`` ...).
        app_name: the application's name in Spark's UI and logs.
    """

    model_config = ConfigDict(extra="forbid")

    master: str = "local[*]"
    conf: dict[str, str] = Field(default_factory=dict)
    app_name: str = "keel"

    @field_validator("conf", mode="before")
    @classmethod
    def _conf_as_text(cls, value: Any) -> Any:
        """Spark settings are text; a number or boolean written in YAML (``spark.executor.cores: 4``) is taken as
        the text Spark expects (``"4"``, ``"true"``)."""
        if not isinstance(value, Mapping):
            return value
        return {
            k: str(v).lower() if isinstance(v, bool) else str(v) if isinstance(v, int | float) else v
            for k, v in value.items()
        }

    @field_validator("master")
    @classmethod
    def _known_master(cls, value: str) -> str:
        text = value.strip()
        if not _SPARK_MASTER.fullmatch(text):
            raise ValueError(
                f"{value!r} is not a Spark master Keel knows; use local[*], local[N], spark://host:port "
                "or sc://host:port (Spark Connect)"
            )
        return text


#: ``local``, ``local[4]``, ``local[*]``, ``local[4,2]``; ``spark://h:7077[,h2:7077]``; ``sc://h:15002[/;options]``.
_SPARK_MASTER = re.compile(
    r"local(\[(\*|\d+)(,\s*\d+)?\])?"
    r"|spark://[\w.\-]+(:\d+)?(,[\w.\-]+(:\d+)?)*"
    r"|sc://[\w.\-]+(:\d+)?(/.*)?"
)


#: The longest a prediction log file may stay open (``prediction_log.max_seconds``): 30 days.
MAX_LOG_SECONDS = 30 * 24 * 3600


class PredictionLogConfig(BaseModel):
    """Settings of the prediction log: every prediction the service makes, appended to Parquet files under
    ``<offline>/_prediction_log/`` (see :mod:`keel.prediction_log`).

    Attributes:
        enabled: log predictions (``KEEL_PREDICTION_LOG__ENABLED=false`` turns it off).
        max_bytes: a file is closed, and becomes visible to readers, once it holds this many bytes...
        max_seconds: ...or this many seconds after it was opened, whichever comes first.
        linger_seconds: the writer lets requests gather this long before converting them together (fewer,
            larger conversions: less work taken from the serving thread); 0 converts each request at once.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    # a timer longer than this is refused: the writer waits with it (an infinite or huge wait overflows)
    max_seconds: float = Field(default=60.0, gt=0, le=MAX_LOG_SECONDS, allow_inf_nan=False)
    linger_seconds: float = Field(default=0.2, ge=0, le=60, allow_inf_nan=False)


#: Credentials written into a storage URI: an ``@`` anywhere in an S3 or GCS URI (``s3://key:secret@bucket``; a
#: secret may hold ``/``, and neither a bucket name nor a key Keel writes holds ``@``), ``user:secret@`` in any
#: other (``abfs://container@account`` and ``github://org:repo@ref`` are addresses, not credentials).
_CREDENTIALS_IN_URI = re.compile(
    r"(?i:s3|s3a|s3n|gs|gcs)://[^?#]*@|(?!(?i:github)://)[A-Za-z][A-Za-z0-9+.\-]*://[^/?#:@]*:[^/?#@]*@"
)


class KeelConfig(BaseModel):
    """The resolved configuration of a project.

    Attributes:
        name: the project's name (defaults to its folder's name).
        catalog: SQLAlchemy URL of the catalog.
        artifacts: directory or fsspec URI of the artifact store.
        offline: directory or fsspec URI of the offline store.
        online: URI of the online store.
        cache: the prediction cache: ``memory``, ``none`` or a ``redis://`` URI.
        engine: ``local`` (pandas/DuckDB) or ``spark``.
        modules: the project's Python files to scan for definitions (default: every ``*.py`` under the root,
            skipping hidden, virtual-environment, test and data folders).
        partition_rows: ingested versions larger than this are partitioned by month of event time.
        prediction_log: the prediction service's log of every prediction (on by default).
        package_format: how packages of allowlisted types are stored: ``keel`` (default; loads fastest) or
            ``skops``. Neither unpickles; a package holding other types falls back to joblib (pickle).
        trusted_types: full names of your own classes (and, for skops, functions) that packages may hold
            beyond Keel's allowlist, e.g. ``[mypkg.transformers.Winsorizer]``: packages holding them are stored
            in the safe formats and load without pickle. Name only code you trust: loading rebuilds them.

    Object-store credentials are never part of the configuration: ``artifacts`` and ``offline`` URIs holding
    ``user:secret@`` are refused (without repeating them). S3 and S3-compatible stores read their credentials
    and endpoint from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``,
    an AWS profile or the machine's role).
    """

    # Inputs are kept out of validation errors: a refused value may be a secret.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    name: str = ""
    catalog: str = "sqlite:///.keel/catalog.db"
    artifacts: str = ".keel/artifacts"
    offline: str = ".keel/offline"
    online: str = "sqlite:///.keel/online.db"
    cache: str = "memory"
    engine: Literal["local", "spark"] = "local"
    spark: SparkConfig = Field(default_factory=SparkConfig)
    modules: list[str] | None = None
    partition_rows: int = Field(default=1_000_000, gt=0)
    mlflow_uri: str | None = None
    package_format: Literal["keel", "skops"] = "keel"
    trusted_types: list[str] = Field(default_factory=list)
    prediction_log: PredictionLogConfig = Field(default_factory=PredictionLogConfig)

    @field_validator("artifacts", "offline")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        if _CREDENTIALS_IN_URI.match(value.strip()):
            raise ValueError(
                "the URI holds credentials (user:secret@ before the bucket or host); they were not kept. Keel "
                "reads object-store credentials only from the environment (AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, an AWS profile or the machine's role; AWS_ENDPOINT_URL for an "
                "S3-compatible server): remove them from the URI"
            )
        return value

    def resolved(self, root: Path) -> KeelConfig:
        """A copy whose relative paths (and ``sqlite:///relative``) are made absolute under ``root``."""
        data = self.model_dump()
        data["name"] = self.name or root.name
        for key in ("artifacts", "offline"):
            data[key] = _absolute_path(data[key], root)
        for key in ("catalog", "online"):
            data[key] = _absolute_sqlite(data[key], root)
        return KeelConfig(**data)


def _absolute_path(value: str, root: Path) -> str:
    if "://" in value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (root / path))


def _absolute_sqlite(value: str, root: Path) -> str:
    prefix = "sqlite:///"
    if value.startswith(prefix) and not value.startswith("sqlite:////"):
        rest = value[len(prefix) :]
        if rest and rest != ":memory:":
            return prefix + str((root / rest).resolve())
    return value


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    fields = set(KeelConfig.model_fields)
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key in ("KEEL_REQUIRE_SERVICES", "KEEL_API_TOKEN"):
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        if path[0] not in fields:
            continue
        target = out
        for part in path[:-1]:
            target = target.setdefault(part, {})
        if path[-1] in ("partition_rows", "modules", "trusted_types"):
            try:
                target[path[-1]] = yaml.safe_load(value)
            except yaml.YAMLError as exc:
                raise ConfigError(
                    f"environment variable {key}={value!r} is not a valid value: {_yaml_problem(exc)}"
                ) from None
        else:
            target[path[-1]] = value
    return out


def _describe(err: Any, sources: Mapping[tuple[str, ...], str] | None = None) -> str:
    """One pydantic error as ``where: what``, naming unknown settings and the valid ones, and the ``KEEL_*``
    variable that set the value when one did (``sources``: setting path -> variable)."""
    path = tuple(str(p) for p in err["loc"])
    loc = ".".join(path)
    found = [v for n in range(len(path), 0, -1) if (v := (sources or {}).get(path[:n]))]  # it, or a setting above
    found = found or [v for k, v in (sources or {}).items() if k[: len(path)] == path]  # or below it
    if found:
        loc += f" (set by {', '.join(sorted(found)[:3])})"
    if err["type"] == "extra_forbidden":
        nested: dict[object, type[BaseModel]] = {"spark": SparkConfig, "prediction_log": PredictionLogConfig}
        model = nested.get(err["loc"][0], KeelConfig) if len(err["loc"]) > 1 else KeelConfig
        return f"unknown setting {loc!r}; valid settings are: {', '.join(model.model_fields)}"
    return f"{loc}: {err['msg']}"


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: where it is and what is wrong (PyYAML's own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    text = f"not valid YAML{where}: {problem}" + (f" ({context})" if context else "")
    return " ".join(text.split())


def _read_yaml(path: Path) -> Any:
    """The YAML document of ``path``.

    Raises:
        ConfigError: the file cannot be read (a folder, a broken link, no permission ...), is not UTF-8 text, or
            is not valid YAML; one line naming the file and the problem.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ConfigError(
            f"{path}: is a folder, not a file; the settings go in a YAML file named {CONFIG_FILE}"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start} is {exc.object[exc.start : exc.start + 1]!r})"
        ) from None
    except OSError as exc:
        target = f" (a link to {os.readlink(path)!r})" if path.is_symlink() else ""
        raise ConfigError(f"{path}{target}: cannot be read: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {_yaml_problem(exc)}") from None


def load_config(
    root: Path, *, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> KeelConfig:
    """Read ``root/keel.yaml`` (if any), apply ``KEEL_*`` variables then ``overrides``, and resolve paths.

    Raises:
        ConfigError: the file cannot be read or is not valid YAML, or it (or a ``KEEL_*`` variable) has an
            unknown key or a value of the wrong type; the message names the file (or the variable).
    """
    path = root / CONFIG_FILE
    data: dict[str, Any] = {}
    if path.exists() or path.is_symlink():  # a link to nowhere is a configuration that cannot be read, not none
        loaded = _read_yaml(path) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
        data = loaded
    environ = os.environ if environ is None else environ
    data = _merge(data, _env_overrides(environ))
    data = _merge(data, dict(overrides or {}))
    try:
        config = KeelConfig.model_validate(data)
    except PydanticValidationError as exc:
        sources = {
            tuple(k[len(ENV_PREFIX) :].lower().split("__")): k
            for k in environ
            if k.startswith(ENV_PREFIX) and not (overrides and k[len(ENV_PREFIX) :].lower() in overrides)
        }
        problems = "; ".join(_describe(err, sources) for err in exc.errors())
        raise ConfigError(f"{path} (with KEEL_* overrides): {problems}") from exc
    return config.resolved(root.resolve())
