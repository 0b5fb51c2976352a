"""Rotating an app secret without downtime: two credentials at once, then revoke the old (docs/deploy.md)."""

from __future__ import annotations

import time

import pytest

from tests.conftest import Api
from tests.support import DEMO, Credentials, body_of, permctl

pytestmark = pytest.mark.e2e

NEW = Credentials("demo-key-2", "new-secret", "new-token")


def test_rotation_keeps_serving_and_revocation_locks_the_old_key_out(api: Api, seeded, tmp_path):
    env = {"DATABASE_URL": seeded.database_url}
    fixtures = tmp_path / "rotation.yaml"
    fixtures.write_text("tenants:\n  - id: sg_mexc\n    credentials:\n"
                        "      - {app_key: demo-key-2, app_secret: new-secret, access_token: new-token}\n")
    assert permctl("load", str(fixtures), env=env).returncode == 0

    for n, creds in enumerate((DEMO, NEW)):  # both keys work during the switch
        response = api.update(body_of("ACC-2", ("stock.US", "open" if n == 0 else "close")), creds=creds,
                              timestamp=f"{int(time.time())}.{n}")
        assert response.get_json()["code"] == 0

    result = permctl("tenant", "revoke-key", "demo-key", env=env)
    assert result.returncode == 0 and "revoked app key demo-key of tenant sg_mexc" in result.stdout
    old = api.update(body_of("ACC-2", ("stock.US", "open")), creds=DEMO, timestamp=f"{int(time.time())}.7")
    assert (old.status_code, old.get_json()["code"]) == (401, 401001)
    new = api.update(body_of("ACC-2", ("stock.US", "open")), creds=NEW, timestamp=f"{int(time.time())}.8")
    assert new.get_json()["code"] == 0

    again = permctl("tenant", "revoke-key", "demo-key", env=env)
    assert again.returncode == 1 and again.stderr.strip() == "Error: no credential with app key 'demo-key'"
