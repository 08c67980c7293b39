"""What both engines' ``score`` share: the output's columns, the checks made before any row is scored, and the
scoring of one Arrow table with a loaded package.

The output is what batch scoring writes (:mod:`keel.batch`): the id column (when one is asked for), then
``prediction``, then for a classifier asked for probabilities one ``proba_<class>`` float64 column per class, in
the order of the package's classes. Its schema is known before any row is scored (the prediction's type comes
from the package's classes), so Spark can be told it up front and every local batch is written with it.

The package is duck-typed here (the engines do not import :mod:`keel.models`): it is what
:meth:`PackageSource.load <keel.engines.PackageSource.load>` returns, a :class:`keel.models.ModelPackage`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from keel.engines._base import Scoring
from keel.errors import ValidationError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["PREDICTION", "PROBA_PREFIX", "ScoringPlan", "gather"]

#: The prediction column of the output (as batch scoring names it).
PREDICTION = "prediction"
#: Prefix of a classifier's probability columns (as batch scoring names them: ``proba_<class>``).
PROBA_PREFIX = "proba_"


@dataclass(frozen=True)
class ScoringPlan:
    """How the rows of one input are scored: the columns read, the output's schema. Picklable: the Spark engine
    ships it to its Python workers beside the package reference.

    Build it with :meth:`of`, which checks the input's columns before any row is scored.

    Attributes:
        model: how messages name the model.
        features: the package's input columns.
        id_column: the input column copied to the output, if any.
        request: further input columns read (request fields).
        probabilities: whether the output has probability columns (asked for, and the model gives them).
        schema: the output's Arrow schema.
        on_demand: the on-demand steps computing features from input columns (see :class:`Scoring`).
    """

    model: str
    features: tuple[str, ...]
    id_column: str | None
    request: tuple[str, ...]
    probabilities: bool
    schema: pa.Schema
    on_demand: tuple[Any, ...] = ()

    @classmethod
    def of(cls, package: Any, columns: pa.Schema, scoring: Scoring, *, what: str) -> ScoringPlan:
        """The plan of scoring an input whose columns are ``columns`` with ``package``.

        Args:
            package: the loaded model package.
            columns: the input's Arrow schema.
            scoring: the id column, probabilities and request fields asked for.
            what: how messages name the input (``parquet files 'in.parquet'``).

        Raises:
            ValidationError: the id column or a request column is absent (named, with the input's columns); a
                feature column is absent (the package's own message); a feature column is of a type that cannot
                hold its feature's values (an integer column for a string feature, lists ...: the package's rules,
                :meth:`ModelPackage.check_input_types <keel.models.ModelPackage.check_input_types>`).
        """
        import pandas as pd
        import pyarrow as pa

        names = list(columns.names)
        wanted = [(scoring.id_column, "id column"), *((c, "request column") for c in scoring.request)]
        for step in scoring.on_demand:
            wanted += [(column, f"input of on-demand feature view {step.view.name!r}") for _, column, _ in step.inputs]
            wanted += [
                (f, f"request field of on-demand feature view {step.view.name!r}") for f in step.view.request_fields
            ]
        for column, role in wanted:
            if column is not None and column not in names:
                raise ValidationError(
                    f"{what} has no {role} {column!r}; its columns are: {', '.join(names)}", field=column
                )
        computed = [column for step in scoring.on_demand for _, column in step.outputs]
        # the package's own check, on no rows: a missing feature is the error it gives when scoring locally
        package.prepare(pd.DataFrame(columns=list(dict.fromkeys([*names, *computed]))))
        # a column of a type that cannot hold its feature's values (an integer column for a string feature, lists
        # ...) is refused before any row is scored; the values themselves are checked batch by batch
        given = pa.schema([f for f in columns if f.name not in computed])
        package.check_input_types(given, what=what)
        probabilities = scoring.probabilities and bool(package.has_probabilities)
        fields = [pa.field(PREDICTION, prediction_type(package))]
        if probabilities:
            fields += [pa.field(f"{PROBA_PREFIX}{c}", pa.float64()) for c in package.classes or []]
        if scoring.id_column is not None:
            if scoring.id_column in {f.name for f in fields}:
                raise ValidationError(
                    f"the id column {scoring.id_column!r} would have the name of an output column; rename it",
                    field=scoring.id_column,
                )
            fields.insert(0, columns.field(scoring.id_column))
        read = [*scoring.request]
        for step in scoring.on_demand:
            read += [column for _, column, _ in step.inputs] + list(step.view.request_fields)
        return cls(
            model=str(package.name),
            features=tuple(f for f in package.feature_names if f not in computed),
            id_column=scoring.id_column,
            request=tuple(dict.fromkeys(read)),
            probabilities=probabilities,
            schema=pa.schema(fields),
            on_demand=tuple(scoring.on_demand),
        )

    @property
    def columns(self) -> list[str]:
        """The input columns read: the id column, the features, the request columns and the on-demand views'
        inputs, each once."""
        return list(dict.fromkeys([*([self.id_column] if self.id_column else []), *self.features, *self.request]))

    def with_on_demand(self, table: pa.Table) -> pa.Table:
        """``table`` with the on-demand views' outputs added (or replacing columns of their names)."""
        for step in self.on_demand:
            request = {name: table.column(name) for name in step.view.request_fields}
            outputs = step.run(table, request, rows=table.num_rows, where="the input")
            for column, values in outputs.items():
                if column in table.column_names:
                    table = table.set_column(table.column_names.index(column), column, values)
                else:
                    table = table.append_column(column, values)
        return table

    def score(self, package: Any, table: pa.Table, *, first_row: int | None = None) -> pa.Table:
        """The output rows of ``table`` (which holds :attr:`columns`), in its order.

        Args:
            package: the loaded package (the one the plan was made of).
            table: the rows to score.
            first_row: the input row number of ``table``'s first row, when the engine knows it (messages then
                name the input row).

        Raises:
            ValidationError: the package refused a value (an infinite number, a string for a numeric feature
                ...); the message is the package's and names the rows (their input row numbers when known, their
                ids when there is an id column).
        """
        import pyarrow as pa

        # the values' errors name their rows as the input counts them (arrow_columns checks every value)
        inputs = package.arrow_columns(self.with_on_demand(table), rows=self._row_label(table, first_row))
        try:
            scored = package.score(inputs, probabilities=self.probabilities)
        except ValidationError as exc:
            raise self._located(exc, table, first_row) from exc
        columns: list[pa.Array | pa.ChunkedArray] = []
        if self.id_column is not None:
            columns.append(table.column(self.id_column))
        columns.append(_prediction_array(scored.predictions, self.schema.field(PREDICTION).type))
        if self.probabilities:
            proba = scored.probabilities
            columns += [pa.array(proba[:, i], type=pa.float64()) for i in range(proba.shape[1])]
        schema = self.schema
        if self.id_column is not None:  # the id as it came: an engine may hand over another string or time type
            schema = schema.set(0, table.schema.field(self.id_column))
        return pa.Table.from_arrays(columns, schema=schema)

    def _row_label(self, table: pa.Table, first_row: int | None) -> Any:
        """How an input check names the row at a position of ``table``: its input row number when known (else its
        place in the engine's batch), and its id when there is an id column."""
        id_column = self.id_column

        def label(i: int) -> str:
            where = f"input row {first_row + i}" if first_row is not None else f"row {i} of a batch"
            if id_column is not None:
                where += f" [{id_column}={table.column(id_column)[i].as_py()!r}]"
            return where

        return label

    def _located(self, exc: ValidationError, table: pa.Table, first_row: int | None) -> ValidationError:
        """``exc`` with where its row is in the input: the input row number when known, and the row's id."""
        row = exc.row
        if row is None or not 0 <= row < table.num_rows:
            return exc
        ident = ""
        if self.id_column is not None:
            ident = f"{self.id_column}={table.column(self.id_column)[row].as_py()!r}"
        if first_row is not None:
            where = f"input row {first_row + row}" + (f", {ident}" if ident else "")
        else:  # a Spark batch: its row numbers are not the input's
            where = "row counted within one batch; " + (
                f"the row has {ident}" if ident else "give an id column to find the row"
            )
        return ValidationError(f"{exc} ({where})", field=exc.field, row=None if first_row is None else first_row + row)


def prediction_type(package: Any) -> pa.DataType:
    """The Arrow type of the package's predictions, without scoring: its classes' type for a classifier (the
    estimator predicts one of its ``classes_``), float64 otherwise."""
    import pyarrow as pa

    if package.task == "classification" and package.classes:
        known = getattr(package.estimator, "classes_", None)
        classes = np.asarray(known if known is not None else package.classes)
        if classes.dtype.kind == "O":  # what pa.array makes of the values (str -> string)
            return pa.array(classes.tolist()).type
        return pa.from_numpy_dtype(classes.dtype) if classes.dtype.kind not in "US" else pa.array(classes).type
    return pa.float64()


def _prediction_array(predictions: np.ndarray, kind: pa.DataType) -> pa.Array:
    """The predictions as an Arrow array of the planned type; a cast only when the estimator's own type differs
    (a regressor predicting float32), refused if it would change a value."""
    import pyarrow as pa

    array = pa.array(predictions)
    return array if array.type == kind else array.cast(kind, safe=True)


def gather(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Tables of at least ``rows`` rows (the last may hold fewer) from consecutive ``batches``, in order.

    Readers cut their batches at row-group or block boundaries; gathering them keeps every scoring call near the
    size asked for. A table is given out as soon as it holds ``rows`` rows, so at most ``rows`` plus one batch
    are held.
    """
    import pyarrow as pa

    held: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        held.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pa.Table.from_batches(held)
            held, count = [], 0
    if held:
        yield pa.Table.from_batches(held)
