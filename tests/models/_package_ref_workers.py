"""Process targets of the package reference tests (a plain module, importable by 'spawn' children)."""

from __future__ import annotations

import os
from typing import Any

from keel.models import PackageRef


def load_and_score(ref: PackageRef, columns: dict[str, list[Any]]) -> tuple[int, int, list[float]]:
    """Load ``ref`` in this process: the process id, the loaded package's id, and its class-1 probabilities."""
    import pandas as pd

    package = ref.load()
    return os.getpid(), id(package), [float(p) for p in package.predict_proba(pd.DataFrame(columns))[:, 1]]
