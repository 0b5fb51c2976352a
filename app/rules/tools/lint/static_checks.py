"""Lint checks of a whole rule set, beyond what reading one rule can tell: placeholders that mean nothing for
the changes a rule can hold for, windows that have expired, and globs whose attribute's pattern the glob
check cannot read (values a rule names are checked against their declarations as the rule is read:
app/rules/language/conditions.py and allowed_values.py).

Which changes a rule can hold for is worked out over the finite catalog: for each catalog value (and for a
change whose type is missing or not text), a rule is *reached* unless an earlier deny validation certainly
holds for it (type-required stops a missing type, type-in-catalog every unknown one, before the policies),
and *can hold* when some alternative of its condition (app/rules/language/clauses.py) has no test that is certainly
false. Facts the type does not decide (status, account, tenant, other permissions) may be anything: the
reading errs towards "can hold". Rules one policy shadows for another are the whole-set analysis' concern.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase

from app.rules.language import model
from app.rules.language.allowed_values import is_glob, readable
from app.rules.language.clauses import Atom, Literal, atoms, clauses, count_may_apply, rule_clauses
from app.rules.language.model import (
    PART_FIELDS,
    AccountTest,
    ChangeTest,
    Condition,
    CountTest,
    Match,
    PermissionTest,
    Rule,
    RuleSet,
)
from app.rules.language.source import Problem, shown

# The two types of a change that are not text (app/rules/language/model.py KINDS), as lint names them.
MISSING, NOT_TEXT = "(no permission_type)", f"(a permission_type that is {model.NOT_TEXT.replace('_', ' ')})"
SHOWN = 4  # types named in a problem before "and N more"
Truth = bool | None  # None: the type does not decide it


@dataclass(frozen=True)
class Scene:
    """What is fixed while asking whether a rule can hold: the change's type (a catalog value, MISSING or
    NOT_TEXT) and, optionally, facts a placeholder depends on."""

    type: str
    parts: dict[str, str] = field(default_factory=dict, hash=False)
    status_missing: bool = False
    not_named_earlier: bool = False
    absent_attribute: str | None = None


def _matches(value: str, match: Match) -> Truth:
    if match.kind is not None:
        return match.kind == "text"
    if match.same_as is not None:
        return None
    return any(value == v or (isinstance(v, str) and fnmatchcase(value, v)) for v in match.values)


def _type(scene: Scene, match: Match) -> Truth:
    """A test of permission_type: its kind, or its value (a type not sent as text matches no value)."""
    typed = scene.type not in (MISSING, NOT_TEXT)
    if match.kind is not None:
        kind = model.TEXT if typed else (model.MISSING if scene.type == MISSING else model.NOT_TEXT)
        return match.kind == kind
    return _matches(scene.type, match) if typed else False


def _status(scene: Scene, match: Match) -> Truth:
    """A test of permission_status: decided only when the scene has none."""
    if not scene.status_missing:
        return None
    return match.kind == "missing" if match.kind is not None else False


def _typed_fact(scene: Scene, test: ChangeTest) -> Truth:
    """A part of the type, current_status or a catalog flag, for a type sent as text."""
    if test.field in PART_FIELDS:
        part = scene.parts.get(test.field)
        return False if part is None else _matches(part, test.match)
    if test.field == "in_catalog":
        return test.match.values == (True,)
    return None


def _change(scene: Scene, test: ChangeTest) -> Truth:
    typed = scene.type not in (MISSING, NOT_TEXT)
    if test.field == "named_earlier" and (scene.not_named_earlier or not typed):
        return test.match.values == (False,)
    if test.field == "permission_type":
        return _type(scene, test.match)
    if test.field == "permission_status":
        return _status(scene, test.match)
    # the parts, current_status and the catalog flags exist only for a type sent as text
    return _typed_fact(scene, test) if typed else False


def _atom(scene: Scene, atom: Atom) -> Truth:
    if isinstance(atom, ChangeTest):
        return _change(scene, atom)
    if isinstance(atom, CountTest):  # it holds only for a change that opens a type its pattern names
        kind = model.TEXT if scene.type not in (MISSING, NOT_TEXT) else model.MISSING
        return None if count_may_apply(atom, {"permission_type__kind": kind, **scene.parts}) else False
    if isinstance(atom, AccountTest) and atom.field == scene.absent_attribute:
        return False  # an attribute the account lacks matches nothing
    return None


def _bound(scene: Scene, atom: Atom) -> bool:
    """Whether a permission test's placeholders bind for the scene's type (else its alternative never holds)."""
    if not isinstance(atom, PermissionTest):
        return True
    return all(spec[1:-1] in scene.parts for spec in (atom.head, atom.tail) if spec.startswith("{"))


def _literal(scene: Scene, literal: Literal) -> Truth:
    negated, atom = literal
    truth = _atom(scene, atom)
    return None if truth is None else truth != negated


def can_hold(rule: Rule, scene: Scene, *, binding: bool = True) -> bool:
    """Whether some alternative of the rule's condition has no test certainly false in the scene."""
    return any(
        all(_literal(scene, lit) is not False for lit in clause)
        and (not binding or all(_bound(scene, atom) for _, atom in clause))
        for clause in clauses(rule.condition)
    )


def certainly_holds(rule: Rule, scene: Scene) -> bool:
    """Whether the rule holds for the scene whatever the facts it does not fix (windows are never certain)."""
    if rule.window is not None:
        return False
    alternatives = clauses(rule.condition)
    return any(all(_literal(scene, lit) is True and _bound(scene, lit[1]) for lit in clause) for clause in alternatives)


def _scenes(rule_set: RuleSet) -> list[Scene]:
    catalog = rule_set.catalog
    return [Scene(MISSING), Scene(NOT_TEXT)] + [Scene(v, catalog.parts(v)) for v in catalog.values]


def _reached(rule_set: RuleSet, index: int, scene: Scene) -> bool:
    """Whether a change of the scene can get past the validations before rules[index]. Earlier policies are
    left out on purpose: a placeholder is judged by what reaches the policies, whatever their order (a rule
    that an earlier policy shadows is a problem of its own, reported as such)."""
    earlier = (r for r in rule_set.rules[:index] if not r.is_policy)
    return not any(r.enforcement == "deny" and certainly_holds(r, scene) for r in earlier)


def _listed(types: list[str]) -> str:
    shown = ", ".join(types[:SHOWN])
    return shown + (f" and {len(types) - SHOWN} more" if len(types) > SHOWN else "")


def _placeholders(message: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(message) if name}
    except ValueError:
        return set()


def _templates(condition: Condition) -> Iterator[PermissionTest]:
    return (atom for atom in atoms(condition) if isinstance(atom, PermissionTest))


def _unbound(rule_set: RuleSet, index: int, name: str, *, binding: bool) -> list[str]:
    """The types the rule can hold for (and is reached by) that give the placeholder nothing to show."""
    rule = rule_set.rules[index]
    lacking = []
    for scene in _scenes(rule_set):
        if name == "current_status" or name == "earlier_index":
            lacks = scene.type in (MISSING, NOT_TEXT)
        else:
            lacks = name not in scene.parts
        if lacks and _reached(rule_set, index, scene) and can_hold(rule, scene, binding=binding):
            lacking.append(scene.type)
    return lacking


def _problem(rule: Rule, key: str, text: str, severity: str = "error") -> Problem:
    line, col = rule.place(key)
    return Problem(rule.source, line, col, rule.id, text, severity)


def _holds_somewhere(rule_set: RuleSet, index: int, scenes: Iterable[Scene]) -> bool:
    """Whether the rule is reached by, and can hold for, some of the scenes."""
    rule = rule_set.rules[index]
    return any(_reached(rule_set, index, s) and can_hold(rule, s) for s in scenes)


def _part_problems(rule_set: RuleSet, index: int, names: set[str]) -> Iterator[Problem]:
    """Parts of the type, current_status and earlier_index, where the rule can hold without them."""
    for name in sorted(names & {*PART_FIELDS, "current_status", "earlier_index"}):
        lacking = _unbound(rule_set, index, name, binding=True)
        if lacking:
            text = f"{{{name}}} shows nothing for {_listed(lacking)}, which this rule can hold for"
            yield _problem(rule_set.rules[index], "message", text)


def _earlier_index_problems(rule_set: RuleSet, index: int, names: set[str]) -> Iterator[Problem]:
    if "earlier_index" not in names:
        return
    scenes = (Scene(s.type, s.parts, not_named_earlier=True) for s in _scenes(rule_set))
    if _holds_somewhere(rule_set, index, scenes):
        text = "{earlier_index} is the change's own index unless the rule tests named_earlier: true"
        yield _problem(rule_set.rules[index], "message", text)


def _raw_field_problems(rule_set: RuleSet, index: int, names: set[str]) -> Iterator[Problem]:
    """{permission_status} and {permission_type}, where the rule can hold for a change without them."""
    if "permission_status" in names:
        scenes = (Scene(s.type, s.parts, status_missing=True) for s in _scenes(rule_set))
        if _holds_somewhere(rule_set, index, scenes):
            yield _problem(
                rule_set.rules[index], "message", "{permission_status} shows nothing for a change without one"
            )
    if "permission_type" in names and _holds_somewhere(rule_set, index, [Scene(MISSING)]):
        yield _problem(rule_set.rules[index], "message", "{permission_type} shows nothing for a change without one")


def _attribute_problems(rule_set: RuleSet, index: int, names: set[str]) -> Iterator[Problem]:
    for name in sorted(names & set(rule_set.attributes.names)):
        scenes = (Scene(s.type, s.parts, absent_attribute=name) for s in _scenes(rule_set))
        if _holds_somewhere(rule_set, index, scenes):
            text = f"{{{name}}} shows nothing for an account without {name}: test it (e.g. account: {{{name}: '*'}})"
            yield _problem(rule_set.rules[index], "message", text, "warning")


def _message_problems(rule_set: RuleSet, index: int) -> Iterator[Problem]:
    names = _placeholders(rule_set.rules[index].message)
    yield from _part_problems(rule_set, index, names)
    yield from _earlier_index_problems(rule_set, index, names)
    yield from _raw_field_problems(rule_set, index, names)
    yield from _attribute_problems(rule_set, index, names)


def _template_problems(rule_set: RuleSet, index: int) -> Iterator[Problem]:
    rule = rule_set.rules[index]
    for test in _templates(rule.condition):
        for spec in (test.head, test.tail):
            if not spec.startswith("{"):
                continue
            lacking = _unbound(rule_set, index, spec[1:-1], binding=False)
            if lacking:
                text = (
                    f"'permission' {shown(test.template)}: {spec} cannot be bound for {_listed(lacking)}, so the rule "
                    f"never holds for them; say which changes it is about (e.g. change: {{product: ...}})"
                )
                yield Problem(rule.source, *test.at, rule.id, text)


def placeholder_problems(rule_set: RuleSet) -> list[Problem]:
    """Placeholders (in messages and permission templates) that mean nothing for changes the rule holds for."""
    problems: list[Problem] = []
    for index in range(len(rule_set.rules)):
        problems += _template_problems(rule_set, index)
        problems += _message_problems(rule_set, index)
    return problems


def expired_windows(rule_set: RuleSet, now: datetime) -> list[Problem]:
    """A warning for each rule whose window ended before now: it never applies again."""
    problems = []
    for rule in rule_set.rules:
        end = rule.window.end if rule.window is not None else None
        if end is not None and end <= now:
            when = end.strftime("%Y-%m-%d %H:%M UTC")
            text = f"expired on {when}; it never applies again (remove it, or keep it for the record)"
            problems.append(_problem(rule, "until", text, "warning"))
    return problems


def unchecked_globs(rule_set: RuleSet) -> list[Problem]:
    """A note for each glob tested on an attribute whose pattern the glob check cannot read (see
    app/rules/language/allowed_values.py): whether the glob can match a value is not known."""
    problems = []
    for rule in rule_set.rules:
        for atom in (a for a in atoms(rule.condition) if isinstance(a, AccountTest)):
            declaration = rule_set.attributes.get(atom.field)
            if declaration is None or declaration.pattern is None or readable(declaration.pattern):
                continue
            for glob in (v for v in atom.match.values if isinstance(v, str) and is_glob(v)):
                text = (
                    f"'{atom.field}' glob '{glob}' is not checked against {declaration.pattern}: the glob check "
                    "cannot read that pattern (its literal values are checked)"
                )
                problems.append(_problem(rule, "when", text, "warning"))
    return problems


def negated_counts(rule_set: RuleSet) -> list[Problem]:
    """A count under `not` holds for every change that opens nothing it names, a close included (its count is
    0): a deny rule with one refuses closes by a count, which SPEC §7b forbids, unless the same alternative
    only holds for opening changes (`change: {permission_status: open}`)."""
    problems = []
    for rule in (r for r in rule_set.rules if r.enforcement == "deny"):
        for clause in rule_clauses(rule):
            if ("permission_status", frozenset({"open"})) in clause.guards:
                continue
            for count in (t.atom for t in clause.tests if t.negated and isinstance(t.atom, CountTest)):
                text = (
                    f"'count' {count.template} under 'not' holds for a close too (its count is 0), so this rule "
                    "would refuse closes by a count: test change: {permission_status: open} beside it"
                )
                problems.append(Problem(rule.source, *count.at, rule.id, text))
    return problems


def rule_set_problems(rule_set: RuleSet, *, now: datetime) -> list[Problem]:
    """Every problem of a whole rule set (as read, even from broken files) that no single rule shows."""
    return (
        placeholder_problems(rule_set)
        + expired_windows(rule_set, now)
        + unchecked_globs(rule_set)
        + negated_counts(rule_set)
    )
