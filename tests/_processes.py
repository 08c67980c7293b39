"""Processes that end, for the tests of work left behind by a killed process (a plain module on ``sys.path``)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

#: A script printing the owner record of the process running it.
_PRINT_OWNER = (
    "import json; from keel._process import ProcessOwner; print(json.dumps(ProcessOwner.current().to_dict()))"
)


def dead_owner() -> dict[str, Any]:
    """The owner record (:meth:`keel._process.ProcessOwner.to_dict`) of a process that has ended."""
    child = subprocess.run([sys.executable, "-c", _PRINT_OWNER], capture_output=True, text=True, check=True)
    owner: dict[str, Any] = json.loads(child.stdout)
    return owner
