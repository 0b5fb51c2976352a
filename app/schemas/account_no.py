"""What an account number may be (SPEC §8): the one definition every route, import and fixture file uses.

1 to 64 printable ASCII characters with no leading or trailing space. ' ACC-1' next to 'ACC-1' would be a
second account that no operator can tell apart on a screen; a number of spaces only names nothing; a
look-alike in another script (a Cyrillic A in ACC-1) is the same trap. Accounts stored before the rule stay
readable (STORED_ACCOUNT_NO, for the read route) and `permctl accounts check` lists them.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import ValidationError, validate

MAX_ACCOUNT_NO = 64
# No space at either end, printable ASCII between (the pattern is also the OpenAPI document's).
ACCOUNT_NO_PATTERN = rf"^[!-~](?:[ -~]{{0,{MAX_ACCOUNT_NO - 2}}}[!-~])?$"
RULE = f"1 to {MAX_ACCOUNT_NO} printable ASCII characters with no leading or trailing space"
_PATTERN = re.compile(ACCOUNT_NO_PATTERN)


def account_no_problem(value: str) -> str | None:
    """Why value cannot be a new account's number, or None when it can."""
    if _PATTERN.fullmatch(value) is not None:  # fullmatch: `$` alone would let a final newline through
        return None
    if not 1 <= len(value) <= MAX_ACCOUNT_NO:
        return f"must be {RULE} (got {len(value)} characters)"
    if not all(" " <= c <= "~" for c in value):
        return f"must be {RULE} (it has a character outside printable ASCII)"
    return f"must be {RULE} (it has a space at the start or end)"


class AccountNumber(validate.Regexp):
    """The rule as a marshmallow validator: a Regexp, so that apispec documents the pattern, with a message
    that says which part of the rule the value breaks."""

    def __init__(self) -> None:
        super().__init__(ACCOUNT_NO_PATTERN)

    def __call__(self, value: Any) -> Any:
        problem = account_no_problem(value)
        if problem is not None:
            raise ValidationError(problem)
        return value


def printable_text(value: str) -> None:
    """Refuse NUL, control characters and lone surrogates (they name nothing; some databases cannot compare them)."""
    if not value.isprintable():
        raise ValidationError("must be printable text")


# A new account's number: the upsert, the permission update, imports and fixture files.
ACCOUNT_NO: dict[str, Any] = {
    "required": True,
    "validate": [validate.Length(min=1, max=MAX_ACCOUNT_NO), AccountNumber()],
}
# The read route's: any number an account may have been stored under before the rule (SPEC §8: they stay
# readable); the route refuses a number that breaks the rule when no account has it (app/http/permissions.py).
STORED_ACCOUNT_NO: dict[str, Any] = {
    "required": True,
    "validate": [validate.Length(min=1, max=MAX_ACCOUNT_NO), printable_text],
    "metadata": {
        "pattern": ACCOUNT_NO_PATTERN,
        "description": f"{RULE}; an account stored under another number before this rule can still be read",
    },
}
