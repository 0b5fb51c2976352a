"""permctl rules audit-state (issue 20 #9, SPEC §7c): the report in every format, its exit status, --tenant,
--out, and a new policy's remediation list."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from app.settings import Settings
from tests.cli.runner import db_env, invoke, ok, one_line_error
from tests.rules.support import BROKER_POLICIES
from tests.service.test_state_audit import seed_states
from tests.support import SHIPPED_RULES

SHORTSELL_MARGIN_ONLY = """\
policies:
  - id: shortsell-margin-only
    description: Short selling is for margin accounts only.
    when:
      change: {product: shortsell, permission_status: open}
      not: {account: {account_type: margin}}
    message: short selling needs a margin account
"""


@pytest.fixture
def states(settings: Settings) -> dict[str, str]:
    """The environment of permctl on the seeded states, RULES_DIR the broker policies."""
    return {**db_env(seed_states(settings)), "RULES_DIR": str(BROKER_POLICIES)}


def _json(env: dict[str, str], *args: str) -> tuple[int, dict]:
    result = invoke("rules", "audit-state", "--format", "json", *args, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_adding_shortsell_margin_only_lists_the_cash_accounts_holding_short_selling(
    states: dict[str, str], tmp_path: Path
) -> None:
    proposed = tmp_path / "proposed"
    shutil.copytree(SHIPPED_RULES, proposed)
    assert ok(invoke("rules", "audit-state", "--rules", str(proposed), env=states)).endswith("No deny violation.\n")
    (proposed / "policies.yaml").write_text(SHORTSELL_MARGIN_ONLY, encoding="utf-8")
    code, doc = _json(states, "--rules", str(proposed))
    assert code == 1
    assert [(v["account_no"], v["permission_type"], v["message"]) for v in doc["violations"]] == [
        ("CASH-1", "shortsell.US", "short selling needs a margin account"),
        ("CASH-2", "shortsell.HK", "short selling needs a margin account"),
        ("SAME-AS-CASH-1", "shortsell.US", "short selling needs a margin account"),
    ]  # MARGIN-1 holds shortsell.US too, and may; GONE is deregistered


def test_the_json_document_has_exactly_the_specified_shape_in_a_stable_order(states: dict[str, str]) -> None:
    code, doc = _json(states)
    assert code == 1
    assert list(doc) == [
        "judged_at",
        "rule_set_version",
        "accounts_checked",
        "accounts_skipped",
        "violations",
        "hits",
        "outside_catalog",
        "not_enabled",
        "by_rule",
        "by_tenant",
    ]
    assert (doc["accounts_checked"], doc["accounts_skipped"]) == (6, 1)
    assert doc["violations"][0] == {
        "tenant": "sg_mexc",
        "account_no": "CASH-1",
        "permission_type": "shortsell.US",
        "rule_id": "shortsell-margin-only",
        "enforcement": "deny",
        "message": "short selling needs a margin account",
    }
    assert [h["enforcement"] for h in doc["hits"]] == ["warn", "dryrun", "warn"]
    assert doc["outside_catalog"] == [
        {"tenant": "hk_other", "account_no": "HK-1", "permission_type": p} for p in ("=1+2", "flag.options")
    ]
    assert doc["not_enabled"] == [{"tenant": "hk_other", "account_no": "HK-1", "permission_type": "options.HK"}]
    assert doc["by_rule"] == {"options-need-stock": 1, "shortsell-margin-only": 3}
    assert doc["by_tenant"] == {"sg_mexc": 4}
    _, again = _json(states)
    assert {**again, "judged_at": ""} == {**doc, "judged_at": ""}


def test_exit_0_without_a_deny_violation_and_2_when_the_audit_cannot_run(states: dict[str, str], tmp_path: Path):
    code, doc = _json(states, "--tenant", "hk_other")
    assert code == 0 and doc["violations"] == [] and doc["accounts_checked"] == 1
    assert len(doc["not_enabled"]) == 1 and len(doc["outside_catalog"]) == 2
    unknown = invoke("rules", "audit-state", "--tenant", "nope", env=states)
    assert unknown.returncode == 2 and one_line_error(unknown) == "Error: no tenant 'nope'"
    missing = invoke("rules", "audit-state", "--rules", str(tmp_path / "none"), env=states)
    assert missing.returncode == 2 and one_line_error(missing) == f"Error: {tmp_path / 'none'}: no such directory"
    broken = tmp_path / "broken"
    shutil.copytree(BROKER_POLICIES, broken)
    (broken / "policies.yaml").write_text("policies:\n  - id: x\n", encoding="utf-8")
    refused = invoke("rules", "audit-state", "--rules", str(broken), env=states)
    assert refused.returncode == 2 and "run `permctl rules lint --rules" in one_line_error(refused)
    usage = invoke("rules", "audit-state", "--format", "xml", env=states)
    assert usage.returncode == 2 and one_line_error(usage).startswith("Error: Invalid value for '--format': 'xml'")
    no_db = invoke("rules", "audit-state", env={**states, "DATABASE_URL": f"sqlite:///{tmp_path}/empty.sqlite"})
    assert no_db.returncode == 2 and "permctl db upgrade" in one_line_error(no_db)


def test_csv_has_every_section_and_escapes_what_a_spreadsheet_would_run(states: dict[str, str]) -> None:
    result = invoke("rules", "audit-state", "--format", "csv", env=states)
    assert result.returncode == 1
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["section", "tenant", "account_no", "permission_type", "rule_id", "enforcement", "message"]
    assert rows[1][0] == "accounts_checked" and rows[1][-1] == "6"
    assert rows[2][0] == "accounts_skipped" and rows[2][-1] == "1"
    assert {r[0] for r in rows[3:]} == {"violations", "hits", "outside_catalog", "not_enabled"}
    assert ["outside_catalog", "hk_other", "HK-1", "'=1+2", "", "", ""] in rows
    assert not [cell for row in rows for cell in row if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]


def test_text_and_markdown_show_every_section(states: dict[str, str]) -> None:
    shown = invoke("rules", "audit-state", env=states).stdout
    for line in (
        "Deregistered accounts skipped (not judged): 1",
        "Violations (deny): accounts that hold what they could not open now: 4",
        "  sg_mexc CASH-2 'shortsell.HK': shortsell-margin-only (deny): short selling needs a margin account",
        "Warn and dryrun hits: 3",
        "  sg_mexc MARGIN-1 'stockgrey.US': stockgrey-dryrun (dryrun): grey-market trading is not offered",
        "Open permissions outside the catalog: 2",
        "Open permissions the tenant's config no longer enables: 1",
        "  hk_other HK-1 'options.HK'",
        "4 deny violation(s): by rule 'options-need-stock' 1, 'shortsell-margin-only' 3; by tenant 'sg_mexc' 4.",
    ):
        assert line in shown.splitlines(), line
    markdown = invoke("rules", "audit-state", "--format", "markdown", env=states).stdout
    assert "## Violations (deny): accounts that hold what they could not open now (4)" in markdown
    assert "## Deregistered accounts skipped (not judged)\n\n1 account(s)." in markdown
    assert "| hk_other | HK-1 | options.HK |" in markdown and "None" not in markdown


def test_out_writes_the_report_there_and_an_unwritable_one_is_one_line(states: dict[str, str], tmp_path: Path):
    out = tmp_path / "remediation.json"
    result = invoke("rules", "audit-state", "--format", "json", "--out", str(out), env=states)
    assert result.returncode == 1 and result.stdout == ""
    assert json.loads(out.read_text(encoding="utf-8"))["accounts_checked"] == 6
    nowhere = invoke("rules", "audit-state", "--out", str(tmp_path / "no" / "r.txt"), env=states)
    assert nowhere.returncode == 2
    assert one_line_error(nowhere) == f"Error: --out {tmp_path / 'no' / 'r.txt'}: no such directory {tmp_path / 'no'}"


def test_a_forced_progress_bar_goes_to_stderr(states: dict[str, str]) -> None:
    result = invoke("rules", "audit-state", "--format", "json", "--progress", env=states)
    assert "accounts" in result.stderr and json.loads(result.stdout)["accounts_checked"] == 6
    quiet = invoke("rules", "audit-state", "--format", "json", env=states)
    assert quiet.stderr == ""  # not a terminal, not forced
