"""The rule-set version names exactly the bytes that were loaded, even if the files change meanwhile."""

from __future__ import annotations

from app.rules.language.loader import load_rule_set, read_tree, rule_set_version, tree_version
from tests.support import copy_rules


def test_a_rule_set_is_parsed_and_versioned_from_one_read(tmp_path):
    rules = copy_rules(tmp_path)
    tree = read_tree(rules)
    catalog = rules / "catalog.yaml"
    catalog.write_text(catalog.read_text().replace("AU]", "AU, KR]"))  # an edit lands after the read

    loaded = load_rule_set(rules, tree)
    assert loaded.version == tree_version(tree) != rule_set_version(rules)
    assert "stock.KR" not in loaded.catalog  # what runs is what the version names

    fresh = load_rule_set(rules)
    assert fresh.version == rule_set_version(rules) and "stock.KR" in fresh.catalog
