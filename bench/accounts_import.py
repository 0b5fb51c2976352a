"""`permctl accounts import` throughput (issue 10): accounts/s for a first load and for a re-import, on SQLite and,
with --database-url, on PostgreSQL.

Each run makes a throwaway migrated database with one tenant, writes a JSON Lines file of N accounts (every one
with attributes), and runs the real `permctl accounts import` in its own process, as an operator would. Targets:
50,000 lines in under 60 s on SQLite and under 90 s on PostgreSQL; the re-import must report every line
unchanged.

    .venv/bin/python -m bench.accounts_import                      # SQLite, 50,000 accounts
    .venv/bin/python -m bench.accounts_import --database-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.paths import SHIPPED_RULES
from bench.servers import Database

TENANT = "bench_import"
TARGETS = {"SQLite": 60.0, "PostgreSQL": 90.0}
SUMMARY = re.compile(r"(\d+) created, (\d+) updated, (\d+) unchanged, (\d+) refused")


def write_accounts(path: Path, count: int) -> None:
    """count JSON Lines accounts of TENANT, with a spread of declared attributes."""
    types, classes, countries = ("cash", "margin"), ("retail", "professional"), ("SG", "HK", "US", "GB", "AU")
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            attributes = {
                "account_type": types[i % 2],
                "residency": countries[i % 5],
                "investor_class": classes[i % 7 == 0],
            }
            line = {"tenant": TENANT, "account_no": f"BENCH{i:09d}", "status": "active", "attributes": attributes}
            out.write(json.dumps(line, separators=(",", ":")) + "\n")


def permctl(*args: str, database_url: str, cwd: Path) -> tuple[float, str]:
    """Run the real permctl; (seconds, stdout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "RULES_DIR"))}
    env.update({"DATABASE_URL": database_url, "RULES_DIR": str(SHIPPED_RULES)})
    started = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("permctl")), *args], env=env, cwd=cwd, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"permctl {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return elapsed, done.stdout


def run(admin_url: str | None, count: int, *, echo: Callable[[str], None] = print) -> list[str]:
    """Import count accounts twice into a fresh database; the result lines."""
    with tempfile.TemporaryDirectory(prefix="tps-bench-import-") as tmp:
        workdir = Path(tmp)
        database = Database(admin_url, workdir)
        try:
            fixtures = workdir / "tenant.yaml"
            fixtures.write_text(f"tenants:\n  - id: {TENANT}\n", encoding="utf-8")
            permctl("load", str(fixtures), database_url=database.url, cwd=workdir)
            accounts = workdir / "accounts.jsonl"
            write_accounts(accounts, count)
            results = []
            for label, expected in (("first import", (count, 0, 0, 0)), ("re-import", (0, 0, count, 0))):
                seconds, out = permctl("accounts", "import", str(accounts), database_url=database.url, cwd=workdir)
                found = SUMMARY.search(out)
                tally = tuple(int(n) for n in found.groups()) if found else None
                verdict = "ok" if tally == expected and seconds < TARGETS[database.kind] else "MISSED"
                results.append(
                    f"{database.kind:<10} {label:<13} {count:>7} lines {seconds:7.1f} s {count / seconds:9.0f} "
                    f"accounts/s  (target < {TARGETS[database.kind]:.0f} s, tally {tally}: {verdict})"
                )
                echo(results[-1])
            return results
        finally:
            database.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=50_000, help="lines in the file (default 50,000)")
    parser.add_argument("--database-url", help="a PostgreSQL server URL: also run there (a throwaway database)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    options = parser.parse_args()
    if not options.no_sqlite:
        run(None, options.accounts)
    if options.database_url:
        run(options.database_url, options.accounts)


if __name__ == "__main__":
    main()
