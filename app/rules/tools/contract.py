"""The contract, checked exhaustively (SPEC §7b): a rule set's validation stage must decide every input of its
input space exactly as the validations the package ships (app/defaults/rules/validation.yaml) do.

Both stages are judged over the given catalog and attribute declarations, without any policy, and compared the
way `rules diff` compares two sets (app/rules/tools/diff.py): any input whose deciding rule, code or message
differs is a breach. Each breach names the clause (a shipped validation's id, or the given one that decides
instead), how it was edited (dropped, narrowed, widened, reordered, reworded or recoded) and one input that
shows it. Lint reports breaches as errors, so `rules test`, reload and the server's start-up refuse the set.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from app.defaults import shipped_rules_dir
from app.rules.language.loader import CATALOG_FILE, VALIDATION_FILE, load_rule_set, shown_path
from app.rules.language.model import Catalog, Rule, RuleSet
from app.rules.language.source import Problem
from app.rules.tools.diff import PASS, Group, RuleSetDiff, diff, example
from app.rules.tools.input_space.space import OTHER_TENANT, Point, SpaceTooLarge

CLAUSE_ID = "contract"  # the rule id of a problem that names no clause (the check could not run)
_CHECKS_KEPT = 16
# Where an edit of each kind is written in the clause's rule (else where the rule starts).
KEY_EDITED = {"narrowed": "when", "widened": "when", "reworded": "message", "recoded": "outcome"}


@dataclass(frozen=True)
class Breach:
    """One clause of the contract the given validations decide otherwise, and an input that shows it."""

    clause: str  # the shipped validation's id (or the given validation that decides where none should)
    how: str  # dropped, narrowed, widened, reordered, reworded or recoded
    shipped: str  # what the shipped validations answer: 'rule-id (CODE)', 'pass', or a message when reworded
    given: str  # what the given validations answer
    permission_type: str  # the judged change's type (a space representative when it is not text)
    request: Mapping[str, Any]  # the input, as diff.example() writes a request
    is_shipped: bool = True  # whether the clause is one of the shipped validations

    def describe(self) -> str:
        """The breach in one sentence: the clause, what was done to it, and the input with both answers."""
        what = (
            f"the contract's validation '{self.clause}' is {self.how}"
            if self.is_shipped
            else f"validation '{self.clause}' is not one the package ships: the contract is {self.how}"
        )
        return f"{what}: shipped: {self.shipped}; this set: {self.given}; shown by {shown_request(self.request)}"


@cache
def shipped_validations() -> RuleSet:
    """The validations the package ships (and their catalog), loaded once per process."""
    shipped = load_rule_set(shipped_rules_dir())
    return RuleSet(f"{shipped.version}_validations", shipped.catalog, validations(shipped), shipped.attributes)


def validations(rule_set: RuleSet) -> tuple[Rule, ...]:
    """The rule set's validation stage: its rules that are not policies, in order."""
    return tuple(rule for rule in rule_set.rules if not rule.is_policy)


def _stage(rule_set: RuleSet, rules: tuple[Rule, ...], version: str) -> RuleSet:
    """Rules judged over the given set's catalog and attribute declarations, without policies. Its version must
    name exactly these rules, catalog and declarations: the engine compiles one ruleset per version."""
    return RuleSet(version, rule_set.catalog, rules, rule_set.attributes)


def compare(rule_set: RuleSet) -> RuleSetDiff:
    """rules diff from the shipped validations to the given set's validations, both over the given catalog."""
    shipped = shipped_validations()
    reference = _stage(rule_set, validations(shipped), f"{rule_set.version}_under_{shipped.version}")
    return diff(reference, _stage(rule_set, validations(rule_set), f"{rule_set.version}_validations"))


def breaches(rule_set: RuleSet) -> tuple[Breach, ...]:
    """Every clause the given validation stage decides otherwise than the shipped one, each once, shipped
    clauses in their shipped order first. Raises SpaceTooLarge when the stage reads too many facts together."""
    result = compare(rule_set)
    shipped_ids = [rule.id for rule in validations(shipped_validations())]
    given_ids = [rule.id for rule in validations(rule_set)]
    found: dict[tuple[str, str], list[tuple[Group, Point]]] = {}
    for group in result.groups:
        clause, how = _classify(group, shipped_ids, given_ids)
        found.setdefault((clause, how), []).extend((group, point) for point in group.points)
    catalog = rule_set.catalog

    def order(key: tuple[str, str]) -> tuple[int, str]:
        clause = key[0]
        return (shipped_ids.index(clause) if clause in shipped_ids else len(shipped_ids)), clause

    found_breaches = []
    for clause, how in sorted(found, key=order):
        group, point = min(found[(clause, how)], key=lambda item: _plainness(item[0], item[1], catalog))
        shipped, given = _shown_side(group.old), _shown_side(group.new)
        if how == "reworded":
            shipped, given = _template(shipped_validations(), clause), _template(rule_set, clause)
        request = example(point, result.space)
        found_breaches.append(
            Breach(clause, how, shipped, given, point.permission_type, request, is_shipped=clause in shipped_ids)
        )
    return tuple(found_breaches)


def _template(rule_set: RuleSet, rule_id: str) -> str:
    """A rule's message as written, and its field (what a message change compares)."""
    rule = rule_set.rule(rule_id)
    return f"field '{rule.field}', message '{rule.message}'"


class _Checks:
    """Breaches by rule-set version: one check per loaded set, however many tools ask (lint, test, reload)."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, str], tuple[Breach, ...]] = {}
        self._lock = threading.Lock()

    def of(self, rule_set: RuleSet) -> tuple[Breach, ...]:
        key = (rule_set.version, shipped_validations().version)
        with self._lock:
            kept = self._found.get(key)
        if kept is not None:
            return kept
        found = breaches(rule_set)
        with self._lock:
            if len(self._found) >= _CHECKS_KEPT:
                self._found.pop(next(iter(self._found)))
            self._found[key] = found
        return found


_checks = _Checks()


def checked_breaches(rule_set: RuleSet) -> tuple[Breach, ...]:
    """breaches(rule_set), computed once per rule-set version (a version names the files' meaning)."""
    return _checks.of(rule_set)


def _rule_id(side: str) -> str:
    return side.split(" ")[0]


def _classify(group: Group, shipped: list[str], given: list[str]) -> tuple[str, str]:
    """The clause a difference breaks and how, read from the deciding rules on each side."""
    if group.kind in ("warning", "dryrun"):
        old, new = group.old, group.new
        return (old, "dropped" if old not in given else "narrowed") if new == "-" else (new, "widened")
    was, now = _rule_id(group.old), _rule_id(group.new)
    if group.kind == "message":
        return was, "reworded"
    if was == now:
        return was, "recoded"
    if now == PASS:
        return was, "dropped" if was not in given else "narrowed"
    if was == PASS:
        return now, "widened"
    if was not in given:
        return was, "dropped"
    if now not in shipped:  # a validation the package does not ship decides first
        return (now, "widened") if given.index(now) < given.index(was) else (was, "narrowed")
    if (shipped.index(was) < shipped.index(now)) != (given.index(was) < given.index(now)):
        return was, "reordered"
    return (now, "widened") if given.index(now) < given.index(was) else (was, "narrowed")


def _plainness(group: Group, point: Point, catalog: Catalog) -> tuple[int, ...]:
    """How plain an input is to show (smaller is plainer): one side passing first (the given set passing where
    the contract refuses before all), then a catalog value requested open or closed, sent alone by an active
    account of any tenant."""
    return (
        0 if _rule_id(group.new) == PASS else 1 if _rule_id(group.old) == PASS else 2,
        0 if point.permission_type in catalog else 1 if point.is_text else 2,
        0 if point.permission_status in ("open", "close") else 1,
        int(point.named_earlier),
        0 if point.tenant == OTHER_TENANT else 1,
        0 if point.account_status == "active" else 1,
        len(point.attributes) + len(point.related),
    )


def _shown_side(side: str) -> str:
    return "pass (no validation refuses)" if side == PASS else side


def _shown_value(field: str, change: Mapping[str, Any]) -> str:
    if field not in change:
        return f"no {field}"
    value = change[field]
    return f"{field} '{value}'" if isinstance(value, str) else f"{field} {value} (not text)"


def shown_request(request: Mapping[str, Any]) -> str:
    """A request of diff.example() in a few words: the changes, then the judged one's current status, the other
    permissions open before the request, the tenant's config patterns (and the tenant, account status and
    attributes when they are not the plainest)."""
    changes = request["changes"]
    judged = request["judged_change"]
    shown = [
        ", ".join(_shown_value(field, change) for field in ("permission_type", "permission_status"))
        for change in changes
    ]
    context = [] if len(shown) == 1 else [f"judged changes[{judged}]"]
    judged_type = changes[judged].get("permission_type")
    if isinstance(judged_type, str):
        context.append(f"current status '{request['account'].get(judged_type, 'close')}'")
    held = [t for t, status in request["account"].items() if status == "open" and t != judged_type]
    if held:
        context.append("also open before: " + ", ".join(f"'{t}'" for t in held))
    patterns = request["tenant_config"]
    context.append("tenant config " + (", ".join(f"'{p}'" for p in patterns) if patterns else "enabling nothing"))
    if request["tenant"] != OTHER_TENANT:
        context.append(f"tenant '{request['tenant']}'")
    if request["account_status"] != "active":
        context.append(f"account status '{request['account_status']}'")
    context += [f"{name} '{value}'" for name, value in request["attributes"].items()]
    changed = shown[0] if len(shown) == 1 else " and ".join(f"changes[{i}] {text}" for i, text in enumerate(shown))
    return f"{changed} ({', '.join(context)})"


def _catalog_place(catalog_text: str, permission_type: str) -> tuple[int, int] | None:
    """Where the catalog writes the group or product of a type (line, column), if it does."""
    head = permission_type.partition(".")[0]
    if not head:
        return None
    group = re.compile(rf"group:\s*['\"]?({re.escape(head)})\b")
    listed = re.compile(rf"products:.*[\[,\s]['\"]?({re.escape(head)})['\"]?\s*[,\]]")
    for number, line in enumerate(catalog_text.splitlines(), start=1):
        found = group.search(line) or listed.search(line)
        if found:
            return number, found.start(1) + 1
    return None


def located(
    found: tuple[Breach, ...], rule_set: RuleSet, *, validation_path: str, catalog_path: str, catalog_text: str
) -> list[Problem]:
    """Each breach as an error at the clause's rule in validation.yaml (at the key edited: `when` narrowed or
    widened, `message` reworded, `outcome` recoded; the file's top when the set has no rule of that id), and,
    when the input's type is a catalog value the shipped catalog does not have (a catalog edit opened the
    hole), at that value's group or product in catalog.yaml too."""
    given = {rule.id: rule for rule in validations(rule_set)}
    shipped_catalog = shipped_validations().catalog
    problems = []
    for breach in found:
        rule = given.get(breach.clause)
        line, column = rule.place(KEY_EDITED.get(breach.how, "id")) if rule is not None else (1, 1)
        path = rule.source if rule is not None else validation_path
        problems.append(Problem(path, line, column, breach.clause, breach.describe()))
        value = breach.permission_type
        if value in rule_set.catalog and value not in shipped_catalog:
            place = _catalog_place(catalog_text, value)
            if place is not None:
                problems.append(
                    Problem(
                        catalog_path,
                        *place,
                        breach.clause,
                        f"catalog value '{value}' (not in the shipped catalog) shows the contract's validation "
                        f"'{breach.clause}' {breach.how}: shipped: {breach.shipped}; this set: {breach.given}",
                    )
                )
    return problems


def contract_problems(rule_set: RuleSet, rules_dir: Path, tree: Mapping[str, bytes]) -> list[Problem]:
    """The contract's breaches by the rule set read from rules_dir (its files in tree), located for lint."""
    validation_path = shown_path(rules_dir, VALIDATION_FILE)
    try:
        found = checked_breaches(rule_set)
    except SpaceTooLarge as exc:
        return [Problem(validation_path, 1, 1, CLAUSE_ID, f"the contract cannot be checked: {exc}")]
    catalog_text = tree.get(CATALOG_FILE, b"").decode("utf-8", errors="replace")
    return located(
        found,
        rule_set,
        validation_path=validation_path,
        catalog_path=shown_path(rules_dir, CATALOG_FILE),
        catalog_text=catalog_text,
    )
