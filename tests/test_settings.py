"""Settings: every variable validated where Settings is built, with one line naming it; defaults by directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.defaults import shipped_rules_dir
from app.settings import Settings, SettingsError


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("SIGNATURE_WINDOW_SECONDS", "abc", "is not a whole number"),
        ("SIGNATURE_WINDOW_SECONDS", "0", "at least 1"),
        ("TENANT_CONFIG_TTL_SECONDS", "nan", "at least 0"),
        ("TENANT_CONFIG_TTL_SECONDS", "-1", "at least 0"),
        ("REDIS_BREAKER_SECONDS", "soon", "is not a number"),
        ("IDEMPOTENCY_WAIT_SECONDS", "inf", "at least 0"),
        ("DATABASE_LOCK_TIMEOUT_SECONDS", "0", "from 0.001 to 20"),  # 0 is "no bound" to PostgreSQL
        ("DATABASE_LOCK_TIMEOUT_SECONDS", "3s", "is not a number"),
        ("DATABASE_STATEMENT_TIMEOUT_SECONDS", "30", "from 0.001 to 20"),  # past nginx's 25 s
        ("DATABASE_STATEMENT_TIMEOUT_SECONDS", "nan", "from 0.001 to 20"),
        ("RULES_RELOAD_CHECK_SECONDS", "2s", "is not a number"),
        ("LOG_LEVEL", "bogus", "is not a log level"),
        ("REDIS_URL", "notredis", "is not a Redis URL"),
        ("REDIS_URL", "redis://127.0.0.1:port/0", "port that is not a number"),
        ("DATABASE_URL", "mysql://root@localhost/x", "is not a database URL"),
        ("DATABASE_URL", "nonsense", "is not a database URL"),
        ("DATABASE_URL", "sqlite:////no/such/dir/x.db", "names a file in /no/such/dir, which is not a directory"),
        ("REDIS_KEY_PREFIX", "two words", "printable characters without spaces"),
        ("RULES_DIR", "/nonexistent/rules", "does not exist"),
    ],
)
def test_a_wrong_variable_is_one_error_naming_it(variable: str, value: str, says: str):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})
    message = str(raised.value)
    assert message.startswith(f"{variable}: {value!r}") and says in message
    assert "\n" not in message and raised.value.variable == variable


def test_a_file_where_a_directory_is_expected_is_refused(tmp_path: Path):
    file = tmp_path / "file"
    file.write_text("x")
    for variable in ("RULES_DIR", "INSTANCE_DIR"):
        with pytest.raises(SettingsError, match=f"^{variable}: .* is not a directory$"):
            Settings.from_env({variable: str(file)})


def test_good_values_are_read():
    s = Settings.from_env(
        {
            "SIGNATURE_WINDOW_SECONDS": "60",
            "LOG_LEVEL": "debug",
            "REDIS_URL": "redis://h:6380/2",
            "REDIS_KEY_PREFIX": "staging:",
            "TENANT_CONFIG_TTL_SECONDS": "0.5",
            "DATABASE_URL": "postgresql+psycopg://app@db/permissions",
        }
    )
    assert (s.signature_window_seconds, s.log_level, s.redis_url, s.redis_key_prefix) == (
        60,
        "DEBUG",
        "redis://h:6380/2",
        "staging:",
    )
    assert (s.tenant_config_ttl_seconds, s.database_url) == (0.5, "postgresql+psycopg://app@db/permissions")


def test_defaults_follow_the_working_directory_not_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({})
    assert s.rules_dir == shipped_rules_dir()  # no ./rules here: the shipped set
    assert s.instance_dir == tmp_path / "instance"
    assert s.database_url == f"sqlite:///{tmp_path / 'instance' / 'permissions.db'}"
    (tmp_path / "rules").mkdir()
    assert Settings.from_env({}).rules_dir == tmp_path / "rules"  # a rules repository's own directory wins


def test_instance_dir_moves_the_default_database(tmp_path: Path):
    s = Settings.from_env({"INSTANCE_DIR": str(tmp_path / "state")})
    assert s.instance_dir == tmp_path / "state"
    assert s.database_url == f"sqlite:///{tmp_path / 'state' / 'permissions.db'}"


def test_empty_values_mean_the_default():
    assert Settings.from_env({"REDIS_URL": "", "LOG_LEVEL": " "}).redis_url is None


def test_the_request_bounds_are_read_and_default_well_before_the_proxy_gives_up():
    defaults = Settings.from_env({})
    assert (defaults.database_lock_timeout_seconds, defaults.database_statement_timeout_seconds) == (3.0, 10.0)
    assert defaults.database_lock_timeout_seconds <= 5 and defaults.database_statement_timeout_seconds < 25
    s = Settings.from_env({"DATABASE_LOCK_TIMEOUT_SECONDS": "0.5", "DATABASE_STATEMENT_TIMEOUT_SECONDS": "20"})
    assert (s.database_lock_timeout_seconds, s.database_statement_timeout_seconds) == (0.5, 20.0)


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("BIND", "localhost", "is not HOST:PORT"),
        ("BIND", "127.0.0.1:99999", "is not HOST:PORT"),
        ("WEB_CONCURRENCY", "two", "is not a whole number of at least 1"),
        ("WEB_CONCURRENCY", "0", "is not a whole number of at least 1"),
    ],
)
def test_gunicorn_s_variables_are_settings_too(variable: str, value: str, says: str):
    """BIND and WEB_CONCURRENCY are read and checked where every other variable is (issue 19, point 6)."""
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})
    assert str(raised.value) == f"{variable}: {value!r} {says}" or says in str(raised.value)
    read = Settings.from_env({"BIND": "unix:/run/tps.sock", "WEB_CONCURRENCY": "4"})
    assert (read.bind, read.web_concurrency, read.metrics_dir) == ("unix:/run/tps.sock", 4, None)
    assert (Settings.from_env({}).bind, Settings.from_env({}).web_concurrency) == ("127.0.0.1:8000", 2)
