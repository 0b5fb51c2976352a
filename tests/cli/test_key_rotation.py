"""Rotating an app secret without downtime: two credentials at once, then revoke the old (docs/deploy.md);
a revoked key stays revoked, whatever a later `permctl load` lists (issue 9 #4)."""

from __future__ import annotations

import time

from tests.cli.runner import invoke
from tests.conftest import Api
from tests.support import DEMO, Credentials, body_of

NEW = Credentials("demo-key-2", "new-secret", "new-token")
BOTH = (
    "tenants:\n  - id: sg_mexc\n    credentials:\n"
    "      - {app_key: demo-key, app_secret: demo-secret, access_token: demo-token}\n"
    "      - {app_key: demo-key-2, app_secret: new-secret, access_token: new-token}\n"
)


def _code(api: Api, creds: Credentials, n: int) -> int:
    response = api.update(
        body_of("ACC-2", ("stock.US", "open" if n % 2 == 0 else "close")),
        creds=creds,
        timestamp=f"{int(time.time())}.{n}",
    )
    return response.get_json()["code"]


def test_rotation_keeps_serving_and_revocation_locks_the_old_key_out(api: Api, seeded, tmp_path):
    env = {"DATABASE_URL": seeded.database_url}
    fixtures = tmp_path / "rotation.yaml"
    fixtures.write_text(BOTH)
    assert invoke("load", str(fixtures), env=env).returncode == 0

    assert [_code(api, creds, n) for n, creds in enumerate((DEMO, NEW))] == [0, 0]  # both work during the switch

    result = invoke("tenant", "revoke-key", "demo-key", env=env)
    assert result.returncode == 0 and result.stdout.strip() == "revoked app key demo-key of tenant sg_mexc"
    old = api.update(body_of("ACC-2", ("stock.US", "open")), creds=DEMO, timestamp=f"{int(time.time())}.7")
    assert (old.status_code, old.get_json()["code"]) == (401, 401001)
    assert _code(api, NEW, 8) == 0

    # The documented idempotent load, of the same file that still lists the old key: it stays revoked.
    again = invoke("load", str(fixtures), env=env)
    assert again.returncode == 0
    assert "app key demo-key is revoked; not restored" in again.stderr
    old = api.update(body_of("ACC-2", ("stock.US", "open")), creds=DEMO, timestamp=f"{int(time.time())}.9")
    assert (old.status_code, old.get_json()["code"]) == (401, 401001)
    assert _code(api, NEW, 11) == 0

    # Revoking it again changes nothing and says when it was revoked.
    repeated = invoke("tenant", "revoke-key", "demo-key", env=env)
    assert repeated.returncode == 0
    assert repeated.stdout.startswith("app key demo-key of tenant sg_mexc was already revoked at ")
    unknown = invoke("tenant", "revoke-key", "never-issued", env=env)
    assert unknown.returncode == 1 and unknown.stderr.strip() == "Error: no credential with app key 'never-issued'"


def test_a_revoked_key_is_refused_at_once_by_a_worker_that_cached_it(api: Api, seeded):
    """The worker caches credentials; revoke-key moves the tenant's credentials version, which the very next
    request meets in its own transaction — a POST, a read, and a read of an account that does not exist."""
    assert _code(api, DEMO, 0) == 0
    assert api.read("ACC-2").get_json()["code"] == 0  # demo-key is in this worker's cache
    assert invoke("tenant", "revoke-key", "demo-key", env={"DATABASE_URL": seeded.database_url}).returncode == 0
    assert _code(api, DEMO, 1) == 401001
    for account_no in ("ACC-2", "NOBODY"):
        refused = api.read(account_no)
        assert (refused.status_code, refused.get_json()["code"]) == (401, 401001), refused.get_json()


def test_a_secret_changed_by_load_takes_effect_at_once_in_a_worker_that_cached_the_old_one(api: Api, seeded, tmp_path):
    assert _code(api, DEMO, 0) == 0  # cached with demo-secret
    rotated = Credentials(DEMO.app_key, "rotated-secret", "rotated-token")
    fixtures = tmp_path / "rotated.yaml"
    fixtures.write_text(
        "tenants:\n  - id: sg_mexc\n    credentials:\n"
        "      - {app_key: demo-key, app_secret: rotated-secret, access_token: rotated-token}\n"
    )
    assert invoke("load", str(fixtures), env={"DATABASE_URL": seeded.database_url}).returncode == 0
    assert _code(api, DEMO, 1) == 401001  # the old secret and token: refused, though this worker cached them
    assert _code(api, rotated, 1) == 0  # the new ones: accepted, though this worker cached the old
