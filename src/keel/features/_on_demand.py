"""On-demand feature views: plain functions of a DataFrame, computed at retrieval time, offline and online.

The same function, given frames built by the same conversion, runs inside ``historical_features`` (training)
and ``online_features`` (serving); its output is checked against its declared schema and cast to it in both
places. That is what keeps training and serving consistent.

This module holds the declaration (:class:`RequestSource`, :class:`OnDemandFeatureView`, the decorator, the
capture of the function's source); :mod:`keel.features._on_demand_plan` plans a view's run inside a retrieval,
and :func:`keel.features._dtypes.to_arrow` converts its inputs and outputs.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from keel._code import function_source
from keel.errors import ValidationError
from keel.features._definitions import Definition, FeatureView, Field, check_name, find_field, schema_fields
from keel.features._dtypes import arrow_type, pandas_type, to_arrow
from keel.features._on_demand_plan import _check_names, resolve_inputs
from keel.features._refs import FeatureRef

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["OnDemandFeatureView", "RequestSource", "on_demand_feature_view"]

#: The function an on-demand feature view wraps: one DataFrame in (one row per entity), one DataFrame out.
Transform = Callable[["pd.DataFrame"], "pd.DataFrame"]


class RequestSource:
    """Fields that arrive with the request rather than from a feature view (a cart's value, a device).

    Offline, each field is a column of the entity frame passed to ``historical_features``; online, a key of
    each entity row passed to ``online_features``. Values are converted to the declared dtype in both.

    Args:
        name: the source's name (for messages and the catalog).
        schema: the request fields and their dtypes.
        description: what the request carries.

    Example:
        >>> cart = RequestSource("cart", schema=[Field("cart_value", "float64")])
    """

    def __init__(self, name: str, schema: Iterable[Field] | Field, *, description: str = "") -> None:
        check_name(name, "request source")
        self.name = name
        self.schema: list[Field] = schema_fields(schema, f"request source {name!r}", field=name)
        self.description = description

    @property
    def field_names(self) -> list[str]:
        """Names of the request fields, in schema order."""
        return [f.name for f in self.schema]

    def spec(self) -> dict[str, Any]:
        """A JSON-able description (part of the definition of the on-demand views that use it)."""
        return {"name": self.name, "schema": [f.spec() for f in self.schema], "description": self.description}

    def __repr__(self) -> str:
        return f"RequestSource({self.name!r}, fields={self.field_names})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RequestSource) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(self.name)


class OnDemandFeatureView(Definition):
    """Features computed at retrieval time by a plain function of a DataFrame.

    The function gets one row per entity row, with a column per input feature (named like the feature) and per
    request field, typed as ``historical_features`` returns them (nullable ``Int64`` and ``boolean``,
    ``float64`` with NaN for nulls, strings, UTC timestamps). It returns a DataFrame holding at least the
    declared output columns, one row per input row, in order; extra columns are ignored. The outputs are
    checked and cast to the declared dtypes; NaN becomes null.

    Usually made with :func:`on_demand_feature_view`. The object stays callable as the plain function, so the
    function can be unit-tested alone. Its definition (and hash) includes the function's source code: changing
    the function makes a new definition version at the next ``apply``. Only the function's own source counts:
    a change in a helper it calls or a module constant it reads is not seen.

    Args:
        name: unique name; references are ``name:output``.
        function: ``DataFrame -> DataFrame``, pure and vectorised.
        sources: the feature views (objects or names) and :class:`RequestSource` objects it reads.
        schema: the output columns and their dtypes.
        inputs: ``"view:feature"`` references of the features it reads (``"view:*"`` for all of a view);
            default every feature of each view in ``sources``. Request fields are always passed.
        description: what it computes (default: the function's docstring).
        tags: free-form labels.
    """

    kind: ClassVar[str] = "on_demand_feature_view"

    def __init__(
        self,
        name: str,
        *,
        function: Transform,
        sources: Iterable[FeatureView | RequestSource | str] | FeatureView | RequestSource | str,
        schema: Iterable[Field] | Field,
        inputs: Iterable[str] | str | None = None,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        if name == "<lambda>":
            raise ValidationError("on-demand feature view: a lambda needs a name; pass name='...'")
        check_name(name, "on-demand feature view")
        what = f"on-demand feature view {name!r}"
        self.name = name
        if not inspect.isfunction(function) or inspect.iscoroutinefunction(function):
            kind = "coroutine function" if inspect.iscoroutinefunction(function) else type(function).__name__
            raise ValidationError(
                f"{what}: expected a plain function DataFrame -> DataFrame, got a {kind}",
                field=name,
            )
        try:
            inspect.signature(function).bind(None)
        except TypeError:
            raise ValidationError(
                f"{what}: the function must take exactly one argument (the input DataFrame); "
                f"its signature is {function.__name__}{inspect.signature(function)}",
                field=name,
            ) from None
        self.function = function
        self.source_code = function_source(function, what)
        functools.update_wrapper(self, function)  # name, docstring and __wrapped__ of the plain function
        items = [sources] if isinstance(sources, FeatureView | RequestSource | str) else list(sources)
        if not items:
            raise ValidationError(f"{what} needs at least one source (a feature view or a RequestSource)", field=name)
        for s in items:
            if not isinstance(s, FeatureView | RequestSource | str):
                raise ValidationError(
                    f"{what}: sources must be FeatureView objects, view names or RequestSource objects, "
                    f"got {type(s).__name__}",
                    field=name,
                )
            if isinstance(s, str):
                check_name(s, f"{what}: source")
        names = [s if isinstance(s, str) else s.name for s in items]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValidationError(f"{what} lists source(s) {dupes} twice", field=dupes[0])
        self.sources: list[FeatureView | RequestSource | str] = items
        self.request_sources = [s for s in items if isinstance(s, RequestSource)]
        views = {s if isinstance(s, str) else s.name: s for s in items if not isinstance(s, RequestSource)}
        self.inputs: list[FeatureRef] = self._declared_inputs(inputs, views)
        self.schema: list[Field] = schema_fields(schema, what, field=name)
        request_fields = [f for rs in self.request_sources for f in rs.schema]
        self.request_fields: dict[str, Field] = {}
        for f in request_fields:
            if f.name in self.request_fields:
                raise ValidationError(f"{what}: two request sources declare field {f.name!r}", field=f.name)
            self.request_fields[f.name] = f
        _check_names(
            name, [(r.view, r.feature) for r in self.inputs if r.feature != "*"], self.request_fields, self.schema
        )
        self.description = (inspect.getdoc(function) or "") if description is None else description
        self.tags = dict(tags or {})

    def _declared_inputs(
        self, inputs: Iterable[str] | str | None, views: Mapping[str, FeatureView | str]
    ) -> list[FeatureRef]:
        """The input references: explicit, ``view:*`` expanded where the view object is at hand."""
        what = f"on-demand feature view {self.name!r}"
        if inputs is None:
            refs = [FeatureRef(v, "*") for v in views]
        else:
            refs = [FeatureRef.parse(r) for r in ([inputs] if isinstance(inputs, str) else list(inputs))]
        for ref in refs:
            if ref.version is not None:
                raise ValidationError(
                    f"{what}: input {str(ref)!r} pins a version; inputs follow the version each retrieval uses "
                    "(pin the view in the feature references of historical_features instead)",
                    field=str(ref),
                )
            if ref.view not in views:
                request = [rs.name for rs in self.request_sources]
                hint = (
                    "request fields are always passed whole; list only feature view features in inputs"
                    if ref.view in request
                    else f"add the view to sources (it has: {', '.join(views) or 'no feature view'})"
                )
                raise ValidationError(
                    f"{what}: input {str(ref)!r} names feature view {ref.view!r}, which is not among its "
                    f"sources; {hint}",
                    field=str(ref),
                )
        unused = [v for v in views if not any(r.view == v for r in refs)]
        if unused:
            raise ValidationError(
                f"{what}: source view(s) {unused} have no feature in inputs; list the features it reads "
                "(or 'view:*'), or drop the view from sources",
                field=unused[0],
            )
        expanded: list[FeatureRef] = []
        for ref in refs:
            view = views[ref.view]
            if not isinstance(view, FeatureView):
                expanded.append(ref)  # a view named only: expanded against the registered view
            elif ref.feature == "*":
                expanded.extend(FeatureRef(view.name, f) for f in view.feature_names)
            else:
                view.field(ref.feature)  # raises, listing the view's features
                expanded.append(ref)
        return list(dict.fromkeys(expanded))

    # -- derived -------------------------------------------------------------------------------------------
    @property
    def view_names(self) -> list[str]:
        """Names of the feature views it reads, in source order."""
        return [s if isinstance(s, str) else s.name for s in self.sources if not isinstance(s, RequestSource)]

    @property
    def feature_names(self) -> list[str]:
        """Names of its output features, in schema order."""
        return [f.name for f in self.schema]

    def field(self, name: str) -> Field:
        """The output field called ``name``; a :class:`ValidationError` listing the outputs otherwise."""
        return find_field(self.schema, name, f"on-demand feature view {self.name!r}")

    def resolve_inputs(
        self, available: Callable[[str], Sequence[str]], *, label: Callable[[str], str] | None = None
    ) -> list[tuple[str, str]]:
        """The ``(view, feature)`` pairs it reads, ``view:*`` expanded against ``available(view)``.

        Args:
            available: the features a view has where the function is about to run (a stored version's, the
                online store's, a registered definition's).
            label: how messages name a view (``feature view 'activity' (version 3)``).

        Raises:
            ValidationError: an input feature is not available, or two inputs end up with one name.
        """
        return resolve_inputs(
            self.name, [str(r) for r in self.inputs], self.request_fields, self.feature_names, available, label
        )

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sources": [
                {"kind": "request", **s.spec()}
                if isinstance(s, RequestSource)
                else {"kind": "feature_view", "name": s if isinstance(s, str) else s.name}
                for s in self.sources
            ],
            "inputs": [str(r) for r in self.inputs],
            "schema": [f.spec() for f in self.schema],
            "function": {"name": self.function.__name__, "source": self.source_code},
            "description": self.description,
            "tags": dict(sorted(self.tags.items())),
        }

    # -- running ---------------------------------------------------------------------------------------------
    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        """Call the plain function (for unit tests); retrieval calls :meth:`compute`."""
        result: pd.DataFrame = self.function(df)
        return result

    def compute(
        self,
        features: Mapping[str, Any],
        feature_dtypes: Mapping[str, str],
        request: Mapping[str, Any],
        *,
        rows: int,
        where: str,
    ) -> dict[str, pa.Array]:
        """Build the input frame, run the function once on it, and return its checked, cast outputs.

        Both retrieval paths call this, so the function sees the same frame offline and online.

        Args:
            features: input feature name -> values (an Arrow array, a pandas Series or a list), one per row.
            feature_dtypes: input feature name -> Keel dtype of those values.
            request: request field name -> values, one per row.
            rows: the number of rows.
            where: how messages name the request's container (``entity frame``, ``entity rows``).

        Returns:
            Output feature -> Arrow array of its declared dtype, one value per row.

        Raises:
            ValidationError: a request value does not convert to its declared dtype; the function raises; or
                its output lacks a declared column, has another length, or holds values of another dtype.
        """
        import pyarrow as pa

        if rows == 0:  # the function is not asked to handle an empty frame
            return {f.name: pa.array([], type=arrow_type(f.dtype)) for f in self.schema}
        columns: dict[str, pa.Array] = {}
        for name, values in features.items():
            columns[name] = to_arrow(values, feature_dtypes[name], what=f"input feature {name!r}")
        for name, f in self.request_fields.items():
            columns[name] = to_arrow(
                request[name],
                f.dtype,
                what=f"{where}, request field {name!r} of on-demand feature view {self.name!r}",
                field=name,
            )
        frame = pa.table(columns).to_pandas(types_mapper=pandas_type)
        try:
            result = self.function(frame)
        except Exception as exc:
            raise ValidationError(
                f"on-demand feature view {self.name!r}: its function raised {type(exc).__name__}: {exc}",
                field=self.name,
            ) from exc
        return self._outputs(result, frame.index)

    def _outputs(self, result: object, index: pd.Index) -> dict[str, pa.Array]:
        import pandas as pd

        what = f"on-demand feature view {self.name!r}"
        if not isinstance(result, pd.DataFrame):
            raise ValidationError(
                f"{what}: its function returned {type(result).__name__}; it must return a pandas DataFrame with "
                f"the columns of its schema ({', '.join(self.feature_names)})",
                field=self.name,
            )
        missing = [n for n in self.feature_names if n not in result.columns]
        if missing:
            raise ValidationError(
                f"{what}: its function returned no column {missing[0]!r}, declared in its schema; it returned: "
                f"{', '.join(map(str, result.columns)) or 'no column'}",
                field=missing[0],
            )
        repeated = [n for n in self.feature_names if list(result.columns).count(n) > 1]
        if repeated:
            raise ValidationError(f"{what}: its function returned column {repeated[0]!r} twice", field=repeated[0])
        if len(result) != len(index):
            raise ValidationError(
                f"{what}: its function returned {len(result)} rows for {len(index)} input rows; return one row "
                "per input row, in the input's order",
                field=self.name,
            )
        if not result.index.equals(index):
            if not (result.index.is_unique and result.index.isin(index).all()):
                raise ValidationError(
                    f"{what}: its function returned rows with an index that is not the input's; keep the input "
                    "frame's index (build the output from the input's columns)",
                    field=self.name,
                )
            result = result.reindex(index)  # reordered rows: aligned on the index, as pandas would
        return {
            f.name: to_arrow(result[f.name], f.dtype, what=f"{what}: output column {f.name!r}", field=f.name)
            for f in self.schema
        }

    def __repr__(self) -> str:
        return (
            f"OnDemandFeatureView({self.name!r}, inputs={[str(r) for r in self.inputs]}, "
            f"request={list(self.request_fields)}, features={self.feature_names})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OnDemandFeatureView) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(self.name)


def on_demand_feature_view(
    *,
    sources: Iterable[FeatureView | RequestSource | str] | FeatureView | RequestSource | str,
    schema: Iterable[Field] | Field,
    inputs: Iterable[str] | str | None = None,
    name: str | None = None,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Callable[[Transform], OnDemandFeatureView]:
    """Declare an on-demand feature view: a plain function of a DataFrame, computed at retrieval time.

    The decorated function stays callable (test it on a hand-made frame); ``apply`` registers it like a
    feature view, and references ``name:output`` work in ``historical_features`` and ``online_features``,
    which fetch its inputs, run it once per call on all rows, and check its output against ``schema``.

    Args:
        sources: the feature views (objects or names) and :class:`RequestSource` objects it reads.
        schema: its output columns and their dtypes.
        inputs: ``"view:feature"`` references of the features it reads (``"view:*"`` for all of a view);
            default every feature of each view in ``sources``.
        name: its name (default: the function's name).
        description: what it computes (default: the function's docstring).
        tags: free-form labels.

    Example:
        >>> cart = RequestSource("cart", schema=[Field("cart_value", "float64")])
        >>> @on_demand_feature_view(
        ...     sources=[customer_activity, cart],
        ...     inputs=["customer_activity:spend_30d", "customer_activity:orders_30d"],
        ...     schema=[Field("spend_per_order", "float64"), Field("cart_to_spend", "float64")],
        ... )
        ... def basket(df: pd.DataFrame) -> pd.DataFrame:
        ...     return pd.DataFrame({
        ...         "spend_per_order": df["spend_30d"] / df["orders_30d"].clip(lower=1),
        ...         "cart_to_spend": df["cart_value"] / (df["spend_30d"] + 1),
        ...     })  # doctest: +SKIP
    """

    def decorate(function: Transform) -> OnDemandFeatureView:
        return OnDemandFeatureView(
            name if name is not None else getattr(function, "__name__", repr(function)),
            function=function,
            sources=sources,
            schema=schema,
            inputs=inputs,
            description=description,
            tags=tags,
        )

    return decorate
