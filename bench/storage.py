"""Storage cost per million requests: serve typical requests through the service into a fresh database, measure
the bytes each table grew by, and scale to 1,000,000 requests (docs/deploy.md quotes the figures).

    python -m bench.storage --database-url postgresql://postgres@127.0.0.1:5432/test [--requests 5000]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import uuid
from datetime import UTC, datetime

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.errors import DomainError
from app.persistence.config_cache import InProcessConfigCache
from app.persistence.db import make_engine, make_session_factory
from app.persistence.migrate import upgrade
from app.persistence.unit_of_work import UnitOfWork
from app.rules.language.loader import load_rule_set
from app.rules.runtime.engine import DurableRulesEngine
from app.schemas.fixtures import parse_fixtures
from app.service.fixtures import load_fixtures
from app.service.model import Caller
from app.service.permissions import PermissionService
from app.service.tenant_config import EnabledPermissions
from app.settings import Settings
from bench.paths import PROJECT_ROOT

TABLES = ("decisions", "permission_audit", "account_permissions", "accepted_signatures")


class _Live:
    """One rule set, never reloaded: refresh() is the service's per-request step."""

    def __init__(self, engine: DurableRulesEngine) -> None:
        self.engine = engine

    def refresh(self) -> DurableRulesEngine:
        return self.engine


def _sizes(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                return {
                    t: int(conn.execute(text(f"SELECT pg_total_relation_size('{t}')")).scalar() or 0) for t in TABLES
                }
            return {
                t: int(
                    conn.execute(
                        text("SELECT SUM(pgsize) FROM dbstat WHERE name = :t OR name LIKE :i"),
                        {"t": t, "i": f"ix_{t}%"},
                    ).scalar()
                    or 0
                )
                for t in TABLES
            }
    finally:
        engine.dispose()


def measure(database_url: str, requests: int, rules_dir: str) -> dict[str, float]:
    """Bytes per request in each table, after `requests` requests (about 1 in 5 rejected)."""
    upgrade(database_url)
    rule_set = load_rule_set(rules_dir)  # type: ignore[arg-type]
    settings = Settings(database_url=database_url)
    engine = make_engine(settings, request_path=False)
    sessions = make_session_factory(engine)
    cache = InProcessConfigCache(30)
    accounts = [
        {
            "account_no": f"S{n:06d}",
            "tenant": "bench",
            "status": "active",
            "attributes": {"account_type": "margin", "residency": "SG", "investor_class": "retail"},
        }
        for n in range(500)
    ]
    load_fixtures(
        parse_fixtures({"tenants": [{"id": "bench", "saas_config": {"enabled": ["*"]}}], "accounts": accounts}),
        unit_of_work=_units(sessions),
        cache=cache,
        catalog=rule_set.catalog,
        rule_set_version=rule_set.version,
        attributes=rule_set.attributes,
    )
    before = _sizes(database_url)
    service = PermissionService(
        unit_of_work=lambda **kw: UnitOfWork(sessions, **kw),
        rules=_Live(DurableRulesEngine(rule_set)),
        enabled=EnabledPermissions(cache),
    )
    rng = random.Random(7)
    types = [v for v in rule_set.catalog.values if v.startswith(("stock.", "account.", "otc."))]
    for n in range(requests):
        size = rng.choice((1, 1, 1, 2, 3, 10))
        changes = [
            {"permission_type": t, "permission_status": rng.choice(("open", "close"))} for t in rng.sample(types, size)
        ]
        with contextlib.suppress(DomainError):  # rejections are recorded too: that is what is measured
            service.update(
                caller=Caller("bench", "bench-key"),
                account_no=accounts[n % 500]["account_no"],
                changes=changes,
                trace_id=uuid.uuid4().hex,
            )
    engine.dispose()
    after = _sizes(database_url)
    return {t: (after[t] - before[t]) / requests for t in TABLES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rules", default=str(PROJECT_ROOT / "examples" / "broker-policies"))
    args = parser.parse_args()
    url = make_url(args.database_url)
    name = f"tps_storage_{uuid.uuid4().hex[:8]}"
    if url.get_backend_name() == "postgresql":
        admin = create_engine(url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        target = url.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    else:
        admin, target = None, f"sqlite:////tmp/{name}.sqlite"
    try:
        per_request = measure(target, args.requests, args.rules)
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    print(f"{args.requests} requests on {url.get_backend_name()} at {datetime.now(UTC):%Y-%m-%d %H:%M}Z")
    for table, size in per_request.items():
        print(f"  {table:<22} {size:8.0f} bytes per request = {size * 1e6 / 2**30:6.2f} GiB per million requests")
    print(f"  {'total':<22} {sum(per_request.values()) * 1e6 / 2**30:6.2f} GiB per million requests")


if __name__ == "__main__":
    main()


def _units(sessions):  # type: ignore[no-untyped-def]
    """The unit-of-work factory the services take, over these sessions."""
    from app.persistence.unit_of_work import UnitOfWork

    return lambda **kw: UnitOfWork(sessions, **kw)
