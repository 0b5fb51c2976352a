"""permctl against this test's database (SPEC §8): in-process through click's CliRunner, and the installed
script as a real process where that is the point (it is installed, --help, a signed call to gunicorn)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from app.http.wiring import container_of
from app.persistence.migrate import head_revision
from app.rules.language.loader import load_rule_set
from tests.cli.runner import db_env, invoke, ok, one_line_error, scalar, snapshot
from tests.support import DEMO, READ_PATH, SHIPPED_RULES, UPDATE_PATH, body_of, permctl

PERMCTL = Path(sys.executable).with_name("permctl")
RULE_SET = load_rule_set(SHIPPED_RULES)  # catalog and rules; the version is read when needed
SG_MEXC = ("account.*", "stock.*", "options.US", "trade.*")


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120) -> Any:
    """permctl ARGS in this process, with only the given settings in its environment."""
    return invoke(*args, env=env, cwd=cwd)


def run_script(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    """The installed permctl script as a real process."""
    return permctl(*args, env=env, timeout=timeout)


@pytest.mark.e2e
def test_permctl_is_installed():
    assert PERMCTL.exists(), PERMCTL
    listed = ok(run_script("--help"))
    for command in ("db", "load", "serve", "call", "rules", "console", "tenant", "audit"):
        assert f"  {command} " in listed


# --- db upgrade ----------------------------------------------------------------------------------------------


def test_db_upgrade_creates_a_fresh_sqlite_database(tmp_path):
    path = tmp_path / "fresh.sqlite"
    url = f"sqlite:///{path}"
    ok(run("db", "upgrade", env={"DATABASE_URL": url}, cwd=tmp_path))
    assert path.exists()
    tables = set(snapshot(url))
    assert {
        "tenants",
        "credentials",
        "tenant_configs",
        "accounts",
        "account_permissions",
        "permission_audit",
        "accepted_signatures",
    } <= tables
    assert scalar(url, "SELECT count(*) FROM alembic_version") == 1
    # Running it again is harmless.
    ok(run("db", "upgrade", env={"DATABASE_URL": url}, cwd=tmp_path))
    assert scalar(url, "SELECT count(*) FROM tenants") == 0


def test_db_upgrade_creates_no_directory_the_operator_did_not_make(tmp_path):
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.db'}"
    line = one_line_error(run("db", "upgrade", env={"DATABASE_URL": url}))
    assert line.startswith(f"Error: DATABASE_URL: {url!r} names a file in {tmp_path / 'no' / 'such' / 'dir'}")
    assert not (tmp_path / "no").exists()


def test_db_upgrade_names_the_revision_it_reached(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    assert ok(run("db", "upgrade", "--revision", "0003", env={"DATABASE_URL": url})).strip() == (
        "database is at revision 0003"
    )
    reached, adopted = ok(run("db", "upgrade", env={"DATABASE_URL": url})).splitlines()
    assert reached == f"database is at revision {head_revision()}"
    assert adopted.startswith("adopted RULES_DIR ") and "as the first published rule set: version " in adopted


@pytest.mark.parametrize("target", ["0003", "base"])
def test_db_upgrade_refuses_to_go_back(tmp_path, target):
    """Alembic's upgrade to an older revision does nothing; saying "at revision 0003" then would be a lie."""
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    ok(run("db", "upgrade", env={"DATABASE_URL": url}))
    line = one_line_error(run("db", "upgrade", "--revision", target, env={"DATABASE_URL": url}))
    assert line == (
        f"Error: migration: the database is at revision {head_revision()}, past {target}: permctl db upgrade only "
        "goes forward (to go back, restore a backup taken at that revision)"
    )
    assert scalar(url, "SELECT version_num FROM alembic_version") == head_revision()


def test_db_upgrade_refuses_a_database_of_a_newer_release(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    ok(run("db", "upgrade", env={"DATABASE_URL": url}))
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    line = one_line_error(run("db", "upgrade", env={"DATABASE_URL": url}))
    assert "the database is at revision 9999, which this release does not know" in line


# --- tenant show / set-config ------------------------------------------------------------------------------------


def test_tenant_show(seeded):
    out = ok(run("tenant", "show", "sg_mexc", env=db_env(seeded)))
    assert "config version 1" in out
    assert "account.*, stock.*, options.US, trade.*" in out
    enabled = RULE_SET.catalog.expand(SG_MEXC)
    assert f"enabled ({len(enabled)}): " + " ".join(enabled) in out

    shown = json.loads(ok(run("tenant", "show", "sg_mexc", "--json", env=db_env(seeded))))
    assert shown == {"tenant": "sg_mexc", "config_version": 1, "patterns": list(SG_MEXC), "enabled": list(enabled)}

    bare = json.loads(ok(run("tenant", "show", "no_config", "--json", env=db_env(seeded))))
    assert bare["patterns"] is None
    assert bare["enabled"] == []
    assert "nothing enabled" in ok(run("tenant", "show", "no_config", env=db_env(seeded)))


def test_set_config_is_honoured_by_a_running_app(seeded, api):
    before = api.statuses("ACC-1")
    assert list(before) == list(RULE_SET.catalog.expand(SG_MEXC))
    version_before = json.loads(ok(run("tenant", "show", "sg_mexc", "--json", env=db_env(seeded))))["config_version"]

    out = ok(run("tenant", "set-config", "sg_mexc", "stock.*", "va.*", env=db_env(seeded)))
    lines = {line.split(":", 1)[0]: line.split(":", 1)[1].split() for line in out.splitlines() if ":" in line}
    assert lines["enables"] == ["va.OSL", "va.HAS"]
    disabled = [v for v in before if not v.startswith("stock.")]
    assert lines["disables"] == disabled
    assert "account.trade" in disabled and "options.US" in disabled

    after = json.loads(ok(run("tenant", "show", "sg_mexc", "--json", env=db_env(seeded))))
    assert after["config_version"] == version_before + 1
    assert after["patterns"] == ["stock.*", "va.*"]

    # The app built before the change honours it on its very next request.
    assert list(api.statuses("ACC-1")) == list(RULE_SET.catalog.expand(("stock.*", "va.*")))
    refused = api.update(body_of("ACC-1", ("account.trade", "close")))
    assert refused.status_code == 400
    assert refused.get_json()["data"]["rule_id"] == "type-enabled-for-tenant"
    assert api.update(body_of("ACC-1", ("va.OSL", "open"))).status_code == 200


def test_set_config_with_nothing_new(seeded):
    out = ok(run("tenant", "set-config", "sg_mexc", *SG_MEXC, env=db_env(seeded)))
    assert "enables: (nothing new)" in out
    assert "disables: (nothing)" in out


# --- audit ------------------------------------------------------------------------------------------------------


def test_audit_lists_rows(seeded, app, api):
    assert api.update(body_of("ACC-1", ("stock.US", "open"), ("stock.HK", "close"))).status_code == 200
    events = [json.loads(line) for line in ok(run("audit", "ACC-1", "--json", env=db_env(seeded))).splitlines()]
    # The fixtures load created the account and opened two permissions; then one row per applied change.
    assert (events[0]["kind"], events[0]["status_before"], events[0]["status_after"]) == ("account", None, "active")
    rows = events[1:]
    assert {r["kind"] for r in rows} == {"permission"}
    assert [(r["permission_type"], r["status_before"], r["status_after"]) for r in rows] == [
        ("account.trade", "close", "open"),
        ("stock.HK", "close", "open"),
        ("stock.US", "close", "open"),
        ("stock.HK", "open", "close"),
    ]
    latest = rows[-1]
    assert latest["tenant"] == "sg_mexc"
    assert latest["app_key"] == DEMO.app_key
    assert latest["rule_set_version"] == container_of(app).rules.engine.version
    assert latest["at"].endswith("Z")
    assert rows[-1]["trace_id"] == rows[-2]["trace_id"] != rows[0]["trace_id"]
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)

    text_out = ok(run("audit", "ACC-1", env=db_env(seeded)))
    assert len(text_out.splitlines()) == 5
    assert "new -> active" in text_out.splitlines()[0]
    assert "stock.US" in text_out.splitlines()[3]
    assert "close -> open" in text_out.splitlines()[3]


def test_audit_of_an_account_without_rows(seeded):
    # An account written before the account trail existed (migration 0005) and never changed since.
    from sqlalchemy import create_engine, text

    engine = create_engine(seeded.database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO accounts (tenant_id, origin_id, status, created_at) "
                "VALUES ('sg_mexc', 'OLD-1', 'active', '2020-01-01 00:00:00')"
            )
        )
    engine.dispose()
    assert "no audit rows for OLD-1" in ok(run("audit", "OLD-1", env=db_env(seeded)))
    assert ok(run("audit", "OLD-1", "--json", env=db_env(seeded))) == ""
    wrong_tenant = run("audit", "ACC-1", "--tenant", "hk_other", "--json", env=db_env(seeded))
    assert wrong_tenant.returncode == 1
    assert wrong_tenant.stderr.strip() == "Error: no account 'ACC-1' in tenant 'hk_other'"


# --- rules lint -----------------------------------------------------------------------------------------------------


def test_rules_lint_shipped():
    out = ok(run("rules", "lint"))
    assert "clean" in out
    assert load_rule_set(SHIPPED_RULES).version in out


def test_rules_lint_broken_copy_names_file_and_line(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(SHIPPED_RULES, rules)
    path = rules / "validation.yaml"
    source = path.read_text(encoding="utf-8")
    assert source.count("outcome: NO_STATE_CHANGE") == 1
    path.write_text(source.replace("outcome: NO_STATE_CHANGE", "outcome: NOT_A_CODE"), encoding="utf-8")
    line = next(n for n, text_line in enumerate(path.read_text().splitlines(), start=1) if "NOT_A_CODE" in text_line)

    result = run("rules", "lint", env={"RULES_DIR": str(rules)})
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert f"rules/validation.yaml:{line}:" in result.stdout
    assert "must-change-state" in result.stdout
    assert "NOT_A_CODE" in result.stdout


# --- user mistakes: one line, non-zero, no traceback -------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("tenant", "show", "ghost"),
        ("tenant", "set-config", "ghost", "stock.*"),
        ("tenant", "set-config", "sg_mexc", "stock.$"),
        ("tenant", "set-config", "sg_mexc", "stock.["),
        ("tenant", "set-config", "sg_mexc", "stock.us"),
        ("tenant", "set-config", "sg_mexc", "stock.*", "nothing.*"),
        ("tenant", "set-config", "sg_mexc", "stock.[", "--dry-run"),
        ("tenant", "revoke-key", "ghost-key"),
    ],
    ids=[
        "show-unknown",
        "set-unknown",
        "bad-pattern",
        "unclosed-bracket",
        "matches-nothing",
        "one-of-them-matches-nothing",
        "unclosed-bracket-dry-run",
        "revoke-unknown",
    ],
)
def test_tenant_mistakes(seeded, args):
    before = snapshot(seeded.database_url)
    line = one_line_error(run(*args, env=db_env(seeded)))
    named = [a for a in args[2:] if not a.startswith("--")]
    assert named[-1] in line or named[0] in line
    assert snapshot(seeded.database_url) == before


def test_set_config_keeps_an_unmatched_pattern_only_when_told(seeded):
    result = run("tenant", "set-config", "sg_mexc", "stock.*", "crypto.*", "--allow-unmatched", env=db_env(seeded))
    assert ok(result).strip().endswith("applied")
    assert result.stderr.strip() == "warning: pattern 'crypto.*' matches no catalog value"
    shown = json.loads(ok(run("tenant", "show", "sg_mexc", "--json", env=db_env(seeded))))
    assert shown["patterns"] == ["stock.*", "crypto.*"]


def test_database_mistakes(tmp_path):
    # A database nobody ran `db upgrade` on, and one that is not there at all.
    fresh = f"sqlite:///{tmp_path / 'never-upgraded.sqlite'}"
    assert "run `permctl db upgrade` first" in one_line_error(run("audit", "ACC-1", env={"DATABASE_URL": fresh}))
    assert "database error" in one_line_error(run("tenant", "show", "sg_mexc", env={"DATABASE_URL": fresh}))
    closed = "postgresql://postgres@127.0.0.1:1/nothing"
    assert "database error" in one_line_error(run("audit", "ACC-1", env={"DATABASE_URL": closed}))


DATABASE_COMMANDS = [
    ("db", "upgrade"),
    ("load", "{fixtures}"),
    ("tenant", "show", "sg_mexc"),
    ("tenant", "set-config", "sg_mexc", "stock.*"),
    ("tenant", "revoke-key", "demo-key"),
    ("audit", "ACC-1"),
    ("audit", "ACC-1", "--at", "2026-01-01T00:00:00Z"),
    ("rules", "impact"),
    ("rules", "proposals"),
    ("rules", "versions"),
    ("rules", "approval-policy"),
    ("console", "users"),
]


@pytest.mark.parametrize(
    "args", DATABASE_COMMANDS, ids=[" ".join(a[:2]) + ("-at" if "--at" in a else "") for a in DATABASE_COMMANDS]
)
def test_every_database_command_says_one_line_when_the_database_is_down(tmp_path, args):
    fixtures = tmp_path / "fixtures.yaml"
    fixtures.write_text("tenants:\n  - id: sg_mexc\n", encoding="utf-8")
    args = tuple(a.format(fixtures=fixtures) for a in args)
    closed = "postgresql://nobody@127.0.0.1:1/x"
    line = one_line_error(run(*args, env={"DATABASE_URL": closed}))
    assert line.startswith("Error: database error: ") and "127.0.0.1" in line


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        (
            {"DATABASE_URL": "mysql://nobody@127.0.0.1/x"},
            ("tenant", "show", "sg_mexc"),
            "DATABASE_URL: 'mysql://nobody@127.0.0.1/x' is not a database URL",
        ),
        (
            {"DATABASE_URL": "mysql://nobody@127.0.0.1/x"},
            ("db", "upgrade"),
            "DATABASE_URL: 'mysql://nobody@127.0.0.1/x' is not a database URL",
        ),
        ({"REDIS_URL": "notredis"}, ("tenant", "set-config", "sg_mexc", "stock.*"), "REDIS_URL"),
    ],
    ids=["database-not-supported", "upgrade-database-not-supported", "redis-url-not-a-url"],
)
def test_a_wrong_url_is_one_line(seeded, env, args, expected):
    before = snapshot(seeded.database_url)
    assert expected in one_line_error(run(*args, env={**db_env(seeded), **env}))
    assert snapshot(seeded.database_url) == before


def test_db_upgrade_to_an_unknown_revision_is_one_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    line = one_line_error(run("db", "upgrade", "--revision", "nope", env={"DATABASE_URL": url}))
    assert line == "Error: migration: Can't locate revision identified by 'nope'"


def test_rules_lint_of_a_missing_directory(tmp_path):
    result = run("rules", "lint", "--rules", str(tmp_path / "nowhere"))
    assert "no such directory" in one_line_error(result)


SDK_ENV = {
    "LONGBRIDGE_APP_KEY": DEMO.app_key,
    "LONGBRIDGE_APP_SECRET": DEMO.app_secret,
    "LONGBRIDGE_ACCESS_TOKEN": DEMO.access_token,
}


@pytest.mark.parametrize(
    "url",
    [
        "not-a-url",
        "ftp://127.0.0.1:21",
        "localhost:8000",
        "http://127.0.0.1:1",
        "http://",
        "http://[::1",
        "http://127.0.0.1:notaport",
        "http://exa mple.com",
    ],
)
def test_call_with_a_bad_http_url(url):
    line = one_line_error(
        run("call", "GET", f"{READ_PATH}?account_no=ACC-1", env={**SDK_ENV, "LONGBRIDGE_HTTP_URL": url}, timeout=60)
    )
    assert line.startswith("Error:")


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (("call", "GET", READ_PATH), {"LONGBRIDGE_HTTP_URL": "http://127.0.0.1:1"}, "LONGBRIDGE_APP_KEY"),
        (("call", "POST", UPDATE_PATH, "--data", "{not json"), SDK_ENV, "JSON"),
        (("call", "GET", "v1/no-leading-slash"), SDK_ENV, "Error:"),
    ],
    ids=["sdk-variables-missing", "data-not-json", "path-without-slash"],
)
def test_call_mistakes(args, env, expected):
    env = {"LONGBRIDGE_HTTP_URL": "http://127.0.0.1:1", **env}
    assert expected in one_line_error(run(*args, env=env, timeout=60))


def test_usage_mistakes_are_click_usage_errors():
    # Click's usage errors are a short usage block and exit 2, never a traceback.
    for args in (("call", "DELETE", UPDATE_PATH), ("tenant", "set-config", "sg_mexc"), ("nonsense",)):
        result = run(*args, env=SDK_ENV)
        assert result.returncode == 2, result
        assert "Traceback" not in result.stdout + result.stderr
        assert "Error:" in result.stderr


# --- call against a running gunicorn -------------------------------------------------------------------------------


@pytest.mark.e2e
def test_call_against_a_live_server(live_server):
    env = {**SDK_ENV, "LONGBRIDGE_HTTP_URL": live_server.url}
    data = json.dumps(
        {"account_no": "ACC-1", "changes": [{"permission_type": "stock.US", "permission_status": "open"}]}
    )
    applied = run_script("call", "POST", UPDATE_PATH, "--data", data, env=env, timeout=60)
    assert json.loads(ok(applied)) == {"code": 0, "message": "success", "data": {"failure_index": 0}}
    assert "HTTP 200" in applied.stderr
    assert "X-Trace-Id: " in applied.stderr
    assert "X-Trace-Id: None" not in applied.stderr

    read = json.loads(ok(run_script("call", "GET", f"{READ_PATH}?account_no=ACC-1", env=env, timeout=60)))
    statuses = {p["permission_type"]: p["permission_status"] for p in read["data"]["permissions"]}
    assert statuses["stock.US"] == "open"

    rejected_body = json.dumps(
        {
            "account_no": "ACC-1",
            "changes": [
                {"permission_type": "stock.JP", "permission_status": "open"},
                {"permission_type": "flag.options", "permission_status": "open"},
            ],
        }
    )
    rejected = run_script("call", "POST", UPDATE_PATH, "--data", rejected_body, env=env, timeout=60)
    assert rejected.returncode == 1, rejected.stderr
    assert "Traceback" not in rejected.stdout + rejected.stderr
    envelope = json.loads(rejected.stdout)
    assert envelope["code"] == 400101
    assert envelope["data"]["failure_index"] == 1
    assert envelope["data"]["rule_id"] == "type-banned-group"
    assert "HTTP 400" in rejected.stderr

    # Not the envelope, but a 200: printed, and the exit status says it worked.
    document = run_script("call", "GET", "/openapi.json", env=env, timeout=60)
    assert json.loads(ok(document))["openapi"].startswith("3.")
    assert "HTTP 200" in document.stderr

    wrong_secret = run_script(
        "call",
        "GET",
        f"{READ_PATH}?account_no=ACC-1",
        env={**env, "LONGBRIDGE_APP_SECRET": "not-the-secret"},
        timeout=60,
    )
    assert wrong_secret.returncode == 1
    assert json.loads(wrong_secret.stdout)["code"] == 401001
    assert "not-the-secret" not in wrong_secret.stdout + wrong_secret.stderr
