"""Opening a catalog: URLs, drivers and failures reported with the URL (never its password)."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.catalog import SqlCatalog, latest_version
from keel.errors import BackendError, ConfigError


def test_a_sqlite_catalog_creates_its_missing_folders(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "catalog.db"

    catalog = SqlCatalog(f"sqlite:///{path}")

    assert path.is_file()
    assert catalog.dialect == "sqlite"
    assert catalog.schema_version() == latest_version()
    catalog.close()


def test_an_unreachable_postgresql_server_is_a_backend_error_without_the_password() -> None:
    url = "postgresql+psycopg://keel:s3cr3t@127.0.0.1:1/nowhere?connect_timeout=2"

    with pytest.raises(BackendError, match=r"cannot open the catalog at postgresql\+psycopg://keel:\*\*\*@") as info:
        SqlCatalog(url)

    assert "s3cr3t" not in str(info.value)


def test_a_plain_postgresql_url_uses_the_psycopg_driver(postgres_url: str) -> None:
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)

    catalog = SqlCatalog(plain)

    assert catalog.dialect == "postgresql"
    assert catalog.schema_version() == latest_version()
    catalog.close()


def test_an_unsupported_database_is_a_config_error_naming_the_supported_ones() -> None:
    with pytest.raises(ConfigError, match=r"unsupported database 'mysql'; use sqlite:/// or postgresql://"):
        SqlCatalog("mysql://root@localhost/keel")


def test_a_malformed_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"catalog URL 'not a url' is not a valid database URL"):
        SqlCatalog("not a url")
