"""The source code of a user's function: part of the definition (and hash) of what it computes or checks."""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

from keel.errors import ValidationError

__all__ = ["function_source"]


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
