"""keel.yaml, KEEL_* overrides, path resolution, and the backend plug-in table."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel._backends import backend_class, open_catalog, scheme_of
from keel.catalog import SqlCatalog
from keel.config import DEFAULT_YAML, KeelConfig, load_config
from keel.errors import ConfigError


def _write(root: Path, text: str) -> None:
    (root / "keel.yaml").write_text(text)


def test_a_project_without_keel_yaml_gets_the_defaults_under_dot_keel(project_dir: Path) -> None:
    config = load_config(project_dir, environ={})

    root = project_dir.resolve()
    assert config.name == "project"
    assert config.catalog == f"sqlite:///{root / '.keel/catalog.db'}"
    assert config.artifacts == str(root / ".keel/artifacts")
    assert config.offline == str(root / ".keel/offline")
    assert config.online == f"sqlite:///{root / '.keel/online.db'}"
    assert (config.cache, config.engine, config.spark.master) == ("memory", "local", "local[*]")
    assert config.modules is None
    assert config.partition_rows == 1_000_000


def test_the_embedded_default_yaml_gives_the_same_configuration(project_dir: Path) -> None:
    _write(project_dir, DEFAULT_YAML)

    assert load_config(project_dir, environ={}) == KeelConfig().resolved(project_dir.resolve())


def test_values_in_keel_yaml_are_used(project_dir: Path) -> None:
    _write(
        project_dir,
        "name: churn\n"
        "catalog: postgresql+psycopg://keel@db/keel\n"
        "artifacts: s3://bucket/artifacts\n"
        "online: redis://localhost:6379/0\n"
        "cache: none\n"
        "engine: spark\n"
        "spark: {master: 'spark://head:7077', conf: {spark.executor.memory: 4g}}\n"
        "modules: [features.py]\n"
        "partition_rows: 5000\n",
    )

    config = load_config(project_dir, environ={})

    assert config.name == "churn"
    assert config.catalog == "postgresql+psycopg://keel@db/keel"
    assert config.artifacts == "s3://bucket/artifacts"
    assert config.online == "redis://localhost:6379/0"
    assert (config.cache, config.engine) == ("none", "spark")
    assert config.spark.master == "spark://head:7077"
    assert config.spark.conf == {"spark.executor.memory": "4g"}
    assert config.modules == ["features.py"]
    assert config.partition_rows == 5000


def test_keel_environment_variables_override_keel_yaml(project_dir: Path) -> None:
    _write(project_dir, "catalog: sqlite:///from-yaml.db\ncache: none\nspark: {master: 'local[2]'}\n")
    environ = {
        "KEEL_CATALOG": "postgresql+psycopg://keel@db/keel",
        "KEEL_SPARK__MASTER": "spark://head:7077",
        "KEEL_PARTITION_ROWS": "42",
        "KEEL_MODULES": "[a.py, b.py]",
        "KEEL_REQUIRE_SERVICES": "1",  # not a setting: ignored
        "OTHER": "x",
    }

    config = load_config(project_dir, environ=environ)

    assert config.catalog == "postgresql+psycopg://keel@db/keel"
    assert config.cache == "none"
    assert config.spark.master == "spark://head:7077"
    assert config.partition_rows == 42
    assert config.modules == ["a.py", "b.py"]


def test_the_process_environment_is_read_when_none_is_given(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_ONLINE", "redis://cache:6379/2")
    monkeypatch.setenv("KEEL_SPARK__MASTER", "local[3]")

    config = load_config(project_dir)

    assert config.online == "redis://cache:6379/2"
    assert config.spark.master == "local[3]"


def test_trusted_types_come_from_keel_yaml_or_a_yaml_list_in_the_environment(project_dir: Path) -> None:
    (project_dir / "keel.yaml").write_text("trusted_types: [mypkg.steps.Winsorizer]\n")

    assert load_config(project_dir, environ={}).trusted_types == ["mypkg.steps.Winsorizer"]
    environ = {"KEEL_TRUSTED_TYPES": "[mypkg.A, mypkg.B]"}
    assert load_config(project_dir, environ=environ).trusted_types == ["mypkg.A", "mypkg.B"]


def test_overrides_win_over_environment_variables(project_dir: Path) -> None:
    config = load_config(project_dir, environ={"KEEL_CACHE": "none"}, overrides={"cache": "redis://r:6379/1"})

    assert config.cache == "redis://r:6379/1"


def test_relative_paths_are_resolved_against_the_project_root(
    project_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(
        project_dir,
        "catalog: sqlite:///meta/catalog.db\n"
        "artifacts: store/artifacts\n"
        "offline: ../shared/offline\n"
        "online: sqlite:///online.db\n",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    config = load_config(project_dir, environ={})

    root = project_dir.resolve()
    assert config.catalog == f"sqlite:///{root / 'meta/catalog.db'}"
    assert config.artifacts == str(root / "store/artifacts")
    assert Path(config.offline).resolve() == (tmp_path / "shared" / "offline").resolve()
    assert config.online == f"sqlite:///{root / 'online.db'}"


def test_absolute_paths_uris_and_in_memory_sqlite_are_kept(project_dir: Path, tmp_path: Path) -> None:
    absolute = tmp_path / "abs" / "catalog.db"
    _write(
        project_dir,
        f"catalog: sqlite:///{absolute}\nartifacts: memory://artifacts\noffline: s3://bucket/offline\nonline: sqlite://\n",
    )

    config = load_config(project_dir, environ={})

    assert config.catalog == f"sqlite:///{absolute}"
    assert config.artifacts == "memory://artifacts"
    assert config.offline == "s3://bucket/offline"
    assert config.online == "sqlite://"


def test_an_unknown_key_is_a_config_error_naming_it_and_the_valid_ones(project_dir: Path) -> None:
    _write(project_dir, "catalgo: sqlite:///x.db\n")

    with pytest.raises(ConfigError) as info:
        load_config(project_dir, environ={})

    message = str(info.value)
    assert str(project_dir / "keel.yaml") in message
    assert "unknown setting 'catalgo'" in message
    assert "valid settings are: name, catalog, artifacts" in message


def test_an_unknown_nested_key_is_a_config_error_naming_its_path(project_dir: Path) -> None:
    _write(project_dir, "spark: {mastr: 'local[2]'}\n")

    with pytest.raises(ConfigError, match=r"unknown setting 'spark\.mastr'; valid settings are: master, conf"):
        load_config(project_dir, environ={})


def test_a_value_of_the_wrong_type_is_a_config_error_naming_the_key(project_dir: Path) -> None:
    _write(project_dir, "partition_rows: 0\nengine: hadoop\n")

    with pytest.raises(ConfigError) as info:
        load_config(project_dir, environ={})

    message = str(info.value)
    assert "partition_rows: Input should be greater than 0" in message
    assert "engine: Input should be 'local' or 'spark'" in message


def test_invalid_yaml_is_a_config_error(project_dir: Path) -> None:
    _write(project_dir, "catalog: [unclosed\n")

    with pytest.raises(ConfigError, match=r"keel\.yaml: not valid YAML"):
        load_config(project_dir, environ={})


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n"])
def test_a_keel_yaml_that_is_not_a_mapping_is_a_config_error(project_dir: Path, text: str) -> None:
    _write(project_dir, text)

    with pytest.raises(ConfigError, match="expected a mapping of settings"):
        load_config(project_dir, environ={})


def test_a_non_string_key_is_a_config_error(project_dir: Path) -> None:
    _write(project_dir, "1: x\n")

    with pytest.raises(ConfigError, match="Keys should be strings"):
        load_config(project_dir, environ={})


def test_an_empty_keel_yaml_gives_the_defaults(project_dir: Path) -> None:
    _write(project_dir, "# nothing set\n")

    assert load_config(project_dir, environ={}) == KeelConfig().resolved(project_dir.resolve())


def test_a_malformed_environment_value_is_a_config_error_naming_the_variable(project_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"environment variable KEEL_MODULES='\[a\.py' is not a valid value"):
        load_config(project_dir, environ={"KEEL_MODULES": "[a.py"})


def test_a_wrongly_typed_environment_value_is_a_config_error(project_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"with KEEL_\* overrides\): partition_rows"):
        load_config(project_dir, environ={"KEEL_PARTITION_ROWS": "many"})


# -- the backend plug-in table ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uri", "scheme"),
    [
        ("postgresql+psycopg://u@h/db", "postgresql"),
        ("sqlite:///x.db", "sqlite"),
        ("memory://", "memory"),
        ("S3://bucket/key", "s3"),
        ("local", "local"),
        ("/var/lib/keel", "file"),
        ("relative/dir", "file"),
    ],
)
def test_scheme_of_names_the_backend_scheme(uri: str, scheme: str) -> None:
    assert scheme_of(uri) == scheme


def test_backend_class_finds_the_registered_class() -> None:
    assert backend_class("catalog", "postgresql+psycopg://u@h/db") is SqlCatalog
    assert backend_class("catalog", "sqlite:///x.db") is SqlCatalog


def test_an_unknown_scheme_is_a_config_error_listing_the_valid_schemes() -> None:
    with pytest.raises(ConfigError) as info:
        backend_class("catalog", "mysql://root@localhost/keel")

    message = str(info.value)
    assert "catalog 'mysql://root@localhost/keel': unknown scheme 'mysql'" in message
    assert "valid schemes are: memory, postgresql, sqlite" in message


def test_a_bare_path_as_catalog_is_a_config_error_listing_the_valid_schemes() -> None:
    with pytest.raises(ConfigError, match=r"unknown scheme 'file'; valid schemes are: memory, postgresql, sqlite"):
        open_catalog(".keel/catalog.db")


def test_an_unknown_interface_is_a_config_error_listing_the_known_ones() -> None:
    known = r"known interfaces are: cache, catalog"
    with pytest.raises(ConfigError, match=r"unknown backend interface 'teleporter'; " + known):
        backend_class("teleporter", "x://y")


def test_open_catalog_of_memory_is_an_empty_in_memory_catalog() -> None:
    first = open_catalog("memory://")
    first.record_definitions([("entity", "customer", "h", {}, "active")])
    second = open_catalog("memory://")

    assert first.dialect == "sqlite"
    assert second.current_definitions() == {}
    first.close()
    second.close()
