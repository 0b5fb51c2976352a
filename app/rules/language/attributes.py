"""Account attributes compliance declares in rules/attributes.yaml: each a name, a description, and either the
list of values it allows or a pattern its values match in full.

The service refuses an attribute the file does not declare and a value its declaration does not allow, for
every way an account arrives (the upsert API, `permctl accounts import`, `permctl load`). A rules directory
without attributes.yaml declares none.

An attribute on its way out is declared `deprecated: true` (with an optional `note` for brokers) before its
declaration is removed: the service still accepts it from brokers, with any value, but never stores it (the
answer warns), and rules may not read it. See `AttributeSet.stored_problem` for what a stored value may hold.

This module imports nothing from the rest of app.rules but `shown` (how a message writes a value): the loader
hands it a reader that knows where each YAML node is (file, line, column) and collects the problems.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from app.rules.language.source import shown

ATTRIBUTES_FILE = "attributes.yaml"
NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_VALUE = 64  # characters, as the API accepts them
KEYS = ("name", "description", "values", "pattern", "deprecated", "note")


@dataclass(frozen=True)
class AttributeDeclaration:
    """One declared attribute: the values it allows (a list, or a full-match pattern)."""

    name: str
    description: str
    values: tuple[str, ...] | None = None
    pattern: str | None = None
    deprecated: bool = False  # accepted from brokers, never stored, never read by rules: on its way out
    note: str | None = None  # what brokers are told of a deprecated attribute (when it goes, what replaces it)
    _compiled: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if (self.values is None) == (self.pattern is None):
            raise ValueError(f"attribute {self.name}: exactly one of values and pattern")
        if self.pattern is not None:
            object.__setattr__(self, "_compiled", re.compile(self.pattern))

    def allows(self, value: str) -> bool:
        """Whether value is one of the listed values, or matches the pattern in full."""
        if self._compiled is not None:
            return self._compiled.fullmatch(value) is not None
        return self.values is not None and value in self.values

    @property
    def allowed(self) -> str:
        """What the declaration allows, as a message says it."""
        if self.values is not None:
            return "one of " + ", ".join(self.values)
        return f"text matching {self.pattern}"


class StoredRefusal(StrEnum):
    """Why a stored attribute is one the declarations would not store, as reports name it."""

    UNDECLARED = "name not declared"
    VALUE_REFUSED = "value not allowed"
    DEPRECATED = "deprecated"


@dataclass(frozen=True)
class AttributeSet:
    """Every declared attribute, in file order."""

    declarations: tuple[AttributeDeclaration, ...] = ()

    def __iter__(self) -> Iterator[AttributeDeclaration]:
        return iter(self.declarations)

    def __len__(self) -> int:
        return len(self.declarations)

    def __contains__(self, name: object) -> bool:
        return any(d.name == name for d in self.declarations)

    def get(self, name: str) -> AttributeDeclaration | None:
        """The declaration of name, if any."""
        return next((d for d in self.declarations if d.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        """The declared names, in file order."""
        return tuple(d.name for d in self.declarations)

    @property
    def deprecated(self) -> tuple[AttributeDeclaration, ...]:
        """The declarations on their way out, in file order."""
        return tuple(d for d in self.declarations if d.deprecated)

    def is_deprecated(self, name: str) -> bool:
        """Whether name is declared deprecated (accepted from brokers, never stored)."""
        declaration = self.get(name)
        return declaration is not None and declaration.deprecated

    def problem(self, name: str, value: str) -> str | None:
        """Why a broker's `name: value` is refused (an undeclared name, a value its declaration does not allow),
        or None. A deprecated attribute is accepted with any value: it is dropped, not stored."""
        declaration = self.get(name)
        if declaration is None:
            return f"not a declared attribute (declared: {', '.join(self.names) or 'none'})"
        if not declaration.deprecated and not declaration.allows(value):
            return f"not allowed (allowed: {declaration.allowed})"
        return None

    def stored_problem(self, name: str, value: str) -> StoredRefusal | None:
        """Why a stored `name: value` is one these declarations would not store, or None: its name is not
        declared, its value is not allowed, or the attribute is deprecated."""
        declaration = self.get(name)
        if declaration is None:
            return StoredRefusal.UNDECLARED
        if declaration.deprecated:
            return StoredRefusal.DEPRECATED
        if not declaration.allows(value):
            return StoredRefusal.VALUE_REFUSED
        return None

    def dropped_note(self, name: str) -> str:
        """What a broker is told of a deprecated attribute it sent: it was not stored, and the note if any."""
        declaration = self.get(name)
        note = f": {declaration.note}" if declaration is not None and declaration.note else ""
        return f"attribute '{name}' is deprecated and was not stored{note}"


def deprecated_read(name: str) -> str:
    """The lint error of a rule that reads a deprecated attribute (a test, or a message placeholder)."""
    return (
        f"attribute '{name}' is deprecated in attributes.yaml: rules may not read it "
        "(accounts no longer store it; remove this use)"
    )


NO_ATTRIBUTES = AttributeSet()


class Reader(Protocol):
    """What the rules loader gives: the parsed document, and a way to report a problem at a node."""

    problems: list[Any]

    def load(self) -> Any: ...

    def load_items(self, key: str) -> Any: ...

    def problem(self, node: Any, rule_id: str, text: str, key: Any = None) -> None: ...


def _text(reader: Reader, item: CommentedMap, key: str, where: str, meant: set[str]) -> str | None:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        if key not in meant:  # a misspelt key already said "did you mean": one mistake, one line
            reader.problem(item, where, f"'{key}' must be non-empty text", key if key in item else None)
        return None
    return value.strip()


def _unknown_keys(reader: Reader, item: CommentedMap, where: str) -> set[str]:
    """Report each unknown key; the known keys the misspelt ones were meant to be."""
    meant = set()
    for key in item:
        if key in KEYS:
            continue
        close = difflib.get_close_matches(str(key), KEYS, n=1)
        if close and close[0] not in item:
            meant.add(close[0])
            reader.problem(item, where, f"unknown key '{key}' (did you mean '{close[0]}'?)", key)
        else:
            reader.problem(
                item, where, f"unknown key '{key}' (use name, description, values or pattern, deprecated, note)", key
            )
    return meant


def _values(reader: Reader, item: CommentedMap, where: str) -> tuple[str, ...] | None:
    listed = item["values"]
    if not isinstance(listed, CommentedSeq) or not listed:
        reader.problem(item, where, "'values' must be a non-empty list of text values", "values")
        return None
    values: list[str] = []
    for i, value in enumerate(listed):
        if not isinstance(value, str) or not value:
            reader.problem(listed, where, f"value {shown(value)} must be non-empty text (quote it)", i)
        elif len(value) > MAX_VALUE:
            reader.problem(listed, where, f"value '{value[:20]}...' is longer than {MAX_VALUE} characters", i)
        elif value in values:
            reader.problem(listed, where, f"value '{value}' is listed twice", i)
        else:
            values.append(value)
    return tuple(values)


def _pattern(reader: Reader, item: CommentedMap, where: str) -> str | None:
    pattern = item["pattern"]
    if not isinstance(pattern, str) or not pattern:
        reader.problem(item, where, "'pattern' must be a non-empty regular expression", "pattern")
        return None
    try:
        re.compile(pattern)
    except re.error as exc:
        reader.problem(item, where, f"'pattern' is not a valid regular expression: {exc}", "pattern")
        return None
    return pattern


def _deprecation(reader: Reader, item: CommentedMap, where: str, meant: set[str]) -> tuple[bool, str | None]:
    """`deprecated: true` and its optional `note`; a note without `deprecated: true` is a mistake."""
    deprecated = item.get("deprecated", False)
    if not isinstance(deprecated, bool):
        reader.problem(item, where, "'deprecated' is true or false", "deprecated")
        return False, None  # one mistake, one line: its note is not also "without deprecated: true"
    note = item.get("note")
    if "note" in item and (not isinstance(note, str) or not note.strip()):
        reader.problem(item, where, "'note' must be non-empty text", "note")
        return deprecated, None
    if note is not None and not deprecated and "deprecated" not in meant:
        text = "'note' tells brokers why an attribute is deprecated: add 'deprecated: true'"
        reader.problem(item, where, text, "note")
    return deprecated, note.strip() if isinstance(note, str) else None


def _name(reader: Reader, item: CommentedMap, where: str, meant: set[str], seen: set[str]) -> None:
    name = item.get("name")
    if "name" in meant:
        return
    if not isinstance(name, str) or not NAME.fullmatch(name):
        text = "'name' must be lower-case letters, digits and _, starting with a letter (at most 64)"
        reader.problem(item, where, text, "name" if "name" in item else None)
    elif name in seen:
        reader.problem(item, where, f"attribute '{name}' is declared twice", "name")
    seen.add(str(name))


def _declaration(reader: Reader, item: CommentedMap, i: int, seen: set[str]) -> AttributeDeclaration | None:
    name = item.get("name")
    where = name if isinstance(name, str) and name else f"attributes[{i}]"
    before = len(reader.problems)
    meant = _unknown_keys(reader, item, where)
    _name(reader, item, where, meant, seen)
    description = _text(reader, item, "description", where, meant)
    values = pattern = None
    if "values" in item and "pattern" not in item:
        values = _values(reader, item, where)
    elif "pattern" in item and "values" not in item:
        pattern = _pattern(reader, item, where)
    elif not meant & {"values", "pattern"}:
        reader.problem(item, where, "an attribute has exactly one of 'values' (a list) or 'pattern' (a regex)")
    deprecated, note = _deprecation(reader, item, where, meant)
    if len(reader.problems) > before or description is None or (values is None and pattern is None):
        return None
    return AttributeDeclaration(
        name=str(name),
        description=description,
        values=values,
        pattern=pattern,
        deprecated=deprecated,
        note=note,
    )


def read_attributes(reader: Reader) -> AttributeSet:
    """The declarations of attributes.yaml; every mistake is reported to the reader with its place."""
    doc = reader.load_items("attributes")
    if doc is None:
        if not reader.problems:
            reader.problem(None, "attributes", "file is empty (write 'attributes: []' to declare none)")
        return NO_ATTRIBUTES
    if not isinstance(doc, CommentedMap) or not isinstance(doc.get("attributes"), CommentedSeq):
        reader.problem(doc, "attributes", "must be a mapping with an 'attributes' list")
        return NO_ATTRIBUTES
    for key in doc:
        if key != "attributes":
            reader.problem(doc, "attributes", f"unknown key '{key}'", key)
    declarations = []
    seen: set[str] = set()
    for i, item in enumerate(doc["attributes"]):
        if not isinstance(item, CommentedMap):
            reader.problem(doc["attributes"], "attributes", "each attribute is a mapping (name, description, ...)", i)
            continue
        declaration = _declaration(reader, item, i, seen)
        if declaration is not None:
            declarations.append(declaration)
    return AttributeSet(tuple(declarations))
