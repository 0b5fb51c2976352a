"""What an account number may be (SPEC §8), as marshmallow fields: every route, import and fixture file uses these.

The rule itself (1 to 64 printable ASCII characters with no leading or trailing space, and why) is told once,
in app/service/account_numbers.py. Accounts stored before the rule stay readable (STORED_ACCOUNT_NO, for the
read route) and `permctl accounts check` lists them.
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, validate

from app.service.account_numbers import ACCOUNT_NO_PATTERN, MAX_ACCOUNT_NO, RULE, account_no_problem

__all__ = ["ACCOUNT_NO", "ACCOUNT_NO_PATTERN", "MAX_ACCOUNT_NO", "STORED_ACCOUNT_NO", "account_no_problem"]


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
