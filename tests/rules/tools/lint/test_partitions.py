"""Analysis without cliffs (SPEC §7b "No blind spots"): the input space is partitioned per permission type, so a
rule that makes one type's partition too large to judge is an error at that rule, naming what makes it large,
and every other partition is still judged: a shadowed rule elsewhere is still reported."""

from __future__ import annotations

import shutil
from pathlib import Path

from app.rules.language.source import Problem
from app.rules.tools.lint.directory import lint
from tests.rules.support import BROKER_POLICIES
from tests.rules.tools.lint.test_semantic import _at

# Opening warrants needs every other product of the market, the trade and exchange accounts and the client
# channel: nine permissions related to one change, each in one of four (before, after) states.
NINE_PERMISSIONS = """
  - id: warrants-need-the-whole-suite
    description: Opening warrants on a market needs nine other permissions open.
    when:
      all:
        - change: {product: warrant, permission_status: open}
        - {permission: "stock.{market}", after: close}
        - {permission: "options.{market}", after: close}
        - {permission: "shortsell.{market}", after: close}
        - {permission: "ipo.{market}", after: close}
        - {permission: "stockgrey.{market}", after: close}
        - {permission: "otc.{market}", after: close}
        - {permission: account.trade, after: close}
        - {permission: account.exchange, after: close}
        - {permission: trade.client, after: close}
    message: "warrants on {market} need the whole suite open"
"""
# Implied by ipo-closed-markets (IPO on JP or DE), with the same enforcement: it can never fire.
SHADOWED = """
  - id: ipo-closed-in-japan
    description: IPO subscriptions are closed in Japan.
    when:
      change: {permission_type: ipo.JP, permission_status: open}
    message: IPO subscriptions in Japan are not offered
"""


def _planted(tmp_path: Path, *policies: str) -> Path:
    directory = tmp_path / "broker-policies"
    shutil.copytree(BROKER_POLICIES, directory)
    path = directory / "policies.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "".join(policies), encoding="utf-8")
    return directory


def _only(problems: list[Problem], rule_id: str) -> Problem:
    found = [p for p in problems if p.rule_id == rule_id]
    assert len(found) == 1, [str(p) for p in problems]
    return found[0]


def test_a_rule_relating_nine_permissions_is_an_error_at_it_and_hides_no_shadowed_rule(tmp_path: Path):
    directory = _planted(tmp_path, NINE_PERMISSIONS, SHADOWED)
    problems = lint(directory).problems

    large = _only(problems, "warrants-need-the-whole-suite")
    assert (large.path, large.line, large.column) == _at(directory, "policies.yaml", "warrants-need-the-whole-suite")
    assert large.is_error
    assert large.text.startswith("too large to analyse: it relates 9 permissions (4 states each), so a change of ")
    assert "'warrant.HK' (or 8 other type(s))" in large.text
    assert "(at most 50,000 per permission type); relate fewer permissions to one type" in large.text

    shadowed = _only(problems, "ipo-closed-in-japan")
    assert (shadowed.path, shadowed.line, shadowed.column) == _at(directory, "policies.yaml", "ipo-closed-in-japan")
    assert shadowed.text == "never fires: every change it matches is refused first by 'ipo-closed-markets'"

    # Nothing is skipped for the whole set, and no rule is said never to hold for lack of judging.
    assert all(p.line != 1 and "skipped" not in p.text for p in problems), [str(p) for p in problems]
    assert not [p for p in problems if "never hold" in p.text]
    assert sorted(p.rule_id for p in problems if p.is_error) == ["ipo-closed-in-japan", "warrants-need-the-whole-suite"]
