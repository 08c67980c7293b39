"""The retrieval-time plan of on-demand views, shared by offline retrieval, online retrieval and ``apply``:
which columns a view reads (read already, or fetched under a hidden name), where its outputs go, and the checks
of its input and output names."""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel.errors import ValidationError
from keel.features._definitions import Field
from keel.features._refs import FeatureRef

if TYPE_CHECKING:
    import pyarrow as pa

    from keel.features._on_demand import OnDemandFeatureView

__all__ = ["HIDDEN_INPUT", "OnDemandStep", "plan_on_demand", "resolve_inputs", "scoring_steps"]

#: Prefix of the columns a retrieval reads only as on-demand inputs (no user column can start with ``__keel``).
HIDDEN_INPUT = "__keel_input__"


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


def scoring_steps(
    refs: Sequence[str],
    names: Sequence[str],
    find_on_demand: Callable[[str], OnDemandFeatureView | None],
    features_of: Callable[[str], Mapping[str, str]],
) -> tuple[OnDemandStep, ...]:
    """The on-demand steps that compute a model's on-demand features when scoring an input that holds their
    inputs and request fields as columns of their own names (what batch scoring on an engine reads).

    Args:
        refs: the model's feature references (``view@3:feature``, ``on_demand_view:feature``).
        names: the model's input column for each reference (the training set's column).
        find_on_demand: the registered on-demand view of a name, or ``None`` (a feature view's reference).
        features_of: a feature view's features and their Keel dtypes.
    """
    outputs: dict[str, list[tuple[str, str]]] = {}
    views: dict[str, OnDemandFeatureView] = {}
    for ref, name in zip(refs, names, strict=True):
        parsed = FeatureRef.parse(ref)
        view = views.get(parsed.view) or find_on_demand(parsed.view)
        if view is None:
            continue
        views[parsed.view] = view
        outputs.setdefault(parsed.view, []).append((parsed.feature, name))
    steps = []
    for name, view in views.items():
        inputs = tuple(
            (feature, feature, features_of(source)[feature])
            for source, feature in view.resolve_inputs(lambda v: list(features_of(v)))
        )
        steps.append(OnDemandStep(view, inputs, tuple(outputs[name])))
    return tuple(steps)
