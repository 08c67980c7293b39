"""The online store base class: its public methods translate a backend library's errors into the error tree."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from keel.errors import BackendError, ConflictError, ValidationError
from keel.online import OnlineRead, OnlineStore
from keel.online._batch import Batch

EVENT = pa.timestamp("us", tz="UTC")


class _LibraryFailure(Exception):
    """What a backend's library raises (sqlite3.Error, redis.RedisError ...)."""


class _Failing(OnlineStore):
    """A backend whose every primitive raises ``error``: a library failure or a Keel error of its own."""

    kind = "failing"

    def __init__(self, error: BaseException) -> None:
        super().__init__("failing://somewhere", prefix="p")
        self.error = error

    def _write(self, batch: Batch, ttl: timedelta | None) -> int:
        raise self.error

    def _read(self, view: str, entity_keys: Sequence[tuple[Any, ...]], features: Sequence[str]) -> OnlineRead:
        raise self.error

    def _drop_view(self, view: str) -> None:
        raise self.error

    def _begin_generation(self, view: str, owner: dict[str, Any]) -> str:
        raise self.error

    def _publish_generation(self, view: str, generation: str) -> None:
        raise self.error

    def _discard_generation(self, view: str, generation: str) -> None:
        raise self.error

    def _hidden_generations(self, view: str) -> list[str]:
        raise self.error

    def _sweep_generations(self, view: str) -> list[str]:
        raise self.error

    def close(self) -> None:
        pass


def _write(store: OnlineStore) -> int:
    table = pa.table({"k": [1], "t": pa.array([datetime(2024, 1, 1, tzinfo=UTC)], EVENT), "a": [1.0]})
    return store.write_batch("v", table, keys=["k"], features=["a"], timestamp="t")


ACTIONS = [
    ("reading", lambda s: s.read("v", [(1,)], ["a"])),
    ("writing", _write),
    ("dropping the view", lambda s: s.drop_view("v")),
    ("starting a generation", lambda s: s.begin_generation("v")),
    ("publishing generation 0123456789abcdef", lambda s: s.publish_generation("v", "0123456789abcdef")),
    ("discarding generation 0123456789abcdef", lambda s: s.discard_generation("v", "0123456789abcdef")),
    ("listing generations", lambda s: s.hidden_generations("v")),
    ("removing abandoned generations", lambda s: s.sweep_generations("v")),
]


@pytest.mark.parametrize(("action", "call"), ACTIONS)
def test_a_library_error_becomes_a_backend_error_naming_the_store_the_view_and_the_action(
    action: str, call: Any
) -> None:
    cause = _LibraryFailure("connection reset")
    store = _Failing(cause)

    with pytest.raises(BackendError) as err:
        call(store)

    store_name = "failing online store failing://somewhere (prefix 'p')"
    assert str(err.value) == f"{store_name}: view 'v': {action} failed: connection reset"
    assert err.value.__cause__ is cause


@pytest.mark.parametrize(("action", "call"), ACTIONS)
@pytest.mark.parametrize("error", [ConflictError("types differ"), ValidationError("bad key"), BackendError("own")])
def test_a_keel_error_raised_by_the_backend_passes_through_untranslated(
    action: str, call: Any, error: Exception
) -> None:
    with pytest.raises(type(error)) as err:
        call(_Failing(error))

    assert err.value is error


def test_an_interrupt_is_not_translated() -> None:
    with pytest.raises(KeyboardInterrupt):
        _Failing(KeyboardInterrupt()).read("v", [(1,)], ["a"])


def test_input_is_validated_before_the_backend_is_called() -> None:
    store = _Failing(_LibraryFailure("never reached"))

    with pytest.raises(ValidationError, match="feature view name 'bad name' is invalid"):
        store.drop_view("bad name")
    with pytest.raises(ValidationError, match="ttl must be a positive timedelta"):
        store.write_batch("v", pa.table({"k": [1]}), keys=["k"], features=[], timestamp="t", ttl=timedelta(0))
