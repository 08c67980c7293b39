"""``apply``: compare declared definitions with the catalog, validate them, and record what changed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.definitions._discovery import unique_definitions
from keel.errors import KeelError, ValidationError
from keel.features._definitions import Definition, Entity, FeatureView
from keel.features._on_demand import OnDemandFeatureView
from keel.features._on_demand_plan import resolve_inputs

if TYPE_CHECKING:
    from keel.catalog import Catalog, DefinitionRecord

#: Order in which kinds are shown and validated (entities before the views that use them).
KIND_ORDER = ("entity", "feature_view", "on_demand_feature_view", "training_spec")
ON_DEMAND = OnDemandFeatureView.kind


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


def changed_keys(old: dict[str, Any] | None, new: dict[str, Any]) -> tuple[str, ...]:
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


def validate_on_demand(
    objects: list[Definition], remaining: Mapping[tuple[str, str], DefinitionRecord], removed: set[tuple[str, str]]
) -> None:
    """Check every on-demand view active after the apply against the feature views active after it.

    Registered on-demand views are checked too (from their recorded spec): changing a view so that an
    on-demand view registered earlier loses an input is refused here rather than at the next retrieval.
    """
    specs: dict[tuple[str, str], dict[str, Any]] = {
        key: rec.spec for key, rec in remaining.items() if rec.active and rec.spec is not None
    }
    specs.update({(o.kind, o.name): o.spec() for o in objects})
    views = {name: spec for (kind, name), spec in specs.items() if kind == FeatureView.kind}
    on_demand = {name: spec for (kind, name), spec in specs.items() if kind == ON_DEMAND}
    entities = {name: spec for (kind, name), spec in specs.items() if kind == Entity.kind}
    shared = sorted(views.keys() & on_demand.keys())
    if shared:
        raise ValidationError(
            f"a feature view and an on-demand feature view are both called {shared[0]!r}, so "
            f"'{shared[0]}:feature' references would be ambiguous; rename one of them",
            field=shared[0],
        )
    for name, spec in sorted(on_demand.items()):
        sources = [s["name"] for s in spec["sources"] if s["kind"] == FeatureView.kind]
        for view in sources:
            if view not in views:
                why = (
                    "which this apply removes (it is no longer declared); keep it, or remove the on-demand view too"
                    if (FeatureView.kind, view) in removed
                    else "which is not registered; declare it and apply it with the on-demand view"
                )
                raise ValidationError(f"on-demand feature view {name!r} reads feature view {view!r}, {why}", field=view)
        request = {f["name"]: f for s in spec["sources"] if s["kind"] == "request" for f in s["schema"]}
        outputs = [f["name"] for f in spec["schema"]]
        resolve_inputs(name, spec["inputs"], request, outputs, lambda v: [f["name"] for f in views[v]["schema"]])
        for view in sources:
            keys = [k for e in views[view]["entities"] for k in entities.get(e, {}).get("join_keys", [])]
            clashes = [o for o in outputs if o in keys]
            if clashes:
                raise ValidationError(
                    f"on-demand feature view {name!r}: output {clashes[0]!r} has the name of a join key of feature "
                    f"view {view!r}; give the output another name",
                    field=clashes[0],
                )


def validate_training_specs(
    objects: list[Definition], remaining: Mapping[tuple[str, str], DefinitionRecord], root: Path | None
) -> None:
    """Check that each training spec being applied reads views and features that exist after the apply."""
    specs: dict[tuple[str, str], dict[str, Any]] = {
        key: rec.spec for key, rec in remaining.items() if rec.active and rec.spec is not None
    }
    specs.update({(o.kind, o.name): o.spec() for o in objects})
    features: dict[str, list[str]] = {
        name: [f["name"] for f in spec["schema"]]
        for (kind, name), spec in specs.items()
        if kind in (FeatureView.kind, ON_DEMAND)
    }
    for obj in objects:
        if obj.kind != "training_spec":
            continue
        spec = obj.spec()
        for ref in spec["features"]:
            view, _, feature = ref.partition(":")
            view = view.split("@")[0]
            if view not in features:
                raise ValidationError(
                    f"training spec {obj.name!r}: feature reference {ref!r} names unknown view {view!r}; known: "
                    f"{', '.join(sorted(features)) or 'none'}",
                    field=ref,
                )
            if feature != "*" and feature not in features[view]:
                raise ValidationError(
                    f"training spec {obj.name!r}: view {view!r} has no feature {feature!r}; it has: "
                    f"{', '.join(features[view])}",
                    field=ref,
                )
        labels = spec["labels"]
        if isinstance(labels, str) and "://" not in labels:
            path = Path(labels)
            if not path.is_absolute() and root is not None:
                path = root / path
            if not path.exists():
                raise ValidationError(f"training spec {obj.name!r}: no labels file at {path}", field="labels")


def with_referenced_definitions(objects: Iterable[Definition]) -> list[Definition]:
    """The objects plus the FeatureView objects on-demand views among them read, and the Entity objects
    feature views among them (or so added) refer to."""
    out = list(objects)
    for obj in list(out):
        if isinstance(obj, OnDemandFeatureView):
            out.extend(s for s in obj.sources if isinstance(s, FeatureView))
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
            items.append(PlanItem(kind, name, "change", record.version + 1, changed_keys(record.spec, obj.spec())))
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
    objects = with_referenced_definitions(objects)
    current = catalog.current_definitions()
    plan = make_plan(objects, current, partial=partial)
    removed = {(i.kind, i.name) for i in plan.removed}
    remaining = {key: rec for key, rec in current.items() if key not in removed}
    validate_definitions(objects, {key: rec for key, rec in remaining.items() if key[0] == Entity.kind}, root)
    validate_on_demand(objects, remaining, removed)
    validate_training_specs(objects, remaining, root)
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
