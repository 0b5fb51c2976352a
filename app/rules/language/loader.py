"""Load rules/ into a RuleSet, reporting every mistake with its file, line and column."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from app.rules.language.attributes import (
    ATTRIBUTES_FILE,
    NO_ATTRIBUTES,
    AttributeDeclaration,
    AttributeSet,
    read_attributes,
)
from app.rules.language.model import Catalog, Rule, RuleSet
from app.rules.language.parser import POLICY_FILE, VALIDATION_FILE, load_rules
from app.rules.language.source import Problem, RuleSetInvalid, YamlReader, shown
from app.rules.language.version import version_of

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
    """The rule-set version of a rules tree: a hash of what decides, not of prose (app/rules/language/version.py)."""
    return version_of(tree)


def rule_set_version(rules_dir: Path) -> str:
    """The rule-set version of the files now under rules_dir."""
    return tree_version(read_tree(rules_dir))


# The forms catalog codes take: a type reads as {product}.{MARKET} or {group}.{name}, so markets are upper case
# (callers send stock.US; stock.us is invalid), products and groups lower case, and a group's names either.
MARKET_CODE = re.compile(r"^[A-Z][A-Z0-9]{1,7}$")
LOWER_CODE = re.compile(r"^[a-z][a-z0-9_]*$")
MEMBER_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")

Form = Callable[[str], str | None]  # why a name is not in its expected form, or None


def _market_form(code: str) -> str | None:
    if MARKET_CODE.match(code):
        return None
    if MARKET_CODE.match(code.upper()):
        return f"market code '{code}' must be upper case ('{code.upper()}'): callers send {code.upper()}, never {code}"
    return f"market code '{code}' is not in the expected form (upper-case letters and digits, e.g. HK)"


def _lower_form(what: str) -> Form:
    def form(code: str) -> str | None:
        if LOWER_CODE.match(code):
            return None
        return f"{what} '{code}' is not in the expected form (lower-case letters, digits and _, e.g. stock)"

    return form


def _member_form(code: str) -> str | None:
    if MEMBER_CODE.match(code):
        return None
    return f"name '{code}' is not in the expected form (letters, digits and _, e.g. trade or OSL)"


@dataclass
class _CatalogDraft:
    """The catalog as read so far: each value with the node it came from, for duplicate reports."""

    markets: tuple[str, ...] = ()
    complete: bool = True  # False once a value could not be read (a catalog with holes is not checked against)
    values: list[str] = field(default_factory=list)
    where: list[tuple[Any, Any]] = field(default_factory=list)
    products: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def add(self, value: str, node: Any, key: Any) -> None:
        self.values.append(value)
        self.where.append((node, key))


def _names(reader: YamlReader, parent: Any, key: str, form: Form, draft: _CatalogDraft) -> tuple[str, ...]:
    """A non-empty list of names, each valid, once, and in its form (a name in another form is still kept)."""
    value = parent.get(key) if isinstance(parent, CommentedMap) else None
    if not isinstance(value, CommentedSeq) or not value:
        reader.problem(parent, "catalog", f"'{key}' must be a non-empty list of names", key)
        draft.complete = False
        return ()
    names: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not NAME_PATTERN.match(item):
            reader.problem(value, "catalog", f"{shown(item)} is not a valid name (letters, digits, _ and -)", i)
            draft.complete = False
        elif item in names:
            reader.problem(value, "catalog", f"'{item}' is listed twice in '{key}'", i)
        else:
            wrong = form(item)
            if wrong is not None:
                reader.problem(value, "catalog", wrong, i)
            names.append(item)
    return tuple(names)


def _group_section(reader: YamlReader, section: CommentedMap, draft: _CatalogDraft) -> None:
    group = section["group"]
    if not isinstance(group, str) or not NAME_PATTERN.match(group):
        reader.problem(section, "catalog", f"group {shown(group)} is not a valid name", "group")
        draft.complete = False
        return
    wrong = _lower_form("group")(group)
    if wrong is not None:
        reader.problem(section, "catalog", wrong, "group")
    draft.groups.append(group)
    valid = set(_names(reader, section, "names", _member_form, draft))
    raw = section.get("names")
    taken: set[str] = set()
    for position, name in enumerate(raw if isinstance(raw, CommentedSeq) else []):
        if name in valid and name not in taken:
            taken.add(name)
            if name in draft.markets:
                text = f"'{group}.{name}' would read as product {group}, market {name}: a group's name is no market"
                reader.problem(raw, "catalog", text, position)
            draft.add(f"{group}.{name}", raw, position)


def _products_section(reader: YamlReader, section: CommentedMap, draft: _CatalogDraft) -> None:
    raw = section.get("products")
    for product in _names(reader, section, "products", _lower_form("product"), draft):
        if product in draft.products:
            position = [i for i, p in enumerate(raw) if p == product][-1]
            reader.problem(raw, "catalog", f"product '{product}' is listed twice (in two sections)", position)
            continue
        draft.products.append(product)
        for market in draft.markets:
            draft.add(f"{product}.{market}", section, "products")


Section = Callable[[YamlReader, CommentedMap, _CatalogDraft], None]
SECTIONS: dict[frozenset[Any], Section] = {  # the keys of each kind of section, and its reader
    frozenset({"group", "names"}): _group_section,
    frozenset({"products"}): _products_section,
}
CATALOG_KEYS = ("markets", "sections")
MOVED_KEYS = {"banned_groups": BANNED_GROUPS_MOVED}  # keys no longer read, and where their meaning went


def _catalog_document(reader: YamlReader, doc: Any) -> bool:
    """Whether the document is a mapping (else reported); its unknown and moved keys are reported."""
    if doc is None:
        if not reader.problems:
            reader.problem(None, "catalog", "file is empty")
        return False
    if not isinstance(doc, CommentedMap):
        reader.problem(doc, "catalog", "must be a mapping with markets and sections")
        return False
    for key in doc:
        if key in MOVED_KEYS:
            reader.problem(doc, "catalog", MOVED_KEYS[key], key)
        elif key not in CATALOG_KEYS:
            reader.problem(doc, "catalog", f"unknown key '{key}'", key)
    return True


def _section(reader: YamlReader, sections: CommentedSeq, index: int, draft: _CatalogDraft) -> None:
    """One section, read by the reader its keys call for."""
    section = sections[index]
    if not isinstance(section, CommentedMap):
        reader.problem(sections, "catalog", "a section is a mapping (group + names, or products)", index)
        draft.complete = False
        return
    read = SECTIONS.get(frozenset(section))
    if read is None:
        keys = set(section)
        reader.problem(section, "catalog", f"a section has either group and names, or products; got {sorted(keys)}")
        draft.complete = False
        return
    read(reader, section, draft)


def _sections(reader: YamlReader, doc: CommentedMap, draft: _CatalogDraft) -> None:
    sections = doc.get("sections")
    if not isinstance(sections, CommentedSeq) or not sections:
        reader.problem(doc, "catalog", "'sections' must be a non-empty list", "sections")
        return
    for index in range(len(sections)):
        _section(reader, sections, index, draft)


def _distinct_values(reader: YamlReader, doc: CommentedMap, draft: _CatalogDraft) -> list[str]:
    """The catalog's values, each once; a group that is also a product, and a value listed twice, reported."""
    for group in draft.groups:
        if group in draft.products:
            text = f"group '{group}' is also a product: {group}.X cannot be read both ways"
            reader.problem(doc, "catalog", text, "sections")
    seen: set[str] = set()
    values: list[str] = []
    for value, (node, key) in zip(draft.values, draft.where, strict=True):
        if value in seen:
            reader.problem(node, "catalog", f"catalog value '{value}' is listed twice", key)
        else:
            values.append(value)
        seen.add(value)
    return values


def load_catalog(data: bytes | None, shown: str) -> tuple[Catalog | None, list[Problem]]:
    """Read catalog.yaml into a Catalog, with every problem found. The catalog comes back whenever every value
    could be read, mistakes of form and repeats included (each value once), so lint can check the rest of
    rules/ against it; only a catalog without problems may serve."""
    reader = YamlReader(data, shown)
    doc = reader.load()
    if not _catalog_document(reader, doc):
        return None, reader.problems
    draft = _CatalogDraft()
    draft.markets = _names(reader, doc, "markets", _market_form, draft)
    _sections(reader, doc, draft)
    values = _distinct_values(reader, doc, draft)
    if not values or not draft.complete:
        return None, reader.problems
    return Catalog(values=tuple(values), markets=draft.markets, products=tuple(draft.products)), reader.problems


@dataclass
class Sources:
    """Everything that could be read of a rules directory, broken or not: the catalog (None when it cannot be
    read at all), the attributes, the rules that parsed (in order), every rule id the rule files declare
    (the broken rules' too), and every problem found while reading."""

    version: str
    catalog: Catalog | None
    attributes: AttributeSet
    rules: tuple[Rule, ...]
    declared_ids: frozenset[str]
    problems: list[Problem]

    def best_effort(self) -> RuleSet | None:
        """The rules that parsed over the catalog as read: what lint's checks of a whole set look at, even
        when some file is broken. Never a set to serve (see load_rule_set)."""
        if self.catalog is None:
            return None
        return RuleSet(version=self.version, catalog=self.catalog, rules=self.rules, attributes=self.attributes)


ATTRIBUTE_NAME = re.compile(r"^\s*-\s+name:\s*[\"']?([a-z][a-z0-9_]*)[\"']?\s*(?:#.*)?$", re.MULTILINE)


def _attribute_names(data: bytes | None) -> set[str]:
    """The attribute names attributes.yaml appears to declare, read from its text (even when it is broken)."""
    try:
        return set(ATTRIBUTE_NAME.findall(data.decode("utf-8"))) if data else set()
    except UnicodeDecodeError:
        return set()


def read_sources(rules_dir: Path, tree: RulesTree) -> Sources:
    """Read every file of the tree, each on its own: a file that does not parse hides nothing in the others."""
    catalog, problems = load_catalog(tree.get(CATALOG_FILE), shown_path(rules_dir, CATALOG_FILE))
    attributes = NO_ATTRIBUTES  # a rules directory without attributes.yaml declares none
    if ATTRIBUTES_FILE in tree:
        reader = YamlReader(tree[ATTRIBUTES_FILE], shown_path(rules_dir, ATTRIBUTES_FILE))
        attributes = read_attributes(reader)
        problems += reader.problems
    declared = {a.name: a for a in attributes}
    for name in _attribute_names(tree.get(ATTRIBUTES_FILE)) - set(declared):
        # declared, but its declaration is broken (reported above): rules may still name it, with any value
        declared[name] = AttributeDeclaration(name=name, description="(unreadable)", pattern=".*")
    seen: set[str] = set()
    validations, found = load_rules(
        tree.get(VALIDATION_FILE),
        shown_path(rules_dir, VALIDATION_FILE),
        policy=False,
        seen=seen,
        attributes=declared,
        catalog=catalog,
    )
    problems += found
    policies: tuple[Rule, ...] = ()
    if POLICY_FILE in tree:
        policies, found = load_rules(
            tree[POLICY_FILE],
            shown_path(rules_dir, POLICY_FILE),
            policy=True,
            seen=seen,
            attributes=declared,
            catalog=catalog,
        )
        problems += found
    return Sources(
        version=tree_version(tree),
        catalog=catalog,
        attributes=attributes,
        rules=validations + policies,
        declared_ids=frozenset(seen),
        problems=problems,
    )


def load_rule_set(rules_dir: Path, tree: RulesTree | None = None) -> RuleSet:
    """Load and validate rules_dir (or the tree already read from it), or raise RuleSetInvalid."""
    rules_dir = Path(rules_dir)
    tree = read_tree(rules_dir) if tree is None else tree
    sources = read_sources(rules_dir, tree)
    rule_set = sources.best_effort()
    if sources.problems or rule_set is None:
        raise RuleSetInvalid(sources.problems)
    return rule_set
