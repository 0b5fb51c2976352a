"""Reading a YAML file of rules/ and locating each mistake in it (file, line, column, rule id)."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any, cast

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError


def shown(value: Any) -> str:
    """A value from a rules file as a message shows it, written as YAML would (never a Python repr): text in single
    quotes (line breaks and tabs as \\n and \\t), true/false, null, numbers, and lists and mappings of those."""
    if isinstance(value, str):
        return "'" + value.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + "'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{shown(k)}: {shown(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    return str(value)


@dataclass(frozen=True)
class Problem:
    """One mistake in rules/, located for a person to fix."""

    path: str
    line: int
    column: int
    rule_id: str
    text: str
    severity: str = "error"  # "error" refuses the set; "warning" is reported and lets it load

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        shown = "" if self.is_error else f"{self.severity}: "
        return f"{self.path}:{self.line}:{self.column}: {self.rule_id}: {shown}{self.text}"


class RuleSetInvalid(Exception):
    """rules/ cannot be loaded; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class YamlReader:
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
            text = self.data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.problem(None, "-", f"file is not UTF-8 text ({exc.reason})")
            return None
        doc, problem = _parse(text, self.shown)
        if problem is not None:
            self.problems.append(problem)
        return doc

    def load_items(self, key: str) -> Any:
        """Like load(), for a file whose top level is `key:` and a list of items (rules, cases): an item with
        a YAML syntax error is reported and left out, and the other items are still read, so one broken item
        hides no other mistake of the file (or of the files checked after it)."""
        before = len(self.problems)
        doc = self.load()
        if doc is not None or len(self.problems) != before + 1 or not self.problems[-1].text.startswith(SYNTAX):
            return doc
        text = cast(bytes, self.data).decode("utf-8")
        lines = text.splitlines(keepends=True)
        starts = _item_starts(lines, key)
        broken = self.problems[-1].line
        for _ in range(len(starts)):
            item = _item_at(starts, broken - 1, len(lines))
            if item is None:
                return None  # the mistake is outside the items: nothing can be read around it
            first, end = item
            lines[first:end] = ["\n"] * (end - first)  # blank lines keep every other line's number
            starts = [s for s in starts if s != first]
            doc, problem = _parse("".join(lines), self.shown)
            if problem is None:
                if isinstance(doc, CommentedMap) and doc.get(key) is None:
                    doc[key] = CommentedSeq()  # every item was broken: the list is there, and empty
                return doc
            if problem.line > broken:  # a second mistake further down: report it too
                self.problems.append(problem)
            broken = problem.line
        return None

    def problem(self, node: Any, rule_id: str, text: str, key: Any = None) -> None:
        line, col = position(node, key)
        self.problems.append(Problem(self.shown, line, col, rule_id, text))


SYNTAX = "YAML syntax: "
_TOP_KEY = re.compile(r"^[^\s#-][^:]*:")


def _parse(text: str, shown: str) -> tuple[Any, Problem | None]:
    """The document, or None and the problem that stopped the parser."""
    try:
        return YAML(typ="rt").load(text), None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        col = mark.column + 1 if mark else 1
        return None, Problem(shown, line, col, "-", f"{SYNTAX}{exc.problem}")
    except Exception as exc:  # ruamel raises a few unmarked errors (e.g. duplicate keys)
        return None, Problem(shown, 1, 1, "-", f"YAML error: {exc}")


def _item_starts(lines: list[str], key: str) -> list[int]:
    """The 0-based line where each item of the block list under `key:` starts (empty: no such list)."""
    header = next((i for i, line in enumerate(lines) if re.match(rf"^{re.escape(key)}:\s*(#.*)?$", line)), None)
    if header is None:
        return []
    starts: list[int] = []
    indent: str | None = None
    for i in range(header + 1, len(lines)):
        line = lines[i]
        if _TOP_KEY.match(line):
            break
        found = re.match(r"^(\s*)-(\s|$)", line)
        if found and (indent is None or found.group(1) == indent):
            indent = found.group(1)
            starts.append(i)
    if starts:
        starts.append(_end_of_list(lines, starts[-1]))
    return starts


def _end_of_list(lines: list[str], last: int) -> int:
    return next((i for i in range(last + 1, len(lines)) if _TOP_KEY.match(lines[i])), len(lines))


def _item_at(starts: list[int], line: int, total: int) -> tuple[int, int] | None:
    """(first, end) lines of the item holding the 0-based line (the last item, for a mistake found at the end
    of the file), or None when the line is outside the items."""
    for first, end in itertools.pairwise(starts):
        if first <= line < end or (end == starts[-1] == total and line >= end):
            return first, end
    return None


def position(node: Any, key: Any = None) -> tuple[int, int]:
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
