"""permctl load (SPEC §9, issue 9 #4 and #6): idempotent, counted, every mistake named with file:line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.cli.runner import invoke, ok, one_line_error, scalar, snapshot

FIXTURES_YAML = """\
tenants:
  - id: sg_mexc
    credentials:
      - {app_key: demo-key, app_secret: demo-secret, access_token: demo-token}
    saas_config:
      enabled: ["account.*", "stock.*", "options.US", "trade.*"]
  - id: hk_other
    credentials:
      - {app_key: other-key, app_secret: other-secret, access_token: other-token}
accounts:
  - account_no: L6VQEU00121996
    tenant: sg_mexc
    status: active            # active | deregistered
    permissions: {account.trade: open, stock.HK: open, stock.US: close}
  - account_no: GONE-1
    tenant: sg_mexc
    status: deregistered
  - account_no: L6VQEU00121996
    tenant: hk_other
"""


def _load(path: Path, database_url: str, redis_url: str | None = None) -> Any:
    return invoke(
        "load", str(path), env={"DATABASE_URL": database_url, **({"REDIS_URL": redis_url} if redis_url else {})}
    )


def _tallies(stdout: str) -> dict[str, tuple[int, int, int]]:
    """kind -> (created, updated, unchanged), read from load's summary."""
    found = re.findall(r"^  ([a-z ]+):\s+(\d+) created, (\d+) updated, (\d+) unchanged", stdout, re.MULTILINE)
    return {kind: (int(c), int(u), int(n)) for kind, c, u, n in found}


def test_load_is_idempotent_and_counts_what_it_did(database_url, redis_url, tmp_path):
    fixtures = tmp_path / "fixtures.yaml"
    fixtures.write_text(FIXTURES_YAML, encoding="utf-8")

    first = _tallies(ok(_load(fixtures, database_url, redis_url)))
    assert first == {
        "tenants": (2, 0, 0),
        "credentials": (2, 0, 0),
        "saas configs": (1, 0, 0),
        "accounts": (3, 0, 0),
        "permissions": (2, 0, 1),
    }  # stock.US: close was never set: unchanged
    after_first = snapshot(database_url)
    assert len(after_first["tenants"]) == 2
    assert len(after_first["accounts"]) == 3
    # Only changes away from the default (close) are audited: account.trade and stock.HK opened.
    audit = after_first["permission_audit"]
    assert len(audit) == 2
    assert scalar(database_url, "SELECT config_version FROM tenants WHERE id = 'sg_mexc'") == 1
    assert scalar(database_url, "SELECT status FROM accounts WHERE origin_id = 'GONE-1'") == "deregistered"

    second = _tallies(ok(_load(fixtures, database_url, redis_url)))
    assert second == {
        "tenants": (0, 0, 2),
        "credentials": (0, 0, 2),
        "saas configs": (0, 0, 1),
        "accounts": (0, 0, 3),
        "permissions": (0, 0, 3),
    }
    after_second = snapshot(database_url)
    assert after_second["permission_audit"] == audit  # no new audit rows
    for table in after_first:
        assert after_second[table] == after_first[table], f"the second load changed {table}"


def test_load_applies_a_changed_document_and_counts_the_updates(database_url, tmp_path):
    fixtures = tmp_path / "fixtures.yaml"
    fixtures.write_text(FIXTURES_YAML, encoding="utf-8")
    ok(_load(fixtures, database_url))
    fixtures.write_text(
        FIXTURES_YAML.replace("stock.HK: open", "stock.HK: close")
        .replace('"options.US", "trade.*"', '"options.US"')
        .replace("other-secret", "rotated-secret")
        .replace("    tenant: hk_other\n", "    tenant: hk_other\n    status: deregistered\n"),
        encoding="utf-8",
    )
    tallies = _tallies(ok(_load(fixtures, database_url)))
    assert tallies == {
        "tenants": (0, 0, 2),
        "credentials": (0, 1, 1),
        "saas configs": (0, 1, 0),
        "accounts": (0, 1, 2),
        "permissions": (0, 1, 2),
    }
    assert scalar(database_url, "SELECT count(*) FROM permission_audit") == 3
    assert scalar(database_url, "SELECT config_version FROM tenants WHERE id = 'sg_mexc'") == 2
    assert scalar(database_url, "SELECT app_secret FROM credentials WHERE app_key = 'other-key'") == "rotated-secret"
    assert scalar(database_url, "SELECT status FROM accounts WHERE tenant_id = 'hk_other'") == "deregistered"


# --- mistakes: non-zero, each named with file:line, nothing written ----------------------------------------------


@pytest.mark.parametrize(
    ("content", "line", "expected"),
    [
        (
            "tenants:\n  - id: x\n    credential: []\n",
            3,
            "tenants[0].credential: unknown key (did you mean 'credentials'?)",
        ),
        (
            "tenants:\n  - id: x\naccounts:\n  - account_no: A1\n    tenant: x\n    colour: red\n",
            6,
            "accounts[0].colour: unknown key (expected account_no, tenant, status, attributes, permissions)",
        ),
        (
            "tenants:\n  - id: x\n    saas_config: {enabld: ['stock.*']}\n",
            3,
            "tenants[0].saas_config.enabld: unknown key (did you mean 'enabled'?)",
        ),
        (
            "accounts:\n  - {account_no: A1, tenant: sg_mexc}\ntenant: []\n",
            3,
            "tenant: unknown key (did you mean 'tenants'?)",
        ),
        ("tenants: 5\n", 1, "tenants: must be a list"),
        (
            "tenants:\n  - {id: t, credentials: [{app_key: k, app_secret: 5, access_token: a}]}\n",
            2,
            "tenants[0].credentials[0].app_secret: must be text",
        ),
        ("accounts:\n  - account_no: A1\n    tenant: ghost\n", 3, "accounts[0].tenant: no tenant 'ghost'"),
        (
            "accounts:\n  - account_no: A1\n    tenant: sg_mexc\n    status: frozen\n",
            4,
            "accounts[0].status: must be one of: active, deregistered",
        ),
        (
            "accounts:\n  - account_no: A1\n    tenant: sg_mexc\n    permissions:\n      stock.HK: open\n"
            "      stock.us: open\n",
            6,
            "accounts[0].permissions.stock.us: not in the catalog",
        ),
        (
            "accounts:\n  - account_no: A1\n    tenant: sg_mexc\n    permissions: {stock.HK: opened}\n",
            4,
            "accounts[0].permissions.stock.HK: must be one of: open, close",
        ),
        (
            "tenants:\n  - id: t\n    saas_config:\n      enabled:\n        - 'stock.*'\n        - 'stock.$'\n",
            6,
            "'stock.$' is not a glob",
        ),
        ("tenants:\n  - id: t\n    saas_config: {enabled: ['stock.[']}\n", 3, "'stock.[' is not a glob"),
        ("tenants:\n  - id: t\n  - id: t\n", 3, "tenants[1].id: tenant 't' is listed twice"),
        ("tenants: [\n  - id: x\n", 2, "not valid YAML"),
        ("tenants:\n  - id: a\n   bad: indent\n", 3, "not valid YAML"),
        ("tenants:\n  - id: a\n    id: b\n", 3, "not valid YAML"),
    ],
    ids=[
        "typo-credentials",
        "unknown-account-key",
        "typo-enabled",
        "typo-top-level-beside-a-good-one",
        "wrong-shape",
        "secret-not-text",
        "unknown-tenant",
        "bad-status",
        "not-in-catalog",
        "bad-permission-status",
        "bad-pattern",
        "unclosed-bracket",
        "tenant-twice",
        "unclosed",
        "bad-indent",
        "duplicate-key",
    ],
)
def test_a_mistake_is_one_line_with_file_and_line(seeded, tmp_path, content, line, expected):
    path = tmp_path / "fixtures.yaml"
    path.write_text(content, encoding="utf-8")
    before = snapshot(seeded.database_url)
    error = one_line_error(_load(path, seeded.database_url))
    assert error.startswith(f"Error: {path}:{line}:"), error
    assert expected in error
    assert snapshot(seeded.database_url) == before


def test_every_mistake_is_listed_each_with_its_line(seeded, tmp_path):
    path = tmp_path / "fixtures.yaml"
    path.write_text(
        "tenants:\n  - id: x\n    credential: []\naccounts:\n  - account_no: A1\n    tenant: x\n    status: frozen\n",
        encoding="utf-8",
    )
    result = _load(path, seeded.database_url)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"Error: {path}:3: tenants[0].credential: unknown key (did you mean 'credentials'?)",
        f"{path}:7: accounts[0].status: must be one of: active, deregistered",
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("tenant:\n  - id: sg_mexc\n", "found 'tenant' (did you mean 'tenants'?)"),
        ("", "expected a mapping with 'tenants' and/or 'accounts'"),
        ("- just\n- a list\n", "expected a mapping with 'tenants' and/or 'accounts'"),
        ("plain text\n", "expected a mapping with 'tenants' and/or 'accounts'"),
    ],
    ids=["only-a-typo", "empty", "a-list", "a-scalar"],
)
def test_a_file_that_is_not_fixtures_is_refused(seeded, tmp_path, content, expected):
    path = tmp_path / "fixtures.yaml"
    path.write_text(content, encoding="utf-8")
    error = one_line_error(_load(path, seeded.database_url))
    assert "not a fixtures file" in error and expected in error


def test_the_rules_catalog_is_not_a_fixtures_file(seeded):
    before = snapshot(seeded.database_url)
    error = one_line_error(_load(seeded.rules_dir / "catalog.yaml", seeded.database_url))
    assert "not a fixtures file: expected top-level 'tenants' and/or 'accounts', found 'markets'" in error
    assert snapshot(seeded.database_url) == before


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda tmp: tmp, "is a directory"),
        (lambda tmp: tmp / "missing.yaml", "no such file"),
        (lambda tmp: (tmp / "binary.yaml").write_bytes(b"\xff\xfe not utf-8") and tmp / "binary.yaml", "not UTF-8"),
    ],
    ids=["directory", "missing", "not-utf8"],
)
def test_a_path_that_cannot_be_read_is_one_line(seeded, tmp_path, make, expected):
    path = make(tmp_path)
    assert expected in one_line_error(_load(path, seeded.database_url))


# --- a revoked key stays revoked (issue 9 #4) ----------------------------------------------------------------------


def test_load_never_restores_a_revoked_key_and_says_so(database_url, tmp_path):
    fixtures = tmp_path / "fixtures.yaml"
    fixtures.write_text(FIXTURES_YAML, encoding="utf-8")
    ok(_load(fixtures, database_url))
    revoked = invoke("tenant", "revoke-key", "demo-key", env={"DATABASE_URL": database_url})
    assert ok(revoked).strip() == "revoked app key demo-key of tenant sg_mexc"

    again = _load(fixtures, database_url)
    out = ok(again)
    assert again.stderr.strip() == (
        f"warning: {fixtures}:4: tenants[0].credentials[0].app_key: app key demo-key is revoked; not restored"
    )
    assert "credentials:  0 created, 0 updated, 1 unchanged, 1 revoked (not restored)" in out
    assert scalar(database_url, "SELECT count(*) FROM credentials WHERE app_key = 'demo-key'") == 0
    assert scalar(database_url, "SELECT tenant_id FROM revoked_app_keys WHERE app_key = 'demo-key'") == "sg_mexc"


# --- attributes (issue 10): declared in rules/attributes.yaml, checked by the account service -------------------

WITH_ATTRIBUTES = FIXTURES_YAML.replace(
    "    status: active            # active | deregistered\n",
    "    status: active            # active | deregistered\n    attributes: {account_type: margin, residency: SG}\n",
)


def _account_audit(database_url: str) -> list[tuple[Any, ...]]:
    return snapshot(database_url)["account_audit"]


def test_load_stores_attributes_audits_them_and_a_second_load_changes_nothing(database_url, tmp_path):
    fixtures = tmp_path / "fixtures.yaml"
    fixtures.write_text(WITH_ATTRIBUTES, encoding="utf-8")
    assert _tallies(ok(_load(fixtures, database_url)))["accounts"] == (3, 0, 0)
    rows = snapshot(database_url)["account_attributes"]
    assert sorted(row[1:] for row in rows) == [("account_type", "margin"), ("residency", "SG")]
    assert len(_account_audit(database_url)) == 3  # one creation each, by permctl, trace fixture-load
    assert {(*row[1:3], row[4]) for row in _account_audit(database_url)} == {
        ("fixture-load", "sg_mexc", "L6VQEU00121996"),
        ("fixture-load", "sg_mexc", "GONE-1"),
        ("fixture-load", "hk_other", "L6VQEU00121996"),
    }
    before = snapshot(database_url)
    assert _tallies(ok(_load(fixtures, database_url)))["accounts"] == (0, 0, 3)
    assert snapshot(database_url) == before

    # Attributes replace the stored set; an account without `attributes` keeps its own.
    fixtures.write_text(WITH_ATTRIBUTES.replace("{account_type: margin, residency: SG}", "{account_type: cash}"))
    assert _tallies(ok(_load(fixtures, database_url)))["accounts"] == (0, 1, 2)
    assert [row[1:] for row in snapshot(database_url)["account_attributes"]] == [("account_type", "cash")]
    assert len(_account_audit(database_url)) == 4
    fixtures.write_text(FIXTURES_YAML)  # no attributes given: kept
    assert _tallies(ok(_load(fixtures, database_url)))["accounts"] == (0, 0, 3)
    assert [row[1:] for row in snapshot(database_url)["account_attributes"]] == [("account_type", "cash")]


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ("{colour: red}", "accounts[0].attributes.colour: 'red': not a declared attribute (declared: "),
        ("{residency: sg}", "accounts[0].attributes.residency: 'sg': not allowed (allowed: text matching"),
        ("{account_type: 1}", "accounts[0].attributes.account_type: must be a string"),
        ("[margin]", "accounts[0].attributes: must be a mapping"),
    ],
    ids=["undeclared", "disallowed", "not-text", "not-a-mapping"],
)
def test_an_attribute_the_rules_do_not_allow_is_named_with_its_line(seeded, tmp_path, attributes, expected):
    path = tmp_path / "fixtures.yaml"
    path.write_text(
        f"accounts:\n  - account_no: NEW-1\n    tenant: sg_mexc\n    attributes: {attributes}\n", encoding="utf-8"
    )
    before = snapshot(seeded.database_url)
    error = one_line_error(_load(path, seeded.database_url))
    assert error.startswith(f"Error: {path}:4: {expected}"), error
    assert snapshot(seeded.database_url) == before


def test_a_deregistered_account_is_not_reactivated_by_a_load(database_url, tmp_path):
    fixtures = tmp_path / "fixtures.yaml"
    fixtures.write_text(FIXTURES_YAML, encoding="utf-8")
    ok(_load(fixtures, database_url))
    before = snapshot(database_url)
    fixtures.write_text(FIXTURES_YAML.replace("status: deregistered", "status: active"), encoding="utf-8")
    error = one_line_error(_load(fixtures, database_url))
    assert error == (
        f"Error: {fixtures}:{FIXTURES_YAML.splitlines().index('    status: deregistered') + 1}: "
        "accounts[1].status: account 'GONE-1' is deregistered: it cannot be changed"
    )
    assert snapshot(database_url) == before
