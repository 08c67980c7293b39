"""On-demand feature views: plain functions of a DataFrame, computed at retrieval time, offline and online.

The same function, given frames built by the same conversion, runs inside ``historical_features`` (training)
and ``online_features`` (serving); its output is checked against its declared schema and cast to it in both
places. That is what keeps training and serving consistent.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from keel.errors import ValidationError
from keel.features._definitions import Definition, FeatureView, Field, check_name, find_field, schema_fields
from keel.features._dtypes import arrow_type, dtype_of_arrow, pandas_type
from keel.features._refs import FeatureRef

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "OnDemandFeatureView",
    "OnDemandStep",
    "RequestSource",
    "on_demand_feature_view",
    "plan_on_demand",
    "resolve_inputs",
    "to_arrow",
]

#: Prefix of the columns a retrieval reads only as on-demand inputs (no user column can start with ``__keel``).
HIDDEN_INPUT = "__keel_input__"

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


def function_source(function: Callable[..., Any], where: str) -> str:
    """The dedented source code of ``function`` without its decorators: what makes its definition hash.

    Raises:
        ValidationError: the source cannot be read (a function typed at an interactive prompt).
    """
    try:
        text = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError) as exc:
        raise ValidationError(
            f"{where}: cannot read the source code of {getattr(function, '__qualname__', function)!r} ({exc}); "
            "its source is part of the definition, so define the function in a module or a notebook cell"
        ) from exc
    try:
        tree = ast.parse(text)
    except SyntaxError:  # a lambda: getsource returns the lines around it, not always a whole statement
        return text.strip() + "\n"
    node = tree.body[0] if tree.body else None
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.decorator_list:
        text = "\n".join(text.splitlines()[node.lineno - 1 :])  # formatting the decorator changes no behaviour
    return text.strip() + "\n"


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


# -- shared by declaration, apply and both retrieval paths ------------------------------------------------------
@dataclass(frozen=True)
class OnDemandStep:
    """One on-demand view of a retrieval (offline or online): where its inputs are, where its outputs go.

    Attributes:
        view: the on-demand view.
        inputs: per input, the function's column, the retrieved column holding it and its Keel dtype.
        outputs: per requested output, the output feature and the result column.
    """

    view: OnDemandFeatureView
    inputs: tuple[tuple[str, str, str], ...]
    outputs: tuple[tuple[str, str], ...]

    def run(self, retrieved: Any, request: Mapping[str, Any], *, rows: int, where: str) -> dict[str, pa.Array]:
        """The result columns, computed from ``retrieved[column]`` (a table or a dict of lists) and ``request``."""
        outputs = self.view.compute(
            {name: retrieved[column] for name, column, _ in self.inputs},
            {name: dtype for name, _, dtype in self.inputs},
            request,
            rows=rows,
            where=where,
        )
        return {column: outputs[feature] for feature, column in self.outputs}


def plan_on_demand(
    view: OnDemandFeatureView,
    features: Sequence[str],
    *,
    full_feature_names: bool,
    reads: MutableMapping[str, list[tuple[str, str]]],
    dtypes: Mapping[str, Mapping[str, str]],
    label: Callable[[str], str],
) -> OnDemandStep:
    """Plan one on-demand view of a retrieval.

    Args:
        view: the on-demand view.
        features: the outputs requested (``"*"`` for all).
        full_feature_names: name result columns ``view__feature``.
        reads: per source view, the ``(feature, column)`` pairs the retrieval reads. An input read already is
            taken from its column; another is appended under a hidden column name.
        dtypes: per source view, the Keel dtype of each feature it has where the retrieval reads it.
        label: how messages name a source view (``feature view 'activity' (version 3)``).
    """
    chosen = view.feature_names if "*" in features else list(features)
    for f in chosen:
        view.field(f)  # raises, listing the outputs
    inputs = []
    for source, feature in view.resolve_inputs(lambda v: list(dtypes[v]), label=label):
        column = next((c for f, c in reads[source] if f == feature), None)
        if column is None:
            column = f"{HIDDEN_INPUT}{source}__{feature}"
            reads[source].append((feature, column))
        inputs.append((feature, column, dtypes[source][feature]))
    outputs = tuple((f, f"{view.name}__{f}" if full_feature_names else f) for f in chosen)
    return OnDemandStep(view, tuple(inputs), outputs)


def _check_names(
    name: str, inputs: Sequence[tuple[str, str]], request: Mapping[str, Any], outputs: Sequence[Field] | Sequence[str]
) -> None:
    """Refuse two inputs with one column name, and an output named like an input."""
    what = f"on-demand feature view {name!r}"
    seen: dict[str, str] = {}
    for view, feature in inputs:
        other = seen.get(feature)
        if other is not None and other != view:
            raise ValidationError(
                f"{what}: input feature {feature!r} comes from both {other!r} and {view!r}; the function's frame "
                "names columns by feature, so list only one of them in inputs",
                field=feature,
            )
        seen[feature] = view
    for field in request:
        if field in seen:
            raise ValidationError(
                f"{what}: request field {field!r} has the name of feature {seen[field]}:{field}; rename one of them",
                field=field,
            )
    for out in outputs:
        out_name = out.name if isinstance(out, Field) else out
        if out_name in seen or out_name in request:
            origin = f"input feature {seen[out_name]}:{out_name}" if out_name in seen else f"request field {out_name!r}"
            raise ValidationError(
                f"{what}: output {out_name!r} has the name of its {origin}; give the output another name",
                field=out_name,
            )


def resolve_inputs(
    name: str,
    inputs: Sequence[str],
    request: Mapping[str, Any],
    outputs: Sequence[str],
    available: Callable[[str], Sequence[str]],
    label: Callable[[str], str] | None = None,
) -> list[tuple[str, str]]:
    """The ``(view, feature)`` pairs of an on-demand view's ``inputs``, checked against ``available(view)``.

    Works from a definition's spec as well as from the object, so ``apply`` checks registered on-demand views
    against the views it changes.
    """
    describe = label or (lambda v: f"feature view {v!r}")
    pairs: list[tuple[str, str]] = []
    for text in inputs:
        ref = FeatureRef.parse(text)
        have = list(available(ref.view))
        if ref.feature == "*":
            pairs.extend((ref.view, f) for f in have)
        elif ref.feature in have:
            pairs.append((ref.view, ref.feature))
        else:
            raise ValidationError(
                f"on-demand feature view {name!r} reads {text!r}, but {describe(ref.view)} has no feature "
                f"{ref.feature!r}; it has: {', '.join(have) or 'no feature'}",
                field=text,
            )
    pairs = list(dict.fromkeys(pairs))
    _check_names(name, pairs, request, outputs)
    return pairs


_PY_TYPES: dict[str, str] = {
    "int64": "an integer",
    "float64": "a number",
    "bool": "a boolean",
    "string": "a string",
    "timestamp": "a timestamp",
    "list[float64]": "a list of numbers",
}


def _fits(value: Any, dtype: str) -> bool:
    """Whether one Python value can be a value of ``dtype`` (nulls always can)."""
    import datetime as dt
    import numbers

    import numpy as np

    if value is None or (isinstance(value, float) and value != value):
        return True
    if isinstance(value, bool | np.bool_):
        return dtype == "bool"
    if dtype == "float64":
        return isinstance(value, numbers.Real)
    if dtype == "int64":
        return isinstance(value, numbers.Integral) or (isinstance(value, numbers.Real) and float(value).is_integer())
    if dtype == "string":
        return isinstance(value, str)
    if dtype == "timestamp":
        return isinstance(value, dt.date | str | np.datetime64)
    if dtype == "list[float64]":
        return isinstance(value, list | tuple | np.ndarray) and all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value
        )
    return False


def _bad_value(values: Any, dtype: str, what: str, field: str | None) -> ValidationError:
    """The error for the first value of ``values`` that is not of ``dtype`` (or a general one)."""
    items = values.tolist() if hasattr(values, "tolist") else list(values)
    for row, value in enumerate(items):
        if not _fits(value, dtype):
            return ValidationError(
                f"{what}: row {row} has {value!r}, which is not {_PY_TYPES[dtype]} ({dtype})", field=field, row=row
            )
    return ValidationError(f"{what}: values do not convert to {dtype}", field=field)


def to_arrow(values: Any, dtype: str, *, what: str, field: str | None = None) -> pa.Array:
    """``values`` (an Arrow array, a pandas Series, a list) as an Arrow array of the Keel ``dtype``.

    Only conversions that keep the meaning are made: integers to floats, integral floats to integers, naive
    timestamps taken as UTC, ISO 8601 strings and dates to timestamps, NaN to null. Anything else (text
    where numbers are declared, fractional numbers where integers are) is a :class:`ValidationError` naming
    ``what`` and, when it can be found, the row.
    """
    import pandas as pd
    import pyarrow as pa

    target = arrow_type(dtype)
    if isinstance(values, pa.ChunkedArray):
        arr = values.combine_chunks()
    elif isinstance(values, pa.Array):
        arr = values
    else:
        try:
            arr = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
            raise _bad_value(values, dtype, what, field) from exc
    if arr.type == target:
        return arr
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), target)
    natural = dtype_of_arrow(arr.type)
    if dtype == "timestamp" and natural == "string":
        try:
            parsed = pd.to_datetime(pd.Series(arr.to_pylist(), dtype=object), utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"{what}: {exc}; write timestamps in ISO 8601", field=field) from exc
        arr = pa.array(parsed, from_pandas=True)
        natural = "timestamp"
    compatible = natural == dtype or (natural, dtype) in {("int64", "float64"), ("float64", "int64")}
    if not compatible:
        raise ValidationError(
            f"{what} holds {natural or arr.type} values, not {dtype}; convert them (or declare {natural or arr.type})",
            field=field,
        )
    try:
        return arr.cast(target, safe=dtype != "timestamp")  # timestamps: nanoseconds truncated, as on ingest
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        if dtype == "int64" and natural == "float64":
            raise _first_fraction(arr, what, field) from exc
        raise ValidationError(f"{what}: cannot convert to {dtype}: {exc}", field=field) from exc


def _first_fraction(arr: pa.Array, what: str, field: str | None) -> ValidationError:
    for row, value in enumerate(arr.to_pylist()):
        if value is not None and not float(value).is_integer():
            return ValidationError(f"{what}: row {row} has {value!r}, which is not an integer", field=field, row=row)
    return ValidationError(f"{what}: values out of the int64 range", field=field)
