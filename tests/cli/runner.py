"""permctl run in-process with click's CliRunner: the same commands as the script, without a new Python
(and its imports) per call. tests/cli/test_startup.py and a few tests in test_permctl.py run the real script."""

from __future__ import annotations

import contextlib
import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text

from app.cli import cli
from app.settings import Settings

# The variables permctl reads; a test gives the ones it means, the rest are unset as for a fresh shell.
SETTINGS_PREFIXES = ("DATABASE_URL", "REDIS_URL", "RULES_DIR", "LONGBRIDGE_")
PROXIES = ("http_proxy", "https_proxy", "all_proxy")  # calls go to 127.0.0.1 only


@dataclass(frozen=True)
class Ran:
    """What a permctl invocation printed and its exit status (the fields of subprocess.CompletedProcess)."""

    returncode: int
    stdout: str
    stderr: str


def invoke(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, input: str | None = None) -> Ran:
    """permctl ARGS in this process, with only the given settings (and `input` as standard input, which is not a
    terminal); an uncaught exception shows as a traceback."""
    environment: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(SETTINGS_PREFIXES) or k.lower() in PROXIES
    }
    environment.update(env or {})
    with contextlib.chdir(cwd or Path.cwd()):
        result = CliRunner().invoke(cli, list(args), env=environment, prog_name="permctl", input=input)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return Ran(result.exit_code, result.stdout, stderr)


def ok(result: Ran | Any) -> str:
    """The stdout of a run that succeeded without a traceback."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout


def one_line_error(result: Ran | Any) -> str:
    """The only line a failed run printed (no traceback, non-zero exit)."""
    output = (result.stdout + result.stderr).strip()
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    lines = output.splitlines()
    assert len(lines) == 1, output
    return lines[0]


def db_env(settings: Settings) -> dict[str, str]:
    """The environment that points permctl at the test's database (and Redis)."""
    env = {"DATABASE_URL": settings.database_url}
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    return env


def snapshot(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table the service writes, in a stable order."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            tables = [t for t in inspect(conn).get_table_names() if t != "alembic_version"]
            return {t: sorted(tuple(map(str, row)) for row in conn.execute(text(f"SELECT * FROM {t}"))) for t in tables}
    finally:
        engine.dispose()


def scalar(database_url: str, sql: str, **params: Any) -> Any:
    """One value from the test's database."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()
    finally:
        engine.dispose()
