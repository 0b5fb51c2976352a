"""app/rules/tools/diff.py: the joint input space of two sets covers both catalogs, so a catalog edit shows as the
values it adds (refused as unknown before, judged by the rules now), counted per type."""

from __future__ import annotations

from pathlib import Path

from app.rules.language.loader import load_rule_set
from app.rules.tools.diff import describe, diff
from tests.rules.support import rules_dir


def test_a_market_added_to_the_catalog_shows_as_its_new_values(tmp_path: Path):
    old = load_rule_set(rules_dir(tmp_path / "old"))
    new_dir = rules_dir(tmp_path / "new")
    catalog = new_dir / "catalog.yaml"
    catalog.write_text(catalog.read_text().replace("markets: [HK,", "markets: [NZ, HK,"))
    new = load_rule_set(new_dir)
    result = diff(old, new)
    assert result.differs
    assert {g.old for g in result.groups} == {"type-in-catalog (INVALID_PERMISSION_TYPE)"}
    types = {t for g in result.groups for t in describe(g, result.space)["permission_types"]}
    assert types == {f"{product}.NZ" for product in new.catalog.products}
    news = {g.new for g in result.groups}
    assert news == {
        "pass",
        "type-enabled-for-tenant (INVALID_PERMISSION_TYPE)",
        "no-duplicate-type (DUPLICATE_PERMISSION_TYPE)",
        "must-change-state (NO_STATE_CHANGE)",
        "status-required (INVALID_PERMISSION_STATUS)",
        "status-must-be-text (INVALID_PERMISSION_STATUS)",
        "status-open-or-close (INVALID_PERMISSION_STATUS)",
    }
    assert result.count("verdict") == sum(describe(g, result.space)["inputs"] for g in result.groups)
    assert diff(new, new).groups == []


def test_declarations_added_removed_and_changed_are_named_with_their_values(tmp_path: Path):
    from app.rules.tools.declared import report_lines
    from tests.rules.support import BROKER_POLICIES

    old = load_rule_set(rules_dir(tmp_path / "old"))
    attributes = (BROKER_POLICIES / "attributes.yaml").read_text(encoding="utf-8")
    edited = attributes.replace('pattern: "[A-Z]{2}"', 'pattern: "[A-Z]{2,3}"').replace(
        "  - name: account_type\n    description: Whether the account trades on cash only or on margin.\n"
        "    values: [cash, margin]\n",
        "",
    )
    new_dir = rules_dir(tmp_path / "new", attributes=edited)
    catalog = new_dir / "catalog.yaml"
    catalog.write_text(catalog.read_text().replace("markets: [HK,", "markets: [NZ, HK,"))
    result = diff(old, load_rule_set(new_dir))
    lines = report_lines(result.declarations)
    assert lines[0].startswith("catalog values added: ") and "stock.NZ" in lines[1]
    assert lines[2:] == [
        "attributes removed: 1",
        "  account_type: values 'cash', 'margin'",
        "attribute declarations changed: 1",
        "  residency: values match [A-Z]{2} -> values match [A-Z]{2,3}",
    ]
    assert diff(old, old).declarations.any is False


def test_an_attribute_deprecated_by_the_edit_is_a_declaration_change(tmp_path: Path):
    from app.rules.tools.declared import report_lines
    from tests.rules.support import BROKER_POLICIES

    attributes = (BROKER_POLICIES / "attributes.yaml").read_text(encoding="utf-8")
    old = load_rule_set(rules_dir(tmp_path / "old", attributes=attributes))
    edited = attributes.replace(
        "    values: [retail, professional]\n", "    values: [retail, professional]\n    deprecated: true\n"
    )
    assert edited != attributes
    result = diff(old, load_rule_set(rules_dir(tmp_path / "new", attributes=edited)))
    assert report_lines(result.declarations) == [
        "attribute declarations changed: 1",
        "  investor_class: values 'retail', 'professional' -> values 'retail', 'professional' (deprecated)",
    ]
