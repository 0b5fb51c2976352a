"""permctl accounts import (issue 10): JSONL and CSV through the account service, refused lines named with their
number, re-import unchanged, a failed batch leaves nothing, and (slow) 50,000 lines within the target time."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from app.settings import Settings
from tests.cli.runner import db_env, invoke, ok
from tests.service.test_accounts import AccountAuditFault

SUMMARY = re.compile(r"(\d+) lines: (\d+) created, (\d+) updated, (\d+) unchanged, (\d+) refused")


def line(account_no: str, status: str = "active", tenant: str = "sg_mexc", **extra: Any) -> str:
    return json.dumps({"tenant": tenant, "account_no": account_no, "status": status, **extra})


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(settings: Settings, path: Path, *args: str) -> Any:
    return invoke("accounts", "import", str(path), *args, env=db_env(settings))


def tally(result: Any) -> tuple[int, ...]:
    """(lines, created, updated, unchanged, refused) from the summary (of a run, or of the stdout of one)."""
    stdout = result if isinstance(result, str) else result.stdout
    found = SUMMARY.search(stdout)
    assert found, stdout
    return tuple(int(n) for n in found.groups())


def accounts(settings: Settings, prefix: str) -> dict[str, tuple[str, dict[str, str]]]:
    """account_no -> (status, attributes) for sg_mexc's accounts whose number starts with prefix."""
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT a.origin_id, a.status, x.name, x.value FROM accounts a "
                    "LEFT JOIN account_attributes x ON x.account_id = a.id "
                    "WHERE a.tenant_id = 'sg_mexc' AND a.origin_id LIKE :p"
                ),
                {"p": prefix + "%"},
            ).all()
    finally:
        engine.dispose()
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for account_no, status, name, value in rows:
        found.setdefault(account_no, (status, {}))
        if name is not None:
            found[account_no][1][name] = value
    return found


def audit_count(settings: Settings, prefix: str) -> int:
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                text("SELECT count(*) FROM account_audit WHERE account_no LIKE :p"), {"p": prefix + "%"}
            ).scalar_one()
    finally:
        engine.dispose()


def test_jsonl_creates_updates_and_a_second_run_changes_nothing(seeded: Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path / "accounts.jsonl",
        [
            line("IMP-1", attributes={"account_type": "cash", "residency": "SG"}),
            line("IMP-2", "deregistered"),
            "",
            line("ACC-1", attributes={"investor_class": "professional"}),
            line("ACC-2"),
        ],
    )
    first = run(seeded, path)
    assert tally(ok(first)) == (4, 2, 1, 1, 0)
    assert "progress: 4 lines done (100% read)" in first.stderr  # not a terminal: plain progress lines
    assert accounts(seeded, "IMP-") == {
        "IMP-1": ("active", {"account_type": "cash", "residency": "SG"}),
        "IMP-2": ("deregistered", {}),
    }
    assert accounts(seeded, "ACC-1") == {"ACC-1": ("active", {"investor_class": "professional"})}
    audited = audit_count(seeded, "")
    assert tally(ok(run(seeded, path))) == (4, 0, 0, 4, 0)
    assert audit_count(seeded, "") == audited  # nothing changed, nothing audited

    # attributes omitted: kept; {}: cleared.
    write(path, [line("IMP-1"), line("ACC-1", attributes={})])
    assert tally(ok(run(seeded, path))) == (2, 0, 1, 1, 0)
    assert accounts(seeded, "IMP-1")["IMP-1"][1] == {"account_type": "cash", "residency": "SG"}
    assert accounts(seeded, "ACC-1")["ACC-1"][1] == {}


def test_each_refused_line_is_named_and_the_rest_is_imported(seeded: Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path / "accounts.jsonl",
        [
            line("BAD-1", attributes={"colour": "red"}),
            line("OK-1"),
            "{not json",
            line("BAD-2", "closed"),
            line("ACC-GONE"),
            line("BAD-3", tenant="nobody"),
            json.dumps({"tenant": "sg_mexc", "account_no": "BAD-4", "status": "active", "attribute": {}}),
            line("BAD-5", attributes={"residency": "sg"}),
            line("OK-2", attributes={"residency": "HK"}),
        ],
    )
    result = run(seeded, path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert tally(result) == (9, 2, 0, 0, 7)
    reported = dict(re.findall(rf"^{re.escape(str(path))}:(\d+): (.*)$", result.stderr, re.MULTILINE))
    assert reported == {
        "1": "attributes.colour 'red': not a declared attribute (declared: account_type, residency, investor_class)",
        "3": reported["3"],
        "4": "status: 'closed' is not one of: active, deregistered",
        "5": "account_no 'ACC-GONE': the account is deregistered; it cannot be changed or reactivated",
        "6": "tenant 'nobody': no such tenant",
        "7": "attribute: unknown key",
        "8": "attributes.residency 'sg': not allowed (allowed: text matching [A-Z]{2})",
    }
    assert reported["3"].startswith("line is not valid JSON")
    assert result.stderr.strip().splitlines()[-1] == "Error: 7 line(s) refused: 1, 3, 4, 5, 6, 7, 8"
    assert set(accounts(seeded, "OK-")) == {"OK-1", "OK-2"}
    assert accounts(seeded, "BAD-") == {}


def test_csv_columns_are_attributes_and_an_empty_cell_is_unset(seeded: Settings, tmp_path: Path) -> None:
    path = tmp_path / "accounts.csv"
    path.write_text(
        "\ufefftenant,account_no,status,account_type,residency,investor_class\n"
        "sg_mexc,CSV-1,active,margin,SG,\n"
        "sg_mexc,CSV-2,active,,,retail\n"
        "sg_mexc,CSV-3,active,cash\n"
        'sg_mexc,"CSV-4",deregistered,cash,"HK",professional\n',
        encoding="utf-8",
    )
    result = run(seeded, path)
    assert result.returncode == 1
    assert tally(result) == (4, 3, 0, 0, 1)
    assert f"{path}:4: expected 6 fields as in the header, got 4" in result.stderr
    assert accounts(seeded, "CSV-") == {
        "CSV-1": ("active", {"account_type": "margin", "residency": "SG"}),
        "CSV-2": ("active", {"investor_class": "retail"}),
        "CSV-4": ("deregistered", {"account_type": "cash", "residency": "HK", "investor_class": "professional"}),
    }
    # A row is the account's whole attribute set: emptied cells remove attributes.
    path.write_text("tenant,account_no,status,residency\nsg_mexc,CSV-1,active,\n", encoding="utf-8")
    assert tally(ok(run(seeded, path))) == (1, 0, 1, 0, 0)
    assert accounts(seeded, "CSV-1") == {"CSV-1": ("active", {})}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.csv", "tenant,account_no\nsg_mexc,X\n", "line 1: the CSV header must name tenant, account_no, status"),
        ("a.csv", "tenant,account_no,status,x,x\n", "x named twice"),
        ("a.csv", "", "the CSV file is empty"),
        ("a.txt", "{}", "the file must end in .jsonl or .csv"),
    ],
    ids=["header-missing-status", "column-twice", "empty", "extension"],
)
def test_a_file_that_cannot_be_imported_is_one_line(seeded: Settings, tmp_path: Path, name, content, message) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    result = run(seeded, path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"Error: {path}: ")
    assert message in result.stderr.strip().splitlines()[-1]


def test_a_missing_file_is_one_line(seeded: Settings, tmp_path: Path) -> None:
    result = run(seeded, tmp_path / "nothere.jsonl")
    assert result.returncode == 1 and result.stderr.strip() == f"Error: {tmp_path / 'nothere.jsonl'}: no such file"


def test_a_batch_that_fails_to_write_leaves_nothing_of_itself(seeded: Settings, tmp_path: Path) -> None:
    """Batches of two: the first is written, the second fails on its second account's audit row (after its first
    account, attributes and audit row were sent), so neither account of it exists; the import stops there."""
    path = write(
        tmp_path / "accounts.jsonl", [line(f"BATCH-{i}", attributes={"account_type": "cash"}) for i in range(6)]
    )
    engine = create_engine(seeded.database_url)
    fault = AccountAuditFault(engine, "BATCH-3")
    fault.arm()
    try:
        result = run(seeded, path, "--batch-size", "2")
    finally:
        fault.disarm()
        engine.dispose()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stdout.startswith("imported") and tally(result) == (2, 2, 0, 0, 0)
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: lines 3-4: the accounts could not be written; nothing was persisted (the lines before 3 are imported)"
    )
    assert set(accounts(seeded, "BATCH-")) == {"BATCH-0", "BATCH-1"}
    assert audit_count(seeded, "BATCH-") == 2
    # Run again: the rest comes in, what was in is unchanged.
    assert tally(ok(run(seeded, path, "--batch-size", "2"))) == (6, 4, 0, 2, 0)


def test_every_change_is_audited_with_the_line_it_came_from(seeded: Settings, tmp_path: Path) -> None:
    path = write(tmp_path / "accounts.jsonl", [line("AUD-1"), line("AUD-1", attributes={"residency": "SG"})])
    ok(run(seeded, path))
    engine = create_engine(seeded.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT trace_id, app_key, status_before FROM account_audit WHERE account_no = 'AUD-1' ORDER BY id"
                )
            ).all()
    finally:
        engine.dispose()
    assert [(r.app_key, r.status_before) for r in rows] == [("permctl", None), ("permctl", "active")]
    assert [r.trace_id.rsplit(":", 1)[1] for r in rows] == ["1", "2"]
    assert rows[0].trace_id.startswith("accounts-import-")


def test_an_account_number_that_breaks_the_rule_is_refused_in_either_format(seeded: Settings, tmp_path: Path) -> None:
    """Issue 18 #6: ' NUM-1' beside 'NUM-1' was a second account; spaces only were an account."""
    rule = "account_no: must be 1 to 64 printable ASCII characters with no leading or trailing space"
    jsonl = write(tmp_path / "accounts.jsonl", [line("NUM-1"), line(" NUM-1"), line("NUM-1 "), line("   ")])
    result = run(seeded, jsonl)
    assert result.returncode == 1 and tally(result) == (4, 1, 0, 0, 3)
    for number in (2, 3, 4):
        assert f"{jsonl}:{number}: {rule} (it has a space at the start or end)" in result.stderr
    csv_file = tmp_path / "accounts.csv"
    csv_file.write_text("tenant,account_no,status\nsg_mexc, NUM-2,active\nsg_mexc,NUM-2,active\n", encoding="utf-8")
    result = run(seeded, csv_file)
    assert result.returncode == 1 and tally(result) == (2, 1, 0, 0, 1)
    assert f"{csv_file}:2: {rule} (it has a space at the start or end)" in result.stderr
    assert set(accounts(seeded, "NUM-")) == {"NUM-1", "NUM-2"}
    assert accounts(seeded, " ") == {}


def test_refusals_print_in_line_order(seeded: Settings, tmp_path: Path) -> None:
    """Issue 18 #10: a line that cannot be read was printed at once, the service's refusals of the lines before it
    only once their batch was written."""
    path = write(
        tmp_path / "accounts.jsonl",
        [
            line("ORD-1", attributes={"colour": "red"}),
            "{not json",
            line("ORD-3"),
            line("ORD-4", "closed"),
            "[]",
            line("ORD-6", tenant="nobody"),
        ],
    )
    result = run(seeded, path, "--batch-size", "4")
    assert result.returncode == 1 and tally(result) == (6, 1, 0, 0, 5)
    printed = [int(n) for n in re.findall(rf"^{re.escape(str(path))}:(\d+): ", result.stderr, re.MULTILINE)]
    assert printed == [1, 2, 4, 5, 6]
    assert result.stderr.strip().splitlines()[-1] == "Error: 5 line(s) refused: 1, 2, 4, 5, 6"


def test_a_jsonl_file_may_begin_with_a_byte_order_mark(seeded: Settings, tmp_path: Path) -> None:
    """Issue 18 #10: as a CSV file may; line 1 was refused as not valid JSON."""
    path = tmp_path / "accounts.jsonl"
    path.write_text("\ufeff" + line("BOM-1") + "\n" + line("BOM-2") + "\n", encoding="utf-8")
    assert tally(ok(run(seeded, path))) == (2, 2, 0, 0, 0)
    assert set(accounts(seeded, "BOM-")) == {"BOM-1", "BOM-2"}


def test_a_csv_record_over_several_lines_is_named_by_its_first(seeded: Settings, tmp_path: Path) -> None:
    """Issue 18 #10: csv.reader's line number after a record is its last line."""
    path = tmp_path / "accounts.csv"
    path.write_text(
        "tenant,account_no,status,residency\n"
        'sg_mexc,ML-1,active,"S\nG"\n'  # lines 2-3: a newline inside a value
        "sg_mexc,ML-2,active,SG\n"  # line 4
        'sg_mexc,ML-3,"act\n\nive",SG\n'  # lines 5-7
        "sg_mexc,ML-4,active,HK\n",  # line 8
        encoding="utf-8",
    )
    result = run(seeded, path)
    assert result.returncode == 1 and tally(result) == (4, 2, 0, 0, 2)
    printed = re.findall(rf"^{re.escape(str(path))}:(\d+): (.*)$", result.stderr, re.MULTILINE)
    assert [n for n, _ in printed] == ["2", "5"], printed
    assert printed[1][1].startswith("status: 'act")
    assert set(accounts(seeded, "ML-")) == {"ML-2", "ML-4"}
