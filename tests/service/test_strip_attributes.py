"""AccountService.strip_refused_attributes (issue 20, finding 8): every stored attribute the declarations would
not store is removed, page by page, each account one audit row; what they allow stays."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sqlalchemy import create_engine, text

from app.persistence.db import make_engine, make_session_factory
from app.persistence.unit_of_work import UnitOfWork
from app.rules.language.attributes import StoredRefusal
from app.rules.language.loader import load_rule_set
from app.service.accounts import STRIP_ACTOR, AccountService
from app.service.stored_attributes import StrippedAccount, count_refused
from app.settings import Settings
from tests.conftest import seed
from tests.narrowing import kyc_rules, with_kyc_accounts


def test_a_strip_removes_across_pages_what_the_declarations_refuse_and_keeps_the_rest(
    settings: Settings, tmp_path: Path
) -> None:
    seed(replace(settings, rules_dir=kyc_rules(tmp_path, "declared")), with_kyc_accounts())
    rule_set = load_rule_set(kyc_rules(tmp_path, "removed", cash_only=True))
    engine = make_engine(settings, request_path=False)
    factory = make_session_factory(engine)
    try:
        service = AccountService(unit_of_work=lambda: UnitOfWork(factory, write=True), rule_set=lambda: rule_set)
        counted = count_refused(lambda: UnitOfWork(factory), rule_set.attributes)
        assert [(h.attribute, h.refusal, h.accounts, h.values) for h in counted] == [
            ("account_type", StoredRefusal.VALUE_REFUSED, 1, ("margin",)),
            ("kyc_level", StoredRefusal.UNDECLARED, 3, ("1", "2", "3")),
        ]
        seen: list[StrippedAccount] = []
        report = service.strip_refused_attributes(dry_run=False, stripped=seen.append, page=2)
    finally:
        engine.dispose()

    assert [(a.account_no, dict(a.removed)) for a in seen] == [
        ("KYC-1", {"kyc_level": ("2", StoredRefusal.UNDECLARED)}),
        ("KYC-2", {"kyc_level": ("3", StoredRefusal.UNDECLARED)}),
        ("KYC-GONE", {"kyc_level": ("1", StoredRefusal.UNDECLARED)}),
        ("MARGIN-1", {"account_type": ("margin", StoredRefusal.VALUE_REFUSED)}),
    ]
    assert report.accounts == 4
    assert report.removed == {
        ("kyc_level", StoredRefusal.UNDECLARED): 3,
        ("account_type", StoredRefusal.VALUE_REFUSED): 1,
    }
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            kept = conn.execute(text("SELECT name, value FROM account_attributes")).all()
            audit = conn.execute(
                text(
                    "SELECT trace_id, rule_set_version, count(*) FROM account_audit WHERE app_key = :key "
                    "GROUP BY trace_id, rule_set_version"
                ),
                {"key": STRIP_ACTOR},
            ).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in kept] == [("account_type", "cash")]  # KYC-1's: allowed, kept
    assert len(audit) == 1  # one trace id and version for the run, an audit row per account
    trace_id, version, rows = audit[0]
    assert trace_id.startswith("strip-undeclared-") and version == rule_set.version and rows == 4
