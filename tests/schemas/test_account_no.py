"""The account number rule (issue 18 #6, SPEC §8): 1-64 printable ASCII, no space at either end; one definition
that every route, import and fixture file uses."""

from __future__ import annotations

import re

import pytest

from app.schemas.account_no import ACCOUNT_NO_PATTERN, account_no_problem

GOOD = ["L6VQEU00121996", "A", "A" * 64, "ACC 1", "a-b_c.d/e:f", "!~", "0"]
BAD = {
    "empty": "",
    "spaces-only": "   ",
    "one-space": " ",
    "leading-space": " ACC-1",
    "trailing-space": "ACC-1 ",
    "65": "A" * 65,
    "tab": "ACC\t1",
    "final-newline": "ACC-1\n",
    "nul": "ACC\x001",
    "non-ascii": "账户1",
    "cyrillic-look-alike": "\u0410CC-1",
    "nbsp-at-end": "ACC-1\u00a0",
    "del": "ACC\x7f",
}


@pytest.mark.parametrize("number", GOOD)
def test_a_good_number_passes(number: str) -> None:
    assert account_no_problem(number) is None
    assert re.search(ACCOUNT_NO_PATTERN, number)  # the OpenAPI document's pattern says the same


@pytest.mark.parametrize("number", BAD.values(), ids=BAD.keys())
def test_a_bad_number_is_refused_with_its_reason(number: str) -> None:
    problem = account_no_problem(number)
    assert problem is not None and problem.startswith("must be 1 to 64 printable ASCII characters")
    if number.strip(" ") != number and number.strip(" "):
        assert problem.endswith("(it has a space at the start or end)")
    if number == "ACC-1\n":
        assert "outside printable ASCII" in problem  # `$` alone would have let the newline through


def test_the_pattern_refuses_what_the_rule_refuses() -> None:
    """The document's ECMAScript pattern: `$` in Python matches before a final newline, which printable-ASCII
    refuses anyway; every other bad number fails the pattern itself."""
    for name, number in BAD.items():
        if name != "final-newline":
            assert re.search(ACCOUNT_NO_PATTERN, number) is None, name
