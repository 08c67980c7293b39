"""The examples in the docstrings run: every ``>>>`` line not marked ``# doctest: +SKIP`` is checked."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import keel

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(keel.__path__, "keel.") if not m.name.startswith(("keel.demo", "keel.cli"))
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed"


def test_some_examples_are_checked() -> None:
    attempted = sum(
        doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS).attempted for name in MODULES
    )
    assert attempted >= 5
