"""The installed Keel's version (its own module, so that a service can name it without importing the package root)."""

__version__ = "0.1.0"
