"""rules impact replays decisions recorded before decisions kept the account's status and attributes (their
columns NULL, account_state holding only the named types), as well as new ones."""

from __future__ import annotations

import json
from datetime import datetime

from app.rules.impact import Decided, Recorded, impact, recorded_input
from app.rules.loader import load_rule_set
from tests.support import PROJECT_ROOT, SHIPPED_RULES

AT = datetime(2026, 3, 1, 9, 0)  # as SQLite hands it back: naive, UTC


def _row(n: int, changes: list[dict[str, str]], state: dict[str, str], outcome: Decided, **new: str) -> Recorded:
    return Recorded(
        n,
        f"t{n}",
        "sg_mexc",
        "ACC-1",
        AT,
        "old-version",
        recorded_input(
            tenant_id="sg_mexc",
            created_at=AT,
            changes=json.dumps(changes),
            tenant_patterns=json.dumps(["*"]),
            account_state=json.dumps(state),
            account_status=new.get("account_status"),
            attributes=new.get("attributes"),
        ),
        outcome,
    )


def test_old_rows_replay_as_active_accounts_without_attributes_and_new_rows_as_recorded():
    old_accepted = _row(1, [{"permission_type": "shortsell.US", "permission_status": "open"}], {}, Decided(0, 0, None))
    old_noop = _row(
        2,
        [{"permission_type": "stock.US", "permission_status": "open"}],
        {"stock.US": "open"},
        Decided(400103, 0, "must-change-state"),
    )
    new_margin = _row(
        3,
        [{"permission_type": "shortsell.HK", "permission_status": "open"}],
        {},
        Decided(0, 0, None),
        account_status="active",
        attributes=json.dumps({"account_type": "margin"}),
    )
    assert old_accepted.decision_input.account_status == "active" and old_accepted.decision_input.attributes == {}
    assert old_accepted.decision_input.at.tzinfo is not None
    same = impact(load_rule_set(SHIPPED_RULES), [old_accepted, old_noop, new_margin])
    assert (same.replayed, same.flips) == (3, [])
    proposed = impact(
        load_rule_set(PROJECT_ROOT / "examples" / "broker-policies"), [old_accepted, old_noop, new_margin]
    )
    assert [(f.decision.id, f.new.rule_id) for f in proposed.flips] == [(1, "shortsell-margin-only")]
    assert dict(proposed.newly_decided_by) == {"shortsell-margin-only": 1}
