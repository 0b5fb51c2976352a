"""Reading a YAML file of rules/ and locating each mistake in it (file, line, column, rule id)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError


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
        line, col = position(node, key)
        self.problems.append(Problem(self.shown, line, col, rule_id, text))


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
