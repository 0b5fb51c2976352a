"""The one decision pipeline: a typed DecisionInput → decide() → a typed Decision.

The service, `rules test`, `rules explain` and `rules impact` all call decide(); it is the only place that
turns the engine's verdicts (which rules held for which change) into the first denial, the warnings and the
dryrun hits, in the order of SPEC §3.2: changes in array order, rules in file order, validations first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

from app.rules.language.model import Rule
from app.rules.runtime.decision_input import DecisionInput
from app.rules.runtime.messages import message_for

if TYPE_CHECKING:
    from app.rules.runtime.engine import DurableRulesEngine, Evaluation


@dataclass(frozen=True)
class Hit:
    """A rule that held for a change: what the caller is told (or, for dryrun, what would have been)."""

    index: int
    rule: Rule
    render: Callable[[], str] = field(compare=False, repr=False)

    @cached_property
    def message(self) -> str:
        """The rule's message for this change, rendered when first asked: most are never shown (a dryrun hit's,
        a warning's on a refused request)."""
        return self.render()

    def as_warning(self) -> dict[str, Any]:
        """As data.warnings lists it."""
        return {"index": self.index, "rule_id": self.rule.id, "message": self.message}


@dataclass(frozen=True)
class Decision:
    """What the rules made of a request."""

    rule_set_version: str
    held: tuple[frozenset[str], ...]  # per change, every rule whose condition held
    denial: Hit | None = None
    warnings: tuple[Hit, ...] = ()
    dryruns: tuple[Hit, ...] = ()
    rules: Sequence[Rule] = field(default=(), compare=False, repr=False)  # in the order they judge each change

    @property
    def accepted(self) -> bool:
        return self.denial is None

    def reached(self, index: int) -> tuple[Rule, ...]:
        """The rules that judged change `index`, in order: all of them for a change before the denial, those up
        to and including the deciding rule for the denied change, none for a change after it."""
        denial = self.denial
        if denial is None or index < denial.index:
            return tuple(self.rules)
        if index > denial.index:
            return ()
        rules = tuple(self.rules)
        return rules[: rules.index(denial.rule) + 1]


def decide(engine: DurableRulesEngine, decision_input: DecisionInput, *, use_memo: bool = True) -> Decision:
    """Judge every change in order; the first rule (in file order) that holds with enforcement deny stops the
    request. warn and dryrun rules that hold before it are collected, never stop anything."""
    evaluation = engine.evaluate(decision_input, use_memo=use_memo)
    held = evaluation.held
    warnings: list[Hit] = []
    dryruns: list[Hit] = []
    for index, rules_held in enumerate(held):
        if not rules_held:
            continue
        for rule in engine.rule_set.rules:
            if rule.id not in rules_held:
                continue
            hit = Hit(index, rule, partial(_message, rule, index, decision_input, evaluation))
            if rule.enforcement == "warn":
                warnings.append(hit)
            elif rule.enforcement == "dryrun":
                dryruns.append(hit)
            else:
                return Decision(engine.version, held, hit, tuple(warnings), tuple(dryruns), engine.rule_set.rules)
    return Decision(engine.version, held, None, tuple(warnings), tuple(dryruns), engine.rule_set.rules)


def _message(rule: Rule, index: int, decision_input: DecisionInput, evaluation: Evaluation) -> str:
    return message_for(rule, index, decision_input.changes[index], evaluation.message_values(index))
