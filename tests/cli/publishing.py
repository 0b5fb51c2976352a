"""A desk of people and a database for the publication tests: the shipped set adopted as publication 1 by
`permctl db upgrade`, approvers ann and bob and author carol, every command run with environment variables that
sound as if they could turn four eyes off (none may)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.rules.language.loader import read_tree
from app.rules.lifecycle.stored import version_id
from tests.cli.runner import Ran, invoke, ok, scalar
from tests.support import copy_rules

PASSWORDS = {"ann": "ann-password-1", "bob": "bob-password-22", "carol": "carol-password-333"}
# Variables someone might hope turn four eyes off; the policy lives in the database, so none may change anything.
HOPEFUL = {
    "APPROVAL_POLICY": "off",
    "FOUR_EYES": "0",
    "RULES_APPROVAL": "off",
    "PERMCTL_APPROVAL_POLICY": "off",
    "RULES_APPROVAL_POLICY": "off",
    "SKIP_APPROVAL": "1",
    "BREAK_GLASS": "1",
    "PERMCTL_AS": "ann",
}


class Desk:
    """A database with the shipped set adopted as publication 1, approvers ann and bob, and author carol."""

    def __init__(self, database_url: str, tmp_path: Path, *, rules_dir: Path | None = None) -> None:
        """rules_dir: the set to adopt (default a copy of the shipped one)."""
        self.database_url = database_url
        self.tmp_path = tmp_path
        self.rules_dir = rules_dir or copy_rules(tmp_path / "live")
        self.env = {**HOPEFUL, "DATABASE_URL": database_url, "RULES_DIR": str(self.rules_dir)}

    def run(self, *args: str, stdin: str | None = None) -> Ran:
        return invoke(*args, env=self.env, input=stdin)

    def acting(self, name: str, *args: str) -> Ran:
        """permctl ARGS --as NAME, the password on standard input."""
        return self.run(*args, "--as", name, stdin=PASSWORDS[name] + "\n")

    def set_up(self) -> Desk:
        upgraded = ok(self.run("db", "upgrade"))
        assert f"adopted RULES_DIR {self.rules_dir} as the first published rule set" in upgraded
        # carol and ann while no approver exists (bootstrap), then bob by ann: no approver made carol's account,
        # so either may review her proposals (the one who did may not).
        for name, role in (("carol", "author"), ("ann", "approver")):
            ok(self.run("console", "add-user", name, "--role", role, stdin=PASSWORDS[name] + "\n"))
        stdin = f"{PASSWORDS['bob']}\n{PASSWORDS['ann']}\n"
        ok(self.run("console", "add-user", "bob", "--role", "approver", "--as", "ann", stdin=stdin))
        return self

    def edited(self, name: str, *, policies: str | None = None) -> Path:
        """A copy of the shipped set with a line of its own in README.md (another version), and policies."""
        rules = copy_rules(self.tmp_path / name)
        (rules / "README.md").write_text((rules / "README.md").read_text() + f"\n{name}\n")
        if policies is not None:
            (rules / "policies.yaml").write_text(policies)
        return rules

    def propose(self, rules: Path, as_name: str = "carol") -> str:
        """Propose rules (clean): its version, the last line printed."""
        out = ok(self.acting(as_name, "rules", "propose", str(rules)))
        version = out.splitlines()[-1]
        assert version == version_id(read_tree(rules))
        return version

    def live(self) -> str:
        return scalar(self.database_url, "SELECT version FROM rule_set_publications ORDER BY id DESC LIMIT 1")

    def publications(self) -> int:
        return scalar(self.database_url, "SELECT count(*) FROM rule_set_publications")

    def proposals(self) -> dict[str, Any]:
        return json.loads(ok(self.run("rules", "proposals", "--json")))
