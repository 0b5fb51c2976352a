"""Golden files of the compliance tools (issue 19, step 0): what `permctl rules lint`, `test`, `explain`, `diff`
and `impact` print today, for both shipped sets and for every kind of mistake the lint tests plant.

Issue 19 redesigns app/rules/ and replaces an evaluator; these files freeze the outputs it must reproduce byte
for byte. Each test runs one command in-process (tests/cli/runner.py) and compares the exit status, stdout and
stderr (and a JUnit report when the command writes one) with a file under tests/golden/ named
<command>/<input>[-<variant>].txt. A mismatch fails with a unified diff.

Regenerate, after a change that is meant (and listed, with its reason, in the issue's note):

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest -p no:cacheprovider tests/cli/test_golden_outputs.py

Only what varies from run to run is masked, by normalised() alone (see its docstring); a golden file that
changes on its own is a bug of this module, not of the file.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.settings import Settings
from tests.cli.runner import Ran, db_env, invoke
from tests.rules.planted import planted_rules
from tests.rules.support import BROKER_POLICIES, rules_dir
from tests.support import FREEZE_REFUSING_CLOSES, PROJECT_ROOT, SHIPPED_RULES, Credentials, body_of, copy_rules

GOLDEN = PROJECT_ROOT / "tests" / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

# The shipped sets as a checkout names them (rules/ links to app/defaults/rules, what a wheel ships).
SHIPPED = "rules"
BROKER = "examples/broker-policies"

# --- the normaliser --------------------------------------------------------------------------------------

# An ISO 8601 time as the tools print one: 2026-12-06T03:44:27.842450+00:00, 2026-12-06T03:44:27Z,
# 2026-12-06 03:44:27 or 2026-12-06 03:44 (the minute is the coarsest a report shows a recorded time in).
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?")


@dataclass
class Run:
    """Where a test's commands ran and when: what normalised() may mask."""

    tmp: Path
    started: datetime = field(default_factory=lambda: datetime.now(UTC))


def _read_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def normalised(text: str, run: Run) -> str:
    """text with what differs from one run to the next masked, and nothing else:

    - this test's temporary directory -> <TMP> (pytest makes a new one per test; planted and proposed copies
      and JUnit reports live there);
    - the checkout's absolute path -> <CHECKOUT> (`permctl rules lint` without --rules names ./rules
      absolutely, and an old rule set given as a path is echoed);
    - a time read from the clock while this test ran -> <NOW> (explain judges a case without `at` now, and
      impact shows when each replayed decision was recorded). A time outside the test's run (a window's
      bounds, an --at, a case's `at`) is part of the behaviour and stays.

    Rule-set versions, decision ids and trace ids are not masked: they are hashes of the files, rows of a
    fresh database and ids the test sends, the same on every run.
    """
    text = text.replace(str(run.tmp), "<TMP>").replace(str(run.tmp.resolve()), "<TMP>")
    text = text.replace(str(PROJECT_ROOT), "<CHECKOUT>")
    earliest = run.started.replace(second=0, microsecond=0)  # a report may show the minute only
    latest = datetime.now(UTC) + timedelta(seconds=1)

    def now_or_kept(match: re.Match[str]) -> str:
        moment = _read_time(match.group())
        return "<NOW>" if moment is not None and earliest <= moment <= latest else match.group()

    return _TIME.sub(now_or_kept, text)


# --- comparing ------------------------------------------------------------------------------------------


def shown(args: tuple[str, ...], cwd: Path, ran: Ran) -> str:
    """One invocation as a golden file: the command, where it ran, its exit status, stdout and stderr."""
    stdout = ran.stdout if ran.stdout.endswith("\n") or not ran.stdout else ran.stdout + "\n[no newline at end]\n"
    parts = [f"$ permctl {shlex.join(args)}\n", f"# cwd: {cwd}\n", f"# exit: {ran.returncode}\n", "# stdout:\n"]
    parts.append(stdout)
    if ran.stderr:
        parts += ["# stderr:\n", ran.stderr]
    return "".join(parts)


def compare(name: str, actual: str) -> str | None:
    """None when tests/golden/<name> holds actual (UPDATE_GOLDEN=1 writes it first), else a unified diff."""
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual.encode("utf-8"))
        return None
    if not path.is_file():
        return f"{name}: no golden file (run with UPDATE_GOLDEN=1 to write it)"
    expected = path.read_bytes().decode("utf-8")
    if expected == actual:
        return None
    lines = difflib.unified_diff(
        expected.splitlines(keepends=True), actual.splitlines(keepends=True), f"golden/{name}", "now"
    )
    return "".join(lines) or f"{name}: differs in bytes no line shows (line endings?)"


class Goldens:
    """Runs permctl and compares each output with its golden file; every mismatch of a test is reported."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.mismatches: list[str] = []

    def check(self, name: str, *args: str, cwd: Path = PROJECT_ROOT, env: dict[str, str] | None = None) -> Ran:
        """permctl ARGS run in cwd with only env's settings, compared with tests/golden/<name>."""
        ran = invoke(*args, env=env, cwd=cwd)
        assert "Traceback" not in ran.stdout + ran.stderr, ran.stdout + ran.stderr
        self.file(name, shown(args, cwd, ran))
        return ran

    def file(self, name: str, text: str) -> None:
        """Compare text, normalised, with tests/golden/<name>."""
        problem = compare(name, normalised(text, self.run))
        if problem:
            self.mismatches.append(problem)

    def verify(self) -> None:
        if self.mismatches:
            hint = "\n(a meant change: UPDATE_GOLDEN=1 rewrites the files; list it in issue 19's note with its reason)"
            pytest.fail("golden output changed:\n" + "\n".join(self.mismatches) + hint, pytrace=False)


@pytest.fixture
def goldens(tmp_path: Path) -> Iterator[Goldens]:
    """The test's golden checks, verified when it ends: every file of a test is compared (and rewritten)."""
    found = Goldens(Run(tmp_path))
    yield found
    found.verify()


# --- planted mistakes -------------------------------------------------------------------------------------


def policy(rule_id: str, when: str, message: str = "no", extra: str = "") -> str:
    """policies.yaml with one policy (as tests/rules/tools/lint/test_static_checks.py writes them)."""
    return f"policies:\n  - id: {rule_id}\n    description: x\n{extra}    when: {when}\n    message: {message!r}\n"


def analysed(*policies: tuple[str, str] | tuple[str, str, str]) -> str:
    """policies.yaml with these (id, when[, extra]) policies (as tools/lint/test_semantic.py writes them)."""
    text = "policies:"
    for rule_id, when, *extra in policies:
        text += (
            f"\n  - id: {rule_id}\n    description: planted\n{''.join(extra)}    when: {when}\n    message: refused\n"
        )
    return text


def case(name: str, rule_id: str) -> str:
    return (
        f"  - name: {name}\n    changes: [{{permission_type: ipo.JP, permission_status: open}}]\n"
        f"    expect: {{code: PERMISSION_POLICY_DENIED, failure_index: 0, rule_id: {rule_id}}}\n"
    )


def account_case(permission_type: str) -> str:
    """A case file whose account holds permission_type open."""
    return (
        f"cases:\n  - name: c\n    account: {{{permission_type}: open}}\n    changes: []\n"
        "    expect: {code: INVALID_REQUEST}\n"
    )


@dataclass(frozen=True)
class Plant:
    """A rules directory with a mistake planted: the shipped catalog and validations, the broker's attributes
    and these policies (tests/rules/support.py rules_dir), then each edit (file, old, new: the first `old`
    replaced) and each file written."""

    policies: str | None = None
    edits: tuple[tuple[str, str, str], ...] = ()
    files: tuple[tuple[str, str], ...] = ()

    def build(self, target: Path) -> Path:
        rules = rules_dir(target, self.policies)
        for file, old, new in self.edits:
            text = (rules / file).read_text(encoding="utf-8")
            assert old in text, f"{old!r} is not in {file}"
            (rules / file).write_text(text.replace(old, new, 1), encoding="utf-8")
        for file, text in self.files:
            (rules / file).parent.mkdir(parents=True, exist_ok=True)
            (rules / file).write_text(text, encoding="utf-8")
        return rules


IPO_JP = policy("ipo-jp", "{change: {permission_type: ipo.JP}}")
SHORTSELL_MARGIN = "{change: {product: shortsell}, not: {account: {account_type: margin}}}"
WINDOW = "    from: 2026-01-01\n    until: 2026-02-01\n"
VALIDATION_CATCH_ALL = """\
  - id: refuse-everything
    description: planted at the top
    field: permission_type
    when: {any: [{change: {permission_type: {is: missing}}}, {change: {permission_type: {is: text}}},
                 {change: {permission_type: {is: not_text}}}]}
    outcome: INVALID_PERMISSION_TYPE
    message: refused
"""
TENANTS = ", ".join(f"t{i}" for i in range(30))
RESIDENCIES = ", ".join(f"A{chr(65 + i)}" for i in range(26))

# One planted mistake (or one family planted together, where the point is that none hides another) per
# golden file lint/planted-<kind>.txt: every kind tests/rules/tools/lint/test_static_checks.py, test_semantic.py and
# tests/cli/test_rules_lint_analysis.py plant; tools/lint/test_directory.py's directory is lint/planted-all.txt.
PLANTS: dict[str, Plant] = {
    # a file that does not parse hides nothing in the others, nor the other items of its own file
    "policies-syntax-error-hides-nothing-elsewhere": Plant(
        IPO_JP.replace("message: 'no'", "message: a: b"),
        edits=(
            ("catalog.yaml", "names: [OSL, HAS]", "names: [OSL, HAS, OSL]"),
            ("validation.yaml", "outcome: NO_STATE_CHANGE", "outcome: NO_CHANGE"),
            ("attributes.yaml", "values: [cash, margin]", "values: [cash, cash]"),
        ),
        files=(("cases/c.yaml", "cases:\n" + case("c1", "ipo-jp") + case("c2", "nope")),),
    ),
    "broken-items-of-one-file": Plant(
        "policies:\n"
        "  - id: first\n    description: x\n    when: {change: {product: ipo}}\n    message: a: b\n"
        "  - id: second\n    description: x\n    when: {change: {prodcut: ipo}}\n    message: no\n"
        "  - id: third\n    description: x\n    when: {change: [1, 2}\n    message: no\n"
        "  - id: fourth\n    description: x\n    when: {change: {product: ipo}}\n    message: '{markt}'\n"
    ),
    "broken-case-hides-no-other-case": Plant(
        IPO_JP,
        files=(
            (
                "cases/c.yaml",
                "cases:\n" + case("c1", "ipo-jp").replace("changes: [", "changes: [[") + case("c2", "nope"),
            ),
        ),
    ),
    "catalog-unreadable-rules-and-cases-still-checked": Plant(
        policy("us-stock", "{change: {product: stock, market: us}}", "{markt}"),
        edits=(("catalog.yaml", "  - group: va\n", "\t- group: va\n"),),
        files=(("cases/c.yaml", "cases:\n" + case("c1", "nope")),),
    ),
    "yaml-unclosed-quote-at-the-end": Plant("policies:\n  - id: a\n  - id: b\n    message: 'open\n"),
    "yaml-error-outside-the-items": Plant("policies:\n  - id: a\nversion: a: b\n"),
    "yaml-error-in-the-first-item": Plant("# c\npolicies:\n\n  - id: a\n    message: a: b\n  - id: b\n"),
    # empty files
    "empty-catalog": Plant(IPO_JP, files=(("catalog.yaml", "# nothing but a comment\n"),)),
    "empty-validation": Plant(IPO_JP, files=(("validation.yaml", "# nothing but a comment\n"),)),
    "empty-policies": Plant(IPO_JP, files=(("policies.yaml", "# nothing but a comment\n"),)),
    "empty-attributes": Plant(IPO_JP, files=(("attributes.yaml", "# nothing but a comment\n"),)),
    "empty-case-file": Plant(IPO_JP, files=(("cases/new.yaml", "# nothing but a comment\n"),)),
    # outcomes that do not fit
    "outcome-fault-of-the-other-field": Plant(
        edits=(
            (
                "validation.yaml",
                "    field: permission_status\n    when: {change: {permission_status: {same_as",
                "    field: permission_type\n    when: {change: {permission_status: {same_as",
            ),
        )
    ),
    "outcome-about-a-fact-never-read": Plant(
        edits=(
            (
                "validation.yaml",
                "{change: {named_earlier: true}}\n    outcome: DUPLICATE",
                "{change: {in_catalog: false}}\n    outcome: DUPLICATE",
            ),
        )
    ),
    "policy-outcome-in-validation": Plant(
        edits=(("validation.yaml", "outcome: NO_STATE_CHANGE", "outcome: PERMISSION_POLICY_DENIED"),)
    ),
    "policy-outcome-of-a-validation": Plant(
        policy("ipo-jp", "{change: {permission_type: ipo.JP}}", extra="    outcome: INVALID_PERMISSION_TYPE\n")
    ),
    "policy-outcome-unknown": Plant(
        policy("ipo-jp", "{change: {permission_type: ipo.JP}}", extra="    outcome: DENIED\n")
    ),
    "outcome-not-text-list": Plant(
        edits=(("validation.yaml", "outcome: NO_STATE_CHANGE", "outcome: [INVALID_PERMISSION_TYPE]"),)
    ),
    "outcome-not-text-mapping": Plant(
        edits=(("validation.yaml", "outcome: NO_STATE_CHANGE", "outcome: {code: 400101}"),)
    ),
    "outcome-not-text-number": Plant(edits=(("validation.yaml", "outcome: NO_STATE_CHANGE", "outcome: 400101"),)),
    # placeholders that mean nothing for the rule
    "placeholder-market-for-account-values": Plant(
        policy("acct", "{change: {group: account, permission_status: open}}", "{market}")
    ),
    "placeholder-market-for-every-type": Plant(
        policy("opens", "{change: {permission_status: open}}", "not on {market}")
    ),
    "placeholder-earlier-index-without-named-earlier": Plant(
        policy("idx", "{change: {product: ipo}}", "see changes[{earlier_index}]")
    ),
    "placeholder-of-a-type-not-sent": Plant(
        edits=(
            (
                "validation.yaml",
                "message: is required\n\n  - id: type-must-be-text",
                "message: 'is required ({current_status})'\n\n  - id: type-must-be-text",
            ),
        )
    ),
    "placeholder-status-for-a-missing-status": Plant(
        edits=(
            (
                "validation.yaml",
                "message: is required\n\n  - id: status-must-be-text",
                "message: 'is required, not {permission_status}'\n\n  - id: status-must-be-text",
            ),
        )
    ),
    "placeholder-attribute-the-account-may-lack": Plant(
        policy("res", "{change: {product: ipo}}", "not for residents of {residency}")
    ),
    "permission-template-cannot-bind": Plant(
        policy("bind", '{change: {group: account}, permission: "stock.{market}", after: open}')
    ),
    # market and catalog codes
    "catalog-market-lower-case": Plant(edits=(("catalog.yaml", "markets: [HK, US,", "markets: [HK, us,"),)),
    "catalog-market-bad-form": Plant(edits=(("catalog.yaml", "markets: [HK, US,", "markets: [HK, U-S,"),)),
    "catalog-product-bad-form": Plant(edits=(("catalog.yaml", "products: [stock,", "products: [Stock,"),)),
    "catalog-name-bad-form": Plant(edits=(("catalog.yaml", "names: [OSL, HAS]", "names: [OSL, HAS-2]"),)),
    "catalog-name-reads-as-a-market": Plant(edits=(("catalog.yaml", "names: [OSL, HAS]", "names: [OSL, HK]"),)),
    "catalog-group-bad-form": Plant(edits=(("catalog.yaml", "group: va", "group: VA"),)),
    "catalog-product-in-two-sections": Plant(
        edits=(("catalog.yaml", "  - group: va\n", "  - products: [ipo]\n  - group: va\n"),)
    ),
    "catalog-group-named-like-a-product": Plant(
        edits=(("catalog.yaml", "  - group: va\n", "  - group: stock\n    names: [lending]\n  - group: va\n"),)
    ),
    "catalog-value-unreadable": Plant(
        policy("va", "{change: {group: va, name: OSL}}"),
        edits=(("catalog.yaml", "names: [OSL, HAS]", "names: [OSL, 'H A S']"),),
        files=(
            (
                "cases/c.yaml",
                account_case("va.HAS"),
            ),
        ),
    ),
    "catalog-form-mistake-still-checked-against": Plant(
        policy("ipo", "{change: {product: ipo, market: JP}}"),
        edits=(("catalog.yaml", "markets: [HK, US,", "markets: [HK, us,"),),
        files=(
            (
                "cases/c.yaml",
                account_case("stock.ZZ"),
            ),
        ),
    ),
    "policy-market-lower-case": Plant(policy("codes", "{change: {market: [JP, us]}}")),
    "policy-market-unknown": Plant(policy("codes", "{change: {market: XX}}")),
    "policy-market-glob-matches-nothing": Plant(policy("codes", '{change: {market: "u*"}}')),
    "policy-product-unknown": Plant(policy("codes", "{change: {product: stocks}}")),
    "policy-group-unknown": Plant(policy("codes", "{change: {group: acount}}")),
    "policy-name-unknown": Plant(policy("codes", "{change: {name: trades}}")),
    "policy-type-wrong-case": Plant(policy("codes", "{change: {permission_type: stock.us}}")),
    "policy-permission-wrong-case": Plant(policy("codes", "{permission: stock.us, after: open}")),
    "policy-permission-template-unknown-market": Plant(policy("codes", '{permission: "{product}.XX", after: open}')),
    # windows and attributes
    "expired-window": Plant(
        policy("freeze", "{change: {product: ipo}}", extra="    from: 2026-01-01\n    until: 2026-03-01T12:00:00Z\n")
    ),
    "attribute-declared-wrong-named-by-a-policy": Plant(
        policy("margin", SHORTSELL_MARGIN),
        edits=(("attributes.yaml", "values: [cash, margin]", "values: [cash, cash]"),),
    ),
    "attributes-syntax-error": Plant(
        policy("margin", SHORTSELL_MARGIN, "not for {investor_class} investors"),
        edits=(("attributes.yaml", '    pattern: "[A-Z]{2}"', '    pattern: "[A-Z]{2}": x'),),
    ),
    # what only the analysis of the whole input space finds (app/rules/tools/lint/semantic.py)
    "shadowed-rule": Plant(
        analysed(
            ("stock-open", "{change: {product: stock, permission_status: open}}"),
            ("stock-us-open", "{change: {permission_type: stock.US, permission_status: open}}"),
        )
    ),
    "catch-all-policy-at-the-top": Plant(
        analysed(
            ("catch-all", '{change: {permission_type: "*"}}'),
            ("stock-open", "{change: {product: stock, permission_status: open}}"),
            ("va-retail", "{change: {group: va}, account: {investor_class: retail}}"),
        )
    ),
    "catch-all-validation-at-the-top": Plant(
        edits=(("validation.yaml", "rules:\n", "rules:\n" + VALIDATION_CATCH_ALL),)
    ),
    "catch-all-with-a-contradiction": Plant(
        analysed(
            ("catch-all", "{change: {permission_status: [open, close]}}"),
            ("va-retail", "{change: {group: va}, account: {investor_class: retail}}"),
            ("us-and-hk", "{all: [{change: {market: US}}, {change: {market: HK}}]}"),
        )
    ),
    "contradictory-conditions": Plant(
        analysed(
            ("us-and-hk", "{all: [{change: {market: US}}, {change: {market: HK}}]}"),
            ("open-and-close", "{all: [{change: {permission_status: open}}, {change: {permission_status: close}}]}"),
            ("margin-and-not", "{account: {account_type: margin}, not: {account: {account_type: [margin]}}}"),
            ("lower-case-residency", "{change: {group: va}, account: {residency: cn}}"),
        )
    ),
    "deny-rule-refusing-closes": Plant(
        analysed(
            ("no-options-close", "{change: {product: options, permission_status: close}}"),
            ("warn-close", "{change: {product: stock, permission_status: close}}", "    enforcement: warn\n"),
            ("va-close", "{change: {permission_type: va.OSL, permission_status: close}}"),
        )
    ),
    "shadowed-only-inside-a-window": Plant(
        analysed(
            ("freeze-options", "{change: {product: options, permission_status: open}}", WINDOW),
            ("options-hk", "{change: {permission_type: options.HK, permission_status: open}}"),
            ("options-open", "{change: {product: options, permission_status: open}}"),
            ("options-us-in-window", "{change: {permission_type: options.US, permission_status: open}}", WINDOW),
        )
    ),
    "policy-only-validations-refuse": Plant(analysed(("unknown-types", "{change: {in_catalog: false}}"))),
    "space-too-large-to-judge": Plant(
        analysed(
            (
                "reads-everything",
                f"{{change: {{product: options}}, tenant: [{TENANTS}], account: {{residency: [{RESIDENCIES}]}},"
                " not: {account: {investor_class: retail}},"
                " any: [{account: {account_type: cash}}, {account: {status: deregistered}}]}",
            )
        )
    ),
    # a set that lints clean (with a warning) but fails a shipped regression case: for `rules test` and `diff`
    "freeze-refusing-closes": Plant(FREEZE_REFUSING_CLOSES),
}


@pytest.mark.parametrize("kind", list(PLANTS))
def test_lint_of_a_planted_mistake(goldens: Goldens, tmp_path: Path, kind: str):
    PLANTS[kind].build(tmp_path)
    goldens.check(f"lint/planted-{kind}.txt", "rules", "lint", "--rules", "rules", cwd=tmp_path)


@pytest.fixture
def planted_all(tmp_path: Path) -> Path:
    """tests/rules/planted.py: every planted mistake of issue 12 at once in a copy of examples/broker-policies."""
    rules, _ = planted_rules(tmp_path)
    return rules


def test_every_command_on_the_directory_with_every_planted_mistake(goldens: Goldens, planted_all: Path, tmp_path):
    at = {"cwd": tmp_path}
    goldens.check("lint/planted-all.txt", "rules", "lint", "--rules", "rules", **at)
    goldens.check("test/planted-all.txt", "rules", "test", "--rules", "rules", **at)
    goldens.check("explain/planted-all.txt", "rules", "explain", "--rules", "rules", "--data", '{"changes": []}', **at)
    goldens.check("diff/shipped-vs-planted-all.txt", "rules", "diff", str(SHIPPED_RULES), "rules", **at)
    goldens.check("impact/planted-all.txt", "rules", "impact", "--rules", "rules", **at)


# --- the shipped sets -------------------------------------------------------------------------------------


def test_lint_of_the_shipped_sets(goldens: Goldens):
    goldens.check("lint/shipped.txt", "rules", "lint", "--rules", SHIPPED)
    goldens.check("lint/shipped-default.txt", "rules", "lint")  # ./rules, named absolutely
    goldens.check("lint/broker-policies.txt", "rules", "lint", "--rules", BROKER)


@pytest.mark.parametrize(("name", "directory"), [("shipped", SHIPPED), ("broker-policies", BROKER)])
def test_test_of_the_shipped_sets(goldens: Goldens, tmp_path: Path, name: str, directory: str):
    junit = tmp_path / "report.xml"
    goldens.check(f"test/{name}.txt", "rules", "test", "--rules", directory)
    goldens.check(
        f"test/{name}-coverage.txt",
        "rules",
        "test",
        "--rules",
        directory,
        "--coverage",
        "--min-coverage",
        "100",
        "--junit",
        str(junit),
    )
    goldens.file(f"test/{name}-junit.xml", junit.read_text(encoding="utf-8"))
    goldens.check(f"test/{name}-min-coverage.txt", "rules", "test", "--rules", directory, "--min-coverage", "90")


def test_test_of_a_set_failing_a_case(goldens: Goldens, tmp_path: Path):
    rules = copy_rules(tmp_path)
    (rules / "policies.yaml").write_text(FREEZE_REFUSING_CLOSES, encoding="utf-8")
    junit = tmp_path / "report.xml"
    at = {"cwd": tmp_path}
    goldens.check("test/freeze-refusing-closes.txt", "rules", "test", "--rules", "rules", "--junit", str(junit), **at)
    goldens.file("test/freeze-refusing-closes-junit.xml", junit.read_text(encoding="utf-8"))
    goldens.check("test/freeze-refusing-closes-coverage.txt", "rules", "test", "--rules", "rules", "--coverage", **at)


# (golden name, rules directory, options): one regression case of each kind of verdict, and requests given as
# --data with every option. Each names its time (--at, or a case's own `at`) where a window could matter.
EXPLAINED: list[tuple[str, str, tuple[str, ...]]] = [
    ("shipped-case-first-failing-change-wins", SHIPPED, ("--case", "the first failing change wins over a later one")),
    ("shipped-case-duplicate-before-no-op", SHIPPED, ("--case", "a duplicate is reported before the no-op")),
    ("shipped-case-single-character-wildcard", SHIPPED, ("--case", "a single-character wildcard picks markets")),
    (
        "shipped-case-flag-group-json",
        SHIPPED,
        ("--case", "flag.options is refused as part of the flag group", "--json"),
    ),
    ("shipped-case-refused-before-the-rules", SHIPPED, ("--case", "a change that is not an object is a request error")),
    ("shipped-no-such-case", SHIPPED, ("--case", "no case is named so")),
    (
        "shipped-data",
        SHIPPED,
        (
            "--enable",
            "stock.*",
            "--state",
            "stock.HK=open",
            "--at",
            "2026-11-01T00:00:00Z",
            "--data",
            '{"account_no":"A1","changes":[{"permission_type":"stock.HK","permission_status":"open"},'
            '{"permission_type":"options.US","permission_status":"open"}]}',
        ),
    ),
    ("shipped-data-not-json", SHIPPED, ("--data", "{changes")),
    ("shipped-case-and-data", SHIPPED, ("--case", "x", "--data", "[]")),
    ("broker-policies-case-decides", BROKER, ("--case", "options alone without stock are refused")),
    ("broker-policies-case-warns", BROKER, ("--case", "a warning before a denial is still reported")),
    ("broker-policies-case-warns-json", BROKER, ("--case", "a warning before a denial is still reported", "--json")),
    ("broker-policies-case-dryrun", BROKER, ("--case", "grey-market trading goes through and the caller sees nothing")),
    (
        "broker-policies-case-window",
        BROKER,
        ("--case", "opening withdrawals at the first instant of the freeze is refused"),
    ),
    ("broker-policies-case-attributes", BROKER, ("--case", "a mainland resident may not open Shanghai stock")),
    (
        "broker-policies-case-related-in-one-request",
        BROKER,
        ("--case", "closing stock while opening its options in the same request is refused"),
    ),
    (
        "broker-policies-data",
        BROKER,
        (
            "--state",
            "options.SH=open",
            "--attribute",
            "residency=CN",
            "--attribute",
            "account_type=cash",
            "--at",
            "2025-01-15T08:00:00Z",
            "--data",
            '{"account_no":"A1","changes":[{"permission_type":"account.deposit","permission_status":"open"},'
            '{"permission_type":"stock.SH","permission_status":"close"}]}',
        ),
    ),
    (
        "broker-policies-data-verbose",
        BROKER,
        (
            "--verbose",
            "--state",
            "options.SH=open",
            "--attribute",
            "residency=CN",
            "--attribute",
            "account_type=cash",
            "--at",
            "2025-01-15T08:00:00Z",
            "--data",
            '{"account_no":"A1","changes":[{"permission_type":"account.deposit","permission_status":"open"},'
            '{"permission_type":"stock.SH","permission_status":"close"}]}',
        ),
    ),
    (
        "broker-policies-data-json",
        BROKER,
        (
            "--attribute",
            "investor_class=retail",
            "--at",
            "2027-03-01T00:00:00Z",
            "--json",
            "--data",
            '[{"permission_type":"otc.HK","permission_status":"open"},{"permission_type":"va.OSL","permission_status":"open"}]',
        ),
    ),
]


@pytest.mark.parametrize(("name", "directory", "options"), EXPLAINED, ids=[e[0] for e in EXPLAINED])
def test_explain(goldens: Goldens, name: str, directory: str, options: tuple[str, ...]):
    goldens.check(f"explain/{name}.txt", "rules", "explain", "--rules", directory, *options)


def _swap(path: Path, first: str, second: str) -> None:
    """Swap two rules of a rules file (each a `  - id: X` block), as tests/cli/test_rules_diff.py does."""
    text = path.read_text(encoding="utf-8")
    head, *blocks = text.split("\n  - id: ")
    names = [block.split("\n", 1)[0] for block in blocks]
    i, j = names.index(first), names.index(second)
    blocks[i], blocks[j] = blocks[j], blocks[i]
    path.write_text("\n  - id: ".join([head, *blocks]).rstrip("\n") + "\n", encoding="utf-8")


def test_diff_of_the_shipped_sets(goldens: Goldens):
    goldens.check("diff/shipped-vs-broker-policies.txt", "rules", "diff", SHIPPED, BROKER)
    goldens.check("diff/shipped-vs-broker-policies-json.txt", "rules", "diff", "--json", SHIPPED, BROKER)
    goldens.check("diff/broker-policies-vs-shipped.txt", "rules", "diff", BROKER, SHIPPED)
    goldens.check("diff/shipped-vs-shipped.txt", "rules", "diff", SHIPPED, SHIPPED)
    goldens.check("diff/broker-policies-vs-broker-policies-json.txt", "rules", "diff", "--json", BROKER, BROKER)
    goldens.check("diff/shipped-vs-missing.txt", "rules", "diff", SHIPPED, "no-such-directory")


def test_diff_of_edits(goldens: Goldens, tmp_path: Path):
    at = {"cwd": tmp_path}
    shipped = str(SHIPPED_RULES)
    freeze = copy_rules(tmp_path / "freeze")
    (freeze / "policies.yaml").write_text(FREEZE_REFUSING_CLOSES, encoding="utf-8")
    goldens.check("diff/shipped-vs-freeze-refusing-closes.txt", "rules", "diff", shipped, "freeze/rules", **at)
    goldens.check(
        "diff/shipped-vs-freeze-refusing-closes-json.txt", "rules", "diff", "--json", shipped, "freeze/rules", **at
    )
    reordered = copy_rules(tmp_path / "reordered")
    _swap(reordered / "validation.yaml", "type-required", "status-required")
    goldens.check("diff/shipped-vs-validations-reordered.txt", "rules", "diff", shipped, "reordered/rules", **at)
    harmless = tmp_path / "harmless"
    shutil.copytree(BROKER_POLICIES, harmless)
    _swap(harmless / "policies.yaml", "options-need-stock", "stock-close-needs-options-closed")
    goldens.check(
        "diff/broker-policies-vs-harmless-reorder.txt", "rules", "diff", str(BROKER_POLICIES), "harmless", **at
    )
    reworded = copy_rules(tmp_path / "reworded")
    path = reworded / "validation.yaml"
    path.write_text(path.read_text().replace("message: is not enabled for this tenant", "message: is not enabled"))
    goldens.check("diff/shipped-vs-message-reworded.txt", "rules", "diff", shipped, "reworded/rules", **at)
    goldens.check(
        "diff/shipped-vs-message-reworded-json.txt", "rules", "diff", "--json", shipped, "reworded/rules", **at
    )


# --- impact (and explain --trace): decisions recorded by the real service ----------------------------------

CLOSE_FREEZE = """
policies:
  - id: us-close-freeze
    description: Closing US stock is frozen (a planted mistake; it refuses customers' closes).
    when:
      change: {permission_type: stock.US, permission_status: close}
    message: closing stock.US is frozen
"""

# (trace id, credentials, body, the code the service answers), as tests/cli/test_rules_impact.py sends them.
OTHER = Credentials("other-key", "other-secret", "other-token")
TRAFFIC: list[tuple[str, Credentials, bytes, int]] = [
    ("open-us", Credentials(), body_of("ACC-1", ("stock.US", "open")), 0),
    ("noop-us", Credentials(), body_of("ACC-1", ("stock.US", "open")), 400103),
    ("close-hk", Credentials(), body_of("ACC-1", ("stock.HK", "close")), 0),
    ("close-us", Credentials(), body_of("ACC-1", ("account.exchange", "open"), ("stock.US", "close")), 0),
    ("other-sg", OTHER, body_of("OTHER-1", ("stock.SG", "open")), 0),
    ("open-sg", Credentials(), body_of("ACC-1", ("stock.SG", "open")), 0),
    ("flag", Credentials(), body_of("ACC-1", ("flag.options", "open")), 400101),
    ("options-alone", Credentials(), body_of("ACC-2", ("options.US", "open")), 0),
    ("unknown", Credentials(), body_of("ACC-2", ("stock.us", "open")), 400101),
]


def proposed_edit(target: Path) -> Path:
    """SG leaves the catalog and KR joins it; closing stock.US is refused; the no-op message is reworded."""
    rules = copy_rules(target)
    catalog = rules / "catalog.yaml"
    catalog.write_text(catalog.read_text().replace("SZ, SG, JP", "SZ, JP, KR"))
    (rules / "policies.yaml").write_text(CLOSE_FREEZE)
    validation = rules / "validation.yaml"
    validation.write_text(
        validation.read_text().replace(
            'message: "the permission is already {current_status}"', 'message: "is {current_status} already"'
        )
    )
    for case_file in (rules / "cases").glob("*.yaml"):  # the cases of the old catalog are not the point here
        case_file.unlink()
    return rules


def test_impact_and_explain_trace_over_recorded_decisions(goldens: Goldens, api: Any, seeded: Settings, tmp_path):
    for n, (trace, creds, body, code) in enumerate(TRAFFIC):
        stamp = f"{time.time():.0f}.{n:06d}"  # a signature of its own for each call
        answer = api.update(body, creds=creds, headers={"X-Trace-Id": trace}, timestamp=stamp).get_json()
        assert answer["code"] == code, (trace, answer)
    env = db_env(seeded)
    proposed_edit(tmp_path / "proposed")
    at: dict[str, Any] = {"cwd": tmp_path, "env": env}
    edit = ("rules", "impact", "--rules", "proposed/rules", "--old-rules", str(SHIPPED_RULES))
    goldens.check("impact/close-freeze.txt", *edit, **at)
    goldens.check("impact/close-freeze-markdown.txt", *edit, "--format", "markdown", **at)
    goldens.check("impact/close-freeze-json.txt", *edit, "--format", "json", **at)
    goldens.check("impact/close-freeze-limit-1.txt", *edit, "--limit", "1", **at)
    goldens.check("impact/close-freeze-limit-1-markdown.txt", *edit, "--format", "markdown", "--limit", "1", **at)
    goldens.check("impact/close-freeze-sample-2-seed-7-json.txt", *edit, "--json", "--sample", "2", "--seed", "7", **at)
    goldens.check("impact/close-freeze-since-later.txt", *edit, "--since", "2999-01-01T00:00:00Z", **at)
    goldens.check("impact/close-freeze-limit-and-sample.txt", *edit, "--limit", "1", "--sample", "1", **at)
    broker = ("rules", "impact", "--rules", str(BROKER_POLICIES), "--old-rules", str(SHIPPED_RULES))
    goldens.check("impact/broker-policies.txt", *broker, **at)
    goldens.check("impact/broker-policies-markdown.txt", *broker, "--format", "markdown", **at)
    goldens.check("impact/broker-policies-json.txt", *broker, "--json", **at)
    # Without --old-rules: the version the service published (its worker adopted the shipped set), whatever this
    # host's RULES_DIR holds.
    served = {**env, "RULES_DIR": "proposed/rules", "INSTANCE_DIR": str(seeded.instance_dir)}
    goldens.check(
        "impact/close-freeze-old-rules-from-the-live-version.txt", "rules", "impact", cwd=tmp_path, env=served
    )
    # The proposed set as the old one: the decisions it already decides otherwise than recorded are their own
    # section, never flips of the edit.
    itself = ("rules", "impact", "--old-rules", "proposed/rules")
    goldens.check("impact/close-freeze-old-rules-decided-otherwise.txt", *itself, cwd=tmp_path, env=served)
    goldens.check(
        "impact/close-freeze-old-rules-decided-otherwise-markdown.txt",
        *itself,
        "--format",
        "markdown",
        cwd=tmp_path,
        env=served,
    )
    for trace in ("close-us", "options-alone", "flag"):
        goldens.check(f"explain/trace-{trace}.txt", "rules", "explain", "--rules", SHIPPED, "--trace", trace, env=env)
    goldens.check(
        "explain/trace-close-us-json.txt",
        "rules",
        "explain",
        "--rules",
        BROKER,
        "--trace",
        "close-us",
        "--json",
        env=env,
    )
    goldens.check("explain/trace-unknown.txt", "rules", "explain", "--trace", "never-sent", env=env)
