"""The fixtures loader (SPEC §9) as a service: typed input, counted outcomes, all or nothing, tombstones kept."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from app.persistence.config_cache import InProcessConfigCache
from app.persistence.db import make_engine, make_session_factory
from app.rules.language.loader import load_rule_set
from app.schemas.fixtures import InvalidFixtures, parse_fixtures
from app.service import tenants
from app.service.fixtures import LoadReport, load_fixtures
from app.settings import Settings
from tests.support import FIXTURES


@pytest.fixture
def factory(settings: Settings) -> Iterator[sessionmaker[Any]]:
    engine = make_engine(settings, request_path=False)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def rule_set(settings: Settings) -> Any:
    return load_rule_set(settings.rules_dir)


def _load(document: Any, factory: sessionmaker[Any], rule_set: Any) -> LoadReport:
    return load_fixtures(
        parse_fixtures(document),
        unit_of_work=_units(factory),
        cache=InProcessConfigCache(30.0),
        catalog=rule_set.catalog,
        rule_set_version=rule_set.version,
    )


def _counts(report: LoadReport) -> dict[str, tuple[int, int, int]]:
    return {kind: (t.created, t.updated, t.unchanged) for kind, t in report.tallies.items()}


def _rows(factory: sessionmaker[Any], table: str) -> int:
    with factory() as session:
        return session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_a_document_is_counted_and_a_second_load_changes_nothing(factory, rule_set):
    first = _load(FIXTURES, factory, rule_set)
    assert _counts(first) == {
        "tenants": (3, 0, 0),
        "credentials": (3, 0, 0),
        "saas_configs": (2, 0, 0),
        "accounts": (5, 0, 0),
        "permissions": (2, 0, 0),
    }
    second = _load(FIXTURES, factory, rule_set)
    assert _counts(second) == {
        "tenants": (0, 0, 3),
        "credentials": (0, 0, 3),
        "saas_configs": (0, 0, 2),
        "accounts": (0, 0, 5),
        "permissions": (0, 0, 2),
    }
    assert second.warnings == [] and second.not_restored == []


def test_a_revoked_key_is_not_restored(factory, rule_set):
    _load(FIXTURES, factory, rule_set)
    assert tenants.revoke_key(unit_of_work(factory), "other-key").revocation.tenant_id == "hk_other"
    report = _load(FIXTURES, factory, rule_set)
    assert report.not_restored == ["other-key"]
    assert [(w.path, w.message) for w in report.warnings] == [
        (("tenants", 1, "credentials", 0, "app_key"), "app key other-key is revoked; not restored")
    ]
    with factory() as session:
        assert session.execute(text("SELECT count(*) FROM credentials WHERE app_key = 'other-key'")).scalar() == 0
    again = tenants.revoke_key(unit_of_work(factory), "other-key")
    assert again.already and again.revocation.tenant_id == "hk_other"
    with pytest.raises(tenants.UnknownKey):
        tenants.revoke_key(unit_of_work(factory), "never-issued")


def test_a_mistake_anywhere_writes_nothing(factory, rule_set):
    document = copy.deepcopy(FIXTURES)
    document["accounts"].append({"account_no": "LATE", "tenant": "sg_mexc", "permissions": {"stock.XX": "open"}})
    with pytest.raises(InvalidFixtures) as caught:
        _load(document, factory, rule_set)
    assert [(p.path, p.message) for p in caught.value.problems] == [
        (("accounts", 5, "permissions", "stock.XX"), "not in the catalog")
    ]
    assert _rows(factory, "tenants") == 0 and _rows(factory, "accounts") == 0


def test_a_pattern_that_matches_nothing_is_loaded_with_a_warning(factory, rule_set):
    report = _load({"tenants": [{"id": "t", "saas_config": {"enabled": ["stock.*", "crypto.*"]}}]}, factory, rule_set)
    assert [(w.path, w.message) for w in report.warnings] == [
        (("tenants", 0, "saas_config", "enabled", 1), "pattern 'crypto.*' matches no catalog value")
    ]
    assert tenants.show(unit_of_work(factory), rule_set.catalog, "t").patterns == ("stock.*", "crypto.*")


@pytest.mark.parametrize(
    ("document", "path", "message"),
    [
        (
            {"tenant": []},
            (),
            "not a fixtures file: expected top-level 'tenants' and/or 'accounts', found 'tenant' "
            "(did you mean 'tenants'?)",
        ),
        ({"tenants": [], "acounts": []}, ("acounts",), "unknown key (did you mean 'accounts'?)"),
        (  # issue 18 #6: the account number rule of SPEC §8 holds in fixture files too
            {"accounts": [{"account_no": "A", "tenant": "t"}, {"account_no": "A ", "tenant": "t"}]},
            ("accounts", 1, "account_no"),
            "must be 1 to 64 printable ASCII characters with no leading or trailing space",
        ),
        (
            {"accounts": [{"account_no": "   ", "tenant": "t"}]},
            ("accounts", 0, "account_no"),
            "must be 1 to 64 printable ASCII characters with no leading or trailing space",
        ),
        (
            {"accounts": [{"account_no": "A", "tenant": "t", "colour": {}}]},
            ("accounts", 0, "colour"),
            "unknown key (expected account_no, tenant, status, attributes, permissions)",
        ),
        (
            {"tenants": [{"id": "t", "credentials": [{"app_key": "k", "app_secret": "s"}]}]},
            ("tenants", 0, "credentials", 0, "access_token"),
            "is required",
        ),
        (
            {"tenants": [{"id": "t", "saas_config": {"enabled": ["stock.["]}}]},
            ("tenants", 0, "saas_config", "enabled", 0),
            "'stock.[' is not a glob",
        ),
    ],
)
def test_the_schema_names_the_path_of_each_mistake(document, path, message):
    with pytest.raises(InvalidFixtures) as caught:
        parse_fixtures(document)
    problem = caught.value.problems[0]
    assert problem.path == path and problem.message.startswith(message)


@pytest.mark.parametrize("pattern", ["stock.[", "stock.[]", "stock.$", "stock.]", "", "x" * 65])
def test_set_config_refuses_a_pattern_that_is_not_a_glob(factory, rule_set, pattern):
    _load(FIXTURES, factory, rule_set)
    with pytest.raises(tenants.InvalidPattern):
        tenants.set_config(unit_of_work(factory), InProcessConfigCache(30.0), "sg_mexc", ["stock.*", pattern])
    assert tenants.show(unit_of_work(factory), rule_set.catalog, "sg_mexc").config_version == 1


def test_set_config_takes_bracket_sets(factory, rule_set):
    _load(FIXTURES, factory, rule_set)
    tenants.set_config(unit_of_work(factory), InProcessConfigCache(30.0), "sg_mexc", ["stock.[HU][KS]", "stock.[!HU]?"])
    assert set(tenants.show(unit_of_work(factory), rule_set.catalog, "sg_mexc").enabled) >= {
        "stock.HK",
        "stock.US",
        "stock.SG",
    }


def unit_of_work(sessions):  # type: ignore[no-untyped-def]
    """The unit-of-work factory the services take, over these sessions."""
    from app.persistence.unit_of_work import UnitOfWork

    return lambda **kw: UnitOfWork(sessions, **kw)


def _units(sessions):  # type: ignore[no-untyped-def]
    """The unit-of-work factory the services take, over these sessions."""
    from app.persistence.unit_of_work import UnitOfWork

    return lambda **kw: UnitOfWork(sessions, **kw)
