"""Schema-driven fuzzing of a running Keel HTTP service with schemathesis, shared by the fuzz tests.

:func:`fuzz` loads the service's served OpenAPI document and sends, for every operation, requests generated
from it: valid ones (positive) and ones that break it (negative), plus bodies drawn from project-aware
strategies (real view, feature and model names with random values), which reach past the name lookups into
value parsing, where the bugs live. With ``stateful=True`` it also walks the spec's links (a state machine
chaining operations, the response of one feeding the next).

Every response is checked by schemathesis' checks: no 5xx, a documented status code, content type and headers,
a body matching the documented schema, negative data refused with a 4xx, and a declared bearer token enforced.
One check is left out: ``positive_data_acceptance`` expects every schema-valid request to succeed, but a schema
cannot say which views, join keys or models a project has, so such a request is rightly refused with a 4xx
naming the field. Failures are collected, not raised, so that one run counts them all: :class:`FuzzReport`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import positive_data_acceptance

__all__ = ["FuzzReport", "fuzz", "json_values", "rows_of"]

#: Left out for the reason the module's docstring gives.
EXCLUDED_CHECKS = [positive_data_acceptance]
#: Reproductions kept per distinct failure.
_SAMPLES = 3
#: Seconds a request may take before the run counts it as the service hanging.
_TIMEOUT = 30.0


@dataclass
class FuzzReport:
    """What a fuzz run sent and what it saw.

    Attributes:
        service: the service fuzzed.
        examples: hypothesis examples per operation and generation mode.
        cases: requests sent (the checks' own probes not counted).
        stateful_cases: of which, requests sent while walking the spec's links.
        statuses: responses by status code.
        failures: each distinct failure (``"POST /features: <check>: <message>"``) with a few reproductions
            (curl commands).
        healthy_after: whether ``GET /health`` answered 200 after the run.
    """

    service: str
    examples: int
    cases: int = 0
    stateful_cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[str, list[str]] = field(default_factory=dict)
    healthy_after: bool | None = None

    @property
    def server_errors(self) -> int:
        """Responses with a status of 500 or more."""
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def fail(self, key: str, reproduction: str) -> None:
        samples = self.failures.setdefault(key, [])
        if len(samples) < _SAMPLES:
            samples.append(reproduction)

    def summary(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "service": self.service,
            "examples": self.examples,
            "cases": self.cases,
            "stateful_cases": self.stateful_cases,
            "server_errors": self.server_errors,
            "statuses": {str(s): n for s, n in sorted(self.statuses.items())},
            "violations": len(self.failures),
            "failures": self.failures,
            "healthy_after": self.healthy_after,
        }

    def explain(self) -> str:
        """The report, readable in a failed assertion."""
        return json.dumps(self.summary(), indent=2, ensure_ascii=False)


def json_values(*extra: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Any JSON value, biased towards what breaks parsers: integers past 64 bits, huge and tiny floats,
    date-like and number-like strings, nesting; ``extra`` strategies are mixed in."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30]),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([1e308, -1e308, 5e-324, 0.1, -0.0]),
        st.text(max_size=20),
        st.sampled_from(
            [
                "",
                " ",
                "2025-01-05T10:00:00Z",
                "2025-01-05",
                "2025-13-45T99:00:00",
                "0001-01-01T00:00:00Z",
                "9999-12-31T23:59:59+14:00",
                "1e400",
                "NaN",
                "-Infinity",
                "12",
                "true",
                "null",
                "\x00",
                "view:feature",
            ]
        ),
        *extra,
    )
    return st.recursive(
        scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    )


def rows_of(columns: Mapping[str, st.SearchStrategy[Any]], *, max_rows: int = 4) -> st.SearchStrategy[Any]:
    """Lists of JSON objects with a plausible value for each of ``columns`` (drawn from its strategy) but for at
    most one, which holds any JSON value: a request broken in one place reaches the check of that place. Now
    and then a field is missing or unknown, a row is not an object, or the whole is not a list."""

    @st.composite
    def row(draw: st.DrawFn) -> dict[str, Any]:
        values = draw(st.fixed_dictionaries(dict(columns)))
        broken = draw(st.none() | st.sampled_from(sorted(columns)))
        if broken is not None:
            values[broken] = draw(json_values())
        return values

    partial = st.fixed_dictionaries({}, optional={**columns, "unknown_field": json_values()})
    return st.one_of(
        st.lists(row(), min_size=1, max_size=max_rows),
        st.lists(row() | partial | json_values(), max_size=2),
        json_values(),
    )


def fuzz(
    base_url: str,
    *,
    service: str,
    examples: int,
    headers: Mapping[str, str] | None = None,
    path_parameters: Mapping[str, Mapping[str, Any]] | None = None,
    bodies: Mapping[str, st.SearchStrategy[Any]] | None = None,
    stateful: bool = False,
) -> FuzzReport:
    """Fuzz the service at ``base_url`` from its served ``/openapi.json``.

    Args:
        base_url: the running service (``http://127.0.0.1:6566``).
        service: the service's name, for the report.
        examples: hypothesis examples per operation and generation mode (derandomized: the same run each time).
        headers: sent with every request (the bearer token).
        path_parameters: for an operation (``"POST /v1/models/{name}/predict"``), path parameters to also fuzz
            it with (a served model's name): the run then covers both random and real values.
        bodies: for an operation, a strategy of bodies to send besides the schema-generated ones.
        stateful: also walk the spec's links with a state machine.
    """
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", headers=dict(headers or {}))
    report = FuzzReport(service=service, examples=examples)
    sent_headers = dict(headers or {})
    options = settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            label = operation.label
            strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
            if operation.body or operation.path_parameters or operation.query:
                strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
            given_path = (path_parameters or {}).get(label)
            if given_path is not None:
                strategies += [
                    operation.as_strategy(mode, path_parameters=dict(given_path))
                    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
                ]
            extra = (bodies or {}).get(label)
            if extra is not None:
                strategies.append(
                    extra.map(
                        lambda body, op=operation, p=given_path: op.Case(
                            body=body, path_parameters=dict(p or {}), media_type="application/json"
                        )
                    )
                )
            for strategy in strategies:

                @options
                @given(strategy)
                def run(case: schemathesis.Case) -> None:
                    _send(case, report, session, sent_headers)

                run()
        if stateful:
            _walk_links(schema, report, session, sent_headers, examples)
        try:
            report.healthy_after = session.get(f"{base_url}/health", timeout=_TIMEOUT).status_code == 200
        except requests.RequestException:
            report.healthy_after = False
    return report


def _send(case: schemathesis.Case, report: FuzzReport, session: requests.Session, headers: dict[str, str]) -> Any:
    """Send one case, count its answer and record every check it fails."""
    label = case.operation.label
    try:
        response = case.call(session=session, headers=headers, timeout=_TIMEOUT)
    except requests.RequestException as exc:  # the service hung up or hung: as bad as a 5xx, and counted apart
        report.fail(f"{label}: no response: {type(exc).__name__}", case.as_curl_command(headers=headers))
        return None
    report.cases += 1
    report.statuses[response.status_code] += 1
    try:
        case.validate_response(
            response,
            excluded_checks=EXCLUDED_CHECKS,
            headers=headers,
            transport_kwargs={"session": session, "headers": headers, "timeout": _TIMEOUT},
        )
    except FailureGroup as group:
        for failure in group.exceptions:
            _record(report, case, failure, response, headers)
    except Failure as failure:
        _record(report, case, failure, response, headers)
    return response


def _record(
    report: FuzzReport, case: schemathesis.Case, failure: Failure, response: Any, headers: dict[str, str]
) -> None:
    status = response.status_code
    message = str(failure.message)
    if status >= 500:  # what the server said is the clue (its request id left out, so that failures group)
        try:
            message = response.json()["error"]["message"].split("request id")[0]
        except (ValueError, KeyError, TypeError):
            message = response.text
    message = " ".join(message.split())[:160]
    report.fail(f"{case.operation.label}: {failure.title} ({status}): {message}", case.as_curl_command(headers=headers))


def _walk_links(
    schema: Any, report: FuzzReport, session: requests.Session, headers: dict[str, str], examples: int
) -> None:
    """Chain operations along the spec's links; every step is sent and checked like the others."""
    machine = schema.as_state_machine()

    class Walk(machine):  # type: ignore[misc, valid-type]
        def step(self, input: Any) -> Any:
            report.stateful_cases += 1
            response = _send(input.case, report, session, headers)
            if response is None:
                return None
            from schemathesis.generation.stateful.state_machine import StepOutput

            return StepOutput(response, input.case)

    Walk.run(
        settings=settings(
            max_examples=examples,
            derandomize=True,
            database=None,
            deadline=None,
            stateful_step_count=4,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
    )
