"""Load rules/ into a RuleSet, reporting every mistake with its file, line and column."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from app.rules.attributes import ATTRIBUTES_FILE, NO_ATTRIBUTES, read_attributes
from app.rules.language import POLICY_FILE, VALIDATION_FILE, load_rules
from app.rules.model import Catalog, Rule, RuleSet
from app.rules.source import Problem, RuleSetInvalid, YamlReader
from app.rules.version import version_of

CATALOG_FILE = "catalog.yaml"
RULES_FILE = VALIDATION_FILE
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
# A group refused as a whole is one validation rule (code, message and place in the order), not a catalog list.
BANNED_GROUPS_MOVED = (
    "'banned_groups' is no longer read: a group refused as a whole is a rule in validation.yaml "
    "(type-banned-group refuses flag.*); remove this key"
)


RulesTree = dict[str, bytes]  # path relative to the rules directory -> the file's bytes


def shown_path(rules_dir: Path, name: str) -> str:
    """How a problem names a file of rules_dir: relative to the working directory when under it, else as
    given (absolute stays absolute), so the path printed is the file a person can open."""
    path = Path(rules_dir) / name
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):
        return path.as_posix()


def read_tree(rules_dir: Path) -> RulesTree:
    """Every file under rules_dir, read once: what is parsed and what is hashed are then the same bytes."""
    rules_dir = Path(rules_dir)
    return {p.relative_to(rules_dir).as_posix(): p.read_bytes() for p in sorted(rules_dir.rglob("*")) if p.is_file()}


def tree_version(tree: RulesTree) -> str:
    """The rule-set version of a rules tree: a hash of what decides, not of prose (app/rules/version.py)."""
    return version_of(tree)


def rule_set_version(rules_dir: Path) -> str:
    """The rule-set version of the files now under rules_dir."""
    return tree_version(read_tree(rules_dir))


def _names(reader: YamlReader, parent: Any, key: str, rule_id: str) -> tuple[str, ...]:
    value = parent.get(key) if isinstance(parent, CommentedMap) else None
    if not isinstance(value, CommentedSeq) or not value:
        reader.problem(parent, rule_id, f"'{key}' must be a non-empty list of names", key)
        return ()
    names: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not NAME_PATTERN.match(item):
            reader.problem(value, rule_id, f"{item!r} is not a valid name (letters, digits, _ and -)", i)
        elif item in names:
            reader.problem(value, rule_id, f"'{item}' is listed twice in '{key}'", i)
        else:
            names.append(item)
    return tuple(names)


def load_catalog(data: bytes | None, shown: str) -> tuple[Catalog | None, list[Problem]]:
    """Read catalog.yaml into a Catalog."""
    reader = YamlReader(data, shown)
    doc = reader.load()
    if doc is None:
        if not reader.problems:
            reader.problem(None, "catalog", "file is empty")
        return None, reader.problems
    if not isinstance(doc, CommentedMap):
        reader.problem(doc, "catalog", "must be a mapping with markets and sections")
        return None, reader.problems
    for key in doc:
        if key == "banned_groups":
            reader.problem(doc, "catalog", BANNED_GROUPS_MOVED, key)
        elif key not in {"markets", "sections"}:
            reader.problem(doc, "catalog", f"unknown key '{key}'", key)
    markets = _names(reader, doc, "markets", "catalog")
    values: list[str] = []
    products: list[str] = []
    where: list[tuple[Any, Any]] = []  # the YAML node and key each value came from, for duplicate reports
    sections = doc.get("sections")
    if not isinstance(sections, CommentedSeq) or not sections:
        reader.problem(doc, "catalog", "'sections' must be a non-empty list", "sections")
        sections = []
    for i, section in enumerate(sections):
        if not isinstance(section, CommentedMap):
            reader.problem(sections, "catalog", "a section is a mapping (group + names, or products)", i)
            continue
        keys = set(section)
        if keys == {"group", "names"}:
            group = section["group"]
            if not isinstance(group, str) or not NAME_PATTERN.match(group):
                reader.problem(section, "catalog", f"group {group!r} is not a valid name", "group")
                continue
            valid = set(_names(reader, section, "names", "catalog"))
            raw = section.get("names")
            taken: set[str] = set()
            for position, name in enumerate(raw if isinstance(raw, CommentedSeq) else []):
                if name in valid and name not in taken:
                    taken.add(name)
                    values.append(f"{group}.{name}")
                    where.append((raw, position))
        elif keys == {"products"}:
            for product in _names(reader, section, "products", "catalog"):
                products.append(product)
                for market in markets:
                    values.append(f"{product}.{market}")
                    where.append((section, "products"))
        else:
            reader.problem(section, "catalog", f"a section has either group and names, or products; got {sorted(keys)}")
    seen: set[str] = set()
    for value, (node, key) in zip(values, where, strict=True):
        if value in seen:
            reader.problem(node, "catalog", f"catalog value '{value}' is listed twice", key)
        seen.add(value)
    if reader.problems:
        return None, reader.problems
    return Catalog(values=tuple(values), markets=markets, products=tuple(products)), []


def load_rule_set(rules_dir: Path, tree: RulesTree | None = None) -> RuleSet:
    """Load and validate rules_dir (or the tree already read from it), or raise RuleSetInvalid."""
    rules_dir = Path(rules_dir)
    tree = read_tree(rules_dir) if tree is None else tree
    catalog, problems = load_catalog(tree.get(CATALOG_FILE), shown_path(rules_dir, CATALOG_FILE))
    attributes = NO_ATTRIBUTES  # a rules directory without attributes.yaml declares none
    if ATTRIBUTES_FILE in tree:
        reader = YamlReader(tree[ATTRIBUTES_FILE], shown_path(rules_dir, ATTRIBUTES_FILE))
        attributes = read_attributes(reader)
        problems += reader.problems
    declared = {a.name: a for a in attributes}
    seen: set[str] = set()
    validations, found = load_rules(
        tree.get(VALIDATION_FILE), shown_path(rules_dir, VALIDATION_FILE), policy=False, seen=seen, attributes=declared
    )
    problems += found
    policies: tuple[Rule, ...] = ()
    if POLICY_FILE in tree:
        policies, found = load_rules(
            tree[POLICY_FILE], shown_path(rules_dir, POLICY_FILE), policy=True, seen=seen, attributes=declared
        )
        problems += found
    if problems or catalog is None:
        raise RuleSetInvalid(problems)
    return RuleSet(version=tree_version(tree), catalog=catalog, rules=validations + policies, attributes=attributes)
