"""permctl audit --at T equals what GET returned at T (issue 6, acceptance 2)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from tests.cli.runner import invoke as permctl
from tests.conftest import Api
from tests.support import body_of


def test_audit_at_a_time_equals_the_read_at_that_time(api: Api, seeded):
    steps = [
        [("stock.US", "open"), ("options.US", "open")],
        [("stock.US", "close"), ("account.withdraw", "open")],
        [("stock.HK", "close"), ("trade.fix", "open"), ("options.US", "close")],
        [("stock.US", "open")],
    ]
    snapshots: list[tuple[str, dict]] = []
    for n, changes in enumerate(steps):
        response = api.update(body_of("ACC-1", *changes), timestamp=f"{int(time.time())}.{n:03d}")
        assert response.get_json()["code"] == 0, response.get_json()
        read = api.read("ACC-1").get_json()["data"]
        snapshots.append((datetime.now(UTC).isoformat().replace("+00:00", "Z"), read))

    env = {"DATABASE_URL": seeded.database_url}
    for at, read in snapshots:
        result = permctl("audit", "ACC-1", "--at", at, "--json", env=env)
        assert result.returncode == 0, result.stderr
        rebuilt = json.loads(result.stdout)
        assert rebuilt["permissions"] == read["permissions"], at

    before_any = permctl("audit", "ACC-1", "--at", "2000-01-01T00:00:00Z", "--json", env=env)
    assert all(p["permission_status"] == "close" for p in json.loads(before_any.stdout)["permissions"])

    table = permctl("audit", "ACC-1", env=env)
    assert table.returncode == 0 and table.stdout.count("\n") >= 2 + sum(len(s) for s in steps)


def test_audit_at_rejects_a_bad_time(seeded):
    result = permctl("audit", "ACC-1", "--at", "yesterday", env={"DATABASE_URL": seeded.database_url})
    assert result.returncode == 2 and "ISO 8601" in result.stderr and "Traceback" not in result.stderr
