"""Declarations users write once: entities, fields and feature views."""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

from keel.errors import ValidationError
from keel.features._dtypes import canonical_dtype
from keel.features._sources import Source, source_from_spec

__all__ = ["Definition", "Entity", "FeatureView", "Field", "definition_hash"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_PREFIX = "__keel"


def check_name(name: object, what: str) -> str:
    """Refuse names that cannot be a column, a file name and a SQL identifier at once."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValidationError(
            f"{what} name {name!r} is invalid: use letters, digits and underscores, not starting with a digit",
            field=str(name),
        )
    if name.startswith(_RESERVED_PREFIX):
        raise ValidationError(f"{what} name {name!r} is reserved (it starts with {_RESERVED_PREFIX!r})")
    return name


def definition_hash(spec: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a definition's spec."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Definition(ABC):
    """A named declaration that ``project.apply()`` discovers, validates and records in the catalog."""

    kind: ClassVar[str]
    name: str

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """A JSON-able, process-independent description of the definition."""

    @property
    def definition_hash(self) -> str:
        """SHA-256 of :meth:`spec`; a changed hash makes a new definition version."""
        return definition_hash(self.spec())


@dataclass(frozen=True, eq=True)
class Entity(Definition):
    """A thing features describe, identified by one or more join keys.

    Example:
        >>> customer = Entity("customer", join_keys=["customer_id"])
    """

    kind: ClassVar[str] = "entity"

    name: str
    join_keys: tuple[str, ...] = ()
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    def __init__(
        self,
        name: str,
        join_keys: Iterable[str] | None = None,
        *,
        description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> None:
        check_name(name, "entity")
        keys = tuple(join_keys) if join_keys is not None else (f"{name}_id",)
        if isinstance(join_keys, str):
            keys = (join_keys,)
        if not keys:
            raise ValidationError(f"entity {name!r} needs at least one join key", field=name)
        for key in keys:
            check_name(key, f"entity {name!r}: join key")
        if len(set(keys)) != len(keys):
            raise ValidationError(f"entity {name!r} lists a join key twice: {list(keys)}", field=name)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "join_keys", keys)
        object.__setattr__(self, "description", description)
        object.__setattr__(self, "tags", dict(tags or {}))

    def __hash__(self) -> int:
        return hash((self.name, self.join_keys))

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "join_keys": list(self.join_keys),
            "description": self.description,
            "tags": dict(sorted(self.tags.items())),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Entity:
        """Rebuild from :meth:`spec`."""
        return cls(spec["name"], spec["join_keys"], description=spec.get("description", ""), tags=spec.get("tags"))


@dataclass(frozen=True)
class Field:
    """A named, typed column of a feature view.

    Args:
        name: the column name in the source and the feature name in references.
        dtype: one of ``int64``, ``float64``, ``bool``, ``string``, ``timestamp``, ``list[float64]``.
    """

    name: str
    dtype: str
    description: str = ""

    def __post_init__(self) -> None:
        check_name(self.name, "field")
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype, where=f"field {self.name!r}: ", field=self.name))

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "description": self.description}


def schema_fields(schema: Iterable[Field] | Field, what: str, *, field: str) -> list[Field]:
    """The fields of a ``schema=`` argument; refuse an empty schema, entries that are not fields, repeated names.

    Args:
        schema: one field or an iterable of them.
        what: who declares the schema, for messages (``feature view 'activity'``).
        field: the name recorded on the errors.
    """
    fields = [schema] if isinstance(schema, Field) else list(schema)
    if not fields:
        raise ValidationError(f"{what}: schema lists no fields", field=field)
    for f in fields:
        if not isinstance(f, Field):
            raise ValidationError(f"{what}: schema entries must be Field objects, got {f!r}", field=field)
    names = [f.name for f in fields]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValidationError(f"{what}: field(s) {dupes} listed twice", field=field)
    return fields


def find_field(schema: Iterable[Field], name: str, what: str) -> Field:
    """The field of ``schema`` called ``name``; a :class:`ValidationError` listing the fields otherwise."""
    fields = list(schema)
    for f in fields:
        if f.name == name:
            return f
    raise ValidationError(
        f"{what} has no feature {name!r}; it has: {', '.join(f.name for f in fields)}",
        field=name,
    )


class FeatureView(Definition):
    """A group of features of some entities, read from one source, with a time to live.

    Args:
        name: unique name of the view.
        entities: the entities (objects or names) whose join keys identify a row.
        source: where the rows come from; names the event-time column.
        schema: the feature columns and their dtypes.
        ttl: how long a value stays valid after its event time; ``None`` means forever.
        tags: free-form labels.
        description: what the view holds.
        online: whether ``materialize`` copies the view to the online store.
        expectations: what every version's data should satisfy (:mod:`keel.validation`: ``NotNull("spend")``,
            ``InRange(...)`` …, or their specs), checked at every ingest.
        validation: what a failed error-level expectation does at ingest: ``warn`` (the version is written and
            the results stored with it) or ``strict`` (nothing is published; the error lists the failures).

    Example:
        >>> activity = FeatureView(
        ...     "customer_activity", entities=[customer], ttl=timedelta(days=30),
        ...     source=ParquetSource("data/activity.parquet", timestamp="event_time"),
        ...     schema=[Field("spend_30d", "float64"), Field("plan", "string")],
        ... )  # doctest: +SKIP
    """

    kind: ClassVar[str] = "feature_view"

    def __init__(
        self,
        name: str,
        *,
        entities: Iterable[Entity | str],
        source: Source,
        schema: Iterable[Field] | Field,
        ttl: timedelta | None = None,
        tags: Mapping[str, str] | None = None,
        description: str = "",
        online: bool = True,
        expectations: Iterable[Any] = (),
        validation: str = "warn",
    ) -> None:
        check_name(name, "feature view")
        self.name = name
        ents: list[Entity | str] = list(entities) if not isinstance(entities, Entity | str) else [entities]
        if not ents:
            raise ValidationError(f"feature view {name!r} needs at least one entity", field=name)
        for e in ents:
            if not isinstance(e, Entity | str):
                raise ValidationError(
                    f"feature view {name!r}: entities must be Entity objects or names, got {type(e).__name__}",
                    field=name,
                )
            if isinstance(e, str):
                check_name(e, f"feature view {name!r}: entity")
        entity_names = [e.name if isinstance(e, Entity) else e for e in ents]
        if len(set(entity_names)) != len(entity_names):
            raise ValidationError(f"feature view {name!r} lists an entity twice: {entity_names}", field=name)
        self.entities = ents
        if not isinstance(source, Source):
            raise ValidationError(
                f"feature view {name!r}: source must be a ParquetSource, CsvSource or DataFrameSource, "
                f"got {type(source).__name__}",
                field=name,
            )
        self.source = source
        fields = schema_fields(schema, f"feature view {name!r}", field=name)
        names = [f.name for f in fields]
        for column in (source.timestamp, source.created_timestamp):
            if column in names:
                raise ValidationError(
                    f"feature view {name!r}: field {column!r} is also the source's timestamp column; "
                    "a feature cannot be a key or timestamp column",
                    field=column,
                )
        self.schema: list[Field] = fields
        if ttl is not None:
            if not isinstance(ttl, timedelta):
                raise ValidationError(
                    f"feature view {name!r}: ttl must be a datetime.timedelta or None, got {ttl!r}",
                    field="ttl",
                )
            if ttl <= timedelta(0):
                raise ValidationError(f"feature view {name!r}: ttl must be positive, got {ttl}", field="ttl")
        self.ttl = ttl
        self.tags = dict(tags or {})
        self.description = description
        self.online = bool(online)
        if validation not in ("warn", "strict"):
            raise ValidationError(
                f"feature view {name!r}: validation must be 'warn' or 'strict', not {validation!r}", field="validation"
            )
        self.validation = validation
        #: live custom checks (Python functions) by name: specs cannot hold them
        self.custom_checks: dict[str, Any] = {}
        self.expectations: list[dict[str, Any]] = [self._expectation_spec(e) for e in expectations]

    def _expectation_spec(self, expectation: Any) -> dict[str, Any]:
        """An expectation's spec, its column checked against the view's columns."""
        spec = dict(expectation) if isinstance(expectation, Mapping) else getattr(expectation, "spec", lambda: None)()
        if not isinstance(spec, dict) or "expect" not in spec:
            raise ValidationError(
                f"feature view {self.name!r}: {expectation!r} is not an expectation (keel.validation)",
                field="expectations",
            )
        known = [*self.feature_names, self.source.timestamp, *filter(None, [self.source.created_timestamp])]
        keys = [k for e in self.entities if isinstance(e, Entity) for k in e.join_keys]
        columns = [spec["feature"]] if spec.get("feature") is not None else []
        if spec["expect"] == "custom":
            columns = list(spec.get("columns") or [])
            if not isinstance(expectation, Mapping):
                self.custom_checks[str(spec["name"])] = expectation
        for column in columns:
            if column not in known and column not in keys:
                raise ValidationError(
                    f"feature view {self.name!r}: expectation {spec.get('name') or spec['expect']!r} names "
                    f"{column!r}, which is not one of its columns ({', '.join(c for c in [*keys, *known] if c)})",
                    field=str(column),
                )
        return spec

    @property
    def has_custom_checks(self) -> bool:
        """Whether an expectation is a Python function (the live object is needed to run it)."""
        return any(spec["expect"] == "custom" for spec in self.expectations)

    # -- derived -------------------------------------------------------------------------------------------
    @property
    def entity_names(self) -> list[str]:
        """Names of the view's entities, in declaration order."""
        return [e.name if isinstance(e, Entity) else e for e in self.entities]

    @property
    def feature_names(self) -> list[str]:
        """Names of the view's features, in schema order."""
        return [f.name for f in self.schema]

    def field(self, name: str) -> Field:
        """The field called ``name``; a :class:`ValidationError` listing the view's fields otherwise."""
        return find_field(self.schema, name, f"feature view {self.name!r}")

    def join_keys(self, entities: Mapping[str, Entity]) -> list[str]:
        """The view's join keys, resolving entity names through ``entities``."""
        keys: list[str] = []
        for e in self.entities:
            ent = e if isinstance(e, Entity) else entities.get(e)
            if ent is None:
                raise ValidationError(
                    f"feature view {self.name!r} refers to unknown entity {e!r}; declare Entity({e!r}, ...) "
                    "and apply it",
                    field=str(e),
                )
            keys.extend(k for k in ent.join_keys if k not in keys)
        return keys

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "entities": self.entity_names,
            "source": self.source.spec(),
            "schema": [f.spec() for f in self.schema],
            "ttl_seconds": self.ttl.total_seconds() if self.ttl is not None else None,
            "tags": dict(sorted(self.tags.items())),
            "description": self.description,
            "online": self.online,
            # only when declared: the hash of a view without expectations stays what it was
            **({"expectations": self.expectations, "validation": self.validation} if self.expectations else {}),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FeatureView:
        """Rebuild from :meth:`spec` (entities come back as names)."""
        ttl = spec.get("ttl_seconds")
        return cls(
            spec["name"],
            entities=list(spec["entities"]),
            source=source_from_spec(spec["source"]),
            schema=[Field(f["name"], f["dtype"], f.get("description", "")) for f in spec["schema"]],
            ttl=timedelta(seconds=ttl) if ttl is not None else None,
            tags=spec.get("tags"),
            description=spec.get("description", ""),
            online=spec.get("online", True),
            expectations=spec.get("expectations", ()),
            validation=spec.get("validation", "warn"),
        )

    def __repr__(self) -> str:
        return (
            f"FeatureView({self.name!r}, entities={self.entity_names}, features={self.feature_names}, ttl={self.ttl})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureView) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(self.name)
