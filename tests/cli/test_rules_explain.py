"""permctl rules explain: --json, and --trace on a decision a real request recorded (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.runner import invoke as permctl
from tests.cli.runner import ok, one_line_error
from tests.rules.support import rules_dir
from tests.support import body_of

NO_US_STOCK = """
policies:
  - id: no-us-stock
    description: US stock can no longer be opened.
    when: {change: {permission_type: stock.US, permission_status: open}}
    message: US stock is not offered
"""


def test_explain_json_has_every_verdict_the_facts_and_the_answer():
    out = ok(
        permctl(
            "rules",
            "explain",
            "--json",
            "--enable",
            "stock.*",
            "--state",
            "stock.HK=open",
            "--attribute",
            "account_type=margin",
            "--data",
            '{"account_no":"A1","changes":[{"permission_type":"stock.HK","permission_status":"open"}]}',
        )
    )
    document = json.loads(out)
    assert document["tenant_config"] == ["stock.*"]
    assert document["account"] == {"status": "active", "attributes": {"account_type": "margin"}}
    assert document["permissions"] == [{"type": "stock.HK", "before": "open", "after": "open"}]
    (change,) = document["changes"]
    assert change["facts"]["current_status"] == "open" and change["facts"]["market"] == "HK"
    verdicts = {r["rule_id"]: r["verdict"] for r in change["rules"]}
    assert verdicts["must-change-state"] == "decides"
    assert verdicts["no-duplicate-type"] == "does_not_hold"
    decider = next(r for r in change["rules"] if r["rule_id"] == "must-change-state")
    assert decider["read"] == {"change.permission_status": "open", "change.current_status": "open"}
    assert document["answer"] == {
        "code": 400103,
        "message": "changes[0].permission_status 'open': the permission is already open",
        "data": {"failure_index": 0, "rule_id": "must-change-state"},
    }


def test_explain_trace_judges_the_recorded_request_again(api, seeded, tmp_path: Path):
    env = {"DATABASE_URL": seeded.database_url}
    refused = api.update(
        body_of("ACC-1", ("stock.US", "open"), ("stock.HK", "open")), headers={"X-Trace-Id": "trace-refused"}
    )
    envelope = refused.get_json()
    assert envelope["code"] == 400103, envelope
    accepted = api.update(body_of("ACC-2", ("stock.US", "open")), headers={"X-Trace-Id": "trace-accepted"})
    accepted_envelope = accepted.get_json()
    assert accepted_envelope["code"] == 0
    same = json.loads(ok(permctl("rules", "explain", "--trace", "trace-accepted", "--json", env=env)))
    assert same["current"]["answer"] == accepted_envelope and same["differs"] is False

    text = ok(permctl("rules", "explain", "--trace", "trace-refused", env=env))
    assert "decision 1 trace trace-refused: tenant sg_mexc, account ACC-1, recorded " in text
    assert "recorded answer: code 400103 NO_STATE_CHANGE at changes[1] by must-change-state; warnings: none" in text
    assert f"\nmessage: {envelope['message']}\n" in text  # the exact message the caller got
    assert "permissions open before or after the request (before->after): " in text
    assert "account.trade open->open" in text and "stock.HK open->open" in text and "stock.US close->open" in text
    assert text.rstrip().endswith("answer as recorded")

    document = json.loads(ok(permctl("rules", "explain", "--trace", "trace-refused", "--json", env=env)))
    assert document["differs"] is False and document["differences"] == []
    assert document["current"]["answer"] == {
        "code": envelope["code"],
        "message": envelope["message"],
        "data": envelope["data"],
    }
    assert document["recorded"]["rule_id"] == "must-change-state"
    assert document["recorded"]["failure_index"] == 1
    assert document["current"]["tenant"] == "sg_mexc"

    # The proposed rules refuse what was accepted; the recorded state (stock.US never set) is what is judged,
    # not the account as it stands now (stock.US open since), which would be a NO_STATE_CHANGE.
    proposed = rules_dir(tmp_path, NO_US_STOCK)
    changed = ok(permctl("rules", "explain", "--rules", str(proposed), "--trace", "trace-accepted", env=env))
    assert "recorded answer: code 0 SUCCESS; warnings: none; dryrun hits: none" in changed
    assert "message: changes[0].permission_type 'stock.US': US stock is not offered" in changed
    assert changed.rstrip().endswith(
        "answer differently:\n"
        "  outcome: recorded 0 SUCCESS, now 400106 PERMISSION_POLICY_DENIED at changes[0] by no-us-stock"
    )
    document = json.loads(
        ok(permctl("rules", "explain", "--rules", str(proposed), "--trace", "trace-accepted", "--json", env=env))
    )
    assert document["differs"] is True
    assert document["current"]["answer"]["data"] == {"failure_index": 0, "rule_id": "no-us-stock"}


def test_a_trace_id_a_caller_sent_twice_explains_both_decisions(api, seeded):
    for account in ("ACC-1", "ACC-2"):
        api.update(body_of(account, ("stock.US", "open")), headers={"X-Trace-Id": "reused"})
    env = {"DATABASE_URL": seeded.database_url}
    lines = ok(permctl("rules", "explain", "--trace", "reused", "--json", env=env)).splitlines()
    assert [json.loads(line)["recorded"]["account_no"] for line in lines] == ["ACC-1", "ACC-2"]
    text = ok(permctl("rules", "explain", "--trace", "reused", env=env))
    assert text.count("answer as recorded") == 2


def test_an_unknown_trace_is_one_line(seeded):
    result = permctl("rules", "explain", "--trace", "no-such-trace", env={"DATABASE_URL": seeded.database_url})
    assert result.returncode == 1
    assert one_line_error(result) == (
        "Error: no decision recorded with trace id 'no-such-trace' (a request refused before the rules records none)"
    )


def test_trace_refuses_a_request_of_its_own():
    result = permctl("rules", "explain", "--trace", "t1", "--state", "stock.HK=open")
    assert one_line_error(result).startswith("Error: --trace explains a recorded request with the state it met")
    assert result.returncode == 1


TWO_CHANGES = (
    "--rules",
    "examples/broker-policies",
    "--state",
    "stock.SH=open",
    "--attribute",
    "residency=CN",
    "--at",
    "2025-01-15T08:00:00Z",
    "--data",
    '{"account_no":"A1","changes":[{"permission_type":"stock.SH","permission_status":"close"},'
    '{"permission_type":"account.deposit","permission_status":"open"}]}',
)


def test_explain_is_short_by_default_and_whole_with_verbose():
    """Issue 20, finding 6: a 2-change request is explained in at most 25 lines naming the deciding rule, the
    facts it read, its message and the answer; --verbose lists every rule's verdict for every change."""
    from tests.support import PROJECT_ROOT

    cwd = {"cwd": PROJECT_ROOT}
    short = ok(permctl("rules", "explain", *TWO_CHANGES, **cwd)).splitlines()
    assert len(short) <= 25, "\n".join(short)
    assert "  passes: no deny rule holds (21 rules judged)" in short  # closing stock.SH
    assert "  decided by deposit-freeze-2025 (rule 19 of 21)" in short
    assert any(line.startswith("    read: change.permission_type = account.deposit;") for line in short)
    assert "answer: code 400106 PERMISSION_POLICY_DENIED" in short
    assert "message: changes[1].permission_type 'account.deposit': deposits cannot be opened in January 2025" in short
    assert 'data: {"failure_index": 1, "rule_id": "deposit-freeze-2025"}' in short
    assert not any("does not hold" in line for line in short)

    whole = ok(permctl("rules", "explain", *TWO_CHANGES, "--verbose", **cwd)).splitlines()
    assert len(whole) > 80
    assert sum(line.startswith("  facts: ") for line in whole) == 2
    assert sum(line.startswith("   1. type-required ") for line in whole) == 2  # every rule, for each change
    assert any(line.startswith("  19. deposit-freeze-2025") and "HOLDS  <- decides" in line for line in whole)
    assert whole[-3:] == short[-4:-1]  # the same answer
