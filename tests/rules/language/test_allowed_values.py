"""language/allowed_values.py: whether a literal or a glob names a value a declaration allows. A glob against a
pattern is judged against brute force (every text of a small alphabet up to a length that holds a witness),
and patterns greenery cannot read, or reads otherwise than Python, leave globs undecided, never wrong."""

from __future__ import annotations

import itertools
import re
import time
from fnmatch import fnmatchcase

import pytest

from app.rules.language.allowed_values import can_be, example_of, never_is, readable
from app.rules.language.attributes import AttributeDeclaration

ALPHABET = "aAb1-"
PATTERNS = ["[A-Z]{2}", "a+b?", "(ab|ba)*", "[a-z][0-9]", r"\d+-\w", "[^a]b", "a{2,3}", "(a|A)(b|1)?", "-?1"]
GLOBS = ["*", "?", "??", "a*", "A*", "*b", "a?b", "*-*", "1", "b*a", "???*", "-*1", "aab", "*?1"]


def _declaration(pattern: str) -> AttributeDeclaration:
    return AttributeDeclaration("attribute", "planted", pattern=pattern)


def _brute_force(pattern: str, glob: str) -> bool:
    compiled = re.compile(pattern)
    texts = ("".join(t) for n in range(6) for t in itertools.product(ALPHABET, repeat=n))
    return any(compiled.fullmatch(t) and fnmatchcase(t, glob) for t in texts)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_glob_meets_a_pattern_exactly_when_some_text_matches_both(pattern: str):
    assert readable(pattern)
    for glob in GLOBS:
        assert can_be(_declaration(pattern), glob) is _brute_force(pattern, glob), (pattern, glob)


@pytest.mark.parametrize("pattern", [*PATTERNS, "[A-Z]{2}[0-9]{2}", "(ab)+"])
def test_the_value_a_glob_stands_for_is_one_both_the_glob_and_the_pattern_take(pattern: str):
    """The input space judges a glob of a pattern attribute by this value: it must match both (`HK*` against
    `[A-Z]{2}[0-9]{2}` is HK00, not a plain fill such as HKx), and exist exactly when some text matches both."""
    compiled = re.compile(pattern)
    for glob in [*GLOBS, "HK*", "aba*", "HK??"]:
        found = example_of(_declaration(pattern), glob)
        assert (found is not None) is can_be(_declaration(pattern), glob), (pattern, glob)
        if found is not None:
            assert compiled.fullmatch(found) and fnmatchcase(found, glob), (pattern, glob, found)


def test_literal_values_are_judged_by_a_full_match_as_the_service_judges_them():
    declaration = _declaration("[A-Z]{2}")
    assert can_be(declaration, "SG") is True
    assert never_is("residency", declaration, "sg") == "'residency' is never 'sg': values match [A-Z]{2}"
    assert never_is("residency", declaration, "SGP") == "'residency' is never 'SGP': values match [A-Z]{2}"


def test_a_list_names_its_values():
    declaration = AttributeDeclaration("investor_class", "planted", values=("retail", "professional"))
    assert never_is("investor_class", declaration, "pro") == (
        "'investor_class' is never 'pro': values are 'retail', 'professional'"
    )
    assert never_is("investor_class", declaration, "pro*") is None
    assert never_is("status", ("active", "deregistered"), "frozen") == (
        "'status' is never 'frozen': values are 'active', 'deregistered'"
    )


@pytest.mark.parametrize(
    "pattern",
    [
        "(?i)[a-z]{2}",  # flags
        r"[\w-]+",  # a shorthand inside a class
        "a^b",  # an anchor inside: greenery reads it as a character
        "x$y",
        r"(a)\1",  # a back-reference
        "(?=a)a",  # a look-ahead
    ],
)
def test_a_pattern_greenery_cannot_read_as_python_does_leaves_globs_undecided(pattern: str):
    assert not readable(pattern)
    assert can_be(_declaration(pattern), "zz*") is None
    assert never_is("attribute", _declaration(pattern), "zz*") is None


def test_the_anchors_of_a_full_match_are_read_as_no_ops():
    assert readable("^[A-Z]{2}$")
    assert can_be(_declaration("^[A-Z]{2}$"), "S*") is True
    assert can_be(_declaration("^[A-Z]{2}$"), "s*") is False


def test_a_pattern_whose_automaton_would_explode_is_judged_quickly():
    """The search never determinises: (a|b)*a(a|b){16} has 2**17 states as a DFA; \\w{1,64} takes greenery
    seconds to determinise."""
    start = time.perf_counter()
    assert can_be(_declaration("(a|b)*a(a|b){16}"), "*a????????????????") is True
    assert can_be(_declaration("(a|b)*a(a|b){16}"), "*b") is True
    assert can_be(_declaration(r"\w{1,64}"), "*-*") is False
    assert time.perf_counter() - start < 2
