"""``apply``: compare declared definitions with the catalog, validate them, and record what changed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.errors import KeelError, NotFoundError, ValidationError
from keel.features._definitions import Definition, Entity, FeatureView
from keel.features._discovery import unique_definitions

if TYPE_CHECKING:
    from keel.catalog import Catalog, DefinitionRecord

#: Order in which kinds are shown and validated (entities before the views that use them).
KIND_ORDER = ("entity", "feature_view")


@dataclass(frozen=True)
class PlanItem:
    """One definition's fate in an apply.

    Attributes:
        kind: ``entity``, ``feature_view`` ...
        name: the definition's name.
        action: ``add``, ``change``, ``remove`` or ``unchanged``.
        version: the version it will have (for ``remove``, the tombstone's version).
        changes: for ``change``, the top-level keys of the spec that differ.
    """

    kind: str
    name: str
    action: str
    version: int
    changes: tuple[str, ...] = ()


@dataclass
class ApplyPlan:
    """What ``apply`` does (or did): per definition, added, changed, removed or unchanged."""

    items: list[PlanItem] = field(default_factory=list)
    applied: bool = False

    def of(self, action: str) -> list[PlanItem]:
        """The items with ``action``."""
        return [i for i in self.items if i.action == action]

    @property
    def added(self) -> list[PlanItem]:
        return self.of("add")

    @property
    def changed(self) -> list[PlanItem]:
        return self.of("change")

    @property
    def removed(self) -> list[PlanItem]:
        return self.of("remove")

    @property
    def unchanged(self) -> list[PlanItem]:
        return self.of("unchanged")

    @property
    def has_changes(self) -> bool:
        return any(i.action != "unchanged" for i in self.items)

    def __str__(self) -> str:
        lines = []
        symbol = {"add": "+", "change": "~", "remove": "-", "unchanged": " "}
        for item in self.items:
            label = item.kind.replace("_", " ")
            extra = f" ({', '.join(item.changes)})" if item.changes else ""
            version = f" v{item.version}" if item.action != "unchanged" else f" v{item.version}, unchanged"
            lines.append(f"{symbol[item.action]} {label} {item.name}{version}{extra}")
        counts = (
            f"{len(self.added)} to add, {len(self.changed)} to change, {len(self.removed)} to remove"
            if not self.applied
            else f"{len(self.added)} added, {len(self.changed)} changed, {len(self.removed)} removed"
        )
        return "\n".join([*lines, counts])


def _changed_keys(old: dict[str, Any] | None, new: dict[str, Any]) -> tuple[str, ...]:
    if old is None:
        return ()
    return tuple(sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)))


def validate_definitions(
    objects: list[Definition], current: dict[tuple[str, str], DefinitionRecord], root: Path | None
) -> None:
    """Check references between definitions and each view's source; raise on the first problem."""
    entities: dict[str, Entity] = {o.name: o for o in objects if isinstance(o, Entity)}
    for (kind, name), record in current.items():
        if kind == "entity" and record.active and name not in entities and record.spec is not None:
            entities[name] = Entity.from_spec(record.spec)
    for obj in objects:
        if not isinstance(obj, FeatureView):
            continue
        keys = obj.join_keys(entities)
        clashes = [f.name for f in obj.schema if f.name in keys]
        if clashes:
            raise ValidationError(
                f"feature view {obj.name!r}: field(s) {clashes} are also join keys of its entities; "
                "a feature cannot be a key or timestamp column",
                field=clashes[0],
            )
        for e in obj.entities:
            if isinstance(e, Entity) and e.name in entities and entities[e.name].join_keys != e.join_keys:
                raise ValidationError(
                    f"feature view {obj.name!r} uses entity {e.name!r} with join keys {list(e.join_keys)}, "
                    f"but the entity being applied has {list(entities[e.name].join_keys)}",
                    field=e.name,
                )
        if obj.source.kind == "dataframe" and not hasattr(obj.source, "df"):
            continue
        try:
            columns = obj.source.column_types(root)
        except KeelError as exc:
            raise ValidationError(f"feature view {obj.name!r}: {exc}", field=obj.name) from exc
        needed = [*keys, obj.source.timestamp]
        if obj.source.created_timestamp:
            needed.append(obj.source.created_timestamp)
        missing = [c for c in needed if c not in columns]
        if missing:
            raise ValidationError(
                f"feature view {obj.name!r}: key or timestamp column(s) {missing} missing from "
                f"{obj.source.describe}; it has: {', '.join(columns)}",
                field=missing[0],
            )
        missing_fields = [f.name for f in obj.schema if f.name not in columns]
        if missing_fields:
            raise ValidationError(
                f"feature view {obj.name!r}: schema field(s) {missing_fields} missing from "
                f"{obj.source.describe}; it has: {', '.join(columns)}",
                field=missing_fields[0],
            )


def with_referenced_entities(objects: Iterable[Definition]) -> list[Definition]:
    """The objects plus every Entity object a feature view among them refers to."""
    out = list(objects)
    for obj in list(out):
        if isinstance(obj, FeatureView):
            out.extend(e for e in obj.entities if isinstance(e, Entity))
    return unique_definitions(out)


def make_plan(
    objects: list[Definition], current: dict[tuple[str, str], DefinitionRecord], *, partial: bool
) -> ApplyPlan:
    """Compare ``objects`` with the catalog's current definitions.

    With ``partial`` (definitions given explicitly), definitions absent from ``objects`` are left alone;
    otherwise (the whole project was scanned) they are removed.
    """
    items: list[PlanItem] = []
    declared = {(o.kind, o.name): o for o in objects}
    for (kind, name), obj in declared.items():
        record = current.get((kind, name))
        if record is None:
            items.append(PlanItem(kind, name, "add", 1))
        elif not record.active:
            items.append(PlanItem(kind, name, "add", record.version + 1))
        elif record.hash != obj.definition_hash:
            items.append(PlanItem(kind, name, "change", record.version + 1, _changed_keys(record.spec, obj.spec())))
        else:
            items.append(PlanItem(kind, name, "unchanged", record.version))
    if not partial:
        for (kind, name), record in current.items():
            if record.active and (kind, name) not in declared and kind in KIND_ORDER:
                items.append(PlanItem(kind, name, "remove", record.version + 1))
    rank = {k: i for i, k in enumerate(KIND_ORDER)}
    items.sort(key=lambda i: (rank.get(i.kind, 99), i.name))
    return ApplyPlan(items)


def apply_definitions(
    objects: list[Definition],
    catalog: Catalog,
    *,
    root: Path | None,
    partial: bool,
    dry_run: bool = False,
) -> ApplyPlan:
    """Validate ``objects``, compute the plan, and (unless ``dry_run``) record it in one transaction."""
    objects = with_referenced_entities(objects)
    current = catalog.current_definitions()
    plan = make_plan(objects, current, partial=partial)
    removed = {(i.kind, i.name) for i in plan.removed}
    remaining_entities = {
        name: rec for (kind, name), rec in current.items() if kind == "entity" and (kind, name) not in removed
    }
    validate_definitions(objects, {("entity", n): r for n, r in remaining_entities.items()}, root)
    if dry_run or not plan.has_changes:
        plan.applied = not dry_run
        return plan
    declared = {(o.kind, o.name): o for o in objects}
    changes: list[tuple[str, str, str, dict[str, Any] | None, str]] = []
    for item in plan.items:
        if item.action in ("add", "change"):
            obj = declared[(item.kind, item.name)]
            changes.append((item.kind, item.name, obj.definition_hash, obj.spec(), "active"))
        elif item.action == "remove":
            changes.append((item.kind, item.name, "", None, "removed"))
    catalog.record_definitions(changes)
    plan.applied = True
    return plan


class Definitions:
    """The registered definitions of a project, read from the catalog.

    Objects applied in this process are kept, so a view whose source is an in-memory DataFrame can still be
    read; others are rebuilt from their recorded spec.
    """

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._live: dict[tuple[str, str], Definition] = {}

    def remember(self, objects: Iterable[Definition]) -> None:
        """Keep the live objects of an apply."""
        for obj in objects:
            self._live[(obj.kind, obj.name)] = obj

    def record(self, kind: str, name: str) -> DefinitionRecord:
        """The current, active record of a definition; :class:`NotFoundError` listing the known ones."""
        current = self._catalog.current_definitions(kind)
        record = current.get((kind, name))
        if record is None or not record.active:
            known = sorted(n for (_, n), r in current.items() if r.active)
            label = kind.replace("_", " ")
            raise NotFoundError(
                f"unknown {label} {name!r}; known: {', '.join(known) or 'none'}. Declare it and run `keel apply`"
            )
        return record

    def _object(self, record: DefinitionRecord) -> Definition:
        live = self._live.get((record.kind, record.name))
        if live is not None and live.definition_hash == record.hash:
            return live
        assert record.spec is not None
        if record.kind == "entity":
            return Entity.from_spec(record.spec)
        if record.kind == "feature_view":
            return FeatureView.from_spec(record.spec)
        raise NotFoundError(f"definitions of kind {record.kind!r} are not known to this Keel")

    def entities(self) -> dict[str, Entity]:
        """Every active entity by name."""
        out = {}
        for (_kind, name), rec in self._catalog.current_definitions("entity").items():
            if rec.active:
                obj = self._object(rec)
                assert isinstance(obj, Entity)
                out[name] = obj
        return out

    def feature_view(self, name: str) -> tuple[FeatureView, DefinitionRecord]:
        """The current definition of a view and its record."""
        record = self.record("feature_view", name)
        obj = self._object(record)
        assert isinstance(obj, FeatureView)
        return obj, record

    def feature_views(self) -> list[FeatureView]:
        """Every active feature view, by name."""
        out = []
        for (_, _name), rec in sorted(self._catalog.current_definitions("feature_view").items()):
            if rec.active:
                obj = self._object(rec)
                assert isinstance(obj, FeatureView)
                out.append(obj)
        return out

    def join_keys(self, view: FeatureView) -> list[str]:
        """The view's join keys, resolving entity names through the registered entities."""
        return view.join_keys(self.entities())
