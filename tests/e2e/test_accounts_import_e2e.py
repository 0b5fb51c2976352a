"""permctl accounts import as an operator runs it (issue 10, acceptance 3): a real process, a progress bar on a
terminal, killed mid-import and run again, and (slow) 50,000 lines within the target time, re-import unchanged,
a bad line at line N named while the rest is imported."""

from __future__ import annotations

import json
import os
import pty
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.settings import Settings
from tests.e2e.server import send
from tests.support import UPDATE_PATH, UPSERT_PATH, signed_headers

pytestmark = pytest.mark.e2e

SUMMARY = re.compile(r"(\d+) lines: (\d+) created, (\d+) updated, (\d+) unchanged, (\d+) refused")
PROGRESS = re.compile(r"^progress: (\d+) lines done")
TYPES, CLASSES, COUNTRIES = ("cash", "margin"), ("retail", "professional"), ("SG", "HK", "US", "GB", "AU")


def attributes_of(i: int) -> dict[str, str]:
    return {"account_type": TYPES[i % 2], "residency": COUNTRIES[i % 5], "investor_class": CLASSES[i % 7 == 0]}


def write_accounts(path: Path, count: int, *, bad_line: int | None = None) -> Path:
    """count sg_mexc accounts IMP000000000..., each with attributes; line bad_line (1-based) undeclared."""
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            attributes = {"colour": "red"} if i + 1 == bad_line else attributes_of(i)
            account = {"tenant": "sg_mexc", "account_no": f"IMP{i:09d}", "status": "active", "attributes": attributes}
            out.write(json.dumps(account, separators=(",", ":")) + "\n")
    return path


def environment(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "RULES_DIR"))}
    env.update({"DATABASE_URL": settings.database_url, "RULES_DIR": str(settings.rules_dir)})
    return env


def permctl_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("permctl")), *args]


def imported(settings: Settings) -> dict[str, tuple[str, dict[str, str]]]:
    """IMP… account_no -> (status, attributes), as stored."""
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT a.origin_id, a.status, x.name, x.value FROM accounts a "
                    "LEFT JOIN account_attributes x ON x.account_id = a.id "
                    "WHERE a.tenant_id = 'sg_mexc' AND a.origin_id LIKE 'IMP%'"
                )
            ).all()
    finally:
        engine.dispose()
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for account_no, status, name, value in rows:
        found.setdefault(account_no, (status, {}))
        if name is not None:
            found[account_no][1][name] = value
    return found


def creations(settings: Settings) -> list[str]:
    """account_no of every account audit row of an IMP… account (each should be its one creation)."""
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT account_no, status_before FROM account_audit WHERE account_no LIKE 'IMP%'")
            ).all()
    finally:
        engine.dispose()
    assert all(r.status_before is None for r in rows)
    return [r.account_no for r in rows]


def expected(count: int) -> dict[str, tuple[str, dict[str, str]]]:
    return {f"IMP{i:09d}": ("active", attributes_of(i)) for i in range(count)}


def run_import(
    settings: Settings, path: Path, *args: str, timeout: float = 300
) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(
        permctl_command("accounts", "import", str(path), *args),
        env=environment(settings),
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return time.perf_counter() - started, done


def tally(stdout: str) -> tuple[int, ...]:
    found = SUMMARY.search(stdout)
    assert found, stdout
    return tuple(int(n) for n in found.groups())


@pytest.mark.slow
def test_killed_mid_import_and_run_again_ends_as_one_clean_run(seeded: Settings, tmp_path: Path) -> None:
    count = 20_000
    path = write_accounts(tmp_path / "accounts.jsonl", count)
    process = subprocess.Popen(
        permctl_command("accounts", "import", str(path), "--batch-size", "500"),
        env=environment(seeded),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    try:
        for progress_line in process.stderr:  # a line per committed batch: kill once a few are in
            found = PROGRESS.match(progress_line)
            if found and int(found.group(1)) >= 2_000:
                process.send_signal(signal.SIGKILL)
                break
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    partial = imported(seeded)
    assert 2_000 <= len(partial) < count, len(partial)  # whole batches only: a multiple of 500
    assert len(partial) % 500 == 0 and partial == {k: v for k, v in expected(count).items() if k in partial}

    _, again = run_import(seeded, path, "--batch-size", "500")
    assert again.returncode == 0, again.stderr
    assert tally(again.stdout) == (count, count - len(partial), 0, len(partial), 0)
    assert imported(seeded) == expected(count)
    assert sorted(creations(seeded)) == sorted(expected(count))  # one audit row per account, none twice


def test_a_terminal_gets_a_progress_bar(seeded: Settings, tmp_path: Path) -> None:
    path = write_accounts(tmp_path / "accounts.jsonl", 3_000)
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            permctl_command("accounts", "import", str(path), "--batch-size", "500"),
            env={**environment(seeded), "TERM": "xterm", "COLUMNS": "100"},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
        )
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal's other end closed: the process is done with it
                break
            if not chunk:
                break
            shown += chunk
        stdout, _ = process.communicate(timeout=120)
    finally:
        os.close(controller)
    assert process.returncode == 0, shown
    screen = shown.decode(errors="replace")
    assert "importing" in screen and "100%" in screen, screen
    assert "#" in screen and "progress:" not in screen, screen
    assert tally(stdout) == (3_000, 3_000, 0, 0, 0)


def _target(settings: Settings) -> float:
    return 90.0 if make_url(settings.database_url).get_backend_name() == "postgresql" else 60.0


@pytest.mark.slow
def test_fifty_thousand_lines_within_the_target_and_a_re_import_changes_nothing(
    seeded: Settings, tmp_path: Path
) -> None:
    count = 50_000
    path = write_accounts(tmp_path / "accounts.jsonl", count)
    seconds, first = run_import(seeded, path)
    assert first.returncode == 0, first.stderr
    assert tally(first.stdout) == (count, count, 0, 0, 0)
    print(f"\n{count} accounts imported in {seconds:.1f} s ({count / seconds:.0f} accounts/s)")
    assert seconds < _target(seeded)
    assert imported(seeded) == expected(count)

    seconds, again = run_import(seeded, path)
    assert again.returncode == 0, again.stderr
    assert tally(again.stdout) == (count, 0, 0, count, 0)
    print(f"re-import: {count} unchanged in {seconds:.1f} s")
    assert seconds < _target(seeded)
    assert len(creations(seeded)) == count  # the re-import wrote no audit row


@pytest.mark.slow
def test_a_bad_line_among_fifty_thousand_is_named_and_the_rest_is_imported(seeded: Settings, tmp_path: Path) -> None:
    count, bad = 50_000, 31_337
    path = write_accounts(tmp_path / "accounts.jsonl", count, bad_line=bad)
    _, result = run_import(seeded, path)
    assert result.returncode == 1
    assert tally(result.stdout) == (count, count - 1, 0, 0, 1)
    assert f"{path}:{bad}: attributes.colour 'red': not a declared attribute" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"Error: 1 line(s) refused: {bad}"
    stored = imported(seeded)
    assert len(stored) == count - 1 and f"IMP{bad - 1:09d}" not in stored


# --- beside live traffic (issue 18 #2) ------------------------------------------------------------------------

API_THREADS = 8
ATTRIBUTE_CHOICES = ({"account_type": "cash"}, {"account_type": "margin", "residency": "SG"}, {})
AUDIT_TRACE = re.compile(r"^accounts-import-[0-9a-f]+:(\d+)$")


class Traffic:
    """API_THREADS threads sending signed upserts and permission updates of the accounts the import is about to
    write (its next 2,000 lines, from its progress lines), until stopped; every answer kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.done_lines = 0  # the import's progress, read from its stderr
        self.stop = threading.Event()
        self.answers: list[tuple[str, int, int]] = []  # (path, HTTP status, code)
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(API_THREADS)]

    def _run(self, worker: int) -> None:
        chooser = random.Random(worker)
        sent = 0
        while not self.stop.is_set():
            index = (self.done_lines + chooser.randrange(2_000)) % 20_000
            sent += 1
            if chooser.random() < 0.6:
                path = UPSERT_PATH
                body = json.dumps(
                    {
                        "account_no": f"IMP{index:09d}",
                        "status": "active",
                        "attributes": chooser.choice(ATTRIBUTE_CHOICES),
                        "nonce": f"{worker}-{sent}",  # no two bodies alike: a repeat would be a replay
                    }
                ).encode()
            else:
                path = UPDATE_PATH
                change = {"permission_type": "stock.US", "permission_status": chooser.choice(("open", "close"))}
                body = json.dumps(
                    {"account_no": f"IMP{index:09d}", "changes": [change], "nonce": f"{worker}-{sent}"}
                ).encode()
            headers = signed_headers("POST", path, body, timestamp=f"{time.time():.6f}")
            answer = send(self.url, "POST", path, body, headers, timeout=60)
            self.answers.append((path, answer.status, answer.envelope["code"]))

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)


def account_audit(settings: Settings) -> list[Any]:
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT account_no, trace_id, status_before, status_after, attributes_before, attributes_after "
                        "FROM account_audit WHERE tenant_id = 'sg_mexc' AND account_no LIKE 'IMP%' ORDER BY id"
                    )
                )
            )
    finally:
        engine.dispose()


def decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@pytest.mark.slow
def test_twenty_thousand_lines_beside_eight_threads_of_api_writes_all_counted_once(
    live_server: Any, tmp_path: Path
) -> None:
    """The nightly reconciliation over an opening burst: 8 threads upsert and update the accounts the import is
    about to write, so that its batches meet accounts the API creates between their lookup and their insert, and
    accounts the API holds locked.
    The import finishes; each line is counted once (created, updated, unchanged or refused busy); every account's
    audit trail is one unbroken chain that ends in its stored state. On SQLite, whose writers take turns on the
    database lock, no batch can meet such an account: there the test shows the import and the API sharing it."""
    settings = live_server.settings
    count = 20_000
    path = write_accounts(tmp_path / "accounts.jsonl", count)
    started = time.perf_counter()
    process = subprocess.Popen(
        permctl_command("accounts", "import", str(path)),
        env=environment(settings),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    other_lines: list[str] = []
    with process, Traffic(live_server.url) as traffic:  # the process's pipes closed on the way out
        for printed in process.stderr:  # a progress line per batch; refusals before their batch's
            found = PROGRESS.match(printed)
            if found:
                traffic.done_lines = int(found.group(1))
            else:
                other_lines.append(printed.rstrip("\n"))
        stdout = process.stdout.read()
        returncode = process.wait(timeout=600)
    seconds = time.perf_counter() - started

    lines, created, updated, unchanged, refused = tally(stdout)
    met = re.search(r"; beside concurrent writers: (.*)$", stdout, re.MULTILINE)
    refusals = [re.match(rf"^{re.escape(str(path))}:(\d+): (.*)$", line) for line in other_lines[:-1]]
    print(
        f"\n{count} lines in {seconds:.1f} s beside {len(traffic.answers)} API requests "
        f"({len(traffic.answers) / seconds:.0f}/s): {stdout.strip()}"
    )
    assert lines == count and created + updated + unchanged + refused == count, stdout
    assert all(r is not None and r.group(2) == "busy, retry" for r in refusals), other_lines  # only busy ones
    busy_lines = [int(r.group(1)) for r in refusals if r is not None]
    assert len(busy_lines) == refused and busy_lines == sorted(set(busy_lines))  # each once, in line order
    if refused:
        assert returncode == 1 and f"({refused} busy)" in stdout and "busy" in other_lines[-1], other_lines
    else:
        assert returncode == 0 and other_lines == [], other_lines
    if make_url(settings.database_url).get_backend_name() == "postgresql":  # SQLite: one writer at a time
        assert met is not None, "the import never met the API's writes: this test tested nothing"

    # Every line counted once: each created or updated line wrote one audit row named by its line number.
    audit = account_audit(settings)
    by_import = [int(m.group(1)) for r in audit if (m := AUDIT_TRACE.match(r.trace_id))]
    assert len(by_import) == created + updated and len(set(by_import)) == len(by_import)
    assert not set(by_import) & set(busy_lines)

    # The trail of every account replays to what is stored.
    trail: dict[str, tuple[str, dict[str, str]] | None] = {}
    for row in audit:
        before = None if row.status_before is None else (row.status_before, decoded(row.attributes_before))
        assert trail.get(row.account_no) == before, (row.account_no, trail.get(row.account_no), before)
        trail[row.account_no] = (row.status_after, decoded(row.attributes_after))
    assert trail == imported(settings)
    assert len(trail) == count

    for path_, status, code in traffic.answers:  # the API kept answering, in the envelope
        allowed = {0, 409003} | ({404001, 400103} if path_ == UPDATE_PATH else set())
        assert status < 500 and code in allowed, (path_, status, code)
