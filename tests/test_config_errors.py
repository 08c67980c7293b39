"""A hostile ``keel.yaml`` (or ``KEEL_*`` variable) is a clear Keel error, never a traceback: in Python, a
:class:`ConfigError` naming the file (or the variable) and the problem on one line; on the command line, that one
line after ``error:`` and exit code 1.

Each case is what a user can really leave in a project: a folder or a broken link where the file belongs, bytes
that are not text, YAML that does not parse, a list where a mapping belongs, values of the wrong type, durations
that are not durations (or that no timer can wait), unknown backends.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from keel.cli import main
from keel.config import load_config
from keel.errors import ConfigError


@dataclass(frozen=True)
class Case:
    """A project folder made hostile by ``setup`` (and ``env``), and what the error must say."""

    id: str
    setup: Callable[[Path], None]
    says: str  # a part of the message, after the file's path
    env: dict[str, str] = field(default_factory=dict)
    names_file: bool = True  # the message names keel.yaml (else the variable, in ``says``)


def text(content: str) -> Callable[[Path], None]:
    return lambda root: (root / "keel.yaml").write_text(content)


def raw(content: bytes) -> Callable[[Path], None]:
    return lambda root: (root / "keel.yaml").write_bytes(content)


def nothing(root: Path) -> None:
    pass


CASES = [
    # the file itself
    Case("a folder instead of a file", lambda r: (r / "keel.yaml").mkdir(), "is a folder, not a file"),
    Case("a link to nowhere", lambda r: (r / "keel.yaml").symlink_to(r / "gone.yaml"), "cannot be read"),
    Case("a link to itself", lambda r: (r / "keel.yaml").symlink_to(r / "keel.yaml"), "cannot be read"),
    # /proc/self/mem cannot be read from its start (EIO), even by root, whom file permissions do not stop
    Case("an unreadable file", lambda r: (r / "keel.yaml").symlink_to("/proc/self/mem"), "cannot be read"),
    Case("bytes that are not UTF-8", raw(b"catalog: \xff\xfe\x00\n"), "not UTF-8 text (byte 9 is b'\\xff')"),
    # YAML
    Case("an unclosed list", text("catalog: [unclosed\n"), "not valid YAML at line 2, column 1: expected ',' or ']'"),
    Case("a tab", text("catalog:\t- x\n"), "not valid YAML at line 1, column 9: found character '\\t'"),
    Case("a Python tag", text("catalog: !!python/object/apply:os.system [x]\n"), "could not determine a constructor"),
    Case("a list of settings", text("- catalog\n- online\n"), "expected a mapping of settings, got list"),
    Case("a bare word", text("hello\n"), "expected a mapping of settings, got str"),
    # settings
    Case("an unknown setting", text("catlog: x\n"), "unknown setting 'catlog'; valid settings are: name, catalog"),
    Case("a key that is a number", text("1: 2\n"), "1: Keys should be strings"),
    Case("a word for a number", text("partition_rows: many\n"), "partition_rows: Input should be a valid integer"),
    Case("a list where a mapping belongs", text("spark: [1, 2]\n"), "spark: Input should be a valid dictionary"),
    Case("a list for the log", text("prediction_log: [on]\n"), "prediction_log: Input should be a valid dictionary"),
    Case("a number for the engine", text("engine: 5\n"), "engine: Input should be 'local' or 'spark'"),
    Case("no catalog", text("catalog: null\n"), "catalog: Input should be a valid string"),
    Case("a Spark master Keel does not know", text("spark: {master: yarn}\n"), "'yarn' is not a Spark master"),
    # durations
    Case("a duration in words", text("prediction_log: {max_seconds: 10 minutes}\n"), "should be a valid number"),
    Case("a negative duration", text("prediction_log: {max_seconds: -1}\n"), "should be greater than 0"),
    Case("an infinite duration", text("prediction_log: {max_seconds: .inf}\n"), "should be a finite number"),
    Case("no duration (NaN)", text("prediction_log: {max_seconds: .nan}\n"), "max_seconds: Input should be"),
    Case(
        "a duration no timer can wait", text("prediction_log: {max_seconds: 1e12}\n"), "less than or equal to 2592000"
    ),
    Case("a linger past a minute", text("prediction_log: {linger_seconds: 3600}\n"), "less than or equal to 60"),
    # KEEL_* variables
    Case("a word for a number", nothing, "partition_rows (set by KEEL_PARTITION_ROWS)", {"KEEL_PARTITION_ROWS": "x"}),
    Case(
        "an unclosed YAML list",
        nothing,
        "KEEL_MODULES='[a.py' is not a valid value: not valid YAML at line 1, column 6",
        {"KEEL_MODULES": "[a.py"},
        names_file=False,
    ),
    Case("a word for a mapping", nothing, "spark (set by KEEL_SPARK): Input should be", {"KEEL_SPARK": "local"}),
    Case("a nested value", nothing, "catalog (set by KEEL_CATALOG__URL)", {"KEEL_CATALOG__URL": "x"}),
    Case(
        "an infinite duration",
        nothing,
        "(set by KEEL_PREDICTION_LOG__MAX_SECONDS)",
        {"KEEL_PREDICTION_LOG__MAX_SECONDS": "inf"},
    ),
]
IDS = [f"{c.id}{' (env)' if c.env else ''}" for c in CASES]


def hostile(root: Path, case: Case, monkeypatch: pytest.MonkeyPatch) -> Path:
    root.mkdir(exist_ok=True)
    case.setup(root)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    return root


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_python_gets_a_config_error_naming_the_file_and_the_problem(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = hostile(tmp_path / "project", case, monkeypatch)

    with pytest.raises(ConfigError) as raised:
        load_config(root)

    message = str(raised.value)
    assert case.says in message
    assert "\n" not in message
    if case.names_file:
        assert message.startswith(str(root / "keel.yaml"))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_command_line_prints_one_error_line_and_exits_with_1(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = hostile(tmp_path / "project", case, monkeypatch)
    monkeypatch.setattr(sys, "argv", ["keel", "models", "list", "--project", str(root)])

    with pytest.raises(SystemExit) as exited:
        main()

    assert exited.value.code == 1
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith("error: ") and case.says in line and "Traceback" not in err


def test_spark_settings_written_as_numbers_or_booleans_are_taken_as_their_text(tmp_path: Path) -> None:
    (tmp_path / "keel.yaml").write_text("spark: {conf: {spark.executor.cores: 4, spark.eventLog.enabled: true}}\n")

    config = load_config(tmp_path, environ={})

    assert config.spark.conf == {"spark.executor.cores": "4", "spark.eventLog.enabled": "true"}


def test_a_durable_duration_within_the_bounds_is_kept(tmp_path: Path) -> None:
    (tmp_path / "keel.yaml").write_text("prediction_log: {max_seconds: 86400, linger_seconds: 0}\n")

    log = load_config(tmp_path, environ={}).prediction_log

    assert (log.max_seconds, log.linger_seconds) == (86400, 0)


def test_the_real_command_prints_the_one_line_too(tmp_path: Path) -> None:
    """The installed entry point, in its own process: the same line, nothing else."""
    import subprocess

    (tmp_path / "keel.yaml").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    done = subprocess.run(
        [sys.executable, "-c", "from keel.cli import main; main()", "models", "list", "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )

    assert done.returncode == 1
    assert done.stdout == ""
    assert (
        done.stderr.strip()
        == f"error: {tmp_path / 'keel.yaml'}: is a folder, not a file; the settings go in a YAML file named keel.yaml"
    )
