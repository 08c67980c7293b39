"""The demo's folder: recreated on every run, and only ever deleted when a previous demo made it."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from keel.config import CONFIG_FILE
from keel.demo import DEMO_MARKER, EXAMPLE
from keel.errors import ConflictError

__all__ = ["mark_folder", "prepare_folder"]


def _is_previous_demo(root: Path) -> bool:
    if not (root / DEMO_MARKER).is_file():
        return False
    try:
        config = yaml.safe_load((root / CONFIG_FILE).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(config, dict) and config.get("name") == EXAMPLE


def prepare_folder(root: Path) -> None:
    """Make ``root`` ready for a fresh demo: remove a previous demo there; refuse any other non-empty folder.

    Raises:
        ConflictError: ``root`` is a file, or a non-empty folder that a previous demo did not create.
    """
    if root.exists() and not root.is_dir():
        raise ConflictError(f"{root} is a file; the demo needs a folder — choose another path")
    if root.is_dir() and any(root.iterdir()):
        if not _is_previous_demo(root):
            raise ConflictError(
                f"{root} is not empty and was not created by `keel demo`; choose an empty or new folder "
                "(the demo deletes and recreates its folder on every run)"
            )
        shutil.rmtree(root)


def mark_folder(root: Path) -> None:
    """Mark ``root`` as a demo's, which the next run may delete."""
    (root / DEMO_MARKER).write_text("Created by `keel demo`, which deletes and recreates this folder.\n")
