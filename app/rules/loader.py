"""Load rules/ into a RuleSet, reporting every mistake with its file, line and column."""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from app.errors import RULE_OUTCOMES
from app.rules.attributes import ATTRIBUTES_FILE, NO_ATTRIBUTES, read_attributes
from app.rules.model import (
    FLAG_FACTS,
    KNOWN_FACTS,
    MESSAGE_PLACEHOLDERS,
    RAW_FIELDS,
    TEXT_FACTS,
    Catalog,
    Condition,
    Rule,
    RuleSet,
)

CATALOG_FILE = "catalog.yaml"
RULES_FILE = "validation.yaml"
GLOB_PATTERN = re.compile(r"^[A-Za-z0-9_.*?-]+$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
RULE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
TESTS = {"is", "matches", "equals", "not_one_of", "equals_fact"}


@dataclass(frozen=True)
class Problem:
    """One mistake in rules/, located for a person to fix."""

    path: str
    line: int
    column: int
    rule_id: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.rule_id}: {self.text}"


class RuleSetInvalid(Exception):
    """rules/ cannot be loaded; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


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
    """Content hash of a rules tree (names and bytes): the rule-set version."""
    digest = hashlib.sha256()
    for name in sorted(tree):
        digest.update(name.encode() + b"\0" + tree[name] + b"\0")
    return digest.hexdigest()[:16]


def rule_set_version(rules_dir: Path) -> str:
    """Content hash of every file under rules_dir (names and bytes)."""
    return tree_version(read_tree(rules_dir))


class _Reader:
    """Collects problems while walking one YAML document."""

    def __init__(self, data: bytes | None, shown: str) -> None:
        self.data = data
        self.shown = shown
        self.problems: list[Problem] = []

    def load(self) -> Any:
        if self.data is None:
            self.problem(None, "-", "file is missing")
            return None
        try:
            return YAML(typ="rt").load(self.data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            self.problem(None, "-", f"file is not UTF-8 text ({exc.reason})")
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 1
            col = mark.column + 1 if mark else 1
            self.problems.append(Problem(self.shown, line, col, "-", f"YAML syntax: {exc.problem}"))
        except Exception as exc:  # ruamel raises a few unmarked errors (e.g. duplicate keys)
            self.problem(None, "-", f"YAML error: {exc}")
        return None

    def problem(self, node: Any, rule_id: str, text: str, key: Any = None) -> None:
        line, col = _position(node, key)
        self.problems.append(Problem(self.shown, line, col, rule_id, text))


def _position(node: Any, key: Any = None) -> tuple[int, int]:
    if isinstance(node, CommentedMap) and key is not None and key in node:
        try:
            line, col = node.lc.key(key)
            return line + 1, col + 1
        except (KeyError, TypeError):
            pass
    if isinstance(node, CommentedSeq) and isinstance(key, int):
        try:
            line, col = node.lc.item(key)
            return line + 1, col + 1
        except (KeyError, TypeError, IndexError):
            pass
    if isinstance(node, CommentedMap | CommentedSeq):
        return node.lc.line + 1, node.lc.col + 1
    return 1, 1


def _names(reader: _Reader, parent: Any, key: str, rule_id: str) -> tuple[str, ...]:
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
    reader = _Reader(data, shown)
    doc = reader.load()
    if doc is None:
        if not reader.problems:
            reader.problem(None, "catalog", "file is empty")
        return None, reader.problems
    if not isinstance(doc, CommentedMap):
        reader.problem(doc, "catalog", "must be a mapping with markets, sections and banned_groups")
        return None, reader.problems
    for key in doc:
        if key not in {"markets", "sections", "banned_groups"}:
            reader.problem(doc, "catalog", f"unknown key '{key}'", key)
    markets = _names(reader, doc, "markets", "catalog")
    values: list[str] = []
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
                for market in markets:
                    values.append(f"{product}.{market}")
                    where.append((section, "products"))
        else:
            reader.problem(section, "catalog", f"a section has either group and names, or products; got {sorted(keys)}")
    banned = doc.get("banned_groups", [])
    banned_names = _names(reader, doc, "banned_groups", "catalog") if banned else ()
    seen: set[str] = set()
    for value, (node, key) in zip(values, where, strict=True):
        if value in seen:
            reader.problem(node, "catalog", f"catalog value '{value}' is listed twice", key)
        seen.add(value)
    for group in banned_names:
        if any(v.startswith(group + ".") for v in values):
            reader.problem(doc, "catalog", f"banned group '{group}' also has catalog values", "banned_groups")
    if reader.problems:
        return None, reader.problems
    return Catalog(values=tuple(values), markets=markets, banned_groups=banned_names), []


def _condition(reader: _Reader, rule: CommentedMap, rule_id: str) -> Condition | None:
    when = rule.get("when")
    if not isinstance(when, CommentedMap):
        reader.problem(rule, rule_id, "'when' must be a mapping like {fact: permission_type, is: missing}", "when")
        return None
    fact = when.get("fact")
    tests = [k for k in when if k != "fact"]
    for key in tests:
        if key not in TESTS:
            reader.problem(when, rule_id, f"unknown test '{key}' (use one of {', '.join(sorted(TESTS))})", key)
            return None
    if fact not in KNOWN_FACTS:
        reader.problem(when, rule_id, f"unknown fact {fact!r} (use one of {', '.join(sorted(KNOWN_FACTS))})", "fact")
        return None
    if len(tests) != 1:
        reader.problem(when, rule_id, "'when' needs exactly one test besides 'fact'")
        return None
    test = tests[0]
    arg = when[test]
    bad = None
    if test == "is":
        if fact not in RAW_FIELDS or arg not in {"missing", "not_text"}:
            bad = "'is' takes missing or not_text, and only for permission_type or permission_status"
    elif test == "matches":
        if fact not in TEXT_FACTS or not isinstance(arg, str) or not GLOB_PATTERN.match(arg):
            bad = "'matches' takes a glob of letters, digits, _ . - * ? over a text fact"
    elif test == "equals":
        if fact in FLAG_FACTS and not isinstance(arg, bool):
            bad = f"'{fact}' is true or false"
        elif fact in TEXT_FACTS and not isinstance(arg, str):
            bad = f"'{fact}' is text; compare it with text"
    elif test == "not_one_of":
        if fact not in TEXT_FACTS or not isinstance(arg, list) or not arg or not all(isinstance(a, str) for a in arg):
            bad = "'not_one_of' takes a non-empty list of text values over a text fact"
        else:
            arg = tuple(arg)
    elif test == "equals_fact" and (fact not in TEXT_FACTS or arg not in TEXT_FACTS or arg == fact):
        bad = f"'equals_fact' compares two different text facts ({', '.join(sorted(TEXT_FACTS))})"
    if bad:
        reader.problem(when, rule_id, bad, test)
        return None
    return Condition(fact=str(fact), test=test, argument=arg)


def load_rules(data: bytes | None, shown: str) -> tuple[tuple[Rule, ...], list[Problem]]:
    """Read validation.yaml into ordered Rules."""
    reader = _Reader(data, shown)
    doc = reader.load()
    if doc is None:
        if not reader.problems:
            reader.problem(None, "rules", "file is empty")
        return (), reader.problems
    if not isinstance(doc, CommentedMap) or not isinstance(doc.get("rules"), CommentedSeq):
        reader.problem(doc, "rules", "must be a mapping with a 'rules' list")
        return (), reader.problems
    for key in doc:
        if key != "rules":
            reader.problem(doc, "rules", f"unknown key '{key}'", key)
    required = ("id", "description", "field", "when", "outcome", "message")
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, item in enumerate(doc["rules"]):
        if not isinstance(item, CommentedMap):
            reader.problem(doc["rules"], "rules", "each rule is a mapping", i)
            continue
        rule_id = item.get("id")
        shown_id = rule_id if isinstance(rule_id, str) else f"rules[{i}]"
        before = len(reader.problems)
        for key in item:
            if key not in required:
                reader.problem(item, shown_id, f"unknown key '{key}'", key)
        for key in required:
            if key not in item:
                reader.problem(item, shown_id, f"missing key '{key}'")
        if not isinstance(rule_id, str) or not RULE_ID_PATTERN.match(rule_id):
            reader.problem(item, shown_id, "'id' must be lower-case letters, digits and dashes", "id")
        elif rule_id == "pass":
            reader.problem(item, shown_id, "'pass' is reserved for changes no rule rejects", "id")
        elif rule_id in seen:
            reader.problem(item, shown_id, f"duplicate rule id '{rule_id}'", "id")
        seen.add(str(rule_id))
        for key in ("description", "message"):
            if key in item and (not isinstance(item[key], str) or not item[key].strip()):
                reader.problem(item, shown_id, f"'{key}' must be non-empty text", key)
        if "field" in item and item["field"] not in RAW_FIELDS:
            reader.problem(item, shown_id, "'field' is permission_type or permission_status", "field")
        if "outcome" in item and item["outcome"] not in RULE_OUTCOMES:
            reader.problem(
                item,
                shown_id,
                f"unknown outcome {item['outcome']!r} (use one of {', '.join(sorted(RULE_OUTCOMES))})",
                "outcome",
            )
        if isinstance(item.get("message"), str):
            try:
                names = {f for _, f, _, _ in string.Formatter().parse(item["message"]) if f is not None}
            except ValueError as exc:
                reader.problem(item, shown_id, f"message template is malformed: {exc}", "message")
                names = set()
            for name in sorted(names - MESSAGE_PLACEHOLDERS):
                reader.problem(item, shown_id, f"message names unknown placeholder {{{name}}}", "message")
        condition = _condition(reader, item, shown_id) if "when" in item else None
        if len(reader.problems) == before and condition is not None:
            rules.append(
                Rule(
                    id=rule_id,
                    description=item["description"].strip(),
                    field=item["field"],
                    condition=condition,
                    outcome=item["outcome"],
                    message=item["message"],
                )
            )
    return tuple(rules), reader.problems


def load_rule_set(rules_dir: Path, tree: RulesTree | None = None) -> RuleSet:
    """Load and validate rules_dir (or the tree already read from it), or raise RuleSetInvalid."""
    rules_dir = Path(rules_dir)
    tree = read_tree(rules_dir) if tree is None else tree
    catalog, problems = load_catalog(tree.get(CATALOG_FILE), shown_path(rules_dir, CATALOG_FILE))
    rules, rule_problems = load_rules(tree.get(RULES_FILE), shown_path(rules_dir, RULES_FILE))
    problems += rule_problems
    attributes = NO_ATTRIBUTES  # a rules directory without attributes.yaml declares none
    if ATTRIBUTES_FILE in tree:
        reader = _Reader(tree[ATTRIBUTES_FILE], shown_path(rules_dir, ATTRIBUTES_FILE))
        attributes = read_attributes(reader)
        problems += reader.problems
    if problems or catalog is None:
        raise RuleSetInvalid(problems)
    return RuleSet(version=tree_version(tree), catalog=catalog, rules=rules, attributes=attributes)
