"""permctl accounts check (issue 18 #6, SPEC §8): the stored accounts whose number breaks the rule, listed one a
line with what is wrong; they stay readable; exit 1 while there is any."""

from __future__ import annotations

from app.settings import Settings
from tests.cli.runner import db_env, invoke, ok
from tests.conftest import Api
from tests.http.test_account_numbers import read, store_legacy_account


def test_check_lists_each_stored_account_that_breaks_the_rule(api: Api, seeded: Settings) -> None:
    for tenant, account_no in [("sg_mexc", " ACC-1"), ("hk_other", "OTHER-1 "), ("sg_mexc", "   "), ("sg_mexc", "账1")]:
        store_legacy_account(seeded, account_no, tenant)
    result = invoke("accounts", "check", env=db_env(seeded))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    rule = "must be 1 to 64 printable ASCII characters with no leading or trailing space"
    assert sorted(result.stdout.splitlines()) == [  # by tenant, then in the database's collation
        f'hk_other "OTHER-1 " active: {rule} (it has a space at the start or end)',
        f'sg_mexc "   " active: {rule} (it has a space at the start or end)',
        f'sg_mexc " ACC-1" active: {rule} (it has a space at the start or end)',
        f'sg_mexc "\\u8d261" active: {rule} (it has a character outside printable ASCII)',
    ]
    assert result.stderr.strip() == "Error: 4 stored account(s) break the account number rule"
    assert read(api, " ACC-1").get_json()["data"]["account_no"] == " ACC-1"  # listed, and still readable


def test_check_is_quiet_when_every_number_follows_the_rule(seeded: Settings) -> None:
    assert ok(invoke("accounts", "check", env=db_env(seeded))) == "every stored account number follows the rule\n"
