"""The entries of the rule files, declared: which keys an entry of validation.yaml (`rules:`) or of
policies.yaml (`policies:`) has, which of them are required, and how each value is read.

An EntrySchema reports, in this order: unknown keys (in file order), missing required keys (in the order
declared), then each value that is not of its type (in the order its key is declared). Every mistake names the
key it is at, so the reader locates it by line and column (at the entry itself for a missing key). What needs
more than the entry (the rule id against the others, the message's placeholders against the declared
attributes, the condition) is read by the parser (app/rules/language/parser.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

from app.rules.language.model import APPLIES_TO, ENFORCEMENTS, PART_FIELDS, RAW_FIELDS
from app.rules.language.source import shown

POLICY_OUTCOME = "PERMISSION_POLICY_DENIED"
VALIDATION_OUTCOMES = (
    "INVALID_PERMISSION_TYPE",
    "INVALID_PERMISSION_STATUS",
    "DUPLICATE_PERMISSION_TYPE",
    "NO_STATE_CHANGE",
)
OUTCOME_FIELD = {  # the request field each validation outcome is a fault of
    "INVALID_PERMISSION_TYPE": "permission_type",
    "INVALID_PERMISSION_STATUS": "permission_status",
    "DUPLICATE_PERMISSION_TYPE": "permission_type",
    "NO_STATE_CHANGE": "permission_status",
}
OUTCOME_FACTS = {  # the facts a rule reporting each outcome must read to be about that fault
    "INVALID_PERMISSION_TYPE": {"permission_type", *PART_FIELDS, "in_catalog", "enabled_for_tenant"},
    "INVALID_PERMISSION_STATUS": {"permission_status"},
    "DUPLICATE_PERMISSION_TYPE": {"named_earlier"},
    "NO_STATE_CHANGE": {"current_status"},
}

Mistake = tuple[str, Any]  # what is wrong, and the key of the entry it is at (None: the entry itself)


class ValueType(Protocol):
    """How the value of one key is read: the value (or its default), and what is wrong with it, if anything.
    `read` holds the values of the keys declared before it."""

    def read(self, entry: Mapping[Any, Any], key: str, read: Mapping[str, Any]) -> tuple[Any, str | None]: ...


@dataclass(frozen=True)
class Text:
    """Non-empty text. An absent key is the schema's concern (missing key), not the value's."""

    def read(self, entry: Mapping[Any, Any], key: str, read: Mapping[str, Any]) -> tuple[Any, str | None]:
        if key not in entry:
            return None, None
        value = entry[key]
        return value, None if isinstance(value, str) and value.strip() else f"'{key}' must be non-empty text"


@dataclass(frozen=True)
class OneOf:
    """One of a few words; `default` when the key is absent."""

    choices: tuple[str, ...]
    default: str
    wrong: str

    def read(self, entry: Mapping[Any, Any], key: str, read: Mapping[str, Any]) -> tuple[Any, str | None]:
        value = entry.get(key, self.default)
        return value, None if value in self.choices else self.wrong


def _utc(moment: datetime) -> datetime:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _moment(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            return _utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class Moment:
    """A moment in UTC: a time (UTC unless it says otherwise) or a date (its midnight, UTC); None when absent."""

    def read(self, entry: Mapping[Any, Any], key: str, read: Mapping[str, Any]) -> tuple[Any, str | None]:
        value = entry.get(key)
        if value is None:
            return None, None
        moment = _moment(value)
        wrong = f"'{key}' is a UTC time like 2026-01-01T00:00:00Z or a date like 2026-01-01"
        return moment, None if moment is not None else wrong


@dataclass(frozen=True)
class PolicyOutcome:
    """A policy always reports POLICY_OUTCOME; `outcome:` may say so, and nothing else."""

    def read(self, entry: Mapping[Any, Any], key: str, read: Mapping[str, Any]) -> tuple[Any, str | None]:
        outcome = entry.get(key, POLICY_OUTCOME)
        if outcome in VALIDATION_OUTCOMES:
            return POLICY_OUTCOME, (
                f"a policy's outcome is always {POLICY_OUTCOME}; {outcome} is a validation's (validation.yaml)"
            )
        if outcome != POLICY_OUTCOME:
            return POLICY_OUTCOME, f"unknown outcome {shown(outcome)} (a policy's outcome is {POLICY_OUTCOME})"
        return POLICY_OUTCOME, None


@dataclass(frozen=True)
class ValidationOutcome:
    """One of VALIDATION_OUTCOMES, a fault of the field the rule's message points at (`field`, read before)."""

    def read(self, entry: Mapping[Any, Any], key: str, read: Mapping[str, Any]) -> tuple[Any, str | None]:
        outcome = entry.get(key)
        if key not in entry:
            return outcome, None
        if outcome == POLICY_OUTCOME:
            return outcome, f"{POLICY_OUTCOME} is a policy's outcome: write this rule in policies.yaml"
        if outcome not in VALIDATION_OUTCOMES:
            return outcome, f"unknown outcome {shown(outcome)} (use one of {', '.join(VALIDATION_OUTCOMES)})"
        field = read["field"]
        if field in RAW_FIELDS and OUTCOME_FIELD[str(outcome)] != field:
            return outcome, f"{outcome} is a fault of {OUTCOME_FIELD[str(outcome)]}, but this rule's field is {field}"
        return outcome, None


@dataclass(frozen=True)
class EntrySchema:
    """The keys of one kind of entry, and the type of the value of each."""

    required: tuple[str, ...]  # in the order a missing one is reported
    values: tuple[tuple[str, ValueType], ...]  # read in this order
    optional: tuple[str, ...] = ()
    hinted: tuple[str, ...] = ()  # keys only the other kind of entry has: their unknown-key report says so
    hint: str = ""

    def key_mistakes(self, entry: Mapping[Any, Any]) -> Iterator[Mistake]:
        """Each unknown key (at the key), then each missing required key (at the entry)."""
        for key in entry:
            if key not in self.required and key not in self.optional:
                yield f"unknown key '{key}'{self.hint if key in self.hinted else ''}", key
        for key in self.required:
            if key not in entry:
                yield f"missing key '{key}'", None

    def read_values(self, entry: Mapping[Any, Any]) -> tuple[dict[str, Any], list[Mistake]]:
        """The value of each declared key (its default when absent), and what is wrong with them, in order."""
        values: dict[str, Any] = {}
        mistakes: list[Mistake] = []
        for key, kind in self.values:
            values[key], wrong = kind.read(entry, key, values)
            if wrong is not None:
                mistakes.append((wrong, key))
        return values, mistakes


FIELD = OneOf(RAW_FIELDS, "permission_type", "'field' is permission_type or permission_status")
ENFORCEMENT = OneOf(ENFORCEMENTS, "deny", f"'enforcement' is one of {', '.join(ENFORCEMENTS)}")
APPLIES = OneOf(APPLIES_TO, "holding", f"'applies_to' is one of {', '.join(APPLIES_TO)}")


def _values(outcome: ValueType) -> tuple[tuple[str, ValueType], ...]:
    """The values of an entry, in the order their mistakes are reported. A validation reads enforcement, from
    and until too: each is an unknown key there, and a wrong value is reported as well."""
    return (
        ("description", Text()),
        ("message", Text()),
        ("field", FIELD),
        ("outcome", outcome),
        ("enforcement", ENFORCEMENT),
        ("from", Moment()),
        ("until", Moment()),
    )


VALIDATION_ENTRY = EntrySchema(
    required=("id", "description", "when", "message", "field", "outcome"),
    values=_values(ValidationOutcome()),
    hinted=("enforcement", "from", "until", "applies_to"),
    hint=" (only policies have it)",
)
POLICY_ENTRY = EntrySchema(
    required=("id", "description", "when", "message"),
    optional=("field", "enforcement", "from", "until", "outcome", "applies_to"),
    values=(*_values(PolicyOutcome()), ("applies_to", APPLIES)),
)
