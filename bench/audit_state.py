"""`permctl rules audit-state` on PostgreSQL (issue 20, SPEC §7c): 100,000 accounts with at least 5,000 distinct
states (about 10 open permissions each, attribute values drawn from the declarations) judged against
examples/broker-policies, in a fresh process (a cold memo). Target: under 60 s.

The accounts are written straight into a throwaway migrated database with COPY (the setup is not measured), then
the real permctl runs as an operator would, and the time, the states and the report's totals are printed.

    .venv/bin/python -m bench.audit_state --database-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from app.rules.language.loader import load_rule_set
from bench.paths import BROKER_POLICIES
from bench.servers import Database

TARGET_SECONDS = 60.0
# Two tenants: one enables the whole catalog, one no longer enables options, otc or grey-market trading.
TENANTS = {"bench_all": ["*"], "bench_some": ["account.*", "stock.*", "shortsell.*", "ipo.*", "va.*", "trade.*"]}
RESIDENCIES = ("SG", "HK", "US", "CN", "GB", "AU", "JP", "DE")  # values of the pattern [A-Z]{2}
DEREGISTERED_SHARE = 0.02


def states(count: int, seed: int) -> list[tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]]:
    """count distinct (tenant, open permissions, attributes): about 10 catalog values, values as declared."""
    rule_set = load_rule_set(BROKER_POLICIES)
    catalog = rule_set.catalog.values
    declared = {a.name: a for a in rule_set.attributes.declarations}
    rng = random.Random(seed)
    found: set[tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]] = set()
    while len(found) < count:
        attributes = (
            ("account_type", rng.choice(declared["account_type"].values)),
            ("investor_class", rng.choice(declared["investor_class"].values)),
            ("residency", rng.choice(RESIDENCIES)),
        )
        opened = tuple(sorted(rng.sample(catalog, rng.randint(8, 12))))
        found.add((rng.choice(tuple(TENANTS)), opened, attributes))
    return sorted(found)


def populate(database_url: str, accounts: int, distinct: int, seed: int) -> int:
    """Write the tenants and accounts with COPY; how many distinct states the accounts hold."""
    pool = states(distinct, seed)
    rng = random.Random(seed + 1)
    now = datetime.now(UTC)
    url = make_url(database_url).set(drivername="postgresql")
    used: set[int] = set()
    with psycopg.connect(url.render_as_string(hide_password=False)) as conn, conn.cursor() as cur:
        for tenant, patterns in TENANTS.items():
            cur.execute(
                "INSERT INTO tenants (id, config_version, credentials_version, created_at) VALUES (%s, 0, 0, %s)",
                (tenant, now),
            )
            cur.execute("INSERT INTO tenant_configs VALUES (%s, %s, %s)", (tenant, json.dumps(patterns), now))
        with (
            cur.copy("COPY accounts (id, tenant_id, origin_id, status, created_at) FROM STDIN") as accounts_copy,
        ):
            picks = []
            for i in range(1, accounts + 1):
                pick = i - 1 if i <= distinct else rng.randrange(distinct)  # every state held at least once
                picks.append(pick)
                status = "deregistered" if rng.random() < DEREGISTERED_SHARE else "active"
                if status == "active":
                    used.add(pick)
                accounts_copy.write_row((i, pool[pick][0], f"BENCH{i:09d}", status, now))
        with cur.copy("COPY account_permissions (account_id, permission_type, status, updated_at) FROM STDIN") as copy:
            for i, pick in enumerate(picks, start=1):
                for permission_type in pool[pick][1]:
                    copy.write_row((i, permission_type, "open", now))
        with cur.copy("COPY account_attributes (account_id, name, value) FROM STDIN") as copy:
            for i, pick in enumerate(picks, start=1):
                for name, value in pool[pick][2]:
                    copy.write_row((i, name, value))
        cur.execute("SELECT setval(pg_get_serial_sequence('accounts', 'id'), %s)", (accounts,))
        conn.commit()
        conn.autocommit = True
        cur.execute("ANALYZE accounts, account_permissions, account_attributes")
    return len(used)


def audit(database_url: str, workdir: Path) -> tuple[float, int, dict]:
    """Run the real permctl rules audit-state; (seconds, exit status, the JSON report)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "RULES_DIR"))}
    env.update({"DATABASE_URL": database_url, "RULES_DIR": str(BROKER_POLICIES)})
    out = workdir / "audit.json"
    permctl = str(Path(sys.executable).with_name("permctl"))
    started = time.perf_counter()
    done = subprocess.run(
        [permctl, "rules", "audit-state", "--format", "json", "--out", str(out)],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"permctl rules audit-state failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return elapsed, done.returncode, json.loads(out.read_text(encoding="utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test", help="PostgreSQL server")
    parser.add_argument("--accounts", type=int, default=100_000, help="accounts (default 100,000)")
    parser.add_argument("--states", type=int, default=6_000, help="distinct states they share (default 6,000)")
    parser.add_argument("--seed", type=int, default=20)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tps-bench-audit-") as tmp:
        database = Database(options.database_url, Path(tmp))
        try:
            started = time.perf_counter()
            held = populate(database.url, options.accounts, options.states, options.seed)
            print(
                f"setup: {options.accounts} accounts, {held} distinct states held by active accounts, "
                f"{time.perf_counter() - started:.1f} s (COPY)"
            )
            seconds, status, report = audit(database.url, Path(tmp))
        finally:
            database.drop()
    verdict = "ok" if seconds < TARGET_SECONDS else "MISSED"
    print(
        f"{database.kind} audit-state {options.accounts} accounts {seconds:6.1f} s (target < {TARGET_SECONDS:.0f} s: "
        f"{verdict}); exit {status}: {report['accounts_checked']} checked, {report['accounts_skipped']} skipped, "
        f"{len(report['violations'])} violations, {len(report['hits'])} hits, "
        f"{len(report['not_enabled'])} not enabled, {len(report['outside_catalog'])} outside the catalog"
    )


if __name__ == "__main__":
    main()
