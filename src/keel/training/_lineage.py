"""Facts that make a run reproducible: code version, library versions, data digests."""

from __future__ import annotations

import hashlib
import math
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

LIBRARIES = ("keel", "scikit-learn", "numpy", "pandas", "pyarrow", "duckdb", "scipy", "skops")
_DISTRIBUTIONS = {"sklearn": "scikit-learn", "lightgbm": "lightgbm", "xgboost": "xgboost", "catboost": "catboost"}


def git_commit(root: Path) -> dict[str, Any] | None:
    """The project's git commit and whether the work tree has uncommitted changes (``None`` outside git)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)} if commit else None


def library_versions(estimator: Any = None) -> dict[str, str]:
    """Versions of the libraries a model depends on (and of the estimator's own library)."""
    names = list(LIBRARIES)
    if estimator is not None:
        root = type(estimator).__module__.split(".")[0]
        names.append(_DISTRIBUTIONS.get(root, root))
    out = {}
    for name in dict.fromkeys(names):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    out["python"] = platform.python_version()
    return out


def frame_digest(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's column names and values, in row order (the training set's identity)."""
    import pandas as pd

    h = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    for name in frame.columns:
        col = frame[name]
        try:
            hashed = pd.util.hash_pandas_object(col, index=False).to_numpy()
        except TypeError:  # unhashable cells (lists): hash their text
            hashed = pd.util.hash_pandas_object(col.astype(str), index=False).to_numpy()
        h.update(hashed.tobytes())
    return h.hexdigest()


def json_safe(value: Any) -> Any:
    """``value`` with everything JSON cannot hold turned into text (estimators, NaN, numpy scalars...)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if hasattr(value, "item") and not hasattr(value, "__len__"):
        return json_safe(value.item())
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return repr(value)
