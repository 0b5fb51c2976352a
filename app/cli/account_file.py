"""An account import file read as lines (`permctl accounts import`): each an upsert for the service, or why not.

- .jsonl: one {"tenant", "account_no", "status", "attributes"?} object a line; attributes omitted keep the stored
  set, as in the API.
- .csv: a header with tenant, account_no, status and one column per attribute; a row is the account's whole
  attribute set, an empty cell is an attribute it does not have.

Each line goes through the API's request schema here, at the edge; app/service/account_import.py applies what
comes out (typed AccountUpserts) in batches.
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from app.errors import DomainError, InvalidRequest
from app.schemas.accounts import load_account_line
from app.schemas.permissions import parse_json_body
from app.service.account_import import Line
from app.service.accounts import AccountUpsert
from app.service.model import Caller

IMPORT_APP_KEY = "permctl"
MAX_LINE = 64 * 1024  # bytes, as a request body
FORMATS = (".jsonl", ".csv")
CSV_KEYS = ("tenant", "account_no", "status")
BOM = "\ufeff".encode()


class UnreadableFile(DomainError):
    """The file cannot be imported at all (its format, its CSV header)."""


def _upsert(data: Any, number: int, run: str) -> AccountUpsert:
    fields = load_account_line(data)
    return AccountUpsert(
        Caller(fields["tenant"], IMPORT_APP_KEY),
        fields["account_no"],
        fields["status"],
        fields.get("attributes"),
        f"accounts-import-{run}:{number}",
    )


def jsonl_lines(stream: IO[bytes], run: str) -> Iterator[Line]:
    """Each non-blank line of a JSON Lines stream as an upsert, or the reason it is refused."""
    offset = 0
    for number, raw in enumerate(stream, start=1):
        offset += len(raw)
        if number == 1 and raw.startswith(BOM):  # as a spreadsheet or Windows tool writes UTF-8: as in CSV
            raw = raw[len(BOM) :]
        if not raw.strip():
            continue
        if len(raw) > MAX_LINE:
            yield Line(number, offset, refusal=f"the line is longer than {MAX_LINE // 1024} KiB")
            continue
        try:
            yield Line(number, offset, _upsert(parse_json_body(raw.strip()), number, run))
        except InvalidRequest as exc:
            yield Line(number, offset, refusal=exc.message.replace("body", "line", 1))


def csv_lines(stream: IO[bytes], run: str) -> Iterator[Line]:
    """Each data row of a CSV stream (header: tenant, account_no, status, attribute columns) as an upsert."""
    counted = _Counted(stream)
    text = io.TextIOWrapper(io.BufferedReader(counted), encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise UnreadableFile("the CSV file is empty: expected a header tenant,account_no,status,...") from None
    problem = _header_problem(header)
    if problem is not None:
        raise UnreadableFile(f"line 1: the CSV header must name tenant, account_no, status and attributes: {problem}")
    attributes = [c for c in header if c not in CSV_KEYS]
    while True:
        number = reader.line_num + 1  # a record is named by its first line: a quoted cell may span several
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Line(number, counted.offset, refusal=f"not valid CSV ({exc})")
            continue
        if not any(row):
            continue
        if len(row) != len(header):
            yield Line(
                number, counted.offset, refusal=f"expected {len(header)} fields as in the header, got {len(row)}"
            )
            continue
        values = dict(zip(header, row, strict=True))
        data = {k: values[k] for k in CSV_KEYS} | {"attributes": {a: values[a] for a in attributes if values[a]}}
        try:
            yield Line(number, counted.offset, _upsert(data, number, run))
        except InvalidRequest as exc:
            yield Line(number, counted.offset, refusal=exc.message)


def _header_problem(header: list[str]) -> str | None:
    missing = [k for k in CSV_KEYS if k not in header]
    if missing:
        return f"{', '.join(missing)} missing"
    if not all(header):
        return "a column has no name"
    doubled = sorted({c for c in header if header.count(c) > 1})
    return f"{', '.join(doubled)} named twice" if doubled else None


class _Counted(io.RawIOBase):
    """A byte stream that counts what was read from it (progress over a file read as text)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        self.offset += len(data)
        return len(data)


def read_lines(path: Path, stream: IO[bytes], run: str | None = None) -> Iterator[Line]:
    """The lines of an import file, by its extension (.jsonl or .csv)."""
    run = run or secrets.token_hex(4)
    if path.suffix.lower() == ".jsonl":
        return jsonl_lines(stream, run)
    if path.suffix.lower() == ".csv":
        return csv_lines(stream, run)
    raise UnreadableFile("the file must end in .jsonl or .csv")
