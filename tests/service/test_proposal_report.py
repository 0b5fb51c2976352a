"""The report of a proposed rule set (SPEC §7d): lint, cases, the contract, the diff against the live version, the
impact on decisions the service recorded and the state audit, as one JSON document and a short summary. Runs on an
Alembic-made database (SQLite, or PostgreSQL with TEST_DATABASE_URL) with decisions recorded through the app."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.container import snapshots, units_of_work
from app.persistence.db import make_engine, make_session_factory
from app.rules.language.loader import read_tree, rule_set_version
from app.rules.language.version import tree_digest
from app.schemas.permissions import load_update_request
from app.service.proposal_report import ProposalReport, build_report, live_directory
from app.service.publication import RuleVersions
from app.settings import Settings
from tests.support import FAILING_CASE, FREEZE_REFUSING_CLOSES, SHIPPED_RULES, body_of, copy_rules

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
KEYS = {"version", "rule_set_version", "made_at", "clean", "lint", "contract", "cases", "diff", "impact", "state_audit"}

# Opening US stock is refused for sg_mexc: the decision recorded for ACC-1's open of stock.US flips (the shipped
# cases judge another tenant's requests, so they still pass).
US_CLOSED = """\
policies:
  - id: us-closed
    description: US stock is closed to new business.
    when:
      tenant: sg_mexc
      change: {permission_type: stock.US, permission_status: open}
    message: US stock is closed to new business
"""
# Holding Hong Kong stock is refused (a holding policy, the default): ACC-1 holds it, so the state audit finds it;
# no recorded decision opened it.
HK_CLOSED = US_CLOSED.replace("us-closed", "hk-closed").replace("stock.US", "stock.HK").replace("US stock", "HK stock")
BROKEN = """\
policies:
  - id: no-such-fact
    description: names a fact the language does not have.
    when:
      change: {permission_colour: blue}
    message: never
"""
# (trace id, body, the code the shipped rules answer)
TRAFFIC = [
    ("open-us", body_of("ACC-1", ("stock.US", "open")), 0),
    ("open-sg", body_of("ACC-2", ("stock.SG", "open")), 0),
    ("noop-hk", body_of("ACC-1", ("stock.HK", "open")), 400103),
]


@pytest.fixture
def recorded(api: Any, seeded: Settings) -> Settings:
    """TRAFFIC answered by the app under the shipped rules and recorded in the decisions table."""
    for n, (trace, body, code) in enumerate(TRAFFIC):
        stamp = f"{time.time():.0f}.{n:06d}"
        answer = api.update(body, headers={"X-Trace-Id": trace}, timestamp=stamp).get_json()
        assert answer["code"] == code, (trace, answer)
    return seeded


@pytest.fixture
def sessions(recorded: Settings) -> Iterator[Any]:
    engine = make_engine(recorded, request_path=False)
    yield make_session_factory(engine)
    engine.dispose()


def _proposed(tmp_path: Path, policies: str | None = None, *, name: str = "proposed") -> Path:
    rules = copy_rules(tmp_path / name)
    if policies is not None:
        (rules / "policies.yaml").write_text(policies)
    return rules


PART_KEYS = {
    "cases": {"ran", "why", "passed", "failed", "failing", "coverage_percent", "never_fired"},
    "diff": {
        "ran",
        "why",
        "against",
        "against_rule_set_version",
        "differs",
        "inputs_compared",
        "counts",
        "groups",
        "declarations",
        "trouble",
    },
    "impact": {"ran", "why", "document"},
    "state_audit": {"ran", "why", "document"},
}


def _report(sessions: Any, directory: Path, live_dir: Path | None = SHIPPED_RULES) -> ProposalReport:
    report = build_report(
        directory,
        live_dir=live_dir,
        unit_of_work=units_of_work(sessions),
        snapshot=snapshots(sessions),
        load_request=load_update_request,
        now=NOW,
    )
    doc = report.as_json()
    json.dumps(doc)  # JSON through and through
    assert set(doc) == KEYS
    assert {part: set(doc[part]) for part in PART_KEYS} == PART_KEYS  # the same keys whether a part ran or not
    return report


def test_an_unchanged_set_is_clean_and_changes_nothing(sessions: Any, tmp_path: Path) -> None:
    directory = _proposed(tmp_path)
    report = _report(sessions, directory)
    doc = report.as_json()
    assert report.clean and doc["clean"]
    assert doc["version"] == tree_digest(read_tree(directory))
    assert doc["rule_set_version"] == rule_set_version(SHIPPED_RULES)
    assert doc["lint"] == {"errors": [], "warnings": []}
    assert doc["contract"] == {"checked": True, "problems": [], "why": None}
    cases = doc["cases"]
    assert (cases["ran"], cases["failed"], cases["failing"]) == (True, 0, [])
    assert cases["passed"] > 0 and 0 < cases["coverage_percent"] <= 100
    diff = doc["diff"]
    assert (diff["ran"], diff["differs"], diff["groups"], diff["trouble"]) == (True, False, [], None)
    assert diff["against"] == tree_digest(read_tree(SHIPPED_RULES))
    summary = doc["impact"]["document"]["summary"]
    assert (summary["replayed"], summary["flipped"], summary["message_changes"]) == (3, 0, 0)
    audit = doc["state_audit"]["document"]
    assert (audit["accounts_checked"], audit["violations"]) == (4, [])
    text = report.text()
    assert text[0].startswith(f"version {doc['version'][:12]} ") and text[0].endswith(": clean")
    assert "contract: kept" in text
    assert any(line.startswith("impact: 3 recorded decision(s) replayed, 0 would flip") for line in text)


def test_a_set_that_flips_a_recorded_decision_shows_it_in_diff_and_impact(sessions: Any, tmp_path: Path) -> None:
    report = _report(sessions, _proposed(tmp_path, US_CLOSED))
    doc = report.as_json()
    assert report.clean
    diff = doc["diff"]
    assert diff["differs"] is True and diff["counts"]["verdict"] > 0
    assert [(g["kind"], g["old"], g["new"]) for g in diff["groups"]] == [
        ("verdict", "pass", "us-closed (PERMISSION_POLICY_DENIED)")
    ]
    impact = doc["impact"]["document"]
    assert impact["old"]["source"] == "the live version"
    assert impact["old"]["rule_set_version"] == rule_set_version(SHIPPED_RULES)
    summary = impact["summary"]
    assert (summary["replayed"], summary["flipped"], summary["newly_refused"]) == (3, 1, 1)
    (flip,) = impact["flips"]["items"]
    assert (flip["trace_id"], flip["old"]["code"], flip["new"]["rule_id"]) == ("open-us", 0, "us-closed")
    # ACC-1 has held stock.US since the recorded open: a holding policy binds it too
    assert [v["account_no"] for v in doc["state_audit"]["document"]["violations"]] == ["ACC-1"]
    text = report.text()
    assert "diff against the live version" in "\n".join(text)
    assert any("1 would flip" in line for line in text)
    assert any(line.startswith(f"  decision {flip['decision_id']} (sg_mexc ACC-1): SUCCESS") for line in text)


def test_a_holding_policy_an_account_breaks_is_in_the_state_audit(sessions: Any, tmp_path: Path) -> None:
    report = _report(sessions, _proposed(tmp_path, HK_CLOSED))
    doc = report.as_json()
    assert report.clean
    audit = doc["state_audit"]["document"]
    assert audit["violations"] == [
        {
            "tenant": "sg_mexc",
            "account_no": "ACC-1",
            "permission_type": "stock.HK",
            "rule_id": "hk-closed",
            "enforcement": "deny",
            "message": "HK stock is closed to new business",
        }
    ]
    assert audit["by_rule"] == {"hk-closed": 1}
    assert audit["judged_at"] == "2026-12-06T09:00:00Z"
    assert doc["impact"]["document"]["summary"]["flipped"] == 0  # the recorded open of stock.HK was a no-op
    assert any(line.startswith("state audit: 4 account(s) judged, 1 deny violation(s)") for line in report.text())
    assert "  sg_mexc ACC-1 'stock.HK': hk-closed: " in "\n".join(report.text())


def test_a_broken_set_is_not_clean_and_says_why_the_other_parts_did_not_run(sessions: Any, tmp_path: Path) -> None:
    report = _report(sessions, _proposed(tmp_path, BROKEN))
    doc = report.as_json()
    assert not report.clean and doc["clean"] is False
    assert doc["rule_set_version"] is not None  # named by its files, loaded or not
    assert doc["lint"]["errors"] and all("policies.yaml" in e for e in doc["lint"]["errors"])
    assert (doc["cases"]["ran"], doc["cases"]["why"]) == (False, "the set's files do not load (see lint)")
    for part in ("diff", "impact", "state_audit"):
        assert doc[part]["ran"] is False
        assert doc[part]["why"].startswith("not run: the set is not clean (")
    text = report.text()
    assert text[0].endswith("NOT clean: it may not go live")
    assert any(line.startswith("impact: not run: the set is not clean") for line in text)


def test_a_failing_case_makes_the_set_unclean(sessions: Any, tmp_path: Path) -> None:
    report = _report(sessions, _proposed(tmp_path, FREEZE_REFUSING_CLOSES))
    doc = report.as_json()
    assert not report.clean
    assert doc["lint"]["errors"] == [] and doc["contract"]["problems"] == []
    cases = doc["cases"]
    assert cases["failed"] == 1 and [c["name"] for c in cases["failing"]] == [FAILING_CASE]
    assert doc["impact"]["why"].startswith("not run: the set is not clean (1 failing case(s))")
    assert any(FAILING_CASE in line for line in report.text())


def test_a_contract_breach_is_its_own_section_and_keeps_the_set_from_going_live(sessions: Any, tmp_path: Path) -> None:
    directory = _proposed(tmp_path)
    validation = directory / "validation.yaml"
    reworded = validation.read_text().replace(
        'message: "the permission is already {current_status}"', 'message: "is {current_status} already"'
    )
    assert reworded != validation.read_text()
    validation.write_text(reworded)
    report = _report(sessions, directory)
    doc = report.as_json()
    assert not report.clean
    (breach,) = doc["contract"]["problems"]
    assert "validation.yaml" in breach and "is reworded" in breach
    assert doc["lint"]["errors"] == []  # the breach is told once, in its own section
    assert doc["diff"]["ran"] is False
    assert any(line == "contract: 1 breach(es)" for line in report.text())


def test_with_nothing_live_the_diff_says_so_and_impact_replays_without_an_old_set(
    sessions: Any, tmp_path: Path
) -> None:
    report = _report(sessions, _proposed(tmp_path, US_CLOSED), live_dir=None)
    doc = report.as_json()
    assert report.clean
    diff = doc["diff"]
    assert (diff["ran"], diff["why"], diff["against"]) == (
        False,
        "no version is live yet: nothing to compare with",
        None,
    )
    impact = doc["impact"]["document"]
    assert impact["old"] == {
        "rules_dir": None,
        "source": "the live version",
        "rule_set_version": None,
        "note": "no version is live yet",
    }
    assert impact["summary"]["flipped"] == 1
    assert "diff: no version is live yet: nothing to compare with" in report.text()


def test_a_live_set_that_does_not_load_leaves_the_diff_out_with_the_reason(sessions: Any, tmp_path: Path) -> None:
    live = _proposed(tmp_path, BROKEN, name="live")
    report = _report(sessions, _proposed(tmp_path), live_dir=live)
    doc = report.as_json()
    assert report.clean
    assert doc["diff"]["ran"] is False and doc["diff"]["why"].startswith("the live version does not lint clean")
    assert doc["diff"]["against"] == tree_digest(read_tree(live))
    assert doc["impact"]["document"]["old"]["note"].startswith("the live version does not lint clean")


def test_the_live_version_is_read_from_the_database(sessions: Any, tmp_path: Path) -> None:
    versions = RuleVersions(units_of_work(sessions), load_request=load_update_request, versions_dir=tmp_path / "v")
    versions.adopt(read_tree(SHIPPED_RULES), by="upgrade", origin="test")  # unless the app's worker adopted it
    live = live_directory(versions)
    assert live is not None and live.name == tree_digest(read_tree(SHIPPED_RULES))
    doc = _report(sessions, _proposed(tmp_path, US_CLOSED), live_dir=live).as_json()
    assert doc["diff"]["against"] == live.name and doc["diff"]["differs"] is True
    assert doc["impact"]["document"]["summary"]["flipped"] == 1


def test_two_sets_too_large_to_compare_leave_the_diff_out_with_the_reason(sessions: Any, tmp_path: Path) -> None:
    """Each set relates three permissions to a warrant (each lints clean), the two together six: too many inputs
    to compare (as tests/cli/test_rules_diff.py shows): the diff says so, the other parts run."""
    from tests.cli.test_rules_diff import _suite_rule
    from tests.rules.support import BROKER_POLICIES

    live, proposed = (shutil.copytree(BROKER_POLICIES, tmp_path / name) for name in ("live", "proposed"))
    for directory, permissions in (
        (live, ("stock.{market}", "options.{market}", "shortsell.{market}")),
        (proposed, ("account.trade", "account.exchange", "trade.client")),
    ):
        path = directory / "policies.yaml"
        path.write_text(path.read_text(encoding="utf-8") + _suite_rule(*permissions), encoding="utf-8")
    report = _report(sessions, proposed, live_dir=live)
    doc = report.as_json()
    assert report.clean
    diff = doc["diff"]
    assert diff["ran"] is False and diff["against"] == tree_digest(read_tree(live))
    assert diff["why"].startswith("the two sets cannot be compared: too large to analyse: a change of 'warrant.HK'")
    assert diff["trouble"] == diff["why"].removeprefix("the two sets cannot be compared: ")
    assert doc["impact"]["ran"] and doc["state_audit"]["ran"]
    assert any(line.startswith("diff: the two sets cannot be compared: too large") for line in report.text())
