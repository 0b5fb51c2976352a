"""permctl starts fast because it imports little (issue 9 #14): a guard on what is imported, not on time.

Each check runs in a fresh interpreter, since this test process has long imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = (
    "sqlalchemy",
    "flask",
    "werkzeug",
    "durable",
    "alembic",
    "marshmallow",
    "redis",
    "psycopg",
    "structlog",
    "ruamel",
    "app.container",
    "app.persistence",
    "app.rules",
)

SHOW_HEAVY = f"""
import json, sys
print(json.dumps(sorted({{name.split('.')[0] if not name.startswith('app.') else '.'.join(name.split('.')[:2])
                         for name in sys.modules if name.startswith({HEAVY!r})}})))
"""


def _imported_after(code: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", code + SHOW_HEAVY],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_cli_imports_no_framework_database_or_engine():
    assert _imported_after("import app.cli") == []


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["rules", "--help"],
        ["tenant", "set-config", "--help"],
        ["db", "--help"],
        ["load", "--help"],
        ["serve", "--help"],
    ],
)
def test_help_imports_nothing_heavy(args):
    code = f"""
from app.cli import cli
try:
    cli.main({args!r}, prog_name="permctl", standalone_mode=False)
except SystemExit:
    pass
"""
    assert _imported_after(code) == []


def test_a_signed_call_needs_only_click_the_signature_and_urllib():
    # Port 1 refuses the connection: the whole command runs, up to its one-line error.
    code = """
import os
from app.cli import cli
os.environ.update(LONGBRIDGE_APP_KEY="k", LONGBRIDGE_APP_SECRET="s", LONGBRIDGE_ACCESS_TOKEN="t",
                  LONGBRIDGE_HTTP_URL="http://127.0.0.1:1")
try:
    cli.main(["call", "POST", "/v1/x", "--data", "{}"], prog_name="permctl", standalone_mode=False)
except Exception as exc:
    assert "cannot reach" in str(exc), exc
"""
    assert _imported_after(code) == []
