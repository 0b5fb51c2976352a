"""permctl console: users added, changed and disabled by approvers, passwords from standard input never shown, a
wrong password one line and a console audit row (SPEC §7d, §10)."""

from __future__ import annotations

import json
import os
import socket

import pytest
from sqlalchemy import create_engine, text

from tests.cli.runner import Ran, invoke, ok, one_line_error

ANN, BOB, CAROL = "ann-password-1", "bob-password-22", "carol-password-333"
WRONG = "Error: the user name or the password is wrong"


def console(database_url: str, *args: str, stdin: str | None = None) -> Ran:
    return invoke("console", *args, env={"DATABASE_URL": database_url}, input=stdin)


def audit_rows(database_url: str) -> list[dict[str, str]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT actor, action, target, detail, origin FROM console_audit ORDER BY id"))
            return [dict(row._mapping) for row in rows]
    finally:
        engine.dispose()


def people(database_url: str) -> None:
    """ann and bob approvers, carol an author: the first approver needs nobody, the rest need ann."""
    assert "by nobody" in ok(console(database_url, "add-user", "ann", "--role", "approver", stdin=f"{ANN}\n"))
    ok(console(database_url, "add-user", "bob", "--role", "approver", "--as", "ann", stdin=f"{BOB}\n{ANN}\n"))
    ok(console(database_url, "add-user", "carol", "--role", "author", "--as", "ann", stdin=f"{CAROL}\n{ANN}\n"))


def test_the_first_approver_needs_nobody_then_every_change_needs_an_approver(database_url: str) -> None:
    added = console(database_url, "add-user", "ann", "--role", "approver", stdin=f"{ANN}\n")
    assert ok(added).strip() == "added ann as an approver, by nobody (no approver exists yet)"
    assert ANN not in added.stdout + added.stderr  # never echoed

    alone = console(database_url, "add-user", "bob", "--role", "author", stdin=f"{BOB}\n")
    assert one_line_error(alone) == "Error: an approver exists: changing users needs an approver (give --as NAME)"

    out = ok(console(database_url, "add-user", "bob", "--role", "author", "--as", "ann", stdin=f"{BOB}\n{ANN}\n"))
    assert out.strip() == "added bob as an author, by ann"
    assert ok(console(database_url, "users")).splitlines() == [
        "name  role      active",
        "ann   approver  yes",
        "bob   author    yes",
    ]
    rows = audit_rows(database_url)
    assert [(r["actor"], r["action"], r["target"]) for r in rows] == [
        ("bootstrap", "user_added", "ann"),
        ("ann", "user_added", "bob"),
    ]
    assert all(
        r["origin"].startswith("cli ") and f"@{socket.gethostname()} pid {os.getpid()}" in r["origin"] for r in rows
    )


@pytest.mark.parametrize("who", ["ann", "nobody-here", "dis"])
def test_a_wrong_password_an_unknown_user_and_a_disabled_user_read_the_same_and_are_audited(
    database_url: str, who: str
) -> None:
    people(database_url)
    ok(console(database_url, "add-user", "dis", "--role", "author", "--as", "ann", stdin=f"{CAROL}x\n{ANN}\n"))
    ok(console(database_url, "disable-user", "dis", "--as", "ann", stdin=f"{ANN}\n"))
    password = f"{CAROL}x" if who == "dis" else "not-the-password"
    result = console(database_url, "set-role", "carol", "viewer", "--as", who, stdin=f"{password}\n")
    assert one_line_error(result) == WRONG
    assert result.returncode == 1
    assert password not in result.stdout + result.stderr
    failed = audit_rows(database_url)[-1]
    assert (failed["actor"], failed["action"], failed["target"]) == (who, "login_failed", who)
    assert password not in json.dumps(audit_rows(database_url))
    assert "carol  author    yes" in ok(console(database_url, "users"))  # nothing changed


def test_users_json_and_a_disabled_user_can_act_no_more(database_url: str) -> None:
    people(database_url)
    assert ok(console(database_url, "disable-user", "carol", "--as", "bob", stdin=f"{BOB}\n")).strip() == (
        "carol is disabled"
    )
    listed = json.loads(ok(console(database_url, "users", "--json")))
    assert {"name": "carol", "role": "author", "active": False} in listed
    again = console(database_url, "add-user", "dave", "--role", "viewer", "--as", "carol", stdin=f"{BOB}x\n{CAROL}\n")
    assert one_line_error(again) == WRONG


def test_an_approver_is_promoted_demoted_or_disabled_only_by_another_approver(database_url: str) -> None:
    people(database_url)
    own = console(database_url, "set-role", "ann", "author", "--as", "ann", stdin=f"{ANN}\n")
    assert one_line_error(own) == ("Error: adding, promoting, demoting or disabling an approver needs another approver")
    by_author = console(database_url, "set-role", "carol", "approver", "--as", "carol", stdin=f"{CAROL}\n")
    assert one_line_error(by_author) == "Error: carol is an author: only an approver changes users"
    assert ok(console(database_url, "set-role", "carol", "approver", "--as", "ann", stdin=f"{ANN}\n")).strip() == (
        "carol is an approver now"
    )
    ok(console(database_url, "disable-user", "carol", "--as", "ann", stdin=f"{ANN}\n"))
    ok(console(database_url, "set-role", "bob", "viewer", "--as", "ann", stdin=f"{ANN}\n"))
    last = console(database_url, "disable-user", "ann", "--as", "bob", stdin=f"{BOB}\n")
    assert one_line_error(last) == "Error: bob is a viewer: only an approver changes users"
    alone = console(database_url, "disable-user", "ann", "--as", "ann", stdin=f"{ANN}\n")  # the last approver
    assert one_line_error(alone) == "Error: adding, promoting, demoting or disabling an approver needs another approver"
    actions = [r["action"] for r in audit_rows(database_url)]
    assert actions.count("user_role_set") == 2 and actions.count("user_disabled") == 1


def test_passwords_and_names_are_checked_before_anything_is_stored(database_url: str) -> None:
    short = console(database_url, "add-user", "ann", "--role", "approver", stdin="short\n")
    assert one_line_error(short) == "Error: a password has 12 to 256 characters"
    bad_name = console(database_url, "add-user", "../ann", "--role", "approver", stdin=f"{ANN}\n")
    assert "is not a user name" in one_line_error(bad_name)
    empty = console(database_url, "add-user", "ann", "--role", "approver", stdin="")
    assert one_line_error(empty) == "Error: Password for ann: standard input has no more lines"
    no_line_for_as = console(database_url, "add-user", "ann", "--role", "approver", "--as", "x", stdin=f"{ANN}\n")
    assert "Password of x: standard input has no more lines" in one_line_error(no_line_for_as)
    assert ok(console(database_url, "users")).startswith("no console users yet")
    assert audit_rows(database_url) == []


class Terminal:
    """permctl on a pseudo-terminal: what it printed, and typing at its prompts."""

    def __init__(self, database_url: str, *args: str) -> None:
        import pty
        import subprocess
        import sys
        from pathlib import Path

        self.main, sub = pty.openpty()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "RULES_DIR"))}
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("permctl")), *args],
            stdin=sub,
            stdout=sub,
            stderr=sub,
            env={**env, "DATABASE_URL": database_url},
            start_new_session=True,  # no other terminal: getpass turns the echo off on this one
        )
        os.close(sub)
        self.seen = ""

    def _read(self, deadline: float) -> bool:
        """What the process printed next (False at its end)."""
        import select
        import time

        ready, _, _ = select.select([self.main], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return True
        try:
            chunk = os.read(self.main, 4096)
        except OSError:  # EIO: every copy of the other end is closed, the process ended
            return False
        self.seen += chunk.decode(errors="replace")
        return bool(chunk)

    def expect(self, text: str, timeout: float = 30) -> None:
        import time

        deadline = time.monotonic() + timeout
        while text not in self.seen:
            assert time.monotonic() < deadline, f"no {text!r} in {self.seen!r}"
            assert self._read(deadline), f"no {text!r} in {self.seen!r} before the end"

    def type(self, line: str) -> None:
        os.write(self.main, line.encode() + b"\r")

    def finish(self, timeout: float = 30) -> int:
        """The exit status, once everything printed is read."""
        import time

        deadline = time.monotonic() + timeout
        while self._read(deadline):
            assert time.monotonic() < deadline, f"still running: {self.seen!r}"
        code = self.process.wait(timeout=timeout)
        os.close(self.main)
        return code


@pytest.mark.e2e
def test_on_a_terminal_passwords_are_asked_without_an_echo(database_url: str) -> None:
    terminal = Terminal(database_url, "console", "add-user", "ann", "--role", "approver")
    terminal.expect("Password for ann: ")
    terminal.type(ANN)
    terminal.expect("The same again: ")
    terminal.type(ANN)
    assert terminal.finish() == 0, terminal.seen
    assert "added ann as an approver" in terminal.seen and ANN not in terminal.seen

    terminal = Terminal(database_url, "console", "add-user", "bob", "--role", "author", "--as", "ann")
    terminal.expect("Password for bob: ")
    terminal.type(BOB)
    terminal.expect("The same again: ")
    terminal.type(BOB + "typo")
    assert terminal.finish() == 1
    assert "the two passwords differ; nothing was changed" in terminal.seen and BOB not in terminal.seen

    terminal = Terminal(database_url, "console", "add-user", "bob", "--role", "author", "--as", "ann")
    for prompt, typed in (("Password for bob: ", BOB), ("The same again: ", BOB), ("Password of ann: ", ANN)):
        terminal.expect(prompt)
        terminal.type(typed)
    assert terminal.finish() == 0, terminal.seen
    assert "added bob as an author, by ann" in terminal.seen
    assert ANN not in terminal.seen and BOB not in terminal.seen
