"""One rules directory holding every planted mistake of issue 12's acceptance 1, and where each must be reported.

planted_rules() copies examples/broker-policies (the shipped catalog, attributes and validations, eleven policies
and their cases) and plants, all at once: a YAML syntax error, a duplicate id, an unknown fact, an unknown
outcome, a bad glob, a missing message, a case naming a missing rule, a placeholder typo, a lower-case market
(in a condition and in the catalog), a duplicated catalog value, an empty file, a shadowed rule, a catch-all at
the top, a contradictory condition, an outcome that does not fit the rule's field and a deny rule that refuses
closes; and besides them a placeholder meaningless for its rule, an expired window and a mistake in
attributes.yaml (which a broken policies.yaml must not hide).

Positions are found in the written files (by the text planted), never typed in by hand.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.rules.support import BROKER_POLICIES

CATCH_ALL = """\
  - id: everything-frozen
    description: Planted, a catch-all at the top.
    when: {change: {permission_type: "*"}}
    message: nothing can be changed

  - id: broken-yaml
    description: Planted, a YAML syntax error (a second colon in a plain message).
    when: {change: {product: warrant, market: SG, permission_status: open}}
    message: note: SG warrants are suspended

"""

PLANTED_POLICIES = """
  - id: ipo-japan-closed
    description: Planted, shadowed by ipo-closed-markets (every change it matches, that one refuses first).
    when: {change: {permission_type: ipo.JP, permission_status: open}}
    message: IPO subscriptions in Japan are not offered

  - id: us-and-hk-options
    description: Planted, a condition that can never hold (a market both US and HK).
    when:
      change: {product: options, market: US, permission_status: open}
      all:
        - change: {market: HK}
    message: never shown

  - id: no-warrants
    description: Planted, a deny rule that also refuses closing warrants.
    when: {change: {product: warrant}}
    message: warrants are not offered

  - id: ipo-closed-markets
    description: Planted, a second rule with an id already used.
    when: {change: {product: ipo, market: HK, permission_status: open}}
    message: IPO subscriptions in Hong Kong are not offered

  - id: options-by-prodcut
    description: Planted, an unknown fact.
    when: {change: {prodcut: options, permission_status: open}}
    message: options are not offered

  - id: hk-options-glob
    description: Planted, a glob with characters a glob does not have.
    when: {change: {permission_type: "options.[HU]*", permission_status: open}}
    message: these options are not offered

  - id: no-message
    description: Planted, no message.
    when: {change: {product: stockgrey, permission_status: close}}

  - id: markt-typo
    description: Planted, a placeholder typo.
    when: {change: {product: warrant, market: JP, permission_status: open}}
    message: "warrants on {markt} are not offered"

  - id: us-lower-case
    description: Planted, a lower-case market code in a condition.
    when: {change: {product: stock, market: us, permission_status: open}}
    message: US stock cannot be opened

  - id: account-market
    description: Planted, a placeholder an account.* rule cannot bind.
    when: {change: {group: account, name: otc, permission_status: open}}
    message: "account OTC cannot be opened on {market}"

  - id: old-freeze
    description: Planted, a freeze that ended.
    from: 2024-01-01
    until: 2024-02-01
    when: {change: {permission_type: account.exchange, permission_status: open}}
    message: exchanges were frozen in January 2024
"""

PLANTED_VALIDATIONS = """
  - id: status-unknown-outcome
    description: Planted, an outcome that is no code.
    field: permission_status
    when: {change: {permission_status: OPEN}}
    outcome: INVALID_STATUS
    message: is not a status

  - id: trade-fix-closed
    description: Planted, a rule on permission_type that reports a status code.
    field: permission_type
    when: {change: {permission_type: trade.fix, permission_status: open}}
    outcome: INVALID_PERMISSION_STATUS
    message: trade.fix cannot be opened
"""

PLANTED_CASE = """\
cases:
  - name: a Japanese IPO is refused by the planted rule
    changes: [{permission_type: ipo.JP, permission_status: open}]
    expect:
      code: PERMISSION_POLICY_DENIED
      failure_index: 0
      rule_id: ipo-closed-market
"""

PLANTED_ATTRIBUTE = """
  - name: investor_class
    description: Planted, declared a second time.
    values: [retail]
"""


@dataclass(frozen=True)
class Planted:
    """A planted mistake and how lint must report it."""

    mistake: str
    path: str  # as lint shows it, run from the directory holding rules/
    line: int
    column: int
    rule_id: str
    says: str  # a part of the problem's text
    severity: str = "error"

    @property
    def prefix(self) -> str:
        """How the problem's line starts: path:line:column: rule-id: (warning: )."""
        shown = "" if self.severity == "error" else f"{self.severity}: "
        return f"{self.path}:{self.line}:{self.column}: {self.rule_id}: {shown}"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not unique in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def locate(path: Path, line_needle: str, needle: str | None = None, *, nth: int = 0) -> tuple[int, int]:
    """(line, column), 1-based, of needle on the nth line containing line_needle (column 1 without needle)."""
    hits = [(n, line) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)]
    found = [(n, line) for n, line in hits if line_needle in line]
    assert len(found) > nth, f"{line_needle!r} is on lines {[n for n, _ in found]} of {path}"
    number, line = found[nth]
    if needle is None:
        return number, 1
    return number, line.index(needle) + 1


def key_of(path: Path, rule_id: str, key: str, *, nth: int = 0) -> tuple[int, int]:
    """Where `key:` is written in the rule (or case) with this id (the nth one with it), 1-based."""
    start, _ = locate(path, f"- id: {rule_id}", nth=nth)
    lines = path.read_text(encoding="utf-8").splitlines()
    for number in range(start, len(lines) + 1):
        line = lines[number - 1]
        if line.strip().removeprefix("- ").startswith(f"{key}:"):
            return number, line.index(f"{key}:") + 1
    raise AssertionError(f"{rule_id} has no {key} in {path}")


def planted_rules(target: Path) -> tuple[Path, list[Planted]]:
    """target/rules with every planted mistake, and what lint must report for each static one (the four only
    whole-set analysis finds are described in tests/rules/tools/lint/test_directory.py, SEMANTIC_EXPECTATIONS)."""
    rules = target / "rules"
    shutil.copytree(BROKER_POLICIES, rules)
    catalog, validation, policies = rules / "catalog.yaml", rules / "validation.yaml", rules / "policies.yaml"
    attributes, cases = rules / "attributes.yaml", rules / "cases"
    _edit(catalog, "markets: [HK, US, SH, SZ, SG, JP, UK, DE, AU]", "markets: [HK, US, SH, SZ, SG, JP, UK, DE, AU, nz]")
    _edit(catalog, "names: [OSL, HAS]", "names: [OSL, HAS, OSL]")
    _append(validation, PLANTED_VALIDATIONS)
    _edit(policies, "policies:\n", "policies:\n" + CATCH_ALL)
    _append(policies, PLANTED_POLICIES)
    _append(attributes, PLANTED_ATTRIBUTE)
    (cases / "planted.yaml").write_text(PLANTED_CASE, encoding="utf-8")
    (cases / "empty.yaml").write_text("", encoding="utf-8")

    def at(mistake: str, path: Path, place: tuple[int, int], rule_id: str, says: str, severity: str = "error"):
        return Planted(mistake, f"rules/{path.relative_to(rules).as_posix()}", *place, rule_id, says, severity)

    return rules, [
        at("YAML syntax error", policies, locate(policies, "message: note: SG", ": SG"), "-", "mapping values"),
        at(
            "duplicate id",
            policies,
            key_of(policies, "ipo-closed-markets", "id", nth=1),
            "ipo-closed-markets",
            "duplicate rule id 'ipo-closed-markets'",
        ),
        at(
            "unknown fact",
            policies,
            locate(policies, "prodcut:", "prodcut"),
            "options-by-prodcut",
            "unknown change field 'prodcut'",
        ),
        at(
            "unknown outcome",
            validation,
            key_of(validation, "status-unknown-outcome", "outcome"),
            "status-unknown-outcome",
            "unknown outcome 'INVALID_STATUS'",
        ),
        at(
            "bad glob",
            policies,
            locate(policies, "options.[HU]*", "permission_type"),
            "hk-options-glob",
            "glob 'options.[HU]*'",
        ),
        at("missing message", policies, key_of(policies, "no-message", "id"), "no-message", "missing key 'message'"),
        at(
            "case naming a missing rule",
            cases / "planted.yaml",
            locate(cases / "planted.yaml", "rule_id: ipo-closed-market", "rule_id"),
            "a Japanese IPO is refused by the planted rule",
            "rule_id 'ipo-closed-market' names no rule",
        ),
        at(
            "placeholder typo",
            policies,
            key_of(policies, "markt-typo", "message"),
            "markt-typo",
            "unknown placeholder {markt}",
        ),
        at(
            "lower-case market",
            policies,
            locate(policies, "market: us", "market"),
            "us-lower-case",
            "market codes are upper case ('US')",
        ),
        at(
            "lower-case market in the catalog",
            catalog,
            locate(catalog, "markets:", "nz"),
            "catalog",
            "market code 'nz' must be upper case",
        ),
        at(
            "duplicated catalog value",
            catalog,
            locate(catalog, "names: [OSL, HAS, OSL]", "OSL]"),
            "catalog",
            "'OSL' is listed twice",
        ),
        at("empty file", cases / "empty.yaml", (1, 1), "cases", "file is empty"),
        at(
            "outcome/field mismatch",
            validation,
            key_of(validation, "trade-fix-closed", "outcome"),
            "trade-fix-closed",
            "but this rule's field is permission_type",
        ),
        at(
            "meaningless placeholder",
            policies,
            key_of(policies, "account-market", "message"),
            "account-market",
            "{market} shows nothing for account.otc",
        ),
        at(
            "expired window",
            policies,
            key_of(policies, "old-freeze", "until"),
            "old-freeze",
            "expired on 2024-02-01 00:00 UTC; it never applies again",
            "warning",
        ),
        at(
            "a mistake in attributes.yaml",
            attributes,
            locate(attributes, "- name: investor_class", "name", nth=1),
            "investor_class",
            "declared twice",
        ),
    ]
