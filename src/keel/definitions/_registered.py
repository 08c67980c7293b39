"""The registered definitions of a project, read from the catalog (and the live objects applied in this process)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from keel.definitions._apply import ON_DEMAND, changed_keys
from keel.definitions._discovery import discover, loaded_definitions
from keel.errors import KeelError, NotFoundError, ValidationError
from keel.features import Definition, Entity, FeatureRef, FeatureView, OnDemandFeatureView

D = TypeVar("D", OnDemandFeatureView, FeatureView)
_WHAT: dict[type, str] = {OnDemandFeatureView: "on-demand feature view", FeatureView: "feature view"}

if TYPE_CHECKING:
    from collections.abc import Sequence

    from keel.catalog import Catalog, DefinitionRecord

__all__ = ["Definitions"]


class Definitions:
    """The registered definitions of a project, read from the catalog.

    Objects applied in this process are kept, so a view whose source is an in-memory DataFrame can still be
    read; others are rebuilt from their recorded spec.

    An on-demand feature view holds a Python function, which the catalog cannot rebuild; so does a feature view with
    custom checks. The object matching its registered definition is taken, in this order, from: the objects applied
    in this process; the project modules this process has already imported; the project's modules, imported as
    ``apply`` imports them (once, when first needed: a feature server or a CLI command works without an ``apply``
    of its own).

    Args:
        catalog: the project's catalog.
        root: the project folder, to find on-demand views in its modules (``None``: only applied objects).
        modules: the project's modules when ``keel.yaml`` lists them (default: every module of ``root``).
    """

    def __init__(self, catalog: Catalog, *, root: Path | None = None, modules: list[str] | None = None) -> None:
        self._catalog = catalog
        self._live: dict[tuple[str, str], Definition] = {}
        self._root = root
        self._modules = modules
        self._loading = threading.RLock()

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
        if record.kind == ON_DEMAND:
            return self._on_demand(record)
        live = self._live.get((record.kind, record.name))
        if live is not None and live.definition_hash == record.hash:
            return live
        assert record.spec is not None
        if record.kind == "entity":
            return Entity.from_spec(record.spec)
        if record.kind == "feature_view":
            if any(e.get("expect") == "custom" for e in record.spec.get("expectations") or ()):
                return self._live_object(record, FeatureView)  # its custom checks are Python functions
            return FeatureView.from_spec(record.spec)
        raise NotFoundError(f"definitions of kind {record.kind!r} are not known to this Keel")

    def _on_demand(self, record: DefinitionRecord) -> OnDemandFeatureView:
        """The live object of a registered on-demand view (see the class docstring for where it is found)."""
        return self._live_object(record, OnDemandFeatureView)

    def _live_object(self, record: DefinitionRecord, kind: type[D]) -> D:
        """The live object of a definition that holds Python functions: an on-demand view, a feature view with
        custom checks (see the class docstring for where it is found)."""
        what = _WHAT.get(kind, "definition")
        live = self._live.get((record.kind, record.name))
        if isinstance(live, kind) and live.definition_hash == record.hash:
            return live
        if self._root is None:
            raise NotFoundError(
                f"{what} {record.name!r} (v{record.version}) holds a Python function, which cannot be "
                "rebuilt from the catalog; import the module declaring it and pass it to project.apply() in this "
                "process, or open the project with keel.Project.open(folder) so Keel imports its modules"
            )
        with self._loading:  # threads needing it at once import the project once
            live = self._live.get((record.kind, record.name))
            if isinstance(live, kind) and live.definition_hash == record.hash:
                return live
            found = self._find_live(record, self._root, kind)
            self._live[(record.kind, record.name)] = found
            return found

    def _find_live(self, record: DefinitionRecord, root: Path, kind: type[D]) -> D:
        what = _WHAT.get(kind, "definition")

        def named(objects: Iterable[Definition]) -> list[D]:
            return [o for o in objects if isinstance(o, kind) and o.name == record.name]

        candidates = named(loaded_definitions(root))
        if not any(c.definition_hash == record.hash for c in candidates):
            try:
                candidates = named(discover(root, self._modules))
            except ValidationError as exc:
                raise ValidationError(
                    f"cannot load {what} {record.name!r} from the project's modules: {exc}",
                    field=record.name,
                ) from exc
        for candidate in candidates:
            if candidate.definition_hash == record.hash:
                return candidate
        if not candidates:
            raise NotFoundError(
                f"{what} {record.name!r} is registered (v{record.version}) but no module of the "
                f"project {root} declares it; declare it again, or run `keel apply` to remove it"
            )
        differ = changed_keys(record.spec, candidates[0].spec())
        raise ValidationError(
            f"{what} {record.name!r} in the project's modules differs from its registered "
            f"definition v{record.version} (it differs in: {', '.join(differ)}); run `keel apply` to register it",
            field=record.name,
        )

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

    def on_demand_feature_view(self, name: str) -> tuple[OnDemandFeatureView, DefinitionRecord]:
        """The live object of a registered on-demand view, and its record.

        Raises:
            NotFoundError: no such view is registered, or no module of the project declares it any more.
            ValidationError: the declared one differs from the registered one (run ``keel apply``).
        """
        record = self.record(ON_DEMAND, name)
        return self._on_demand(record), record

    def find_on_demand(self, name: str) -> OnDemandFeatureView | None:
        """The on-demand view ``name`` when one is registered, else ``None`` (retrieval tries views first)."""
        record = self._catalog.current_definitions(ON_DEMAND).get((ON_DEMAND, name))
        if record is None or not record.active:
            return None
        return self._on_demand(record)

    def join_keys(self, view: FeatureView) -> list[str]:
        """The view's join keys, resolving entity names through the registered entities."""
        return view.join_keys(self.entities())

    def registered(self, view: FeatureView | str) -> tuple[FeatureView, int]:
        """The registered view (given as an object or a name) and its definition version.

        A :class:`FeatureView` object must match its registered definition; it is then kept as the live object
        (so a view whose source is an in-memory DataFrame can be read).

        Raises:
            NotFoundError: the view is not registered.
            ValidationError: the object differs from its registered definition (run ``keel apply``).
        """
        if isinstance(view, FeatureView):
            _registered, record = self.feature_view(view.name)
            if record.hash != view.definition_hash:
                raise ValidationError(
                    f"feature view {view.name!r} differs from its registered definition (v{record.version}); "
                    "run `keel apply` (or project.apply()) first",
                    field=view.name,
                )
            self.remember([view])
            return view, record.version
        if not isinstance(view, str):
            raise ValidationError(f"expected a FeatureView or a view name, got {type(view).__name__}")
        registered, record = self.feature_view(view)
        return registered, record.version

    def views_read(self, feature_refs: Sequence[str]) -> list[str]:
        """The feature views that ``feature_refs`` read, an on-demand view's inputs included, in first-use order."""
        views: list[str] = []
        for text in feature_refs:
            view = FeatureRef.parse(text).view
            try:
                on_demand = self.find_on_demand(view)
            except KeelError:
                on_demand = None
            for name in [r.view for r in on_demand.inputs] if on_demand is not None else [view]:
                if name not in views:
                    views.append(name)
        return views

    def key_types(self, feature_refs: Sequence[str]) -> tuple[tuple[str, str], ...]:
        """``(join key, "int64" | "string")`` of every view ``feature_refs`` read, as the latest ingested version
        records the key's type (a view no longer registered is skipped: its keys are unknown)."""
        keys: dict[str, str] = {}
        for view in self.views_read(feature_refs):
            try:
                names = self.join_keys(self.feature_view(view)[0])
            except KeelError:
                continue
            try:
                dtypes = dict(self._catalog.feature_version(view).columns.get("join_keys") or {})
            except NotFoundError:
                dtypes = {}
            for name in names:
                integer = str(dtypes.get(name, "")).startswith(("int", "uint"))
                keys.setdefault(name, "int64" if integer else "string")
        return tuple(keys.items())
