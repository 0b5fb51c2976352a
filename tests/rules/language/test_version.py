"""The rule-set version names what decides (catalog, attributes, rules), not prose (issue 12, acceptance 6)."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from app.rules.language.attributes import ATTRIBUTES_FILE
from app.rules.language.loader import CATALOG_FILE, RULES_FILE, load_rule_set, rule_set_version
from app.rules.language.model import RuleSet
from app.rules.language.parser import POLICY_FILE
from app.rules.language.version import DECIDING_FILES
from tests.rules.support import BROKER_POLICIES
from tests.support import SHIPPED_RULES


def copy_of(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(source, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    """Replace the one occurrence of old in path."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not unique in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def deciding(rule_set: RuleSet) -> tuple[object, ...]:
    """Everything of a loaded set that can decide: the model without its version, descriptions and the place
    each rule is written (file and line, for reports)."""
    rules = tuple(dataclasses.replace(r, description="", source="", line=0) for r in rule_set.rules)
    attributes = tuple(dataclasses.replace(a, description="") for a in rule_set.attributes)
    return rule_set.catalog, rules, attributes


def test_the_deciding_files_are_the_loaders():
    assert set(DECIDING_FILES) == {CATALOG_FILE, ATTRIBUTES_FILE, RULES_FILE, POLICY_FILE}


def test_version_is_a_stable_content_hash(tmp_path: Path):
    shipped = load_rule_set(SHIPPED_RULES).version
    copy = copy_of(SHIPPED_RULES, tmp_path)
    assert load_rule_set(copy).version == shipped  # wherever the directory lives
    assert load_rule_set(copy).version == shipped  # and across loads
    assert rule_set_version(copy) == shipped
    os.utime(copy / RULES_FILE, (1, 1))
    assert rule_set_version(copy) == shipped  # timestamps are not content
    assert len(shipped) == 16
    int(shipped, 16)


Edit = Callable[[Path], object]

PROSE: dict[str, Edit] = {
    "readme-typo": lambda d: edit(d / "README.md", "# The trade-permission rules", "# The trade permission rules"),
    "readme-removed": lambda d: (d / "README.md").unlink(),
    "comment": lambda d: edit(d / "validation.yaml", "# The four validations", "# The four  validations"),
    "catalog-comment": lambda d: edit(d / "catalog.yaml", "markets: [HK,", "# the markets\nmarkets: [HK,"),
    "trailing-newlines": lambda d: (d / "validation.yaml").write_bytes((d / "validation.yaml").read_bytes() + b"\n\n"),
    "flow-to-block": lambda d: edit(
        d / "validation.yaml",
        "    when: {change: {permission_type: {is: missing}}}\n",
        "    when:\n      change:\n        permission_type:\n          is: missing\n",
    ),
    "quoting": lambda d: edit(
        d / "validation.yaml", "message: is not a known permission type", 'message: "is not a known permission type"'
    ),
    "indentation": lambda d: edit(d / "catalog.yaml", "  - group: va\n    names:", "  -   group: va\n      names:"),
    "rule-description": lambda d: edit(
        d / "validation.yaml", "Every change names a permission type.", "Each change must name its permission type."
    ),
    "attribute-description": lambda d: edit(
        d / "attributes.yaml", "Whether the account trades on cash", "Whether the account trades with cash"
    ),
    "case-added": lambda d: (d / "cases" / "more.yaml").write_text(
        "cases:\n  - name: one more\n    changes: [{permission_type: stock.US, permission_status: open}]\n"
        "    expect: {code: SUCCESS}\n",
        encoding="utf-8",
    ),
}


@pytest.mark.parametrize("change", PROSE.values(), ids=PROSE.keys())
def test_prose_and_formatting_keep_the_version(tmp_path: Path, change: Edit):
    rules = copy_of(SHIPPED_RULES, tmp_path)
    before = load_rule_set(rules)
    change(rules)
    after = load_rule_set(rules)
    assert after.version == before.version == rule_set_version(rules)
    assert deciding(after) == deciding(before)  # one version, one behaviour: the engine compiles per version


def test_a_policy_window_written_as_z_or_as_an_offset_is_one_version(tmp_path: Path):
    rules = copy_of(BROKER_POLICIES, tmp_path)
    before = load_rule_set(rules)
    edit(rules / "policies.yaml", "from: 2026-01-01T00:00:00Z", "from: 2026-01-01T00:00:00+00:00")
    assert load_rule_set(rules).version == before.version
    assert deciding(load_rule_set(rules)) == deciding(before)


DECIDING: dict[str, Edit] = {
    "message": lambda d: edit(
        d / "validation.yaml", "message: is not a known permission", "message: is not a permission"
    ),
    # lint refuses an outcome the rule's condition does not read: must-change-state reads permission_status too
    "outcome": lambda d: edit(d / "validation.yaml", "outcome: NO_STATE_CHANGE", "outcome: INVALID_PERMISSION_STATUS"),
    "condition": lambda d: edit(d / "validation.yaml", '{permission_type: "flag.*"}', '{permission_type: "fl?g.*"}'),
    "market": lambda d: edit(d / "catalog.yaml", "DE, AU]", "DE, AU, KR]"),
    "catalog-order": lambda d: edit(d / "catalog.yaml", "[HK, US,", "[US, HK,"),
    "attribute-value": lambda d: edit(d / "attributes.yaml", "values: [cash, margin]", "values: [cash, margin, pro]"),
    "policies-added": lambda d: (d / "policies.yaml").write_text(
        "policies:\n  - id: no-ipo\n    description: x\n    when: {change: {product: ipo}}\n    message: no\n",
        encoding="utf-8",
    ),
    "rules-reordered": lambda d: (d / "validation.yaml").write_text(
        _swap((d / "validation.yaml").read_text(encoding="utf-8"), "  - id: status-required", "  - id: type-required"),
        encoding="utf-8",
    ),
}


def _swap(text: str, first: str, second: str) -> str:
    """Move the rule block starting at `first` (up to the next rule) in front of `second`."""
    start = text.index(first)
    end = text.index("  - id:", start + 1)
    block = text[start:end]
    text = text[:start] + text[end:]
    at = text.index(second)
    return text[:at] + block + text[at:]


@pytest.mark.parametrize("change", DECIDING.values(), ids=DECIDING.keys())
def test_what_decides_changes_the_version(tmp_path: Path, change: Edit):
    rules = copy_of(SHIPPED_RULES, tmp_path)
    before = load_rule_set(rules).version
    change(rules)
    assert load_rule_set(rules).version != before


def test_the_version_comes_back_when_the_edit_is_undone(tmp_path: Path):
    rules = copy_of(SHIPPED_RULES, tmp_path)
    before = rule_set_version(rules)
    original = (rules / "validation.yaml").read_bytes()
    edit(rules / "validation.yaml", "message: must be 'open' or 'close'", "message: must be open or close")
    assert rule_set_version(rules) != before
    (rules / "validation.yaml").write_bytes(original)
    assert rule_set_version(rules) == before


def test_a_file_that_does_not_parse_has_a_version_of_its_own(tmp_path: Path):
    rules = copy_of(SHIPPED_RULES, tmp_path)
    good = rule_set_version(rules)
    (rules / "validation.yaml").write_bytes((rules / "validation.yaml").read_bytes() + b"\n  - id: [broken\n")
    broken = rule_set_version(rules)
    assert broken != good and rule_set_version(rules) == broken
    (rules / "validation.yaml").write_bytes(b"\xff\xfe not utf-8")
    assert rule_set_version(rules) not in (good, broken)


def test_an_empty_policies_file_differs_from_none(tmp_path: Path):
    rules = copy_of(SHIPPED_RULES, tmp_path)
    without = rule_set_version(rules)
    (rules / "policies.yaml").write_text("", encoding="utf-8")
    assert rule_set_version(rules) != without


def test_no_two_trees_share_a_digest_by_moving_bytes_across_a_file_boundary() -> None:
    """A file whose bytes hold a separator and another file's name and bytes is not those two files."""
    from app.rules.language.version import tree_digest

    one = {"README.md": b"notes\0policies.yaml\0policies: []"}
    two = {"README.md": b"notes", "policies.yaml": b"policies: []"}
    assert tree_digest(one) != tree_digest(two)
    assert tree_digest({"a": b"bc"}) != tree_digest({"ab": b"c"})
