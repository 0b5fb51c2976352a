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


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _as_of(env: dict[str, str], account_no: str, at: str) -> dict:
    result = permctl("audit", account_no, "--at", at, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_audit_at_rebuilds_status_and_attributes_as_get_showed_them(api: Api, seeded):
    """Account and permission events interleaved (issue 10): at each moment, status, attributes and permissions
    equal what GET returned then; the trail lists both kinds in time order."""
    env = {"DATABASE_URL": seeded.database_url}
    before_creation = _now()
    steps = [
        ("account", {"account_no": "NEW-1", "status": "active", "attributes": {"account_type": "cash"}}),
        ("permission", body_of("NEW-1", ("stock.US", "open"))),
        ("account", {"account_no": "NEW-1", "status": "active", "attributes": {"residency": "SG"}}),
        ("account", {"account_no": "NEW-1", "status": "active", "attributes": {"residency": "SG"}}),  # no change
        ("permission", body_of("NEW-1", ("stock.US", "close"), ("stock.HK", "open"))),
        ("account", {"account_no": "NEW-1", "status": "deregistered"}),
    ]
    snapshots = []
    for n, (kind, request) in enumerate(steps):
        if kind == "account":
            response = api.upsert(request)
        else:
            response = api.update(request, timestamp=f"{int(time.time())}.{n:03d}")
        assert response.get_json()["code"] == 0, response.get_json()
        snapshots.append((_now(), api.read("NEW-1").get_json()["data"]))

    for at, read in snapshots:
        rebuilt = _as_of(env, "NEW-1", at)
        assert (rebuilt["account_status"], rebuilt["attributes"]) == (read["account_status"], read["attributes"]), at
        assert rebuilt["permissions"] == read["permissions"], at
    assert _as_of(env, "NEW-1", before_creation)["account_status"] is None

    trail = permctl("audit", "NEW-1", "--json", env=env)
    events = [json.loads(line) for line in trail.stdout.splitlines()]
    assert [e["kind"] for e in events] == ["account", "permission", "account", "permission", "permission", "account"]
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    assert events[0]["status_before"] is None and events[0]["attributes_after"] == {"account_type": "cash"}
    assert (events[-1]["status_before"], events[-1]["status_after"]) == ("active", "deregistered")
    text = permctl("audit", "NEW-1", env=env).stdout
    assert "{account_type: cash} -> {residency: SG}" in text and "active -> deregistered" in text
    shown = permctl("audit", "NEW-1", "--at", snapshots[2][0], env=env).stdout
    assert "status                 active" in shown and "attributes             {residency: SG}" in shown


def test_an_account_older_than_its_trail_stood_as_its_first_change_found_it(api: Api, seeded):
    """An account written before the account trail existed has no creation row: before its first recorded
    change it stood as that change's `before`; with no change at all, as it stands now."""
    from sqlalchemy import create_engine, text

    engine = create_engine(seeded.database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO accounts (tenant_id, origin_id, status, created_at) "
                "VALUES ('sg_mexc', 'OLD-1', 'active', :at), ('sg_mexc', 'OLD-2', 'active', :at)"
            ),
            {"at": datetime(2020, 1, 1)},
        )
    engine.dispose()
    env = {"DATABASE_URL": seeded.database_url}
    earlier = _now()
    assert api.upsert(
        {"account_no": "OLD-1", "status": "active", "attributes": {"investor_class": "retail"}}
    ).status_code
    assert (_as_of(env, "OLD-1", earlier)["account_status"], _as_of(env, "OLD-1", earlier)["attributes"]) == (
        "active",
        {},
    )
    assert _as_of(env, "OLD-1", _now())["attributes"] == {"investor_class": "retail"}
    assert _as_of(env, "OLD-2", earlier)["account_status"] == "active"
