"""The one decision function: a typed DecisionInput → decide() → a typed Decision.

Every tool that judges calls decide(): the service, `rules test` and its coverage, `explain`, `impact`, `diff`
and lint's logic checks. It is the only place that turns the engine's verdicts (which rules held for which
change) into the first denial, the warnings and the dryrun hits, in the order of SPEC §3.2: changes in array
order, rules in file order, validations first. A tool that needs more than the deciding rule passes a tracer:
decide() reports to it every change's verdict (judge_change), also of the changes after the one that decided.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, Protocol

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


@dataclass(frozen=True)
class ChangeVerdict:
    """What the rules make of one change on its own: every rule whose condition held, the first of them (in
    file order) that denies, and the warn and dryrun rules that held before it."""

    index: int
    held: frozenset[str]
    denial: Rule | None = None
    warnings: tuple[Rule, ...] = ()
    dryruns: tuple[Rule, ...] = ()


class Tracer(Protocol):
    """Told every change's verdict by decide(), in array order."""

    def change(self, verdict: ChangeVerdict) -> None: ...


@dataclass
class Trace:
    """A tracer that keeps every verdict it is told."""

    verdicts: list[ChangeVerdict] = field(default_factory=list)

    def change(self, verdict: ChangeVerdict) -> None:
        self.verdicts.append(verdict)


def judge_change(rules: Sequence[Rule], index: int, held: frozenset[str]) -> ChangeVerdict:
    """The verdict of one change from the rules that held for it: the first deny rule in file order decides;
    warn and dryrun rules before it are collected; rules after it are not reached."""
    if not held:
        return ChangeVerdict(index, held)
    warnings: list[Rule] = []
    dryruns: list[Rule] = []
    for rule in rules:
        if rule.id not in held:
            continue
        if rule.enforcement == "warn":
            warnings.append(rule)
        elif rule.enforcement == "dryrun":
            dryruns.append(rule)
        else:
            return ChangeVerdict(index, held, rule, tuple(warnings), tuple(dryruns))
    return ChangeVerdict(index, held, None, tuple(warnings), tuple(dryruns))


def decide(
    engine: DurableRulesEngine,
    decision_input: DecisionInput,
    *,
    use_memo: bool = True,
    tracer: Tracer | None = None,
) -> Decision:
    """Judge every change in order; the first change a deny rule holds for stops the request. warn and dryrun
    rules that hold before that rule are collected, never stop anything. A tracer is told every change's
    verdict, also of the changes after the one that decided."""
    evaluation = engine.evaluate(decision_input, use_memo=use_memo)
    held = evaluation.held
    rules = engine.rule_set.rules
    warnings: list[Hit] = []
    dryruns: list[Hit] = []
    denial: Hit | None = None
    for index, rules_held in enumerate(held):
        if tracer is None and (denial is not None or not rules_held):
            if denial is not None:
                break
            continue  # nothing held: nothing to collect, nobody to tell
        verdict = judge_change(rules, index, rules_held)
        if tracer is not None:
            tracer.change(verdict)
        if denial is not None or not rules_held:
            continue
        message = partial(_message, index=index, decision_input=decision_input, evaluation=evaluation)
        warnings.extend(Hit(index, rule, partial(message, rule)) for rule in verdict.warnings)
        dryruns.extend(Hit(index, rule, partial(message, rule)) for rule in verdict.dryruns)
        if verdict.denial is not None:
            denial = Hit(index, verdict.denial, partial(message, verdict.denial))
    return Decision(engine.version, held, denial, tuple(warnings), tuple(dryruns), rules)


def _message(rule: Rule, *, index: int, decision_input: DecisionInput, evaluation: Evaluation) -> str:
    return message_for(rule, index, decision_input.changes[index], evaluation.message_values(index))
