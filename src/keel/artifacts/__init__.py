"""Content-addressed artifact store on fsspec."""

from keel.artifacts._store import ArtifactStore, sha256_file

__all__ = ["ArtifactStore", "sha256_file"]
