"""Whether a value a rule or a case names can ever be an account's, by its declaration: the account status
(active, deregistered) or an attribute declared in attributes.yaml (a list of values, or a pattern matched in
full).

A literal value is checked as the service checks what brokers send (AttributeDeclaration.allows: the list, or
re.fullmatch). A glob (`*` any text, `?` one character, as rules/README.md defines them) can match a value
when some text both the glob and the declaration allow exists: for a list, a listed value the glob matches;
for a pattern, a non-empty intersection of the glob's language and the pattern's. greenery reads the pattern
(its syntax and character classes) into an automaton, and the intersection is searched pair by pair (glob
position, pattern state): never a determinised automaton, whose size can grow exponentially with the pattern
(greenery takes seconds on `\\w{1,64}`).

greenery reads a subset of Python's regular expressions, and reads a few things differently (`^` and `$` as
characters): a pattern it cannot read, or reads otherwise than Python does (each step of its automaton is
tried on an example text with re.fullmatch), is `unreadable`: its globs are not checked (lint says so), its
literal values still are.
"""

from __future__ import annotations

import re
import string
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

from greenery import Charclass, Pattern, parse
from greenery.rxelems import Conc, Mult

from app.rules.language.attributes import AttributeDeclaration

MAX_STATES = 20_000  # a pattern whose automaton would be larger is not read (its globs are not checked)
CANDIDATES = string.ascii_letters + string.digits + "_-.@ é"  # example characters of a negated class


def is_glob(value: str) -> bool:
    """Whether a text value is a glob rather than an exact value."""
    return "*" in value or "?" in value


@dataclass
class _Automaton:
    """A nondeterministic automaton: from each state, steps on a character class or on nothing (`None`)."""

    steps: list[list[tuple[Charclass | None, int]]] = field(default_factory=list)
    final: int = 0

    def state(self) -> int:
        if len(self.steps) >= MAX_STATES:
            raise _TooLarge
        self.steps.append([])
        return len(self.steps) - 1

    def step(self, source: int, on: Charclass | None, target: int) -> None:
        self.steps[source].append((on, target))


class _TooLarge(Exception):
    """The pattern's automaton would have more than MAX_STATES states."""


def _build(automaton: _Automaton, node: Any, start: int) -> int:
    """The states reading node from start; returns the state it ends in."""
    if isinstance(node, Charclass):
        end = automaton.state()
        automaton.step(start, node, end)
        return end
    if isinstance(node, Pattern):
        end = automaton.state()
        for conc in node.concs:
            automaton.step(_build(automaton, conc, start), None, end)
        return end
    if isinstance(node, Conc):
        for mult in node.mults:
            start = _build(automaton, mult, start)
        return start
    if isinstance(node, Mult):
        return _repeat(automaton, node, start)
    raise TypeError(f"unexpected part of a pattern: {type(node).__name__}")


def _repeat(automaton: _Automaton, mult: Mult, start: int) -> int:
    low, high = mult.multiplier.min.v, mult.multiplier.max.v
    for _ in range(low):
        start = _build(automaton, mult.multiplicand, start)
    if high is None:  # any number more: a loop back to where it starts
        loop = automaton.state()
        automaton.step(start, None, loop)
        automaton.step(_build(automaton, mult.multiplicand, loop), None, loop)
        return loop
    for _ in range(high - low):  # each optional
        end = _build(automaton, mult.multiplicand, start)
        automaton.step(start, None, end)
        start = end
    return start


def _outside_classes(pattern: str) -> Iterator[tuple[int, str]]:
    """Each character of the pattern outside [...] and not escaped, with its index."""
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]" or pattern[i - 1] == "["
        elif char == "[":
            in_class = True
        else:
            yield i, char
        i += 1


def _without_anchors(pattern: str) -> str | None:
    """The pattern without a leading ^ and a trailing $ (no-ops for a match in full), or None when it has
    other anchors (which greenery reads as characters)."""
    anchors = [i for i, char in _outside_classes(pattern) if char in "^$"]
    start = 1 if 0 in anchors else 0
    end = len(pattern) - 1 if len(pattern) - 1 in anchors and pattern[-1] == "$" else len(pattern)
    if any(start <= i < end for i in anchors):
        return None
    return pattern[start:end]


def _example_char(on: Charclass) -> str | None:
    if not on.negated:
        return chr(on.ord_ranges[0][0]) if on.ord_ranges else None
    return next((c for c in CANDIDATES if on.accepts(c)), None)


def _shortest(automaton: _Automaton, start: int, *, forward: bool) -> dict[int, str]:
    """A shortest text from start to each state (forward), or from each state to the final one (backward)."""
    edges: list[list[tuple[Charclass | None, int]]] = automaton.steps
    if not forward:
        edges = [[] for _ in automaton.steps]
        for source, steps in enumerate(automaton.steps):
            for on, target in steps:
                edges[target].append((on, source))
    found = {start: ""}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        for on, target in edges[state]:
            char = "" if on is None else _example_char(on)
            if target not in found and char is not None:
                found[target] = found[state] + char if forward else char + found[state]
                queue.append(target)
    return found


def _read_as_python(automaton: _Automaton, compiled: re.Pattern[str]) -> bool:
    """Whether every step of the automaton, tried on an example text through it, matches in Python too."""
    to = _shortest(automaton, 0, forward=True)
    rest = _shortest(automaton, automaton.final, forward=False)
    for source, steps in enumerate(automaton.steps):
        for on, target in steps:
            char = "" if on is None else _example_char(on)
            tried = source in to and target in rest and char is not None
            if tried and compiled.fullmatch(f"{to[source]}{char}{rest[target]}") is None:
                return False
    return True


@lru_cache(maxsize=64)
def _automaton(pattern: str) -> _Automaton | None:
    """The pattern as greenery reads it, or None when it cannot, or reads it otherwise than Python."""
    bare = _without_anchors(pattern)
    if bare is None:
        return None
    try:
        parsed = parse(bare)
        automaton = _Automaton()
        automaton.final = _build(automaton, parsed, automaton.state())
    except Exception:  # greenery raises its own NoMatch, ValueError, ... for syntax it does not read
        return None
    return automaton if _read_as_python(automaton, re.compile(pattern)) else None


def readable(pattern: str) -> bool:
    """Whether globs can be checked against the pattern (see the module's docstring)."""
    return _automaton(pattern) is not None


def _reads(token: str, on: Charclass) -> bool:
    """Whether a character of the glob (a wildcard or itself) can be one the class takes."""
    return not on.empty() if token in "*?" else on.accepts(token)


def _glob_example(glob: str, automaton: _Automaton) -> str | None:
    """A shortest text that matches both the glob and the automaton, or None when none does: a search over
    (glob position, state), each pair reached with the text read so far."""
    seen = {(0, 0): ""}
    queue = deque(seen)
    while queue:
        at, state = queue.popleft()
        text = seen[(at, state)]
        if at == len(glob) and state == automaton.final:
            return text
        token = glob[at] if at < len(glob) else None
        following = [((at + 1, state), text)] if token == "*" else []  # * matching nothing more
        for on, target in automaton.steps[state]:
            if on is None:
                following.append(((at, target), text))
            elif token is not None and _reads(token, on):
                char = _example_char(on) if token in "*?" else token
                if char is not None:
                    following.append(((at if token == "*" else at + 1, target), text + char))
        for pair, read in following:
            if pair not in seen:
                seen[pair] = read
                queue.append(pair)
    return None


def _quoted(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def declared_as(declaration: AttributeDeclaration | Sequence[str]) -> str:
    """What a declaration allows, as a message ends: "values match [A-Z]{2}", "values are 'cash', 'margin'"."""
    if isinstance(declaration, AttributeDeclaration):
        if declaration.pattern is not None:
            return f"values match {declaration.pattern}"
        return f"values are {_quoted(declaration.values or ())}"
    return f"values are {_quoted(declaration)}"


def can_be(declaration: AttributeDeclaration | Sequence[str], value: str) -> bool | None:
    """Whether the value (a literal or a glob) names a value the declaration allows; None when it cannot be
    told (a glob against a pattern greenery cannot read)."""
    if not isinstance(declaration, AttributeDeclaration):
        declaration = AttributeDeclaration("", "", values=tuple(declaration))
    if not is_glob(value):
        return declaration.allows(value)
    if declaration.values is not None:
        return any(fnmatchcase(v, value) for v in declaration.values)
    automaton = _automaton(declaration.pattern or "")
    return None if automaton is None else _glob_example(value, automaton) is not None


def example_of(declaration: AttributeDeclaration, value: str) -> str | None:
    """A value the declaration allows that the value (a literal or a glob) names, or None when there is none
    (or, for a glob against a pattern greenery cannot read, none can be found)."""
    if not is_glob(value):
        return value if declaration.allows(value) else None
    if declaration.values is not None:
        return next((v for v in declaration.values if fnmatchcase(v, value)), None)
    automaton = _automaton(declaration.pattern or "")
    return None if automaton is None else _glob_example(value, automaton)


def never_is(name: str, declaration: AttributeDeclaration | Sequence[str], value: str) -> str | None:
    """Why the account field `name` is never `value`, naming its declaration, or None when it can be (or
    when that cannot be told)."""
    if can_be(declaration, value) is False:
        return f"'{name}' is never '{value}': {declared_as(declaration)}"
    return None
