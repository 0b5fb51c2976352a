"""The state audit's document (report.py) for people: text for a terminal, markdown for a ticket, CSV for a
spreadsheet. Every format shows every section: deny violations (with the count per rule and per tenant), warn
and dryrun hits, open permissions outside the catalog, those the tenant no longer enables, and the
deregistered accounts skipped."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from app.rules.tools.audit_state.report import FINDING_FIELDS

# A spreadsheet reads a cell starting with one of these as a formula (OWASP, CSV injection): such a cell gets a
# leading single quote, which shows the text as written.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = ("section", *FINDING_FIELDS)
SECTIONS = (  # key of the document, title, whether a row names a rule
    ("violations", "Violations (deny): accounts that hold what they could not open now", True),
    ("hits", "Warn and dryrun hits", True),
    ("outside_catalog", "Open permissions outside the catalog", False),
    ("not_enabled", "Open permissions the tenant's config no longer enables", False),
)


def _header(doc: Mapping[str, Any]) -> str:
    return (
        f"State audit: {doc['accounts_checked']} active account(s) judged against the holding policies of rule set "
        f"{doc['rule_set_version']} at {doc['judged_at']}."
    )


SKIPPED = "Deregistered accounts skipped (not judged)"


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"'{name}' {n}" for name, n in counts.items())


def _verdict(doc: Mapping[str, Any]) -> str:
    n = len(doc["violations"])
    if not n:
        return "No deny violation."
    return f"{n} deny violation(s): by rule {_counts(doc['by_rule'])}; by tenant {_counts(doc['by_tenant'])}."


def text(doc: Mapping[str, Any]) -> str:
    """For a terminal: a header, each section with one line per row, and the verdict."""
    lines = [_header(doc), ""]
    for key, title, ruled in SECTIONS:
        rows: Sequence[Mapping[str, str]] = doc[key]
        lines.append(f"{title}: {len(rows) or 'none'}")
        for row in rows:
            where = f"  {row['tenant']} {row['account_no']} '{row['permission_type']}'"
            lines.append(f"{where}: {row['rule_id']} ({row['enforcement']}): {row['message']}" if ruled else where)
        lines.append("")
    lines += [f"{SKIPPED}: {doc['accounts_skipped']}", "", _verdict(doc)]
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown(doc: Mapping[str, Any]) -> str:
    """For a ticket or pull request: a summary, then one table per section."""
    lines = ["# State audit", "", _header(doc), "", _verdict(doc), ""]
    for key, title, ruled in SECTIONS:
        rows: Sequence[Mapping[str, str]] = doc[key]
        lines += [f"## {title} ({len(rows)})", ""]
        if not rows:
            lines += ["None.", ""]
            continue
        columns = FINDING_FIELDS if ruled else FINDING_FIELDS[:3]
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in rows]
        lines.append("")
    lines += [f"## {SKIPPED}", "", f"{doc['accounts_skipped']} account(s).", ""]
    return "\n".join(lines)


def escaped(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: one starting like a formula gets a leading single quote."""
    cell = str(value)
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def csv_text(doc: Mapping[str, Any]) -> str:
    """For a spreadsheet: one row per finding, its section first; the counts of accounts checked and skipped
    as rows of their own (their number in the message column)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    blank = [""] * (len(FINDING_FIELDS) - 1)
    writer.writerow(["accounts_checked", *blank, doc["accounts_checked"]])
    writer.writerow(["accounts_skipped", *blank, doc["accounts_skipped"]])
    for key, _, _ in SECTIONS:
        for row in doc[key]:
            writer.writerow([escaped(v) for v in (key, *(row.get(name, "") for name in FINDING_FIELDS))])
    return out.getvalue()


FORMATS: dict[str, Callable[[Mapping[str, Any]], str]] = {"text": text, "markdown": markdown, "csv": csv_text}
