"""rules impact replays decisions recorded before decisions kept the account's status and attributes (their
columns NULL, account_state holding only the named types), as well as new ones."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from app.rules.language.loader import load_rule_set
from app.rules.language.model import Catalog
from app.rules.runtime.record import DecisionRecord
from app.rules.tools.impact.catalog import catalog_impact
from app.rules.tools.impact.replay import Decided, Flip, Recorded, impact
from app.rules.tools.impact.sample import Shown
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
        DecisionRecord(  # a row as the decisions table keeps it, read back
            trace_id=f"t{n}",
            tenant_id="sg_mexc",
            account_no="ACC-1",
            rule_set_version="old-version",
            changes=tuple(changes),
            tenant_patterns=("*",),
            account_state=state,
            created_at=AT,
            code=outcome.code,
            account_status=new.get("account_status"),
            attributes=json.loads(new["attributes"]) if "attributes" in new else None,
        ).decision_input(),
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


def _asking(*changes: tuple[str, str], outcome: Decided) -> Recorded:
    return _row(9, [{"permission_type": t, "permission_status": s} for t, s in changes], {}, outcome)


@pytest.mark.parametrize(
    ("old", "new", "flagged"),
    [
        (Decided(0, 0, None), Decided(400106, 1, "p"), True),  # accepted before: the close is newly refused
        (Decided(400103, 1, "must-change-state"), Decided(400106, 1, "p"), False),  # that close was refused before
        (Decided(400101, 2, "type-in-catalog"), Decided(400106, 1, "p"), True),  # old rules let it through
        (Decided(400101, 0, "type-in-catalog"), Decided(400106, 1, "p"), False),  # never reached before
        (Decided(0, 0, None), Decided(400106, 0, "p"), False),  # the open at [0] is refused, not a close
    ],
)
def test_a_close_is_newly_refused_only_when_the_old_rules_let_it_through(old: Decided, new: Decided, flagged: bool):
    decision = _asking(("stock.US", "open"), ("stock.HK", "close"), ("stock.JP", "open"), outcome=old)
    assert Flip(decision, new).close_newly_refused is flagged


def test_the_first_n_or_a_seeded_sample_always_in_history_order():
    first: Shown[int] = Shown(3)
    everything: Shown[int] = Shown(None)
    samples = [Shown[int](3, seed=seed) for seed in (7, 7, 8)]
    for n in range(100):
        for shown in (first, everything, *samples):
            shown.offer(n)
    assert first.items == [0, 1, 2] and everything.items == list(range(100))
    assert samples[0].items == samples[1].items != samples[2].items
    assert all(len(s.items) == 3 and s.items == sorted(s.items) for s in samples)
    assert samples[0].items != [0, 1, 2]  # a sample, not the head


def test_a_catalog_edit_names_per_tenant_the_values_its_patterns_newly_match():
    old = load_rule_set(SHIPPED_RULES).catalog
    new = Catalog(values=(*(v for v in old.values if v != "options.US"), "options.KR", "stock.KR"))
    configs = {"wild": ("stock.*", "options.*"), "exact": ("options.US", "stock.HK"), "bare": ()}
    found = catalog_impact(old, new, configs)
    assert (found.added, found.removed, found.tenants_compared) == (("options.KR", "stock.KR"), ("options.US",), 3)
    assert [(t.tenant_id, t.newly_enabled, t.newly_disabled) for t in found.tenants] == [
        ("exact", (), ("options.US",)),
        ("wild", ("options.KR", "stock.KR"), ("options.US",)),
    ]
    assert catalog_impact(old, old, configs).tenants == ()


def test_a_long_request_shows_its_first_changes_and_the_refused_one_in_markdown_and_every_change_in_json():
    from app.rules.tools.impact.document import Compared, document
    from app.rules.tools.impact.render import markdown

    markets = ["HK", "US", "SH", "SZ", "SG", "JP", "UK", "DE", "AU"]
    changes = [(f"stock.{m}", "open") for m in markets] + [("account.trade", "open"), ("flag.options", "close")]
    changes.append(("account.otc", "open"))
    recorded = _asking(*changes, outcome=Decided(0, 0, None))
    report = impact(load_rule_set(SHIPPED_RULES), [recorded])
    doc = document(report, Compared(str(SHIPPED_RULES), None, "RULES_DIR", "none here"))
    (flip,) = doc["flips"]["items"]
    assert len(flip["asked"]) == 12 and flip["new"]["failure_index"] == 10
    assert flip["close_newly_refused"] is True
    (row,) = [line for line in markdown(doc).splitlines() if "`t9`" in line]
    asked = row.split(" | ")[6].split("<br>")
    assert asked[:1] == ["[0] `stock.HK` open"] and len(asked) == 8 + 1 + 1
    assert asked[-2:] == ["**→** [10] `flag.options` **close**", "… 3 more"]


def test_a_decision_the_old_rules_already_decide_otherwise_is_not_a_flip_of_the_edit(tmp_path):
    """Recorded under the shipped set (accepted); the broker set B refuses it (shortsell-margin-only); C edits only
    ipo-closed-markets. Impact B -> C blames C for nothing: the decision is 'decided otherwise before this edit'
    in every format, never among the flips nor in the per-rule counts."""
    import shutil

    from app.rules.tools.impact.document import Compared, document
    from app.rules.tools.impact.render import markdown, text

    broker = PROJECT_ROOT / "examples" / "broker-policies"
    edited = tmp_path / "edited"
    shutil.copytree(broker, edited)
    policies = edited / "policies.yaml"
    policies.write_text(policies.read_text().replace("market: [JP, DE], permission_status: open", "market: [JP]"))
    old, proposed = load_rule_set(broker), load_rule_set(edited)
    assert old.version != proposed.version
    decision = _row(1, [{"permission_type": "shortsell.US", "permission_status": "open"}], {}, Decided(0, 0, None))

    report = impact(proposed, [decision], old=old)
    assert (report.flipped, report.flips, dict(report.by_rule), dict(report.newly_decided_by)) == (0, [], {}, {})
    assert (report.newly_refused, report.by_tenant["sg_mexc"].flipped) == (0, 0)
    assert (report.decided_otherwise, report.decided_otherwise_changed) == (1, 0)
    (found,) = report.decided_otherwise_list
    assert (found.old.rule_id, found.new.rule_id, found.changed_by_edit) == ("shortsell-margin-only",) * 2 + (False,)

    doc = document(report, Compared("edited", "broker", "--old-rules"))
    assert doc["summary"]["flipped"] == 0 and doc["by_rule"] == [] and doc["flips"]["items"] == []
    assert doc["summary"]["decided_otherwise_before_this_edit"] == 1
    (item,) = doc["decided_otherwise_before_this_edit"]["items"]
    assert (item["decision_id"], item["recorded"]["code"], item["old"]["rule_id"]) == (1, 0, "shortsell-margin-only")
    assert item["changed_by_this_edit"] is False
    shown = text(doc)
    assert "decided otherwise before this edit: decision 1 trace=t1" in shown
    assert "old rules 400106 PERMISSION_POLICY_DENIED at changes[0] by shortsell-margin-only" in shown
    assert "shortsell-margin-only: would newly decide" not in shown
    assert shown.strip().endswith(f"1 decisions replayed through rule-set version {proposed.version}; 0 would change")
    page = markdown(doc)
    assert "## Decided otherwise before this edit" in page
    assert "| flipped (outcome changes) | 0 |" in page
    assert "| decided otherwise before this edit (not counted above) | 1 |" in page


def test_a_decision_decided_otherwise_that_the_edit_changes_again_is_shown_so_and_still_not_a_flip(tmp_path):
    import shutil

    from app.rules.tools.impact.document import Compared, document
    from app.rules.tools.impact.render import markdown, text

    broker = PROJECT_ROOT / "examples" / "broker-policies"
    edited = tmp_path / "edited"
    shutil.copytree(broker, edited)
    policies = edited / "policies.yaml"
    policies.write_text(policies.read_text().replace("short selling needs a margin account", "margin accounts only"))
    decision = _row(1, [{"permission_type": "shortsell.US", "permission_status": "open"}], {}, Decided(0, 0, None))
    report = impact(load_rule_set(edited), [decision], old=load_rule_set(broker))
    assert (report.flipped, report.message_changes) == (0, 0)  # recorded as accepted: the old text never reached anyone
    assert (report.decided_otherwise, report.decided_otherwise_changed) == (1, 0)  # same outcome, other text

    refusing = impact(load_rule_set(SHIPPED_RULES), [decision], old=load_rule_set(broker))
    assert (refusing.flipped, refusing.decided_otherwise, refusing.decided_otherwise_changed) == (0, 1, 1)
    doc = document(refusing, Compared("shipped", "broker", "--old-rules"))
    assert doc["decided_otherwise_before_this_edit"]["items"][0]["changed_by_this_edit"] is True
    shown = text(doc)
    assert "; proposed rules 0 SUCCESS" in shown
    assert "(1 of them the proposed rules change again)" in shown
    assert "| … of which this edit changes again | 1 |" in markdown(doc)
