"""Declarations that narrow (issue 20, finding 8): `permctl rules lint --against-db` and `permctl rules propose`
count the stored accounts holding what the declarations refuse; `permctl accounts strip-undeclared` removes
it through the account service, audited, and `--dry-run` writes nothing; a broker's resend is then accepted."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app.settings import Settings
from tests.cli.publishing import Desk
from tests.cli.runner import db_env, invoke, ok, snapshot
from tests.conftest import seed
from tests.narrowing import kyc_rules, with_kyc_accounts

RESEND = "rules-{}/attributes.yaml: kyc_level: warning: 3 stored account(s) hold 'kyc_level', which attributes.yaml {}"
STRIP_HINT = " (a broker resending one is refused; `permctl accounts strip-undeclared` removes them)"
DEPRECATED_HINT = (
    " (a broker may still send it: it is dropped on write, with a warning; `permctl accounts strip-undeclared`"
    " removes the stored values)"
)


@pytest.fixture
def stored(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Accounts stored while kyc_level was declared and account_type allowed margin."""
    monkeypatch.chdir(tmp_path)  # lint names rules-*/attributes.yaml
    seed(replace(settings, rules_dir=kyc_rules(tmp_path, "declared")), with_kyc_accounts())
    return settings


def _import(tmp_path: Path, settings: Settings, rules: Path, line: dict[str, object]) -> tuple[int, str]:
    path = tmp_path / "resend.jsonl"
    path.write_text(json.dumps(line) + "\n")
    result = invoke("accounts", "import", str(path), env={**db_env(settings), "RULES_DIR": str(rules)})
    return result.returncode, result.stdout + result.stderr


def _audit_rows(settings: Settings, app_key: str) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT account_no, attributes_before, attributes_after FROM account_audit "
                    "WHERE app_key = :key ORDER BY account_no, id"
                ),
                {"key": app_key},
            ).all()
    finally:
        engine.dispose()
    return [(no, *(json.loads(v) if isinstance(v, str) else v for v in values)) for no, *values in rows]


def test_lint_against_db_reports_a_removed_declaration_with_stored_values(stored: Settings, tmp_path: Path) -> None:
    removed = kyc_rules(tmp_path, "removed", cash_only=True)
    out = ok(invoke("rules", "lint", "--rules", str(removed), "--against-db", env=db_env(stored)))
    assert out.splitlines()[:2] == [
        "rules-removed-cash-only/attributes.yaml: account_type: warning: 1 stored account(s) hold a value of "
        "'account_type' its declaration does not allow ('margin')" + STRIP_HINT,
        RESEND.format("removed-cash-only", "does not declare") + STRIP_HINT,
    ]
    assert "clean (2 warnings)" in out.splitlines()[2]

    never = tmp_path / "never.sqlite"  # without the flag no database is opened (SQLite would create the file)
    plain = ok(invoke("rules", "lint", "--rules", str(removed), env={"DATABASE_URL": f"sqlite:///{never}"}))
    assert "warning" not in plain and not never.exists()


def test_propose_accepts_the_set_and_warns_with_the_count(stored: Settings, tmp_path: Path) -> None:
    desk = Desk(stored.database_url, tmp_path, rules_dir=tmp_path / "rules-declared").set_up()  # as the accounts were
    removed = kyc_rules(tmp_path, "removed")
    result = desk.acting("carol", "rules", "propose", str(removed))
    assert result.returncode == 0, result.stderr
    assert RESEND.format("removed", "does not declare") + STRIP_HINT in result.stderr.splitlines()
    version = result.stdout.splitlines()[-1]
    assert desk.proposals()["proposals"][0]["state"] == "pending"  # proposed clean: reviewers decide
    ok(desk.acting("ann", "rules", "approve", version[:8]))
    ok(desk.acting("carol", "rules", "publish", version[:8]))
    assert desk.live() == version


def test_strip_undeclared_dry_run_writes_nothing_then_strips_audited_and_a_resend_is_accepted(
    stored: Settings, tmp_path: Path
) -> None:
    deprecated = kyc_rules(tmp_path, "deprecated")
    env = {**db_env(stored), "RULES_DIR": str(deprecated)}
    assert RESEND.format("deprecated", "declares deprecated") + DEPRECATED_HINT in ok(
        invoke("rules", "lint", "--rules", str(deprecated), "--against-db", env=env)
    )

    before = snapshot(stored.database_url)
    dry = ok(invoke("accounts", "strip-undeclared", "--dry-run", env=env))
    assert snapshot(stored.database_url) == before  # not a row written
    expected = [
        "sg_mexc KYC-1: kyc_level '2' (deprecated)",
        "sg_mexc KYC-2: kyc_level '3' (deprecated)",
        "hk_other KYC-GONE: kyc_level '1' (deprecated)",
    ]
    assert dry.splitlines() == [
        *(f"would remove {line}" for line in expected),
        "would strip 3 account(s): kyc_level (deprecated): 3 (dry run: nothing written)",
    ]

    out = ok(invoke("accounts", "strip-undeclared", env=env))
    assert out.splitlines() == [
        *(f"removed {line}" for line in expected),
        "stripped 3 account(s): kyc_level (deprecated): 3",
    ]
    assert _audit_rows(stored, "strip-undeclared") == [
        ("KYC-1", {"account_type": "cash", "kyc_level": "2"}, {"account_type": "cash"}),
        ("KYC-2", {"kyc_level": "3"}, {}),
        ("KYC-GONE", {"kyc_level": "1"}, {}),
    ]
    assert ok(invoke("accounts", "strip-undeclared", env=env)) == "stripped 0 account(s)\n"
    assert "warning" not in ok(invoke("rules", "lint", "--rules", str(deprecated), "--against-db", env=env))

    # The broker resends the account as it keeps it, kyc_level included: accepted, nothing to change, warned.
    line = {
        "tenant": "sg_mexc",
        "account_no": "KYC-1",
        "status": "active",
        "attributes": {"account_type": "cash", "kyc_level": "2"},
    }
    status, printed = _import(tmp_path, stored, deprecated, line)
    assert status == 0, printed
    assert "1 lines: 0 created, 0 updated, 1 unchanged, 0 refused" in printed
    assert "warning: deprecated attributes accepted but not stored: 'kyc_level' on 1 line(s)" in printed

    # Once the declaration is removed, the account as stored is accepted as it is.
    line["attributes"] = {"account_type": "cash"}
    status, printed = _import(tmp_path, stored, kyc_rules(tmp_path, "removed"), line)
    assert status == 0 and "1 unchanged, 0 refused" in printed, printed


def test_load_accepts_a_deprecated_attribute_without_storing_it_and_warns(stored: Settings, tmp_path: Path) -> None:
    fixtures = tmp_path / "fixtures.json"
    account = {"account_no": "KYC-1", "tenant": "sg_mexc", "status": "active", "attributes": {"kyc_level": "2"}}
    fixtures.write_text(json.dumps({"accounts": [account]}, indent=1))
    env = {**db_env(stored), "RULES_DIR": str(kyc_rules(tmp_path, "deprecated"))}
    result = invoke("load", str(fixtures), env=env)
    assert result.returncode == 0, result.stderr
    line = next(n for n, text in enumerate(fixtures.read_text().splitlines(), 1) if '"kyc_level"' in text)
    assert result.stderr.splitlines() == [
        f"warning: {fixtures}:{line}: accounts[0].attributes.kyc_level: attribute 'kyc_level' is deprecated and "
        "was not stored: brokers stop sending it by 2027-03-31"
    ]
    assert [row for row in _audit_rows(stored, "permctl") if row[0] == "KYC-1"][-1] == (
        "KYC-1",
        {"account_type": "cash", "kyc_level": "2"},
        {},  # the attributes given replace the stored set: the deprecated value went, audited
    )
