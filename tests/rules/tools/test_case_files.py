"""How a regression case file is read: every mistake lint reports for a case (text, line and column, byte for
byte), and the cases read from a file, pinned for the files under case_files/ (each mistake a case can make)."""

from __future__ import annotations

import shutil
from pathlib import Path

from app.rules.language.loader import load_rule_set
from app.rules.tools.cases import load_cases
from tests.support import SHIPPED_RULES

CASE_FILES = Path(__file__).parent / "case_files"
EXPECTED = CASE_FILES / "expected.txt"


def _rules_with_case_files(target: Path) -> Path:
    rules = target / "rules"
    shutil.copytree(SHIPPED_RULES, rules)
    shutil.rmtree(rules / "cases")
    shutil.copytree(CASE_FILES, rules / "cases", ignore=shutil.ignore_patterns("*.txt"))
    (rules / "cases" / "nested").mkdir()
    (rules / "cases" / "nested" / "ignored.yaml").write_text("not: read\n", encoding="utf-8")  # one level only
    (rules / "cases" / "notes.txt").write_text("not a case file\n", encoding="utf-8")
    return rules


def read_every_way(target: Path) -> str:
    """The problems and the cases load_cases gives for the case files: against the loaded rule set, against
    the declared ids, catalog and attribute declarations of a set that did not load, and against nothing."""
    rules = _rules_with_case_files(target)
    rule_set = load_rule_set(rules)
    ways = {
        "against the rule set": {"rule_set": rule_set},
        "against the declared ids, catalog and attributes": {
            "rule_set": None,
            "rule_ids": {r.id for r in rule_set.rules},
            "catalog": rule_set.catalog,
            "attributes": rule_set.attributes,
        },
        "against nothing": {"rule_set": None},
    }
    out: list[str] = []
    for way, options in ways.items():
        cases, problems = load_cases(rules, **options)  # type: ignore[arg-type]
        out.append(f"## {way}: {len(problems)} problems, {len(cases)} cases")
        out += [str(p) for p in problems]
        out += [repr(c) for c in cases]
    return "\n".join(out).replace(str(target), "<tmp>") + "\n"


def test_every_mistake_of_a_case_file_is_reported_as_it_always_was(tmp_path: Path):
    assert read_every_way(tmp_path) == EXPECTED.read_text(encoding="utf-8")


if __name__ == "__main__":  # after a deliberate change: python -m tests.rules.tools.test_case_files
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        EXPECTED.write_text(read_every_way(Path(directory)), encoding="utf-8")
